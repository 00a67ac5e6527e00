"""Objects of a segmentation: labeling and per-object measurements.

Pure array functions: nothing here reads files or talks to the database.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import ndimage

__all__ = ["FACE_CONNECTIVITY", "OBJECT_COLUMNS", "label_objects", "measure_objects", "normalize_spacing"]

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

    Examples
    --------
    >>> mask = np.zeros((1, 3, 5), np.uint8)
    >>> mask[0, 1, [0, 1, 3]] = 255
    >>> label_objects(mask)[0, 1]
    array([1, 1, 0, 2, 0], dtype=int32)
    """
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
    # Extremes and "more than one non-zero value" without sorting every voxel (np.unique).
    smallest = segmentation.min() if segmentation.size else 0
    largest = segmentation.max() if segmentation.size else 0
    if smallest < 0:
        msg = f"segmentation has negative labels (smallest {smallest}); labels must be >= 0."
        raise ValueError(msg)
    if largest > np.iinfo(np.int32).max:
        msg = f"segmentation label {largest} does not fit in int32."
        raise ValueError(msg)
    if largest == 0 or not np.any((segmentation != 0) & (segmentation != largest)):
        label_image, _ = ndimage.label(segmentation != 0, structure=FACE_CONNECTIVITY)
        return label_image.astype(np.int32, copy=False)
    return segmentation.astype(np.int32)


def empty_objects() -> pd.DataFrame:
    """Zero-row table with the columns and dtypes of :func:`measure_objects`."""
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in OBJECT_COLUMNS.items()})


def measure_objects(label_image: np.ndarray, intensity_image: np.ndarray) -> pd.DataFrame:
    """Measure every object of a label image on an intensity image.

    Parameters
    ----------
    label_image : (Z, Y, X) ndarray of int
        Objects as positive labels, 0 as background (see :func:`label_objects`).
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
    label_image, intensity_image = _check_pair(label_image, intensity_image)
    flat_labels = label_image.ravel()
    voxels = np.flatnonzero(flat_labels != 0)  # a bool mask: 3x faster than on ints
    if voxels.size == 0:
        return empty_objects()
    labels = flat_labels[voxels]
    order = np.argsort(labels, kind="stable")
    voxels, labels = voxels[order], labels[order]
    starts = np.flatnonzero(np.r_[True, labels[1:] != labels[:-1]])
    area = np.diff(np.r_[starts, labels.size])
    values = intensity_image.ravel()[voxels].astype(np.float64)
    total = np.add.reduceat(values, starts)
    coords = np.unravel_index(voxels, label_image.shape)
    centroid = [np.add.reduceat(c.astype(np.float64), starts) / area for c in coords]
    table = pd.DataFrame(
        {
            "object_id": labels[starts].astype(np.int64),
            "area": area.astype(np.int64),
            "centroid_z": centroid[0],
            "centroid_y": centroid[1],
            "centroid_x": centroid[2],
            "min_intensity": np.minimum.reduceat(values, starts),
            "max_intensity": np.maximum.reduceat(values, starts),
            "mean_intensity": total / area,
            "total_intensity": total,
        }
    )
    return table
