"""The chance baseline against fractions of voxels counted by brute force, and on a pipeline
run: the distributions CSV's expected curve and enrichment, and `rna-localization stats`."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
import tifffile

from rna_localization import load_config
from rna_localization.baseline import distance_to_target, expected_cumulative_distribution
from rna_localization.cli import main
from rna_localization.metadata import read_distributions_csv
from rna_localization.stats import auc


def brute_force_distances(target: np.ndarray, spacing) -> np.ndarray:
    """Distance of every voxel to the nearest target voxel: every pair, no transform."""
    voxels = np.argwhere(np.ones(target.shape, dtype=bool)) * np.asarray(spacing)
    targets = np.argwhere(target) * np.asarray(spacing)
    nearest = np.full(len(voxels), np.inf)
    for point in targets:
        nearest = np.minimum(nearest, np.sqrt(((voxels - point) ** 2).sum(axis=1)))
    return nearest.reshape(target.shape)


def test_single_target_voxel_in_an_anisotropic_box_by_hand():
    # A 3 x 3 x 3 box, target at a corner, spacing (z, y, x) = (2, 1, 1) µm.
    target = np.zeros((3, 3, 3), dtype=bool)
    target[0, 0, 0] = True
    spacing = (2.0, 1.0, 1.0)
    # By hand, voxels (dz, dy, dx) at distance sqrt(4dz² + dy² + dx²): within 0 µm the target
    # (1); within 1 µm add (0,0,1), (0,1,0) → 3; within 1.5 µm add (0,1,1) → 4; within 2 µm
    # add (0,0,2), (0,2,0), (1,0,0) → 7; all 27 within the largest distance, sqrt(16+4+4).
    distances = [0.0, 1.0, 1.5, 2.0, np.sqrt(24)]
    expected = expected_cumulative_distribution(target, spacing, distances)
    np.testing.assert_allclose(expected, 100 * np.array([1, 3, 4, 7, 27]) / 27)
    assert expected[-1] == 100.0


@pytest.mark.parametrize("planes", [1, 4, None])  # planes of squared distances at a time
@pytest.mark.parametrize("spacing", [(0.2, 0.065, 0.065), (1.0, 0.5, 0.25), (0.3, 0.3, 0.3)])
def test_expected_curve_matches_brute_force_voxel_counts(spacing, planes, monkeypatch):
    from rna_localization import baseline

    if planes is not None:  # slabs of 1 plane, and of 4 (the last one of 2)
        monkeypatch.setattr(baseline, "_SLAB_VOXELS", planes * 14 * 11)
    rng = np.random.default_rng(0)
    target = np.zeros((6, 14, 11), dtype=bool)
    target[tuple(rng.integers(0, s, 4) for s in target.shape)] = True
    field = brute_force_distances(target, spacing)
    np.testing.assert_allclose(distance_to_target(target, spacing), field, atol=1e-9)
    threshold = 0.6 * field.max()
    grid = np.append(np.arange(0, threshold, threshold / 7)[:7], threshold)
    region = rng.random(target.shape) < 0.6
    for mask in (None, region):
        values = field if mask is None else field[mask]
        within = np.array([(values <= d + 1e-9).sum() for d in grid])
        np.testing.assert_allclose(
            expected_cumulative_distribution(target, spacing, grid, region=mask),
            100 * within / within[-1])


def _brute_force_percent(target, spacing, grid, region=None):
    field = brute_force_distances(target, spacing)
    values = field if region is None else field[region]
    within = np.array([(values <= d * (1 + 1e-9) + 1e-12).sum() for d in grid])
    return 100 * within / within[-1]


# How _counts works: planes transformed and combined along z in one band of rows (the
# whole box), in bands of a few rows or of one (each band's transforms read the rows either
# side of it), or (a threshold too large for its table) one 3D transform.
WAYS = ["one band", "bands of a few rows", "a band per row", "3D transform"]


def _use(way, monkeypatch):
    from rna_localization import baseline

    if way == "bands of a few rows":  # 2 bytes an offset: 4,000 of them a band
        monkeypatch.setattr(baseline, "_BAND_BYTES", 8000)
    elif way == "a band per row":
        monkeypatch.setattr(baseline, "_BAND_BYTES", 1)
    elif way == "3D transform":
        monkeypatch.setattr(baseline, "_MAX_TABLE", 0)


@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize("spacing", [(0.2, 0.065, 0.065), (0.5, 0.3, 0.2)])
def test_targets_and_region_far_apart_in_a_large_stack_match_brute_force(spacing, way,
                                                                         monkeypatch):
    """The transform is cut to the box where region voxels can be within the threshold of a
    target: targets beyond it, and region voxels beyond it, must not change the counts."""
    _use(way, monkeypatch)
    rng = np.random.default_rng(7)
    shape = (12, 60, 70)
    target = np.zeros(shape, dtype=bool)
    target[1:3, 2:6, 3:5] = True  # a cluster in one corner...
    target[10, 55, 66] = True  # ... and a lone voxel in the opposite one
    region = np.zeros(shape, dtype=bool)
    region[0:8, 0:30, 0:40] = rng.random((8, 30, 40)) < 0.7
    threshold = 1.3  # µm: the lone target voxel is farther than this from the whole region
    grid = np.append(np.arange(0, threshold, 0.1), threshold)
    for mask in (None, region):
        np.testing.assert_allclose(
            expected_cumulative_distribution(target, spacing, grid, region=mask),
            _brute_force_percent(target, spacing, grid, mask), rtol=1e-12)


@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize("seed", range(3))
def test_targets_in_every_plane_and_a_whole_target_plane_match_brute_force(seed, way,
                                                                           monkeypatch):
    # Every plane holds a target (each output plane combines all of them), one plane is
    # all target, and the threshold reaches past the stack along z and y.
    _use(way, monkeypatch)
    rng = np.random.default_rng(20 + seed)
    target = rng.random((5, 9, 30)) < 0.01
    target[np.arange(5), rng.integers(0, 9, 5), rng.integers(0, 30, 5)] = True
    target[rng.integers(0, 5)] = rng.random() < 0.5  # a plane all target, or all not
    target[2, 4, 0] = True
    spacing = (0.3, 0.1, 0.07)
    region = rng.random(target.shape) < 0.5
    grid = np.append(np.arange(0, 1.6, 0.05), 1.6)
    for mask in (None, region):
        np.testing.assert_allclose(
            expected_cumulative_distribution(target, spacing, grid, region=mask),
            _brute_force_percent(target, spacing, grid, mask), rtol=1e-12)


def test_a_region_beyond_the_threshold_of_every_target_has_no_baseline():
    from rna_localization.baseline import image_baseline

    target = np.zeros((4, 40, 40), dtype=np.int32)
    target[0, 0, 0] = 3
    region = np.zeros_like(target)
    region[3, 30:, 30:] = 1
    with pytest.raises(ValueError, match="no voxel of the region is within 1.0 µm"):
        expected_cumulative_distribution(target, 0.1, [0.0, 1.0], region=region)
    assert image_baseline(target, 0.1, [0.0, 1.0], region_labels=region) is None
    # Within reach once the threshold grows: the region's nearest voxel is 3.9 µm away.
    far = np.sqrt(0.3**2 + 2 * 3.0**2)
    expected = expected_cumulative_distribution(target, 0.1, [0.0, far], region=region)
    np.testing.assert_allclose(expected, [0.0, 100.0])


def _blobs(shape, rng, count, radii):
    """`count` filled ellipsoids of `radii` (voxels) at random centres."""
    grid = np.indices(shape)
    target = np.zeros(shape, dtype=bool)
    for _ in range(count):
        centre = [rng.uniform(0, n) for n in shape]
        target |= sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii)) <= 1
    return target


@pytest.mark.parametrize("way", WAYS[:2])
@pytest.mark.parametrize("kind", ["dense voxels", "large blobs", "staggered planes"])
@pytest.mark.parametrize("spacing", [(0.2, 0.065, 0.065), (0.5, 0.1, 0.15)])
def test_many_target_planes_combined_along_z_match_brute_force(kind, spacing, way,
                                                               monkeypatch):
    """Every column's nearest plane comes from an envelope of many planes holding a target,
    with a threshold reaching across most of the stack: the counts must be every pair's."""
    _use(way, monkeypatch)
    rng = np.random.default_rng(["dense voxels", "large blobs", "staggered planes"].index(kind))
    shape = (22, 17, 19)
    if kind == "dense voxels":
        target = rng.random(shape) < 0.03
    elif kind == "large blobs":  # across many planes, and a few lone voxels between them
        target = _blobs(shape, rng, 4, (6.0, 3.0, 4.0)) | (rng.random(shape) < 0.002)
    else:  # one voxel in every other plane, each somewhere else: a different nearest plane
        target = np.zeros(shape, dtype=bool)  # for nearly every (plane, column)
        z = np.arange(0, shape[0], 2)
        target[z, rng.integers(0, shape[1], z.size), rng.integers(0, shape[2], z.size)] = True
    threshold = 0.45 * shape[0] * spacing[0]  # about 10 planes along z
    grid = np.append(np.arange(0, threshold, threshold / 23)[:23], threshold)
    region = rng.random(shape) < 0.5
    for mask in (None, region):
        np.testing.assert_allclose(
            expected_cumulative_distribution(target, spacing, grid, region=mask),
            _brute_force_percent(target, spacing, grid, mask), rtol=1e-12)


