"""RNA and centrosome segmentation workflows: pure functions from a stack to a mask.

Both workflows run the same steps (:mod:`.detection`), each with its preset of
:class:`.params.SegmentationParams`:

1. remove the smooth background and filter at the scale of the spot;
2. measure the filtered image's noise, locally and robustly;
3. keep local maxima above a threshold in units of that noise, set per image
   from a stated false-positive rate (or given by hand);
4. grow each object from its spot(s): touching molecules stay apart where the
   intensity dips between them, a granule (no dip) stays one object, and each
   mask reaches down to a fixed fraction of its own peak, so its size follows
   the optics rather than the brightness (``refine_masks``, centrosomes: each
   mask cut again at that fraction of its peak above the light around it, in
   the raw stack, :mod:`.refine`, once the objects grown past ``max_volume_um3``
   are left out);
5. remove objects at or below a volume and make the objects the mask's
   face-connected components.

:func:`segment` returns a ``(Z, Y, X)`` uint8 mask with values 0 and 255. Where
two objects touch, the voxels of one that touch the other by a face are set
to 0, so the objects of the mask are exactly its connected components with
face (6-) connectivity, as the rest of the pipeline reads them.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import ndimage

from ..config import DEFAULT_SPACING
from ..hot_pixels import hot_pixel_offsets
from ..objects import FACE_CONNECTIVITY, normalize_spacing
from . import detection
from .detection import _face_pairs
from .params import SegmentationParams, microns_to_voxels, volume_to_voxels
from .quality import (
    FAINT_WARN_FRACTION,
    FaintSpotsWarning,
    LargeObjectsRemovedWarning,
    missed_faint_fraction,
)
from .refine import REFINE_SMOOTHING, refine_to_own_peak

__all__ = [
    "DEFAULT_SPACING",
    "Intermediates",
    "segment",
    "segment_intermediates",
    "separate_touching",
    "size_filter",
]

#: The parameters the filtered image and its noise depend on (the costly part of a run):
#: a playground slider moving any other parameter reuses them (``previous=``).
FILTER_PARAMETERS = ("spot_sigma_um", "background_ratio", "noise_block_um",
                     "borrow_crowded_noise")


@dataclass
class Intermediates:
    """Every intermediate of one workflow run, for display in the playgrounds.

    Attributes
    ----------
    raw : (Z, Y, X) ndarray
        The input stack, as given.
    filtered : (Z, Y, X) ndarray of float32
        Background removed, filtered at the spot's scale.
    noise : (Z, Y, X) ndarray of float32
        Local noise standard deviation of `filtered`.
    score : (Z, Y, X) ndarray of float32
        ``filtered / noise``: signal-to-noise of every voxel.
    threshold : float
        Noise SDs a spot had to exceed in this image.
    spots : DataFrame
        The spots found (:func:`.detection.find_spots`), blended pairs split
        in two (:func:`.detection.split_blended_spots`: column ``blended``) and
        the molecules hidden on granules' flanks or beside other spots added
        (:func:`.detection.find_flank_spots`).
    labels : (Z, Y, X) ndarray of int32
        Objects grown from the spots (their masks cut again, with
        ``refine_masks``), before the size filter.
    result : (Z, Y, X) ndarray of uint8
        The segmentation, 0 and 255.
    removed : int
        Objects removed as larger than ``max_volume_um3``.
    removed_largest_um3 : float
        The volume of the largest of them, µm³ (NaN: none removed).
    faint : float
        The share of single molecules estimated to score under the threshold
        (:func:`.quality.missed_faint_fraction` of the spots kept in ``spots``,
        one per source: a PSF's lobes along z and the spots around one clipped
        plateau count once; NaN for the workflows that do not find single
        molecules, or too few spots).
    """

    raw: np.ndarray
    filtered: np.ndarray | None
    noise: np.ndarray | None
    score: np.ndarray | None
    threshold: float
    spots: pd.DataFrame
    labels: np.ndarray | None
    result: np.ndarray
    removed: int = 0
    removed_largest_um3: float = float("nan")
    faint: float = float("nan")

    def removed_text(self, params: SegmentationParams) -> str:
        """What the maximum volume removed, as a sentence ("" when nothing)."""
        if not self.removed:
            return ""
        return (f"{self.removed} object{'s' if self.removed > 1 else ''} of more than "
                f"max_volume_um3 = {params.max_volume_um3:g} µm³ removed (the largest "
                f"{self.removed_largest_um3:.3g} µm³): out-of-focus light or autofluorescence "
                f"grown into a mask, or structures larger than the {params.workflow} workflow "
                f"expects; if they are what you segment, raise max_volume_um3 (0: no limit).")

    def faint_text(self, name: str = "") -> str:
        """The single molecules estimated under the threshold, as a sentence naming the image
        ("" when fewer than :data:`.quality.FAINT_WARN_FRACTION`)."""
        if not self.faint >= FAINT_WARN_FRACTION:  # NaN: not estimated
            return ""
        where = f"In {name}, an" if name else "An"
        return (f"{where} estimated {self.faint:.0%} of the single molecules score under the detection "
                f"threshold ({self.threshold:.3g} noise SDs; a log-normal fitted to the found "
                f"spots' scores) and are in no object, so molecule counts read low by about as much. "
                f"Brighter molecules (exposure, probes) find them; a higher "
                f"false_positives_per_1000um3 or lower threshold finds some, with more false spots.")

    def images(self) -> dict[str, np.ndarray]:
        """The intermediate images in order as ``{name: (Z, Y, X) array}``, skipping empty ones."""
        names = ("raw", "filtered", "noise", "score", "labels", "result")
        return {name: getattr(self, name) for name in names if getattr(self, name) is not None}


# --------------------------------------------------------------------- steps
def _check_image(image) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3:
        msg = (
            f"image must be a 3D (Z, Y, X) stack; got {image.ndim} dimensions with shape "
            f"{image.shape}. Split channels and time points into single 3D stacks first."
        )
        raise ValueError(msg)
    if not (np.issubdtype(image.dtype, np.integer) or np.issubdtype(image.dtype, np.floating)):
        msg = f"image must hold numbers (integers or floats); got dtype {image.dtype}."
        raise TypeError(msg)
    return image


def _whole_voxels(volume_um3: float, spacing) -> float:
    """A volume as whole voxels; the tolerance keeps 0.008 / 0.002 (= 3.9999999...) at 4."""
    return float(np.floor(volume_to_voxels(volume_um3, spacing) + 1e-6))


def _volume_kept(voxels: np.ndarray, min_volume_um3: float, max_volume_um3: float,
                 spacing) -> np.ndarray:
    """Which objects of these voxel counts are above the least volume and within the most.

    A limit of 0 is no limit. Volumes are compared in whole voxels.
    """
    keep = voxels > _whole_voxels(min_volume_um3, spacing)
    if max_volume_um3 > 0:
        keep &= voxels <= _whole_voxels(max_volume_um3, spacing)
    return keep


def _too_large(sizes: np.ndarray, params: SegmentationParams, spacing) -> tuple[int, float]:
    """How many of these objects (voxel counts) pass the maximum volume, and the largest's µm³."""
    if params.max_volume_um3 <= 0:
        return 0, float("nan")
    large = sizes > _whole_voxels(params.max_volume_um3, spacing)
    if not large.any():
        return 0, float("nan")
    return int(large.sum()), float(sizes[large].max()) * float(np.prod(normalize_spacing(spacing)))


