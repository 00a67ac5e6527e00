"""Compiled loop of the spot models (numba): a sum of Gaussians, a slab of planes at a time.

:func:`rna_localization.segmentation.detection._draw_spots` draws the model of
every spot found (to split blended pairs and find molecules on a granule's
flank) into a volume as large as the stack. It sums the planes of one slab
at a time in float64 (:func:`add_gaussians`), in one reused buffer, and
rounds each voxel to float32 once: the only memory as large as the stack is
the model itself.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

__all__ = ["add_gaussians"]


@njit(cache=True, nogil=True)
def add_gaussians(buffer, first, centre, position, amplitude, width, reach, spots):
    """Add the Gaussians of `spots` to `buffer`, the planes ``first, first + 1, ...`` of a volume.

    Spot ``s`` is ``amplitude[s] * exp(-((v - position[s]) / width[s])**2 / 2)``
    (per axis, multiplied) on the voxels ``v`` within `reach` voxels of its
    voxel ``centre[s]``, those of the buffer's planes and rows and columns
    only. Each voxel adds the spots in the order of `spots`, so its sum does
    not depend on how the volume is cut into slabs.

    Parameters
    ----------
    buffer : (P, Y, X) float64 array
        Added to in place.
    first : int
        The volume's plane held by ``buffer[0]``.
    centre : (N, 3) int64 array
        Each spot's voxel (inside the volume); its box is centred there.
    position : (N, 3) float64 array
        Each spot's sub-voxel centre.
    amplitude : (N,) float64 array
    width : (N, 3) float64 array
        Each spot's sigma along (z, y, x), voxels.
    reach : (3,) int64 array
        The box's half-size along (z, y, x), voxels.
    spots : (M,) int64 array
        The spots to add, in order.
    """
    planes, rows, columns = buffer.shape
    fz = np.empty(2 * reach[0] + 1)
    fy = np.empty(2 * reach[1] + 1)
    fx = np.empty(2 * reach[2] + 1)
    for s in spots:
        z0 = max(centre[s, 0] - reach[0], first)
        z1 = min(centre[s, 0] + reach[0], first + planes - 1)
        y0 = max(centre[s, 1] - reach[1], 0)
        y1 = min(centre[s, 1] + reach[1], rows - 1)
        x0 = max(centre[s, 2] - reach[2], 0)
        x1 = min(centre[s, 2] + reach[2], columns - 1)
        if z0 > z1 or y0 > y1 or x0 > x1:
            continue
        for z in range(z0, z1 + 1):
            q = (z - position[s, 0]) / width[s, 0]
            fz[z - z0] = math.exp(-0.5 * (q * q))
        for y in range(y0, y1 + 1):
            q = (y - position[s, 1]) / width[s, 1]
            fy[y - y0] = math.exp(-0.5 * (q * q))
        for x in range(x0, x1 + 1):
            q = (x - position[s, 2]) / width[s, 2]
            fx[x - x0] = math.exp(-0.5 * (q * q))
        height = amplitude[s]
        for z in range(z0, z1 + 1):
            hz = height * fz[z - z0]
            for y in range(y0, y1 + 1):
                hzy = hz * fy[y - y0]
                row = buffer[z - first, y]
                for x in range(x0, x1 + 1):
                    row[x] += hzy * fx[x - x0]
