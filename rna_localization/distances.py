"""Exact nearest-object distances between two label images.

Pure array functions: nothing here reads files or talks to the database.

Why only boundary voxels are compared
-------------------------------------
Let voxel ``a`` of object A be nearest to voxel ``t`` of target object T, with
``a != t``. If all six face neighbours of ``a`` were in A, the neighbour one
step from ``a`` towards ``t`` along an axis where they differ would be in A and
strictly closer to ``t``, so ``a`` was not nearest. Hence every nearest pair
joins a voxel on A's face boundary to a voxel on T's face boundary (the same
argument from ``t``'s side). Comparing boundary voxels only is therefore exact,
ties included, while cutting the points of a solid object by a large factor.
Overlapping objects (distance 0) are found directly from the shared voxels.
A target without boundary voxels is one object filling the whole stack: every
object overlaps it.

Two ways to the nearest target voxel
------------------------------------
Each source boundary voxel's distance to the nearest target voxel comes
either from a KD-tree of the target boundary voxels (cost grows with the
number of source boundary voxels, and with how far they are from the
targets) or from exact Euclidean distance transforms of the box around
both: a 2D transform of each plane holding a target voxel, read at every
source voxel (cost grows with those planes' area and with the number of
source voxels times those planes, however far the voxels are).
The KD-tree wins on sparse RNA; the transform on tens of thousands of RNA
objects per stack far from large targets. ``method="auto"`` estimates both
costs per image and picks the cheaper; either way the object's minimum and
its tied target voxels (a ball query in the KD-tree) are found the same way.
The KD-tree queries are bounded by each object's distance to one target
voxel near it: voxels farther than that from every target, most of a small
object facing away from the targets, cannot be nearest or tied, and their
searches stop early (see ``_bounded_queries``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import ndimage
from scipy.spatial import cKDTree

from ._cores import usable_cores
from .objects import normalize_spacing

__all__ = ["DISTANCE_COLUMNS", "DISTANCE_METHODS", "nearest_distances", "point_distances"]

#: Columns of :func:`nearest_distances` and their dtypes.
DISTANCE_COLUMNS = {"object_id": "int64", "distance": "float64", "target_id": "Int64"}

#: Ways :func:`nearest_distances` can find each boundary voxel's nearest target voxel.
DISTANCE_METHODS = ("auto", "kdtree", "edt")

# Cost model of the two methods (seconds, from benchmarks/bench_distances.py,
# "method choice"): a KD-tree query costs about _KD_SECONDS per query point and
# per log2 of the target points, times (1 + distance to the target /
# _KD_REACH_UM); the transforms cost _EDT_PLANE_SECONDS per voxel of each plane
# of the box holding a target voxel, plus _EDT_SOURCE_SECONDS per source voxel
# and such plane. Only the ratio of the two matters: the transforms' constants
# were fitted to the KD-tree's (bounded queries, 2 threads) by least squares on
# that table's 16 timings, with one fixed cost shared by both methods, on a quiet
# machine (constants fitted on a loaded one had the transforms 3x too cheap).
_KD_SECONDS = 2.4e-8
_KD_REACH_UM = 1.0
_EDT_PLANE_SECONDS = 2.2e-8
_EDT_SOURCE_SECONDS = 9.4e-9
# A plane's transform holds ~25 bytes per voxel: above this many voxels in a
# plane of the box the KD-tree is used whatever the estimate (about 800 MB).
_EDT_MAX_VOXELS = 1 << 25


def _face_boundary(flat_labels: np.ndarray, voxels: np.ndarray, shape) -> np.ndarray:
    """Those of `voxels` with at least one face neighbour of another label.

    Works on the object voxels only (a few percent of a stack), not the whole
    volume. Neighbours outside the volume do not count: a nearest pair never
    needs them (see the module docstring).

    Parameters
    ----------
    flat_labels : (Z*Y*X,) ndarray of int
        The label image, raveled in C order.
    voxels : (N,) ndarray of int
        Flat indices of its non-zero voxels, ascending.
    shape : tuple of int
        The label image's shape.

    Returns
    -------
    (M,) ndarray of int
        The boundary voxels' flat indices, ascending.
    """
    labels = flat_labels[voxels]
    coords = np.unravel_index(voxels, shape)
    strides = np.cumprod((1, *shape[:0:-1]))[::-1]
    boundary = np.zeros(voxels.size, dtype=bool)
    for axis, (coord, stride) in enumerate(zip(coords, strides)):
        below = np.flatnonzero(coord > 0)
        boundary[below] |= flat_labels[voxels[below] - stride] != labels[below]
        above = np.flatnonzero(coord < shape[axis] - 1)
        boundary[above] |= flat_labels[voxels[above] + stride] != labels[above]
    return voxels[boundary]


def _group_starts(sorted_keys: np.ndarray) -> np.ndarray:
    return np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])


def nearest_distances(
    label_image: np.ndarray,
    target_label_image: np.ndarray,
    spacing=1.0,
    *,
    tie_rtol: float = 1e-9,
    workers: int | None = None,
    method: str = "auto",
) -> pd.DataFrame:
    """Distance from every object to the nearest object of another label image.

    The distance from object A to the target structure is the minimum
    Euclidean distance, in the units of `spacing`, between the centre of any
    voxel of A and the centre of any voxel of any target object. It is 0 when
    A shares a voxel with a target object. The computation is exact: every
    voxel pair is accounted for (see the module docstring for why comparing
    face-boundary voxels in a KD-tree is enough).

    Parameters
    ----------
    label_image : (Z, Y, X) ndarray of int
        Objects to measure from (e.g. RNA), 0 as background.
    target_label_image : (Z, Y, X) ndarray of int
        Target objects (e.g. centrosomes), same shape.
    spacing : float or (3,) sequence of float
        Voxel size along (z, y, x), e.g. ``(0.2, 0.065, 0.065)`` microns.
    tie_rtol : float
        Target objects whose distance is within this relative tolerance of the
        minimum count as tied (floating-point rounding can split exact ties);
        the smallest target label wins.
    workers : int, optional
        Threads for the KD-tree queries; None (the default) uses every core
        this process may run on (:func:`usable_cores`), -1 every core.
    method : {"auto", "kdtree", "edt"}
        How each boundary voxel's nearest target voxel is found: a KD-tree of
        the targets' boundary voxels, or exact Euclidean distance transforms
        of the box around both images' boundary voxels, one 2D transform per
        plane holding a target voxel (faster for many objects near large
        targets). ``"auto"`` picks the one a cost model
        says is faster for this image. Both are exact; ties are resolved the
        same way, so every method gives the same objects, targets and
        distances (to rounding, 1e-12 relative).

    Returns
    -------
    DataFrame
        One row per object of `label_image`, sorted by ``object_id``:
        ``object_id``, ``distance`` (float64) and ``target_id`` (the nearest
        target's label, nullable Int64). Without any target object, ``distance``
        is NaN and ``target_id`` is missing. Zero objects give zero rows.

    Examples
    --------
    >>> rna = np.zeros((1, 1, 6), int); rna[0, 0, 0] = 1
    >>> cen = np.zeros((1, 1, 6), int); cen[0, 0, 4] = 7
    >>> nearest_distances(rna, cen, spacing=0.5)
       object_id  distance  target_id
    0          1       2.0          7
    """
    label_image = np.asarray(label_image)
    target_label_image = np.asarray(target_label_image)
    if label_image.ndim != 3 or label_image.shape != target_label_image.shape:
        msg = (
            f"label_image and target_label_image must be 3D (Z, Y, X) arrays of the "
            f"same shape; got {label_image.shape} and {target_label_image.shape}."
        )
        raise ValueError(msg)
    if method not in DISTANCE_METHODS:
        msg = f"method must be one of {', '.join(map(repr, DISTANCE_METHODS))}; got {method!r}."
        raise ValueError(msg)
    if workers is None:
        workers = usable_cores()
    elif isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or not (
        workers >= 1 or workers == -1
    ):
        msg = f"workers must be a whole number >= 1, -1 (all cores) or None; got {workers!r}."
        raise ValueError(msg)
    scale = normalize_spacing(spacing)
    shape = label_image.shape
    flat_labels = np.ravel(label_image)
    flat_targets = np.ravel(target_label_image)

    source_voxels = np.flatnonzero(flat_labels != 0)  # a bool mask: 3x faster than on ints
    object_ids = np.unique(flat_labels[source_voxels]).astype(np.int64)
    n = object_ids.size
    distance = np.full(n, np.nan)
    target_id = np.full(n, -1, dtype=np.int64)

    target_voxels = np.flatnonzero(flat_targets != 0)
    if n and target_voxels.size:
        # Objects that share voxels with a target: distance 0, smallest target.
        shared = flat_targets[source_voxels] != 0
        if shared.any():
            src = flat_labels[source_voxels[shared]].astype(np.int64)
            tgt = flat_targets[source_voxels[shared]].astype(np.int64)
            order = np.lexsort((tgt, src))
            src, tgt = src[order], tgt[order]
            first = _group_starts(src)
            rows = np.searchsorted(object_ids, src[first])
            distance[rows] = 0.0
            target_id[rows] = tgt[first]

        # Empty only when one target fills the whole stack: then every object overlaps it.
        target_boundary = _face_boundary(flat_targets, target_voxels, shape)
        source_boundary = _face_boundary(flat_labels, source_voxels, shape)
        if shared.any():
            done = object_ids[distance == 0.0]
            source_boundary = source_boundary[~np.isin(flat_labels[source_boundary], done)]
        if source_boundary.size and target_boundary.size:
            _nearest_from_boundaries(
                flat_labels, flat_targets, shape, source_boundary, target_boundary,
                scale, object_ids, distance, target_id, tie_rtol, workers, method,
            )

    nearest = pd.array(target_id, dtype="Int64")
    nearest[target_id < 0] = pd.NA
    return pd.DataFrame({"object_id": object_ids, "distance": distance, "target_id": nearest})


def _nearest_from_boundaries(
    flat_labels, flat_targets, shape, source_voxels, target_voxels,
    scale, object_ids, distance, target_id, tie_rtol, workers, method,
):
    """Fill `distance` and `target_id` for objects that overlap no target.

    `source_voxels` and `target_voxels` are the flat indices of boundary voxels.
    """
    target_labels = flat_targets[target_voxels].astype(np.int64)
    target_points = np.column_stack(np.unravel_index(target_voxels, shape)) * scale
    # Sliding-midpoint splits suit points on a voxel grid: queries ~25% faster.
    tree = cKDTree(target_points, balanced_tree=False, compact_nodes=False)

    source_labels = flat_labels[source_voxels].astype(np.int64)
    order = np.argsort(source_labels, kind="stable")
    source_voxels, source_labels = source_voxels[order], source_labels[order]
    source_points = np.column_stack(np.unravel_index(source_voxels, shape)) * scale

    threads = usable_cores() if workers == -1 else min(workers, usable_cores())
    if method == "auto":
        method = _choose_method(tree, source_points, source_voxels, target_voxels, shape,
                                threads)
    starts = _group_starts(source_labels)
    if method == "edt":
        voxel_distance = _edt_distances(source_voxels, target_voxels, shape, scale)
    else:
        voxel_distance = _bounded_queries(tree, source_points, starts, threads)
    object_min = np.minimum.reduceat(voxel_distance, starts)
    rows = np.searchsorted(object_ids, source_labels[starts])
    distance[rows] = object_min

    # Ties: every target voxel within the object's minimum (to rounding) is a
    # candidate; the smallest target label among them wins.
    counts = np.diff(np.r_[starts, source_labels.size])
    point_min = np.repeat(object_min, counts)
    radius = point_min * (1.0 + tie_rtol) + 1e-12
    candidates = np.flatnonzero(voxel_distance <= radius)
    hits = tree.query_ball_point(
        source_points[candidates], r=radius[candidates], return_sorted=False, workers=workers
    )
    hit_counts = np.fromiter((len(h) for h in hits), dtype=np.int64, count=len(hits))
    hit_labels = target_labels[np.concatenate(hits).astype(np.int64)]
    hit_sources = np.repeat(source_labels[candidates], hit_counts)
    order = np.lexsort((hit_labels, hit_sources))
    hit_sources, hit_labels = hit_sources[order], hit_labels[order]
    first = _group_starts(hit_sources)
    target_id[np.searchsorted(object_ids, hit_sources[first])] = hit_labels[first]



# Bounded queries run in up to this many groups of similar bounds (one call each),
# of at least _GROUP_POINTS voxels.
_BOUND_GROUPS = 256
_GROUP_POINTS = 2048


def _bounded_queries(tree, source_points, starts, threads: int) -> np.ndarray:
    """Each source voxel's distance to its nearest target voxel, or inf where that exceeds a bound.

    A voxel whose nearest target is farther than its object's nearest target
    can neither set the object's distance nor be tied at it, so its exact
    distance is not needed. One query per object (its first voxel) finds a
    target voxel ``p``; the object's distance is at most ``u``, the distance
    from ``p`` to the object's voxel nearest it (computed for every voxel,
    without the tree). Every voxel is then queried with that upper bound: the
    search prunes every branch of the tree beyond it, and a voxel farther than
    ``u`` from every target comes back as inf. The voxels within ``u``, which
    include every nearest and tied voxel, get the same exact distance as an
    unbounded query. Most of a small object's voxels face away from the
    targets: on dense RNA near large targets this halves the queries' time.

    Parameters
    ----------
    tree : cKDTree
        Of the target boundary voxels, in microns.
    source_points : (N, 3) ndarray
        Source boundary voxels in microns, grouped by object.
    starts : (M,) ndarray of int
        Index of each object's first row in `source_points`.
    threads : int
        Threads for the queries (at most the usable cores).

    Returns
    -------
    (N,) ndarray of float64
        Exact distances within each object's bound, inf beyond it.
    """
    _, first = tree.query(source_points[starts], k=1, workers=threads)
    counts = np.diff(np.r_[starts, len(source_points)])
    offsets = source_points - np.repeat(tree.data[first], counts, axis=0)
    reach = np.minimum.reduceat(np.sqrt(np.einsum("ij,ij->i", offsets, offsets)), starts)
    # A margin over rounding: the tree's own sums may differ from these in the last bits.
    bound = np.repeat(reach, counts) * (1 + 1e-6) + 1e-9
    order = np.argsort(bound, kind="stable")
    distance = np.empty(len(source_points))

    def query(group):
        group = np.sort(group)  # neighbouring voxels queried together: better cache use
        distance[group], _ = tree.query(source_points[group], k=1,
                                        distance_upper_bound=float(bound[group].max()))

    # Groups of at least _GROUP_POINTS voxels: each call has a fixed cost.
    groups = np.array_split(order, max(1, min(_BOUND_GROUPS, len(order) // _GROUP_POINTS)))
    if threads > 1 and len(groups) > 1:
        from concurrent.futures import ThreadPoolExecutor

        # The queries release the GIL: the groups share the cores, with one pool for all
        # (a tree.query with workers > 1 would start threads for every group).
        with ThreadPoolExecutor(min(threads, len(groups))) as pool:
            list(pool.map(query, groups))
    else:
        for group in groups:
            query(group)
    return distance


def _box(source_voxels, target_voxels, shape) -> tuple[slice, ...]:
    """Bounding box of both sets of flat voxel indices."""
    low, high = np.array(shape), np.zeros(len(shape), dtype=np.int64)
    for voxels in (source_voxels, target_voxels):
        coords = np.unravel_index(voxels, shape)
        low = np.minimum(low, [c.min() for c in coords])
        high = np.maximum(high, [c.max() for c in coords])
    return tuple(slice(int(lo), int(hi) + 1) for lo, hi in zip(low, high))


def _edt_distances(source_voxels, target_voxels, shape, scale) -> np.ndarray:
    """Distance from each source voxel to the nearest target voxel, by exact distance transforms.

    Separable: the squared distance from a voxel at plane z to the nearest target
    voxel is the least, over the planes z' holding a target, of that plane's 2D
    squared distance at the voxel's (y, x) plus ((z - z') * spacing_z)². Each
    plane holding a target gets one 2D transform (of the box around both sets:
    every nearest pair lies in it), read at the source voxels only.
    """
    box = _box(source_voxels, target_voxels, shape)
    origin = np.array([s.start for s in box])
    n_y, n_x = (s.stop - s.start for s in box[1:])
    source = [c - o for c, o in zip(np.unravel_index(source_voxels, shape), origin)]
    target = [c - o for c, o in zip(np.unravel_index(target_voxels, shape), origin)]
    source_in_plane = source[1] * n_x + source[2]
    rows, columns = np.arange(n_y).reshape(-1, 1), np.arange(n_x)
    best = np.full(len(source_voxels), np.inf)
    order = np.argsort(target[0], kind="stable")
    planes = _group_starts(target[0][order])
    for start, stop in zip(planes, np.r_[planes[1:], order.size]):
        members = order[start:stop]
        background = np.ones((n_y, n_x), dtype=bool)
        background[target[1][members], target[2][members]] = False
        nearest = ndimage.distance_transform_edt(background, sampling=scale[1:],
                                                 return_distances=False, return_indices=True)
        in_plane = np.square((nearest[0] - rows) * scale[1])
        in_plane += np.square((nearest[1] - columns) * scale[2])
        squared = np.square((target[0][members[0]] - source[0]) * scale[0])
        squared += in_plane.ravel()[source_in_plane]
        np.minimum(best, squared, out=best)
    return np.sqrt(best)


def _choose_method(tree, source_points, source_voxels, target_voxels, shape,
                   threads: int) -> str:
    """``"kdtree"`` or ``"edt"``, whichever the cost model (module constants) says is faster."""
    # How far the queries reach, from an even sample of them (deterministic).
    sample = source_points[:: max(1, len(source_points) // 256)]
    reach = float(np.mean(tree.query(sample, k=1)[0]))
    kd = _KD_SECONDS * len(source_points) * np.log2(tree.n + 1) * (1 + reach / _KD_REACH_UM)
    kd /= threads  # the queries run in parallel, the transforms on one core
    # The planes hold at least every target voxel, and each source voxel meets at
    # least one of them: often that settles it.
    if kd <= _EDT_PLANE_SECONDS * len(target_voxels) + _EDT_SOURCE_SECONDS * len(source_voxels):
        return "kdtree"
    box = _box(source_voxels, target_voxels, shape)
    plane = (box[1].stop - box[1].start) * (box[2].stop - box[2].start)
    if plane > _EDT_MAX_VOXELS:
        return "kdtree"
    planes = np.unique(target_voxels // (shape[1] * shape[2])).size
    edt = planes * (_EDT_PLANE_SECONDS * plane + _EDT_SOURCE_SECONDS * len(source_voxels))
    return "edt" if edt < kd else "kdtree"

def point_distances(points, target_label_image: np.ndarray, spacing=1.0) -> np.ndarray:
    """Exact distance, in microns, from points to the nearest voxel centre of any target object.

    A point inside a target voxel (the voxel its coordinates round to) is at
    distance 0. Otherwise the nearest target voxel centre is on a target's
    face boundary (the argument of the module docstring, from the point's
    side), so only those are searched.

    Parameters
    ----------
    points : (N, 3) array-like
        Positions in voxel coordinates (z, y, x), e.g. objects' intensity centroids.
    target_label_image : (Z, Y, X) ndarray of int
        Target objects, 0 as background.
    spacing : float or sequence of 3 floats
        Microns per voxel (z, y, x).

    Returns
    -------
    (N,) ndarray of float64
        NaN for every point when there is no target object.

    Examples
    --------
    >>> targets = np.zeros((1, 1, 8), np.int32)
    >>> targets[0, 0, 6] = 1
    >>> point_distances([(0, 0, 1.2), (0, 0, 5.6)], targets, spacing=0.5)
    array([2.4, 0. ])
    """
    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    targets = np.asarray(target_label_image)
    scale = normalize_spacing(spacing)
    flat = targets.ravel()
    voxels = np.flatnonzero(flat)
    if voxels.size == 0:
        return np.full(len(points), np.nan)
    boundary = _face_boundary(flat, voxels, targets.shape)
    if boundary.size:
        centres = np.column_stack(np.unravel_index(boundary, targets.shape)) * scale
        distance, _ = cKDTree(centres).query(points * scale)
    else:
        # One target fills the whole stack: every voxel centre is a target's, and the
        # nearest one to a point is found axis by axis.
        nearest = np.clip(np.rint(points), 0, np.array(targets.shape) - 1)
        distance = np.sqrt((((points - nearest) * scale) ** 2).sum(axis=1))
    voxel = np.rint(points).astype(np.int64)
    inside = np.all((voxel >= 0) & (voxel < np.array(targets.shape)), axis=1)
    hit = np.zeros(len(points), dtype=bool)
    hit[inside] = targets[tuple(voxel[inside].T)] != 0
    distance[hit] = 0.0
    return distance
