"""Noise-free images: molecules and centrosomes through the PSF, the background, ideal masks.

Every function returns expected photoelectrons per voxel (float); the camera
(:mod:`.camera`) adds the noise. Voxel coordinates are ``(z, y, x)`` indices.
"""

from __future__ import annotations

import numpy as np
import scipy.fft
from scipy import ndimage
from scipy.special import ndtr

from . import model
from .model import Microscope

__all__ = ["background", "relabel", "render_centrosomes", "render_molecules", "resolve_labels",
           "smooth_random_field"]

# Sub-voxel samples per axis for the partial volumes of centrosome balls.
_SUBSAMPLES = 3


def _half_widths(sigma_vox) -> np.ndarray:
    return np.ceil(model.PSF_TRUNCATION * np.asarray(sigma_vox)).astype(np.int64)


def _gaussian_boxes(centres, sigma_vox, shape):
    """Sampled Gaussians of many spots, each in its own small box.

    Returns ``flat`` (N, B) flat voxel indices (0 outside the volume),
    ``relative`` (N, B) float32 Gaussian over its peak (1 at the centre) and
    ``valid`` (N, B) entries inside the volume.
    """
    half = _half_widths(sigma_vox)
    base = np.rint(centres).astype(np.int64)
    profiles, indices, inside = [], [], []
    for axis in range(3):
        offsets = np.arange(-half[axis], half[axis] + 1)
        index = base[:, axis : axis + 1] + offsets
        profiles.append(
            np.exp(-0.5 * ((index - centres[:, axis : axis + 1]) / sigma_vox[axis]) ** 2)
            .astype(np.float32)
        )
        indices.append(index)
        inside.append((index >= 0) & (index < shape[axis]))
    n = len(centres)
    relative = (
        profiles[0][:, :, None, None] * profiles[1][:, None, :, None] * profiles[2][:, None, None, :]
    ).reshape(n, -1)
    valid = (inside[0][:, :, None, None] & inside[1][:, None, :, None]
             & inside[2][:, None, None, :]).reshape(n, -1)
    flat = ((indices[0][:, :, None, None] * shape[1] + indices[1][:, None, :, None]) * shape[2]
            + indices[2][:, None, None, :]).reshape(n, -1)
    flat = np.where(valid, flat, 0)
    return flat, relative, valid


def render_molecules(positions, amplitudes, owners, is_granule, shape, spacing, sigma_um):
    """Expected photoelectrons of all molecules and the ideal-mask candidates.

    Parameters
    ----------
    positions : (N, 3) ndarray
        Molecule centres, voxel coordinates.
    amplitudes : (N,) ndarray
        Peak of each molecule's noise-free Gaussian, photoelectrons.
    owners : (N,) ndarray of int
        Object index of each molecule.
    is_granule : (n_objects,) ndarray of bool
    shape, spacing, sigma_um
        Volume shape, voxel size and PSF sigmas (µm).

    Returns
    -------
    image : (prod(shape),) ndarray of float64
    flat, value, owner : ndarray
        Candidate voxels of every object's half-maximum region, with the
        object's own noise-free value there. Single molecules use their
        continuous Gaussian peak; granules the largest value of their summed
        profile on the voxel grid.
    """
    size = int(np.prod(shape))
    image = np.zeros(size, dtype=np.float64)
    sigma_vox = np.asarray(sigma_um) / spacing
    cand_flat, cand_value, cand_owner = [], [], []
    gran_flat, gran_value, gran_owner = [], [], []
    chunk = 2048
    for start in range(0, len(positions), chunk):
        stop = start + chunk
        flat, relative, valid = _gaussian_boxes(positions[start:stop], sigma_vox, shape)
        values = relative * amplitudes[start:stop, None].astype(np.float32)
        image += np.bincount(flat[valid], weights=values[valid], minlength=size)
        owner = owners[start:stop]
        single = ~is_granule[owner]
        pick = valid & single[:, None] & (relative >= model.IDEAL_MASK_FRACTION)
        rows = np.nonzero(pick)[0]
        cand_flat.append(flat[pick])
        cand_value.append(values[pick])
        cand_owner.append(owner[rows])
        pick = valid & ~single[:, None]
        rows = np.nonzero(pick)[0]
        gran_flat.append(flat[pick])
        gran_value.append(values[pick])
        gran_owner.append(owner[rows])
    if gran_flat and sum(len(g) for g in gran_flat):
        key_owner = np.concatenate(gran_owner)
        key = key_owner * size + np.concatenate(gran_flat)
        unique, inverse = np.unique(key, return_inverse=True)
        summed = np.bincount(inverse, weights=np.concatenate(gran_value).astype(np.float64))
        owner = unique // size
        starts = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])
        peak = np.maximum.reduceat(summed, starts)
        peak = np.repeat(peak, np.diff(np.r_[starts, owner.size]))
        keep = summed >= model.IDEAL_MASK_FRACTION * peak
        cand_flat.append(unique[keep] % size)
        cand_value.append(summed[keep])
        cand_owner.append(owner[keep])
    return (
        image,
        np.concatenate(cand_flat) if cand_flat else np.zeros(0, np.int64),
        np.concatenate(cand_value).astype(np.float64) if cand_value else np.zeros(0),
        np.concatenate(cand_owner) if cand_owner else np.zeros(0, np.int64),
    )


