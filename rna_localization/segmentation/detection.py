"""Spot detection with a threshold in units of noise, set per image: pure array functions.

The steps, each a function here, in the order :func:`.workflows.segment` runs them:

0. :func:`rna_localization.hot_pixels.hot_pixel_offsets`: the camera's hot
   and dead pixels, one-pixel columns through z that no light through the
   objective makes, measured on the stack and repaired before the filters;
1. :func:`remove_background`: a Gaussian at the scale of the PSF (the matched
   filter of a diffraction-limited spot) minus a broad Gaussian (the smooth
   background: autofluorescence, haze, out-of-focus light);
2. :func:`local_noise`: the filtered image's noise standard deviation,
   1.4826·MAD in blocks of a few microns (floats, so never quantized),
   interpolated smoothly: bright, noisy regions get their own noise;
3. :func:`noise_threshold`: the number of noise SDs ``k`` at which pure noise
   gives a stated number of false spots per 1,000 µm³ (from the expected
   Euler characteristic of a smooth Gaussian field, exact for white noise);
4. :func:`find_spots`: local maxima of ``filtered / noise`` above ``k``, with
   sub-voxel positions from a parabola through each axis;
5. :func:`split_blended_spots`: two molecules too close to make two maxima,
   found in what is left once every spot's own image (its shape measured on
   the image's spots) is subtracted, and fitted as two;
6. :func:`find_flank_spots`: single molecules on a granule's flank (no maximum
   of their own, and never split from a granule by step 5) or hidden beside
   another spot where step 5 left them, found in what is left once every
   granule's own image (one Gaussian of fitted width) and every other spot's
   are subtracted;
7. :func:`drop_defocus_spots`: faint spots above or below a spot many times
   as bright, which are its out-of-focus light (a widefield objective spreads
   a granule's light into a disc out of focus, rings with spherical aberration);
   then, for a PSF far from a Gaussian as the image's own spots show it,
   :func:`axial_lobe_pairs` (a molecule's two maxima along z, grown into one
   object) and :func:`drop_explained_spots` (spots that brighter spots' far
   field, measured on the typical spot, explains);
8. :func:`grow_objects`: a watershed from the spots over the voxels above
   ``floor`` noise SDs; touching basins without a real dip between them are
   merged (a granule stays one object), then each object keeps the voxels
   where the filtered image reaches ``mask_fraction`` of its peak, so a mask's
   size follows the optics, not the brightness.

Positions are voxel coordinates ``(z, y, x)``; lengths given in microns are
converted with the image's ``spacing``.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pandas as pd
from scipy import ndimage, optimize
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree
from skimage.segmentation import watershed

from .._cores import in_threads, separable_in_threads, thread_count
from .._rows import row_medians
from ..hot_pixels import repair_in_place
from ..objects import FACE_CONNECTIVITY, normalize_spacing
from ..saturation import MIN_CLIPPED_VOXELS, clipped_objects
from ._spotfits import fit_granule_windows, fit_pair_windows
from .params import microns_to_voxels

__all__ = [
    "DEFOCUS_RATIO",
    "GRANULE_BRIGHTNESS",
    "SPOT_COLUMNS",
    "axial_lobe_depths",
    "axial_lobe_pairs",
    "drop_defocus_spots",
    "drop_explained_spots",
    "face_noise_profile",
    "find_flank_spots",
    "find_spots",
    "clipped_plateaus",
    "granule_merge_reach",
    "grow_objects",
    "plateau_pairs",
    "plateau_reach",
    "split_blended_spots",
    "spot_shape",
    "less_smoothed",
    "local_noise",
    "noise_threshold",
    "remove_background",
]

#: Columns of :func:`find_spots`'s table.
SPOT_COLUMNS = {"z": "float64", "y": "float64", "x": "float64", "score": "float64",
                "zi": "int64", "yi": "int64", "xi": "int64"}

#: The Gaussian kernels stop at this many sigmas.
_TRUNCATE = 3.0
#: Tile (µm along the face) over which :func:`remove_background` measures the ridge left at
#: the volume's faces: many spot widths, so that neither a spot nor a compact object (a
#: centrosome, a granule) moves a tile's median. Tiles of 0.5 µm as well took the haze of a
#: 0.8 µm wide blob just beyond a face (28 false spots in three widefield stacks, 1), but
#: also part of the centrosomes near a face (their volume on the widefield demo -11 to -18%
#: against 0 to +9%).
_RIDGE_TILE_UM = 1.5
#: The background's curvature is measured at this many background sigmas.
_CURVATURE_SCALE = 2.0
#: The noise is measured on the filtered image minus its neighbours this many
#: times two spot sigmas away (see local_noise).
_NOISE_REACH = 3.0
# A tile with fewer voxels than this away from spots takes its noise from the
# nearest tile with enough (the MAD of 100 normal values is within ~10%).
_MIN_NOISE_VOXELS = 100
#: grow_objects floods the crowded components starting in one tile of this many
#: voxels (y and x) with one watershed call.
_WATERSHED_TILE = 64
#: Objects reach at most this many spot sigmas from their spots (workflows).
OBJECT_REACH = 4.0
#: A spot at least this many times as bright (filtered peak) as the image's
#: median spot is taken for a granule by :func:`grow_objects`.
GRANULE_BRIGHTNESS = 3.0
#: :func:`grow_objects`: two spots take the granule's lower saddle ratio only when they
#: lie within this many lateral spot sigmas of each other (:func:`granule_merge_reach`):
#: a granule's lumps lie closer, a single molecule beside it farther. On eight simulated
#: cen images, molecules per granule 27.7 / 19.9% mean absolute error (nc13 / nc14) without
#: it, 23.6 / 18.2% from 2.6 to 3.5 sigmas laterally; at 4 most of the gain is gone, at 1.7
#: granules split.
GRANULE_MERGE_SIGMAS = 3.0


def granule_merge_reach(sigma, spacing) -> np.ndarray:
    """Voxels along (z, y, x) within which two spots take the granule's saddle ratio.

    :data:`GRANULE_MERGE_SIGMAS` lateral spot sigmas, and the same distance in µm
    along z (never more than as many axial sigmas). A granule's lumps lie within
    its own size of each other along every axis, while the PSF is about three
    times longer along z than across. A reach of as many axial sigmas (1 µm on a
    widefield grid; the workflows' until 2026-12-05) joined two granules stacked
    0.5 µm apart wherever their light dipped between them: in the widefield demo's
    cen images (seed 1), 9 of 269 granules were scored against such a pair's object.

    Parameters
    ----------
    sigma : (3,) sequence of float
        The spot's sigma, voxels along (z, y, x) (:func:`spot_shape`).
    spacing : (3,) sequence of float
        Voxel size (z, y, x), µm.

    Returns
    -------
    (3,) ndarray of float
        The reach, voxels along (z, y, x) (an ellipsoid).

    Examples
    --------
    >>> granule_merge_reach([1.1, 1.05, 1.05], (0.3, 0.11, 0.11)).round(2).tolist()
    [1.16, 3.15, 3.15]
    """
    sigma = np.asarray(sigma, dtype=np.float64)
    spacing = np.asarray(spacing, dtype=np.float64)
    lateral = GRANULE_MERGE_SIGMAS * sigma[1:] * spacing[1:]  # µm
    along_z = min(float(lateral.mean()) / spacing[0], GRANULE_MERGE_SIGMAS * sigma[0])
    return np.r_[along_z, GRANULE_MERGE_SIGMAS * sigma[1:]]


def remove_background(image: np.ndarray, *, spacing, spot_sigma_um,
                      background_ratio: float = 2.0, hot_pixels: np.ndarray | None = None,
                      threads: int | None = None) -> np.ndarray:
    """Smooth at the PSF's scale and subtract the smooth background.

    Each z-plane's median is subtracted first (the background's depth
    profile: surfaces, out-of-focus planes). Then ``G(s) * image - G(r·s) *
    image`` with ``s`` the spot sigma and ``r`` =
    `background_ratio` (a difference of Gaussians): the first term is the
    matched filter of a Gaussian spot (best signal-to-noise on white noise),
    the second removes what is broader than a spot (autofluorescence, haze,
    out-of-focus cells). ``r = 2`` keeps 75% of a spot's filtered peak and
    removes smooth backgrounds nearly as well as a Laplacian of Gaussian.

    Parameters
    ----------
    image : (Z, Y, X) ndarray
        Raw stack, any numeric dtype.
    spacing : float or sequence of 3 floats
        Microns per voxel (z, y, x).
    spot_sigma_um : float or (axial, lateral)
        Gaussian sigma of a single molecule's image, µm.
    background_ratio : float
        Sigma of the background's Gaussian, in spot sigmas (> 1).
    hot_pixels : (Y, X) ndarray, optional
        The camera's hot and dead pixels, repaired first
        (:func:`rna_localization.hot_pixels.hot_pixel_offsets`,
        :func:`rna_localization.hot_pixels.repair_in_place`).
    threads : int, optional
        Threads for the filters (the same result on any number); None: every
        core this process may use.

    Returns
    -------
    (Z, Y, X) ndarray of float32
        Background near 0; spots positive.

    Examples
    --------
    >>> image = np.full((9, 33, 33), 500.0)
    >>> image[4, 16, 16] += 1000
    >>> filtered = remove_background(image, spacing=(0.2, 0.065, 0.065),
    ...                              spot_sigma_um=(0.3, 0.1))
    >>> bool(np.argmax(filtered) == np.ravel_multi_index((4, 16, 16), image.shape))
    True
    >>> bool(abs(filtered[0, 0, 0]) < 1)
    True
    """
    threads = thread_count(threads)
    image = _levelled(image, hot_pixels)
    spot = microns_to_voxels(spot_sigma_um, spacing)
    broad = spot * float(background_ratio)
    filtered = _blur(image, spot, threads)
    background = _blur(image, broad, threads)
    del image
    filtered -= background
    # For a smooth background B the difference above leaves
    # -1/2 sum_a (broad_a^2 - spot_a^2) d^2B/da^2, which looks like a spot
    # wherever B curves (the flanks of out-of-focus cells, the embryo surface).
    # The curvature of a still broader blur, where spots have vanished, cancels it.
    # That blur is smooth over several voxels, so second differences of it are
    # its second derivatives (to well under 1%) at a fraction of the cost.
    # (Blurring the background blur again: a Gaussian of sqrt(c^2 - b^2) after one
    # of b is one of c, with a shorter kernel.)
    coarse = _blur(background, broad * math.sqrt(_CURVATURE_SCALE**2 - 1), threads)
    del background
    weights = (0.5 * (broad**2 - spot**2)).astype(np.float32)
    _add_curvature(filtered, coarse, weights, threads)
    del coarse
    _remove_face_ridges(filtered, spacing=spacing, spot=spot)
    return filtered


def _levelled(image: np.ndarray, hot_pixels: np.ndarray | None) -> np.ndarray:
    """A float32 copy of `image`, its hot and dead pixels repaired, less each plane's median."""
    image = np.array(image, dtype=np.float32)  # a copy, levelled in place
    if hot_pixels is not None and np.any(hot_pixels):
        repair_in_place(image, hot_pixels)
    # The background changes fastest along z (the embryo or cell surface,
    # out-of-focus planes): each plane's median level goes first, exactly.
    image -= _plane_levels(image)[:, None, None]
    return image


def _blur(image: np.ndarray, sigma, threads: int) -> np.ndarray:
    """``ndimage.gaussian_filter(image, sigma, mode="reflect", truncate=_TRUNCATE)`` of a
    float32 `image`, the same to the bit, each axis' pass shared among `threads` threads."""
    sigma = np.broadcast_to(np.asarray(sigma, dtype=np.float64), (image.ndim,))
    passes = [(axis, functools.partial(_blur_pass, sigma=float(sigma[axis]), axis=axis))
              for axis in range(image.ndim) if sigma[axis] > 1e-15]  # as scipy skips them
    return separable_in_threads(image, passes, threads=threads)


def _blur_pass(source: np.ndarray, target: np.ndarray, *, sigma: float, axis: int) -> None:
    ndimage.gaussian_filter1d(source, sigma, axis, output=target, mode="reflect",
                              truncate=_TRUNCATE)


def _box_max(image: np.ndarray, reach, threads: int) -> np.ndarray:
    """``ndimage.maximum_filter(image, size=2 * reach + 1, mode="constant")``, the same,
    each axis' pass shared among `threads` threads."""
    passes = [(axis, functools.partial(_max_pass, size=2 * int(r) + 1, axis=axis))
              for axis, r in enumerate(reach) if r > 0]
    return separable_in_threads(image, passes, threads=threads)


def _near_spots(shape, voxels: tuple, reach, threads: int) -> np.ndarray:
    """True within a box of `reach` voxels (per axis) around each of `voxels` ((z, y, x)
    index arrays): one byte per voxel."""
    seeds = np.zeros(shape, dtype=np.uint8)
    seeds[voxels] = 1
    return _box_max(seeds, np.asarray(reach, dtype=int), threads).view(bool)  # 0 or 1


def _max_pass(source: np.ndarray, target: np.ndarray, *, size: int, axis: int) -> None:
    ndimage.maximum_filter1d(source, size, axis, output=target, mode="constant")


