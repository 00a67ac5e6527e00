"""The whole pipeline on a real PostgreSQL, checked against brute-force oracles from the files."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile

from rna_localization import io, load_config, steps
from rna_localization.cli import main
from rna_localization.db.backup import export_tables
from rna_localization.distributions import (
    MIN_REFERENCE_OBJECTS,
    REFERENCE_ISOLATION_UM,
    REFERENCE_TRIM,
    aperture_references,
    isolated_spots,
)

import oracles
from helpers import assert_nothing_stale as _assert_nothing_stale
from helpers import database as _db
from helpers import simulated_dataset
from helpers import table_frames as _export

SPACING = (0.3, 0.1, 0.1)  # datagen's pipeline.toml


def _oracle(config_path, spacing=SPACING) -> tuple[pd.DataFrame, pd.DataFrame]:
    """rna objects with distances and normalization, and distributions, from the files alone."""
    root = Path(config_path).parent
    metadata = pd.read_csv(root / "raw-data-metadata.csv")
    frames = []
    for name in metadata["name"]:
        rna = oracles.label(tifffile.imread(root / "rna" / "segmentations" / f"{name}_seg.tif"))
        centrosomes = oracles.label(
            tifffile.imread(root / "centrosomes" / "segmentations" / f"{name}_seg.tif"))
        objects = oracles.objects(rna, tifffile.imread(root / "rna" / "raw-data" / f"{name}.tif"))
        distances = oracles.distances(rna, centrosomes, spacing)
        frames.append(objects.merge(distances, on="object_id").assign(name=name))
    rna = pd.concat(frames, ignore_index=True).merge(metadata, on="name")
    single = rna[(rna["area"] >= 1) & (rna["area"] <= 20)]
    reference = single.groupby("rna_type")["total_intensity"].mean()
    rna["normalized_intensity"] = rna["total_intensity"] / rna["rna_type"].map(reference)
    distributions = []
    for name, image in rna.groupby("name", sort=True):
        d = oracles.distribution(image["distance"], image["total_intensity"],
                                 image["normalized_intensity"], step=0.1, threshold=2.0,
                                 granule_threshold=4)
        distributions.append(d.assign(**metadata.set_index("name").loc[name].to_dict(), name=name))
    return rna, pd.concat(distributions, ignore_index=True)


def test_a_corrected_voxel_size_is_extracted_and_measured_again(dataset):
    assert main(["run", "--config", str(dataset)]) == 0
    # [scale] had a typo: xy is 0.2 µm, not 0.1. The next run, without --overwrite,
    # must not keep the objects and distances measured at the wrong scale.
    text = dataset.read_text(encoding="utf-8")
    assert "xy = 0.1\n" in text
    dataset.write_text(text.replace("xy = 0.1\n", "xy = 0.2\n"), encoding="utf-8")
    with pytest.warns(steps.PipelineWarning, match=r"another voxel size than \[scale\]"):
        steps.run(load_config(dataset))
    db = _db(dataset)
    spacing = db.query("SELECT DISTINCT spacing_z, spacing_y, spacing_x FROM label_images")
    assert spacing.to_numpy().tolist() == [[0.3, 0.2, 0.2]]
    measured = _by_centroid(db.query("SELECT name, centroid_z, centroid_y, centroid_x, "
                                     "distance_to_centrosomes, centrosomes_id FROM rna"))
    expected = _by_centroid(_oracle(dataset, spacing=(0.3, 0.2, 0.2))[0])
    assert len(measured) == len(expected) > 50
    np.testing.assert_allclose(measured["distance_to_centrosomes"], expected["distance"],
                               rtol=1e-12, atol=1e-12)
    # A third run at the same scale has nothing stale.
    _assert_nothing_stale(dataset)


def test_a_replaced_segmentation_is_extracted_and_measured_again(dataset):
    assert main(["run", "--config", str(dataset)]) == 0
    root = dataset.parent
    segmentation = root / "rna" / "segmentations" / "img_01_seg.tif"
    # A corrected mask saved under the same name: here, the lower half of the objects erased.
    mask = tifffile.imread(segmentation)
    corrected = mask.copy()
    corrected[:, : mask.shape[1] // 2] = 0
    assert 0 < np.count_nonzero(corrected) < np.count_nonzero(mask)
    tifffile.imwrite(segmentation, corrected)
    # Another file only touched (same bytes, new mtime) is not extracted again.
    other = root / "rna" / "raw-data" / "img_02.tif"
    other.write_bytes(other.read_bytes())
    with pytest.warns(steps.PipelineWarning, match=r"changed since they were extracted: rna img_01;"):
        steps.run(load_config(dataset))
    db = _db(dataset)
    measured = _by_centroid(db.query("SELECT name, centroid_z, centroid_y, centroid_x, area, "
                                     "distance_to_centrosomes FROM rna"))
    expected = _by_centroid(_oracle(dataset)[0])
    assert len(measured) == len(expected) > 50
    np.testing.assert_array_equal(measured["area"], expected["area"])
    np.testing.assert_allclose(measured["distance_to_centrosomes"], expected["distance"],
                               rtol=1e-12, atol=1e-12)
    _assert_nothing_stale(dataset)


def _by_centroid(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(["name", "centroid_z", "centroid_y", "centroid_x"], ignore_index=True)


def test_run_matches_brute_force_oracle(dataset, tmp_path):
    assert main(["run", "--config", str(dataset)]) == 0
    tables = _export(dataset, tmp_path / "export")
    assert set(tables) == {"rna", "centrosomes", "images", "label_images", "distance_measurements",
        "image_numbers", "normalized_images", "normalization_references"}
    expected, expected_distributions = _oracle(dataset)

    rna = _by_centroid(tables["rna"])
    expected = _by_centroid(expected)
    assert len(rna) == len(expected) > 50
    for column in ["area", "centroid_z", "centroid_y", "centroid_x", "min_intensity",
                   "max_intensity", "mean_intensity", "total_intensity", "normalized_intensity"]:
        np.testing.assert_allclose(rna[column], expected[column], rtol=1e-12, err_msg=column)
    np.testing.assert_allclose(rna["distance_to_centrosomes"], expected["distance"], rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(rna["centrosomes_id"], expected["target_id"])
    assert not rna.duplicated(["name", "object_id"]).any()

    images = tables["images"]
    assert images.columns.tolist() == ["id", "name", "rna_type", "cycle", "replicate"]
    assert images["replicate"].dtype.kind == "i"

    config = load_config(dataset)
    written = pd.read_csv(config.output_dir / "data" / steps.DISTRIBUTIONS_FILE)
    assert written.columns.tolist()[:3] == ["distance", "percent_total_rna", "percent_granule_rna"]
    assert {"name", "rna_type", "cycle", "replicate"} <= set(written.columns)
    written = written.sort_values(["name", "distance"], ignore_index=True)
    expected_distributions = expected_distributions.sort_values(["name", "distance"], ignore_index=True)
    for column in ["distance", "percent_total_rna", "percent_granule_rna"]:
        np.testing.assert_allclose(written[column], expected_distributions[column], rtol=1e-9, atol=1e-9)
    assert (written["name"] == expected_distributions["name"]).all()

    # The notebook's distance check and the molecules per image, against the oracle.
    summary = steps.distance_summary(config).set_index("name")
    by_image = expected.groupby("name")
    np.testing.assert_array_equal(summary["objects"], by_image.size())
    np.testing.assert_array_equal(summary["with_distance"], by_image.size())
    np.testing.assert_allclose(summary["min_um"], by_image["distance"].min(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(summary["max_um"], by_image["distance"].max(), rtol=1e-12)
    molecules = pd.read_csv(config.output_dir / "data" / steps.MOLECULES_FILE).set_index("name")
    np.testing.assert_allclose(molecules["molecules"], by_image["normalized_intensity"].sum(),
                               rtol=1e-9)
    # The notebook's look at the table: the first objects stored, and the brightest.
    first = steps.peek_objects(config)
    stored = tables["rna"].sort_values(["name", "object_id"]).head(5)
    assert first[["name", "object_id"]].values.tolist() == stored[["name", "object_id"]].values.tolist()
    assert set(first.columns) == set(tables["rna"].columns)
    brightest = steps.peek_objects(config, brightest=True, limit=3)
    top = expected.sort_values("normalized_intensity", ascending=False).head(3)
    np.testing.assert_allclose(brightest["normalized_intensity"], top["normalized_intensity"],
                               rtol=1e-9)

    from PIL import Image

    for stem in ("percent_total_rna", "percent_granule_rna"):
        png = config.output_dir / "plots" / f"{stem}.png"
        assert (config.output_dir / "plots" / f"{stem}.pdf").stat().st_size > 1000
        assert round(Image.open(png).info["dpi"][0]) == 600


def test_second_run_changes_nothing(dataset, tmp_path):
    assert main(["run", "--config", str(dataset)]) == 0
    first = _export(dataset, tmp_path / "first")
    results = steps.run(load_config(dataset))
    assert set(results["extract"]["status"]) == {"skipped"}
    assert set(results["distances"]["status"]) == {"skipped"}
    second = _export(dataset, tmp_path / "second")
    for table in first:
        pd.testing.assert_frame_equal(first[table], second[table], obj=table)


def test_backup_then_restore_gives_identical_tables(dataset, tmp_path, database_name):
    assert main(["run", "--config", str(dataset)]) == 0
    backup = tmp_path / "demo.dump"
    assert main(["backup", "--config", str(dataset), "--to", str(backup)]) == 0
    copy = database_name + "_copy"
    assert main(["restore", "--config", str(dataset), "--from", str(backup), "--database", copy]) == 0
    original = export_tables(_db(dataset), tmp_path / "original")
    restored = export_tables(_db(dataset).with_name(copy), tmp_path / "restored")
    assert [p.name for p in original] == [p.name for p in restored]
    for a, b in zip(original, restored):
        assert a.read_bytes() == b.read_bytes(), a.name


def test_aperture_normalization_from_the_files(dataset):
    # Method "aperture": every object's spot_intensity and background are those of
    # aperture_intensities on its files (tested against a brute-force oracle in
    # test_apertures.py); one molecule is the mean spot_intensity of the isolated
    # objects within 0.5-1.5x their group's median area (oracles.aperture_reference).
    from rna_localization.apertures import aperture_intensities

    text = Path(dataset).read_text(encoding="utf-8")
    text = text.replace('method = "total"', 'method = "aperture"')
    Path(dataset).write_text(text.replace('distance = "voxel"', 'distance = "centroid"'),
                             encoding="utf-8")
    config = load_config(dataset)
    assert config.normalization.method == "aperture"
    assert config.distribution.distance == "centroid"
    steps.run(config)
    stored = _db(dataset).query(
        "SELECT o.name, o.object_id, o.area, o.spot_intensity, o.background, "
        "o.normalized_intensity, i.rna_type, "
        + ", ".join(f"COALESCE(o.spot_centroid_{axis}, o.centroid_{axis}) * {size} AS {axis}_um"
                    for axis, size in zip("zyx", SPACING))
        + " FROM rna AS o JOIN images AS i ON i.name = o.name ORDER BY o.name, o.object_id")
    root = Path(dataset).parent
    expected = []
    for name in sorted(stored["name"].unique()):
        labels = oracles.label(tifffile.imread(root / "rna" / "segmentations" / f"{name}_seg.tif"))
        raw = tifffile.imread(root / "rna" / "raw-data" / f"{name}.tif")
        expected.append(aperture_intensities(labels, raw, spacing=SPACING).assign(name=name))
    expected = pd.concat(expected, ignore_index=True)
    np.testing.assert_allclose(stored["spot_intensity"], expected["spot_intensity"], rtol=1e-12)
    np.testing.assert_allclose(stored["background"], expected["background"], rtol=1e-12)
    molecules = []
    for _, group in stored.groupby("rna_type"):
        reference = oracles.aperture_reference(
            group["spot_intensity"], group["area"], group[["z_um", "y_um", "x_um"]],
            group["name"], reach_um=REFERENCE_ISOLATION_UM, trim=REFERENCE_TRIM,
            fewest=MIN_REFERENCE_OBJECTS)
        molecules.append(group["spot_intensity"] / reference)
    np.testing.assert_allclose(stored["normalized_intensity"], pd.concat(molecules).sort_index(),
                               rtol=1e-12)
    # Centroid distances: from each stored centroid to every centrosome voxel, by brute force.
    centroids = _db(dataset).query(
        "SELECT name, object_id, spot_centroid_z, spot_centroid_y, spot_centroid_x, "
        "centroid_distance_to_centrosomes AS distance FROM rna ORDER BY name, object_id")
    checked = 0
    for name, image in centroids.groupby("name"):
        targets = oracles.label(
            tifffile.imread(root / "centrosomes" / "segmentations" / f"{name}_seg.tif"))
        points = image[["spot_centroid_z", "spot_centroid_y", "spot_centroid_x"]].to_numpy()
        voxels = np.argwhere(targets) * np.asarray(SPACING)
        if len(voxels) == 0:
            assert image["distance"].isna().all()
            continue
        expected = np.sqrt((((points * SPACING)[:, None] - voxels[None]) ** 2).sum(-1)).min(1)
        expected[targets[tuple(np.rint(points).astype(int).T)] != 0] = 0.0
        np.testing.assert_allclose(image["distance"], expected, rtol=1e-12, atol=1e-12)
        checked += len(image)
    assert checked > 50
    # The curves: centroid distances, weighed by the light above the background.
    objects = stored.merge(centroids[["name", "object_id", "distance"]], on=["name", "object_id"])
    written = pd.read_csv(config.output_dir / "data" / steps.DISTRIBUTIONS_FILE)
    for name, image in objects.dropna(subset=["distance"]).groupby("name"):
        expected = oracles.distribution(image["distance"], image["spot_intensity"].clip(lower=0),
                                        image["normalized_intensity"], step=0.1, threshold=2.0,
                                        granule_threshold=4)
        got = written[written["name"] == name].sort_values("distance")
        for column in ["distance", "percent_total_rna", "percent_granule_rna"]:
            np.testing.assert_allclose(got[column], expected[column], rtol=1e-9, atol=1e-9)


def test_export_reloads_with_full_float_precision(dataset, tmp_path):
    config = load_config(dataset)
    steps.run(config)
    tables = _export(dataset, tmp_path / "csv")
    db = _db(dataset)
    stored = db.query("SELECT name, object_id, distance_to_centrosomes, normalized_intensity, "
                      "centroid_x FROM rna ORDER BY id")
    exported = tables["rna"].sort_values("id", ignore_index=True)
    for column in ["distance_to_centrosomes", "normalized_intensity", "centroid_x"]:
        np.testing.assert_array_equal(exported[column].to_numpy(), stored[column].to_numpy(float))


def test_resume_after_deleting_one_image(dataset, tmp_path):
    config = load_config(dataset)
    steps.run(config)
    before = _export(dataset, tmp_path / "before")["rna"]
    steps.delete_image_data(config, "img_01", "rna")
    rows = _db(dataset).query("SELECT count(*) AS n FROM rna WHERE name = 'img_01'")
    assert rows["n"].iloc[0] == 0
    results = steps.run(config)
    report = results["extract"].set_index(["structure", "name"])["status"]
    assert report[("rna", "img_01")] == "extracted"
    assert report[("rna", "img_00")] == "skipped"
    after = _export(dataset, tmp_path / "after")["rna"]
    pd.testing.assert_frame_equal(before, after)  # ids included: they follow (name, object_id)


def test_two_workers_give_the_same_tables_as_one(dataset, tmp_path, database_name):
    serial = _export(dataset, tmp_path / "serial") if main(["run", "--config", str(dataset)]) == 0 else None
    text = dataset.read_text().replace("workers = 1", "workers = 2").replace(
        f'name = "{database_name}"', f'name = "{database_name}_p"')
    dataset.write_text(text)
    assert main(["run", "--config", str(dataset)]) == 0
    parallel = _export(dataset, tmp_path / "parallel")
    for table in ["rna", "centrosomes", "images", "distance_measurements"]:
        pd.testing.assert_frame_equal(serial[table], parallel[table], obj=table)


def test_extract_overwrite_replaces_and_forgets_distances(dataset):
    config = load_config(dataset)
    steps.run(config)
    db = _db(dataset)
    report = steps.extract(config, overwrite=True)
    assert set(report["status"]) == {"extracted"}
    n = db.query("SELECT count(*) AS n FROM distance_measurements")["n"].iloc[0]
    assert n == 0
    assert db.query("SELECT count(*) AS n FROM rna WHERE distance_to_centrosomes IS NOT NULL")["n"].iloc[0] == 0
    steps.measure_distances(config)
    assert db.query("SELECT count(*) AS n FROM rna WHERE distance_to_centrosomes IS NULL")["n"].iloc[0] == 0
    assert not db.query("SELECT name, object_id FROM rna").duplicated().any()


def test_image_without_centrosomes_is_null_and_named(dataset):
    seg = dataset.parent / "centrosomes" / "segmentations" / "img_02_seg.tif"
    tifffile.imwrite(seg, np.zeros_like(tifffile.imread(seg)))
    config = load_config(dataset)
    steps.extract(config)
    with pytest.warns(UserWarning, match="'img_02' has no centrosomes objects"):
        steps.measure_distances(config)
    db = _db(dataset)
    nulls = db.query("SELECT count(*) AS n FROM rna WHERE name = 'img_02' AND distance_to_centrosomes IS NULL")
    assert nulls["n"].iloc[0] > 0
    steps.load_metadata(config)
    steps.normalize(config)
    with pytest.warns(UserWarning, match="img_02"):
        table = steps.compute_distributions(config)
    assert "img_02" not in set(table["name"])
    assert {"img_00", "img_01", "img_03"} == set(table["name"])


def test_threshold_table_and_none_resolve_per_image(dataset, database_name):
    text = dataset.read_text().replace(
        "distance_threshold = 2.0", 'distance_threshold = { column = "cycle", nc13 = 1.0, nc14 = 1.5 }')
    dataset.write_text(text)
    config = load_config(dataset)
    steps.run(config)
    table = steps.compute_distributions(config, write=False)
    last = table.groupby("name")["distance"].max()
    cycles = table.groupby("name")["cycle"].first()
    assert (last[cycles == "nc13"] == 1.0).all()
    assert (last[cycles == "nc14"] == 1.5).all()

    dataset.write_text(text.replace('{ column = "cycle", nc13 = 1.0, nc14 = 1.5 }', '"none"'))
    config = load_config(dataset)
    table = steps.compute_distributions(config, write=False)
    maxima = _db(dataset).query("SELECT name, max(distance_to_centrosomes) AS m FROM rna GROUP BY name")
    last = table.groupby("name")["distance"].max()
    np.testing.assert_allclose(last.sort_index(), maxima.set_index("name")["m"].sort_index(), rtol=1e-12)


def test_metadata_can_be_loaded_again(dataset):
    config = load_config(dataset)
    steps.extract(config)
    steps.load_metadata(config)
    csv = config.metadata_path
    table = pd.read_csv(csv)
    table["genotype"] = ["wt", "mut", "wt", "mut"]
    table.to_csv(csv, index=False)
    stored = steps.load_metadata(config)
    assert stored["genotype"].tolist() == ["wt", "mut", "wt", "mut"]
    assert len(stored) == 4


# ---------------------------------------------------------------- bad input
def _tables(dataset) -> list[str]:
    return _db(dataset).tables()


def test_shape_mismatch_names_the_file_and_writes_nothing(dataset):
    seg = dataset.parent / "rna" / "segmentations" / "img_03_seg.tif"
    tifffile.imwrite(seg, np.zeros((3, 5, 5), np.uint8), photometric="minisblack")
    with pytest.raises(ValueError, match=r"img_03_seg\.tif has shape \(3, 5, 5\)"):
        steps.extract(load_config(dataset))
    assert _tables(dataset) == []


def test_missing_segmentation_is_named(dataset):
    (dataset.parent / "centrosomes" / "segmentations" / "img_01_seg.tif").unlink()
    with pytest.raises(FileNotFoundError, match=r"no segmentation for .*img_01\.tif"):
        steps.extract(load_config(dataset))
    assert _tables(dataset) == []


def test_file_that_is_not_a_tiff_is_named(dataset):
    (dataset.parent / "rna" / "raw-data" / "img_02.tif").write_bytes(b"not a tiff at all")
    with pytest.raises(ValueError, match=r"img_02\.tif as a TIFF"):
        steps.extract(load_config(dataset))
    assert _tables(dataset) == []


def test_truncated_tiff_is_named_and_that_image_is_not_written(dataset):
    raw = dataset.parent / "rna" / "raw-data" / "img_03.tif"
    data = raw.read_bytes()
    raw.write_bytes(data[: len(data) // 2])
    config = load_config(dataset)
    with pytest.raises(ValueError, match=r"img_03\.tif"):
        steps.extract(config)
    db = _db(dataset)
    assert db.query("SELECT count(*) AS n FROM rna WHERE name = 'img_03'")["n"].iloc[0] == 0
    assert db.query("SELECT count(*) AS n FROM label_images WHERE name = 'img_03' "
                    "AND structure = 'rna'")["n"].iloc[0] == 0


def _is_mapped(array: np.ndarray) -> bool:
    while array is not None:
        if isinstance(array, np.memmap):
            return True
        array = array.base
    return False


def test_plain_stacks_are_mapped_and_others_read_with_the_same_values(tmp_path):
    stack = (np.arange(6 * 40 * 50, dtype=np.uint16) * 7).reshape(6, 40, 50)
    plain, hyperstack = tmp_path / "plain.tif", tmp_path / "hyperstack.tif"
    tifffile.imwrite(plain, stack)
    tifffile.imwrite(hyperstack, stack[:, None], imagej=True, metadata={"axes": "ZCYX"})
    for path in (plain, hyperstack):  # uncompressed, in one piece: the file's pages, read-only
        mapped = io.read_stack(path, mapped=True)
        assert _is_mapped(mapped)
        assert not mapped.flags.writeable
        np.testing.assert_array_equal(mapped, stack)
        assert io.read_stack(path).flags.writeable  # not asked for: read into memory
    del mapped
    for name, options in {"zlib.tif": {"compression": "zlib"}, "big.tif": {"byteorder": ">"},
                          "tiles.tif": {"tile": (16, 16)}}.items():
        tifffile.imwrite(tmp_path / name, stack, **options)
        read = io.read_stack(tmp_path / name, mapped=True)
        assert read.flags.writeable
        assert not _is_mapped(read)
        np.testing.assert_array_equal(read, stack)
    # Cut short, its data past the file's end: named, as a truncated file read whole is.
    data = plain.read_bytes()
    plain.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"plain\.tif as a TIFF"):
        io.read_stack(plain, mapped=True)


def test_float_segmentation_is_named(dataset):
    seg = dataset.parent / "rna" / "segmentations" / "img_00_seg.tif"
    tifffile.imwrite(seg, tifffile.imread(seg).astype(np.float32) / 255)
    with pytest.raises(TypeError, match=r"img_00_seg\.tif.*float32"):
        steps.extract(load_config(dataset))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: t.rename(columns={"name": "image"}), "has no 'name' column"),
        (lambda t: pd.concat([t, t.iloc[[0]]]), "more than once: img_00"),
        (lambda t: pd.concat([t, t.iloc[[0]].assign(name="ghost")]), "line 6: image 'ghost' is in no structure's raw-data/ folder"),
        (lambda t: t.assign(**{'x"); DROP TABLE rna; --': 1}), "not a plain identifier"),
    ],
)
def test_bad_metadata_csv_is_refused_and_tables_kept(dataset, change, message):
    config = load_config(dataset)
    steps.extract(config)
    steps.load_metadata(config)
    change(pd.read_csv(config.metadata_path)).to_csv(config.metadata_path, index=False)
    with pytest.raises(ValueError, match=message):
        steps.load_metadata(config)
    db = _db(dataset)
    assert len(db.query("SELECT * FROM images")) == 4
    assert len(db.query("SELECT * FROM rna")) > 0


def test_metadata_that_is_not_utf8_is_named(dataset):
    config = load_config(dataset)
    config.metadata_path.write_bytes("name,rna_type\nimg_00,caf\xe9\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"raw-data-metadata\.csv is not UTF-8"):
        steps.load_metadata(config)


def test_structure_name_that_is_not_an_identifier_is_refused(dataset):
    text = dataset.read_text().replace('structures = ["rna", "centrosomes"]',
                                       'structures = ["rna", "x\\"); DROP TABLE rna; --"]')
    dataset.write_text(text)
    with pytest.raises(ValueError, match="not a plain identifier"):
        load_config(dataset)


def test_cli_reports_bad_input_in_one_sentence(dataset, capsys):
    dataset.write_text(dataset.read_text().replace("step_size = 0.1", "step_sise = 0.1"))
    assert main(["run", "--config", str(dataset)]) == 2
    err = capsys.readouterr().err
    assert "unknown key 'step_sise'" in err
    assert "Did you mean 'step_size'?" in err
    assert err.count("\n") == 1


def test_console_script_runs_the_pipeline(dataset):
    script = shutil.which("rna-localization") or str(Path(sys.executable).with_name("rna-localization"))
    done = subprocess.run([script, "run", "--config", str(dataset)], capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert "extract: 8 extracted" in done.stdout
    url = subprocess.run([script, "db", "url", "--config", str(dataset)], capture_output=True,
                         text=True, check=True).stdout.strip()
    assert url.startswith("postgresql://")
    assert load_config(dataset).database.name in url


def test_extract_stores_each_image_psf_and_names_one_apart(tmp_path, database_name):
    # Four simulated confocal stacks (the simulator's ideal masks): extract stores the PSF
    # the aperture corrections measured on each RNA stack, which is the simulator's; one
    # stack blurred across by a Gaussian of 2 voxels (0.13 µm) measures a wider one, and
    # extract names it.
    from scipy import ndimage

    from rna_localization.capture import PSF_OUTLIER_RATIO, corrected_apertures
    from rna_localization.objects import object_voxels
    from rna_localization.synthetic import PRESETS

    data, toml, config = simulated_dataset(tmp_path / "sim", database_name)
    assert f'name = "{database_name}"' in toml.read_text(encoding="utf-8")
    names = sorted(pd.read_csv(data / "raw-data-metadata.csv")["name"])
    blurred = names[2]
    path = data / "rna" / "raw-data" / f"{blurred}.tif"
    stack = tifffile.imread(path)
    tifffile.imwrite(path, np.rint(ndimage.gaussian_filter(stack.astype(float), (0, 2, 2)))
                     .astype(stack.dtype))
    with pytest.warns(steps.PipelineWarning,
                      match=rf"^1 image\(s\) have a measured PSF more than {PSF_OUTLIER_RATIO:g}x "
                            rf".*: rna {blurred} \(axial"):
        steps.extract(config)
    # Named once: extracting again, with nothing to extract, says nothing.
    _assert_nothing_stale(toml)
    stored = _db(toml).query("SELECT structure, name, psf_axial_um, psf_lateral_um, psf_objects "
                             "FROM label_images ORDER BY structure, name")
    # Centrosomes are not counted: no apertures, no PSF.
    assert stored.loc[stored["structure"] == "centrosomes", "psf_axial_um"].isna().all()
    rna = stored[stored["structure"] == "rna"].set_index("name")
    assert list(rna.index) == names
    spacing = np.asarray(config.spacing)
    simulated = np.asarray(PRESETS["confocal"].psf_sigma_um[:2])
    for name in names:
        raw = tifffile.imread(data / "rna" / "raw-data" / f"{name}.tif")
        labels = object_voxels(tifffile.imread(data / "rna" / "segmentations" / f"{name}_seg.tif"))
        measured = corrected_apertures(labels, raw, spacing=spacing)
        psf = rna.loc[name, ["psf_axial_um", "psf_lateral_um"]].to_numpy(float)
        np.testing.assert_allclose(psf, measured.attrs["psf_um"], rtol=1e-12)
        assert rna.loc[name, "psf_objects"] == measured.attrs["psf_objects"] >= 20
        if name != blurred:
            np.testing.assert_allclose(psf, simulated, rtol=0.08)
    # The blur widens the PSF across (at least as the two add in quadrature; the fits
    # also see the blurred neighbours within the unblurred masks' apertures). Along z it
    # sharpens nothing. (The blurred spots keep the sharp image's masks, so they spread
    # well past their 0.25 µm apertures and the fits widen along z too: 0.42 µm here,
    # 0.34 with the 0.3 µm apertures before 2026-12-05. docs/quantification.md, "The
    # aperture's reach", gives what such a PSF reads once segmented after its blur.)
    others = rna.drop(index=blurred)[["psf_axial_um", "psf_lateral_um"]].median().to_numpy()
    wide = rna.loc[blurred, ["psf_axial_um", "psf_lateral_um"]].to_numpy(float)
    assert wide[1] > max(PSF_OUTLIER_RATIO * others[1],
                         0.95 * np.hypot(others[1], 2 * spacing[2]))
    assert wide[0] > 0.95 * others[0]


def test_extract_names_an_image_whose_psf_widens_with_depth(tmp_path, database_name):
    # Of four simulated confocal stacks, one is replaced by single molecules whose axial
    # sigma grows from 0.3 µm at the first plane to 0.6 at the last (with its masks):
    # extract names that one, with its thirds' widths, and no other.
    from rna_localization.capture import corrected_apertures

    from scenes import depth_aberrated_spots

    data, toml, config = simulated_dataset(tmp_path / "sim", database_name)
    deep = sorted(pd.read_csv(data / "raw-data-metadata.csv")["name"])[3]
    raw, labels, truth = depth_aberrated_spots(np.random.default_rng(1), config.spacing)
    tifffile.imwrite(data / "rna" / "raw-data" / f"{deep}.tif", raw)
    tifffile.imwrite(data / "rna" / "segmentations" / f"{deep}_seg.tif", labels)
    change = corrected_apertures(labels, raw, spacing=config.spacing).attrs["psf_depth"]
    with pytest.warns(steps.PipelineWarning) as caught:
        steps.extract(config)
    named = [str(w.message) for w in caught if "changes with depth" in str(w.message)]
    assert len(named) == 1
    assert named[0].startswith(
        f"1 image(s) show a PSF that changes with depth: rna {deep} (axial sigma "
        f"{change['top'][0]:.2f} µm in the top third of the stack, {change['bottom'][0]:.2f} µm "
        f"in the bottom third, {change['ratio'][0]:.2f}x; lateral {change['top'][1]:.3f} µm, "
        f"{change['bottom'][1]:.3f} µm, {change['ratio'][1]:.2f}x). Normalize counts")
    assert 0.3 < change["top"][0] < change["bottom"][0] < 0.6
    stored = _db(toml).query("SELECT name, psf_depth_changes FROM label_images "
                             "WHERE structure = 'rna' ORDER BY name").set_index("name")
    # The others: no change, or too few fits in a third to judge (NULL).
    assert {name: value for name, value in stored["psf_depth_changes"].items()
            if value is not None} == {name: name == deep for name in stored.index
                                      if stored.loc[name, "psf_depth_changes"] is not None}
    assert stored.loc[deep, "psf_depth_changes"] is True

    # Normalize counts its molecules against those at their own depth: each object is one
    # molecule of the same light, and reads 1 in every third of the stack (against one
    # reference from its own spots, 1.04-1.06 at the top and 0.92-0.93 at the bottom). The
    # other images of its group keep their group's reference, from them alone.
    steps.load_metadata(config)
    with pytest.warns(steps.PipelineWarning,
                      match=rf"^1 image\(s\) of rna_type = '\w+' have a PSF that changes with "
                            rf"depth \({deep}\): their objects are counted against the single "
                            rf"molecules at their own depth"):
        steps.normalize(config)
    objects = _db(toml).query("SELECT name, object_id, area, spot_intensity, spot_centroid_x, "
                              "spot_centroid_y, spot_centroid_z, normalized_intensity FROM rna")
    mine = objects[objects["name"] == deep].sort_values("object_id")
    third = np.clip(np.floor(truth[mine["object_id"] - 1, 0] * 3 / raw.shape[0]), 0, 2)
    for k in range(3):
        assert mine["normalized_intensity"][third == k].mean() == pytest.approx(1.0, abs=0.03), k
    metadata = pd.read_csv(data / "raw-data-metadata.csv").set_index("name")["rna_type"]
    others = objects[(objects["name"] != deep)
                     & objects["name"].map(metadata).eq(metadata[deep])].sort_values(
        ["name", "object_id"])
    assert others["name"].nunique() >= 1
    points = others[["spot_centroid_z", "spot_centroid_y", "spot_centroid_x"]].to_numpy(float)
    reference = aperture_references(
        others["spot_intensity"], others["area"], ["g"] * len(others),
        isolated=isolated_spots(points * np.asarray(config.spacing), others["name"]))
    np.testing.assert_allclose(others["normalized_intensity"],
                               others["spot_intensity"] / reference.loc["g", "reference"],
                               rtol=1e-9)


def test_a_stack_too_sparse_for_a_psf_is_corrected_with_the_others_median(tmp_path,
                                                                           database_name):
    # One of four simulated stacks keeps only its six largest objects (granules, mostly):
    # too few single molecules to measure a PSF on. Extract corrects its bright objects
    # with the median PSF of the three others (what capture_corrections gives with that
    # PSF), stores that PSF with psf_objects 0, and says so.
    from rna_localization.apertures import aperture_intensities
    from rna_localization.capture import PSF_MIN_OBJECTS, capture_corrections
    from rna_localization.objects import object_voxels

    data, toml, config = simulated_dataset(tmp_path / "sim", database_name)
    sparse = sorted(pd.read_csv(data / "raw-data-metadata.csv")["name"])[1]
    path = data / "rna" / "segmentations" / f"{sparse}_seg.tif"
    labels = tifffile.imread(path)
    ids, sizes = np.unique(labels[labels > 0], return_counts=True)
    kept = ids[np.argsort(sizes)[-6:]]
    tifffile.imwrite(path, np.where(np.isin(labels, kept), labels, 0).astype(labels.dtype))
    with pytest.warns(steps.PipelineWarning,
                      match=rf"^1 image\(s\) hold too few single-molecule-like objects to measure "
                            rf"the PSF from \(at least {PSF_MIN_OBJECTS}\): rna {sparse}; their "
                            rf"bright objects are corrected with the median PSF"):
        report = steps.extract(config)
    assert len(report) == 8
    assert (report["status"] == "extracted").all()
    db = _db(toml)
    stored = db.query("SELECT name, psf_axial_um, psf_lateral_um, psf_objects FROM label_images "
                      "WHERE structure = 'rna' ORDER BY name").set_index("name")
    others = stored.drop(index=sparse)
    assert (others["psf_objects"] >= PSF_MIN_OBJECTS).all()
    median = others[["psf_axial_um", "psf_lateral_um"]].median().to_numpy()
    np.testing.assert_allclose(stored.loc[sparse, ["psf_axial_um", "psf_lateral_um"]]
                               .to_numpy(float), median, rtol=1e-12)
    assert stored.loc[sparse, "psf_objects"] == 0
    raw = tifffile.imread(data / "rna" / "raw-data" / f"{sparse}.tif")
    voxels = object_voxels(tifffile.imread(path))
    table = aperture_intensities(voxels, raw, spacing=config.spacing)
    expected = capture_corrections(voxels, raw, table, spacing=config.spacing, psf_um=median)
    objects = db.query("SELECT object_id, capture_correction FROM rna WHERE name = %s "
                       "ORDER BY object_id", (sparse,))
    assert objects["object_id"].tolist() == expected["object_id"].tolist()
    np.testing.assert_allclose(objects["capture_correction"], expected["capture_correction"],
                               rtol=1e-12)
    assert (objects["capture_correction"] > 1).any()


def test_with_no_psf_measured_anywhere_nothing_is_corrected_and_extract_says_so(dataset):
    # datagen's stacks hold blobs on uniform noise: no image has single molecules to
    # measure a PSF on, so none can lend one.
    from rna_localization.capture import PSF_MIN_OBJECTS

    with pytest.warns(steps.PipelineWarning,
                      match=r"^4 image\(s\) hold too few single-molecule-like objects to measure "
                            r"the PSF from \(at least 10\), and no other image of their structure "
                            r"measured one: rna img_00, rna img_01, rna img_02, rna img_03; "):
        steps.extract(load_config(dataset))
    db = _db(dataset)
    stored = db.query("SELECT psf_axial_um, psf_lateral_um, psf_objects FROM label_images "
                      "WHERE structure = 'rna'")
    assert stored[["psf_axial_um", "psf_lateral_um"]].isna().all(axis=None)
    assert (stored["psf_objects"] < PSF_MIN_OBJECTS).all()
    assert (db.query("SELECT capture_correction FROM rna")["capture_correction"] == 1).all()
