"""The objects as AnnData (``.h5ad``), for scanpy, squidpy and the rest of scverse.

``rna-localization export --format anndata --to DIR`` writes one
``<structure>.h5ad`` per structure: one observation per object, its
measurements in ``X``, the object's identifiers and its image's metadata in
``obs``, its centroid in microns in ``obsm["spatial"]`` and the config and
single-molecule references in ``uns``. anndata is an optional dependency
(``pip install "rna_localization[anndata]"``), imported only here.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import pandas as pd

from .config import DEFAULT_SPACING, Config, ThresholdTable
from .db import Database
from .db.exchange import read_images, read_objects, read_spacings

__all__ = ["SPATIAL_AXES", "anndata_tables", "config_record", "export_anndata",
           "single_molecule_table"]

#: Axes of ``obsm["spatial"]``, in microns.
SPATIAL_AXES = ("z", "y", "x")
#: Columns of a structure table that identify an object rather than measure it.
_IDENTIFIERS = ("name", "object_id")
INSTALL_MESSAGE = ('the AnnData export needs the anndata package: pip install anndata '
                   '(or pip install -e ".[anndata]" in the repository).')


def _import_anndata():
    try:
        import anndata
    except ImportError as error:
        raise ImportError(INSTALL_MESSAGE) from error
    return anndata


def config_record(config: Config) -> dict:
    """The config as nested plain values (text, numbers, booleans), as h5ad stores them.

    Examples
    --------
    >>> record = config_record(Config())
    >>> record["scale"]
    {'xy': 0.065, 'z': 0.2}
    """
    def plain(value):
        if value is None:
            return "none"
        if isinstance(value, ThresholdTable):
            return {"column": value.column, **{str(k): float(v) for k, v in value.values.items()}}
        if isinstance(value, os.PathLike):
            return str(value)
        if isinstance(value, list | tuple):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {str(k): plain(v) for k, v in value.items()}
        if dataclasses.is_dataclass(value):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return value

    sections = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    return {name: plain(section) for name, section in sections.items()
            if dataclasses.is_dataclass(section)}


def single_molecule_table(objects: pd.DataFrame, images: pd.DataFrame, *, group_by: str,
                          intensity: str, name_column: str = "name") -> pd.DataFrame:
    """Each group's single-molecule reference, read back from the normalized objects.

    ``normalized_intensity = intensity / reference``, so every normalized
    object gives its group's reference back; the median over the group's
    objects is taken.

    Returns
    -------
    DataFrame
        `group_by`, ``reference``, ``objects``; no rows before ``normalize``.

    Examples
    --------
    >>> objects = pd.DataFrame({"name": ["a", "a", "b"], "spot_intensity": [100.0, 300.0, 50.0],
    ...                         "normalized_intensity": [1.0, 3.0, 2.0]})
    >>> images = pd.DataFrame({"name": ["a", "b"], "rna_type": ["cen", "gapdh"]})
    >>> single_molecule_table(objects, images, group_by="rna_type", intensity="spot_intensity")
      rna_type  reference  objects
    0      cen      100.0        2
    1    gapdh       25.0        1
    """
    columns = [group_by, "reference", "objects"]
    if ("normalized_intensity" not in objects.columns or intensity not in objects.columns
            or group_by not in images.columns):
        return pd.DataFrame(columns=columns)
    groups = objects["name"].map(images.set_index(name_column)[group_by])
    molecules = pd.to_numeric(objects["normalized_intensity"], errors="coerce")
    ratio = objects[intensity] / molecules.where(molecules != 0)
    table = pd.DataFrame({group_by: groups, "ratio": ratio}).dropna()
    if table.empty:
        return pd.DataFrame(columns=columns)
    summary = table.groupby(group_by, sort=True)["ratio"].agg(reference="median", objects="size")
    return summary.reset_index()[columns]


def anndata_tables(objects: pd.DataFrame, images: pd.DataFrame, spacings: pd.DataFrame, *,
                   name_column: str = "name",
                   default_spacing=DEFAULT_SPACING) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    """The three parts of an AnnData of objects: X, obs and the centroids in microns.

    Parameters
    ----------
    objects : DataFrame
        One structure's table (``name``, ``object_id``, measurements).
    images : DataFrame
        The images table (metadata), joined to each object by its image name.
    spacings : DataFrame
        ``name``, ``spacing_z``, ``spacing_y``, ``spacing_x``: each image's voxel size (µm).
    name_column : str
        The images table's image name column.
    default_spacing : sequence of 3 floats
        For an image without a stored voxel size.

    Returns
    -------
    X : DataFrame
        The numeric measurements (float64, NaN where NULL), one column per variable.
    obs : DataFrame
        ``name``, ``object_id``, the ``<structure>_id`` columns and the image's metadata;
        index ``<name>:<object_id>``.
    spatial : (N, 3) ndarray
        Centroids (z, y, x) in microns.

    Examples
    --------
    >>> objects = pd.DataFrame({"name": ["a"], "object_id": [1], "area": [4],
    ...     "centroid_z": [1.0], "centroid_y": [2.0], "centroid_x": [3.0], "centrosomes_id": [2]})
    >>> spacings = pd.DataFrame({"name": ["a"], "spacing_z": [0.5], "spacing_y": [0.1],
    ...                          "spacing_x": [0.1]})
    >>> X, obs, spatial = anndata_tables(objects, pd.DataFrame({"name": ["a"], "cycle": ["nc13"]}),
    ...                                  spacings)
    >>> list(X.columns), list(obs.columns), spatial.round(3).tolist()
    (['area', 'centroid_z', 'centroid_y', 'centroid_x'], ['name', 'object_id', 'centrosomes_id', 'cycle'], [[0.5, 0.2, 0.3]])
    """
    identifiers = [c for c in objects.columns if c in _IDENTIFIERS or c.endswith("_id")]
    # A column NULL for every object (e.g. apertures of a structure without them) arrives
    # as objects of None: it is still a measurement, all NaN.
    measurements = [c for c in objects.columns if c not in identifiers
                    and (pd.api.types.is_numeric_dtype(objects[c]) or objects[c].isna().all())]
    X = objects[measurements].apply(pd.to_numeric, errors="coerce").astype(np.float64)
    obs = objects[identifiers].copy()
    if not images.empty:
        metadata = images.rename(columns={name_column: "name"})
        clashing = [c for c in metadata.columns if c != "name" and c in obs.columns]
        metadata = metadata.rename(columns={c: f"image_{c}" for c in clashing})
        obs = obs.merge(metadata, on="name", how="left")
    index = (objects["name"].astype(str) + ":" + objects["object_id"].astype(str)).to_numpy()
    obs.index = pd.Index(index, dtype=object)
    X.index = obs.index
    voxel = (spacings.drop_duplicates("name").set_index("name")
             .reindex(objects["name"])[["spacing_z", "spacing_y", "spacing_x"]]
             .to_numpy(np.float64))
    voxel = np.where(np.isnan(voxel), np.asarray(default_spacing, dtype=np.float64), voxel)
    centroids = objects[["centroid_z", "centroid_y", "centroid_x"]].to_numpy(np.float64)
    return X, obs, centroids * voxel


def export_anndata(config: Config, folder: str | os.PathLike, *,
                   db: Database | None = None) -> list[Path]:
    """Write ``<structure>.h5ad`` for every extracted structure into `folder`.

    Parameters
    ----------
    config : Config
    folder : path-like
        Created if needed; existing files of the same names are replaced.
    db : Database, optional

    Returns
    -------
    list of Path
        The files written.
    """
    anndata = _import_anndata()
    db = Database.from_config(config) if db is None else db
    images = read_images(db)
    spacings = read_spacings(db)
    tables = set(db.tables())
    structures = [s for s in config.data.structures if s in tables]
    if not structures:
        msg = (f"database {db.name!r} has none of the structures {config.data.structures}: run "
               f"`rna-localization extract` first.")
        raise ValueError(msg)
    name_column = config.data.image_name_column
    method = config.normalization.method
    intensity = "spot_intensity" if method == "aperture" else "total_intensity"
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for structure in structures:
        objects = read_objects(db, structure)
        X, obs, spatial = anndata_tables(
            objects, images, spacings[spacings["structure"] == structure],
            name_column=name_column, default_spacing=config.spacing)
        references = (single_molecule_table(objects, images, group_by=config.normalization.group_by,
                                            intensity=intensity, name_column=name_column)
                      if structure == config.normalization.structure else pd.DataFrame())
        uns = {"config": config_record(config), "structure": structure,
               "spatial_axes": list(SPATIAL_AXES), "spatial_unit": "micron",
               "normalization_method": method}
        if not references.empty:
            uns["single_molecule_references"] = references
        data = anndata.AnnData(X=X.to_numpy(), obs=obs,
                               var=pd.DataFrame(index=pd.Index(X.columns, dtype=object)),
                               obsm={"spatial": spatial}, uns=uns)
        path = folder / f"{structure}.h5ad"
        tmp = path.with_name(f"{path.name}.{os.getpid()}.part")
        settings = getattr(anndata, "settings", None)
        if settings is not None and hasattr(settings, "allow_write_nullable_strings"):
            # pandas >= 3 stores text as string arrays, which anndata >= 0.11 reads.
            with settings.override(allow_write_nullable_strings=True):
                data.write_h5ad(tmp)
        else:
            data.write_h5ad(tmp)
        os.replace(tmp, path)
        written.append(path)
    return written
