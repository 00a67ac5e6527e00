"""Files: finding image pairs in a data directory, reading and writing TIFF stacks.

Every error names the file and says what to do about it.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile

from .config import DataConfig

__all__ = ["FileFingerprint", "ImagePair", "check_data_dir", "file_fingerprint", "find_image_pairs",
           "image_names", "read_stack", "read_voxel_size", "replacing", "stack_shape", "tiff_files",
           "write_stack"]

TIFF_SUFFIXES = (".tif", ".tiff")

#: Microns per unit of length, for the unit names microscope software writes
#: (ImageJ's ``unit=``, OME's ``PhysicalSize*Unit``). ``pixel`` and empty mean uncalibrated.
LENGTH_UNITS_UM = {
    "µm": 1.0, "μm": 1.0, "um": 1.0, "micron": 1.0, "microns": 1.0, "micrometer": 1.0,
    "micrometre": 1.0, "nm": 1e-3, "nanometer": 1e-3, "nanometre": 1e-3, "pm": 1e-6,
    "å": 1e-4, "angstrom": 1e-4, "mm": 1e3, "millimeter": 1e3, "millimetre": 1e3,
    "cm": 1e4, "m": 1e6, "meter": 1e6, "metre": 1e6, "in": 25400.0, "inch": 25400.0,
}


@dataclass(frozen=True)
class ImagePair:
    """One image of one structure: its raw stack and its segmentation."""

    structure: str
    name: str
    raw: Path
    segmentation: Path


@dataclass(frozen=True)
class FileFingerprint:
    """What tells a replaced file from the one extracted: size, modification time, SHA-256."""

    size: int
    mtime: float
    sha256: str


def _sha256(path: Path) -> str:
    with open(path, "rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()  # one reused buffer


def file_fingerprint(path: str | os.PathLike) -> FileFingerprint:
    """Size, modification time (seconds since the epoch) and SHA-256 of a file.

    Examples
    --------
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "a.txt"
    >>> _ = path.write_bytes(b"abc")
    >>> print(file_fingerprint(path).size, file_fingerprint(path).sha256[:12])
    3 ba7816bf8f01
    """
    path = Path(path)
    stat = path.stat()
    return FileFingerprint(stat.st_size, stat.st_mtime, _sha256(path))


def file_changed(path: str | os.PathLike, size, mtime, sha256) -> bool:
    """Whether `path` is no longer the file fingerprinted as (`size`, `mtime`, `sha256`).

    Same size and modification time: unchanged, without reading it. Otherwise
    (a copy, a ``touch``, a replacement) the content decides. A file that is
    gone counts as changed; unknown fingerprints (None: extracted before they
    were stored) as unchanged.
    """
    if size is None or sha256 is None:
        return False
    path = Path(path)
    try:
        stat = path.stat()
    except OSError:
        return True
    if stat.st_size != size:
        return True
    if mtime is not None and stat.st_mtime == mtime:
        return False
    return _sha256(path) != sha256


def _squeeze_to_3d(shape: tuple[int, ...], path: Path) -> tuple[int, ...]:
    """Drop singleton axes beyond three (ImageJ writes TZCYX with T = C = 1)."""
    squeezed = tuple(n for n in shape if n != 1) if len(shape) > 3 else shape
    if len(shape) > 3 and len(squeezed) < 3:
        squeezed = shape[-3:]
    if len(squeezed) == 3:
        return squeezed
    if len(squeezed) < 3:
        msg = (
            f"{path} is a {len(shape)}D image with shape {shape}; a 3D (Z, Y, X) "
            f"stack is expected. Save the whole z-stack, not a single slice."
        )
        raise ValueError(msg)
    msg = (
        f"{path} has {len(squeezed)} non-singleton axes, shape {shape}; a single-channel "
        f"3D (Z, Y, X) stack is expected. Split multi-channel or time-lapse files into "
        f"one TIFF per channel first: `rna-localization import FILE --channels rna=0,centrosomes=1 "
        f"--data-dir DIR` does it for multi-channel files (or Fiji: Image > Color > Split Channels)."
    )
    raise ValueError(msg)


def stack_shape(path: str | os.PathLike) -> tuple[int, int, int]:
    """Shape of a TIFF stack read from its header only, as (Z, Y, X).

    Raises
    ------
    ValueError
        If the file is not a readable TIFF or not a single-channel 3D stack.
    """
    path = Path(path)
    try:
        with tifffile.TiffFile(path) as tif:
            shape = tuple(int(n) for n in tif.series[0].shape)
    except Exception as error:  # tifffile raises many kinds for a bad file
        msg = f"cannot read {path} as a TIFF ({type(error).__name__}: {error}); is it a TIFF stack?"
        raise ValueError(msg) from error
    return _squeeze_to_3d(shape, path)


def read_stack(path: str | os.PathLike, *, mapped: bool = False) -> np.ndarray:
    """Read a single-channel 3D TIFF stack.

    Parameters
    ----------
    path : path-like
        A ``.tif``/``.tiff`` file.
    mapped : bool
        Map an uncompressed stack stored in one piece, in this machine's byte
        order, into memory instead of copying it (:class:`numpy.memmap`,
        read-only): its values are read from the file's pages as they are
        needed, and no memory is allocated for it. A compressed or scattered
        stack is read as without it. Extraction reads the raw stacks and
        segmentations this way; the array must not be written to, and the
        file must not be truncated while it is in use.

    Returns
    -------
    (Z, Y, X) ndarray
        In the file's dtype. Singleton axes beyond three are dropped.

    Raises
    ------
    ValueError
        Naming the file, if it is not a TIFF, is truncated, or is not 3D.

    Examples
    --------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> stack = np.arange(24, dtype=np.uint16).reshape(2, 3, 4)
    >>> _ = tifffile.imwrite(folder / "plain.tif", stack)
    >>> mapped = read_stack(folder / "plain.tif", mapped=True)
    >>> bool((mapped == stack).all()), mapped.flags.writeable
    (True, False)
    """
    path = Path(path)
    if not path.is_file():
        msg = f"{path} does not exist."
        raise FileNotFoundError(msg)
    try:
        image = _read(path, mapped)
    except Exception as error:
        msg = f"cannot read {path} as a TIFF ({type(error).__name__}: {error}); is it truncated or not a TIFF?"
        raise ValueError(msg) from error
    shape = _squeeze_to_3d(image.shape, path)
    return image.reshape(shape)


def _read(path: Path, mapped: bool) -> np.ndarray:
    """The file's first series (what ``tifffile.imread`` reads), the file parsed once; with
    `mapped`, as a read-only memory map unless it is compressed, stored in pieces or in the
    other byte order."""
    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        offset = series.dataoffset if mapped else None  # None unless uncompressed, in one piece
        # The series' dtype is given in this machine's order; the file says its own.
        native = tif.byteorder == ("<" if sys.byteorder == "little" else ">")
        if offset is None or series.size == 0 or not (native or series.dtype.itemsize == 1):
            return tif.asarray()
        shape, dtype = series.shape, series.dtype
    return np.asarray(np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape))


def write_stack(path: str | os.PathLike, image: np.ndarray, *, spacing=None) -> Path:
    """Write a 3D stack as an ImageJ-compatible TIFF (zlib-compressed).

    Parameters
    ----------
    path : path-like
        Destination; parent folders are created.
    image : (Z, Y, X) ndarray
        uint8, uint16 or float32 work everywhere (Fiji included).
    spacing : (3,) sequence of float, optional
        Microns per voxel (z, y, x), stored as ImageJ calibration.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image = np.asarray(image)
    kwargs = {}
    if spacing is not None:
        z, y, x = (float(s) for s in spacing)
        kwargs = {"resolution": (1 / x, 1 / y), "metadata": {"spacing": z, "unit": "um", "axes": "ZYX"}}
    else:
        kwargs = {"metadata": {"axes": "ZYX"}}
    tmp = path.with_name(path.name + ".part")
    try:
        # minisblack: a stack of 3 or 4 planes is planes, not the colours of one RGB(A) image
        tifffile.imwrite(tmp, image, imagej=image.dtype in (np.uint8, np.uint16, np.float32),
                         photometric="minisblack", compression="zlib", **kwargs)
        os.replace(tmp, path)
    except BaseException:  # a full disk or Ctrl-C: no half-written file left behind
        tmp.unlink(missing_ok=True)
        raise
    return path


