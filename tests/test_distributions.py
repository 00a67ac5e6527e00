import numpy as np
import pandas as pd
import pytest

from rna_localization import (
    cumulative_distribution,
    distance_steps,
    normalize_intensities,
    single_molecule_references,
)
from rna_localization.distributions import aperture_references

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


def test_aperture_reference_is_the_median_single_spot_of_each_group():
    # Group a: singles of 40-60 voxels around 100, a merged pair (95 voxels) and a granule.
    spot = [90.0, 100.0, 104.0, 250.0, 900.0, 10.0, 12.0, 11.0]
    area = [40, 50, 60, 95, 200, 30, 30, 30]
    groups = ["a"] * 5 + ["b"] * 3
    table = aperture_references(spot, area, groups)
    assert table.loc["a", "reference"] == 100.0  # the pair and the granule are outside the window
    assert table.loc["a", "single_molecules"] == 3
    assert (table.loc["a", "lower_area"], table.loc["a", "upper_area"]) == (30.0, 90.0)
    assert table.loc["b", "reference"] == 11.0
    with pytest.raises(ValueError, match="'c'"):
        aperture_references([-5.0, -1.0], [30, 30], ["c", "c"])


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
