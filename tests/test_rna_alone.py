"""A data set of RNA alone (no second structure): init, segment, extract, normalize, run, doctor.

Real simulated TIFFs, a real PostgreSQL; molecule counts checked against an
oracle computed from the segmentation and raw files.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
from matplotlib.collections import PathCollection

from rna_localization import load_config, steps
from rna_localization.cli import main
from rna_localization.config import Config
from rna_localization.db import Database

import oracles
from notebook_runner import execute_notebook

INFO = "info: no second structure"
NOTEBOOKS = Path(__file__).resolve().parents[1] / "pipeline-notebooks"


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


def _simulated_rna_alone(folder: Path, *, keep_segmentations: bool) -> Path:
    from rna_localization.synthetic import simulate_dataset

    data = simulate_dataset(folder, n_images=2, shape=(14, 64, 64))
    shutil.rmtree(data / "centrosomes")
    if not keep_segmentations:
        shutil.rmtree(data / "rna" / "segmentations")
    (data / "pipeline.toml").unlink()
    return data


@pytest.fixture
def rna_alone(tmp_path, database_name):
    """A simulated data set with the centrosome channel and the RNA masks taken away."""
    return _simulated_rna_alone(tmp_path / "alone", keep_segmentations=False)


def _edit(path, old, new):
    text = path.read_text(encoding="utf-8")
    assert old in text, text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def _init_config(data: Path, database_name: str) -> Path:
    """`init`'s pipeline.toml, with method "total" over every object: an oracle needs only the files."""
    assert main(["init", str(data)]) == 0
    toml = data / "pipeline.toml"
    assert 'structure_2 = ""' in toml.read_text(encoding="utf-8")
    _edit(toml, 'name = "alone"', f'name = "{database_name}"')
    _edit(toml, 'method = "aperture"', 'method = "total"')
    _edit(toml, "upper_threshold = 40", "upper_threshold = 100000")
    _edit(toml, "lower_threshold = 10", "lower_threshold = 0")
    _edit(toml, "workers = 0 ", "workers = 1 ")
    return toml


def _oracle_objects(data: Path, names: list[str]) -> pd.DataFrame:
    """Every RNA object from the TIFFs, with its molecules: total intensity / the mean total
    intensity of every object of its image's rna_type (method "total", no area limits)."""
    metadata = pd.read_csv(data / "raw-data-metadata.csv")
    frames = []
    for name in names:
        labels = oracles.label(tifffile.imread(data / "rna" / "segmentations" / f"{name}_seg.tif"))
        raw = tifffile.imread(data / "rna" / "raw-data" / f"{name}.tif")
        frames.append(oracles.objects(labels, raw).assign(name=name))
    objects = pd.concat(frames, ignore_index=True).merge(metadata, on="name")
    reference = objects.groupby("rna_type")["total_intensity"].mean()
    objects["molecules"] = objects["total_intensity"] / objects["rna_type"].map(reference)
    return objects


def _check_molecules_per_image(path: Path, objects: pd.DataFrame, data: Path) -> None:
    metadata = pd.read_csv(data / "raw-data-metadata.csv").set_index("name")
    expected = objects.groupby("name").agg(objects=("object_id", "size"),
                                          molecules=("molecules", "sum"))
    counted = pd.read_csv(path).set_index("name")
    assert counted.index.tolist() == expected.index.tolist()
    assert (expected["objects"] > 5).all()
    np.testing.assert_array_equal(counted["objects"], expected["objects"])
    np.testing.assert_allclose(counted["molecules"], expected["molecules"], rtol=1e-9)
    assert counted["rna_type"].tolist() == metadata.loc[counted.index, "rna_type"].tolist()


def _check_image_figure(figure, objects: pd.DataFrame, name: str, spacing_xy: float) -> None:
    """The figure of image `name`: a dot on each oracle object, coloured by its molecules."""
    ax = next(a for a in figure.axes if a.get_xlabel() == "x (µm)")
    assert ax.get_title() == f"{name}: {(objects['name'] == name).sum()} rna objects"
    grey, dots = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert len(grey.get_offsets()) == 0  # every object has molecules
    assert ax.get_legend() is None  # nothing outlined: there is no second structure
    assert any(a.get_ylabel() == "molecules (normalized intensity)" for a in figure.axes)
    mine = objects[objects["name"] == name]
    centres = (mine[["centroid_x", "centroid_y"]].to_numpy() + 0.5) * spacing_xy
    offsets = np.asarray(dots.get_offsets())
    assert len(offsets) == len(mine)
    # Dots sit on the intensity centroid, within a pixel of the object's centroid.
    nearest = np.argmin(((offsets[:, None, :] - centres[None, :, :]) ** 2).sum(-1), axis=1)
    assert sorted(nearest) == list(range(len(mine)))  # one dot per object
    np.testing.assert_array_less(np.abs(offsets - centres[nearest]), spacing_xy)
    np.testing.assert_allclose(dots.get_array(), mine["molecules"].to_numpy()[nearest], rtol=1e-9)