def render_centrosomes(centres_um, radii_um, peaks, shape, spacing, sigma_um):
    """Uniform balls blurred by the PSF, each scaled to its peak, rendered box by box.

    `peaks` are the blurred balls' largest values (photoelectrons). Returns
    the flat expected image and the half-maximum candidates as in
    :func:`render_molecules`.
    """
    size = int(np.prod(shape))
    image = np.zeros(size, dtype=np.float64)
    sigma_vox = np.asarray(sigma_um) / spacing
    cand_flat, cand_value, cand_owner = [], [], []
    sub = (np.arange(_SUBSAMPLES) - (_SUBSAMPLES - 1) / 2) / _SUBSAMPLES
    for index, (centre_um, radius, peak) in enumerate(zip(centres_um, radii_um, peaks,
                                                          strict=True)):
        centre = centre_um / spacing
        half = np.ceil((radius + model.PSF_TRUNCATION * np.asarray(sigma_um)) / spacing).astype(int)
        base = np.rint(centre).astype(int)
        axes = [np.arange(base[a] - half[a], base[a] + half[a] + 1) for a in range(3)]
        # Partial volumes: the fraction of sub-voxel samples inside the ball.
        fine = [((a[:, None] + sub).ravel() - centre[i]) * spacing[i] for i, a in enumerate(axes)]
        inside_ball = (fine[0][:, None, None] ** 2 + fine[1][None, :, None] ** 2
                       + fine[2][None, None, :] ** 2) <= radius**2
        box_shape = tuple(len(a) for a in axes)
        coverage = inside_ball.reshape(
            box_shape[0], _SUBSAMPLES, box_shape[1], _SUBSAMPLES, box_shape[2], _SUBSAMPLES
        ).mean(axis=(1, 3, 5))
        blurred = ndimage.gaussian_filter(coverage, sigma_vox, mode="constant",
                                          truncate=model.PSF_TRUNCATION)
        blurred *= peak / blurred.max()
        # Clip the box to the volume.
        lo = [max(0, -int(a[0])) for a in axes]
        hi = [len(a) - max(0, int(a[-1]) - (shape[i] - 1)) for i, a in enumerate(axes)]
        blurred_in = blurred[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
        flat = (((axes[0][lo[0]:hi[0], None, None] * shape[1]) + axes[1][None, lo[1]:hi[1], None])
                * shape[2] + axes[2][None, None, lo[2]:hi[2]]).ravel()
        values = blurred_in.ravel()
        image[flat] += values  # indices are unique within one box
        keep = values >= model.IDEAL_MASK_FRACTION * blurred.max()
        cand_flat.append(flat[keep])
        cand_value.append(values[keep])
        cand_owner.append(np.full(int(keep.sum()), index, dtype=np.int64))
    if not cand_flat:
        return image, np.zeros(0, np.int64), np.zeros(0), np.zeros(0, np.int64)
    return image, np.concatenate(cand_flat), np.concatenate(cand_value), np.concatenate(cand_owner)


def resolve_labels(flat, value, owner, shape):
    """Label image (object index + 1) where each voxel goes to its brightest claimant."""
    labels = np.zeros(int(np.prod(shape)), dtype=np.int64)
    if flat.size:
        order = np.lexsort((-value, flat))
        flat, owner = flat[order], owner[order]
        first = np.flatnonzero(np.r_[True, flat[1:] != flat[:-1]])
        labels[flat[first]] = owner[first] + 1
    return labels.reshape(shape)


def relabel(labels):
    """Labels renumbered 1..n in order of their old values; returns (image, old ids)."""
    counts = np.bincount(labels.ravel())
    present = np.flatnonzero(counts)
    present = present[present != 0]
    lookup = np.zeros(counts.size, dtype=np.int64)
    lookup[present] = np.arange(1, present.size + 1)
    return lookup[labels], present


def smooth_random_field(rng, shape, spacing, length_um) -> np.ndarray:
    """A smooth Gaussian random field of mean 0 and standard deviation 1.

    White noise filtered by a Gaussian of standard deviation `length_um`
    (one value, or one per (z, y, x) axis) in Fourier space; the field wraps
    around the volume's edges.

    Returns
    -------
    (Z, Y, X) ndarray of float32
    """
    sigma = np.broadcast_to(np.asarray(length_um, dtype=np.float64), (3,)) / np.asarray(spacing)
    noise = rng.standard_normal(shape, dtype=np.float32)
    spectrum = scipy.fft.rfftn(noise, workers=-1)
    transfer = np.ones((1, 1, 1), dtype=np.float32)
    for axis, n in enumerate(shape):
        frequency = (scipy.fft.rfftfreq(n) if axis == 2 else scipy.fft.fftfreq(n))
        factor = np.exp(-2.0 * (np.pi * frequency * sigma[axis]) ** 2).astype(np.float32)
        transfer = transfer * factor.reshape([-1 if a == axis else 1 for a in range(3)])
    field = scipy.fft.irfftn(spectrum * transfer, s=shape, workers=-1).astype(np.float32)
    field -= field.mean()
    sd = float(field.std())
    if sd > 0:
        field /= np.float32(sd)
    return field


def background(rng, shape, spacing, microscope: Microscope) -> np.ndarray:
    """Expected background photoelectrons per voxel, as a real microscope sees it.

    The sum of

    - cell autofluorescence below the embryo surface (a fraction
      :data:`~.model.OUTSIDE_AUTOFLUORESCENCE` of it above), varying smoothly
      by :data:`~.model.AUTOFLUORESCENCE_VARIATION` over
      :data:`~.model.AUTOFLUORESCENCE_LENGTH_UM`;
    - out-of-focus haze varying by :data:`~.model.HAZE_VARIATION` over
      several microns;
    - a few bright out-of-focus blobs (cells or yolk above or below the
      field), Poisson-many per field;
    - a fine texture of autofluorescence (grainy at
      :data:`~.model.TEXTURE_LENGTH_UM`) whose standard deviation is
      ``microscope.texture`` times the local shot noise.

    Returns
    -------
    (Z, Y, X) ndarray of float32
        Non-negative.
    """
    spacing = np.asarray(spacing, dtype=np.float64)
    depth = np.arange(shape[0]) * spacing[0]
    step = ndtr((depth - model.SURFACE_DEPTH_UM) / model.SURFACE_BLUR_UM)
    inside = model.OUTSIDE_AUTOFLUORESCENCE + (1 - model.OUTSIDE_AUTOFLUORESCENCE) * step
    auto = smooth_random_field(rng, shape, spacing, model.AUTOFLUORESCENCE_LENGTH_UM)
    auto *= np.float32(model.AUTOFLUORESCENCE_VARIATION)
    auto += np.float32(1.0)
    np.maximum(auto, np.float32(0.2), out=auto)
    auto *= (microscope.autofluorescence * inside).astype(np.float32)[:, None, None]
    haze = smooth_random_field(rng, shape, spacing, (model.HAZE_LENGTH_UM[1],
                                                     *[model.HAZE_LENGTH_UM[0]] * 2))
    haze *= np.float32(model.HAZE_VARIATION)
    haze += np.float32(1.0)
    np.maximum(haze, np.float32(0.1), out=haze)
    haze *= np.float32(microscope.haze)
    total = auto
    total += haze
    del haze
    extent = (np.asarray(shape) - 1) * spacing
    area = extent[1] * extent[2]
    for _ in range(rng.poisson(microscope.blobs_per_100um2 * area / 100.0)):
        centre = rng.uniform([-2.0, 0.0, 0.0], [extent[0] + 2.0, extent[1], extent[2]])
        sigma = np.array([model.BLOB_SIGMA_Z_UM, *[rng.uniform(*model.BLOB_SIGMA_XY_UM)] * 2])
        height = rng.uniform(*model.BLOB_HEIGHT) * microscope.background
        profiles = [np.exp(-0.5 * ((np.arange(n) * spacing[a] - centre[a]) / sigma[a]) ** 2)
                    .astype(np.float32) for a, n in enumerate(shape)]
        total += np.float32(height) * (profiles[0][:, None, None] * profiles[1][None, :, None]
                                       * profiles[2][None, None, :])
    texture = smooth_random_field(rng, shape, spacing, model.TEXTURE_LENGTH_UM)
    texture *= np.sqrt(total) * np.float32(microscope.texture)
    total += texture
    np.maximum(total, np.float32(0.0), out=total)
    return total
