"""Objects of a segmentation: labeling and per-object measurements.

Pure array functions: nothing here reads files or talks to the database.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import ndimage

__all__ = [
    "FACE_CONNECTIVITY",
    "OBJECT_COLUMNS",
    "ObjectVoxels",
    "as_object_voxels",
    "label_objects",
    "measure_objects",
    "normalize_spacing",
    "object_voxels",
    "smallest_label_dtype",
]

#: Columns of :func:`measure_objects`, in order, with their dtypes.
OBJECT_COLUMNS = {
    "object_id": "int64",
    "area": "int64",
    "centroid_z": "float64",
    "centroid_y": "float64",
    "centroid_x": "float64",
    "min_intensity": "float64",
    "max_intensity": "float64",
    "mean_intensity": "float64",
    "total_intensity": "float64",
}

# Face connectivity: two voxels touch when they share a face (6 neighbours in 3D).
#: Voxels sharing a face are neighbours (6-connectivity): the connectivity of every
#: object in the package (labeling, segmentation workflows, outlines).
FACE_CONNECTIVITY = ndimage.generate_binary_structure(3, 1)


def normalize_spacing(spacing, ndim: int = 3) -> np.ndarray:
    """Return `spacing` as one positive float per axis.

    Parameters
    ----------
    spacing : float or sequence of float
        Microns per voxel: a scalar for isotropic voxels, or one value per
        (z, y, x) axis.
    ndim : int
        Number of axes.

    Returns
    -------
    (ndim,) ndarray of float64

    Examples
    --------
    >>> normalize_spacing((0.2, 0.065, 0.065))
    array([0.2  , 0.065, 0.065])
    """
    try:
        values = np.broadcast_to(np.asarray(spacing, dtype=np.float64), (ndim,)).copy()
    except (TypeError, ValueError) as error:
        msg = (
            f"spacing must be a number or {ndim} numbers (microns per voxel along z, y, x); "
            f"got {spacing!r}."
        )
        raise ValueError(msg) from error
    if not np.all(np.isfinite(values)) or np.any(values <= 0):
        msg = (
            f"spacing must be positive microns per voxel, one per (z, y, x) axis; "
            f"got {spacing!r}."
        )
        raise ValueError(msg)
    return values


def _check_3d(array: np.ndarray, what: str) -> None:
    if array.ndim != 3:
        msg = (
            f"{what} must be a 3D (Z, Y, X) array; got {array.ndim} dimensions "
            f"with shape {array.shape}."
        )
        raise ValueError(msg)


def object_voxels_and_intensities(label_image, intensity_image) -> tuple[ObjectVoxels, np.ndarray]:
    """`label_image` (an ndarray or :class:`ObjectVoxels`) as object voxels, and the
    intensity image as an array of the same shape (ValueError otherwise)."""
    if not isinstance(label_image, ObjectVoxels):
        label_image, intensity_image = _check_pair(label_image, intensity_image)
        return ObjectVoxels.from_label_image(label_image), intensity_image
    intensity_image = np.asarray(intensity_image)
    if tuple(label_image.shape) != intensity_image.shape:
        msg = (
            f"label_image and intensity_image must have the same shape; got "
            f"{tuple(label_image.shape)} and {intensity_image.shape}."
        )
        raise ValueError(msg)
    return label_image, intensity_image


def _check_pair(label_image, intensity_image) -> tuple[np.ndarray, np.ndarray]:
    """Both as arrays, the label image 3D and the two of the same shape."""
    label_image = np.asarray(label_image)
    intensity_image = np.asarray(intensity_image)
    _check_3d(label_image, "label_image")
    if label_image.shape != intensity_image.shape:
        msg = (
            f"label_image and intensity_image must have the same shape; got "
            f"{label_image.shape} and {intensity_image.shape}."
        )
        raise ValueError(msg)
    return label_image, intensity_image


# Voxels per chunk of the validity scan (fits in a core's cache with its temporaries).
_SCAN_VOXELS = 1 << 18


def smallest_label_dtype(largest: int) -> np.dtype:
    """The smallest unsigned integer dtype that holds labels up to `largest`.

    Examples
    --------
    >>> smallest_label_dtype(255), smallest_label_dtype(70_000)
    (dtype('uint8'), dtype('uint32'))
    """
    for dtype in (np.uint8, np.uint16, np.uint32):
        if largest <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    return np.dtype(np.uint64)


@dataclass(frozen=True, eq=False)
class ObjectVoxels:
    """The object voxels of a label image, without its background.

    What a label image holds when its objects fill a few percent of it, in a
    few bytes per object voxel instead of several per voxel of the volume.
    :func:`measure_objects` and the :mod:`~rna_localization.apertures`
    functions accept it in place of a label image.

    Attributes
    ----------
    shape : tuple of int
        The label image's (Z, Y, X) shape.
    voxels : (N,) ndarray of int64
        Flat (C order) indices of the non-zero voxels, ascending.
    labels : (N,) ndarray of unsigned int
        Their labels, in the smallest unsigned dtype that holds them.

    Examples
    --------
    >>> image = np.zeros((1, 2, 3), np.int32); image[0, 1, 1:] = 7
    >>> objects = ObjectVoxels.from_label_image(image)
    >>> objects.voxels, objects.labels
    (array([4, 5]), array([7, 7], dtype=uint8))
    >>> bool((objects.to_label_image() == image).all())
    True
    """

    shape: tuple
    voxels: np.ndarray
    labels: np.ndarray

    def __post_init__(self):
        # The distances read voxels by binary search: they must be ascending, and
        # each a voxel of `shape` with a label >= 1. One cheap pass over them.
        voxels, labels = np.asarray(self.voxels), np.asarray(self.labels)
        if voxels.ndim != 1 or voxels.shape != labels.shape:
            msg = (f"ObjectVoxels: voxels and labels must be 1-D and of one length; got "
                   f"{voxels.shape} and {labels.shape}.")
            raise ValueError(msg)
        if voxels.size and (voxels[0] < 0 or voxels[-1] >= int(np.prod(self.shape))
                            or not (voxels[1:] > voxels[:-1]).all()):
            msg = (f"ObjectVoxels: voxels must be distinct flat indices into shape "
                   f"{tuple(self.shape)}, in ascending order.")
            raise ValueError(msg)
        if labels.size and not (labels > 0).all():
            msg = "ObjectVoxels: every object voxel needs a label >= 1."
            raise ValueError(msg)

    @classmethod
    def from_label_image(cls, label_image, name: str = "label_image") -> ObjectVoxels:
        """The non-zero voxels of `label_image`; negative labels are refused (ValueError).

        `name` is the argument the messages name.
        """
        label_image = np.asarray(label_image)
        _check_3d(label_image, name)
        if label_image.dtype == bool:
            label_image = label_image.view(np.uint8)
        if not np.issubdtype(label_image.dtype, np.integer):
            msg = f"{name} must hold integer labels; got dtype {label_image.dtype}."
            raise TypeError(msg)
        from ._components import nonzero_labels  # compiled on first use (numba)

        voxels, labels, smallest, largest = nonzero_labels(label_image.reshape(-1))
        if smallest < 0:
            msg = f"{name} has negative labels (smallest {smallest}); labels must be >= 0."
            raise ValueError(msg)
        return cls(tuple(label_image.shape), voxels,
                   labels.astype(smallest_label_dtype(largest), copy=False))

    def find(self, flat) -> np.ndarray:
        """Position in :attr:`voxels` of each flat index in `flat`, -1 where it is no object's.

        Many ascending indices (another object's voxels) are found by one merge
        (:func:`rna_localization._components.sorted_positions`), others by binary search.

        Examples
        --------
        >>> ObjectVoxels((1, 1, 5), np.array([1, 3]), np.array([2, 2], np.uint8)).find([3, 0, 1, 4])
        array([ 1, -1,  0, -1])
        """
        flat = np.asarray(flat, dtype=np.int64)
        if self.voxels.size == 0:
            return np.full(flat.shape, -1, dtype=np.intp)
        if flat.ndim == 1 and 16 * flat.size >= self.voxels.size and (flat[1:] >= flat[:-1]).all():
            from ._components import sorted_positions  # compiled on first use (numba)

            # Ascending (e.g. another object's voxels): one merge, not a search per voxel.
            return sorted_positions(self.voxels.astype(np.int64, copy=False), flat).astype(np.intp)
        at = np.minimum(np.searchsorted(self.voxels, flat), self.voxels.size - 1)
        return np.where(self.voxels[at] == flat, at, -1)

    @property
    def largest(self) -> int:
        """The largest label, 0 without objects."""
        return int(self.labels.max()) if self.labels.size else 0

    def to_label_image(self, dtype=None) -> np.ndarray:
        """The dense (Z, Y, X) label image, in `dtype` (default: the labels' own)."""
        image = np.zeros(self.shape, dtype=self.labels.dtype if dtype is None else dtype)
        image.reshape(-1)[self.voxels] = self.labels
        return image


def as_object_voxels(label_image, name: str = "label_image") -> ObjectVoxels:
    """`label_image` as object voxels: an :class:`ObjectVoxels` as it is, an array converted.

    How :func:`~rna_localization.distances.nearest_distances` and
    :func:`~rna_localization.distances.point_distances` read their label
    images: they work on the object voxels, so a label image costs one pass
    over it, and the stored ones
    (:func:`rna_localization.db.tables.read_label_image`) no volume at all.
    Negative labels are refused (ValueError), non-integer ones too (TypeError),
    in messages naming the argument `name`.

    Examples
    --------
    >>> objects = as_object_voxels(np.array([[[0, 3, 3]]]))
    >>> objects.voxels, as_object_voxels(objects) is objects
    (array([1, 2]), True)
    """
    if isinstance(label_image, ObjectVoxels):
        return label_image
    return ObjectVoxels.from_label_image(label_image, name)


def _scan(segmentation: np.ndarray) -> tuple[int, bool]:
    """The largest value and whether the non-zero voxels hold a single value.

    Refuses negative values and labels that int32 cannot hold. One pass in
    small chunks, so that the temporaries stay in cache: a few times faster
    than whole-volume comparisons and counts.
    """
    flat = segmentation.reshape(-1)
    signed = np.issubdtype(flat.dtype, np.signedinteger)
    largest, smallest, single = 0, 0, True
    for start in range(0, flat.size, _SCAN_VOXELS):
        chunk = flat[start : start + _SCAN_VOXELS]
        top = chunk.max()
        if signed:
            smallest = min(smallest, chunk.min())
        if top <= 0:
            continue
        if single:
            # One value in the chunk, and the same as in the chunks before.
            single = (largest in (0, top)
                      and np.count_nonzero(chunk == top) == np.count_nonzero(chunk))
        largest = max(largest, int(top))
    if smallest < 0:
        msg = f"segmentation has negative labels (smallest {smallest}); labels must be >= 0."
        raise ValueError(msg)
    if largest > np.iinfo(np.int32).max:
        msg = f"segmentation label {largest} does not fit in int32."
        raise ValueError(msg)
    return largest, single


def _check_segmentation(segmentation) -> np.ndarray:
    segmentation = np.asarray(segmentation)
    _check_3d(segmentation, "segmentation")
    if segmentation.dtype == bool:
        segmentation = segmentation.view(np.uint8)
    if not np.issubdtype(segmentation.dtype, np.integer):
        msg = (
            f"segmentation must hold integers (a mask or a label image); got dtype "
            f"{segmentation.dtype}. Threshold probability maps into a mask first."
        )
        raise TypeError(msg)
    return segmentation


def label_objects(segmentation: np.ndarray) -> np.ndarray:
    """Turn a segmentation into a label image, one integer per object.

    A segmentation with a single non-zero value is a binary mask: its objects
    are the connected components with face (6-) connectivity, numbered 1..n in
    scan order. A segmentation with several non-zero values is a label image:
    its labels are the objects and are kept as they are.

    Parameters
    ----------
    segmentation : (Z, Y, X) ndarray of bool or integers
        Mask or label image. Float arrays are refused: a probability map must
        be thresholded first.

    Returns
    -------
    label_image : (Z, Y, X) ndarray of int32
        0 is background.

    See Also
    --------
    object_voxels : the same objects, without the background (for large stacks).

    Examples
    --------
    >>> mask = np.zeros((1, 3, 5), np.uint8)
    >>> mask[0, 1, [0, 1, 3]] = 255
    >>> label_objects(mask)[0, 1]
    array([1, 1, 0, 2, 0], dtype=int32)
    """
    segmentation = _check_segmentation(segmentation)
    largest, single = _scan(segmentation)
    if largest == 0:
        return np.zeros(segmentation.shape, dtype=np.int32)
    if single:  # a binary mask; ndimage.label takes its non-zero voxels as the objects
        label_image = np.empty(segmentation.shape, dtype=np.int32)
        ndimage.label(segmentation, structure=FACE_CONNECTIVITY, output=label_image)
        return label_image
    return segmentation.astype(np.int32)


def object_voxels(segmentation: np.ndarray) -> ObjectVoxels:
    """The objects of :func:`label_objects`, as their voxels only.

    Same objects and labels as ``ObjectVoxels.from_label_image(label_objects(segmentation))``,
    without ever holding a label image of the whole stack: a mask's non-zero
    voxels are listed, then each is joined to its face neighbours (union-find
    over the listed voxels only) and the objects numbered in scan order, as
    :func:`scipy.ndimage.label` numbers them. Time and memory grow with the
    object voxels (about 20 bytes each), besides one read of the mask: a
    60 x 2048 x 2048 mask holding 70,000 spots is labeled in about 0.3 s on
    one core, against about 2 s for ``ndimage.label``, which writes 4 bytes
    for every voxel of the volume.

    Parameters
    ----------
    segmentation : (Z, Y, X) ndarray of bool or integers
        Mask or label image (see :func:`label_objects`).

    Returns
    -------
    ObjectVoxels

    Examples
    --------
    >>> mask = np.zeros((3, 1, 3), bool)
    >>> mask[:, 0, 0] = mask[2, 0, :] = mask[0, 0, 2] = True
    >>> found = object_voxels(mask)
    >>> found.labels
    array([1, 2, 1, 1, 1, 1], dtype=uint8)
    >>> bool((found.to_label_image() == label_objects(mask)).all())
    True
    """
    from ._components import face_components, nonzero_voxels  # compiled on first use (numba)

    segmentation = _check_segmentation(segmentation)
    largest, single = _scan(segmentation)
    if largest == 0 or not single:
        return ObjectVoxels.from_label_image(segmentation)
    voxels = nonzero_voxels(segmentation.reshape(-1))
    labels, count = face_components(voxels, segmentation.shape)
    return ObjectVoxels(tuple(segmentation.shape), voxels,
                        labels.astype(smallest_label_dtype(count)))


def empty_objects() -> pd.DataFrame:
    """Zero-row table with the columns and dtypes of :func:`measure_objects`."""
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in OBJECT_COLUMNS.items()})