def _add_curvature(filtered: np.ndarray, coarse: np.ndarray, weights: np.ndarray,
                   threads: int) -> None:
    """Add, in place, ``weights[a]`` times the second difference of `coarse` along each
    axis ``a`` of at least 3 voxels (its end values repeated beyond the faces).

    Plane by plane (a few planes' worth of scratch memory, not whole volumes), the planes
    shared among `threads` threads; each voxel's sums in the same order as the
    whole-volume expression ``((c[i+1] - 2 c[i]) + c[i-1]) * w``, axis after axis.
    """
    n_z = filtered.shape[0]
    use = [n >= 3 for n in filtered.shape]

    def planes(chunk: range) -> None:
        for k in chunk:
            centre = coarse[k]
            twice = 2 * centre
            if use[0]:
                second = coarse[min(k + 1, n_z - 1)] - twice
                second += coarse[max(k - 1, 0)]
                second *= weights[0]
                filtered[k] += second
            for axis in (0, 1):  # y and x of the plane
                if not use[axis + 1]:
                    continue
                second = np.empty_like(centre)
                c, out = np.moveaxis(centre, axis, 0), np.moveaxis(second, axis, 0)  # views
                out[:-1], out[-1] = c[1:], c[-1]  # c[i + 1]
                second -= twice
                out[1:] += c[:-1]  # c[i - 1]
                out[0] += c[0]
                second *= weights[axis + 1]
                filtered[k] += second

    step = max(1, -(-n_z // (4 * max(threads, 1))))
    in_threads(planes, [range(k, min(k + step, n_z)) for k in range(0, n_z, step)], threads)


def _remove_face_ridges(filtered: np.ndarray, *, spacing, spot: np.ndarray) -> None:
    """Take away, in place, the ridge the mirrored filters leave where the background slopes
    across a face of the volume.

    The filters mirror the image at its faces, so a background falling away
    from a face (the haze of a cell or surface just outside the stack) is
    folded into a peak there, which the difference of Gaussians keeps: on the
    simulated widefield stacks, 20-160 false spots per stack on the first or
    last plane. That ridge is smooth along the face, a spot is not: on the
    voxels within reach of the spot filter from each face, each slice parallel
    to the face loses the median of its tiles of :data:`_RIDGE_TILE_UM` where
    that median is positive, interpolated between tile centres. Haze narrower
    than a tile (a blob under a micron wide just beyond the face) can still
    leave a ridge.
    """
    spacing = normalize_spacing(spacing)
    for axis, n in enumerate(filtered.shape):
        depth = int(math.ceil(_TRUNCATE * spot[axis])) + 1
        if n < 3:
            continue
        faces = [slice(0, min(depth, n))] + ([slice(max(n - depth, depth), n)] if n > depth else [])
        other = [a for a in range(3) if a != axis]
        for face in faces:
            slab = np.moveaxis(filtered, axis, 0)[face]  # a view: (k, a, b), slices along the face
            slab -= _ridge(slab, [spacing[a] for a in other], _RIDGE_TILE_UM)


def _ridge(slab: np.ndarray, spacing, tile_um: float) -> np.ndarray:
    """The positive part of the median of each slice's tiles of `tile_um` of `slab` (k, a, b),
    interpolated linearly between tile centres (constant beyond the outer ones)."""
    shape = slab.shape[1:]
    sizes = [int(min(max(round(tile_um / step), 3), m)) for step, m in zip(spacing, shape)]
    counts = [max(m // t, 1) for m, t in zip(shape, sizes)]
    sizes = [m // c for m, c in zip(shape, counts)]
    # Every second voxel of a tile along each axis: a quarter of the work, the same
    # median to a few percent of the noise.
    step = [2 if size >= 6 else 1 for size in sizes]
    tiles = slab[:, : counts[0] * sizes[0], : counts[1] * sizes[1]].reshape(
        len(slab), counts[0], sizes[0], counts[1], sizes[1])[:, :, :: step[0], :, :: step[1]]
    level = np.median(tiles.transpose(0, 1, 3, 2, 4).reshape(len(slab), counts[0], counts[1], -1),
                      axis=-1)
    # Only a rise is taken away: a slice left below zero by the background's own
    # residue (the curvature's) hides no false spot, and lifting it would make some.
    ridge = np.maximum(level, 0.0).astype(np.float32)
    for along, (m, c, t) in enumerate(zip(shape, counts, sizes), start=1):
        low, high, frac = _linear_weights(m, np.arange(c) * t + (t - 1) / 2.0)
        frac = frac.reshape([-1 if a == along else 1 for a in range(3)])
        ridge = ridge.take(low, axis=along) * (1 - frac) + ridge.take(high, axis=along) * frac
    return ridge


def _plane_levels(image: np.ndarray) -> np.ndarray:
    """Median of each z-plane (every second voxel in y and x), float32."""
    return np.median(image[:, ::2, ::2].reshape(image.shape[0], -1), axis=1).astype(np.float32)


def blurred(image: np.ndarray, *, spacing, spot_sigma_um, smoothing: float,
            hot_pixels: np.ndarray | None = None, threads: int | None = None) -> np.ndarray:
    """The raw stack less each plane's median, blurred by `smoothing` spot sigmas.

    What :func:`.refine.refine_to_own_peak` cuts masks in: no background filter
    takes part of an object's own light.

    Parameters
    ----------
    image : (Z, Y, X) ndarray
        The raw stack.
    spacing : float or sequence of 3 floats
        Microns per voxel (z, y, x).
    spot_sigma_um : float or (axial, lateral)
        The spot sigma, µm.
    smoothing : float
        The blur, in spot sigmas (0: none).
    hot_pixels : (Y, X) ndarray, optional
        The camera's hot and dead pixels, repaired first (:func:`remove_background`).
    threads : int, optional
        Threads for the filters (the same result on any number).

    Returns
    -------
    (Z, Y, X) ndarray of float32

    Examples
    --------
    >>> image = np.full((9, 33, 33), 500.0)
    >>> image[4, 16, 16] += 1000
    >>> light = blurred(image, spacing=(0.2, 0.065, 0.065), spot_sigma_um=(0.3, 0.1),
    ...                 smoothing=0.5)
    >>> float(light[0, 0, 0]), bool(light.argmax() == 4 * 33 * 33 + 16 * 33 + 16)
    (0.0, True)
    """
    levelled = _levelled(image, hot_pixels)
    if smoothing <= 0:
        return levelled
    spot = microns_to_voxels(spot_sigma_um, spacing)
    return _blur(levelled, spot * float(smoothing), thread_count(threads))


def less_smoothed(filtered: np.ndarray, image: np.ndarray, *, spacing, spot_sigma_um,
                  smoothing: float, hot_pixels: np.ndarray | None = None,
                  threads: int | None = None) -> np.ndarray:
    """:func:`remove_background`'s output with the spot filter narrowed to `smoothing` of it.

    ``filtered + G(smoothing·s) * image - G(s) * image`` (each plane's median
    removed first, as there): the same background removed, the spot's own
    outline blurred less. Two small Gaussians, so it costs a fraction of
    :func:`remove_background`.

    Parameters
    ----------
    filtered : (Z, Y, X) ndarray of float32
        :func:`remove_background` of `image` with `spot_sigma_um`.
    image : (Z, Y, X) ndarray
        The raw stack.
    spacing : float or sequence of 3 floats
        Microns per voxel (z, y, x).
    spot_sigma_um : float or (axial, lateral)
        The spot sigma `filtered` was made with.
    smoothing : float
        In (0, 1]: the narrower filter, in spot sigmas (1 returns `filtered`).
    hot_pixels : (Y, X) ndarray, optional
        The hot and dead pixels `filtered` was made without (:func:`remove_background`).
    threads : int, optional
        Threads for the filters (the same result on any number); None: every
        core this process may use.

    Returns
    -------
    (Z, Y, X) ndarray of float32

    Examples
    --------
    >>> image = np.full((9, 33, 33), 500.0)
    >>> image[4, 16, 16] += 1000
    >>> kw = dict(spacing=(0.2, 0.065, 0.065), spot_sigma_um=(0.3, 0.1))
    >>> filtered = remove_background(image, **kw)
    >>> sharp = less_smoothed(filtered, image, smoothing=0.5, **kw)
    >>> bool(sharp[4, 16, 16] > filtered[4, 16, 16])
    True
    """
    if smoothing >= 1:
        return filtered
    threads = thread_count(threads)
    image = _levelled(image, hot_pixels)
    spot = microns_to_voxels(spot_sigma_um, spacing)
    narrow = _blur(image, spot * float(smoothing), threads)
    narrow -= _blur(image, spot, threads)
    narrow += filtered
    return narrow


def _linear_weights(n: int, centres: np.ndarray):
    """Linear interpolation from ascending block centres to 0..n-1 (constant beyond the
    outer ones): for each index, its two blocks ``low``, ``high`` and the weight ``frac``
    of ``high``."""
    position = np.interp(np.arange(n), centres, np.arange(centres.size))
    low = np.minimum(np.floor(position).astype(int), max(centres.size - 2, 0))
    high = np.minimum(low + 1, centres.size - 1)
    return low, high, (position - low).astype(np.float32) * (high > low)


def _interpolation_matrix(n: int, centres: np.ndarray) -> np.ndarray:
    """(n, len(centres)) weights of linear interpolation from block centres to 0..n-1."""
    low, high, frac = _linear_weights(n, centres)
    weights = np.zeros((n, centres.size), dtype=np.float32)
    np.add.at(weights, (np.arange(n), low), 1 - frac)
    np.add.at(weights, (np.arange(n), high), frac)
    return weights


def _block_mad(values: np.ndarray, counts, exclude: np.ndarray | None = None, *,
               borrow: bool = True) -> np.ndarray:
    """1.4826·MAD of each tile of a regular grid of ``counts`` tiles per axis.

    Tiles are ``n // count`` voxels along each axis (the few voxels left over
    at the far ends are not sampled). Voxels where `exclude` is True are left
    out. A tile left with fewer than :data:`_MIN_NOISE_VOXELS` (crowded) takes
    the value of the nearest tile that is not (`borrow`; when every tile is
    crowded, all take the MAD of all the voxels left), or is measured on all
    its voxels (not `borrow`). Vectorized: one sort of all tiles at once.
    """
    sizes = [max(n // c, 1) for n, c in zip(values.shape, counts)]
    counts = [min(c, n) for c, n in zip(counts, values.shape)]

    def tiles(array):
        cropped = array[tuple(slice(0, c * s) for c, s in zip(counts, sizes))]
        shaped = cropped.reshape(counts[0], sizes[0], counts[1], sizes[1], counts[2], sizes[2])
        return shaped.transpose(0, 2, 4, 1, 3, 5).reshape(int(np.prod(counts)), -1)

    data = tiles(values).astype(np.float32)
    crowded = np.zeros(len(data), dtype=bool)
    if exclude is not None:
        valid = ~tiles(exclude)
        crowded = valid.sum(axis=1) < min(_MIN_NOISE_VOXELS, valid.shape[1])
        if borrow and crowded.all() and valid.sum() >= _MIN_NOISE_VOXELS:
            # Spots crowd every tile: one noise for all, from the voxels clear of them.
            pooled = data[valid]
            spread = 1.4826 * np.median(np.abs(pooled - np.median(pooled)))
            return np.full(counts, spread, dtype=np.float32)
        if crowded.all() or not borrow:
            valid[:] = True
            crowded[:] = False
        else:
            valid[crowded] = True
        data = np.where(valid, data, np.float32(np.nan))
    centre = row_medians(data)
    spread = (1.4826 * row_medians(np.abs(data - centre[:, None]))).reshape(counts)
    if crowded.any():
        # A tile too crowded with spots to measure takes the nearest measured tile's noise.
        nearest = ndimage.distance_transform_edt(crowded.reshape(counts), return_distances=False,
                                                 return_indices=True)
        spread = spread[tuple(nearest)]
    return spread.astype(np.float32)


def _high_pass(filtered: np.ndarray, reach: np.ndarray, sample=None) -> np.ndarray:
    """The image minus the mean of its 6 neighbours `reach` voxels away along each axis.

    Cancels anything that varies linearly over a few spot sizes (background
    left over), keeps most of the noise; a few array shifts, no convolution.
    With `sample` (one slice per axis), only at the voxels it selects (the
    neighbours still `reach` voxels away in the whole image): the same values
    as ``_high_pass(filtered, reach)[sample]``, for the work of the sample.
    """
    sample = (slice(None),) * filtered.ndim if sample is None else tuple(sample)
    kept = [np.arange(n)[s] for n, s in zip(filtered.shape, sample)]
    out = np.array(filtered[sample], dtype=np.float32)
    weight = np.float32(1.0 / 6.0)
    for axis, step in enumerate(reach):
        n = filtered.shape[axis]
        step = int(min(step, max(n - 1, 0)))
        if step == 0:
            out -= np.float32(2.0) * weight * filtered[sample]
            continue
        # The sample along the other axes; every plane along this one, to take from.
        along = filtered[sample[:axis] + (slice(None),) + sample[axis + 1:]]
        for shift in (-step, step):
            # Mirrored at the edges, like the filters.
            neighbour = np.abs(kept[axis] + shift)
            neighbour = np.where(neighbour > n - 1, 2 * (n - 1) - neighbour, neighbour)
            out -= weight * along.take(neighbour, axis=axis)
    return out


def local_noise(filtered: np.ndarray, *, spacing, spot_sigma_um, block_um=(1.0, 3.0),
                background_ratio: float = 2.0, borrow_crowded: bool = True,
                threads: int | None = None) -> np.ndarray:
    """Noise standard deviation of a filtered image, varying smoothly over the image.

    What varies over more than a few spot sizes is background left over, not
    noise, so the noise is measured on the filtered image minus the mean of
    its neighbours six spot sigmas away along each axis, then scaled back by
    the ratio the same steps give on white noise (computed, not assumed), plane
    by plane: near the faces, and on every plane of a thin stack, the steps fold
    back differently on each plane. The filters' own stronger noise at the faces
    is multiplied in (:func:`face_noise_profile`). Voxels near anything brighter than 4.5 times a first estimate (spots, not
    noise) are left out of the second, final estimate; a block they crowd out
    (fewer than 100 voxels left) takes the nearest clear block's noise
    (`borrow_crowded`), or is measured on all its voxels. The image is cut into
    blocks of about `block_um` (axial, lateral); each block's noise is
    ``1.4826 · MAD`` (robust to the few voxels on spots; on floats, so not
    quantized like integer images), interpolated linearly between block centres.

    Parameters
    ----------
    filtered : (Z, Y, X) ndarray of float
        :func:`remove_background`'s output.
    spacing : float or sequence of 3 floats
        Microns per voxel (z, y, x).
    spot_sigma_um : float or (axial, lateral)
        The spot sigma `filtered` was made with.
    block_um : float or (axial, lateral)
        Block size, µm: thin in z, where the background changes fastest
        (the embryo surface, out-of-focus planes).
    background_ratio : float
        The ratio `filtered` was made with.
    borrow_crowded : bool
        True: where spots crowd a block, its noise is its nearest clear
        block's (dense RNA: the molecules' light is not noise). False: it is
        measured on all the block's voxels, so broad structure there counts as
        noise (centrosomes: out-of-focus cells are then not found as objects).
    threads : int, optional
        Threads for the filters (the same result on any number); None: every
        core this process may use.

    Returns
    -------
    (Z, Y, X) ndarray of float32
        Positive everywhere (a constant image gets a tiny positive value, so
        that nothing in it passes a threshold).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> image = rng.normal(0, 1, (24, 96, 96)) * np.linspace(1, 3, 96)
    >>> filtered = remove_background(image, spacing=0.1, spot_sigma_um=0.15)
    >>> sd = local_noise(filtered, spacing=0.1, spot_sigma_um=0.15, block_um=2.0)
    >>> ratio = sd[12, 48, 90] / sd[12, 48, 5]
    >>> bool(2.0 < ratio < 3.5)
    True
    """
    filtered = np.asarray(filtered, dtype=np.float32)
    spacing = normalize_spacing(spacing)
    wide = 2 * microns_to_voxels(spot_sigma_um, spacing)
    reach = np.maximum(np.rint(_NOISE_REACH * wide).astype(int), 1)
    sigma = tuple(float(v) for v in microns_to_voxels(spot_sigma_um, 1.0))
    key = (tuple(float(v) for v in spacing), sigma, float(background_ratio))
    # How much of the noise the high pass keeps, plane by plane (white noise through the
    # same steps): near the faces the mirrors of the filters and of the high pass fold
    # back differently on each plane, on a thin stack on every plane (one ratio for all
    # put the noise of 5 widefield planes 18% low on the last ones).
    kept = _kept_profile(filtered.shape[0], *key, tuple(int(r) for r in reach))
    profiles = [face_noise_profile(n, axis, *key) for axis, n in enumerate(filtered.shape)]
    # Every second voxel in y and x is sampled: a quarter of the work, the same
    # medians to ~1%.
    sample = (slice(None), slice(None, None, 2), slice(None, None, 2))
    stride = np.array([1, 2, 2])
    sampled_shape = filtered[sample].shape
    counts = [max(1, int(round(n * step / size)))
              for n, step, size in zip(filtered.shape, spacing, microns_to_voxels(block_um, 1.0))]
    counts = [min(c, n) for c, n in zip(counts, sampled_shape)]
    sizes = [n // c for n, c in zip(sampled_shape, counts)]
    # Tile centres in the full image's voxel coordinates.
    weights = [_interpolation_matrix(n, (np.arange(c) * s + (s - 1) / 2.0) * k)
               for n, c, s, k in zip(filtered.shape, counts, sizes, stride)]

    def interpolate(grid):
        # A flat block (e.g. a constant image) borrows the others' noise.
        positive = grid[grid > 0]
        grid = np.maximum(grid, np.float32(positive.min() if positive.size else 1e-6))
        # The contractions einsum makes of "zi,yj,xk,ijk->zyx" (ijk,zi->jkz; jkz,yj->kzy;
        # kzy,xk->zyx), the last and large one a plane at a time, each rounded to float32
        # once: never a float64 volume (a full frame's is 2 GB, its float32 copy 1 GB more).
        planes = np.tensordot(np.tensordot(grid, weights[0], axes=((0,), (1,))), weights[1],
                              axes=((0,), (1,)))
        noise = np.empty(filtered.shape, dtype=np.float32)
        for z in range(noise.shape[0]):
            noise[z] = np.tensordot(planes[:, z], weights[2], axes=((0,), (1,)))
        # At the volume's faces the mirrored filters average fewer independent voxels:
        # white noise comes out up to a third stronger on the outermost plane, row and
        # column (face_noise_profile).
        for axis, profile in enumerate(profiles):
            noise *= profile.reshape([-1 if a == axis else 1 for a in range(3)])
        return noise

    # Each plane brought to the noise far from the faces: then the blocks, several planes
    # thick, measure one level.
    high = _high_pass(filtered, reach, sample) / (kept * profiles[0])[:, None, None]
    noise = interpolate(_block_mad(high, counts))
    # Where molecules are dense they widen the distribution; measure again
    # without the voxels near anything above 4.5 noise SDs (spots, not noise).
    half = np.maximum(reach // stride, 1)
    bright = (filtered[sample] > 4.5 * noise[sample]).view(np.uint8)
    threads = thread_count(threads)
    near_spots = _box_max(bright, half, threads) > 0
    return interpolate(_block_mad(high, counts, near_spots, borrow=borrow_crowded))


def _kept_profile(n: int, spacing: tuple, spot_sigma_um: tuple, background_ratio: float,
                  reach: tuple) -> np.ndarray:
    """For a stack of `n` planes, each plane's share of white noise's SD that
    :func:`_high_pass` (steps `reach`) keeps of :func:`remove_background`'s output.

    Measured on white noise (seeded) of the same number of planes, or, for a thick
    stack, of as many as both faces reach through both steps (the planes beyond
    take the ratio far from the faces). The two faces' planes are averaged in
    pairs (the steps are symmetric), and the planes the high pass's fold-back
    does not reach share one ratio, the mean over them: one plane's sample is
    a percent off.
    """
    filters = _filter_reach(spacing, spot_sigma_um, background_ratio)
    edge = int(filters[0] + reach[0] + 1)  # planes a face can reach through both steps
    measured = _kept_ratios(min(n, 2 * edge + 1), spacing, spot_sigma_um, background_ratio,
                            reach, tuple(int(f) for f in filters))
    if n > measured.size:
        middle = measured.size // 2
        measured = np.concatenate([measured[:middle], np.full(n - 2 * middle, measured[middle]),
                                   measured[-middle:]])
    measured = measured.astype(np.float32)
    measured.setflags(write=False)
    return measured


@functools.lru_cache(maxsize=64)
def _kept_ratios(length: int, spacing: tuple, spot_sigma_um: tuple, background_ratio: float,
                 reach: tuple, filters: tuple) -> np.ndarray:
    """:func:`_kept_profile` measured on `length` planes of white noise (float64, read-only)."""
    margin = [int(f + 2 * r) for f, r in zip(filters[1:], reach[1:])]
    lateral = [m * 2 + 128 for m in margin]
    white = np.random.default_rng(0).standard_normal((length, *lateral), dtype=np.float32)
    white = remove_background(white, spacing=spacing, spot_sigma_um=spot_sigma_um,
                              background_ratio=background_ratio)
    inner = (slice(None), *(slice(m, -m) for m in margin))
    ratio = (_high_pass(white, np.asarray(reach))[inner].std(axis=(1, 2), dtype=np.float64)
             / white[inner].std(axis=(1, 2), dtype=np.float64))
    ratio = 0.5 * (ratio + ratio[::-1])
    # The high pass folds back on the planes within one step (and the filters' reach) of
    # a face; the others all keep the same share.
    fold = int(reach[0]) + 2
    if length > 2 * fold:
        ratio[fold:length - fold] = ratio[fold:length - fold].mean()
    ratio.setflags(write=False)  # cached: shared by every caller
    return ratio


def _filter_reach(spacing: tuple, spot_sigma_um: tuple, background_ratio: float) -> np.ndarray:
    """How far (voxels, per axis) :func:`remove_background` reaches: the spot and background
    blurs, the still broader blur of the background's curvature and its second difference."""
    sigma = np.asarray(spot_sigma_um, dtype=np.float64) / np.asarray(spacing, dtype=np.float64)
    broad = sigma * float(background_ratio)
    return (np.ceil(_TRUNCATE * broad) + np.ceil(_TRUNCATE * broad * _CURVATURE_SCALE) + 2
            ).astype(int)


@functools.lru_cache(maxsize=16)
def _filter_kernel(spacing: tuple, spot_sigma_um: tuple, background_ratio: float) -> np.ndarray:
    """:func:`remove_background`'s response to a unit impulse, far from any face (float64)."""
    reach = _filter_reach(spacing, spot_sigma_um, background_ratio)
    impulse = np.zeros(tuple(2 * reach + 1), dtype=np.float32)
    impulse[tuple(reach)] = 1.0
    return remove_background(impulse, spacing=spacing, spot_sigma_um=spot_sigma_um,
                             background_ratio=background_ratio).astype(np.float64)


def face_noise_profile(n: int, axis: int, spacing, spot_sigma_um,
                       background_ratio: float = 2.0) -> np.ndarray:
    """White noise's SD after :func:`remove_background` at each index along `axis`, over its SD
    far from the faces.

    The filters mirror the image at its faces (``d c b a | a b c d``), so near
    them they average fewer independent voxels and the noise comes out
    stronger: on the outermost plane, row or column 1.2-1.35 times on the
    presets' grids. A spot there is only as significant as that noise allows.
    Exact, not sampled: the filters are linear and mirroring commutes with
    them, so the output at index ``i`` is the impulse response ``K`` summed
    over every mirror image ``p`` of each input voxel ``j``, and its variance
    is ``sum_j sum_(p, q) G[i - p, i - q]`` with ``G`` the Gram matrix of
    ``K``'s slices along `axis` (the other axes taken far from their faces).

    Parameters
    ----------
    n : int
        The image's length along `axis`, voxels.
    axis : int
        0, 1 or 2 (z, y, x).
    spacing : float or sequence of 3 floats
        Microns per voxel (z, y, x).
    spot_sigma_um : float or (axial, lateral)
        The detection filter's sigma, µm (as :func:`remove_background`'s).
    background_ratio : float
        As :func:`remove_background`'s.

    Returns
    -------
    (n,) ndarray of float32
        1 wherever the filters do not reach a face; read-only (shared by every caller).

    Examples
    --------
    >>> profile = face_noise_profile(30, 0, (0.3, 0.11, 0.11), (0.22, 0.08))
    >>> bool(1.15 < profile[0] < 1.4), bool(abs(profile[15] - 1) < 1e-6)
    (True, True)
    """
    return _face_noise_profile(
        int(n), int(axis), tuple(float(v) for v in normalize_spacing(spacing)),
        tuple(float(v) for v in microns_to_voxels(spot_sigma_um, 1.0)), float(background_ratio))


@functools.lru_cache(maxsize=64)
def _face_noise_profile(n: int, axis: int, spacing: tuple, spot_sigma_um: tuple,
                        background_ratio: float) -> np.ndarray:
    kernel = _filter_kernel(spacing, spot_sigma_um, background_ratio)
    slices = np.moveaxis(kernel, axis, 0).reshape(kernel.shape[axis], -1)
    gram = slices @ slices.T
    reach = kernel.shape[axis] // 2
    reference = float(np.trace(gram))  # the sum of the squared kernel
    if n > 2 * reach + 1:
        # Long axis: each face alone, on its first `reach` indices.
        rows, sources = np.arange(reach), np.arange(2 * reach + 1)
        images = [sources, -1 - sources]
    else:
        rows = sources = np.arange(n)
        turns = range(-(reach // n) - 2, reach // n + 3)
        images = [p + 2 * n * k for k in turns for p in (sources, -1 - sources)]
    offsets = [rows[:, None] - p[None, :] for p in images]
    variance = np.zeros(rows.size)
    for a in offsets:
        for b in offsets:
            inside = (np.abs(a) <= reach) & (np.abs(b) <= reach)
            pairs = gram[np.clip(a, -reach, reach) + reach, np.clip(b, -reach, reach) + reach]
            variance += np.where(inside, pairs, 0.0).sum(axis=1)
    profile = np.sqrt(variance / reference)
    if n > 2 * reach + 1:
        profile = np.concatenate([profile, np.ones(n - 2 * reach), profile[::-1]])
    profile = profile.astype(np.float32)
    profile.setflags(write=False)  # cached: shared by every caller
    return profile


#: White noise is counted above this many SDs to calibrate :func:`noise_threshold`:
#: high enough that the spots' shape of the formula holds, low enough that a
#: few million voxels give hundreds of maxima.
_CALIBRATION_LEVEL = 3.5
#: Voxels of the white-noise volume :func:`noise_threshold` counts maxima in.
_CALIBRATION_VOXELS = 3_000_000


def _euler_shape(k):
    """(k² - 1) exp(-k²/2): how the density of a smooth field's maxima above k falls with k."""
    return (k * k - 1.0) * math.exp(-k * k / 2.0)


@functools.lru_cache(maxsize=64)
def _maxima_density(spot_sigma_um: tuple, spacing: tuple, background_ratio: float,
                    min_distance_um: tuple) -> float:
    """Spots per µm³ that white noise gives above :data:`_CALIBRATION_LEVEL` SDs on this grid.

    White noise through :func:`remove_background`, divided by its own SD,
    then :func:`find_spots` exactly as the workflows run it; counted away
    from the volume's faces (the filters' reach). Deterministic (seeded).
    """
    sigma = microns_to_voxels(spot_sigma_um, spacing) * float(background_ratio)
    margin = np.ceil(_TRUNCATE * sigma).astype(int) + 1
    shape = np.maximum(2 * margin + 8, 12)
    # Grow the lateral axes until the volume holds the voxels asked for.
    lateral = int(math.ceil(math.sqrt(_CALIBRATION_VOXELS / max(shape[0], 32))))
    shape = np.array([max(shape[0], 32), max(shape[1], lateral), max(shape[2], lateral)])
    white = np.random.default_rng(0).standard_normal(tuple(int(n) for n in shape),
                                                     dtype=np.float32)
    field = remove_background(white, spacing=spacing, spot_sigma_um=spot_sigma_um,
                              background_ratio=background_ratio)
    del white
    inner = tuple(slice(int(m), int(n - m)) for m, n in zip(margin, shape))
    field = field[inner]
    field /= np.float32(field.std())
    # A crop: its faces' outer neighbours exist but are unseen, so maxima there are not counted.
    spots = find_spots(field, _CALIBRATION_LEVEL, spacing=spacing, min_distance_um=min_distance_um,
                       faces=False)
    volume = float(np.prod((np.array(field.shape) - 2) * np.asarray(spacing)))  # faces dropped
    return max(len(spots), 1) / volume


def noise_threshold(spot_sigma_um, *, false_positives_per_1000um3: float = 1.0, spacing=None,
                    background_ratio: float = 2.0, min_distance_um=None) -> float:
    """Noise SDs above which pure noise gives a stated rate of false spots.

    Filtered white noise is a smooth Gaussian field whose local maxima above
    a high level ``k`` (in its standard deviations) number about its expected
    Euler characteristic per µm³,

    ``rho(k) = C (k² - 1) exp(-k²/2)``,

    This returns the ``k`` where ``rho(k) · 1000`` equals the rate asked for.
    Without `spacing`, ``C = sqrt(det Λ) / (2π)²`` of the continuous field a
    Gaussian of sigmas ``s`` gives (``Λ_a = 1 / (2 s_a²)``): about 4.7 SDs
    for (0.3, 0.1) µm at 1 per 1,000 µm³. With `spacing`, ``C`` is measured
    on the voxel grid the images have: white noise put through
    :func:`remove_background` and :func:`find_spots` as the workflows run
    them, its spots above 3.5 SDs counted. On a grid about as coarse as the
    filter, voxels miss many of the continuous field's peaks (a widefield
    camera's 0.11 µm pixels under a 0.08 µm filter see a quarter of them), so
    the formula alone would set the threshold too high.

    Parameters
    ----------
    spot_sigma_um : float or (axial, lateral)
        Gaussian sigma of the detection filter, µm.
    false_positives_per_1000um3 : float
        Expected false spots in 1,000 µm³ of pure noise.
    spacing : float or sequence of 3 floats, optional
        Microns per voxel (z, y, x) of the images the threshold is for.
    background_ratio : float
        The :func:`remove_background` ratio (used with `spacing`).
    min_distance_um : float or (axial, lateral), optional
        :func:`find_spots`'s box half-width (used with `spacing`); by
        default `spot_sigma_um`, as the workflows use.

    Returns
    -------
    float

    Examples
    --------
    >>> round(noise_threshold((0.3, 0.1)), 2)
    4.7
    >>> widefield = noise_threshold((0.22, 0.08), false_positives_per_1000um3=1.0,
    ...                             spacing=(0.3, 0.11, 0.11))
    >>> bool(4.3 < widefield < 4.8)
    True
    """
    sigma = microns_to_voxels(spot_sigma_um, 1.0)  # one sigma per axis, µm
    rate = float(false_positives_per_1000um3) / 1000.0
    if not (math.isfinite(rate) and rate > 0):
        msg = f"false_positives_per_1000um3 must be a positive number; got {false_positives_per_1000um3!r}."
        raise ValueError(msg)
    if spacing is None:
        scale = math.sqrt(float(np.prod(1.0 / (2.0 * sigma**2)))) / (2 * math.pi) ** 2
    else:
        spacing = tuple(float(v) for v in normalize_spacing(spacing))
        distance = spot_sigma_um if min_distance_um is None else min_distance_um
        density = _maxima_density(tuple(float(v) for v in sigma), spacing, float(background_ratio),
                                  tuple(float(v) for v in microns_to_voxels(distance, 1.0)))
        scale = density / _euler_shape(_CALIBRATION_LEVEL)

    def excess(k: float) -> float:
        return math.log(scale * (k * k - 1)) - k * k / 2 - math.log(rate)

    # rho decreases for k > sqrt(3); below that the rate asked for is not a threshold.
    low = math.sqrt(3.0)
    if excess(low) <= 0:
        return low
    return float(optimize.brentq(excess, low, 40.0))


def find_spots(score: np.ndarray, threshold: float, *, spacing, min_distance_um,
               faces: bool = True) -> pd.DataFrame:
    """Local maxima of a score image above a threshold, with sub-voxel positions.

    A voxel is a spot when its score exceeds `threshold` and is the largest
    within a box of half-width `min_distance_um` (at least one voxel per
    axis), the box cut at the stack's faces. The sub-voxel offset along each
    axis is the vertex of the parabola through the voxel and its two
    neighbours (within half a voxel); on the stack's first or last plane, row
    or column there is one neighbour, and the offset along that axis is 0.

    A spot on a face is a molecule centred on the outermost voxels or just
    beyond them: the filters mirror the image there, so its peak is kept, and
    :func:`local_noise` counts the stronger noise they leave at the faces
    (:func:`face_noise_profile`), so such spots are held to the same rate of
    false positives as the others.

    Parameters
    ----------
    score : (Z, Y, X) ndarray of float
        E.g. filtered image / local noise.
    threshold : float
    spacing : float or sequence of 3 floats
        Microns per voxel (z, y, x).
    min_distance_um : float or (axial, lateral)
        Half-width of the box, µm.
    faces : bool
        False: maxima on the outer faces (on axes longer than 2 voxels) are not
        spots, for a `score` cut from a larger one (its faces' neighbours unseen).

    Returns
    -------
    DataFrame
        One row per spot, brightest first: ``z``, ``y``, ``x`` (sub-voxel
        position), ``score`` (at the voxel), ``zi``, ``yi``, ``xi`` (the
        voxel). Typed zero rows when there is none.

    Examples
    --------
    >>> score = np.zeros((7, 15, 15))
    >>> score[3, 7, 7], score[3, 7, 8] = 10.0, 5.0
    >>> spots = find_spots(score, 4.0, spacing=0.1, min_distance_um=0.1)
    >>> len(spots), round(float(spots["x"][0]), 2)
    (1, 7.17)
    """
    score = np.asarray(score, dtype=np.float32)
    radius = np.maximum(np.rint(microns_to_voxels(min_distance_um, spacing)).astype(int), 1)
    above = score > threshold
    if not above.any():
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in SPOT_COLUMNS.items()})
    # Only voxels above the threshold can be spots: compare each with its box
    # (ties go to the voxel first in raster order, so a plateau gives one spot).
    index = np.argwhere(above)
    del above
    values32 = score[tuple(index.T)]
    is_max = np.ones(len(index), dtype=bool)
    upper = np.array(score.shape) - 1
    # The six face neighbours first (the box holds them: its radius is at least 1): few
    # voxels pass them, and only those are compared with the rest of the box.
    box = [np.array(o) - radius for o in np.ndindex(*(2 * radius + 1))]
    face_offsets = [o for o in box if np.abs(o).sum() == 1]
    offsets = face_offsets + [o for o in box if np.abs(o).sum() > 1]
    for k, offset in enumerate(offsets):
        if k == len(face_offsets):
            index, values32, is_max = index[is_max], values32[is_max], is_max[is_max]
        clipped = np.clip(index + offset, 0, upper)
        neighbour = score[tuple(clipped.T)]
        # At a face the clipped neighbour is another one (or the voxel itself): the tie
        # rule follows where it really lies, before (strictly greater) or after.
        actual = clipped - index
        first = np.where(actual[:, 0] != 0, actual[:, 0],
                         np.where(actual[:, 1] != 0, actual[:, 1], actual[:, 2]))
        is_max &= np.where(first < 0, values32 > neighbour,
                           (first == 0) | (values32 >= neighbour))
    index = index[is_max]
    if not faces:
        for axis, n in enumerate(score.shape):
            if n > 2:
                index = index[(index[:, axis] > 0) & (index[:, axis] < n - 1)]
    values = score[tuple(index.T)].astype(np.float64)
    position = index.astype(np.float64)
    for axis in range(3):
        lower, upper = index.copy(), index.copy()
        lower[:, axis] = np.maximum(index[:, axis] - 1, 0)
        upper[:, axis] = np.minimum(index[:, axis] + 1, score.shape[axis] - 1)
        a, b = score[tuple(lower.T)].astype(np.float64), score[tuple(upper.T)].astype(np.float64)
        curvature = a - 2 * values + b
        # On a face one neighbour is the voxel itself: no vertex to find.
        inner = (index[:, axis] > 0) & (index[:, axis] < score.shape[axis] - 1)
        with np.errstate(divide="ignore", invalid="ignore"):
            offset = np.where(inner & (curvature < 0), 0.5 * (a - b) / curvature, 0.0)
        position[:, axis] += np.clip(offset, -0.5, 0.5)
    order = np.argsort(-values, kind="stable")
    table = pd.DataFrame({
        "z": position[order, 0], "y": position[order, 1], "x": position[order, 2],
        "score": values[order],
        "zi": index[order, 0], "yi": index[order, 1], "xi": index[order, 2],
    })
    return table.astype(SPOT_COLUMNS)


#: Spots whose filtered peak is within this factor of the median spot's (either way)
#: give the single-spot shape :func:`spot_shape` measures.
_SHAPE_SPOTS = 2.0
#: :func:`spot_shape` needs at least this many such spots.
_MIN_SHAPE_SPOTS = 10


def _typical(values: np.ndarray) -> np.ndarray:
    """True for the spots within a factor :data:`_SHAPE_SPOTS` of the median spot (singles)."""
    middle = float(np.median(values)) if len(values) else 0.0
    if not middle > 0:
        return np.zeros(len(values), dtype=bool)
    return (values >= middle / _SHAPE_SPOTS) & (values <= middle * _SHAPE_SPOTS)
#: Spots are drawn out to this many of their sigmas by :func:`_draw_spots`.
_MODEL_REACH = 3.0
#: Bytes of float64 planes the spot models are summed in at a time (bounds memory on full frames).
_MODEL_SLAB_BYTES = 1 << 22


def spot_shape(filtered: np.ndarray, spots: pd.DataFrame) -> np.ndarray | None:
    """Gaussian sigma, in voxels along (z, y, x), of a single spot in the filtered image.

    Measured on the image itself, not assumed: for the spots whose peak is
    within a factor of 2 of the median spot's (single molecules, not granules),
    the median ratio ``r`` of the two neighbours' mean to the peak along each
    axis; a Gaussian of sigma ``s`` sampled on the voxel grid gives
    ``r = exp(-1 / (2 s²))``. So it holds whatever the microscope's PSF and
    the detection filter are.

    Parameters
    ----------
    filtered : (Z, Y, X) ndarray of float
        :func:`remove_background`'s output.
    spots : DataFrame
        :func:`find_spots`'s table of that image.

    Returns
    -------
    (3,) ndarray of float, or None
        None when fewer than 10 spots qualify, or on an axis shorter than 3
        voxels.

    Examples
    --------
    >>> z, y, x = np.mgrid[:15, :31, :31]
    >>> filtered = np.zeros((15, 31, 31))
    >>> spots = []
    >>> for cy in (5, 15, 25):
    ...     for cx in (5, 15, 25):
    ...         filtered += np.exp(-((z - 7) ** 2 / (2 * 1.5 ** 2)
    ...                              + ((y - cy) ** 2 + (x - cx) ** 2) / (2 * 1.2 ** 2)))
    ...         spots.append((7, cy, cx))
    >>> table = find_spots(filtered, 0.5, spacing=1.0, min_distance_um=1.0)
    >>> [round(float(s), 2) for s in spot_shape(filtered, table)]  # 9 spots: too few
    Traceback (most recent call last):
    TypeError: 'NoneType' object is not iterable
    >>> table = pd.concat([table] * 2, ignore_index=True)
    >>> [round(float(s), 2) for s in spot_shape(filtered, table)]
    [1.5, 1.2, 1.2]
    """
    if len(spots) == 0 or min(filtered.shape) < 3:
        return None
    index = spots[["zi", "yi", "xi"]].to_numpy()
    peak = filtered[tuple(index.T)].astype(np.float64)
    typical = _typical(peak)
    index, peak = index[typical], peak[typical]
    if len(index) < _MIN_SHAPE_SPOTS:
        return None
    sigma = np.empty(3)
    for axis in range(3):
        inside = (index[:, axis] > 0) & (index[:, axis] < filtered.shape[axis] - 1)
        below, above = index[inside].copy(), index[inside].copy()
        below[:, axis] -= 1
        above[:, axis] += 1
        ratio = (filtered[tuple(below.T)] + filtered[tuple(above.T)]) / (2 * peak[inside])
        if inside.sum() < _MIN_SHAPE_SPOTS:
            return None
        middle_ratio = float(np.median(ratio))
        if not 0 < middle_ratio < 1:
            return None
        sigma[axis] = math.sqrt(-1.0 / (2.0 * math.log(middle_ratio)))
    return sigma


def _draw_spots(shape, position: np.ndarray, amplitude: np.ndarray,
                sigma: np.ndarray, reach_sigmas: float = _MODEL_REACH) -> np.ndarray:
    """Sum of Gaussians of `sigma` (voxels) at sub-voxel `position` rows, a float32 volume.

    Each Gaussian is the outer product of three 1-D ones, drawn out to
    `reach_sigmas` sigmas around the voxel nearest its centre (a centre
    outside the volume is drawn around the nearest voxel inside it; its
    factors still come from `position`). The planes are summed in float64 a
    slab of at most :data:`_MODEL_SLAB_BYTES` at a time, in one reused buffer
    (:func:`._gaussians.add_gaussians`), each voxel adding the spots in raster
    order of their voxels and rounded to float32 once: the same volume
    whatever the slabs. `sigma` is one (3,) shape for all, or one (N, 3) row
    per spot (each cut at `reach_sigmas` of the widest).
    """
    from ._gaussians import add_gaussians  # compiled on first use (numba)

    sigma = np.asarray(sigma, dtype=np.float64)
    per_spot = sigma.ndim == 2
    reach = np.ceil(reach_sigmas * (sigma.max(axis=0) if per_spot else sigma)).astype(np.int64)
    if len(position) == 0 or 0 in shape:
        return np.zeros(shape, dtype=np.float32)
    model = np.empty(shape, dtype=np.float32)  # every plane written below
    # Fresh, writable, C-ordered copies: the compiled loop is compiled (and its cache read)
    # for one set of types only (read-only or Fortran-ordered arrays are others to numba).
    position = np.array(position, dtype=np.float64, order="C")
    width = np.array(np.broadcast_to(sigma, (len(position), 3)), order="C")
    centre = np.clip(np.rint(position), 0, np.array(shape) - 1).astype(np.int64)
    order = np.lexsort((centre[:, 2], centre[:, 1], centre[:, 0]))  # raster order
    plane = centre[order, 0]  # sorted
    planes = int(min(shape[0], max(1, _MODEL_SLAB_BYTES // (8 * shape[1] * shape[2]))))
    buffer = np.empty((planes, shape[1], shape[2]))
    amplitude = np.array(amplitude, dtype=np.float64)
    for first in range(0, shape[0], planes):
        last = min(first + planes, shape[0])
        # The spots whose box reaches the slab: their voxel's plane within the reach of it.
        low = np.searchsorted(plane, first - reach[0], side="left")
        high = np.searchsorted(plane, last - 1 + reach[0], side="right")
        slab = buffer[: last - first]
        slab.fill(0)
        add_gaussians(slab, first, centre, position, amplitude, width, reach, order[low:high])
        model[first:last] = slab
    return model


#: :func:`_residual_profile` averages the residuals around at most this many spots.
_PROFILE_SPOTS = 2000


def _residual_profile(left: np.ndarray, index: np.ndarray, amplitude: np.ndarray,
                      sigma: np.ndarray):
    """What the Gaussian model leaves around a typical spot, as a fraction of its amplitude.

    The median, over the spots within a factor of 2 of the median amplitude
    (single molecules, whole windows inside the image), of ``left`` at each
    voxel offset from the spot's peak voxel, divided by the spot's amplitude:
    where the microscope's real spot differs from a Gaussian (side lobes,
    an axial asymmetry), every lone molecule leaves the same bump, which is
    not a second molecule. Noise and the odd neighbour average out.

    Returns
    -------
    reach : (3,) ndarray of int
        Half-widths of the window, voxels.
    profile : (2 reach + 1) ndarray of float
        Zero when too few spots qualify.
    """
    reach = np.ceil(_MODEL_REACH * sigma).astype(int)
    window = tuple(int(v) for v in 2 * reach + 1)
    typical = _typical(amplitude)
    typical &= np.all((index >= reach) & (index < np.array(left.shape) - reach), axis=1)
    rows = np.flatnonzero(typical)
    if rows.size < _MIN_SHAPE_SPOTS:
        return reach, np.zeros(window)
    rows = rows[np.linspace(0, rows.size - 1, min(rows.size, _PROFILE_SPOTS)).astype(int)]
    steps = [np.arange(-r, r + 1) for r in reach]
    offsets = np.stack(np.meshgrid(*steps, indexing="ij"), axis=-1).reshape(-1, 3)
    profile, _, _ = _spot_medians(left, index[rows], amplitude[rows], offsets)
    return reach, profile.reshape(window)


#: :func:`_spot_medians` reads this many values (offsets x spots) at a time: 16 MB a copy.
_MEDIAN_VALUES = 1 << 21


def _spot_medians(image: np.ndarray, index: np.ndarray, amplitude: np.ndarray,
                  offsets: np.ndarray, taken: np.ndarray | None = None):
    """At each of `offsets` (voxels) from the peak voxels `index` of one or more spots: the
    median of ``image`` there over the spot's `amplitude`, counting the spots for which the
    offset lies in the stack and off the `taken` voxels; how many counted; and the counted
    values' interquartile range (their order statistics at a quarter and three quarters of
    the count). Where none counts the median is inf and the range NaN."""
    middle = np.full(len(offsets), np.inf)
    counted = np.zeros(len(offsets), dtype=np.int64)
    spread = np.full(len(offsets), np.nan)
    if not len(index):
        return middle, counted, spread
    shape = np.array(image.shape)
    strides = np.array([shape[1] * shape[2], shape[2], 1])
    flat_image, flat_taken = image.reshape(-1), None if taken is None else taken.reshape(-1)
    base = index @ strides
    low, high = -index, shape - 1 - index  # each spot's offsets that stay in the stack
    # Offsets x spots at a time, each offset's values along a row.
    chunk = max(1, _MEDIAN_VALUES // len(index))
    for start in range(0, len(offsets), chunk):
        step = offsets[start:start + chunk]
        outside = np.zeros((len(step), len(index)), dtype=bool)
        for axis in range(3):
            at_axis = step[:, axis, None]
            outside |= (at_axis < low[:, axis]) | (at_axis > high[:, axis])
        at = (step @ strides)[:, None] + base
        at[outside] = 0  # read anywhere: not counted
        values = flat_image[at] / amplitude
        if flat_taken is not None:
            outside |= flat_taken[at]
        count = len(index) - np.count_nonzero(outside, axis=1)
        if outside.any():
            # The uncounted last (inf), each row sorted.
            values[outside] = np.inf
            values.sort(axis=1)
        else:
            # Every spot counts: the four order statistics alone, put in place.
            n = len(index)
            values.partition(sorted({(n - 1) // 2, n // 2, n // 4, (3 * n) // 4}), axis=1)
        rows = np.arange(len(step))
        part = slice(start, start + len(step))
        middle[part] = 0.5 * (values[rows, np.maximum(count - 1, 0) // 2]
                              + values[rows, count // 2])
        with np.errstate(invalid="ignore"):  # inf - inf where too few values count
            spread[part] = values[rows, (3 * count) // 4] - values[rows, count // 4]
        counted[part] = count
    return middle, counted, spread


def _beyond_lone_residual(left: np.ndarray, voxel: np.ndarray, nearest: np.ndarray,
                          index: np.ndarray, amplitude: np.ndarray,
                          sigma: np.ndarray) -> np.ndarray:
    """The residual `left` at each of `voxel`'s rows, less what a lone molecule leaves at
    that offset from its `nearest` spot (:func:`_residual_profile`, scaled to the spot's
    amplitude; nothing beyond the profile's window, nothing where it is negative)."""
    reach, profile = _residual_profile(left, index, amplitude, sigma)
    offset = voxel - index[nearest]
    inside = np.all(np.abs(offset) <= reach, axis=1)
    expected = np.zeros(len(voxel))
    expected[inside] = profile[tuple((offset[inside] + reach).T)]
    return (left[tuple(voxel.T)].astype(np.float64)
            - amplitude[nearest] * np.maximum(expected, 0.0))


def _spot_amplitudes(filtered: np.ndarray, spots: pd.DataFrame, sigma: np.ndarray):
    """Each spot's voxel, sub-voxel position and Gaussian amplitude (its peak voxel's value
    scaled up by the Gaussian of `sigma` at the sub-voxel offset)."""
    index = spots[["zi", "yi", "xi"]].to_numpy()
    position = spots[["z", "y", "x"]].to_numpy(dtype=np.float64)
    offset = (position - index) / sigma
    amplitude = (filtered[tuple(index.T)].astype(np.float64)
                 * np.exp(0.5 * np.einsum("sa,sa->s", offset, offset)))
    return index, position, amplitude


#: :func:`split_blended_spots` splits no spot this many times as bright as the median
#: spot, nor any spot near one (two blended molecules peak at 1-1.5 times a single's;
#: a granule of a few molecules higher).
_SPLIT_BRIGHTNESS = 2.0
#: Gauss-Newton steps of :func:`_fit_pairs`.
_FIT_STEPS = 12


#: :func:`_fit_pairs` fits the voxels within this many spot sigmas of a pair's middle.
_FIT_REACH = 2.5
#: Pairs x window voxels fitted at a time (~40 MB per array of the batch).
_FIT_BATCH_VALUES = 1 << 19


def _fit_pairs(data_at, start_1, start_2, amplitude, sigma):
    """Least-squares fit of two Gaussians of `sigma` to windows of data, many pairs at once.

    ``data_at(rows, voxels)`` gives the data of pairs `rows` at (P, V, 3)
    voxel positions (each pair's window: :data:`_FIT_REACH` sigmas around
    its starting middle), NaN outside the image. Gauss-Newton steps (lightly
    damped, no molecule moving more than a sigma per step), in batches of
    pairs that bound the memory. Returns the fitted (a1, a2, m1, m2);
    positions in voxels.
    """
    reach = np.ceil(_FIT_REACH * sigma).astype(int)
    batch = max(1, _FIT_BATCH_VALUES // int(np.prod(2 * reach + 1)))
    parts = [_fit_pair_batch(lambda voxels, rows=rows: data_at(rows, voxels), start_1[rows],
                             start_2[rows], amplitude[rows], sigma)
             for rows in (np.arange(i, min(i + batch, len(start_1)))
                          for i in range(0, len(start_1), batch))]
    if not parts:
        return np.zeros(0), np.zeros(0), np.zeros((0, 3)), np.zeros((0, 3))
    return tuple(np.concatenate(values) for values in zip(*parts))


def _fit_pair_batch(data_at, start_1, start_2, amplitude, sigma):
    """:func:`_fit_pairs` on one batch; ``data_at(voxels)`` as there, for these pairs.

    Each pair starts at 0.6 of `amplitude` for both molecules; the Gauss-Newton steps are
    :func:`._spotfits.fit_pair_windows`' (compiled, one window at a time).
    """
    reach = np.ceil(_FIT_REACH * sigma).astype(int)
    steps = [np.arange(-r, r + 1, dtype=np.int64) for r in reach]
    offsets = np.stack(np.meshgrid(*steps, indexing="ij"), axis=-1).reshape(-1, 3)
    centre = np.rint(0.5 * (start_1 + start_2)).astype(np.int64)
    data = np.ascontiguousarray(data_at(centre[:, None, :] + offsets[None, :, :]),
                                dtype=np.float64)                  # (P, V), NaN outside
    params = np.concatenate([amplitude[:, None] * 0.6, amplitude[:, None] * 0.6,
                             start_1, start_2], axis=1).astype(np.float64)   # (P, 8)
    fit_pair_windows(data, centre, *steps, params, np.asarray(sigma, dtype=np.float64),
                     _FIT_STEPS)
    return params[:, 0], params[:, 1], params[:, 2:5], params[:, 5:8]


def split_blended_spots(filtered: np.ndarray, noise: np.ndarray, spots: pd.DataFrame,
                        threshold: float, *, spacing, min_distance_um,
                        min_fraction: float) -> pd.DataFrame:
    """Split the spots that are two molecules too close to make two maxima.

    Two molecules closer than about two PSF widths blur into one maximum.
    Every spot's own image (a Gaussian of the shape :func:`spot_shape`
    measures on this image, at the spot's sub-voxel position, scaled to its
    peak) is subtracted; a second molecule beside a spot leaves a bump in the
    residual where a lone molecule leaves almost nothing. A residual maximum
    flags its nearest spot when it exceeds `threshold` noise SDs, reaches
    `min_fraction` of that spot's amplitude beyond what a typical spot leaves
    at that offset (the median residual around the image's spots: a real
    microscope's spot is no Gaussian, and its side lobes or axial asymmetry
    are left by every lone molecule alike), lies
    between one and three spot sigmas from it, and neither it nor any spot
    within four sigmas is twice the median spot's amplitude or more (a
    granule's lumpy image is not two molecules). Two Gaussians of that shape are then
    fitted to the flagged spot's light (least squares, all spots at once);
    the spot becomes two when both fitted molecules exceed `threshold` noise
    SDs and lie one to four sigmas apart.

    Parameters
    ----------
    filtered : (Z, Y, X) ndarray of float
        :func:`remove_background`'s output.
    noise : (Z, Y, X) ndarray of float
        :func:`local_noise` of `filtered`.
    spots : DataFrame
        :func:`find_spots`'s table of ``filtered / noise``.
    threshold : float
        The noise SDs the spots had to exceed.
    spacing : float or sequence of 3 floats
        Microns per voxel (z, y, x).
    min_distance_um : float or (axial, lateral)
        :func:`find_spots`'s box half-width.
    min_fraction : float
        Fraction of a spot's amplitude its residual must reach; 0 splits none.

    Returns
    -------
    DataFrame
        `spots` with each split spot moved to its first molecule and a row
        appended for the second, and a boolean column ``blended`` marking both
        (:func:`grow_objects` keeps them apart). Unchanged (all False) when
        there are too few spots to measure their shape.

    Examples
    --------
    Two molecules 1.9 sigmas apart along x make one maximum; it is split in two:

    >>> z, y, x = np.mgrid[:15, :41, :61]
    >>> def spot(cz, cy, cx):
    ...     return np.exp(-((z - cz) ** 2 + (y - cy) ** 2 + (x - cx) ** 2) / (2 * 1.3 ** 2))
    >>> filtered = sum(spot(7, cy, cx) for cy in (6, 13, 20, 27, 34) for cx in (6, 13, 20))
    >>> filtered = filtered + spot(7, 20, 40) + spot(7, 20, 42.5)
    >>> noise = np.full(filtered.shape, 0.02)
    >>> spots = find_spots(filtered / noise, 10, spacing=1.0, min_distance_um=1.0)
    >>> len(spots)
    16
    >>> split = split_blended_spots(filtered, noise, spots, 10, spacing=1.0,
    ...                             min_distance_um=1.0, min_fraction=0.25)
    >>> len(split), int(split["blended"].sum())
    (17, 2)
    >>> sorted(round(float(v), 1) for v in split.loc[split["blended"], "x"])
    [40.0, 42.5]
    """
    spots = spots.reset_index(drop=True).assign(blended=False)
    if min_fraction <= 0 or len(spots) == 0:
        return spots
    sigma = spot_shape(filtered, spots)
    if sigma is None:
        return spots
    index, position, amplitude = _spot_amplitudes(filtered, spots, sigma)
    left = _draw_spots(filtered.shape, position, amplitude, sigma)
    np.subtract(filtered, left, out=left)  # the residual, in the model's memory
    found = find_spots(left / noise, threshold, spacing=spacing, min_distance_um=min_distance_um)
    if len(found) == 0:
        return spots
    at = found[["z", "y", "x"]].to_numpy(dtype=np.float64)
    distance, nearest = cKDTree(position / sigma).query(at / sigma)
    bright = amplitude >= _SPLIT_BRIGHTNESS * float(np.median(amplitude))
    # (A bright spot is within four sigmas of itself.)
    near_bright = np.zeros(len(found), dtype=bool)
    if bright.any():
        near_bright = cKDTree(position[bright] / sigma).query(at / sigma)[0] <= 4.0
    voxel = found[["zi", "yi", "xi"]].to_numpy()
    # Less what every lone molecule leaves there (the real spot is no Gaussian).
    level = _beyond_lone_residual(left, voxel, nearest, index, amplitude, sigma)
    flagged = ((distance >= 1.0) & (distance <= 3.0) & ~near_bright
               & (level >= min_fraction * amplitude[nearest]))
    if not flagged.any():
        return spots
    # One bump per spot, its strongest (the rows are sorted by score).
    parent, first = np.unique(nearest[flagged], return_index=True)
    bump = at[np.flatnonzero(flagged)[first]]
    start = position[parent]
    shape = np.array(filtered.shape)

    def data_at(rows, voxels):
        inside = np.all((voxels >= 0) & (voxels < shape), axis=2)
        clipped = np.clip(voxels, 0, shape - 1)
        values = left[tuple(np.moveaxis(clipped, 2, 0))].astype(np.float64)
        delta = (voxels - start[rows, None, :]) / sigma
        values += (amplitude[parent[rows], None]
                   * np.exp(-0.5 * np.einsum("pva,pva->pv", delta, delta)))
        return np.where(inside, values, np.nan)

    a1, a2, m1, m2 = _fit_pairs(data_at, start - 0.4 * (bump - start),
                                start + 0.6 * (bump - start), amplitude[parent], sigma)
    apart = np.sqrt((((m1 - m2) / sigma) ** 2).sum(axis=1))
    middle = np.rint(0.5 * (start + bump))
    reach = np.ceil(_FIT_REACH * sigma)
    within = np.all((np.abs(m1 - middle) <= reach) & (np.abs(m2 - middle) <= reach), axis=1)
    within &= np.all((m1 >= 0) & (m1 <= shape - 1) & (m2 >= 0) & (m2 <= shape - 1), axis=1)
    with np.errstate(invalid="ignore"):
        local = noise[tuple(np.clip(np.rint(start).astype(int), 0, shape - 1).T)]
        good = (within & np.isfinite(apart) & (apart >= 1.0) & (apart <= 4.0)
                & (np.minimum(a1, a2) >= threshold * local))
    if not good.any():
        return spots
    parent, a1, a2, m1, m2, local = (v[good] for v in (parent, a1, a2, m1, m2, local))
    voxel_1, voxel_2 = np.rint(m1).astype(np.int64), np.rint(m2).astype(np.int64)
    distinct = np.any(voxel_1 != voxel_2, axis=1)
    parent, a1, a2, m1, m2, local, voxel_1, voxel_2 = (
        v[distinct] for v in (parent, a1, a2, m1, m2, local, voxel_1, voxel_2))
    spots.loc[parent, ["z", "y", "x"]] = m1
    spots.loc[parent, ["zi", "yi", "xi"]] = voxel_1
    spots.loc[parent, "blended"] = True
    extra = pd.DataFrame({"z": m2[:, 0], "y": m2[:, 1], "x": m2[:, 2], "score": a2 / local,
                          "zi": voxel_2[:, 0], "yi": voxel_2[:, 1], "xi": voxel_2[:, 2],
                          "blended": True})
    return pd.concat([spots, extra], ignore_index=True).astype({**SPOT_COLUMNS, "blended": bool})


#: :func:`find_flank_spots`: the spots within this many spot sigmas of a bright spot
#: (:data:`_SPLIT_BRIGHTNESS` times the median) belong to its granule, and bright spots
#: within twice this of each other to one granule.
_GRANULE_REACH = 2.5
#: Each granule's Gaussian is fitted on the voxels within this many spot sigmas of its start.
_GRANULE_FIT_REACH = 4.5
#: Largest extra width (µm, added in quadrature to the spot's) of a granule's Gaussian.
_GRANULE_MAX_WIDTH_UM = 0.6
#: A granule's centre moves at most this many voxels from its bright spots' centre.
_GRANULE_MAX_SHIFT = 2.0
#: Gauss-Newton steps of :func:`_fit_granules`.
_GRANULE_FIT_STEPS = 20
#: Granule models are drawn out to this many of their fitted widths.
_GRANULE_DRAW_REACH = 3.5
#: Up to this many widths from a granule (its flank) a residual peak must reach
#: :data:`_FLANK_LEVEL` of the median spot's amplitude; farther, :data:`_HIDDEN_LEVEL`.
_FLANK_FAR = 4.5
_FLANK_LEVEL = 0.5
#: A molecule hidden beside a spot away from every granule (one the blended-pair split did
#: not take: a second bump, or a dim molecule beside a bright one) needs only this fraction,
#: below the threshold for a spot of typical brightness: the threshold in noise SDs decides.
#: Measured on the demo's three seeds, both microscopes, against searching granules' flanks
#: only: recall on the widefield 0.96-0.97 -> 0.97-0.98, precision 0.99 (within 0.001);
#: cen molecules summed 0.4-0.8 points nearer the truth and granule RNA near centrosomes up
#: to 1.1 points nearer (crowded objects no longer hold the light of the molecules found
#: beside them), molecules per granule within 0.4 points. On a granule's flank this fraction split
#: granules' outer light off (molecules per granule up to 3 points lower on the confocal).
_HIDDEN_LEVEL = 0.25
#: ... and a residual peak lies at least this many spot sigmas from every spot already found.
_FLANK_APART = 1.0
#: Where the image shows axial lobes (:func:`axial_lobe_depths`), a residual peak on a
#: granule's axis within the lobe depths, widened by this many spot sigmas (as measured,
#: along z) on either side, is the granule's lobe: a ball's lobe is a shoulder on its
#: column, and the one-Gaussian model leaves its peak a little beyond a molecule's lobe
#: (in the test scene of a lobe 1 µm below, 1.00-1.12 µm, against a bin of 0.88-1.10 µm).
_FLANK_LOBE_MARGIN = 0.5


def _fit_granules(data: np.ndarray, start: np.ndarray, amplitude: np.ndarray,
                  sigma: np.ndarray, spacing: np.ndarray):
    """Least-squares fit of one wider Gaussian per granule, all granules at once.

    Each granule ``g`` is ``A exp(-Σ_a (x_a - c_a)² / (2 w_a²))`` with
    ``w_a² = sigma_a² + u / spacing_a²``: the spot's shape widened by an extra
    ``sqrt(u)`` µm in every direction (a ball of molecules blurred by the
    optics). Fitted on the voxels within :data:`_GRANULE_FIT_REACH` sigmas of
    `start` (outside the image: no weight), by Gauss-Newton steps (lightly
    damped; no centre moving more than a sigma per step; ``A ≥ 0``, centre
    within :data:`_GRANULE_MAX_SHIFT` voxels of the start and within the image, extra width at most
    :data:`_GRANULE_MAX_WIDTH_UM`), in batches of granules that bound the memory.

    Returns
    -------
    amplitude : (G,) ndarray
    centre : (G, 3) ndarray
        Voxels.
    width : (G, 3) ndarray
        Voxels, per axis.
    """
    reach = np.ceil(_GRANULE_FIT_REACH * sigma).astype(int)
    steps = [np.arange(-r, r + 1, dtype=np.int64) for r in reach]
    offsets = np.stack(np.meshgrid(*steps, indexing="ij"), axis=-1).reshape(-1, 3)
    batch = max(1, _FIT_BATCH_VALUES // len(offsets))
    shape = np.array(data.shape)
    inverse_area = 1.0 / np.asarray(spacing, dtype=np.float64) ** 2
    sigma = np.asarray(sigma, dtype=np.float64)
    out = []
    for first in range(0, len(start), batch):
        part = slice(first, first + batch)
        centre = np.rint(start[part]).astype(np.int64)
        voxels = centre[:, None, :] + offsets[None, :, :]               # (G, V, 3)
        weight = np.all((voxels >= 0) & (voxels < shape), axis=2).astype(np.float64)
        values = data[tuple(np.moveaxis(np.clip(voxels, 0, shape - 1), 2, 0))] * weight
        low = np.maximum(start[part] - _GRANULE_MAX_SHIFT, -0.5)
        high = np.minimum(start[part] + _GRANULE_MAX_SHIFT, shape - 0.5)
        # Parameters: amplitude, centre (3), u = extra width² (µm²).
        params = np.concatenate([amplitude[part, None], start[part],
                                 np.full((len(centre), 1), 0.01)], axis=1).astype(np.float64)
        fit_granule_windows(values, weight, centre, *steps, params, sigma, inverse_area,
                            low, high, _GRANULE_MAX_WIDTH_UM ** 2, _GRANULE_FIT_STEPS)
        out.append(params)
    params = np.concatenate(out) if out else np.zeros((0, 5))
    width = np.sqrt(sigma ** 2 + params[:, 4, None] * inverse_area)
    return params[:, 0], params[:, 1:4], width


def find_flank_spots(filtered: np.ndarray, noise: np.ndarray, spots: pd.DataFrame,
                     threshold: float, *, spacing, min_distance_um,
                     lobe_depths_um=None) -> pd.DataFrame:
    """Find the single molecules hidden on a granule's flank or beside another spot.

    :func:`split_blended_spots` leaves granules whole (a granule's lumpy image
    is not two molecules), so a molecule lying 1-4 spot sigmas from one makes
    no maximum of its own and its light is counted in the granule's; and it
    splits each spot once, beside no bright spot, so a spot's second hidden
    neighbour, or a dim one beside a bright single molecule, is left too. Here
    every spot is subtracted and each granule is modelled as a whole: the spots
    within :data:`_GRANULE_REACH` spot sigmas of a bright spot
    (:data:`_SPLIT_BRIGHTNESS` times the median spot's amplitude) are the
    granule's; every other spot's own image (:func:`spot_shape`) is
    subtracted; each granule gets one Gaussian of fitted amplitude, centre and
    extra width (:func:`_fit_granules`, on the voxels within
    :data:`_GRANULE_FIT_REACH` sigmas). The maxima of what is left, over the
    noise, above `threshold` (:func:`find_spots`) become spots when they still
    pass it once what every lone molecule leaves at that offset from its spot
    is taken off (the median residual of :func:`split_blended_spots`: a real
    spot's side lobes are no molecule), lie beyond the granule merge reach
    (:func:`granule_merge_reach`, the same distance in µm along every axis) of
    every granule's fitted centre (nearer, a peak is one of the granule's own
    lumps, as two spots that near take the granule's saddle ratio in
    :func:`grow_objects`) and at least :data:`_FLANK_APART` spot sigma from
    every spot, and reach a fraction of the median spot's amplitude:
    :data:`_FLANK_LEVEL` on a granule's flank (up to :data:`_FLANK_FAR` of its
    widths); elsewhere :data:`_HIDDEN_LEVEL`, and only beside a spot with no
    other within :data:`_GRANULE_REACH` sigmas (a granule too dim to be taken
    for one makes two maxima, and the residual beside them may be its lump).
    Where the image shows a PSF's axial lobes (`lobe_depths_um`,
    :func:`axial_lobe_depths`), a peak on a granule's axis (within
    :data:`LOBE_LATERAL_SIGMAS` of its fitted lateral widths) at a lobe's depth
    from its centre (give or take :data:`_FLANK_LOBE_MARGIN` spot sigma) is the
    granule's lobe, not a molecule.

    Parameters
    ----------
    filtered : (Z, Y, X) ndarray of float
        :func:`remove_background`'s output.
    noise : (Z, Y, X) ndarray of float
        :func:`local_noise` of `filtered`.
    spots : DataFrame
        :func:`find_spots`'s (or :func:`split_blended_spots`'s) table.
    threshold : float
        The noise SDs the spots had to exceed.
    spacing : float or sequence of 3 floats
        Microns per voxel (z, y, x).
    min_distance_um : float or (axial, lateral)
        :func:`find_spots`'s box half-width.
    lobe_depths_um : (K, 2) array_like, optional
        The (nearest, farthest) axial distances, µm, at which the image's
        spots show lobes (:func:`axial_lobe_depths`); none when not given.

    Returns
    -------
    DataFrame
        `spots` (with a ``blended`` column, False where it had none) and a row
        per molecule found, marked ``blended`` with the spot nearest to it
        (:func:`grow_objects` keeps them apart). Unchanged when there are too
        few spots to measure their shape.

    Examples
    --------
    Fifteen single molecules, a granule of seven in a ball of 1.5 voxels and a
    single molecule 4 voxels (3.1 sigmas) from the granule's centre, its light
    on the granule's flank (no maximum of its own): it is found.

    >>> z, y, x = np.mgrid[:15, :41, :81]
    >>> def spot(cz, cy, cx):
    ...     return np.exp(-((z - cz) ** 2 + (y - cy) ** 2 + (x - cx) ** 2) / (2 * 1.3 ** 2))
    >>> singles = sum(spot(7, cy, cx) for cy in (6, 13, 20, 27, 34) for cx in (6, 13, 20))
    >>> ball = [(0, 0, 0), (1, 0, 0), (-1, 0, 0), (0, 1, 0), (0, -1, 0), (0, 0, 1), (0, 0, -1)]
    >>> granule = sum(spot(7 + dz, 20 + dy, 45 + dx) for dz, dy, dx in ball)
    >>> noise = np.full(z.shape, 0.02)
    >>> filtered = singles + granule + spot(7, 20, 49)
    >>> spots = find_spots(filtered / noise, 10, spacing=1.0, min_distance_um=1.0)
    >>> len(spots)
    16
    >>> found = find_flank_spots(filtered, noise, spots, 10, spacing=1.0, min_distance_um=1.0)
    >>> len(found), int(found["blended"].sum())
    (17, 2)
    >>> [round(float(v)) for v in found.iloc[-1][["z", "y", "x"]]]
    [7, 20, 49]

    The granule alone, lumpy as it is, gets no spot:

    >>> filtered = singles + granule
    >>> spots = find_spots(filtered / noise, 10, spacing=1.0, min_distance_um=1.0)
    >>> len(find_flank_spots(filtered, noise, spots, 10, spacing=1.0, min_distance_um=1.0))
    16
    """
    spots = spots.reset_index(drop=True)
    if "blended" not in spots:
        spots = spots.assign(blended=False)
    if len(spots) == 0:
        return spots
    sigma = spot_shape(filtered, spots)
    if sigma is None:
        return spots
    spacing = normalize_spacing(spacing)
    index, position, amplitude = _spot_amplitudes(filtered, spots, sigma)
    middle = float(np.median(amplitude))
    bright = np.flatnonzero(amplitude >= _SPLIT_BRIGHTNESS * middle)
    scaled = position / sigma
    member = np.zeros(len(spots), dtype=bool)
    if bright.size:
        # Granules: bright spots within twice the reach of each other are one.
        bright_tree = cKDTree(scaled[bright])
        pairs = bright_tree.query_pairs(2 * _GRANULE_REACH, output_type="ndarray")
        link = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])),
                          shape=(bright.size, bright.size))
        count, granule = connected_components(link, directed=False)
        member = bright_tree.query(scaled)[0] <= _GRANULE_REACH
    left = _draw_spots(filtered.shape, position[~member], amplitude[~member], sigma)
    np.subtract(filtered, left, out=left)  # the residual, in the models' memory
    centre = width = np.zeros((0, 3))
    if bright.size:
        # Each granule starts at its bright spots' amplitude-weighted centre, at the
        # brightest's height.
        weight = amplitude[bright]
        start = np.stack([np.bincount(granule, weight * position[bright, a], minlength=count)
                          for a in range(3)], axis=1) / np.bincount(granule, weight)[:, None]
        height = np.zeros(count)
        np.maximum.at(height, granule, weight)
        height, centre, width = _fit_granules(left, start, height, sigma, np.asarray(spacing))
        np.subtract(left, _draw_spots(filtered.shape, centre, height, width,
                                      reach_sigmas=_GRANULE_DRAW_REACH), out=left)
    found = find_spots(left / noise, threshold, spacing=spacing, min_distance_um=min_distance_um)
    at = found[["z", "y", "x"]].to_numpy(dtype=np.float64)
    voxel = found[["zi", "yi", "xi"]].to_numpy()
    # Less what every lone molecule leaves there (a real spot is no Gaussian: side lobes,
    # an axial asymmetry), as split_blended_spots does; what is left must still pass the
    # threshold.
    spot_tree = cKDTree(scaled)
    to_spot, nearest = spot_tree.query(at / sigma)
    level = _beyond_lone_residual(left, voxel, nearest, index, amplitude, sigma)
    passes = level >= threshold * noise[tuple(voxel.T)]
    # Away from granules, only beside a spot with no other within _GRANULE_REACH sigmas:
    # a granule of a few molecules, too dim to be taken for one, makes two maxima, and the
    # residual beside them is as likely a lump of it as a third molecule.
    close = spot_tree.query_pairs(_GRANULE_REACH, output_type="ndarray")
    alone = np.bincount(close.ravel(), minlength=len(scaled)) == 0
    lobes = np.zeros((0, 2)) if lobe_depths_um is None else np.asarray(lobe_depths_um)
    lobes = (lobes.reshape(-1, 2) / spacing[0]
             + np.array([-1.0, 1.0]) * _FLANK_LOBE_MARGIN * sigma[0])
    new = _flank_peaks(at, level, centre, width, to_spot, middle, alone[nearest],
                       granule_merge_reach(sigma, spacing), lobes)
    new = new[passes[new]]
    if new.size == 0:
        return spots
    spots.loc[nearest[new], "blended"] = True
    extra = pd.DataFrame({"z": at[new, 0], "y": at[new, 1], "x": at[new, 2],
                          "score": found["score"].to_numpy()[new],
                          "zi": voxel[new, 0], "yi": voxel[new, 1], "xi": voxel[new, 2],
                          "blended": True})
    return pd.concat([spots, extra], ignore_index=True).astype({**SPOT_COLUMNS, "blended": bool})


def _flank_peaks(at, level, centre, width, to_spot, middle, alone, reach,
                 lobes) -> np.ndarray:
    """Rows of the residual peaks `at` (voxels, with residual `level`, `to_spot` spot
    sigmas from their nearest spot; `alone`: that spot has no other near it) that are
    hidden molecules, by :func:`find_flank_spots`'s criteria (no granule: `centre` and
    `width` have no rows; `reach`: :func:`granule_merge_reach`, voxels per axis;
    `lobes`: the image's lobe depths, voxels along z, (nearest, farthest) per row).

    A peak on a granule's flank (within :data:`_FLANK_FAR` of its fitted widths) must
    lie beyond `reach` of every granule's centre: the granule's lumps lie within that
    distance in µm along every axis, while its fitted widths are the PSF's, three times
    longer along z than across. On a widefield grid a molecule 0.4 µm above a granule
    lies about 1.2 widths from its centre, and a lump 0.35 µm to its side about 3 (the
    fit is often no wider than a spot): in widths, the one looks nearer than the other.
    """
    if len(at) == 0:
        return np.zeros(0, dtype=np.int64)
    # Distance to the nearest granule in its own widths, up to _FLANK_FAR (infinite
    # beyond), and in merge reaches: candidates from a tree scaled by the widest granule
    # (never farther than their distance in their own widths). A granule farther than
    # _FLANK_FAR widths is farther than its reach too (at most 3 spot sigmas per axis,
    # and its widths are no narrower than a spot), so the candidates hold every granule
    # a peak could lie within the reach of.
    to_granule = np.full(len(at), np.inf)
    to_lumps = np.full(len(at), np.inf)
    lobe = np.zeros(len(at), dtype=bool)
    if len(centre):
        widest = width.max(axis=0)
        near = cKDTree(centre / widest).query_ball_point(at / widest, _FLANK_FAR)
        rows = np.repeat(np.arange(len(at)), [len(n) for n in near])
        cols = np.concatenate([np.asarray(n, dtype=np.int64) for n in near])
        offset = at[rows] - centre[cols]
        np.minimum.at(to_granule, rows, np.sqrt(((offset / width[cols]) ** 2).sum(axis=1)))
        np.minimum.at(to_lumps, rows, np.sqrt(((offset / reach) ** 2).sum(axis=1)))
        # A granule's own lobe: on its axis, at a depth where the image's spots show theirs.
        depth = np.abs(offset[:, 0])
        on_axis = (np.hypot(*(offset[:, 1:] / width[cols, 1:]).T) <= LOBE_LATERAL_SIGMAS)
        at_lobe = ((depth[:, None] >= lobes[None, :, 0])
                   & (depth[:, None] < lobes[None, :, 1])).any(axis=1)
        np.logical_or.at(lobe, rows, on_axis & at_lobe)
    flank = to_granule <= _FLANK_FAR
    fraction = np.where(flank, _FLANK_LEVEL, _HIDDEN_LEVEL)
    return np.flatnonzero((to_lumps >= 1.0) & ~lobe & (level >= fraction * middle)
                          & (to_spot >= _FLANK_APART) & (flank | alone))


def _face_pairs(label_image: np.ndarray):
    """Face-adjacent voxel pairs of two different non-zero labels.

    Works on the non-zero voxels only (flat indices), so its cost follows the
    objects' volume, not the image's.

    Returns
    -------
    first, second : (P,) ndarray of int64
        Flat indices of the two voxels of each pair.
    """
    flat = label_image.ravel()
    index = np.flatnonzero(flat)
    shape = label_image.shape
    strides = np.cumprod((1,) + shape[:0:-1])[::-1]
    firsts, seconds = [], []
    for axis, stride in enumerate(strides):
        along = (index // stride) % shape[axis]
        a = index[along < shape[axis] - 1]
        b = a + stride
        la, lb = flat[a], flat[b]
        clash = (lb > 0) & (la != lb)
        firsts.append(a[clash])
        seconds.append(b[clash])
    return np.concatenate(firsts), np.concatenate(seconds)


def _merge_basins(basins: np.ndarray, intensity: np.ndarray, saddle_ratio: float, *,
                  bright: float = np.inf, bright_ratio: float = 0.0,
                  apart: np.ndarray | None = None,
                  position: np.ndarray | None = None,
                  joined: np.ndarray | None = None) -> np.ndarray:
    """Merge touching basins whose saddle is >= saddle_ratio x the lower peak; labels 1..k.

    Pairs one of whose peaks reaches `bright` use `bright_ratio` instead, when
    `position` (one row per label, scaled so that 1 is the largest distance)
    puts them within 1 of each other, or without `position`.
    Basins whose label is True in `apart` (indexed by label) are never merged;
    the pairs of labels in `joined` always are, where they touch.
    """

    n = int(basins.max())
    flat_basins, flat_intensity = basins.ravel(), intensity.ravel()
    inside = flat_basins > 0
    peak = np.full(n + 1, -np.inf, dtype=np.float64)
    np.maximum.at(peak, flat_basins[inside], flat_intensity[inside])
    first, second = _face_pairs(basins)
    a, b = flat_basins[first], flat_basins[second]
    height = np.minimum(flat_intensity[first], flat_intensity[second])
    low, high = np.minimum(a, b).astype(np.int64), np.maximum(a, b).astype(np.int64)
    # Saddle of each pair of basins: the highest of its border pairs.
    keys = low * (n + 1) + high
    order = np.lexsort((height, keys))
    keys, height = keys[order], height[order]
    last = np.r_[keys[1:] != keys[:-1], True] if keys.size else np.zeros(0, bool)
    keys, saddle = keys[last], height[last]
    low, high = keys // (n + 1), keys % (n + 1)
    granule = np.maximum(peak[low], peak[high]) >= bright
    if position is not None:
        granule &= np.einsum("ij,ij->i", position[low] - position[high],
                             position[low] - position[high]) <= 1.0
    ratio = np.where(granule, bright_ratio, saddle_ratio)
    merge = saddle >= ratio * np.minimum(peak[low], peak[high])
    if apart is not None:
        merge &= ~(apart[low] | apart[high])
    if joined is not None and len(joined):
        # Joined pairs merge whatever their saddle, where their basins touch (one column of
        # light; spots with background between them stay apart).
        pair = np.sort(np.asarray(joined, dtype=np.int64), axis=1)
        merge |= np.isin(keys, pair[:, 0] * (n + 1) + pair[:, 1])
    low, high = low[merge], high[merge]
    graph = coo_matrix((np.ones(low.size, np.int8), (low, high)), shape=(n + 1, n + 1))
    _, group = connected_components(graph, directed=False)
    used = np.unique(group[np.unique(flat_basins[inside])])
    lookup = np.zeros(group.max() + 1, dtype=np.int32)
    lookup[used] = np.arange(1, used.size + 1, dtype=np.int32)
    relabel = lookup[group]
    relabel[0] = 0
    return relabel[basins]


def _peak_near(image: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Largest value of `image` within one voxel (a 3x3x3 box) of each (z, y, x) row of `index`."""
    best = np.full(len(index), -np.inf)
    upper = np.array(image.shape) - 1
    for offset in np.ndindex(3, 3, 3):
        at = np.clip(index + np.array(offset) - 1, 0, upper)
        best = np.maximum(best, image[tuple(at.T)])
    return best


def _plateau_masks(keep, where, object_of_voxel, merged, plateaus, reach) -> None:
    """In `keep` (over the voxels `where`), the objects of `merged` holding a plateau voxel
    keep their voxels within `reach` (voxels per axis, an ellipsoid) of one."""
    plateaus = np.asarray(plateaus, dtype=np.int64)
    holders = np.unique(merged[tuple(plateaus.T)])
    holders = holders[holders > 0]
    if not holders.size:
        return
    mine = np.flatnonzero(np.isin(object_of_voxel, holders))
    at = np.stack(np.unravel_index(where[mine], merged.shape), axis=1)
    scale = 1.0 / np.asarray(reach, dtype=np.float64)
    distance, _ = cKDTree(plateaus * scale).query(at * scale)
    keep[mine] = distance <= 1.0 + 1e-9


def grow_objects(filtered: np.ndarray, score: np.ndarray | None, spots: pd.DataFrame, *,
                 floor: float, mask_fraction: float, saddle_ratio: float,
                 granule_saddle_ratio: float = 0.5, reach=None,
                 mask_image: np.ndarray | None = None, granule_reach=None,
                 region: np.ndarray | None = None, threads: int | None = None,
                 joined: np.ndarray | None = None, bridged: np.ndarray | None = None,
                 plateaus: np.ndarray | None = None, plateau_reach=None) -> np.ndarray:
    """One object per spot (or per group of spots with no dip between them).

    1. A watershed of ``-filtered`` from the spots over the voxels whose score
       exceeds `floor` (and within `reach` of a spot).
    2. Touching basins are merged when the highest point of their common
       border is at least `saddle_ratio` times the lower of their two peaks
       (no real dip); basins separated by a deeper dip stay apart, so two
       single molecules the optics resolve stay two objects. Next to a basin
       at least :data:`GRANULE_BRIGHTNESS` times as bright as the median spot
       (a granule: several molecules in one diffraction-limited blob) the
       lower `granule_saddle_ratio` applies, so the lumpy image of a granule
       stays one object -- between spots within `granule_reach` of each
       other, when given (a single molecule farther from the granule's spots
       keeps the usual ratio). The spots marked ``blended`` (two molecules fitted
       in one maximum, :func:`split_blended_spots`, or a molecule on a
       granule's flank and its nearest spot, :func:`find_flank_spots`) are
       never merged. The touching basins of the pairs of spots in `joined`
       (one molecule's maxima along z, :func:`axial_lobe_pairs`) are always
       merged; where step 3's cut breaks the object of a pair of `bridged`
       in two pieces, the voxels of the straight line between its spots
       (face-connected, within its basins) join them again.
    3. Each object keeps the voxels where ``filtered`` (or `mask_image`)
       reaches `mask_fraction` of its peak (of its dimmest spot's peak, for
       merged spots) and that are connected to its spots.

    Parameters
    ----------
    filtered : (Z, Y, X) ndarray of float
        Background-removed image (:func:`remove_background`).
    score : (Z, Y, X) ndarray of float, or None
        ``filtered / noise``; None when `region` is given.
    spots : DataFrame
        :func:`find_spots`'s table (columns ``zi``, ``yi``, ``xi``, and
        optionally ``blended``).
    floor : float
        Score below which no voxel joins an object.
    mask_fraction : float
        In (0, 1]: fraction of the object's peak (in `filtered`) its mask keeps.
    saddle_ratio : float
        In [0, 1]: 0 merges every touching pair, 1 never merges.
    granule_saddle_ratio : float
        In [0, 1]: the same, next to a granule.
    reach : (3,) sequence of int, optional
        Largest distance, in voxels along (z, y, x), of an object's voxels from
        its nearest spot (a box around each spot); None: no limit.
    mask_image : (Z, Y, X) ndarray of float, optional
        The image step 3 cuts the masks from (e.g. the background-removed
        image, less smoothed than `filtered`); each spot's peak there is the
        largest value within one voxel of it. Default: `filtered`.
    granule_reach : (3,) sequence of float, optional
        Largest distance, in voxels along (z, y, x) (an ellipsoid), between two
        spots for the granule ratio to join them, e.g.
        :func:`granule_merge_reach` of :func:`spot_shape`; None: no limit.
    region : (Z, Y, X) ndarray of bool, optional
        ``score > floor``, when the caller has it and no longer holds the
        score (the workflows, to hold one volume less); used in place of it
        and written to.
    threads : int, optional
        Threads for the filters (the same result on any number); None: every
        core this process may use.
    joined : (K, 2) ndarray of int, optional
        Row numbers of `spots` whose basins, where they touch, are merged
        whatever the dip between them.
    bridged : (J, 2) ndarray of int, optional
        Pairs of `joined` (e.g. :func:`axial_lobe_pairs`, one molecule's column
        of light) kept one connected object where the mask's cut breaks them.
    plateaus : (N, 3) ndarray of int, optional
        Voxels of clipped plateaus (:func:`clipped_plateaus`). An object holding
        one keeps, in step 3, the voxels of its basin within `plateau_reach` of
        a plateau voxel instead: the plateau and the margin a point source's
        mask has around its peak. (Cut at a fraction of a flat top, which is
        lower than the source's peak, the mask would reach out over the PSF's
        rings and the neighbours, and the aperture grown from it would read
        more of a real objective's PSF than a single molecule's does.)
    plateau_reach : (3,) sequence of float, optional
        The margin's radii, voxels along (z, y, x) (an ellipsoid); with
        `plateaus`.

    Returns
    -------
    (Z, Y, X) ndarray of int32
        Labels 1..n (objects may touch each other; see
        :func:`.workflows.separate_touching`).
    """
    filtered = np.asarray(filtered, dtype=np.float32)
    if len(spots) == 0:
        return np.zeros(filtered.shape, dtype=np.int32)
    threads = thread_count(threads)
    voxels = tuple(spots[["zi", "yi", "xi"]].to_numpy().T)
    face = FACE_CONNECTIVITY
    region = np.asarray(score) > floor if region is None else region
    region[voxels] = True
    if reach is not None:
        # No object reaches farther than `reach` voxels from its spots along any axis:
        # a spot on a faint ridge of background cannot flood a whole plane.
        region &= _near_spots(filtered.shape, voxels, reach, threads)
    components, count = ndimage.label(region, structure=face)
    del region
    owner = components[voxels]
    per_component = np.bincount(owner, minlength=count + 1)
    # A component holding one spot is that spot's basin; only the others are
    # flooded. Work on the region's voxels (flat indices), not the whole stack.
    where = np.flatnonzero(components)
    lookup = np.zeros(count + 1, dtype=np.int32)
    lone = per_component[owner] == 1
    lookup[owner[lone]] = np.flatnonzero(lone).astype(np.int32) + 1
    basins = np.zeros(filtered.shape, dtype=np.int32)
    basins.ravel()[where] = lookup[components.ravel()[where]]
    several = np.flatnonzero(per_component >= 2)
    boxes = ndimage.find_objects(components)
    # One watershed call per group of crowded components that start in the same
    # tile of the image: the per-call overhead dominates when each crop is tiny.
    starts = np.array([[s.start for s in boxes[c - 1]] for c in several]).reshape(-1, 3)
    tile = starts[:, 1:] // _WATERSHED_TILE
    groups = np.unique(tile, axis=0, return_inverse=True)[1].ravel() if len(tile) else tile
    for group in range(int(groups.max()) + 1 if len(groups) else 0):
        members = several[groups == group]
        member_boxes = [boxes[c - 1] for c in members]
        box = tuple(slice(min(b[a].start for b in member_boxes), max(b[a].stop for b in member_boxes))
                    for a in range(3))
        own = np.isin(components[box], members)
        markers = np.zeros(own.shape, dtype=np.int32)
        mine = np.flatnonzero(np.isin(owner, members))
        markers[tuple(v[mine] - b.start for v, b in zip(voxels, box))] = mine + 1
        flooded = watershed(-filtered[box], markers=markers, mask=own, connectivity=1)
        basins[box][own] = flooded[own]
    del components
    peaks = filtered[voxels].astype(np.float64)
    bright = GRANULE_BRIGHTNESS * float(np.median(peaks)) if len(peaks) >= 5 else np.inf
    apart = None
    if "blended" in spots and spots["blended"].any():
        # Basin k is spot k - 1's (the markers above).
        apart = np.r_[False, spots["blended"].to_numpy(dtype=bool)]
    position = None
    if granule_reach is not None:
        # Basin k is spot k - 1's: positions scaled so that granule_reach is 1.
        at = spots[["z", "y", "x"]].to_numpy(dtype=np.float64) if "z" in spots else \
            np.stack(voxels, axis=1).astype(np.float64)
        position = np.vstack([np.zeros((1, 3)), at / np.asarray(granule_reach, dtype=np.float64)])
    merged = _merge_basins(basins, filtered, saddle_ratio, bright=bright,
                           bright_ratio=granule_saddle_ratio, apart=apart, position=position,
                           joined=None if joined is None else np.asarray(joined, np.int64) + 1)
    del basins
    # An object's level is the dimmest of its spots' peaks (the merged basins of
    # a granule dip no lower than the saddle ratio of it, so with a saddle ratio
    # >= mask_fraction the granule stays in one piece).
    if mask_image is None:
        mask_image = filtered
    else:
        mask_image = np.asarray(mask_image, dtype=np.float32)
        peaks = _peak_near(mask_image, np.stack(voxels, axis=1))
    object_of_spot = merged[voxels]
    level = np.full(int(merged.max()) + 1, np.inf)
    np.minimum.at(level, object_of_spot, peaks)
    values = mask_image.ravel()[where]
    object_of_voxel = merged.ravel()[where]
    keep = (object_of_voxel > 0) & (values >= mask_fraction * level[object_of_voxel])
    if plateaus is not None and len(plateaus):
        _plateau_masks(keep, where, object_of_voxel, merged, plateaus, plateau_reach)
    # The lines that would join a bridged pair's pieces, read in the merged basins before
    # the cut (below).
    bridges, pairs = [], None
    if bridged is not None and len(bridged):
        pairs = np.asarray(bridged, np.int64)
        bridges = _bridge_lines(merged, voxels, pairs, mask_image, peaks)
    # The merged labels are 0 off the region's voxels: cut them in place.
    cut = merged
    cut.ravel()[where[~keep]] = 0
    # Drop the pieces cut off from their object's spots.
    pieces, _ = ndimage.label(cut > 0, structure=face)
    seeded = np.zeros(int(pieces.max()) + 1, dtype=bool)
    seeded[pieces[voxels]] = True
    seeded[0] = False
    inside = np.flatnonzero(cut)
    cut.ravel()[inside[~seeded[pieces.ravel()[inside]]]] = 0
    for row, path in bridges:
        # Only where the cut left the pair's spots in two pieces.
        first, second = (tuple(np.asarray(v)[spot] for v in voxels) for spot in pairs[row])
        if pieces[first] != pieces[second]:
            cut[tuple(path.T)] = cut[first]
    return cut


#: :func:`grow_objects`: the pieces of a bridged pair are joined when the light on the line
#: between its spots stays at least this fraction of the dimmer one's peak (half the rna
#: preset's mask fraction). Through 0.5 waves of spherical aberration the pieces of a
#: molecule's column dip to a median 0.40 of the dimmer maximum (5th percentile 0.19, 302
#: pairs on three sim-fish images); single molecules and granules on one axis 1.8 µm apart
#: (tests/scenes.py's grid, whose regular spacing makes lobe bins) dip to 0.17-0.21.
BRIDGE_DIP = 0.25


def _bridge_lines(merged, voxels, pairs, image, peaks) -> list:
    """The voxels that would join the two spots of each of `pairs` (rows of the spots at
    `voxels`) in `merged` (the merged basins, before the masks are cut): the straight line
    between them, face-connected as the objects are, within the pair's merged basin,
    when both spots lie in one and the light on the line stays at least
    :data:`BRIDGE_DIP` of the dimmer spot's peak (`peaks`, in `image`, the image the masks
    are cut from). One molecule's maxima along z are one column of light, which the
    mask's cut at a fraction of the dimmer peak may break, and a binary mask keeps one
    object only as a connected one; two sources on one axis have background between them.

    Returns
    -------
    list of (int, (L, 3) ndarray of int)
        The row of `pairs` and its line's voxels, for each pair bridged.
    """
    at = np.stack(voxels, axis=1)
    first, second = at[pairs[:, 0]], at[pairs[:, 1]]
    label = merged[tuple(first.T)]
    dimmer = np.minimum(peaks[pairs[:, 0]], peaks[pairs[:, 1]])
    lines = []
    for row in np.flatnonzero((label > 0) & (label == merged[tuple(second.T)])):
        a, b = first[row], second[row]
        steps = int(np.abs(b - a).max()) + 1
        line = np.rint(a + np.linspace(0.0, 1.0, steps)[:, None] * (b - a)).astype(np.int64)
        if image[tuple(line.T)].min() < BRIDGE_DIP * dimmer[row]:
            continue
        # Face-connected: one axis at a time between the line's points.
        here, there = line[:-1], line[1:]
        path = np.stack([np.column_stack([there[:, 0], here[:, 1], here[:, 2]]),
                         np.column_stack([there[:, 0], there[:, 1], here[:, 2]]), there],
                        axis=1).reshape(-1, 3)
        path = np.vstack([line[:1], path])
        lines.append((row, path[merged[tuple(path.T)] == label[row]]))
    return lines


#: :func:`drop_defocus_spots`: a spot this many times fainter (filtered peak) than a spot
#: above or below it, inside its cone, is that spot's out-of-focus light (the ``rna``
#: preset's ``defocus_ratio``). On sim-fish images through a widefield PSF with 0.2 waves
#: of spherical aberration (three images each), molecules summed went from +8.1% to +3.1%
#: at SNR 8 and from +14.8% to +3.9% at SNR 12; on the demo (a Gaussian PSF, which has no
#: such light) cen totals went at most 0.5 points lower (docs/segmentation.md, step 7).
DEFOCUS_RATIO = 8.0
#: ... and only spots scoring under this fraction of a typical molecule (the median spot
#: in no such cone) and under :data:`DEFOCUS_MAX_THRESHOLDS` times the threshold: the noise
#: maxima on a defocused disc sit near the threshold, and a molecule of typical brightness
#: is never left out (on the confocal demo, whose spots score 25-30, 0.6 of the median
#: alone left out molecules above and below granules: cen totals 1 point lower).
DEFOCUS_MAX_SCORE = 0.6
#: The second cap of :data:`DEFOCUS_MAX_SCORE`, in detection thresholds.
DEFOCUS_MAX_THRESHOLDS = 2.0
#: The cone: from this many to this many axial spot sigmas above or below the bright spot
#: (0.44-1.54 µm with the ``rna`` preset's 0.22 µm; the defocus spots sat 0.6-1.2 µm
#: away), and laterally within this many times the axial distance (they sat 0.4-1.1 µm
#: aside).
DEFOCUS_DEPTH_SIGMAS = (2.0, 7.0)
DEFOCUS_SLOPE = 1.2


def drop_defocus_spots(filtered: np.ndarray, spots: pd.DataFrame, threshold: float, *, spacing,
                       spot_sigma_um, ratio: float = DEFOCUS_RATIO) -> pd.DataFrame:
    """Leave out faint spots that are a bright spot's out-of-focus light.

    A widefield objective spreads a source's light, out of focus, into a disc
    that widens with the distance from focus (and, with spherical aberration,
    into rings and lobes on one side): above and below a granule many times as
    bright as a molecule, that light breaks into faint maxima that pass the
    threshold. A spot is left out when its score is under both
    :data:`DEFOCUS_MAX_SCORE` times the median of the spots in no such cone (a
    faint molecule at most) and :data:`DEFOCUS_MAX_THRESHOLDS` times
    `threshold`, and a spot at least `ratio` times as bright (in
    `filtered`, at their voxels) lies above or below it, between
    :data:`DEFOCUS_DEPTH_SIGMAS` axial spot sigmas away, within
    :data:`DEFOCUS_SLOPE` times that depth laterally. Its light is the bright
    spot's, seen out of focus: counted as a molecule, it would be counted twice.

    On sim-fish images through a widefield PSF with 0.2 waves of spherical
    aberration (``benchmarks/simfish_images.py``), a granule of 10-15
    molecules left up to ten such spots on its out-of-focus disc, and molecules
    summed came to +8.1% (SNR 8) and +14.8% (SNR 12); without them, +3.1% and
    +3.9%. On the demo's Gaussian PSF, which has no such light, it leaves out
    a few faint molecules above or below granules.

    Parameters
    ----------
    filtered : (Z, Y, X) ndarray of float
        :func:`remove_background`'s output.
    spots : DataFrame
        The spots (``z``, ``y``, ``x``, ``score``, ``zi``, ``yi``, ``xi``).
    threshold : float
        The detection threshold, noise SDs.
    spacing : float or sequence of 3 floats
        Microns per voxel (z, y, x).
    spot_sigma_um : (float, float)
        The spot's sigma (axial, lateral), µm.
    ratio : float
        How many times brighter the source must be; 0 leaves every spot.

    Returns
    -------
    DataFrame
        `spots` without those left out, in their order (numbered from 0 again
        when any is).

    Examples
    --------
    A granule (amplitude 100) 0.8 µm above a faint spot, a faint spot elsewhere,
    and single molecules of amplitude 10:

    >>> filtered = np.zeros((20, 40, 40))
    >>> at = [(5, 10, 10), (9, 12, 10), (9, 2, 2)] + [(14, 30, x) for x in range(2, 38, 6)]
    >>> for place, amplitude in zip(at, [100.0, 4.0, 4.0] + [10.0] * 6):
    ...     filtered[place] = amplitude
    >>> spots = pd.DataFrame(at, columns=["zi", "yi", "xi"])
    >>> spots[["z", "y", "x"]] = spots[["zi", "yi", "xi"]].astype(float)
    >>> spots["score"] = filtered[spots["zi"], spots["yi"], spots["xi"]]
    >>> kept = drop_defocus_spots(filtered, spots, 4.6, spacing=(0.2, 0.1, 0.1),
    ...                           spot_sigma_um=(0.22, 0.08))
    >>> len(spots) - len(kept), [9, 12, 10] in kept[["zi", "yi", "xi"]].to_numpy().tolist()
    (1, False)
    """
    if ratio <= 0 or len(spots) < 2:
        return spots
    scale = normalize_spacing(spacing)
    amplitude = np.asarray(filtered, dtype=np.float64)[spots["zi"], spots["yi"], spots["xi"]]
    score = spots["score"].to_numpy(np.float64)
    at = spots[["z", "y", "x"]].to_numpy(np.float64) * scale
    low, high = np.asarray(DEFOCUS_DEPTH_SIGMAS) * float(spot_sigma_um[0])
    # Each spot with a spot `ratio` times as bright in its cone above or below it: every
    # pair within the cone's reach, both ways (the faint one, the bright one).
    pairs = cKDTree(at).query_pairs(high * np.hypot(1.0, DEFOCUS_SLOPE), output_type="ndarray")
    faint, bright = np.r_[pairs[:, 0], pairs[:, 1]], np.r_[pairs[:, 1], pairs[:, 0]]
    depth = np.abs(at[bright, 0] - at[faint, 0])
    side = np.hypot(at[bright, 1] - at[faint, 1], at[bright, 2] - at[faint, 2])
    cone = ((amplitude[faint] > 0) & (amplitude[bright] >= ratio * amplitude[faint])
            & (depth >= low) & (depth <= high) & (side <= DEFOCUS_SLOPE * depth))
    shadowed = np.zeros(len(spots), dtype=bool)
    shadowed[faint[cone]] = True
    if not shadowed.any() or shadowed.all():
        return spots
    # The typical molecule: the median of the spots in no such cone (where a few granules
    # leave as many defocus spots as there are molecules, the median of all sits among them).
    typical = np.median(score[~shadowed])
    drop = shadowed & (score < min(DEFOCUS_MAX_SCORE * typical,
                                   DEFOCUS_MAX_THRESHOLDS * threshold))
    return spots[~drop].reset_index(drop=True)


#: :func:`axial_lobe_pairs`: two spots lie on one axis when they lie within this many
#: lateral spot sigmas of each other across the optical axis ...
LOBE_LATERAL_SIGMAS = 2.0
#: ... and pairs this many axial spot sigmas apart along it are counted (0.44-3.1 µm with
#: the ``rna`` preset's 0.22 µm), in bins one axial sigma wide.
LOBE_DEPTH_SIGMAS = (2.0, 14.0)
#: Chance pairs are counted in the annulus around the disc, this many times its area
#: (between 2 and 6 lateral sigmas), at the same depths.
LOBE_CONTROL_AREA = 8.0
#: A depth bin holds lobes when its pairs on one axis number at least this many times the
#: chance pairs and 5 standard deviations (Poisson) more, and the bins' excess reaches
#: :data:`LOBE_MIN_SHARE` of the spots (and :data:`LOBE_MIN_PAIRS`): a PSF's lobe is found
#: beside most molecules, not beside a few. Close pairs of molecules in random directions
#: (0.45-1 µm apart) put 1.8-3 times chance in a bin, a 0.35-wave PSF's lobes 20-50 times.
LOBE_EXCESS = 4.0
LOBE_MIN_SHARE = 0.05
LOBE_MIN_PAIRS = 10
#: A bin next to the lobe bins holds lobes too when its pairs number at least
#: :data:`LOBE_EXCESS` times chance and this many standard deviations more (the run of
#: bins is significant as a whole). A PSF aberrated more with depth draws its lobes farther
#: from the deeper molecules, beyond the bins the shallower ones fill: through 0.1 waves
#: at the first plane to 0.4 at the last (sim-fish, 30 planes of 0.3 µm), the deepest
#: molecules' lobes lie 1.1-1.2 µm away, 4-5 pairs in a bin where chance puts 0.4-0.6.
LOBE_EDGE_SDS = 2.0


#: :func:`plateau_pairs`: a spot this many spot sigmas (per axis) or less from a voxel of a
#: clipped plateau is on that plateau's source.
PLATEAU_REACH_SIGMAS = 2.0


def plateau_reach(mask_fraction: float, shape_sigma, spot_sigma_um, spacing) -> np.ndarray:
    """How far (voxels along z, y, x) a point source's mask reaches beyond its peak: where a
    Gaussian of the spot's shape falls to `mask_fraction` of it (``shape_sigma``, voxels, as
    :func:`spot_shape` measures it; `spot_sigma_um` where None).

    Examples
    --------
    >>> plateau_reach(0.5, None, (0.3, 0.1), (0.3, 0.1, 0.1)).round(3).tolist()
    [1.177, 1.177, 1.177]
    """
    if shape_sigma is None:
        shape_sigma = (np.array([spot_sigma_um[0], spot_sigma_um[1], spot_sigma_um[1]])
                       / normalize_spacing(spacing))
    return np.sqrt(2 * np.log(1 / float(mask_fraction))) * np.asarray(shape_sigma, np.float64)


def clipped_plateaus(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The voxels at the camera's ceiling, and the plateau each belongs to.

    Empty unless the stack's brightest voxel is a ceiling
    (:func:`~rna_localization.saturation.camera_ceiling`) held by at least
    :data:`~rna_localization.saturation.MIN_CLIPPED_VOXELS` voxels. A plateau
    is a set of them joined through faces, edges or corners.

    Parameters
    ----------
    image : (Z, Y, X) ndarray
        The raw stack.

    Returns
    -------
    voxels : (N, 3) ndarray of int
        (z, y, x) of the voxels at the ceiling, in scan order.
    plateau : (N,) ndarray of int
        Each one's plateau, numbered from 0.

    Examples
    --------
    >>> image = np.zeros((1, 4, 6), np.uint8); image[0, 1, 1:3] = 255; image[0, 3, 5] = 255
    >>> voxels, plateau = clipped_plateaus(image)
    >>> voxels.tolist(), plateau.tolist()
    ([[0, 1, 1], [0, 1, 2], [0, 3, 5]], [0, 0, 1])
    """
    empty = np.zeros((0, 3), dtype=np.int64), np.zeros(0, dtype=np.int64)
    if not np.size(image):
        return empty
    # The rule extract names clipped images by (a ceiling held by enough voxels).
    ceiling, _ = clipped_objects([np.max(image)], lambda: np.ravel(image))
    if ceiling is None:
        return empty
    flat = np.flatnonzero(np.ravel(image) == ceiling)
    top = np.stack(np.unravel_index(flat, np.shape(image)), axis=1).astype(np.int64)
    pairs = cKDTree(top).query_pairs(np.sqrt(3) + 1e-9, output_type="ndarray")
    graph = coo_matrix((np.ones(len(pairs), np.int8), (pairs[:, 0], pairs[:, 1])),
                       shape=(len(top), len(top)))
    _, plateau = connected_components(graph, directed=False)
    return top, plateau.astype(np.int64)


def plateau_pairs(image: np.ndarray, spots: pd.DataFrame, *, spacing, spot_sigma_um,
                  plateaus: tuple | None = None) -> np.ndarray:
    """Pairs of spots on one plateau of clipped light: one source, grown into one object.

    A camera writes its ceiling (2^k - 1) wherever more light fell
    (:mod:`rna_localization.saturation`): a granule or centrosome brighter
    than that has a flat top. The spot filter answers a flat top wider than
    a spot with a ring, which breaks into several spots around it: on
    simulated widefield stacks of isolated granules whose ceiling stood 1.5
    single molecules' peaks above the background, 112 of 149 granules came
    out in two objects or more and 81 objects held no molecule (8 and 0
    unclipped; 5 and 3 with these pairs joined). Nothing under a plateau can
    be resolved, so every pair of spots within :data:`PLATEAU_REACH_SIGMAS`
    spot sigmas (per axis) of one plateau (:func:`clipped_plateaus`) is
    returned, to be grown into one object (:func:`grow_objects`, ``joined``).
    A stack whose brightest voxel is no ceiling gives none.

    Parameters
    ----------
    image : (Z, Y, X) ndarray
        The raw stack.
    spots : DataFrame
        ``zi``, ``yi``, ``xi`` (voxels).
    spacing : float or sequence of 3 floats
        Microns per voxel (z, y, x).
    spot_sigma_um : (float, float)
        The spot's sigma (axial, lateral), µm.
    plateaus : tuple, optional
        :func:`clipped_plateaus` of `image`, when already at hand.

    Returns
    -------
    (K, 2) ndarray of int
        Rows of `spots` (positions), each pair once.

    Examples
    --------
    A plateau of 5 x 5 voxels at a 12-bit ceiling with three spots around
    it, and a spot away from it:

    >>> image = np.full((5, 30, 30), 100, np.uint16); image[2, 8:13, 8:13] = 4095
    >>> spots = pd.DataFrame({"zi": [2, 2, 2, 2], "yi": [7, 13, 10, 25], "xi": [10, 10, 14, 25]})
    >>> plateau_pairs(image, spots, spacing=(0.3, 0.1, 0.1), spot_sigma_um=(0.2, 0.1)).tolist()
    [[0, 1], [0, 2], [1, 2]]
    """
    none = np.zeros((0, 2), dtype=np.int64)
    if not len(spots):
        return none
    top, plateau = clipped_plateaus(image) if plateaus is None else plateaus
    if not len(top):
        return none
    size = np.bincount(plateau)
    # Each spot's nearest clipped voxel, in spot sigmas per axis.
    sigma = np.array([spot_sigma_um[0], spot_sigma_um[1], spot_sigma_um[1]], np.float64)
    scale = normalize_spacing(spacing) / sigma
    at = spots[["zi", "yi", "xi"]].to_numpy(np.float64)
    distance, nearest = cKDTree(top * scale).query(at * scale)
    on = (distance <= PLATEAU_REACH_SIGMAS) & (size[plateau[nearest]] >= MIN_CLIPPED_VOXELS)
    rows, which = np.flatnonzero(on), plateau[nearest[on]]
    out = [none]
    for p in np.unique(which):
        members = rows[which == p]
        first, second = np.triu_indices(members.size, 1)
        out.append(np.stack([members[first], members[second]], axis=1))
    return np.concatenate(out).astype(np.int64)


def axial_lobe_pairs(spots: pd.DataFrame, *, spacing, spot_sigma_um) -> np.ndarray:
    """Pairs of spots that are one molecule seen through a PSF with two maxima along z.

    An objective used deeper in a sample than it is corrected for (strong
    spherical aberration) draws each molecule as a column with two or three
    maxima along the optical axis, 0.5-2 µm apart: every molecule becomes two
    spots at the same offset. The image says so itself: pairs of spots lying
    on one axis (within :data:`LOBE_LATERAL_SIGMAS` lateral spot sigmas) at
    that depth outnumber, many times over, the pairs chance puts at the same
    depth a little farther aside (an annulus :data:`LOBE_CONTROL_AREA` times
    the disc's area, which crowds, clusters and close pairs of molecules fill
    about as much). Depth bins one axial spot sigma wide between
    :data:`LOBE_DEPTH_SIGMAS` hold lobes when their pairs number at least
    :data:`LOBE_EXCESS` times chance and 5 Poisson SDs above it (the bins
    beside them, :data:`LOBE_EDGE_SDS` SDs: a PSF that changes with depth
    spreads its lobes over neighbouring bins), and the
    bins' excess over chance reaches :data:`LOBE_MIN_SHARE` of the spots (at
    least :data:`LOBE_MIN_PAIRS`). The pairs on one axis in those bins are
    returned, to be grown into one object (:func:`grow_objects`,
    ``joined``). A Gaussian or mildly aberrated PSF makes no such pairs, and
    nothing is returned (on sim-fish images through the ideal and the
    0.2-wave PSF, 0 or 1 pair per bin where chance puts 0.1-0.9; through 0.35
    waves, 50-115 pairs per bin at 0.44-1.3 µm, from 802 spots of 455
    molecules).

    Parameters
    ----------
    spots : DataFrame
        Sub-voxel positions ``z``, ``y``, ``x`` (voxels).
    spacing : float or sequence of 3 floats
        Microns per voxel (z, y, x).
    spot_sigma_um : (float, float)
        The spot's sigma (axial, lateral), µm.

    Returns
    -------
    (K, 2) ndarray of int
        Row numbers (0-based) of `spots`, one pair per row; empty when the
        image shows no lobes.

    Examples
    --------
    Forty molecules, each with a lobe 0.8 µm below it, and forty more
    without:

    >>> rng = np.random.default_rng(0)
    >>> at = rng.uniform([2, 5, 5], [28, 250, 250], (80, 3))
    >>> lobe = at[:40] + [0.8 / 0.3, 0.2, 0.0]
    >>> spots = pd.DataFrame(np.vstack([at, lobe]), columns=["z", "y", "x"])
    >>> pairs = axial_lobe_pairs(spots, spacing=(0.3, 0.11, 0.11), spot_sigma_um=(0.22, 0.08))
    >>> len(pairs), bool(np.all(pairs[:, 1] - pairs[:, 0] == 80))
    (40, True)
    >>> len(axial_lobe_pairs(spots[:80], spacing=(0.3, 0.11, 0.11), spot_sigma_um=(0.22, 0.08)))
    0
    """
    empty = np.zeros((0, 2), dtype=np.int64)
    pairs, depth, lobe = _lobe_bins(spots, spacing, spot_sigma_um)
    if not lobe.any():
        return empty
    low = LOBE_DEPTH_SIGMAS[0]
    in_range = (depth >= low) & (depth < low + lobe.size)
    chosen = np.zeros(len(pairs), dtype=bool)
    chosen[in_range] = lobe[np.floor(depth[in_range] - low).astype(np.int64)]
    return pairs[chosen].astype(np.int64)


def axial_lobe_depths(spots: pd.DataFrame, *, spacing, spot_sigma_um) -> np.ndarray:
    """The depths (µm along z) at which the image's spots show a PSF's axial lobes.

    The depth bins of :func:`axial_lobe_pairs` that hold lobes, as ranges of
    the axial distance between a spot and its lobe: empty when the image shows
    none (a Gaussian or mildly aberrated PSF). :func:`find_flank_spots` takes
    a granule's own lobes, on its axis at these depths, for no molecule.

    Parameters
    ----------
    spots : DataFrame
        Sub-voxel positions ``z``, ``y``, ``x`` (voxels).
    spacing : float or sequence of 3 floats
        Microns per voxel (z, y, x).
    spot_sigma_um : (float, float)
        The spot's sigma (axial, lateral), µm.

    Returns
    -------
    (K, 2) ndarray of float
        Each lobe bin's (nearest, farthest) axial distance, µm.

    Examples
    --------
    Forty molecules, each with a lobe 0.8 µm below it, and forty more
    without: the lobes lie in the bin of 3-4 axial sigmas (0.66-0.88 µm).

    >>> rng = np.random.default_rng(0)
    >>> at = rng.uniform([2, 5, 5], [28, 250, 250], (80, 3))
    >>> lobe = at[:40] + [0.8 / 0.3, 0.2, 0.0]
    >>> spots = pd.DataFrame(np.vstack([at, lobe]), columns=["z", "y", "x"])
    >>> axial_lobe_depths(spots, spacing=(0.3, 0.11, 0.11), spot_sigma_um=(0.22, 0.08)).round(2)
    array([[0.66, 0.88]])
    """
    _, _, lobe = _lobe_bins(spots, spacing, spot_sigma_um)
    near = LOBE_DEPTH_SIGMAS[0] + np.flatnonzero(lobe).astype(np.float64)
    return np.stack([near, near + 1.0], axis=1) * float(spot_sigma_um[0])


def _lobe_bins(spots, spacing, spot_sigma_um):
    """:func:`axial_lobe_pairs`'s count: the pairs of spots on one axis (rows of `spots`),
    their depths (axial spot sigmas) and, per depth bin from ``LOBE_DEPTH_SIGMAS[0]``,
    whether it holds lobes (none when the image shows none)."""
    edges = np.arange(LOBE_DEPTH_SIGMAS[0], LOBE_DEPTH_SIGMAS[1] + 0.5)
    none = (np.zeros((0, 2), dtype=np.int64), np.zeros(0), np.zeros(edges.size - 1, bool))
    if len(spots) < 2:
        return none
    at = spots[["z", "y", "x"]].to_numpy(np.float64) * normalize_spacing(spacing)
    axial, lateral = float(spot_sigma_um[0]), float(spot_sigma_um[1])
    disc = LOBE_LATERAL_SIGMAS * lateral
    pairs = cKDTree(at[:, 1:]).query_pairs(disc * math.sqrt(1.0 + LOBE_CONTROL_AREA),
                                           output_type="ndarray")
    if len(pairs) == 0:
        return none
    on_axis = np.hypot(*(at[pairs[:, 0], 1:] - at[pairs[:, 1], 1:]).T) <= disc
    depth = np.abs(at[pairs[:, 0], 0] - at[pairs[:, 1], 0]) / axial
    pairs_in_bin = np.histogram(depth[on_axis], edges)[0]
    chance = np.histogram(depth[~on_axis], edges)[0] / LOBE_CONTROL_AREA
    spread = np.sqrt(chance + 1.0)
    edge = (pairs_in_bin >= LOBE_EXCESS * chance) & (pairs_in_bin >= chance + LOBE_EDGE_SDS * spread)
    lobe = edge & (pairs_in_bin >= chance + 5.0 * spread)
    # Each run of neighbouring edge bins that holds a lobe bin is lobes, whole.
    runs = ndimage.label(edge)[0]
    lobe = np.isin(runs, runs[lobe])
    excess = float((pairs_in_bin - chance)[lobe].sum())
    if not lobe.any() or excess < max(LOBE_MIN_PAIRS, LOBE_MIN_SHARE * len(spots)):
        return none
    return pairs[on_axis], depth[on_axis], lobe


#: :func:`drop_explained_spots`: the far field of the typical spot is measured this far
#: from its peak (µm, axial and lateral) ...
EXPLAINED_REACH_UM = (2.4, 1.5)
#: ... beyond this many spot sigmas (an ellipsoid; nearer, the spot's own core, where the
#: other steps tell molecules apart), ...
EXPLAINED_CORE_SIGMAS = 3.0
#: ... and leaving out the voxels within this many spot sigmas (a box) of any spot.
EXPLAINED_TAKEN_SIGMAS = 2.0
#: ... from at most this many spots of typical brightness (at least EXPLAINED_MIN_SPOTS).
EXPLAINED_PROFILE_SPOTS = 400
EXPLAINED_MIN_SPOTS = 20
#: Only spots at least this many times as bright (filtered peak) lend their far field.
EXPLAINED_RATIO = 2.0
#: The far field is taken at this many times the typical spot's median: the rings of a
#: granule are lumpy (its molecules' rings, a little apart) and the median of a few hundred
#: spots is noisy. On sim-fish images through a 0.35-wave PSF (three images; without the
#: significance test below), molecules summed +7.5% at 1, +3.2% at 2, +1.0% at 3; through
#: 0.2 waves +2.4 / +2.4 / +2.3%.
EXPLAINED_MARGIN = 2.0
#: The far field counts where its median is this many standard errors above 0 (elsewhere
#: it is noise: a Gaussian PSF's far field is 0, and the median of a few hundred spots'
#: values there still varies by a few hundredths of a spot). On four stacks of this
#: package's simulator at SNR 5 (Gaussian PSF), 0 / 1 / 41 spots were left out at 3 / 2 / 0
#: (0 is no test), on sim-fish images through 0.35 waves molecules summed +3.7% at 2,
#: +3.2% at 0.
EXPLAINED_SIGNIFICANCE = 2.0
#: A spot with a spot this many times as bright within reach is in its far field: not one
#: of the spots the far field is measured on.
EXPLAINED_SHADOW_RATIO = 3.0


def _far_field(filtered: np.ndarray, index: np.ndarray, amplitude: np.ndarray,
               lone: np.ndarray, offsets: np.ndarray, taken: np.ndarray) -> np.ndarray | None:
    """The typical spot's far field at each of `offsets` (voxels, unique rows): the median
    of ``filtered`` at that offset from the peak of the typical `lone` spots
    (:func:`_typical`; up to :data:`EXPLAINED_PROFILE_SPOTS` of them), over their
    amplitude, counting the spots for which the offset lies in the stack and off the
    `taken` voxels (another spot's core), if at least :data:`EXPLAINED_MIN_SPOTS` and
    :data:`EXPLAINED_SIGNIFICANCE` standard errors above 0 (0 otherwise). None from too
    few spots."""
    rows = np.flatnonzero(lone)
    rows = rows[_typical(amplitude[rows])]
    if rows.size < EXPLAINED_MIN_SPOTS:
        return None
    rows = rows[np.linspace(0, rows.size - 1, min(rows.size, EXPLAINED_PROFILE_SPOTS)).astype(int)]
    # Offsets past the stack's faces count for no spot (thin stacks keep their spots), nor
    # those in another spot's core: its light, not the spot's far field.
    middle, counted, spread = _spot_medians(filtered, index[rows], amplitude[rows], offsets,
                                            taken)
    # The median's standard error, from the interquartile range (1.349 SDs of a normal
    # spread): a median not clear of 0 by EXPLAINED_SIGNIFICANCE of them is noise, not light.
    error = 1.2533 * spread / 1.349 / np.sqrt(np.maximum(counted, 1))
    clear = (counted >= EXPLAINED_MIN_SPOTS) & (middle > EXPLAINED_SIGNIFICANCE * error)
    return np.where(clear, middle, 0.0)


def drop_explained_spots(filtered: np.ndarray, noise: np.ndarray, spots: pd.DataFrame,
                         threshold: float, *, spacing, spot_sigma_um,
                         lobes: np.ndarray | None = None,
                         threads: int | None = None) -> tuple[pd.DataFrame, np.ndarray | None]:
    """Leave out spots that are the far field of brighter spots, as the image's own spots show it.

    A strongly aberrated PSF puts a tenth of a molecule's light or more in
    rings and lobes a micron or two from its peak. A single molecule's rings
    stay under the threshold, but a granule's pass it and break into spots:
    on sim-fish images through a 0.35-wave PSF (three images, 18 granules)
    they made 309 objects holding no molecule, read as 210 molecules (+15%
    of the total). The far field is measured on the image: the median, over
    up to :data:`EXPLAINED_PROFILE_SPOTS` spots of typical brightness with no
    spot :data:`EXPLAINED_SHADOW_RATIO` times as bright within reach (and not
    the fainter of a lobe pair), of ``filtered`` at each offset up to
    :data:`EXPLAINED_REACH_UM` from the peak, over the spot's peak, beyond
    :data:`EXPLAINED_CORE_SIGMAS` spot sigmas (the spot itself; per axis the
    larger of `spot_sigma_um` and the shape :func:`spot_shape` measures),
    leaving out the voxels within :data:`EXPLAINED_TAKEN_SIGMAS` sigmas (a
    box) of any spot: a neighbour's light is not the spot's far field, however
    regular the neighbours. Where the median is not
    :data:`EXPLAINED_SIGNIFICANCE` standard errors above 0, the far field is 0.
    A spot is left out when its peak, less :data:`EXPLAINED_MARGIN` times the
    far field of every spot at least :data:`EXPLAINED_RATIO` times as bright,
    scaled to their peaks, falls under `threshold` noise SDs: without their
    light it would not have been found. A Gaussian PSF has no far field: on
    the demo's images and the ideal PSF's nearly nothing is left out. The
    spots of `lobes` (:func:`axial_lobe_pairs`) are kept: they are grown into
    their molecule's object.

    Parameters
    ----------
    filtered : (Z, Y, X) ndarray of float
        :func:`remove_background`'s output.
    noise : (Z, Y, X) ndarray of float
        :func:`local_noise`'s output.
    spots : DataFrame
        The spots (``zi``, ``yi``, ``xi``, ...).
    threshold : float
        The detection threshold, noise SDs.
    spacing : float or sequence of 3 floats
        Microns per voxel (z, y, x).
    spot_sigma_um : (float, float)
        The spot's sigma (axial, lateral), µm.
    lobes : (K, 2) ndarray of int, optional
        :func:`axial_lobe_pairs` of `spots`.
    threads : int, optional
        Threads for the box filter marking the spots' cores; None: every core
        this process may use.

    Returns
    -------
    spots : DataFrame
        Without those left out, in their order (numbered from 0 again when any is).
    lobes : (K, 2) ndarray of int or None
        `lobes` numbered as the returned spots.

    Examples
    --------
    Forty spots of amplitude 10 whose image has a ring of 0.1 of their peak 1.2
    µm above them, a granule of amplitude 200 with such a ring, and a spot of
    amplitude 25 on its ring (the ring's light, 20, over a noise of 1):

    >>> shape, ring = (30, 200, 200), (4, 0, 8)
    >>> at = [(8, y, x) for y in range(20, 181, 20) for x in range(20, 181, 20)][:40]
    >>> filtered = np.zeros(shape)
    >>> for (z, y, x), peak in zip(at + [(12, 100, 100)], [10.0] * 40 + [200.0]):
    ...     filtered[z, y, x] = peak
    ...     filtered[z + ring[0], y + ring[1], x + ring[2]] += 0.1 * peak
    >>> filtered[16, 100, 108] = 25.0
    >>> spots = pd.DataFrame(at + [(12, 100, 100), (16, 100, 108)], columns=["zi", "yi", "xi"])
    >>> kept, _ = drop_explained_spots(filtered, np.ones(shape), spots, 4.6,
    ...                                spacing=(0.3, 0.11, 0.11), spot_sigma_um=(0.22, 0.08))
    >>> len(spots) - len(kept), (16, 100, 108) in map(tuple, kept.to_numpy())
    (1, False)
    """
    if len(spots) < EXPLAINED_MIN_SPOTS:
        return spots, lobes
    scale = normalize_spacing(spacing)
    index = spots[["zi", "yi", "xi"]].to_numpy()
    amplitude = np.asarray(filtered, dtype=np.float64)[tuple(index.T)]
    in_lobe = np.zeros(len(spots), dtype=bool)
    lone = np.ones(len(spots), dtype=bool)
    if lobes is not None and len(lobes):
        in_lobe[lobes.ravel()] = True
        first, second = lobes.T
        lone[np.where(amplitude[first] < amplitude[second], first, second)] = False
    pairs = cKDTree(index * scale).query_pairs(float(np.hypot(*EXPLAINED_REACH_UM)),
                                               output_type="ndarray")
    faint, bright = np.r_[pairs[:, 0], pairs[:, 1]], np.r_[pairs[:, 1], pairs[:, 0]]
    lone[faint[amplitude[bright] >= EXPLAINED_SHADOW_RATIO * amplitude[faint]]] = False
    # The pairs that may lend light: the brighter one at least EXPLAINED_RATIO times as
    # bright, the offset within the reach and beyond the spot's core.
    reach = np.ceil(np.array([EXPLAINED_REACH_UM[0], EXPLAINED_REACH_UM[1],
                              EXPLAINED_REACH_UM[1]]) / scale).astype(int)
    # The spot's core: its shape as measured on the image where it is wider than the
    # workflow's spot sigma (a wider PSF's own tail, or a neighbour in it, is no far field).
    sigma = np.array([spot_sigma_um[0], spot_sigma_um[1], spot_sigma_um[1]]) / scale
    measured = spot_shape(filtered, spots)
    if measured is not None:
        sigma = np.maximum(sigma, measured)
    core = np.ceil(EXPLAINED_TAKEN_SIGMAS * sigma).astype(int)
    offset = index[faint] - index[bright]
    lends = ((amplitude[bright] >= EXPLAINED_RATIO * amplitude[faint])
             & np.all(np.abs(offset) <= reach, axis=1)
             & (np.sqrt(((offset / sigma) ** 2).sum(axis=1)) > EXPLAINED_CORE_SIGMAS))
    if not lends.any():
        return spots, lobes
    faint, bright = faint[lends], bright[lends]
    offsets, which = np.unique(offset[lends], axis=0, return_inverse=True)
    taken = _near_spots(np.shape(filtered), tuple(index.T), core, thread_count(threads))
    field = _far_field(filtered, index, amplitude, lone, offsets, taken)
    if field is None:
        return spots, lobes
    far_field = np.zeros(len(spots))
    np.add.at(far_field, faint, amplitude[bright] * field[which.ravel()])
    left = ((amplitude - EXPLAINED_MARGIN * far_field)
            / np.asarray(noise, dtype=np.float64)[tuple(index.T)])
    drop = (far_field > 0) & (left < threshold) & ~in_lobe
    if not drop.any():
        return spots, lobes
    if lobes is not None and len(lobes):
        lobes = (np.cumsum(~drop) - 1)[lobes]
    return spots[~drop].reset_index(drop=True), lobes
