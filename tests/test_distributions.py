import numpy as np
import pandas as pd
import pytest

from rna_localization import (
    cumulative_distribution,
    distance_steps,
    normalize_intensities,
    single_molecule_references,
)
from rna_localization.distributions import (
    IMAGE_REFERENCE_MIN_OBJECTS,
    MIN_REFERENCE_OBJECTS,
    REFERENCE_ISOLATION_UM,
    REFERENCE_TRIM,
    aperture_references,
    depth_references,
    image_references,
    isolated_spots,
    object_references,
    shrunk_references,
)

import oracles


def test_distance_steps():
    np.testing.assert_array_equal(distance_steps(0.2, 0.05), [0, 0.05, 0.1, 0.15, 0.2])
    np.testing.assert_array_equal(distance_steps(5.0, 0.05)[-3:], [4.9, 4.95, 5.0])
    assert len(distance_steps(5.0, 0.05)) == 101
    np.testing.assert_array_equal(distance_steps(0.12, 0.05), [0, 0.05, 0.1, 0.12])
    np.testing.assert_array_equal(distance_steps(0.0, 0.05), [0.0])
    with pytest.raises(ValueError, match="step_size must be positive"):
        distance_steps(1.0, 0)


@pytest.mark.parametrize("threshold", [None, 0.7, 2.5])
@pytest.mark.parametrize("seed", range(4))
def test_cumulative_distribution_matches_loops(threshold, seed):
    rng = np.random.default_rng(seed)
    n = 60
    distance = rng.uniform(0, 2, n).round(2)
    distance[rng.random(n) < 0.1] = np.nan
    distance[:3] = 0.0
    total = rng.uniform(100, 5000, n)
    molecules = rng.uniform(0.5, 8, n)
    result = cumulative_distribution(distance, total, molecules, step_size=0.1,
                                     distance_threshold=threshold, granule_threshold=4)
    expected = oracles.distribution(distance, total, molecules, step=0.1, threshold=threshold,
                                    granule_threshold=4)
    pd.testing.assert_frame_equal(result, expected, rtol=1e-12)
    assert result["percent_total_rna"].iloc[-1] == pytest.approx(100)
    assert (np.diff(result["percent_total_rna"]) >= 0).all()


def test_nothing_left_gives_no_rows():
    assert cumulative_distribution([np.nan], [5.0], [1.0], step_size=0.1).empty
    assert cumulative_distribution([3.0], [5.0], [1.0], step_size=0.1, distance_threshold=1.0).empty


def test_normalization_matches_per_group_means():
    area = np.array([5, 10, 40, 41, 12, 30, 100])
    total = np.array([1.0, 100, 300, 999, 50, 70, 600])
    groups = np.array(["a", "a", "a", "a", "b", "b", "b"])
    references = single_molecule_references(total, area, groups, lower_threshold=10, upper_threshold=40)
    assert references.to_dict() == {"a": 200.0, "b": 60.0}
    result = normalize_intensities(total, area, groups, lower_threshold=10, upper_threshold=40)
    expected = [t / {"a": 200.0, "b": 60.0}[g] for t, g in zip(total, groups)]
    np.testing.assert_allclose(result, expected, rtol=1e-15)


def test_group_without_single_molecules_is_named():
    with pytest.raises(ValueError, match="'gapdh'"):
        normalize_intensities([1, 2], [15, 200], ["cen", "gapdh"], lower_threshold=10, upper_threshold=40)


def test_aperture_reference_is_the_trimmed_mean_single_spot_of_each_group():
    # Group a: singles of 40-60 voxels around 100, a merged pair and a cut spot inside the
    # area window (170 and 55: beyond 1.6 times the window's median, 100, either side), a
    # merged pair outside it (95 voxels) and a granule.
    spot = [90.0, 100.0, 104.0, 170.0, 55.0, 250.0, 900.0, 10.0, 12.0, 11.0]
    area = [40, 50, 60, 45, 55, 95, 200, 30, 30, 30]
    groups = ["a"] * 7 + ["b"] * 3
    table = aperture_references(spot, area, groups)
    assert table.loc["a", "reference"] == pytest.approx((90 + 100 + 104) / 3, rel=1e-15)
    assert table.loc["a", "single_molecules"] == 3
    assert (table.loc["a", "lower_area"], table.loc["a", "upper_area"]) == (27.5, 82.5)
    assert table.loc["b", "reference"] == pytest.approx(11.0, rel=1e-15)
    # Two spots further apart than the factor either side of their median: the median.
    table = aperture_references([10.0, 100.0], [30, 30], ["d", "d"])
    assert (table.loc["d", "reference"], table.loc["d", "single_molecules"]) == (55.0, 2)
    with pytest.raises(ValueError, match="'c'"):
        aperture_references([-5.0, -1.0], [30, 30], ["c", "c"])


