"""Compiled loops over a stack's columns (numba): each pixel's values through the planes.

Pure array functions, compiled once (and cached on disk) by numba; they release
the GIL. :mod:`rna_localization.hot_pixels` calls them:

- :func:`median_network` lists the comparisons of a sorting network pruned to
  those the middle values depend on;
- :func:`column_medians` takes each pixel's median over the planes through that
  network, run on a row's pixels side by side: the same comparison on many
  pixels at once, which the compiler turns into vector instructions (on a
  60×2048×2048 stack, about three times as fast as NumPy's partition of each
  pixel's values, and the same answer);
- :func:`map_excess` takes each pixel's excess over its 8 neighbours in a map
  (their mean without the largest and the smallest);
- :func:`excess_medians` takes, at given pixels, the median over the planes of
  that excess in each plane, and its median absolute deviation.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from numba import njit

from ._stencils import _median

__all__ = ["column_medians", "excess_medians", "map_excess", "median_network"]

#: :func:`column_medians` works on this many pixels of a row at a time (a block of
#: ``planes × COLUMN_BLOCK`` float32 values, held in the core's caches).
COLUMN_BLOCK = 512
#: :func:`map_excess` works on about this many pixels at a time.
MAP_BAND = 1 << 17


def _batcher_pairs(count: int) -> list[tuple[int, int]]:
    """Batcher's odd-even merge sort of `count` values: its comparisons ``(i, j)``, ``i < j``,
    in order (the network for the next power of two, less the comparisons with a value past
    `count`: those values taken as +inf never move)."""
    size = 1
    while size < count:
        size *= 2
    pairs = []
    merged = 1
    while merged < size:
        step = merged
        while step >= 1:
            start = step % merged
            while start <= size - 1 - step:
                for i in range(min(step - 1, size - start - step - 1) + 1):
                    low, high = i + start, i + start + step
                    if low // (2 * merged) == high // (2 * merged) and high < count:
                        pairs.append((low, high))
                start += 2 * step
            step //= 2
        merged *= 2
    return pairs


@lru_cache(maxsize=16)
def median_network(count: int) -> np.ndarray:
    """The comparisons that put the middle value(s) of `count` values in place.

    Batcher's odd-even merge sort network, kept only where a comparison's
    outputs reach position ``count // 2`` (and ``count // 2 - 1`` for an even
    count) of the sorted order, walking back from the end.

    Parameters
    ----------
    count : int
        Values per column (at least 1).

    Returns
    -------
    (K, 2) ndarray of int64
        Pairs ``(i, j)``, ``i < j``, in order: put the smaller of the values at
        ``i`` and ``j`` at ``i``, the larger at ``j``.

    Examples
    --------
    >>> pairs = median_network(5)
    >>> values = [4.0, 1.0, 5.0, 2.0, 3.0]
    >>> for i, j in pairs:
    ...     values[i], values[j] = min(values[i], values[j]), max(values[i], values[j])
    >>> values[2]
    3.0
    >>> len(median_network(60)) < len(_batcher_pairs(60))
    True
    """
    needed = {count // 2, (count - 1) // 2}
    kept = []
    for low, high in reversed(_batcher_pairs(count)):
        if low in needed or high in needed:
            kept.append((low, high))
            needed.update((low, high))
    return np.array(kept[::-1], dtype=np.int64).reshape(-1, 2)


@njit(cache=True, nogil=True)
def _network_medians(stack, pairs, lower, upper, out, block):
    """``out[y, x]``: the mean of the values at `lower` and `upper` once `pairs` has ordered
    the column ``stack[:, y, x]`` (float32)."""
    depth, height, width = stack.shape
    values = np.empty((depth, block), np.float32)
    half = np.float32(0.5)
    for y in range(height):
        for left in range(0, width, block):
            span = min(block, width - left)
            for z in range(depth):
                for x in range(span):
                    values[z, x] = stack[z, y, left + x]
            for c in range(pairs.shape[0]):
                first = values[pairs[c, 0]]
                second = values[pairs[c, 1]]
                for x in range(span):
                    a = first[x]
                    b = second[x]
                    first[x] = min(a, b)
                    second[x] = max(a, b)
            if lower == upper:
                for x in range(span):
                    out[y, left + x] = values[upper, x]
            else:
                for x in range(span):
                    out[y, left + x] = (values[lower, x] + values[upper, x]) * half


def column_medians(stack: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Each pixel's median over the planes, as float32.

    The median of an even count is the mean of its two middle values. The
    values are taken as float32 first (a camera's integers exactly).

    Parameters
    ----------
    stack : (Z, Y, X) ndarray of a real dtype
        No NaN.
    out : (Y, X) ndarray of float32, optional
        Written in place (a band of a larger map).

    Returns
    -------
    (Y, X) ndarray of float32
        ``np.median(stack, axis=0)`` of the float32 values.

    Examples
    --------
    >>> stack = np.arange(24, dtype=np.uint16).reshape(4, 2, 3)[::-1]
    >>> column_medians(stack).tolist()
    [[9.0, 10.0, 11.0], [12.0, 13.0, 14.0]]
    """
    depth, height, width = stack.shape
    if out is None:
        out = np.empty((height, width), dtype=np.float32)
    if depth == 0:
        out[...] = np.nan
        return out
    _network_medians(stack, median_network(depth), (depth - 1) // 2, depth // 2, out,
                     COLUMN_BLOCK)
    return out


