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

__all__ = ["distance_to_target", "expected_cumulative_distribution"]


def _squared_distances(target, spacing) -> np.ndarray:
    """Squared microns from every voxel centre to the nearest target voxel centre."""
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
    # The exact feature transform (each voxel's nearest target voxel), then the squared
    # distances axis by axis: no square roots, and none of scipy's float index copies.
    nearest = ndimage.distance_transform_edt(~target, sampling=tuple(spacing),
                                             return_distances=False, return_indices=True)
    squared = np.zeros(target.shape)
    for axis, step in enumerate(spacing):
        position = np.arange(target.shape[axis]).reshape([-1 if a == axis else 1 for a in range(3)])
        offset = (nearest[axis] - position).astype(np.float64)
        offset *= step
        offset *= offset
        squared += offset
    return squared


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
    return np.sqrt(_squared_distances(target, spacing))


def expected_cumulative_distribution(target, spacing, distances, *, region=None) -> np.ndarray:
    """Percent of uniformly spread RNA within each distance of the target.

    With ``D`` the distance of each voxel of the region to the target
    (:func:`distance_to_target`) and ``t = distances[-1]`` the distance
    threshold, ``expected(d) = 100 · #{D ≤ d} / #{D ≤ t}``: the same
    definition as the observed ``percent_total_rna``, whose denominator is
    the RNA within the threshold, so the curve is 100 at ``t``.

    The pipeline computes it in the distances step, for the distances the
    image's cumulative distribution will have, and stores it with the
    distances (:func:`rna_localization.steps.measure_distances`).

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
    squared = _squared_distances(target, spacing)
    if region is not None:
        region = np.asarray(region) != 0
        if region.shape != squared.shape:
            msg = f"the region has shape {region.shape}, the target {squared.shape}: they must match."
            raise ValueError(msg)
        squared = squared[region]
    # A voxel exactly at a distance counts as within it, as an object does; a hair of
    # tolerance makes 3 · 0.05 be 0.15. Compared squared: no square root per voxel.
    edges = distances * (1 + 1e-9) + 1e-12
    # Each voxel's first distance it is within; counted, then summed up (no sort).
    first = np.searchsorted(edges * edges, squared.ravel(), side="left")
    within = np.cumsum(np.bincount(first, minlength=edges.size + 1)[:edges.size])
    if within[-1] == 0:
        msg = f"no voxel of the region is within {distances[-1]} µm of the target."
        raise ValueError(msg)
    return 100.0 * within / within[-1]
