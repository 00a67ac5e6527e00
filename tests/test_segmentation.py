"""Segmentation workflows, parameters, batch runs, scripts and playground notebooks.

Detection is checked against the simulator's ground truth (molecule and
centrosome positions), with metrics computed here from scipy alone.
"""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
from scipy import ndimage
from scipy.spatial import cKDTree

from rna_localization import synthetic
from rna_localization._cores import SLAB_VOXELS
from rna_localization.objects import label_objects
from rna_localization.segmentation import (
    PRESETS,
    LargeObjectsRemovedWarning,
    SegmentationParams,
    detection,
    face_noise_profile,
    find_spots,
    load_params,
    local_noise,
    microns_to_voxels,
    noise_threshold,
    remove_background,
    segment,
    segment_folder,
    segment_intermediates,
    segment_structure,
    separate_touching,
    size_filter,
    spot_shape,
    volume_to_voxels,
)

from notebook_runner import execute_notebook

ROOT = Path(__file__).resolve().parents[1]
FACE = ndimage.generate_binary_structure(3, 1)
SPACING = np.asarray(synthetic.SPACING_UM)
PSF_UM = np.asarray(synthetic.PSF_SIGMA_UM)

# Validation images: chosen before looking at their scores (the defaults were
# tuned on seeds 0-2), granule-rich ("cen") and dispersed ("gapdh") RNA, both cycles.
CASES = [("cen", cycle, seed) for cycle in ("nc13", "nc14") for seed in (10, 11, 12)] + [
    ("gapdh", "nc13", 10), ("gapdh", "nc14", 10)]


@pytest.fixture(scope="module")
def simulated():
    return [synthetic.simulate_image(f"{t}_{c}_{s}", rna_type=t, cycle=c, seed=s,
                                     shape=(30, 256, 256))
            for t, c, s in CASES]


# ------------------------------------------------------------------ metrics
def _objects(mask):
    """Face-connected objects of a mask: labels and centroids in microns."""
    labels, n = ndimage.label(np.asarray(mask) > 0, structure=FACE)
    centroids = np.array(ndimage.center_of_mass(labels > 0, labels, np.arange(1, n + 1)))
    return labels, centroids.reshape(-1, 3) * SPACING


def _clearly_resolved(points_um, brightness, granule_um, other_um):
    """True when the noise-free image dips between a granule and another molecule.

    The expected intensity (sum of every molecule's Gaussian PSF) is sampled on
    the segment from the granule's centre to the molecule; the optics resolve
    them clearly when it falls below half the molecule's own value (a deeper
    dip than Rayleigh's 74%).
    """
    t = np.linspace(0.0, 1.0, 41)[:, None]
    line = granule_um + (other_um - granule_um) * t
    d2 = (((line[:, None, :] - points_um[None]) / PSF_UM) ** 2).sum(axis=-1)
    profile = (brightness[None] * np.exp(-0.5 * d2)).sum(axis=1)
    return profile.min() < 0.5 * profile[-1]


def rna_scores(sim, mask):
    """(recall of isolated molecules, false objects / objects, intact granules, granules)."""
    molecules = sim.molecules
    points = molecules[["z", "y", "x"]].to_numpy() * SPACING
    owner = molecules["object_id"].to_numpy()
    in_granule = molecules["in_granule"].to_numpy()
    brightness = molecules["brightness"].to_numpy()
    labels, centroids = _objects(mask)
    # Isolated: a single molecule with no other molecule within 1 micron.
    nearest = cKDTree(points).query(points, k=2)[0][:, 1]
    isolated = ~in_granule & (nearest > 1.0)
    distance = cKDTree(centroids).query(points[isolated])[0]
    recall = float(np.mean(distance <= 0.25))
    # False object: no molecule inside and no molecule within 0.25 um of its centroid.
    voxel = np.clip(np.rint(points / SPACING).astype(int), 0, np.array(mask.shape) - 1)
    hit_label = labels[tuple(voxel.T)]
    holds_molecule = np.zeros(labels.max() + 1, bool)
    holds_molecule[hit_label] = True
    near = cKDTree(points).query(centroids)[0] <= 0.25
    false = int(np.sum(~near & ~holds_molecule[1:]))
    # A granule is intact when its molecules inside the mask (at least half of
    # them) share one object, and that object holds no molecule of another
    # object the optics clearly resolve from the granule.
    intact = 0
    granules = np.unique(owner[in_granule])
    for granule in granules:
        mine = owner == granule
        inside = hit_label[mine] > 0
        objects = np.unique(hit_label[mine][inside])
        if inside.mean() < 0.5 or objects.size != 1:
            continue
        others = np.flatnonzero((hit_label == objects[0]) & ~mine)
        centre = points[mine].mean(axis=0)
        if not any(_clearly_resolved(points, brightness, centre, points[i]) for i in others):
            intact += 1
    return recall, false / max(len(centroids), 1), intact, len(granules)


# ------------------------------------------------------------ detection
def test_rna_default_detection_keeps_granules_whole(simulated):
    intact, granules = 0, 0
    for sim in simulated:
        mask = segment(sim.rna, "rna", spacing=sim.spacing)
        assert mask.dtype == np.uint8
        assert mask.shape == sim.rna.shape
        assert set(np.unique(mask)) <= {0, 255}
        _, _, ok, n = rna_scores(sim, mask)
        intact += ok
        granules += n
    assert granules >= 40  # enough granules for the fraction to mean something
    # 52 of 59 on these scenes since the simulator's brightness spread was recalibrated to
    # the real images' (2026-12-06; 54 of 59 before, the bound was 0.90): six granules of
    # 4-6 molecules split in two objects (a molecule or two apart from the rest), and one
    # of 12 molecules spread wide whose mask holds 5 of them (the others lie in its
    # aperture, so its light is counted).
    assert intact / granules >= 0.85, (intact, granules)


# Figures the defaults reach on realistic images (RESULTS.md has the full sweep
# beside Big-FISH), a little under what they measure on these images. The issue's
# target (0.97 from SNR 5) holds on the confocal grid; on the widefield one the
# faintest molecules at SNR 5 are lost: the assertions guard what holds today, the
# benchmark reports the gap. (Without splitting blended spots, widefield reached
# 0.953-0.958 at SNR 8-20 on these images: pairs just beyond the resolution limit.)
SWEEP = [(preset, snr) for preset in ("confocal", "widefield") for snr in (3, 4, 5, 8, 12, 20)]
RECALL_FLOOR = {"confocal": {3: 0.95, 4: 0.97, 5: 0.98, 8: 0.98, 12: 0.98, 20: 0.98},
                "widefield": {3: 0.5, 4: 0.72, 5: 0.85, 8: 0.96, 12: 0.97, 20: 0.97}}


@pytest.mark.parametrize(("preset", "snr"), SWEEP)
def test_rna_detection_over_the_snr_sweep(preset, snr):
    totals = {"n_true": 0, "n_matched": 0, "n_false": 0, "n_detected": 0, "n_set_aside": 0}
    for rna_type, seed in (("gapdh", 40), ("cen", 41)):
        sim = synthetic.simulate_image("s", rna_type=rna_type, cycle="nc14", seed=seed,
                                       preset=preset, snr=snr, shape=(30, 192, 192))
        mask = segment(sim.rna, "rna", spacing=sim.spacing)
        score = synthetic.score_spots(synthetic.mask_spots(mask, sim.rna), sim.molecules,
                                      spacing=sim.spacing)
        for key in totals:
            totals[key] += score[key]
    recall = totals["n_matched"] / totals["n_true"]
    scored = totals["n_detected"] - totals["n_set_aside"]
    precision = totals["n_matched"] / max(scored, 1)
    print(f"{preset} SNR {snr}: recall {recall:.3f} precision {precision:.3f}")
    assert totals["n_true"] >= 150
    assert precision >= 0.97, precision
    assert recall >= RECALL_FLOOR[preset][snr], recall


def _noise_stacks(preset: str, shape, count: int, seed: int):
    """`count` stacks of a flat background through the preset's camera: shot and read noise
    only, the noise the automatic threshold's rate is stated for."""
    scope = synthetic.PRESETS[preset]
    rng = np.random.default_rng(seed)
    for _ in range(count):
        yield synthetic.apply_camera(np.full(shape, scope.background), rng,
                                     offset=scope.camera_offset, gain=scope.gain,
                                     read_noise=scope.read_noise)


@pytest.mark.parametrize("preset", ["confocal", "widefield"])
def test_pure_noise_gives_at_most_the_stated_false_positive_rate(preset):
    scope = synthetic.PRESETS[preset]
    volume, found = 0.0, 0
    for image in _noise_stacks(preset, (40, 192, 192), 3, seed=7):
        found += int(ndimage.label(segment(image, "rna", spacing=scope.spacing),
                                   structure=FACE)[1])
        volume += float(np.prod(np.array(image.shape) * scope.spacing))
    # The default states 1 per 1,000 um^3: at most that, within Poisson error (99th
    # percentile), and not far below it either (a threshold set too high loses faint
    # molecules: the smooth-field formula alone gave 1 spot where 16 were allowed on the
    # widefield grid, whose voxels miss most of the filtered field's peaks).
    rate = SegmentationParams("rna").false_positives_per_1000um3
    assert rate == 1.0
    expected = rate * volume / 1000
    assert found <= expected + 2.33 * np.sqrt(expected) + 1, (found, expected, volume)
    assert found >= 0.3 * expected - 1, (found, expected, volume)


@pytest.mark.parametrize(("preset", "planes"), [("widefield", 5), ("widefield", 9),
                                                  ("widefield", 16), ("confocal", 5),
                                                  ("confocal", 9), ("confocal", 16)])
def test_thin_stacks_of_pure_noise_stay_within_the_stated_false_positive_rate(preset, planes):
    # The noise measure's steps along z fold back at the faces, on a thin stack onto every
    # plane: with one share of the noise kept for all planes, 46 false spots in four 5-plane
    # widefield stacks where 4.8 were allowed, most on the last planes.
    scope = synthetic.PRESETS[preset]
    volume, found = 0.0, 0
    for image in _noise_stacks(preset, (planes, 256, 256), 4, seed=7):
        found += int(ndimage.label(segment(image, "rna", spacing=scope.spacing),
                                   structure=FACE)[1])
        volume += float(np.prod(np.array(image.shape) * scope.spacing))
    expected = SegmentationParams("rna").false_positives_per_1000um3 * volume / 1000
    assert found <= expected + 2.33 * np.sqrt(expected) + 1, (found, expected)


def _impulse_oracle(n: int, axis: int, spacing, sigma_um) -> np.ndarray:
    """Filtered white noise's SD at each index along `axis`, impulse by impulse: the response
    of remove_background's linear filters to a unit impulse at every position of a stack of
    length `n` (the other axes long enough for the filters' whole reach), squared and summed.
    (Its last step, the face ridges' removal, is a median: not linear, and not part of the
    profile; on white noise it takes off a few hundredths of an SD.)"""
    reach = 40  # voxels: more than any kernel here reaches
    shape = [2 * reach + 1] * 3
    shape[axis] = n
    variance = np.zeros(n)
    for j in range(n):
        impulse = np.zeros(shape, np.float32)
        centre = [reach] * 3
        centre[axis] = j
        impulse[tuple(centre)] = 1.0
        response = remove_background(impulse, spacing=spacing, spot_sigma_um=sigma_um)
        other = tuple(a for a in range(3) if a != axis)
        variance += np.square(response.astype(np.float64)).sum(axis=other)
    far = np.zeros([2 * reach + 1] * 3, np.float32)
    far[reach, reach, reach] = 1.0
    reference = np.square(remove_background(far, spacing=spacing, spot_sigma_um=sigma_um)
                          .astype(np.float64)).sum()
    return np.sqrt(variance / reference)


@pytest.mark.parametrize(("n", "axis", "spacing"), [
    (24, 0, (0.3, 0.11, 0.11)), (5, 0, (0.3, 0.11, 0.11)), (40, 2, (0.2, 0.065, 0.065)),
    (3, 1, (0.2, 0.065, 0.065))])