#: errno values of a full disk or an exhausted quota.
_DISK_FULL = {errno.ENOSPC, errno.EDQUOT} if hasattr(errno, "EDQUOT") else {errno.ENOSPC}


def disk_full_error(path: Path, error: OSError) -> OSError:
    """An OSError naming `path` for a write that failed on a full disk; `error` itself otherwise."""
    if error.errno not in _DISK_FULL:
        return error
    full = OSError(f"no space left on the disk (or quota) to write {path}: free some space, or "
                   f"write elsewhere, and run the command again; {path} was left as it was.")
    full.errno = error.errno
    return full


@contextmanager
def replacing(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside `path` to write to, renamed over `path` when the block ends.

    So `path` is always the old file or the new one, never half of one: a
    failure or Ctrl-C in the block removes the temporary file. A full disk is
    an OSError naming `path` (its own message names no file). The temporary
    name is per process, so overlapping runs do not write into one file.

    Examples
    --------
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "table.csv"
    >>> with replacing(path) as tmp:
    ...     _ = tmp.write_text("a,b")
    >>> path.read_text(), sorted(p.name for p in path.parent.iterdir())
    ('a,b', ['table.csv'])
    """
    path = Path(path)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.part")
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as error:
        tmp.unlink(missing_ok=True)
        full = disk_full_error(path, error)
        if full is error:
            raise
        raise full from error
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _microns_per(unit) -> float | None:
    """Microns per `unit` (a unit name from a file's metadata), None if not a length."""
    if not isinstance(unit, str):
        return None
    name = unit.strip().replace("\\u00B5", "µ").replace("\\u00b5", "µ").lower()
    return LENGTH_UNITS_UM.get(name)


def _positive(*values) -> bool:
    return all(v is not None and np.isfinite(v) and v > 0 for v in values)


def _pixel_size(page, tag: str, microns: float) -> float | None:
    """Size of a pixel along one axis from a ``*Resolution`` tag (pixels per unit)."""
    resolution = page.tags.get(tag)
    if resolution is None:
        return None
    value = resolution.value
    numerator, denominator = value if isinstance(value, tuple) else (value, 1)
    if not numerator or not denominator:
        return None
    return microns * float(denominator) / float(numerator)


def _ome_voxel_size(xml: str, series: int) -> tuple[float, float, float] | None:
    import xml.etree.ElementTree as ElementTree

    try:
        root = ElementTree.fromstring(xml)
    except ElementTree.ParseError:
        return None
    images = root.findall("{*}Image")
    if series >= len(images):
        return None
    pixels = images[series].find("{*}Pixels")
    if pixels is None:
        return None
    sizes = []
    for axis in "ZYX":
        value = pixels.get(f"PhysicalSize{axis}")
        microns = _microns_per(pixels.get(f"PhysicalSize{axis}Unit", "µm"))
        try:
            sizes.append(float(value) * microns if value is not None and microns else None)
        except ValueError:
            sizes.append(None)
    return tuple(sizes) if _positive(*sizes) else None


def read_voxel_size(path: str | os.PathLike, *, series: int = 0) -> tuple[float, float, float] | None:
    """The voxel size a TIFF file states, in microns, read from its header only.

    Read from, in order: OME-XML (``PhysicalSizeZ/Y/X`` with their units,
    µm when no unit is given); ImageJ metadata (``unit=``, ``spacing=`` for z,
    the ``XResolution``/``YResolution`` tags for y and x; ImageJ's own
    default pixel depth of 1 unit when ``spacing`` is absent); the JSON
    metadata tifffile writes for dtypes ImageJ cannot hold (``unit``,
    ``spacing``). A resolution without a unit of length (``pixel``, or the
    TIFF's inches of desktop software) is not a calibration.

    Parameters
    ----------
    path : path-like
        A ``.tif``/``.tiff`` file.
    series : int
        Which image of a multi-series file (OME-TIFF with several positions).

    Returns
    -------
    (z, y, x) tuple of float, or None
        Microns per voxel; None when the file does not state all three.

    Raises
    ------
    ValueError
        Naming the file, if it cannot be read as a TIFF.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> path = Path(tempfile.mkdtemp()) / "a.tif"
    >>> _ = write_stack(path, np.zeros((4, 8, 8), np.uint16), spacing=(0.3, 0.11, 0.11))
    >>> [round(s, 6) for s in read_voxel_size(path)]
    [0.3, 0.11, 0.11]
    """
    path = Path(path)
    try:
        with tifffile.TiffFile(path) as tif:
            if tif.is_ome:
                return _ome_voxel_size(tif.ome_metadata or "", series)
            page = tif.pages[0]
            if tif.is_imagej:
                metadata = tif.imagej_metadata or {}
                default_depth = 1.0  # ImageJ leaves spacing out when the pixel depth is 1 unit
            elif tif.is_shaped and tif.shaped_metadata:
                metadata = tif.shaped_metadata[min(series, len(tif.shaped_metadata) - 1)] or {}
                page = tif.series[series].keyframe if series < len(tif.series) else page
                default_depth = None
            else:
                return None
            unit = metadata.get("unit")
            microns = _microns_per(unit)
            if not microns:
                return None
            y = _pixel_size(page, "YResolution", _microns_per(metadata.get("yunit")) or microns)
            x = _pixel_size(page, "XResolution", microns)
            depth = metadata.get("spacing", default_depth)
            z_microns = _microns_per(metadata.get("zunit")) or microns
            try:
                z = float(depth) * z_microns if depth is not None else None
            except (TypeError, ValueError):
                z = None
    except Exception as error:  # tifffile raises many kinds for a bad file
        msg = f"cannot read {path} as a TIFF ({type(error).__name__}: {error}); is it a TIFF stack?"
        raise ValueError(msg) from error
    return (z, y, x) if _positive(z, y, x) else None


def tiff_files(folder: str | os.PathLike) -> dict[str, Path]:
    """The TIFF stacks of a folder, by image name (the file name without extension).

    The one place where image files are found: every step and command that
    lists images uses it. A TIFF ends in ``.tif`` or ``.tiff``, in any case
    (``.TIF``, ``.Tiff``); hidden files and folders (even one named
    ``x.tif``) are not images.

    Parameters
    ----------
    folder : path-like
        An existing folder.

    Returns
    -------
    dict of str to Path
        Sorted by name.

    Raises
    ------
    ValueError
        Two files of one name (``x.tif`` and ``x.tiff``), naming both; a
        TIFF name that is a broken symbolic link or a loop of them, naming it;
        or no TIFF but microscope files (``.czi``, ``.nd2``, ``.lif``), naming
        them and the ``rna-localization import`` command that converts them.

    Examples
    --------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> for name in ["b.TIF", "a.tiff", "notes.txt", ".hidden.tif"]:
    ...     _ = (folder / name).write_bytes(b"")
    >>> (folder / "c.tif").mkdir()
    >>> {name: path.name for name, path in tiff_files(folder).items()}
    {'a': 'a.tiff', 'b': 'b.TIF'}
    """
    folder = Path(folder)
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or path.suffix.lower() not in TIFF_SUFFIXES:
            continue
        try:
            if not stat.S_ISREG(path.stat().st_mode):  # a folder named x.tif, a device
                continue
        except OSError as error:  # only a symbolic link can be listed yet not stat'ed
            what = ("a loop of symbolic links" if error.errno == errno.ELOOP
                    else f"a broken symbolic link (to {os.readlink(path)})" if path.is_symlink()
                    else f"unreadable ({error.strerror})")
            msg = f"{path} is {what}; remove it or point it at the TIFF stack it stands for."
            raise ValueError(msg) from error
        if path.stem in found:
            msg = (f"{found[path.stem]} and {path.name} in {folder} are both image "
                   f"{path.stem!r}; remove or rename one of them.")
            raise ValueError(msg)
        found[path.stem] = path
    if not found:
        _refuse_microscope_files(folder)
    return dict(sorted(found.items()))


def _refuse_microscope_files(folder: Path) -> None:
    """A folder of .czi/.nd2/.lif files and no TIFF is not an empty folder: say how to convert them."""
    from .importing import BIOIO_PLUGINS  # importing reads and writes through this module

    files = sorted(path.name for path in folder.iterdir()
                   if path.suffix.lower() in BIOIO_PLUGINS and not path.name.startswith("."))
    if files:
        shown = ", ".join(files[:3]) + (f" and {len(files) - 3} more" if len(files) > 3 else "")
        suffixes = sorted({Path(name).suffix for name in files})
        msg = (f"{folder} holds no TIFF stack but {len(files)} microscope file(s) the pipeline "
               f"does not read directly ({shown}); convert them into one single-channel TIFF per "
               f"image and structure with `rna-localization import "
               f"{' '.join(f'{folder}/*{suffix}' for suffix in suffixes)} "
               f"--channels rna=0,centrosomes=1 --data-dir DATA_DIR` "
               f"(README, 'From the microscope files').")
        raise ValueError(msg)


def image_names(folder: Path) -> list[str]:
    """Names (file names without extension) of the TIFF files in a folder, sorted (:func:`tiff_files`)."""
    return list(tiff_files(folder))


def check_data_dir(data_dir: str | os.PathLike) -> Path:
    """Raise FileNotFoundError, naming it, if the data directory is missing or empty.

    Empty means nothing but hidden entries (the embedded server's ``.pgdata``)
    and config files.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        msg = f"data directory {data_dir} does not exist; check data.data_dir in your pipeline.toml."
        raise FileNotFoundError(msg)
    if not any(not p.name.startswith(".") and p.suffix != ".toml" for p in data_dir.iterdir()):
        msg = (
            f"data directory {data_dir} is empty: put each structure's stacks in "
            f"<structure>/raw-data/<name>.tif and the metadata CSV beside them (README, 'Your data')."
        )
        raise FileNotFoundError(msg)
    return data_dir


def find_image_pairs(
    data_dir: str | os.PathLike,
    structure: str,
    *,
    raw_data_dir: str = DataConfig.raw_data_dir,
    segmentation_dir: str = DataConfig.segmentation_dir,
    segmentation_file_suffix: str = DataConfig.segmentation_file_suffix,
    check_shapes: bool = True,
) -> list[ImagePair]:
    """Every raw stack of a structure with its segmentation.

    Parameters
    ----------
    data_dir : path-like
        The data directory (PRODUCT.md, "Data layout").
    structure : str
        Folder of the structure, e.g. ``"rna"``.
    raw_data_dir, segmentation_dir, segmentation_file_suffix : str
        As in the config's ``[data]`` section.
    check_shapes : bool
        Compare raw and segmentation shapes from the TIFF headers.

    Returns
    -------
    list of ImagePair
        Sorted by name.

    Raises
    ------
    FileNotFoundError
        A missing folder or segmentation, named.
    ValueError
        An unreadable TIFF or a shape mismatch, named.
    """
    root = check_data_dir(data_dir) / structure
    raw_folder = root / raw_data_dir
    seg_folder = root / segmentation_dir
    if not root.is_dir():
        msg = f"structure folder {root} does not exist; check data.data_dir and data.structures."
        raise FileNotFoundError(msg)
    if not raw_folder.is_dir():
        msg = f"structure folder {root} has no {raw_data_dir}/ folder holding its raw TIFF stacks."
        raise FileNotFoundError(msg)
    raws = tiff_files(raw_folder)
    if not raws:
        msg = f"{raw_folder} holds no .tif files."
        raise FileNotFoundError(msg)
    segmentations = tiff_files(seg_folder) if seg_folder.is_dir() else {}
    pairs = []
    for name, raw in raws.items():
        segmentation = segmentations.get(name + segmentation_file_suffix)
        if segmentation is None:
            msg = (
                f"no segmentation for {raw}: expected {seg_folder / (name + segmentation_file_suffix)}.tif "
                f"(run `rna-localization segment --structure {structure}` or check "
                f"data.segmentation_file_suffix)."
            )
            raise FileNotFoundError(msg)
        if check_shapes:
            raw_shape, seg_shape = stack_shape(raw), stack_shape(segmentation)
            if raw_shape != seg_shape:
                msg = (
                    f"{segmentation} has shape {seg_shape} but its raw stack {raw} has "
                    f"shape {raw_shape}; a segmentation must match its raw stack voxel for voxel."
                )
                raise ValueError(msg)
        pairs.append(ImagePair(structure, name, raw, segmentation))
    return pairs
