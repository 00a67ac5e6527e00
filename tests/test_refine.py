"""Masks cut again at each object's own peak above the light around it (segmentation.refine)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from scipy.spatial import cKDTree

from rna_localization import synthetic
from rna_localization.segmentation import SegmentationParams, segment
from rna_localization.segmentation.refine import REFINE_GROW, REFINE_SHELL, refine_to_own_peak

FACE = ndimage.generate_binary_structure(3, 1)


def _brute_force(labels, image, sigma, fraction, grow, shell):
    """The same definition over the whole image, with distances from a KD-tree."""
    inner, outer = shell
    scaled = np.indices(labels.shape).reshape(3, -1).T / np.asarray(sigma)
    flat_labels, flat_image = labels.ravel(), image.ravel().astype(np.float64)
    out = np.zeros(labels.size, np.int32)
    for index in range(1, labels.max() + 1):
        own = flat_labels == index
        if not own.any():
            continue
        to_own = cKDTree(scaled[own]).query(scaled)[0]
        other = (flat_labels > 0) & ~own
        to_other = cKDTree(scaled[other]).query(scaled)[0] if other.any() else np.inf
        ring = (to_own >= inner) & (to_own <= outer)
        clear = ring & (to_other >= inner)
        ring = clear if clear.sum() >= 20 else ring
        peak = flat_image[own].max()
        background = np.median(flat_image[ring])
        keep = ((to_own <= grow) & (to_own < to_other)
                & (flat_image >= background + fraction * (peak - background)))
        pieces = ndimage.label(keep.reshape(labels.shape), structure=FACE)[0].ravel()
        at = np.flatnonzero(own)[np.argmax(flat_image[own])]
        out[pieces == pieces[at]] = index
    return out.reshape(labels.shape)


def test_each_object_is_cut_as_a_brute_force_count_over_the_whole_image_cuts_it():
    # Blobs of several sizes, some close enough that their shells and reaches meet, on a
    # sloping background with noise; the masks to refine are cut too small and too large.
    rng = np.random.default_rng(7)
    shape = (24, 70, 90)
    sigma = (1.3, 2.2, 2.2)
    z, y, x = np.indices(shape)
    image = 50 + 0.4 * x + 0.2 * z + rng.normal(0, 3, shape)
    centres = [(8, 20, 20, 2.0), (12, 22, 34, 4.0), (15, 50, 60, 6.0), (6, 55, 80, 1.0),
               (18, 12, 70, 3.0)]
    for cz, cy, cx, radius in centres:
        ball = ((z - cz) ** 2 / 4 + (y - cy) ** 2 + (x - cx) ** 2) <= radius**2
        image += 300 * ndimage.gaussian_filter(ball.astype(float), sigma)
    labels = ndimage.label(ndimage.gaussian_filter(image, 1) > 95, structure=FACE)[0]
    labels[labels == 2] = 0  # one object dropped: its light stays in others' shells
    refined = refine_to_own_peak(labels, image, sigma_voxels=sigma)
    expected = _brute_force(labels, image, sigma, 0.5, REFINE_GROW, REFINE_SHELL)
    assert labels.max() >= 4
    np.testing.assert_array_equal(refined, expected)
    # Other reaches, shells and fractions: the same definition.
    for fraction, grow, shell in [(0.3, 2.0, (2.0, 3.0)), (0.7, 0.5, (1.5, 2.5))]:
        refined = refine_to_own_peak(labels, image, sigma_voxels=sigma, fraction=fraction,
                                     grow=grow, shell=shell)
        np.testing.assert_array_equal(refined, _brute_force(labels, image, sigma, fraction,
                                                            grow, shell))


@pytest.mark.parametrize("radius_um", [0.2, 0.3, 0.45])
@pytest.mark.parametrize("change", ["eroded", "dilated"])
def test_a_blurred_ball_gets_its_half_maximum_region_whatever_its_size(radius_um, change):
    # A centrosome of the widefield preset, noise-free on a flat background: the
    # half-maximum region of its own image, from a mask a voxel too small or too large.
    scope = synthetic.PRESETS["widefield"]
    spacing, psf = np.asarray(scope.spacing), np.asarray(scope.psf_sigma_um)
    shape = (30, 64, 64)
    centre = (np.asarray(shape) - 1) / 2 * spacing
    fine = 4
    grid = [(np.arange(n * fine) + 0.5) / fine * s for n, s in zip(shape, spacing, strict=True)]
    ball = ((grid[0][:, None, None] - centre[0]) ** 2 + (grid[1][None, :, None] - centre[1]) ** 2
            + (grid[2][None, None, :] - centre[2]) ** 2) <= radius_um**2
    cover = ball.reshape(shape[0], fine, shape[1], fine, shape[2], fine).mean(axis=(1, 3, 5))
    light = 200 + 1000 * ndimage.gaussian_filter(cover, psf / spacing, mode="constant")
    half = light >= 200 + 0.5 * (light.max() - 200)
    start = (ndimage.binary_erosion(half, FACE) if change == "eroded"
             else ndimage.binary_dilation(half, FACE))
    sigma = np.asarray(SegmentationParams("centrosomes").spot_sigma_um)[[0, 1, 1]] / spacing
    # A reach of two spot sigmas, for the voxel along z the eroded mask lost (0.86 sigmas).
    refined = refine_to_own_peak(start.astype(np.int32), light, sigma_voxels=sigma, grow=2) > 0
    overlap = np.count_nonzero(refined & half) / np.count_nonzero(refined | half)
    assert overlap >= 0.97, overlap
    assert abs(np.count_nonzero(refined) / np.count_nonzero(half) - 1) <= 0.03


def test_an_object_with_no_peak_above_its_surroundings_keeps_its_mask():
    image = np.full((12, 30, 30), 100.0)
    labels = np.zeros(image.shape, np.int32)
    labels[5:7, 10:14, 10:14] = 1
    np.testing.assert_array_equal(refine_to_own_peak(labels, image, sigma_voxels=(1, 2, 2)),
                                  labels)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"fraction": 1.0}, "fraction"), ({"grow": 0.0}, "grow"), ({"shell": (3.0, 2.0)}, "shell"),
    ({"sigma_voxels": (1, 0, 1)}, "sigma_voxels"),
])
def test_bad_settings_are_refused(kwargs, message):
    labels = np.zeros((5, 5, 5), np.int32)
    kwargs = {"sigma_voxels": (1, 1, 1), **kwargs}
    with pytest.raises(ValueError, match=message):
        refine_to_own_peak(labels, np.zeros((5, 5, 5)), **kwargs)
    with pytest.raises(ValueError, match="shape"):
        refine_to_own_peak(labels, np.zeros((5, 5, 6)), sigma_voxels=(1, 1, 1))


@pytest.mark.parametrize("preset", ["widefield", "confocal"])
def test_centrosome_masks_hold_each_centrosome_at_its_half_maximum_region(preset):
    """Each centrosome's mask against the half-maximum region of its own noise-free image
    (the simulator's ideal mask), over centrosomes 0.4-0.9 um across: cut in the
    background-removed image, large ones came out small and small ones large."""
    ratios = {True: [], False: []}
    for seed in (1, 2, 3):
        sim = synthetic.simulate_image(f"cen_nc14_{seed}", rna_type="cen", cycle="nc14",
                                       seed=seed, shape=(30, 256, 256), preset=preset)
        ideal = sim.centrosome_labels
        ideal_volume = np.bincount(ideal.ravel())
        for refine in (True, False):
            params = (SegmentationParams("centrosomes") if refine else
                      SegmentationParams("centrosomes", refine_masks=False, mask_smoothing=0.7))
            found = ndimage.label(segment(sim.centrosomes, params, spacing=sim.spacing) > 0,
                                  structure=FACE)[0]
            volume = np.bincount(found.ravel())
            for index in range(1, ideal_volume.size):
                voxels = np.argwhere(ideal == index)
                hit = found[tuple(voxels[np.argmax(sim.centrosomes[tuple(voxels.T)])])]
                ratios[refine].append(volume[hit] / ideal_volume[index] if hit else np.nan)
    refined, before = (np.asarray(ratios[k], float) for k in (True, False))
    assert refined.size >= 30
    assert np.isnan(refined).sum() == 0
    low, median, high = np.percentile(refined, [5, 50, 95])
    assert 0.93 <= median <= 1.08, (low, median, high)
    assert low >= 0.75, (low, median, high)
    assert high <= 1.4, (low, median, high)
    # Cut in the background-removed image (the workflow before): spread further.
    low_before, high_before = np.nanpercentile(before, [5, 95])
    assert high_before - low_before > 1.5 * (high - low), (low_before, high_before, low, high)
