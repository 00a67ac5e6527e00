"""The pipeline's steps: the array core applied to a data set, with PostgreSQL.

Each step is one call, safe to run again, and returns a table of what it did,
so that a notebook cell can show it. ``run`` chains them.

    extract → measure_distances → load_metadata → normalize
            → compute_distributions → make_plots
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from . import io
from ._cores import usable_cores
from ._errors import InputTypeError
from ._faults import fault_point
from .analysis import BASELINE_COLUMNS, add_chance_baseline
from .apertures import spot_centroids
from .baseline import image_baseline
from .calibration import FIX_RAW, FIX_SEGMENTATION, find_mismatches, scale_source, warn_mismatches
from .capture import (
    PSF_MIN_OBJECTS,
    PSF_OUTLIER_RATIO,
    corrected_apertures,
    load_compiled,
    psf_outliers,
)
from .config import Config, ThresholdTable
from .db import Database
from .db.database import reuse_connections
from .db.locks import pipeline_lock as _exclusive
from .db.results import (
    NORMALIZED_COLUMN,
    add_distance_columns,
    centroid_distance_column,
    clear_normalized_intensities,
    distance_column,
    measured_images,
    read_distribution_objects,
    read_group_objects,
    read_images_table,
    read_normalization_objects,
    read_normalization_state,
    read_plot_objects,
    read_raw_path,
    replace_images_table,
    write_distances,
    write_normalization_state,
    write_normalized_intensities,
)
from .db.summaries import distance_summary as _distance_summary
from .db.summaries import first_objects, molecules_per_image
from .db.tables import (
    add_baseline_columns,
    delete_image,
    ensure_schema,
    ensure_structure_table,
    extracted_images,
    read_label_image,
    read_spot_centroids,
    register_images,
    vacuum_analyze,
    write_image_objects,
)
from .distances import nearest_distances, point_distances
from .distributions import (
    DISTRIBUTION_COLUMNS,
    IMAGE_REFERENCE_MIN_OBJECTS,
    MIN_REFERENCE_OBJECTS,
    REFERENCE_DEPTH_REACH_UM,
    SINGLE_AREA_WINDOW,
    cumulative_distribution,
    distance_grid,
    isolated_spots,
    normalize_intensities,
    object_references,
    single_molecule_references,
)
from .hot_pixels import without_hot_pixels
from .metadata import metadata_problems, read_distributions_csv, read_metadata_csv
from .objects import measure_objects, object_voxels
from .parallel import map_images, shared_clusters, shares_cores
from .saturation import CLIPPED_ADVICE, clipped_objects

__all__ = [
    "DISTRIBUTIONS_FILE",
    "PipelineWarning",
    "MOLECULES_FILE",
    "compute_distributions",
    "count_molecules",
    "cumulative_figures",
    "delete_image_data",
    "distance_summary",
    "distribution_inputs",
    "extract",
    "image_distance_threshold",
    "load_metadata",
    "make_plots",
    "measure_distances",
    "normalize",
    "peek_objects",
    "plot_image_objects",
    "run",
    "show_info",
]

#: File name of the cumulative distributions under ``output_dir/data/``.
DISTRIBUTIONS_FILE = "cumulative_distributions.csv"
#: File name of the per-image molecule counts under ``output_dir/data/``.
MOLECULES_FILE = "molecules_per_image.csv"

#: Where the steps say what they skip (the CLI prints it as ``info: ...``).
logger = logging.getLogger("rna_localization")


def _skipped_without_structure_2(config: Config) -> str:
    return (f"no second structure (data.structures = {list(config.data.structures)}, "
            f"distances.structure_2 = \"\"): distances, cumulative distributions, their "
            f"figures and statistics are skipped")


class _InfoLines(logging.Handler):
    """Writes each record as ``info: <message>`` to the ``sys.stdout`` of the moment."""

    def __init__(self, previous_level: int) -> None:
        super().__init__()
        self.previous_level = previous_level

    def emit(self, record: logging.LogRecord) -> None:
        print(f"info: {record.getMessage()}", file=sys.stdout)


def show_info(show: bool = True) -> None:
    """Print the steps' information lines, as the command line does, e.g. in a notebook.

    The steps say what they skip, and why (a data set with no second structure
    skips distances, distributions, figures and statistics), through the
    ``rna_localization`` logger, which Python leaves silent. After
    ``show_info()`` each such message is printed as one ``info: ...`` line
    (under the notebook cell that caused it); calling it again adds nothing.

    Parameters
    ----------
    show : bool
        False stops the lines again.

    Examples
    --------
    >>> show_info()
    >>> show_info()  # still one line per message
    >>> logger.info("distances skipped")
    info: distances skipped
    >>> show_info(False)
    >>> logger.info("distances skipped")
    """
    shown = [handler for handler in logger.handlers if isinstance(handler, _InfoLines)]
    if show and not shown:
        logger.addHandler(_InfoLines(logger.level))
        if logger.getEffectiveLevel() > logging.INFO:
            logger.setLevel(logging.INFO)
    elif not show:
        for handler in shown:
            logger.removeHandler(handler)
            logger.setLevel(handler.previous_level)


class PipelineWarning(UserWarning):
    """Something the user should know about, that does not stop the pipeline."""


def _warn(message: str) -> None:
    warnings.warn(message, PipelineWarning, stacklevel=3)


def _some(names, separator: str = ", ", most: int = 5) -> str:
    """The first `most` of `names` for a message, "and more" after them if there are more.

    >>> _some(["a", "b", "c"], most=2)
    'a, b and more'
    """
    return f"{separator.join(names[:most])}{' and more' if len(names) > most else ''}"


def _span(values, spec: str = "") -> str:
    """The range of `values` for a message: one number when they are all the same.

    >>> _span([24, 31]), _span([24, 24]), _span([1.051, 1.049], ".2f")
    ('24-31', '24', '1.05')
    """
    low, high = format(min(values), spec), format(max(values), spec)
    return low if low == high else f"{low}-{high}"


def _one_connection(function):
    """Run `function` inside :func:`~rna_localization.db.database.reuse_connections`.

    A step's transactions (and, run in this process, its images' tasks) then
    share one PostgreSQL connection instead of opening one each.
    """
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        with reuse_connections():
            return function(*args, **kwargs)
    return wrapper


def _database(config: Config, db: Database | None) -> Database:
    return db if db is not None else Database.from_config(config)


def _table_exists(db: Database, table: str) -> bool:
    return bool(db.columns(table))


# -------------------------------------------------------------------- extract
def _check_finite(raw: np.ndarray, path: Path) -> None:
    """Refuse a float stack with NaN or infinite voxels, naming the file and counting them.

    One such voxel makes every sum over it non-finite: its object's intensity, its
    group's single-molecule reference, and so every molecule count of the group.
    """
    if raw.dtype.kind not in "fc":
        return
    bad = raw.size - int(np.count_nonzero(np.isfinite(raw)))
    if bad:
        msg = (
            f"{path} has {bad} voxel{'s' if bad > 1 else ''} that {'are' if bad > 1 else 'is'} "
            f"NaN or infinite; replace them with real intensities (e.g. Fiji: Process > Math > "
            f"Remove NaNs) or export the stack again."
        )
        raise ValueError(msg)


@_one_connection
def _extract_one(dsn: str, pair: io.ImagePair, spacing, overwrite: bool,
                 apertures: bool = True, psf_um=None) -> dict:
    # psf_um: the PSF to correct with, when the image's own fits were too few to
    # measure it (the median of its structure's other images; extract's second pass).
    # Each file fingerprinted before it is read: a file replaced while it is read is
    # seen as changed by the next run. The raw stack's SHA-256 is computed in a thread
    # while the segmentation is read and labeled (hashlib lets go of the GIL), and
    # waited for before the raw stack is read.
    segmentation_fingerprint = io.file_fingerprint(pair.segmentation)
    with ThreadPoolExecutor(max_workers=1) as hashing:
        raw_fingerprint = hashing.submit(io.file_fingerprint, pair.raw)
        # The segmentation first, kept as its object voxels only: the raw stack is then
        # the one whole-stack array held (peak memory about 1.5 raw stacks, not 7). Both
        # are mapped from their files when stored uncompressed (read_stack's `mapped`):
        # no memory is then allocated for them, and no copy made.
        segmentation = io.read_stack(pair.segmentation, mapped=True)
        try:
            label_image = object_voxels(segmentation)
        except (TypeError, ValueError) as error:  # the file's dtype or shape
            msg = f"{pair.segmentation}: {error}"
            raise (ValueError if isinstance(error, ValueError) else InputTypeError)(msg) from error
        del segmentation
        fingerprints = {"raw_fingerprint": raw_fingerprint.result(),
                        "segmentation_fingerprint": segmentation_fingerprint}
    raw = io.read_stack(pair.raw, mapped=True)
    _check_finite(raw, pair.raw)
    if raw.shape != label_image.shape:
        msg = (
            f"{pair.segmentation} has shape {label_image.shape} but its raw stack "
            f"{pair.raw} has shape {raw.shape}."
        )
        raise ValueError(msg)
    objects = measure_objects(label_image, raw)
    # Objects whose light the camera clipped (a plateau at its ceiling): named by extract.
    ceiling, clipped = clipped_objects(objects["max_intensity"],
                                       lambda: np.ravel(raw)[label_image.voxels])
    uncorrected = False
    psf = None
    psf_depth = None
    estimated = (0, float("nan"))
    if apertures:
        # Matched apertures and light centroids: for the structures whose molecules are
        # counted or whose distances are measured (the costliest part of extraction).
        # An image alone in this process: every core (the hot pixels' medians over the
        # planes in bands of rows; the next block's nearest objects found while this
        # one's light is summed); one where images share the cores
        # (a cluster's workers, or this process' image threads).
        threads = 1 if shares_cores() else usable_cores()
        # The light the apertures sum, the camera's hot and dead pixels repaired (a float
        # copy only when the stack has some: rna_localization.hot_pixels).
        light = without_hot_pixels(raw, spacing=spacing, threads=threads)
        # With each bright object's light beyond its aperture added (a granule's image
        # is wider than a single molecule's: rna_localization.capture).
        # (On an image thread this block can leave its filter to the whole process when
        # another thread's closes out of order: map_images puts the caller's back.)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # reported by extract, per image
            measured = corrected_apertures(label_image, light, spacing=spacing, threads=threads,
                                           psf_um=psf_um, ceiling=ceiling)
        uncorrected = len(measured) > 0 and measured.attrs["psf_um"] is None
        if len(measured):
            psf = (*(measured.attrs["psf_um"] or (None, None)), measured.attrs["psf_objects"])
            psf_depth = measured.attrs.get("psf_depth")
            estimated = _clipped_estimate(measured)
        centroids = spot_centroids(label_image, light,
                                   measured.set_index("object_id")["background"])
        del light
        objects = (objects.merge(measured, on="object_id", how="left", validate="one_to_one")
                   .merge(centroids, on="object_id", how="left", validate="one_to_one"))
    with Database(dsn).transaction() as cursor:
        written = write_image_objects(
            cursor, pair.structure, pair.name, objects, label_image, spacing,
            raw_path=str(pair.raw), segmentation_path=str(pair.segmentation), overwrite=overwrite,
            psf=psf, psf_depth_changes=None if psf_depth is None else psf_depth["changes"],
            **fingerprints,
        )
    return {"structure": pair.structure, "name": pair.name, "objects": len(objects),
            "status": "extracted" if written else "skipped", "uncorrected": uncorrected,
            "psf_depth": psf_depth,
            "ceiling": ceiling, "clipped": int(clipped.sum()), "estimated": estimated[0],
            "estimated_share": estimated[1]}


def _clipped_estimate(measured: pd.DataFrame) -> tuple[int, float]:
    """How many objects have clipped light estimated, and its share of their light."""
    took = measured["clipped_light"].to_numpy() > 0
    if not took.any():
        return 0, float("nan")
    added = (measured["clipped_light"] * measured["capture_correction"]).to_numpy()[took].sum()
    return int(took.sum()), float(added / measured["spot_intensity"].to_numpy()[took].sum())


def _check_voxel_sizes(config: Config, pairs: list[io.ImagePair]) -> None:
    """Warn about raw stacks and segmentations whose own voxel size is not [scale]'s."""
    for paths, fix in [([p.raw for p in pairs], FIX_RAW),
                       ([p.segmentation for p in pairs], FIX_SEGMENTATION)]:
        warn_mismatches(find_mismatches(paths, config.spacing), config.spacing,
                        used=scale_source(config), fix=fix, stacklevel=3)


