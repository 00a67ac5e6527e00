"""Matched-aperture, background-subtracted intensities of segmented spots.

Pure array functions: nothing here reads files or talks to the database.

Aperture and shell
------------------
Every voxel within ``grow_um + shell_um`` microns of an object is given to its
nearest object (Euclidean distance between voxel centres, in microns). The
voxels so given to object *i* at most ``grow_um`` away form its *aperture*
(its own voxels included); those farther, up to ``grow_um + shell_um``, form
its *shell*, whose median is the local background. Because every voxel goes
to one object only, a bright neighbour's halo is counted in the neighbour's
aperture, not in the dimmer spot's.

How ties are made exact
-----------------------
:func:`scipy.ndimage.distance_transform_edt` gives the distance to and one
nearest object voxel for every voxel, but on a tie it picks a voxel by
position, not the smallest label. Call a voxel's *cell* the object it was
given (0 beyond the reach). If ``v``, at distance ``d(v)`` from its nearest
object, is tied between two labels, an object voxel of the other label -- in
another cell than ``v`` -- lies ``d(v)`` away. Let ``w`` be the voxel of
another cell closest to ``v``; one face step from ``w`` towards ``v`` is
strictly closer to ``v``, hence in ``v``'s cell, and borders ``w``'s: a
cell-boundary voxel lies within ``d(v)`` of ``v``. A second distance transform, to the
cell-boundary voxels, therefore finds every possible tie; only those voxels
are resolved exactly, against a KD-tree of the objects' face-boundary voxels
(a nearest object voxel always lies on its object's face boundary).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import ndimage
from scipy.spatial import cKDTree

from .objects import _check_pair, normalize_spacing

__all__ = ["APERTURE_COLUMNS", "APERTURE_GROW_UM", "APERTURE_SHELL_UM", "STORED_COLUMNS",
           "aperture_intensities", "spot_centroids"]

#: How far an aperture reaches beyond its object, µm. 0.3 holds 90-95% of a single
#: molecule's light (the axial tails are long; 0.5 holds >= 98%), and about the same
#: fraction of a granule's, which is what molecule counts need; a wider aperture
#: takes in more of the neighbours' light where RNA is dense, and on the simulated
#: demo it made molecules per granule worse (28.8% mean error against 25%).
APERTURE_GROW_UM = 0.3
#: Thickness of the background shell around the aperture, µm.
APERTURE_SHELL_UM = 0.3

#: Columns of :func:`aperture_intensities`, in order, with their dtypes.
APERTURE_COLUMNS = {
    "object_id": "int64",
    "spot_intensity": "float64",
    "background": "float64",
    "aperture_area": "int64",
    "shell_area": "int64",
}
#: Columns of :func:`spot_centroids`.
CENTROID_COLUMNS = {"object_id": "int64", "spot_centroid_z": "float64",
                    "spot_centroid_y": "float64", "spot_centroid_x": "float64"}
#: The columns extraction stores in the database beside measure_objects' ones.
STORED_COLUMNS = ("spot_intensity", "background", "spot_centroid_z", "spot_centroid_y",
                  "spot_centroid_x")

#: Distances within this relative tolerance count as equal (voxel-grid distances
#: are sums of squares: exact ties and exactly-on-the-radius voxels are common,
#: and rounding must not split them).
_RTOL = 1e-9

# Nearest object voxels fetched per voxel checked for ties before falling back to
# a ball query (4 is fastest on dense spots; ties of more than 4 voxels are rare).
_K_NEAREST = 4

# Voxels checked for ties at a time, to bound the memory of the check.
_CHUNK = 1 << 18


def _at_most(limit: float) -> float:
    """Largest distance counted as <= `limit`, allowing for rounding."""
    return limit * (1.0 + _RTOL) + 1e-12


def empty_apertures() -> pd.DataFrame:
    """Zero-row table with the columns and dtypes of :func:`aperture_intensities`."""
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in APERTURE_COLUMNS.items()})


def _check_length(value, name: str, *, allow_zero: bool) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError) as error:
        msg = f"{name} must be a number of microns; got {value!r}."
        raise ValueError(msg) from error
    if not np.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        msg = f"{name} must be finite and {bound} microns; got {value!r}."
        raise ValueError(msg)
    return value


def _distances_from_indices(indices: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Microns from every voxel to the voxel its `indices` (a feature transform) name."""
    squared = None
    for axis, step in enumerate(scale):
        shape = [1] * (indices.ndim - 1)
        shape[axis] = -1
        here = np.arange(indices.shape[axis + 1]).reshape(shape)
        offset = (indices[axis] - here).astype(np.float64)
        offset *= step
        offset *= offset
        squared = offset if squared is None else np.add(squared, offset, out=squared)
    return np.sqrt(squared, out=squared)


