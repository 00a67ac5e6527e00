"""The notebooks: committed without outputs, and run headless (papermill) on a real PostgreSQL.

Each papermill run starts a kernel (seconds), so the pipeline notebook runs
twice only: once with its own parameter cell (pointed at the test server as a
"lab server" URL, and checked against the files), once with ``config_path``
(checked against ``rna-localization run`` on an identical data set).
"""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
import tifffile
from psycopg2.extensions import make_dsn

from rna_localization import load_config
from rna_localization.cli import main
from rna_localization.db import Database
from rna_localization.db.backup import export_tables
from rna_localization.steps import DISTRIBUTIONS_FILE, MOLECULES_FILE

import oracles
from datagen import write_dataset
from notebook_runner import execute_notebook

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "pipeline-notebooks"
#: Folders never searched for notebooks: environments, git, Jupyter's autosaves, caches.
SKIPPED_FOLDERS = {".venv", "venv", ".git", ".ipynb_checkpoints", "node_modules", "__pycache__"}


def _repository_notebooks() -> list[Path]:
    found = []
    for folder, subfolders, files in os.walk(REPO):
        subfolders[:] = sorted(d for d in subfolders
                               if d not in SKIPPED_FOLDERS and not d.startswith("."))
        found += [Path(folder, name) for name in sorted(files) if name.endswith(".ipynb")]
    return found


ALL_NOTEBOOKS = _repository_notebooks()


def _execute(notebook: str, output: Path, parameters: dict):
    """Run a notebook of pipeline-notebooks/ as Jupyter would (from its folder); return it executed."""
    return execute_notebook(NOTEBOOKS / notebook, output, parameters=parameters, cwd=NOTEBOOKS,
                            sockets=output.parent / "kernel")


def _outputs(notebook, source_start: str) -> list:
    """Outputs of the one code cell whose source starts with `source_start`."""
    cells = [c for c in notebook.cells
             if c.cell_type == "code" and c.source.startswith(source_start)]
    assert len(cells) == 1, f"expected one cell starting with {source_start!r}, found {len(cells)}"
    return cells[0].outputs


def _stdout(outputs) -> str:
    return "".join(o.text for o in outputs if o.output_type == "stream" and o.name == "stdout")


def _pngs(outputs) -> list:
    return [o for o in outputs if "image/png" in o.get("data", {})]


def _count(db: Database, table: str) -> int:
    return int(db.query(f'SELECT count(*) AS n FROM "{table}"')["n"][0])


# ------------------------------------------------------------ committed form
def test_the_notebooks_are_found():
    names = {path.relative_to(REPO).as_posix() for path in ALL_NOTEBOOKS}
    assert {"pipeline-notebooks/pipeline.ipynb", "pipeline-notebooks/custom-analysis.ipynb"} <= names


@pytest.mark.parametrize("path", ALL_NOTEBOOKS, ids=lambda p: p.relative_to(REPO).as_posix())
def test_notebook_is_committed_without_outputs(path):
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    dirty = [
        index for index, cell in enumerate(notebook.cells)
        if cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None)
    ]
    assert not dirty, (
        f"{path.relative_to(REPO)}: code cells {dirty} keep outputs or execution counts; strip them "
        f"with `jupyter nbconvert --clear-output --inplace {path.relative_to(REPO)}`."
    )


@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob("*.ipynb")), ids=lambda p: p.name)
def test_pipeline_notebooks_start_with_a_papermill_parameters_cell(path):
    notebook = nbformat.read(path, as_version=4)
    first_code = next(c for c in notebook.cells if c.cell_type == "code")
    assert "parameters" in first_code.metadata.get("tags", [])
    assert len([c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]) == 1