def _replaced_files(extracted: pd.DataFrame, pairs: list[io.ImagePair]) -> set[tuple[str, str]]:
    """(structure, name) of the extracted images whose raw stack or segmentation is now another file."""
    stored = extracted.set_index(["structure", "name"])
    replaced = set()
    for pair in pairs:
        key = (pair.structure, pair.name)
        if key not in stored.index:
            continue
        row = stored.loc[key]
        for kind, path in [("raw", pair.raw), ("segmentation", pair.segmentation)]:
            if io.file_changed(path, *(_none(row[f"{kind}_{field}"])
                                       for field in ("size", "mtime", "sha256"))):
                replaced.add(key)
                break
    return replaced


def _none(value):
    """None for SQL NULL however pandas holds it, the value itself otherwise."""
    return None if value is None or (isinstance(value, float) and np.isnan(value)) else value


@_one_connection
def extract(config: Config, *, overwrite: bool = False, db: Database | None = None,
            workers: int | None = None) -> pd.DataFrame:
    """Objects of every structure and image into the database.

    Every image pair is checked first (segmentation present, same shape as
    its raw stack), so that a typo stops the run before anything is written.
    A file whose own voxel size differs from ``[scale]`` by more than 1% is
    a :class:`.calibration.VoxelSizeWarning` naming it and both values;
    ``[scale]`` is used all the same. An image extracted earlier at another
    voxel size than ``[scale]`` says now (a corrected typo) is extracted
    again without ``overwrite``, with a warning; that forgets its distances,
    so the next ``distances`` measures them again. So is, with a warning, an
    image whose raw stack or segmentation changed since it was extracted (its
    size, modification time and SHA-256 are stored: a file only touched or
    copied is not extracted again).
    Each image and structure is then written in one transaction. An image
    whose objects reach the camera's ceiling (a plateau of clipped light:
    :mod:`.saturation`) is named in a warning, with how many objects do.

    Parameters
    ----------
    config : Config
    overwrite : bool
        Extract again images already in the database (replacing their rows,
        and forgetting their distances).
    db : Database, optional
        Defaults to the config's database.
    workers : int, optional
        Processes; defaults to ``distances.workers``.

    Returns
    -------
    DataFrame
        One row per structure and image: ``structure``, ``name``, ``objects``
        and ``status`` (extracted, skipped: already there).
    """
    db = _database(config, db)
    pairs = [
        pair
        for structure in config.data.structures
        for pair in io.find_image_pairs(
            config.data.data_dir, structure,
            raw_data_dir=config.data.raw_data_dir,
            segmentation_dir=config.data.segmentation_dir,
            segmentation_file_suffix=config.data.segmentation_file_suffix,
        )
    ]
    _check_voxel_sizes(config, pairs)
    with _exclusive(db):
        with db.transaction() as cursor:
            ensure_schema(cursor)
            for structure in config.data.structures:
                ensure_structure_table(cursor, structure)
        with db.transaction() as cursor:
            extracted = extracted_images(cursor)
        done = set(zip(extracted["structure"], extracted["name"]))
        # Extracted at another voxel size than [scale] says now (a corrected typo):
        # stale apertures and distances, so extracted again (which forgets its distances).
        other_scale = ~np.isclose(extracted[["spacing_z", "spacing_y", "spacing_x"]].to_numpy(),
                                  np.asarray(config.spacing), rtol=1e-9, atol=0).all(axis=1)
        stale = set(zip(extracted["structure"][other_scale], extracted["name"][other_scale]))
        stale &= {(p.structure, p.name) for p in pairs}
        if stale and not overwrite:
            names = sorted(f"{structure} {name}" for structure, name in stale)
            _warn(f"{len(names)} image(s) were extracted at another voxel size than [scale] "
                  f"(z {config.scale.z}, xy {config.scale.xy} µm): {_some(names)}; "
                  f"extracted again, and their "
                  f"distances will be measured again.")
        # A raw stack or segmentation replaced since extraction (a corrected mask saved
        # under the same name): its stored objects are another file's, so extracted again.
        replaced = set() if overwrite else _replaced_files(extracted, pairs) - stale
        if replaced:
            names = sorted(f"{structure} {name}" for structure, name in replaced)
            _warn(f"{len(names)} image(s) have a raw stack or segmentation that changed since they "
                  f"were extracted: {_some(names)}; "
                  f"extracted again, and their distances will be measured again.")
        stale |= replaced
        reports = [
            {"structure": p.structure, "name": p.name, "objects": np.nan, "status": "skipped"}
            for p in pairs
            if (p.structure, p.name) in done and (p.structure, p.name) not in stale and not overwrite
        ]
        todo = [p for p in pairs
                if overwrite or (p.structure, p.name) not in done or (p.structure, p.name) in stale]
        counted = {config.normalization.structure, config.distances.structure_1}
        tasks = [(db.dsn, pair, config.spacing, overwrite or (pair.structure, pair.name) in stale,
                  pair.structure in counted) for pair in todo]
        # Image numbers (the high digits of the objects' ids) before any worker writes: in
        # name order, so the ids do not depend on the order the images are committed in.
        with db.transaction() as cursor:
            register_images(cursor, sorted({p.name for p in todo}))
        workers = config.distances.workers if workers is None else workers
        if any(task[-1] for task in tasks):
            load_compiled()  # not on the first images' clock (workers = 0 judges by it)
        reports += list(map_images(_extract_one, tasks, workers=workers,
                                   scheduler=config.dask.scheduler, desc="extract"))
        fault_point("extracted")
        reports = _borrow_psf(db, reports, {(p.structure, p.name): p for p in todo},
                              config.spacing, workers, config.dask.scheduler)
        _warn_clipped(reports)
        _warn_psf_depth(reports)
        with db.transaction() as cursor:
            now = extracted_images(cursor)
        counts = now[["structure", "name", "n_objects"]]
        # Judged against every image of the structure; named when extracted in this run.
        fresh = {(p.structure, p.name) for p in todo}
        apart = psf_outliers(now)
        apart = apart.loc[np.array([(r.structure, r.name) in fresh for r in apart.itertuples()],
                                   dtype=bool)]
        if len(apart):
            names = [f"{r.structure} {r.name} (axial {r.psf_axial_um:.3f} µm, {r.axial_ratio:.2f}x; "
                     f"lateral {r.psf_lateral_um:.3f} µm, {r.lateral_ratio:.2f}x)"
                     for r in apart.itertuples()]
            _warn(f"{len(names)} image(s) have a measured PSF more than {PSF_OUTLIER_RATIO:g}x "
                  f"from the median of their structure's images (or less than its inverse): "
                  f"{_some(names, '; ')}. Out of focus, "
                  f"another objective, or a wrong voxel size? Their aperture corrections use that "
                  f"PSF (label_images.psf_axial_um, psf_lateral_um).")
        _vacuum_after_extract(db, reports, extracted, counts)
    report = pd.DataFrame(reports, columns=["structure", "name", "objects", "status"])
    if len(report):
        report = report.drop(columns="objects").merge(counts, on=["structure", "name"], how="left")
        report = report.rename(columns={"n_objects": "objects"})
    return report.sort_values(["structure", "name"], ignore_index=True)[
        ["structure", "name", "objects", "status"]
    ]