def _has_other_neighbour(array: np.ndarray) -> np.ndarray:
    """Boolean map of the voxels with a face neighbour of another value."""
    other = np.zeros(array.shape, dtype=bool)
    for axis in range(array.ndim):
        differs = np.diff(array, axis=axis) != 0
        lower = [slice(None)] * array.ndim
        upper = [slice(None)] * array.ndim
        lower[axis] = slice(None, -1)
        upper[axis] = slice(1, None)
        other[tuple(lower)] |= differs
        other[tuple(upper)] |= differs
    return other


def _nearest_objects(labels: np.ndarray, scale: np.ndarray, limit: float):
    """Nearest object label and its distance for every voxel within `limit` microns.

    Returns
    -------
    nearest : ndarray, like `labels`
        Label of the nearest object (smallest label on ties), 0 beyond `limit`.
    distance : ndarray of float64
        Microns to the nearest object voxel (0 on objects).
    """
    objects = labels != 0
    indices = ndimage.distance_transform_edt(
        ~objects, sampling=scale, return_distances=False, return_indices=True
    )
    distance = _distances_from_indices(indices, scale)
    within = distance <= limit
    nearest = np.zeros(labels.shape, dtype=labels.dtype)  # C order: ravel() is a view
    nearest[within] = labels[tuple(indices[:, within])]
    del indices

    # Ties between labels are possible only close to a boundary between cells
    # (module docstring). Checked in chunks, so their temporaries stay ~40 MB.
    present = labels[objects]
    if np.any(present != present[0]):
        edge_indices = ndimage.distance_transform_edt(
            ~_has_other_neighbour(nearest), sampling=scale,
            return_distances=False, return_indices=True,
        )
        region = np.flatnonzero(within & ~objects)
        tree, tree_labels = _boundary_tree(labels, scale)
        flat_nearest, flat_distance = nearest.ravel(), distance.ravel()
        for start in range(0, region.size, _CHUNK):
            voxels = region[start : start + _CHUNK]
            coords = np.unravel_index(voxels, labels.shape)
            d = flat_distance[voxels]
            to_edge = np.sqrt(
                sum(
                    ((edge_indices[axis][coords] - coords[axis]) * step) ** 2
                    for axis, step in enumerate(scale)
                )
            )
            candidates = np.flatnonzero(to_edge <= _at_most(d))
            if candidates.size:
                points = np.column_stack([c[candidates] for c in coords]) * scale
                flat_nearest[voxels[candidates]] = _smallest_tied_label(
                    tree, tree_labels, points, d[candidates]
                )
    return nearest, distance


def _boundary_tree(labels: np.ndarray, scale: np.ndarray):
    """KD-tree of the object voxels with a face neighbour of another label, and their labels.

    A nearest object voxel always is one: a voxel all of whose face neighbours
    were of its own object has one strictly closer to any outside voxel.
    """
    boundary = np.flatnonzero(_has_other_neighbour(labels) & (labels != 0))
    points = np.column_stack(np.unravel_index(boundary, labels.shape)) * scale
    # Sliding-midpoint splits suit points on a voxel grid.
    tree = cKDTree(points, balanced_tree=False, compact_nodes=False)
    return tree, labels.ravel()[boundary].astype(np.int64)


def _smallest_tied_label(tree, tree_labels, points, distance) -> np.ndarray:
    """Smallest label among the tree's voxels within `distance` (to rounding) of `points`."""
    radius = _at_most(distance)
    k = min(_K_NEAREST, tree.n)
    found, index = tree.query(points, k=k, distance_upper_bound=float(radius.max()))
    found, index = found.reshape(len(points), k), index.reshape(len(points), k)
    tied = found <= radius[:, None]
    none = np.iinfo(np.int64).max
    best = np.where(tied, np.r_[tree_labels, none][index], none).min(axis=1)
    crowded = np.flatnonzero(tied[:, -1]) if k < tree.n else np.empty(0, dtype=np.intp)
    if crowded.size:  # more than k tied voxels: ask for all of them
        hits = tree.query_ball_point(points[crowded], r=radius[crowded])
        best[crowded] = [tree_labels[h].min() for h in hits]
    return best


