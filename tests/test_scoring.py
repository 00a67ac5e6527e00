"""Scoring detections against the truth: exact one-to-one matching, spot scores, mask centroids.

The matching is checked against a brute-force oracle that enumerates every
one-to-one matching of tiny random cases.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from rna_localization.synthetic import mask_spots, match_points, score_spots

SPACING = (0.2, 0.065, 0.065)


def _normalized(a, b, radius) -> np.ndarray:
    """(N, M) normalized distances sqrt(sum(((a - b) / radius)**2))."""
    diff = (np.asarray(a, float)[:, None, :] - np.asarray(b, float)[None, :, :]) / radius
    return np.sqrt((diff**2).sum(axis=-1))


def _brute_force(detected, truth, radius) -> tuple[int, float]:
    """Largest number of one-to-one matches, and the least total distance among those."""
    dist = _normalized(detected, truth, np.broadcast_to(radius, (3,)))
    allowed = dist <= 1.0
    best = (0, 0.0)

    def visit(i: int, used: frozenset, count: int, total: float) -> None:
        nonlocal best
        if i == len(detected):
            if count > best[0] or (count == best[0] and total < best[1]):
                best = (count, total)
            return
        visit(i + 1, used, count, total)  # detection i left unmatched
        for j in range(len(truth)):
            if allowed[i, j] and j not in used:
                visit(i + 1, used | {j}, count + 1, total + dist[i, j])

    visit(0, frozenset(), 0, 0.0)
    return best


def _check_matching(detected, truth, radius, di, ti) -> tuple[int, float]:
    """The pairs are one-to-one and within the radius; their count and total distance."""
    assert len(di) == len(ti)
    assert len(set(di.tolist())) == len(di)
    assert len(set(ti.tolist())) == len(ti)
    if len(di) == 0:
        return 0, 0.0
    diff = (np.asarray(detected)[di] - np.asarray(truth)[ti]) / np.broadcast_to(radius, (3,))
    dist = np.sqrt((diff**2).sum(axis=1))
    assert (dist <= 1.0 + 1e-12).all()
    return len(di), float(dist.sum())


@pytest.mark.parametrize("seed", range(60))
def test_match_points_is_optimal_against_brute_force(seed):
    rng = np.random.default_rng(seed)
    n, m = rng.integers(0, 7, size=2)
    # Points packed in a small box so that candidate pairs overlap and greedy fails.
    detected = rng.uniform(0, 1.0, size=(n, 3)) * [1.5, 0.6, 0.6]
    truth = rng.uniform(0, 1.0, size=(m, 3)) * [1.5, 0.6, 0.6]
    radius = (0.6, 0.25, 0.25)
    di, ti = match_points(detected, truth, radius=radius)
    count, total = _check_matching(detected, truth, radius, di, ti)
    best_count, best_total = _brute_force(detected, truth, radius)
    assert count == best_count
    assert total == pytest.approx(best_total, abs=1e-9)


@pytest.mark.parametrize("seed", range(20))
def test_match_points_isotropic_scalar_radius(seed):
    rng = np.random.default_rng(1000 + seed)
    detected = rng.uniform(0, 1.0, size=(6, 3))
    truth = rng.uniform(0, 1.0, size=(5, 3))
    di, ti = match_points(detected, truth, radius=0.45)
    count, total = _check_matching(detected, truth, 0.45, di, ti)
    assert (count, pytest.approx(total, abs=1e-9)) == _brute_force(detected, truth, 0.45)


def test_greedy_would_lose_a_match():
    # Detection 1 is nearest to truth 0, but taking that pair leaves detection 0 alone.
    detected = [[0.0, 0.0, 0.0], [0.0, 0.0, 0.15]]
    truth = [[0.0, 0.0, 0.1], [0.0, 0.0, 0.35]]
    di, ti = match_points(detected, truth, radius=0.25)
    assert di.tolist() == [0, 1]
    assert ti.tolist() == [0, 1]


def test_ties_in_count_go_to_the_smaller_total_distance():
    # Both assignments match two pairs; the crossed one is longer.
    detected = [[0.0, 0.0, 0.0], [0.0, 0.0, 0.2]]
    truth = [[0.0, 0.0, 0.02], [0.0, 0.0, 0.19]]
    di, ti = match_points(detected, truth, radius=0.25)
    assert dict(zip(di.tolist(), ti.tolist())) == {0: 0, 1: 1}


def test_anisotropic_radius():
    truth = [[0.0, 0.0, 0.0]]
    radius = (0.6, 0.25, 0.25)
    assert len(match_points([[0.55, 0.0, 0.0]], truth, radius=radius)[0]) == 1  # along z
    assert len(match_points([[0.0, 0.3, 0.0]], truth, radius=radius)[0]) == 0   # along y
    assert len(match_points([[0.0, 0.0, 0.24]], truth, radius=radius)[0]) == 1  # along x
    # Inside each axis' range but outside the ellipsoid: (0.5/0.6)^2 + (0.2/0.25)^2 > 1.
    assert len(match_points([[0.5, 0.2, 0.0]], truth, radius=radius)[0]) == 0
    # On the ellipsoid itself counts as a match.
    assert len(match_points([[0.6, 0.0, 0.0]], truth, radius=radius)[0]) == 1


@pytest.mark.parametrize(("n", "m"), [(0, 0), (0, 4), (4, 0)])
def test_empty_inputs(n, m):
    rng = np.random.default_rng(0)
    di, ti = match_points(rng.random((n, 3)), rng.random((m, 3)), radius=0.3)
    assert di.shape == ti.shape == (0,)
    assert di.dtype == ti.dtype == np.intp
    di, ti = match_points([], [], radius=0.3)
    assert len(di) == len(ti) == 0


def test_far_apart_points_do_not_match():
    di, _ = match_points([[0.0, 0.0, 0.0]], [[10.0, 10.0, 10.0]], radius=(0.6, 0.25, 0.25))
    assert len(di) == 0


def test_many_points_match_each_to_its_own():
    # A jittered copy of many well separated points: every pair is found, no mix-ups.
    rng = np.random.default_rng(3)
    grid = np.stack(np.meshgrid(np.arange(10), np.arange(30), np.arange(30), indexing="ij"),
                    axis=-1).reshape(-1, 3) * [1.5, 0.7, 0.7]
    truth = grid + rng.normal(0, 0.02, grid.shape)
    order = rng.permutation(len(grid))
    detected = grid[order] + rng.normal(0, 0.05, grid.shape)
    di, ti = match_points(detected, truth, radius=(0.6, 0.25, 0.25))
    assert len(di) == len(grid)
    assert (order[di] == ti).all()


@pytest.mark.parametrize("bad", [0.0, -1.0, (0.1, 0.2), (0.1, 0.0, 0.2), float("nan")])
def test_bad_radius(bad):
    with pytest.raises(ValueError, match="radius"):
        match_points([[0.0, 0.0, 0.0]], [[0.0, 0.0, 0.0]], radius=bad)


def test_bad_points():
    with pytest.raises(ValueError, match="shape"):
        match_points([[0.0, 0.0]], [[0.0, 0.0, 0.0]], radius=0.3)


# ------------------------------------------------------------------ score_spots
def _molecules(rows) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["z", "y", "x", "in_granule"])


def test_score_spots_perfect():
    molecules = _molecules([(5, 10, 10, False), (12, 40, 40, False), (20, 80, 20, False)])
    detected = molecules[["z", "y", "x"]].to_numpy(float) + [0.5, 0.8, -0.8]  # within 0.6/0.25 µm
    score = score_spots(detected, molecules, spacing=SPACING)
    assert score["n_true"] == score["n_matched"] == score["n_detected"] == 3
    assert score["n_false"] == score["n_set_aside"] == 0
    assert score["recall"] == score["precision"] == score["f1"] == 1.0


def test_score_spots_false_detection_and_missed_molecule():
    molecules = _molecules([(5, 10, 10, False), (12, 40, 40, False), (20, 80, 20, False)])
    detected = [[5, 10, 11],      # molecule 0
                [12, 40, 44],     # 4 pixels = 0.26 µm off in x: no match, a false detection
                [20, 80, 20],     # molecule 2
                [3, 100, 100]]    # nothing there: false
    score = score_spots(detected, molecules, spacing=SPACING)
    assert score["n_true"] == 3
    assert score["n_detected"] == 4
    assert score["n_matched"] == 2
    assert score["n_false"] == 2
    assert score["n_set_aside"] == 0
    assert score["recall"] == pytest.approx(2 / 3)
    assert score["precision"] == pytest.approx(2 / 4)
    assert score["f1"] == pytest.approx(2 * 2 / (3 + 4))


def test_score_spots_two_detections_of_one_molecule():
    molecules = _molecules([(5, 10, 10, False)])
    score = score_spots([[5, 10, 10], [5, 10, 12]], molecules, spacing=SPACING)
    assert (score["n_matched"], score["n_false"]) == (1, 1)


def test_score_spots_sets_aside_detections_in_granules():
    granule = [(10, 50 + dy, 50 + dx, True) for dy in (-2, 0, 2) for dx in (-2, 0, 2)]
    molecules = _molecules([(5, 10, 10, False), (15, 100, 100, False), *granule])
    detected = [[5, 10, 10],       # single molecule 0
                [10, 50, 50],      # granule centre
                [10, 48, 52],      # another peak of the same granule
                [11, 53, 50],      # at the granule's edge, within the radius of a member
                [10, 60, 60]]      # 0.45 µm from the nearest member: a false detection
    score = score_spots(detected, molecules, spacing=SPACING)
    assert score["n_true"] == 2  # granule molecules are not targets
    assert score["n_detected"] == 5
    assert score["n_set_aside"] == 3
    assert score["n_matched"] == 1
    assert score["n_false"] == 1
    assert score["recall"] == pytest.approx(0.5)
    assert score["precision"] == pytest.approx(0.5)


def test_score_spots_sets_aside_single_molecules_next_to_a_granule():
    # A single molecule 2 pixels (0.13 µm) from a granule member cannot be told from
    # the granule: it is no target, and the detection there is set aside.
    granule = [(10, 50, 50 + dx, True) for dx in (-1, 0, 1)]
    molecules = _molecules([(5, 10, 10, False), (10, 50, 53, False), *granule])
    score = score_spots([[5, 10, 10], [10, 50, 52]], molecules, spacing=SPACING)
    assert (score["n_true"], score["n_true_set_aside"]) == (1, 1)
    assert (score["n_matched"], score["n_false"], score["n_set_aside"]) == (1, 0, 1)
    assert score["recall"] == score["precision"] == 1.0


def test_score_spots_sets_aside_close_single_molecules():
    # Two singles 3 pixels (0.195 µm) apart in x are not resolvable: neither is a target,
    # and a detection on them is neither true nor false. A third single is isolated.
    molecules = _molecules([(10, 50, 50, False), (10, 50, 53, False), (5, 10, 10, False)])
    detected = [[10, 50, 51],     # on the close pair: set aside
                [10, 50, 56],     # 0.195 µm from molecule 1, within the radius: set aside
                [5, 10, 11],      # the isolated single
                [5, 30, 30]]      # nothing there: false
    score = score_spots(detected, molecules, spacing=SPACING)
    assert (score["n_true"], score["n_true_set_aside"]) == (1, 2)
    assert score["n_detected"] == 4
    assert (score["n_matched"], score["n_false"], score["n_set_aside"]) == (1, 1, 2)
    assert score["recall"] == 1.0
    assert score["precision"] == 0.5
    # Without the detection on the pair, nothing changes but the set-aside count.
    score = score_spots([[5, 10, 11], [5, 30, 30]], molecules, spacing=SPACING)
    assert (score["n_true"], score["n_matched"], score["n_false"], score["n_set_aside"]) == (1, 1, 1, 0)


def test_score_spots_resolution_is_anisotropic_and_adjustable():
    # 3 planes (0.6 µm) apart in z: within the default 0.8 µm along z, unresolvable.
    molecules = _molecules([(10, 50, 50, False), (13, 50, 50, False)])
    score = score_spots([[10, 50, 50], [13, 50, 50]], molecules, spacing=SPACING)
    assert (score["n_true"], score["n_true_set_aside"], score["n_set_aside"]) == (0, 2, 2)
    assert math.isnan(score["recall"])
    assert math.isnan(score["precision"])
    # 0.65 µm apart laterally is beyond the 0.3 µm lateral resolution: both are targets.
    molecules = _molecules([(10, 50, 50, False), (10, 50, 60, False)])  # 10 px = 0.65 µm
    score = score_spots([[10, 50, 50], [10, 50, 60]], molecules, spacing=SPACING)
    assert (score["n_true"], score["n_true_set_aside"], score["n_matched"]) == (2, 0, 2)
    # A finer resolution resolves the z pair.
    molecules = _molecules([(10, 50, 50, False), (13, 50, 50, False)])
    score = score_spots([[10, 50, 50], [13, 50, 50]], molecules, spacing=SPACING,
                        resolution_um=(0.5, 0.3, 0.3))
    assert (score["n_true"], score["n_matched"], score["f1"]) == (2, 2, 1.0)


def test_score_spots_coincident_singles_are_unresolvable():
    molecules = _molecules([(10, 50, 50, False), (10, 50, 50, False)])
    score = score_spots([[10, 50, 50]], molecules, spacing=SPACING)
    assert (score["n_true"], score["n_true_set_aside"], score["n_set_aside"]) == (0, 2, 1)


def test_score_spots_bad_resolution():
    molecules = _molecules([(10, 50, 50, False)])
    with pytest.raises(ValueError, match="resolution_um"):
        score_spots([[10, 50, 50]], molecules, spacing=SPACING, resolution_um=(0.5, 0.3))


def test_score_spots_uses_spacing_and_radius():
    molecules = _molecules([(5, 10, 10, False)])
    # 2 planes off: 0.4 µm at 0.2 µm steps (a match), 0.8 µm at 0.4 µm steps (none).
    assert score_spots([[7, 10, 10]], molecules, spacing=SPACING)["n_matched"] == 1
    assert score_spots([[7, 10, 10]], molecules, spacing=(0.4, 0.065, 0.065))["n_matched"] == 0
    assert score_spots([[7, 10, 10]], molecules, spacing=SPACING,
                       radius_um=0.3)["n_matched"] == 0


def test_score_spots_nothing_detected():
    molecules = _molecules([(5, 10, 10, False), (9, 30, 30, True)])
    score = score_spots(np.empty((0, 3)), molecules, spacing=SPACING)
    assert (score["n_true"], score["n_matched"], score["recall"], score["f1"]) == (1, 0, 0.0, 0.0)
    assert math.isnan(score["precision"])


# ------------------------------------------------------------------- mask_spots
def test_mask_spots_face_connected_objects():
    mask = np.zeros((6, 10, 10), np.uint8)
    mask[1, 1, 1:4] = 255            # one object, centre (1, 1, 2)
    mask[3, 5, 5] = mask[4, 6, 6] = 255  # touching by a corner only: two objects
    centres = mask_spots(mask)
    assert centres.shape == (3, 3)
    np.testing.assert_allclose(centres, [[1, 1, 2], [3, 5, 5], [4, 6, 6]])


def test_mask_spots_intensity_weighted():
    mask = np.zeros((3, 5, 5), bool)
    mask[1, 2, 1:3] = True
    image = np.zeros(mask.shape, np.uint16)
    image[1, 2, 1], image[1, 2, 2] = 100, 300
    np.testing.assert_allclose(mask_spots(mask, image), [[1, 2, 1.75]])
    # An object with no intensity at all keeps its geometric centre.
    np.testing.assert_allclose(mask_spots(mask, np.zeros_like(image)), [[1, 2, 1.5]])


def test_mask_spots_empty_and_bad_input():
    assert mask_spots(np.zeros((4, 4, 4), np.uint8)).shape == (0, 3)
    with pytest.raises(ValueError, match="3D"):
        mask_spots(np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match="shape"):
        mask_spots(np.zeros((4, 4, 4), np.uint8), np.zeros((4, 4, 5)))


def test_mask_spots_round_trip_through_score():
    # Ideal spots drawn as small boxes around each molecule score perfectly.
    molecules = _molecules([(5, 10, 10, False), (12, 40, 40, False), (20, 80, 20, False)])
    mask = np.zeros((30, 100, 100), np.uint8)
    for z, y, x, _ in molecules.itertuples(index=False):
        mask[z - 1:z + 2, y - 1:y + 2, x - 1:x + 2] = 255
    score = score_spots(mask_spots(mask), molecules, spacing=SPACING)
    assert score["f1"] == 1.0
