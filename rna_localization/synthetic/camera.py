"""The camera: photon (Poisson) noise, read noise, gain and offset, as uint16 counts."""

from __future__ import annotations

import numpy as np

__all__ = ["apply_camera"]


def apply_camera(expected_photons, rng, *, offset: float = 100.0, gain: float = 1.0,
                 read_noise: float = 2.0) -> np.ndarray:
    """Turn expected photoelectrons into camera counts.

    Each voxel receives ``gain · (Poisson(expected) + Normal(0, read_noise)) +
    offset`` counts, rounded and clipped to the uint16 range.

    Parameters
    ----------
    expected_photons : (Z, Y, X) ndarray of float
        Noise-free expected photoelectrons per voxel (>= 0).
    rng : numpy.random.Generator
        Source of the noise.
    offset : float
        Camera offset, counts.
    gain : float
        Counts per photoelectron.
    read_noise : float
        Standard deviation of the read noise, photoelectrons.

    Returns
    -------
    (Z, Y, X) ndarray of uint16

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> image = apply_camera(np.full((2, 64, 64), 50.0), rng, gain=2.0)
    >>> round(float(image.mean()))
    200
    """
    counts = rng.poisson(np.asarray(expected_photons, dtype=np.float64)).astype(np.float32)
    counts += rng.standard_normal(counts.shape, dtype=np.float32) * np.float32(read_noise)
    counts *= np.float32(gain)
    counts += np.float32(offset)
    np.rint(counts, out=counts)
    np.clip(counts, 0, np.iinfo(np.uint16).max, out=counts)
    return counts.astype(np.uint16)
