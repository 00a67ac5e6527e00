"""The chance baseline: the cumulative distribution of RNA spread uniformly.

If an image's RNA were spread uniformly over its volume (or over a region,
e.g. the embryo or the cytoplasm), the fraction of it within ``d`` of the
target structure would be the fraction of the volume's voxels within ``d``.
That fraction is computed exactly, from the Euclidean distance transform to
the target with the image's anisotropic voxel size, not from random draws.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["distance_to_target", "expected_cumulative_distribution", "image_baseline"]


#: Voxels whose squared distances are held at once (planes of the stack at a time): the
#: only whole-volume arrays are then the target and its feature transform (12 bytes a voxel).
_SLAB_VOXELS = 1 << 20


def _feature_transform(target, spacing) -> tuple[np.ndarray, np.ndarray]:
    """Each voxel's nearest target voxel, (3, Z, Y, X) int32, and the spacing as 3 floats."""
    target = np.asarray(target) != 0
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


def expected_cumulative_distribution(target, spacing, distances, *, region=None) -> np.ndarray:
    """Percent of uniformly spread RNA within each distance of the target.

    With ``D`` the distance of each voxel of the region to the target
    (:func:`distance_to_target`) and ``t = distances[-1]`` the distance
    threshold, ``expected(d) = 100 · #{D ≤ d} / #{D ≤ t}``: the same
    definition as the observed ``percent_total_rna``, whose denominator is
    the RNA within the threshold, so the curve is 100 at ``t``.

    The pipeline computes it in the distances step, for the distances the
    image's cumulative distribution will have, and stores it with the
    distances (:func:`rna_localization.steps.measure_distances`). Memory:
    the target's feature transform (12 bytes a voxel), then slabs of planes.

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
    if distances.ndim != 1 or distances.size == 0 or np.any(np.diff(distances) <= 0):
        msg = "distances must be a non-empty, strictly increasing 1-D sequence of microns."
        raise ValueError(msg)
    nearest, spacing = _feature_transform(target, spacing)
    if region is not None:
        region = np.asarray(region) != 0
        if region.shape != nearest.shape[1:]:
            msg = f"the region has shape {region.shape}, the target {nearest.shape[1:]}: they must match."
            raise ValueError(msg)
    # A voxel exactly at a distance counts as within it, as an object does; a hair of
    # tolerance makes 3 · 0.05 be 0.15. Compared squared: no square root per voxel.
    edges = distances * (1 + 1e-9) + 1e-12
    edges *= edges
    counts = np.zeros(edges.size + 1, dtype=np.int64)
    for planes, squared in _squared_slabs(nearest, spacing):
        values = squared[region[planes]] if region is not None else squared.ravel()
        values = values[values <= edges[-1]]  # beyond the threshold: in no count
        # Each voxel's first distance it is within; counted, then summed up (no sort).
        counts += np.bincount(np.searchsorted(edges, values, side="left"), minlength=edges.size + 1)
    within = np.cumsum(counts[:edges.size])
    if within[-1] == 0:
        msg = f"no voxel of the region is within {distances[-1]} µm of the target."
        raise ValueError(msg)
    return 100.0 * within / within[-1]


def image_baseline(target_labels, spacing, distances, *, region_labels=None) -> np.ndarray | None:
    """:func:`expected_cumulative_distribution` of one image's label images, or None.

    None when the image has no target object, when a region is asked for and
    it has no object, or when no region voxel lies within the threshold: the
    image has no chance baseline (the callers name it in a warning).

    Parameters
    ----------
    target_labels : (Z, Y, X) ndarray
        structure_2's label image.
    spacing : sequence of 3 floats
        Microns per voxel (z, y, x).
    distances : (N,) array-like
        As :func:`expected_cumulative_distribution`.
    region_labels : (Z, Y, X) ndarray, optional
        The region's label image; None: the whole volume.

    Examples
    --------
    >>> image_baseline(np.zeros((3, 3, 3), int), 1.0, [0.0, 1.0]) is None
    True
    """
    target = np.asarray(target_labels) > 0
    if not target.any():
        return None
    region = None if region_labels is None else np.asarray(region_labels) > 0
    if region is not None and not region.any():
        return None
    try:
        return expected_cumulative_distribution(target, spacing, distances, region=region)
    except ValueError:  # no voxel of the region within the threshold of the target
        return None
