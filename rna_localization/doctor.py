"""``rna-localization doctor``: is this machine, config, database and data set ready to run?

:func:`diagnose` checks, in order, and never stops at the first problem:

1. Python and the packages the pipeline imports (with their minimum versions);
2. the config file (it loads and validates);
3. the database (connect, ``SELECT 1``; no password written in ``database.url``);
4. the data layout: the data directory, every structure's raw-data and
   segmentation folders, one segmentation per raw stack with the same 3D
   shape, each segmentation plausible (some objects, not implausibly many,
   no object filling the stack: :mod:`.segmentation.quality`), and the
   metadata CSV (readable, with the name column, naming only existing
   images, holding the columns the config refers to), and the voxel size
   the stacks state against ``[scale]`` (:mod:`.calibration`: more than 1%
   apart is an error).

Each check gives a :class:`Finding`: ok or a problem, what was found, and
how to fix it.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import re
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

from ._dependencies import CHECKED

__all__ = ["Finding", "diagnose", "format_findings"]

#: (import name, distribution name(s), minimum version, needed for): the packages of setup.py.
PACKAGES = CHECKED

_SHOWN = 5  # names listed in one finding before "and N more"


@dataclass(frozen=True)
class Finding:
    """One check's result.

    Attributes
    ----------
    ok : bool
        False when something must be fixed before the pipeline can run.
    what : str
        What was checked and found, naming the file, value or package.
    fix : str
        How to fix it ("" when nothing is to be done).
    """

    ok: bool
    what: str
    fix: str = ""


def _names(names) -> str:
    names = sorted(names)
    more = f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else ""
    return ", ".join(names[:_SHOWN]) + more


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version.split("+")[0])[:3])


def _distribution_version(distributions) -> str | None:
    for name in distributions:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


# ------------------------------------------------------------------ checks
def check_python() -> list[Finding]:
    """Python itself and every package, importable and recent enough."""
    version = ".".join(map(str, sys.version_info[:3]))
    findings = [
        Finding(True, f"Python {version}") if sys.version_info >= (3, 11)
        else Finding(False, f"Python {version} is older than 3.11",
                     "create the environment with Python 3.11 or newer (see README, 'Install')")
    ]
    for module, distributions, minimum, needed_for in PACKAGES:
        install = f"pip install '{distributions[0]}>={minimum}'"
        try:
            with warnings.catch_warnings():  # e.g. pgserver's XDG_RUNTIME_DIR notice: not a finding
                warnings.simplefilter("ignore")
                imported = importlib.import_module(module)
        except Exception as error:  # an installed but broken package raises anything
            if needed_for:
                findings.append(Finding(True, f"{distributions[0]} is not installed (optional: "
                                              f"only `rna-localization {needed_for}` needs it)",
                                    f"to use it: {install}"))
            else:
                findings.append(Finding(False, f"{distributions[0]} cannot be imported "
                                               f"({type(error).__name__}: {error})", install))
            continue
        version = _distribution_version(distributions) or str(getattr(imported, "__version__", ""))
        if version and _version_tuple(version) < _version_tuple(minimum):
            findings.append(Finding(False, f"{distributions[0]} {version} is older "
                                    f"than the {minimum} the pipeline needs", install))
        else:
            findings.append(Finding(True, f"{distributions[0]} {version or '(version unknown)'}"))
    return findings


def check_database(config) -> list[Finding]:
    """The config's database answers ``SELECT 1``; no password sits in the config."""
    from .db import Database
    from .db.database import _params, _redact

    findings = []
    url = config.database.url
    name = config.database.name
    if url:
        try:
            params = _params(url)
        except ValueError:
            params = {}
        has_password = bool(params.get("password"))
        name = params.get("dbname") or name
        if has_password:
            findings.append(Finding(
                False, f"database.url in {config.source} holds a password, in clear text",
                "remove it from the URL and put it in ~/.pgpass (host:port:database:user:password, "
                "chmod 600) or in the PGPASSWORD environment variable",
            ))
    try:
        db = Database.from_config(config)
        db.ping()
    except Exception as error:  # every way of failing is a finding, not a crash
        detail = _redact(str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__)
        fix = ("check database.url (host, port, user, database name), that the server runs and "
               "accepts you, and ~/.pgpass or PGPASSWORD for the password" if url else
               f"check that {config.data.data_dir / '.pgdata'} is writable and pgserver is installed; "
               f"`rna-localization db status` shows the embedded server")
        findings.append(Finding(False, f"database {name!r} is not reachable: {detail}", fix))
        return findings
    findings.append(Finding(True, f"database {db.name!r} reachable at {db.url}"))
    return findings


