"""Compiled Gaussian fit of the aperture corrections (numba).

Pure array functions, compiled once (and cached on disk) by numba; they release
the GIL. :mod:`rna_localization.capture` fits a few hundred voxels and a few dozen
steps per object, where NumPy's per-call overhead cost more than the arithmetic; and
it fits its objects in one call (:func:`fit_windows`), where a Python loop over the
objects cost more than their fits (twice the time on one thread, three times on two).

- :func:`window_owner` gives each voxel of an object's window to its nearest
  object's aperture or shell, by the nearest-object keys of the apertures
  (:func:`rna_localization._stencils.spread_keys`);
- :func:`prepare_region` gathers an object's aperture and shell voxels from its
  window and reads the background under them, plane by plane;
- :func:`fit_gaussian` fits the Gaussian (less its shell's medians) to them;
- :func:`captured` reads a Gaussian source through the aperture as the light is
  read;
- :func:`fit_windows` does all of the above for many objects, each as the functions
  above do it one object at a time.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ._stencils import spread_keys

__all__ = ["captured", "fit_gaussian", "fit_windows", "prepare_region", "window_owner",
           "window_owner_at"]


@njit(cache=True, nogil=True)
def _before(values, a, b):
    """Whether voxel `a` comes before voxel `b` by value, then by place (a stable sort's order)."""
    return values[a] < values[b] or (values[a] == values[b] and a < b)


@njit(cache=True, nogil=True)
def _middle_pair(values, members, work):
    """The two middle `members` (places ``(m - 1) // 2`` and ``m // 2``) in the order of
    their `values`, ties by member: what a stable sort of members given in increasing
    order puts there. Quickselect (median-of-three pivot) in `work`, then the
    smallest after the lower one; O(m) where a sort is O(m log m)."""
    m = members.size
    for i in range(m):
        work[i] = members[i]
    k = (m - 1) // 2
    left, right = 0, m - 1
    while right > left:
        a, b, c = work[left], work[(left + right) // 2], work[right]
        if _before(values, b, a):
            a, b = b, a
        if _before(values, c, b):
            b = a if _before(values, c, a) else c
        pivot = b
        i, j = left, right
        while i <= j:
            while _before(values, work[i], pivot):
                i += 1
            while _before(values, pivot, work[j]):
                j -= 1
            if i <= j:
                work[i], work[j] = work[j], work[i]
                i += 1
                j -= 1
        if k <= j:
            right = j
        elif k >= i:
            left = i
        else:
            break
    lower = work[k]
    if m % 2:
        return lower, lower
    upper = work[k + 1]
    for i in range(k + 2, m):
        if _before(values, work[i], upper):
            upper = work[i]
    return lower, upper


@njit(cache=True, nogil=True)
def _still_middle(values, members, lower):
    """The upper middle member if `lower` is still the lower one (``(m - 1) // 2`` members
    before it by value, ties by member), else -1: one pass where a selection takes several."""
    m = members.size
    before = 0
    upper = -1
    for i in range(m):
        b = members[i]
        if b == lower:
            continue
        if _before(values, b, lower):
            before += 1
        elif upper < 0 or _before(values, b, upper):
            upper = b
    if before != (m - 1) // 2:
        return -1
    return lower if m % 2 else upper


@njit(cache=True, nogil=True)
def _gaussian(grid, cells, factors, p, psf, base2, inv2, slot, cat, starts, sizes, model, unit,
              pairs, work):
    """The Gaussian less its groups' medians at parameters `p` (`model`), the unit Gaussian
    (`unit`), and each group's middle pair (`pairs`, also the hint: the last evaluation's)."""
    n = grid.shape[0]
    w2 = np.empty(3)
    if psf:
        w2[0] = p[4] * p[4] * inv2[0]
        w2[1] = p[5] * p[5] * inv2[1]
        w2[2] = p[5] * p[5] * inv2[2]
    else:
        for k in range(3):
            w2[k] = base2[k] + p[4] * inv2[k]
    a = p[0]
    # The Gaussian is a product over the axes, and the voxels sit on whole positions:
    # each axis's factor once per position.
    for k in range(3):
        half = -0.5 / w2[k]
        for c in range(factors.shape[1]):
            d = c - p[1 + k]
            factors[k, c] = np.exp(half * d * d)
    for v in range(n):
        g = (factors[0, cells[v, 0]] * factors[1, cells[v, 1]]) * factors[2, cells[v, 2]]
        unit[v] = g
        model[v] = a * g
    groups = starts.shape[0]
    level = np.empty(groups)
    for k in range(groups):
        members = cat[starts[k]:starts[k] + sizes[k]]
        i2 = -1
        if pairs[k, 0] >= 0:
            i2 = _still_middle(model, members, pairs[k, 0])
        if i2 >= 0:
            i1 = pairs[k, 0]
        else:
            i1, i2 = _middle_pair(model, members, work)
        pairs[k, 0] = i1
        pairs[k, 1] = i2
        level[k] = 0.5 * (model[i1] + model[i2])
    for v in range(n):
        k = slot[v]
        if k >= 0:
            model[v] -= level[k]
    return w2


@njit(cache=True, nogil=True)
def _row(grid, v, p, psf, inv2, r0, r1, r2, unit):
    """Voxel `v`'s row of the Jacobian of the Gaussian before its group's median (six
    columns; the extra-width fit's sixth is 0), `r0`..`r2` the inverse variances (voxels)."""
    d0 = grid[v, 0] - p[1]
    d1 = grid[v, 1] - p[2]
    d2 = grid[v, 2] - p[3]
    g = unit[v]
    ag = p[0] * g
    # d model / d w2 per axis, then through the width parameters
    e0 = 0.5 * ag * d0 * d0 * r0 * r0
    e1 = 0.5 * ag * d1 * d1 * r1 * r1
    e2 = 0.5 * ag * d2 * d2 * r2 * r2
    if psf:
        return (g, ag * d0 * r0, ag * d1 * r1, ag * d2 * r2, e0 * 2.0 * p[4] * inv2[0],
                (e1 + e2) * 2.0 * p[5] * inv2[1])
    return (g, ag * d0 * r0, ag * d1 * r1, ag * d2 * r2,
            e0 * inv2[0] + e1 * inv2[1] + e2 * inv2[2], 0.0)


@njit(cache=True, nogil=True)
def _normal_equations(grid, p, psf, inv2, w2, unit, model, light, slot, pairs, normal, rhs):
    """J^T J and J^T (model - light) at `p`, J the Jacobian of :func:`_gaussian`'s model (each
    group's median taken at its middle pair, as the model's). A row at a time, its sums held
    in registers: the Jacobian itself is never stored, and is formed only for a step taken."""
    n = grid.shape[0]
    width = rhs.shape[0]
    r0, r1, r2 = 1.0 / w2[0], 1.0 / w2[1], 1.0 / w2[2]
    groups = pairs.shape[0]
    level = np.zeros((groups + 1, 6))  # the last: no group
    for k in range(groups):
        first = _row(grid, pairs[k, 0], p, psf, inv2, r0, r1, r2, unit)
        second = _row(grid, pairs[k, 1], p, psf, inv2, r0, r1, r2, unit)
        for j in range(6):
            level[k, j] = 0.5 * (first[j] + second[j])
    n00 = n01 = n02 = n03 = n04 = n05 = 0.0
    n11 = n12 = n13 = n14 = n15 = 0.0
    n22 = n23 = n24 = n25 = 0.0
    n33 = n34 = n35 = 0.0
    n44 = n45 = 0.0
    n55 = 0.0
    b0 = b1 = b2 = b3 = b4 = b5 = 0.0
    for v in range(n):
        j0, j1, j2, j3, j4, j5 = _row(grid, v, p, psf, inv2, r0, r1, r2, unit)
        k = slot[v] if slot[v] >= 0 else groups
        j0 -= level[k, 0]
        j1 -= level[k, 1]
        j2 -= level[k, 2]
        j3 -= level[k, 3]
        j4 -= level[k, 4]
        j5 -= level[k, 5]
        r = model[v] - light[v]
        b0 += j0 * r
        b1 += j1 * r
        b2 += j2 * r
        b3 += j3 * r
        b4 += j4 * r
        b5 += j5 * r
        n00 += j0 * j0
        n01 += j0 * j1
        n02 += j0 * j2
        n03 += j0 * j3
        n04 += j0 * j4
        n05 += j0 * j5
        n11 += j1 * j1
        n12 += j1 * j2
        n13 += j1 * j3
        n14 += j1 * j4
        n15 += j1 * j5
        n22 += j2 * j2
        n23 += j2 * j3
        n24 += j2 * j4
        n25 += j2 * j5
        n33 += j3 * j3
        n34 += j3 * j4
        n35 += j3 * j5
        n44 += j4 * j4
        n45 += j4 * j5
        n55 += j5 * j5
    sums = np.array([[n00, n01, n02, n03, n04, n05], [n01, n11, n12, n13, n14, n15],
                     [n02, n12, n22, n23, n24, n25], [n03, n13, n23, n33, n34, n35],
                     [n04, n14, n24, n34, n44, n45], [n05, n15, n25, n35, n45, n55]])
    right = np.array([b0, b1, b2, b3, b4, b5])
    for i in range(width):
        rhs[i] = right[i]
        for j in range(width):
            normal[i, j] = sums[i, j]


@njit(cache=True, nogil=True)
def _cost(model, light):
    """Sum of squared residuals."""
    total = 0.0
    for v in range(model.shape[0]):
        r = model[v] - light[v]
        total += r * r
    return total


@njit(cache=True, nogil=True)
def fit_gaussian(grid, light, slot, cat, starts, sizes, start, widths, spacing, psf, steps,
                 low, high, bound):
    """Levenberg-Marquardt fit of a Gaussian less its groups' medians to `light`.

    Parameters: ``p = (amplitude, centre z, y, x, ...)`` then, with `psf`, the
    (axial, lateral) sigma in µm (started at `widths`, kept within
    `low`..`high`); without, the extra variance u in µm² over the fixed sigmas
    `widths` (kept within 0..`bound`). Voxel ``v`` (``grid[v]``, in voxels) of
    group ``slot[v]`` (-1: none) has that group's median of the model
    subtracted; group ``k``'s members are ``cat[starts[k]:starts[k] + sizes[k]]``.
    A step solves the damped normal equations (Marquardt's scaling) and moves
    the centre by at most one sigma; it is taken only if it lowers the sum of
    squared residuals (else the damping grows tenfold and the step is tried
    again), so the fit descends and cannot cycle. It stops when a step taken
    moves the centre by less than a hundredth of a voxel and the widths by
    less than a relative 1e-3, when no damping finds a lower sum, or after
    `steps` evaluations of the model. Returns ``p``.
    """
    n = grid.shape[0]
    width = 6 if psf else 5
    p = np.empty(width)
    p[0] = start[0]
    p[1:4] = start[1:4]
    inv2 = 1.0 / (spacing * spacing)
    base2 = widths * widths * inv2
    if psf:
        p[4] = widths[0]
        p[5] = widths[1]
    else:
        p[4] = 0.005
    model = np.empty(n)
    unit = np.empty(n)
    trial_model = np.empty(n)
    trial_unit = np.empty(n)
    pairs = np.full((starts.shape[0], 2), -1, dtype=np.int64)
    trial_pairs = np.full((starts.shape[0], 2), -1, dtype=np.int64)
    trial = np.empty(width)
    normal = np.empty((width, width))
    damped = np.empty((width, width))
    rhs = np.empty(width)
    reduced = np.empty(width)
    free = np.empty(width, dtype=np.bool_)
    work = np.empty(sizes.max() if sizes.size else 0, dtype=np.int64)
    cells = np.empty((n, 3), dtype=np.int64)
    extent = 1
    for v in range(n):
        for k in range(3):
            cells[v, k] = int(grid[v, k])
            extent = max(extent, cells[v, k] + 1)
    factors = np.empty((3, extent))
    # Each parameter's bounds: the amplitude >= 0, the centre free, the widths bounded.
    lower = np.full(width, -np.inf)
    upper = np.full(width, np.inf)
    lower[0] = 0.0
    for i in range(4, width):
        lower[i] = low[i - 4] if psf else 0.0
        upper[i] = high[i - 4] if psf else bound
    w2 = _gaussian(grid, cells, factors, p, psf, base2, inv2, slot, cat, starts, sizes, model,
                   unit, pairs, work)
    cost = _cost(model, light)
    evaluations = 1
    damping = 1e-3
    while evaluations < steps:
        _normal_equations(grid, p, psf, inv2, w2, unit, model, light, slot, pairs, normal, rhs)
        # A bounded parameter at its bound that the descent would push past it stays
        # there: the step is solved for the others (an active set), not clipped after.
        for i in range(width):
            free[i] = not ((p[i] <= lower[i] and rhs[i] > 0) or (p[i] >= upper[i] and rhs[i] < 0))
        taken = False
        settled = False
        while evaluations < steps and damping < 1e8:
            for i in range(width):
                for j in range(width):
                    damped[i, j] = normal[i, j] if free[i] and free[j] else 0.0
                damped[i, i] = normal[i, i] * (1.0 + damping) + 1e-12 if free[i] else 1.0
                reduced[i] = rhs[i] if free[i] else 0.0
            try:
                step = np.linalg.solve(damped, reduced)
            except Exception:  # singular: more damping
                damping *= 10.0
                continue
            move = 0.0
            for k in range(3):
                move = max(move, abs(step[1 + k]) / np.sqrt(w2[k]))
            if move > 1.0:
                for i in range(width):
                    step[i] /= move
            for i in range(width):
                trial[i] = min(max(p[i] - step[i], lower[i]), upper[i])
            trial_pairs[:] = pairs
            trial_w2 = _gaussian(grid, cells, factors, trial, psf, base2, inv2, slot, cat, starts,
                                 sizes, trial_model, trial_unit, trial_pairs, work)
            evaluations += 1
            trial_cost = _cost(trial_model, light)
            if trial_cost < cost:
                settled = max(abs(trial[1] - p[1]), abs(trial[2] - p[2]),
                              abs(trial[3] - p[3])) < 1e-2
                for i in range(4, width):
                    if abs(trial[i] - p[i]) > 1e-3 * max(abs(p[i]), 1e-3):
                        settled = False
                for i in range(width):
                    p[i] = trial[i]
                model, trial_model = trial_model, model
                unit, trial_unit = trial_unit, unit
                pairs, trial_pairs = trial_pairs, pairs
                w2 = trial_w2
                cost = trial_cost
                damping = max(damping * 0.1, 1e-6)
                taken = True
                break
            damping *= 10.0
        if not taken or settled:
            break
    return p


@njit(cache=True, nogil=True)
def prepare_region(values, owner, label, fallback, min_plane):
    """An object's aperture and shell voxels, grouped as the background reads them.

    Voxels with ``owner == label`` (aperture) or ``-label`` (shell), in scan order:
    their positions (voxels), whether in the aperture, and the raw light less their
    group's median. A voxel's group is its plane when that plane holds at least
    `min_plane` shell voxels, else the whole shell; a group's median is over its
    shell voxels (`fallback` where it has none). Returns ``grid, light, aperture,
    slot, cat, starts, sizes``: each voxel's group as its place among the groups
    used (-1: none), and each used group's shell voxels end to end.
    """
    depth, height, width = owner.shape
    n = np.count_nonzero((owner == label) | (owner == -label))
    grid = np.empty((n, 3))
    raw = np.empty(n)
    aperture = np.empty(n, dtype=np.bool_)
    plane = np.empty(n, dtype=np.int64)
    shell_in = np.zeros(depth, dtype=np.int64)
    v = 0
    for z in range(depth):
        for y in range(height):
            for x in range(width):
                o = owner[z, y, x]
                if o == label or o == -label:
                    grid[v, 0] = z
                    grid[v, 1] = y
                    grid[v, 2] = x
                    raw[v] = values[z, y, x]
                    aperture[v] = o == label
                    plane[v] = z
                    if o != label:
                        shell_in[z] += 1
                    v += 1
    shells = shell_in.sum()
    # Each voxel's group: its plane (0..depth-1) or the whole shell (depth).
    group = np.empty(n, dtype=np.int64)
    present = np.zeros(depth + 1, dtype=np.bool_)
    for v in range(n):
        g = plane[v] if shell_in[plane[v]] >= min_plane else depth
        group[v] = g
        present[g] = True
    # The groups used: present, with shell voxels (the whole shell's: any).
    place = np.full(depth + 1, -1, dtype=np.int64)
    used = 0
    for g in range(depth + 1):
        members = shell_in[g] if g < depth else shells
        if present[g] and members > 0:
            place[g] = used
            used += 1
    sizes = np.zeros(used, dtype=np.int64)
    for g in range(depth + 1):
        if place[g] >= 0:
            sizes[place[g]] = shell_in[g] if g < depth else shells
    starts = np.zeros(used, dtype=np.int64)
    for k in range(1, used):
        starts[k] = starts[k - 1] + sizes[k - 1]
    cat = np.empty(sizes.sum(), dtype=np.int64)
    fill = starts.copy()
    whole = place[depth]
    for v in range(n):
        if not aperture[v]:
            k = place[plane[v]] if shell_in[plane[v]] >= min_plane else -1
            if k >= 0:
                cat[fill[k]] = v
                fill[k] += 1
            if whole >= 0:
                cat[fill[whole]] = v
                fill[whole] += 1
    levels = np.full(depth + 1, fallback)
    for g in range(depth + 1):
        k = place[g]
        if k >= 0:
            levels[g] = np.median(raw[cat[starts[k]:starts[k] + sizes[k]]])
    slot = np.empty(n, dtype=np.int64)
    light = np.empty(n)
    for v in range(n):
        light[v] = raw[v] - levels[group[v]]
        slot[v] = place[group[v]]
    return grid, light, aperture, slot, cat, starts, sizes


@njit(cache=True, nogil=True)
def captured(grid, aperture, slot, cat, starts, sizes, centre, widths):
    """What the aperture reads of a unit Gaussian (sigmas `widths`, voxels) at `centre`:
    its sum over the aperture less each group's median, as the light is read."""
    n = grid.shape[0]
    norm = (2 * np.pi) ** 1.5 * widths[0] * widths[1] * widths[2]
    g = np.empty(n)
    for v in range(n):
        s = 0.0
        for k in range(3):
            d = (grid[v, k] - centre[k]) / widths[k]
            s += d * d
        g[v] = np.exp(-0.5 * s) / norm
    level = np.zeros(starts.shape[0])
    work = np.empty(sizes.max() if sizes.size else 0, dtype=np.int64)
    for k in range(starts.shape[0]):
        i1, i2 = _middle_pair(g, cat[starts[k]:starts[k] + sizes[k]], work)
        level[k] = 0.5 * (g[i1] + g[i2])
    total = 0.0
    for v in range(n):
        if aperture[v]:
            total += g[v] - (level[slot[v]] if slot[v] >= 0 else 0.0)
    return total


@njit(cache=True, nogil=True)
def window_owner(voxels, voxel_index, labels, shape, lo, hi, lo_fit, hi_fit, pad, mask_starts,
                 steps, step_keys, aperture_keys, bits, blank):
    """Each voxel's owner in the fit window ``lo_fit:hi_fit``, as the apertures draw them.

    The object voxels of the box ``lo:hi`` (found in the sorted flat `voxels`,
    row by row; ``voxel_index`` their objects' indices from 1) are keyed into
    the box padded by `pad` on every side, :func:`rna_localization._stencils.
    spread_keys` gives every voxel its nearest object's key (`mask_starts`,
    `steps`: flat steps in the padded box, `step_keys`), and the fit window's
    voxels are read off: ``labels[i]`` for keys of object ``i`` below
    `aperture_keys`, ``-labels[i]`` for the other keys, 0 for `blank`.
    """
    size = (hi[0] - lo[0] + 2 * pad[0], hi[1] - lo[1] + 2 * pad[1], hi[2] - lo[2] + 2 * pad[2])
    strides = np.array([size[1] * size[2], size[2], 1], dtype=np.int64)
    keys = np.full(size[0] * size[1] * size[2], blank, dtype=step_keys.dtype)
    plane = shape[1] * shape[2]
    # Each row's run of object voxels in the box (the voxels are in scan order).
    rows = (hi[0] - lo[0]) * (hi[1] - lo[1])
    first = np.empty(rows, dtype=np.int64)
    last = np.empty(rows, dtype=np.int64)
    shift = np.empty(rows, dtype=np.int64)  # from a voxel's flat index to its place in keys
    r = 0
    for z in range(lo[0], hi[0]):
        for y in range(lo[1], hi[1]):
            row = z * plane + y * shape[2]
            first[r] = np.searchsorted(voxels, row + lo[2])
            last[r] = np.searchsorted(voxels, row + hi[2])
            shift[r] = ((z - lo[0] + pad[0]) * strides[0] + (y - lo[1] + pad[1]) * strides[1]
                        + pad[2] - lo[2] - row)
            r += 1
    count = (last - first).sum()
    flat_voxels = np.empty(count, dtype=np.int64)
    index = np.empty(count, dtype=step_keys.dtype)
    count = 0
    for r in range(rows):
        for v in range(first[r], last[r]):
            flat_voxels[count] = shift[r] + voxels[v]
            index[count] = voxel_index[v]
            keys[shift[r] + voxels[v]] = voxel_index[v]
            count += 1
    spread_keys(keys, flat_voxels, index, strides, mask_starts, steps, step_keys)
    owner = np.zeros((hi_fit[0] - lo_fit[0], hi_fit[1] - lo_fit[1], hi_fit[2] - lo_fit[2]),
                     dtype=np.int64)
    low = (1 << bits) - 1
    for z in range(owner.shape[0]):
        for y in range(owner.shape[1]):
            at = ((z + lo_fit[0] - lo[0] + pad[0]) * strides[0]
                  + (y + lo_fit[1] - lo[1] + pad[1]) * strides[1] + lo_fit[2] - lo[2] + pad[2])
            for x in range(owner.shape[2]):
                key = keys[at + x]
                if key != blank:
                    label = labels[key & low]
                    owner[z, y, x] = label if key < aperture_keys else -label
    return owner


@njit(cache=True, nogil=True)
def window_owner_at(row, lo_fit, hi_fit, voxels, voxel_index, labels, shape, low, high, reach,
                    mask_starts, step_offsets, step_keys, aperture_keys, bits, blank):
    """:func:`window_owner` of the object at `row` (its voxels' box ``low[row]`` to
    ``high[row]``), over its fit window ``lo_fit:hi_fit``: the voxels keyed are the box
    of every object voxel that may be nearest to one of the window's (the object's box
    grown by twice `reach`, cut to the stack), padded by `reach`, and the stencil's
    `step_offsets` (z, y, x) are taken as flat steps of that padded box."""
    lo = np.empty(3, np.int64)
    hi = np.empty(3, np.int64)
    for k in range(3):
        lo[k] = max(low[row, k] - 2 * reach[k], 0)
        hi[k] = min(high[row, k] + 1 + 2 * reach[k], shape[k])
    rows = hi[1] - lo[1] + 2 * reach[1]
    columns = hi[2] - lo[2] + 2 * reach[2]
    steps = np.empty(step_offsets.shape[0], np.int64)
    for j in range(steps.size):
        steps[j] = (step_offsets[j, 0] * rows * columns + step_offsets[j, 1] * columns
                    + step_offsets[j, 2])
    return window_owner(voxels, voxel_index, labels, shape, lo, hi, lo_fit, hi_fit, reach,
                        mask_starts, steps, step_keys, aperture_keys, bits, blank)


@njit(cache=True, nogil=True)
def fit_windows(rows, fallbacks, psf, widths, spacing, steps, low, high, bound, light_of,
                starts_of, fit_low, fit_high, ids, min_plane, cap, voxels, voxel_index, labels,
                shape, box_low, box_high, reach, mask_starts, step_offsets, step_keys,
                aperture_keys, bits, blank):
    """The fits of ``capture`` for many objects in one call: each object's window
    (``fit_low[i]:fit_high[i]``; :func:`window_owner_at`, :func:`prepare_region`), its start (the aperture's peak and the centroid of its
    positive light), :func:`fit_gaussian`, and, without `psf`, what its aperture reads
    of a point and of the fitted source (:func:`captured`, the extra variance capped
    at `cap` µm²), exactly as ``capture`` takes them one object at a time. Object `i`'s
    window of raw light (float64, C order) is ``light_of[starts_of[i]:starts_of[i + 1]]``:
    gathered by the caller, so that one compiled loop serves stacks of any dtype.

    Returns
    -------
    params : (n, 6) ndarray
        Each fit's parameters (:func:`fit_gaussian`; the last unused without `psf`);
        NaN where the aperture holds no positive light (no start).
    left : (n,) ndarray of bool
        The fitted centre lies more than half a voxel outside the box of the
        aperture's voxels.
    point, spread : (n,) ndarray
        The aperture's reading of a unit point source and of the capped fitted
        source at the fitted centre (NaN with `psf`, or where not fitted).
    """
    n = rows.size
    params = np.full((n, 6), np.nan)
    left = np.zeros(n, dtype=np.bool_)
    point = np.full(n, np.nan)
    spread = np.full(n, np.nan)
    start = np.empty(4)
    centre = np.empty(3)
    point_widths = np.empty(3)
    spread_widths = np.empty(3)
    for i in range(n):
        owner = window_owner_at(rows[i], fit_low[i], fit_high[i], voxels, voxel_index, labels,
                                shape, box_low, box_high, reach, mask_starts, step_offsets,
                                step_keys, aperture_keys, bits, blank)
        window = light_of[starts_of[i]:starts_of[i + 1]].reshape(owner.shape)
        grid, light, aperture, slot, cat, starts, sizes = prepare_region(
            window, owner, ids[rows[i]], fallbacks[i], min_plane)
        total = 0.0
        peak = -np.inf
        weighted = np.zeros(3)
        for v in range(light.size):
            if aperture[v]:
                peak = max(peak, light[v])
                if light[v] > 0:
                    total += light[v]
                    for k in range(3):
                        weighted[k] += grid[v, k] * light[v]
        if total <= 0:
            continue
        start[0] = peak
        for k in range(3):
            start[1 + k] = weighted[k] / total
        p = fit_gaussian(grid, light, slot, cat, starts, sizes, start, widths, spacing, psf,
                         steps, low, high, bound)
        params[i, :p.size] = p
        for k in range(3):
            centre[k] = p[1 + k]
            inside_low, inside_high = np.inf, -np.inf
            for v in range(light.size):
                if aperture[v]:
                    inside_low = min(inside_low, grid[v, k])
                    inside_high = max(inside_high, grid[v, k])
            if centre[k] < inside_low - 0.5 or centre[k] > inside_high + 0.5:
                left[i] = True
        if psf or left[i]:
            continue
        extra = min(p[4], cap)
        for k in range(3):
            point_widths[k] = widths[k] / spacing[k]
            spread_widths[k] = np.sqrt(widths[k] * widths[k] + extra) / spacing[k]
        point[i] = captured(grid, aperture, slot, cat, starts, sizes, centre, point_widths)
        spread[i] = captured(grid, aperture, slot, cat, starts, sizes, centre, spread_widths)
    return params, left, point, spread