def test_the_planes_combined_along_z_count_each_voxel_in_its_exact_bin():
    """column_counts on hand-made in-plane offsets: every voxel of the band counted in the bin
    of its least sum over the planes (in-plane part within the limit), as a loop over every
    (voxel, plane) pair counts it; planes whose in-plane part passes the limit never count."""
    from rna_localization._envelopes import column_counts

    rng = np.random.default_rng(3)
    n_z, n_y, n_x = 40, 5, 60
    sources = np.flatnonzero(rng.random(n_z) < 0.6)  # planes holding a target: 60% of 40
    in_plane = np.round(rng.exponential(2.0, 50), 1)  # squared microns of 50 offset indices
    offsets = rng.integers(0, in_plane.size, (sources.size, n_y, n_x)).astype(np.uint16)
    offsets[:, :, :10] = np.argmin(in_plane)  # equal values: each plane lowest around itself
    offsets[:, 1, :] = np.argmax(in_plane)  # a row with no plane within the limit
    weight, limit, reach = 0.04, 6.0, 12
    edges = np.array([0.5, 1.0, 2.0, 4.0, 6.0])
    along_z = np.minimum(np.arange(reach + 2), reach + 1) ** 2 * weight
    table = np.searchsorted(edges, (along_z[:, None] + in_plane).ravel()).astype(np.uint16)
    region = rng.random((n_z, n_y, n_x)) < 0.7
    for use_region in (False, True):
        counts = np.zeros(edges.size + 1, np.int64)
        column_counts(offsets, sources.astype(np.int64), in_plane, weight, limit, table, reach,
                      n_z, region, use_region, 0, n_y, 0, counts,
                      np.empty(sources.size, np.int64), np.empty(sources.size + 1))
        expected = np.zeros(edges.size + 1, np.int64)
        for z in range(n_z):
            for y in range(n_y):
                for x in range(n_x):
                    if use_region and not region[z, y, x]:
                        continue
                    best = np.inf
                    for i, s in enumerate(sources):
                        part = in_plane[offsets[i, y, x]]
                        dz = min(abs(z - s), reach + 1)
                        if part <= limit:
                            best = min(best, part + dz * dz * weight)
                    if best <= edges[-1]:
                        expected[np.searchsorted(edges, best)] += 1
        np.testing.assert_array_equal(counts[:-1], expected[:-1])
        assert counts[:-1].sum() > 0


