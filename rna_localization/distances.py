"""Exact nearest-object distances between two label images.

Pure array functions: nothing here reads files or talks to the database.
Both functions work on the object voxels alone (flat indices and labels, as
:class:`~rna_localization.objects.ObjectVoxels` holds them): a label image is
converted to them first, and the stored ones are taken as they are, without
building the volume.

Why only boundary voxels are compared
-------------------------------------
Let voxel ``a`` of object A be nearest to voxel ``t`` of target object T, with
``a != t``. If all six face neighbours of ``a`` were in A, the neighbour one
step from ``a`` towards ``t`` along an axis where they differ would be in A and
strictly closer to ``t``, so ``a`` was not nearest. Hence every nearest pair
joins a voxel on A's face boundary to a voxel on T's face boundary (the same
argument from ``t``'s side). Comparing boundary voxels only is therefore exact,
ties included, while cutting the points of a solid object by a large factor.
Comparing more (interior voxels too) is as exact: objects of a few dozen voxels
(RNA spots) are nearly all boundary, so when the objects average fewer than
:data:`_BOUNDARY_VOXELS_PER_OBJECT` voxels, all of theirs are compared, without
the pass that looks for their boundary.
Overlapping objects (distance 0) are found directly from the shared voxels.
A target without boundary voxels is one object filling the whole stack: every
object overlaps it.

Two ways to the nearest target voxel
------------------------------------
Each boundary voxel's distance to the nearest target voxel comes either from
a KD-tree of the target boundary voxels (cost grows with the number of
objects, the number of those target voxels, and how far the objects are from
them) or from exact Euclidean distance transforms of the box around both:
each plane holding a target voxel gets every pixel's offset to its nearest
target pixel, read at every source voxel compared (compiled loops,
:mod:`rna_localization._envelopes`; cost grows with those planes' area and the
source voxels). ``method="auto"`` estimates both costs per image and picks
the cheaper. Either way the object's minimum is the least over its voxels, and
the target named is the smallest label among the target voxels tied with it.

Ties after the transforms
-------------------------
The transforms keep, for each voxel, the plane and in-plane offset of its
nearest target pixel, and its least distance over the other planes. When that
least is past the tie radius, every tied target voxel lies in the voxel's best
plane, in a thin ring of whole-pixel offsets as far as the nearest one: the
ring is walked along its edge and each offset looked up (with its four signs)
among the target voxels by binary search
(:func:`rna_localization._envelopes.nearest_labels`). The rare voxel with
another plane as near goes to the KD-tree's search instead.

Which boundary voxels the KD-tree measures
------------------------------------------
The distance to the targets changes by at most the step moved, so a voxel
``v`` is at least ``d(q) - |v - q|`` from every target for any point ``q``
whose distance ``d(q)`` is known. Two KD-tree queries per object (its
centroid, and one object radius behind it, away from the target) bound every
boundary voxel's distance from below this way; the object's distance to the
target voxel nearest its centroid bounds its distance from above. Voxels whose
lower bound exceeds that can be neither nearest nor tied and are not queried:
on small objects far from their targets, about 7 in 8 (see ``_prune``). The
bounds hold wherever the two points fall, so this is exact for any shape. The
queries stop at their object's upper bound, and return the 4 nearest target
voxels: tied target objects come from them (a ball search only where all 4
tie).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from ._cores import in_threads, usable_cores
from .objects import ObjectVoxels, as_object_voxels, normalize_spacing

__all__ = ["DISTANCE_COLUMNS", "DISTANCE_METHODS", "nearest_distances", "point_distances"]

#: Columns of :func:`nearest_distances` and their dtypes.
DISTANCE_COLUMNS = {"object_id": "int64", "distance": "float64", "target_id": "Int64"}

#: Ways :func:`nearest_distances` can find each boundary voxel's nearest target voxel.
DISTANCE_METHODS = ("auto", "kdtree", "edt")

# Cost model of the two methods (seconds, only the ratio matters), with T the target
# boundary voxels (the KD-tree's points): the KD-tree costs _KD_SECONDS per object and
# T^(1/4) (the pruning's two queries per object and the voxels left, a few per object:
# a larger tree is slower to search than its depth says, as it no longer fits the
# caches); the transforms _EDT_PLANE_SECONDS per voxel of each plane of the box holding
# a target voxel, plus _EDT_SOURCE_SECONDS per source boundary voxel and such plane,
# plus _EDT_TIE_SECONDS per object and T^(1/4) (naming the nearest target). Both share
# the threads. Fitted by least squares on relative errors over 84 images (RNA as 0.35 µm
# balls, 300 to 30,000 asked per 30x512x512 voxels, touching ones merged; targets of 0.4
# to 12 µm; stacks of 30x256x256 to 60x1024x1024), each method alone on one thread, in
# CPU seconds (the machine was shared: CPU time is what load inflates least, and it
# inflates both alike). Refitted when the transforms came to name ties themselves (the
# ring walk): the choice was within 1.39x of the faster method on every image (mean
# 1.01), also with each image left out of the fit; the constants before it gave 1.57x on
# the same measurements. Near the crossing, where both estimates agree within a few
# percent, one best-of-2 timing on a shared machine moves that much: a first measurement
# gave 1.55x with its own fit. Measured again once the passes around the transforms were
# compiled (the transforms 20-40% faster on dense images): these constants chose within
# 1.37x (mean 1.010); a new fit, 1.34x (mean 1.005), but with no cost per source voxel
# (on balls of one size it moves with the cost per object), so these stay.
# `python -m benchmarks.fit_distance_costs` measures them again and prints the constants.
_KD_SECONDS = 1.4e-6
_EDT_PLANE_SECONDS = 4.4e-9
_EDT_SOURCE_SECONDS = 1.07e-9
_EDT_TIE_SECONDS = 5.1e-7
# The constants in the order of _cost_terms' terms.
_KD_COSTS = np.array([_KD_SECONDS])
_EDT_COSTS = np.array([_EDT_TIE_SECONDS, _EDT_PLANE_SECONDS, _EDT_SOURCE_SECONDS])
# A plane's transform holds 9 bytes per pixel and thread: above this many pixels in a
# plane of the box the KD-tree is used whatever the estimate (about 300 MB a thread).
_EDT_MAX_VOXELS = 1 << 25
# Stacks this many pixels wide or high use the KD-tree (the transforms' offsets pack |dy| and
# |dx| in 16 bits each).
_EDT_MAX_SIDE = 1 << 16
# Source objects averaging fewer voxels than this are compared whole (module docstring):
# 97% of the voxels of 0.35 um balls on a 0.2 x 0.065 x 0.065 um grid (46 voxels) are on
# their boundary, and the pass finding it took longer than the transforms spend on the rest.
_BOUNDARY_VOXELS_PER_OBJECT = 64


def _face_boundary(voxels: np.ndarray, labels: np.ndarray, shape) -> np.ndarray:
    """Those of `voxels` with at least one face neighbour of another label (or none).

    Works on the object voxels only (a few percent of a stack), never the
    whole volume, in one compiled pass
    (:func:`rna_localization._faces.face_boundary_mask`).
    Neighbours outside the volume do not count: a nearest pair never needs
    them (see the module docstring).

    Parameters
    ----------
    voxels : (N,) ndarray of int
        Flat (C order) indices of a label image's non-zero voxels, ascending.
    labels : (N,) ndarray of int
        Their labels.
    shape : tuple of int
        The label image's (Z, Y, X) shape.

    Returns
    -------
    (M,) ndarray of intp
        Positions in `voxels` of the boundary voxels, ascending.

    Examples
    --------
    >>> # A 1x1x5 row: labels 1 1 2 2 0. The first voxel's neighbours are its own or outside.
    >>> _face_boundary(np.array([0, 1, 2, 3]), np.array([1, 1, 2, 2]), (1, 1, 5))
    array([1, 2, 3])
    """
    if voxels.size == 0:
        return np.zeros(0, np.intp)
    from ._faces import face_boundary_mask  # compiled on first use (numba)

    n_z, n_y, n_x = (int(n) for n in shape)
    return np.flatnonzero(face_boundary_mask(voxels.astype(np.int64, copy=False), labels,
                                             n_z, n_y, n_x))


def _group_starts(sorted_keys: np.ndarray) -> np.ndarray:
    return np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])


def _threads(workers) -> int:
    """Threads for `workers` (None or -1: every core this process may run on, else at
    most that many); anything but a whole number >= 1, -1 or None is refused."""
    whole = isinstance(workers, (int, np.integer)) and not isinstance(workers, bool)
    if workers is not None and not (whole and (workers >= 1 or workers == -1)):
        msg = f"workers must be a whole number >= 1, -1 (all cores) or None; got {workers!r}."
        raise ValueError(msg)
    return usable_cores() if workers is None or workers == -1 else min(int(workers), usable_cores())


def nearest_distances(
    label_image: np.ndarray | ObjectVoxels,
    target_label_image: np.ndarray | ObjectVoxels,
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
    face-boundary voxels is enough, and why most of them need no search).

    Parameters
    ----------
    label_image : (Z, Y, X) ndarray of int, or ObjectVoxels
        Objects to measure from (e.g. RNA), 0 as background; or their voxels
        only (:class:`~rna_localization.objects.ObjectVoxels`, what the
        database stores), which spares the pass over the whole volume.
    target_label_image : (Z, Y, X) ndarray of int, or ObjectVoxels
        Target objects (e.g. centrosomes), same shape.
    spacing : float or (3,) sequence of float
        Voxel size along (z, y, x), e.g. ``(0.2, 0.065, 0.065)`` microns.
    tie_rtol : float
        Target objects whose distance is within this relative tolerance of the
        minimum count as tied (floating-point rounding can split exact ties);
        the smallest target label wins.
    workers : int, optional
        Threads for the KD-tree queries or the transforms; None (the default) uses every core
        this process may run on (:func:`usable_cores`), -1 every core.
    method : {"auto", "kdtree", "edt"}
        How the nearest target voxel of each boundary voxel is found: a
        KD-tree of the targets' boundary voxels (for the voxels that may be
        nearest), or exact Euclidean distance transforms of the box around
        the voxels and the targets, one per plane holding a target voxel
        (faster for many objects; stacks narrower than 65,536 pixels, wider
        ones use the KD-tree). ``"auto"`` picks the one a cost model
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
    shapes = [tuple(x.shape) if isinstance(x, ObjectVoxels) else np.shape(x)
              for x in (label_image, target_label_image)]
    if len(shapes[0]) != 3 or shapes[0] != shapes[1]:
        msg = (
            f"label_image and target_label_image must be 3D (Z, Y, X) arrays of the "
            f"same shape; got {shapes[0]} and {shapes[1]}."
        )
        raise ValueError(msg)
    if method not in DISTANCE_METHODS:
        msg = f"method must be one of {', '.join(map(repr, DISTANCE_METHODS))}; got {method!r}."
        raise ValueError(msg)
    threads = _threads(workers)
    scale = normalize_spacing(spacing)
    shape = shapes[0]
    # Label images are read in one compiled pass each, side by side.
    source, target = in_threads(lambda named: as_object_voxels(*named),
                                [(label_image, "label_image"),
                                 (target_label_image, "target_label_image")], min(threads, 2))
    source_voxels, source_labels = source.voxels, source.labels
    target_voxels, target_labels = target.voxels, target.labels

    object_ids = _present_labels(source_labels)
    n = object_ids.size
    distance = np.full(n, np.nan)
    target_id = np.full(n, -1, dtype=np.int64)

    if n and target_voxels.size:
        # Objects that share voxels with a target: distance 0, smallest target.
        at = target.find(source_voxels)
        shared = at >= 0
        if shared.any():
            src = source_labels[shared].astype(np.int64)
            tgt = target_labels[at[shared]].astype(np.int64)
            order = np.lexsort((tgt, src))
            src, tgt = src[order], tgt[order]
            first = _group_starts(src)
            rows = np.searchsorted(object_ids, src[first])
            distance[rows] = 0.0
            target_id[rows] = tgt[first]

        # Empty only when one target fills the whole stack: then every object overlaps it.
        done = object_ids[distance == 0.0]
        small = source_voxels.size < _BOUNDARY_VOXELS_PER_OBJECT * n
        (target_voxels, target_labels), (source_voxels, source_labels) = in_threads(
            lambda named: _boundary_voxels(*named, shape),
            [(target_voxels, target_labels, done[:0], True),
             (source_voxels, source_labels, done, not small)], min(threads, 2))
        if source_voxels.size and target_voxels.size:
            _nearest_from_boundaries(
                shape, source_voxels, source_labels, target_voxels, target_labels,
                scale, object_ids, distance, target_id, tie_rtol, threads, method,
            )

    nearest = pd.array(target_id, dtype="Int64")
    nearest[target_id < 0] = pd.NA
    return pd.DataFrame({"object_id": object_ids, "distance": distance, "target_id": nearest})


def _countable(labels: np.ndarray) -> int | None:
    """The largest of `labels` when they can be counted, else None.

    Labels numbered from 1 (as :func:`label_objects` numbers them) are
    counted, several times faster than sorting or hashing them; labels far
    larger than their number (or negative, or not integers) are not.
    """
    if labels.size and labels.dtype.kind in "iu":
        low, high = int(labels.min()), int(labels.max())
        if low >= 0 and high <= 4 * labels.size + 1024:
            return high
    return None


def _present_labels(labels: np.ndarray) -> np.ndarray:
    """The distinct values of `labels`, ascending, as int64."""
    from ._components import labels_present  # compiled on first use (numba)

    high = _countable(labels)
    if high is not None:
        return np.flatnonzero(labels_present(labels, high)).astype(np.int64)
    return np.unique(labels).astype(np.int64)


def _boundary_voxels(voxels: np.ndarray, labels: np.ndarray, done: np.ndarray, boundary: bool,
                     shape) -> tuple[np.ndarray, np.ndarray]:
    """The face-boundary voxels (:func:`_face_boundary`; every voxel unless `boundary`) and
    their labels, but those of the labels `done`; countable labels in one compiled pass,
    without a mask's positions."""
    if voxels.size == 0 or (not boundary and done.size == 0):
        return voxels, labels
    from ._components import kept_voxels  # compiled on first use (numba)
    from ._faces import face_boundary_mask

    if boundary:
        chosen = face_boundary_mask(voxels.astype(np.int64, copy=False), labels,
                                    *map(int, shape))
    else:
        chosen = np.ones(voxels.size, dtype=bool)
    high = _countable(labels)
    if high is None:
        chosen &= ~np.isin(labels, done)
        return voxels[chosen], labels[chosen]
    skipped = np.zeros(high + 1, dtype=bool)
    skipped[done[done <= high]] = True
    return kept_voxels(voxels, labels, chosen, skipped)


