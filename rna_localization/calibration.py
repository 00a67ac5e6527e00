"""The voxel size the files state against the one the config says.

``[scale]`` in pipeline.toml is what the user typed and always wins; a file
whose own calibration (:func:`.io.read_voxel_size`) differs from it by more
than :data:`RTOL` is reported, naming the file and both values, by
``extract`` and ``segment`` (a :class:`VoxelSizeWarning`) and by ``doctor``
(an error finding). A 10x typo in ``[scale]`` (0.65 for 0.065) is thus caught
as soon as the files say otherwise.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "RTOL",
    "VoxelSizeMismatch",
    "VoxelSizeWarning",
    "find_mismatches",
    "format_voxel_size",
    "mismatch_message",
    "same_voxel_size",
    "scale_source",
    "warn_mismatches",
]

#: Relative difference per axis above which two voxel sizes disagree (1%).
RTOL = 0.01

_SHOWN = 3  # files named in one message before "and N more"


class VoxelSizeWarning(UserWarning):
    """A file's own voxel size disagrees with the one the pipeline uses."""


@dataclass(frozen=True)
class VoxelSizeMismatch:
    """One file whose stated voxel size differs from the one in use.

    Attributes
    ----------
    path : Path
        The file.
    file_voxel_size : (z, y, x) tuple of float
        Microns per voxel, as the file states it.
    """

    path: Path
    file_voxel_size: tuple[float, float, float]


def same_voxel_size(a, b, *, rtol: float = RTOL) -> bool:
    """Whether two (z, y, x) voxel sizes agree within `rtol` on every axis.

    The difference is relative to `b` (the reference, e.g. the config's).

    Examples
    --------
    >>> same_voxel_size((0.2, 0.065, 0.065), (0.2, 0.0651, 0.0651))
    True
    >>> same_voxel_size((0.2, 0.65, 0.65), (0.2, 0.065, 0.065))
    False
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return bool(np.all(np.abs(a - b) <= rtol * np.abs(b)))


def format_voxel_size(voxel_size) -> str:
    """``"z 0.3, y 0.11, x 0.11 µm"``, or ``"z 0.3, xy 0.11 µm"`` when y = x.

    Examples
    --------
    >>> format_voxel_size((0.2, 0.065, 0.065))
    'z 0.2, xy 0.065 µm'
    """
    z, y, x = (float(s) for s in voxel_size)
    if y == x:
        return f"z {z:.4g}, xy {x:.4g} µm"
    return f"z {z:.4g}, y {y:.4g}, x {x:.4g} µm"


def scale_source(config) -> str:
    """Where a config's voxel size comes from, for messages: ``"[scale] in /data/pipeline.toml"``."""
    return f"[scale] in {config.source}" if config.source else "the config's [scale]"


#: What to do about raw stacks or segmentations whose voxel size differs from [scale].
FIX_RAW = "so correct [scale] if the files are right"
FIX_SEGMENTATION = ("so if [scale] is right, segment these images again "
                    "(rna-localization segment --overwrite)")


def find_mismatches(paths: Iterable[str | os.PathLike], spacing, *,
                    rtol: float = RTOL) -> list[VoxelSizeMismatch]:
    """The files whose stated voxel size differs from `spacing`.

    Files that state no voxel size, or cannot be read (reported by the
    step that reads them), are not mismatches.

    Parameters
    ----------
    paths : iterable of path-like
        TIFF files.
    spacing : (z, y, x) sequence of float
        Microns per voxel in use (the config's ``[scale]``).
    rtol : float
        Relative tolerance per axis.

    Returns
    -------
    list of VoxelSizeMismatch
        In the order of `paths`.
    """
    from .io import read_voxel_size

    found = []
    for path in paths:
        try:
            voxel_size = read_voxel_size(path)
        except ValueError:
            continue
        if voxel_size is not None and not same_voxel_size(voxel_size, spacing, rtol=rtol):
            found.append(VoxelSizeMismatch(Path(path), voxel_size))
    return found


def mismatch_message(mismatches: list[VoxelSizeMismatch], spacing, *, used: str,
                     fix: str = "") -> list[str]:
    """One sentence per distinct file voxel size, naming the files and both values.

    Parameters
    ----------
    mismatches : list of VoxelSizeMismatch
    spacing : (z, y, x) sequence of float
        The voxel size in use.
    used : str
        Where it comes from, e.g. ``"[scale] in /data/pipeline.toml"``.
    fix : str
        What to do, appended to each sentence.

    Returns
    -------
    list of str
    """
    groups: dict[tuple[float, ...], list[Path]] = {}
    for mismatch in mismatches:
        key = tuple(round(float(s), 6) for s in mismatch.file_voxel_size)
        groups.setdefault(key, []).append(mismatch.path)
    sentences = []
    for voxel_size, paths in groups.items():
        shown = ", ".join(str(p) for p in paths[:_SHOWN])
        more = f" and {len(paths) - _SHOWN} more" if len(paths) > _SHOWN else ""
        files = f"{len(paths)} files ({shown}{more}) state" if len(paths) > 1 else f"{shown} states"
        sentences.append(
            f"{files} a voxel size of {format_voxel_size(voxel_size)} but {used} says "
            f"{format_voxel_size(spacing)} (more than {RTOL:.0%} apart); "
            f"{format_voxel_size(spacing)} is used" + (f", {fix}" if fix else "")
        )
    return sentences


def warn_mismatches(mismatches: list[VoxelSizeMismatch], spacing, *, used: str, fix: str = "",
                    stacklevel: int = 2) -> None:
    """A :class:`VoxelSizeWarning` per sentence of :func:`mismatch_message`.

    Shown every time (not once per message, Python's default), so a notebook
    that runs a step again hears about it again; a filter the user set (e.g.
    "ignore") still wins.
    """
    sentences = mismatch_message(mismatches, spacing, used=used, fix=fix)
    if not sentences:
        return
    from tqdm.auto import tqdm

    with tqdm.external_write_mode(file=sys.stderr), warnings.catch_warnings():
        warnings.filterwarnings("always", category=VoxelSizeWarning, append=True)
        for sentence in sentences:
            warnings.warn(VoxelSizeWarning(sentence + "."), stacklevel=stacklevel + 1)
