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
6. a seeded watershed on the smoothed intensities (:func:`split_objects`):
   seeds at local maxima, basins merged back unless the intensity dips between
   them, so a granule stays whole while a neighbour beside it is split off.

Every workflow returns a ``(Z, Y, X)`` uint8 mask with values 0 and 255. Where
the watershed splits an object, the voxels of one side that touch the other
by a face are set to 0, so the objects of the mask are exactly its connected
components with face (6-) connectivity, as the rest of the pipeline reads them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage.segmentation import watershed

from ..objects import normalize_spacing
from .params import CentrosomeParams, RnaParams, microns_to_voxels, volume_to_voxels

__all__ = [
    "DEFAULT_SPACING",
    "SegmentationSteps",
    "background_statistics",
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
def _aicssegmentation():
    """The Allen Cell Segmenter's core modules, or an ImportError saying how to install them."""
    try:
        from aicssegmentation.core import pre_processing_utils, utils
    except ImportError as error:
        msg = (
            "segmentation needs the Allen Cell Segmenter's functions: "
            'pip install --no-deps "aicssegmentation>=0.5.3" (see docs/segmentation.md; '
            "--no-deps keeps napari and itk out)."
        )
        raise ImportError(msg) from error
    return pre_processing_utils, utils


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


def background_statistics(image: np.ndarray, *, max_samples: int = 4_000_000) -> tuple[float, float]:
    """Background level and noise of a stack, unaffected by bright spots.

    The median and the normalized median absolute deviation (1.4826·MAD, the
    standard deviation for Gaussian noise) of the voxel values, estimated from
    an evenly strided sample of at most `max_samples` voxels.

    Parameters
    ----------
    image : (Z, Y, X) ndarray
    max_samples : int
        Largest number of voxels used.

    Returns
    -------
    (float, float)
        ``(level, noise)`` in the image's units; noise is 0 only for a
        constant image.
    """
    flat = np.asarray(image).ravel()
    step = max(1, -(-flat.size // max_samples))
    sample = flat[::step].astype(np.float64)
    level = float(np.median(sample))
    deviation = np.abs(sample - level)
    noise = 1.4826 * float(np.median(deviation))
    if noise == 0:
        # Quantized, nearly flat backgrounds: fall back to the mean deviation
        # (1.2533·mean|x - median| is sigma for Gaussian noise).
        noise = 1.2533 * float(deviation.mean())
    return level, noise


def normalize_intensity(image: np.ndarray, lower: float, upper: float, *,
                        reference: str = "background") -> np.ndarray:
    """Auto-contrast normalization to [0, 1].

    Intensities are clipped to ``[max(centre - lower·spread, min),
    min(centre + upper·spread, max)]`` and rescaled to [0, 1]:

    - ``reference="mean_std"``: centre and spread are the stack's mean and
      standard deviation, exactly aicssegmentation's
      ``intensity_normalization(img, [lower, upper])`` (in float32). Bright
      spots raise the standard deviation, so the same cutoff means a higher
      threshold in an image with many granules than in one without.
    - ``reference="background"``: centre and spread are the background level
      and noise (:func:`background_statistics`), which spots barely change, so
      a cutoff means the same signal-to-noise in every image of a data set.
      Only the lower end is clipped: ``centre + upper·spread`` maps to 1 and
      brighter voxels (granules) go above 1, keeping their shape.

    Parameters
    ----------
    image : (Z, Y, X) ndarray
        Raw stack, any numeric dtype; not modified.
    lower, upper : float
        Spreads below and above the centre.
    reference : {"background", "mean_std"}

    Returns
    -------
    (Z, Y, X) ndarray of float32
        In [0, 1] (``"mean_std"``), or from 0 up (``"background"``).
    """
    image = _check_image(image)
    if reference == "mean_std":
        centre = float(image.mean(dtype=np.float64))
        spread = float(image.std(dtype=np.float64))
    elif reference == "background":
        centre, spread = background_statistics(image)
    else:
        msg = f"normalization reference must be 'background' or 'mean_std'; got {reference!r}."
        raise ValueError(msg)
    low = max(centre - lower * spread, float(image.min()))
    if reference == "mean_std":
        high = min(centre + upper * spread, float(image.max()))
    else:
        # Fixed to the noise, not to the brightest voxel, and not clipped:
        # granules keep their shape (their dips and slopes) for the watershed.
        high = max(centre + upper * spread, low)
    out = image.astype(np.float32)
    np.clip(out, low, high if reference == "mean_std" else None, out=out)
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
    pre_processing, _ = _aicssegmentation()
    if method == "3d":
        return pre_processing.image_smoothing_gaussian_3d(image, sigma=tuple(sigma))
    if method == "slice_by_slice":
        return pre_processing.image_smoothing_gaussian_slice_by_slice(image, sigma=tuple(sigma[1:]))
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
    _, utils = _aicssegmentation()
    return np.asarray(utils.hole_filling(mask, 0, hole_max, fill_2d=True), dtype=bool)


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
    # Whole voxels; the tolerance keeps 0.008 / 0.002 (= 3.9999999...) at 4.
    max_voxels = np.floor(volume_to_voxels(min_volume_um3, spacing) + 1e-6)
    labels, count = ndimage.label(mask, structure=_FACE)
    if count == 0:
        return mask.copy()
    keep = np.bincount(labels.ravel(), minlength=count + 1) > max_voxels
    keep[0] = False
    return keep[labels]


def _face_pairs(label_image: np.ndarray):
    """Face-adjacent voxel pairs of two different non-zero labels.

    Works on the non-zero voxels only (flat indices), so its cost follows the
    objects' volume, not the image's.

    Returns
    -------
    first, second : (P,) ndarray of int64
        Flat indices of the two voxels of each pair.
    """
    flat = label_image.ravel()
    index = np.flatnonzero(flat)
    shape = label_image.shape
    strides = np.cumprod((1,) + shape[:0:-1])[::-1]
    firsts, seconds = [], []
    for axis, stride in enumerate(strides):
        along = (index // stride) % shape[axis]
        a = index[along < shape[axis] - 1]
        b = a + stride
        la, lb = flat[a], flat[b]
        clash = (lb > 0) & (la != lb)
        firsts.append(a[clash])
        seconds.append(b[clash])
    return np.concatenate(firsts), np.concatenate(seconds)


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


def _merge_basins(basins: np.ndarray, intensity: np.ndarray, saddle_ratio: float) -> np.ndarray:
    """Merge touching basins whose saddle is >= saddle_ratio x the lower peak; labels 1..k."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = int(basins.max())
    flat_basins, flat_intensity = basins.ravel(), intensity.ravel()
    inside = flat_basins > 0
    peak = np.full(n + 1, -np.inf, dtype=np.float64)
    np.maximum.at(peak, flat_basins[inside], flat_intensity[inside])
    first, second = _face_pairs(basins)
    a, b = flat_basins[first], flat_basins[second]
    height = np.minimum(flat_intensity[first], flat_intensity[second])
    low, high = np.minimum(a, b).astype(np.int64), np.maximum(a, b).astype(np.int64)
    # Saddle of each pair of basins: the highest of its border pairs.
    keys = low * (n + 1) + high
    order = np.lexsort((height, keys))
    keys, height = keys[order], height[order]
    last = np.r_[keys[1:] != keys[:-1], True] if keys.size else np.zeros(0, bool)
    keys, saddle = keys[last], height[last]
    low, high = keys // (n + 1), keys % (n + 1)
    merge = saddle >= saddle_ratio * np.minimum(peak[low], peak[high])
    graph = coo_matrix((np.ones(int(merge.sum()), np.int8), (low[merge], high[merge])),
                       shape=(n + 1, n + 1))
    _, group = connected_components(graph, directed=False)
    used = np.unique(group[np.unique(flat_basins[inside])])
    lookup = np.zeros(group.max() + 1, dtype=np.int32)
    lookup[used] = np.arange(1, used.size + 1, dtype=np.int32)
    relabel = lookup[group]
    relabel[0] = 0
    return relabel[basins]


def split_objects(mask: np.ndarray, intensity: np.ndarray, min_distance_um: float,
                  saddle_ratio: float, *, spacing=DEFAULT_SPACING) -> tuple[np.ndarray, np.ndarray]:
    """Seeded watershed that splits touching objects where the intensity dips between them.

    1. Seeds: voxels of `mask` that are the maximum of `intensity` within a
       box of half-width `min_distance_um` (per axis, in voxels from the
       spacing, at least 1); every connected object gets at least its
       brightest voxel.
    2. In each object holding several seeds, a watershed floods
       ``-intensity`` from them.
    3. Two touching basins are merged back when the highest point of their
       common border (the saddle) is at least ``saddle_ratio`` times the lower
       of their two peaks: no real dip, so one object (e.g. the molecules of
       one granule, or noise on top of a centrosome). Basins separated by a
       deeper dip stay apart (two centrosomes, a molecule beside a granule).

    Parameters
    ----------
    mask : (Z, Y, X) ndarray of bool
    intensity : (Z, Y, X) ndarray of float
        Usually the smoothed stack (background near 0).
    min_distance_um : float
        Half-width of the seed search box, microns.
    saddle_ratio : float
        In [0, 1]; 0 merges every touching basin (no split), 1 keeps every
        seed's basin.
    spacing : sequence of 3 floats
        Microns per voxel (z, y, x).

    Returns
    -------
    label_image : (Z, Y, X) ndarray of int32
        One label per object, 1..n; objects split apart touch each other.
    seeds : (Z, Y, X) ndarray of int32
        The watershed seeds as labels (before merging).
    """
    mask = np.asarray(mask, dtype=bool)
    intensity = np.asarray(intensity, dtype=np.float32)
    radius = np.maximum(np.rint(microns_to_voxels(min_distance_um, spacing)).astype(int), 1)
    inside = np.where(mask, intensity, np.float32(-np.inf))
    peaks = mask & (inside == ndimage.maximum_filter(inside, size=tuple(2 * radius + 1),
                                                     mode="nearest"))
    components, count = ndimage.label(mask, structure=_FACE)
    # A dim object next to a brighter one can lose its own maximum to the box;
    # every object gets at least its brightest voxel as a seed.
    seeds_per_object = np.bincount(components[peaks], minlength=count + 1)
    unseeded = seeds_per_object == 0
    unseeded[0] = False
    if unseeded.any():
        voxels = np.flatnonzero(mask)
        owner = components.ravel()[voxels]
        voxels, owner = voxels[unseeded[owner]], owner[unseeded[owner]]
        # Brightest voxel of each unseeded object: the last of its group by intensity.
        order = np.lexsort((intensity.ravel()[voxels], owner))
        last = np.r_[owner[order][1:] != owner[order][:-1], True]
        peaks.ravel()[voxels[order][last]] = True
    seeds, _ = ndimage.label(peaks, structure=np.ones((3, 3, 3), bool))
    # Objects with one seed are their own basin; only the others are flooded.
    seed_voxels = np.flatnonzero(seeds)
    _, first = np.unique(seeds.ravel()[seed_voxels], return_index=True)
    owners = components.ravel()[seed_voxels[first]]
    several = np.flatnonzero(np.bincount(owners, minlength=count + 1) >= 2)
    labels = components.astype(np.int32, copy=False)
    boxes = ndimage.find_objects(components)
    next_label = count + 1
    for obj in several:
        box = boxes[obj - 1]
        own = components[box] == obj
        # Seeds renumbered 1..k inside the box.
        _, markers = np.unique(np.where(own, seeds[box], 0), return_inverse=True)
        markers = markers.reshape(own.shape)
        basins = watershed(-intensity[box], markers=markers, mask=own, connectivity=1)
        merged = _merge_basins(basins, intensity[box], saddle_ratio)
        parts = int(merged.max())
        if parts > 1:
            crop = labels[box]
            crop[own] = np.where(merged[own] == 1, obj, merged[own] + (next_label - 2))
            next_label += parts - 1
    return labels, seeds.astype(np.int32, copy=False)


# ----------------------------------------------------------------- workflows
def _run(image, params, spacing, keep: bool) -> SegmentationSteps:
    image = _check_image(image)
    spacing = normalize_spacing(spacing)
    normalized = normalize_intensity(image, *params.normalization,
                                     reference=params.normalization_reference)
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
                                      params.split_saddle_ratio, spacing=spacing)
        final = separate_touching(labels)
        # Splitting can leave slivers: the size filter applies to the parts too
        # (counted on the object voxels only, without labelling the image again).
        voxels = np.flatnonzero(final)
        part = labels.ravel()[voxels]
        max_voxels = np.floor(volume_to_voxels(params.min_volume_um3, spacing) + 1e-6)
        small = np.bincount(part) <= max_voxels
        final.ravel()[voxels[small[part]]] = False
        del labels, voxels, part
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