def _warn_clipped(reports: list[dict]) -> None:
    """Name the images extracted in this run whose objects' light the camera clipped."""
    clipped = sorted((r["structure"], r["name"], r["clipped"], r["ceiling"], r.get("estimated", 0),
                      r.get("estimated_share", float("nan")))
                     for r in reports if r.get("clipped"))
    if not clipped:
        return
    names = [f"{structure} {name} ({count} object{'s' if count > 1 else ''} at {ceiling:,}"
             + (f"; the light above it estimated for {estimated}, {share:.0%} of their light"
                if estimated else "") + ")"
             for structure, name, count, ceiling, estimated, share in clipped]
    _warn(f"{len(names)} image(s) have objects whose brightest voxels sit at the camera's "
          f"ceiling, a plateau of clipped light: {_some(names, '; ')}. {CLIPPED_ADVICE}; "
          f"the objects are those whose max_intensity is the ceiling.")


def _warn_psf_depth(reports: list[dict]) -> None:
    """Name the images extracted in this run whose single molecules' PSF changes with depth
    (:func:`rna_localization.capture.psf_depth_change`)."""
    changed = sorted((r["structure"], r["name"], r["psf_depth"]) for r in reports
                     if (r.get("psf_depth") or {}).get("changes"))
    if not changed:
        return
    names = [f"{structure} {name} (axial sigma {d['top'][0]:.2f} µm in the top third of the "
             f"stack, {d['bottom'][0]:.2f} µm in the bottom third, {d['ratio'][0]:.2f}x; lateral "
             f"{d['top'][1]:.3f} µm, {d['bottom'][1]:.3f} µm, {d['ratio'][1]:.2f}x)"
             for structure, name, d in changed]
    _warn(f"{len(names)} image(s) show a PSF that changes with depth: {_some(names, '; ')}. "
          f"Normalize counts their objects against the single molecules at their own depth, "
          f"but the aperture corrections assume one PSF through the stack: on simulated "
          f"stacks aberrated from 0.1 waves at the first plane to 0.4 at the last, molecules "
          f"summed read +4% and molecules per granule 15% off on average (+10% and 21% "
          f"against one reference). Spherical aberration grows with depth when an oil "
          f"objective images a watery sample: compare the counts of shallow and deep objects, "
          f"or image nearer the coverslip or with a water or silicone objective "
          f"(docs/quantification.md, \"Aberration that grows with depth\").")


def _borrow_psf(db: Database, reports: list[dict], pairs: dict, spacing, workers,
                scheduler: str) -> list[dict]:
    """Extract again, with their structure's median PSF, the images too sparse to measure one.

    One data set's optics differ little from image to image (:func:`capture.psf_outliers`
    names the images where they do): an image whose single-molecule fits were too few
    (fewer than :data:`~rna_localization.capture.PSF_MIN_OBJECTS`) is corrected with
    the median sigmas of its structure's images whose own fits measured one, and
    stores them with ``psf_objects`` 0. With no such image, it stays uncorrected.
    Returns `reports` with those images' reports replaced.
    """
    sparse = [(r["structure"], r["name"]) for r in reports if r.get("uncorrected")]
    if not sparse:
        return reports
    with db.transaction() as cursor:
        known = extracted_images(cursor)
    measured = known[known["psf_objects"] >= PSF_MIN_OBJECTS].dropna(
        subset=["psf_axial_um", "psf_lateral_um"])
    medians = measured.groupby("structure")[["psf_axial_um", "psf_lateral_um"]].median()
    borrowing = [key for key in sparse if key[0] in medians.index]
    tasks = [(db.dsn, pairs[key], spacing, True, True,
              tuple(medians.loc[key[0]].to_numpy(float))) for key in borrowing]
    again = {(r["structure"], r["name"]): r
             for r in map_images(_extract_one, tasks, workers=workers, scheduler=scheduler,
                                 desc="extract (median PSF)")}
    if borrowing:
        names = sorted(f"{structure} {name}" for structure, name in borrowing)
        psf = "; ".join(f"{structure}: axial {row.psf_axial_um:.3f}, lateral "
                        f"{row.psf_lateral_um:.3f} µm"
                        for structure, row in medians.loc[sorted({k[0] for k in borrowing})]
                        .iterrows())
        _warn(f"{len(names)} image(s) hold too few single-molecule-like objects to measure the "
              f"PSF from (at least {PSF_MIN_OBJECTS}): {_some(names)}; their bright objects "
              f"are corrected with "
              f"the median PSF of the other images ({psf}; label_images.psf_objects 0).")
    alone = sorted(f"{structure} {name}" for structure, name in sparse
                   if (structure, name) not in again)
    if alone:
        _warn(f"{len(alone)} image(s) hold too few single-molecule-like objects to measure "
              f"the PSF from (at least {PSF_MIN_OBJECTS}), and no other image of their "
              f"structure measured one: {_some(alone)}; their bright objects' light "
              f"beyond the aperture is not corrected (capture_correction 1).")
    return [again.get((r["structure"], r["name"]), r) for r in reports]


#: A step that inserted, deleted or rewrote at least this fraction of a table's rows
#: vacuums it (VACUUM (ANALYZE)): the old row versions' space is reused, not added to.
_VACUUM_FRACTION = 0.1


def _churned(changed: int, total: int) -> bool:
    return changed > 0 and changed >= _VACUUM_FRACTION * total


def _vacuum_if_churned(db: Database, table: str, changed: int, total: int) -> None:
    if _churned(changed, total):
        vacuum_analyze(db, [table])


