"""The chance baseline: the cumulative distribution of RNA spread uniformly.

If an image's RNA were spread uniformly over its volume (or over a region,
e.g. the embryo or the cytoplasm), the fraction of it within ``d`` of the
target structure would be the fraction of the volume's voxels within ``d``.
That fraction is computed exactly, from the Euclidean distance transform to
the target with the image's anisotropic voxel size, not from random draws:
each plane holding a target gets every pixel's offset to its nearest target
pixel (with square pixels, compared as whole squared pixels), and the planes
are combined along each column (y, x) by the lower envelope of one parabola
per plane: linear in the volume, within the box where a voxel can be within
the threshold, in compiled loops (:mod:`rna_localization._envelopes`) on every
core the process may use (:func:`_counts`). Each voxel's bin then comes from
its offset to its nearest target voxel through a table of exact bins: no
distance is rounded on the way.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy import ndimage

from ._cores import in_threads, thread_count
from .objects import ObjectVoxels

__all__ = ["distance_to_target", "expected_cumulative_distribution", "image_baseline"]


#: Voxels whose squared distances are held at once (planes of the stack at a time): the
#: only whole-volume arrays are then the target and its feature transform (12 bytes a voxel).
_SLAB_VOXELS = 1 << 20


def _checked(target, spacing) -> tuple[np.ndarray, np.ndarray]:
    """The target as a (Z, Y, X) bool array with a voxel, and the spacing as 3 positive floats."""
    target = np.asarray(target)
    if target.dtype != bool:  # a mask already needs no second pass
        target = target != 0
    if target.ndim != 3:
        msg = f"the target must be a (Z, Y, X) stack; got {target.ndim} dimension(s)."
        raise ValueError(msg)
    if not target.any():
        msg = "the target has no voxel: an image without a target object has no chance baseline."
        raise ValueError(msg)
    return target, _checked_spacing(spacing)


def _checked_spacing(spacing) -> np.ndarray:
    """The spacing as 3 positive floats (z, y, x)."""
    spacing = np.broadcast_to(np.asarray(spacing, dtype=np.float64), (3,))
    if not np.all(spacing > 0):
        msg = f"spacing must be positive microns per voxel (z, y, x); got {tuple(spacing)}."
        raise ValueError(msg)
    return spacing


def _feature_transform(target, spacing) -> tuple[np.ndarray, np.ndarray]:
    """Each voxel's nearest target voxel, (3, Z, Y, X) int32, and the spacing as 3 floats."""
    target, spacing = _checked(target, spacing)
    nearest = ndimage.distance_transform_edt(~target, sampling=tuple(spacing),
                                             return_distances=False, return_indices=True)
    return nearest, spacing