def test_offsets_exactly_at_a_distance_count_as_within():
    # Offsets whose distance equals a grid value up to rounding (3 x 0.05 is not 0.15 in
    # binary): each must fall in that value's bin, as the brute force's tolerance puts it.
    target = np.zeros((3, 1, 40), dtype=bool)
    target[1, 0, 0] = True
    spacing = (0.05, 0.05, 0.05)
    grid = np.round(np.arange(0, 2.0 + 1e-9, 0.05), 10)
    np.testing.assert_allclose(expected_cumulative_distribution(target, spacing, grid),
                               _brute_force_percent(target, spacing, grid), rtol=1e-12)


def test_bad_baseline_inputs_are_named():
    with pytest.raises(ValueError, match="no voxel"):
        expected_cumulative_distribution(np.zeros((2, 2, 2)), 1.0, [0.0, 1.0])
    with pytest.raises(ValueError, match="strictly increasing"):
        expected_cumulative_distribution(np.ones((2, 2, 2)), 1.0, [1.0, 0.0])
    with pytest.raises(ValueError, match="none negative"):  # squared, -1 would sort past 0
        expected_cumulative_distribution(np.ones((2, 2, 2)), 1.0, [-1.0, 0.0, 1.0])
    with pytest.raises(ValueError, match="region has shape"):
        expected_cumulative_distribution(np.ones((2, 2, 2)), 1.0, [1.0], region=np.ones((3, 2, 2)))