def _vacuum_after_extract(db: Database, reports: list[dict], before: pd.DataFrame,
                          after: pd.DataFrame) -> None:
    """Vacuum each structure table whose rows this extraction changed by _VACUUM_FRACTION or more."""
    keys = [(r["structure"], r["name"]) for r in reports if r["status"] == "extracted"]
    if not keys:
        return
    written = pd.MultiIndex.from_tuples(keys)

    def rows_written(table: pd.DataFrame) -> pd.Series:
        mask = pd.MultiIndex.from_frame(table[["structure", "name"]]).isin(written)
        return table[mask].groupby("structure")["n_objects"].sum()

    # Inserted now, and deleted (what the images written again had before).
    changed = rows_written(after).add(rows_written(before), fill_value=0)
    totals = after.groupby("structure")["n_objects"].sum()
    tables = [structure for structure, rows in changed.items()
              if _churned(int(rows), int(totals.get(structure, 0)))]
    if tables:  # one connection for all of them
        vacuum_analyze(db, tables)


def delete_image_data(config: Config, name: str, structure: str, *, db: Database | None = None) -> None:
    """Remove one image's objects of one structure from the database.

    Its distances are forgotten too; the next ``extract`` reads it again.
    """
    db = _database(config, db)
    if not _table_exists(db, "label_images"):
        return
    with _exclusive(db), db.transaction() as cursor:
        delete_image(cursor, structure, name)


# ------------------------------------------------------------------ distances
@dataclass(frozen=True)
class _ChanceSpec:
    """What one image's chance baseline is computed at, as the distributions step will need it."""

    step_size: float
    threshold: float | None  # None: the image's largest distance
    distance: str            # distribution.distance: "centroid" or "voxel"
    region: str              # distribution.chance_region ("" → the whole volume)


def _chance_spec(config: Config, metadata_rows: dict, name: str) -> _ChanceSpec | None:
    """The image's baseline grid, or None when its threshold needs a metadata row it lacks."""
    d = config.distribution
    threshold = d.distance_threshold
    if isinstance(threshold, ThresholdTable):
        try:
            threshold = threshold.for_image(metadata_rows[name], name)
        except (KeyError, ValueError):  # the distributions step will say what is wrong
            return None
    return _ChanceSpec(d.step_size, threshold, d.distance, d.chance_region or "")


def _metadata_rows(config: Config) -> dict:
    """The metadata CSV's rows by image name, when a per-image threshold needs them ({} if unreadable)."""
    if not isinstance(config.distribution.distance_threshold, ThresholdTable):
        return {}
    name_column = config.data.image_name_column
    try:
        table = read_metadata_csv(config.metadata_path, name_column=name_column)
    except (OSError, ValueError):  # reported by the metadata step
        return {}
    return {str(row[name_column]): row for row in table.to_dict("records")}


def _chance_baseline(spec: _ChanceSpec | None, distances: pd.DataFrame, target, region,
                     threads: int | None = None):
    """(region, distances, expected percent) of one image, or None when it has none.

    :func:`rna_localization.baseline.image_baseline` at the grid
    :func:`~rna_localization.distributions.cumulative_distribution` will use
    (:func:`~rna_localization.distributions.distance_grid`).
    """
    if spec is None:
        return None
    column = "centroid_distance" if spec.distance == "centroid" else "distance"
    grid = distance_grid(distances[column], spec.step_size, spec.threshold)
    if grid is None:
        return None
    expected = image_baseline(target.objects, target.spacing, grid,
                              region_labels=None if region is None else region.objects,
                              workers=threads)
    return None if expected is None else (spec.region, grid, expected)


@_one_connection
def _measure_one(dsn: str, structure_1: str, structure_2: str, name: str, overwrite: bool,
                 chance: _ChanceSpec | None = None) -> dict:
    # An image alone in this process (workers = 1): its queries use every core; where
    # images share the cores (a cluster's workers, or workers = 0's image threads): one each.
    threads = 1 if shares_cores() else None
    db = Database(dsn)
    with db.transaction() as cursor:
        source = read_label_image(cursor, structure_1, name)
        target = read_label_image(cursor, structure_2, name)
        centroids = read_spot_centroids(cursor, structure_1, name)
        region = (read_label_image(cursor, chance.region, name)
                  if chance is not None and chance.region else None)
    if source.objects.shape != target.objects.shape:
        msg = (
            f"image {name!r}: {structure_1} has shape {source.objects.shape} but "
            f"{structure_2} has shape {target.objects.shape}; both must come from the same stack."
        )
        raise ValueError(msg)
    if not np.allclose(source.spacing, target.spacing):
        msg = f"image {name!r} was extracted with different voxel sizes for {structure_1} and {structure_2}."
        raise ValueError(msg)
    # The object voxels as stored: no label image of the whole stack is built.
    result = nearest_distances(source.objects, target.objects, source.spacing, workers=threads)
    result = result.merge(pd.DataFrame({
        "object_id": centroids["object_id"].to_numpy(np.int64),
        "centroid_distance": point_distances(
            centroids[["spot_centroid_z", "spot_centroid_y", "spot_centroid_x"]].to_numpy(),
            target.objects, source.spacing, workers=threads) if len(centroids) else np.zeros(0),
    }), on="object_id", how="left")
    # The chance baseline (a distance transform of the whole volume) is computed here,
    # image by image and in parallel like the distances, and stored with them.
    baseline = _chance_baseline(chance, result, target, region, threads)
    with db.transaction() as cursor:
        written = write_distances(cursor, structure_1, structure_2, name, result,
                                  overwrite=overwrite, baseline=baseline)
    return {"name": name, "objects": len(result), "status": "measured" if written else "skipped",
            "targets": target.n_objects}


@_one_connection
def measure_distances(config: Config, *, overwrite: bool | None = None, db: Database | None = None,
                      workers: int | None = None) -> pd.DataFrame:
    """Distance from every structure_1 object to the nearest structure_2 object.

    Exact (see :func:`rna_localization.nearest_distances`), from the label
    images stored by :func:`extract`, read as their object voxels (never a
    label image of the whole stack; the baseline's target and region become
    bool masks, 1 byte a voxel). Fills ``distance_to_<structure_2>``
    (microns) and ``<structure_2>_id`` in the structure_1 table. An image
    without structure_2 objects keeps NULL distances, with a warning naming it.

    Each measured image's chance baseline
    (:func:`rna_localization.baseline.expected_cumulative_distribution` at the
    distances its cumulative distribution will have) is computed here too, in
    the same per-image task, and stored with the distances: measured again,
    it is computed again. :func:`compute_distributions` only reads it (and
    computes, then stores, one whose distances no longer fit, e.g. after
    ``[distribution]`` changed).

    Parameters
    ----------
    config : Config
        Uses ``[distances]``, and ``[distribution]`` for the baseline's distances.
    overwrite : bool, optional
        Measure again images already measured; defaults to ``distances.overwrite``.
    db : Database, optional
    workers : int, optional
        Processes; defaults to ``distances.workers``.

    Returns
    -------
    DataFrame
        One row per image: ``name``, ``objects``, ``targets`` (structure_2
        objects), ``status`` (measured, skipped).
    """
    columns = ["name", "objects", "targets", "status"]
    if not config.has_structure_2:
        logger.info("%s.", _skipped_without_structure_2(config))
        return pd.DataFrame(columns=columns)
    db = _database(config, db)
    s1, s2 = config.distances.structure_1, config.distances.structure_2
    overwrite = config.distances.overwrite if overwrite is None else overwrite
    workers = config.distances.workers if workers is None else workers
    if not _table_exists(db, "label_images") or not _table_exists(db, s1):
        msg = f"no {s1} objects in database {db.name!r}: run `rna-localization extract` first."
        raise ValueError(msg)
    with _exclusive(db):
        with db.transaction() as cursor:
            add_distance_columns(cursor, s1, s2)
            add_baseline_columns(cursor)
            extracted = extracted_images(cursor)
            measured = set(measured_images(cursor, s1, s2))
        sources = set(extracted.loc[extracted["structure"] == s1, "name"])
        targets = extracted[extracted["structure"] == s2].set_index("name")["n_objects"]
        reports = []
        todo = []
        metadata_rows = _metadata_rows(config)
        for name in sorted(sources):
            if name not in targets.index:
                _warn(f"image {name!r} has no {s2} extracted; its {s1} distances stay NULL.")
                continue
            if name in measured and not overwrite:
                reports.append({"name": name, "objects": np.nan, "targets": targets[name],
                                "status": "skipped"})
            else:
                todo.append([db.dsn, s1, s2, name, overwrite,
                             _chance_spec(config, metadata_rows, name)])
        reports += list(map_images(_measure_one, todo, workers=workers,
                                   scheduler=config.dask.scheduler, desc="distances"))
        counts = extracted.loc[extracted["structure"] == s1, ["name", "n_objects"]].rename(
            columns={"n_objects": "objects"})
        _vacuum_if_churned(db, s1, sum(r["objects"] for r in reports if r["status"] == "measured"),
                           int(counts["objects"].sum()))
    for report in reports:
        if report["status"] == "measured" and report["targets"] == 0:
            _warn(f"image {report['name']!r} has no {s2} objects; its {s1} distances are NULL.")
    table = pd.DataFrame(reports, columns=columns).sort_values("name", ignore_index=True)
    table = table.drop(columns="objects").merge(counts, on="name", how="left")
    table["objects"] = table["objects"].fillna(0).astype(int)
    return table[columns]


