"""``rna-localization import``: microscope files into the data layout, one TIFF per channel.

Multi-channel files — ImageJ hyperstacks (ZCYX, or TZCYX with one time
point) and OME-TIFF, read with tifffile; CZI, ND2 and LIF through the optional
``bioio`` readers — become ``<data_dir>/<structure>/raw-data/<name>.tif``:
single-channel (Z, Y, X) stacks carrying the file's voxel size, one row per
image in the metadata CSV. A file with several series (positions, scenes)
gives one image per series, named ``<stem>_s<k>``.

Every file is checked (format, series, 3D, channel indices) before anything
is written; each TIFF is written whole or not at all; existing outputs are
skipped unless asked to overwrite, so an import can run again.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .config import RESERVED_TABLES, DataConfig, check_identifier
from .io import TIFF_SUFFIXES, read_voxel_size, write_stack

__all__ = [
    "BIOIO_PLUGINS",
    "SourceImage",
    "import_files",
    "inspect_file",
    "parse_channels",
    "read_channels",
]

#: bioio reader plugin of each optional format (setup.py extra "formats" installs them all).
BIOIO_PLUGINS = {".czi": "bioio-czi", ".nd2": "bioio-nd2", ".lif": "bioio-lif"}
#: Columns the importer fills in the metadata CSV, besides the image name.
SOURCE_COLUMNS = ("source_file", "series")


@dataclass(frozen=True)
class SourceImage:
    """One 3D multi-channel image of a microscope file (one series of it).

    Attributes
    ----------
    path : Path
        The file.
    series : int
        Index of the series (position, scene) in the file, from 0.
    n_series : int
        Series in the file.
    shape : (Z, Y, X) tuple of int
    n_channels : int
    dtype : numpy dtype
    voxel_size : (z, y, x) tuple of float, or None
        Microns per voxel as the file states it; None if it does not.
    """

    path: Path
    series: int
    n_series: int
    shape: tuple[int, int, int]
    n_channels: int
    dtype: np.dtype
    voxel_size: tuple[float, float, float] | None
    _read: Callable[[], np.ndarray] = field(repr=False, compare=False, default=None)

    @property
    def name(self) -> str:
        """Image name: the file name without extension(s), ``_s<k>`` added for multi-series files."""
        stem = self.path.name
        for suffix in (".ome.tiff", ".ome.tif", *TIFF_SUFFIXES, *BIOIO_PLUGINS):
            if stem.lower().endswith(suffix):
                stem = stem[: -len(suffix)]
                break
        if self.n_series == 1:
            return stem
        return f"{stem}_s{self.series:0{len(str(self.n_series - 1))}d}"

    @property
    def where(self) -> str:
        """The file, and the series when there are several: for messages."""
        return f"{self.path} (series {self.series})" if self.n_series > 1 else str(self.path)


# ------------------------------------------------------------------ channels
def parse_channels(text: str) -> dict[str, int]:
    """``"rna=0,centrosomes=1"`` → ``{"rna": 0, "centrosomes": 1}``.

    Parameters
    ----------
    text : str
        Comma-separated ``structure=channel`` pairs; channels count from 0.

    Returns
    -------
    dict of str to int
        Structure folder name: channel index, in the order given.

    Raises
    ------
    ValueError
        For a pair that is not ``name=index``, a structure name that is not a
        plain identifier or is reserved, or a structure or channel given twice.

    Examples
    --------
    >>> parse_channels("rna=0, centrosomes=2")
    {'rna': 0, 'centrosomes': 2}
    """
    pairs = []
    for item in (part.strip() for part in str(text).split(",")):
        structure, equals, index = (s.strip() for s in item.partition("="))
        if not equals or not structure or not index.isdigit():
            msg = (
                f"--channels item {item!r} is not structure=index; write e.g. "
                f"--channels rna=0,centrosomes=1 (channels count from 0)."
            )
            raise ValueError(msg)
        pairs.append((structure, int(index)))
    return _checked_channels(pairs)


def _checked_channels(pairs) -> dict[str, int]:
    """(structure, channel) pairs as a dict, each name a plain identifier, nothing twice."""
    channels: dict[str, int] = {}
    for structure, index in pairs:
        check_identifier(structure, "structure name")
        if structure in RESERVED_TABLES:
            msg = f"structure name {structure!r} is reserved for the package's own tables; choose another."
            raise ValueError(msg)
        if structure in channels:
            msg = f"--channels names structure {structure!r} twice."
            raise ValueError(msg)
        if isinstance(index, bool) or not isinstance(index, int | np.integer) or index < 0:
            msg = f"channel of {structure!r} must be a whole number >= 0; got {index!r}."
            raise ValueError(msg)
        if index in channels.values():
            msg = f"--channels gives channel {index} to two structures; give each its own channel."
            raise ValueError(msg)
        channels[structure] = int(index)
    if not channels:
        msg = "--channels names no structure; write e.g. --channels rna=0,centrosomes=1."
        raise ValueError(msg)
    return channels


# ---------------------------------------------------------------- TIFF files
def _tiff_roles(axes: str, shape: tuple[int, ...], where: str) -> tuple[str | None, ...]:
    """Role of each axis of a TIFF series: "C", "Z", "Y", "X" or None (a length-1 axis to drop).

    tifffile's axis letters: T time, Z depth, C channel, S samples (RGB:
    taken as channels), I/Q an unnamed sequence (taken as Z when there is no
    Z), Y, X.
    """
    roles: list[str | None] = []
    for axis, size in zip(axes, shape):
        if axis in "ZCYX":
            role = axis
        elif axis == "S" and size > 1:
            role = "C"
        elif axis in "IQ" and size > 1:
            role = "Z"
        elif size == 1:
            role = None
        elif axis == "T":
            msg = (
                f"{where} is a time series ({size} time points, axes {axes}, shape {shape}); "
                f"save one time point per file (Fiji: Image > Duplicate... with one frame)."
            )
            raise ValueError(msg)
        else:
            msg = (
                f"{where} has an axis {axis!r} of length {size} (axes {axes}, shape {shape}) "
                f"that is neither z nor channels; save it as a ZCYX hyperstack."
            )
            raise ValueError(msg)
        roles.append(role)
    for role in "CZ":
        if roles.count(role) > 1:
            msg = f"{where} has more than one {role} axis (axes {axes}, shape {shape}); save it as a ZCYX hyperstack."
            raise ValueError(msg)
    if "Y" not in roles or "X" not in roles:
        msg = f"{where} has no Y and X axes (axes {axes}, shape {shape}); is it an image?"
        raise ValueError(msg)
    if "Z" not in roles or shape[roles.index("Z")] < 2:
        msg = (
            f"{where} is a 2D image (axes {axes}, shape {shape}); a 3D z-stack is "
            f"expected: export the whole stack, not a single plane or a projection."
        )
        raise ValueError(msg)
    return tuple(roles)


def _to_czyx(array: np.ndarray, roles: tuple[str | None, ...]) -> np.ndarray:
    """Reorder an array to (C, Z, Y, X) by the roles of :func:`_tiff_roles`."""
    array = array[tuple(0 if role is None else slice(None) for role in roles)]
    kept = [role for role in roles if role is not None]
    if "C" not in kept:
        array, kept = array[np.newaxis], ["C", *kept]
    return np.transpose(array, [kept.index(axis) for axis in "CZYX"])


def _tiff_sources(path: Path) -> list[SourceImage]:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            series = [(s.axes, tuple(int(n) for n in s.shape), s.dtype) for s in tif.series]
            imagej = tif.imagej_metadata if tif.is_imagej else None
    except Exception as error:  # tifffile raises many kinds for a bad file
        msg = f"cannot read {path} as a TIFF ({type(error).__name__}: {error}); is it truncated or not a TIFF?"
        raise ValueError(msg) from error
    if not series:
        msg = f"{path} holds no image."
        raise ValueError(msg)
    sources = []
    for k, (axes, shape, dtype) in enumerate(series):
        if imagej is not None and not {"channels", "slices", "frames"} & set(imagej):
            axes = axes.replace("C", "Z")  # ImageJ reads a plain stack of images as slices
        where = f"{path} (series {k})" if len(series) > 1 else str(path)
        roles = _tiff_roles(axes, shape, where)
        size = dict(zip(roles, shape))

        def read(path=path, k=k, roles=roles) -> np.ndarray:
            with tifffile.TiffFile(path) as tif:
                return _to_czyx(tif.series[k].asarray(), roles)

        sources.append(SourceImage(
            path, k, len(series), (size["Z"], size["Y"], size["X"]), size.get("C", 1),
            np.dtype(dtype), read_voxel_size(path, series=k), read,
        ))
    return sources


# ---------------------------------------------------------- CZI, ND2, LIF
def _bioio_sources(path: Path) -> list[SourceImage]:
    plugin = BIOIO_PLUGINS[path.suffix.lower()]
    missing = [name for name in ("bioio", plugin) if importlib.util.find_spec(name.replace("-", "_")) is None]
    if missing:
        msg = (
            f"reading {path} ({path.suffix} file) needs the optional readers: pip install "
            f"'rna_localization[formats]' (or: pip install {' '.join(missing)}), or export it "
            f"from the microscope software as OME-TIFF."
        )
        raise ValueError(msg)
    from bioio import BioImage

    try:
        image = BioImage(path)
        scenes = list(image.scenes)
    except Exception as error:  # each reader raises its own kinds for a bad file
        msg = f"cannot read {path} with bioio ({type(error).__name__}: {error}); is it truncated?"
        raise ValueError(msg) from error
    sources = []
    for k, scene in enumerate(scenes):
        image.set_scene(scene)
        dims = image.dims
        where = f"{path} (series {k})" if len(scenes) > 1 else str(path)
        sizes = dict(zip(dims.order, dims.shape))
        if sizes.get("S", 1) > 1:
            msg = f"{where} holds RGB pixels (dims {dims}); export its fluorescence channels as OME-TIFF."
            raise ValueError(msg)
        if sizes.get("T", 1) > 1:
            msg = f"{where} is a time series ({sizes['T']} time points); save one time point per file."
            raise ValueError(msg)
        if sizes.get("Z", 1) < 2:
            msg = (
                f"{where} is a 2D image (dims {dims}); a 3D z-stack is expected: export the whole "
                f"stack, not a single plane or a projection."
            )
            raise ValueError(msg)
        physical = tuple(image.physical_pixel_sizes)  # (Z, Y, X), microns
        voxel_size = physical if all(s is not None and s > 0 for s in physical) else None

        def read(image=image, scene=scene) -> np.ndarray:
            image.set_scene(scene)
            return np.asarray(image.get_image_data("CZYX", T=0))

        sources.append(SourceImage(
            path, k, len(scenes), (sizes["Z"], sizes["Y"], sizes["X"]), sizes.get("C", 1),
            np.dtype(image.dtype), tuple(float(s) for s in voxel_size) if voxel_size else None, read,
        ))
    return sources


def inspect_file(path: str | os.PathLike) -> list[SourceImage]:
    """The 3D images of a microscope file, from its header: shape, channels, voxel size.

    Parameters
    ----------
    path : path-like
        ``.tif``/``.tiff`` (ImageJ hyperstack, OME-TIFF or plain), or
        ``.czi``/``.nd2``/``.lif`` (with the optional bioio readers).

    Returns
    -------
    list of SourceImage
        One per series; pixels are read by :func:`read_channels`.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        Naming the file: unknown format, 2D image, time series, unreadable,
        or a missing optional reader (with what to ``pip install``).

    Examples
    --------
    >>> import tempfile, tifffile
    >>> path = Path(tempfile.mkdtemp()) / "embryo.tif"
    >>> tifffile.imwrite(path, np.zeros((5, 2, 8, 8), np.uint16), imagej=True,
    ...                  metadata={"axes": "ZCYX"})
    >>> [(s.name, s.shape, s.n_channels) for s in inspect_file(path)]
    [('embryo', (5, 8, 8), 2)]
    """
    path = Path(path)
    if not path.is_file():
        msg = f"{path} does not exist."
        raise FileNotFoundError(msg)
    suffix = path.suffix.lower()
    if suffix in TIFF_SUFFIXES:
        return _tiff_sources(path)
    if suffix in BIOIO_PLUGINS:
        return _bioio_sources(path)
    known = ", ".join([*TIFF_SUFFIXES, *BIOIO_PLUGINS])
    msg = (
        f"{path} is not a format the importer reads (its extension is {path.suffix or 'missing'!r}; "
        f"known: {known}); export it as OME-TIFF from the microscope software or Fiji."
    )
    raise ValueError(msg)


def read_channels(source: SourceImage, channels: Iterable[int]) -> dict[int, np.ndarray]:
    """Pixels of some channels of one image.

    Parameters
    ----------
    source : SourceImage
        From :func:`inspect_file`.
    channels : iterable of int
        Channel indices, from 0.

    Returns
    -------
    dict of int to (Z, Y, X) ndarray
        In the file's dtype.

    Raises
    ------
    ValueError
        Naming the file, for a channel it does not have or unreadable pixels.
    """
    channels = list(channels)
    for channel in channels:
        _check_channel(source, channel)
    try:
        data = source._read()
    except Exception as error:  # a truncated file fails only when its pixels are read
        msg = f"cannot read the pixels of {source.where} ({type(error).__name__}: {error}); is it truncated?"
        raise ValueError(msg) from error
    return {channel: np.ascontiguousarray(data[channel]) for channel in channels}


def _check_channel(source: SourceImage, channel: int, structure: str = "") -> None:
    if not 0 <= channel < source.n_channels:
        what = f" (for {structure})" if structure else ""
        msg = (
            f"{source.where} has no channel {channel}{what}: it has {source.n_channels} "
            f"channel(s), numbered 0 to {source.n_channels - 1}; fix --channels."
        )
        raise ValueError(msg)


# -------------------------------------------------------------- metadata CSV
def _read_csv_text(path: Path, name_column: str) -> pd.DataFrame:
    """The metadata CSV as text, cell for cell, so that rewriting it changes no value."""
    if not path.is_file():
        return pd.DataFrame(columns=[name_column, *SOURCE_COLUMNS])
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        msg = f"metadata CSV {path} cannot be read ({error}); fix or move it, then import again."
        raise ValueError(msg) from error
    if name_column not in table.columns:
        msg = (
            f"metadata CSV {path} has no {name_column!r} column (it has "
            f"{', '.join(map(repr, table.columns))}); pass --config with its data.image_name_column."
        )
        raise ValueError(msg)
    for column in SOURCE_COLUMNS:
        if column not in table.columns:
            table[column] = ""
    return table


def _merge_rows(table: pd.DataFrame, rows: list[dict[str, str]], name_column: str) -> pd.DataFrame:
    """`table` with `rows` set by image name: new names appended, known ones updated in place."""
    table = table.copy()
    index = {name: i for i, name in enumerate(table[name_column])}
    new = []
    for row in rows:
        if row[name_column] in index:
            for column, value in row.items():
                table.iloc[index[row[name_column]], table.columns.get_loc(column)] = value
        else:
            new.append({column: row.get(column, "") for column in table.columns})
    if new:
        table = pd.concat([table, pd.DataFrame(new, columns=table.columns)], ignore_index=True)
    return table


def _write_csv(table: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    try:
        table.to_csv(tmp, index=False, lineterminator="\n")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# ------------------------------------------------------------------- import
def _sources(paths: Iterable[str | os.PathLike], channels: dict[str, int]) -> list[SourceImage]:
    """Every image of every file, checked against `channels`, names unique."""
    seen: dict[Path, None] = {}
    for path in paths:
        seen.setdefault(Path(path).expanduser().resolve(), None)
    if not seen:
        msg = "no file to import was given."
        raise ValueError(msg)
    sources = [source for path in seen for source in inspect_file(path)]
    by_name: dict[str, SourceImage] = {}
    for source in sources:
        for structure, channel in channels.items():
            _check_channel(source, channel, structure)
        if source.name in by_name:
            msg = (
                f"{source.where} and {by_name[source.name].where} would both become image "
                f"{source.name!r}; rename one of the files."
            )
            raise ValueError(msg)
        by_name[source.name] = source
    return sources


def import_files(paths: Iterable[str | os.PathLike], channels: dict[str, int] | str,
                 data_dir: str | os.PathLike, *, raw_data_dir: str = DataConfig.raw_data_dir,
                 metadata_csv: str = DataConfig.metadata_csv,
                 name_column: str = DataConfig.image_name_column,
                 overwrite: bool = False, progress: bool = True) -> pd.DataFrame:
    """Split microscope files into the data layout's single-channel stacks.

    Each image (file, or series of a multi-series file) becomes
    ``<data_dir>/<structure>/<raw_data_dir>/<name>.tif`` for every structure
    of `channels`, with the file's voxel size as its calibration, and one row
    of the metadata CSV (``name_column``, ``source_file``, ``series``; other
    columns of an existing CSV are kept, and left empty for new rows).

    Every file is checked before anything is written. An image whose outputs
    all exist is skipped unless `overwrite`.

    Parameters
    ----------
    paths : iterable of path-like
        Microscope files (see :func:`inspect_file`).
    channels : dict of str to int, or str
        Structure folder name: channel index (from 0), or the text
        ``"rna=0,centrosomes=1"``. Channels not named are not imported.
    data_dir : path-like
        The data directory; created if missing.
    raw_data_dir, metadata_csv, name_column : str
        As ``data.raw_data_dir``, ``data.metadata_csv`` and
        ``data.image_name_column`` of the config.
    overwrite : bool
        Write again images whose outputs exist.
    progress : bool
        Show a progress bar.

    Returns
    -------
    DataFrame
        One row per image: ``name``, ``source_file``, ``series``, ``n_series``
        (series in the file), ``shape`` (Z, Y, X), ``voxel_size`` ((z, y, x)
        µm or None), ``status`` ("imported" or "skipped").

    Raises
    ------
    ValueError, FileNotFoundError
        One sentence naming the file and the problem; nothing is written.

    Examples
    --------
    >>> import tempfile, tifffile
    >>> folder = Path(tempfile.mkdtemp())
    >>> tifffile.imwrite(folder / "embryo.tif", np.zeros((5, 2, 8, 8), np.uint16), imagej=True,
    ...                  metadata={"axes": "ZCYX", "spacing": 0.3, "unit": "um"},
    ...                  resolution=(1 / 0.11, 1 / 0.11))
    >>> report = import_files([folder / "embryo.tif"], "rna=0,centrosomes=1", folder / "data",
    ...                       progress=False)
    >>> report[["name", "status"]].to_dict("records")
    [{'name': 'embryo', 'status': 'imported'}]
    >>> sorted(p.relative_to(folder / "data").as_posix() for p in (folder / "data").rglob("*.tif"))
    ['centrosomes/raw-data/embryo.tif', 'rna/raw-data/embryo.tif']
    """
    from tqdm.auto import tqdm

    channels = (parse_channels(channels) if isinstance(channels, str)
                else _checked_channels(dict(channels).items()))
    data_dir = Path(data_dir).expanduser().resolve()
    if data_dir.exists() and not data_dir.is_dir():
        msg = f"data directory {data_dir} is a file; give a folder."
        raise ValueError(msg)
    sources = _sources(paths, channels)
    csv_path = data_dir / metadata_csv
    table = _read_csv_text(csv_path, name_column)
    known = dict(zip(table[name_column], table["source_file"]))
    for source in sources:
        earlier = known.get(source.name, "")
        if earlier and earlier != source.path.name:
            msg = (
                f"image {source.name!r} of {source.where} is already in {csv_path}, imported "
                f"from {earlier}; rename {source.path.name} or remove that row and its stacks."
            )
            raise ValueError(msg)

    reports, rows = [], []
    for source in tqdm(sources, desc="import", unit="image", disable=not progress):
        outputs = {structure: data_dir / structure / raw_data_dir / f"{source.name}.tif"
                   for structure in channels}
        todo = {s: path for s, path in outputs.items() if overwrite or not path.exists()}
        if todo:
            pixels = read_channels(source, {channels[s] for s in todo})
            for structure, path in todo.items():
                write_stack(path, pixels[channels[structure]], spacing=source.voxel_size)
            del pixels
        rows.append({name_column: source.name, "source_file": source.path.name,
                     "series": str(source.series)})
        reports.append({"name": source.name, "source_file": source.path.name,
                        "series": source.series, "n_series": source.n_series, "shape": source.shape,
                        "voxel_size": source.voxel_size,
                        "status": "imported" if todo else "skipped"})
    _write_csv(_merge_rows(table, rows, name_column), csv_path)
    return pd.DataFrame(reports, columns=["name", "source_file", "series", "n_series", "shape",
                                          "voxel_size", "status"])
