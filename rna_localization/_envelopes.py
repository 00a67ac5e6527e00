"""Compiled kernels of exact distance transforms (numba): the chance baseline's and the
distances' transform method.

Pure array functions, each a loop over one plane or over a band of rows or
of points, compiled once (and cached on disk) by numba. They release the GIL:
the callers run them on several threads (:mod:`rna_localization.baseline`,
:func:`rna_localization.distances.nearest_distances` with ``method="edt"``).

The passes are the lower envelope of parabolas of Felzenszwalb &
Huttenlocher ("Distance transforms of sampled functions", 2012): along a
line, the least over sources ``p`` of ``f(p) + w (t - p)²`` at every
``t``, in time linear in the line. Sources whose ``f`` is past a limit are
left out: they are the minimum only of sums past it, so every sum within
the limit keeps its minimum and its minimizer. Each kernel writes its envelope
out in place: one helper adding a parabola, shared by both, made the
baseline's combination along z three times slower (numba 0.68, a full frame).

:func:`plane_offsets` gives every pixel of a plane its offset ``(|dy|, |dx|)``
to its nearest target pixel (the 1D transform along y, then the envelope
along x). :func:`column_counts` combines the planes along z (one parabola
per plane holding a target) and counts each voxel in the bin of its exact
squared distance, read from a table indexed by its offsets (the baseline);
:func:`nearest_at_points` reads one plane's offsets at given voxels and keeps
each one's least squared distance (the distances).
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["column_counts", "nearest_at_points", "plane_offsets"]


@njit(cache=True, nogil=True)
def plane_offsets(plane, weight_y, weight_x, cap_y, cap_x, out, along_y, last, hull, starts):
    """Each pixel's offset to its nearest True pixel of `plane`, as one index.

    The index is ``|dy| * (cap_x + 1) + |dx|``. Only True pixels fewer than
    `cap_y` rows away count, and ``|dx|`` is capped at `cap_x`: the callers'
    caps lie past their threshold, so wherever the nearest True pixel is past
    a cap, the pixel is past the threshold and so is its capped offset (the
    baseline), or the caps lie past the plane and nothing is capped (the
    distances). "Nearest" weighs
    squared offsets as ``weight_y dy² + weight_x dx²``; with square pixels
    both weights are 1 and every comparison is between whole numbers, exact
    in float64. A row without a pixel within ``cap_y`` of a True pixel along
    y gets ``(cap_y, cap_x)``.

    Parameters
    ----------
    plane : (Y, X) ndarray of bool
    weight_y, weight_x : float
    cap_y, cap_x : int
    out : (Y, X) ndarray of unsigned int
        Receives the indices.
    along_y : (Y, X) ndarray of int32
        Scratch: each pixel's distance along y to a True pixel, capped.
    last : (X,) ndarray of int64
    hull : (X,) ndarray of int64
    starts : (X + 1,) ndarray of float64
        Scratch.
    """
    n_y, n_x = plane.shape
    stride = cap_x + 1
    # Along y, every column at once and row after row (contiguous): the distance to
    # the nearest True pixel above, then below.
    # (`last` holds each column's distance so far, capped: no branch on the pixel.)
    for x in range(n_x):
        last[x] = cap_y
    for y in range(n_y):
        for x in range(n_x):
            last[x] = 0 if plane[y, x] else min(last[x] + 1, cap_y)
            along_y[y, x] = last[x]
    for x in range(n_x):
        last[x] = cap_y
    for y in range(n_y - 1, -1, -1):
        for x in range(n_x):
            last[x] = 0 if plane[y, x] else min(last[x] + 1, cap_y)
            along_y[y, x] = min(along_y[y, x], last[x])
    # Along x, row by row: the envelope of weight_y g(p)² + weight_x (x - p)², the
    # capped sources left out.
    for y in range(n_y):
        k = -1
        for q in range(n_x):
            g = along_y[y, q]
            if g >= cap_y:
                continue
            f = weight_y * g * g + weight_x * q * q
            if k < 0:
                k = 0
                hull[0] = q
                starts[0] = -np.inf
                continue
            while True:  # never pops the first: it starts at -inf
                p = hull[k]
                s = (f - (weight_y * along_y[y, p] * along_y[y, p] + weight_x * p * p)) / (
                    2.0 * weight_x * (q - p))
                if s <= starts[k]:
                    k -= 1
                else:
                    break
            k += 1
            hull[k] = q
            starts[k] = s
        if k < 0:
            for x in range(n_x):
                out[y, x] = cap_y * stride + cap_x
            continue
        j = 0
        for x in range(n_x):
            while j < k and starts[j + 1] < x:
                j += 1
            p = hull[j]
            out[y, x] = along_y[y, p] * stride + min(abs(x - p), cap_x)


@njit(cache=True, nogil=True)
def _add_run(runs, first, last, far, offset):
    """Add one voxel at each ``|dz|`` of ``first .. last`` below `far` (the others are past
    the threshold, left out) to the difference array `runs` of one in-plane offset."""
    if first < far:
        runs[first, offset] += 1
        runs[min(last, far - 1) + 1, offset] -= 1


@njit(cache=True, nogil=True)
def _add_planes(runs, low, high, source, far, offset):
    """Add the voxels of planes ``low .. high`` (nearest to plane `source`, at `offset`
    in it) to `runs` by their ``|dz|``: one run above the source plane, one below."""
    if high >= source:
        _add_run(runs, max(low, source) - source, high - source, far, offset)
    if low < source:
        _add_run(runs, source - min(high, source - 1), source - low, far, offset)


@njit(cache=True, nogil=True)
def column_counts(offsets, sources, in_plane, weight_z, limit, table, reach_z, n_z, region,
                  use_region, first_row, stop_row, counts, hull, starts):
    """Count the voxels of rows ``first_row .. stop_row - 1`` by the bin of their distance.

    Along each column (y, x), the nearest target voxel of the voxel at plane
    z is, over the planes s holding a target, the one minimizing
    ``in_plane[offsets[i, y, x]] + weight_z (z - s)²``: the envelope of one
    parabola per such plane, those whose in-plane part passes `limit` left
    out. The voxel's bin is then ``table[dz * in_plane.size + offset]``, with
    ``dz = |z - s|`` (``reach_z + 1`` past it). Voxels of a column without
    any plane within the limit are past it, and not counted.

    The planes where one parabola is the least form a stretch (with a region,
    the region's stretches within it) whose ``|dz|`` run up or down by one:
    each is added to a difference array over (``|dz|``, offset), and each
    pair's voxels go to their bin once at the end: the same counts as voxel
    by voxel within the threshold, in about half the time on a full frame.
    The last count (past the threshold; no caller reads it) leaves out the
    voxels ``reach_z + 1`` or more planes from their nearest target voxel. Memory: ``reach_z + 2`` rows of ``in_plane.size`` int64, and with
    a region a row's region transposed (a byte a voxel of the row).

    Parameters
    ----------
    offsets : (S, Y, X) ndarray of unsigned int
        :func:`plane_offsets` of each plane holding a target.
    sources : (S,) ndarray of int64
        Those planes, increasing.
    in_plane : (M,) ndarray of float64
        Squared microns of each in-plane offset index.
    weight_z : float
        Squared microns of one plane step.
    limit : float
        The threshold, squared microns.
    table : ndarray of unsigned int
        Bin of each (dz, in-plane offset) pair, flat, ``reach_z + 2`` rows.
    reach_z : int
    n_z : int
        Planes of the stack.
    region : (Z, Y, X) ndarray of bool
        Voxels to count, when `use_region`.
    use_region : bool
    first_row, stop_row : int
    counts : (B,) ndarray of int64
        Added to.
    hull : (S,) ndarray of int64
    starts : (S + 1,) ndarray of float64
        Scratch.
    """
    n_sources, _, n_x = offsets.shape
    n_in_plane = in_plane.size
    # Each row's in-plane parts, column by column (contiguous for the envelopes).
    values = np.empty((n_x, n_sources))
    far = reach_z + 1
    runs = np.zeros((far + 1, n_in_plane), np.int64)
    # Each row's region, column by column (contiguous along z).
    inside = np.empty((n_x, n_z if use_region else 0), np.bool_)
    shifted = np.empty(n_sources)
    for i in range(n_sources):
        shifted[i] = weight_z * sources[i] * sources[i]
    for y in range(first_row, stop_row):
        for i in range(n_sources):
            for x in range(n_x):
                values[x, i] = in_plane[offsets[i, y, x]]
        if use_region:
            for z in range(n_z):
                for x in range(n_x):
                    inside[x, z] = region[z, y, x]
        for x in range(n_x):
            k = -1
            for i in range(n_sources):
                value = values[x, i]
                if value > limit:
                    continue
                f = value + shifted[i]
                if k < 0:
                    k = 0
                    hull[0] = i
                    starts[0] = -np.inf
                    continue
                while True:  # never pops the first: it starts at -inf
                    p = hull[k]
                    s = (f - (values[x, p] + shifted[p])) / (
                        2.0 * weight_z * (sources[i] - sources[p]))
                    if s <= starts[k]:
                        k -= 1
                    else:
                        break
                k += 1
                hull[k] = i
                starts[k] = s
            if k < 0:
                continue
            # Parabola j is the least at the planes z with starts[j] < z <= starts[j + 1]
            # (the planes of the region among them, with a region): their |dz| are runs.
            low = 0
            for j in range(k + 1):
                high = n_z - 1
                if j < k and starts[j + 1] < n_z - 1:
                    high = int(np.floor(starts[j + 1])) if starts[j + 1] >= 0 else -1
                if high < low:
                    continue
                i = hull[j]
                if not use_region:
                    _add_planes(runs, low, high, sources[i], far, offsets[i, y, x])
                    low = high + 1
                    continue
                z = low
                while z <= high:  # the region's stretches of planes within low .. high
                    if inside[x, z]:
                        first = z
                        while z <= high and inside[x, z]:
                            z += 1
                        _add_planes(runs, first, z - 1, sources[i], far, offsets[i, y, x])
                    else:
                        z += 1
                low = high + 1
    # Each (|dz|, offset) pair's voxels (the runs summed along |dz|), into its bin.
    for dz in range(1, far):
        for offset in range(n_in_plane):
            runs[dz, offset] += runs[dz - 1, offset]
    for dz in range(far):
        for offset in range(n_in_plane):
            if runs[dz, offset]:
                counts[table[dz * n_in_plane + offset]] += runs[dz, offset]


@njit(cache=True, nogil=True)
def nearest_at_points(offsets, cap_x, weight_y, weight_x, plane_z, weight_z, point_z, point_yx,
                      best):
    """Lower `best` to each point's squared distance to the nearest target pixel of one plane.

    Parameters
    ----------
    offsets : (Y, X) ndarray of unsigned int
        :func:`plane_offsets` of the plane (``|dy| * (cap_x + 1) + |dx|``).
    cap_x : int
    weight_y, weight_x, weight_z : float
        Squared microns of one step along y, x and z.
    plane_z : int
        The plane.
    point_z : (N,) ndarray of int64
        The points' planes.
    point_yx : (N,) ndarray of int64
        Their flat (y, x) positions in the plane.
    best : (N,) ndarray of float64
        Squared microns, lowered where this plane's nearest target pixel is nearer.
    """
    flat = offsets.reshape(-1)
    stride = cap_x + 1
    for n in range(point_z.size):
        dz = point_z[n] - plane_z
        along_z = weight_z * dz * dz
        if along_z >= best[n]:
            continue
        offset = flat[point_yx[n]]
        dy = offset // stride
        dx = offset - dy * stride
        squared = along_z + weight_y * dy * dy + weight_x * dx * dx
        if squared < best[n]:
            best[n] = squared