def test_pipeline_writes_the_baseline_and_stats(dataset):
    assert main(["run", "--config", str(dataset)]) == 0
    config = load_config(dataset)
    table = read_distributions_csv(config.output_dir / "data" / "cumulative_distributions.csv")
    assert table["expected_percent_total_rna"].notna().all()
    for name, rows in table.groupby("name"):
        seg = tifffile.imread(config.structure_dirs("centrosomes")[1] / f"{name}_seg.tif")
        field = brute_force_distances(seg > 0, config.spacing)
        grid = rows["distance"].to_numpy()
        within = np.array([(field <= d + 1e-9).sum() for d in grid])
        np.testing.assert_allclose(rows["expected_percent_total_rna"], 100 * within / within[-1])
        expected = rows["expected_percent_total_rna"].to_numpy()
        observed = rows["percent_total_rna"].to_numpy()
        ratio = np.where(expected > 0, observed / np.where(expected > 0, expected, 1), np.nan)
        np.testing.assert_allclose(rows["enrichment"], ratio)

    assert main(["stats", "--config", str(dataset), "--permutations", "99",
                 "--bootstrap", "200"]) == 0
    stats = pd.read_csv(config.output_dir / "data" / "stats.csv")
    tests = pd.read_csv(config.output_dir / "data" / "stats_tests.csv")
    assert {"rna_type", "figure", "distance", "value", "ci_low", "ci_high", "n_images"} <= set(stats.columns)
    for rna_type, rows in table.groupby("rna_type"):
        by_hand = np.mean([auc(image["distance"], image["percent_total_rna"])
                           for _, image in rows.groupby("name")])
        row = stats[(stats["rna_type"] == rna_type) & (stats["figure"] == "auc")].iloc[0]
        assert row["value"] == pytest.approx(by_hand)
        assert row["n_images"] == rows["name"].nunique()
    assert set(stats["figure"]) >= {"auc", "distance_50", "percent_total_rna", "enrichment"}
    # Two RNA types: one pair, two tests, with the images behind each.
    assert len(tests) == 2
    assert set(tests["test"]) == {"auc", "max_curve_difference"}
    assert {"statistic", "p_value", "n_a", "n_b"} <= set(tests.columns)
    assert (tests["n_a"] + tests["n_b"] == table["name"].nunique()).all()
    assert tests["p_value"].between(0, 1).all()
    # The enrichment figure, one curve per RNA type.
    assert (config.output_dir / "plots" / "enrichment.png").stat().st_size > 0
    assert (config.output_dir / "plots" / "enrichment.pdf").stat().st_size > 0


def test_the_plot_draws_the_chance_baseline_dashed():
    from rna_localization.plotting import CHANCE_CAPTION, plot_cumulative_distributions

    table = pd.DataFrame({"name": ["a", "a", "b", "b"], "rna_type": ["cen"] * 4,
                          "distance": [0.0, 1.0, 0.0, 1.0],
                          "percent_total_rna": [40.0, 100.0, 60.0, 100.0],
                          "expected_percent_total_rna": [10.0, 100.0, 30.0, 100.0]})
    figure = plot_cumulative_distributions(table)
    dashed = [line for line in figure.axes[0].get_lines() if line.get_linestyle() == "--"]
    assert len(dashed) == 1
    np.testing.assert_allclose(dashed[0].get_ydata(), [20.0, 100.0])  # mean over the images
    texts = [t.get_text() for f in figure.subfigs for t in f.texts]
    assert any(CHANCE_CAPTION.strip() in t for t in texts)
    without = plot_cumulative_distributions(table.drop(columns="expected_percent_total_rna"))
    assert not [line for line in without.axes[0].get_lines() if line.get_linestyle() == "--"]