def _group_medians(keys: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """Median of `values` per key in ``0..n-1`` (NaN for keys without values)."""
    order = np.lexsort((values, keys))
    values = values[order]
    counts = np.bincount(keys, minlength=n)
    starts = np.cumsum(counts) - counts
    medians = np.full(n, np.nan)
    has = counts > 0
    low = values[starts[has] + (counts[has] - 1) // 2]
    high = values[starts[has] + counts[has] // 2]
    medians[has] = (low + high) / 2
    return medians


def aperture_intensities(
    label_image: np.ndarray,
    intensity_image: np.ndarray,
    *,
    spacing,
    grow_um: float = APERTURE_GROW_UM,
    shell_um: float = APERTURE_SHELL_UM,
) -> pd.DataFrame:
    """Matched-aperture, background-subtracted intensity of every object.

    Every voxel within ``grow_um + shell_um`` of an object belongs to its
    nearest object: the smallest Euclidean distance, in microns, between voxel
    centres. Ties (to a relative 1e-9) go to the smallest label. Object *i*'s
    *aperture* is the voxels belonging to it at most `grow_um` away (its own
    voxels included); its *shell* those farther, at most ``grow_um + shell_um``
    away. Distances within a relative 1e-9 of a radius count as on it (e.g. a
    voxel one 0.3 um z-step away is in a 0.3 um aperture).

    Parameters
    ----------
    label_image : (Z, Y, X) ndarray of int
        Objects as positive labels, 0 as background (see
        :func:`~rna_localization.objects.label_objects`).
    intensity_image : (Z, Y, X) ndarray
        Raw intensities, same shape; every value must be finite.
    spacing : float or (3,) sequence of float
        Voxel size along (z, y, x) in microns, e.g. ``(0.2, 0.065, 0.065)``.
    grow_um : float
        How far the aperture reaches beyond the object, >= 0 microns.
    shell_um : float
        Thickness of the background shell around the aperture, > 0 microns.

    Returns
    -------
    DataFrame
        One row per label present, sorted by ``object_id``, with the columns of
        :data:`APERTURE_COLUMNS`:

        - ``background``: median intensity over the shell; when the shell is
          empty (neighbours or the image edge take all of it), the median of
          the whole `intensity_image` instead.
        - ``spot_intensity``: sum of the intensities over the aperture (in
          float64) minus ``background`` times ``aperture_area``.
        - ``aperture_area``, ``shell_area``: voxel counts.

        No object gives zero rows with the same columns.

    Notes
    -----
    Only the bounding box of the objects, enlarged by ``grow_um + shell_um``,
    is processed, so sparse objects in a large stack cost little; it takes
    about 60 bytes per voxel of that box.

    Examples
    --------
    >>> labels = np.zeros((1, 1, 9), int); labels[0, 0, 4] = 1
    >>> raw = np.array([[[10, 10, 10, 12, 50, 12, 10, 10, 10]]], dtype=np.uint16)
    >>> aperture_intensities(labels, raw, spacing=1.0, grow_um=1.0, shell_um=2.0)
       object_id  spot_intensity  background  aperture_area  shell_area
    0          1            44.0        10.0              3           4
    """
    label_image, intensity_image = _check_pair(label_image, intensity_image)
    if label_image.dtype == bool:
        label_image = label_image.view(np.uint8)
    if not np.issubdtype(label_image.dtype, np.integer):
        msg = f"label_image must hold integer labels; got dtype {label_image.dtype}."
        raise TypeError(msg)
    if not np.issubdtype(intensity_image.dtype, np.number) or np.iscomplexobj(intensity_image):
        msg = f"intensity_image must hold real numbers; got dtype {intensity_image.dtype}."
        raise TypeError(msg)
    if np.issubdtype(intensity_image.dtype, np.floating):
        bad = intensity_image.size - int(np.count_nonzero(np.isfinite(intensity_image)))
        if bad:
            msg = f"intensity_image has {bad} non-finite voxels (NaN or infinite)."
            raise ValueError(msg)
    scale = normalize_spacing(spacing)
    grow_um = _check_length(grow_um, "grow_um", allow_zero=True)
    shell_um = _check_length(shell_um, "shell_um", allow_zero=False)

    objects = label_image != 0
    extents = [np.flatnonzero(np.any(objects, axis=tuple(a for a in range(3) if a != axis)))
               for axis in range(3)]
    if extents[0].size == 0:
        return empty_apertures()
    if label_image[objects].min() < 0:
        msg = "label_image has negative labels; labels must be >= 0."
        raise ValueError(msg)
    del objects

    outer = _at_most(grow_um + shell_um)
    margin = np.floor(outer / scale).astype(int) + 1
    box = tuple(
        slice(max(int(found[0]) - m, 0), min(int(found[-1]) + 1 + m, size))
        for found, m, size in zip(extents, margin, label_image.shape)
    )
    labels = label_image[box]
    nearest, distance = _nearest_objects(labels, scale, outer)

    object_ids = np.unique(labels[labels != 0])
    n = object_ids.size
    values = intensity_image[box]

    owned = nearest != 0
    in_aperture = owned & (distance <= _at_most(grow_um))
    in_shell = owned & ~in_aperture
    del owned, distance

    keys = np.searchsorted(object_ids, nearest[in_aperture])
    aperture_area = np.bincount(keys, minlength=n)
    aperture_sum = np.bincount(
        keys, weights=values[in_aperture].astype(np.float64), minlength=n
    )
    keys = np.searchsorted(object_ids, nearest[in_shell])
    shell_area = np.bincount(keys, minlength=n)
    background = _group_medians(keys, values[in_shell].astype(np.float64), n)
    if np.isnan(background).any():
        background[np.isnan(background)] = np.median(intensity_image.astype(np.float64, copy=False))

    return pd.DataFrame(
        {
            "object_id": object_ids.astype(np.int64),
            "spot_intensity": aperture_sum - background * aperture_area,
            "background": background,
            "aperture_area": aperture_area.astype(np.int64),
            "shell_area": shell_area.astype(np.int64),
        }
    )


def spot_centroids(label_image: np.ndarray, intensity_image: np.ndarray, background) -> pd.DataFrame:
    """Background-subtracted intensity centroid of every object, in voxel coordinates.

    Each voxel of object *i* weighs ``max(intensity - background_i, 0)``: the
    spot's own light, not the background under it (which would pull the
    centroid to the mask's geometric centre) and not its neighbours'. An
    object with no voxel above its background gets its plain centroid.

    Parameters
    ----------
    label_image : (Z, Y, X) ndarray of int
        Objects 1..n, 0 as background.
    intensity_image : (Z, Y, X) ndarray
        Raw intensities, same shape.
    background : Series or mapping
        Background level of each object, indexed by object id (e.g. from
        :func:`aperture_intensities`).

    Returns
    -------
    DataFrame
        ``object_id``, ``spot_centroid_z``, ``spot_centroid_y``, ``spot_centroid_x``,
        one row per object, sorted by ``object_id``.

    Examples
    --------
    >>> labels = np.zeros((1, 1, 5), np.int32)
    >>> labels[0, 0, 1:4] = 1
    >>> raw = np.array([[[10, 10, 12, 16, 10]]])
    >>> spot_centroids(labels, raw, {1: 10.0})["spot_centroid_x"].tolist()
    [2.75]
    """
    labels = np.asarray(label_image)
    voxels = np.flatnonzero(labels)
    if voxels.size == 0:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in CENTROID_COLUMNS.items()})
    owner = labels.ravel()[voxels].astype(np.int64)
    ids = np.unique(owner)
    level = pd.Series(background).reindex(ids).to_numpy(np.float64)
    lookup = np.zeros(int(ids.max()) + 1, dtype=np.float64)
    lookup[ids] = level
    values = np.asarray(intensity_image).ravel()[voxels].astype(np.float64)
    weight = np.maximum(values - lookup[owner], 0.0)
    size = int(ids.max()) + 1
    total = np.bincount(owner, weights=weight, minlength=size)[ids]
    count = np.bincount(owner, minlength=size)[ids]
    coordinates = np.unravel_index(voxels, labels.shape)
    columns = {"object_id": ids}
    for axis, name in enumerate(("spot_centroid_z", "spot_centroid_y", "spot_centroid_x")):
        weighted = np.bincount(owner, weights=weight * coordinates[axis], minlength=size)[ids]
        plain = np.bincount(owner, weights=coordinates[axis].astype(np.float64), minlength=size)[ids]
        with np.errstate(invalid="ignore", divide="ignore"):
            columns[name] = np.where(total > 0, weighted / total, plain / count)
    return pd.DataFrame(columns).astype(CENTROID_COLUMNS)
