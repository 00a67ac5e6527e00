import numpy as np
import pandas as pd
import pytest

from rna_localization import label_objects, nearest_distances
from rna_localization.distances import DISTANCE_COLUMNS, point_distances
from rna_localization.objects import ObjectVoxels

import oracles


def _compare(result, expected):
    assert list(result.columns) == list(DISTANCE_COLUMNS)
    assert result["object_id"].tolist() == expected["object_id"].tolist()
    np.testing.assert_allclose(result["distance"], expected["distance"], rtol=1e-12, atol=1e-12)
    got = result["target_id"].astype("float").to_numpy()
    want = expected["target_id"].astype("float").to_numpy()
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("spacing", [1.0, (0.2, 0.065, 0.065), (0.35, 0.1, 0.13)])
@pytest.mark.parametrize("seed", range(6))
def test_matches_all_pairs_brute_force(spacing, seed):
    rng = np.random.default_rng(seed)
    shape = tuple(rng.integers(3, 12, size=3))
    source = label_objects(rng.random(shape) > 0.8)
    target = label_objects(rng.random(shape) > rng.choice([0.8, 0.97]))
    _compare(nearest_distances(source, target, spacing), oracles.distances(source, target, spacing))


def test_long_object_tip_beats_nearer_centroids():
    """The old '3 nearest centroids' shortcut misses the rod; the exact answer is the rod."""
    rna = np.zeros((1, 40, 60), np.int32)
    rna[0, 20, 30] = 1
    targets = np.zeros_like(rna)
    for label, (y, x) in enumerate([(20, 36), (14, 30), (26, 30)], start=2):
        targets[0, y - 1:y + 2, x - 1:x + 2] = label  # centroids 6 voxels away, edges 5
    targets[0, 21, 32:60] = 9  # a rod: its centroid is ~16 voxels away, its tip ~2.2
    result = nearest_distances(rna, targets, spacing=0.1)
    assert result["target_id"].tolist() == [9]
    assert result["distance"].iloc[0] == pytest.approx(0.1 * np.hypot(1, 2))


def test_overlap_is_zero_and_smallest_label_wins():
    rna = np.zeros((1, 4, 4), np.int32)
    rna[0, 1, :3] = 5
    targets = np.zeros_like(rna)
    targets[0, 1, 0] = 8
    targets[0, 1, 2] = 3
    result = nearest_distances(rna, targets, spacing=(0.2, 0.1, 0.1))
    assert result["distance"].tolist() == [0.0]
    assert result["target_id"].tolist() == [3]


def test_exact_tie_goes_to_smallest_label():
    rna = np.zeros((1, 1, 7), np.int32)
    rna[0, 0, 3] = 1
    targets = np.zeros_like(rna)
    targets[0, 0, 0], targets[0, 0, 6] = 4, 2
    result = nearest_distances(rna, targets, spacing=0.065)
    assert result["target_id"].tolist() == [2]
    assert result["distance"].iloc[0] == pytest.approx(3 * 0.065)


def test_anisotropy_changes_which_target_is_nearest():
    rna = np.zeros((5, 1, 5), np.int32)
    rna[2, 0, 2] = 1
    targets = np.zeros_like(rna)
    targets[0, 0, 2] = 1  # two slices away in z
    targets[2, 0, 4] = 2  # two voxels away in x
    assert nearest_distances(rna, targets, spacing=(0.2, 0.065, 0.065))["target_id"].tolist() == [2]
    assert nearest_distances(rna, targets, spacing=(0.05, 0.065, 0.065))["target_id"].tolist() == [1]


def test_no_target_gives_missing_values():
    rna = np.zeros((2, 3, 3), np.int32)
    rna[0, 0, 0] = 1
    result = nearest_distances(rna, np.zeros_like(rna), spacing=1)
    assert result["distance"].isna().all()
    assert result["target_id"].isna().all()
    assert result["object_id"].tolist() == [1]


def test_no_object_gives_typed_empty_table():
    result = nearest_distances(np.zeros((2, 3, 3), int), np.ones((2, 3, 3), int), spacing=1)
    assert len(result) == 0
    assert dict(result.dtypes.astype(str)) == DISTANCE_COLUMNS


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="same shape"):
        nearest_distances(np.zeros((2, 3, 3), int), np.zeros((2, 3, 4), int))
    with pytest.raises(ValueError, match="spacing must be positive"):
        nearest_distances(np.zeros((2, 3, 3), int), np.zeros((2, 3, 3), int), spacing=(0.2, -1, 1))
    # Bad labels are named by the argument that holds them.
    good, negative = np.zeros((2, 3, 3), int), np.zeros((2, 3, 3), int)
    negative[0, 0, 0] = -2
    with pytest.raises(ValueError, match=r"^target_label_image has negative labels \(smallest -2\)"):
        nearest_distances(good, negative)
    with pytest.raises(ValueError, match=r"^label_image has negative labels"):
        nearest_distances(negative, good)
    with pytest.raises(TypeError, match=r"^target_label_image must hold integer labels"):
        nearest_distances(good, np.zeros((2, 3, 3)))
    with pytest.raises(ValueError, match=r"^target_label_image has negative labels"):
        point_distances(np.zeros((1, 3)), negative, (0.2, 0.1, 0.1))