def _warn_unseen(run: Intermediates, params: SegmentationParams) -> None:
    """A LargeObjectsRemovedWarning (and a FaintSpotsWarning) at the caller of segment /
    segment_intermediates."""
    if run.removed:
        warnings.warn(LargeObjectsRemovedWarning(run.removed_text(params), run.removed,
                                                 run.removed_largest_um3), stacklevel=3)
    faint = run.faint_text()
    if faint:
        warnings.warn(FaintSpotsWarning(faint, run.faint), stacklevel=3)


def size_filter(mask: np.ndarray, min_volume_um3: float, *, max_volume_um3: float = 0.0,
                spacing=DEFAULT_SPACING) -> np.ndarray:
    """Remove objects (face-connected components) of at most, or more than, a volume in µm³.

    Parameters
    ----------
    mask : (Z, Y, X) ndarray of bool
    min_volume_um3 : float
        Objects of this volume or less are removed (the convention of
        scikit-image 0.26's ``remove_small_objects(max_size=...)``).
    max_volume_um3 : float
        Objects of more than this volume are removed; 0: no limit.
    spacing : sequence of 3 floats
        Microns per voxel (z, y, x).

    Returns
    -------
    (Z, Y, X) ndarray of bool

    Examples
    --------
    >>> mask = np.zeros((1, 3, 9), bool); mask[0, 1, :2] = True; mask[0, 1, 3:8] = True
    >>> size_filter(mask, 2.0, spacing=1.0).sum(), size_filter(mask, 0, max_volume_um3=4, spacing=1).sum()
    (np.int64(5), np.int64(2))
    """
    mask = np.asarray(mask, dtype=bool)
    if min_volume_um3 == 0 and max_volume_um3 == 0:
        return mask.copy()
    labels, count = ndimage.label(mask, structure=FACE_CONNECTIVITY)
    if count == 0:
        return mask.copy()
    keep = _volume_kept(np.bincount(labels.ravel(), minlength=count + 1), min_volume_um3,
                        max_volume_um3, spacing)
    keep[0] = False
    return keep[labels]


