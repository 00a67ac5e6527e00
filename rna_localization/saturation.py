"""Objects whose light a camera clipped: their brightest voxels at its ceiling.

A camera counts up to a ceiling, 2^k - 1 for its k-bit converter (255, 1023, 4095,
16383, 65535; 32767, a signed 16-bit stack's largest value), and writes that ceiling
wherever more light fell. A granule imaged at an exposure set for single molecules,
or a bright centrosome, can reach it: its plateau of voxels at the ceiling holds less
light than fell there, so it reads as fewer molecules (and a centrosome's mask, cut
at half of its own peak, grows). Such a
plateau is told apart by its value: the brightest voxel of the objects is a ceiling,
and more than one voxel holds it (an unclipped image's brightest voxel is almost
always alone, and seldom lands on 2^k - 1). A ceiling a camera's software moved
elsewhere (a stack rescaled after acquisition) is not recognized. Extraction
estimates what the ceiling took from each RNA object it counts
(:func:`rna_localization.capture.capture_corrections`, ``clipped_light``).

Pure array functions; :func:`rna_localization.steps.extract` warns with them, and
``segment`` flags the images on its QC page
(:func:`rna_localization.segmentation.quality.check_clipped`).
"""

from __future__ import annotations

import numpy as np

__all__ = ["CAMERA_BITS", "CLIPPED_ADVICE", "MIN_CLIPPED_VOXELS", "camera_ceiling", "clipped_labels",
           "clipped_objects"]

#: The bit depths whose ceilings (2^k - 1) are recognized: the converters', and 15 (a
#: signed 16-bit stack's largest value).
CAMERA_BITS = (8, 10, 12, 14, 15, 16)
#: Fewest voxels at a ceiling that make it a clipped plateau rather than one bright voxel.
MIN_CLIPPED_VOXELS = 2

#: What to do about clipped light, said wherever it is found.
CLIPPED_ADVICE = ("They read less light than fell on them. extract estimates the light above the "
                  "ceiling of the objects whose molecules it counts from the image's own single "
                  "molecules read through their aperture (clipped_light), the less closely the "
                  "more is clipped and the more crowded they are; a centrosome's lower peak "
                  "still widens its half-peak mask. Image at a shorter exposure or a lower gain, "
                  "or leave such images out")

_CEILINGS = frozenset(2 ** k - 1 for k in CAMERA_BITS)


def camera_ceiling(brightest) -> int | None:
    """The ceiling (2^k - 1, k in :data:`CAMERA_BITS`) that `brightest` is, else None.

    Examples
    --------
    >>> camera_ceiling(4095), camera_ceiling(4094.0), camera_ceiling(np.uint8(255))
    (4095, None, 255)
    """
    value = float(brightest)
    if not np.isfinite(value) or value != np.rint(value) or int(value) not in _CEILINGS:
        return None
    return int(value)


def clipped_objects(max_intensity, voxel_values) -> tuple[int | None, np.ndarray]:
    """Which objects reach the camera's ceiling, if their light was clipped at one.

    Parameters
    ----------
    max_intensity : (N,) array-like
        Each object's brightest raw voxel (the objects table's ``max_intensity``).
    voxel_values : (M,) array-like, or callable returning one
        The raw values of every object voxel (or a function giving them: called
        only when the brightest object is at a ceiling, so that an unclipped stack
        costs no gather).

    Returns
    -------
    ceiling : int or None
        The ceiling, when the brightest object voxel is one and at least
        :data:`MIN_CLIPPED_VOXELS` object voxels hold it; else None.
    clipped : (N,) ndarray of bool
        The objects whose brightest voxel is at the ceiling (none without one).

    Examples
    --------
    >>> clipped_objects([4095, 900, 4095], [4095, 4095, 12, 900, 300])
    (4095, array([ True, False,  True]))
    >>> clipped_objects([4095, 900], [4095, 900, 300])  # one voxel: not a plateau
    (None, array([False, False]))
    """
    brightest = np.asarray(max_intensity, dtype=np.float64)
    none = np.zeros(brightest.shape, dtype=bool)
    if not brightest.size:
        return None, none
    ceiling = camera_ceiling(brightest.max())
    if ceiling is None:
        return None, none
    values = voxel_values() if callable(voxel_values) else voxel_values
    if np.count_nonzero(np.asarray(values) == ceiling) < MIN_CLIPPED_VOXELS:
        return None, none
    return ceiling, brightest >= ceiling


def clipped_labels(labels: np.ndarray, image: np.ndarray) -> tuple[int | None, int]:
    """The ceiling at which a camera clipped labelled objects' light, and how many reach it.

    The rule of :func:`clipped_objects`, on a label image and its raw stack (no
    objects table needed): what ``segment`` checks as it writes each mask.

    Parameters
    ----------
    labels : (Z, Y, X) ndarray of int
        Objects as positive labels (:func:`rna_localization.objects.label_objects`).
    image : (Z, Y, X) ndarray
        The raw stack, same shape.

    Returns
    -------
    ceiling : int or None
        As :func:`clipped_objects` gives it.
    count : int
        How many objects hold a voxel at the ceiling (0 without one).

    Examples
    --------
    >>> labels = np.array([[[1, 1, 0, 2, 0, 3]]])
    >>> clipped_labels(labels, np.array([[[255, 255, 255, 90, 3, 255]]], np.uint8))
    (255, 2)
    >>> clipped_labels(labels, np.array([[[255, 40, 255, 90, 3, 60]]], np.uint8))
    (None, 0)
    """
    labels, image = np.asarray(labels), np.asarray(image)
    if labels.shape != image.shape:
        msg = f"the objects' shape {labels.shape} differs from the raw stack's {image.shape}"
        raise ValueError(msg)
    inside = labels > 0
    values = image[inside]
    if not values.size:
        return None, 0
    ceiling, _ = clipped_objects([values.max()], values)
    if ceiling is None:
        return None, 0
    return ceiling, int(np.unique(labels[inside][values == ceiling]).size)