def test_a_metadata_column_named_like_the_baseline_is_refused(dataset):
    from rna_localization.analysis import add_chance_baseline
    from rna_localization.db import Database

    config = load_config(dataset)
    table = pd.DataFrame({"name": ["img_00"], "distance": [0.0], "percent_total_rna": [100.0],
                          "enrichment": ["high"]})
    with pytest.raises(ValueError, match="column 'enrichment'.*rename"):
        add_chance_baseline(config, table, db=Database.from_config(config))


def test_chance_region_spreads_the_rna_over_a_structure(tmp_path, database_name):
    from datagen import write_dataset

    config_path = write_dataset(tmp_path / "data", database_name=database_name,
                                structures=("rna", "centrosomes", "embryo"),
                                toml_extra='chance_region = "embryo"')
    assert main(["run", "--config", str(config_path)]) == 0
    config = load_config(config_path)
    assert config.distribution.chance_region == "embryo"
    table = read_distributions_csv(config.output_dir / "data" / "cumulative_distributions.csv")
    for name, rows in table.groupby("name"):
        target = tifffile.imread(config.structure_dirs("centrosomes")[1] / f"{name}_seg.tif") > 0
        region = tifffile.imread(config.structure_dirs("embryo")[1] / f"{name}_seg.tif") > 0
        field = brute_force_distances(target, config.spacing)[region]
        grid = rows["distance"].to_numpy()
        within = np.array([(field <= d + 1e-9).sum() for d in grid])
        np.testing.assert_allclose(rows["expected_percent_total_rna"], 100 * within / within[-1])


def test_chance_region_must_be_a_structure(tmp_path):
    from rna_localization import Config

    with pytest.raises(ValueError, match=r"chance_region = 'embryo' is not one of data.structures"):
        Config.from_flat(data_dir=str(tmp_path), chance_region="embryo")


def test_an_image_without_a_target_has_no_baseline_and_is_named(dataset):
    from rna_localization import steps
    from rna_localization.analysis import add_chance_baseline
    from rna_localization.db import Database

    config = load_config(dataset)
    db = Database.from_config(config)
    steps.extract(config, db=db)
    table = pd.DataFrame({"name": ["img_00", "img_00", "ghost", "ghost"],
                          "distance": [0.0, 1.0] * 2, "percent_total_rna": [50.0, 100.0] * 2})
    with pytest.warns(UserWarning, match="have no chance baseline: ghost"):
        result = add_chance_baseline(config, table, db=db)
    assert result.loc[result["name"] == "ghost", "expected_percent_total_rna"].isna().all()
    assert result.loc[result["name"] == "img_00", "expected_percent_total_rna"].iloc[-1] == 100.0


def _stored_baselines(config):
    from rna_localization.db import Database
    from rna_localization.db.results import read_chance_baselines

    with Database.from_config(config).transaction() as cursor:
        return read_chance_baselines(cursor, "rna", "centrosomes")


def _brute_force_curve(config, name, grid, spacing):
    seg = tifffile.imread(config.structure_dirs("centrosomes")[1] / f"{name}_seg.tif")
    field = brute_force_distances(seg > 0, spacing)
    within = np.array([(field <= d + 1e-9).sum() for d in grid])
    return 100 * within / within[-1]