def separate_touching(label_image: np.ndarray) -> np.ndarray:
    """Binary mask in which different labels never share a face.

    Of two face-adjacent voxels with different non-zero labels, the one of the
    larger object (more voxels; the larger label on ties) is dropped, so small
    objects keep their voxels and the mask's face-connected components are the
    labels (minus those boundary voxels).

    Parameters
    ----------
    label_image : (Z, Y, X) ndarray of int

    Returns
    -------
    (Z, Y, X) ndarray of bool
    """
    labels = np.ascontiguousarray(label_image)
    mask = labels > 0
    first, second = _face_pairs(labels)
    if first.size == 0:
        return mask
    sizes = np.bincount(labels.ravel()).astype(np.int64)
    # Rank = (size, label): unique per label, larger objects rank higher.
    rank = sizes * (sizes.size + 1) + np.arange(sizes.size)
    flat = labels.ravel()
    first_higher = rank[flat[first]] > rank[flat[second]]
    out = mask.ravel()
    out[first[first_higher]] = False
    out[second[~first_higher]] = False
    return mask


# ----------------------------------------------------------------- workflows
def _run(image, params, spacing, keep: bool, previous=None, threads: int | None = None) -> Intermediates:
    image = _check_image(image)
    spacing = normalize_spacing(spacing)
    # A camera's hot and dead pixels (one-pixel columns through z) repaired for every filter
    # (not looked for again when a playground redraw reuses the filtered image alone).
    reuse = previous is not None and previous.filtered is not None
    hot_pixels = (None if reuse and params.mask_smoothing >= 1 and not params.refine_masks else
                  hot_pixel_offsets(image, spacing=spacing, spot_sigma_um=params.spot_sigma_um,
                                    threads=threads))
    if reuse:
        filtered, noise = previous.filtered, previous.noise
    else:
        filtered = detection.remove_background(image, spacing=spacing,
                                               spot_sigma_um=params.spot_sigma_um,
                                               background_ratio=params.background_ratio,
                                               hot_pixels=hot_pixels, threads=threads)
        noise = detection.local_noise(filtered, spacing=spacing,
                                      spot_sigma_um=params.spot_sigma_um,
                                      block_um=params.noise_block_um,
                                      background_ratio=params.background_ratio,
                                      borrow_crowded=params.borrow_crowded_noise,
                                      threads=threads)
    score = filtered / noise
    threshold = params.threshold or detection.noise_threshold(
        params.spot_sigma_um, false_positives_per_1000um3=params.false_positives_per_1000um3,
        spacing=spacing, background_ratio=params.background_ratio)
    spots = detection.find_spots(score, threshold, spacing=spacing,
                                 min_distance_um=params.spot_sigma_um)
    if not keep:
        score = None  # made again below (the same values): one volume less meanwhile
    spots = detection.split_blended_spots(filtered, noise, spots, threshold, spacing=spacing,
                                          min_distance_um=params.spot_sigma_um,
                                          min_fraction=params.blend_fraction)
    if params.blend_fraction > 0:
        # A granule's own axial lobes, where the spots show a PSF's (none on a Gaussian's).
        lobe_depths = (detection.axial_lobe_depths(spots, spacing=spacing,
                                                   spot_sigma_um=params.spot_sigma_um)
                       if params.defocus_ratio > 0 else None)
        spots = detection.find_flank_spots(filtered, noise, spots, threshold, spacing=spacing,
                                           min_distance_um=params.spot_sigma_um,
                                           lobe_depths_um=lobe_depths)
    spots = detection.drop_defocus_spots(filtered, spots, threshold, spacing=spacing,
                                         spot_sigma_um=params.spot_sigma_um,
                                         ratio=params.defocus_ratio)
    lobes = None
    if params.defocus_ratio > 0:
        # A PSF far from a Gaussian, measured on the image's spots: a molecule's maxima along
        # z grown into one object, a granule's rings left out (no-ops on a Gaussian PSF).
        lobes = detection.axial_lobe_pairs(spots, spacing=spacing,
                                           spot_sigma_um=params.spot_sigma_um)
        spots, lobes = detection.drop_explained_spots(filtered, noise, spots, threshold,
                                                      spacing=spacing,
                                                      spot_sigma_um=params.spot_sigma_um,
                                                      lobes=lobes, threads=threads)
    region = None
    if not keep:
        # The voxels the objects may take, from the score made again; neither it nor the
        # noise is needed past here: their memory goes to the masks' and objects' arrays.
        region = filtered / noise > params.floor
        noise = None
    mask_image = None
    if params.mask_smoothing < 1:
        mask_image = detection.less_smoothed(filtered, image, spacing=spacing,
                                             spot_sigma_um=params.spot_sigma_um,
                                             smoothing=params.mask_smoothing,
                                             hot_pixels=hot_pixels, threads=threads)
    # The spots around one plateau of clipped light (a flat top rings the filter) are
    # one source.
    plateaus = detection.clipped_plateaus(image)
    plateau = detection.plateau_pairs(image, spots, spacing=spacing,
                                      spot_sigma_um=params.spot_sigma_um, plateaus=plateaus)
    columns = lobes  # one molecule's maxima along z, kept one connected object
    if len(plateau):
        lobes = plateau if lobes is None else np.concatenate([lobes, plateau])
    # The molecules too faint to be found, from the scores of those that were (the workflows
    # that find single molecules: those that split blended spots): the spots as kept (the
    # blended pairs' and flanks' molecules in, the far field of brighter spots out), one per
    # source (a PSF's second maximum along z scores just over the threshold).
    faint = (missed_faint_fraction(spots["score"], threshold, same_source=lobes)
             if params.blend_fraction > 0 else float("nan"))
    # Molecules beside a granule (the workflows that split blended spots): only the
    # granule's own lumps take its lower saddle ratio.
    sigma = (detection.spot_shape(filtered, spots)
             if params.blend_fraction > 0 and len(spots) else None)
    labels = detection.grow_objects(filtered, score, spots, floor=params.floor,
                                    mask_fraction=params.mask_fraction,
                                    saddle_ratio=params.split_saddle_ratio,
                                    granule_saddle_ratio=params.granule_saddle_ratio,
                                    reach=np.ceil(detection.OBJECT_REACH * microns_to_voxels(
                                        params.spot_sigma_um, spacing)).astype(int),
                                    mask_image=mask_image,
                                    granule_reach=None if sigma is None
                                    else detection.granule_merge_reach(sigma, spacing),
                                    region=region, threads=threads, joined=lobes,
                                    bridged=columns,
                                    plateaus=plateaus[0], plateau_reach=detection.plateau_reach(
                                        params.mask_fraction, sigma, params.spot_sigma_um,
                                        spacing))
    del mask_image
    grown_too_large = (0, float("nan"))
    if params.refine_masks:
        if params.max_volume_um3 > 0:
            # Judged on the region each object grew over in the background-removed image,
            # where an out-of-focus cell's residual spreads over microns: cut again at its
            # own peak, its mask can come out no larger than a centrosome's.
            grown = np.bincount(labels.ravel())
            grown[0] = 0
            grown_too_large = _too_large(grown, params, spacing)
            if grown_too_large[0]:
                drop = ~_volume_kept(grown, 0.0, params.max_volume_um3, spacing)
                drop[0] = False
                labels = np.where(drop[labels], 0, labels)
        # Each mask cut again at its own peak above the light around it, in the raw stack:
        # the background filter took part of a large blob's own light.
        light = detection.blurred(image, spacing=spacing, spot_sigma_um=params.spot_sigma_um,
                                  smoothing=REFINE_SMOOTHING, hot_pixels=hot_pixels,
                                  threads=threads)
        labels = refine_to_own_peak(labels, light, fraction=params.mask_fraction,
                                    sigma_voxels=microns_to_voxels(params.spot_sigma_um, spacing))
        del light
    final = separate_touching(labels)
    if params.min_volume_um3 > 0 or params.max_volume_um3 > 0:
        # Counted per object on the object voxels only, without labelling the image again.
        voxels = np.flatnonzero(final)
        part = labels.ravel()[voxels]
        sizes = np.bincount(part)
        drop = ~_volume_kept(sizes, params.min_volume_um3, params.max_volume_um3, spacing)
        final.ravel()[voxels[drop[part]]] = False
        removed = _too_large(sizes, params, spacing)
    else:
        removed = (0, float("nan"))
    if grown_too_large[0]:
        removed = (removed[0] + grown_too_large[0],
                   float(np.nanmax([removed[1], grown_too_large[1]])))
    result = final.astype(np.uint8) * np.uint8(255)
    if not keep:
        return Intermediates(image, None, None, None, threshold, spots, None, result, *removed,
                             faint=faint)
    return Intermediates(image, filtered, noise, score, threshold, spots, labels, result, *removed,
                         faint=faint)


