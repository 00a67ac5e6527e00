"""Compiled loops of the spot fits (numba): Gauss-Newton on each window, one fit at a time.

:func:`rna_localization.segmentation.detection._fit_pairs` fits two Gaussians of
the spot's shape to each blended pair's window, and
:func:`~rna_localization.segmentation.detection._fit_granules` one widened
Gaussian to each granule's. Written with arrays of (fits, window voxels, parameters),
every step of every fit wrote and read its Jacobian through memory (the pair
and granule fits took 4.6 of the 16 s of the RNA workflow on a 30 x 1024 x 1024
cen stack); here each fit's normal equations are summed voxel by voxel, the
Gaussians' factors taken per axis (the models are separable), so only the
window's data is read. The arithmetic is the arrays' to rounding: the same model,
the same damping and step limits, the same number of steps, the same solver
(LAPACK's LU with partial pivoting).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

__all__ = ["fit_granule_windows", "fit_pair_windows"]


@njit(cache=True, nogil=True)
def _damped_step(normal, gradient):
    """The step of a lightly damped Gauss-Newton iteration, ``(N + 1e-3 diag N + 1e-12 I)⁻¹ g``,
    from the upper triangle of N."""
    size = len(gradient)
    for p in range(size):
        for q in range(p):
            normal[p, q] = normal[q, p]
        normal[p, p] += normal[p, p] * 1e-3 + 1e-12
    return np.linalg.solve(normal, gradient)


@njit(cache=True, nogil=True)
def fit_granule_windows(values, weight, centre, steps_z, steps_y, steps_x, params, sigma,
                        inverse_area, low, high, max_extra, n_steps):
    """Fit ``A exp(-Σ_a (x_a - c_a)² / (2 (sigma_a² + u · inverse_area_a)))`` to each window.

    Parameters
    ----------
    values : (G, V) float64 array
        Each window's data, 0 where `weight` is 0; voxel ``v`` of a window is
        ``centre + (steps_z[i], steps_y[j], steps_x[k])`` with ``v = (i·Y + j)·X + k``.
    weight : (G, V) float64 array
        1 inside the image, 0 outside.
    centre : (G, 3) int64 array
    steps_z, steps_y, steps_x : int64 arrays
        The window's offsets along each axis.
    params : (G, 5) float64 array
        Start (A, c_z, c_y, c_x, u); overwritten with the fit.
    sigma : (3,) float64 array
        The spot's sigma per axis, voxels.
    inverse_area : (3,) float64 array
        1 / spacing² per axis (u is in µm²).
    low, high : (G, 3) float64 arrays
        Each centre is kept within these.
    max_extra : float
        Largest u.
    n_steps : int
        Gauss-Newton steps.
    """
    n_z, n_y, n_x = len(steps_z), len(steps_y), len(steps_x)
    lengths = (n_z, n_y, n_x)
    factor = np.empty((3, max(n_z, n_y, n_x)))
    slope_of = np.empty((3, max(n_z, n_y, n_x)))
    widen_of = np.empty((3, max(n_z, n_y, n_x)))
    jacobian = np.empty(5)
    normal = np.empty((5, 5))
    gradient = np.empty(5)
    for g in range(values.shape[0]):
        for _ in range(n_steps):
            height, extra = params[g, 0], params[g, 4]
            for a in range(3):
                steps = steps_z if a == 0 else (steps_y if a == 1 else steps_x)
                width2 = sigma[a] ** 2 + extra * inverse_area[a]
                for i in range(lengths[a]):
                    delta = centre[g, a] + steps[i] - params[g, 1 + a]
                    ratio = delta * delta / width2
                    factor[a, i] = math.exp(-0.5 * ratio)
                    slope_of[a, i] = delta / width2
                    widen_of[a, i] = 0.5 * ratio / width2 * inverse_area[a]
            normal[:, :] = 0.0
            gradient[:] = 0.0
            v = 0
            for i in range(n_z):
                for j in range(n_y):
                    fzy = factor[0, i] * factor[1, j]
                    for k in range(n_x):
                        w = weight[g, v]
                        if w != 0.0:
                            shape_value = fzy * factor[2, k]
                            error = (height * shape_value - values[g, v]) * w
                            slope = height * shape_value * w
                            jacobian[0] = shape_value * w
                            jacobian[1] = slope * slope_of[0, i]
                            jacobian[2] = slope * slope_of[1, j]
                            jacobian[3] = slope * slope_of[2, k]
                            jacobian[4] = slope * (widen_of[0, i] + widen_of[1, j]
                                                   + widen_of[2, k])
                            # The upper triangle; the sizes are constants, so the loops unroll.
                            for p in range(5):
                                gradient[p] += jacobian[p] * error
                                for q in range(p, 5):
                                    normal[p, q] += jacobian[p] * jacobian[q]
                        v += 1
            step = _damped_step(normal, gradient)
            move = 1e-12
            for a in range(3):
                move = max(move, abs(step[1 + a] / sigma[a]))
            scale = min(1.0, 1.0 / move)
            for p in range(5):
                params[g, p] -= step[p] * scale
            params[g, 0] = max(params[g, 0], 0.0)
            for a in range(3):
                params[g, 1 + a] = min(max(params[g, 1 + a], low[g, a]), high[g, a])
            params[g, 4] = min(max(params[g, 4], 0.0), max_extra)


@njit(cache=True, nogil=True)
def fit_pair_windows(data, centre, steps_z, steps_y, steps_x, params, sigma, n_steps):
    """Fit ``a1 G(x - m1) + a2 G(x - m2)``, G the spot's Gaussian of `sigma`, to each window.

    Parameters
    ----------
    data : (P, V) float64 array
        Each window's data, NaN outside the image (no weight); voxel ``v`` as in
        :func:`fit_granule_windows`.
    centre : (P, 3) int64 array
    steps_z, steps_y, steps_x : int64 arrays
    params : (P, 8) float64 array
        Start (a1, a2, m1 (3), m2 (3)); overwritten with the fit. No step moves
        a molecule by more than a sigma.
    sigma : (3,) float64 array
        Voxels.
    n_steps : int
    """
    n_z, n_y, n_x = len(steps_z), len(steps_y), len(steps_x)
    lengths = (n_z, n_y, n_x)
    longest = max(n_z, n_y, n_x)
    factor = np.empty((2, 3, longest))
    slope_of = np.empty((2, 3, longest))
    jacobian = np.empty(8)
    normal = np.empty((8, 8))
    gradient = np.empty(8)
    for n in range(data.shape[0]):
        for _ in range(n_steps):
            a1, a2 = params[n, 0], params[n, 1]
            for m in range(2):
                for a in range(3):
                    steps = steps_z if a == 0 else (steps_y if a == 1 else steps_x)
                    for i in range(lengths[a]):
                        part = (centre[n, a] + steps[i] - params[n, 2 + 3 * m + a]) / sigma[a]
                        factor[m, a, i] = math.exp(-0.5 * part * part)
                        slope_of[m, a, i] = part / sigma[a]
            normal[:, :] = 0.0
            gradient[:] = 0.0
            v = 0
            for i in range(n_z):
                for j in range(n_y):
                    f1 = factor[0, 0, i] * factor[0, 1, j]
                    f2 = factor[1, 0, i] * factor[1, 1, j]
                    for k in range(n_x):
                        value = data[n, v]
                        if not math.isnan(value):
                            g1 = f1 * factor[0, 2, k]
                            g2 = f2 * factor[1, 2, k]
                            error = a1 * g1 + a2 * g2 - value
                            jacobian[0] = g1
                            jacobian[1] = g2
                            jacobian[2] = a1 * g1 * slope_of[0, 0, i]
                            jacobian[3] = a1 * g1 * slope_of[0, 1, j]
                            jacobian[4] = a1 * g1 * slope_of[0, 2, k]
                            jacobian[5] = a2 * g2 * slope_of[1, 0, i]
                            jacobian[6] = a2 * g2 * slope_of[1, 1, j]
                            jacobian[7] = a2 * g2 * slope_of[1, 2, k]
                            for p in range(8):
                                gradient[p] += jacobian[p] * error
                                for q in range(p, 8):
                                    normal[p, q] += jacobian[p] * jacobian[q]
                        v += 1
            step = _damped_step(normal, gradient)
            move = 1e-12
            for a in range(6):
                move = max(move, abs(step[2 + a]) / sigma[a % 3])
            scale = min(1.0, 1.0 / move)
            for p in range(8):
                params[n, p] -= step[p] * scale