def test_the_distances_step_stores_the_baseline_and_measures_it_again(dataset):
    from rna_localization.db import Database
    from rna_localization.db.results import write_chance_baseline

    assert main(["run", "--config", str(dataset)]) == 0
    config = load_config(dataset)
    stored = _stored_baselines(config)
    names = sorted(pd.read_csv(config.metadata_path)["name"])
    assert sorted(stored) == names  # every measured image, from the distances step
    grid = np.round(np.arange(20) * 0.1, 10).tolist() + [2.0]  # threshold 2.0, step 0.1
    for name in names:
        region, distances, expected = stored[name]
        assert region == ""
        np.testing.assert_array_equal(distances, grid)
        np.testing.assert_allclose(expected, _brute_force_curve(config, name, grid, (0.3, 0.1, 0.1)))

    # The distributions step reads what is stored: a marker value comes out in the CSV.
    db = Database.from_config(config)
    with db.transaction() as cursor:
        assert write_chance_baseline(cursor, "rna", "centrosomes", "img_00",
                                     ("", np.array(grid), np.full(len(grid), 50.0)))
    assert main(["distributions", "--config", str(dataset)]) == 0
    table = read_distributions_csv(config.output_dir / "data" / "cumulative_distributions.csv")
    assert (table.loc[table["name"] == "img_00", "expected_percent_total_rna"] == 50.0).all()
    # Measured again (--overwrite): computed again.
    assert main(["distances", "--config", str(dataset), "--overwrite"]) == 0
    np.testing.assert_allclose(_stored_baselines(config)["img_00"][2],
                               _brute_force_curve(config, "img_00", grid, (0.3, 0.1, 0.1)))

    # Another voxel size: extracted and measured again, and so is the baseline.
    dataset.write_text(dataset.read_text().replace("xy = 0.1", "xy = 0.15"), encoding="utf-8")
    config = load_config(dataset)
    with pytest.warns(UserWarning, match="another voxel size"):
        assert main(["run", "--config", str(dataset)]) == 0
    stored = _stored_baselines(config)
    table = read_distributions_csv(config.output_dir / "data" / "cumulative_distributions.csv")
    for name in names:
        region, distances, expected = stored[name]
        np.testing.assert_array_equal(distances, grid)
        by_hand = _brute_force_curve(config, name, grid, (0.3, 0.15, 0.15))
        np.testing.assert_allclose(expected, by_hand)
        np.testing.assert_allclose(
            table.loc[table["name"] == name, "expected_percent_total_rna"], by_hand)
    assert not np.allclose(stored["img_00"][2],
                           _brute_force_curve(config, "img_00", grid, (0.3, 0.1, 0.1)))


def test_a_baseline_not_stored_or_for_other_distances_is_computed_and_stored(dataset):
    import dataclasses

    from rna_localization import steps
    from rna_localization.db import Database

    assert main(["run", "--config", str(dataset)]) == 0
    config = load_config(dataset)
    db = Database.from_config(config)
    # A database made before baselines were stored: no such columns.
    with db.transaction() as cursor:
        cursor.execute("ALTER TABLE distance_measurements DROP COLUMN chance_region, "
                       "DROP COLUMN chance_distances, DROP COLUMN chance_expected")
    assert _stored_baselines(config) == {}
    # Another step size than the distances step computed the baselines at.
    config = dataclasses.replace(
        config, distribution=dataclasses.replace(config.distribution, step_size=0.25))
    table = steps.compute_distributions(config, db=db, write=False)
    grid = [0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0]
    stored = _stored_baselines(config)
    assert sorted(stored) == sorted(table["name"].unique())
    for name, rows in table.groupby("name"):
        by_hand = _brute_force_curve(config, name, grid, config.spacing)
        np.testing.assert_array_equal(rows["distance"], grid)
        np.testing.assert_allclose(rows["expected_percent_total_rna"], by_hand)
        np.testing.assert_array_equal(stored[name][1], grid)
        np.testing.assert_allclose(stored[name][2], by_hand)


