"""A data set of RNA alone (no second structure): init, segment, extract, normalize, run, doctor.

Real simulated TIFFs, a real PostgreSQL; molecule counts checked against an
oracle computed from the segmentation and raw files.
"""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import tifffile

from rna_localization import load_config, steps
from rna_localization.cli import main
from rna_localization.config import Config
from rna_localization.db import Database

import oracles

INFO = "info: no second structure"


def test_one_structure_means_no_structure_2_unless_one_is_named():
    alone = Config.from_dict({"data": {"data_dir": "/d", "structures": ["rna"]}})
    assert alone.distances.structure_2 == ""
    assert not alone.has_structure_2
    explicit = Config.from_dict({"data": {"data_dir": "/d", "structures": ["rna", "nuclei"]},
                                 "distances": {"structure_2": ""}})
    assert not explicit.has_structure_2
    two = Config.from_dict({"data": {"data_dir": "/d"}})  # the defaults: rna and centrosomes
    assert (two.distances.structure_2, two.has_structure_2) == ("centrosomes", True)
    with pytest.raises(ValueError, match=r"distances\.structure_2 = 'centrosomes' is not in "
                                         r"data\.structures \['rna'\]\. For a data set of one "
                                         r"structure alone, set distances\.structure_2 = \"\""):
        Config.from_dict({"data": {"data_dir": "/d", "structures": ["rna"]},
                          "distances": {"structure_2": "centrosomes"}})


@pytest.fixture
def rna_alone(tmp_path, database_name):
    """A simulated data set with the centrosome channel and the RNA masks taken away."""
    from rna_localization.synthetic import simulate_dataset

    data = simulate_dataset(tmp_path / "alone", n_images=2, shape=(14, 64, 64))
    shutil.rmtree(data / "centrosomes")
    shutil.rmtree(data / "rna" / "segmentations")
    (data / "pipeline.toml").unlink()
    return data


def _edit(path, old, new):
    text = path.read_text(encoding="utf-8")
    assert old in text, text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def test_rna_alone_from_init_to_molecules_per_image(rna_alone, database_name, capsys):
    data = rna_alone
    assert main(["init", str(data)]) == 0
    toml = data / "pipeline.toml"
    text = toml.read_text(encoding="utf-8")
    assert 'structure_2 = ""' in text
    _edit(toml, 'name = "alone"', f'name = "{database_name}"')
    # Method "total" over every object: an oracle needs only the files.
    _edit(toml, 'method = "aperture"', 'method = "total"')
    _edit(toml, "upper_threshold = 40", "upper_threshold = 100000")
    _edit(toml, "lower_threshold = 10", "lower_threshold = 0")
    _edit(toml, "workers = 0 ", "workers = 1 ")
    config = load_config(toml)
    assert config.data.structures == ("rna",)
    assert not config.has_structure_2
    capsys.readouterr()

    assert main(["segment", "--config", str(toml)]) == 0
    names = sorted(p.stem for p in (data / "rna" / "raw-data").glob("*.tif"))
    assert len(names) == 2
    for name in names:
        assert (data / "rna" / "segmentations" / f"{name}_seg.tif").is_file()
    assert main(["extract", "--config", str(toml)]) == 0
    assert main(["metadata", "--config", str(toml)]) == 0
    assert main(["normalize", "--config", str(toml)]) == 0
    capsys.readouterr()

    assert main(["distances", "--config", str(toml)]) == 0
    out = capsys.readouterr().out
    assert out.count(INFO) == 1, out
    assert out.strip().count("\n") == 0, out  # that one line, nothing else
    assert main(["distributions", "--config", str(toml)]) == 0
    assert capsys.readouterr().out.count(INFO) == 1

    assert main(["run", "--config", str(toml)]) == 0
    out = capsys.readouterr().out
    assert out.count(INFO) == 1, out
    assert "molecules per image" in out

    # Oracle: objects from the segmentations, molecules = total intensity / the mean
    # total intensity of every object of the image's rna_type.
    metadata = pd.read_csv(data / "raw-data-metadata.csv")
    frames = []
    for name in names:
        labels = oracles.label(tifffile.imread(data / "rna" / "segmentations" / f"{name}_seg.tif"))
        raw = tifffile.imread(data / "rna" / "raw-data" / f"{name}.tif")
        frames.append(oracles.objects(labels, raw).assign(name=name))
    objects = pd.concat(frames, ignore_index=True).merge(metadata, on="name")
    reference = objects.groupby("rna_type")["total_intensity"].mean()
    objects["molecules"] = objects["total_intensity"] / objects["rna_type"].map(reference)
    expected = objects.groupby("name").agg(objects=("object_id", "size"),
                                          molecules=("molecules", "sum"))
    counted = pd.read_csv(config.output_dir / "data" / steps.MOLECULES_FILE).set_index("name")
    assert counted.index.tolist() == names
    assert (expected["objects"] > 5).all()
    np.testing.assert_array_equal(counted["objects"], expected["objects"])
    np.testing.assert_allclose(counted["molecules"], expected["molecules"], rtol=1e-9)
    assert counted["rna_type"].tolist() == metadata.set_index("name").loc[names, "rna_type"].tolist()

    db = Database.from_config(config)
    assert not [c for c in db.columns("rna") if "distance" in c]
    assert db.query("SELECT count(*) AS n FROM distance_measurements")["n"].iloc[0] == 0
    assert not (config.output_dir / "plots").exists()
    assert not (config.output_dir / "data" / steps.DISTRIBUTIONS_FILE).exists()
    with pytest.raises(ValueError, match="no second structure .* Name the second structure"):
        steps.plot_image_objects(config, db=db)

    assert main(["doctor", "--config", str(toml)]) == 0
    out = capsys.readouterr().out
    assert "✗" not in out, out
    assert "no problems found" in out, out
