"""Compiled loop of the matched apertures (numba): the nearest object's key spread by a stencil.

A pure array function, compiled once (and cached on disk) by numba; it
releases the GIL. :func:`rna_localization.apertures.aperture_intensities`
calls it through ``_nearest_keys``, which documents the keys and why only the
offsets through a voxel's free faces are formed.
"""

from __future__ import annotations

from numba import njit

__all__ = ["spread_keys"]


@njit(cache=True, nogil=True)
def spread_keys(keys, voxels, index, faces, steps, step_keys, mask_starts, mask_steps):
    """Lower ``keys[v + steps[s]]`` to ``step_keys[s] + index`` for every voxel and allowed step.

    For voxel ``n`` (flat position ``voxels[n]`` in `keys`, object index
    ``index[n]``, free-face mask ``faces[n]``), the allowed steps are
    ``mask_steps[mask_starts[f] : mask_starts[f + 1]]`` with ``f = faces[n]``
    (indices into `steps` and `step_keys`): as ``np.minimum.at`` over every
    (voxel, allowed step) pair, in one pass, without the pairs' arrays.

    Parameters
    ----------
    keys : (M,) ndarray of int32 or int64
        Lowered in place.
    voxels : (N,) ndarray of int64
    index : (N,) ndarray, `keys`' dtype
    faces : (N,) ndarray of uint8
    steps : (S,) ndarray of int64
        Flat offsets; no voxel plus step leaves `keys`.
    step_keys : (S,) ndarray, `keys`' dtype
    mask_starts : (65,) ndarray of int64
    mask_steps : ndarray of int64
    """
    for n in range(voxels.size):
        mask = faces[n]
        if mask == 0:
            continue
        voxel = voxels[n]
        own = index[n]
        for j in range(mask_starts[mask], mask_starts[mask + 1]):
            step = mask_steps[j]
            at = voxel + steps[step]
            key = step_keys[step] + own
            if key < keys[at]:
                keys[at] = key
