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
:func:`nearest_at_points` reads one plane's offsets at given voxels (packed
by :func:`box_points`) and keeps each one's least squared distance, with where
it came from (the distances); :func:`merge_nearest` combines two threads'
findings; :func:`nearest_labels` names the target objects tied at that distance.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["box_points", "column_counts", "merge_nearest", "nearest_at_points", "nearest_labels",
           "plane_offsets"]


@njit(cache=True, nogil=True)
def plane_offsets(plane, weight_y, weight_x, cap_y, cap_x, stride, out, along_y, last, hull,
                  starts, first_row):
    """Each pixel's offset to its nearest True pixel of `plane`, as one index.

    Written for the rows ``first_row .. first_row + len(out) - 1`` of `plane`
    (``out[0]`` is row `first_row`): the baseline passes a band of rows with
    `cap_y` rows of the plane on either side, which is all the band's offsets
    depend on; the distances pass the whole plane and 0.

    The index is ``|dy| * stride + |dx|``: the baseline's ``stride`` is
    ``cap_x + 1`` (its tables are indexed by the offset), the distances' ``2**16``
    (``|dy|`` and ``|dx|`` are then a shift and a mask apart). Only True pixels fewer than
    `cap_y` rows away count, and ``|dx|`` is capped at `cap_x`: the callers'
    caps lie past their threshold, so wherever the nearest True pixel is past
    a cap, the pixel is past the threshold and so is its capped offset (the
    baseline), or the caps lie past the plane and nothing is capped (the
    distances). "Nearest" weighs
    squared offsets as ``weight_y dy² + weight_x dx²``; with square pixels
    both weights are 1 and every comparison is between whole numbers, exact
    in float64. A row without a pixel within ``cap_y`` of a True pixel along
    y gets ``(cap_y, cap_x)``.

    The envelope along x compares where parabolas cross as fractions, by
    cross-multiplying (no division on the loop's dependency chain: 15-20%
    faster a plane), so with square pixels it stays in whole numbers.

    Parameters
    ----------
    plane : (Y, X) ndarray of bool
    weight_y, weight_x : float
    cap_y, cap_x : int
    stride : int
        More than `cap_x`.
    out : (R, X) ndarray of unsigned int
        Receives the indices of rows ``first_row .. first_row + R - 1``.
    along_y : (Y, X) ndarray of int32
        Scratch: each pixel's distance along y to a True pixel, capped.
    last : (X,) ndarray of int64
    hull : (X,) ndarray of int64
    starts : (X + 1, 3) ndarray of float64
        Scratch.
    first_row : int
    """
    n_y, n_x = plane.shape
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
    # capped sources left out. Hull entry k is the source hull[k], its value
    # starts[k, 2], and where it starts to be the least: starts[k, 0] / starts[k, 1]
    # (the denominator positive; the first entry from -inf).
    for y in range(first_row, first_row + out.shape[0]):
        row = out[y - first_row]
        k = -1
        for q in range(n_x):
            g = along_y[y, q]
            if g >= cap_y:
                continue
            f = weight_y * g * g + weight_x * q * q
            if k < 0:
                k = 0
                hull[0] = q
                starts[0, 0] = -np.inf
                starts[0, 1] = 1.0
                starts[0, 2] = f
                continue
            while True:  # never pops the first: it starts at -inf
                numerator = f - starts[k, 2]
                denominator = 2.0 * weight_x * (q - hull[k])
                if numerator * starts[k, 1] <= starts[k, 0] * denominator:
                    k -= 1
                else:
                    break
            k += 1
            hull[k] = q
            starts[k, 0] = numerator
            starts[k, 1] = denominator
            starts[k, 2] = f
        if k < 0:
            for x in range(n_x):
                row[x] = cap_y * stride + cap_x
            continue
        j = 0
        for x in range(n_x):
            while j < k and starts[j + 1, 0] < x * starts[j + 1, 1]:
                j += 1
            p = hull[j]
            row[x] = along_y[y, p] * stride + min(abs(x - p), cap_x)


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
                  use_region, first_row, stop_row, row_offset, counts, hull, starts):
    """Count the voxels of rows ``first_row .. stop_row - 1`` by the bin of their distance.

    Row y's in-plane offsets are ``offsets[:, y - row_offset]`` (a band's
    offsets start at its first row), its region ``region[:, y]``.

    Along each column (y, x), the nearest target voxel of the voxel at plane
    z is, over the planes s holding a target, the one minimizing
    ``in_plane[offsets[i, y - row_offset, x]] + weight_z (z - s)²``: the envelope of one
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
    offsets : (S, R, X) ndarray of unsigned int
        :func:`plane_offsets` of each plane holding a target, from row `row_offset`.
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
    first_row, stop_row, row_offset : int
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
                values[x, i] = in_plane[offsets[i, y - row_offset, x]]
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
                    _add_planes(runs, low, high, sources[i], far, offsets[i, y - row_offset, x])
                    low = high + 1
                    continue
                z = low
                while z <= high:  # the region's stretches of planes within low .. high
                    if inside[x, z]:
                        first = z
                        while z <= high and inside[x, z]:
                            z += 1
                        _add_planes(runs, first, z - 1, sources[i], far,
                                    offsets[i, y - row_offset, x])
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


#: The distances' offsets hold ``|dy| << OFFSET_BITS | |dx|`` (planes below 2**16 pixels wide).
OFFSET_BITS = 16


@njit(cache=True, nogil=True)
def nearest_at_points(offsets, weight_y, weight_x, plane_z, weight_z, points, state, best_plane,
                      best_offset, tie_factor):
    """Lower each point's squared distance to the nearest target pixel by one plane's.

    Also keeps, for each point, the plane and the offset its best came from,
    and its least squared distance over the other planes seen (the distances'
    ties: a target voxel as near as the nearest lies in another plane only if
    that least is as small). A plane whose step along z alone is past that
    least, or past the best times `tie_factor`, is not read: the least over
    the other planes is exact below the final best times `tie_factor`, and only
    known to lie past it otherwise. Each point's data are packed together
    (its plane and column in one word, its best and that least side by side):
    the loop streams them once per plane, and is bound by that.

    Parameters
    ----------
    offsets : (Y, X) ndarray of unsigned int
        :func:`plane_offsets` of the plane, with ``stride = 2**OFFSET_BITS``.
    weight_y, weight_x, weight_z : float
        Squared microns of one step along y, x and z.
    plane_z : int
        The plane.
    points : (N,) ndarray of int64
        Each point's plane, shifted left by 32 bits, plus its flat (y, x) position in it.
    state : (N, 2) ndarray of float64
        Squared microns: each point's best over the planes seen, and its least over
        the others; lowered in place.
    best_plane, best_offset : (N,) ndarray of int
        The plane each best came from, and its offset there (as in `offsets`).
    tie_factor : float
        At least 1.
    """
    flat = offsets.reshape(-1)
    low = (1 << OFFSET_BITS) - 1
    for n in range(points.size):
        point = points[n]
        dz = (point >> 32) - plane_z
        along_z = weight_z * dz * dz
        best = state[n, 0]
        second = state[n, 1]
        if along_z >= second or along_z >= best * tie_factor:
            continue
        offset = flat[point & 0xFFFFFFFF]
        dy = offset >> OFFSET_BITS
        dx = offset & low
        squared = along_z + weight_y * dy * dy + weight_x * dx * dx
        if squared < best:
            state[n, 1] = best
            state[n, 0] = squared
            best_plane[n] = plane_z
            best_offset[n] = offset
        elif squared < second:
            state[n, 1] = squared


@njit(cache=True, nogil=True)
def box_points(voxels, n_y, n_x, origin_z, origin_y, origin_x, box_x):
    """Flat voxel indices as :func:`nearest_at_points` reads them, in a box of the stack.

    Each voxel's plane in the box, shifted left by 32 bits, plus its flat
    position ``y * box_x + x`` in the box's plane. The two divisions per voxel
    are in float64, a few times faster than integer division: below 2**52 a
    quotient rounded that way is never past the exact one's integer part, and
    at most one below it, which one comparison corrects.

    Parameters
    ----------
    voxels : (N,) ndarray of int64
        Flat indices into a stack of planes of `n_y` x `n_x` pixels, below 2**52.
    n_y, n_x : int
        The stack's rows and columns.
    origin_z, origin_y, origin_x : int
        The box's first plane, row and column; every voxel lies in the box.
    box_x : int
        The box's columns.

    Returns
    -------
    (N,) ndarray of int64

    Examples
    --------
    >>> points = box_points(np.array([27, 39]), 3, 4, 1, 0, 1, 3)  # (2, 0, 3), (3, 0, 3)
    >>> points >> 32, points & 0xFFFFFFFF  # planes 1 and 2 of the box, both at (0, 2) in it
    (array([1, 2]), array([2, 2]))
    """
    plane = n_y * n_x
    per_plane = 1.0 / plane
    per_row = 1.0 / n_x
    out = np.empty(voxels.size, np.int64)
    for n in range(voxels.size):
        v = voxels[n]
        z = np.int64(v * per_plane)
        if (z + 1) * plane <= v:
            z += 1
        rest = v - z * plane
        y = np.int64(rest * per_row)
        if (y + 1) * n_x <= rest:
            y += 1
        out[n] = ((z - origin_z) << 32) | ((y - origin_y) * box_x + (rest - y * n_x - origin_x))
    return out


@njit(cache=True, nogil=True)
def merge_nearest(state, best_plane, best_offset, other_state, other_plane, other_offset):
    """Combine another thread's :func:`nearest_at_points` findings (other planes) into these.

    Each point keeps the nearer best, with its plane and offset, and as its
    least over the other planes the smallest of both leasts and the best it
    did not keep. In place; `other_*` are left as they are.

    Parameters
    ----------
    state, other_state : (N, 2) ndarray of float64
        Each point's best and its least over the other planes.
    best_plane, best_offset, other_plane, other_offset : (N,) ndarray of int
    """
    for n in range(state.shape[0]):
        best = state[n, 0]
        other = other_state[n, 0]
        second = min(state[n, 1], other_state[n, 1])
        if other < best:
            state[n, 0] = other
            state[n, 1] = min(second, best)
            best_plane[n] = other_plane[n]
            best_offset[n] = other_offset[n]
        else:
            state[n, 1] = min(second, other)


@njit(cache=True, nogil=True)
def _position(sorted_values, value):
    """Index of `value` in the ascending array `sorted_values`, -1 if absent."""
    low, high = 0, sorted_values.size
    while low < high:
        middle = (low + high) >> 1
        if sorted_values[middle] < value:
            low = middle + 1
        else:
            high = middle
    return low if low < sorted_values.size and sorted_values[low] == value else -1


@njit(cache=True, nogil=True)
def nearest_labels(point_z, point_y, point_x, best_plane, best_offset, limit, weight_y, weight_x,
                   weight_z, n_y, n_x, target_voxels, target_labels):
    """The smallest label among the target voxels within each point's limit, in its best plane.

    Each point's nearest target pixel in its plane `best_plane` is at offset
    ``(|dy|, |dx|)`` (:func:`nearest_at_points`); every target pixel of that
    plane within the limit is at least as far, so lies in the ring of
    in-plane squared distances from that offset's to ``limit - weight_z dz²``.
    The ring's whole-pixel offsets are walked along its outer edge (the
    largest ``|dx|`` within the limit shrinks as ``|dy|`` grows: no square
    root per row), each looked up with its four signs among the target voxels
    by binary search. A ring as thin as the distances' tie tolerance holds a
    few pixels.

    Parameters
    ----------
    point_z, point_y, point_x : (N,) ndarray of int64
        The points, in the stack's coordinates.
    best_plane, best_offset : (N,) ndarray of int
        Their best plane and offset there (``|dy| << OFFSET_BITS | |dx|``).
    limit : (N,) ndarray of float64
        Squared microns: the target voxels counted are those this near.
    weight_y, weight_x, weight_z : float
        Squared microns of one step along y, x and z.
    n_y, n_x : int
        The stack's rows and columns.
    target_voxels : (M,) ndarray of int64
        Flat indices of the target voxels, ascending; `target_labels` theirs.

    Returns
    -------
    (N,) ndarray of int64
        The smallest label, -1 where none is within the limit.
    """
    low = (1 << OFFSET_BITS) - 1
    out = np.full(point_z.size, -1, np.int64)
    for n in range(point_z.size):
        plane = best_plane[n]
        dz = point_z[n] - plane
        room = limit[n] - weight_z * dz * dz
        offset = best_offset[n]
        near_y = offset >> OFFSET_BITS
        near_x = offset & low
        inner = weight_y * near_y * near_y + weight_x * near_x * near_x
        inner -= 1e-9 * inner  # the ring's inner edge, widened over rounding
        label = -1
        dx = int(np.sqrt(max(room, 0.0) / weight_x)) + 1
        dy = 0
        while weight_y * dy * dy <= room:
            along_y = weight_y * dy * dy
            while dx >= 0 and along_y + weight_x * dx * dx > room:
                dx -= 1
            k = dx
            while k >= 0 and along_y + weight_x * k * k >= inner:
                # Both signs of each step, one where the step is 0; pixels in the stack only.
                for sign_y in range(-1 if dy else 1, 2, 2):
                    y = point_y[n] + sign_y * dy
                    for sign_x in range(-1 if k else 1, 2, 2):
                        x = point_x[n] + sign_x * k
                        if 0 <= y < n_y and 0 <= x < n_x:
                            at = _position(target_voxels, (plane * n_y + y) * n_x + x)
                            if at >= 0 and (label < 0 or target_labels[at] < label):
                                label = target_labels[at]
                k -= 1
            dy += 1
        out[n] = label
    return out
