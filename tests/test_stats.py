"""Statistics between conditions against known answers: hand-computed figures, exact
permutation p-values enumerated by hand, p-values under the null and under a big shift, and
bootstrap coverage over simulated repeats."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from rna_localization.stats import (
    auc,
    bootstrap_interval,
    distance_50,
    group_statistics,
    group_tests,
    image_figures,
    kruskal_wallis_p,
    permutation_test,
)


def mean_difference(a, b):
    return float(np.mean(b) - np.mean(a))


# ----------------------------------------------------------- figures by hand
def test_distance_50_interpolates_between_the_two_distances_around_50():
    # 30 % at 0.5 µm, 70 % at 1.0 µm: 50 % is half way, 0.75 µm.
    assert distance_50([0.0, 0.5, 1.0, 1.5], [10.0, 30.0, 70.0, 100.0]) == pytest.approx(0.75)
    # Exactly 50 at a distance: that distance.
    assert distance_50([0.0, 1.0, 2.0], [0.0, 50.0, 100.0]) == pytest.approx(1.0)
    assert distance_50([0.0, 1.0], [55.0, 100.0]) == 0.0
    assert np.isnan(distance_50([0.0, 1.0], [10.0, 40.0]))


def test_auc_is_the_trapezoid_area_over_the_range():
    # Trapezoids: (0+40)/2·1 + (40+100)/2·1 + (100+100)/2·2 = 20 + 70 + 200 = 290 over 4 µm.
    assert auc([0.0, 1.0, 2.0, 4.0], [0.0, 40.0, 100.0, 100.0]) == pytest.approx(290 / 4)


def test_figures_reject_bad_curves():
    with pytest.raises(ValueError, match="increase strictly"):
        distance_50([0.0, 0.0], [10.0, 100.0])
    with pytest.raises(ValueError, match="same length"):
        auc([0.0, 1.0], [10.0])


def test_image_figures_per_image():
    table = pd.DataFrame({"name": ["a"] * 3 + ["b"] * 3, "rna_type": ["x"] * 3 + ["y"] * 3,
                          "distance": [1.0, 0.0, 2.0] * 2,  # unsorted rows
                          "percent_total_rna": [20.0, 0.0, 100.0, 80.0, 60.0, 100.0]})
    figures = image_figures(table, by=["rna_type"]).set_index("name")
    # a: 0, 20, 100 → 50 % at 1 + 30/80 = 1.375; area (10 + 60) / 2 = 35.
    assert figures.loc["a", "distance_50"] == pytest.approx(1.375)
    assert figures.loc["a", "auc"] == pytest.approx(35.0)
    assert figures.loc["b", "distance_50"] == 0.0
    assert figures.loc["b", "auc"] == pytest.approx((70 + 90) / 2)
    assert figures.loc["b", "rna_type"] == "y"


# ------------------------------------------------------------ permutation test
def test_exact_p_value_enumerated_by_hand():
    a, b = [1.0, 2.0, 4.0], [3.0, 5.0, 6.0]
    observed = np.mean(b) - np.mean(a)
    pooled = a + b
    deals = list(itertools.combinations(range(6), 3))
    assert len(deals) == 20
    extreme = 0
    for chosen in deals:
        x = [pooled[i] for i in chosen]
        y = [pooled[i] for i in range(6) if i not in chosen]
        extreme += abs(np.mean(y) - np.mean(x)) >= abs(observed) - 1e-12
    statistic, p = permutation_test(a, b, mean_difference)
    assert statistic == pytest.approx(7 / 3)
    assert p == pytest.approx(extreme / 20)
    # By hand: the pooled values sum to 21 and a's deal to 7, so the difference is
    # (21 - 2·7) / 3; a deal of sum <= 7 ({1,2,3}, {1,2,4}) or >= 14 ({3,5,6}, {4,5,6}) is
    # as far apart: p = 4/20.
    assert p == pytest.approx(0.2)


def test_p_values_of_identical_groups_are_roughly_uniform():
    p_values = []
    for seed in range(60):
        rng = np.random.default_rng(seed)
        a, b = rng.normal(50, 10, 8), rng.normal(50, 10, 8)
        p_values.append(permutation_test(a, b, mean_difference, n_permutations=499, seed=seed)[1])
    p_values = np.array(p_values)
    # Uniform: about 5 % below 0.05 (3 of 60; 9 or more has probability < 0.01), mean near 0.5.
    assert np.sum(p_values < 0.05) <= 8
    assert 0.35 < p_values.mean() < 0.65
    assert p_values.min() > 0


def test_p_value_of_clearly_shifted_groups_is_small():
    for seed in range(5):
        rng = np.random.default_rng(seed)
        a, b = rng.normal(50, 5, 10), rng.normal(65, 5, 10)
        _, p = permutation_test(a, b, mean_difference, n_permutations=1999, seed=seed)
        assert p < 0.01


def test_permutation_test_is_repeatable_with_a_seed():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=12), rng.normal(size=12)
    assert (permutation_test(a, b, mean_difference, n_permutations=200, seed=3)
            == permutation_test(a, b, mean_difference, n_permutations=200, seed=3))


def test_permutation_test_needs_both_groups():
    with pytest.raises(ValueError, match="both groups"):
        permutation_test([], [1.0], mean_difference)


# ---------------------------------------------------------------- bootstrap
def test_bootstrap_interval_covers_the_true_mean_at_about_95_percent():
    covered = 0
    repeats = 300
    for seed in range(repeats):
        rng = np.random.default_rng(1000 + seed)
        values = rng.normal(40.0, 12.0, 25)
        low, high = bootstrap_interval(values, n_bootstrap=600, seed=seed)
        covered += low <= 40.0 <= high
    # The percentile bootstrap with 25 replicates covers a little under 95 %; a wrong
    # interval (e.g. of the values instead of their mean, or one-sided) lands far outside.
    assert 0.89 <= covered / repeats <= 0.98


def test_bootstrap_interval_of_curves_is_pointwise_and_nan_for_one_image():
    curves = np.array([[10.0, 100.0], [30.0, 100.0], [20.0, 100.0]])
    low, high = bootstrap_interval(curves, n_bootstrap=500, seed=0)
    assert 10.0 <= low[0] < 20.0 < high[0] <= 30.0
    assert low[1] == high[1] == 100.0
    assert all(np.isnan(v) for v in bootstrap_interval([5.0]))


# -------------------------------------------------------------- on a table
def _table(rng, shifts: dict, n_images: int = 6) -> pd.DataFrame:
    """Cumulative curves 100·(1 - exp(-d / scale)) rescaled to 100 at 3 µm, one per image."""
    distance = np.round(np.arange(0, 3.01, 0.25), 10)
    rows = []
    for (rna_type, cycle), scale in shifts.items():
        for i in range(n_images):
            s = scale * rng.uniform(0.9, 1.1)
            curve = 100 * (1 - np.exp(-distance / s)) / (1 - np.exp(-3 / s))
            rows.append(pd.DataFrame({"name": f"{rna_type}_{cycle}_{i}", "rna_type": rna_type,
                                      "cycle": cycle, "distance": distance,
                                      "percent_total_rna": curve}))
    return pd.concat(rows, ignore_index=True)


def test_group_statistics_means_and_intervals():
    table = _table(np.random.default_rng(0), {("cen", "nc13"): 0.5, ("gapdh", "nc13"): 3.0})
    stats = group_statistics(table, by=["rna_type"], n_bootstrap=400)
    figures = image_figures(table, by=["rna_type"])
    for rna_type in ("cen", "gapdh"):
        row = stats[(stats["rna_type"] == rna_type) & (stats["figure"] == "auc")].iloc[0]
        assert row["value"] == pytest.approx(figures.loc[figures["rna_type"] == rna_type, "auc"].mean())
        assert row["ci_low"] < row["value"] < row["ci_high"]
        assert row["n_images"] == 6
        curve = stats[(stats["rna_type"] == rna_type) & (stats["figure"] == "percent_total_rna")]
        assert len(curve) == 13
        assert curve["value"].iloc[-1] == pytest.approx(100.0)
    assert set(stats["figure"]) == {"auc", "distance_50", "percent_total_rna"}


def test_group_tests_pair_groups_differing_in_one_factor():
    shifts = {("cen", "nc13"): 0.5, ("cen", "nc14"): 0.5, ("gapdh", "nc13"): 3.0,
              ("gapdh", "nc14"): 3.0}
    tests = group_tests(_table(np.random.default_rng(1), shifts), by=["rna_type", "cycle"],
                        n_permutations=999)
    # 4 groups: 4 pairs differ in one factor (the 2 diagonal pairs differ in both), 2 tests each.
    assert len(tests) == 8
    by_rna = tests[tests["factor"] == "rna_type"]
    by_cycle = tests[tests["factor"] == "cycle"]
    assert (by_rna["p_value"] < 0.01).all()  # 0.5 µm against 3 µm: a big difference
    assert (by_cycle["p_value"] > 0.05).all()  # identical scales
    assert (tests["n_a"] == 6).all()
    assert (tests["n_b"] == 6).all()
    assert (by_rna["rna_type_a"] != by_rna["rna_type_b"]).all()
    assert (by_rna["cycle_a"] == by_rna["cycle_b"]).all()


def test_group_tests_name_a_missing_column():
    table = _table(np.random.default_rng(0), {("cen", "nc13"): 0.5})
    with pytest.raises(ValueError, match="no column 'genotype'"):
        group_tests(table, by=["genotype"])


def test_stats_command_before_distributions_says_what_to_run(tmp_path, capsys):
    from rna_localization.cli import main

    (tmp_path / "pipeline.toml").write_text('[data]\ndata_dir = "."\n', encoding="utf-8")
    assert main(["stats", "--config", str(tmp_path / "pipeline.toml")]) == 2
    error = capsys.readouterr().err
    assert "cumulative_distributions.csv does not exist" in error
    assert "rna-localization distributions" in error


def test_kruskal_wallis_p_is_scipys():
    # Oracle: scipy.stats.kruskal, on groups of unequal sizes, continuous values and
    # values rounded to make ties, two to five groups; and the statistic worked by hand
    # on one small case (ranks 1..8, H = 12/72 (10² + 26²)/4 - 27 = 5.333, χ²(1)).
    import math

    from scipy.stats import kruskal

    rng = np.random.default_rng(7)
    for trial in range(60):
        k = 2 + trial % 4
        groups = [rng.normal(0.1 * g, 1.0, rng.integers(1, 25)) for g in range(k)]
        if trial % 2:
            groups = [np.round(g, 1) for g in groups]
        assert kruskal_wallis_p(groups) == pytest.approx(kruskal(*groups).pvalue, rel=1e-9,
                                                         abs=1e-300)
    assert kruskal_wallis_p([[1, 2, 3, 4], [5, 6, 7, 8]]) == pytest.approx(
        math.erfc(math.sqrt(16 / 3 / 2)), rel=1e-12)
