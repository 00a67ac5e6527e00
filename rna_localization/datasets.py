"""Versioned data sets: a data folder plus a ``manifest.json`` of checksums.

A data set is a data directory in the layout of PRODUCT.md ("Data layout")
with a ``manifest.json`` at its top that lists every data file (path relative
to the folder, SHA-256), the structures, the metadata CSV and how the data
were made (for simulated data: simulator version, seed, number of images,
shape). :func:`load` checks the files against the manifest and returns the
metadata table with the absolute paths of each image's files, ready for a
notebook.

``pipeline.toml`` is deliberately not in the manifest: it is meant to be
edited, and editing it does not change the data.

Example ``manifest.json``::

    {
      "format": 1,
      "metadata_csv": "raw-data-metadata.csv",
      "image_name_column": "name",
      "structures": ["rna", "centrosomes"],
      "raw_data_dir": "raw-data",
      "segmentation_dir": "segmentations",
      "segmentation_file_suffix": "_seg",
      "generator": {"simulator_version": "1.0", "seed": 0, "n_images": 20, ...},
      "files": {"raw-data-metadata.csv": "<sha256>", "rna/raw-data/cen_nc13_r1_01.tif": "<sha256>", ...}
    }
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from .config import DataConfig
from .metadata import read_metadata_csv

__all__ = ["MANIFEST_NAME", "file_sha256", "load", "write_manifest"]

#: File name of the manifest at the top of a data set.
MANIFEST_NAME = "manifest.json"
#: Version of the manifest's own format.
MANIFEST_FORMAT = 1

_LAYOUT_DEFAULTS = {key: getattr(DataConfig, key) for key in (
    "metadata_csv", "image_name_column", "raw_data_dir", "segmentation_dir",
    "segmentation_file_suffix")}


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes, as 64 hexadecimal characters."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(
    data_dir: str | os.PathLike,
    files: Iterable[str | os.PathLike],
    *,
    structures: Iterable[str],
    generator: dict[str, Any] | None = None,
    **layout: str,
) -> Path:
    """Write ``manifest.json`` listing `files` with their checksums.

    Parameters
    ----------
    data_dir : path-like
        Top folder of the data set.
    files : iterable of path-like
        Data files, relative to `data_dir` (or absolute paths inside it).
    structures : iterable of str
        Structure folders of the data set, e.g. ``["rna", "centrosomes"]``.
    generator : dict, optional
        How the data were made (JSON-serializable), e.g. simulator version and seed.
    **layout : str
        Overrides of ``metadata_csv``, ``image_name_column``, ``raw_data_dir``,
        ``segmentation_dir`` and ``segmentation_file_suffix``.

    Returns
    -------
    Path
        The manifest written.
    """
    root = Path(data_dir).resolve()
    unknown = sorted(set(layout) - set(_LAYOUT_DEFAULTS))
    if unknown:
        msg = f"unknown manifest layout keys {unknown}; expected some of {sorted(_LAYOUT_DEFAULTS)}."
        raise TypeError(msg)
    listed = {}
    for name in files:
        path = Path(name)
        path = path.resolve() if path.is_absolute() else (root / path).resolve()
        try:
            relative = path.relative_to(root).as_posix()
        except ValueError:
            msg = f"file {path} is not inside the data set folder {root}."
            raise ValueError(msg) from None
        listed[relative] = file_sha256(path)
    manifest = {
        "format": MANIFEST_FORMAT,
        **{key: layout.get(key, default) for key, default in _LAYOUT_DEFAULTS.items()},
        "structures": list(structures),
        "generator": generator or {},
        "files": dict(sorted(listed.items())),
    }
    target = root / MANIFEST_NAME
    target.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return target


def _read_manifest(root: Path) -> dict[str, Any]:
    path = root / MANIFEST_NAME
    if not path.is_file():
        msg = (
            f"{root} has no {MANIFEST_NAME}, so it is not a data set made by "
            f"rna_localization; make one with `rna-localization simulate --out {root}`."
        )
        raise ValueError(msg)
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        msg = f"{path} is not valid JSON ({error}); regenerate the data set."
        raise ValueError(msg) from error
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        msg = f"{path} has no 'files' table of checksums; regenerate the data set."
        raise ValueError(msg)
    if manifest.get("format") != MANIFEST_FORMAT:
        msg = (
            f"{path} has manifest format {manifest.get('format')!r}; this version of "
            f"rna_localization reads format {MANIFEST_FORMAT}."
        )
        raise ValueError(msg)
    return manifest


def load(data_dir: str | os.PathLike, *, verify: bool = True) -> pd.DataFrame:
    """Check a data set against its manifest and return its images.

    Parameters
    ----------
    data_dir : path-like
        Folder holding ``manifest.json``.
    verify : bool
        Recompute every listed file's SHA-256 and compare (True), or only check
        that the files exist (False, faster on large data sets).

    Returns
    -------
    DataFrame
        The metadata CSV as read (one row per image, e.g. ``name``,
        ``rna_type``, ``cycle``, ``replicate``) plus, for every structure
        ``S``, the absolute paths (str) ``S_raw`` and ``S_segmentation`` of
        the image's raw stack and segmentation.

    Raises
    ------
    ValueError
        If the manifest is missing or unreadable, or a listed file is missing
        or altered (the message names the file), or an image's file is not
        listed in the manifest.

    Examples
    --------
    >>> import tempfile
    >>> from rna_localization.synthetic import simulate_dataset
    >>> folder = simulate_dataset(Path(tempfile.mkdtemp()) / "demo", n_images=4,
    ...                           shape=(14, 64, 64))
    >>> table = load(folder)
    >>> table.columns.tolist()  # doctest: +NORMALIZE_WHITESPACE
    ['name', 'rna_type', 'cycle', 'replicate', 'rna_raw', 'rna_segmentation',
     'centrosomes_raw', 'centrosomes_segmentation']
    >>> Path(table.loc[0, "rna_raw"]).relative_to(folder).as_posix()
    'rna/raw-data/cen_nc13_r1_01.tif'
    """
    root = Path(data_dir).expanduser().resolve()
    manifest = _read_manifest(root)
    files: dict[str, str] = manifest["files"]
    for relative, expected in files.items():
        path = root / relative
        if not path.is_file():
            msg = (
                f"data set file {relative} is missing from {root} (it is listed in "
                f"{MANIFEST_NAME}); restore it or regenerate the data set."
            )
            raise ValueError(msg)
        if verify and file_sha256(path) != expected:
            msg = (
                f"data set file {relative} in {root} does not match its checksum in "
                f"{MANIFEST_NAME}: it was changed after the data set was written. "
                f"Restore it or regenerate the data set."
            )
            raise ValueError(msg)

    layout = {key: manifest.get(key, default) for key, default in _LAYOUT_DEFAULTS.items()}
    metadata_csv = layout["metadata_csv"]
    if metadata_csv not in files:
        msg = f"{MANIFEST_NAME} in {root} does not list the metadata CSV {metadata_csv}."
        raise ValueError(msg)
    name_column = layout["image_name_column"]
    table = read_metadata_csv(root / metadata_csv, name_column=name_column)
    names = table[name_column]
    for structure in manifest.get("structures", []):
        kinds = {
            "raw": (layout["raw_data_dir"], ""),
            "segmentation": (layout["segmentation_dir"], layout["segmentation_file_suffix"]),
        }
        for kind, (folder, suffix) in kinds.items():
            relative = [f"{structure}/{folder}/{name}{suffix}.tif" for name in names]
            unlisted = [r for r in relative if r not in files]
            if unlisted:
                msg = (
                    f"{MANIFEST_NAME} in {root} does not list {unlisted[0]}"
                    f"{f' (and {len(unlisted) - 1} more)' if len(unlisted) > 1 else ''}, "
                    f"named by the metadata CSV {metadata_csv}."
                )
                raise ValueError(msg)
            table[f"{structure}_{kind}"] = [str(root / r) for r in relative]
    return table
