"""Score spot detections against a simulation's truth: one-to-one matching within a radius.

A detection and a true molecule *match* when they are closer than a radius,
which may differ along z (anisotropic): positions ``a`` and ``b`` (µm, z, y, x)
match when ``sum(((a - b) / radius) ** 2) <= 1``. Each detection matches at most
one molecule and each molecule at most one detection; among the one-to-one
matchings with the most pairs, the one with the smallest total normalized
distance ``sqrt(sum(((a - b) / radius) ** 2))`` is kept. The matching is exact
(not greedy): a minimum-weight full matching of a sparse bipartite graph.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components, min_weight_full_bipartite_matching
from scipy.spatial import cKDTree

__all__ = ["mask_spots", "match_points", "score_spots", "unresolvable"]

#: Default matching radius (z, y, x) in µm for :func:`score_spots`: about two
#: PSF sigmas of a high-NA objective, half the distance at which two molecules
#: start to be resolved laterally.
SCORE_RADIUS_UM = (0.6, 0.25, 0.25)

#: Default resolution limit (z, y, x) in µm for :func:`score_spots`: a single
#: molecule with another molecule closer than this (anisotropic ellipsoid, as
#: the matching radius) cannot be resolved by any detector.
RESOLUTION_UM = (0.8, 0.3, 0.3)


def _points(points, what: str) -> np.ndarray:
    array = np.asarray(points, dtype=np.float64)
    if array.size == 0:
        return np.empty((0, 3))
    if array.ndim != 2 or array.shape[1] != 3:
        msg = f"{what} must have shape (N, 3); got {array.shape}."
        raise ValueError(msg)
    if not np.isfinite(array).all():
        msg = f"{what} holds NaN or infinite coordinates."
        raise ValueError(msg)
    return array


def _radius(radius, what: str = "radius") -> np.ndarray:
    array = np.asarray(radius, dtype=np.float64)
    if array.shape not in ((), (1,), (3,)) or not (np.isfinite(array).all() and (array > 0).all()):
        msg = f"{what} must be a positive scalar or 3 positive values (z, y, x); got {radius!r}."
        raise ValueError(msg)
    return np.broadcast_to(array, (3,)).copy()


def _candidate_pairs(a: np.ndarray, b: np.ndarray, radius: np.ndarray):
    """(i, j, normalized distance) of every pair within `radius`, from a KD-tree."""
    if len(a) == 0 or len(b) == 0:
        empty = np.empty(0, np.intp)
        return empty, empty, np.empty(0)
    tree_a, tree_b = cKDTree(a / radius), cKDTree(b / radius)
    pairs = tree_a.sparse_distance_matrix(tree_b, 1.0, output_type="ndarray")
    i, j, d = pairs["i"].astype(np.intp), pairs["j"].astype(np.intp), pairs["v"]
    # sparse_distance_matrix keeps d <= 1 up to rounding; hold the exact rule.
    diff = (a[i] - b[j]) / radius
    keep = np.einsum("ij,ij->i", diff, diff) <= 1.0
    return i[keep], j[keep], d[keep]


def match_points(detected, truth, *, radius) -> tuple[np.ndarray, np.ndarray]:
    """Match detections to true positions one-to-one within a radius.

    Parameters
    ----------
    detected : (N, 3) array_like
        Detected positions (z, y, x) in µm.
    truth : (M, 3) array_like
        True positions (z, y, x) in µm.
    radius : float or (3,) array_like
        Largest distance (µm) of a match, one value or one per axis (z, y, x):
        ``a`` and ``b`` match when ``sum(((a - b) / radius) ** 2) <= 1``.

    Returns
    -------
    detected_index, truth_index : ndarray of intp
        Matched pairs ``detected[detected_index[k]] <-> truth[truth_index[k]]``,
        sorted by detected index. Their number is the largest any one-to-one
        matching reaches; among such matchings, the total normalized distance
        is the smallest.

    Notes
    -----
    Candidate pairs come from a KD-tree on coordinates divided by `radius`.
    Each connected group of candidates is solved exactly, all at once, as a
    minimum-weight full matching (:func:`scipy.sparse.csgraph.min_weight_full_bipartite_matching`)
    of an augmented graph: every point may also pair with its own "unmatched"
    stand-in at a cost larger than any difference of total distance within its
    group, so more matches always win and distance breaks ties.

    Examples
    --------
    >>> detected = [[0.0, 0.0, 0.0], [0.0, 0.0, 0.15], [5.0, 5.0, 5.0]]
    >>> truth = [[0.0, 0.0, 0.1], [0.0, 0.0, 0.35]]
    >>> match_points(detected, truth, radius=(0.6, 0.25, 0.25))
    (array([0, 1]), array([0, 1]))

    A greedy matcher, nearest pair first, would give detection 1 the nearer
    truth 0 and leave detection 0 and truth 1 alone; the exact matching keeps
    both pairs.
    """
    detected, truth = _points(detected, "detected"), _points(truth, "truth")
    radius = _radius(radius)
    i, j, dist = _candidate_pairs(detected, truth, radius)
    if len(i) == 0:
        empty = np.empty(0, np.intp)
        return empty, empty.copy()

    # Keep only the points with a candidate, renumbered 0..n-1 and 0..m-1.
    rows, i = np.unique(i, return_inverse=True)
    cols, j = np.unique(j, return_inverse=True)
    n, m = len(rows), len(cols)
    # Connected groups of the candidate graph, and a penalty per group larger
    # than any total distance its matchings can differ by (each pair costs <= 1).
    graph = coo_matrix((np.ones(len(i)), (i, n + j)), shape=(n + m, n + m))
    _, group = connected_components(graph, directed=False)
    size_rows = np.bincount(group[:n], minlength=group.max() + 1)
    size_cols = np.bincount(group[n:], minlength=group.max() + 1)
    penalty = np.minimum(size_rows, size_cols) + 1.0  # per group
    half_row, half_col = 0.5 * penalty[group[:n]], 0.5 * penalty[group[n:]]

    # Augmented graph: rows = detections (n) then truth stand-ins (m);
    # columns = truths (m) then detection stand-ins (n). A real pair (i, j)
    # costs its distance; a point left alone pairs with its own stand-in at
    # half the group's penalty; the stand-ins of a real pair pair together for
    # free. Every weight is shifted by +1 (a full matching has n + m edges, so
    # the optimum does not move) because the solver ignores zero weights.
    ar, am = np.arange(n), np.arange(m)
    r = np.concatenate([i, ar, n + am, n + j])
    c = np.concatenate([j, m + ar, am, m + i])
    w = np.concatenate([dist, half_row, half_col, np.zeros(len(i))]) + 1.0
    augmented = coo_matrix((w, (r, c)), shape=(n + m, n + m)).tocsr()
    row_ind, col_ind = min_weight_full_bipartite_matching(augmented)
    real = (row_ind < n) & (col_ind < m)
    return rows[row_ind[real]].astype(np.intp), cols[col_ind[real]].astype(np.intp)


def score_spots(detected_zyx, molecules: pd.DataFrame, *, spacing,
                radius_um=SCORE_RADIUS_UM, resolution_um=RESOLUTION_UM) -> dict:
    """Recall, precision and F1 of spot detections against a simulation's resolvable single molecules.

    Only molecules a detector could resolve are targets. A molecule is
    *unresolvable* when it lies in a granule (``in_granule`` True) or when it is
    a single molecule with another molecule, single or in a granule, within
    `resolution_um` (anisotropic like the matching radius: ``a`` and ``b`` are
    too close when ``sum(((a - b) / resolution_um) ** 2) <= 1``). Unresolvable
    molecules are not targets, and detections within `radius_um` of any of them
    are set aside, neither true nor false (one detection or several may answer
    for a close pair or a granule).

    Parameters
    ----------
    detected_zyx : (N, 3) array_like
        Detected spots (z, y, x) in voxel coordinates.
    molecules : DataFrame
        The truth: columns ``z``, ``y``, ``x`` (voxel coordinates) and
        ``in_granule`` (bool), as :attr:`SimulatedImage.molecules`.
    spacing : (3,) sequence of float
        Voxel size (z, y, x) in µm.
    radius_um : float or (3,) sequence of float
        Matching radius in µm (see :func:`match_points`).
    resolution_um : float or (3,) sequence of float
        Distance in µm, one value or one per axis (z, y, x), within which two
        molecules are not resolvable.

    Returns
    -------
    dict
        ``n_true``: the targets, the resolvable single molecules.
        ``n_true_set_aside``: the unresolvable single molecules (no target).
        ``n_detected``: all detections. ``n_set_aside``: detections within
        `radius_um` of an unresolvable molecule (granule or single), neither
        true nor false. ``n_matched``: one-to-one matches of the other
        detections to the targets; ``n_false``: the rest of those detections.
        ``recall`` = matched / true, ``precision`` = matched / (matched +
        false), ``f1`` = 2 matched / (true + matched + false); a ratio with
        nothing to divide by is NaN. ``target`` and ``found``: (N,) bool per
        row of `molecules`, whether it is a target and whether a detection
        was matched to it (recall by molecule brightness, for instance).

    Examples
    --------
    An isolated single molecule (0), a close pair of singles 0.13 µm apart (1,
    2) and a granule (3, 4):

    >>> molecules = pd.DataFrame({"z": [5.0, 5.0, 5.0, 5.0, 5.0],
    ...                           "y": [10.0, 40.0, 40.0, 70.0, 71.0],
    ...                           "x": [10.0, 40.0, 42.0, 70.0, 71.0],
    ...                           "in_granule": [False, False, False, True, True]})
    >>> detected = [[5, 10, 11], [5, 40, 41], [5, 70, 70], [5, 71, 71], [5, 100, 100]]
    >>> score = score_spots(detected, molecules, spacing=(0.2, 0.065, 0.065))
    >>> {k: score[k] for k in ("n_true", "n_true_set_aside", "n_matched", "n_false",
    ...                        "n_set_aside")}
    {'n_true': 1, 'n_true_set_aside': 2, 'n_matched': 1, 'n_false': 1, 'n_set_aside': 3}
    >>> score["recall"], score["precision"]
    (1.0, 0.5)
    >>> score["target"].tolist(), score["found"].tolist()
    ([True, False, False, False, False], [True, False, False, False, False])
    """
    spacing = np.asarray(spacing, dtype=np.float64)
    radius = _radius(radius_um)
    detected = _points(detected_zyx, "detected_zyx") * spacing
    positions = molecules[["z", "y", "x"]].to_numpy(dtype=np.float64).reshape(-1, 3) * spacing
    in_granule = molecules["in_granule"].to_numpy(dtype=bool)
    hidden = unresolvable(molecules, spacing=spacing, resolution_um=resolution_um)

    aside = np.zeros(len(detected), bool)
    near, _, _ = _candidate_pairs(detected, positions[hidden], radius)
    aside[near] = True
    scored, targets = detected[~aside], positions[~hidden]
    matched, matched_targets = match_points(scored, targets, radius=radius)
    found = np.zeros(len(positions), dtype=bool)
    found[np.flatnonzero(~hidden)[matched_targets]] = True

    n_true, n_scored, n_matched = len(targets), len(scored), len(matched)
    nan = float("nan")
    return {
        "recall": n_matched / n_true if n_true else nan,
        "precision": n_matched / n_scored if n_scored else nan,
        "f1": 2 * n_matched / (n_true + n_scored) if n_true + n_scored else nan,
        "n_true": n_true,
        "n_detected": len(detected),
        "n_matched": n_matched,
        "n_false": n_scored - n_matched,
        "n_set_aside": int(aside.sum()),
        "n_true_set_aside": int((hidden & ~in_granule).sum()),
        "target": ~hidden,
        "found": found,
    }


def unresolvable(molecules: pd.DataFrame, *, spacing, resolution_um=RESOLUTION_UM) -> np.ndarray:
    """Which molecules no detector could resolve: in a granule, or too close to another molecule.

    Parameters
    ----------
    molecules : DataFrame
        Columns ``z``, ``y``, ``x`` (voxel coordinates) and ``in_granule``
        (bool), as :attr:`SimulatedImage.molecules`.
    spacing : (3,) sequence of float
        Voxel size (z, y, x) in µm.
    resolution_um : float or (3,) sequence of float
        A single molecule with another molecule (single or in a granule) at
        ``sum(((a - b) / resolution_um) ** 2) <= 1`` is unresolvable.

    Returns
    -------
    (N,) ndarray of bool

    Examples
    --------
    >>> molecules = pd.DataFrame({"z": [5.0, 5.0, 5.0, 5.0], "y": [10.0, 40.0, 40.0, 70.0],
    ...                           "x": [10.0, 40.0, 42.0, 70.0],
    ...                           "in_granule": [False, False, False, True]})
    >>> unresolvable(molecules, spacing=(0.2, 0.065, 0.065)).tolist()
    [False, True, True, True]
    """
    spacing = np.asarray(spacing, dtype=np.float64)
    resolution = _radius(resolution_um, "resolution_um")
    positions = molecules[["z", "y", "x"]].to_numpy(dtype=np.float64).reshape(-1, 3) * spacing
    in_granule = molecules["in_granule"].to_numpy(dtype=bool)
    single_index = np.flatnonzero(~in_granule)
    result = in_granule.copy()
    i, j, _ = _candidate_pairs(positions[single_index], positions, resolution)
    crowded = i[single_index[i] != j]
    result[single_index[crowded]] = True
    return result


def mask_spots(mask: np.ndarray, image: np.ndarray | None = None) -> np.ndarray:
    """Centroids of the face-connected objects of a mask, in voxel coordinates.

    Parameters
    ----------
    mask : (Z, Y, X) ndarray
        Binary mask (nonzero = object), e.g. from :func:`rna_localization.segmentation.segment`.
    image : (Z, Y, X) ndarray, optional
        Intensities to weight each centroid by (e.g. the raw stack); plain
        geometric centroids without it.

    Returns
    -------
    (N, 3) ndarray of float64
        One row (z, y, x) per object, in label order (raster order of each
        object's first voxel).

    Examples
    --------
    >>> mask = np.zeros((5, 8, 8), np.uint8)
    >>> mask[2, 1:3, 1] = 255
    >>> mask[2, 5, 5:8] = 255
    >>> mask_spots(mask)
    array([[2. , 1.5, 1. ],
           [2. , 5. , 6. ]])
    """
    mask = np.asarray(mask)
    if mask.ndim != 3:
        msg = f"mask must be 3D (Z, Y, X); got shape {mask.shape}."
        raise ValueError(msg)
    if image is not None and np.shape(image) != mask.shape:
        msg = f"image shape {np.shape(image)} differs from mask shape {mask.shape}."
        raise ValueError(msg)
    labels, n = ndimage.label(mask != 0)  # face connectivity (6-connected)
    if n == 0:
        return np.empty((0, 3))
    geometric = np.asarray(ndimage.center_of_mass(labels > 0, labels, np.arange(1, n + 1)),
                           dtype=np.float64).reshape(n, 3)
    if image is None:
        return geometric
    weights = np.asarray(image, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        weighted = np.asarray(ndimage.center_of_mass(weights, labels, np.arange(1, n + 1)),
                              dtype=np.float64).reshape(n, 3)
    # An object whose intensities sum to zero keeps its geometric centroid.
    bad = ~np.isfinite(weighted).all(axis=1)
    weighted[bad] = geometric[bad]
    return weighted
