"""The statistics and chance-baseline steps: ``stats.py`` and ``baseline.py`` on a data set.

:func:`add_chance_baseline` gives each image's cumulative distribution its
expected curve under uniformly spread RNA (from the target's label image in
the database) and the enrichment over it; :func:`compute_statistics` reads
the distributions CSV and writes the per-group figures and the tests between
groups (``output_dir/data/stats.csv``, ``stats_tests.csv``, ``stats_images.csv``).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .baseline import image_baseline
from .config import Config
from .db import Database
from .db.results import read_chance_baselines, write_chance_baseline
from .db.tables import add_baseline_columns, lock_image, read_label_image
from .stats import N_BOOTSTRAP, N_PERMUTATIONS, SEED, group_statistics, group_tests, image_figures

__all__ = ["STATS_FILE", "STATS_IMAGES_FILE", "STATS_TESTS_FILE", "add_chance_baseline",
           "compute_statistics", "grouping_columns"]

#: Files written under ``output_dir/data/``.
STATS_FILE = "stats.csv"
STATS_TESTS_FILE = "stats_tests.csv"
STATS_IMAGES_FILE = "stats_images.csv"
#: The enrichment figure under ``output_dir/plots/`` (PDF and PNG).
ENRICHMENT_PLOT = "enrichment"
#: Columns the chance baseline adds to the distributions.
BASELINE_COLUMNS = ["expected_percent_total_rna", "enrichment"]
#: Columns of the tables of :func:`compute_statistics` with no grouping column.
STATS_COLUMNS = ["figure", "distance", "value", "ci_low", "ci_high", "n_images"]
TESTS_COLUMNS = ["factor", "test", "statistic", "p_value", "n_a", "n_b"]


def add_chance_baseline(config: Config, distributions: pd.DataFrame, *, db: Database,
                        region_structure: str | None = None) -> pd.DataFrame:
    """The distributions with ``expected_percent_total_rna`` and ``enrichment`` per row.

    For each image, :func:`rna_localization.baseline.expected_cumulative_distribution`
    of its ``structure_2`` label image (from the database, with the voxel
    size it was extracted at) at the image's own distances: the one the
    distances step stored with the image's distances when it is for these
    distances and this region; otherwise computed here, and stored when the
    region is the configured one (a database from before baselines were
    stored, or ``[distribution]`` changed since the distances were measured);
    ``enrichment = percent_total_rna / expected_percent_total_rna`` (NaN where
    nothing is expected, e.g. at distance 0 when no voxel is inside the target).

    Parameters
    ----------
    config : Config
    distributions : DataFrame
        One row per image and distance (:func:`rna_localization.steps.compute_distributions`).
    db : Database
    region_structure : str, optional
        A structure whose extracted objects are the region RNA could be in
        (e.g. an embryo or cytoplasm mask); default ``distribution.chance_region``
        ("": the whole image volume).

    Returns
    -------
    DataFrame
        A copy of `distributions` with the two columns (NaN for an image whose
        label image is not in the database, named in a warning).
    """
    name_column = config.data.image_name_column
    s2 = config.distances.structure_2
    region_structure = region_structure or config.distribution.chance_region or None
    taken = [c for c in BASELINE_COLUMNS if c in distributions.columns]
    if taken:  # a metadata column of that name would be overwritten
        msg = (f"the distributions already have a column {taken[0]!r}, which the chance baseline "
               f"computes: rename that column of the metadata CSV (e.g. {taken[0]}_label) and run "
               f"`rna-localization metadata` again.")
        raise ValueError(msg)
    result = distributions.copy()
    for column in BASELINE_COLUMNS:
        result[column] = np.nan
    if result.empty:
        return result
    s1 = config.distances.structure_1
    with db.transaction() as cursor:
        stored = read_chance_baselines(cursor, s1, s2)
    # Only the configured region's baseline is kept (the one the distances step computes).
    store = region_structure == (config.distribution.chance_region or None)
    columns_ready = False
    missing = []
    for name, rows in result.groupby(name_column, sort=True):
        name = str(name)
        order = rows["distance"].sort_values().index
        distances = rows.loc[order, "distance"].to_numpy(np.float64)
        hit = stored.get(name)
        if hit is not None and hit[0] == (region_structure or "") and np.array_equal(hit[1], distances):
            result.loc[order, "expected_percent_total_rna"] = hit[2]
            continue
        # Not stored (an older database) or for other distances ([distribution] changed
        # since the distances were measured): computed here, and stored for the next time.
        if store and not columns_ready:
            with db.transaction() as cursor:
                add_baseline_columns(cursor)
            columns_ready = True
        expected = _compute_baseline(db, s1, s2, name, distances, region_structure, store=store)
        if expected is None:
            missing.append(name)
        else:
            result.loc[order, "expected_percent_total_rna"] = expected
    if missing:
        where = (f", or no {region_structure} voxel within the distance threshold of one, "
                 if region_structure else " ")
        warnings.warn(f"image(s) with no stored {s2} label image{where}have no chance "
                      f"baseline: {', '.join(missing)}.", stacklevel=2)
    expected = result["expected_percent_total_rna"]
    result["enrichment"] = result["percent_total_rna"] / expected.where(expected > 0)
    return result


def _compute_baseline(db: Database, s1: str, s2: str, name: str, distances: np.ndarray,
                      region_structure: str | None, *, store: bool) -> np.ndarray | None:
    """One image's expected curve from its stored label images (None if it has none), stored if asked."""
    with db.transaction() as cursor:
        if store:  # the label images cannot be replaced before the result is stored
            lock_image(cursor, s2, name)
            if region_structure:
                lock_image(cursor, region_structure, name)
        target = read_label_image(cursor, s2, name)
        region = read_label_image(cursor, region_structure, name) if region_structure else None
        if target is None or (region_structure and region is None):
            return None
        expected = image_baseline(target.objects, target.spacing, distances,
                                  region_labels=None if region is None else region.objects)
        if expected is None:
            return None
        if store:
            write_chance_baseline(cursor, s1, s2, name, (region_structure or "", distances, expected))
    return expected