def _squared_slabs(nearest: np.ndarray, spacing: np.ndarray):
    """Yield ``(planes, squared microns)`` for slabs of planes, from the feature transform.

    No square roots, and never a float array of the whole volume.
    """
    n_z, n_y, n_x = nearest.shape[1:]
    per = max(1, _SLAB_VOXELS // (n_y * n_x))
    rows, columns = np.arange(n_y).reshape(-1, 1), np.arange(n_x)
    for z0 in range(0, n_z, per):
        planes = slice(z0, min(n_z, z0 + per))
        squared = np.square((nearest[0, planes] - np.arange(z0, planes.stop).reshape(-1, 1, 1))
                            * spacing[0])
        squared += np.square((nearest[1, planes] - rows) * spacing[1])
        squared += np.square((nearest[2, planes] - columns) * spacing[2])
        yield planes, squared


#: Voxels (of the box the transforms cover) per thread: smaller images use fewer threads,
#: since starting threads costs more there than it saves.
_VOXELS_PER_THREAD = 1 << 22
#: Largest table of bins by offset (entries) :func:`_counts` builds; past it
#: (thresholds of tens of microns) each voxel's squared distance is binned directly.
_MAX_TABLE = 1 << 22
#: Bands of rows per thread in which :func:`_counts` transforms and combines the planes,
#: with two threads or more: more than one evens out the threads' shares.
_BANDS_PER_THREAD = 4
#: Largest in-plane offsets of one band (every plane holding a target) a thread holds, bytes:
#: the bands are made thinner on wide stacks with many target planes.
_BAND_BYTES = 1 << 25


def _bounding_box(mask: np.ndarray) -> tuple[slice, slice, slice]:
    """The smallest box holding every True voxel of a (Z, Y, X) mask with one.

    Examples
    --------
    >>> mask = np.zeros((3, 4, 5), dtype=bool); mask[1, 2, 1:4] = True
    >>> _bounding_box(mask)
    (slice(1, 2, None), slice(2, 3, None), slice(1, 4, None))
    """
    columns = mask.any(axis=0)  # two passes over the volume, not a label image's search
    axes = (mask.reshape(mask.shape[0], -1).any(axis=1), columns.any(axis=1), columns.any(axis=0))
    return tuple(slice(int(i[0]), int(i[-1]) + 1) for i in map(np.flatnonzero, axes))


class _TargetPlanes(NamedTuple):
    """A target as the pixels of each plane holding one, in a box: what :func:`_counts`
    transforms (never a volume of the target)."""

    shape: tuple[int, int, int]  # the box's (Z, Y, X)
    sources: np.ndarray  # the planes holding a target voxel, increasing (int64)
    starts: np.ndarray  # pixels[starts[i]:starts[i + 1]] are plane sources[i]'s
    pixels: np.ndarray  # y * X + x of each target voxel, plane after plane (int64)

    def dense(self) -> np.ndarray:
        """The target as a bool (Z, Y, X) array of the box."""
        target = np.zeros(self.shape, dtype=bool)
        plane = self.shape[1] * self.shape[2]
        planes = np.repeat(self.sources, np.diff(self.starts))
        target.reshape(-1)[planes * plane + self.pixels] = True
        return target


def _crop(coordinates, shape, region, spacing, squared_threshold: float):
    """The target's planes and the region, cut to the box where a voxel can lie within the
    threshold of a target.

    `coordinates` are the target voxels' (z, y, x), in the order of their flat
    indices. A voxel more than the threshold from every target voxel counts in no bin,
    and a target voxel more than the threshold from every region voxel sets no distance
    that counts: the box is the target's bounding box grown by the threshold along
    each axis, cut to the region's bounding box grown the same way. Exact: every
    pair (region voxel, target voxel) within the threshold lies in it, so each
    counted voxel's nearest target voxel is in it too. None when no region voxel
    can be within the threshold.
    """
    if region is not None and not region.any():
        return None
    reach = np.floor(np.sqrt(squared_threshold) / spacing).astype(np.int64) + 1
    target_box = tuple(slice(int(c.min()), int(c.max()) + 1) for c in coordinates)
    boxes = [target_box] + ([] if region is None else [_bounding_box(region)])
    low = np.max([[max(0, b.start - r) for b, r in zip(box, reach)] for box in boxes], axis=0)
    high = np.min([[min(n, b.stop + r) for b, r, n in zip(box, reach, shape)]
                   for box in boxes], axis=0)
    if np.any(high <= low):  # the region is beyond the threshold of every target
        return None
    box = tuple(slice(int(lo), int(hi)) for lo, hi in zip(low, high))
    inside = np.ones(coordinates[0].size, dtype=bool)
    for c, b, lo, hi in zip(coordinates, target_box, low, high):
        if lo > b.start or hi < b.stop:  # the box cuts the target's
            inside &= (c >= lo) & (c < hi)
    if not inside.any():  # no target voxel within reach of the region
        return None
    z, y, x = (c[inside] - lo for c, lo in zip(coordinates, low))
    size = tuple(int(n) for n in high - low)
    first = np.flatnonzero(np.diff(z, prepend=-1))  # z does not decrease: planes in order
    planes = _TargetPlanes(size, z[first].astype(np.int64),
                           np.append(first, z.size).astype(np.int64),
                           (y * size[2] + x).astype(np.int64))
    return planes, None if region is None else region[box]


def _counts(target: _TargetPlanes, spacing, edges: np.ndarray, region,
            threads: int = 1) -> np.ndarray:
    """Voxels (of the region) per bin: bin i holds squared distances in (edges[i-1], edges[i]].

    Separable and exact: the nearest target voxel of a voxel at plane z is, over
    the planes s holding a target, the best of each plane's nearest target voxel
    in 2D plus the squared step between planes. Each plane holding a target
    gets its in-plane offsets to its nearest target pixel
    (:func:`rna_localization._envelopes.plane_offsets`); along each column
    (y, x) the best plane for every z is then the lower envelope of one
    parabola ``F_s + w_z (z - s)²`` per plane holding a target, ``F_s`` its
    in-plane squared distance (:func:`rna_localization._envelopes.column_counts`),
    both in bands of rows (a band's offsets depend only on the target pixels
    up to the lateral reach beyond it). Both are compiled loops, each thread
    taking its bands one after the other. A voxel's squared distance depends
    only on its offset from its nearest target voxel (|dz|, |dy|, |dx|): the
    bin of every offset within
    the threshold is computed once into a table; the voxels are counted per
    offset (along a column, the planes nearest to one plane holding a target
    have |dz| running up or down by one: a run each), and each offset's count
    goes to its bin; offsets past the threshold index entries counted in no bin. With
    square pixels, every in-plane comparison is between whole numbers of
    squared pixels, exact in float64.

    Memory, per thread and reused from band to band: one band's in-plane
    offsets in every plane holding a target (2 bytes a voxel; 4 past lateral
    thresholds of about 16 µm at 0.065 µm; at most :data:`_BAND_BYTES`), and
    the band's rows with the reach either side, as distances along y and
    target pixels (5 bytes a pixel); the target itself is its voxels' pixels,
    plane by plane (:class:`_TargetPlanes`), never a volume.

    Falls back to one 3D feature transform (:func:`_feature_transform`) and a
    bin search per voxel when that table would pass :data:`_MAX_TABLE` entries
    (thresholds of tens of microns).
    """
    from ._envelopes import column_counts, plane_offsets  # compiled on first use (numba)

    shape = target.shape
    reach = [int(r) for r in np.minimum(np.floor(np.sqrt(edges[-1]) / spacing) + 1,
                                         np.array(shape) - 1)]
    # Offsets 0 .. r + 1 are tabled; r is past the threshold already, and r + 1 caps
    # every offset farther (whatever the rounding of r).
    size = [r + 2 for r in reach]
    counts = np.zeros(edges.size + 1, dtype=np.int64)
    if int(np.prod(size)) > _MAX_TABLE:
        nearest, spacing = _feature_transform(target.dense(), spacing)
        for planes, squared in _squared_slabs(nearest, spacing):
            values = squared[region[planes]] if region is not None else squared.ravel()
            values = values[values <= edges[-1]]  # beyond the threshold: in no count
            counts += np.bincount(np.searchsorted(edges, values, side="left"),
                                  minlength=edges.size + 1)
        return counts
    n_z, n_y, n_x = shape
    threads = max(1, min(threads, int(np.prod(shape)) // _VOXELS_PER_THREAD))
    sources = target.sources
    # In-plane offsets (|dy|, |dx|) as |dy| * size_x + |dx|, and their squared microns.
    dy, dx = np.arange(size[1]).reshape(-1, 1), np.arange(size[2])
    if spacing[1] == spacing[2]:  # whole squared pixels, then microns: exact comparisons
        weights = (1.0, 1.0)
        in_plane = ((dy * dy + dx * dx) * (spacing[1] * spacing[1])).ravel()
    else:
        weights = (spacing[1] ** 2, spacing[2] ** 2)
        in_plane = (np.square(dy * spacing[1]) + np.square(dx * spacing[2])).ravel()
    offset_type = np.min_scalar_type(in_plane.size - 1)
    # The bin of every (|dz|, in-plane offset) pair, flat: a voxel's exact squared distance.
    along_z = np.square(np.arange(size[0]) * spacing[0])
    table = np.searchsorted(edges, (along_z.reshape(-1, 1) + in_plane).ravel(), side="left")
    table = table.astype(np.uint16 if edges.size < np.iinfo(np.uint16).max else np.int64)
    mask = region if region is not None else np.zeros((1, 1, 1), dtype=bool)
    # Bands of rows: a band's offsets (every plane holding a target) depend only on the
    # target pixels up to `cap_y` rows beyond it, so each thread transforms its bands one
    # after the other into one buffer, never the offsets of whole planes. Each band pays
    # for its margins: one thread takes bands as tall as the memory allows, several take
    # _BANDS_PER_THREAD each at least, to share the rows evenly.
    cap_y = reach[1] + 1
    even = -(-n_y // (threads * _BANDS_PER_THREAD)) if threads > 1 else n_y
    per_band = max(1, min(even, _BAND_BYTES // (sources.size * n_x * offset_type.itemsize)))
    bands = [(y0, min(n_y, y0 + per_band)) for y0 in range(0, n_y, per_band)]
    # The target pixels of plane i in rows a .. b - 1 are pixels[row_starts[i, a]:row_starts[i, b]].
    row_starts = np.stack([np.searchsorted(target.pixels[start:stop], np.arange(n_y + 1) * n_x)
                           + start for start, stop in zip(target.starts[:-1], target.starts[1:])])

    def thread_counts(group: list[tuple[int, int]]) -> np.ndarray:
        found = np.zeros(edges.size + 1, dtype=np.int64)
        rows = min(n_y, per_band + 2 * cap_y)  # a band and the rows either side it needs
        plane = np.zeros((rows, n_x), dtype=bool)
        offsets = np.empty((sources.size, per_band, n_x), dtype=offset_type)
        scratch = (np.empty((rows, n_x), np.int32), np.empty(n_x, np.int64),
                   np.empty(n_x, np.int64), np.empty((n_x + 1, 3)))
        hull = np.empty(sources.size, np.int64), np.empty(sources.size + 1)
        for y0, y1 in group:
            low, high = max(0, y0 - cap_y), min(n_y, y1 + cap_y)
            pixels = plane[:high - low].reshape(-1)
            for i in range(sources.size):
                held = target.pixels[row_starts[i, low]:row_starts[i, high]] - low * n_x
                pixels[held] = True
                plane_offsets(plane[:high - low], weights[0], weights[1], cap_y, reach[2] + 1,
                              reach[2] + 2, offsets[i, :y1 - y0], scratch[0][:high - low],
                              *scratch[1:], y0 - low)
                pixels[held] = False
            column_counts(offsets, sources, in_plane, float(spacing[0] ** 2), float(edges[-1]),
                          table, reach[0], n_z, mask, region is not None, y0, y1, y0, found,
                          *hull)
        return found

    for part in in_threads(thread_counts, [bands[i::threads] for i in range(threads)], threads):
        counts += part
    return counts


def distance_to_target(target, spacing) -> np.ndarray:
    """Microns from every voxel centre to the nearest target voxel centre (0 inside it).

    Parameters
    ----------
    target : (Z, Y, X) array-like
        Non-zero where the target structure is.
    spacing : float or sequence of 3 floats
        Microns per voxel along (z, y, x).

    Returns
    -------
    (Z, Y, X) ndarray of float64

    Examples
    --------
    >>> target = np.zeros((1, 1, 4), dtype=bool); target[0, 0, 0] = True
    >>> distance_to_target(target, (1.0, 1.0, 0.5))
    array([[[0. , 0.5, 1. , 1.5]]])
    """
    nearest, spacing = _feature_transform(target, spacing)
    return np.concatenate([np.sqrt(squared) for _, squared in _squared_slabs(nearest, spacing)])


def expected_cumulative_distribution(target, spacing, distances, *, region=None,
                                     workers: int | None = None) -> np.ndarray:
    """Percent of uniformly spread RNA within each distance of the target.

    With ``D`` the distance of each voxel of the region to the target
    (:func:`distance_to_target`) and ``t = distances[-1]`` the distance
    threshold, ``expected(d) = 100 · #{D ≤ d} / #{D ≤ t}``: the same
    definition as the observed ``percent_total_rna``, whose denominator is
    the RNA within the threshold, so the curve is 100 at ``t``.

    The pipeline computes it in the distances step, for the distances the
    image's cumulative distribution will have, and stores it with the
    distances (:func:`rna_localization.steps.measure_distances`). Memory:
    per thread, a band of rows of every plane holding a target, at 2 bytes a
    voxel (4 past lateral thresholds of about 16 µm at 0.065 µm) and at most
    :data:`_BAND_BYTES` (32 MiB); with a threshold of tens of microns, a 3D
    transform: 12 bytes a voxel.

    Parameters
    ----------
    target : (Z, Y, X) array-like
        Non-zero where the target structure (structure_2) is.
    spacing : float or sequence of 3 floats
        Microns per voxel along (z, y, x).
    distances : (N,) array-like
        Increasing distances in microns; the last is the threshold.
    region : (Z, Y, X) array-like, optional
        Non-zero where RNA could be (e.g. the embryo); default the whole volume.
    workers : int, optional
        Threads for the transforms and envelopes; None (the default) uses
        every core this process may run on (:func:`usable_cores`). At most one
        per :data:`_VOXELS_PER_THREAD` voxels of the box transformed.

    Returns
    -------
    (N,) ndarray
        Percent at each distance.

    Examples
    --------
    >>> target = np.zeros((1, 1, 5), dtype=bool); target[0, 0, 0] = True
    >>> expected_cumulative_distribution(target, 1.0, [0.0, 1.0, 2.0, 4.0])
    array([ 20.,  40.,  60., 100.])
    """
    edges = _squared_edges(distances)
    distances = np.asarray(distances, dtype=np.float64)
    target, spacing = _checked(target, spacing)
    if region is not None:
        region = np.asarray(region) != 0
        if region.shape != target.shape:
            msg = f"the region has shape {region.shape}, the target {target.shape}: they must match."
            raise ValueError(msg)
    return _percent_within(np.nonzero(target), target.shape, spacing, distances, edges, region,
                           workers)


def _squared_edges(distances) -> np.ndarray:
    """The bins' upper edges in squared microns, from the distances (checked)."""
    distances = np.asarray(distances, dtype=np.float64)
    if (distances.ndim != 1 or distances.size == 0 or np.any(np.diff(distances) <= 0)
            or not distances[0] >= 0):
        msg = ("distances must be a non-empty, strictly increasing 1-D sequence of microns, "
               "none negative.")
        raise ValueError(msg)
    # A voxel exactly at a distance counts as within it, as an object does; a hair of
    # tolerance makes 3 · 0.05 be 0.15. Compared squared: no square root per voxel.
    edges = distances * (1 + 1e-9) + 1e-12
    return edges * edges


def _percent_within(coordinates, shape, spacing, distances, edges, region,
                    workers) -> np.ndarray:
    """:func:`expected_cumulative_distribution` of the target voxels at `coordinates`
    ((z, y, x), in the order of their flat indices) in a stack of `shape`; `edges` are
    :func:`_squared_edges` of `distances`."""
    cropped = _crop(coordinates, shape, region, spacing, edges[-1])
    if cropped is None:
        within = np.zeros(1)
    else:
        threads = thread_count(workers)
        within = np.cumsum(_counts(cropped[0], spacing, edges, cropped[1], threads)[:edges.size])
    if within[-1] == 0:
        msg = f"no voxel of the region is within {distances[-1]} µm of the target."
        raise ValueError(msg)
    return 100.0 * within / within[-1]


def _mask(label_image) -> np.ndarray:
    """Where the labels are positive, as a bool (Z, Y, X) array; from object voxels directly.

    Examples
    --------
    >>> _mask(ObjectVoxels((1, 1, 3), np.array([2]), np.array([5], np.uint8)))
    array([[[False, False,  True]]])
    """
    if isinstance(label_image, ObjectVoxels):  # unsigned labels: non-zero is positive
        return label_image.to_label_image(bool)
    return np.asarray(label_image) > 0


def image_baseline(target_labels, spacing, distances, *, region_labels=None,
                   workers: int | None = None) -> np.ndarray | None:
    """:func:`expected_cumulative_distribution` of one image's label images, or None.

    None when the image has no target object, when a region is asked for and
    it has no object, or when no region voxel lies within the threshold: the
    image has no chance baseline (the callers name it in a warning).

    Parameters
    ----------
    target_labels : (Z, Y, X) ndarray, or ObjectVoxels
        structure_2's label image, or its object voxels (what the database
        stores: used as they are, with no volume built).
    spacing : sequence of 3 floats
        Microns per voxel (z, y, x).
    distances : (N,) array-like
        As :func:`expected_cumulative_distribution`.
    region_labels : (Z, Y, X) ndarray, or ObjectVoxels, optional
        The region's label image (or object voxels); None: the whole volume.
    workers : int, optional
        As :func:`expected_cumulative_distribution`.

    Examples
    --------
    >>> image_baseline(np.zeros((3, 3, 3), int), 1.0, [0.0, 1.0]) is None
    True
    """
    if isinstance(target_labels, ObjectVoxels):  # the stored voxels: no volume built
        shape, voxels = tuple(target_labels.shape), target_labels.voxels
        coordinates = np.unravel_index(voxels[target_labels.labels != 0], shape)
    else:
        labels = np.asarray(target_labels)
        shape, coordinates = labels.shape, np.nonzero(labels > 0)
    if len(shape) != 3 or coordinates[0].size == 0:
        return None
    region = None if region_labels is None else _mask(region_labels)
    if region is not None and (not region.any() or region.shape != shape):
        return None
    try:
        edges = _squared_edges(distances)
        return _percent_within(coordinates, shape, _checked_spacing(spacing),
                               np.asarray(distances, dtype=np.float64), edges, region, workers)
    except ValueError:  # no voxel of the region within the threshold of the target
        return None