def test_objects_that_touch_at_the_volume_border():
    rna = np.zeros((2, 2, 2), np.int32)
    rna[:, :, 0] = 1
    targets = np.zeros_like(rna)
    targets[:, :, 1] = 2
    result = nearest_distances(rna, targets, spacing=(0.3, 0.1, 0.07))
    assert result["distance"].iloc[0] == pytest.approx(0.07)
    assert isinstance(result, pd.DataFrame)


@pytest.mark.parametrize("spacing", [1.0, (0.3, 0.1, 0.07)])
def test_target_filling_the_whole_stack_gives_zero(spacing):
    """Every voxel is a target: no target voxel has a neighbour of another label, yet all overlap."""
    rna = np.zeros((2, 3, 4), np.int32)
    rna[0, 0, 0] = 1
    rna[1, 2, 1:3] = 2
    rna[:, 1, 3] = 3
    targets = np.full_like(rna, 7)
    result = nearest_distances(rna, targets, spacing)
    assert result["distance"].tolist() == [0.0, 0.0, 0.0]
    assert result["target_id"].tolist() == [7, 7, 7]
    _compare(result, oracles.distances(rna, targets, spacing))


def test_source_and_target_both_filling_the_stack():
    everything = np.ones((1, 2, 2), np.int32)
    result = nearest_distances(everything, 4 * everything, spacing=0.1)
    assert result["distance"].tolist() == [0.0]
    assert result["target_id"].tolist() == [4]


@pytest.mark.parametrize("method", ["kdtree", "edt"])
@pytest.mark.parametrize("spacing", [1.0, (0.2, 0.065, 0.065), (0.3, 0.1, 0.1), (0.5, 0.1, 0.15)])
@pytest.mark.parametrize("seed", range(5))
def test_each_method_matches_all_pairs_brute_force(method, spacing, seed):
    # Objects confined to a corner of a larger stack (the distance transform
    # works on the box around them) and crowded: many exact ties between targets.
    rng = np.random.default_rng(50 + seed)
    shape = (9, 14, 13)
    source = np.zeros(shape, np.int32)
    target = np.zeros(shape, np.int32)
    inner = (slice(1, 7), slice(2, 12), slice(0, 9))
    source[inner] = label_objects(rng.random((6, 10, 9)) > 0.8)
    target[inner] = label_objects(rng.random((6, 10, 9)) > rng.choice([0.85, 0.97]))
    result = nearest_distances(source, target, spacing, method=method, workers=2)
    _compare(result, oracles.distances(source, target, spacing))


@pytest.mark.parametrize("per_object", [0, 10**9])  # the boundary found, or every voxel
@pytest.mark.parametrize("method", ["kdtree", "edt"])
@pytest.mark.parametrize("seed", range(3))
def test_interior_voxels_compared_or_not_give_every_pairs_answer(monkeypatch, seed, method,
                                                                per_object):
    """Source objects compared by their face boundary (large objects) or whole (small ones):
    both exact, with solid objects holding interior voxels, overlaps and ties."""
    from rna_localization import distances

    monkeypatch.setattr(distances, "_BOUNDARY_VOXELS_PER_OBJECT", per_object)
    rng = np.random.default_rng(90 + seed)
    shape = (8, 16, 15)
    source = label_objects(rng.random(shape) > 0.35)  # solid clumps, interiors included
    target = label_objects(rng.random(shape) > 0.96)
    spacing = (0.3, 0.1, 0.1)
    result = nearest_distances(source, target, spacing, method=method, workers=2)
    _compare(result, oracles.distances(source, target, spacing))


@pytest.mark.parametrize("threads", [1, 2, 5])
def test_the_transforms_planes_shared_among_threads_give_every_pairs_distance(threads):
    """_edt_distances on any number of threads (whatever the cores: the planes are dealt among
    them, each keeping its own): every source voxel's squared distance to the nearest target
    voxel, the plane and the in-plane offset of one such voxel, and the least over the other
    planes, as all pairs give them (that least only where it is within the tie factor)."""
    from rna_localization.distances import _edt_distances

    rng = np.random.default_rng(77)
    shape = (7, 23, 19)
    scale = np.array((0.3, 0.1, 0.13))
    target = np.flatnonzero(rng.random(int(np.prod(shape))) < 0.01)
    source = np.setdiff1d(np.flatnonzero(rng.random(int(np.prod(shape))) < 0.05), target)
    factor = 1.5
    got = _edt_distances(source, target, shape, scale, threads, factor)
    points = np.column_stack(np.unravel_index(source, shape))
    targets = np.column_stack(np.unravel_index(target, shape))
    squared = (((points[:, None] - targets[None]) * scale) ** 2).sum(axis=2)
    exact = squared.min(axis=1)
    assert np.unique(targets[:, 0]).size >= 5  # planes for 5 threads
    np.testing.assert_allclose(got.best, exact, rtol=1e-12)
    # A target voxel at the plane and offset given, at the best distance.
    offset = np.column_stack([got.offset >> 16, got.offset & 0xFFFF])
    at = (squared <= exact[:, None] * (1 + 1e-12)) & (targets[None, :, 0] == got.plane[:, None]) & (
        (np.abs(targets[None, :, 1:] - points[:, None, 1:]) == offset[:, None]).all(axis=2))
    assert at.any(axis=1).all()
    # The least over the other planes, wherever it is within the factor.
    other = np.where(targets[None, :, 0] == got.plane[:, None], np.inf, squared).min(axis=1)
    near = other < exact * factor
    assert 0 < near.sum() < near.size
    np.testing.assert_allclose(got.second[near], other[near], rtol=1e-12)
    assert (got.second[~near] >= exact[~near] * factor * (1 - 1e-12)).all()