def _params(params) -> SegmentationParams:
    if isinstance(params, str):
        return SegmentationParams(params)
    if isinstance(params, dict):
        return SegmentationParams.from_dict(params)
    if not isinstance(params, SegmentationParams):
        msg = (f"params must be SegmentationParams, a workflow name ('rna', 'centrosomes') or a "
               f"dict with a 'workflow' key; got {type(params).__name__}.")
        raise TypeError(msg)
    return params


def segment(image: np.ndarray, params: SegmentationParams | str | dict = "rna", *,
            spacing=DEFAULT_SPACING, threads: int | None = None) -> np.ndarray:
    """Segment a stack with a workflow: single molecules and granules, or centrosomes.

    Parameters
    ----------
    image : (Z, Y, X) ndarray
        Raw stack, any numeric dtype.
    params : SegmentationParams, str or dict
        The parameters; a workflow's name (``"rna"``, ``"centrosomes"``):
        its preset; a dict: :meth:`.SegmentationParams.from_dict`.
    spacing : sequence of 3 floats
        Microns per voxel (z, y, x).
    threads : int, optional
        Threads for the filters of a large stack (the same mask on any
        number); None: every core this process may use.

    Returns
    -------
    (Z, Y, X) ndarray of uint8
        255 on the objects, 0 elsewhere; objects are its face-connected
        components (split objects are separated by background voxels).

    Examples
    --------
    >>> image = np.full((9, 32, 32), 100, np.uint16)
    >>> image[4, 16, 16] = 5000
    >>> mask = segment(image, "rna")
    >>> mask.dtype, mask.shape, sorted(np.unique(mask).tolist())
    (dtype('uint8'), (9, 32, 32), [0, 255])

    Objects removed as larger than the parameters' ``max_volume_um3`` are
    reported in a :class:`.quality.LargeObjectsRemovedWarning`; single molecules
    too faint to be found (an estimated :data:`.quality.FAINT_WARN_FRACTION` of
    them or more) in a :class:`.quality.FaintSpotsWarning`.
    """
    params = _params(params)
    run = _run(image, params, spacing, keep=False, threads=threads)
    _warn_unseen(run, params)
    return run.result


def segment_intermediates(image: np.ndarray, params: SegmentationParams | str | dict = "rna", *,
                          spacing=DEFAULT_SPACING,
                          previous: Intermediates | None = None) -> Intermediates:
    """Run a workflow and keep every intermediate image (for the playgrounds).

    Parameters as :func:`segment`, and

    previous : Intermediates, optional
        A run on the same image and spacing with the same
        :data:`FILTER_PARAMETERS`: its filtered image and noise are reused
        (the result is the same, in a fraction of the time). The caller
        vouches for the sameness.

    Returns
    -------
    Intermediates
        ``.result`` equals :func:`segment`'s output (and the same warning).
    """
    params = _params(params)
    run = _run(image, params, spacing, keep=True, previous=previous)
    _warn_unseen(run, params)
    return run
