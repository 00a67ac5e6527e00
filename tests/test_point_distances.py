"""Distances from points (objects' intensity centroids) and background-subtracted centroids,
against brute force."""

from __future__ import annotations

import numpy as np
import pytest

from rna_localization.apertures import spot_centroids
from rna_localization.distances import point_distances


@pytest.mark.parametrize("spacing", [(0.3, 0.1, 0.1), (0.2, 0.065, 0.065), (1.0, 1.0, 1.0)])
@pytest.mark.parametrize("seed", range(5))
def test_point_distances_match_brute_force(spacing, seed):
    rng = np.random.default_rng(seed)
    targets = np.zeros((6, 12, 12), np.int32)
    for label in range(1, 4):
        z, y, x = rng.integers(0, 5), rng.integers(0, 10), rng.integers(0, 10)
        targets[z:z + rng.integers(1, 3), y:y + rng.integers(1, 4), x:x + rng.integers(1, 4)] = label
    points = rng.uniform(-0.5, np.array(targets.shape) - 0.5, (40, 3))
    points[:5] = np.argwhere(targets)[:5] + rng.uniform(-0.49, 0.49, (5, 3))  # inside a target
    expected, hit = _brute_force(points, targets, spacing)
    for workers in (None, 1, 2):  # the query's threads split the points
        measured = point_distances(points, targets, spacing, workers=workers)
        np.testing.assert_allclose(measured, expected, rtol=1e-12, atol=1e-12)
    assert hit[:5].all()


def _brute_force(points, targets, spacing):
    """Every point's distance to every target voxel centre, the least; 0 for a point whose
    voxel (rounded, inside the stack) is a target's. Also which points are so."""
    scale = np.asarray(spacing)
    voxels = np.argwhere(targets) * scale
    expected = np.sqrt((((points * scale)[:, None, :] - voxels[None]) ** 2).sum(-1)).min(1)
    voxel = np.rint(points).astype(int)
    inside = np.all((voxel >= 0) & (voxel < np.array(targets.shape)), axis=1)
    hit = np.zeros(len(points), bool)
    hit[inside] = targets[tuple(voxel[inside].T)] != 0
    expected[hit] = 0.0
    return expected, hit


@pytest.mark.parametrize("seed", range(6))
def test_points_beyond_the_stack_match_brute_force(seed):
    # Targets that fill part of the stack's faces (their face voxels have no neighbour
    # beyond the stack, so they are on no target's face boundary) and points up to
    # three voxels beyond every face: the nearest target voxel of such a point can be
    # one of those.
    rng = np.random.default_rng(40 + seed)
    shape = (6, 7, 5)
    targets = np.zeros(shape, np.int32)
    targets[:, :4, 2:] = 1  # touches five faces
    targets[rng.integers(0, 6), rng.integers(0, 7), 0] = 2
    points = rng.uniform(-3.5, np.array(shape) + 2.5, (300, 3))
    spacing = (0.3, 0.1, 0.1)
    expected, _ = _brute_force(points, targets, spacing)
    beyond = np.any((np.rint(points) < 0) | (np.rint(points) > np.array(shape) - 1), axis=1)
    assert beyond.sum() > 100
    np.testing.assert_allclose(point_distances(points, targets, spacing), expected,
                               rtol=1e-12, atol=1e-12)


def test_bad_workers_are_named():
    targets = np.zeros((1, 1, 4), np.int32)
    targets[0, 0, 0] = 1
    for bad in (0, -2, 1.5, -1.0, True, "2"):
        with pytest.raises(ValueError, match=r"workers must be .* got"):
            point_distances([(0, 0, 1)], targets, workers=bad)


def test_point_distances_without_targets_are_nan():
    assert np.isnan(point_distances([(1, 2, 3)], np.zeros((4, 4, 4), np.int32))).all()


def test_spot_centroids_weigh_the_light_above_the_background():
    rng = np.random.default_rng(1)
    labels = np.zeros((5, 9, 9), np.int32)
    labels[1:4, 1:5, 1:5] = 1
    labels[1:3, 6:9, 5:8] = 2
    raw = rng.uniform(90, 140, labels.shape)
    background = {1: 100.0, 2: 120.0}
    table = spot_centroids(labels, raw, background).set_index("object_id")
    for label, level in background.items():
        voxels = np.argwhere(labels == label)
        weight = np.clip(raw[labels == label] - level, 0, None)
        expected = (voxels * weight[:, None]).sum(0) / weight.sum()
        np.testing.assert_allclose(
            table.loc[label, ["spot_centroid_z", "spot_centroid_y", "spot_centroid_x"]], expected)
    # No voxel above its background: the plain centroid.
    flat = spot_centroids(labels, np.full(labels.shape, 50.0), background).set_index("object_id")
    np.testing.assert_allclose(flat.loc[2, ["spot_centroid_z", "spot_centroid_y", "spot_centroid_x"]],
                               np.argwhere(labels == 2).mean(0))


def test_spot_centroid_of_a_gaussian_spot_is_its_centre():
    # A spot off-centre in its mask: the plain centroid is pulled to the mask's
    # middle, the background-subtracted one is not.
    grid = np.indices((9, 21, 21)).astype(float)
    centre = np.array([4.3, 10.4, 9.6])
    spot = 800 * np.exp(-0.5 * (((grid - centre[:, None, None, None]) / np.array([1.5, 1.5, 1.5])[:, None, None, None]) ** 2).sum(0))
    labels = np.zeros(spot.shape, np.int32)
    labels[2:8, 6:16, 5:15] = 1
    table = spot_centroids(labels, spot + 1000, {1: 1000.0})
    found = table[["spot_centroid_z", "spot_centroid_y", "spot_centroid_x"]].to_numpy()[0]
    assert np.abs(found - centre).max() < 0.1


def test_points_inside_a_target_filling_the_whole_stack_are_at_zero():
    targets = np.full((2, 3, 4), 5, np.int32)
    points = [(0, 0, 0), (1.2, 1.9, 2.6), (0.5, 1.0, 3.0)]
    np.testing.assert_array_equal(point_distances(points, targets, (0.3, 0.1, 0.1)), [0.0, 0.0, 0.0])