def test_rna_alone_from_init_to_molecules_per_image(rna_alone, database_name, capsys):
    data = rna_alone
    toml = _init_config(data, database_name)
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
    assert main(["stats", "--config", str(toml)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(INFO), out
    assert out.count("\n") == 1, out  # one line, nothing else

    assert main(["run", "--config", str(toml)]) == 0
    out = capsys.readouterr().out
    assert out.count(INFO) == 1, out
    assert "molecules per image" in out

    objects = _oracle_objects(data, names)
    _check_molecules_per_image(config.output_dir / "data" / steps.MOLECULES_FILE, objects, data)

    db = Database.from_config(config)
    assert not [c for c in db.columns("rna") if "distance" in c]
    assert db.query("SELECT count(*) AS n FROM distance_measurements")["n"].iloc[0] == 0
    assert not (config.output_dir / "plots").exists()
    assert not (config.output_dir / "data" / steps.DISTRIBUTIONS_FILE).exists()
    # One image looked at: its objects coloured by molecules (the first by default).
    _check_image_figure(steps.plot_image_objects(config, db=db), objects, names[0], config.scale.xy)
    _check_image_figure(steps.plot_image_objects(config, names[1], db=db), objects, names[1],
                        config.scale.xy)
    with pytest.raises(ValueError, match=r"image 'nope' is not extracted for rna; extracted "
                                         r"images: " + ", ".join(names)):
        steps.plot_image_objects(config, "nope", db=db)

    assert main(["doctor", "--config", str(toml)]) == 0
    out = capsys.readouterr().out
    assert "✗" not in out, out
    assert "no problems found" in out, out


def _cell_outputs(notebook, source_start: str) -> list:
    cells = [c for c in notebook.cells if c.cell_type == "code" and c.source.startswith(source_start)]
    assert len(cells) == 1, f"expected one cell starting with {source_start!r}, found {len(cells)}"
    return cells[0].outputs


def _cell_stdout(notebook, source_start: str) -> str:
    return "".join(o.text for o in _cell_outputs(notebook, source_start)
                   if o.output_type == "stream" and o.name == "stdout")


def test_pipeline_notebook_runs_on_rna_alone(tmp_path, database_name):
    # The simulator's ideal masks as the segmentations: the oracle reads the same files.
    data = _simulated_rna_alone(tmp_path / "alone", keep_segmentations=True)
    toml = _init_config(data, database_name)
    config = load_config(toml)
    names = sorted(p.stem for p in (data / "rna" / "raw-data").glob("*.tif"))

    executed = execute_notebook(NOTEBOOKS / "pipeline.ipynb", tmp_path / "pipeline.ipynb",
                                parameters={"config_path": str(toml)}, cwd=NOTEBOOKS,
                                sockets=tmp_path / "kernel")

    # Each cell that needs a second structure says so in one line, and nothing else.
    for start in ("distances = steps.measure_distances", "steps.distance_summary",
                  "distributions = steps.compute_distributions", "figures = steps.make_plots",
                  "statistics = compute_statistics"):
        lines = _cell_stdout(executed, start).splitlines()
        assert len(lines) == 1, (start, lines)
        assert lines[0].startswith(INFO), (start, lines)
    assert INFO not in _cell_stdout(executed, "extracted = steps.extract")
    errors = [o for c in executed.cells if c.cell_type == "code" for o in c.outputs
              if o.output_type == "error"]
    assert not errors

    # Molecules per image, written by its cell, against the TIFFs.
    objects = _oracle_objects(data, names)
    _check_molecules_per_image(config.output_dir / "data" / steps.MOLECULES_FILE, objects, data)
    shown = [o for o in _cell_outputs(executed, "molecules = steps.count_molecules")
             if "text/html" in o.get("data", {})]
    assert len(shown) == 1
    assert all(name in shown[0]["data"]["text/html"] for name in names)

    # The image section draws one figure; the same call's dots are the oracle's molecules.
    pngs = [o for o in _cell_outputs(executed, "figure = steps.plot_image_objects")
            if "image/png" in o.get("data", {})]
    assert len(pngs) == 1
    db = Database.from_config(config)
    _check_image_figure(steps.plot_image_objects(config, db=db), objects, names[0], config.scale.xy)

    # What needs a second structure wrote nothing; the CSV export holds every object.
    output = config.output_dir
    assert not (output / "plots").exists()
    assert sorted(p.name for p in (output / "data").iterdir()) == [steps.MOLECULES_FILE]
    assert "centrosomes" not in db.tables()
    assert len(pd.read_csv(output / "backup" / "rna.csv")) == len(objects)
    images = pd.read_csv(output / "backup" / "images.csv").sort_values("name", ignore_index=True)
    expected = pd.read_csv(data / "raw-data-metadata.csv").sort_values("name", ignore_index=True)
    pd.testing.assert_frame_equal(images[expected.columns], expected)