def object_index(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct labels, ascending, and each voxel's place among them.

    Without sorting the voxels: labels up to a few times their number (those
    of :func:`label_objects` on a mask run 1..n) go through a table, others
    through :func:`numpy.unique`.

    Parameters
    ----------
    labels : (N,) ndarray of non-negative integers

    Returns
    -------
    ids : (n,) ndarray of int64
        The labels present, ascending.
    index : (N,) ndarray of intp
        ``ids[index] == labels``.

    Examples
    --------
    >>> object_index(np.array([7, 3, 7, 9]))
    (array([3, 7, 9]), array([1, 0, 1, 2]))
    """
    if labels.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.intp)
    largest = int(labels.max())
    if largest > 4 * labels.size + 4096:  # sparse labels: a table would be mostly empty
        ids, index = np.unique(labels, return_inverse=True)
        return ids.astype(np.int64), index.astype(np.intp, copy=False)
    present = np.zeros(largest + 1, dtype=bool)
    present[labels] = True
    place = np.cumsum(present, dtype=np.intp)
    place -= 1
    return np.flatnonzero(present).astype(np.int64), place[labels]


def measure_objects(label_image: np.ndarray, intensity_image: np.ndarray) -> pd.DataFrame:
    """Measure every object of a label image on an intensity image.

    Parameters
    ----------
    label_image : (Z, Y, X) ndarray of int, or ObjectVoxels
        Objects as positive labels, 0 as background (see :func:`label_objects`
        and :func:`object_voxels`).
    intensity_image : (Z, Y, X) ndarray
        Raw intensities, same shape.

    Returns
    -------
    DataFrame
        One row per label present, sorted by ``object_id``, with the columns of
        :data:`OBJECT_COLUMNS`: ``area`` in voxels, the centroid in voxel
        coordinates, and the minimum, maximum, mean and sum (``total_intensity``,
        float64 so it never overflows) of the raw intensities over the object's
        voxels. No object gives zero rows with the same columns.

    Examples
    --------
    >>> labels = np.array([[[0, 1, 1], [2, 0, 0]]])
    >>> raw = np.array([[[9, 2, 4], [7, 0, 0]]], dtype=np.uint16)
    >>> measure_objects(labels, raw)[["object_id", "area", "total_intensity"]]
       object_id  area  total_intensity
    0          1     2              6.0
    1          2     1              7.0
    """
    objects, intensity_image = object_voxels_and_intensities(label_image, intensity_image)
    voxels, labels = objects.voxels, objects.labels
    if voxels.size == 0:
        return empty_objects()
    # Sums per object by np.bincount, extremes by np.minimum.at (no sort of the voxels):
    # each object's voxels are summed in scan order.
    ids, index = object_index(labels)
    n = ids.size
    area = np.bincount(index, minlength=n)
    values = intensity_image.ravel()[voxels].astype(np.float64)
    total = np.bincount(index, weights=values, minlength=n)
    centroid = [np.bincount(index, weights=c, minlength=n) / area
                for c in np.unravel_index(voxels, objects.shape)]
    smallest = np.full(n, np.inf)
    np.minimum.at(smallest, index, values)
    largest = np.full(n, -np.inf)
    np.maximum.at(largest, index, values)
    table = pd.DataFrame(
        {
            "object_id": ids,
            "area": area.astype(np.int64),
            "centroid_z": centroid[0],
            "centroid_y": centroid[1],
            "centroid_x": centroid[2],
            "min_intensity": smallest,
            "max_intensity": largest,
            "mean_intensity": total / area,
            "total_intensity": total,
        }
    )
    return table
