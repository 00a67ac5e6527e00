"""Hostile and mistaken input: one sentence naming the file or value, and the database untouched.

test_pipeline.py covers shape mismatches, missing segmentations, files that
are not TIFFs, truncated TIFFs, float segmentations, bad metadata CSVs and
unknown config keys; this file covers the rest of issue 7's list.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile

from rna_localization import load_config, steps
from rna_localization.cli import main
from rna_localization.db import Database
from rna_localization.db.backup import export_tables
from rna_localization.db.tables import (
    ID_STRIDE,
    delete_image,
    ensure_schema,
    ensure_structure_table,
    read_label_image,
    write_image_objects,
)
from rna_localization.objects import label_objects, measure_objects

from datagen import write_dataset
from helpers import database as _db
from helpers import table_bytes as _snapshot

HOSTILE = 'x"); DROP TABLE rna; --'


@pytest.fixture
def extracted(dataset, tmp_path):
    """The small data set, extracted; returns (config path, snapshot of every table)."""
    steps.extract(load_config(dataset))
    return dataset, _snapshot(dataset, tmp_path / "before")


def _assert_untouched(extracted, tmp_path) -> None:
    config_path, before = extracted
    assert _snapshot(config_path, tmp_path / "after") == before


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: "), err
    assert err.count("\n") == 1, err
    return err


# ------------------------------------------------------------------- TIFFs
def test_2d_tiff_is_named(extracted, tmp_path):
    raw = extracted[0].parent / "rna" / "raw-data" / "img_01.tif"
    tifffile.imwrite(raw, tifffile.imread(raw)[0])
    with pytest.raises(ValueError, match=r"img_01\.tif is a 2D image with shape \(40, 48\); a 3D"):
        steps.extract(load_config(extracted[0]), overwrite=True)
    _assert_untouched(extracted, tmp_path)


def test_2d_segmentation_is_named(extracted, tmp_path):
    seg = extracted[0].parent / "centrosomes" / "segmentations" / "img_02_seg.tif"
    tifffile.imwrite(seg, tifffile.imread(seg)[3])
    with pytest.raises(ValueError, match=r"img_02_seg\.tif is a 2D image"):
        steps.extract(load_config(extracted[0]))
    _assert_untouched(extracted, tmp_path)


def test_multichannel_zcyx_points_to_splitting_channels(extracted, tmp_path, capsys):
    raw = extracted[0].parent / "rna" / "raw-data" / "img_00.tif"
    stack = tifffile.imread(raw)
    tifffile.imwrite(raw, np.stack([stack, stack], axis=1), imagej=True, metadata={"axes": "ZCYX"})
    assert main(["run", "--config", str(extracted[0])]) == 2
    err = _one_line_error(capsys)
    assert "img_00.tif" in err
    assert "shape (8, 2, 40, 48)" in err
    assert "one TIFF per channel" in err
    assert "rna-localization import FILE --channels" in err
    assert "Split Channels" in err
    _assert_untouched(extracted, tmp_path)


# ---------------------------------------------------------------- layout
def test_empty_data_directory_is_named(tmp_path, database_name, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    config = empty / "pipeline.toml"
    config.write_text(f'[database]\nname = "{database_name}"\n[data]\ndata_dir = "."\n')
    assert main(["run", "--config", str(config)]) == 2
    assert f"data directory {empty} is empty" in _one_line_error(capsys)
    with pytest.raises(FileNotFoundError, match="is empty"):
        steps.extract(load_config(config))
    assert _db(config).tables() == []


def test_missing_data_directory_is_named_and_creates_nothing(tmp_path, database_name, capsys):
    config = tmp_path / "pipeline.toml"
    config.write_text('[database]\nurl = ""\n[data]\ndata_dir = "no_such_folder"\n')
    import os

    from rna_localization.db import ENV_URL

    server = os.environ.pop(ENV_URL)  # the embedded server would be started inside data_dir
    try:
        assert main(["extract", "--config", str(config)]) == 2
    finally:
        os.environ[ENV_URL] = server
    assert "no_such_folder does not exist" in _one_line_error(capsys)
    assert not (tmp_path / "no_such_folder").exists()


def test_structure_folder_without_raw_data_is_named(extracted, tmp_path):
    shutil.rmtree(extracted[0].parent / "centrosomes" / "raw-data")
    with pytest.raises(FileNotFoundError, match=r"centrosomes has no raw-data/ folder"):
        steps.run(load_config(extracted[0]))
    _assert_untouched(extracted, tmp_path)


def test_raw_data_folder_without_tiffs_is_named(extracted, tmp_path):
    for tif in (extracted[0].parent / "rna" / "raw-data").glob("*.tif"):
        tif.rename(tif.with_suffix(".tif.bak"))
    with pytest.raises(FileNotFoundError, match=r"rna/raw-data holds no \.tif files"):
        steps.extract(load_config(extracted[0]))
    _assert_untouched(extracted, tmp_path)


def test_tiffs_in_any_case_are_images_and_folders_are_not(dataset):
    root = dataset.parent
    (root / "rna" / "raw-data" / "img_01.tif").rename(root / "rna" / "raw-data" / "img_01.TIF")
    (root / "rna" / "segmentations" / "img_02_seg.tif").rename(
        root / "rna" / "segmentations" / "img_02_seg.Tiff")
    (root / "rna" / "raw-data" / "old runs.tif").mkdir()  # a folder, not a stack
    report = steps.extract(load_config(dataset))
    names = ["img_00", "img_01", "img_02", "img_03"]
    assert sorted(report["name"]) == sorted(names * 2)  # rna and centrosomes, each image once
    assert set(report["status"]) == {"extracted"}
    stored = _db(dataset).query("SELECT name, raw_path, segmentation_path FROM label_images "
                                "WHERE structure = 'rna' ORDER BY name")
    assert stored["name"].tolist() == names
    assert stored["raw_path"].iloc[1].endswith("img_01.TIF")
    assert stored["segmentation_path"].iloc[2].endswith("img_02_seg.Tiff")
    # Each image counted once, with the objects of its own segmentation.
    expected = label_objects(tifffile.imread(root / "rna" / "segmentations" / "img_02_seg.Tiff"))
    counted = _db(dataset).query("SELECT count(*) AS n FROM rna WHERE name = 'img_02'")["n"].iloc[0]
    assert counted == expected.max() > 0


@pytest.mark.parametrize("folder", ["raw-data", "segmentations"])
def test_one_image_in_two_files_is_refused_naming_both(extracted, tmp_path, capsys, folder):
    stem = "img_01" if folder == "raw-data" else "img_01_seg"
    tif = extracted[0].parent / "rna" / folder / f"{stem}.tif"
    shutil.copy(tif, tif.with_suffix(".tiff"))  # which one is the image? Double counted before
    assert main(["run", "--config", str(extracted[0])]) == 2
    error = _one_line_error(capsys)
    assert f"{tif} and {stem}.tiff in {tif.parent} are both image {stem!r}" in error
    _assert_untouched(extracted, tmp_path)


@pytest.mark.parametrize("kind", ["loop", "broken"])
def test_a_symbolic_link_loop_or_a_broken_link_is_named(extracted, tmp_path, capsys, kind):
    link = extracted[0].parent / "rna" / "raw-data" / "img_09.tif"
    if kind == "loop":
        link.symlink_to(link.name)  # points at itself
    else:
        link.symlink_to("/nonexistent/img_09.tif")
    assert main(["run", "--config", str(extracted[0])]) == 2
    error = _one_line_error(capsys)
    what = "a loop of symbolic links" if kind == "loop" else \
        "a broken symbolic link (to /nonexistent/img_09.tif)"
    assert error == f"error: {link} is {what}; remove it or point it at the TIFF stack it stands for.\n"
    _assert_untouched(extracted, tmp_path)


def test_segment_finds_images_as_the_pipeline_does(tmp_path):
    from rna_localization.segmentation import segment_folder

    raw = tmp_path / "raw"
    raw.mkdir()
    from rna_localization.io import write_stack
    from rna_localization.segmentation.quality import ImplausibleSegmentationWarning

    write_stack(raw / "a.TIF", np.zeros((4, 16, 16), np.uint16))
    write_stack(raw / "a.tif", np.zeros((4, 16, 16), np.uint16))
    with pytest.raises(ValueError, match=r"raw/a\.TIF and a\.tif in .* are both image 'a'"):
        segment_folder(raw, tmp_path / "seg", workflow="rna", qc=False, spacing=(0.2, 0.1, 0.1))
    (raw / "a.tif").unlink()
    (raw / "b.tiff").mkdir()
    with pytest.warns(ImplausibleSegmentationWarning, match="segmentation of a has no objects"):
        written = segment_folder(raw, tmp_path / "seg", workflow="rna", qc=False,
                                 spacing=(0.2, 0.1, 0.1))
    assert written == [tmp_path / "seg" / "a_seg.tif"]


# ---------------------------------------------------------------- config
@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("xy = 0.1", "xy = -0.1", r"scale\.xy must be a positive number of microns; got -0\.1"),
        ("z = 0.3", "z = 0", r"scale\.z must be a positive number of microns; got 0"),
        ("step_size = 0.1", "step_size = -0.05", r"distribution\.step_size must be a positive .* got -0\.05"),
        ("step_size = 0.1", "step_size = 0", r"distribution\.step_size must be a positive .* got 0"),
        ("distance_threshold = 2.0", "distance_threshold = 0.05",
         r"distribution\.distance_threshold = 0\.05 must be at least distribution\.step_size \(0\.1\)"),
        ("distance_threshold = 2.0", 'distance_threshold = { column = "cycle", nc13 = 2.0, nc14 = 0.01 }',
         r"distribution\.distance_threshold\.nc14 = 0\.01 must be at least"),
        ("distance_threshold = 2.0", "distance_threshold = -1.0", r"-1\.0 must be at least"),
        ("xy = 0.1", 'xy = "0.1"', r"scale\.xy in .*pipeline\.toml must be a number; got '0\.1'"),
        ("[normalization]", f'[normalization]\ngroup_by = "{HOSTILE.replace(chr(34), chr(92) + chr(34))}"',
         "normalization.group_by .* is not a plain identifier"),
    ],
)
def test_bad_config_value_is_named_and_nothing_runs(extracted, tmp_path, capsys, old, new, message):
    config = extracted[0]
    text = config.read_text()
    assert old in text
    config.write_text(text.replace(old, new))
    with pytest.raises(ValueError, match=message):
        load_config(config)
    assert main(["run", "--config", str(config)]) == 2
    _one_line_error(capsys)
    config.write_text(text)
    _assert_untouched(extracted, tmp_path)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_voxels_in_a_raw_stack_are_named_and_that_image_not_written(
        dataset, capsys, bad):
    """One NaN would make its group's single-molecule reference infinite: every count 0."""
    raw = dataset.parent / "rna" / "raw-data" / "img_02.tif"
    image = tifffile.imread(raw).astype(np.float32)
    image[3, 10, 4:7] = bad
    tifffile.imwrite(raw, image)
    with pytest.raises(ValueError, match=r"img_02\.tif has 3 voxels that are NaN or infinite"):
        steps.extract(load_config(dataset))
    db = _db(dataset)
    assert db.query("SELECT count(*) AS n FROM rna WHERE name = 'img_02'")["n"].iloc[0] == 0
    assert db.query("SELECT count(*) AS n FROM label_images WHERE structure = 'rna' "
                    "AND name = 'img_02'")["n"].iloc[0] == 0
    capsys.readouterr()
    assert main(["extract", "--config", str(dataset)]) == 2
    last = capsys.readouterr().err.rstrip("\n").split("\n")[-1]  # after the progress bar
    assert last.startswith("error: ")
    assert "img_02.tif has 3 voxels that are NaN or infinite" in last


