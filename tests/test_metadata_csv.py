"""The metadata CSV is read as written: no value turned missing, no name turned into a number,
no computed column overwritten, no group split by a stray space."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rna_localization import load_config, steps
from rna_localization.cli import main
from rna_localization.metadata import read_distributions_csv, read_metadata_csv

from helpers import database as _db

MISSING_WORDS = ["NA", "None", "null", "N/A", "nan"]


def _rename_image(root, old: str, new: str) -> None:
    for structure in ("rna", "centrosomes"):
        (root / structure / "raw-data" / f"{old}.tif").rename(root / structure / "raw-data" / f"{new}.tif")
        (root / structure / "segmentations" / f"{old}_seg.tif").rename(
            root / structure / "segmentations" / f"{new}_seg.tif")


# ------------------------------------------------------------------ reading
def test_words_pandas_takes_for_missing_are_values(tmp_path):
    csv = tmp_path / "meta.csv"
    csv.write_text("name,genotype,score\n" + "".join(
        f"{word},{word},{word}\n" for word in MISSING_WORDS), encoding="utf-8")
    table = read_metadata_csv(csv)
    assert table["name"].tolist() == MISSING_WORDS
    assert table["genotype"].tolist() == MISSING_WORDS
    assert table["score"].tolist() == MISSING_WORDS  # "nan" is a word, not a float
    assert not table.isna().any().any()


def test_names_and_codes_with_leading_zeros_stay_text(tmp_path):
    csv = tmp_path / "meta.csv"
    csv.write_text("name,plate,replicate,dose,flag\n001,007,1,0.5,true\n010,012,2,1e3,False\n",
                   encoding="utf-8")
    table = read_metadata_csv(csv)
    assert table["name"].tolist() == ["001", "010"]
    assert table["plate"].tolist() == ["007", "012"]
    assert table["replicate"].tolist() == [1, 2]
    assert table["replicate"].dtype == np.int64
    assert table["dose"].tolist() == [0.5, 1000.0]
    assert table["dose"].dtype == np.float64
    assert table["flag"].tolist() == [True, False]


def test_only_an_empty_cell_is_missing(tmp_path):
    csv = tmp_path / "meta.csv"
    csv.write_text("name,rna_type,replicate\nimg_00,,1\nimg_01,   ,\nimg_02,NA,3\n", encoding="utf-8")
    table = read_metadata_csv(csv)
    assert table["rna_type"].isna().tolist() == [True, True, False]
    assert table.loc[2, "rna_type"] == "NA"
    assert table["replicate"].isna().tolist() == [False, True, False]
    assert table.loc[2, "replicate"] == 3


def test_surrounding_spaces_are_dropped_from_values_and_column_names(tmp_path):
    csv = tmp_path / "meta.csv"
    csv.write_text('name , rna_type ,replicate\n img_00 ,"cen ", 1\nimg_01,cen,2 \n', encoding="utf-8")
    table = read_metadata_csv(csv)
    assert table.columns.tolist() == ["name", "rna_type", "replicate"]
    assert table["name"].tolist() == ["img_00", "img_01"]
    assert table["rna_type"].tolist() == ["cen", "cen"]
    assert table["replicate"].tolist() == [1, 2]


def test_columns_that_differ_only_by_spaces_are_refused(tmp_path):
    csv = tmp_path / "meta.csv"
    csv.write_text("name,cycle,cycle \nimg_00,nc13,nc14\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"meta\.csv has two columns of the same name"):
        read_metadata_csv(csv)


# ------------------------------------------------ through the whole pipeline
@pytest.fixture
def control_named_na(dataset):
    """img_00 renamed 001; the gapdh images (img_01, img_03) a control group named 'NA'."""
    root = dataset.parent
    _rename_image(root, "img_00", "001")
    table = pd.read_csv(root / "raw-data-metadata.csv")
    table.loc[table["name"] == "img_00", "name"] = "001"
    table.loc[table["rna_type"] == "gapdh", "rna_type"] = "NA"
    table.to_csv(root / "raw-data-metadata.csv", index=False)
    text = (root / "raw-data-metadata.csv").read_text(encoding="utf-8")
    assert "\n001,cen," in text  # as a spreadsheet would write it
    assert ",NA," in text
    dataset.write_text(dataset.read_text() + "\n[plot]\ndpi = 40\n")
    return dataset


def test_a_group_named_na_and_an_image_named_001_go_through_the_pipeline(control_named_na):
    config = load_config(control_named_na)
    results = steps.run(config)
    images = _db(control_named_na).query("SELECT name, rna_type FROM images ORDER BY name")
    assert images["name"].tolist() == ["001", "img_01", "img_02", "img_03"]
    assert images["rna_type"].tolist() == ["cen", "NA", "cen", "NA"]
    assert sorted(results["normalize"]["rna_type"]) == ["NA", "cen"]
    normalized = _db(control_named_na).query(
        "SELECT count(*) AS n FROM rna WHERE name IN ('img_01', 'img_03') AND normalized_intensity IS NULL")
    assert normalized["n"].iloc[0] == 0
    distributions = results["distributions"]
    assert set(distributions["name"]) == {"001", "img_01", "img_02", "img_03"}
    assert set(distributions.loc[distributions["rna_type"] == "NA", "name"]) == {"img_01", "img_03"}
    # Read back from the CSV (as `rna-localization plot` does): the same names and groups.
    written = read_distributions_csv(config.output_dir / "data" / steps.DISTRIBUTIONS_FILE)
    assert set(written["name"]) == {"001", "img_01", "img_02", "img_03"}
    assert not written["rna_type"].isna().any()
    assert set(written.loc[written["rna_type"] == "NA", "name"]) == {"img_01", "img_03"}
    pd.testing.assert_frame_equal(written[distributions.columns].reset_index(drop=True),
                                  distributions.reset_index(drop=True), check_dtype=False)
    assert steps.make_plots(config)  # from the CSV alone


def test_an_image_named_na_is_an_image(dataset):
    root = dataset.parent
    _rename_image(root, "img_02", "NA")
    table = pd.read_csv(root / "raw-data-metadata.csv")
    table.loc[table["name"] == "img_02", "name"] = "NA"
    table.to_csv(root / "raw-data-metadata.csv", index=False)
    config = load_config(dataset)
    steps.extract(config)
    stored = steps.load_metadata(config)
    assert "NA" in stored["name"].tolist()


def test_a_trailing_space_does_not_make_a_second_group(dataset):
    root = dataset.parent
    csv = root / "raw-data-metadata.csv"
    lines = csv.read_text(encoding="utf-8").splitlines()
    lines = [line.replace(",cen,", ",cen ,") if line.startswith("img_02") else line for line in lines]
    csv.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert ",cen ," in csv.read_text(encoding="utf-8")
    config = load_config(dataset)
    steps.extract(config)
    steps.measure_distances(config)
    steps.load_metadata(config)
    summary = steps.normalize(config)
    assert sorted(summary["rna_type"]) == ["cen", "gapdh"]
    assert _db(dataset).query("SELECT DISTINCT rna_type FROM images ORDER BY 1")["rna_type"].tolist() == [
        "cen", "gapdh"]


# ------------------------------------------------- computed columns are ours
@pytest.mark.parametrize("column", ["distance", "percent_total_rna", "percent_granule_rna", "Distance"])
def test_a_metadata_column_named_like_a_computed_one_is_refused_before_any_work(
        dataset, capsys, column):
    table = pd.read_csv(dataset.parent / "raw-data-metadata.csv")
    table[column] = 1.5
    table.to_csv(dataset.parent / "raw-data-metadata.csv", index=False)
    message = rf"raw-data-metadata\.csv has a column named '{column}', a column the distributions CSV computes"
    with pytest.raises(ValueError, match=message):
        steps.run(load_config(dataset))
    assert _db(dataset).tables() == []  # nothing extracted
    with pytest.raises(ValueError, match=message):
        steps.load_metadata(load_config(dataset))
    assert main(["metadata", "--config", str(dataset)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: "), err
    assert err.count("\n") == 1, err
    assert column in err


def test_an_images_table_with_a_computed_column_name_is_refused(dataset):
    """An images table from elsewhere (a restored dump) cannot overwrite `distance` either."""
    config = load_config(dataset)
    steps.extract(config)
    steps.measure_distances(config)
    steps.load_metadata(config)
    steps.normalize(config)
    with _db(dataset).transaction() as cursor:
        cursor.execute("ALTER TABLE images ADD COLUMN distance double precision DEFAULT 99")
    with pytest.raises(ValueError, match=r"images table has a column named 'distance'"):
        steps.compute_distributions(config, write=False)


# ------------------------------------------------- checked against the images before any work
def _edit_csv(config_path, edit) -> None:
    path = config_path.parent / "raw-data-metadata.csv"
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    edit(table)
    table.to_csv(path, index=False)


def _nothing_done(config_path) -> None:
    assert _db(config_path).tables() == []
    assert not (config_path.parent / "output").exists()


def test_a_misspelt_image_name_stops_run_before_any_work(dataset, capsys):
    def misspell(table):
        table.loc[table["name"] == "img_02", "name"] = "img_2"

    _edit_csv(dataset, misspell)
    assert main(["run", "--config", str(dataset)]) == 2
    error = capsys.readouterr().err
    assert error == (f"error: metadata CSV {dataset.parent / 'raw-data-metadata.csv'} line 4: "
                     f"image 'img_2' is in no structure's raw-data/ folder; did you mean "
                     f"'img_02'?\n")
    _nothing_done(dataset)


def test_an_empty_threshold_cell_stops_run_before_any_work(dataset, capsys):
    text = dataset.read_text(encoding="utf-8")
    dataset.write_text(text.replace(
        "distance_threshold = 2.0",
        'distance_threshold = { column = "cycle", nc13 = 2.0, nc14 = 3.0 }'), encoding="utf-8")

    def blank(table):
        table.loc[table["name"] == "img_03", "cycle"] = ""
        table.loc[table["name"] == "img_01", "cycle"] = "nc15"

    _edit_csv(dataset, blank)
    assert main(["run", "--config", str(dataset)]) == 2
    error = capsys.readouterr().err
    csv = dataset.parent / "raw-data-metadata.csv"
    assert error.count("\n") == 1
    assert (f"metadata CSV {csv} line 3: image 'img_01' has cycle = 'nc15', which "
            f"distribution.distance_threshold does not list (it has nc13, nc14)") in error
    assert (f"metadata CSV {csv} line 5: image 'img_03' has an empty 'cycle' cell, which "
            f"distribution.distance_threshold is looked up by; write one of nc13, nc14.") in error
    _nothing_done(dataset)


# ------------------------------------------------- CSVs as spreadsheets write them
def test_a_semicolon_separated_csv_is_read(tmp_path):
    csv = tmp_path / "meta.csv"
    csv.write_text("name;rna_type;ratio\nimg_00;cen;0.5\nimg_01;gapdh;1,5\n", encoding="utf-8")
    table = read_metadata_csv(csv)
    assert table.columns.tolist() == ["name", "rna_type", "ratio"]
    assert table["name"].tolist() == ["img_00", "img_01"]
    assert table["ratio"].tolist() == ["0.5", "1,5"]  # a decimal comma is text, not a number


def test_a_duplicated_name_header_names_both_columns(tmp_path):
    csv = tmp_path / "meta.csv"
    csv.write_text("name,rna_type,name\nimg_00,cen,a\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"meta\.csv has two columns of the same name, 'name' "
                                         r"\(columns 1 and 3\); rename or delete one of them\."):
        read_metadata_csv(csv)


def test_a_spreadsheets_empty_trailing_rows_and_columns_are_dropped(tmp_path):
    csv = tmp_path / "meta.csv"
    csv.write_text("name,rna_type,,\nimg_00,cen,,\nimg_01,gapdh,,\n,,,\n,,,\n", encoding="utf-8")
    table = read_metadata_csv(csv)
    assert table.to_dict("list") == {"name": ["img_00", "img_01"], "rna_type": ["cen", "gapdh"]}
    # A column without a name that holds values is still refused.
    csv.write_text("name,rna_type,\nimg_00,cen,x\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"has a column without a name \(column 3\)"):
        read_metadata_csv(csv)


def test_too_many_columns_for_a_table_are_named(tmp_path):
    csv = tmp_path / "meta.csv"
    header = ["name"] + [f"c{i}" for i in range(1699)]
    csv.write_text(",".join(header) + "\n" + ",".join(["img_00"] + ["1"] * 1699) + "\n",
                   encoding="utf-8")
    with pytest.raises(ValueError, match=r"meta\.csv has 1700 columns; the images table holds at "
                                         r"most 1599 \(PostgreSQL's limit of 1600"):
        read_metadata_csv(csv)
    # As many as the limit are read.
    csv.write_text(",".join(header[:1599]) + "\n" + ",".join(["img_00"] + ["1"] * 1598) + "\n",
                   encoding="utf-8")
    assert read_metadata_csv(csv).shape == (1, 1599)
