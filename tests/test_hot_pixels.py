"""A camera's hot and dead pixels: one-pixel columns through z, measured on the stack
(``rna_localization.hot_pixels``) and repaired before the spot filters (step 0 of the workflows)
and the apertures (extract)."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from rna_localization import hot_pixels, load_config, steps, synthetic
from rna_localization.hot_pixels import without_hot_pixels
from rna_localization.objects import label_objects
from rna_localization.segmentation import SegmentationParams, segment_intermediates

from helpers import database as _db

SPOT_UM = SegmentationParams("rna").spot_sigma_um


def _excess_and_error(stack, y, x):
    """A pixel's median excess over its 8 neighbours' mean less their largest and smallest
    (mirrored at the edges), over the planes, and its standard error."""
    depth, height, width = stack.shape
    padded = np.pad(stack, ((0, 0), (1, 1), (1, 1)), mode="reflect")
    around = padded[:, y:y + 3, x:x + 3].reshape(depth, 9)
    others = np.sort(np.delete(around, 4, axis=1), axis=1)[:, 1:-1]
    excess = around[:, 4] - others.mean(axis=1)
    median = np.median(excess)
    return median, 1.2533 * 1.4826 * np.median(np.abs(excess - median)) / np.sqrt(depth)


def _brute_force_offsets(stack: np.ndarray, sigmas: float = hot_pixels.HOT_PIXEL_SIGMAS):
    """The rule, pixel by pixel. The floor: the median standard error over a grid of about
    HOT_PIXEL_SAMPLE pixels. Examined first: the pixels whose median over the planes stands
    more than HOT_PIXEL_SCREEN * sigmas floors from its neighbours' medians' trimmed mean;
    each takes its median excess where that exceeds sigmas * max(its SE, floor). Then, up
    to HOT_PIXEL_PASSES passes in all, the pixels next to a change, on the stack less the
    offsets: a hot or dead pixel takes its median excess, another only past the same test.
    In the end the offsets within sigmas * max(SE, floor), the SE on the stack less the
    offsets, are dropped."""
    stack = stack.astype(np.float64)
    depth, height, width = stack.shape
    offsets = np.zeros((height, width))
    step = max(1, int(np.sqrt(height * width / hot_pixels.HOT_PIXEL_SAMPLE)))
    floor = hot_pixels.HOT_PIXEL_SPREAD_FLOOR * np.median(
        [_excess_and_error(stack, y, x)[1] for y in range(0, height, step)
         for x in range(0, width, step)])
    level = np.median(stack, axis=0)
    padded = np.pad(level, 1, mode="reflect")
    examine = []
    for y in range(height):
        for x in range(width):
            others = np.sort(np.delete(padded[y:y + 3, x:x + 3].ravel(), 4))[1:-1]
            if abs(level[y, x] - others.mean()) > hot_pixels.HOT_PIXEL_SCREEN * sigmas * floor:
                examine.append((y, x))
    for _ in range(hot_pixels.HOT_PIXEL_PASSES):
        levelled = stack - offsets
        found = np.zeros_like(offsets)
        for y, x in examine:
            median, error = _excess_and_error(levelled, y, x)
            if abs(median) > sigmas * max(error, floor) or offsets[y, x] != 0:
                found[y, x] = median
        offsets += found
        examine = sorted({(min(max(y + dy, 0), height - 1), min(max(x + dx, 0), width - 1))
                          for y, x in zip(*np.nonzero(found))
                          for dy in (-1, 0, 1) for dx in (-1, 0, 1)})
        if not examine:
            break
    levelled = stack - offsets
    for y, x in zip(*np.nonzero(offsets)):
        if abs(offsets[y, x]) <= sigmas * max(_excess_and_error(levelled, y, x)[1], floor):
            offsets[y, x] = 0.0
    return offsets


def _gaussian_spots(rng, shape, count, sigma_vox, amplitude):
    z, y, x = np.indices(shape, dtype=np.float64)
    light = np.zeros(shape)
    for centre in rng.uniform((3, 3, 3), np.asarray(shape) - 3, size=(count, 3)):
        light += amplitude * np.exp(-0.5 * (((z - centre[0]) / sigma_vox[0]) ** 2
                                            + ((y - centre[1]) / sigma_vox[1]) ** 2
                                            + ((x - centre[2]) / sigma_vox[2]) ** 2))
    return light


def test_hot_pixel_offsets_match_the_rule_pixel_by_pixel(monkeypatch):
    rng = np.random.default_rng(3)
    shape, spacing = (30, 36, 40), (0.3, 0.11, 0.11)
    stack = rng.normal(500.0, 20.0, shape)
    stack += _gaussian_spots(rng, shape, 25, (1.0, 1.0, 1.0), 200.0)
    # Corners, edges, a cluster of three; 1-40 noise SDs above the others, or below (dead).
    hot = [(0, 0), (0, 17), (35, 39), (10, 10), (10, 11), (11, 11), (20, 5), (30, 25),
           (5, 30), (6, 30), (35, 0)]
    sds = [1, 2, 4, 8, 15, 40, 3, 6, -25, -10, -4]
    for (y, x), sd in zip(hot, sds):
        stack[:, y, x] += 20.0 * sd
    found = hot_pixels.hot_pixel_offsets(stack, spacing=spacing, spot_sigma_um=SPOT_UM, rows=7)
    oracle = _brute_force_offsets(stack)
    np.testing.assert_array_equal(np.sign(found), np.sign(oracle))
    np.testing.assert_allclose(found, oracle, rtol=1e-4, atol=1e-2)
    # The medians over the planes taken in bands of 7 rows on 2 threads: the same offsets.
    threaded = hot_pixels.hot_pixel_offsets(stack, spacing=spacing, spot_sigma_um=SPOT_UM,
                                            rows=7, threads=2)
    np.testing.assert_array_equal(threaded, found)
    # The examined pixels taken a few at a time: the same offsets.
    monkeypatch.setattr(hot_pixels, "_EXAMINED_AT_ONCE", 7)
    np.testing.assert_array_equal(
        hot_pixels.hot_pixel_offsets(stack, spacing=spacing, spot_sigma_um=SPOT_UM, rows=7), found)
    # Every pixel of 2 noise SDs or more either way is found, near its offset; no spot's is.
    for (y, x), sd in list(zip(hot, sds))[1:]:
        assert found[y, x] == pytest.approx(20.0 * sd, abs=12.0)
    assert np.count_nonzero(found) <= len(hot)


@pytest.mark.parametrize("count", range(1, 15))
def test_the_median_network_puts_the_middle_values_in_place_for_every_0_1_input(count):
    from rna_localization._columns import median_network

    # A comparator network that orders every input of 0s and 1s orders every input (the
    # 0-1 principle): all 2**count of them, one per column, each comparison on every column.
    columns = (np.arange(2 ** count)[None, :] >> np.arange(count)[:, None]) & 1
    for i, j in median_network(count):
        columns[[i, j]] = np.minimum(columns[i], columns[j]), np.maximum(columns[i], columns[j])
    ordered = np.sort(columns, axis=0)
    for middle in {(count - 1) // 2, count // 2}:
        np.testing.assert_array_equal(columns[middle], ordered[middle])


def test_column_medians_are_numpys_median_over_the_planes():
    from rna_localization._columns import COLUMN_BLOCK, column_medians

    rng = np.random.default_rng(5)
    for depth in range(1, 71):
        ties = rng.integers(0, 6, (depth, 3, 21)).astype(np.uint16)   # many equal values
        floats = rng.normal(0.0, 1.0, (depth, 2, 13)).astype(np.float32)
        for stack in (ties, floats, floats.astype(np.float64)):
            expected = np.median(stack.astype(np.float64), axis=0).astype(np.float32)
            np.testing.assert_array_equal(column_medians(stack), expected)
    # Rows longer than a block, and a band of a larger stack written into a map in place.
    stack = rng.poisson(400.0, (60, 9, COLUMN_BLOCK + 37)).astype(np.uint16)
    expected = np.median(stack, axis=0).astype(np.float32)
    out = np.full(expected.shape, np.nan, np.float32)
    column_medians(stack[:, 2:5], out=out[2:5])
    np.testing.assert_array_equal(out[2:5], expected[2:5])
    assert np.isnan(out[:2]).all()
    assert np.isnan(out[5:]).all()
    np.testing.assert_array_equal(column_medians(stack[::-1, :, ::-1]), expected[:, ::-1])


def test_the_compiled_excesses_match_the_rule_at_every_kind_of_pixel():
    from rna_localization._columns import excess_medians, map_excess

    rng = np.random.default_rng(6)
    stack = rng.normal(300.0, 20.0, (25, 12, 15))
    stack[:, 0, 0] += 200.0   # a corner, an edge and an inner pixel hot
    stack[:, 11, 7] += 90.0
    stack[:, 6, 6] -= 150.0
    level = np.median(stack, axis=0).astype(np.float32)
    screen = np.empty_like(level)
    map_excess(level, screen)
    padded = np.pad(level.astype(np.float64), 1, mode="reflect")
    for y in range(12):
        for x in range(15):
            others = np.sort(np.delete(padded[y:y + 3, x:x + 3].ravel(), 4))[1:-1]
            assert screen[y, x] == pytest.approx(level[y, x] - others.mean(), abs=1e-3)
    rows, columns = np.divmod(np.arange(12 * 15), 15)
    median = np.empty(rows.size, np.float32)
    spread = np.empty(rows.size, np.float32)
    scale = 1.2533 * 1.4826 / np.sqrt(25)
    excess_medians(stack.astype(np.float32), np.zeros((12, 15), np.float32), rows, columns,
                   np.float32(scale), median, spread)
    for i, (y, x) in enumerate(zip(rows, columns)):
        expected_median, expected_error = _excess_and_error(stack, y, x)
        assert median[i] == pytest.approx(expected_median, abs=1e-3)
        assert spread[i] == pytest.approx(expected_error, rel=1e-4, abs=1e-4)
    assert median[0] == pytest.approx(200.0, abs=30.0)
    # Each pixel's offsets come off its value, and off its neighbours' where it is one.
    offsets = np.zeros((12, 15), np.float32)
    offsets[0, 0] = 200.0
    excess_medians(stack.astype(np.float32), offsets, rows[:2], columns[:2], np.float32(scale),
                   median[:2], spread[:2])
    levelled = stack.copy()
    levelled[:, 0, 0] -= 200.0
    for i in range(2):
        assert median[i] == pytest.approx(_excess_and_error(levelled, 0, i)[0], abs=1e-3)


def test_a_hot_pixel_loses_its_offset_and_a_dead_one_takes_its_live_neighbours_mean():
    rng = np.random.default_rng(5)
    stack = rng.normal(300.0, 10.0, (6, 7, 8)).astype(np.float32)
    offsets = np.zeros((7, 8), dtype=np.float32)
    offsets[3, 3], offsets[0, 5], offsets[3, 4], offsets[6, 7] = 50.0, -80.0, -30.0, -5.0
    repaired = hot_pixels.remove_hot_pixels(stack, offsets)
    assert repaired is not stack
    expect = stack.astype(np.float64)
    expect[:, 3, 3] -= 50.0
    for y, x in ((0, 5), (3, 4), (6, 7)):  # each from the neighbours not dead, mirrored
        values = []
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                yy, xx = abs(y + dy), abs(x + dx)
                yy, xx = (12 - yy if yy > 6 else yy), (14 - xx if xx > 7 else xx)
                if (dy, dx) != (0, 0) and offsets[yy, xx] >= 0:
                    values.append(expect[:, yy, xx])
        expect[:, y, x] = np.mean(values, axis=0)
    np.testing.assert_allclose(repaired, expect, rtol=1e-5)
    assert hot_pixels.remove_hot_pixels(stack, np.zeros((7, 8))) is stack


def test_a_stack_too_short_to_tell_a_hot_pixel_from_a_molecule_is_left_as_it_is():
    rng = np.random.default_rng(4)
    spacing = (0.3, 0.11, 0.11)
    planes = 4 * SPOT_UM[0] / spacing[0] * hot_pixels.HOT_PIXEL_MIN_SPANS
    for depth, expect in ((int(np.ceil(planes)) - 1, False), (int(np.ceil(planes)) + 1, True)):
        stack = rng.normal(500.0, 20.0, (depth, 24, 24))
        stack[:, 12, 12] += 400.0
        found = hot_pixels.hot_pixel_offsets(stack, spacing=spacing, spot_sigma_um=SPOT_UM)
        assert bool(found[12, 12] > 0) is expect, depth
    with pytest.raises(ValueError, match=r"\(Z, Y, X\) stack"):
        hot_pixels.hot_pixel_offsets(np.zeros((24, 24)), spacing=spacing, spot_sigma_um=SPOT_UM)


def _spots_on(spots, yx, reach: int = 1) -> int:
    """Spots within `reach` pixels (y and x) of any of the pixels `yx`, in any plane."""
    y = spots["yi"].to_numpy()[:, None]
    x = spots["xi"].to_numpy()[:, None]
    near = (np.abs(y - yx[0]) <= reach) & (np.abs(x - yx[1]) <= reach)
    return int(np.any(near, axis=1).sum())


@pytest.mark.parametrize("preset", ["widefield", "confocal"])
def test_hot_and_dead_pixels_give_no_spots_and_leave_the_molecules_found(preset, monkeypatch):
    sim = synthetic.simulate_image("h", rna_type="cen", cycle="nc14", seed=61, preset=preset,
                                   shape=(30, 128, 128))
    clean = sim.rna.astype(np.float32)
    # The camera's noise SD over the background, from neighbouring pixels' differences.
    noise = float(np.median(np.abs(np.diff(clean, axis=2))) * 1.4826 / np.sqrt(2))
    rng = np.random.default_rng(62)
    chosen = rng.choice(128 * 128, size=50, replace=False)
    ys, xs = np.unravel_index(chosen[:40], (128, 128))  # hot: 2-50 noise SDs more
    dy, dx = np.unravel_index(chosen[40:], (128, 128))  # dead: reading nothing
    offsets = noise * np.exp(rng.uniform(np.log(2.0), np.log(50.0), ys.size))
    image = clean.copy()
    image[:, ys, xs] += offsets.astype(np.float32)
    image[:, dy, dx] = 0.0

    assert np.count_nonzero(hot_pixels.hot_pixel_offsets(
        clean, spacing=sim.spacing, spot_sigma_um=SPOT_UM)) <= 1
    found = hot_pixels.hot_pixel_offsets(image, spacing=sim.spacing, spot_sigma_um=SPOT_UM)
    strong = offsets >= 3 * noise
    assert np.all(found[ys[strong], xs[strong]] > 0)
    np.testing.assert_allclose(found[ys[strong], xs[strong]], offsets[strong],
                               rtol=0.1, atol=0.5 * noise)
    assert np.all(found[dy, dx] < 0)
    hot = np.zeros(found.shape, bool)
    hot[ys, xs] = hot[dy, dx] = True
    assert np.count_nonzero(found[~hot]) <= 1

    def scores(stack):
        spots = segment_intermediates(stack, "rna", spacing=sim.spacing).spots
        score = synthetic.score_spots(spots[["z", "y", "x"]].to_numpy(), sim.molecules,
                                      spacing=sim.spacing)
        return spots, score

    spots_clean, score_clean = scores(clean)
    spots, score = scores(image)
    assert _spots_on(spots, (ys, xs)) <= _spots_on(spots_clean, (ys, xs)) + 2
    assert _spots_on(spots, (dy, dx), 3) <= _spots_on(spots_clean, (dy, dx), 3) + 2
    assert score["recall"] >= score_clean["recall"] - 0.01
    assert score["precision"] >= score_clean["precision"] - 0.01
    # Without the step, the hot columns are found as spots, several per column, and on the
    # widefield grid the filters' ring around each dead column makes more (on the confocal
    # one, whose background is 12 noise SDs above 0 here, hardly any).
    monkeypatch.setattr(hot_pixels, "HOT_PIXEL_MIN_SPANS", np.inf)
    spots_raw, score_raw = scores(image)
    assert _spots_on(spots_raw, (ys, xs)) >= _spots_on(spots_clean, (ys, xs)) + 40
    if preset == "widefield":
        assert _spots_on(spots_raw, (dy, dx), 3) >= _spots_on(spots_clean, (dy, dx), 3) + 20
    assert score_raw["precision"] < score_clean["precision"] - 0.05


def test_extract_sums_each_aperture_with_a_hot_pixel_repaired_and_keeps_the_raw_counts(
        tmp_path, database_name):
    # A data set of 24-plane stacks (datagen's 8 planes are too few to tell a hot pixel from
    # an object): extracted, then one pixel through an RNA object made hot in every plane of
    # its raw stack, and extracted again (the changed file is seen).
    from datagen import write_dataset

    config = write_dataset(tmp_path / "data", database_name=database_name, shape=(24, 40, 48),
                           n_images=1)
    data = config.parent
    settings = load_config(config)
    steps.extract(settings)
    db = _db(config)
    query = ("SELECT object_id, total_intensity, spot_intensity FROM rna WHERE name = 'img_00' "
             "ORDER BY object_id")
    before = db.query(query).set_index("object_id")
    labels = label_objects(tifffile.imread(data / "rna" / "segmentations" / "img_00_seg.tif"))
    sizes = np.bincount(labels.ravel())
    label = int(np.argmax(sizes[1:]) + 1)  # the largest object
    voxels = np.argwhere(labels == label)
    _, y, x = voxels[len(voxels) // 2]
    in_mask = int(np.count_nonzero(labels[:, y, x] == label))
    offset = 20000
    path = data / "rna" / "raw-data" / "img_00.tif"
    raw = tifffile.imread(path)
    raw[:, y, x] += np.uint16(offset)
    tifffile.imwrite(path, raw)
    assert np.count_nonzero(without_hot_pixels(raw, spacing=(0.3, 0.1, 0.1)) != raw) == 24
    with pytest.warns(steps.PipelineWarning, match="changed since they were extracted"):
        steps.extract(settings)
    after = db.query(query).set_index("object_id")
    # The contract's raw sum holds the column's light; the aperture's sum does not (the
    # offset is estimated to within its noise, a few hundred counts per plane).
    assert after.loc[label, "total_intensity"] - before.loc[label, "total_intensity"] == (
        offset * in_mask)
    change = (after["spot_intensity"] - before["spot_intensity"]).abs()
    assert change.max() < 0.1 * offset * in_mask, change.max()