def _nearest_from_boundaries(
    shape, source_voxels, source_labels, target_voxels, target_labels,
    scale, object_ids, distance, target_id, tie_rtol, threads, method,
):
    """Fill `distance` and `target_id` for objects that overlap no target.

    `source_voxels` and `target_voxels` are the flat indices of boundary voxels
    (ascending), with their labels; `threads` share the queries or the transforms.
    The minima per object are taken by each voxel's row in `object_ids`, in any
    order: only the KD-tree's pruning needs the voxels grouped by object.
    """
    def points(voxels: np.ndarray) -> np.ndarray:  # flat indices -> microns
        return np.column_stack(np.unravel_index(voxels, shape)) * scale

    from ._components import by_label, object_minima  # compiled on first use (numba)

    target_labels = target_labels.astype(np.int64)
    keys, table = _row_table(object_ids, source_labels)  # each voxel's row: table[keys]
    if max(shape[1], shape[2]) >= _EDT_MAX_SIDE:  # the transforms' offsets hold 16 bits a side
        method = "kdtree"
    box = None
    if method == "auto":  # the transforms' box serves the choice and the transforms
        n_objects = int(np.isnan(distance).sum())  # the objects not measured yet
        box = _box(source_voxels, target_voxels, shape)
        method = _choose_method(source_voxels, target_voxels, shape, n_objects, box=box)
    # How far past a voxel's own squared distance the transforms keep the other planes' exact.
    tie_factor = (1.0 + tie_rtol) ** 2 * (1.0 + 1e-6)
    if method == "edt":  # every boundary voxel: the transforms cost little per voxel
        transforms = _edt_distances(source_voxels, target_voxels, shape, scale, threads,
                                    tie_factor, box=box)
        object_min, candidates = object_minima(keys, table, transforms.best, True,
                                               object_ids.size, tie_rtol)
    else:  # only the voxels that may be nearest or tied are queried, object by object
        source_voxels, keys = by_label(source_voxels.astype(np.int64, copy=False), table[keys],
                                       object_ids.size - 1)
        table = np.arange(object_ids.size)
        tree = _tree(points(target_voxels))
        source_points = points(source_voxels)
        needed, bound = _prune(tree, source_points, _group_starts(keys), threads, tie_rtol)
        voxel_distance = np.full(len(source_voxels), np.inf)
        neighbours, neighbour_index = _query_within(tree, source_points[needed], bound, threads,
                                                    k=_TIE_NEIGHBOURS)
        voxel_distance[needed] = neighbours[:, 0]
        object_min, candidates = object_minima(keys, table, voxel_distance, False,
                                               object_ids.size, tie_rtol)
    measured = object_min < np.inf  # the objects with a voxel here
    distance[measured] = object_min[measured]

    # Ties: every target voxel within the object's minimum (to rounding) is a
    # candidate; the smallest target label among them wins.
    rows = table[keys[candidates]]
    radius = object_min[rows] * (1.0 + tie_rtol) + 1e-12
    if method == "edt":
        best = _edt_tied_labels(transforms, candidates, source_voxels[candidates], radius,
                                target_voxels, target_labels, shape, scale, tie_factor, threads)
        # Voxels whose other planes may hold a target voxel as near (exact ties across
        # planes; rare): a few nearest target voxels, searched no farther than the radius.
        rest = np.flatnonzero(best < 0)
        if rest.size:
            tree = _tree(points(target_voxels))
            rest_points = points(source_voxels[candidates[rest]])
            found = _query_within(tree, rest_points, radius[rest], threads, k=_TIE_NEIGHBOURS)
            best[rest] = _tied_labels(tree, target_labels, rest_points, radius[rest], *found,
                                      threads)
    else:
        at = np.searchsorted(needed, candidates)
        best = _tied_labels(tree, target_labels, source_points[candidates], radius,
                            neighbours[at], neighbour_index[at], threads)
    smallest = np.full(object_ids.size, np.iinfo(np.int64).max)
    np.minimum.at(smallest, rows, best)
    target_id[measured] = smallest[measured]


