"""Each object's mask cut again at a fraction of its own peak above the light around it.

:func:`.detection.grow_objects` cuts every mask at ``mask_fraction`` of the
object's peak in the background-removed image. That image has lost, with the
background, the part of the object's own light that the broad background
filter spreads (a difference of Gaussians): an object as wide as that filter
(a centrosome of 0.9 µm, under a background filter of 0.7 × 0.4 µm) keeps a
lower peak there, and its mask shrinks; one much smaller than that filter
grows with its blur. On the simulated demo the centrosome workflow's
masks held 0.8 of the half-maximum region of a 0.9 µm centrosome's image and
1.5–1.6 times that of a 0.4 µm one.

:func:`refine_to_own_peak` measures each object against the light around it
instead: the median, over a shell a few spot sigmas out (none of it near
another object), of the raw image lightly blurred (:data:`REFINE_SMOOTHING`), is
the object's background; its mask becomes the voxels, connected to its peak and
nearer to it than to any other object, where that image reaches the
background plus ``fraction`` of the peak above it. On a noise-free blurred
ball that is the ball's half-maximum region, whatever its size.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..objects import FACE_CONNECTIVITY

__all__ = ["REFINE_GROW", "REFINE_SHELL", "REFINE_SMOOTHING", "refine_to_own_peak"]

#: How far (in spot sigmas, along each axis) a refined mask may reach beyond the mask it
#: refines: a mask the background filter shrank regains its edge. A reach of 1 let the
#: noise at a small centrosome's edge join it (up to 2.4 times its half-maximum region on
#: the simulated widefield demo, against 1.3 noise-free); 0.5 left the largest short.
REFINE_GROW = 0.75
#: The blur (in spot sigmas) of the raw stack the masks are cut again in: less lets the noise
#: at a small object's edge join it, more grows it with the blur.
REFINE_SMOOTHING = 0.3
#: The shell whose median is an object's background (spot sigmas from its mask): where a
#: blurred object's own light has fallen to a few percent of its peak.
REFINE_SHELL = (3.0, 4.0)
#: Fewest shell voxels a background is taken from; with fewer (a crowd of objects all round),
#: the shell's voxels nearer other objects count too.
_MIN_SHELL_VOXELS = 20


def refine_to_own_peak(labels: np.ndarray, image: np.ndarray, *, sigma_voxels,
                       fraction: float = 0.5, grow: float = REFINE_GROW,
                       shell: tuple[float, float] = REFINE_SHELL) -> np.ndarray:
    """Cut each object's mask at `fraction` of its own peak above the light around it.

    For each object of `labels`, within a box around it:

    * distances are in spot sigmas along each axis (``sigma_voxels``), so
      shells and reaches follow the PSF's elongation along z;
    * its background is the median of `image` over the voxels from
      ``shell[0]`` to ``shell[1]`` of its mask and at least ``shell[0]`` from
      any other object's (all the shell's voxels when fewer than 20 are);
    * its peak is the largest value of `image` on its mask;
    * its new mask is the voxels within `grow` of its mask, nearer to it than
      to any other object, where `image` is at least ``background +
      fraction · (peak - background)``, connected by faces to its peak.

    An object whose peak does not stand above its background keeps its mask.

    Parameters
    ----------
    labels : (Z, Y, X) ndarray of int
        Objects, 0 = background (e.g. :func:`.detection.grow_objects`'s).
    image : (Z, Y, X) ndarray
        The light the masks are cut in: the raw stack, blurred as the masks
        should be (the workflow's ``mask_smoothing`` of a spot sigma).
    sigma_voxels : (3,) sequence of float
        The spot sigma along (z, y, x), in voxels: the unit of `grow` and `shell`.
    fraction : float
        In (0, 1): the share of its peak above its background an object's mask reaches.
    grow : float
        How far beyond its mask an object may reach, in spot sigmas.
    shell : (float, float)
        The inner and outer distance of the background's shell, in spot sigmas.

    Returns
    -------
    (Z, Y, X) ndarray of int32
        The refined objects, labelled as in `labels`.

    Examples
    --------
    A blurred ball whose mask was cut too small regains its half-maximum region:

    >>> z, y, x = np.mgrid[:21, :41, :41]
    >>> ball = ((z - 10) ** 2 / 9 + (y - 20) ** 2 / 36 + (x - 20) ** 2 / 36 <= 1).astype(float)
    >>> light = 100 + 1000 * ndimage.gaussian_filter(ball, (1.5, 1.5, 1.5))
    >>> half = light >= 100 + 0.5 * (light.max() - 100)
    >>> small = ndimage.binary_erosion(half).astype(np.int32)
    >>> refined = refine_to_own_peak(small, light, sigma_voxels=(1.5, 1.5, 1.5), grow=2)
    >>> bool(np.array_equal(refined > 0, half))
    True
    """
    labels = np.asarray(labels)
    image = np.asarray(image)
    if labels.shape != image.shape:
        msg = f"labels of shape {labels.shape} and image of shape {image.shape} differ"
        raise ValueError(msg)
    if not 0 < fraction < 1:
        msg = f"fraction must be between 0 and 1; got {fraction}"
        raise ValueError(msg)
    inner, outer = (float(v) for v in shell)
    if not 0 < inner < outer or grow <= 0:
        msg = f"need 0 < shell[0] < shell[1] and grow > 0; got shell {shell}, grow {grow}"
        raise ValueError(msg)
    sigma = np.broadcast_to(np.asarray(sigma_voxels, dtype=np.float64), (3,))
    if not np.all(np.isfinite(sigma) & (sigma > 0)):
        msg = f"sigma_voxels must be three positive numbers of voxels; got {list(sigma)}"
        raise ValueError(msg)
    # Distances in spot sigmas: one voxel along axis a is 1 / sigma[a] of them.
    sampling = 1.0 / sigma
    # Each object's box holds its shell and every voxel within `grow` of it; a wider one,
    # looked at only where other objects are, every voxel within `inner` of the shell (is
    # another object that near?) and within `grow` of a voxel the object may take.
    margin = np.ceil(max(outer, grow) * sigma).astype(int) + 1
    wide = np.ceil(max(outer + inner, 2 * grow) * sigma).astype(int) + 1
    refined = np.zeros(labels.shape, dtype=np.int32)
    for index, where in enumerate(ndimage.find_objects(labels), start=1):
        if where is None:
            continue
        box, around = _grown(where, margin, labels.shape), _grown(where, wide, labels.shape)
        inside = tuple(slice(b.start - a.start, b.stop - a.start)
                       for a, b in zip(around, box, strict=True))  # `box` within `around`
        own = labels[box] == index
        light = image[box].astype(np.float64)
        to_own = ndimage.distance_transform_edt(~own, sampling=sampling)
        other = labels[around] != 0
        other[inside] &= ~own
        to_other = (ndimage.distance_transform_edt(~other, sampling=sampling)[inside]
                    if other.any() else np.full(own.shape, np.inf))
        ring = (to_own >= inner) & (to_own <= outer)
        clear = ring & (to_other >= inner)
        ring = clear if np.count_nonzero(clear) >= _MIN_SHELL_VOXELS else ring
        peak_at = np.flatnonzero(own.ravel())[np.argmax(light[own])]
        peak = light.ravel()[peak_at]
        if not ring.any() or not peak > (background := float(np.median(light[ring]))):
            refined[box][own] = index
            continue
        keep = ((to_own <= grow) & (to_own < to_other)
                & (light >= background + fraction * (peak - background)))
        pieces, _ = ndimage.label(keep, structure=FACE_CONNECTIVITY)
        refined[box][pieces == pieces.ravel()[peak_at]] = index
    return refined


def _grown(where: tuple, margin: np.ndarray, shape: tuple) -> tuple:
    """The slices of `where` widened by `margin` voxels along each axis, within `shape`."""
    return tuple(slice(max(s.start - m, 0), min(s.stop + m, n))
                 for s, m, n in zip(where, margin, shape, strict=True))
