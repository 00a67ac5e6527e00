"""RNA and centrosome segmentation workflows: pure functions from a stack to a mask.

Each workflow chains the Allen Cell Segmenter's classic steps (aicssegmentation):

1. auto-contrast intensity normalization (same arithmetic as
   ``aicssegmentation.core.pre_processing_utils.intensity_normalization`` with
   ``[a, b]``, computed in float32);
2. Gaussian smoothing in 3D or slice by slice (aicssegmentation's
   ``image_smoothing_gaussian_3d`` / ``image_smoothing_gaussian_slice_by_slice``,
   here with one sigma per axis so that a sigma in microns stays round on
   anisotropic voxels);
3. the 3D spot filter, the scale-normalized Laplacian of Gaussian of
   ``aicssegmentation.core.seg_dot.dot_3d_wrapper``, thresholded at one cutoff
   per scale and united; on anisotropic voxels each axis gets its own sigma
   (:func:`spot_filter`; identical to ``dot_3d`` when the sigma is the same on
   every axis);
4. 2D hole filling (``aicssegmentation.core.utils.hole_filling``);
5. a size filter (objects of at most ``min_volume_um3`` removed);
6. a seeded watershed on the smoothed intensities, seeded at maxima at least
   ``split_min_distance_um`` apart, which splits touching objects.

Every workflow returns a ``(Z, Y, X)`` uint8 mask with values 0 and 255. Where
the watershed splits an object, the voxels of one side that touch the other
by a face are set to 0, so the objects of the mask are exactly its connected
components with face (6-) connectivity, as the rest of the pipeline reads them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
from aicssegmentation.core.pre_processing_utils import (
    image_smoothing_gaussian_3d,
    image_smoothing_gaussian_slice_by_slice,
)
from aicssegmentation.core.utils import hole_filling
from scipy import ndimage
from skimage.segmentation import watershed

from ..objects import normalize_spacing
from .params import CentrosomeParams, RnaParams, microns_to_voxels, volume_to_voxels

__all__ = [
    "DEFAULT_SPACING",
    "SegmentationSteps",
    "centrosome_steps",
    "fill_holes",
    "normalize_intensity",
    "rna_steps",
    "segment",
    "segment_centrosomes",
    "segment_rna",
    "separate_touching",
    "size_filter",
    "smooth",
    "spot_filter",
    "split_objects",
]

#: Voxel size (z, y, x) in microns of a 100x spinning-disk confocal.
DEFAULT_SPACING = (0.2, 0.065, 0.065)

_FACE = ndimage.generate_binary_structure(3, 1)


@dataclass
class SegmentationSteps:
    """Every intermediate of one workflow run, for display in the playgrounds.

    Attributes
    ----------
    raw : (Z, Y, X) ndarray
        The input stack, as given.
    normalized : (Z, Y, X) ndarray of float32
        After auto-contrast normalization, in [0, 1].
    smoothed : (Z, Y, X) ndarray of float32
        After Gaussian smoothing.
    spot_responses : list of (Z, Y, X) ndarray of float32
        The spot filter's response at each ``spot_filters`` sigma, in order.
    thresholded : (Z, Y, X) ndarray of bool
        Union of ``response > cutoff`` over the scales.
    filled : (Z, Y, X) ndarray of bool
        After hole filling.
    size_filtered : (Z, Y, X) ndarray of bool
        After the size filter.
    seeds : (Z, Y, X) ndarray of int32 or None
        Watershed seeds as labels (None when splitting is off).
    result : (Z, Y, X) ndarray of uint8
        The segmentation, 0 and 255.
    """

    raw: np.ndarray
    normalized: np.ndarray | None
    smoothed: np.ndarray | None
    spot_responses: list[np.ndarray]
    thresholded: np.ndarray | None
    filled: np.ndarray | None
    size_filtered: np.ndarray | None
    seeds: np.ndarray | None
    result: np.ndarray

    def images(self) -> dict[str, np.ndarray]:
        """The steps in order as ``{name: (Z, Y, X) array}``, skipping empty ones.

        The spot filter's responses are named ``spot_filter_<sigma>um``.
        """
        out: dict[str, np.ndarray] = {"raw": self.raw}
        for f in dataclasses.fields(self)[1:]:
            value = getattr(self, f.name)
            if f.name == "spot_responses":
                out.update({f"spot_filter_{i}": r for i, r in enumerate(value)})
            elif value is not None:
                out[f.name] = value
        return out


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


def normalize_intensity(image: np.ndarray, lower: float, upper: float) -> np.ndarray:
    """Auto-contrast normalization to [0, 1].

    Intensities are clipped to ``[max(mean - lower·std, min), min(mean +
    upper·std, max)]`` of the stack and rescaled to [0, 1], the arithmetic of
    aicssegmentation's ``intensity_normalization(img, [lower, upper])``
    (population std, the same 1e-8 guard), computed in float32 without
    modifying the input.

    Parameters
    ----------
    image : (Z, Y, X) ndarray
        Raw stack, any numeric dtype.
    lower, upper : float
        Standard deviations below and above the mean.

    Returns
    -------
    (Z, Y, X) ndarray of float32
    """
    image = _check_image(image)
    mean = float(image.mean(dtype=np.float64))
    std = float(image.std(dtype=np.float64))
    low = max(mean - lower * std, float(image.min()))
    high = min(mean + upper * std, float(image.max()))
    out = image.astype(np.float32)
    np.clip(out, low, high, out=out)
    out -= np.float32(low - 1e-8)
    out /= np.float32(high - low + 1e-8)
    return out


def smooth(image: np.ndarray, sigma_um: float, *, spacing=DEFAULT_SPACING,
           method: str = "3d") -> np.ndarray:
    """Gaussian smoothing with a sigma in microns.

    Parameters
    ----------
    image : (Z, Y, X) ndarray of float
        Usually the normalized stack.
    sigma_um : float
        Gaussian sigma in microns; 0 returns a float32 copy.
    spacing : sequence of 3 floats
        Microns per voxel (z, y, x).
    method : {"3d", "slice_by_slice"}
        Smooth in 3D, or each z-slice in 2D (y, x sigma only).

    Returns
    -------
    (Z, Y, X) ndarray of float32
    """
    image = np.asarray(image, dtype=np.float32)
    if sigma_um == 0:
        return image.copy()
    sigma = microns_to_voxels(sigma_um, spacing)
    if method == "3d":
        return image_smoothing_gaussian_3d(image, sigma=tuple(sigma))
    if method == "slice_by_slice":
        return image_smoothing_gaussian_slice_by_slice(image, sigma=tuple(sigma[1:]))
    msg = f"smoothing method must be '3d' or 'slice_by_slice'; got {method!r}."
    raise ValueError(msg)


def spot_filter(image: np.ndarray, sigma_um: float, *, spacing=DEFAULT_SPACING) -> np.ndarray:
    """3D spot filter: scale-normalized Laplacian of Gaussian, sigma in microns.

    ``response = -Σ_axes σ_axis² ∂²/∂axis² (G_σ * image)`` with σ in voxels per
    axis. With the same σ on every axis this is exactly
    ``aicssegmentation.core.seg_dot.dot_3d(image, σ)`` (``-σ² ∇²G_σ``); with
    anisotropic voxels each axis is normalized by its own σ, so a round spot of
    radius ``√3·sigma_um`` gives the strongest response whatever the spacing.

    Parameters
    ----------
    image : (Z, Y, X) ndarray of float
        Usually the smoothed stack.
    sigma_um : float
        Filter scale in microns (~ spot radius / √3).
    spacing : sequence of 3 floats
        Microns per voxel (z, y, x).

    Returns
    -------
    (Z, Y, X) ndarray of float32
        Positive on bright spots.
    """
    image = np.asarray(image, dtype=np.float32)
    sigma = microns_to_voxels(sigma_um, spacing)
    response = np.zeros(image.shape, dtype=np.float32)
    second = np.empty(image.shape, dtype=np.float32)
    for axis in range(3):
        order = [0, 0, 0]
        order[axis] = 2
        ndimage.gaussian_filter(image, sigma, order=order, output=second, mode="reflect")
        second *= np.float32(-sigma[axis] ** 2)
        response += second
    return response


def fill_holes(mask: np.ndarray, hole_max_um2: float, *, spacing=DEFAULT_SPACING) -> np.ndarray:
    """Fill holes of each z-slice up to an area in square microns.

    Calls aicssegmentation's ``hole_filling(mask, 0, hole_max, fill_2d=True)``.

    Parameters
    ----------
    mask : (Z, Y, X) ndarray of bool
    hole_max_um2 : float
        Largest hole filled, µm² (converted with the y, x spacing); 0: no filling.
    spacing : sequence of 3 floats
        Microns per voxel (z, y, x).

    Returns
    -------
    (Z, Y, X) ndarray of bool
    """
    mask = np.asarray(mask, dtype=bool)
    if hole_max_um2 == 0:
        return mask.copy()
    spacing = normalize_spacing(spacing)
    hole_max = int(hole_max_um2 / (spacing[1] * spacing[2]))
    if hole_max < 1:
        return mask.copy()
    return np.asarray(hole_filling(mask, 0, hole_max, fill_2d=True), dtype=bool)


def size_filter(mask: np.ndarray, min_volume_um3: float, *, spacing=DEFAULT_SPACING) -> np.ndarray:
    """Remove objects (face-connected components) of at most a volume in µm³.

    Parameters
    ----------
    mask : (Z, Y, X) ndarray of bool
    min_volume_um3 : float
        Objects of this volume or less are removed (the convention of
        scikit-image 0.26's ``remove_small_objects(max_size=...)``).
    spacing : sequence of 3 floats
        Microns per voxel (z, y, x).

    Returns
    -------
    (Z, Y, X) ndarray of bool
    """
    mask = np.asarray(mask, dtype=bool)
    if min_volume_um3 == 0:
        return mask.copy()
    max_voxels = volume_to_voxels(min_volume_um3, spacing)
    labels, count = ndimage.label(mask, structure=_FACE)
    if count == 0:
        return mask.copy()
    keep = np.bincount(labels.ravel(), minlength=count + 1) > max_voxels
    keep[0] = False
    return keep[labels]


def separate_touching(label_image: np.ndarray) -> np.ndarray:
    """Binary mask in which different labels never share a face.

    Of two face-adjacent voxels with different non-zero labels, the one with
    the larger label is dropped, so the mask's face-connected components are
    the labels (minus those boundary voxels).

    Parameters
    ----------
    label_image : (Z, Y, X) ndarray of int

    Returns
    -------
    (Z, Y, X) ndarray of bool
    """
    labels = np.asarray(label_image)
    mask = labels > 0
    for axis in range(labels.ndim):
        lo = [slice(None)] * labels.ndim
        hi = [slice(None)] * labels.ndim
        lo[axis] = slice(None, -1)
        hi[axis] = slice(1, None)
        a, b = labels[tuple(lo)], labels[tuple(hi)]
        clash = (a > 0) & (b > 0) & (a != b)
        # Drop the voxel with the larger label of each clashing pair.
        mask[tuple(lo)] &= ~(clash & (a > b))
        mask[tuple(hi)] &= ~(clash & (b > a))
    return mask


def split_objects(mask: np.ndarray, intensity: np.ndarray, min_distance_um: float, *,
                  spacing=DEFAULT_SPACING) -> tuple[np.ndarray, np.ndarray]:
    """Seeded watershed: split objects between intensity maxima far enough apart.

    Seeds are the voxels of `mask` that are the maximum of `intensity` within
    a box of half-width `min_distance_um` (per axis, in voxels from the
    spacing); connected plateau voxels form one seed. The watershed floods
    ``-intensity`` from the seeds inside the mask.

    Parameters
    ----------
    mask : (Z, Y, X) ndarray of bool
    intensity : (Z, Y, X) ndarray of float
        Usually the smoothed stack.
    min_distance_um : float
        Minimum distance between seeds, microns.
    spacing : sequence of 3 floats
        Microns per voxel (z, y, x).

    Returns
    -------
    label_image : (Z, Y, X) ndarray of int32
        One label per watershed basin.
    seeds : (Z, Y, X) ndarray of int32
        The seeds as labels.
    """
    mask = np.asarray(mask, dtype=bool)
    radius = np.maximum(np.rint(microns_to_voxels(min_distance_um, spacing)).astype(int), 0)
    size = tuple(2 * radius + 1)
    # Compare only inside the mask: outside, -inf never wins the maximum.
    inside = np.where(mask, intensity, -np.inf).astype(np.float32, copy=False)
    peaks = mask & (inside == ndimage.maximum_filter(inside, size=size, mode="nearest"))
    # A dim object next to a brighter one can lose its own maximum to the box;
    # every object gets at least its brightest voxel as a seed.
    components, count = ndimage.label(mask, structure=_FACE)
    has_seed = np.bincount(components[peaks], minlength=count + 1) > 0
    missing = np.flatnonzero(~has_seed[1:]) + 1
    if missing.size:
        where = np.array(ndimage.maximum_position(inside, components, missing)).reshape(-1, 3)
        peaks[tuple(where.T)] = True
    del components
    seeds, _ = ndimage.label(peaks, structure=np.ones((3, 3, 3), bool))
    labels = watershed(-inside, markers=seeds, mask=mask, connectivity=1)
    return labels.astype(np.int32, copy=False), seeds.astype(np.int32, copy=False)


# ----------------------------------------------------------------- workflows
def _run(image, params, spacing, keep: bool) -> SegmentationSteps:
    image = _check_image(image)
    spacing = normalize_spacing(spacing)
    normalized = normalize_intensity(image, *params.normalization)
    smoothed = smooth(normalized, params.smoothing_sigma_um, spacing=spacing,
                      method=params.smoothing)
    if not keep:
        del normalized
        normalized = None
    responses = []
    thresholded = np.zeros(image.shape, dtype=bool)
    for sigma_um, cutoff in params.spot_filters:
        response = spot_filter(smoothed, sigma_um, spacing=spacing)
        thresholded |= response > cutoff
        if keep:
            responses.append(response)
        del response
    filled = fill_holes(thresholded, params.hole_max_um2, spacing=spacing)
    size_filtered = size_filter(filled, params.min_volume_um3, spacing=spacing)
    seeds = None
    if params.split_min_distance_um > 0:
        labels, seeds = split_objects(size_filtered, smoothed, params.split_min_distance_um,
                                      spacing=spacing)
        final = separate_touching(labels)
        # Splitting can leave slivers; the size filter applies to the parts too.
        final = size_filter(final, params.min_volume_um3, spacing=spacing)
        del labels
    else:
        final = size_filtered
    result = final.astype(np.uint8) * np.uint8(255)
    if not keep:
        return SegmentationSteps(image, None, None, [], None, None, None, None, result)
    return SegmentationSteps(image, normalized, smoothed, responses, thresholded, filled,
                             size_filtered, seeds, result)


def _params(params, kind):
    if params is None:
        return kind()
    if isinstance(params, dict):
        return kind.from_dict(params)
    if not isinstance(params, kind):
        msg = f"params must be a {kind.__name__} (or None for the defaults); got {type(params).__name__}."
        raise TypeError(msg)
    return params


def rna_steps(image: np.ndarray, params: RnaParams | None = None, *,
              spacing=DEFAULT_SPACING) -> SegmentationSteps:
    """Run the RNA workflow and keep every intermediate (for the playground).

    Parameters
    ----------
    image : (Z, Y, X) ndarray
        Raw smFISH stack.
    params : RnaParams, dict or None
        None: the defaults.
    spacing : sequence of 3 floats
        Microns per voxel (z, y, x).

    Returns
    -------
    SegmentationSteps
        ``.result`` equals :func:`segment_rna`'s output.
    """
    return _run(image, _params(params, RnaParams), spacing, keep=True)


def segment_rna(image: np.ndarray, params: RnaParams | None = None, *,
                spacing=DEFAULT_SPACING) -> np.ndarray:
    """Segment smFISH signal: single molecules and granules.

    Parameters
    ----------
    image : (Z, Y, X) ndarray
        Raw smFISH stack, any numeric dtype.
    params : RnaParams, dict or None
        None: the defaults, tuned for 100x spinning-disk stacks.
    spacing : sequence of 3 floats
        Microns per voxel (z, y, x).

    Returns
    -------
    (Z, Y, X) ndarray of uint8
        255 on RNA, 0 elsewhere; objects are its face-connected components.

    Examples
    --------
    >>> image = np.full((9, 32, 32), 100, np.uint16)
    >>> image[4, 16, 16] = 5000
    >>> mask = segment_rna(image)
    >>> mask.dtype, mask.shape, sorted(np.unique(mask).tolist())
    (dtype('uint8'), (9, 32, 32), [0, 255])
    """
    return _run(image, _params(params, RnaParams), spacing, keep=False).result


def centrosome_steps(image: np.ndarray, params: CentrosomeParams | None = None, *,
                     spacing=DEFAULT_SPACING) -> SegmentationSteps:
    """Run the centrosome workflow and keep every intermediate (for the playground).

    Parameters and return as :func:`rna_steps`, with :class:`CentrosomeParams`.
    """
    return _run(image, _params(params, CentrosomeParams), spacing, keep=True)


def segment_centrosomes(image: np.ndarray, params: CentrosomeParams | None = None, *,
                        spacing=DEFAULT_SPACING) -> np.ndarray:
    """Segment centrosomes: compact blobs, touching pairs split by a seeded watershed.

    Parameters
    ----------
    image : (Z, Y, X) ndarray
        Raw centrosome stack, any numeric dtype.
    params : CentrosomeParams, dict or None
        None: the defaults, tuned for 100x spinning-disk stacks.
    spacing : sequence of 3 floats
        Microns per voxel (z, y, x).

    Returns
    -------
    (Z, Y, X) ndarray of uint8
        255 on centrosomes, 0 elsewhere; objects are its face-connected
        components (split objects are separated by background voxels).
    """
    return _run(image, _params(params, CentrosomeParams), spacing, keep=False).result


_WORKFLOWS = {"rna": (segment_rna, RnaParams), "centrosomes": (segment_centrosomes, CentrosomeParams)}


def segment(image: np.ndarray, workflow: str, params=None, *, spacing=DEFAULT_SPACING) -> np.ndarray:
    """Run a workflow by name: ``"rna"`` or ``"centrosomes"``.

    Parameters
    ----------
    image : (Z, Y, X) ndarray
    workflow : {"rna", "centrosomes"}
    params : RnaParams, CentrosomeParams, dict or None
    spacing : sequence of 3 floats

    Returns
    -------
    (Z, Y, X) ndarray of uint8
        0 / 255 mask.
    """
    if workflow not in _WORKFLOWS:
        msg = f"workflow must be one of {list(_WORKFLOWS)}; got {workflow!r}."
        raise ValueError(msg)
    function, _ = _WORKFLOWS[workflow]
    return function(image, params, spacing=spacing)
