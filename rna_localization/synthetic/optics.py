"""A widefield objective's diffraction PSF, for images beyond a Gaussian one.

The simulator (:mod:`.rendering`) sees molecules through a Gaussian PSF. A real
objective's PSF has rings, and out of focus it spreads a molecule's light into a
disc that widens with depth rather than fading; spherical aberration (a sample
deeper than the objective is corrected for) adds lobes on one side of focus.
:func:`born_wolf_psf` gives that PSF on a voxel grid, to render test images
(``benchmarks/simfish_images.py``) and to check the detection on them
(:func:`rna_localization.segmentation.detection.drop_defocus_spots`).
"""

from __future__ import annotations

import numpy as np

__all__ = ["EMISSION_UM", "IMMERSION_INDEX", "NA", "PSF_REACH_UM", "born_wolf_psf",
           "render_points"]

#: The objective of the hand-tagged real widefield images (NA 1.45, oil of index 1.518)
#: and a far-red emission (Cy5), µm.
NA, IMMERSION_INDEX, EMISSION_UM = 1.45, 1.518, 0.67
#: Extent of a rendered PSF beyond its centre (µm, axial and lateral); its light further
#: out (the haze of a defocused molecule, spread over microns) is left out.
PSF_REACH_UM = (1.5, 1.5)


def born_wolf_psf(spacing, reach_um=PSF_REACH_UM, *, na: float = NA,
                  n: float = IMMERSION_INDEX, wavelength_um: float = EMISSION_UM,
                  spherical_waves: float = 0.0, samples: int = 400) -> np.ndarray:
    """A widefield objective's intensity PSF on a voxel grid, centred, summing to 1.

    The scalar Debye integral over the pupil's angles θ up to asin(NA / n), with the
    aplanatic factor √cos θ: at distance r from the axis and z from focus,
    ``|∫ √cosθ J0(k n r sinθ) exp(i k n z cosθ + 2πi W(ρ)) sinθ dθ|²``, k = 2π/λ,
    ρ = sinθ / sin(max θ), and W(ρ) = `spherical_waves` (6ρ⁴ - 6ρ² + 1) the primary
    spherical aberration of a sample deeper than the objective is corrected for (Zernike
    Z(4,0), in waves). Unlike a Gaussian it has rings, and a defocused molecule's light
    spreads in a widening disc instead of fading.

    Parameters
    ----------
    spacing : (3,) sequence of float
        Voxel size (z, y, x), µm.
    reach_um : (2,) sequence of float
        Extent beyond the centre, axial and lateral, µm.
    na, n, wavelength_um : float
        Numerical aperture, immersion index, emission wavelength (µm).
    spherical_waves : float
        Primary spherical aberration, waves.
    samples : int
        Angles of the quadrature.

    Returns
    -------
    (2 hz + 1, 2 hy + 1, 2 hx + 1) ndarray of float
        The PSF sampled at voxel offsets, normalized to a sum of 1.

    Examples
    --------
    >>> psf = born_wolf_psf((0.15, 0.055, 0.055))
    >>> psf.shape, [int(i) for i in np.unravel_index(psf.argmax(), psf.shape)]  # in focus
    ((21, 55, 55), [10, 27, 27])
    >>> row = psf[10, 27, 27:] / psf.max()  # half its peak about 0.12 µm from the axis
    >>> int(np.flatnonzero(row < 0.5)[0])
    3
    """
    from scipy.special import j0

    spacing = np.asarray(spacing, dtype=np.float64)
    half = np.floor(np.asarray([reach_um[0], reach_um[1], reach_um[1]]) / spacing).astype(int)
    k = 2 * np.pi / wavelength_um
    top = np.arcsin(na / n)
    theta = (np.arange(samples) + 0.5) * top / samples
    rho = np.sin(theta) / np.sin(top)
    pupil = (np.sqrt(np.cos(theta)) * np.sin(theta)
             * np.exp(2j * np.pi * spherical_waves * (6 * rho ** 4 - 6 * rho ** 2 + 1)))
    z, y, x = (np.arange(-h, h + 1) * s for h, s in zip(half, spacing))
    radius = np.hypot(y[:, None], x[None, :])
    radii, where = np.unique(np.round(radius, 9), return_inverse=True)
    field = np.einsum("rt,zt,t->zr", j0(k * n * radii[:, None] * np.sin(theta)),
                      np.exp(1j * k * n * z[:, None] * np.cos(theta)), pupil)
    psf = (np.abs(field) ** 2)[:, where.reshape(radius.shape)]
    return psf / psf.sum()