def _check_structure(config, structure: str) -> tuple[list[Finding], set[str]]:
    from . import io
    from .objects import label_objects
    from .segmentation import quality

    data = config.data
    raw_folder, seg_folder = config.structure_dirs(structure)
    root = raw_folder.parent
    if not root.is_dir():
        return [Finding(False, f"structure folder {root} does not exist",
                        f"create it with {data.raw_data_dir}/ and {data.segmentation_dir}/ inside, "
                        f"or remove {structure!r} from data.structures")], set()
    if not raw_folder.is_dir():
        return [Finding(False, f"{root} has no {data.raw_data_dir}/ folder",
                        f"put the raw stacks in {raw_folder}/<name>.tif (or set data.raw_data_dir)")], set()
    try:
        raw_files = io.tiff_files(raw_folder)
        seg_files = io.tiff_files(seg_folder) if seg_folder.is_dir() else {}
    except ValueError as error:  # x.tif beside x.tiff, a symbolic link loop
        return [Finding(False, str(error).split(";")[0], str(error).split("; ", 1)[-1])], set()
    names = list(raw_files)
    if not names:
        return [Finding(False, f"{raw_folder} holds no .tif files",
                        "put one single-channel 3D TIFF per image there")], set()
    if not seg_folder.is_dir():
        return [Finding(False, f"{root} has no {data.segmentation_dir}/ folder",
                        f"run `rna-localization segment --structure {structure}` (or set "
                        f"data.segmentation_dir)"),
                *_check_voxel_sizes(config, raw_folder, seg_folder, names)], set(names)
    missing, unreadable, mismatched, not_objects = [], [], [], []
    implausible: dict[str, list[str]] = {}  # kind of problem: images
    for name in names:
        raw = raw_files[name]
        segmentation = seg_files.get(name + data.segmentation_file_suffix)
        if segmentation is None:
            missing.append(name)
            continue
        try:
            shapes = io.stack_shape(raw), io.stack_shape(segmentation)
        except ValueError as error:
            unreadable.append(str(error))
            continue
        if shapes[0] != shapes[1]:
            mismatched.append(f"{name} ({shapes[0]} vs {shapes[1]})")
            continue
        try:  # one segmentation in memory at a time, labelled once
            stack = io.read_stack(segmentation)
        except ValueError as error:  # e.g. truncated pixel data behind a good header
            unreadable.append(str(error))
            continue
        try:
            labels = label_objects(stack)
        except (ValueError, TypeError) as error:  # floats, negative labels
            not_objects.append(f"{segmentation}: {error}")
            continue
        del stack
        sizes = quality.object_sizes(labels)
        for problem in quality._problems(sizes, labels.shape, config.spacing):
            implausible.setdefault(problem.kind, []).append(name)
        del labels
    findings = []
    calibrated = _check_voxel_sizes(config, raw_folder, seg_folder, names)
    if missing:
        findings.append(Finding(
            False, f"{structure}: {len(missing)} raw stack(s) without a segmentation in {seg_folder}: "
                   f"{_names(missing)}",
            f"run `rna-localization segment --structure {structure}`, or check "
            f"data.segmentation_file_suffix ({data.segmentation_file_suffix!r})",
        ))
    for message in unreadable[:_SHOWN]:
        findings.append(Finding(False, message, "re-export the file as a single-channel 3D TIFF stack"))
    for message in not_objects[:_SHOWN]:
        findings.append(Finding(False, message, "save it as a mask (one non-zero value) or as a "
                                                "label image of non-negative integers"))
    if mismatched:
        findings.append(Finding(False, f"{structure}: segmentation and raw stack differ in shape for "
                                       f"{_names(mismatched)}",
                                "segment those raw stacks again"))
    if not findings:
        findings.append(Finding(True, f"{structure}: {len(names)} raw stacks, each with a segmentation "
                                      f"of the same 3D shape"))
    findings += calibrated
    page = seg_folder / "qc" / "index.html"
    fix = (f"check the voxel size ([scale] xy = {config.scale.xy}, z = {config.scale.z} in "
           f"{config.source.name if config.source else 'pipeline.toml'}) and the raw stacks; tune "
           f"the segmentation in a playground notebook (optimized-segmentation-notebooks/) and run "
           f"`rna-localization segment --structure {structure} --workflow FILE --overwrite`"
           + (f"; {page} shows every image" if page.is_file() else ""))
    kinds = {
        "empty": "with no objects",
        "crowded": f"with implausibly many objects (more than {quality.MAX_OBJECTS_PER_UM3:g} "
                   f"per µm³ of the stack)",
        "huge": f"with one object over {quality.MAX_OBJECT_FRACTION:.0%} of the stack",
    }
    for kind, what in kinds.items():
        if kind in implausible:
            findings.append(Finding(False, f"{structure}: {len(implausible[kind])} segmentation(s) "
                                           f"{what}: {_names(implausible[kind])}", fix))
    return findings, set(names)


