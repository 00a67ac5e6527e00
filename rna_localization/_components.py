"""Compiled kernels (numba): a mask's non-zero voxels, its face-connected objects, and
where one list of voxels lies in another.

Pure array functions over flat (C order) indices, as
:class:`~rna_localization.objects.ObjectVoxels` holds them:
:func:`rna_localization.objects.object_voxels` lists a mask's non-zero voxels
with :func:`nonzero_voxels` and numbers its objects with
:func:`face_components`, in time and memory linear in the object voxels (and
one read of the mask), never holding a label image of the volume;
:meth:`~rna_localization.objects.ObjectVoxels.from_label_image` lists a label
image's with their labels (:func:`nonzero_labels`);
:meth:`~rna_localization.objects.ObjectVoxels.find` finds an ascending list's
voxels in another with :func:`sorted_positions`; the distances bound their
voxels with :func:`voxel_box`, list the labels present with
:func:`labels_present`, keep the boundary voxels of the objects still to measure
with :func:`kept_voxels`, group them by object with :func:`by_label` and take
each object's least distance with :func:`object_minima`.
They release the GIL and are compiled once (and cached on disk).
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["by_label", "face_components", "kept_voxels", "labels_present", "nonzero_labels",
           "nonzero_voxels", "object_minima", "sorted_positions", "voxel_box"]


@njit(cache=True, nogil=True)
def _count_nonzero(flat):
    count = 0
    for i in range(flat.size):
        count += flat[i] != 0
    return count


@njit(cache=True, nogil=True)
def _fill_nonzero(flat, words, per, voxels, values, low, high):
    """Write the non-zero positions of `flat` into `voxels`, ascending, and their values into
    `values`; return the smallest and the largest value (`low` and `high` without any).

    `words` is `flat`'s leading bytes as uint64, each holding `per` values: a
    zero word skips them at once, which is most of a sparse mask or label image.
    """
    k = 0
    for w in range(words.size + 1):
        if w < words.size:  # a word's values, unless they are all zero
            if words[w] == 0:
                continue
            first, stop = per * w, per * w + per
        else:  # the values past the last whole word
            first, stop = per * words.size, flat.size
        for i in range(first, stop):
            value = flat[i]
            if value != 0:
                voxels[k] = i
                values[k] = value
                low = min(low, value)
                high = max(high, value)
                k += 1
    return low, high


def _words(flat: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """`flat` as a native 1-D array, its leading bytes as uint64 words, and values per word."""
    flat = np.ascontiguousarray(flat).reshape(-1)
    if not flat.dtype.isnative:  # a big-endian file's array: zero in either byte order
        flat = flat.view(flat.dtype.newbyteorder("="))
    if flat.dtype == bool:
        flat = flat.view(np.uint8)
    per = 8 // flat.itemsize  # values in a word of 8 bytes
    words = flat[: flat.size // per * per].view(np.uint64)
    if not words.flags.aligned:  # a stack mapped at an odd offset: value by value
        words = words[:0].copy()
    return flat, words, per


def nonzero_labels(flat: np.ndarray) -> tuple[np.ndarray, np.ndarray, int, int]:
    """:func:`nonzero_voxels` and the values there, in the same pass.

    Returns the positions (int64), the values (`flat`'s dtype, native), and the
    smallest and the largest value among them (0 and 0 when there is none).

    Examples
    --------
    >>> nonzero_labels(np.array([0, 7, 0, 0, 0, 0, 0, 0, 0, 2], np.int32))
    (array([1, 9]), array([7, 2], dtype=int32), 2, 7)
    """
    flat = np.asarray(flat)
    if not flat.dtype.isnative:  # the values themselves are copied: in native byte order
        flat = flat.astype(flat.dtype.newbyteorder("="))
    flat, words, per = _words(flat)
    count = _count_nonzero(flat)
    voxels = np.empty(count, dtype=np.int64)
    labels = np.empty(count, dtype=flat.dtype)
    if count == 0:
        return voxels, labels, 0, 0
    info = np.iinfo(flat.dtype)
    low, high = _fill_nonzero(flat, words, per, voxels, labels, flat.dtype.type(info.max),
                              flat.dtype.type(info.min))
    return voxels, labels, int(low), int(high)


def nonzero_voxels(flat: np.ndarray) -> np.ndarray:
    """Positions of the non-zero values of a 1-D integer array, ascending, as int64.

    ``np.flatnonzero(flat)``, in two passes that allocate nothing but the
    answer, eight bytes read at a time where they are all zero
    (``np.flatnonzero(flat != 0)`` takes about 1 s on a 250-million-voxel uint8
    mask holding 1% of objects; this, about 0.1 s).

    Parameters
    ----------
    flat : (N,) ndarray of integers

    Returns
    -------
    (M,) ndarray of int64

    Examples
    --------
    >>> nonzero_voxels(np.array([0, 3, 0, 0, 0, 0, 0, 0, 0, 255], np.uint8))
    array([1, 9])
    """
    flat, words, per = _words(flat)
    count = _count_nonzero(flat)
    out = np.empty(count, dtype=np.int64)
    zero = flat.dtype.type(0)
    _fill_nonzero(flat, words, per, out, np.empty(count, flat.dtype), zero, zero)
    return out


@njit(cache=True, nogil=True)
def _root(parent, i):
    """The root of `i`'s tree, halving the path on the way."""
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


@njit(cache=True, nogil=True)
def _join(parent, i, j):
    """One tree for `i` and `j`, rooted at the smaller of their two roots."""
    a = _root(parent, i)
    b = _root(parent, j)
    if a < b:
        parent[b] = a
    elif b < a:
        parent[a] = b


@njit(cache=True, nogil=True)
def _components(voxels, n_y, n_x, parent, labels):
    """Fill `labels` (see :func:`face_components`); return the number of objects."""
    n = voxels.size
    for i in range(n):
        parent[i] = i
    plane = n_y * n_x
    behind_row = 0  # pointers to the first voxel at or after v - n_x, v - plane
    behind_plane = 0
    for i in range(n):
        v = voxels[i]
        if v % n_x and i and voxels[i - 1] == v - 1:
            _join(parent, i - 1, i)
        if (v // n_x) % n_y:
            previous = v - n_x
            while voxels[behind_row] < previous:
                behind_row += 1
            if voxels[behind_row] == previous:
                _join(parent, behind_row, i)
        if v >= plane:
            previous = v - plane
            while voxels[behind_plane] < previous:
                behind_plane += 1
            if voxels[behind_plane] == previous:
                _join(parent, behind_plane, i)
    # Every root is its object's first voxel (trees are rooted at their smallest
    # index), so numbering the roots in order numbers the objects in scan order.
    count = 0
    for i in range(n):
        root = _root(parent, i)
        if root == i:
            count += 1
            labels[i] = count
        else:
            labels[i] = labels[root]
    return count


def face_components(voxels: np.ndarray, shape) -> tuple[np.ndarray, int]:
    """Label the face-connected (6-connected) objects made of the given voxels.

    Two voxels are in one object when a chain of voxels of the list, each
    sharing a face with the next, joins them. Objects are numbered 1..n in the
    scan (C) order of their first voxels, as :func:`scipy.ndimage.label`
    numbers them. One pass joins each voxel to its neighbours before it along
    x, y and z (union-find; the neighbours along y and z are found by pointers
    that only move forward, since ``v - n_x`` and ``v - n_y * n_x`` ascend
    with ``v``), a second numbers them: linear in the voxels, whatever the
    volume.

    Parameters
    ----------
    voxels : (N,) ndarray of int64
        Flat (C order) indices into a volume of `shape`, strictly ascending.
    shape : (3,) tuple of int
        The volume's (Z, Y, X) shape.

    Returns
    -------
    labels : (N,) ndarray of int64
        Each voxel's object, from 1.
    count : int
        The number of objects.

    Examples
    --------
    >>> mask = np.zeros((2, 2, 3), bool)
    >>> mask[0, 0, :2] = mask[1, 0, 1] = mask[0, 1, 2] = True
    >>> face_components(np.flatnonzero(mask), mask.shape)
    (array([1, 1, 2, 1]), 2)
    """
    voxels = np.ascontiguousarray(voxels, dtype=np.int64)
    parent = np.empty(voxels.size, dtype=np.int32 if voxels.size < 2**31 else np.int64)
    labels = np.empty(voxels.size, dtype=np.int64)
    count = _components(voxels, int(shape[1]), int(shape[2]), parent, labels)
    return labels, int(count)


@njit(cache=True, nogil=True)
def sorted_positions(values, queries):
    """Position in `values` of each of `queries`, -1 where absent; both ascending.

    One merge of the two lists, linear in both: several times faster than a
    binary search per query when the queries are many (e.g. every RNA voxel
    looked up among the centrosomes').

    Parameters
    ----------
    values : (N,) ndarray of int64
        Strictly ascending.
    queries : (M,) ndarray of int64
        Ascending.

    Returns
    -------
    (M,) ndarray of int64

    Examples
    --------
    >>> sorted_positions(np.array([2, 5, 9]), np.array([1, 5, 9, 12]))
    array([-1,  1,  2, -1])
    """
    out = np.empty(queries.size, np.int64)
    j = 0
    for i in range(queries.size):
        query = queries[i]
        while j < values.size and values[j] < query:
            j += 1
        out[i] = j if j < values.size and values[j] == query else -1
    return out


@njit(cache=True, nogil=True)
def voxel_box(voxels, n_y, n_x, box):
    """Widen `box` to hold every one of `voxels` (flat indices into planes of n_y x n_x).

    One pass, a division per row started rather than per voxel when the voxels
    ascend (any order is right).

    Parameters
    ----------
    voxels : (N,) ndarray of int64
    n_y, n_x : int
    box : (6,) ndarray of int64
        ``z0, z1, y0, y1, x0, x1`` (inclusive), widened in place.

    Examples
    --------
    >>> box = np.array([9, 0, 9, 0, 9, 0])
    >>> voxel_box(np.array([7, 8, 25]), 3, 4, box); box  # (0, 1, 3), (0, 2, 0), (2, 0, 1)
    array([0, 2, 0, 2, 0, 3])
    """
    row_start = row_end = -1
    z = y = 0
    for i in range(voxels.size):
        v = voxels[i]
        if v < row_start or v >= row_end:
            row = v // n_x
            row_start = row * n_x
            row_end = row_start + n_x
            z = row // n_y
            y = row - z * n_y
            box[0] = min(box[0], z)
            box[1] = max(box[1], z)
            box[2] = min(box[2], y)
            box[3] = max(box[3], y)
        x = v - row_start
        box[4] = min(box[4], x)
        box[5] = max(box[5], x)


@njit(cache=True, nogil=True)
def by_label(voxels, labels, high):
    """`voxels` and `labels` ordered by label, stably: a counting sort.

    The same order as ``np.argsort(labels, kind="stable")``, in two passes
    over the voxels and one over the labels' range, without a comparison sort.

    Parameters
    ----------
    voxels : (N,) ndarray of int64
    labels : (N,) ndarray of int
        Each voxel's label, from 0 to `high`.
    high : int
        The largest label (the counts take ``8 * (high + 2)`` bytes).

    Returns
    -------
    voxels, labels : (N,) ndarray of int64

    Examples
    --------
    >>> by_label(np.array([10, 11, 12, 13]), np.array([2, 1, 2, 1]), 2)
    (array([11, 13, 10, 12]), array([1, 1, 2, 2]))
    """
    starts = np.zeros(high + 2, np.int64)
    for i in range(labels.size):
        starts[labels[i] + 1] += 1
    for label in range(1, high + 2):
        starts[label] += starts[label - 1]
    out_voxels = np.empty(voxels.size, np.int64)
    out_labels = np.empty(labels.size, np.int64)
    for i in range(labels.size):
        label = labels[i]
        at = starts[label]
        starts[label] = at + 1
        out_voxels[at] = voxels[i]
        out_labels[at] = label
    return out_voxels, out_labels


@njit(cache=True, nogil=True)
def object_minima(keys, table, values, squared, n_objects, rtol):
    """Each object's least value over its voxels, and the voxels as near, to a tolerance.

    Voxel ``i`` belongs to object ``table[keys[i]]``. Two passes over the
    voxels, no array of theirs made on the way, and no square root taken in them.

    Parameters
    ----------
    keys : (N,) ndarray of int
    table : ndarray of int64
        Each key's object, from 0 to ``n_objects - 1``.
    values : (N,) ndarray of float64
        Each voxel's value (any stride); its square root is taken when `squared`.
    squared : bool
    n_objects : int
    rtol : float
        A voxel is as near as its object's least value ``m`` when its value is at
        most ``m * (1 + rtol) + 1e-12``.

    Returns
    -------
    minima : (n_objects,) ndarray of float64
        Infinite for an object without a voxel.
    near : (M,) ndarray of int64
        The voxels as near as their object's least value, ascending.

    Examples
    --------
    >>> table = np.array([0, 0, 0, 0, 0, 0, 0, 1])  # key 5: object 0; key 7: object 1
    >>> object_minima(np.array([5, 7, 5]), table, np.array([4.0, 9.0, 6.25]), True, 3, 0.0)
    (array([ 2.,  3., inf]), array([0, 1]))
    """
    least = np.full(n_objects, np.inf)  # of the values as given
    for i in range(keys.size):
        row = table[keys[i]]
        if values[i] < least[row]:
            least[row] = values[i]
    # The square root is monotone and correctly rounded: the root of the least square is
    # the least root, and each object's voxels as near are those whose value is at most
    # the largest float whose root is within the tolerance.
    minima = np.sqrt(least) if squared else least
    limit = np.empty(n_objects)
    for row in range(n_objects):
        radius = minima[row] * (1.0 + rtol) + 1e-12
        if not squared or radius == np.inf:
            limit[row] = radius
            continue
        bound = radius * radius  # its root is the radius (IEEE rounding to nearest)
        while np.sqrt(np.nextafter(bound, np.inf)) <= radius:
            bound = np.nextafter(bound, np.inf)
        limit[row] = bound
    near = np.empty(keys.size, np.int64)
    count = 0
    for i in range(keys.size):
        if values[i] <= limit[table[keys[i]]]:
            near[count] = i
            count += 1
    return minima, near[:count].copy()


@njit(cache=True, nogil=True)
def labels_present(labels, high):
    """Whether each label from 0 to `high` is one of `labels` (all of them at most `high`).

    Examples
    --------
    >>> labels_present(np.array([3, 1, 3], np.uint8), 4)
    array([False,  True, False,  True, False])
    """
    present = np.zeros(high + 1, np.bool_)
    for i in range(labels.size):
        present[labels[i]] = True
    return present


@njit(cache=True, nogil=True)
def kept_voxels(voxels, labels, chosen, skipped):
    """The `chosen` voxels (a mask) whose label is not `skipped` (a table by label), with
    their labels: one pass to count them, one to copy them.

    Examples
    --------
    >>> kept_voxels(np.array([4, 5, 6, 7]), np.array([1, 2, 1, 2]),
    ...             np.array([True, True, False, True]), np.array([False, False, True]))
    (array([4]), array([1]))
    """
    count = 0
    for i in range(voxels.size):
        count += chosen[i] and not skipped[labels[i]]
    out_voxels = np.empty(count, voxels.dtype)
    out_labels = np.empty(count, labels.dtype)
    k = 0
    for i in range(voxels.size):
        if chosen[i] and not skipped[labels[i]]:
            out_voxels[k] = voxels[i]
            out_labels[k] = labels[i]
            k += 1
    return out_voxels, out_labels