def test_face_noise_profile_matches_the_impulse_by_impulse_oracle(n, axis, spacing, monkeypatch):
    sigma_um = (0.22, 0.08)
    monkeypatch.setattr(detection, "_remove_face_ridges", lambda filtered, **_: None)
    detection._filter_kernel.cache_clear()
    detection._face_noise_profile.cache_clear()
    profile = face_noise_profile(n, axis, list(spacing), sigma_um)
    expected = _impulse_oracle(n, axis, spacing, sigma_um)
    detection._filter_kernel.cache_clear()  # made without the ridge step: not for later tests
    detection._face_noise_profile.cache_clear()
    np.testing.assert_allclose(profile, expected, rtol=1e-5)
    # The outermost voxels' noise is stronger, by a fifth to a third on these grids.
    if n > 10:
        assert 1.15 < profile[0] < 1.4
        assert abs(profile[n // 2] - 1) < 1e-3


@pytest.mark.parametrize("preset", ["confocal", "widefield"])
def test_pure_noise_gives_no_more_false_spots_on_the_faces_than_inside(preset):
    # Mirrored at the faces, the filters leave stronger noise there: without the face's
    # noise profile, 20-27 false spots per face plane of four 30x256x256 widefield
    # noise stacks against 0-2 per inner plane.
    scope = synthetic.PRESETS[preset]
    face, inside = 0, 0
    for image in _noise_stacks(preset, (30, 160, 160), 3, seed=11):
        spots = segment_intermediates(image, "rna", spacing=scope.spacing).spots
        index = spots[["zi", "yi", "xi"]].to_numpy()
        on_face = ((index == 0) | (index == np.array(image.shape) - 1)).any(axis=1)
        face += int(on_face.sum())
        inside += int((~on_face).sum())
    # The faces hold 2 of 30 planes and 4 of 160 rows and columns: 9% of the voxels. Held
    # to twice that share (few spots: Poisson error), a face's spots only as likely as any.
    assert face <= 0.18 * (face + inside) + 2, (face, inside)


def _gaussian_spot(shape, centre, sigma_vox, amplitude):
    grid = np.ogrid[tuple(slice(0, n) for n in shape)]
    return amplitude * np.exp(-sum((g - c) ** 2 / (2 * s * s)
                                   for g, c, s in zip(grid, centre, sigma_vox)))


def test_molecules_on_the_stacks_faces_are_found_and_the_haze_beyond_a_face_is_not():
    # Widefield grid and PSF. A bright haze centred beyond the first plane (an
    # out-of-focus cell just outside the stack) slopes down across it; mirrored by the
    # filters it became a ridge of false spots. Molecules sit on the first and last
    # planes, on the first row, and inside: each must be found where it is.
    spacing = np.array([0.3, 0.11, 0.11])
    shape = (24, 128, 128)
    psf = np.array([0.33, 0.115, 0.115]) / spacing
    rng = np.random.default_rng(3)
    light = np.full(shape, 3300.0)
    light += _gaussian_spot(shape, (-5, 40, 40), np.array([1.0, 1.5, 1.5]) / spacing, 4000.0)
    molecules = [(0, 40, 44), (0, 90, 30), (23, 64, 64), (23, 20, 100), (10, 0, 70),
                 (12, 100, 100), (5, 40, 40)]
    noise_sd = 100.0
    for centre in molecules:
        light += _gaussian_spot(shape, centre, psf, 9 * noise_sd)
    image = rng.poisson(light).astype(np.float64)
    image += rng.normal(0, np.sqrt(noise_sd**2 - 3300.0), shape)
    labels, count = ndimage.label(segment(image, "rna", spacing=spacing), structure=FACE)
    held = [int(labels[c]) for c in molecules]
    assert all(held), held  # every molecule is in an object ...
    assert len(set(held)) == len(molecules)  # ... its own ...
    # ... and the haze's ridge makes next to none: 55-73 objects on the first plane (seeds
    # 3-5) with the ridge left in, 0-1 taken away. The automatic threshold allows about one
    # false spot in a stack this size.
    assert count - len(molecules) <= 3, count


def test_find_spots_keeps_a_maximum_on_a_face_without_a_sub_voxel_offset_across_it():
    score = np.zeros((7, 15, 15))
    score[0, 7, 7], score[1, 7, 7], score[0, 7, 8] = 10.0, 6.0, 4.0
    spots = find_spots(score, 4.0, spacing=0.1, min_distance_um=0.1)
    assert len(spots) == 1
    assert spots["z"][0] == 0.0
    assert spots["zi"][0] == 0
    assert 7.0 < spots["x"][0] < 7.5  # inside the face the parabola still applies
    assert find_spots(score, 4.0, spacing=0.1, min_distance_um=0.1, faces=False).empty
    # An exact tie: the first voxel in raster order is the spot, on a face as inside.
    for z in (0, 3):
        tied = np.zeros((7, 15, 15))
        tied[z, 7, 7] = tied[z, 7, 8] = 10.0
        spots = find_spots(tied, 4.0, spacing=0.1, min_distance_um=0.1)
        assert spots[["zi", "yi", "xi"]].to_numpy().tolist() == [[z, 7, 7]]


def test_noise_estimate_is_not_quantized():
    # Integer images of equal noise at two background levels: the old
    # 1.4826*MAD of the integers came out 3 for one and 4 for the other (33% apart).
    rng = np.random.default_rng(3)
    shape = (40, 160, 160)
    estimates = []
    for level in (100.4, 230.9):
        image = np.rint(rng.normal(level, 2.7, shape)).astype(np.uint16)
        filtered = remove_background(image, spacing=SPACING, spot_sigma_um=(0.3, 0.11))
        estimate = float(np.median(local_noise(filtered, spacing=SPACING,
                                               spot_sigma_um=(0.3, 0.11))))
        # Oracle: the filtered image's own standard deviation, away from the edges.
        assert estimate == pytest.approx(float(filtered[6:-6, 20:-20, 20:-20].std()), rel=0.05)
        estimates.append(estimate)
    assert estimates[0] == pytest.approx(estimates[1], rel=0.05)


def test_dense_bright_spots_do_not_count_as_noise():
    # Bright molecules (25 noise SDs), as dense as the simulated gapdh RNA in the cytoplasm
    # (one per 1.5 um^3) over half of the stack and sparse over the other: spots crowd the
    # noise blocks of the dense half. Their light is not noise: the oracle is the same image
    # with every spot at amplitude 0 (additive noise of one SD everywhere, like read noise).
    rng = np.random.default_rng(5)
    shape = (24, 96, 192)
    half_volume = np.prod(np.array(shape) * SPACING) / 2
    dense = rng.uniform((2, 4, 4), (22, 92, 92), (int(half_volume / 1.5), 3))
    sparse = rng.uniform((2, 4, 100), (22, 92, 188), (int(half_volume / 15), 3))
    centres = list(np.concatenate([dense, sparse]))
    noise = np.random.default_rng(4).normal(0.0, 14.0, shape)
    kwargs = dict(spacing=SPACING, spot_sigma_um=(0.22, 0.08))

    def dense_half_noise(amplitude, **options):
        _, noise_free = _spots_image(centres, [amplitude] * len(centres), shape=shape)
        estimate = local_noise(remove_background(noise_free + noise, **kwargs), **kwargs,
                               **options)
        return float(np.median(estimate[:, :, :96]))

    clean = dense_half_noise(0.0)
    # Within 40% (measured: +31%; the blocks that keep 100 voxels clear of spots still hold
    # some of their tails) ...
    assert clean < dense_half_noise(350.0) < 1.4 * clean
    # ... where all the voxels of a crowded block made it 4 times the noise.
    assert dense_half_noise(350.0, borrow_crowded=False) > 3 * clean


def test_noise_threshold_solves_the_stated_rate():
    for sigma, rate in [((0.3, 0.1), 1.0), ((0.35, 0.2), 0.1), ((0.5, 0.15), 10.0)]:
        k = noise_threshold(sigma, false_positives_per_1000um3=rate)
        s = np.array([sigma[0], sigma[1], sigma[1]])
        density = (k * k - 1) * np.exp(-k * k / 2) / ((2 * np.pi) ** 2 * 2**1.5 * s.prod())
        assert density * 1000 == pytest.approx(rate, rel=1e-6)
    assert noise_threshold((0.3, 0.1), false_positives_per_1000um3=0.1) > noise_threshold((0.3, 0.1))
    with pytest.raises(ValueError, match="false_positives_per_1000um3"):
        noise_threshold((0.3, 0.1), false_positives_per_1000um3=0)


def _spots_image(centres, amplitudes, shape=(20, 64, 64), background=200.0, seed=0):
    """Gaussian spots (PSF of the confocal preset) on a flat background, with shot noise."""
    sigma = np.array(synthetic.PSF_SIGMA_UM) / SPACING
    grid = np.indices(shape).astype(float)
    image = np.full(shape, background)
    for centre, amplitude in zip(centres, amplitudes, strict=True):
        d2 = sum(((grid[a] - centre[a]) / sigma[a]) ** 2 for a in range(3))
        image += amplitude * np.exp(-0.5 * d2)
    return np.random.default_rng(seed).poisson(image).astype(np.uint16), image


@pytest.mark.parametrize("min_distance_um", [0.1, (0.2, 0.13), (0.4, 0.2)])
def test_find_spots_are_the_maxima_of_their_box(min_distance_um):
    # Oracle: every voxel above the threshold compared with every other voxel of its box
    # inside the stack (greater than those before it in raster order, at least equal to those
    # after it), on values rounded so that ties are common.
    rng = np.random.default_rng(6)
    score = np.round(rng.normal(0, 2, (6, 11, 13))).astype(np.float32)
    spacing = 0.1
    radius = np.maximum(np.rint(np.broadcast_to(np.asarray(min_distance_um, float) / spacing,
                                                 (2,))[[0, 1, 1]]).astype(int), 1)
    expected = []
    for v in zip(*np.nonzero(score > 1.0), strict=True):
        lows = [max(c - r, 0) for c, r in zip(v, radius, strict=True)]
        highs = [min(c + r, n - 1) for c, r, n in zip(v, radius, score.shape, strict=True)]
        box = np.indices([h - lo + 1 for lo, h in zip(lows, highs, strict=True)]).reshape(3, -1).T + lows
        ok = all(score[v] > score[tuple(u)] if tuple(u) < v else score[v] >= score[tuple(u)]
                 for u in box if tuple(u) != v)
        if ok:
            expected.append(tuple(int(c) for c in v))
    spots = find_spots(score, 1.0, spacing=spacing, min_distance_um=min_distance_um)
    found = sorted(zip(spots["zi"], spots["yi"], spots["xi"], strict=True))
    assert found == sorted(expected)
    assert len(expected) >= 5


@pytest.mark.parametrize("shape", [(9, 40, 36), (1, 20, 21), (3, 7, 30)])
def test_high_pass_at_the_sample_against_mirrored_neighbours(shape):
    # Oracle: numpy's reflect padding for the 6 neighbours `reach` voxels away (a reach past
    # the axis is cut to its length - 1; none along an axis of one voxel: twice the voxel).
    from rna_localization.segmentation import detection

    rng = np.random.default_rng(7)
    filtered = rng.normal(0, 1, shape).astype(np.float32)
    reach = np.array([2, 3, 50])
    expected = filtered.astype(np.float64)
    for axis, n in enumerate(shape):
        step = min(int(reach[axis]), n - 1)
        if step == 0:
            expected -= 2 / 6 * filtered
            continue
        pad = [(step, step) if a == axis else (0, 0) for a in range(3)]
        padded = np.pad(filtered.astype(np.float64), pad, mode="reflect")
        for start in (0, 2 * step):
            expected -= np.take(padded, range(start, start + n), axis=axis) / 6
    sample = (slice(None), slice(1, None, 2), slice(None, None, 3))
    assert detection._high_pass(filtered, reach) == pytest.approx(expected, abs=1e-5)
    assert detection._high_pass(filtered, reach, sample) == pytest.approx(expected[sample],
                                                                            abs=1e-5)


def test_find_spots_gives_sub_voxel_positions():
    centres = [(9.3, 20.4, 30.7), (10.6, 44.2, 15.35)]
    _, noise_free = _spots_image(centres, [400, 400])
    filtered = remove_background(noise_free, spacing=SPACING, spot_sigma_um=(0.3, 0.1))
    spots = find_spots(filtered, filtered.max() / 4, spacing=SPACING, min_distance_um=(0.3, 0.1))
    found = spots[["z", "y", "x"]].to_numpy()
    assert len(found) == 2
    nearest = cKDTree(found).query(centres)[0]
    assert nearest.max() < 0.15, nearest  # voxels


def _render(centres, amplitudes, shape, background, rng):
    """Gaussian spots (PSF of the confocal preset), each drawn in its own box, shot noise."""
    sigma = PSF_UM / SPACING
    image = np.full(shape, background, dtype=float)
    reach = np.ceil(4 * sigma).astype(int)
    for centre, amplitude in zip(centres, amplitudes, strict=True):
        low = np.maximum(np.floor(centre).astype(int) - reach, 0)
        high = np.minimum(np.floor(centre).astype(int) + reach + 1, shape)
        box = tuple(slice(a, b) for a, b in zip(low, high))
        grid = np.ogrid[box]
        image[box] += amplitude * np.exp(-0.5 * sum(((grid[a] - centre[a]) / sigma[a]) ** 2
                                                    for a in range(3)))
    return rng.poisson(image).astype(np.uint16)


def _pairs_case(seed):
    """Lone molecules on a jittered grid, 30% of them with a second molecule 2-3 PSF sigmas
    away in a random 3-D direction (one maximum for most such pairs), brightness log-normal
    around 21 noise SDs, Poisson noise: the image, the true centres, which are in a pair."""
    rng = np.random.default_rng(seed)
    shape = (24, 160, 160)
    sigma = PSF_UM / SPACING
    step = np.ceil(6 * sigma).astype(int)
    sites = np.stack(np.meshgrid(*[np.arange(s + 2, n - s - 1, s) for s, n in zip(step, shape)],
                                 indexing="ij"), axis=-1).reshape(-1, 3).astype(float)
    sites += rng.uniform(-0.5, 0.5, sites.shape)
    pair = rng.random(len(sites)) < 0.3
    direction = rng.normal(size=(len(sites), 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    half = 0.5 * rng.uniform(2.0, 3.0, len(sites))[:, None] * direction * sigma
    centres = np.concatenate([np.where(pair[:, None], sites - half, sites), sites[pair] + half[pair]])
    in_pair = np.r_[pair, np.ones(pair.sum(), dtype=bool)]
    image = _render(centres, 300 * np.exp(0.35 * rng.normal(size=len(centres))), shape, 200.0, rng)
    return image, centres, in_pair


def _pairs_found(image, centres, fraction):
    """Which true centres a detection matches, the detections matching none, the spots."""
    run = segment_intermediates(image, SegmentationParams("rna", blend_fraction=fraction),
                                spacing=SPACING)
    detected = run.spots[["z", "y", "x"]].to_numpy() * SPACING
    matched_detections, matched = synthetic.match_points(detected, centres * SPACING,
                                                         radius=0.75 * PSF_UM)
    hit = np.zeros(len(centres), dtype=bool)
    hit[matched] = True
    return hit, len(detected) - len(matched_detections), run.spots


@pytest.mark.parametrize("seed", [1, 2])
def test_blended_pairs_are_split_and_lone_molecules_are_not(seed):
    # Oracle: the true positions.
    image, centres, in_pair = _pairs_case(seed)
    hit, _, spots = _pairs_found(image, centres, PRESETS["rna"]["blend_fraction"])
    hit_unsplit, _, _ = _pairs_found(image, centres, 0.0)
    n_pairs = int(in_pair.sum()) // 2
    assert n_pairs >= 50
    # Measured 0.89 of the paired molecules, against 0.54-0.57 from the maxima alone.
    assert hit[in_pair].mean() >= 0.85, hit[in_pair].mean()
    assert hit_unsplit[in_pair].mean() <= 0.7
    assert hit[~in_pair].all()
    assert spots["blended"].sum() <= 2 * n_pairs


def test_lone_molecules_are_not_split():
    # Detections matching no molecule, with the split and without it, pooled over four
    # images (~240 pairs, ~560 lone molecules): one image's count moves by a few with
    # marginal splits and false spots (seeds 1-8: 4-11 with the split, 2-11 without).
    # Splitting every lone molecule would add hundreds.
    extra, extra_unsplit, pairs = 0, 0, 0
    for seed in (1, 2, 3, 4):
        image, centres, in_pair = _pairs_case(seed)
        extra += _pairs_found(image, centres, PRESETS["rna"]["blend_fraction"])[1]
        extra_unsplit += _pairs_found(image, centres, 0.0)[1]
        pairs += int(in_pair.sum()) // 2
    assert pairs >= 200
    assert extra <= extra_unsplit + 0.05 * pairs, (extra, extra_unsplit, pairs)


def _found(spots, molecules):
    """How many of `molecules` (voxels) have one of `spots` within a PSF sigma."""
    sigma = PSF_UM / SPACING
    near = cKDTree(spots[["z", "y", "x"]].to_numpy() / sigma).query(molecules / sigma)[0]
    return int((near <= 1.0).sum())


def test_molecules_hidden_beside_single_molecules_are_found():
    # Oracle: the true positions. The split takes one bump per spot, and none beside a
    # spot twice the median's brightness; find_flank_spots then searches what is left away
    # from granules too (beside spots with no other within 2.5 sigmas). Measured on these
    # seeds: 25 spots added, every one within a sigma of a molecule; paired molecules found
    # 460 -> 482 of 494 (23 and 480 while granules' lumps were judged in their fitted widths,
    # until 2026-12-06; 3 spots added, 463, when it searched granules' flanks only).
    sigma = PSF_UM / SPACING

    added_total, before_hits, after_hits = 0, 0, 0
    for seed in (1, 2, 3, 4):
        image, centres, in_pair = _pairs_case(seed)
        run, before = _flank_run(image)
        assert run.spots.iloc[:len(before)][["z", "y", "x"]].equals(before[["z", "y", "x"]])
        added = run.spots.iloc[len(before):]
        assert added["blended"].all()
        to_molecule = cKDTree(centres / sigma).query(added[["z", "y", "x"]].to_numpy() / sigma)[0]
        assert np.all(to_molecule <= 1.0), to_molecule
        added_total += len(added)
        before_hits += _found(before, centres[in_pair])
        after_hits += _found(run.spots, centres[in_pair])
    print(f"added {added_total}; paired molecules found {before_hits} -> {after_hits}")
    assert added_total >= 20
    assert after_hits >= before_hits + 15, (before_hits, after_hits)


def test_a_spot_with_side_lobes_is_not_split(monkeypatch):
    # Lone molecules whose image is no Gaussian: an axial side lobe of half the peak 2.2
    # sigmas above focus (strong spherical aberration). Every molecule leaves the same bump
    # once its Gaussian model is subtracted; the median residual around the image's spots
    # says so, and no molecule is split. Measured against the model alone: 32-36 of 196
    # molecules split.
    from rna_localization.segmentation import detection

    sigma = PSF_UM / SPACING
    rng = np.random.default_rng(1)
    shape = (24, 160, 160)
    step = np.ceil(6 * sigma).astype(int)
    sites = np.stack(np.meshgrid(*[np.arange(s + 2, n - s - 1, s) for s, n in zip(step, shape)],
                                 indexing="ij"), axis=-1).reshape(-1, 3).astype(float)
    sites += rng.uniform(-0.5, 0.5, sites.shape)
    image = np.full(shape, 200.0)
    reach = np.ceil(5 * sigma).astype(int)
    for centre, amplitude in zip(sites, 600 * np.exp(0.35 * rng.normal(size=len(sites))),
                                 strict=True):
        low = np.maximum(np.floor(centre).astype(int) - reach, 0)
        high = np.minimum(np.floor(centre).astype(int) + reach + 1, shape)
        box = tuple(slice(a, b) for a, b in zip(low, high))
        g = np.ogrid[box]
        main = sum(((g[a] - centre[a]) / sigma[a]) ** 2 for a in range(3))
        lobe = (((g[0] - centre[0] - 2.2 * sigma[0]) / sigma[0]) ** 2
                + sum(((g[a] - centre[a]) / (1.4 * sigma[a])) ** 2 for a in (1, 2)))
        image[box] += amplitude * (np.exp(-0.5 * main) + 0.5 * np.exp(-0.5 * lobe))
    image = rng.poisson(image).astype(np.uint16)
    spots = segment_intermediates(image, "rna", spacing=SPACING).spots
    assert spots["blended"].sum() <= 2

    def gaussian_only(left, index, amplitude, sigma):
        reach = np.ceil(detection._MODEL_REACH * sigma).astype(int)
        return reach, np.zeros(tuple(int(v) for v in 2 * reach + 1))

    monkeypatch.setattr(detection, "_residual_profile", gaussian_only)
    assert segment_intermediates(image, "rna", spacing=SPACING).spots["blended"].sum() >= 20


@pytest.mark.parametrize("workflow", ["rna", "centrosomes"])
def test_segment_holds_less_and_gives_the_playgrounds_mask(workflow):
    # segment() drops the score and the noise as soon as it can (the voxels above the floor
    # made again from them); the playground's run keeps every intermediate: the same mask,
    # and objects on the voxels whose score exceeds the floor (or spots' own voxels).
    sim = synthetic.simulate_image("k", rna_type="cen", cycle="nc14", seed=4, preset="widefield",
                                   shape=(16, 128, 128))
    image = sim.rna if workflow == "rna" else sim.centrosomes
    kept = segment_intermediates(image, workflow, spacing=sim.spacing)
    mask = segment(image, workflow, spacing=sim.spacing)
    assert mask.any()
    assert np.array_equal(mask, kept.result)
    floor = SegmentationParams(workflow).floor
    spot_voxels = np.zeros(image.shape, dtype=bool)
    spot_voxels[tuple(kept.spots[["zi", "yi", "xi"]].to_numpy().T)] = True
    assert np.all((kept.score > floor) | spot_voxels | (mask == 0))


def test_blended_spots_are_the_same_in_batches(monkeypatch):
    # Spot models are summed in slabs of planes and pairs fitted in batches, which bound the
    # memory on full frames: a plane at a time and a pair at a time give the same table.
    from rna_localization.segmentation import detection

    sim = synthetic.simulate_image("b", rna_type="cen", cycle="nc14", seed=3, preset="widefield",
                                   snr=12, shape=(20, 128, 128))
    whole = segment_intermediates(sim.rna, "rna", spacing=sim.spacing).spots
    monkeypatch.setattr(detection, "_MODEL_SLAB_BYTES", 1)  # models summed a plane at a time
    monkeypatch.setattr(detection, "_FIT_BATCH_VALUES", 1)  # one pair per batch
    batched = segment_intermediates(sim.rna, "rna", spacing=sim.spacing).spots
    assert whole["blended"].sum() >= 4
    assert whole.equals(batched)


def _granule_scene(seed, flank, *, above=False, lobe=None):
    """Single molecules on a grid (x < 75 voxels) and 8 granules (x >= 100), on shot noise.

    Each granule holds molecules spread uniformly in a ball of 0.25 µm (10 of them, or
    4-15 when `flank` is False); with `flank`, one single molecule 0.35-0.45 µm laterally
    from each granule's centre (with `above`, 0.35-0.45 µm above or below it and half as
    far to its side instead).
    Every molecule has the same brightness. With `lobe` (µm, fraction), the PSF has a
    second maximum that far below the first, that fraction of its peak.
    Returns the image, the granules' centres and the flank molecules (voxels).
    """
    rng = np.random.default_rng(seed)
    sigma = PSF_UM / SPACING
    shape = (24, 160, 160)
    step = np.ceil(6 * sigma).astype(int)
    grids = [np.arange(s + 2, n - s - 1, s) for s, n in zip(step, shape)]
    grids[2] = grids[2][grids[2] < 75]
    singles = np.stack(np.meshgrid(*grids, indexing="ij"), axis=-1).reshape(-1, 3).astype(float)
    singles += rng.uniform(-0.5, 0.5, singles.shape)
    centres = np.array([(12, cy, cx) for cy in (25, 60, 95, 130) for cx in (100, 135)], float)
    centres += rng.uniform(-0.5, 0.5, centres.shape)
    sizes = np.full(len(centres), 10) if flank else rng.integers(4, 16, len(centres))
    granules = []
    for centre, size in zip(centres, sizes, strict=True):
        direction = rng.normal(size=(size, 3))
        direction /= np.linalg.norm(direction, axis=1, keepdims=True)
        radius = 0.25 * rng.random(size) ** (1 / 3)
        granules.append(centre + direction * radius[:, None] / SPACING)
    angle = rng.uniform(0, 2 * np.pi, len(centres))
    reach = rng.uniform(0.35, 0.45, len(centres))
    flanks = centres + np.stack([np.zeros_like(angle), reach * np.sin(angle),
                                 reach * np.cos(angle)], axis=1) / SPACING
    if above:
        along_z = rng.uniform(0.35, 0.45, len(centres)) * rng.choice([-1.0, 1.0], len(centres))
        across = 0.5 * reach
        flanks = centres + np.stack([along_z, across * np.sin(angle), across * np.cos(angle)],
                                    axis=1) / SPACING
    molecules = np.concatenate([singles, *granules] + ([flanks] if flank else []))
    light = np.full(len(molecules), 300.0)
    if lobe is not None:
        molecules = np.concatenate([molecules, molecules + [lobe[0] / SPACING[0], 0, 0]])
        light = np.concatenate([light, lobe[1] * light])
    image = _render(molecules, light, shape, 200.0, rng)
    return image, centres, flanks


def _flank_run(image):
    """The rna run's spots (out-of-focus spots kept), and the same before find_flank_spots."""
    from rna_localization.segmentation import detection

    params = SegmentationParams("rna", defocus_ratio=0.0)  # the spots as the flank search left them
    run = segment_intermediates(image, params, spacing=SPACING)
    before = detection.find_spots(run.score, run.threshold, spacing=SPACING,
                                  min_distance_um=params.spot_sigma_um)
    before = detection.split_blended_spots(run.filtered, run.noise, before, run.threshold,
                                           spacing=SPACING, min_distance_um=params.spot_sigma_um,
                                           min_fraction=params.blend_fraction)
    return run, before


def test_molecules_on_a_granules_flank_are_found():
    # Oracle: the flank molecules' true positions. A molecule 0.35-0.45 µm from a granule's
    # centre mostly makes no maximum of its own (the split leaves granules whole); measured
    # on these seeds: 9 of 24 found before, 15 after, and every spot added on a flank molecule.
    sigma = PSF_UM / SPACING
    found_before, found_after, total = 0, 0, 0
    for seed in (10, 12, 14):
        image, _, flanks = _granule_scene(seed, flank=True)
        run, before = _flank_run(image)
        after = run.spots
        assert after.iloc[:len(before)][["z", "y", "x"]].equals(before[["z", "y", "x"]])
        added = after.iloc[len(before):]
        assert added["blended"].all()
        # Each added spot is a flank molecule, within one sigma of its true position.
        to_flank = cKDTree(flanks / sigma).query(added[["z", "y", "x"]].to_numpy() / sigma)[0]
        assert np.all(to_flank <= 1.0), to_flank
        total += len(flanks)
        found_before += _found(before, flanks)
        found_after += _found(after, flanks)
    print(f"flank molecules found: {found_before} of {total} before, {found_after} after")
    assert found_after >= found_before + 4, (found_before, found_after)


def test_molecules_above_a_granule_are_found():
    # Oracle: the true positions of molecules 0.35-0.45 µm above or below a granule's centre
    # and 0.18-0.23 µm to its side. Counted in the granule's fitted widths (the PSF's, three
    # times longer along z than across) they lie about 2-2.5 widths from its centre, as near
    # as its own lumps 0.25 µm to its side; in µm they lie beyond the granule merge reach
    # (0.3 µm on this grid), which the lumps do not. Measured on these seeds: 0 of 64 found
    # before the flank search and by the widths rule (peaks from 2.5 widths) it had until
    # 2026-12-06, 9 now; one spot added elsewhere, a granule's lump on the far side from its
    # molecule (the fitted centre drawn towards the molecule).
    sigma = PSF_UM / SPACING
    found_before, found_after, strays, total = 0, 0, 0, 0
    for seed in range(10, 18):
        image, _, flanks = _granule_scene(seed, flank=True, above=True)
        run, before = _flank_run(image)
        # A Gaussian PSF shows no axial lobes: the default workflow searches the same way.
        assert len(detection.axial_lobe_depths(before, spacing=SPACING,
                                               spot_sigma_um=PRESETS["rna"]["spot_sigma_um"])) == 0
        added = run.spots.iloc[len(before):]
        to_flank = cKDTree(flanks / sigma).query(added[["z", "y", "x"]].to_numpy() / sigma)[0]
        strays += int((to_flank > 1.0).sum())
        total += len(flanks)
        found_before += _found(before, flanks)
        found_after += _found(run.spots, flanks)
    print(f"molecules above granules found: {found_before} of {total} before, {found_after} "
          f"after, {strays} spots added elsewhere")
    assert found_after >= found_before + 6, (found_before, found_after)
    assert strays <= total / 20, strays


def test_a_granules_axial_lobe_is_not_taken_for_a_molecule():
    # Through a PSF with a second maximum 1 µm below the first at 40% of its peak (as
    # through strong spherical aberration), a single molecule's lobe is a spot of its own,
    # and the image's spots show it (axial_lobe_depths); a granule's lobe, a ball's image,
    # is a shoulder on its column that its one-Gaussian model leaves as a residual peak
    # 5 widths along z: beyond the merge reach, so it passed for a molecule. Nothing lies
    # beside these granules: every spot the flank search adds within 1.5 µm of one is
    # wrong. Measured on these seeds: 17 such spots for 64 granules without the lobe
    # depths, 1 with them (8 with the bins alone, no margin); at most 1 in 20.
    sigma_um = PRESETS["rna"]["spot_sigma_um"]
    with_lobes, without_lobes, granules = 0, 0, 0
    for seed in range(10, 18):
        image, centres, _ = _granule_scene(seed, flank=False, lobe=(1.0, 0.4))
        run, before = _flank_run(image)
        depths = detection.axial_lobe_depths(before, spacing=SPACING, spot_sigma_um=sigma_um)
        assert ((depths[:, 0] <= 1.0) & (depths[:, 1] >= 0.9)).any(), depths

        near = []
        for lobe_depths_um in (depths, None):
            spots = detection.find_flank_spots(run.filtered, run.noise, before, run.threshold,
                                               spacing=SPACING, min_distance_um=sigma_um,
                                               lobe_depths_um=lobe_depths_um)
            added = spots.iloc[len(before):][["z", "y", "x"]].to_numpy()
            near.append(int((cKDTree(centres * SPACING).query(added * SPACING)[0] <= 1.5).sum()))
        with_lobes += near[0]
        without_lobes += near[1]
        granules += len(centres)
    print(f"spots added near granules: {without_lobes} without the lobe depths, "
          f"{with_lobes} with them, {granules} granules")
    assert without_lobes >= 8, without_lobes
    assert with_lobes <= granules / 20, with_lobes


def test_a_granule_alone_gains_no_spot():
    # Granules of 4-15 molecules in a ball of 0.25 µm, nothing beside them: the lumps of a
    # granule's own image are not molecules on its flank. Measured: no spot added for 64
    # granules (2 with the peaks from 2.5 fitted widths accepted, the rule until 2026-12-06;
    # 14 from 2 widths); at most 1 in 20.
    added, granules = 0, 0
    for seed in range(10, 18):
        image, centres, _ = _granule_scene(seed, flank=False)
        run, before = _flank_run(image)
        added += len(run.spots) - len(before)
        granules += len(centres)
    assert added <= granules / 20, (added, granules)


def test_no_flank_spots_without_blend_fraction():
    # blend_fraction = 0 turns off both the split and the flank search: the spots are the
    # score's maxima, untouched.
    image, _, _ = _granule_scene(10, flank=True)
    run = segment_intermediates(image, SegmentationParams("rna", blend_fraction=0.0),
                                spacing=SPACING)
    maxima = find_spots(run.score, run.threshold, spacing=SPACING,
                        min_distance_um=PRESETS["rna"]["spot_sigma_um"])
    assert not run.spots["blended"].any()
    assert run.spots.drop(columns="blended").equals(maxima)
    assert len(segment_intermediates(image, "rna", spacing=SPACING).spots) > len(maxima)


def test_granule_fit_recovers_a_known_gaussian():
    # Oracle: noise-free Gaussians of known amplitude, centre and extra width (µm, added
    # in quadrature to the spot's per axis), fitted from a start one voxel and 30% off.
    from rna_localization.segmentation import detection

    sigma, spacing = np.array([1.6, 1.7, 1.7]), np.array([0.2, 0.065, 0.065])
    truth = [(500.0, (12.3, 20.6, 21.2), 0.0), (800.0, (11.6, 60.2, 59.7), 0.08),
             (300.0, (12.0, 40.4, 100.5), 0.15)]
    grid = np.indices((24, 80, 130)).astype(float)
    data = np.zeros(grid.shape[1:])
    for height, centre, extra in truth:
        width = np.sqrt(sigma ** 2 + (extra / spacing) ** 2)
        data += height * np.exp(-0.5 * sum(((grid[a] - centre[a]) / width[a]) ** 2
                                           for a in range(3)))
    start = np.array([c for _, c, _ in truth]) + np.array([0.6, -0.5, 0.5])
    height, centre, width = detection._fit_granules(
        data, start, np.array([h for h, _, _ in truth]) * 0.7, sigma, spacing)
    extra = np.sqrt(np.maximum(width ** 2 - sigma ** 2, 0)) * spacing
    assert height == pytest.approx([h for h, _, _ in truth], rel=1e-3)
    assert centre == pytest.approx(np.array([c for _, c, _ in truth]), abs=1e-3)
    assert extra == pytest.approx(np.array([[e] * 3 for _, _, e in truth]), abs=2e-3)


def _blobs(shape, blobs, rng):
    """Gaussian blobs (height, centre, widths in voxels) on unit white noise."""
    grid = np.indices(shape).astype(float)
    data = rng.normal(0.0, 1.0, shape)
    for height, centre, width in blobs:
        data += height * np.exp(-0.5 * sum(((grid[a] - centre[a]) / width[a]) ** 2
                                           for a in range(3)))
    return data


def _window(centre, reach):
    """A fit's window: its voxels' positions, z slowest, as the fits lay them out."""
    import itertools

    return np.array([np.add(centre, offset) for offset in
                     itertools.product(*(range(-r, r + 1) for r in reach))], dtype=np.int64)


def test_compiled_granule_fits_follow_the_fit_written_out():
    # Oracle: the same Gauss-Newton fit written out voxel by voxel on each whole window
    # (oracles.granule_fit), on noisy blobs of several widths, two of them cut by the
    # stack's faces, and one start far enough off that the centre limit holds it.
    from rna_localization.segmentation import detection

    import oracles

    rng = np.random.default_rng(3)
    sigma, spacing = np.array([0.95, 0.75, 0.75]), np.array([0.3, 0.11, 0.11])
    shape = (14, 48, 60)
    truth = [(40.0, (6.2, 20.4, 15.7), (0.95, 0.75, 0.75)),
             (25.0, (7.0, 30.0, 40.0), (1.3, 1.4, 1.2)),
             (60.0, (0.4, 10.0, 50.0), (1.1, 0.9, 1.0)),
             (30.0, (12.8, 44.5, 5.0), (1.0, 1.6, 1.6)),
             (20.0, (5.0, 40.0, 30.0), (2.0, 2.5, 2.5))]
    data = _blobs(shape, truth, rng)
    start = np.array([c for _, c, _ in truth]) + rng.normal(0.0, 0.7, (len(truth), 3))
    start[-1] += (2.5, 0.0, 0.0)
    start = np.clip(start, 0.0, np.array(shape) - 1.0)
    amplitude = np.array([h for h, _, _ in truth]) * 0.8
    height, centre, width = detection._fit_granules(data, start, amplitude, sigma, spacing)
    reach = np.ceil(detection._GRANULE_FIT_REACH * sigma).astype(int)
    for g in range(len(truth)):
        coords = _window(np.rint(start[g]).astype(int), reach)
        inside = np.all((coords >= 0) & (coords < shape), axis=1)
        clipped = np.clip(coords, 0, np.array(shape) - 1)
        expected = oracles.granule_fit(
            data[tuple(clipped.T)], inside, coords.astype(float), start[g], amplitude[g],
            sigma, spacing, low=np.maximum(start[g] - detection._GRANULE_MAX_SHIFT, -0.5),
            high=np.minimum(start[g] + detection._GRANULE_MAX_SHIFT, np.array(shape) - 0.5),
            max_extra=detection._GRANULE_MAX_WIDTH_UM ** 2,
            steps=detection._GRANULE_FIT_STEPS)
        assert height[g] == pytest.approx(expected[0], rel=1e-8)
        assert centre[g] == pytest.approx(expected[1:4], abs=1e-8)
        assert width[g] == pytest.approx(np.sqrt(sigma ** 2 + expected[4] / spacing ** 2),
                                         rel=1e-8)
    # The centre limit held the last one, and the others came near their blobs.
    assert np.abs(centre[-1] - start[-1]).max() == pytest.approx(detection._GRANULE_MAX_SHIFT)
    assert np.abs(centre[:2] - np.array([c for _, c, _ in truth[:2]])).max() < 0.3


def test_compiled_pair_fits_follow_the_fit_written_out():
    # Oracle: oracles.pair_fit on each whole window; pairs of blended molecules on noise,
    # one pair's window cut by the stack's first plane (no data there), one start that
    # is no pair at all (a lone molecule).
    from rna_localization.segmentation import detection

    import oracles

    rng = np.random.default_rng(4)
    sigma = np.array([0.95, 0.75, 0.75])
    shape = (12, 40, 40)
    pairs = [((6.0, 10.0, 10.0), (6.3, 11.4, 10.8)), ((1.0, 25.0, 12.0), (1.5, 26.0, 13.0)),
             ((6.0, 20.0, 30.0), (6.0, 20.0, 32.0))]
    blobs = [(30.0, c, sigma) for pair in pairs[:2] for c in pair] + [(30.0, (6.0, 20.0, 30.0),
                                                                       sigma)]
    data = _blobs(shape, blobs, rng)
    start_1 = np.array([p[0] for p in pairs]) + rng.normal(0.0, 0.3, (3, 3))
    start_2 = np.array([p[1] for p in pairs]) + rng.normal(0.0, 0.3, (3, 3))
    amplitude = np.array([30.0, 30.0, 30.0])

    def data_at(rows, voxels):
        inside = np.all((voxels >= 0) & (voxels < shape), axis=2)
        clipped = np.clip(voxels, 0, np.array(shape) - 1)
        return np.where(inside, data[tuple(np.moveaxis(clipped, 2, 0))], np.nan)

    a1, a2, m1, m2 = detection._fit_pairs(data_at, start_1, start_2, amplitude, sigma)
    reach = np.ceil(detection._FIT_REACH * sigma).astype(int)
    for n in range(len(pairs)):
        coords = _window(np.rint(0.5 * (start_1[n] + start_2[n])).astype(int), reach)
        window = data_at(None, coords[None])[0]
        expected = oracles.pair_fit(window, coords.astype(float), start_1[n], start_2[n],
                                    amplitude[n], sigma, steps=detection._FIT_STEPS)
        assert [a1[n], a2[n]] == pytest.approx(expected[:2], rel=1e-7, abs=1e-7)
        assert m1[n] == pytest.approx(expected[2:5], abs=1e-7)
        assert m2[n] == pytest.approx(expected[5:8], abs=1e-7)
    # The first pair is found where it was drawn.
    assert np.sort([m1[0][2], m2[0][2]]) == pytest.approx([10.0, 10.8], abs=0.3)


def test_a_molecule_beside_a_granule_keeps_its_own_object_its_lumps_do_not():
    import pandas as pd

    from rna_localization.segmentation.detection import GRANULE_MERGE_SIGMAS, grow_objects

    z, y, x = np.mgrid[:9, :25, :70].astype(np.float64)

    def spot(cx, amplitude, sigma=1.3):
        return amplitude * np.exp(-((z - 4) ** 2 + (y - 12) ** 2 + (x - cx) ** 2) / (2 * sigma**2))

    # A granule of two bright lumps 3.5 voxels (2.7 sigmas) apart, whose saddle is 0.78 of
    # their peaks; a single molecule 5 voxels (3.8 sigmas) beyond the granule's nearer
    # lump, in its tail (saddle 0.78 of its peak); three lone molecules for the median.
    centres = [(20.0, 10.0), (23.5, 10.0), (28.5, 1.0), (45.0, 1.0), (52.0, 1.0), (59.0, 1.0)]
    filtered = sum(spot(cx, a) for cx, a in centres).astype(np.float32)
    spots = pd.DataFrame({"z": 4.0, "y": 12.0, "x": [cx for cx, _ in centres], "zi": 4, "yi": 12,
                          "xi": [round(cx) for cx, _ in centres]})

    def objects(granule_reach):
        labels = grow_objects(filtered, filtered / 0.01, spots, floor=5, mask_fraction=0.3,
                              saddle_ratio=0.9, granule_saddle_ratio=0.5,
                              granule_reach=granule_reach)
        return [int(labels[4, 12, xi]) for xi in spots["xi"]]

    # Without a reach, the granule's ratio pulls the molecule into the granule's object.
    unlimited = objects(None)
    assert unlimited[0] == unlimited[1] == unlimited[2]
    # Within GRANULE_MERGE_SIGMAS spot sigmas only: the lumps stay one object, the molecule
    # is its own; the lone molecules are untouched either way.
    limited = objects(GRANULE_MERGE_SIGMAS * np.full(3, 1.3))
    assert limited[0] == limited[1] != limited[2]
    assert len(set(limited)) == 5
    assert 0 not in limited


def test_granules_stacked_along_z_stay_apart_a_granules_lumps_across_do_not():
    import pandas as pd

    from rna_localization.segmentation.detection import (
        GRANULE_MERGE_SIGMAS,
        granule_merge_reach,
        grow_objects,
    )

    # The widefield grid: a spot of 1.1 voxels (0.33 µm) along z, 1.05 (0.115 µm) across.
    spacing, sigma = (0.3, 0.11, 0.11), np.array([1.1, 1.05, 1.05])
    z, y, x = np.mgrid[:16, :25, :90].astype(np.float64)

    def spot(cz, cx, amplitude):
        return amplitude * np.exp(-0.5 * (((z - cz) / sigma[0]) ** 2 + ((y - 12) / sigma[1]) ** 2
                                          + ((x - cx) / sigma[2]) ** 2))

    # Two granules, one 1.8 voxels (0.54 µm) above the other and 1.7 voxels (0.19 µm)
    # aside (2.3 spot sigmas apart); one granule whose two lumps lie 2.5 sigmas apart
    # across; five lone molecules for the median spot.
    centres = [(6.0, 12.0, 10.0), (7.8, 13.7, 10.0), (7.0, 40.0, 10.0), (7.0, 42.625, 10.0),
               *[(7.0, cx, 1.0) for cx in (55.0, 62.0, 69.0, 76.0, 83.0)]]
    filtered = sum(spot(cz, cx, a) for cz, cx, a in centres).astype(np.float32)
    spots = pd.DataFrame({"z": [c[0] for c in centres], "y": 12.0,
                          "x": [c[1] for c in centres], "zi": [round(c[0]) for c in centres],
                          "yi": 12, "xi": [round(c[1]) for c in centres]})

    def objects(granule_reach, granule_ratio=0.8):
        labels = grow_objects(filtered, filtered / 0.01, spots, floor=5, mask_fraction=0.3,
                              saddle_ratio=0.95, granule_saddle_ratio=granule_ratio,
                              granule_reach=granule_reach)
        return [int(labels[zi, 12, xi]) for zi, xi in zip(spots["zi"], spots["xi"])]

    # Both pairs' light dips between the granule's ratio and the usual one: the usual
    # ratio splits each, the granule's joins each.
    assert len(set(objects(None, 0.95))) == 9
    everywhere = objects(None)
    assert everywhere[0] == everywhere[1]
    assert everywhere[2] == everywhere[3]

    found = objects(granule_merge_reach(sigma, spacing))
    assert 0 not in found
    assert found[0] != found[1]  # the stacked granules: two objects
    assert found[2] == found[3]  # the lumps across: one granule
    assert len(set(found)) == 8
    # As many spot sigmas along z as across (1 µm here) join the stacked pair.
    alike = objects(GRANULE_MERGE_SIGMAS * sigma)
    assert alike[0] == alike[1]
    assert alike[2] == alike[3]


def test_granules_cut_by_the_stack_faces_are_fitted_and_drawn_inside_it():
    # A granule centred a plane above the stack (its light cut by plane 0) and one past
    # the last row: the fit keeps every centre inside the image, and drawing spots
    # centred just outside each face gives each one's Gaussian on the voxels inside
    # (computed directly), with no index falling outside the padding.
    from rna_localization.segmentation import detection

    sigma, spacing = np.array([1.6, 1.7, 1.7]), np.array([0.2, 0.065, 0.065])
    shape = (12, 40, 50)
    grid = np.indices(shape).astype(float)
    data = np.zeros(shape)
    for centre in ((-1.0, 20.0, 25.0), (6.0, 40.6, 10.0)):
        data += 800 * np.exp(-0.5 * sum(((grid[a] - centre[a]) / sigma[a]) ** 2
                                        for a in range(3)))
    start = np.array([[0.3, 20.0, 25.0], [6.0, 39.0, 10.0]])
    _, centre, _ = detection._fit_granules(data, start, np.array([500.0, 500.0]), sigma,
                                           spacing)
    assert np.all(centre >= -0.5)
    assert np.all(centre <= np.array(shape) - 0.5)
    outside = np.array([[-0.9, 20, 25], [12.4, 20, 25], [6, -0.7, 25], [6, 40.3, 25],
                        [6, 20, -0.6], [6, 20, 50.4]])
    drawn = detection._draw_spots(shape, outside, np.full(len(outside), 100.0), sigma)
    expected = np.zeros(shape)
    for position in outside:
        expected += 100 * np.exp(-0.5 * sum(((grid[a] - position[a]) / sigma[a]) ** 2
                                            for a in range(3)))
    # Drawn out to 3 sigmas of the nearest voxel inside: the tails beyond are cut.
    assert drawn == pytest.approx(expected, abs=100 * np.exp(-0.5 * 2.4 ** 2))
    assert drawn.max() > 50


def test_spot_shape_is_measured_on_the_image():
    # Gaussian spots of known sigmas (voxels) with noise, brightness varying 3-fold:
    # the median neighbour-to-peak ratio gives the sigma back.
    rng = np.random.default_rng(2)
    shape, sigma = (20, 96, 96), np.array([1.4, 1.1, 1.1])
    centres = np.stack(np.meshgrid(*[np.arange(5, n - 4, 9) for n in shape], indexing="ij"),
                       axis=-1).reshape(-1, 3) + rng.uniform(-0.5, 0.5, (1, 3))
    grid = np.indices(shape).astype(float)
    filtered = rng.normal(0.0, 1.0, shape)
    for centre, amplitude in zip(centres, rng.uniform(30, 90, len(centres)), strict=True):
        filtered += amplitude * np.exp(-0.5 * sum(((grid[a] - centre[a]) / sigma[a]) ** 2
                                                  for a in range(3)))
    spots = find_spots(filtered, 10.0, spacing=1.0, min_distance_um=1.0)
    assert len(spots) == len(centres)
    assert spot_shape(filtered, spots) == pytest.approx(sigma, rel=0.06)
    assert spot_shape(filtered, spots.head(5)) is None  # too few to measure


def test_masks_follow_the_optics_not_the_brightness():
    dim, _ = _spots_image([(10, 32, 32)], [150], seed=1)
    bright, _ = _spots_image([(10, 32, 32)], [3000], seed=1)
    sizes = []
    for image in (dim, bright):
        labels = ndimage.label(segment(image, "rna"), structure=FACE)[0]
        sizes.append(int(np.count_nonzero(labels == labels[10, 32, 32])))
    assert min(sizes) > 0
    assert max(sizes) / min(sizes) < 1.5, sizes


def test_resolved_molecules_stay_apart_and_a_granule_stays_whole():
    # Two molecules 0.45 um apart laterally (resolved), and a granule of 8
    # molecules within 0.15 um, far from them.
    rng = np.random.default_rng(4)
    pair = [(10, 20, 20), (10, 20, 20 + 0.45 / SPACING[2])]
    granule = [tuple(np.array([10, 44, 44]) + rng.normal(0, 0.08, 3) / SPACING) for _ in range(8)]
    image, _ = _spots_image(pair + granule, [600] * 10, seed=2)
    labels = ndimage.label(segment(image, "rna"), structure=FACE)[0]
    hit = [labels[tuple(np.rint(c).astype(int))] for c in pair + granule]
    assert hit[0] > 0
    assert hit[1] > 0
    assert hit[0] != hit[1]
    assert len(set(hit[2:])) == 1
    assert hit[2] > 0
    assert labels.max() == 3


def test_centrosome_default_detection_keeps_pairs_apart(simulated):
    found, total, merged_pairs, extra = 0, 0, 0, 0
    volume, true_volume = 0.0, 0.0
    for sim in simulated:
        mask = segment(sim.centrosomes, "centrosomes", spacing=sim.spacing)
        labels, _ = _objects(mask)
        table = sim.centrosomes_table
        # Masks at the centrosomes' own size: the simulated balls' volume, 4/3 pi r^3.
        volume += float(np.count_nonzero(labels)) * float(np.prod(SPACING))
        true_volume += float(np.sum(4 / 3 * np.pi * table["radius_um"] ** 3))
        centre = np.clip(np.rint(table[["z", "y", "x"]].to_numpy()).astype(int), 0,
                         np.array(mask.shape) - 1)
        hit = labels[tuple(centre.T)]
        found += int(np.count_nonzero(hit))
        total += len(table)
        for _, pair in table.assign(hit=hit).groupby("nucleus_id"):
            pair_hits = pair["hit"].to_numpy()
            pair_hits = pair_hits[pair_hits > 0]
            merged_pairs += int(pair_hits.size != np.unique(pair_hits).size)
        extra += labels.max() - np.unique(hit[hit > 0]).size
    assert total >= 40
    assert found / total >= 0.95
    assert merged_pairs == 0
    assert extra <= 0.1 * total
    assert abs(volume / true_volume - 1) <= 0.2, (volume, true_volume)


def test_touching_centrosome_pair_is_split():
    # Two blurred balls 1.2 um apart (pairs sit 3-4.5 um apart): their masks touch
    # unless the saddle rule splits them.
    shape = (20, 64, 64)
    zz, yy, xx = np.indices(shape) * SPACING[:, None, None, None]
    image = np.zeros(shape)
    for cx in (1.5, 2.7):
        image += 400 * np.exp(-((zz - 2) ** 2 / 0.35**2 + (yy - 2.0) ** 2 / 0.25**2
                                + (xx - cx) ** 2 / 0.25**2) / 2)
    rng = np.random.default_rng(0)
    image = rng.poisson(image + 100).astype(np.uint16) + 100
    unsplit = segment(image, SegmentationParams("centrosomes", split_saddle_ratio=0.0,
                                                mask_fraction=0.05, mask_smoothing=1.0,
                                                max_volume_um3=0))  # the merged pair is large
    split = segment(image, "centrosomes")
    assert ndimage.label(unsplit, structure=FACE)[1] == 1
    assert ndimage.label(split, structure=FACE)[1] == 2

def test_microns_to_voxels_depends_on_spacing():
    np.testing.assert_allclose(microns_to_voxels(0.13, (0.2, 0.065, 0.065)), [0.65, 2, 2])
    np.testing.assert_allclose(microns_to_voxels(0.13, (0.26, 0.13, 0.13)), [0.5, 1, 1])
    assert volume_to_voxels(0.01, (0.2, 0.1, 0.1)) == pytest.approx(5.0)
    assert volume_to_voxels(0.01, (0.1, 0.1, 0.1)) == pytest.approx(10.0)


def test_size_filter_matches_scikit_image_max_size():
    from skimage.morphology import remove_small_objects

    rng = np.random.default_rng(5)
    mask = rng.random((10, 40, 40)) > 0.8
    spacing = (0.2, 0.1, 0.1)
    ours = size_filter(mask, 0.008, spacing=spacing)  # 4 voxels
    theirs = remove_small_objects(mask, max_size=4, connectivity=1)
    np.testing.assert_array_equal(ours, theirs)


def test_size_filter_with_a_maximum_matches_a_brute_force_count():
    from skimage.morphology import remove_small_objects

    rng = np.random.default_rng(6)
    mask = rng.random((10, 40, 40)) > 0.7
    spacing = (0.2, 0.1, 0.1)  # 0.002 um^3 a voxel
    labels, n = ndimage.label(mask, structure=FACE)
    large = [i for i in range(1, n + 1) if np.count_nonzero(labels == i) > 10]
    assert large  # the mask has components of both kinds
    expected = remove_small_objects(mask, max_size=4, connectivity=1) & ~np.isin(labels, large)
    ours = size_filter(mask, 0.008, max_volume_um3=0.02, spacing=spacing)  # 4 < voxels <= 10
    np.testing.assert_array_equal(ours, expected)
    np.testing.assert_array_equal(size_filter(mask, 0, max_volume_um3=0.02, spacing=spacing),
                                  mask & ~np.isin(labels, large))


def _two_blobs(radii_um, seed=0):
    """Blurred balls of these radii (µm) on a flat background with shot noise, 2.5 µm apart."""
    shape = (20, 64, 96)
    zz, yy, xx = np.indices(shape) * SPACING[:, None, None, None]
    image = np.zeros(shape)
    for i, radius in enumerate(radii_um):
        inside = ((zz - 2) ** 2 + (yy - 2.0) ** 2 + (xx - 1.5 - 2.5 * i) ** 2) <= radius**2
        image += 600 * ndimage.gaussian_filter(inside.astype(float), PSF_UM / SPACING)
    return np.random.default_rng(seed).poisson(image + 100).astype(np.uint16) + 100


def test_max_volume_removes_the_objects_above_it_and_says_so():
    image = _two_blobs((0.25, 0.6))
    unlimited = segment(image, SegmentationParams("centrosomes", max_volume_um3=0))
    labels, n = ndimage.label(unlimited, structure=FACE)
    assert n == 2
    # The limit judges each object on the region it grew over, before its mask is cut again
    # at its own peak (refine_masks): the masks of the same workflow without that step.
    grown = segment_intermediates(image, SegmentationParams("centrosomes", max_volume_um3=0,
                                                            refine_masks=False)).labels
    volumes = np.bincount(grown.ravel())[1:] * float(np.prod(SPACING))
    assert volumes.size == 2
    big_at = np.argwhere(grown == np.argmax(volumes) + 1)[0]
    big = labels[tuple(big_at)]
    small = 3 - big
    limit = float(np.mean(volumes))  # between the two
    params = SegmentationParams("centrosomes", max_volume_um3=limit)
    with pytest.warns(LargeObjectsRemovedWarning) as record:
        limited = segment(image, params)
    np.testing.assert_array_equal(limited > 0, labels == small)
    assert len(record) == 1
    assert record[0].filename == __file__  # where segment was called
    assert record[0].message.count == 1
    assert record[0].message.largest_um3 == pytest.approx(volumes.max())
    with pytest.warns(LargeObjectsRemovedWarning):
        run = segment_intermediates(image, params)
    assert (run.removed, run.removed_largest_um3) == (1, pytest.approx(volumes.max()))
    message = str(record[0].message)
    assert message.startswith(f"1 object of more than max_volume_um3 = {limit:g} µm³ removed "
                              f"(the largest {volumes.max():.3g} µm³)")
    assert "raise max_volume_um3 (0: no limit)" in message
    # The preset's 2 um^3 keeps both (a centrosome is far smaller), without a warning.
    with warnings.catch_warnings():
        warnings.simplefilter("error", LargeObjectsRemovedWarning)
        np.testing.assert_array_equal(segment(image, "centrosomes"), unlimited)


def test_max_volume_must_be_above_min_volume(tmp_path):
    with pytest.raises(ValueError, match=r"max_volume_um3 \(0.01\) must be above min_volume_um3 "
                                         r"\(0.02\): set max_volume_um3 above it, or to 0"):
        SegmentationParams("centrosomes", min_volume_um3=0.02, max_volume_um3=0.01)
    # A file saved before the key existed takes the preset's value: the message says so,
    # and names the file.
    old = tmp_path / "params_centrosomes.toml"
    old.write_text('workflow = "centrosomes"\nmin_volume_um3 = 2.5\n', encoding="utf-8")
    with pytest.raises(ValueError, match=rf"parameter file {old}: centrosomes parameter "
                                         r"max_volume_um3 \(2.0; 2.0 is the centrosomes preset's, "
                                         r"which parameters that do not set max_volume_um3 take\)"):
        load_params(old)
    with pytest.raises(ValueError, match="max_volume_um3"):
        SegmentationParams("rna", max_volume_um3=-1)
    assert SegmentationParams("rna").max_volume_um3 == 0
    assert SegmentationParams("centrosomes").max_volume_um3 == 2.0


def test_no_widefield_out_of_focus_blob_is_taken_for_a_centrosome():
    # Image 19 of the widefield demo data set (seed 0): an out-of-focus blob of the
    # centrosome channel leaves a residual just above the threshold, grown into a 4.9 um^3
    # object on no centrosome, the false target of every RNA object around it. Every
    # object must lie on a simulated centrosome, at its size. (Image 5 held such a blob,
    # of 8 um^3, until the simulator's brightness spread was recalibrated, 2026-12-06:
    # the same seed now draws another scene; 2 of the 60 images of seeds 0-2 hold one.)
    seed = int(np.random.SeedSequence(0).spawn(20)[18].generate_state(1)[0])
    sim = synthetic.simulate_image("gapdh_nc13_r1_03", rna_type="gapdh", cycle="nc13",
                                   replicate=1, seed=seed, preset="widefield")
    truth = sim.centrosome_labels > 0
    voxel_um3 = float(np.prod(sim.spacing))
    unlimited = ndimage.label(segment(sim.centrosomes, SegmentationParams(
        "centrosomes", max_volume_um3=0), spacing=sim.spacing), structure=FACE)[0]
    off = np.setdiff1d(np.unique(unlimited), np.unique(unlimited[truth]))
    assert off.size == 1  # the case this test is about
    assert (np.count_nonzero(unlimited == off[0]) * voxel_um3
            > 2 * PRESETS["centrosomes"]["max_volume_um3"])
    with pytest.warns(LargeObjectsRemovedWarning, match="1 object of more than"):
        labels = ndimage.label(segment(sim.centrosomes, "centrosomes", spacing=sim.spacing),
                               structure=FACE)[0]
    assert np.setdiff1d(np.unique(labels), np.unique(labels[truth])).size == 0
    assert labels.max() == ndimage.label(truth, structure=FACE)[1]
    volume = np.count_nonzero(labels) / np.count_nonzero(truth)
    assert abs(volume - 1) <= 0.2, volume


def test_separate_touching_makes_labels_the_face_components():
    labels = np.zeros((3, 6, 8), np.int32)
    labels[:, :, :4] = 1
    labels[:, :, 4:] = 2
    labels[1, 2:4, 2:6] = 3
    mask = separate_touching(labels)
    components, n = ndimage.label(mask, structure=FACE)
    assert n == 3
    for label in (1, 2, 3):
        assert np.unique(components[mask & (labels == label)]).size == 1
    assert mask[labels == 3].all()  # the small object keeps every voxel
    # Brute force: no two face neighbours of the mask carry different labels.
    for z, y, x in np.argwhere(mask):
        for dz, dy, dx in [(1, 0, 0), (0, 1, 0), (0, 0, 1)]:
            q = (z + dz, y + dy, x + dx)
            if all(c < n_ for c, n_ in zip(q, mask.shape, strict=True)) and mask[q]:
                assert labels[z, y, x] == labels[q]


def test_segment_rejects_bad_images():
    with pytest.raises(ValueError, match=r"3D \(Z, Y, X\).*shape \(32, 32\)"):
        segment(np.zeros((32, 32)), "rna")
    with pytest.raises(TypeError, match="params must be SegmentationParams.*got float"):
        segment(np.zeros((4, 8, 8)), 0.5)
    with pytest.raises(ValueError, match="workflow must be one of 'rna', 'centrosomes'; got 'nuclei'"):
        segment(np.zeros((4, 8, 8)), "nuclei")


# ----------------------------------------------------------- parameters
def test_params_round_trip(tmp_path):
    params = SegmentationParams("rna", spot_sigma_um=(0.35, 0.12), threshold=5.5,
                                noise_block_um=(2.0, 4.0), split_saddle_ratio=0.3)
    path = params.save(tmp_path / "sub" / "rna.toml")
    assert SegmentationParams.load(path) == params
    assert load_params(path) == params
    assert 'workflow = "rna"' in path.read_text()
    cent = SegmentationParams("centrosomes", min_volume_um3=0.02)
    assert load_params(cent.save(tmp_path / "c.toml")) == cent


def test_one_parameter_type_with_a_preset_per_workflow(tmp_path):
    """Fields not given take the workflow's preset; files of the two old classes still load."""
    cent = SegmentationParams("centrosomes", threshold=12.0)
    assert cent.threshold == 12.0
    assert cent.spot_sigma_um == (0.35, 0.2)  # the centrosome preset, not the RNA one
    assert cent.split_saddle_ratio == PRESETS["centrosomes"]["split_saddle_ratio"] == 0.5
    assert SegmentationParams("rna") == SegmentationParams.from_dict(PRESETS["rna"], workflow="rna")
    assert SegmentationParams() == SegmentationParams("rna")
    old = tmp_path / "old.toml"  # as CentrosomeParams.save wrote it
    old.write_text("# CentrosomeParams: parameters of the 'centrosomes' segmentation workflow.\n"
                   'workflow = "centrosomes"\nthreshold = 10.0\nmin_volume_um3 = 0.02\n')
    assert load_params(old) == SegmentationParams("centrosomes", min_volume_um3=0.02)
    assert 'workflow = "centrosomes"' in cent.save(tmp_path / "c.toml").read_text()


def test_params_errors_name_the_parameter(tmp_path):
    with pytest.raises(ValueError, match=r"threshold must be a number >= 0.*-1"):
        SegmentationParams("rna", threshold=-1)
    with pytest.raises(ValueError, match=r"split_saddle_ratio must be between 0 and 1; got 2"):
        SegmentationParams("centrosomes", split_saddle_ratio=2)
    with pytest.raises(ValueError, match=r"spot_sigma_um must be two positive microns.*\[0.0, 0.1\]"):
        SegmentationParams("rna", spot_sigma_um=[0, 0.1])
    with pytest.raises(ValueError, match=r"background_ratio must be a number > 1"):
        SegmentationParams("rna", background_ratio=0.5)
    for ratio in (0.5, 1.0, -1, float("nan")):  # a source as bright as the spot, or dimmer
        with pytest.raises(ValueError, match=r"defocus_ratio must be 0 \(off\) or a number above 1"):
            SegmentationParams("rna", defocus_ratio=ratio)
    assert SegmentationParams("rna", defocus_ratio=0).defocus_ratio == 0.0
    path = tmp_path / "typo.toml"
    path.write_text('workflow = "rna"\nthreshhold = 5.0\n')
    with pytest.raises(ValueError, match=r"unknown rna parameter 'threshhold'.*'threshold'"):
        load_params(path)
    path.write_text('workflow = "centrosomes"\n')
    with pytest.raises(ValueError, match="for workflow 'centrosomes', not 'rna'"):
        SegmentationParams.from_dict({"workflow": "centrosomes"}, workflow="rna", source=str(path))
    path.write_text("threshold = 5.0\n")
    with pytest.raises(ValueError, match=r'must name its workflow.*workflow = "rna"'):
        load_params(path)


# ---------------------------------------------------------------- batch
def _small_images(folder, n=3, shape=(16, 96, 96)):
    folder.mkdir(parents=True, exist_ok=True)
    sims = []
    for seed in range(n):
        sim = synthetic.simulate_image(f"img{seed}", rna_type="cen", cycle="nc14", seed=seed,
                                       shape=shape)
        tifffile.imwrite(folder / f"img{seed}.tif", sim.rna)
        sims.append(sim)
    return sims


def test_segment_folder_writes_masks_skips_existing_and_reviews(tmp_path):
    sims = _small_images(tmp_path / "raw")
    out = tmp_path / "seg"
    written = segment_folder(tmp_path / "raw", out, workflow="rna", workers=2)
    assert [p.name for p in written] == ["img0_seg.tif", "img1_seg.tif", "img2_seg.tif"]
    for sim, path in zip(sims, written, strict=True):
        mask = tifffile.imread(path)
        assert mask.dtype == np.uint8
        assert mask.shape == sim.rna.shape
        np.testing.assert_array_equal(mask, segment(sim.rna, "rna"))
    page = (out / "qc" / "index.html").read_text()
    for name in ("img0", "img1", "img2"):
        assert f'src="{name}.png"' in page
        assert (out / "qc" / f"{name}.png").stat().st_size > 0
    # Nothing is redone, nothing overwritten, unless asked.
    sentinel = np.zeros((16, 96, 96), np.uint8)
    tifffile.imwrite(written[0], sentinel)
    assert segment_folder(tmp_path / "raw", out, workflow="rna") == []
    np.testing.assert_array_equal(tifffile.imread(written[0]), sentinel)
    # The QC page follows a mask edited by hand.
    assert "img0 &middot; 0 objects" in (out / "qc" / "index.html").read_text()
    again = segment_folder(tmp_path / "raw", out, workflow="rna", overwrite=True, qc=False)
    assert len(again) == 3
    assert tifffile.imread(written[0]).any()


def test_images_at_once_follow_the_memory_available():
    from rna_localization.parallel import usable_cores
    from rna_localization.segmentation.batch import SEGMENT_BYTES_PER_VOXEL, images_at_once

    voxels = 60 * 2048 * 2048
    one = voxels * SEGMENT_BYTES_PER_VOXEL
    cores = usable_cores()
    # workers = 0: one per core, but no more than fit.
    assert images_at_once(0, 50, voxels, int(1.5 * one)) == (1, None)
    assert images_at_once(0, 50, voxels, 100 * one) == (min(cores, 50), None)
    assert images_at_once(0, 1, voxels, 100 * one) == (1, None)
    # A number asked for is kept; too many for the memory is said, with what would fit.
    n, text = images_at_once(4, 50, voxels, int(2.5 * one))
    assert n == 4
    assert "--workers 2" in text
    assert f"{one / 1e9:.1f} GB" in text
    assert images_at_once(4, 50, voxels, 4 * one) == (4, None)
    # One image that does not fit on its own.
    n, text = images_at_once(0, 3, voxels, one // 2)
    assert n == 1
    assert "largest stack" in text


def test_segment_folder_warns_when_memory_is_short(tmp_path, monkeypatch):
    from rna_localization.segmentation import batch

    _small_images(tmp_path / "raw", n=2)
    need = 16 * 96 * 96 * batch.SEGMENT_BYTES_PER_VOXEL
    monkeypatch.setattr(batch, "available_memory", lambda: need // 2)
    with pytest.warns(UserWarning, match=r"147,456 voxels\) takes about"):
        written = segment_folder(tmp_path / "raw", tmp_path / "seg", workflow="rna", qc=False)
    assert len(written) == 2  # warned, not stopped


def test_segment_folder_uses_a_parameter_file_and_names_bad_files(tmp_path):
    sims = _small_images(tmp_path / "raw", n=1)
    params = SegmentationParams("rna", threshold=8.0)
    path = params.save(tmp_path / "p.toml")
    written = segment_folder(tmp_path / "raw", tmp_path / "seg", workflow="rna", params=path,
                             suffix="_mask", qc=False)
    assert written == [tmp_path / "seg" / "img0_mask.tif"]
    np.testing.assert_array_equal(tifffile.imread(written[0]), segment(sims[0].rna, params))
    with pytest.raises(ValueError, match=r"'centrosomes' workflow needs its own parameters.*'rna'"):
        segment_folder(tmp_path / "raw", tmp_path / "c", workflow="centrosomes", params=path)
    tifffile.imwrite(tmp_path / "raw" / "flat.tif", np.zeros((32, 32), np.uint16))
    with pytest.raises(ValueError, match=r"flat\.tif"):
        segment_folder(tmp_path / "raw", tmp_path / "seg", workflow="rna", qc=False)


def test_segment_structure_follows_the_config(tmp_path):
    from rna_localization.config import Config

    data = tmp_path / "data"
    _small_images(data / "rna" / "raw-data", n=1)
    _small_images(data / "nuclei" / "raw-data", n=1)
    config = Config.from_dict({"data": {"data_dir": str(data), "segmentation_file_suffix": "_s"},
                               "scale": {"xy": 0.065, "z": 0.2}})
    written = segment_structure(config, "rna", workers=1, qc=False)
    assert written == [data / "rna" / "segmentations" / "img0_s.tif"]
    with pytest.raises(ValueError, match="no default segmentation workflow for structure 'nuclei'"):
        segment_structure(config, "nuclei")
    cent = SegmentationParams("centrosomes").save(tmp_path / "cent.toml")
    with pytest.raises(ValueError, match="is for the 'centrosomes' workflow but structure 'rna'"):
        segment_structure(config, "rna", workflow_file=cent)
    assert len(segment_structure(config, "nuclei", workflow_file=cent, qc=False)) == 1


@pytest.mark.parametrize(("script", "workflow"), [("seg_rna.py", "rna"), ("seg_cent.py", "centrosomes")])
def test_batch_script_runs(tmp_path, script, workflow):
    sims = _small_images(tmp_path / "raw", n=1)
    params = SegmentationParams(workflow, min_volume_um3=0.0 if workflow == "rna" else 0.02)
    params.save(tmp_path / "p.toml")
    command = [sys.executable, str(ROOT / "batch-processing-scripts" / script), "--input",
               str(tmp_path / "raw"), "--output", str(tmp_path / "seg"), "--params",
               str(tmp_path / "p.toml"), "--xy-scale", "0.065", "--z-scale", "0.2"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "1 segmentation(s) written" in done.stdout
    channel = sims[0].rna  # the script segments whatever stack it is given
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "seg" / "img0_seg.tif"),
                                  segment(channel, params))
    bad = subprocess.run(command[:2] + ["--input", str(tmp_path / "missing"), "--output",
                                        str(tmp_path / "x")],
                         capture_output=True, text=True, timeout=120, check=False)
    assert bad.returncode == 1
    assert "missing" in bad.stderr


# ------------------------------------------------------------ notebooks
@pytest.mark.parametrize(("notebook", "workflow"), [("playground_rna.ipynb", "rna"),
                                                   ("playground_centrosomes.ipynb", "centrosomes")])
def test_playground_notebook_runs_headless(tmp_path, notebook, workflow):
    sim = synthetic.simulate_image("tiny", rna_type="cen", cycle="nc14", seed=3,
                                   shape=(16, 96, 96))
    image = sim.rna if workflow == "rna" else sim.centrosomes
    tifffile.imwrite(tmp_path / "tiny.tif", image)
    out = tmp_path / "test-segmentations"
    execute_notebook(
        ROOT / "optimized-segmentation-notebooks" / notebook, tmp_path / notebook,
        parameters={"image_path": str(tmp_path / "tiny.tif"), "output_dir": str(out),
                    "params_file": str(tmp_path / "params.toml"), "min_volume_um3": 0.02,
                    "save_params": True},
        cwd=tmp_path, sockets=tmp_path / "kernel",
    )
    params = load_params(tmp_path / "params.toml")
    assert params.workflow == workflow
    assert params.min_volume_um3 == 0.02
    saved = tifffile.imread(out / f"tiny_test_{workflow}_segmentation.tif")
    np.testing.assert_array_equal(saved, segment(image, params))
    assert saved.any()
    assert tifffile.imread(out / f"tiny_test_{workflow}_score.tif").shape == image.shape


# ------------------------------------------------------------------ the segment command's report
def _segment(config: Path, *extra: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "rna_localization.cli", "segment", "--config", str(config),
         "--structure", "rna", "--workers", "1", *extra],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def test_segment_command_says_what_it_wrote_skipped_and_where_the_qc_page_is(tmp_path):
    import html
    import re

    import matplotlib.image

    data = synthetic.simulate_dataset(tmp_path / "data", n_images=2, shape=(14, 64, 64))
    config = Path(data) / "pipeline.toml"
    seg_dir = Path(data) / "rna" / "segmentations"
    names = sorted(p.stem for p in (Path(data) / "rna" / "raw-data").glob("*.tif"))
    masks = [seg_dir / f"{name}_seg.tif" for name in names]
    assert len(names) == 2
    assert all(mask.exists() for mask in masks)  # the simulator's ideal masks
    page = seg_dir / "qc" / "index.html"
    tail = f"; none of the 2 images looks wrong; review {page}"

    # Both exist: nothing written, both skipped, and the way to rewrite them is said.
    assert _segment(config) == (
        "rna: 0 segmentation(s) written, 2 skipped (they exist; --overwrite rewrites them)" + tail)
    untouched = masks[1].stat().st_mtime_ns
    masks[0].unlink()
    assert _segment(config) == (
        "rna: 1 segmentation(s) written, 1 skipped (it exists; --overwrite rewrites it)" + tail)
    assert masks[0].exists()
    assert masks[1].stat().st_mtime_ns == untouched
    assert _segment(config, "--overwrite") == "rna: 2 segmentation(s) written, none skipped" + tail
    assert masks[1].stat().st_mtime_ns != untouched

    # The page it names shows each image's thumbnail, linked to its full-resolution overlay.
    text = html.unescape(page.read_text(encoding="utf-8"))
    links = dict(re.findall(r'<a href="([^"]+)"><img src="([^"]+)"', text))
    assert sorted(links.values()) == [f"{name}.png" for name in names]
    for name in names:
        full = page.parent / f"full/{name}.png"
        assert links[f"full/{name}.png"] == f"{name}.png"
        assert matplotlib.image.imread(full).shape[:2] == (64, 64)  # the stack's (Y, X)
        assert (page.parent / f"{name}.png").stat().st_size > 0


def test_qc_thumbnails_of_large_stacks_are_reduced_and_link_to_full_resolution(tmp_path):
    """A stack wider than QC_MAX_SIDE: the page shows a reduced overlay, the link opens every pixel."""
    import matplotlib.image

    from rna_localization.io import write_stack
    from rna_localization.segmentation.batch import QC_MAX_SIDE

    rng = np.random.default_rng(0)
    shape = (3, 300, 2 * QC_MAX_SIDE + 10)
    raw, out = tmp_path / "raw", tmp_path / "seg"
    spacing = (0.2, 0.065, 0.065)
    write_stack(raw / "wide.tif", rng.integers(100, 200, shape, dtype=np.uint16), spacing=spacing)
    mask = np.zeros(shape, np.uint8)
    mask[1, 100:120, 500:520] = 255
    write_stack(out / "wide_seg.tif", mask, spacing=spacing)  # left by hand: skipped, overlays made
    assert segment_folder(raw, out, workflow="rna", spacing=spacing) == []
    full = matplotlib.image.imread(out / "qc" / "full" / "wide.png")
    thumbnail = matplotlib.image.imread(out / "qc" / "wide.png")
    assert full.shape[:2] == shape[1:]
    assert max(thumbnail.shape[:2]) <= QC_MAX_SIDE
    # Outlines in magenta at full resolution: the 20 x 20 square's border, 76 pixels.
    magenta = np.all(np.isclose(full[..., :3], (1, 0, 1)), axis=-1)
    assert magenta.sum() == 76
    assert '<a href="full/wide.png"><img src="wide.png"' in (out / "qc" / "index.html").read_text()


# ---------------------------------------------------------------- large stacks, on threads
# Over 2 x SLAB_VOXELS voxels, so that the filters' passes are cut into slabs.
LARGE = (8, 600, 1000)


@pytest.mark.parametrize("threads", [1, 2])
def test_filters_on_threads_equal_scipy_on_the_whole_stack(threads):
    from rna_localization.segmentation import detection

    assert np.prod(LARGE) > 2 * SLAB_VOXELS
    rng = np.random.default_rng(3)
    volume = rng.normal(300, 25, LARGE).astype(np.float32)
    sigma = np.array([1.3, 2.4, 2.4])
    expected = ndimage.gaussian_filter(volume, sigma, mode="reflect", truncate=detection._TRUNCATE)
    assert np.array_equal(detection._blur(volume, sigma, threads), expected)
    seeds = (rng.random(LARGE) > 0.9999).view(np.uint8)
    reach = np.array([1, 4, 3])
    expected = ndimage.maximum_filter(seeds, size=tuple(2 * reach + 1), mode="constant")
    assert np.array_equal(detection._box_max(seeds, reach, threads), expected)


@pytest.mark.parametrize("shape", [LARGE, (2, 40, 30), (5, 2, 30)])
def test_curvature_term_against_second_differences(shape):
    # Oracle: numpy's second differences of the edge-padded volume, in float64, weighted
    # and added along every axis of at least 3 voxels.
    from rna_localization.segmentation import detection

    rng = np.random.default_rng(4)
    coarse = ndimage.gaussian_filter(rng.normal(0, 50, shape), 2.0).astype(np.float32)
    filtered = rng.normal(0, 5, shape).astype(np.float32)
    weights = np.array([3.5, 11.0, 11.0], dtype=np.float32)
    expected = filtered.astype(np.float64)
    for axis, n in enumerate(shape):
        if n >= 3:
            pad = [(1, 1) if a == axis else (0, 0) for a in range(3)]
            second = np.diff(np.pad(coarse.astype(np.float64), pad, mode="edge"), 2, axis=axis)
            expected += float(weights[axis]) * second
    result = filtered.copy()
    detection._add_curvature(result, coarse, weights, threads=2)
    scale = float(np.abs(expected).max())
    assert np.abs(result - expected).max() <= 1e-5 * scale
    assert np.abs(result - filtered).max() > 1e-3 * scale  # the term is there


def test_background_removal_and_masks_do_not_depend_on_threads():
    # The same stack on one thread and on two (its filters cut into slabs): the same
    # filtered image to the bit, and the same mask.
    from rna_localization.segmentation import detection

    sim = synthetic.simulate_image("t", rna_type="cen", cycle="nc14", seed=11,
                                   preset="widefield", shape=(12, 448, 800))
    image, spacing = sim.rna, sim.spacing
    assert image.size > 2 * SLAB_VOXELS
    kwargs = {"spacing": spacing, "spot_sigma_um": (0.22, 0.08)}
    one = detection.remove_background(image, threads=1, **kwargs)
    assert np.array_equal(detection.remove_background(image, threads=2, **kwargs), one)
    mask = segment(image, "rna", spacing=spacing, threads=1)
    assert np.array_equal(segment(image, "rna", spacing=spacing, threads=2), mask)
    assert mask.any()


@pytest.mark.parametrize("slab_planes", [1, 4, 9])
@pytest.mark.parametrize("per_spot", [False, True])
def test_drawn_spots_in_slabs_equal_their_sum(monkeypatch, slab_planes, per_spot):
    # Many spots in random order, summed a slab of 1, 4 (the last slab 1) or all 9 planes at
    # a time: every Gaussian (cut at the model's reach around its nearest voxel: the
    # widest spot's reach, each spot with its own widths) summed once, as a brute-force
    # sum gives, and the same volume, to the bit, whatever the slabs.
    from rna_localization.segmentation import detection

    rng = np.random.default_rng(5)
    shape = (9, 50, 60)
    position = rng.uniform(-0.4, np.array(shape) - 0.6, (300, 3))
    amplitude = rng.uniform(50, 150, 300)
    sigma = (rng.uniform(0.8, 2.0, (300, 3)) if per_spot else np.array([1.2, 1.6, 1.6]))
    whole = detection._draw_spots(shape, position, amplitude, sigma)
    monkeypatch.setattr(detection, "_MODEL_SLAB_BYTES", 8 * shape[1] * shape[2] * slab_planes)
    drawn = detection._draw_spots(shape, position, amplitude, sigma)
    reach = np.ceil(detection._MODEL_REACH * (sigma.max(axis=0) if per_spot else sigma))
    grid = np.indices(shape).astype(float)
    expected = np.zeros(shape)
    for centre, height, width in zip(position, amplitude,
                                     np.broadcast_to(sigma, position.shape), strict=True):
        nearest = np.clip(np.rint(centre), 0, np.array(shape) - 1)
        inside = np.all([np.abs(grid[a] - nearest[a]) <= reach[a] for a in range(3)], axis=0)
        expected += inside * height * np.exp(
            -0.5 * sum(((grid[a] - centre[a]) / width[a]) ** 2 for a in range(3)))
    assert drawn.dtype == np.float32
    assert drawn.shape == shape
    assert drawn == pytest.approx(expected, abs=1e-4 * amplitude.max())
    assert np.array_equal(drawn, whole)


def test_no_spots_draw_an_empty_model():
    from rna_localization.segmentation import detection

    drawn = detection._draw_spots((3, 4, 5), np.zeros((0, 3)), np.zeros(0), np.ones(3))
    assert drawn.dtype == np.float32
    assert drawn.shape == (3, 4, 5)
    assert not drawn.any()


# ------------------------------------------------------------ out-of-focus light of bright spots
def test_drop_defocus_spots_follows_its_rule_against_brute_force():
    rng = np.random.default_rng(7)
    spacing, sigma = np.array([0.3, 0.11, 0.11]), (0.22, 0.08)
    n = 400
    spots = pd.DataFrame({"z": rng.uniform(0, 30, n), "y": rng.uniform(0, 60, n),
                          "x": rng.uniform(0, 60, n)})
    spots[["zi", "yi", "xi"]] = np.rint(spots[["z", "y", "x"]]).astype(int).clip(0, [29, 59, 59])
    filtered = np.zeros((30, 60, 60))
    # Single molecules (log-normal brightness) and a tenth of granules, 15 times brighter.
    amplitude = np.exp(rng.normal(0, 0.5, n)) * np.where(rng.random(n) < 0.1, 15, 1)
    filtered[spots["zi"], spots["yi"], spots["xi"]] = amplitude
    amplitude = filtered[spots["zi"], spots["yi"], spots["xi"]]  # the last of a shared voxel
    spots["score"] = 5 * amplitude
    # Threshold 4: 0.6 x the typical spot (about 3) is the lower cap; 1: 2 x the threshold.
    for threshold, ratio in ((4.0, 4.0), (4.0, 8.0), (1.0, 4.0)):
        kept = detection.drop_defocus_spots(filtered, spots, threshold, spacing=spacing,
                                            spot_sigma_um=sigma, ratio=ratio)
        at = spots[["z", "y", "x"]].to_numpy() * spacing
        low, high = np.array(detection.DEFOCUS_DEPTH_SIGMAS) * sigma[0]
        shadowed = set()
        for i in range(n):
            for j in range(n):
                depth = abs(at[j, 0] - at[i, 0])
                side = np.hypot(at[j, 1] - at[i, 1], at[j, 2] - at[i, 2])
                if (amplitude[j] >= ratio * amplitude[i] and low <= depth <= high
                        and side <= detection.DEFOCUS_SLOPE * depth):
                    shadowed.add(i)
                    break
        typical = np.median([spots["score"][i] for i in range(n) if i not in shadowed])
        limit = min(detection.DEFOCUS_MAX_SCORE * typical,
                    detection.DEFOCUS_MAX_THRESHOLDS * threshold)
        dropped = {i for i in shadowed if spots["score"][i] < limit}
        assert 3 <= len(dropped) < n / 4, (threshold, ratio, len(dropped))
        survivors = sorted(set(range(n)) - dropped)
        assert kept.equals(spots.iloc[survivors].reset_index(drop=True))
    assert detection.drop_defocus_spots(filtered, spots, threshold, spacing=spacing,
                                        spot_sigma_um=sigma, ratio=0).equals(spots)


def _aberrated_widefield_scene(seed=0, waves=0.2):
    """Granules and single molecules through a widefield objective with spherical aberration.

    Points on a grid twice as fine, through :func:`synthetic.born_wolf_psf` (`waves`),
    summed back to the widefield voxels (:func:`synthetic.render_points`), on a flat background of 3,300 counts with Poisson
    noise; a single molecule's peak 12 noise SDs above it. Returns the stack, the molecules
    (voxel coordinates, whether in a granule) and the spacing.
    """
    rng = np.random.default_rng(seed)
    spacing, shape, fine = np.array([0.3, 0.11, 0.11]), np.array([24, 128, 128]), 2
    singles = rng.uniform([3, 6, 6], shape - [4, 7, 7], size=(60, 3))
    centres = rng.uniform([6, 15, 15], shape - [7, 16, 16], size=(4, 3))
    granules = np.concatenate([c + rng.normal(0, 0.12 / spacing, size=(12, 3)) for c in centres])
    points = np.concatenate([singles, granules])
    cells = np.rint((points + 0.5) * fine - 0.5).astype(int)
    light = synthetic.render_points(cells, np.ones(len(cells)), shape, spacing, subpixel=fine,
                                    spherical_waves=waves)
    peak = np.median(light[tuple(np.rint(singles).astype(int).T)])
    image = rng.poisson(3300 + light * 12 * np.sqrt(3300) / peak)
    molecules = pd.DataFrame((cells + 0.5) / fine - 0.5, columns=["z", "y", "x"])
    molecules["in_granule"] = np.arange(len(points)) >= len(singles)
    return image.astype(np.uint16), molecules, tuple(spacing)


def test_a_granules_out_of_focus_light_is_not_taken_for_molecules():
    # Through an aberrated widefield PSF, a granule of 12 molecules spreads its light, out of
    # focus, into a disc and rings whose noise maxima pass the threshold. Without the rule
    # they become objects on no molecule (62 here, as many as the single molecules: the
    # median spot is one of them until they go); with it (the rna preset's default), 7 are
    # left (lobes under 0.44 µm from a granule or 5-6 times fainter; 4 and 9 with seeds 1
    # and 2), and every single molecule clear of the granules is still found.
    image, molecules, spacing = _aberrated_widefield_scene()
    at = np.rint(molecules[["z", "y", "x"]].to_numpy()).astype(int).T

    def objects(params):
        labels = label_objects(segment(image, params, spacing=spacing))
        held = labels[tuple(at)]
        empty = np.setdiff1d(np.unique(labels[labels > 0]), held)
        return labels, held, empty

    _, _, without = objects(SegmentationParams("rna", defocus_ratio=0.0))
    assert len(without) >= 30
    _, held, empty = objects(SegmentationParams("rna"))
    assert len(empty) <= len(without) / 5
    granule_at = molecules.loc[molecules["in_granule"], ["z", "y", "x"]].to_numpy() * spacing
    clear = cKDTree(granule_at).query(molecules[["z", "y", "x"]].to_numpy() * spacing)[0] > 2.0
    singles = ~molecules["in_granule"].to_numpy() & clear
    assert singles.sum() >= 30
    assert (held[singles] > 0).all()


def _lobe_rule(spots, spacing, sigma):
    """axial_lobe_pairs's rule, pair by pair: the oracle of the next test."""
    at = spots[["z", "y", "x"]].to_numpy() * np.asarray(spacing)
    disc = detection.LOBE_LATERAL_SIGMAS * sigma[1]
    low, high = detection.LOBE_DEPTH_SIGMAS
    bins = int(high - low)
    near, far, found = np.zeros(bins), np.zeros(bins), []
    for i in range(len(at)):
        for j in range(i + 1, len(at)):
            side = np.hypot(at[i, 1] - at[j, 1], at[i, 2] - at[j, 2])
            depth = abs(at[i, 0] - at[j, 0]) / sigma[0]
            if not low <= depth < high or side > disc * np.sqrt(1 + detection.LOBE_CONTROL_AREA):
                continue
            k = int(depth - low)
            if side <= disc:
                near[k] += 1
                found.append((i, j, k))
            else:
                far[k] += 1
    chance = far / detection.LOBE_CONTROL_AREA
    lobe = (near >= detection.LOBE_EXCESS * chance) & (near >= chance + 5 * np.sqrt(chance + 1))
    # A bin beside a lobe bin (or beside one added so) joins at the weaker significance.
    added = True
    while lobe.any() and added:
        added = False
        for k in range(bins):
            beside = (k > 0 and lobe[k - 1]) or (k + 1 < bins and lobe[k + 1])
            if (not lobe[k] and beside and near[k] >= detection.LOBE_EXCESS * chance[k]
                    and near[k] >= chance[k] + detection.LOBE_EDGE_SDS * np.sqrt(chance[k] + 1)):
                lobe[k] = added = True
    if (near - chance)[lobe].sum() < max(detection.LOBE_MIN_PAIRS,
                                         detection.LOBE_MIN_SHARE * len(at)):
        return set()
    return {(i, j) for i, j, k in found if lobe[k]}


def _planted_lobes(rng):
    """300 spots on a (0.3, 0.11, 0.11) µm grid, the first 200 with a lobe 0.7-0.9 µm
    below (rows 300-499): the spots' positions and the table of all 500."""
    at = rng.uniform([1, 5, 5], [28, 250, 250], (300, 3))
    lobes = at[:200] + np.column_stack([rng.uniform(0.7, 0.9, 200) / 0.3,
                                        rng.normal(0, 0.03 / 0.11, (200, 2))])
    return at, pd.DataFrame(np.vstack([at, lobes]), columns=["z", "y", "x"])


def test_axial_lobe_depths_are_the_depths_of_the_lobe_pairs():
    # Oracle: the rule pair by pair. Each depth range returned is one bin (an axial sigma
    # wide) holding pairs the rule finds, and every pair it finds lies in one of them; the
    # planted lobes lie 0.7-0.9 µm below their spots.
    spacing, sigma = (0.3, 0.11, 0.11), (0.22, 0.08)
    _, spots = _planted_lobes(np.random.default_rng(4))
    depths = detection.axial_lobe_depths(spots, spacing=spacing, spot_sigma_um=sigma)
    assert np.allclose(depths[:, 1] - depths[:, 0], sigma[0])
    positions = spots[["z", "y", "x"]].to_numpy()
    found = [abs(positions[i, 0] - positions[j, 0]) * spacing[0]
             for i, j in _lobe_rule(spots, spacing, sigma)]
    held = [(depths[:, 0] <= d) & (d < depths[:, 1]) for d in found]
    assert all(h.sum() == 1 for h in held)
    assert np.all(np.any(held, axis=0))
    assert depths.min() <= 0.7
    assert depths.max() >= 0.9
    assert len(detection.axial_lobe_depths(spots.iloc[:300], spacing=spacing,
                                           spot_sigma_um=sigma)) == 0


def test_axial_lobe_pairs_finds_a_psfs_second_maximum_and_not_crowds():
    # Spots of a PSF with a second maximum 0.7-0.9 µm below the first (as through 0.35
    # waves of spherical aberration), among spots without; then crowds alone (clusters of
    # spots 0.3 µm apart, as cen RNA around a centrosome) and close pairs of molecules in
    # random directions: against the rule pair by pair.
    rng = np.random.default_rng(3)
    spacing, sigma = (0.3, 0.11, 0.11), (0.22, 0.08)
    at, spots = _planted_lobes(rng)
    pairs = detection.axial_lobe_pairs(spots, spacing=spacing, spot_sigma_um=sigma)
    found = {tuple(sorted(pair)) for pair in pairs.tolist()}
    assert found == _lobe_rule(spots, spacing, sigma)
    planted = {(i, 300 + i) for i in range(200)}
    assert len(planted & found) >= 195
    assert len(found - planted) <= 5
    crowds = rng.uniform([5, 20, 20], [25, 236, 236], (40, 1, 3)) + rng.normal(
        0, np.array([0.3, 0.3, 0.3]) / np.array(spacing), (40, 12, 3))
    # ... and close pairs of molecules, 0.45-0.7 µm apart in random directions.
    direction = rng.normal(size=(300, 3))
    direction *= rng.uniform(0.45, 0.7, (300, 1)) / np.linalg.norm(direction, axis=1,
                                                                   keepdims=True)
    partners = at + direction / np.array(spacing)
    for table in (crowds.reshape(-1, 3), np.vstack([at, partners])):
        crowded = pd.DataFrame(table, columns=["z", "y", "x"])
        assert _lobe_rule(crowded, spacing, sigma) == set()
        assert len(detection.axial_lobe_pairs(crowded, spacing=spacing, spot_sigma_um=sigma)) == 0


def test_axial_lobe_pairs_follows_lobes_that_move_away_with_depth(monkeypatch):
    # A PSF aberrated more with depth: most molecules' lobes lie 0.6-0.95 µm below them, the
    # deepest four molecules' 1.15-1.3 µm, alone in their bin (under 5 Poisson SDs over
    # chance by themselves). The run of lobe bins takes them: the pairs found are the rule's,
    # pair by pair, and hold the deepest four (and all but a few planted pairs); with the
    # edge held to 5 SDs, the deepest are not found.
    rng = np.random.default_rng(0)
    spacing, sigma = (0.3, 0.11, 0.11), (0.22, 0.08)
    at = rng.uniform([1, 5, 5], [22, 250, 250], (300, 3))
    offset = 0.6 + 0.35 * at[:, 0] / 22
    offset[:4] = rng.uniform(1.15, 1.3, 4)
    lobes = at + np.column_stack([offset / 0.3, rng.normal(0, 0.03 / 0.11, (300, 2))])
    spots = pd.DataFrame(np.vstack([at, lobes]), columns=["z", "y", "x"])

    def found():
        return {tuple(sorted(pair)) for pair in detection.axial_lobe_pairs(
            spots, spacing=spacing, spot_sigma_um=sigma).tolist()}

    pairs = found()
    assert pairs == _lobe_rule(spots, spacing, sigma)
    planted = {(i, 300 + i) for i in range(300)}
    deepest = {(i, 300 + i) for i in range(4)}
    assert deepest <= pairs
    assert len(planted - pairs) <= 3
    # Spots of two molecules on one axis: chance puts about 3 pairs in these four bins.
    assert len(pairs - planted) <= 8
    monkeypatch.setattr(detection, "LOBE_EDGE_SDS", 5.0)
    assert not deepest & found()


def test_drop_explained_spots_follows_its_rule_against_brute_force():
    # Spots on a filtered image whose typical spot has a far field (a ring 1.2 µm above it
    # and a lobe 0.9 µm below): the spots on brighter spots' far field go when what is left
    # of them falls under the threshold; the lobe pairs stay.
    rng = np.random.default_rng(11)
    spacing, sigma = (0.3, 0.11, 0.11), (0.22, 0.08)
    shape, threshold = (30, 300, 300), 4.6
    far = (((4, 0, 9), 0.15), ((-3, 0, 0), 0.3), ((4, 9, 0), 0.15))
    singles = np.column_stack([rng.integers(0, 30, 150), rng.integers(0, 300, 150),
                               rng.integers(0, 300, 150)])
    bright = np.column_stack([rng.integers(4, 26, 8), rng.integers(10, 290, 8),
                              rng.integers(10, 290, 8)])
    # On each granule's far field: a spot of its light alone (a ring's lump), and a molecule
    # of 3 typical spots' light on it.
    ring = np.r_[bright + far[0][0], bright + far[2][0]]
    index = np.vstack([singles, bright, ring])
    own = np.r_[np.exp(rng.normal(np.log(10), 0.3, 150)), np.full(8, 120.0),
                rng.uniform(0, 3, 8), np.full(8, 30.0)]
    index, first = np.unique(index, axis=0, return_index=True)
    own = own[first]
    order = rng.permutation(len(index))
    index, own = index[order], own[order]
    n = len(index)
    filtered = np.zeros(shape)
    for (z, y, x), peak in zip(index, own):
        for (dz, dy, dx), share in far:
            if 0 <= z + dz < 30 and 0 <= y + dy < 300 and 0 <= x + dx < 300:
                filtered[z + dz, y + dy, x + dx] += share * peak
    filtered[tuple(index.T)] += own
    filtered += rng.normal(0, 0.3, shape)  # the far field elsewhere: noise, not light
    noise = 1.0 + rng.uniform(0, 0.5, shape)
    spots = pd.DataFrame(index, columns=["zi", "yi", "xi"])
    spots[["z", "y", "x"]] = spots[["zi", "yi", "xi"]].astype(float)
    lobes = np.array([[0, 1], [2, 3]])
    kept, kept_lobes = detection.drop_explained_spots(filtered, noise, spots, threshold,
                                                      spacing=spacing, spot_sigma_um=sigma,
                                                      lobes=lobes)
    # The oracle: the typical spot's far field, offset by offset.
    amp = filtered[tuple(index.T)]
    scale = np.asarray(spacing)
    reach = np.ceil(np.array([2.4, 1.5, 1.5]) / scale).astype(int)
    reach_um = np.hypot(*detection.EXPLAINED_REACH_UM)
    dist = np.linalg.norm((index[:, None] - index[None]) * scale, axis=2)
    lone = np.ones(n, bool)
    lone[np.where(amp[0] < amp[1], 0, 1)] = lone[np.where(amp[2] < amp[3], 2, 3)] = False
    for i in range(n):
        if any(dist[i, j] <= reach_um and amp[j] >= detection.EXPLAINED_SHADOW_RATIO * amp[i]
               for j in range(n) if j != i):
            lone[i] = False
    middle = np.median(amp[lone])
    rows = [i for i in range(n) if lone[i] and middle / 2 <= amp[i] <= 2 * middle]
    assert detection.EXPLAINED_MIN_SPOTS <= len(rows) <= detection.EXPLAINED_PROFILE_SPOTS

    # Sigmas per axis: the larger of the workflow's and the measured one.
    sigma_voxels = np.array([0.22, 0.08, 0.08]) / scale
    measured = detection.spot_shape(filtered, spots)  # None: one-voxel spots
    if measured is not None:
        sigma_voxels = np.maximum(sigma_voxels, measured)
    box = np.ceil(detection.EXPLAINED_TAKEN_SIGMAS * sigma_voxels)

    def taken(voxel):  # within a box of 2 sigmas of a spot
        return bool(np.any(np.all(np.abs(index - voxel) <= box, axis=1)))

    def far_field(offset):
        if np.sqrt(((offset / sigma_voxels) ** 2).sum()) <= detection.EXPLAINED_CORE_SIGMAS:
            return 0.0
        values = [filtered[tuple(index[i] + offset)] / amp[i] for i in rows
                  if np.all(index[i] + offset >= 0) and np.all(index[i] + offset < shape)
                  and not taken(index[i] + offset)]
        if len(values) < detection.EXPLAINED_MIN_SPOTS:
            return 0.0
        values = np.sort(values)
        # Counted where the median stands 2 standard errors (from the quartiles) above 0.
        error = (1.2533 * (values[3 * len(values) // 4] - values[len(values) // 4]) / 1.349
                 / np.sqrt(len(values)))
        middle = float(np.median(values))
        return middle if middle > detection.EXPLAINED_SIGNIFICANCE * error else 0.0

    dropped = set()
    for i in range(n):
        if i in (0, 1, 2, 3):
            continue
        light = 0.0
        for j in range(n):
            offset = index[i] - index[j]
            if (j != i and dist[i, j] <= reach_um and amp[j] >= detection.EXPLAINED_RATIO * amp[i]
                    and np.all(np.abs(offset) <= reach)):
                light += amp[j] * far_field(offset)
        left = amp[i] - detection.EXPLAINED_MARGIN * light
        if light > 0 and left / noise[tuple(index[i])] < threshold:
            dropped.add(i)
    assert 3 <= len(dropped) <= n / 4
    # Every lump of a granule's far field goes; every molecule on it stays.
    assert {i for i in range(n) if own[i] < 3} <= dropped
    assert not {i for i in range(n) if own[i] == 30.0} & dropped
    survivors = [i for i in range(n) if i not in dropped]
    assert kept.equals(spots.iloc[survivors].reset_index(drop=True))
    np.testing.assert_array_equal(kept_lobes, [[survivors.index(i) for i in pair]
                                               for pair in lobes])


def test_a_strongly_aberrated_psf_gives_one_object_per_molecule():
    # Through 0.35 waves of spherical aberration each molecule is a column with two maxima
    # about 0.8 µm apart, and a granule's rings pass the threshold: without the two rules
    # measured on the image (monkeypatched off), 91% of the lone single molecules are two
    # objects or more and the 4 granules of 12 molecules (SNR 12) leave 211 objects on no
    # molecule; with them, 87% are one object, every one is held, 54 such objects are left
    # (seeds 1 and 2: 72 / 88% one object, 71 / 63 objects on no molecule against 279 / 205).
    image, molecules, spacing = _aberrated_widefield_scene(waves=0.35)
    at = np.rint(molecules[["z", "y", "x"]].to_numpy()).astype(int).T
    granule_at = molecules.loc[molecules["in_granule"], ["z", "y", "x"]].to_numpy() * spacing
    xyz = molecules[["z", "y", "x"]].to_numpy() * spacing
    others = cKDTree(xyz).query(xyz, k=2)[0][:, 1]
    clear = ((cKDTree(granule_at).query(xyz)[0] > 2.5) & (others > 1.5)
             & ~molecules["in_granule"].to_numpy())
    assert clear.sum() >= 20

    def objects():
        labels = label_objects(segment(image, "rna", spacing=spacing))
        held = labels[tuple(at)]
        empty = np.setdiff1d(np.unique(labels[labels > 0]), held)
        # Objects within 1.5 µm of each lone molecule (its own and any lobe's).
        centres = np.array(ndimage.center_of_mass(labels > 0, labels,
                                                  np.arange(1, labels.max() + 1))) * spacing
        per_molecule = np.array([len(c) for c in cKDTree(centres).query_ball_point(
            xyz[clear], 1.5)])
        return held, empty, per_molecule

    held, empty, per_molecule = objects()
    assert (held[clear] > 0).all()
    assert np.mean(per_molecule == 1) >= 0.8
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(detection, "axial_lobe_pairs",
                      lambda spots, **_: np.zeros((0, 2), dtype=np.int64))
        patch.setattr(detection, "drop_explained_spots",
                      lambda filtered, noise, spots, threshold, **kw: (spots, kw["lobes"]))
        _, before, per_molecule_before = objects()
    assert np.mean(per_molecule_before >= 2) >= 0.5
    assert len(before) >= 100
    assert len(empty) <= len(before) / 3


def test_a_joined_pair_cut_apart_by_its_mask_is_bridged(monkeypatch):
    # Oracle: the straight line between the two spots. One molecule's two maxima along z,
    # 8 planes apart, the light between them 0.4 of the dimmer peak: the basins touch, so
    # a joined pair merges, but the mask's cut (half the dimmer peak) leaves two pieces.
    # The pieces are bridged by the voxels of the line between the spots (no others), the
    # binary mask holds one object; not joined, two. With background between them (the
    # light dipping to 0.08 of the dimmer peak, under BRIDGE_DIP), two objects.
    grow_objects = detection.grow_objects

    z, y, x = np.mgrid[:20, :15, :15].astype(np.float32)

    def blob(cz, cy, cx, amplitude, axial):
        return amplitude * np.exp(-((z - cz) ** 2 / (2 * axial**2)
                                    + ((y - cy) ** 2 + (x - cx) ** 2) / 2.0))

    spots = pd.DataFrame({"z": [5.0, 13.0], "y": [7.0, 8.0], "x": [7.0, 7.0],
                          "zi": [5, 13], "yi": [7, 8], "xi": [7, 7]})

    def grown(joined, axial=2.0):
        filtered = blob(5, 7, 7, 10.0, axial) + blob(13, 8, 7, 6.0, axial) + 0.5
        return grow_objects(filtered, filtered / 0.1, spots, floor=2.0, mask_fraction=0.5,
                            saddle_ratio=0.9, joined=joined, bridged=joined)

    assert ndimage.label(grown(np.array([[0, 1]]), axial=1.0) > 0)[1] == 2
    bridged = grown(np.array([[0, 1]]))
    assert ndimage.label(grown(None) > 0)[1] == 2
    assert ndimage.label(bridged > 0)[1] == 1
    monkeypatch.setattr(detection, "_bridge_lines", lambda *args: [])
    apart = grown(np.array([[0, 1]]))
    assert ndimage.label(apart > 0)[1] == 2
    # The line's voxels: those a segment from (5, 7, 7) to (13, 8, 7) passes within half
    # a voxel of along z (y = 7 up to z = 9, 8 from z = 9; face-connected).
    added = {tuple(p) for p in np.argwhere((bridged > 0) & (apart == 0))}
    line = {(k, 7, 7) for k in range(5, 10)} | {(k, 8, 7) for k in range(9, 14)}
    assert len(added) >= 2
    assert added <= line


def test_a_psf_with_three_maxima_gives_one_object_per_molecule():
    # Through 0.5 waves of spherical aberration a molecule is a column with two or three
    # maxima, and its mask, cut at half the dimmer peak, breaks between them: the pieces of
    # a joined pair are bridged (one object of the binary mask). Pooled over three scenes
    # (67 lone single molecules), measured: 66 held by an object and 73% of them one object
    # with the bridge; 55 and 61% without (on the sim-fish images of the quantification
    # benchmark, molecules summed +47% -> +3.6%, single molecules 1.39 -> 0.98).
    held, one, total = [0, 0], [0, 0], 0
    for seed in (0, 1, 2):
        image, molecules, spacing = _aberrated_widefield_scene(seed=seed, waves=0.5)
        xyz = molecules[["z", "y", "x"]].to_numpy() * spacing
        granule_at = molecules.loc[molecules["in_granule"], ["z", "y", "x"]].to_numpy() * spacing
        others = cKDTree(xyz).query(xyz, k=2)[0][:, 1]
        clear = ((cKDTree(granule_at).query(xyz)[0] > 2.5) & (others > 1.5)
                 & ~molecules["in_granule"].to_numpy())
        at = np.rint(molecules[["z", "y", "x"]].to_numpy()).astype(int).T
        total += int(clear.sum())
        for k, bridge in enumerate((True, False)):
            with pytest.MonkeyPatch.context() as patch:
                if not bridge:
                    patch.setattr(detection, "_bridge_lines", lambda *args: [])
                labels = label_objects(segment(image, "rna", spacing=spacing))
            centres = np.array(ndimage.center_of_mass(labels > 0, labels,
                                                      np.arange(1, labels.max() + 1))) * spacing
            near = cKDTree(centres).query_ball_point(xyz[clear], 1.5)
            held[k] += int((labels[tuple(at)][clear] > 0).sum())
            one[k] += int(sum(len(c) == 1 for c in near))
    print(f"lone molecules held: {held[0]} of {total} bridged, {held[1]} not; one object: "
          f"{one[0]} and {one[1]}")
    assert held[0] >= 0.95 * total, (held, total)
    assert held[1] <= 0.9 * total, (held, total)
    assert one[0] >= one[1] + 5, one


def test_plateau_pairs_are_the_spots_near_one_plateau():
    # Brute force: the plateaus as 26-connected components of the voxels at the ceiling,
    # each spot on the plateau of its nearest clipped voxel (in spot sigmas per axis)
    # when within reach; every pair of spots on one plateau.
    rng = np.random.default_rng(3)
    spacing, sigma = (0.3, 0.1, 0.1), (0.2, 0.1)
    image = rng.integers(100, 3000, (12, 60, 60)).astype(np.uint16)
    near = []
    for _ in range(6):
        z, y, x = rng.integers(2, 10), *rng.integers(4, 56, 2)
        image[z - 1:z + 1, y - 2:y + rng.integers(1, 4), x - 2:x + 2] = 4095
        near.append(np.array([z, y, x]) + rng.integers(-3, 4, (3, 3)))  # some within reach
    image[0, 0, 0] = 4095  # a lone voxel at the ceiling: one voxel, no plateau of its own
    at = np.clip(np.concatenate(near + [rng.integers(0, [12, 60, 60], (40, 3))]), 0,
                 [11, 59, 59])
    spots = pd.DataFrame(at, columns=["zi", "yi", "xi"])
    pairs = detection.plateau_pairs(image, spots, spacing=spacing, spot_sigma_um=sigma)
    components, _ = ndimage.label(image == 4095, structure=np.ones((3, 3, 3)))
    top = np.argwhere(components > 0)
    scale = np.array(spacing) / np.array([sigma[0], sigma[1], sigma[1]])
    at = spots.to_numpy()
    distance = np.sqrt((((at[:, None] - top[None]) * scale) ** 2).sum(axis=2))
    nearest = top[distance.argmin(axis=1)]
    plateau = components[tuple(nearest.T)]
    sizes = np.bincount(components.ravel())
    on = (distance.min(axis=1) <= detection.PLATEAU_REACH_SIGMAS) & (sizes[plateau] >= 2)
    expected = {(i, j) for i in range(len(at)) for j in range(i + 1, len(at))
                if on[i] and on[j] and plateau[i] == plateau[j]}
    assert len(expected) >= 5
    assert {tuple(p) for p in pairs.tolist()} == expected
    assert len(pairs) == len(expected)
    # No ceiling, no pairs.
    assert len(detection.plateau_pairs(np.minimum(image, 4094), spots, spacing=spacing,
                                       spot_sigma_um=sigma)) == 0


def test_a_clipped_granule_is_one_object():
    # The isolated scene (granules and single molecules apart, shot noise) through a 12-bit
    # camera whose ceiling stands 1.5 single molecules' peaks above the background: each
    # clipped granule's flat top rings the filter with spots, which are grown into one
    # object; the objects are those of the unclipped stack.
    from scenes import BACKGROUND, PEAK, isolated_scene

    rng = np.random.default_rng(5)
    light, positions, owner, granule, spacing, _ = isolated_scene("widefield", rng,
                                                                  shape=(30, 192, 192))
    counts = rng.poisson(light).astype(float) + (4095 - BACKGROUND - 1.5 * PEAK)
    clipped = np.minimum(counts, 4095).astype(np.uint16)
    voxel = np.clip(np.rint(positions).astype(int), 0, np.array(light.shape) - 1)
    found = {}
    for name, stack in (("unclipped", counts), ("clipped", clipped)):
        run = segment_intermediates(stack, "rna", spacing=spacing)
        labels = label_objects(run.result)
        held = labels[tuple(voxel.T)]
        split = sum(np.unique(held[(owner == k) & (held > 0)]).size > 1
                    for k in np.flatnonzero(granule))
        empty = labels.max() - np.unique(held[held > 0]).size
        found[name] = (len(run.spots), labels.max(), split, empty)
    print(found)
    spots, objects, split, empty = found["clipped"]
    assert (clipped == 4095).sum() > 1000
    assert spots > 1.2 * found["unclipped"][0]  # the rings' spots
    assert abs(objects - found["unclipped"][1]) <= 0.02 * found["unclipped"][1]
    assert split <= found["unclipped"][2] + 3
    assert empty <= 5


def test_spot_medians_count_only_the_spots_whose_offset_is_in_the_stack_and_free(monkeypatch):
    # The profiles of typical spots (the residual a lone molecule leaves, the far field of
    # an aberrated PSF) are medians over spots at each offset from their peaks: checked
    # against a loop over the offsets, each spot counted where the offset is inside the
    # stack and not on a taken voxel, the spread the counted values' quartile order
    # statistics apart. 2,500 offsets read 1,024 at a time: the chunks meet twice.
    monkeypatch.setattr(detection, "_MEDIAN_VALUES", 40 * 1024)
    rng = np.random.default_rng(8)
    image = rng.normal(0.0, 1.0, (9, 20, 22))
    index = np.column_stack([rng.integers(0, n, 40) for n in image.shape])
    amplitude = rng.uniform(1.0, 5.0, 40)
    offsets = np.unique(rng.integers(-7, 8, (4000, 3)), axis=0)[:2500]
    taken = rng.random(image.shape) < 0.3
    middle, counted, spread = detection._spot_medians(image, index, amplitude, offsets, taken)
    for k, offset in enumerate(offsets):
        at = index + offset
        inside = np.all((at >= 0) & (at < image.shape), axis=1)
        keep = np.flatnonzero(inside)
        keep = keep[~taken[tuple(at[keep].T)]]
        values = np.sort(image[tuple(at[keep].T)] / amplitude[keep])
        assert counted[k] == keep.size
        if keep.size:
            assert middle[k] == pytest.approx(np.median(values), abs=1e-12)
            assert spread[k] == pytest.approx(values[(3 * keep.size) // 4]
                                              - values[keep.size // 4], abs=1e-12)
        else:
            assert np.isinf(middle[k])
    assert counted.min() == 0
    assert counted.max() >= 10
    # Without taken voxels, spots whose whole window is inside: numpy's median.
    inner = index[np.all((index >= 3) & (index < np.array(image.shape) - 3), axis=1)]
    assert len(inner) >= 3
    small = np.unique(rng.integers(-3, 4, (200, 3)), axis=0)
    profile, counted, spread = detection._spot_medians(image, inner, np.ones(len(inner)), small)
    values = image[tuple(np.moveaxis(inner[:, None, :] + small[None], 2, 0))]
    np.testing.assert_array_equal(profile, np.median(values, axis=0))
    np.testing.assert_array_equal(counted, len(inner))
    ranked = np.sort(values, axis=0)
    np.testing.assert_array_equal(spread, ranked[(3 * len(inner)) // 4] - ranked[len(inner) // 4])