def _row_table(object_ids: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(keys, table)``: ``table[keys]`` is each of `labels`' position in `object_ids`.

    `object_ids` ascend and hold every one of `labels`. Countable labels are
    their own keys into a table by label; others are looked up once.
    """
    high = _countable(labels)
    if high is None:
        return np.searchsorted(object_ids, labels), np.arange(object_ids.size)
    table = np.zeros(high + 1, dtype=np.int64)
    kept = object_ids <= high
    table[object_ids[kept]] = np.flatnonzero(kept)
    return labels, table


def _tree(points: np.ndarray) -> cKDTree:
    """A KD-tree of the target boundary voxels (microns)."""
    # Sliding-midpoint splits suit points on a voxel grid: queries ~25% faster; leaves of 32
    # points ~20% faster than 16 on the far queries of dense RNA near large targets.
    return cKDTree(points, leafsize=32, balanced_tree=False, compact_nodes=False)


def _tied_labels(tree, target_labels, points, radius, neighbours, neighbour_index,
                 threads: int) -> np.ndarray:
    """The smallest target label within `radius` of each point, from its nearest target voxels.

    `neighbours` and `neighbour_index` are each point's few nearest target voxels
    within its radius (:func:`_query_within`): they hold every one within it
    unless all of them are, and then (rarely) a ball search finds them all.
    """
    within = neighbours <= radius[:, None]
    labels = target_labels[np.where(within, neighbour_index, 0)]
    best = np.where(within, labels, np.iinfo(np.int64).max).min(axis=1)
    searched = np.flatnonzero(within[:, -1])
    if searched.size:
        hits = tree.query_ball_point(points[searched], r=radius[searched],
                                     return_sorted=False, workers=threads)
        hit_counts = np.fromiter((len(h) for h in hits), dtype=np.int64, count=len(hits))
        hit_labels = target_labels[np.concatenate(hits).astype(np.int64)]
        hit_rows = np.repeat(np.arange(searched.size), hit_counts)
        order = np.lexsort((hit_labels, hit_rows))
        first = _group_starts(hit_rows[order])
        best[searched] = hit_labels[order][first]
    return best


# Nearest target voxels each KD-tree query returns: ties among them need no ball search.
_TIE_NEIGHBOURS = 4
# Bounded queries run in up to this many groups of similar bounds (one call each),
# of at least _GROUP_POINTS voxels.
_BOUND_GROUPS = 256
_GROUP_POINTS = 2048


def _prune(tree, source_points, starts, threads: int, tie_rtol: float = 0.0):
    """The source voxels that may be nearest to a target, or tied with the nearest, per object.

    Two queries per object bound every voxel's distance from below, without
    querying the voxel: the distance to the targets changes by at most the
    step moved (triangle inequality), so a voxel ``v`` is at least
    ``d(q) - |v - q|`` from every target, for any point ``q`` whose distance
    ``d(q)`` is known. The points queried are the object's centroid ``c`` and
    ``b``, one object radius behind it (away from the target voxel ``p``
    nearest to ``c``): ``c`` bounds the voxels near it, ``b`` those on the
    object's far side and flanks. The object's distance is at most ``u``, the
    distance from ``p`` to the object's voxel nearest it (computed for every
    voxel, without the tree). A voxel whose lower bound exceeds ``u`` (times
    ``1 + tie_rtol``, with a margin over rounding) can be neither nearest nor
    tied, and is dropped: on small objects far from their targets, about 7 in
    8. The bounds hold wherever ``c`` and ``b`` fall (the choice only decides
    how many voxels are dropped), so the result is exact whatever the shapes.

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
    tie_rtol : float
        Relative tolerance of a tie (see :func:`nearest_distances`).

    Returns
    -------
    needed : (K,) ndarray of int
        Rows of `source_points` that may be nearest or tied, ascending.
    bound : (K,) ndarray of float64
        For each, its object's ``u`` with the margins: a search can stop there.
    """
    counts = np.diff(np.r_[starts, len(source_points)])
    centre = np.add.reduceat(source_points, starts) / counts[:, None]
    from_centre = _norm(source_points - np.repeat(centre, counts, axis=0))
    radius = np.maximum.reduceat(from_centre, starts)
    near, first = tree.query(centre, k=1, workers=threads)
    nearest = tree.data[first]
    away = centre - nearest
    length = _norm(away)
    away /= np.where(length > 0, length, 1.0)[:, None]
    behind = centre + radius[:, None] * away
    reach = np.minimum.reduceat(_norm(source_points - np.repeat(nearest, counts, axis=0)),
                                starts)
    # A margin over rounding: the tree's own sums may differ from these in the last bits.
    limit = reach * (1 + tie_rtol) * (1 + 1e-6) + 1e-9
    # Every voxel is within 2 radii of b: b farther than limit + 2 radii from every
    # target rules them all out, and its search can stop there (inf counts as that much).
    cap = limit + 2 * radius * (1 + 1e-9) + 1e-9
    far = _query_within(tree, behind, cap, threads, k=1)[0][:, 0]
    far = np.minimum(far, cap)
    bound = np.repeat(limit, counts)
    lower = np.repeat(near, counts) - from_centre
    np.maximum(lower, np.repeat(far, counts)
               - _norm(source_points - np.repeat(behind, counts, axis=0)), out=lower)
    needed = np.flatnonzero(lower <= bound)
    return needed, bound[needed]


def _norm(vectors: np.ndarray) -> np.ndarray:
    return np.sqrt(np.einsum("ij,ij->i", vectors, vectors))


def _query_within(tree, points, bound, threads: int, k: int = 1):
    """Each point's `k` nearest target voxels within its bound.

    The search prunes every branch of the tree beyond the bound; points are
    queried in groups of similar bounds, one call per group, sharing `threads`.

    Returns
    -------
    distance : (N, k) ndarray of float64
        Ascending; inf beyond the bound.
    index : (N, k) ndarray of int
        Rows of ``tree.data``; ``tree.n`` beyond the bound.
    """
    order = np.argsort(bound, kind="stable")
    distance = np.empty((len(points), k))
    index = np.empty((len(points), k), dtype=np.int64)

    def query(group):
        group = np.sort(group)  # neighbouring voxels queried together: better cache use
        found, rows = tree.query(points[group], k=k,
                                 distance_upper_bound=float(bound[group].max()))
        distance[group] = found.reshape(-1, k)
        index[group] = rows.reshape(-1, k)

    # Groups of at least _GROUP_POINTS voxels: each call has a fixed cost.
    groups = np.array_split(order, max(1, min(_BOUND_GROUPS, len(order) // _GROUP_POINTS)))
    # The queries release the GIL: the groups share the cores, with one pool for all
    # (a tree.query with workers > 1 would start threads for every group).
    in_threads(query, groups, threads)
    return distance, index


def _box(source_voxels, target_voxels, shape) -> tuple[slice, ...]:
    """Bounding box of both sets of flat voxel indices (one compiled pass over each)."""
    from ._components import voxel_box  # compiled on first use (numba)

    box = np.array([shape[0], -1, shape[1], -1, shape[2], -1], dtype=np.int64)
    for voxels in (source_voxels, target_voxels):
        voxel_box(voxels.astype(np.int64, copy=False), int(shape[1]), int(shape[2]), box)
    return tuple(slice(int(box[i]), int(box[i + 1]) + 1) for i in (0, 2, 4))


class _Transforms(NamedTuple):
    """What :func:`_edt_distances` finds for each source voxel."""

    best: np.ndarray  # squared distance to the nearest target voxel
    second: np.ndarray  # least over the other planes (exact below best * tie_factor)
    plane: np.ndarray  # the plane of the stack `best` came from (int32)
    offset: np.ndarray  # the offset there, |dy| << OFFSET_BITS | |dx| (uint32)


def _edt_distances(source_voxels, target_voxels, shape, scale, threads: int = 1,
                   tie_factor: float = 1.0, box: tuple[slice, ...] | None = None) -> _Transforms:
    """Squared distance from each source voxel to the nearest target voxel, by exact transforms.

    Separable: the squared distance from a voxel at plane z to the nearest target
    voxel is the least, over the planes z' holding a target, of that plane's 2D
    squared distance at the voxel's (y, x) plus ((z - z') * spacing_z)². Each
    plane holding a target gets every pixel's offset to its nearest target
    pixel (of the box around both sets: every nearest pair lies in it; with
    square pixels compared as whole squared pixels), read at the source voxels
    only (:mod:`rna_localization._envelopes`, compiled); a voxel skips a plane
    whose step along z alone is farther than its best so far (times
    `tie_factor`, past which the other planes' least need not be exact). The
    planes are shared among `threads` threads, each keeping its own best, then
    the least. Each voxel also gets the plane and offset of its best, and its
    least over the other planes: :func:`_edt_tied_labels` names ties from them.
    The box's planes must be narrower than ``2**OFFSET_BITS`` pixels each way;
    `box` is :func:`_box` of both sets, when the caller has it already.
    """
    from ._envelopes import (  # compiled on first use (numba)
        OFFSET_BITS,
        box_points,
        merge_nearest,
        nearest_at_points,
        plane_offsets,
    )

    box = _box(source_voxels, target_voxels, shape) if box is None else box
    origin = np.array([s.start for s in box])
    n_y, n_x = (s.stop - s.start for s in box[1:])
    target = [c - o for c, o in zip(np.unravel_index(target_voxels, shape), origin)]
    points = box_points(source_voxels.astype(np.int64, copy=False), int(shape[1]), int(shape[2]),
                        *(int(o) for o in origin), n_x)
    # No offset in the box reaches (n_y, n_x): nothing is capped.
    compare = (1.0, 1.0) if scale[1] == scale[2] else (scale[1] ** 2, scale[2] ** 2)
    weights = [float(w) ** 2 for w in scale]
    order = np.argsort(target[0], kind="stable")
    planes = np.split(order, _group_starts(target[0][order])[1:])

    def nearest(group) -> tuple:
        found = (np.full((points.size, 2), np.inf), np.zeros(points.size, np.int32),
                 np.zeros(points.size, np.uint32))
        plane = np.zeros((n_y, n_x), dtype=bool)
        offsets = np.empty((n_y, n_x), dtype=np.uint32)
        along_y = np.empty((n_y, n_x), dtype=np.int32)
        scratch = np.empty(n_x, np.int64), np.empty(n_x, np.int64), np.empty((n_x + 1, 3))
        for members in group:
            plane[:] = False
            plane[target[1][members], target[2][members]] = True
            plane_offsets(plane, compare[0], compare[1], n_y, n_x, 1 << OFFSET_BITS, offsets,
                          along_y, *scratch, 0)
            nearest_at_points(offsets, weights[1], weights[2], int(target[0][members[0]]),
                              weights[0], points, *found, tie_factor)
        return found

    threads = max(1, min(threads, len(planes)))
    groups = [planes[i::threads] for i in range(threads)]
    found = in_threads(nearest, groups, threads)
    state, plane, offset = found[0]
    for other in found[1:]:  # disjoint planes: the least of the bests
        merge_nearest(state, plane, offset, *other)
    plane += np.int32(origin[0])  # the box's planes, numbered as the stack's
    return _Transforms(state[:, 0], state[:, 1], plane, offset)


def _edt_tied_labels(transforms: _Transforms, rows, voxels, radius, target_voxels,
                     target_labels, shape, scale, tie_factor: float, threads: int) -> np.ndarray:
    """The smallest target label within `radius` of each of `voxels` (at `rows` of
    `transforms`), or -1 where another plane may hold one: the KD-tree names those.

    When a voxel's least over the other planes is past its radius (and exact that
    far past its best), only its best plane can hold a target voxel within it; that
    plane's are found around the nearest offset
    (:func:`rna_localization._envelopes.nearest_labels`), the voxels shared among
    `threads` threads.
    """
    from ._envelopes import nearest_labels  # compiled on first use (numba)

    limit = radius ** 2
    alone = (transforms.second[rows] > limit) & (limit < transforms.best[rows] * tie_factor)
    best = np.full(rows.size, -1, dtype=np.int64)
    picked = rows[alone]
    z, y, x = (c.astype(np.int64) for c in np.unravel_index(voxels[alone], shape))
    weights = [float(w) ** 2 for w in scale]
    plane, offset = (transforms.plane[picked].astype(np.int64),
                     transforms.offset[picked].astype(np.int64))
    limit = limit[alone]

    def labels(part: slice) -> np.ndarray:
        return nearest_labels(z[part], y[part], x[part], plane[part], offset[part], limit[part],
                              weights[1], weights[2], weights[0], shape[1], shape[2],
                              target_voxels, target_labels)

    cuts = np.linspace(0, picked.size, threads + 1).astype(np.int64)
    parts = [slice(a, b) for a, b in zip(cuts[:-1], cuts[1:])]
    best[alone] = np.concatenate(in_threads(labels, parts, threads))
    return best


def _cost_terms(n_objects: int, n_targets: int, n_sources: int, planes: int,
                plane: int) -> tuple[np.ndarray, np.ndarray]:
    """The cost model's terms (module comment): the KD-tree's, and the transforms'.

    Their dot products with :data:`_KD_COSTS` and :data:`_EDT_COSTS` are the
    estimated costs. `planes` is the number of planes holding a target voxel,
    `plane` the pixels of one plane of the box the transforms cover.
    """
    per_object = n_objects * float(n_targets) ** 0.25
    return (np.array([per_object]),
            np.array([per_object, planes * plane, planes * n_sources], dtype=np.float64))


def _transform_size(source_voxels, target_voxels, shape, box=None) -> tuple[int, int]:
    """(planes holding a target voxel, pixels of a plane of the box around both sets).

    `box` is :func:`_box` of both sets, when the caller has it already.
    """
    box = _box(source_voxels, target_voxels, shape) if box is None else box
    plane = (box[1].stop - box[1].start) * (box[2].stop - box[2].start)
    return int(np.unique(target_voxels // (shape[1] * shape[2])).size), int(plane)


def _choose_method(source_voxels, target_voxels, shape, n_objects: int, box=None) -> str:
    """``"kdtree"`` or ``"edt"``, whichever the cost model (module constants) says is faster.

    `box` is :func:`_box` of both sets, when the caller has it already.
    """
    # The planes hold at least every target voxel, and each source voxel meets at
    # least one of them: a lower bound of the transforms' cost often settles it.
    kd, edt = _cost_terms(n_objects, len(target_voxels), len(source_voxels), 1,
                          len(target_voxels))
    if _KD_COSTS @ kd <= _EDT_COSTS @ edt:
        return "kdtree"
    planes, plane = _transform_size(source_voxels, target_voxels, shape, box)
    if plane > _EDT_MAX_VOXELS:
        return "kdtree"
    edt = _cost_terms(n_objects, len(target_voxels), len(source_voxels), planes, plane)[1]
    return "edt" if _EDT_COSTS @ edt < _KD_COSTS @ kd else "kdtree"


def point_distances(points, target_label_image: np.ndarray | ObjectVoxels,
                    spacing=1.0, *, workers: int | None = None) -> np.ndarray:
    """Exact distance, in microns, from points to the nearest voxel centre of any target object.

    A point inside a target voxel (the voxel its coordinates round to) is at
    distance 0. Otherwise the nearest target voxel centre is on a target's
    face boundary (the argument of the module docstring, from the point's
    side), so only those are searched; for a point beyond the stack, also
    the target voxels on the stack's faces (a step from one towards the
    point would leave the stack).

    Parameters
    ----------
    points : (N, 3) array-like
        Positions in voxel coordinates (z, y, x), e.g. objects' intensity centroids.
    target_label_image : (Z, Y, X) ndarray of int, or ObjectVoxels
        Target objects, 0 as background (or their voxels only).
    spacing : float or sequence of 3 floats
        Microns per voxel (z, y, x).
    workers : int, optional
        Threads for the KD-tree query; None (the default) uses every core this
        process may run on (:func:`usable_cores`), -1 every core.

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
    threads = _threads(workers)
    targets = as_object_voxels(target_label_image, "target_label_image")
    scale = normalize_spacing(spacing)
    shape = np.array(targets.shape)
    if targets.voxels.size == 0:
        return np.full(len(points), np.nan)
    on_boundary = np.zeros(targets.voxels.size, dtype=bool)
    on_boundary[_face_boundary(targets.voxels, targets.labels, targets.shape)] = True
    voxel = np.rint(points).astype(np.int64)  # the voxel each point is in
    beyond = (voxel < 0) | (voxel > shape - 1)
    axes = np.flatnonzero(beyond.any(axis=0))
    if axes.size:  # the target voxels on those axes' faces
        coordinates = np.unravel_index(targets.voxels, targets.shape)
        for axis in axes:
            on_boundary |= (coordinates[axis] == 0) | (coordinates[axis] == shape[axis] - 1)
    boundary = targets.voxels[on_boundary]
    if boundary.size:
        centres = np.column_stack(np.unravel_index(boundary, targets.shape)) * scale
        # Built as the distances' tree is (a quicker build, and quicker queries here).
        tree = cKDTree(centres, leafsize=32, balanced_tree=False, compact_nodes=False)
        distance, _ = tree.query(points * scale, workers=threads)
    else:
        # One target fills the whole stack: every voxel centre is a target's, and the
        # nearest one to a point is found axis by axis.
        nearest = np.clip(np.rint(points), 0, shape - 1)
        distance = np.sqrt((((points - nearest) * scale) ** 2).sum(axis=1))
    inside = np.flatnonzero(~beyond.any(axis=1))
    flat = np.ravel_multi_index(tuple(voxel[inside].T), targets.shape)
    distance[inside[targets.find(flat) >= 0]] = 0.0
    return distance
