"""The napari view built headless: its layers, their data and scales, checked without napari
and in napari's own headless viewer model; without napari the command says what to install
and fails."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile

from rna_localization import label_objects, load_config, steps
from rna_localization.db import Database
from rna_localization.viewer import INSTALL_MESSAGE, add_layers, build_layers, image_layers

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = shutil.which("rna-localization") or str(Path(sys.executable).with_name("rna-localization"))


def test_build_layers_scales_and_colours():
    rng = np.random.default_rng(0)
    raw = {"rna": rng.random((3, 8, 8)), "centrosomes": rng.random((3, 8, 8))}
    labels = {"rna": np.zeros((3, 8, 8), dtype=np.uint16)}
    points = pd.DataFrame({"z": [0.0, 1.0, 2.0], "y": [1.0, 2.0, 3.0], "x": [4.0, 5.0, 6.0],
                           "distance": [0.5, np.nan, 2.0]})
    layers = build_layers(raw, labels, points, spacing=(0.3, 0.1, 0.1))
    kinds = [kind for _, _, kind in layers]
    assert kinds == ["image", "image", "labels", "points", "points"]
    for _, kwargs, _ in layers:
        assert kwargs["scale"] == (0.3, 0.1, 0.1)  # microns per voxel: µm in napari are µm
    measured, unmeasured = layers[3], layers[4]
    np.testing.assert_array_equal(measured[0], [[0, 1, 4], [2, 3, 6]])
    np.testing.assert_array_equal(measured[1]["features"]["distance"], [0.5, 2.0])
    assert measured[1]["face_color"] == "distance"
    assert measured[1]["face_contrast_limits"] == (0.0, 2.0)
    np.testing.assert_array_equal(unmeasured[0], [[1, 2, 5]])
    assert unmeasured[1]["face_color"] == "gray"
    np.testing.assert_array_equal(layers[0][0], raw["rna"])
    assert layers[0][1]["blending"] == "additive"


def test_image_layers_from_the_database(dataset):
    config = load_config(dataset)
    db = Database.from_config(config)
    steps.extract(config, db=db)
    steps.measure_distances(config, db=db)
    layers = image_layers(config, "img_01", db=db)
    by_name = {kwargs["name"]: (data, kwargs, kind) for data, kwargs, kind in layers}
    spacing = (config.scale.z, config.scale.xy, config.scale.xy)
    assert {kwargs["scale"] for _, kwargs, _ in layers} == {spacing}
    for structure in ("rna", "centrosomes"):
        raw_dir, seg_dir = config.structure_dirs(structure)
        data, _, kind = by_name[structure]
        assert kind == "image"
        np.testing.assert_array_equal(data, tifffile.imread(raw_dir / "img_01.tif"))
        data, _, kind = by_name[f"{structure} objects (segmentation)"]
        assert kind == "labels"
        np.testing.assert_array_equal(data > 0, label_objects(tifffile.imread(seg_dir / "img_01_seg.tif")) > 0)
    rows = db.query("SELECT centroid_z, centroid_y, centroid_x, distance_to_centrosomes AS d "
                    "FROM rna WHERE name = 'img_01' ORDER BY object_id")
    assert config.distribution.distance == "voxel"
    data, kwargs, kind = by_name["rna objects"]
    assert kind == "points"
    measured = rows[rows["d"].notna()]
    np.testing.assert_allclose(data, measured[["centroid_z", "centroid_y", "centroid_x"]].to_numpy())
    np.testing.assert_allclose(kwargs["features"]["distance to centrosomes (µm)"], measured["d"])
    with pytest.raises(ValueError, match="'nope' is not in database"):
        image_layers(config, "nope", db=db)


def test_the_view_in_napari_headless(dataset):
    # napari's viewer model holds the layers a window would show, without Qt or a display.
    from napari.components import ViewerModel

    config = load_config(dataset)
    db = Database.from_config(config)
    steps.extract(config, db=db)
    steps.measure_distances(config, db=db)
    viewer = add_layers(ViewerModel(), image_layers(config, "img_01", db=db))
    spacing = (config.scale.z, config.scale.xy, config.scale.xy)
    kinds = {layer.name: type(layer).__name__ for layer in viewer.layers}
    assert kinds == {"rna": "Image", "centrosomes": "Image",
                     "rna objects (segmentation)": "Labels",
                     "centrosomes objects (segmentation)": "Labels", "rna objects": "Points"}
    for layer in viewer.layers:
        np.testing.assert_allclose(layer.scale, spacing)  # napari's µm are µm
    raw_dir, seg_dir = config.structure_dirs("rna")
    np.testing.assert_array_equal(viewer.layers["rna"].data, tifffile.imread(raw_dir / "img_01.tif"))
    np.testing.assert_array_equal(viewer.layers["rna objects (segmentation)"].data > 0,
                                  tifffile.imread(seg_dir / "img_01_seg.tif") > 0)
    rows = db.query("SELECT centroid_z, centroid_y, centroid_x, distance_to_centrosomes AS d "
                    "FROM rna WHERE name = 'img_01' AND distance_to_centrosomes IS NOT NULL "
                    "ORDER BY object_id")
    points = viewer.layers["rna objects"]
    np.testing.assert_allclose(points.data, rows[["centroid_z", "centroid_y", "centroid_x"]])
    # World coordinates are microns: the first object's centroid times the voxel size.
    np.testing.assert_allclose(points.data_to_world(points.data[0]),
                               rows.iloc[0][["centroid_z", "centroid_y", "centroid_x"]].to_numpy()
                               * np.array(spacing))
    # Colours follow the distance: the nearest object darkest (viridis), the farthest yellow.
    distance = rows["d"].to_numpy()
    colours = np.asarray(points.face_color)
    nearest, farthest = colours[np.argmin(distance)], colours[np.argmax(distance)]
    assert nearest[:3].sum() < farthest[:3].sum()
    assert farthest[0] > 0.9  # viridis' yellow end
    assert farthest[1] > 0.8
    assert farthest[2] < 0.3
    for layer in viewer.layers:
        assert [str(unit) for unit in layer.units] == ["micrometer"] * 3
    assert viewer.canvas.overlays.scale_bar.visible


def test_view_without_napari_names_what_to_install(tmp_path, dataset):
    # A napari that fails to import, first on the path: the same as napari not installed.
    blocker = tmp_path / "blocker" / "napari"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('No module named napari')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(blocker.parent), str(ROOT)])}
    done = subprocess.run([SCRIPT, "view", "img_00", "--config", str(dataset)],
                          capture_output=True, text=True, env=env, timeout=120, check=False)
    assert done.returncode != 0
    assert INSTALL_MESSAGE in done.stderr
    assert "Traceback" not in done.stderr
