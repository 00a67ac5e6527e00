"""``rna-localization init DATA_DIR``: a commented pipeline.toml for the data found there.

:func:`survey_data` looks at a data directory (structures, segmentation file
suffix, metadata CSV and its columns, the voxel size the stacks state);
:func:`render_config` turns what it found into TOML text, every value
commented with where it comes from; :func:`write_config` writes it, never
over an existing file unless asked.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from .calibration import format_voxel_size, same_voxel_size
from .config import RESERVED_TABLES, DataConfig, check_identifier, config_toml
from .io import image_names, read_voxel_size, tiff_files

__all__ = ["DataSurvey", "render_config", "survey_data", "write_config"]

RAW_DATA_DIR = DataConfig.raw_data_dir
SEGMENTATION_DIR = DataConfig.segmentation_dir
METADATA_CSV = DataConfig.metadata_csv
#: Metadata columns taken for normalization.group_by, in order of preference.
GROUP_COLUMNS = ("rna_type", "rna", "gene", "probe", "target")


@dataclass(frozen=True)
class DataSurvey:
    """What a data directory holds, as :func:`survey_data` found it.

    Attributes
    ----------
    data_dir : Path
    structures : tuple of str
        Folders holding a ``raw-data/`` folder, sorted.
    images : dict of str to int
        Raw stacks per structure.
    segmentation_file_suffix : str or None
        The suffix most segmentations carry after their image name; None
        when there is no segmentation yet.
    metadata_csv : str or None
        File name of the metadata CSV, None when there is none.
    metadata_columns : tuple of str
    image_name_column : str
    voxel_sizes : dict of (z, y, x) tuple to list of str
        Each voxel size the raw stacks state, with the stacks stating it,
        the most common first.
    unstated : int
        Raw stacks that state no voxel size.
    """

    data_dir: Path
    structures: tuple[str, ...]
    images: dict[str, int]
    segmentation_file_suffix: str | None
    metadata_csv: str | None
    metadata_columns: tuple[str, ...]
    image_name_column: str
    voxel_sizes: dict[tuple[float, float, float], list[str]]
    unstated: int

    @property
    def voxel_size(self) -> tuple[float, float, float] | None:
        """The voxel size most raw stacks state; None if none states one."""
        return next(iter(self.voxel_sizes), None)


def _segmentation_suffix(raw_folder: Path, seg_folder: Path) -> list[str]:
    """Suffix of each segmentation after the longest image name it starts with."""
    if not seg_folder.is_dir():
        return []
    names = sorted(image_names(raw_folder), key=len, reverse=True)
    suffixes = []
    for stem in image_names(seg_folder):
        name = next((n for n in names if stem.startswith(n) and stem != n), None)
        if name is not None:
            suffixes.append(stem[len(name):])
    return suffixes


def _metadata(data_dir: Path, names: set[str]) -> tuple[str | None, tuple[str, ...], str]:
    """(CSV file name, its columns, the column holding image names)."""
    import pandas as pd

    path = data_dir / METADATA_CSV
    if not path.is_file():
        candidates = sorted(p for p in data_dir.glob("*.csv") if not p.name.startswith("."))
        if len(candidates) != 1:
            return None, (), "name"
        path = candidates[0]
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError):
        return path.name, (), "name"
    columns = tuple(str(c) for c in table.columns)
    if "name" in columns:
        return path.name, columns, "name"
    overlap = {c: len(set(table[c].str.strip()) & names) for c in columns}
    best = max(overlap, key=overlap.get, default="name")
    return path.name, columns, best if overlap.get(best) else "name"


def survey_data(data_dir: str | os.PathLike) -> DataSurvey:
    """Look at a data directory in the layout of the product contract.

    Parameters
    ----------
    data_dir : path-like
        Holds ``<structure>/raw-data/<name>.tif`` (and maybe
        ``<structure>/segmentations/`` and a metadata CSV).

    Returns
    -------
    DataSurvey

    Raises
    ------
    FileNotFoundError
        If the folder does not exist or no folder in it holds ``raw-data/``.
    ValueError
        For a structure folder whose name cannot be a table name.
    """
    data_dir = Path(data_dir).expanduser().resolve()
    if not data_dir.is_dir():
        msg = f"data directory {data_dir} does not exist."
        raise FileNotFoundError(msg)
    structures = tuple(sorted(
        p.name for p in data_dir.iterdir()
        if p.is_dir() and not p.name.startswith(".") and (p / RAW_DATA_DIR).is_dir()
    ))
    if not structures:
        msg = (
            f"no folder of {data_dir} holds a {RAW_DATA_DIR}/ folder: put each structure's stacks "
            f"in <structure>/{RAW_DATA_DIR}/<name>.tif (rna-localization import does it from "
            f"multi-channel files)."
        )
        raise FileNotFoundError(msg)
    for structure in structures:
        check_identifier(structure, f"structure folder {data_dir / structure}:")
        if structure in RESERVED_TABLES:
            msg = f"structure folder {data_dir / structure} has a name reserved for the package's tables; rename it."
            raise ValueError(msg)
    images, suffixes, names = {}, [], set()
    groups: dict[tuple[float, float, float], list[str]] = {}
    unstated = 0
    for structure in structures:
        raw_folder = data_dir / structure / RAW_DATA_DIR
        stems = image_names(raw_folder)
        images[structure] = len(stems)
        names.update(stems)
        suffixes += _segmentation_suffix(raw_folder, data_dir / structure / SEGMENTATION_DIR)
        for path in tiff_files(raw_folder).values():
            try:
                voxel_size = read_voxel_size(path)
            except ValueError:
                voxel_size = None
            if voxel_size is None:
                unstated += 1
                continue
            key = next((k for k in groups if same_voxel_size(voxel_size, k)),
                       tuple(float(f"{s:.6g}") for s in voxel_size))
            groups.setdefault(key, []).append(f"{structure}/{RAW_DATA_DIR}/{path.name}")
    voxel_sizes = dict(sorted(groups.items(), key=lambda item: -len(item[1])))
    suffix = Counter(suffixes).most_common(1)[0][0] if suffixes else None
    csv, columns, name_column = _metadata(data_dir, names)
    return DataSurvey(data_dir, structures, images, suffix, csv, columns, name_column,
                      voxel_sizes, unstated)


def _pick_pair(structures: tuple[str, ...]) -> tuple[str, str]:
    """(structure_1, structure_2): RNA first, a centrosome-like structure second if any.

    structure_2 is "" for a data set of one structure (RNA alone).
    """
    first = "rna" if "rna" in structures else structures[0]
    others = [s for s in structures if s != first]
    second = next((s for s in others if "centrosome" in s.lower()), others[0] if others else "")
    return first, second


def _database_name(data_dir: Path) -> str:
    name = re.sub(r"[^a-z0-9_]+", "_", data_dir.name.lower()).strip("_")
    if not name or not name[0].isalpha():
        name = f"data_{name}".rstrip("_")
    return name[:63]


def render_config(survey: DataSurvey, *, data_dir: str = ".") -> str:
    """The text of a commented pipeline.toml for a surveyed data directory.

    Parameters
    ----------
    survey : DataSurvey
        From :func:`survey_data`.
    data_dir : str
        ``data.data_dir`` as written: relative to the config file's folder.

    Returns
    -------
    str
        TOML that :func:`.config.load_config` accepts.

    A data directory of one structure (RNA alone) gets
    ``structure_2 = ""``: its objects are extracted and their molecules
    counted, with no distances.
    """
    first, second = _pick_pair(survey.structures)
    counts = ", ".join(f"{s} {n}" for s, n in survey.images.items())
    settings: dict[str, dict] = {
        "database": {"name": _database_name(survey.data_dir)},
        "data": {"data_dir": data_dir, "structures": list(survey.structures),
                 "image_name_column": survey.image_name_column},
        "distances": {"structure_1": first, "structure_2": second},
        "normalization": {"structure": first},
    }
    comments = {
        "database.url": '"" → an embedded PostgreSQL under <data_dir>/.pgdata',
        "scale": "microns per voxel; the pipeline uses these, whatever the files say",
        "distances.structure_1": "distances from every object of this structure",
        "distances.structure_2": ("to the nearest object of this one" if second else
                                  "one structure alone: no distances; molecules per image are "
                                  "counted (name a second structure here once you have one)"),
        "distances.workers": "0 → here, 2 images at a time; one per core once the rest is long",
        "distribution.distance_threshold": "microns",
        "distribution.chance_region": 'a structure where RNA can be (e.g. "embryo"); "" → whole image',
        "plot.hue": '"" → normalization.group_by',
    }
    notes: dict[str, list[str]] = {
        "data.structures": [f"Folders holding {RAW_DATA_DIR}/; raw stacks found: {counts}."],
    }
    if survey.segmentation_file_suffix is None:
        suffix = DataConfig.segmentation_file_suffix
        comments["data.segmentation_file_suffix"] = (
            f"no segmentation yet: `rna-localization segment` writes <name>{suffix}.tif")
    else:
        settings["data"]["segmentation_file_suffix"] = survey.segmentation_file_suffix
        comments["data.segmentation_file_suffix"] = "found after the image names in segmentations/"
    if survey.metadata_csv is None:
        notes["data.metadata_csv"] = [
            f"No metadata CSV found: write {METADATA_CSV} with a `name` column (one row per",
            "image) and your conditions, e.g. rna_type, cycle, replicate."]
    else:
        settings["data"]["metadata_csv"] = survey.metadata_csv
        notes["data.metadata_csv"] = [
            f"Columns found: {', '.join(survey.metadata_columns) or '(none readable)'}."]

    voxel_size = survey.voxel_size
    if voxel_size is None:
        notes["scale.xy"] = [
            "No raw stack states its voxel size: these are the defaults. CHECK THEM against the",
            "microscope's settings; a wrong voxel size makes every distance wrong."]
    else:
        z, y, x = voxel_size
        settings["scale"] = {"xy": float(f"{x:.6g}"), "z": float(f"{z:.6g}")}
        shown = sum(len(files) for files in survey.voxel_sizes.values())
        lines = [f"Stated by {len(survey.voxel_sizes[voxel_size])} of {shown + survey.unstated} "
                 f"raw stacks ({format_voxel_size(voxel_size)})."]
        if y != x:
            lines.append(f"y ({y:g}) and x ({x:g}) differ in the files; the pipeline takes one xy.")
        for other, files in list(survey.voxel_sizes.items())[1:]:
            more = f" and {len(files) - 3} more" if len(files) > 3 else ""
            lines.append(f"NOTE: {', '.join(files[:3])}{more} state {format_voxel_size(other)}.")
        if survey.unstated:
            lines.append(f"{survey.unstated} raw stack(s) state no voxel size.")
        notes["scale.xy"] = lines

    excluded = {survey.image_name_column, "source_file", "series"}
    group = next((c for c in GROUP_COLUMNS if c in survey.metadata_columns), None)
    if group is None:
        settings["normalization"]["group_by"] = survey.image_name_column
        notes["normalization.group_by"] = [
            "No column naming the RNA (rna_type, gene, probe, ...) in the metadata CSV: one",
            "single-molecule reference per image until you add one and name it here."]
    else:
        settings["normalization"]["group_by"] = group
        comments["normalization.group_by"] = ("one single-molecule reference per value, for the "
                                              "images too sparse for their own")
    comments["normalization.reference"] = ('"image": each image against its own single '
                                           'molecules, pulled toward its group\'s as far as they '
                                           'are few; "group": one per group_by value')
    others = [c for c in survey.metadata_columns if c not in excluded | {group}]
    comments["plot.col"] = ("a metadata column for side-by-side panels"
                            + (f", e.g. {others[0]!r}" if others else ""))
    header = [f"Pipeline settings for {survey.data_dir}, written by `rna-localization init` from the",
              "data found there. Check every value, then: rna-localization doctor (it checks this file",
              "against the data) and rna-localization segment / run.",
              "Every key is documented in the README ('pipeline.toml')."]
    return config_toml(settings, header=header, comments=comments, notes=notes)


def write_config(data_dir: str | os.PathLike, *, out: str | os.PathLike | None = None,
                 force: bool = False) -> tuple[Path, DataSurvey]:
    """Write a commented pipeline.toml for the data found in `data_dir`.

    Parameters
    ----------
    data_dir : path-like
        The data directory.
    out : path-like, optional
        The file to write; default ``<data_dir>/pipeline.toml``. Its
        ``data.data_dir`` is written relative to its folder.
    force : bool
        Replace an existing file.

    Returns
    -------
    (Path, DataSurvey)
        The file written and what was found.

    Raises
    ------
    FileExistsError
        If the file exists and not `force`.

    Examples
    --------
    >>> import tempfile
    >>> from rna_localization.synthetic import simulate_dataset
    >>> from rna_localization.config import load_config
    >>> folder = simulate_dataset(Path(tempfile.mkdtemp()) / "d", n_images=2,
    ...                           shape=(14, 64, 64))  # doctest: +SKIP
    >>> path, _ = write_config(folder, force=True)  # doctest: +SKIP
    >>> load_config(path).data.structures  # doctest: +SKIP
    ('centrosomes', 'rna')
    """
    data_dir = Path(data_dir).expanduser().resolve()
    path = Path(out).expanduser().resolve() if out is not None else data_dir / "pipeline.toml"
    if path.exists() and not force:
        msg = f"{path} exists; pass --force to replace it (or --out FILE to write another)."
        raise FileExistsError(msg)
    survey = survey_data(data_dir)
    relative = Path(os.path.relpath(data_dir, path.parent)).as_posix()
    text = render_config(survey, data_dir=relative)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path, survey