@njit(cache=True, nogil=True)
def _mirror(index, size):
    """`index` mirrored at an axis' ends: -1 -> 1, size -> size - 2."""
    index = abs(index)
    return 2 * size - 2 - index if index >= size else index


@njit(cache=True, nogil=True)
def _excesses(stack, offsets, rows, columns, out):
    """``out[i, z]``: pixel ``(rows[i], columns[i])``'s value in plane `z` less the mean of its 8
    neighbours there (mirrored at the edges) without their largest and smallest, every value
    less its pixel's `offsets` first; float32, summed in the order of the neighbours' rows,
    then columns."""
    depth, height, width = stack.shape
    six = np.float32(6.0)
    for i in range(rows.size):
        y, x = rows[i], columns[i]
        for z in range(depth):
            centre = np.float32(stack[z, y, x]) - offsets[y, x]
            total = np.float32(0.0)
            largest = np.float32(-np.inf)
            smallest = np.float32(np.inf)
            for dy in range(-1, 2):
                yy = _mirror(y + dy, height)
                for dx in range(-1, 2):
                    if dy == 0 and dx == 0:
                        continue
                    xx = _mirror(x + dx, width)
                    value = np.float32(stack[z, yy, xx]) - offsets[yy, xx]
                    total += value
                    largest = max(largest, value)
                    smallest = min(smallest, value)
            total -= largest
            total -= smallest
            out[i, z] = centre - total / six


def map_excess(level: np.ndarray, out: np.ndarray) -> None:
    """``out[y, x]``: ``level[y, x]`` less the mean of its 8 neighbours (mirrored at the
    edges: -1 -> 1, size -> size - 2) without their largest and smallest value, in float32,
    summed in the order of the neighbours' rows, then columns.

    Examples
    --------
    >>> level = np.zeros((3, 4), np.float32); level[1, 2] = 6.0
    >>> out = np.empty_like(level); map_excess(level, out)
    >>> float(out[1, 2]), float(out[1, 1])
    (6.0, 0.0)
    """
    height, width = level.shape
    stack = level[np.newaxis]
    none = np.zeros((height, width), np.float32)
    rows = max(1, MAP_BAND // width)
    for top in range(0, height, rows):
        band = out[top:top + rows]
        y = np.repeat(np.arange(top, top + band.shape[0], dtype=np.int64), width)
        x = np.tile(np.arange(width, dtype=np.int64), band.shape[0])
        values = np.empty((y.size, 1), np.float32)
        _excesses(stack, none, y, x, values)
        band[...] = values.reshape(band.shape)


@njit(cache=True, nogil=True)
def excess_medians(image, offsets, rows, columns, scale, median, spread):
    """At pixels ``(rows[i], columns[i])``: the median over the planes of the pixel's excess
    over its neighbours, and `scale` times the excesses' median absolute deviation.

    A pixel's excess in a plane is its value less the mean of its 8
    neighbours (mirrored at the edges) without their largest and smallest,
    every value less its pixel's `offsets` first (:func:`_excesses`). Writes
    ``median[i]`` and ``spread[i]`` (float32; a median of an even count is the
    mean of its two middle values).
    """
    depth = image.shape[0]
    excess = np.empty((rows.size, depth), np.float32)
    _excesses(image, offsets, rows, columns, excess)
    deviation = np.empty(depth, np.float32)
    for i in range(rows.size):
        middle = np.float32(_median(excess[i]))
        for z in range(depth):
            deviation[z] = abs(excess[i, z] - middle)
        median[i] = middle
        spread[i] = np.float32(_median(deviation)) * scale
