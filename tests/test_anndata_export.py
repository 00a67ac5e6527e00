"""`export --format anndata`: the .h5ad files read back with anndata match the database rows."""

from __future__ import annotations

import anndata  # in the test extra: a missing anndata fails here rather than skipping
import numpy as np
import pandas as pd
import pytest

from rna_localization import load_config
from rna_localization.cli import main
from rna_localization.db import Database


def test_anndata_round_trip_matches_the_database(dataset, tmp_path):
    assert main(["run", "--config", str(dataset)]) == 0
    out = tmp_path / "h5ad"
    assert main(["export", "--config", str(dataset), "--format", "anndata", "--to", str(out)]) == 0
    config = load_config(dataset)
    db = Database.from_config(config)
    images = db.query("SELECT * FROM images")
    assert sorted(p.name for p in out.iterdir()) == ["centrosomes.h5ad", "rna.h5ad"]
    for structure in ("rna", "centrosomes"):
        data = anndata.read_h5ad(out / f"{structure}.h5ad")
        rows = db.query(f'SELECT * FROM "{structure}" ORDER BY name, object_id')
        assert data.n_obs == len(rows)
        assert data.obs["name"].tolist() == rows["name"].tolist()
        assert data.obs["object_id"].tolist() == rows["object_id"].tolist()
        # Every numeric measurement is a variable, with the database's values (NULL → NaN).
        measured = [c for c in rows.columns if c not in ("id", "name", "object_id", "centrosomes_id")]
        assert sorted(data.var_names) == sorted(measured)
        assert {"area", "total_intensity", "mean_intensity", "centroid_z"} <= set(measured)
        for j, column in enumerate(data.var_names):
            np.testing.assert_array_equal(data.X[:, j], rows[column].to_numpy(np.float64))
        assert "object_id" not in data.var_names
        assert "id" not in data.var_names
        # The image's metadata joined to each object.
        expected = rows["name"].map(images.set_index("name")["rna_type"])
        assert data.obs["rna_type"].tolist() == expected.tolist()
        # Centroids in microns: voxel centroid × voxel size (z, y, x).
        spacing = np.array([config.scale.z, config.scale.xy, config.scale.xy])
        voxels = rows[["centroid_z", "centroid_y", "centroid_x"]].to_numpy(np.float64)
        np.testing.assert_allclose(data.obsm["spatial"], voxels * spacing)
        assert data.uns["config"]["distances"]["structure_2"] == "centrosomes"
        assert list(data.uns["spatial_axes"]) == ["z", "y", "x"]
    rna = anndata.read_h5ad(out / "rna.h5ad")
    j = list(rna.var_names).index("centroid_distance_to_centrosomes")
    rows = db.query('SELECT centroid_distance_to_centrosomes AS d FROM rna ORDER BY name, object_id')
    np.testing.assert_array_equal(rna.X[:, j], rows["d"].to_numpy(np.float64))
    # The single-molecule references (method "total" here): total_intensity / molecules.
    assert config.normalization.method == "total"
    references = pd.DataFrame(rna.uns["single_molecule_references"])
    objects = db.query("SELECT o.total_intensity / o.normalized_intensity AS ref, i.rna_type "
                       "FROM rna o JOIN images i ON i.name = o.name "
                       "WHERE o.normalized_intensity <> 0")
    by_hand = objects.groupby("rna_type")["ref"].median()
    assert sorted(references["rna_type"]) == sorted(by_hand.index)
    for row in references.itertuples():
        assert row.reference == pytest.approx(by_hand[row.rna_type])


def test_export_without_anndata_names_what_to_install(tmp_path, dataset):
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    from rna_localization.anndata_export import INSTALL_MESSAGE

    blocker = tmp_path / "blocker" / "anndata"  # an anndata that fails to import, first on the path
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('No module named anndata')\n")
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(blocker.parent), str(root)])}
    script = shutil.which("rna-localization") or str(Path(sys.executable).with_name("rna-localization"))
    done = subprocess.run([script, "export", "--config", str(dataset), "--format", "anndata"],
                          capture_output=True, text=True, env=env, timeout=120, check=False)
    assert done.returncode != 0
    assert INSTALL_MESSAGE in done.stderr
    assert "Traceback" not in done.stderr
