"""Compiled loops of the matched apertures (numba).

Pure array functions, compiled once (and cached on disk) by numba; they
release the GIL. :func:`rna_localization.apertures.aperture_intensities`
calls them block by block:

- :func:`spread_keys` gives every voxel within reach the key of its nearest
  object (``_nearest_keys`` documents the keys and why only the offsets
  through a voxel's free faces are formed);
- :func:`sum_apertures` reads a block's keys once: each aperture's voxel
  count and light (and its voxels per plane), and its shell voxels for the
  background's medians; with a background map, the map at those voxels too
  (bilinear between its cells, never drawn over the whole block);
- :func:`shell_levels` takes those medians (of the light, or of the map) once
  an object's whole shell has been read (grouped by a counting sort, each
  group's median by a branch-free quickselect);
- :func:`free_cell_sums` counts and sums, cell by cell of a plane, the voxels
  outside the boxes around every object voxel (the plane backgrounds), each
  box taken a side at a time (along the rows, then down the columns).
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["free_cell_sums", "shell_levels", "spread_keys", "sum_apertures"]


@njit(cache=True, nogil=True)
def spread_keys(keys, voxels, index, strides, mask_starts, steps, step_keys):
    """Lower ``keys[v + steps[j]]`` to ``step_keys[j] + index`` for every voxel and allowed step.

    Voxel ``n`` (flat position ``voxels[n]`` in `keys`, object index
    ``index[n]``) has a free face one step up (down) axis ``k`` where
    ``keys[voxels[n] +- strides[k]]`` is not its own index: bit ``2k``
    (``2k + 1``) of its mask ``f``. Its allowed steps are ``j`` in
    ``mask_starts[f] : mask_starts[f + 1]``: as ``np.minimum.at`` over every
    (voxel, allowed step) pair, in one pass, without the pairs' arrays. Each
    mask's steps are stored together (read in order, no indirection), best
    in increasing order (the voxels written then lie in increasing order
    too). The masks are read while the keys are lowered: an object voxel's
    key (its index) is never lowered and a lowered key is never an index
    (``step_keys`` exceed every index), so a face reads the same before and
    after.

    Parameters
    ----------
    keys : (M,) ndarray of int32 or int64
        Each object voxel's index, a larger key everywhere else; lowered in place.
    voxels : (N,) ndarray of int64
    index : (N,) ndarray, `keys`' dtype
    strides : (3,) ndarray of int64
        Flat steps one voxel along (z, y, x); no voxel's face neighbour leaves `keys`.
    mask_starts : (65,) ndarray of int64
    steps : (S,) ndarray of int64
        Flat offsets, each mask's allowed ones in turn; no voxel plus step leaves `keys`.
    step_keys : (S,) ndarray, `keys`' dtype
    """
    for n in range(voxels.size):
        voxel = voxels[n]
        own = index[n]
        mask = 0
        for axis in range(3):
            if keys[voxel + strides[axis]] != own:
                mask |= 1 << (2 * axis)
            if keys[voxel - strides[axis]] != own:
                mask |= 1 << (2 * axis + 1)
        for j in range(mask_starts[mask], mask_starts[mask + 1]):
            at = voxel + steps[j]
            key = step_keys[j] + own
            if key < keys[at]:
                keys[at] = key


@njit(cache=True, nogil=True)
def _bilinear(grid, z, row_cells, row_fraction, y, column_cells, column_fraction, x):
    """The map `grid` read at row `y` and column `x` of plane `z` (float64): between
    its four nearest cell centres, along the rows first, then the columns."""
    fy, fx = row_fraction[y], column_fraction[x]
    r0, r1 = row_cells[0, y], row_cells[1, y]
    c0, c1 = column_cells[0, x], column_cells[1, x]
    left = grid[z, r0, c0] * (1.0 - fy) + grid[z, r1, c0] * fy
    right = grid[z, r0, c1] * (1.0 - fy) + grid[z, r1, c1] * fy
    return left * (1.0 - fx) + right * fx


@njit(cache=True, nogil=True)
def sum_apertures(keys, values, owner_bits, aperture_keys, blank, area, total, plane_base,
                  first_plane, plane_area, grid, row_cells, row_fraction, column_cells,
                  column_fraction, map_total):
    """Add a block's aperture voxels to their objects; return its shell voxels.

    A voxel's key is ``rank << owner_bits | i`` (object index ``i`` from 1),
    `blank` beyond reach; keys below `aperture_keys` are in the aperture.
    With a background map (`grid` not empty), the map is read at each of
    those voxels in the same pass, bilinearly between the centres of its
    cells, and summed over each aperture and kept for each shell voxel.

    Parameters
    ----------
    keys : (Z, Y, X) ndarray of int32 or int64
        The block's keys.
    values : (Z, Y, X) ndarray
        The block's intensities.
    owner_bits : int
    aperture_keys : int
    blank : int
    area : (n,) ndarray of int64
        Aperture voxels per object (index ``i - 1``), added to.
    total : (n,) ndarray of float64
        Aperture light per object, added to, voxel by voxel in scan order.
    plane_base : (n,) ndarray of int32 or int64
        Each object's (object, plane) key less its block plane (``plane_base[i - 1]
        + first_plane + z``), or empty: no per-plane keys.
    first_plane : int
        The block's first plane in the box (`grid`'s planes are the box's).
    plane_area : (K,) ndarray of int64
        Aperture voxels per (object, plane) key, added to (empty without keys).
    grid : (planes, cells_y, cells_x) ndarray of float32
        The map's cells, every one known, or empty: no map.
    row_cells, column_cells : (2, Y) and (2, X) ndarray of int64
        For each row (column) of the block, the grid's cell rows (columns) below
        and above it.
    row_fraction, column_fraction : (Y,) and (X,) ndarray of float64
        Its fraction of the way from the one below to the one above.
    map_total : (n,) ndarray of float64
        The map summed over each aperture, added to (in float64).

    Returns
    -------
    owner : ndarray, `keys`' dtype
        The object (index ``i - 1``) of each shell voxel, in scan order.
    shell : ndarray, `values`' dtype
        Their intensities.
    plane_keys : ndarray, `plane_base`'s dtype
        Their (object, plane) keys (empty without keys).
    shell_map : ndarray of float32
        The map at each of them (empty without a map).
    """
    depth, rows, columns = keys.shape
    low = (1 << owner_bits) - 1
    by_plane = plane_base.size > 0
    mapped = grid.size > 0
    n_shell = 0
    for z in range(depth):
        for y in range(rows):
            for x in range(columns):
                key = keys[z, y, x]
                if key == blank:
                    continue
                if key < aperture_keys:
                    owner = (key & low) - 1
                    area[owner] += 1
                    total[owner] += values[z, y, x]
                    if by_plane:
                        plane_area[plane_base[owner] + first_plane + z] += 1
                    if mapped:
                        map_total[owner] += _bilinear(grid, first_plane + z, row_cells,
                                                      row_fraction, y, column_cells,
                                                      column_fraction, x)
                else:
                    n_shell += 1
    owners = np.empty(n_shell, keys.dtype)
    shell = np.empty(n_shell, values.dtype)
    plane_keys = np.empty(n_shell if by_plane else 0, plane_base.dtype)
    shell_map = np.empty(n_shell if mapped else 0, np.float32)
    k = 0
    for z in range(depth):
        for y in range(rows):
            for x in range(columns):
                key = keys[z, y, x]
                if key == blank or key < aperture_keys:
                    continue
                owner = (key & low) - 1
                owners[k] = owner
                shell[k] = values[z, y, x]
                if by_plane:
                    plane_keys[k] = plane_base[owner] + first_plane + z
                if mapped:
                    shell_map[k] = _bilinear(grid, first_plane + z, row_cells, row_fraction, y,
                                             column_cells, column_fraction, x)
                k += 1
    return owners, shell, plane_keys, shell_map


#: Stretches of at most this many values are sorted by insertion rather than partitioned.
_INSERTION = 24


@njit(cache=True, nogil=True)
def _insertion_sort(a, left, right):
    """Sort ``a[left:right + 1]`` in place."""
    for i in range(left + 1, right + 1):
        value = a[i]
        j = i - 1
        while j >= left and a[j] > value:
            a[j + 1] = a[j]
            j -= 1
        a[j + 1] = value


@njit(cache=True, nogil=True)
def _median(a):
    """Median of `a` (the mean of its two middle values, in float64); reorders `a`.

    Quickselect of the upper middle value (``a.size // 2``), with the median of
    three values as the pivot. Each pass moves the values below the pivot to
    the front of the stretch, then those equal to it after them, without a
    branch on the values (a swap per value and a count that adds the
    comparison): a shell's noisy values send a branch either way at random,
    and mispredicted branches were most of the time of a partition that
    branches. Many equal values (a clipped or zero background) end the search
    at once; a stretch of :data:`_INSERTION` values or fewer is sorted. The
    lower middle value is then the largest before it. NaN for no value.
    """
    n = a.size
    if n == 0:
        return np.nan
    k = n // 2
    left, right = 0, n - 1
    while right - left > _INSERTION:
        middle = (left + right) // 2
        x, y, z = a[left], a[middle], a[right]
        pivot = max(min(x, y), min(max(x, y), z))
        below = left  # a[left:below] < pivot
        for i in range(left, right + 1):
            value = a[i]
            a[i] = a[below]
            a[below] = value
            below += value < pivot
        if k < below:
            right = below - 1
            continue
        equal = below  # a[below:equal] == pivot
        for i in range(below, right + 1):
            value = a[i]
            a[i] = a[equal]
            a[equal] = value
            equal += value == pivot
        if k < equal:
            left = right = k
            break
        left = equal
    _insertion_sort(a, left, right)
    upper = np.float64(a[k])
    if n % 2:
        return upper
    lower = a[0]
    for i in range(1, k):
        if a[i] > lower:
            lower = a[i]
    return (np.float64(lower) + upper) / 2


@njit(cache=True, nogil=True)
def shell_levels(owner, values, keys, span, finished, aperture_planes, min_voxels, shell_area,
                 whole, under):
    """The background medians of the finished objects; the other objects' shell voxels kept.

    Shell voxel ``v`` belongs to object ``owner[v]`` (``0..n-1``) and to the
    (object, plane) group ``keys[v]``, in ``owner[v] * span ... + span - 1``
    (``keys = owner`` and ``span = 1``: one group per object). For each object
    ``o`` with ``finished[o]``: ``shell_area[o]`` is added its voxels;
    ``under[o]`` is the sum over its groups ``g`` with ``aperture_planes[g] > 0``
    of ``aperture_planes[g]`` times the median of group ``g``, or times
    ``whole[o]``, the median of all its voxels, where the group holds fewer
    than `min_voxels` voxels or ``span`` is 1 (``whole[o]`` is only set then).
    Both are NaN without a shell voxel. A median of an even count is the
    mean of the two middle values, in float64.

    Returns
    -------
    owner, values, keys : ndarray
        The shell voxels of the objects not finished, in the same order.
    """
    n_groups = finished.size * span
    start = np.zeros(n_groups + 1, np.int64)
    n_done = 0
    for v in range(owner.size):
        if finished[owner[v]]:
            start[keys[v] + 1] += 1
            n_done += 1
    for g in range(n_groups):
        start[g + 1] += start[g]
    place = start[:-1].copy()
    grouped = np.empty(n_done, values.dtype)
    n_rest = owner.size - n_done
    rest_owner = np.empty(n_rest, owner.dtype)
    rest_values = np.empty(n_rest, values.dtype)
    rest_keys = np.empty(n_rest, keys.dtype)
    r = 0
    for v in range(owner.size):
        o = owner[v]
        if finished[o]:
            g = keys[v]
            grouped[place[g]] = values[v]
            place[g] += 1
        else:
            rest_owner[r] = o
            rest_values[r] = values[v]
            rest_keys[r] = keys[v]
            r += 1
    for o in range(finished.size):
        if not finished[o]:
            continue
        first, end = start[o * span], start[o * span + span]
        shell_area[o] += end - first
        if end == first:
            whole[o] = np.nan
            under[o] = np.nan
            continue
        # The whole shell's median (on a copy) where it is needed, then each group's
        # in place (a group's values are only reordered within it).
        needed = span == 1
        for g in range(o * span, o * span + span):
            if aperture_planes[g] > 0 and start[g + 1] - start[g] < min_voxels:
                needed = True
        if needed:
            whole[o] = _median(grouped[first:end].copy())
        total = 0.0
        for g in range(o * span, o * span + span):
            if aperture_planes[g] == 0:
                continue
            if span == 1 or start[g + 1] - start[g] < min_voxels:
                total += aperture_planes[g] * whole[o]
            else:
                total += aperture_planes[g] * _median(grouped[start[g]:start[g + 1]])
        under[o] = total
    return rest_owner, rest_values, rest_keys


@njit(cache=True, nogil=True)
def free_cell_sums(objects, values, reach_y, reach_x, cell, weight, total):
    """Add each cell's voxels with no object voxel in the box around them, and their light.

    ``objects[y, x]`` counts the object voxels at (y, x) in the planes within reach
    along z (never negative); a voxel is free when the box of half-widths `reach_y`,
    `reach_x` around it holds none. The box is taken a side at a time: along each row,
    whether an object voxel lies within `reach_x` (the last one met, looking
    `reach_x` ahead); then down each column, how many of the rows within `reach_y`
    have one (a running count, a row added and a row dropped at each step). Each free
    voxel adds 1 to ``weight`` and ``values[y, x]`` to ``total`` at its cell
    ``(y // cell, x // cell)`` (a cell's voxels of a row summed first).
    """
    height, width = objects.shape
    near = np.empty((height, width), np.uint8)
    for y in range(height):
        last = -reach_x - 1  # the last column seen to hold an object voxel
        for x in range(min(reach_x, width)):
            if objects[y, x] > 0:
                last = x
        for x in range(width):
            ahead = x + reach_x
            if ahead < width and objects[y, ahead] > 0:
                last = ahead
            near[y, x] = last >= x - reach_x
    count = np.zeros(width, np.int32)
    for y in range(min(reach_y, height)):
        for x in range(width):
            count[x] += near[y, x]
    for y in range(height):
        if y + reach_y < height:
            for x in range(width):
                count[x] += near[y + reach_y, x]
        if y - reach_y - 1 >= 0:
            for x in range(width):
                count[x] -= near[y - reach_y - 1, x]
        cy = y // cell
        for c in range(weight.shape[1]):
            free = 0
            light = 0.0
            for x in range(c * cell, min(c * cell + cell, width)):
                if count[x] == 0:
                    free += 1
                    light += values[y, x]
            weight[cy, c] += free
            total[cy, c] += light