def test_aperture_reference_is_the_mean_molecule_of_a_log_normal_population():
    # Molecules log-normal in brightness as on real images (sigma 0.27 of log), read with
    # 5% noise, alone and with 6% of the window's objects unresolved pairs (two molecules'
    # light): a count divides light by the mean molecule, exp(sigma^2 / 2) = 1.037 medians.
    sigma, n = 0.27, 4000
    mean_molecule = np.exp(sigma ** 2 / 2)
    for seed, pairs_pct in ((3, 0), (4, 6)):
        rng = np.random.default_rng(seed)
        singles = rng.lognormal(0.0, sigma, n)
        pairs = rng.lognormal(0.0, sigma, (n * pairs_pct // 100, 2)).sum(axis=1)
        spot = np.concatenate([singles, pairs])
        spot = spot * (1 + 0.05 * rng.standard_normal(spot.size))
        reference = aperture_references(spot, np.full(spot.size, 50),
                                        ["g"] * spot.size).loc["g", "reference"]
        # The trim leaves out the brightest 4% of single molecules too: 1-2% under the mean.
        assert reference == pytest.approx(mean_molecule, rel=0.02), pairs_pct
        # A whole population's counts come as near: molecules summed over the singles.
        assert singles.sum() / reference == pytest.approx(n, rel=0.02), pairs_pct
        if not pairs_pct:  # the median sits on the median molecule, 3.7% under the mean
            assert np.median(spot) / mean_molecule < 0.97
            assert abs(reference / mean_molecule - 1) < abs(np.median(spot) / mean_molecule - 1) - 0.015


def test_aperture_reference_leaves_crowded_spots_out_when_enough_are_isolated():
    # 60 isolated spots reading 100 (+-10) and 60 crowded ones reading 130: a crowded
    # spot's aperture holds part of its neighbours' light.
    rng = np.random.default_rng(0)
    isolated_spot = 100 + 10 * rng.uniform(-1, 1, 60)
    spot = np.concatenate([isolated_spot, np.full(60, 130.0)])
    isolated = np.arange(120) < 60
    area = np.full(120, 40)
    table = aperture_references(spot, area, ["g"] * 120, isolated=isolated)
    assert table.loc["g", "reference"] == pytest.approx(isolated_spot.mean(), rel=1e-12)
    assert table.loc["g", "single_molecules"] == 60
    # Without the isolation (or with too few isolated spots) every spot of the window counts.
    everyone = np.concatenate([isolated_spot, np.full(60, 130.0)]).mean()
    for flags in (None, np.arange(120) < MIN_REFERENCE_OBJECTS - 1):
        table = aperture_references(spot, area, ["g"] * 120, isolated=flags)
        assert table.loc["g", "reference"] == pytest.approx(everyone, rel=1e-12)
        assert table.loc["g", "single_molecules"] == 120


def _trimmed(values):
    values = np.asarray(values, float)
    median = np.median(values)
    kept = values[(values >= median / REFERENCE_TRIM) & (values <= median * REFERENCE_TRIM)]
    return kept.mean() if kept.size else median


@pytest.mark.parametrize("seed", [0, 1])
def test_depth_references_against_every_object_taken_by_hand(seed):
    # Three groups: one with spots at every depth, one whose spots thin out with depth (the
    # nearest ones serve where fewer than the minimum lie within reach) and one with fewer
    # reference spots than the minimum (all of them serve). Each object's reference, from
    # its group's isolated spots of positive light within reach of its depth (to the
    # nearest step), by hand.
    rng = np.random.default_rng(seed)
    n = 900
    groups = rng.choice(["even", "thinning", "sparse"], n, p=[0.5, 0.45, 0.05])
    depth = np.where(groups == "thinning", 8 * rng.uniform(0, 1, n) ** 3, rng.uniform(0, 8, n))
    spot = rng.lognormal(np.log(100 + 10 * depth), 0.3)
    spot[rng.uniform(size=n) < 0.03] *= -1  # dimmer than their surroundings: never references
    isolated = rng.uniform(size=n) < 0.7
    isolated[groups == "sparse"] &= np.cumsum(groups == "sparse")[groups == "sparse"] < 12
    depth[5] = np.nan  # a position unknown: counted, never a reference
    found = depth_references(spot, depth, groups, isolated=isolated, reach_um=0.6,
                             min_objects=20, step_um=0.05)
    usable = isolated & (spot > 0) & np.isfinite(depth)
    widened = 0
    for k in range(n):
        pool = np.flatnonzero(usable & (groups == groups[k]))
        gap = np.abs(depth[pool] - np.rint(depth[k] / 0.05) * 0.05)
        near = pool[gap <= 0.6]
        need = min(20, pool.size)
        if near.size < need:
            near = pool[np.argsort(gap)[:need]]
            widened += 1
        if np.isnan(depth[k]):
            assert np.isnan(found[k])
            continue
        assert found[k] == pytest.approx(_trimmed(spot[near]), rel=1e-12), k
    assert widened > 20  # the nearest spots served, in the thinning and sparse groups
    # Objects within one step share a reference; a step of 0 is each object's own depth.
    exact = depth_references(spot, depth, groups, isolated=isolated, reach_um=0.6,
                             min_objects=20, step_um=1e-9)
    moved = np.isfinite(depth) & (np.abs(exact - found) > 1e-9 * found)
    assert 0 < moved.sum() < n
    # The references follow the depth (10% brighter per micron here).
    even = (groups == "even") & np.isfinite(depth)
    assert np.corrcoef(depth[even], found[even])[0, 1] > 0.9


def test_object_references_count_depth_changing_images_by_depth_and_the_others_as_before():
    rng = np.random.default_rng(3)
    n = 600
    groups = np.where(np.arange(n) < 400, "mixed", "all deep")
    by_depth = (np.arange(n) >= 250)  # the mixed group's last 150 objects, and every "all deep"
    depth = rng.uniform(0, 6, n)
    spot = np.where(by_depth, 100 * (1 + 0.1 * depth), 120.0) * rng.lognormal(0, 0.2, n)
    area = rng.integers(8, 14, n)
    isolated = rng.uniform(size=n) < 0.8
    table, reference = object_references(spot, area, groups, isolated=isolated, depth_um=depth,
                                         by_depth=by_depth)
    plain = ~by_depth
    # The objects through one PSF: their group's reference from them alone.
    alone = aperture_references(spot[plain], area[plain], groups[plain], isolated=isolated[plain])
    np.testing.assert_allclose(reference[plain], alone.loc["mixed", "reference"], rtol=1e-12)
    assert table.loc["mixed", "reference"] == alone.loc["mixed", "reference"]
    # Those whose PSF changes with depth: the spots of such images at their depth.
    deep = depth_references(spot[by_depth], depth[by_depth], groups[by_depth],
                            isolated=isolated[by_depth])
    np.testing.assert_allclose(reference[by_depth], deep, rtol=1e-12)
    assert table["by_depth"].to_dict() == {"all deep": 200, "mixed": 150}
    whole = aperture_references(spot[groups == "all deep"], area[groups == "all deep"],
                                groups[groups == "all deep"], isolated=isolated[groups == "all deep"])
    assert table.loc["all deep", "reference"] == whole.loc["all deep", "reference"]
    # Counted against the reference at their depth, their molecules read about 1 at every
    # depth (within the slope over half the reach at the stack's ends); against one
    # reference, 25% apart from the top to the bottom.
    shallow, bottom = by_depth & (depth < 2), by_depth & (depth > 4)
    for part in (shallow, bottom):
        assert np.mean(spot[part] / reference[part]) == pytest.approx(1.0, abs=0.05)
    one = depth_references(spot[by_depth], depth[by_depth], groups[by_depth],
                           isolated=isolated[by_depth], reach_um=10)
    one = pd.Series(one).groupby(groups[by_depth]).transform("first").to_numpy()
    one_top = np.mean(spot[shallow] / one[shallow[by_depth]])
    one_bottom = np.mean(spot[bottom] / one[bottom[by_depth]])
    assert one_bottom - one_top > 0.2
    # Nothing changes with depth: every object against its group's reference, as before.
    table, reference = object_references(spot, area, groups, isolated=isolated)
    before = aperture_references(spot, area, groups, isolated=isolated)
    np.testing.assert_allclose(reference, before["reference"].reindex(groups), rtol=1e-12)
    assert table["by_depth"].sum() == 0
    with pytest.raises(ValueError, match="depth_um"):
        object_references(spot, area, groups, isolated=isolated, by_depth=by_depth)


def test_image_references_against_each_image_taken_by_hand():
    # Five images whose molecules differ in brightness, with crowded spots (isolation by
    # all pairs), odd areas and non-positive intensities; two hold too few isolated single
    # spots for a reference of their own.
    rng = np.random.default_rng(11)
    sizes = {"a": 300, "b": 200, "c": 120, "d": 6, "e": 7}
    images = np.repeat(list(sizes), list(sizes.values()))
    brightness = pd.Series({"a": 1.0, "b": 1.5, "c": 0.7, "d": 1.2, "e": 1.0})
    n = len(images)
    spot = 1000 * brightness.reindex(images).to_numpy() * rng.lognormal(0, 0.27, n)
    spot[rng.uniform(size=n) < 0.03] *= -1
    spot[rng.uniform(size=n) < 0.05] *= 2.5  # merged pairs
    area = rng.integers(20, 40, n).astype(float)
    area[rng.uniform(size=n) < 0.05] *= 3
    points = rng.uniform(0, 6, (n, 3))
    isolated = isolated_spots(points, images)
    table = image_references(spot, area, images, isolated=isolated)
    assert table.index.tolist() == list(sizes)
    kept = {}
    for name in sizes:
        mine = images == name
        kept[name] = oracles.image_reference(spot[mine], area[mine], points[mine],
                                             reach_um=REFERENCE_ISOLATION_UM, trim=REFERENCE_TRIM,
                                             fewest=IMAGE_REFERENCE_MIN_OBJECTS)
        if kept[name] is None:
            assert np.isnan(table.loc[name, "reference"]), name
            assert np.isnan(table.loc[name, "spread"]), name
        else:
            mean = sum(kept[name]) / len(kept[name])
            assert table.loc[name, "reference"] == pytest.approx(mean, rel=1e-12), name
            assert table.loc[name, "single_molecules"] == len(kept[name])
            assert table.loc[name, "spread"] == pytest.approx(
                np.std(kept[name], ddof=1) / mean, rel=1e-9), name
    own = table["reference"].dropna()
    assert own.index.tolist() == ["a", "b", "c"]  # "d" and "e": too few isolated spots
    # Each image's reference follows its molecules' brightness.
    ratio = own / own["a"]
    np.testing.assert_allclose(ratio, brightness[ratio.index], rtol=0.12)
    # Through object_references: each image with its own against it, pulled toward its
    # group's (pooled over every image; oracles.shrunk_reference), the others against the
    # group's, and the group's reference unchanged.
    groups = np.where(np.isin(images, ["a", "b", "d"]), "g1", "g2")
    summary, reference = object_references(spot, area, groups, isolated=isolated, images=images)
    pooled = aperture_references(spot, area, groups, isolated=isolated)
    pd.testing.assert_series_equal(summary["reference"], pooled["reference"])
    used = {}
    light = {name: spot[images == name].sum() for name in sizes}
    for group in ("g1", "g2"):
        names = [name for name in sizes if groups[images == name][0] == group]
        used.update(oracles.shrunk_reference({name: kept[name] for name in names},
                                             pooled.loc[group, "reference"], light))
    assert 0.99 < used["b"] / own["b"] < 1  # a and b plainly differ: nearly their own
    assert used["c"] == pytest.approx(own["c"], rel=1e-12)  # alone in its group
    for name in sizes:
        mine = images == name
        want = used.get(name, pooled.loc[groups[mine][0], "reference"])
        np.testing.assert_allclose(reference[mine], want, rtol=1e-12)
    assert summary["own_reference"].to_dict() == {"g1": 2, "g2": 1}
    images_table = summary.attrs["images"]
    pd.testing.assert_series_equal(images_table["own"], table["reference"], check_names=False)
    np.testing.assert_allclose(images_table["reference"].dropna(),
                               [used[name] for name in ("a", "b", "c")], rtol=1e-12)
    # Images whose PSF changes with depth ("a", with its own reference, and "d", without):
    # "a" against its own spots at each depth, "d" against its group's depth-changing spots.
    depth = rng.uniform(0, 6, n)
    deep = np.isin(images, ["a", "d"])
    _, reference = object_references(spot, area, groups, isolated=isolated, images=images,
                                     depth_um=depth, by_depth=deep)
    for name in ("a", "d"):
        mine = images == name
        pool = images if name == "a" else groups
        want = depth_references(spot[deep], depth[deep], pool[deep], isolated=isolated[deep])
        np.testing.assert_allclose(reference[mine], want[mine[deep]], rtol=1e-12)
    # "b" pulled toward its group's reference, which is now of the objects through one PSF.
    basis = aperture_references(spot[~deep], area[~deep], groups[~deep],
                                isolated=isolated[~deep]).loc["g1", "reference"]
    want = oracles.shrunk_reference({name: kept[name] for name in ("a", "b", "d")}, basis,
                                    light)
    np.testing.assert_allclose(reference[images == "b"], want["b"], rtol=1e-12)


def test_shrunk_references_against_the_formula_by_hand():
    # Groups of 1-6 images with 8-60 spots each, some without a reference of their own,
    # one group whose spots read alike to the bit; each image's reference against
    # oracles.shrunk_reference.
    rng = np.random.default_rng(5)
    rows, spots, group_reference = [], {}, {}
    for g in range(12):
        group = f"g{g}"
        group_reference[group] = float(rng.uniform(500, 1500))
        for i in range(int(rng.integers(1, 7))):
            name = f"{group}_{i}"
            if rng.uniform() < 0.15:
                spots[name] = None
            elif g == 0:
                spots[name] = [1000.0] * 12
            else:
                factor = rng.lognormal(0, rng.choice([0.02, 0.2]))
                spots[name] = list(group_reference[group] * factor
                                   * rng.lognormal(0, 0.3, int(rng.integers(8, 60))))
            rows.append((name, group))
    names, groups = zip(*rows)
    own = [np.mean(spots[n]) if spots[n] is not None else np.nan for n in names]
    spread = [np.std(spots[n], ddof=1) / np.mean(spots[n]) if spots[n] is not None else np.nan
              for n in names]
    count = [len(spots[n]) if spots[n] is not None else 3 for n in names]
    # Each image's light: its spots' and as many molecules again as 0-4 times them (0: its
    # molecules are its spots, which then say its mean molecule exactly).
    light = {n: np.sum(spots[n]) * rng.choice([1.0, 1.5, 3.0, 5.0]) if spots[n] is not None
             else 1.0 for n in names}
    result = shrunk_references(own, spread, count, groups, pd.Series(group_reference),
                               molecules=[light[n] / o for n, o in zip(names, own)])
    plain = shrunk_references(own, spread, count, groups, pd.Series(group_reference))
    assert result.index.tolist() == list(range(len(names)))
    weights = []
    for group in group_reference:
        mine = [k for k, g in enumerate(groups) if g == group]
        kept = {names[k]: spots[names[k]] for k in mine}
        want = oracles.shrunk_reference(kept, group_reference[group],
                                        {names[k]: light[names[k]] for k in mine})
        without = oracles.shrunk_reference(kept, group_reference[group])
        for k in mine:
            if spots[names[k]] is None:  # its group's
                assert result.loc[k, "reference"] == pytest.approx(group_reference[group])
                assert result.loc[k, "weight"] == 0
            else:
                assert result.loc[k, "reference"] == pytest.approx(want[names[k]], rel=1e-9)
                assert plain.loc[k, "reference"] == pytest.approx(without[names[k]], rel=1e-9)
                assert result.loc[k, "weight"] >= plain.loc[k, "weight"]
                if light[names[k]] == pytest.approx(np.sum(spots[names[k]])):
                    assert result.loc[k, "reference"] == own[k]  # its molecules are its spots
                weights.append(plain.loc[k, "weight"])
    alike = [k for k, g in enumerate(groups) if g == "g0" and spots[names[k]] is not None]
    assert alike
    assert (result.loc[alike, "weight"] == 1).all()  # spots alike to the bit: their own
    # Weights between 0 and 1, and both ends reached among these groups.
    assert min(weights) >= 0
    assert max(weights) <= 1
    assert min(weights) < 0.5 < max(weights)


def _reference_errors(tau: float, spots: tuple[int, int], rng) -> dict:
    """Mean |reference / truth - 1| of each image's own, its group's and the shrunk reference,
    over 300 simulated groups of 6 images whose molecules differ in brightness by `tau` (SD
    of log), each with `spots` (low, high) single spots spread as real molecules."""
    errors = {"own": [], "group": [], "shrunk": []}
    for _ in range(300):
        factor = rng.lognormal(0, tau, 6)
        count = rng.integers(spots[0], spots[1] + 1, 6)
        draws = [1000 * f * rng.lognormal(0, 0.27, c) for f, c in zip(factor, count)]
        truth = 1000 * factor * np.exp(0.27 ** 2 / 2)  # each image's mean molecule
        own = np.array([d.mean() for d in draws])
        spread = [d.std(ddof=1) / d.mean() for d in draws]
        group = float(np.concatenate(draws).mean())
        shrunk = shrunk_references(own, spread, count, ["g"] * 6,
                                   pd.Series({"g": group}))["reference"].to_numpy()
        for key, value in (("own", own), ("group", group), ("shrunk", shrunk)):
            errors[key].extend(np.abs(value / truth - 1))
    return {key: float(np.mean(value)) for key, value in errors.items()}


def test_shrunk_references_follow_whichever_reference_is_right():
    # Simulated truth. Images whose molecules differ by 18% (as real ones), 8-20 spots
    # each: the group's reference is far off, the shrunk one as good as each image's own.
    rng = np.random.default_rng(3)
    differ = _reference_errors(0.18, (8, 20), rng)
    assert differ["shrunk"] < 0.5 * differ["group"]
    assert differ["shrunk"] < 1.03 * differ["own"]
    # Images alike, 20-59 spots each: each image's own errs by chance alone, and the shrunk
    # one comes near the group's.
    alike = _reference_errors(0.0, (20, 59), rng)
    assert alike["shrunk"] < 0.6 * alike["own"]
    assert alike["shrunk"] < 1.4 * alike["group"]


def test_isolated_spots_against_every_pair():
    rng = np.random.default_rng(7)
    points = rng.uniform(0, 4, (300, 3))
    images = rng.choice(["a", "b", "c"], 300)
    images[0] = "lone"  # the only object of its image
    found = isolated_spots(points, images, reach_um=0.5)
    for k in range(len(points)):
        others = [j for j in range(len(points)) if j != k and images[j] == images[k]]
        nearest = min((float(np.linalg.norm(points[j] - points[k])) for j in others),
                      default=np.inf)
        assert found[k] == (nearest > 0.5), k
    assert found[0]
    assert 0 < found.sum() < len(points)  # both kinds occur
    # Exactly at the reach is not isolated.
    assert not isolated_spots([[0, 0, 0], [0, 0, 0.5]], ["a", "a"], reach_um=0.5).any()


def test_a_distance_a_rounding_away_from_a_grid_line_counts_on_it():
    # One 0.1 um voxel away, computed as a difference of scaled coordinates: 0.4 - 0.3
    # is 0.10000000000000003, 0.6 - 0.5 is 0.09999999999999998; both are 0.1 um and
    # count at d = 0.1, as does 0.1 itself.
    near = np.array([0.4 - 0.3, 0.6 - 0.5, 0.1])
    assert near[0] > 0.1
    table = cumulative_distribution(np.r_[near, 0.25], [1, 1, 1, 1], [1, 1, 1, 1],
                                    step_size=0.1, distance_threshold=0.3)
    assert table["percent_total_rna"].tolist() == [0.0, 75.0, 75.0, 100.0]
    # A real gap (a millionth of a micron) still counts after the grid line, and past the
    # threshold the object is left out.
    table = cumulative_distribution([0.1 + 1e-6, 0.3 + 1e-6], [1, 1], [1, 1],
                                    step_size=0.1, distance_threshold=0.3)
    assert table["percent_total_rna"].tolist() == [0.0, 0.0, 100.0, 100.0]