# ------------------------------------------------------------------ execution
def test_pipeline_notebook_with_its_parameter_cell(tmp_path, database_name, postgres_server):
    data = write_dataset(tmp_path / "data", database_name="not_this_one").parent
    # The test server given as a lab server's address (no database in it: database_name says which).
    server = {key: value for key, value in Database(postgres_server).params.items() if key != "dbname"}
    executed = _execute("pipeline.ipynb", tmp_path / "pipeline.ipynb", {
        "database_url": make_dsn(**server), "database_name": database_name, "data_dir": str(data),
        "xy": 0.1, "z": 0.3, "workers": 2, "lower_threshold": 1, "upper_threshold": 20,
        "method": "total", "distance_threshold": 2.0, "step_size": 0.1, "col": "cycle",
        "row": "replicate", "dpi": 100, "show_image": "img_01", "do_backup": True,
    })
    db = Database(postgres_server).with_name(database_name)
    setup = _stdout(_outputs(executed, "import pandas as pd"))
    assert setup.startswith("Settings: from the parameter cell (config_path is None).\n")
    assert f"/{database_name}" in setup
    assert "password" not in setup

    # Two workers: a Dask cluster, whose dashboard line is information (stdout), not red stderr.
    extract_outputs = _outputs(executed, "extracted = steps.extract")
    assert "Dask dashboard: http://127.0.0.1:" in _stdout(extract_outputs)
    assert not [o for o in extract_outputs if o.output_type == "stream" and o.name == "stderr"
                and "Dask" in o.text]

    # The database, against the files.
    metadata = pd.read_csv(data / "raw-data-metadata.csv")
    images = db.query("SELECT name, rna_type, cycle, replicate FROM images ORDER BY name")
    pd.testing.assert_frame_equal(images, metadata.sort_values("name", ignore_index=True))
    for structure in ("rna", "centrosomes"):
        counts = db.query(f'SELECT name, count(*) AS n FROM "{structure}" GROUP BY name ORDER BY name')
        expected = [
            len(np.unique(oracles.label(tifffile.imread(
                data / structure / "segmentations" / f"{name}_seg.tif")))) - 1
            for name in counts["name"]
        ]
        assert counts["name"].tolist() == sorted(metadata["name"])
        assert counts["n"].tolist() == expected
    complete = db.query("SELECT count(*) AS objects, count(distance_to_centrosomes) AS distances, "
                        "count(centrosomes_id) AS ids, count(normalized_intensity) AS molecules FROM rna")
    assert complete.iloc[0].tolist() == [complete["objects"][0]] * 4
    assert complete["objects"][0] > 50

    # The distributions CSV.
    output = data / "output"
    distributions = pd.read_csv(output / "data" / DISTRIBUTIONS_FILE)
    assert distributions.columns.tolist() == [
        "distance", "percent_total_rna", "percent_granule_rna", "name", "rna_type", "cycle", "replicate",
        "expected_percent_total_rna", "enrichment"]
    assert (distributions.groupby("name")["expected_percent_total_rna"].last() == 100).all()
    # The statistics section: one row per pair of RNA types and test, images behind each.
    tests = pd.read_csv(output / "data" / "stats_tests.csv")
    assert set(tests["test"]) == {"auc", "max_curve_difference"}
    assert (tests["n_a"] + tests["n_b"] <= distributions["name"].nunique()).all()
    assert sorted(distributions["name"].unique()) == sorted(metadata["name"])
    for name, curve in distributions.groupby("name"):
        np.testing.assert_allclose(np.diff(curve["distance"]), 0.1, err_msg=name)
        assert curve["distance"].iloc[-1] == pytest.approx(2.0), name
        assert curve["percent_total_rna"].iloc[-1] == pytest.approx(100.0), name
        assert (curve["percent_granule_rna"] <= curve["percent_total_rna"] + 1e-9).all(), name

    # The figures: on disk, and inline in the notebook.
    for measure in ("percent_total_rna", "percent_granule_rna"):
        assert (output / "plots" / f"{measure}.pdf").read_bytes().startswith(b"%PDF")
        assert (output / "plots" / f"{measure}.png").read_bytes().startswith(b"\x89PNG")
    assert len(_pngs(_outputs(executed, "figures = steps.make_plots"))) == 2
    # One image looked at: its objects on its raw stack, and the histograms.
    assert len(_pngs(_outputs(executed, "figure = steps.plot_image_objects"))) == 1

    # The CSV export: one file per table, every row.
    backup = output / "backup"
    tables = db.tables()
    assert set(tables) == {"rna", "centrosomes", "images", "label_images", "distance_measurements",
        "image_numbers", "normalized_images", "normalization_references"}
    for table in tables:
        assert len(pd.read_csv(backup / f"{table}.csv")) == _count(db, table), table

    # The backup (do_backup = True), restored into a second database with the same rows.
    assert (backup / f"{database_name}.dump").stat().st_size > 0
    restored = db.with_name(f"{database_name}_restored")
    assert restored.tables() == tables
    for table in tables:
        assert _count(restored, table) == _count(db, table), table
    backup_outputs = _outputs(executed, "if do_backup:")
    assert "restored into postgresql://" in _stdout(backup_outputs)
    comparison = [o for o in backup_outputs if "text/plain" in o.get("data", {})]
    assert len(comparison) == 1
    assert "restored" in comparison[0]["data"]["text/plain"]


