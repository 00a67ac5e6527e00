"""One image in napari: raw channels, segmentations and RNA objects coloured by distance.

``rna_localization.view("embryo1")`` (or ``rna-localization view embryo1``)
opens a napari window with every structure's raw stack, its objects as a
labels layer and the ``structure_1`` objects as points coloured by their
distance to ``structure_2``, all with ``scale`` = the voxel size, so that
napari's coordinates, rulers and distances are microns. napari is an optional
dependency (``pip install "napari[all]"``), imported only by :func:`view`;
:func:`build_layers` and :func:`image_layers` make the layers without it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from .config import Config, load_config

__all__ = ["INSTALL_MESSAGE", "add_layers", "build_layers", "image_layers", "view"]

INSTALL_MESSAGE = ('viewing images needs napari, which is not installed: pip install "napari[all]" '
                   '(or pip install -e ".[napari]" in the repository).')
#: Colormap of the points' distances (µm).
DISTANCE_COLORMAP = "viridis"
#: Diameter of a point, µm.
POINT_SIZE = 0.3


def _import_napari():
    try:
        import napari
    except ImportError as error:
        raise ImportError(INSTALL_MESSAGE) from error
    return napari


def build_layers(raw: dict[str, np.ndarray], labels: dict[str, np.ndarray], points: pd.DataFrame,
                 *, spacing, points_name: str = "rna objects",
                 distance_label: str = "distance") -> list[tuple]:
    """napari layer data, as ``(data, kwargs, layer_type)`` tuples, for one image.

    Parameters
    ----------
    raw : dict of str to (Z, Y, X) ndarray
        Raw stack of each structure.
    labels : dict of str to (Z, Y, X) ndarray
        Label image of each structure's objects.
    points : DataFrame
        ``z``, ``y``, ``x`` (voxels) and ``distance`` (µm, NaN if not measured) of the
        objects to show as points.
    spacing : sequence of 3 floats
        Microns per voxel (z, y, x): every layer's ``scale``.
    points_name, distance_label : str

    Returns
    -------
    list of tuple
        Images first (``"image"``, additive blending), then ``"labels"``, then
        the measured objects as ``"points"`` coloured by distance, and the
        unmeasured ones in grey.

    Examples
    --------
    >>> raw = {"rna": np.zeros((2, 4, 4))}
    >>> objects = pd.DataFrame({"z": [1.0], "y": [2.0], "x": [3.0], "distance": [0.5]})
    >>> layers = build_layers(raw, {"rna": np.zeros((2, 4, 4), int)}, objects,
    ...                       spacing=(0.2, 0.1, 0.1))
    >>> [(kwargs["name"], kind, kwargs["scale"]) for _, kwargs, kind in layers]
    [('rna', 'image', (0.2, 0.1, 0.1)), ('rna objects (segmentation)', 'labels', (0.2, 0.1, 0.1)), ('rna objects', 'points', (0.2, 0.1, 0.1))]
    """
    scale = tuple(float(s) for s in np.broadcast_to(np.asarray(spacing, dtype=np.float64), (3,)))
    units = ("um", "um", "um")  # with `scale`, napari's coordinates and scale bar are microns
    colormaps = ["magenta", "green", "cyan", "yellow"]
    layers: list[tuple] = []
    for i, (structure, image) in enumerate(raw.items()):
        image = np.asarray(image)
        low, high = (np.percentile(image, [1, 99.8]) if image.size else (0.0, 1.0))
        layers.append((image, {"name": structure, "scale": scale, "units": units,
                               "blending": "additive",
                               "colormap": colormaps[i % len(colormaps)],
                               "contrast_limits": (float(low), float(max(high, low + 1)))},
                       "image"))
    for structure, label_image in labels.items():
        layers.append((np.asarray(label_image), {"name": f"{structure} objects (segmentation)",
                                                 "scale": scale, "units": units, "opacity": 0.4},
                       "labels"))
    coordinates = points[["z", "y", "x"]].to_numpy(np.float64) if len(points) else np.zeros((0, 3))
    distance = (points["distance"].to_numpy(np.float64) if len(points)
                else np.zeros(0, dtype=np.float64))
    measured = ~np.isnan(distance)
    size = POINT_SIZE / min(scale)  # napari sizes points in data units (voxels)
    if measured.any():
        top = float(distance[measured].max())
        layers.append((coordinates[measured], {
            "name": points_name, "scale": scale, "units": units, "size": size,
            "features": pd.DataFrame({distance_label: distance[measured]}),
            "face_color": distance_label, "face_colormap": DISTANCE_COLORMAP,
            "face_contrast_limits": (0.0, top if top > 0 else 1.0),
        }, "points"))
    if (~measured).any():
        layers.append((coordinates[~measured], {
            "name": f"{points_name} (no distance)", "scale": scale, "units": units, "size": size,
            "face_color": "gray"}, "points"))
    return layers


def image_layers(config: Config, name: str, *, db=None) -> list[tuple]:
    """The layers of one image of a data set, from its files and the database.

    Every structure's raw stack (from the path recorded at extraction, or
    the data layout) and stored label image, and the ``structure_1``
    objects at their (intensity) centroids with the distance the curves use
    (``distribution.distance``). Each layer's scale is the voxel size the
    image was extracted at.

    Returns
    -------
    list of tuple
        :func:`build_layers`.
    """
    from . import io
    from .db import Database, read_label_image
    from .db.exchange import read_image_objects, read_raw_path

    db = Database.from_config(config) if db is None else db
    s1, s2 = config.distances.structure_1, config.distances.structure_2
    raw, labels, spacing = {}, {}, None
    for structure in config.data.structures:
        with db.transaction() as cursor:
            stored = read_label_image(cursor, structure, name)
        if stored is None:
            continue
        spacing = spacing or stored.spacing
        labels[structure] = stored.labels
        folder = config.structure_dirs(structure)[0]
        candidates = [Path(p) for p in [read_raw_path(db, structure, name)] if p]
        candidates += [folder / f"{name}.tif", folder / f"{name}.tiff"]
        path = next((p for p in candidates if p.is_file()), None)
        if path is not None:
            raw[structure] = io.read_stack(path)
    if not labels:
        msg = (f"image {name!r} is not in database {db.name!r}: run `rna-localization extract`, "
               f"and check the name (the raw file's name without extension).")
        raise ValueError(msg)
    objects = read_image_objects(db, s1, name)
    column = (f"centroid_distance_to_{s2}" if config.distribution.distance == "centroid"
              else f"distance_to_{s2}")
    centroid = config.distribution.distance == "centroid" and "spot_centroid_z" in objects.columns
    points = pd.DataFrame({
        axis: (objects[f"spot_centroid_{axis}"].fillna(objects[f"centroid_{axis}"]) if centroid
               else objects.get(f"centroid_{axis}", pd.Series(dtype=float)))
        for axis in "zyx"})
    points["distance"] = (pd.to_numeric(objects[column], errors="coerce")
                          if column in objects.columns else np.nan)
    return build_layers(raw, labels, points, spacing=spacing, points_name=f"{s1} objects",
                        distance_label=f"distance to {s2} (µm)")


def view(name: str, config: Config | str | os.PathLike = "pipeline.toml", *, db=None):
    """Open one image in napari: raw channels, segmentations, objects coloured by distance.

    Parameters
    ----------
    name : str
        The image name.
    config : Config or path-like
        The config, or its pipeline.toml.
    db : Database, optional

    Returns
    -------
    napari.Viewer
    """
    napari = _import_napari()  # first: without napari, say so before reading anything
    if not isinstance(config, Config):
        config = load_config(config)
    layers = image_layers(config, name, db=db)  # read before a window opens
    viewer = napari.Viewer(title=f"rna_localization: {name}")
    return add_layers(viewer, layers)


def add_layers(viewer, layers: list[tuple]):
    """Add :func:`build_layers`' layers to a napari viewer, with a scale bar in µm.

    Works on a window (``napari.Viewer``) and on napari's headless model
    (``napari.components.ViewerModel``), which needs no display.

    Parameters
    ----------
    viewer : napari.Viewer or napari.components.ViewerModel
    layers : list of tuple
        ``(data, kwargs, layer_type)``, e.g. from :func:`image_layers`.

    Returns
    -------
    The viewer.
    """
    for data, kwargs, kind in layers:
        getattr(viewer, f"add_{kind}")(data, **kwargs)
    overlays = getattr(getattr(viewer, "canvas", None), "overlays", None)
    if overlays is not None:  # napari >= 0.9: the bar takes its unit from the layers'
        overlays.scale_bar.visible = True
    else:
        viewer.scale_bar.visible = True
        viewer.scale_bar.unit = "um"
    return viewer