def _check_voxel_sizes(config, raw_folder: Path, seg_folder: Path, names) -> list[Finding]:
    """An error per voxel size stated by raw stacks or segmentations that [scale] does not say."""
    from . import io
    from .calibration import (
        FIX_RAW,
        FIX_SEGMENTATION,
        find_mismatches,
        format_voxel_size,
        mismatch_message,
        scale_source,
    )

    raw_files = io.tiff_files(raw_folder)
    seg_files = io.tiff_files(seg_folder) if seg_folder.is_dir() else {}
    raws = [raw_files.get(name) for name in names]
    segmentations = [seg_files.get(name + config.data.segmentation_file_suffix)
                     for name in names] if seg_folder.is_dir() else []
    findings = []
    for paths, fix in [(raws, FIX_RAW), (segmentations, FIX_SEGMENTATION)]:
        paths = [path for path in paths if path is not None]
        mismatches = find_mismatches(paths, config.spacing)
        for sentence in mismatch_message(mismatches, config.spacing, used=scale_source(config)):
            findings.append(Finding(False, sentence, fix.removeprefix("so ")))
    if not findings and raws:
        findings.append(Finding(True, f"no stack of {raw_folder.parent.name} states a voxel size "
                                      f"other than [scale]'s ({format_voxel_size(config.spacing)})"))
    return findings


def _check_metadata(config, images: set[str]) -> list[Finding]:
    from .config import ThresholdTable
    from .metadata import metadata_problems, read_metadata_csv

    path = config.metadata_path
    name_column = config.data.image_name_column
    try:
        table = read_metadata_csv(path, name_column=name_column)
    except (ValueError, FileNotFoundError) as error:
        return [Finding(False, str(error),
                        f"fix {path}: UTF-8, one row per image, a {name_column!r} column, column "
                        f"names of letters, digits and underscores (README, 'Your data')")]
    findings = []
    names = set(table[name_column])
    threshold = config.distribution.distance_threshold
    problems = metadata_problems(
        table, path=f"metadata CSV {path}", name_column=name_column, images=images,
        raw_data_dir=config.data.raw_data_dir,
        threshold=threshold if isinstance(threshold, ThresholdTable) else None)
    for problem in problems[:_SHOWN]:
        what, _, fix = problem.partition("; ")
        findings.append(Finding(False, what, fix))
    if len(problems) > _SHOWN:
        findings.append(Finding(False, f"metadata CSV {path}: {len(problems) - _SHOWN} more "
                                       f"such lines", "see above"))
    without = images - names
    if without:
        findings.append(Finding(True, f"image(s) without a row in metadata CSV {path}: {_names(without)}",
                                "add their rows, or they are left out of normalization and distributions"))
    wanted = {"normalization.group_by": config.normalization.group_by,
              "plot.hue": config.plot.hue, "plot.col": config.plot.col}
    for key, column in wanted.items():
        if column and column not in table.columns:
            findings.append(Finding(False, f"{key} = {column!r} is not a column of metadata CSV {path} "
                                           f"(it has {', '.join(map(str, table.columns))})",
                                    f"add the column or change {key}"))
    if not findings:
        findings.append(Finding(True, f"metadata CSV {path}: {len(table)} images, columns "
                                      f"{', '.join(map(str, table.columns))}"))
    return findings


def check_data(config) -> list[Finding]:
    """The data directory fits the config: folders, stacks, segmentations, metadata CSV."""
    from . import io

    try:
        io.check_data_dir(config.data.data_dir)
    except FileNotFoundError as error:
        return [Finding(False, str(error), "set data.data_dir to the folder holding your structures")]
    findings, images = [], set()
    for structure in config.data.structures:
        found, names = _check_structure(config, structure)
        findings += found
        images |= names
    return findings + _check_metadata(config, images)


def diagnose(config_path: str | os.PathLike = "pipeline.toml", *, database: bool = True) -> list[Finding]:
    """Every check, in order; a problem never hides the checks after it.

    Parameters
    ----------
    config_path : path-like
        The pipeline.toml to check.
    database : bool
        Also connect to the database (starting the embedded server if needed).

    Returns
    -------
    list of Finding

    Examples
    --------
    >>> problems = [f for f in diagnose("pipeline.toml") if not f.ok]  # doctest: +SKIP
    """
    from .config import load_config

    findings = check_python()
    try:
        config = load_config(config_path)
    except (ValueError, FileNotFoundError) as error:
        findings.append(Finding(False, str(error),
                                f"edit {Path(config_path)} (README, 'pipeline.toml' lists every key)"))
        return findings
    findings.append(Finding(True, f"config {config.source} loads"))
    if database:
        findings += check_database(config)
    return findings + check_data(config)


def format_findings(findings: list[Finding]) -> str:
    """One line per finding, ✓ or ✗, with the fix of each problem under it."""
    lines = []
    for finding in findings:
        lines.append(f"{'✓' if finding.ok else '✗'} {finding.what}")
        if finding.fix:
            lines.append(f"    {'fix' if not finding.ok else 'note'}: {finding.fix}")
    problems = sum(not f.ok for f in findings)
    lines.append("no problems found" if not problems else f"{problems} problem(s) found")
    return "\n".join(lines)
