"""Compiled kernel (numba): which object voxels lie on their object's face boundary.

A pure array function over the object voxels only (flat indices in ascending
order, as :class:`~rna_localization.objects.ObjectVoxels` holds them), never the
volume: :func:`rna_localization.distances.nearest_distances` compares only
these voxels (its module docstring says why that is exact). It releases the
GIL and is compiled once (and cached on disk).
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["face_boundary_mask"]


@njit(cache=True, nogil=True)
def face_boundary_mask(voxels, labels, n_z, n_y, n_x):
    """Whether each voxel has a face neighbour of another label or of none.

    Neighbours outside the volume do not count. Along x a voxel's neighbours
    are its neighbours in the list; along y and z each is found by a pointer
    that only moves forward (the voxels ascend, and so do ``v +- n_x`` and
    ``v +- n_y * n_x``): one pass, linear in the voxels. A voxel's row, plane
    and place in its row are computed once per row it starts, not per voxel.

    Parameters
    ----------
    voxels : (N,) ndarray of int64
        Flat (C order) indices of a (n_z, n_y, n_x) label image's non-zero
        voxels, strictly ascending.
    labels : (N,) ndarray of int
        Their labels.
    n_z, n_y, n_x : int
        The label image's shape.

    Returns
    -------
    (N,) ndarray of bool

    Examples
    --------
    >>> # A 1x1x5 row: labels 1 1 2 2 0. The first voxel's neighbours are its own or outside.
    >>> face_boundary_mask(np.array([0, 1, 2, 3]), np.array([1, 1, 2, 2]), 1, 1, 5)
    array([False,  True,  True,  True])
    """
    n = voxels.size
    plane = n_y * n_x
    out = np.zeros(n, np.bool_)
    below_y = above_y = below_z = above_z = 0  # the pointers, one per direction
    row_start = row_end = -1
    y = z = 0
    for i in range(n):
        v = voxels[i]
        label = labels[i]
        if v >= row_end:
            row = v // n_x
            row_start = row * n_x
            row_end = row_start + n_x
            z = row // n_y
            y = row - z * n_y
        x = v - row_start
        if x > 0 and not (i > 0 and voxels[i - 1] == v - 1 and labels[i - 1] == label):
            out[i] = True
            continue
        if x < n_x - 1 and not (i + 1 < n and voxels[i + 1] == v + 1 and labels[i + 1] == label):
            out[i] = True
            continue
        # A pointer skipped by an earlier voxel's early exit catches up here: the
        # neighbours sought only grow.
        if y > 0:
            q = v - n_x
            while below_y < n and voxels[below_y] < q:
                below_y += 1
            if not (below_y < n and voxels[below_y] == q and labels[below_y] == label):
                out[i] = True
                continue
        if y < n_y - 1:
            q = v + n_x
            while above_y < n and voxels[above_y] < q:
                above_y += 1
            if not (above_y < n and voxels[above_y] == q and labels[above_y] == label):
                out[i] = True
                continue
        if z > 0:
            q = v - plane
            while below_z < n and voxels[below_z] < q:
                below_z += 1
            if not (below_z < n and voxels[below_z] == q and labels[below_z] == label):
                out[i] = True
                continue
        if z < n_z - 1:
            q = v + plane
            while above_z < n and voxels[above_z] < q:
                above_z += 1
            if not (above_z < n and voxels[above_z] == q and labels[above_z] == label):
                out[i] = True
    return out
