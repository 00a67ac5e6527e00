"""Simulated scenes shared by the test files (rendered by ``rna_localization.synthetic``)."""

from __future__ import annotations

import numpy as np

from rna_localization.synthetic import PRESETS
from rna_localization.synthetic.rendering import render_molecules

#: The isolated scene's flat background, counts; a molecule's peak is 8 noise SDs above it.
BACKGROUND = 3300.0
#: A molecule's peak above the background, counts.
PEAK = 8 * np.sqrt(BACKGROUND)


def isolated_scene(preset, rng, shape=None):
    """Single molecules and granules of 4-15 molecules in 0.25 µm balls, each ~1.8 µm from
    the next, on a flat background of 3,300 counts; a molecule's peak 8 noise SDs.
    Drawn from `rng`. Returns the noise-free light (background included), the molecules'
    voxel positions, each one's site, whether each site is a granule, the spacing and the
    PSF."""
    spacing = np.asarray(PRESETS[preset].spacing)
    psf = PRESETS[preset].psf_sigma_um
    if shape is None:  # about 9 x 28 x 28 µm on either grid
        shape = {"widefield": (30, 256, 256), "confocal": (46, 432, 432)}[preset]
    step = np.ceil(np.array([1.8, 1.76, 1.76]) / spacing).astype(int)  # sites ~1.8 µm apart
    sites = np.stack(np.meshgrid(*(np.arange(s, n - s + 1, s) for s, n in zip(step, shape)),
                                 indexing="ij"), -1).reshape(-1, 3).astype(float)
    sites += rng.uniform(-0.5, 0.5, sites.shape)
    granule = rng.random(len(sites)) < 0.3
    positions, owner = [], []
    for k, (centre, is_granule) in enumerate(zip(sites, granule)):
        if is_granule:
            n = rng.integers(4, 16)
            direction = rng.normal(size=(n, 3))
            direction /= np.linalg.norm(direction, axis=1, keepdims=True)
            points = centre + direction * (0.25 * rng.random(n) ** (1 / 3))[:, None] / spacing
        else:
            points = centre[None]
        positions.append(points)
        owner += [k] * len(points)
    positions, owner = np.concatenate(positions), np.array(owner)
    light = render_molecules(positions, np.full(len(positions), PEAK), owner,
                             granule, shape, spacing, psf)[0].reshape(shape)
    return light + BACKGROUND, positions, owner, granule, spacing, psf


def depth_aberrated_spots(rng, spacing, axial_um=(0.3, 0.6), lateral_um=0.1, planes=36,
                          grid=12, step_px=12, background=100.0, light=4000.0):
    """Single molecules whose PSF widens with depth, as through spherical aberration that
    grows with every micron: the axial sigma goes linearly from ``axial_um[0]`` at the
    first plane to ``axial_um[1]`` at the last, the light of each molecule the same (its
    peak falls as it widens). One molecule per point of a `grid` x `grid` lateral lattice
    `step_px` pixels apart, their planes going round the stack's depth in lattice order;
    Poisson noise on a flat background. Returns the raw stack (uint16), the masks (each
    molecule's voxels at half its own peak or more, labels in lattice order) and each
    molecule's (plane, axial sigma in µm)."""
    spacing = np.asarray(spacing, np.float64)
    size = grid * step_px + step_px
    shape = (planes, size, size)
    light_map = np.full(shape, background)
    labels = np.zeros(shape, np.int32)
    levels = np.linspace(2, planes - 3, 7)
    truth = []
    for k in range(grid * grid):
        y, x = (np.array(divmod(k, grid)) + 1) * step_px + rng.uniform(-0.5, 0.5, 2)
        z = levels[k % levels.size] + rng.uniform(-0.5, 0.5)
        sigma_z = axial_um[0] + (axial_um[1] - axial_um[0]) * z / (planes - 1)
        # The molecule's light within 5 sigmas (the rest is under 4e-6 of its peak).
        reach = np.ceil(5 * np.array([sigma_z, lateral_um, lateral_um]) / spacing).astype(int)
        box = tuple(slice(max(int(c) - r, 0), min(int(c) + r + 1, n))
                    for c, r, n in zip((z, y, x), reach, shape))
        zz, yy, xx = np.ogrid[box]
        form = (((zz - z) * spacing[0] / sigma_z) ** 2
                + (((yy - y) * spacing[1]) ** 2 + ((xx - x) * spacing[2]) ** 2) / lateral_um ** 2)
        volume = (2 * np.pi) ** 1.5 * sigma_z * lateral_um ** 2 / spacing.prod()  # in voxels
        light_map[box] += light / volume * np.exp(-0.5 * form)
        labels[box][form <= 2 * np.log(2)] = k + 1
        truth.append((z, sigma_z))
    raw = np.clip(rng.poisson(light_map), 0, np.iinfo(np.uint16).max).astype(np.uint16)
    return raw, labels, np.array(truth)
