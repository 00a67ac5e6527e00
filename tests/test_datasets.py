"""Data sets: manifest checksums, loading, and refusal of altered or missing files."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile

from rna_localization import datasets
from rna_localization.synthetic import SIMULATOR_VERSION, simulate_dataset

SHAPE = (14, 64, 64)


@pytest.fixture
def folder(tmp_path):
    return simulate_dataset(tmp_path / "data", n_images=4, seed=3, shape=SHAPE)


def test_manifest_lists_every_data_file_with_its_sha256(folder):
    manifest = json.loads((folder / "manifest.json").read_text())
    on_disk = {
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.is_file() and p.name not in ("manifest.json", "pipeline.toml")
    }
    assert set(manifest["files"]) == on_disk
    for relative, digest in manifest["files"].items():
        assert hashlib.sha256((folder / relative).read_bytes()).hexdigest() == digest
    generator = manifest["generator"]
    assert generator["simulator_version"] == SIMULATOR_VERSION
    assert (generator["seed"], generator["n_images"], generator["shape"]) == (3, 4, list(SHAPE))
    assert manifest["structures"] == ["rna", "centrosomes"]


def test_same_seed_writes_the_same_bytes(tmp_path, folder):
    again = simulate_dataset(tmp_path / "again", n_images=4, seed=3, shape=SHAPE)
    other = simulate_dataset(tmp_path / "other", n_images=4, seed=4, shape=SHAPE)
    files = json.loads((folder / "manifest.json").read_text())["files"]
    assert json.loads((again / "manifest.json").read_text())["files"] == files
    other_files = json.loads((other / "manifest.json").read_text())["files"]
    assert other_files["rna/raw-data/cen_nc13_r1_01.tif"] != files["rna/raw-data/cen_nc13_r1_01.tif"]


def test_load_returns_metadata_and_absolute_paths(folder):
    table = datasets.load(folder)
    metadata = pd.read_csv(folder / "raw-data-metadata.csv")
    pd.testing.assert_frame_equal(table[list(metadata.columns)], metadata)
    for structure in ("rna", "centrosomes"):
        for kind in ("raw", "segmentation"):
            for name, value in zip(table["name"], table[f"{structure}_{kind}"], strict=True):
                path = Path(value)
                assert path.is_absolute()
                assert path.is_file()
                assert path.parent.parent.name == structure
                assert path.name == (f"{name}.tif" if kind == "raw" else f"{name}_seg.tif")
    image = tifffile.imread(table.loc[0, "rna_raw"])
    assert image.shape == SHAPE
    assert image.dtype == np.uint16


def test_an_altered_file_is_named(folder):
    target = folder / "rna" / "segmentations" / "gapdh_nc14_r1_01_seg.tif"
    data = bytearray(target.read_bytes())
    data[-1] ^= 0xFF
    target.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"rna/segmentations/gapdh_nc14_r1_01_seg\.tif.*checksum"):
        datasets.load(folder)
    # Without verification only existence is checked.
    assert len(datasets.load(folder, verify=False)) == 4


def test_an_edited_truth_table_is_named(folder):
    with open(folder / "truth" / "molecules.csv", "a") as handle:
        handle.write("\n")
    with pytest.raises(ValueError, match=r"truth/molecules\.csv"):
        datasets.load(folder)


def test_a_missing_file_is_named_even_without_verification(folder):
    (folder / "centrosomes" / "raw-data" / "cen_nc14_r1_01.tif").unlink()
    with pytest.raises(ValueError, match=r"centrosomes/raw-data/cen_nc14_r1_01\.tif is missing"):
        datasets.load(folder, verify=False)


def test_editing_pipeline_toml_keeps_the_data_set_valid(folder):
    toml = folder / "pipeline.toml"
    toml.write_text(toml.read_text().replace("workers = 0", "workers = 1"))
    assert len(datasets.load(folder)) == 4


def test_a_folder_without_manifest_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"no manifest\.json"):
        datasets.load(tmp_path)


def test_a_broken_manifest_is_refused(folder):
    (folder / "manifest.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        datasets.load(folder)


def test_an_image_missing_from_the_manifest_is_refused(folder):
    manifest_path = folder / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    del manifest["files"]["centrosomes/segmentations/cen_nc13_r1_01_seg.tif"]
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=r"does not list centrosomes/segmentations/cen_nc13_r1_01_seg\.tif"):
        datasets.load(folder)


def test_write_manifest_refuses_files_outside_the_folder(tmp_path):
    inside = tmp_path / "set"
    inside.mkdir()
    outside = tmp_path / "elsewhere.txt"
    outside.write_text("x")
    with pytest.raises(ValueError, match="is not inside the data set folder"):
        datasets.write_manifest(inside, [outside], structures=["rna"])


def test_simulate_dataset_refuses_a_foreign_non_empty_folder(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty"):
        simulate_dataset(tmp_path, n_images=1, shape=SHAPE)


def test_simulate_dataset_can_rewrite_its_own_folder(folder):
    before = json.loads((folder / "manifest.json").read_text())["files"]
    simulate_dataset(folder, n_images=4, seed=3, shape=SHAPE)
    assert json.loads((folder / "manifest.json").read_text())["files"] == before


def test_simulate_command_takes_the_microscope(tmp_path, capsys):
    from rna_localization.cli import main
    from rna_localization.config import load_config
    from rna_localization.io import read_voxel_size

    out = tmp_path / "wf"
    assert main(["simulate", "--out", str(out), "--images", "1", "--shape", "12", "32", "32",
                 "--preset", "widefield"]) == 0
    config = load_config(out / "pipeline.toml")
    assert (config.scale.z, config.scale.xy) == (0.3, 0.11)
    datasets.load(out)  # the checksums hold
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["generator"]["preset"] == "widefield"
    assert manifest["generator"]["spacing"] == [0.3, 0.11, 0.11]
    raw = next(out.glob("rna/raw-data/*.tif"))
    np.testing.assert_allclose(read_voxel_size(raw), (0.3, 0.11, 0.11))
    # A name the simulator does not know stops both commands before anything is written.
    capsys.readouterr()
    assert main(["simulate", "--out", str(tmp_path / "bad"), "--preset", "widefeld"]) == 2
    assert main(["demo", "--out", str(tmp_path / "bad"), "--preset", "widefeld"]) == 2
    assert "preset must be one of ['widefield', 'confocal']; got 'widefeld'" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