def peek_objects(config: Config, *, brightest: bool = False, limit: int = 5,
                 db: Database | None = None) -> pd.DataFrame:
    """A look at the RNA table: its first objects as stored, or the brightest in molecules.

    Parameters
    ----------
    config : Config
    brightest : bool
        False: the first objects of ``distances.structure_1`` by image and
        object id, every column. True: the objects of
        ``normalization.structure`` with the most molecules
        (``normalized_intensity``; run :func:`normalize` first), with
        ``name``, ``object_id``, ``area``, ``total_intensity`` and
        ``normalized_intensity``.
    limit : int
        How many objects.
    db : Database, optional

    Returns
    -------
    DataFrame
    """
    db = _database(config, db)
    if not brightest:
        structure = config.distances.structure_1
        if not _table_exists(db, structure):
            msg = f"there is no {structure} table yet: run `rna-localization extract` first."
            raise ValueError(msg)
        return first_objects(db, structure, limit=limit)
    structure = config.normalization.structure
    if not _table_exists(db, structure) or "normalized_intensity" not in db.columns(structure):
        msg = (f"{structure} has no normalized_intensity column: run `rna-localization normalize` "
               f"first.")
        raise ValueError(msg)
    return first_objects(db, structure, by="normalized_intensity", limit=limit,
                         columns=["name", "object_id", "area", "total_intensity",
                                  "normalized_intensity"])


def distance_summary(config: Config, *, db: Database | None = None) -> pd.DataFrame:
    """Per image: how many structure_1 objects have a distance, and the shortest and longest.

    The check after :func:`measure_distances`: ``with_distance`` should equal
    ``objects``. Without a second structure, one info line and no rows.

    Returns
    -------
    DataFrame
        One row per image with objects: ``name``, ``objects``,
        ``with_distance``, ``min_um``, ``max_um`` (distance from the nearest
        voxel, µm).
    """
    columns = ["name", "objects", "with_distance", "min_um", "max_um"]
    if not config.has_structure_2:
        logger.info("%s.", _skipped_without_structure_2(config))
        return pd.DataFrame(columns=columns)
    db = _database(config, db)
    s1, s2 = config.distances.structure_1, config.distances.structure_2
    if distance_column(s2) not in db.columns(s1):
        msg = f"{s1} has no {distance_column(s2)} column: run `rna-localization distances` first."
        raise ValueError(msg)
    return _distance_summary(db, s1, distance_column(s2))[columns]


# ------------------------------------------------------------------- metadata
def _checked_metadata(config: Config, db: Database) -> pd.DataFrame:
    """The metadata CSV, refused (ValueError, naming the lines) when it does not fit the images.

    Images are the raw stacks found and the images already extracted.
    """
    path = config.metadata_path
    table = read_metadata_csv(path, name_column=config.data.image_name_column)
    known = set()
    for structure in config.data.structures:
        raw_folder, _ = config.structure_dirs(structure)
        if raw_folder.is_dir():
            known.update(io.image_names(raw_folder))
    if _table_exists(db, "label_images"):
        with db.transaction() as cursor:
            known.update(extracted_images(cursor)["name"])
    threshold = config.distribution.distance_threshold
    problems = metadata_problems(
        table, path=f"metadata CSV {path}", name_column=config.data.image_name_column,
        images=known, raw_data_dir=config.data.raw_data_dir,
        threshold=threshold if isinstance(threshold, ThresholdTable) else None)
    if problems:
        more = f" ({len(problems) - 3} more such lines)" if len(problems) > 3 else ""
        msg = " ".join(problems[:3]) + more
        raise ValueError(msg)
    return table


@_one_connection
def load_metadata(config: Config, *, db: Database | None = None) -> pd.DataFrame:
    """The ``images`` table from the metadata CSV, replacing any earlier one.

    Values are read as written (:func:`~rna_localization.metadata.read_metadata_csv`:
    stripped of surrounding spaces; ``NA`` or ``001`` kept as text; a column
    typed integer, float or boolean only when every value is clearly one).
    Every image named must exist in the data directory or the database.

    Returns
    -------
    DataFrame
        The table as stored (with its ``id``).
    """
    db = _database(config, db)
    name_column = config.data.image_name_column
    table = _checked_metadata(config, db)
    with _exclusive(db), db.transaction() as cursor:
        replace_images_table(cursor, table, name_column)
    with db.transaction() as cursor:
        return read_images_table(cursor)


def _metadata(db: Database) -> pd.DataFrame:
    if not _table_exists(db, "images"):
        msg = f"database {db.name!r} has no images table: run `rna-localization metadata` first."
        raise ValueError(msg)
    with db.transaction() as cursor:
        return read_images_table(cursor).drop(columns="id")


# -------------------------------------------------------------- normalization
@_one_connection
def normalize(config: Config, *, db: Database | None = None) -> pd.DataFrame:
    """``normalized_intensity``: estimated molecules per object of ``normalization.structure``.

    One single-molecule reference per value of ``group_by`` (a metadata column):

    - method ``"aperture"`` (the default): ``spot_intensity / reference``, the
      reference being the mean ``spot_intensity`` of the group's single spots
      (objects within :data:`~.distributions.SINGLE_AREA_WINDOW` of the
      group's median area, isolated from the others by
      :data:`~.distributions.REFERENCE_ISOLATION_UM`), those within a factor
      :data:`~.distributions.REFERENCE_TRIM` of their median
      (:func:`~.distributions.aperture_references`); the objects of an image
      whose PSF changes with depth (``label_images.psf_depth_changes``, judged
      by extract) against the isolated spots of such images of their group
      within :data:`~.distributions.REFERENCE_DEPTH_REACH_UM` of their own
      depth (:func:`~.distributions.depth_references`), a warning naming them;
    - method ``"total"`` (the old pipeline's): ``total_intensity / reference``,
      the reference being the mean total intensity of the objects with
      ``lower_threshold <= area <= upper_threshold``.

    Only the groups whose images changed since the last normalize (an image
    extracted, re-extracted or deleted, or given another group in the
    metadata) are read and written again, in one transaction; the others keep
    their values and references (``normalization_references``). Changing the
    method, ``group_by`` or the "total" thresholds recomputes every group.
    The objects of an image without a group are NULL.

    Returns
    -------
    DataFrame
        One row per group: the group value, ``reference`` (intensity of one
        molecule), ``single_molecules``, ``objects`` and ``molecules``.
    """
    db = _database(config, db)
    with _exclusive(db):  # read and write under one lock: no extraction in between
        return _normalize(config, db)


#: What ``normalization_references.reference_by`` records for each ``normalization.reference``:
#: "image-shrunk", each image's own reference pulled toward its group's
#: (:func:`~rna_localization.distributions.shrunk_references`), so that a database
#: normalized with each image's own reference as it was ("image", until 2026-12-07) has
#: every group computed again.
_REFERENCE_BY = {"image": "image-shrunk", "group": "group"}