@pytest.mark.parametrize("weights", [(1.0, 1.0), (0.01, 0.0049)])
def test_in_plane_offsets_point_to_a_nearest_target_pixel_on_a_wide_plane(weights):
    """plane_offsets against every (pixel, target pixel) pair on a 40 x 2100 plane (offsets up
    to 39² + 2099² squared pixels, compared as whole numbers with square pixels): each pixel's
    offset is that of a nearest target pixel among those fewer than cap_y rows away, its |dx|
    capped at cap_x (then every such target pixel is at least cap_x columns away); a pixel
    with none of them gives the caps."""
    from rna_localization._envelopes import plane_offsets

    rng = np.random.default_rng(5)
    n_y, n_x = 40, 2100
    planes = [np.zeros((n_y, n_x), bool) for _ in range(3)]
    planes[0][0, 0] = True  # a far corner
    planes[1][rng.integers(0, n_y, 6), rng.integers(0, n_x, 6)] = True
    # Past every offset, then a few pixels out; offsets as the baseline packs them, and as
    # the distances do.
    for (cap_y, cap_x), stride in itertools.product(((n_y, n_x), (7, 25)), ("cap", 1 << 16)):
        stride = cap_x + 1 if stride == "cap" else stride
        for plane in planes:
            out = np.empty((n_y, n_x), np.uint32)
            plane_offsets(plane, weights[0], weights[1], cap_y, cap_x, stride, out,
                          np.empty((n_y, n_x), np.int32), np.empty(n_x, np.int64),
                          np.empty(n_x, np.int64), np.empty((n_x + 1, 3)), 0)
            _check_offsets(out, plane, range(n_y), weights, cap_y, cap_x, stride)


def _check_offsets(out, plane, rows, weights, cap_y, cap_x, stride):
    """`out` (plane_offsets of `plane`'s rows `rows`) against every (pixel, target pixel) pair
    of the whole plane: each pixel's offset is that of a nearest target pixel among those
    fewer than cap_y rows away, its |dx| capped at cap_x (then every such target pixel is at
    least cap_x columns away); a pixel with none of them gives the caps."""
    n_x = plane.shape[1]
    y, x = np.meshgrid(np.asarray(rows), np.arange(n_x), indexing="ij")
    dy, dx = out // stride, out % stride
    assert dy.max() <= cap_y
    assert dx.max() <= cap_x
    found = weights[0] * dy.astype(float) ** 2 + weights[1] * dx.astype(float) ** 2
    exact = np.full(out.shape, np.inf)  # the least over target pixels within cap_y rows
    for a, b in zip(*np.nonzero(plane)):
        value = weights[0] * (y - a) ** 2.0 + weights[1] * (x - b) ** 2.0
        exact = np.where(np.abs(y - a) < cap_y, np.minimum(exact, value), exact)
    none = np.isinf(exact)
    assert np.all(dy[none] == cap_y)
    assert np.all(dx[none] == cap_x)
    exact_x = ~none & (dx < cap_x)
    np.testing.assert_array_equal(found[exact_x], exact[exact_x])
    capped = ~none & (dx == cap_x)
    assert np.all(exact[capped] >= weights[1] * cap_x**2)
    assert np.all(dy[capped] < cap_y)
    if cap_x == n_x:
        assert not capped.any()


def test_a_band_of_rows_gets_its_offsets_from_its_margins_alone():
    """The baseline transforms bands of rows, each from the band and cap_y rows either side:
    each band row's offsets must be those every (pixel, target pixel) pair of the whole plane
    gives, for bands at the top, inside and at the bottom (target pixels beyond the margins
    change nothing)."""
    from rna_localization._envelopes import plane_offsets

    rng = np.random.default_rng(8)
    n_y, n_x, cap_y, cap_x = 50, 90, 6, 11
    plane = rng.random((n_y, n_x)) < 0.01
    plane[[3, 20, 33], [5, 60, 89]] = True
    for y0, y1 in [(0, 4), (17, 18), (20, 31), (44, 50)]:
        low, high = max(0, y0 - cap_y), min(n_y, y1 + cap_y)
        margins = np.ascontiguousarray(plane[low:high])
        band = np.empty((y1 - y0, n_x), np.uint16)
        plane_offsets(margins, 1.0, 1.0, cap_y, cap_x, cap_x + 1, band,
                      np.empty(margins.shape, np.int32), np.empty(n_x, np.int64),
                      np.empty(n_x, np.int64), np.empty((n_x + 1, 3)), y0 - low)
        _check_offsets(band, plane, range(y0, y1), (1.0, 1.0), cap_y, cap_x, cap_x + 1)


