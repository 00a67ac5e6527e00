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
    # The y and z neighbours: below and above along y, then along z, each with its pointer.
    steps = np.array([-n_x, n_x, -plane, plane], np.int64)
    pointers = np.zeros(4, np.int64)
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
        inside = (y > 0, y < n_y - 1, z > 0, z < n_z - 1)
        for k in range(4):
            if not inside[k]:
                continue
            # A pointer skipped by an earlier voxel's early exit catches up here: the
            # neighbours sought only grow.
            q = v + steps[k]
            p = pointers[k]
            while p < n and voxels[p] < q:
                p += 1
            pointers[k] = p
            if not (p < n and voxels[p] == q and labels[p] == label):
                out[i] = True
                break
    return out
