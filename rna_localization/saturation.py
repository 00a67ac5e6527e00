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
elsewhere (a stack rescaled after acquisition) is not recognized.

Pure array functions; :func:`rna_localization.steps.extract` warns with them.
"""

from __future__ import annotations

import numpy as np

__all__ = ["CAMERA_BITS", "MIN_CLIPPED_VOXELS", "camera_ceiling", "clipped_objects"]

#: The bit depths whose ceilings (2^k - 1) are recognized: the converters', and 15 (a
#: signed 16-bit stack's largest value).
CAMERA_BITS = (8, 10, 12, 14, 15, 16)
#: Fewest voxels at a ceiling that make it a clipped plateau rather than one bright voxel.
MIN_CLIPPED_VOXELS = 2

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