def test_points_are_packed_with_their_plane_and_place_in_the_box():
    """box_points against np.unravel_index, in any order, up to flat indices past 2**40 (its
    quotients are taken in float64 and corrected)."""
    from rna_localization._envelopes import box_points

    rng = np.random.default_rng(3)
    for shape in [(5, 7, 11), (40, 1000, 999), (3000, 60_000, 60_001)]:
        lows = [int(rng.integers(0, n // 2 + 1)) for n in shape]
        highs = [int(rng.integers(low, n)) for low, n in zip(lows, shape)]
        coordinates = [rng.integers(low, high + 1, 5000) for low, high in zip(lows, highs)]
        # Voxels on the box's corners and on plane and row boundaries (exact quotients).
        coordinates = [np.r_[c, low, high, low, high] for c, low, high in zip(coordinates, lows,
                                                                             highs)]
        flat = np.ravel_multi_index(coordinates, shape).astype(np.int64)
        box_x = highs[2] - lows[2] + 1
        packed = box_points(flat, shape[1], shape[2], *lows, box_x)
        np.testing.assert_array_equal(packed >> 32, coordinates[0] - lows[0])
        np.testing.assert_array_equal(packed & 0xFFFFFFFF, (coordinates[1] - lows[1]) * box_x
                                      + coordinates[2] - lows[2])
    # Rows' first voxels, where a rounded quotient must be corrected: with rows of 49
    # voxels, or planes of 999,000, k times the divisor times its rounded reciprocal falls
    # below k for many k. The box is narrower than the rows, so a row's error shows.
    for shape, ys in [((60, 49, 49), range(49)), ((300, 1000, 999), [0, 999])]:
        middle = shape[2] // 2
        coordinates = [c.ravel() for c in np.meshgrid(np.arange(shape[0]), ys, [0, middle],
                                                     indexing="ij")]
        flat = np.ravel_multi_index(coordinates, shape).astype(np.int64)
        packed = box_points(flat, shape[1], shape[2], 0, 0, 0, middle + 1)
        np.testing.assert_array_equal(packed >> 32, coordinates[0])
        np.testing.assert_array_equal(packed & 0xFFFFFFFF, coordinates[1] * (middle + 1)
                                      + coordinates[2])


def test_two_threads_findings_merge_into_the_least_two():
    """merge_nearest against sorting each point's four values: the best of both, and as the
    least over the other planes the second of the four (each state's own pair being ordered);
    the plane and offset of the best, the first state's where both bests are equal."""
    from rna_localization._envelopes import merge_nearest

    rng = np.random.default_rng(8)
    n = 2000
    states = [np.sort(rng.integers(0, 6, (n, 2)).astype(float), axis=1) for _ in range(2)]
    states[1][:50] = np.inf  # a thread whose planes reached none of these points
    planes = [rng.integers(0, 30, n).astype(np.int32) for _ in range(2)]
    offsets = [rng.integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32) for _ in range(2)]
    want = np.sort(np.hstack(states), axis=1)
    first_wins = states[0][:, 0] <= states[1][:, 0]
    want_plane = np.where(first_wins, planes[0], planes[1])
    want_offset = np.where(first_wins, offsets[0], offsets[1])
    state, plane, offset = states[0].copy(), planes[0].copy(), offsets[0].copy()
    merge_nearest(state, plane, offset, states[1], planes[1], offsets[1])
    np.testing.assert_array_equal(state, want[:, :2])
    np.testing.assert_array_equal(plane, want_plane)
    np.testing.assert_array_equal(offset, want_offset)


def test_voxels_grouped_by_label_in_a_stable_order():
    """by_label (a counting sort) against np.argsort(kind="stable"), labels 0 to high with
    some absent, in every integer width the distances pass."""
    from rna_localization._components import by_label

    rng = np.random.default_rng(4)
    for dtype, high in [(np.uint8, 200), (np.uint16, 3000), (np.int32, 70_000), (np.int64, 5)]:
        labels = rng.choice(np.arange(0, high + 1, 3), 10_000).astype(dtype)
        labels[0] = high
        voxels = np.sort(rng.choice(10**9, labels.size, replace=False)).astype(np.int64)
        order = np.argsort(labels, kind="stable")
        got_voxels, got_labels = by_label(voxels, labels, high)
        np.testing.assert_array_equal(got_voxels, voxels[order])
        np.testing.assert_array_equal(got_labels, labels[order])
        assert got_labels.dtype == np.int64


def test_labels_present_and_voxels_kept_match_numpy():
    """labels_present against np.unique, kept_voxels against boolean indexing (a mask of
    voxels, and labels left out by a table)."""
    from rna_localization._components import kept_voxels, labels_present

    rng = np.random.default_rng(9)
    for dtype in (np.uint8, np.uint16, np.int32, np.int64):
        labels = rng.choice(np.arange(1, 250, 2), 5000).astype(dtype)
        present = labels_present(labels, 260)
        np.testing.assert_array_equal(np.flatnonzero(present), np.unique(labels))
        voxels = np.sort(rng.choice(10**7, labels.size, replace=False)).astype(np.int64)
        chosen = rng.random(labels.size) < 0.6
        skipped = rng.random(261) < 0.3
        want = chosen & ~skipped[labels]
        got_voxels, got_labels = kept_voxels(voxels, labels, chosen, skipped)
        np.testing.assert_array_equal(got_voxels, voxels[want])
        np.testing.assert_array_equal(got_labels, labels[want])
        assert got_labels.dtype == labels.dtype


@pytest.mark.parametrize("squared", [True, False])
def test_object_minima_match_a_reduction_per_object(squared):
    """object_minima against a loop over the objects: each object's least value (of square
    roots when asked, from a strided column as the transforms give), infinite for an object
    without a voxel, and the voxels within the tolerance of their object's least."""
    from rna_localization._components import object_minima

    rng = np.random.default_rng(6)
    n_objects, rtol = 300, 1e-3
    keys = rng.integers(0, 1000, 20_000)
    table = rng.integers(0, n_objects - 5, 1000)  # the last five objects have no voxel
    state = rng.random((keys.size, 2)) * 50
    values = state[:, 0]  # a strided view
    rows = table[keys]
    # An object at 0, with voxels within and past the absolute tolerance (1e-12).
    tiny = np.flatnonzero(rows == rows[0])[:3]
    values[tiny] = np.array([0.0, 5e-13, 2e-12]) ** (2 if squared else 1)
    # Some voxels just within the tolerance of their object's least value.
    least = pd.Series(np.sqrt(values) if squared else values).groupby(rows).min()
    close = rng.choice(keys.size, 200, replace=False)
    near_least = least[rows[close]].to_numpy() * (1 + rtol / 2)
    values[close] = near_least ** 2 if squared else near_least
    # Others on the edge of the tolerance, by a float either way (where a square compared
    # instead of a root must be exact).
    edge = rng.choice(np.setdiff1d(np.arange(keys.size), np.r_[close, tiny]), 100, replace=False)
    least = pd.Series(np.sqrt(values) if squared else values).groupby(rows).min()
    radius = least[rows[edge]].to_numpy() * (1 + rtol) + 1e-12
    bound = radius ** 2 if squared else radius.copy()
    root = np.sqrt if squared else (lambda x: x)
    for _ in range(4):
        bound = np.where(root(bound) > radius, np.nextafter(bound, -np.inf), bound)
        step = np.nextafter(bound, np.inf)
        bound = np.where(root(step) <= radius, step, bound)
    values[edge] = np.where(np.arange(edge.size) % 2 == 0, bound, np.nextafter(bound, np.inf))
    minima, near = object_minima(keys, table, values, squared, n_objects, rtol)
    plain = np.sqrt(values) if squared else values
    assert np.isin(edge[::2], near).all()
    assert not np.isin(edge[1::2], near).any()
    for row in range(n_objects):
        mine = plain[rows == row]
        assert minima[row] == (mine.min() if mine.size else np.inf)
    want = np.flatnonzero(plain <= minima[rows] * (1 + rtol) + 1e-12)
    assert 0 < want.size < keys.size
    assert (plain[want] > minima[rows[want]]).any()
    assert tiny[1] in want
    assert tiny[2] not in want
    np.testing.assert_array_equal(near, want)


@pytest.mark.parametrize("method", ["kdtree", "edt"])
def test_labels_far_larger_than_their_number_match_all_pairs(method):
    """Labels too large to count by table (scattered up to 2**31 - 1) are looked up instead."""
    rng = np.random.default_rng(12)
    shape = (6, 15, 14)
    source = label_objects(rng.random(shape) > 0.85)
    target = label_objects(rng.random(shape) > 0.95)
    for image in (source, target):
        ids = rng.choice(2**31 - 1, image.max() + 1, replace=False).astype(np.int32)
        ids[0] = 0
        image[:] = ids[image]
    assert source.max() > 4 * np.count_nonzero(source) + 1024
    result = nearest_distances(source, target, (0.3, 0.1, 0.1), method=method)
    _compare(result, oracles.distances(source, target, (0.3, 0.1, 0.1)))


@pytest.mark.parametrize("scale", [(0.3, 0.1, 0.1), (0.3, 0.1, 0.13)])
@pytest.mark.parametrize("widen", [1e-9, 0.3])
def test_labels_in_the_best_plane_match_all_pairs(scale, widen):
    """nearest_labels: the smallest label among the target voxels of each source voxel's best
    plane within its limit, as all pairs give it; square pixels make many exact ties between
    labels in a plane (a ring of whole-pixel offsets), and a wider limit a wide ring."""
    from rna_localization._envelopes import nearest_labels
    from rna_localization.distances import _edt_distances

    rng = np.random.default_rng(5)
    shape = (6, 31, 29)
    scale = np.array(scale)
    target = np.flatnonzero(rng.random(int(np.prod(shape))) < 0.02)
    target_labels = rng.integers(1, 6, target.size)
    source = np.setdiff1d(np.flatnonzero(rng.random(int(np.prod(shape))) < 0.1), target)
    got = _edt_distances(source, target, shape, scale, 1)
    limit = got.best * (1 + widen)
    z, y, x = np.unravel_index(source, shape)
    weights = scale ** 2
    labels = nearest_labels(z, y, x, got.plane, got.offset, limit, weights[1],
                            weights[2], weights[0], shape[1], shape[2], target, target_labels)
    points = np.column_stack([z, y, x])
    targets = np.column_stack(np.unravel_index(target, shape))
    squared = (((points[:, None] - targets[None]) * scale) ** 2).sum(axis=2)
    inside = (squared <= limit[:, None]) & (targets[None, :, 0] == got.plane[:, None])
    expected = np.where(inside, target_labels[None], np.iinfo(np.int64).max).min(axis=1)
    np.testing.assert_array_equal(labels, expected)
    tied = np.array([np.unique(target_labels[row]).size for row in inside])
    assert (tied >= 2).sum() >= 5  # labels tied (or within the wide limit) in a plane


def test_tie_reached_from_a_voxel_other_than_the_first_queried():
    """The bounded queries start from each object's first voxel; a tie at its far end still counts.

    The rod's first voxel (x = 10) is nearest to target 7; its other end (x = 29)
    is exactly as far from target 3, which must win. A bound without a margin over
    rounding, or a bound taken from the first voxel's own distance, would lose it.
    """
    rna = np.zeros((1, 11, 40), np.int32)
    rna[0, 5, 10:30] = 1
    targets = np.zeros_like(rna)
    targets[0, 5, 4] = 7
    targets[0, 2:9, 35] = 3  # a bar: its middle voxel is 6 voxels from the rod's end
    for spacing in (1.0, 0.065, (0.2, 0.065, 0.065)):
        result = nearest_distances(rna, targets, spacing, method="kdtree")
        assert result["target_id"].tolist() == [3]
        step = np.broadcast_to(np.asarray(spacing, float), (3,))[2]
        assert result["distance"].iloc[0] == pytest.approx(6 * step, rel=1e-12)


@pytest.mark.parametrize("method", ["kdtree", "edt"])
def test_a_wide_tie_tolerance_reaches_a_target_beyond_the_nearest(method):
    """With tie_rtol = 6%, target 3 at 21 voxels from the rod's far end ties with target 7 at
    20 from its near end: the pruning and the queries must look as far as the tolerance."""
    rna = np.zeros((1, 3, 80), np.int32)
    rna[0, 1, 30:50] = 1
    targets = np.zeros_like(rna)
    targets[0, 1, 10] = 7
    targets[0, 1, 70] = 3
    result = nearest_distances(rna, targets, spacing=0.1, tie_rtol=0.06, method=method)
    assert result["target_id"].tolist() == [3]
    assert result["distance"].iloc[0] == pytest.approx(2.0, rel=1e-12)
    strict = nearest_distances(rna, targets, spacing=0.1, method=method)
    assert strict["target_id"].tolist() == [7]


def _rods(rng, shape, count) -> np.ndarray:
    """`count` one-voxel-thick segments in random directions, labels 1..count (later ones on top)."""
    labels = np.zeros(shape, np.int32)
    for label in range(1, count + 1):
        start = rng.uniform(0, shape)
        step = rng.normal(size=3)
        step /= np.linalg.norm(step)
        points = start + np.outer(np.arange(rng.integers(3, 2 * max(shape))), step)
        inside = np.all((points >= 0) & (points < shape), axis=1)
        labels[tuple(points[inside].astype(int).T)] = label
    return labels


@pytest.mark.parametrize("spacing", [1.0, (0.2, 0.065, 0.065)])
@pytest.mark.parametrize("seed", range(4))
def test_elongated_objects_match_all_pairs_brute_force(spacing, seed):
    # Long, bent-free rods crossing each other and the targets: an object's first
    # voxel is often far from its nearest one, which is where a pruned search errs.
    rng = np.random.default_rng(300 + seed)
    shape = (6, 20, 20)
    source = _rods(rng, shape, 12)
    target = _rods(rng, shape, 5)
    target[source != 0] = np.where(rng.random(np.count_nonzero(source)) < 0.97, 0,
                                   target[source != 0])  # a few shared voxels only
    expected = oracles.distances(source, target, spacing)
    for method in ("kdtree", "auto"):
        _compare(nearest_distances(source, target, spacing, method=method, workers=1), expected)


@pytest.mark.parametrize("tie_rtol", [0.0, 1e-3])
@pytest.mark.parametrize("workers", [1, 2])  # groups one after another, or in a thread pool
@pytest.mark.parametrize("seed", range(3))
def test_pruned_queries_are_exact_wherever_a_voxel_can_be_nearest(seed, workers, tie_rtol,
                                                                  monkeypatch):
    """Every voxel within its object's minimum distance (a nearest or tied voxel, to tie_rtol)
    is kept by the pruning and gets its exact distance from the bounded queries; the others
    may be dropped or left at inf, never below the minimum. The "objects" are scattered points:
    their centroids and the points behind them are nowhere near their nearest voxels."""
    from scipy.spatial import cKDTree
    from scipy.spatial.distance import cdist

    from rna_localization import distances
    from rna_localization.distances import _prune, _query_within

    monkeypatch.setattr(distances, "_GROUP_POINTS", 16)  # many groups of a few voxels

    rng = np.random.default_rng(400 + seed)
    spacing = np.array((0.2, 0.065, 0.065))
    targets = rng.integers(0, (8, 40, 40), size=(60, 3)) * spacing
    points = rng.integers(0, (8, 40, 40), size=(500, 3)) * spacing
    sizes = rng.integers(1, 30, size=40)
    starts = np.r_[0, np.cumsum(sizes)[:-1]]
    points = points[:sizes.sum()]
    starts = starts[starts < len(points)]
    tree = cKDTree(targets)
    needed, bound = _prune(tree, points, starts, workers, tie_rtol)
    got = np.full(len(points), np.inf)
    got[needed] = _query_within(tree, points[needed], bound, workers, k=1)[0][:, 0]
    exact = cdist(points, targets).min(axis=1)
    minimum = np.repeat(np.minimum.reduceat(exact, starts), np.diff(np.r_[starts, len(points)]))
    near = exact <= minimum * (1 + tie_rtol) + 1e-12
    np.testing.assert_allclose(got[near], exact[near], rtol=1e-12)
    assert np.all((got[~near] == np.inf) | np.isclose(got[~near], exact[~near], rtol=1e-12))
    np.testing.assert_allclose(np.minimum.reduceat(got, starts), np.minimum.reduceat(exact, starts),
                               rtol=1e-12)


def test_method_choice_follows_the_cost_of_each():
    from rna_localization import distances

    shape = (30, 512, 512)
    target_voxels = np.ravel_multi_index(np.nonzero(np.ones((6, 60, 60), bool)), shape)
    # Few objects: querying them beats transforming 6 planes of 262,144 pixels.
    few = np.arange(0, shape[1] * shape[2], 997, dtype=np.int64)[:500] + 20 * shape[1] * shape[2]
    assert distances._choose_method(few, target_voxels, shape, 50) == "kdtree"
    # Tens of thousands of objects: the transforms are cheaper...
    many = np.arange(0, 30 * 512 * 512, 11, dtype=np.int64)
    assert distances._choose_method(many, target_voxels, shape, 30_000) == "edt"
    # ... unless there are few objects for those voxels (large ones), or a plane is too
    # large to transform.
    assert distances._choose_method(many, target_voxels, shape, 300) == "kdtree"
    wide = (2, 8000, 8000)
    spread = np.arange(0, 2 * 8000 * 8000, 1789, dtype=np.int64)
    assert distances._choose_method(spread, target_voxels, wide, 60_000) == "kdtree"
    # The transforms cost by the planes holding a target, not by the box's depth: the same
    # targets (6 planes) under 300 planes of sources still favour them.
    deep = (300, 512, 512)
    spread = np.arange(0, 300 * 512 * 512, 110, dtype=np.int64)
    assert distances._choose_method(spread, target_voxels, deep, 30_000) == "edt"


def test_stacks_wider_than_the_transforms_offsets_are_measured_exactly():
    """A row of 70,000 pixels (past the 16 bits a side the transforms' offsets hold): method
    "edt" goes to the KD-tree, and the nearest target 69,000 pixels away is found."""
    rna = np.zeros((1, 2, 70_000), np.int32)
    rna[0, 0, 10] = 1
    targets = np.zeros_like(rna)
    targets[0, 1, 69_010] = 4
    for method in ("edt", "auto"):
        result = nearest_distances(rna, targets, spacing=(0.2, 0.1, 0.05), method=method)
        assert result["target_id"].tolist() == [4]
        assert result["distance"].iloc[0] == pytest.approx(np.hypot(0.1, 0.05 * 69_000))


def test_bad_method_and_workers_are_named():
    rna = np.zeros((1, 1, 4), np.int32)
    rna[0, 0, 0] = 1
    with pytest.raises(ValueError, match=r"method must be one of 'auto', 'kdtree', 'edt'; got 'fast'"):
        nearest_distances(rna, rna, method="fast")
    with pytest.raises(ValueError, match=r"workers must be .* got 0"):
        nearest_distances(rna, rna, workers=0)


def _boundary_voxels(label_image) -> np.ndarray:
    """Flat indices of the face-boundary voxels the package finds, from the object voxels."""
    from rna_localization.distances import _face_boundary

    objects = ObjectVoxels.from_label_image(label_image)
    return objects.voxels[_face_boundary(objects.voxels, objects.labels, objects.shape)]


def _arcs(rng, shape, count, first_label) -> np.ndarray:
    """`count` one-voxel-thick arcs of circles (up to 3/4 turns) in random planes: their
    centroids lie off the object, far from the voxel nearest a target."""
    labels = np.zeros(shape, np.int32)
    for label in range(first_label, first_label + count):
        centre = rng.uniform(0, shape)
        radius = rng.uniform(2, 9)
        u, v = np.linalg.qr(rng.normal(size=(3, 2)))[0].T
        angles = rng.uniform(0, 2 * np.pi) + np.linspace(0, rng.uniform(0.5, 1.5) * np.pi, 80)
        points = centre + radius * (np.outer(np.cos(angles), u) + np.outer(np.sin(angles), v))
        inside = np.all((points >= 0) & (points < shape), axis=1)
        labels[tuple(points[inside].astype(int).T)] = label
    return labels


def _balls_of_many_sizes(rng, shape) -> np.ndarray:
    """Target balls from one voxel to 7 voxels across in x (flattened in z), labels 1..."""
    grid = np.indices(shape)
    labels = np.zeros(shape, np.int32)
    for label, radius in enumerate((0.4, 1, 2, 3.5, 1.5, 0.6, 5), start=1):
        centre = rng.uniform(0, shape)
        inside = (((grid[0] - centre[0]) * 2.5) ** 2 + (grid[1] - centre[1]) ** 2
                  + (grid[2] - centre[2]) ** 2) <= radius**2
        labels[inside] = label
    labels[tuple(rng.integers(0, shape, size=(4, 3)).T)] = 9  # single voxels of one object
    return labels


@pytest.mark.parametrize("spacing", [(0.3, 0.07, 0.05), 0.1])
@pytest.mark.parametrize("seed", range(3))
def test_pruning_is_exact_for_objects_whose_centroid_is_far_from_their_nearest_voxel(
        spacing, seed):
    """Arcs, rods and blobs against targets of many sizes: the pruning's lower bounds come from
    each object's centroid and a point behind it; a bound taken as exact for every voxel (a
    radius too small, a centroid taken as inside the object, a missing margin) would drop the
    nearest voxel of an arc whose middle is far from it, and the all-pairs oracle would differ."""
    from scipy.spatial import cKDTree

    from rna_localization.distances import _group_starts, _prune

    rng = np.random.default_rng(700 + seed)
    shape = (8, 36, 36)
    source = _arcs(rng, shape, 10, 1)
    rods = _rods(rng, shape, 6)
    source[rods != 0] = rods[rods != 0] + 10
    blobs = label_objects(rng.random(shape) > 0.985)
    source[(blobs != 0) & (source == 0)] = blobs[(blobs != 0) & (source == 0)] + 20
    target = _balls_of_many_sizes(rng, shape)
    target[source != 0] = 0  # no overlaps: every object goes through the pruning
    expected = oracles.distances(source, target, spacing)
    for method in ("kdtree", "edt", "auto"):
        _compare(nearest_distances(source, target, spacing, method=method, workers=2), expected)

    # The data exercise the pruning: it rules out some voxels (not the nearest ones, above).
    scale = np.broadcast_to(np.asarray(spacing, float), (3,))
    flat = source.ravel()
    voxels = _boundary_voxels(source)
    voxels = voxels[np.argsort(flat[voxels], kind="stable")]
    tree = cKDTree(np.column_stack(np.unravel_index(_boundary_voxels(target), shape)) * scale)
    needed, _ = _prune(tree, np.column_stack(np.unravel_index(voxels, shape)) * scale,
                       _group_starts(flat[voxels]), 1)
    assert needed.size < 0.9 * voxels.size


@pytest.mark.parametrize("method", ["kdtree", "edt"])
def test_more_tied_targets_than_the_queries_return(method):
    """Six targets exactly as far from the object, more than the 4 nearest a query returns:
    the search for all of them finds the smallest label, whichever four came first."""
    rna = np.zeros((5, 5, 5), np.int32)
    rna[2, 2, 2] = 1
    targets = np.zeros_like(rna)
    for label, (z, y, x) in zip((9, 8, 7, 6, 5, 4), [(0, 2, 2), (4, 2, 2), (2, 0, 2),
                                                       (2, 4, 2), (2, 2, 0), (2, 2, 4)]):
        targets[z, y, x] = label
    result = nearest_distances(rna, targets, spacing=0.1, method=method)
    assert result["target_id"].tolist() == [4]
    assert result["distance"].iloc[0] == pytest.approx(0.2, rel=1e-12)
    targets[2, 2, 4] = 0  # five left: still more than four
    assert nearest_distances(rna, targets, spacing=0.1, method=method)["target_id"].tolist() == [5]


@pytest.mark.parametrize("seed", range(8))
def test_face_boundary_matches_a_voxel_by_voxel_check(seed):
    """Runs along x that wrap to the next row, labels that change inside a run, voxels on every
    face of the volume: a voxel is on the boundary when a face neighbour inside the volume has
    another label."""
    rng = np.random.default_rng(900 + seed)
    # Blocks of one label (interior voxels, runs as wide as a row) and a few stray voxels.
    blocks = rng.integers(0, 3, size=(2, 2, 2))
    size = rng.integers(1, 4, size=3)
    labels = np.repeat(np.repeat(np.repeat(blocks, size[0], 0), size[1], 1), size[2], 2)
    shape = labels.shape
    stray = rng.random(shape) < 0.05
    labels[stray] = rng.integers(0, 4, size=int(stray.sum()))
    expected = []
    for voxel in zip(*np.nonzero(labels)):
        for axis in range(3):
            for step in (-1, 1):
                neighbour = list(voxel)
                neighbour[axis] += step
                if 0 <= neighbour[axis] < shape[axis] and labels[tuple(neighbour)] != labels[voxel]:
                    expected.append(np.ravel_multi_index(voxel, shape))
                    break
            else:
                continue
            break
    got = _boundary_voxels(labels)
    np.testing.assert_array_equal(got, np.unique(np.array(expected, dtype=np.int64)))


@pytest.mark.parametrize("seed", range(4))
def test_face_boundary_of_scattered_labels_matches_shifted_comparisons(seed):
    """Many short runs, rows and planes skipped, neighbours of every label: a voxel is on the
    boundary when a neighbour inside the volume along some axis holds another value."""
    rng = np.random.default_rng(950 + seed)
    shape = tuple(int(n) for n in rng.integers(3, 15, size=3))
    labels = np.where(rng.random(shape) < rng.uniform(0.2, 0.8), rng.integers(1, 6, size=shape), 0)
    differs = np.zeros(shape, bool)
    for axis in range(3):
        for step in (-1, 1):
            shifted = np.roll(labels, -step, axis=axis)
            inside = np.ones(shape, bool)
            edge = [slice(None)] * 3
            edge[axis] = -1 if step == 1 else 0  # the neighbour would lie outside the volume
            inside[tuple(edge)] = False
            differs |= inside & (shifted != labels)
    expected = np.flatnonzero((differs & (labels != 0)).ravel())
    np.testing.assert_array_equal(_boundary_voxels(labels), expected)


# Object voxels (what the database stores and the distances step reads) in place of label
# images: the same table as from the label images, bit for bit, and the all-pairs answer.

def _stored(label_image) -> ObjectVoxels:
    """The object voxels as the distances step gets them: through the database's runs."""
    from rna_localization.db.labels import decode_runs, encode_runs

    return decode_runs(encode_runs(ObjectVoxels.from_label_image(label_image)), label_image.shape)


def _touching_labels(rng, shape, n_labels, fill, scale=1) -> np.ndarray:
    """Voxels of random labels (times `scale`: labels past uint8), neighbours of other labels
    touching, many on the stack's faces."""
    labels = rng.integers(1, n_labels + 1, size=shape) * scale
    labels[rng.random(shape) > fill] = 0
    return labels.astype(np.int64)


@pytest.mark.parametrize("spacing", [1.0, (0.2, 0.065, 0.065), (0.3, 0.1, 0.1)])
@pytest.mark.parametrize("seed", range(8))
def test_object_voxels_give_the_label_images_answer_and_brute_forces(spacing, seed):
    """Unit spacing and whole-voxel offsets make exact ties (smallest target label wins);
    labels of both kinds touch each other and the stack's faces; some objects overlap a target."""
    rng = np.random.default_rng(1500 + seed)
    shape = tuple(rng.integers(2, 10, size=3))
    source = _touching_labels(rng, shape, 6, 0.25, scale=rng.choice([1, 1000]))
    target = _touching_labels(rng, shape, 4, rng.choice([0.05, 0.2]))
    if seed == 0:
        target[:] = 0
        target[0, 0, 0] = 3  # one voxel in a corner
    dense = nearest_distances(source, target, spacing)
    _compare(dense, oracles.distances(source, target, spacing))
    for method in ("auto", "kdtree", "edt"):
        from_voxels = nearest_distances(_stored(source), _stored(target), spacing, method=method)
        pd.testing.assert_frame_equal(
            from_voxels, nearest_distances(source, target, spacing, method=method))
    # One of each kind.
    pd.testing.assert_frame_equal(nearest_distances(source, _stored(target), spacing), dense)
    pd.testing.assert_frame_equal(nearest_distances(_stored(source), target, spacing), dense)


@pytest.mark.parametrize("seed", range(4))
def test_point_distances_from_object_voxels_match_the_label_image_and_brute_force(seed):
    rng = np.random.default_rng(1600 + seed)
    shape = tuple(rng.integers(2, 9, size=3))
    targets = _touching_labels(rng, shape, 3, 0.1)
    targets[tuple(rng.integers(0, shape))] = 2  # at least one target voxel
    spacing = (0.3, 0.1, 0.1)
    points = rng.uniform(-1.0, np.array(shape), (60, 3))  # some outside the stack
    points[:10] = np.argwhere(targets)[rng.integers(0, np.count_nonzero(targets), 10)]
    from_voxels = point_distances(points, _stored(targets), spacing)
    np.testing.assert_array_equal(from_voxels, point_distances(points, targets, spacing))
    scale = np.asarray(spacing)
    voxels = np.argwhere(targets) * scale
    expected = np.sqrt((((points * scale)[:, None, :] - voxels[None]) ** 2).sum(-1)).min(1)
    rounded = np.rint(points).astype(int)
    inside = np.all((rounded >= 0) & (rounded < shape), axis=1)
    hit = np.zeros(len(points), bool)
    hit[inside] = targets[tuple(rounded[inside].T)] != 0
    expected[hit] = 0.0
    np.testing.assert_allclose(from_voxels, expected, rtol=1e-12, atol=1e-12)
    assert hit[:10].all()


def test_object_voxels_without_a_target_or_an_object_or_filling_the_stack_answer_as_label_images():
    rna = np.zeros((2, 3, 4), np.int32)
    rna[1, 2, 3] = 4
    none, full = np.zeros_like(rna), np.full_like(rna, 7)  # full: no target boundary voxel
    for source, target in [(rna, none), (none, rna), (none, none), (rna, full), (full, full)]:
        pd.testing.assert_frame_equal(nearest_distances(_stored(source), _stored(target), 0.1),
                                      nearest_distances(source, target, 0.1))
    assert nearest_distances(_stored(rna), _stored(none), 0.1)["target_id"].isna().all()
    assert np.isnan(point_distances([(0, 0, 0), (1, 2, 3)], _stored(none), 0.1)).all()
    assert nearest_distances(_stored(rna), _stored(full), 0.1)["distance"].tolist() == [0.0]
    # Inside a voxel, and 0.6 voxel past the stack's last one.
    np.testing.assert_allclose(point_distances([(0, 0, 0.4), (1, 2, 3.6)], _stored(full), 0.1),
                               [0.0, 0.06], rtol=1e-12)


def test_object_voxels_of_another_shape_are_named():
    with pytest.raises(ValueError, match=r"same shape; got \(2, 3, 3\) and \(2, 3, 4\)"):
        nearest_distances(_stored(np.ones((2, 3, 3), int)), np.ones((2, 3, 4), int))
    with pytest.raises(ValueError, match="3D"):
        nearest_distances(np.ones((3, 3), int), _stored(np.ones((1, 3, 3), int)))