def render_points(cells, amplitudes, shape, spacing, *, subpixel: int = 2,
                  spherical_waves: float = 0.0, deep_waves: float | None = None,
                  slabs: int = 6) -> np.ndarray:
    """Point sources through :func:`born_wolf_psf`, on a grid `subpixel` times finer, summed
    back to the voxels: the noise-free light of a stack.

    With `deep_waves`, the aberration grows linearly from `spherical_waves` at the
    stack's top face to `deep_waves` at its bottom (an oil objective focused deeper and
    deeper into a watery sample): the sources are rendered in `slabs` slabs of equal depth,
    each through the PSF of its middle.

    Parameters
    ----------
    cells : (N, 3) array-like of int
        Each source's voxel on the fine grid (voxel ``p`` of the stack spans fine voxels
        ``subpixel * p`` to ``subpixel * p + subpixel - 1``).
    amplitudes : (N,) array-like of float
        Each source's light (the PSF sums to 1).
    shape : (3,) sequence of int
        The stack's shape.
    spacing : (3,) sequence of float
        The stack's voxel size (z, y, x), µm.
    subpixel : int
        Fine voxels per voxel along each axis.
    spherical_waves : float
        Primary spherical aberration, waves (:func:`born_wolf_psf`); at the top face
        when `deep_waves` is given.
    deep_waves : float, optional
        The aberration at the bottom face (None: `spherical_waves` through the stack).
    slabs : int
        Slabs of depth a growing aberration is rendered in.

    Returns
    -------
    (Z, Y, X) ndarray of float
        Light per voxel (>= 0).

    Examples
    --------
    >>> light = render_points([[20, 40, 40]], [1000.0], (20, 40, 40), (0.3, 0.11, 0.11))
    >>> [int(i) for i in np.unravel_index(light.argmax(), light.shape)], round(float(light.sum()))
    ([10, 20, 20], 1000)

    Through aberration growing with depth, in two slabs: the source in the upper half is seen
    through the PSF of a quarter of the depth (0.225 waves), the deeper one through that of
    three quarters (0.475 waves), whose peak is lower:

    >>> cells, spacing = [[10, 40, 40], [30, 40, 40]], (0.3, 0.11, 0.11)
    >>> light = render_points(cells, [1000.0, 1000.0], (20, 40, 40), spacing,
    ...                       spherical_waves=0.1, deep_waves=0.6, slabs=2)
    >>> alone = [render_points([cell], [1000.0], (20, 40, 40), spacing, spherical_waves=waves)
    ...          for cell, waves in zip(cells, (0.225, 0.475))]
    >>> bool(np.allclose(light, alone[0] + alone[1])), bool(alone[0].max() > alone[1].max())
    (True, True)
    """
    from scipy.signal import oaconvolve

    if deep_waves is not None:
        cells = np.asarray(cells, dtype=np.int64).reshape(-1, 3)
        amplitudes = np.broadcast_to(np.asarray(amplitudes, dtype=np.float64), len(cells))
        edges = np.linspace(0, shape[0] * subpixel, slabs + 1)
        slab = np.clip(np.searchsorted(edges, cells[:, 0], side="right") - 1, 0, slabs - 1)
        light = np.zeros(tuple(int(n) for n in shape), np.float64)
        for k in np.unique(slab):
            depth = 0.5 * (edges[k] + edges[k + 1]) / (shape[0] * subpixel)  # 0 top, 1 bottom
            light += render_points(cells[slab == k], amplitudes[slab == k], shape, spacing,
                                   subpixel=subpixel, spherical_waves=spherical_waves
                                   + (deep_waves - spherical_waves) * depth)
        return light
    shape = tuple(int(n) for n in shape)
    fine = tuple(n * subpixel for n in shape)
    points = np.zeros(fine, np.float64)
    np.add.at(points, tuple(np.asarray(cells, dtype=np.int64).T), amplitudes)
    kernel = born_wolf_psf(np.asarray(spacing, dtype=np.float64) / subpixel,
                           spherical_waves=spherical_waves)
    light = np.maximum(oaconvolve(points, kernel, mode="same"), 0.0)
    return light.reshape(shape[0], subpixel, shape[1], subpixel, shape[2], subpixel).sum(
        axis=(1, 3, 5))