def test_finite_float_raw_stack_is_extracted(dataset):
    raw = dataset.parent / "rna" / "raw-data" / "img_02.tif"
    tifffile.imwrite(raw, tifffile.imread(raw).astype(np.float32) / 7)
    report = steps.extract(load_config(dataset))
    assert set(report["status"]) == {"extracted"}
    totals = _db(dataset).query("SELECT total_intensity FROM rna WHERE name = 'img_02'")
    assert len(totals) > 0
    assert np.isfinite(totals["total_intensity"]).all()


# ----------------------------------------------------- metadata CSV headers
@pytest.mark.parametrize("header", ["cell cycle", "cycle-2", "2nd_cycle", "ρ"])
def test_metadata_header_that_is_not_an_identifier_is_named(extracted, tmp_path, header):
    config = load_config(extracted[0])
    steps.load_metadata(config)
    before = _snapshot(extracted[0], tmp_path / "before_metadata")
    table = pd.read_csv(config.metadata_path)
    table[header] = 1
    table.to_csv(config.metadata_path, index=False)
    with pytest.raises(ValueError, match=rf"raw-data-metadata\.csv: '{header}' is not a plain identifier"):
        steps.load_metadata(config)
    assert _snapshot(extracted[0], tmp_path / "after_metadata") == before