def grouping_columns(config: Config, distributions: pd.DataFrame) -> list[str]:
    """The metadata columns that define the groups: plot.hue (or group_by), plot.col, plot.row.

    Only those the distributions have, each once, in that order.
    """
    columns = []
    for column in (config.plot_hue, config.plot.col, config.plot.row):
        if column and column in distributions.columns and column not in columns:
            columns.append(column)
    return columns


def _write(frame: pd.DataFrame, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.part")
    frame.to_csv(tmp, index=False)
    os.replace(tmp, path)
    return path


def compute_statistics(config: Config, *, by: Sequence[str] | None = None,
                       distributions: pd.DataFrame | None = None,
                       n_bootstrap: int = N_BOOTSTRAP, n_permutations: int = N_PERMUTATIONS,
                       seed: int = SEED, write: bool = True) -> dict[str, pd.DataFrame | list]:
    """Per-group figures with bootstrap intervals, and permutation tests between groups.

    Reads ``output_dir/data/cumulative_distributions.csv`` (unless
    `distributions` is given) and computes, with images as the replicates,
    :func:`rna_localization.stats.image_figures`,
    :func:`~rna_localization.stats.group_statistics` and
    :func:`~rna_localization.stats.group_tests`.

    Parameters
    ----------
    config : Config
    by : sequence of str, optional
        Metadata columns defining the groups; default :func:`grouping_columns`.
    distributions : DataFrame, optional
    n_bootstrap, n_permutations, seed : int
        Resampling; the same seed gives the same intervals and p-values.
    write : bool
        Write ``stats.csv``, ``stats_tests.csv`` and ``stats_images.csv`` under
        ``output_dir/data/``, and, when the distributions have the chance
        baseline and at most two grouping columns, ``plots/enrichment.pdf``
        and ``.png`` (:func:`rna_localization.plotting.plot_group_statistics`:
        the first column as colours, the second as panels, the ``auc`` p-values
        between colours in each panel).

    Returns
    -------
    dict
        ``"stats"`` (per group), ``"tests"`` (per pair of groups), ``"images"``
        (per image): DataFrames; ``"plots"``: the figure files written. Without
        a second structure (no distributions): one info line, tables with no
        rows, and no file.
    """
    from .metadata import read_distributions_csv
    from .steps import DISTRIBUTIONS_FILE, _skipped_without_structure_2, logger

    name_column = config.data.image_name_column
    if not config.has_structure_2:
        logger.info("%s.", _skipped_without_structure_2(config))
        return {"stats": pd.DataFrame(columns=STATS_COLUMNS),
                "tests": pd.DataFrame(columns=TESTS_COLUMNS),
                "images": pd.DataFrame(columns=[name_column, "distance_50", "auc"]), "plots": []}
    if distributions is None:
        distributions = read_distributions_csv(config.output_dir / "data" / DISTRIBUTIONS_FILE,
                                               name_column=name_column)
    if distributions.empty:
        msg = "the distributions table is empty: no image has a distribution to compare."
        raise ValueError(msg)
    by = grouping_columns(config, distributions) if by is None else list(by)
    stats = group_statistics(distributions, by=by, image_column=name_column,
                             n_bootstrap=n_bootstrap, seed=seed)
    tests = (group_tests(distributions, by=by, image_column=name_column,
                         n_permutations=n_permutations, seed=seed) if by
             else pd.DataFrame(columns=TESTS_COLUMNS))
    images = image_figures(distributions, by=by, image_column=name_column)
    plots: list[Path] = []
    if write:
        folder = config.output_dir / "data"
        _write(stats, folder / STATS_FILE)
        _write(tests, folder / STATS_TESTS_FILE)
        _write(images, folder / STATS_IMAGES_FILE)
        # A curve per hue value in a panel per col value: a third factor would mix curves.
        if (stats["figure"] == "enrichment").any() and len(by) <= 2:
            from .plotting import plot_group_statistics, save_figure

            figure = plot_group_statistics(stats, "enrichment", hue=by[0] if by else None,
                                           col=by[1] if len(by) > 1 else None, tests=tests,
                                           structure=config.distances.structure_2)
            plots = save_figure(figure, config.output_dir / "plots" / ENRICHMENT_PLOT,
                                dpi=config.plot.dpi)
    return {"stats": stats, "tests": tests, "images": images, "plots": plots}
