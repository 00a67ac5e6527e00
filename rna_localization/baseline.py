"""The chance baseline: the cumulative distribution of RNA spread uniformly.

If an image's RNA were spread uniformly over its volume (or over a region,
e.g. the embryo or the cytoplasm), the fraction of it within ``d`` of the
target structure would be the fraction of the volume's voxels within ``d``.
That fraction is computed exactly, from the Euclidean distance transform to
the target with the image's anisotropic voxel size, not from random draws:
2D transforms of the planes holding a target (squared offsets in whole
pixels, integers, by ``edt``), combined along each column (y, x) by the lower
envelope of one parabola per plane (linear in the volume), within the box
where a voxel can be within the threshold, the envelopes on every core the
process may use (:func:`_counts`). Each voxel's bin then comes from its offset to its nearest
target voxel through a table of exact bins: no distance is rounded on the way.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import edt
import numpy as np
from scipy import ndimage

from ._cores import usable_cores
from .objects import ObjectVoxels

__all__ = ["distance_to_target", "expected_cumulative_distribution", "image_baseline"]


#: Voxels whose squared distances are held at once (planes of the stack at a time): the
#: only whole-volume arrays are then the target and its feature transform (12 bytes a voxel).
_SLAB_VOXELS = 1 << 20


def _checked(target, spacing) -> tuple[np.ndarray, np.ndarray]:
    """The target as a (Z, Y, X) bool array with a voxel, and the spacing as 3 positive floats."""
    target = np.asarray(target)
    if target.dtype != bool:  # a mask already (image_baseline's) needs no second pass
        target = target != 0
    if target.ndim != 3:
        msg = f"the target must be a (Z, Y, X) stack; got {target.ndim} dimension(s)."
        raise ValueError(msg)
    if not target.any():
        msg = "the target has no voxel: an image without a target object has no chance baseline."
        raise ValueError(msg)
    spacing = np.broadcast_to(np.asarray(spacing, dtype=np.float64), (3,))
    if not np.all(spacing > 0):
        msg = f"spacing must be positive microns per voxel (z, y, x); got {tuple(spacing)}."
        raise ValueError(msg)
    return target, spacing


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
#: since starting threads and sharing one interpreter cost more there than they save.
_VOXELS_PER_THREAD = 1 << 24
#: Largest table of bins by per-axis offset (entries) :func:`_counts` builds; past it
#: (thresholds of tens of microns) each voxel's squared distance is binned directly.
_MAX_TABLE = 1 << 22
#: Entries (planes x columns) of the arrays :func:`_counts` combines the planes in at
#: once (rows of the stack at a time; each array 8 bytes an entry): 16 MB each.
_CHUNK_ENTRIES = 1 << 21


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


def _crop(target: np.ndarray, region, spacing, squared_threshold: float):
    """Target and region cut to the box where a voxel can lie within the threshold of a target.

    A voxel more than the threshold from every target voxel counts in no bin, and
    a target voxel more than the threshold from every region voxel sets no distance
    that counts: the box is the target's bounding box grown by the threshold along
    each axis, cut to the region's bounding box grown the same way. Exact: every
    pair (region voxel, target voxel) within the threshold lies in it, so each
    counted voxel's nearest target voxel is in it too. None when no region voxel
    can be within the threshold.
    """
    if region is not None and not region.any():
        return None
    reach = np.floor(np.sqrt(squared_threshold) / spacing).astype(np.int64) + 1
    boxes = [_bounding_box(target)] + ([] if region is None else [_bounding_box(region)])
    low = np.max([[max(0, b.start - r) for b, r in zip(box, reach)] for box in boxes], axis=0)
    high = np.min([[min(n, b.stop + r) for b, r, n in zip(box, reach, target.shape)]
                   for box in boxes], axis=0)
    if np.any(high <= low):  # the region is beyond the threshold of every target
        return None
    box = tuple(slice(int(lo), int(hi)) for lo, hi in zip(low, high))
    if not target[box].any():  # no target voxel within reach of the region
        return None
    return target[box], None if region is None else region[box]


def _scratch(work: dict, name: str, shape, dtype) -> np.ndarray:
    """An uninitialized array kept in `work` under `name`, grown when too small.

    The chunks of :func:`_counts` reuse their arrays: fresh memory of that size
    costs the kernel a page fault per 4 KiB on first touch, which was a third
    of the time of the lower envelopes.

    Examples
    --------
    >>> work = {}
    >>> _scratch(work, "a", (2, 3), np.int32).shape, _scratch(work, "a", 4, np.int32).shape
    ((2, 3), (4,))
    >>> work["a"].size
    6
    """
    size = int(np.prod(shape))
    kept = work.get(name)
    if kept is None or kept.size < size or kept.dtype != dtype:
        kept = work[name] = np.empty(size, dtype=dtype)
    return kept[:size].reshape(shape)


def _nearest_planes(values: np.ndarray, planes: np.ndarray, weight: float, depth: int,
                    limit: float, work: dict | None = None) -> np.ndarray:
    """Per column, the source minimizing ``values[i] + weight · (z - planes[i])²`` at each z.

    The lower envelope of one parabola per source plane along each column
    (Felzenszwalb & Huttenlocher's 1-D distance transform), built for all
    columns at once: sources are added in order of plane, each popping the
    envelope's last parabolas while it is lower where they begin. Every column's
    last parabola is also kept in dense arrays, so each source is compared with
    it in whole-array operations; the pops repeat only over the columns still
    popping. A source whose value passes `limit` is left out of its column: it
    is the minimum only of sums past the limit, so a sum within the limit keeps
    its minimum and its minimizer.

    Parameters
    ----------
    values : (P, C) ndarray of float64
        Per source (a plane holding a target) and column.
    planes : (P,) ndarray of int
        The sources' planes, strictly increasing.
    weight : float
        Squared microns of one plane step.
    depth : int
        Planes z = 0 ... depth - 1 to answer for.
    limit : float
        Sums past it need no minimizer.
    work : dict, optional
        Arrays kept from an earlier call (:func:`_scratch`), reused instead of
        fresh memory; the result is one of them, valid until the next call.

    Returns
    -------
    (depth, C) ndarray of int32 (intp past 2**31 entries)
        The index (into `planes`) of a minimizing source for each plane and
        column, -1 where the column has no source within the limit.

    Examples
    --------
    >>> values = np.array([[0.0, 9.0], [0.5, 9.0]])
    >>> _nearest_planes(values, np.array([0, 3]), 1.0, 4, limit=4.0)
    array([[ 0, -1],
           [ 0, -1],
           [ 1, -1],
           [ 1, -1]], dtype=int32)
    """
    n_sources, n_columns = values.shape
    work = {} if work is None else work
    within = np.less_equal(values, limit, out=_scratch(work, "within", values.shape, bool))
    shifted = np.add(values, weight * np.square(planes.astype(np.float64)).reshape(-1, 1),
                     out=_scratch(work, "shifted", values.shape, np.float64))
    # The envelope of each column, by level (flat: level * C + column): its sources
    # and where each starts to be the lowest; `top` its last level (-1: none yet).
    # The last level's plane, shifted value and start are also kept per column
    # (dense): most sources compare with the last level only, without gathers.
    index = np.int32 if n_sources * max(n_columns, depth) < 1 << 31 else np.intp  # half the bytes
    hull = _scratch(work, "hull", n_sources * n_columns, index)
    begin = _scratch(work, "begin", n_sources * n_columns, np.float64)
    top = np.full(n_columns, -1, dtype=index)
    last_plane = np.full(n_columns, -1.0)
    last_shifted = np.zeros(n_columns)
    last_begin = np.full(n_columns, -np.inf)  # no level: never popped
    cross = np.empty(n_columns)
    for source in range(n_sources):
        adding = within[source]
        own = shifted[source]
        plane = float(planes[source])
        # Where the source's parabola starts to be lower than the last level's.
        np.subtract(own, last_shifted, out=cross)
        cross /= 2 * weight * (plane - last_plane)
        popped = np.flatnonzero(adding & (cross <= last_begin))
        while popped.size:  # those pop their last level and compare with the one below
            level = top[popped] - 1  # never below 0: the first level begins at -inf
            top[popped] = level
            at = level * n_columns + popped
            below = hull[at]
            last_plane[popped] = planes[below]
            last_shifted[popped] = shifted[below, popped]
            last_begin[popped] = begin[at]
            start = (own[popped] - last_shifted[popped]) / (2 * weight * (plane - last_plane[popped]))
            cross[popped] = start
            again = start <= last_begin[popped]
            popped = popped[again]
        cross[top < 0] = -np.inf  # a column's first source is the lowest everywhere so far
        added = np.flatnonzero(adding)
        level = top[added] + 1
        top[added] = level
        at = level * n_columns + added
        hull[at] = source
        begin[at] = cross[added]
        last_plane[added] = plane
        last_shifted[added] = own[added]
        last_begin[added] = cross[added]
    # Each level is the lowest from its first whole plane on, until a later one begins;
    # sources increase with the level, so a running maximum fills the planes between.
    nearest = _scratch(work, "nearest", depth * n_columns, index)  # flat: z * C + column
    nearest.fill(-1)
    used = np.flatnonzero(top >= 0)
    nearest[used] = hull[used]  # the first level begins at -inf
    used = used[top[used] > 0]
    for level in range(1, int(top.max()) + 1):
        at = used + level * n_columns
        start = begin[at]
        inside = start <= depth - 1
        start = np.maximum(np.ceil(start[inside]), 0).astype(index)
        start *= n_columns
        start += used[inside]
        nearest[start] = hull[at[inside]]
        used = used[top[used] > level]
    nearest = nearest.reshape(depth, n_columns)
    for z in range(1, depth):
        np.maximum(nearest[z - 1], nearest[z], out=nearest[z])
    return nearest


def _counts(target: np.ndarray, spacing, edges: np.ndarray, region, threads: int = 1) -> np.ndarray:
    """Voxels (of the region) per bin: bin i holds squared distances in (edges[i-1], edges[i]].

    Separable and exact: the nearest target voxel of a voxel at plane z is, over
    the planes s holding a target, the best of each plane's nearest target voxel
    in 2D plus the squared step between planes. Each plane's 2D transform is
    cheap, and only planes with a target are transformed (:func:`_plane_offsets`:
    with square pixels, ``edt``'s squared transform in whole pixels, whose
    values within the threshold are exact integers). Along each column (y, x)
    the best plane for every z is then the lower envelope of one parabola
    ``F_s + w_z (z - s)²`` per plane holding a target, ``F_s`` its in-plane
    squared distance (:func:`_nearest_planes`): linear in the volume, in chunks of rows (on `threads` threads, each reusing
    its arrays). A voxel's squared distance depends only on its offset from its
    nearest target voxel (|dz| and the in-plane offset: ``dy² + dx²`` with
    square pixels, else (|dy|, |dx|)): the bin of every offset within the
    threshold is computed once into a table that each voxel's offset indexes;
    offsets past the threshold index entries counted in no bin.

    Memory: the in-plane offsets of the planes holding a target (2 bytes a voxel
    of each; 4 past lateral thresholds of about 16 µm at 0.065 µm), and each
    thread's arrays for a chunk (:data:`_CHUNK_ENTRIES`).

    Falls back to one 3D feature transform (:func:`_feature_transform`) and a
    bin search per voxel when that table would pass :data:`_MAX_TABLE` entries
    (thresholds of tens of microns).
    """
    shape = target.shape
    reach = [int(r) for r in np.minimum(np.floor(np.sqrt(edges[-1]) / spacing) + 1,
                                         np.array(shape) - 1)]
    size = [r + 2 for r in reach]  # offset r + 1 stands for every offset past the threshold
    counts = np.zeros(edges.size + 1, dtype=np.int64)
    if int(np.prod(size)) > _MAX_TABLE:
        nearest, spacing = _feature_transform(target, spacing)
        for planes, squared in _squared_slabs(nearest, spacing):
            values = squared[region[planes]] if region is not None else squared.ravel()
            values = values[values <= edges[-1]]  # beyond the threshold: in no count
            counts += np.bincount(np.searchsorted(edges, values, side="left"),
                                  minlength=edges.size + 1)
        return counts
    n_z, n_y, n_x = shape
    threads = max(1, min(threads, target.size // _VOXELS_PER_THREAD))
    sources = np.flatnonzero(target.any(axis=(1, 2)))
    offsets, in_plane = _plane_offsets(target, sources, spacing, reach, edges, threads)
    # The bin of every (|dz|, in-plane offset) pair, flat; one more dz row, counted
    # nowhere: for the voxels of a column without a target in reach.
    along_z = np.square(np.arange(size[0]) * spacing[0])
    table = np.append(np.searchsorted(edges, (along_z.reshape(-1, 1) + in_plane).ravel(),
                                      side="left"),
                      np.full(in_plane.size, edges.size)).astype(np.min_scalar_type(edges.size))
    # The table's dz part of each (plane, source) pair, flat, past the reach clipped,
    # and a last column, the row counted nowhere, for source -1 (none within the
    # threshold): row z's -1 lands on row z - 1's last column. At plane 0 it is clipped
    # to (plane 0, first source) instead; that voxel counts nowhere all the same, since
    # its column's in-plane offsets (the last source's are added) are all past the threshold.
    dz = np.minimum(np.abs(np.arange(n_z).reshape(-1, 1) - sources), reach[0] + 1)
    dz = (np.append(dz, np.full((n_z, 1), size[0]), axis=1) * in_plane.size).ravel()
    source_rows = np.arange(0, n_z * (sources.size + 1), sources.size + 1).reshape(-1, 1)

    local = threading.local()  # each thread's arrays, reused from chunk to chunk

    def chunk_counts(chunk: slice) -> np.ndarray:
        work = local.__dict__
        offset = offsets[:, chunk].reshape(sources.size, -1)
        n_columns = offset.shape[1]
        values = np.take(in_plane, offset, out=_scratch(work, "values", offset.shape, np.float64),
                         mode="clip")  # "raise" would copy through a buffer
        best = _nearest_planes(values, sources, along_z[1], n_z, edges[-1], work)
        # Source -1 takes the last source's offsets (any will do: all are past the
        # threshold) and the dz row of none (at plane 0, the first source's: see dz).
        index = _scratch(work, "index", best.shape, np.intp)
        np.take(dz, np.add(best, source_rows, out=index), out=index, mode="clip")
        best *= n_columns
        best += np.arange(n_columns)
        index += np.take(offset.ravel(), best, out=_scratch(work, "picked", best.shape, offset.dtype),
                         mode="wrap")  # source -1: the last source's offsets
        bins = table[index[region[:, chunk].reshape(n_z, -1)] if region is not None
                     else index.ravel()]
        return np.bincount(bins, minlength=edges.size + 1)

    per = max(1, _CHUNK_ENTRIES // (max(n_z, sources.size) * n_x))  # rows at a time
    chunks = [slice(y0, min(n_y, y0 + per)) for y0 in range(0, n_y, per)]
    for part in _in_threads(chunk_counts, chunks, threads):
        counts += part
    return counts


def _plane_offsets(target: np.ndarray, sources: np.ndarray, spacing, reach, edges, threads: int):
    """Each plane holding a target: its voxels' in-plane offset to that plane's nearest target voxel.

    Returns ``(offsets, in_plane)``: offsets (sources, Y, X) index `in_plane`, the
    squared microns of each in-plane offset; every offset past the threshold
    indexes an entry past it. With square pixels (``spacing[1] == spacing[2]``)
    the index is the squared offset in pixels ``dy² + dx²``, from one squared
    transform of integers per plane (``edt``, unit pixels: every value within
    the threshold is an integer below 2**24, exact in its float32 output, and
    its lower envelopes compare exact integers in float64; `in_plane` ends at
    the threshold or past the plane's diagonal, whichever comes first: no
    offset in the plane passes the diagonal, and a longer table would grow with
    the threshold alone); otherwise it is ``|dy| · (reach_x + 2) + |dx|``, from
    scipy's feature transform.
    """
    n_y, n_x = target.shape[1:]
    square = spacing[1] == spacing[2]
    if square:
        pixel = spacing[1] * spacing[1]
        past = int(edges[-1] / pixel)  # the least squared offset past the threshold
        while past * pixel <= edges[-1]:
            past += 1
        # No offset in the plane passes its diagonal: a table past it (here and in
        # _counts, one entry per offset and dz) would grow with the threshold alone.
        past = min(past, (n_y - 1) ** 2 + (n_x - 1) ** 2 + 1)
        square = past < 1 << 24
    if square:
        in_plane = np.arange(past + 1) * pixel
        dtype = np.min_scalar_type(past)

        def transform(i):  # one plane at a time: edt holds the GIL, and its own threads
            # (parallel=2) made a full frame slower on a shared 2-core machine
            squared = edt.edtsq(~target[sources[i]], anisotropy=(1.0, 1.0), black_border=False)
            np.minimum(squared, past, out=squared)
            offsets[i] = squared
    else:
        size_y, size_x = reach[1] + 2, reach[2] + 2
        in_plane = (np.square(np.arange(size_y) * spacing[1]).reshape(-1, 1)
                    + np.square(np.arange(size_x) * spacing[2])).ravel()
        dtype = np.min_scalar_type(in_plane.size - 1)
        rows = np.arange(n_y, dtype=np.int32).reshape(-1, 1)
        columns = np.arange(n_x, dtype=np.int32)

        def transform(i):
            nearest = ndimage.distance_transform_edt(~target[sources[i]], sampling=spacing[1:],
                                                     return_distances=False, return_indices=True)
            dy, dx = nearest[0], nearest[1]
            dy -= rows
            dx -= columns
            np.minimum(np.abs(dy, out=dy), reach[1] + 1, out=dy)
            np.minimum(np.abs(dx, out=dx), reach[2] + 1, out=dx)
            dy *= size_x
            dy += dx
            offsets[i] = dy
    offsets = np.empty((sources.size, n_y, n_x), dtype=dtype)
    _in_threads(transform, range(sources.size), 1 if square else threads)
    return offsets, in_plane


def _in_threads(function, items, threads: int) -> list:
    """``[function(item) for item in items]``, on up to `threads` threads."""
    items = list(items)
    if threads <= 1 or len(items) <= 1:
        return [function(item) for item in items]
    with ThreadPoolExecutor(min(threads, len(items))) as pool:
        return list(pool.map(function, items))


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
    2 bytes a voxel of each plane holding a target (4 past lateral thresholds
    of about 16 µm at 0.065 µm), and a few rows' worth
    (with a threshold of tens of microns, a 3D transform: 12 bytes a voxel).

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
        Threads for the envelopes (and for scipy's transforms, with pixels
        that are not square); None (the default) uses
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
    distances = np.asarray(distances, dtype=np.float64)
    if (distances.ndim != 1 or distances.size == 0 or np.any(np.diff(distances) <= 0)
            or not distances[0] >= 0):
        msg = ("distances must be a non-empty, strictly increasing 1-D sequence of microns, "
               "none negative.")
        raise ValueError(msg)
    target, spacing = _checked(target, spacing)
    if region is not None:
        region = np.asarray(region) != 0
        if region.shape != target.shape:
            msg = f"the region has shape {region.shape}, the target {target.shape}: they must match."
            raise ValueError(msg)
    # A voxel exactly at a distance counts as within it, as an object does; a hair of
    # tolerance makes 3 · 0.05 be 0.15. Compared squared: no square root per voxel.
    edges = distances * (1 + 1e-9) + 1e-12
    edges *= edges
    cropped = _crop(target, region, spacing, edges[-1])
    if cropped is None:
        within = np.zeros(1)
    else:
        threads = usable_cores() if workers is None else max(1, int(workers))
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
        stores: they become a bool mask directly, 1 byte a voxel).
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
    target = _mask(target_labels)
    if not target.any():
        return None
    region = None if region_labels is None else _mask(region_labels)
    if region is not None and not region.any():
        return None
    try:
        return expected_cumulative_distribution(target, spacing, distances, region=region,
                                                workers=workers)
    except ValueError:  # no voxel of the region within the threshold of the target
        return None