def _normalize(config: Config, db: Database) -> pd.DataFrame:
    n = config.normalization
    structure = n.structure
    metadata = _metadata(db)
    name_column = config.data.image_name_column
    if n.group_by not in metadata.columns:
        msg = (
            f"normalization.group_by = {n.group_by!r} is not a column of the images "
            f"table (it has {', '.join(metadata.columns)})."
        )
        raise ValueError(msg)
    if not _table_exists(db, structure):
        msg = f"no {structure} table in database {db.name!r}: run `rna-localization extract` first."
        raise ValueError(msg)
    aperture = n.method == "aperture"
    columns = db.columns(structure)
    if aperture and "spot_intensity" not in columns:
        msg = (f"{structure} has no spot_intensity column: run `rna-localization extract "
               f"--overwrite` (or set normalization.method = \"total\").")
        raise ValueError(msg)
    with db.transaction() as cursor:
        ensure_schema(cursor)  # a database made before the normalization's state was kept gets it
        extracted = extracted_images(cursor)
        previous, stored = read_normalization_state(cursor, structure)
    extracted = extracted[extracted["structure"] == structure]
    group_of = {str(name): str(group) for name, group in zip(metadata[name_column],
                                                             metadata[n.group_by])
                if not pd.isna(group)}
    orphans = sorted(name for name, count in zip(extracted["name"], extracted["n_objects"])
                     if count and name not in group_of)
    if orphans:
        _warn(f"image(s) without a {n.group_by!r} in the metadata CSV are not normalized: "
              f"{', '.join(orphans)}.")
    now = {name: group_of[name] for name in extracted["name"] if name in group_of}
    settings = {"method": n.method, "group_by": n.group_by,
                "lower_threshold": float(n.lower_threshold),
                "upper_threshold": float(n.upper_threshold),
                "reference_by": _REFERENCE_BY[n.reference] if aperture else "group"}
    compared = ["method", "group_by", "reference_by"] + (
        [] if aperture else ["lower_threshold", "upper_threshold"])
    # Only the groups whose images changed since the last normalize (an image extracted,
    # deleted, or moved to another group in the metadata) are read and written again;
    # every group when the settings changed or nothing was recorded.
    everything = stored.empty or any((stored[c] != settings[c]).any() for c in compared)
    before = {} if everything else dict(zip(previous["name"], previous["grp"]))
    changed = ({group for name, group in now.items() if before.get(name) != group}
               | {group for name, group in before.items() if now.get(name) != group}
               | (set(now.values()) - set(stored["grp"])))  # its reference was dropped
    redo = changed & set(now.values())
    redo_names = sorted(name for name, group in now.items() if group in redo)
    gone = sorted(set(previous["name"]) - set(now))
    # Values written by a version that kept no record of them (any image may hold some).
    unrecorded = stored.empty and NORMALIZED_COLUMN in columns
    positions = ("spot" if "spot_centroid_z" in columns else "centroid") if aperture else None
    with db.transaction() as cursor:
        objects = read_normalization_objects(cursor, structure, redo_names, spot_intensity=aperture,
                                             positions=positions)
    objects["grp"] = objects["name"].map(now)
    if aperture:
        by_name = extracted.set_index("name")
        points = (objects[["z", "y", "x"]].to_numpy(np.float64)
                  * by_name[["spacing_z", "spacing_y", "spacing_x"]].reindex(objects["name"])
                  .to_numpy(np.float64))
        objects["isolated"] = isolated_spots(points, objects["name"])
        # Images whose PSF changes with depth: counted against the molecules at each depth.
        objects["depth_um"] = points[:, 0]
        objects["by_depth"] = by_name["psf_depth_changes"].reindex(
            objects["name"], fill_value=False).to_numpy(bool)
    references, values = _group_references(config, objects)
    # Each image's reference (its own pulled toward its group's; NaN: its group's), and the
    # spots behind its own.
    per_image = references.attrs.get("images")
    per_image = (per_image.reindex(redo_names) if per_image is not None else
                 pd.DataFrame({"reference": np.nan, "single_molecules": 0}, index=redo_names))
    redone = objects.assign(molecules=values).groupby("grp").agg(
        objects=("id", "size"), molecules=("molecules", "sum"))
    redone = (references.join(redone).rename_axis("grp").reset_index().assign(**settings)
              .astype({"single_molecules": np.int64, "objects": np.int64,
                       "own_reference": np.int64}))
    written = 0
    if redo_names or gone or unrecorded or everything:  # else nothing to write, no lock taken
        with db.transaction() as cursor:
            write_normalized_intensities(cursor, structure, objects["id"].to_numpy(), values)
            written = (clear_normalized_intensities(cursor, structure, redo_names, all_but=True)
                       if unrecorded else clear_normalized_intensities(cursor, structure, gone))
            write_normalization_state(
                cursor, structure,
                pd.DataFrame({"name": redo_names, "grp": [now[name] for name in redo_names],
                              "reference": per_image["reference"].to_numpy(np.float64),
                              "single_molecules": per_image["single_molecules"].fillna(0)
                              .to_numpy(np.int64)}),
                redone, forget=True if everything else gone)
            fault_point("normalize")  # crash tests: every value written, not committed
    _vacuum_if_churned(db, structure, written + len(objects), int(extracted["n_objects"].sum()))
    kept = stored[stored["grp"].isin(set(now.values()) - redo)] if not everything else stored[:0]
    summary = pd.concat([kept, redone[stored.columns]] if len(kept) else [redone[stored.columns]],
                        ignore_index=True).sort_values("grp", ignore_index=True)
    if aperture:
        for group, count in zip(summary["grp"], summary["single_molecules"]):
            if count < MIN_REFERENCE_OBJECTS:
                _warn(f"the single-molecule reference of {n.group_by} = {group!r} comes from "
                      f"{int(count)} objects only: molecule counts of that group are uncertain.")
    summary = summary.rename(columns={"grp": n.group_by})
    return summary[[n.group_by, "reference", "single_molecules", "own_reference", "objects",
                    "molecules"]].astype({"single_molecules": np.int64, "own_reference": np.int64,
                                          "objects": np.int64})