def test_pipeline_notebook_with_config_path_matches_the_command_line(tmp_path, database_name):
    # Two identical data sets (same seed), on two databases.
    notebook_config = write_dataset(tmp_path / "notebook", database_name=database_name)
    cli_config = write_dataset(tmp_path / "cli", database_name=f"{database_name}_cli")

    executed = _execute("pipeline.ipynb", tmp_path / "pipeline.ipynb",
                        {"config_path": str(notebook_config)})
    assert main(["run", "--config", str(cli_config)]) == 0

    # The settings' origin, and the parameter cell's values the file overrides, are printed.
    setup = _stdout(_outputs(executed, "import pandas as pd")).splitlines()
    assert setup[0] == (f"Settings: every value comes from {notebook_config} (config_path is set); "
                        f"the values in the parameter cell are not used.")
    for line in [f'  database_name = "{database_name}"   (the cell has "demo")',
                 "  xy = 0.1   (the cell has 0.065)",
                 '  method = "total"   (the cell has "aperture")',
                 '  distance = "voxel"   (the cell has "centroid")',
                 "  z = 0.3   (the cell has 0.2)"]:
        assert line in setup
    assert not any(line.startswith("  structures") for line in setup)  # the same in both

    exports = {}
    for label, config_path in [("notebook", notebook_config), ("cli", cli_config)]:
        db = Database.from_config(load_config(config_path))
        export_tables(db, tmp_path / f"export-{label}")
        exports[label] = tmp_path / f"export-{label}"
    for table in ("rna", "centrosomes", "images", "distance_measurements"):
        notebook_csv = (exports["notebook"] / f"{table}.csv").read_text(encoding="utf-8")
        assert notebook_csv.count("\n") > 1, table
        assert notebook_csv == (exports["cli"] / f"{table}.csv").read_text(encoding="utf-8"), table
    # label_images also names the files read, which live in different folders here (copies:
    # same sizes and SHA-256, other modification times).
    label_images = [pd.read_csv(exports[label] / "label_images.csv").drop(
        columns=["raw_path", "segmentation_path", "raw_mtime", "segmentation_mtime"])
        for label in ("notebook", "cli")]
    pd.testing.assert_frame_equal(*label_images)

    distributions = [
        (config.parent / "output" / "data" / DISTRIBUTIONS_FILE).read_text(encoding="utf-8")
        for config in (notebook_config, cli_config)
    ]
    assert distributions[0].count("\n") > 4 * 20
    assert distributions[0] == distributions[1]
    molecules = [(config.parent / "output" / "data" / MOLECULES_FILE).read_text(encoding="utf-8")
                 for config in (notebook_config, cli_config)]
    assert molecules[0].count("\n") > 1
    assert molecules[0] == molecules[1]
    for config in (notebook_config, cli_config):
        assert (config.parent / "output" / "plots" / "percent_granule_rna.pdf").is_file()
    # The image section shows a figure; the backup is opt-in, and off by default.
    assert len(_pngs(_outputs(executed, "figure = steps.plot_image_objects"))) == 1
    assert _stdout(_outputs(executed, "if do_backup:")).startswith("No backup made")
    assert not list((notebook_config.parent / "output").glob("backup/*.dump"))


def test_custom_analysis_notebook(tmp_path):
    data = write_dataset(tmp_path / "data").parent
    name = "img_01"  # its centrosomes include a long rod
    executed = _execute("custom-analysis.ipynb", tmp_path / "custom-analysis.ipynb", {
        "rna_raw_path": str(data / "rna" / "raw-data" / f"{name}.tif"),
        "rna_segmentation_path": str(data / "rna" / "segmentations" / f"{name}_seg.tif"),
        "centrosomes_segmentation_path": str(data / "centrosomes" / "segmentations" / f"{name}_seg.tif"),
        "spacing": [0.3, 0.1, 0.1],
    })
    n_rna = len(np.unique(oracles.label(
        tifffile.imread(data / "rna" / "segmentations" / f"{name}_seg.tif")))) - 1
    n_centrosomes = len(np.unique(oracles.label(
        tifffile.imread(data / "centrosomes" / "segmentations" / f"{name}_seg.tif")))) - 1
    assert n_rna > 5
    assert n_centrosomes > 1
    assert f"{n_rna} RNA objects, {n_centrosomes} centrosomes" in _stdout(
        _outputs(executed, "rna_labels = rl.label_objects"))
    assert f"{n_rna} RNA objects with a distance" in _stdout(
        _outputs(executed, "nearest = rl.nearest_distances"))
    assert len(_pngs(_outputs(executed, "ax = sns.histplot"))) == 1
    assert len(_pngs(_outputs(executed, "distance_by_label ="))) == 1