def test_lateral_reach_past_65535_offsets_counts_as_every_pair():
    """A threshold of 19 µm at 0.065 µm pixels reaches about 290 pixels: the in-plane offsets
    take more than 16 bits (uint32), and the planes still combine to the brute-force counts."""
    rng = np.random.default_rng(13)
    target = np.zeros((3, 300, 310), dtype=bool)
    target[0, 5, 7] = True
    target[2, rng.integers(0, 300, 3), rng.integers(0, 310, 3)] = True
    spacing = (0.2, 0.065, 0.065)
    grid = np.array([0.0, 0.5, 2.0, 7.5, 12.0, 19.0])
    np.testing.assert_allclose(expected_cumulative_distribution(target, spacing, grid),
                               _brute_force_percent(target, spacing, grid), rtol=1e-12)


@pytest.mark.parametrize("workers", [1, 3])
def test_any_number_of_threads_gives_the_brute_force_counts(workers, monkeypatch):
    from rna_localization import baseline

    monkeypatch.setattr(baseline, "_BAND_BYTES", 1)  # a band per row: many per thread
    monkeypatch.setattr(baseline, "_VOXELS_PER_THREAD", 1)  # every thread asked for, however small
    rng = np.random.default_rng(11)
    target = _blobs((9, 21, 23), rng, 3, (2.0, 4.0, 3.0))
    spacing = (0.2, 0.065, 0.065)
    grid = np.append(np.arange(0, 1.0, 0.05), 1.0)
    np.testing.assert_allclose(
        expected_cumulative_distribution(target, spacing, grid, workers=workers),
        _brute_force_percent(target, spacing, grid), rtol=1e-12)


def test_a_threshold_far_past_a_small_stack_builds_no_table_past_its_planes():
    """The bins are tabled by offset: up to the threshold, but never past the stack (a 150 µm
    threshold at 0.065 µm pixels would table 5 million in-plane offsets per plane step for a
    4 x 4 plane). Same counts as every pair."""
    import tracemalloc

    rng = np.random.default_rng(12)
    target = rng.random((5, 4, 4)) < 0.1
    target[2, 1, 3] = True
    region = rng.random(target.shape) < 0.6
    spacing = (0.2, 0.065, 0.065)
    grid = np.array([0.0, 0.065, 0.1, 0.2, 0.3, 150.0])
    for mask in (None, region):
        tracemalloc.start()
        try:
            expected = expected_cumulative_distribution(target, spacing, grid, region=mask)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 4 * 2**20
        np.testing.assert_allclose(expected, _brute_force_percent(target, spacing, grid, mask),
                                   rtol=1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_the_baseline_of_object_voxels_is_the_label_images_and_brute_forces(seed):
    """What the distances step passes (the stored object voxels, made bool masks directly)
    gives the curve of the label images, bit for bit, and the count of every pair; no target
    object, or a region without one, gives None either way."""
    from rna_localization.baseline import image_baseline
    from rna_localization.db.labels import decode_runs, encode_runs
    from rna_localization.objects import ObjectVoxels

    def stored(label_image):
        objects = ObjectVoxels.from_label_image(label_image)
        return decode_runs(encode_runs(objects), label_image.shape)

    rng = np.random.default_rng(40 + seed)
    shape = (6, 15, 17)
    target = rng.integers(1, 300, shape) * (rng.random(shape) < 0.02)  # labels past uint8
    target[0, 0, 0] = 7  # one on the stack's corner
    region = rng.integers(1, 3, shape) * (rng.random(shape) < 0.5)
    spacing = (0.3, 0.1, 0.1)
    grid = np.append(np.arange(0, 0.8, 0.1), 0.8)
    for labels in (None, region):
        from_voxels = image_baseline(stored(target), spacing, grid,
                                     region_labels=None if labels is None else stored(labels))
        np.testing.assert_array_equal(
            from_voxels, image_baseline(target, spacing, grid, region_labels=labels))
        np.testing.assert_allclose(
            from_voxels, _brute_force_percent(target != 0, spacing, grid,
                                              None if labels is None else labels != 0),
            rtol=1e-12)
    none = np.zeros(shape, np.int64)
    assert image_baseline(stored(none), spacing, grid) is None
    assert image_baseline(stored(target), spacing, grid, region_labels=stored(none)) is None