def test_metadata_column_without_a_header_is_named(dataset):
    config = load_config(dataset)
    config.metadata_path.write_text("name,rna_type,,cycle\nimg_00,cen,1,nc13\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"raw-data-metadata\.csv has a column without a name \(column 3\)"):
        steps.load_metadata(config)


# ------------------------------------------------------ quoted identifiers
def test_hostile_structure_name_is_quoted_at_the_database_layer(dataset):
    """Below the config's check, every statement quotes the name: a table of that name, nothing dropped."""
    db = _db(dataset)
    root = dataset.parent
    label_image = label_objects(tifffile.imread(root / "rna" / "segmentations" / "img_00_seg.tif"))
    objects = measure_objects(label_image, tifffile.imread(root / "rna" / "raw-data" / "img_00.tif"))
    with db.transaction() as cursor:
        ensure_schema(cursor)
        for structure in ("rna", HOSTILE):
            ensure_structure_table(cursor, structure)
            assert write_image_objects(cursor, structure, "img_00", objects, label_image, (0.3, 0.1, 0.1))
    with db.transaction() as cursor:
        stored = read_label_image(cursor, HOSTILE, "img_00")
    np.testing.assert_array_equal(stored.labels, label_image)
    assert set(db.tables()) == {"rna", HOSTILE, "label_images"} | {
        "distance_measurements", "image_numbers", "normalized_images", "normalization_references"}
    rows = db.query('SELECT * FROM "x""); DROP TABLE rna; --" ORDER BY id')
    # img_00 is the first image numbered: ids 1 * ID_STRIDE + object_id, in object_id order.
    assert rows["id"].tolist() == (ID_STRIDE + rows["object_id"]).tolist()
    assert rows["object_id"].tolist() == sorted(objects["object_id"])
    with db.transaction() as cursor:
        delete_image(cursor, HOSTILE, "img_00")
    assert len(db.query("SELECT * FROM rna")) == len(objects)


def test_hostile_image_name_is_a_value_not_sql(tmp_path, database_name):
    """File names travel as bound values: quotes and semicolons in them are just characters."""
    hostile = "o'brien\"); DROP TABLE rna; --"
    config = write_dataset(tmp_path / "data", database_name=database_name, toml_extra="\n[plot]\ndpi = 40")
    root = config.parent
    for structure in ("rna", "centrosomes"):
        (root / structure / "raw-data" / "img_00.tif").rename(root / structure / "raw-data" / f"{hostile}.tif")
        (root / structure / "segmentations" / "img_00_seg.tif").rename(
            root / structure / "segmentations" / f"{hostile}_seg.tif")
    table = pd.read_csv(root / "raw-data-metadata.csv")
    table.loc[table["name"] == "img_00", "name"] = hostile
    table.to_csv(root / "raw-data-metadata.csv", index=False)
    results = steps.run(load_config(config))
    assert hostile in set(results["distributions"]["name"])
    db = _db(config)
    assert set(db.tables()) == {"rna", "centrosomes", "images", "label_images", "distance_measurements",
        "image_numbers", "normalized_images", "normalization_references"}
    names = set(db.query("SELECT DISTINCT name FROM rna")["name"])
    assert names == {hostile, "img_01", "img_02", "img_03"}
    assert hostile in set(db.query("SELECT name FROM images")["name"])


def test_hostile_database_name_is_refused(dataset, database_name):
    escaped = HOSTILE.replace('"', '\\"')
    dataset.write_text(dataset.read_text().replace(f'name = "{database_name}"', f'name = "{escaped}"'))
    with pytest.raises(ValueError, match=r"database\.name .* is not a plain identifier"):
        _db(dataset)
    with pytest.raises(ValueError, match="database name .* is not a plain identifier"):
        Database("dbname=postgres").with_name(HOSTILE)


# ------------------------------------------------------------- writing
def test_export_to_a_file_is_named(extracted, tmp_path, capsys):
    target = tmp_path / "tables.csv"
    target.write_text("keep me\n", encoding="utf-8")
    assert main(["export", "--config", str(extracted[0]), "--to", str(target)]) == 2
    assert _one_line_error(capsys) == (
        f"error: {target} is a file, not a folder: the export writes one CSV per table into a "
        f"folder; give a folder's name (it is created if missing).\n")
    assert target.read_text(encoding="utf-8") == "keep me\n"


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
def test_a_full_disk_names_the_file_being_written(extracted, tmp_path, capsys):
    import os

    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "rna.csv").write_text("the previous export\n", encoding="utf-8")
    # Every write to /dev/full fails with ENOSPC, as on a full disk: the export's
    # temporary file for rna.csv is made to be it.
    (folder / f"rna.csv.{os.getpid()}.part").symlink_to("/dev/full")
    with pytest.raises(OSError, match=rf"no space left on the disk \(or quota\) to write "
                                      rf"{folder / 'rna.csv'}: free some space") as caught:
        export_tables(_db(extracted[0]), folder)
    assert caught.value.errno == 28  # ENOSPC
    assert (folder / "rna.csv").read_text(encoding="utf-8") == "the previous export\n"
    assert not list(folder.glob("*.part"))