def _group_references(config: Config, objects: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """Each group's reference and single molecules (indexed by group), and every object's molecules.

    `objects`: every object of the groups (``grp``), with ``area``,
    ``total_intensity`` and, for method "aperture", ``spot_intensity``.
    """
    n = config.normalization
    columns = ["reference", "single_molecules"]
    if objects.empty:
        return pd.DataFrame(columns=[*columns, "own_reference"], dtype=np.float64), np.zeros(0)
    if n.method == "aperture":
        stale = sorted(set(objects.loc[objects["spot_intensity"].isna(), "name"]))
        if stale:
            msg = (f"{n.structure} objects of image(s) {_some(stale)} have no spot_intensity "
                   f"(extracted by "
                   f"an older version): run `rna-localization extract --overwrite`.")
            raise ValueError(msg)
        references, reference = object_references(
            objects["spot_intensity"], objects["area"], objects["grp"],
            isolated=objects["isolated"], depth_um=objects["depth_um"],
            by_depth=objects["by_depth"],
            images=objects["name"] if n.reference == "image" else None)
        _warn_by_depth(config, objects, references, reference)
        if n.reference == "image":
            _warn_image_references(config, objects, references)
        table = references[[*columns, "own_reference"]].copy()
        table.attrs["images"] = references.attrs.get("images")  # each image's reference
        return table, objects["spot_intensity"].to_numpy(np.float64) / reference
    values = normalize_intensities(
        objects["total_intensity"], objects["area"], objects["grp"],
        lower_threshold=n.lower_threshold, upper_threshold=n.upper_threshold,
    )
    single = objects["area"].between(n.lower_threshold, n.upper_threshold)
    references = pd.DataFrame({
        "reference": single_molecule_references(
            objects["total_intensity"], objects["area"], objects["grp"],
            lower_threshold=n.lower_threshold, upper_threshold=n.upper_threshold),
        "single_molecules": single.groupby(objects["grp"]).sum()})
    references["own_reference"] = 0
    return references, values


def _warn_image_references(config: Config, objects: pd.DataFrame,
                           references: pd.DataFrame) -> None:
    """Name the images counted against their group's reference: too few isolated single spots."""
    per_image = references.attrs["images"]
    few = per_image[per_image["reference"].isna()]
    if few.empty:
        return
    group_of = objects.drop_duplicates("name").set_index("name")["grp"]
    for group, names in few.groupby(group_of.reindex(few.index)).groups.items():
        counts = few.loc[names, "single_molecules"]
        _warn(f"{len(names)} image(s) of {config.normalization.group_by} = {group!r} hold fewer "
              f"than {IMAGE_REFERENCE_MIN_OBJECTS} isolated single spots ({_some(list(names))}: "
              f"{_span(counts.astype(int))}): they are counted against the group's reference, "
              f"not their own; if their molecules are brighter or dimmer than the group's, their "
              f"counts are off by as much.")


def _warn_by_depth(config: Config, objects: pd.DataFrame, references: pd.DataFrame,
                   reference: np.ndarray) -> None:
    """Name the groups whose images' objects were counted against the molecules at their depth."""
    for group, count in references["by_depth"].items():
        if not count:
            continue
        deep = (objects["grp"] == group).to_numpy() & objects["by_depth"].to_numpy(bool)
        names = sorted(set(objects.loc[deep, "name"]))
        ratio = reference[deep] / float(references.loc[group, "reference"])
        _warn(f"{len(names)} image(s) of {config.normalization.group_by} = {group!r} have a PSF "
              f"that changes with depth ({_some(names)}): their objects are counted against "
              f"the single molecules at their own depth (within "
              f"{REFERENCE_DEPTH_REACH_UM:g} µm), {_span(ratio, '.2f')} times the "
              f"group's reference (docs/quantification.md, \"Aberration that grows with "
              f"depth\").")


# -------------------------------------------------------------- distributions
def image_distance_threshold(config: Config, row: dict, name: str) -> float | None:
    """The distance threshold of image `name` (metadata `row`): the config's, or its table's."""
    threshold = config.distribution.distance_threshold
    if isinstance(threshold, ThresholdTable):
        return threshold.for_image(row, name)
    return threshold


def distribution_inputs(config: Config,
                        db: Database) -> tuple[pd.DataFrame, list[str], pd.DataFrame]:
    """What the cumulative distributions are computed from, checked.

    Returns
    -------
    objects : DataFrame
        Every object of the measured images: ``name``, ``object_id``, ``distance``
        (the column ``distribution.distance`` names), ``total_intensity`` (the
        weight of the normalization method: the spot intensity floored at 0 for
        "aperture"), ``normalized_intensity``.
    measured : list of str
        The images whose distances are measured.
    metadata : DataFrame
        The images table.
    """
    s1, s2 = config.distances.structure_1, config.distances.structure_2
    distance = (centroid_distance_column(s2) if config.distribution.distance == "centroid"
                else distance_column(s2))
    columns = db.columns(s1)
    if distance not in columns:
        msg = f"{s1} has no {distance} column: run `rna-localization distances` first."
        raise ValueError(msg)
    if NORMALIZED_COLUMN not in columns:
        msg = f"{s1} has no normalized_intensity column: run `rna-localization normalize` first."
        raise ValueError(msg)
    metadata = _metadata(db)
    computed = sorted(set(metadata.columns) & set(DISTRIBUTION_COLUMNS))
    if computed:  # an images table not made from a checked CSV, e.g. restored from elsewhere
        msg = (f"the images table has a column named {computed[0]!r}, which the distributions "
               f"compute; rename it in the metadata CSV and run `rna-localization metadata` again.")
        raise ValueError(msg)
    # Method "aperture" weighs each object by its background-subtracted light; an
    # object dimmer than its surroundings counts for nothing.
    weight = "spot" if config.normalization.method == "aperture" else "total"
    with db.transaction() as cursor:
        objects = read_distribution_objects(cursor, s1, s2, distance=distance, weight=weight)
        measured = measured_images(cursor, s1, s2)
    return objects, measured, metadata


@_one_connection
def compute_distributions(config: Config, *, db: Database | None = None,
                          write: bool = True) -> pd.DataFrame:
    """Per-image cumulative distributions of RNA against distance (PRODUCT.md, "Definitions").

    Reads every measured image's objects in one query. Images with nothing
    left (no distances, or a zero denominator) are reported by name in a
    warning.

    Parameters
    ----------
    config : Config
    db : Database, optional
    write : bool
        Also write ``output_dir/data/cumulative_distributions.csv``.

    Returns
    -------
    DataFrame
        One row per image and distance: ``distance``, ``percent_total_rna``,
        ``percent_granule_rna``, the image's metadata columns, then the chance
        baseline's ``expected_percent_total_rna`` and ``enrichment``
        (:func:`rna_localization.analysis.add_chance_baseline`); no rows (and no
        file) without a second structure.
    """
    if not config.has_structure_2:
        logger.info("%s.", _skipped_without_structure_2(config))
        return pd.DataFrame(columns=[*DISTRIBUTION_COLUMNS, config.data.image_name_column,
                                     *BASELINE_COLUMNS])
    db = _database(config, db)
    objects, measured, metadata = distribution_inputs(config, db)
    name_column = config.data.image_name_column
    rows = {r[name_column]: r for r in metadata.to_dict("records")}
    groups = dict(tuple(objects.groupby("name", sort=True)))
    frames, missing_metadata, empty = [], [], []
    for name in measured:
        if name not in rows:
            missing_metadata.append(name)
            continue
        image = groups.get(name)
        distribution = cumulative_distribution(
            image["distance"] if image is not None else [],
            image["total_intensity"] if image is not None else [],
            image["normalized_intensity"] if image is not None else [],
            step_size=config.distribution.step_size,
            distance_threshold=image_distance_threshold(config, rows[name], name),
            granule_threshold=config.normalization.granule_threshold,
        )
        if distribution.empty:
            empty.append(name)
            continue
        for column, value in rows[name].items():
            distribution[column] = value
        frames.append(distribution)
    if missing_metadata:
        _warn(f"image(s) with no row in the metadata CSV have no distribution: {', '.join(missing_metadata)}.")
    if empty:
        _warn(f"image(s) with no {config.distances.structure_1} object within the distance "
              f"threshold (or no distances) have no distribution: {', '.join(empty)}.")
    meta_columns = list(metadata.columns)
    result = (pd.concat(frames, ignore_index=True) if frames
              else pd.DataFrame(columns=DISTRIBUTION_COLUMNS + meta_columns))
    result = add_chance_baseline(config, result, db=db)  # expected_percent_total_rna, enrichment
    if write:
        path = config.output_dir / "data" / DISTRIBUTIONS_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        with io.replacing(path) as tmp:  # per process: runs may overlap
            result.to_csv(tmp, index=False)
    return result


# ---------------------------------------------------------------------- plots
def make_plots(config: Config, distributions: pd.DataFrame | None = None) -> list[Path]:
    """Figures of percent_total_rna and percent_granule_rna against distance, for a paper.

    :func:`rna_localization.plotting.plot_cumulative_distributions`: the mean
    over images with its 95% confidence band, a colour per value of
    ``plot.hue`` (or ``normalization.group_by``), a column of panels per
    value of ``plot.col`` and a row per value of ``plot.row``, the number of
    images of each curve in its legend; one journal column (3.5 in) wide up
    to two columns of panels. Written as PDF (TrueType fonts) and PNG
    (``plot.dpi``) under ``output_dir/plots/``.

    Returns
    -------
    list of Path
        The files written (none without a second structure).
    """
    from .plotting import save_figure

    if not config.has_structure_2:
        logger.info("%s.", _skipped_without_structure_2(config))
        return []
    if distributions is None:
        distributions = read_distributions_csv(config.output_dir / "data" / DISTRIBUTIONS_FILE,
                                               name_column=config.data.image_name_column)
    folder = config.output_dir / "plots"
    written = []
    for measure, figure in cumulative_figures(config, distributions).items():
        written += save_figure(figure, folder / measure, dpi=config.plot.dpi)
    return written


def cumulative_figures(config: Config, distributions: pd.DataFrame) -> dict:
    """The figures :func:`make_plots` saves, by measure, with the words of ``[plot.labels]``.

    A value named in ``[plot.labels]`` that no image has (a typo) is a
    ValueError naming it and the values there are.

    Returns
    -------
    dict of str to matplotlib.figure.Figure
        ``percent_total_rna`` and ``percent_granule_rna``.
    """
    from .plotting import plot_cumulative_distributions

    words = config.plot.labels
    for column, values in words.values.items():
        if column not in distributions.columns:
            continue  # plot_cumulative_distributions names the missing column
        present = {str(v) for v in distributions[column].dropna().unique()}
        unknown = sorted(set(values) - present)
        if unknown:
            msg = (f"[plot.labels] {column} gives words for {', '.join(map(repr, unknown))}, which "
                   f"no image has in column {column!r} (it has "
                   f"{', '.join(map(repr, sorted(present)))}); correct the value in "
                   f"{config.source or 'the config'}.")
            raise ValueError(msg)
    return {
        measure: plot_cumulative_distributions(
            distributions, measure, hue=config.plot_hue, col=config.plot.col or None,
            row=config.plot.row or None, structure=config.distances.structure_2,
            image_column=config.data.image_name_column, labels=words.columns,
            value_labels=words.values,
        )
        for measure in ("percent_total_rna", "percent_granule_rna")
    }


def plot_image_objects(config: Config, name: str | None = None, *, db: Database | None = None):
    """One image's structure_1 objects coloured by distance, and the sizes and intensities of its group.

    Reads the database and the image's raw stack and draws
    :func:`rna_localization.plotting.plot_image_objects`: the maximum
    projection of the raw ``structure_1`` stack with a dot at every object's
    centroid coloured by the distance the curves use (``distribution.distance``:
    ``centroid_distance_to_<structure_2>`` from the intensity centroid, or
    ``distance_to_<structure_2>`` from the centroid), the ``structure_2``
    objects outlined; and histograms of the areas and intensities of every
    object of the image's ``normalization.group_by`` group, with the single
    molecule's area range, its reference intensity and the granule threshold
    marked (once ``normalize`` has run).

    Without a second structure (``distances.structure_2 = ""``) the dots are
    coloured by the objects' molecules (``normalized_intensity``), or by their
    intensity before ``normalize`` has run, and nothing is outlined.

    Parameters
    ----------
    config : Config
    name : str, optional
        The image; default the first measured one (by name), or without a
        second structure the first extracted one.
    db : Database, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    from .plotting import facet_title
    from .plotting import plot_image_objects as draw

    db = _database(config, db)
    alone = not config.has_structure_2
    s1, s2 = config.distances.structure_1, config.distances.structure_2
    centroid = config.distribution.distance == "centroid"
    columns = db.columns(s1)
    aperture = config.normalization.method == "aperture" and "spot_intensity" in columns
    intensity = "spot_intensity" if aperture else "total_intensity"
    intensity_label = "spot intensity (background-subtracted)" if aperture else "total intensity"
    if alone:
        distance = None
        shown = []
        if _table_exists(db, "label_images"):
            with db.transaction() as cursor:
                extracted = extracted_images(cursor)
            shown = sorted(extracted.loc[extracted["structure"] == s1, "name"])
        if not shown:
            msg = f"no {s1} image is in database {db.name!r} yet: run `rna-localization extract` first."
            raise ValueError(msg)
        what = "extracted images"
    else:
        distance = centroid_distance_column(s2) if centroid else distance_column(s2)
        if distance not in columns:
            msg = f"{s1} has no {distance} column: run `rna-localization distances` first."
            raise ValueError(msg)
        with db.transaction() as cursor:
            shown = measured_images(cursor, s1, s2)
        if not shown:
            msg = f"no image has distances from {s1} to {s2} yet: run `rna-localization distances` first."
            raise ValueError(msg)
        what = "measured images"
    if not name:
        name = shown[0]
    elif name not in shown:
        has = (f"is not extracted for {s1}" if alone
               else f"has no measured distances from {s1} to {s2}")
        msg = (f"image {name!r} {has}; {what}: "
               f"{', '.join(shown[:5])}{' …' if len(shown) > 5 else ''}.")
        raise ValueError(msg)
    group_by, name_column = config.normalization.group_by, config.data.image_name_column
    grouped = _table_exists(db, "images") and group_by in db.columns("images")
    with db.transaction() as cursor:
        objects = read_plot_objects(cursor, s1, name, distance=distance, intensity=intensity,
                                    spot_centroids=centroid)
        if grouped:
            group = read_group_objects(cursor, s1, name, intensity=intensity, group_by=group_by,
                                       name_column=name_column)
            grouped = not group.empty
        if not grouped:  # no metadata yet: the image's own objects
            group = read_group_objects(cursor, s1, name, intensity=intensity)
    if alone and objects["molecules"].notna().any():
        color, color_label = "molecules", "molecules (normalized intensity)"
    elif alone:  # before normalize
        color, color_label = "intensity", intensity_label
    else:
        color, color_label = "distance", f"distance to {s2} (µm)"
    # normalized_intensity = intensity / reference, so each normalized object gives the reference back.
    per_molecule = pd.to_numeric(group["molecules"], errors="coerce")
    ratio = group["intensity"] / per_molecule.where(per_molecule != 0)
    reference = float(ratio.median()) if ratio.notna().any() else None
    if aperture:
        centre = float(group["area"].median())
        single_area = (SINGLE_AREA_WINDOW[0] * centre, SINGLE_AREA_WINDOW[1] * centre)
    else:
        single_area = (config.normalization.lower_threshold, config.normalization.upper_threshold)
    with db.transaction() as cursor:
        recorded = read_raw_path(cursor, s1, name)
        targets = None if alone else read_label_image(cursor, s2, name)
    raw_folder = config.structure_dirs(s1)[0]
    candidates = [Path(recorded)] if recorded else []
    candidates += [raw_folder / f"{name}.tif", raw_folder / f"{name}.tiff"]
    raw_path = next((path for path in candidates if path.is_file()), None)
    if raw_path is None:
        msg = (f"the raw {s1} stack of image {name!r} is not at {candidates[0]}: was the data "
               f"folder moved? Set data.data_dir to where it is now.")
        raise FileNotFoundError(msg)
    if grouped:
        words = facet_title(group_by, group["grp"].iloc[0], config.plot.labels.columns,
                            config.plot.labels.values)
        histogram_title = f"{words} ({len(group)} objects, {group['name'].nunique()} images)"
    else:
        histogram_title = f"{name}: {len(group)} objects"
    return draw(
        io.read_stack(raw_path), objects, spacing_xy=config.scale.xy, histogram_objects=group,
        reference=reference, granule_threshold=config.normalization.granule_threshold,
        single_area=single_area, outline=None if targets is None else targets.labels > 0,
        outline_label=s2, color=color, color_label=color_label, intensity_label=intensity_label,
        title=f"{name}: {len(objects)} {s1} objects", histogram_title=histogram_title,
    )


# ------------------------------------------------------------ molecule counts
@_one_connection
def count_molecules(config: Config, *, db: Database | None = None, write: bool = True) -> pd.DataFrame:
    """Objects and estimated molecules per image of ``normalization.structure``.

    The molecules of an image are the sum of its objects'
    ``normalized_intensity`` (run :func:`normalize` first). This is what a
    data set of RNA alone (no second structure) measures.

    Parameters
    ----------
    config : Config
    db : Database, optional
    write : bool
        Also write ``output_dir/data/molecules_per_image.csv``.

    Returns
    -------
    DataFrame
        One row per extracted image: ``name`` (the image name column),
        ``objects``, ``molecules``, and the image's metadata columns when it
        has a metadata row.
    """
    db = _database(config, db)
    structure = config.normalization.structure
    if not _table_exists(db, structure) or "normalized_intensity" not in db.columns(structure):
        msg = (f"{structure} has no normalized_intensity column: run `rna-localization normalize` "
               f"first.")
        raise ValueError(msg)
    name_column = config.data.image_name_column
    table = molecules_per_image(db, structure).rename(columns={"name": name_column})
    if _table_exists(db, "images"):
        table = table.merge(_metadata(db), on=name_column, how="left")
    if write:
        path = config.output_dir / "data" / MOLECULES_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.part")
        table.to_csv(tmp, index=False)
        os.replace(tmp, path)
    return table


# ------------------------------------------------------------------------ run
@_one_connection
def run(config: Config, *, db: Database | None = None) -> dict[str, pd.DataFrame | list]:
    """extract → distances → metadata → normalize → distributions → plots.

    Resumes where a previous run stopped: extracted and measured images are
    skipped (unless ``distances.overwrite``). :func:`count_molecules` writes
    the objects and molecules per image after ``normalize``. Without a second
    structure (RNA alone) distances, distributions and plots are skipped, with
    one info line.

    Returns
    -------
    dict
        Each step's returned table, by step name; ``plots`` lists the files;
        ``molecules`` the per-image molecule counts.
    """
    db = _database(config, db)
    # A bad metadata CSV (a misspelt image name, an empty threshold cell) should stop
    # the run before hours of work, not after.
    io.check_data_dir(config.data.data_dir)
    _checked_metadata(config, db)
    results: dict[str, pd.DataFrame | list] = {}
    with _exclusive(db), shared_clusters():  # one Dask cluster for extract and distances
        results["extract"] = extract(config, db=db)
        if not config.has_structure_2:
            logger.info("%s; molecules per image: %s.", _skipped_without_structure_2(config),
                        config.output_dir / "data" / MOLECULES_FILE)
            results["metadata"] = load_metadata(config, db=db)
            results["normalize"] = normalize(config, db=db)
            results["molecules"] = count_molecules(config, db=db)
            return results
        results["distances"] = measure_distances(config, db=db)
        results["metadata"] = load_metadata(config, db=db)
        results["normalize"] = normalize(config, db=db)
        results["molecules"] = count_molecules(config, db=db)
        results["distributions"] = compute_distributions(config, db=db)
    results["plots"] = make_plots(config, results["distributions"])
    return results
