"""Statistics between conditions, with images as the replicates.

Pure functions on arrays and tables: the figures of one cumulative curve
(:func:`distance_50`, :func:`auc`), the bootstrap confidence interval of a
mean over images (:func:`bootstrap_interval`), the permutation test between
two groups of images (:func:`permutation_test`), and, on a distributions
table (:func:`rna_localization.steps.compute_distributions`), the per-image
figures, the per-group summaries and the tests between groups that differ
in one factor (:func:`image_figures`, :func:`group_statistics`,
:func:`group_tests`).

Images, not objects, are the replicates: objects of one image share its
embryo, its staining and its segmentation, so they are not independent.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from .config import N_BOOTSTRAP, N_PERMUTATIONS, SEED

__all__ = [
    "BAND_LEVEL",
    "N_BOOTSTRAP",
    "N_PERMUTATIONS",
    "SEED",
    "auc",
    "bootstrap_interval",
    "distance_50",
    "group_statistics",
    "group_tests",
    "image_figures",
    "kruskal_wallis_p",
    "permutation_test",
]

#: Confidence level of the intervals.
BAND_LEVEL = 0.95
# N_BOOTSTRAP, N_PERMUTATIONS and SEED live in config.py, so that the command line's
# help shows them without loading numpy and pandas.
#: The curve the figures are computed on.
MEASURE = "percent_total_rna"


# ------------------------------------------------------------- one curve
def _curve(distance, percent) -> tuple[np.ndarray, np.ndarray]:
    distance = np.asarray(distance, dtype=np.float64)
    percent = np.asarray(percent, dtype=np.float64)
    if distance.ndim != 1 or distance.shape != percent.shape or distance.size == 0:
        msg = (f"a curve needs one percent per distance (1-D, same length, not empty); got "
               f"shapes {distance.shape} and {percent.shape}.")
        raise ValueError(msg)
    if np.any(np.diff(distance) <= 0):
        msg = "the distances of a curve must increase strictly; sort the rows by distance."
        raise ValueError(msg)
    return distance, percent


def distance_50(distance, percent) -> float:
    """Distance (µm) at which the cumulative curve reaches 50% of the RNA.

    Linear interpolation between the two distances around the first crossing
    of 50; the first distance if the curve starts at or above 50; NaN if it
    never reaches 50.

    Parameters
    ----------
    distance : (N,) array-like
        Increasing distances, microns.
    percent : (N,) array-like
        Cumulative percent of RNA at each distance.

    Returns
    -------
    float

    Examples
    --------
    >>> distance_50([0.0, 1.0, 2.0], [20.0, 40.0, 100.0])
    1.1666666666666667
    >>> distance_50([0.0, 1.0], [60.0, 100.0])
    0.0
    """
    distance, percent = _curve(distance, percent)
    reached = np.flatnonzero(percent >= 50.0)
    if reached.size == 0:
        return float("nan")
    i = int(reached[0])
    if i == 0:
        return float(distance[0])
    d0, d1, p0, p1 = distance[i - 1], distance[i], percent[i - 1], percent[i]
    return float(d0 + (50.0 - p0) * (d1 - d0) / (p1 - p0))


def auc(distance, percent) -> float:
    """Area under the cumulative curve divided by its distance range: its mean percent.

    The trapezoidal integral of `percent` over `distance`, divided by
    ``distance[-1] - distance[0]``, so that curves over different ranges
    (different distance thresholds) are on one scale, 0-100: 100 when all the
    RNA is at the first distance, near 50 when it spreads evenly over the
    range, near 0 when it all sits at the end.

    Parameters
    ----------
    distance : (N,) array-like
        Increasing distances, microns (at least two).
    percent : (N,) array-like
        Cumulative percent of RNA at each distance.

    Returns
    -------
    float
        Percent.

    Examples
    --------
    >>> auc([0.0, 1.0, 2.0], [0.0, 50.0, 100.0])
    50.0
    >>> auc([0.0, 2.0], [100.0, 100.0])
    100.0
    """
    distance, percent = _curve(distance, percent)
    if distance.size < 2:
        msg = "the area under a curve needs at least two distances."
        raise ValueError(msg)
    area = float(np.sum((percent[1:] + percent[:-1]) / 2 * np.diff(distance)))
    return area / float(distance[-1] - distance[0])


# ----------------------------------------------------------- resampling
def kruskal_wallis_p(groups) -> float:
    """p-value of the Kruskal-Wallis H test that the groups come from one distribution.

    The values of all groups are ranked together (ties take their average rank);
    ``H = 12 / (N (N + 1)) Σ R_i² / n_i - 3 (N + 1)``, with ``R_i`` the sum of
    group i's ranks, is divided by the ties' correction ``1 - Σ (t³ - t) / (N³ - N)``
    and read against a χ² of k - 1 degrees of freedom: scipy.stats.kruskal's p-value
    (tests/test_capture.py checks them against each other), without importing
    scipy.stats, which takes about 0.6 s of every process that extracts
    (:func:`rna_localization.capture.psf_depth_change` uses it).

    Parameters
    ----------
    groups : sequence of 1-D array_like of float
        At least two groups, each with at least one value; not every value alike.

    Returns
    -------
    float

    Examples
    --------
    >>> round(kruskal_wallis_p([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]]), 4)
    0.0209
    """
    from scipy.special import chdtrc

    values = [np.asarray(g, dtype=np.float64).ravel() for g in groups]
    pooled = np.concatenate(values)
    n = pooled.size
    order = np.argsort(pooled, kind="stable")
    _, first, counts = np.unique(pooled[order], return_index=True, return_counts=True)
    ranks = np.empty(n)
    ranks[order] = np.repeat(first + (counts + 1) / 2.0, counts)
    sums = np.add.reduceat(ranks, np.cumsum([0] + [v.size for v in values[:-1]]))
    h = 12.0 / (n * (n + 1)) * float(np.sum(sums ** 2 / [v.size for v in values])) - 3.0 * (n + 1)
    h /= 1.0 - float(np.sum(counts.astype(np.float64) ** 3 - counts)) / (float(n) ** 3 - n)
    return float(chdtrc(len(values) - 1, h))


def _rng(seed) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def bootstrap_interval(values, *, n_bootstrap: int = N_BOOTSTRAP, level: float = BAND_LEVEL,
                       seed: int | np.random.Generator = SEED) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap interval of the mean over replicates (axis 0).

    The rows of `values` (images) are resampled with replacement
    `n_bootstrap` times; the interval holds the central `level` of the
    resampled means. NaN where fewer than two replicates have a value.

    Parameters
    ----------
    values : (N,) or (N, M) array-like
        One row per replicate; NaN for a missing value.
    n_bootstrap : int
    level : float
        Between 0 and 1.
    seed : int or numpy.random.Generator

    Returns
    -------
    low, high : float or (M,) ndarray

    Examples
    --------
    >>> low, high = bootstrap_interval([1.0, 2.0, 3.0, 4.0], seed=0)
    >>> bool(1.0 <= low < 2.5 < high <= 4.0)
    True
    """
    if not 0 < level < 1:
        msg = f"level must be between 0 and 1; got {level}."
        raise ValueError(msg)
    if int(n_bootstrap) < 1:
        msg = f"n_bootstrap must be at least 1; got {n_bootstrap}."
        raise ValueError(msg)
    array = np.asarray(values, dtype=np.float64)
    scalar = array.ndim == 1
    matrix = array[:, None] if scalar else array
    n = matrix.shape[0]
    counts = np.sum(~np.isnan(matrix), axis=0)
    low = np.full(matrix.shape[1], np.nan)
    high = np.full(matrix.shape[1], np.nan)
    if n >= 2:
        picks = _rng(seed).integers(0, n, size=(int(n_bootstrap), n))
        with warnings.catch_warnings():  # all-NaN columns (a value in fewer than two images)
            warnings.simplefilter("ignore", RuntimeWarning)
            means = np.nanmean(matrix[picks], axis=1)  # (B, M)
            tail = (1 - level) / 2 * 100
            low, high = np.nanpercentile(means, [tail, 100 - tail], axis=0)
        low = np.where(counts >= 2, low, np.nan)
        high = np.where(counts >= 2, high, np.nan)
    return (float(low[0]), float(high[0])) if scalar else (low, high)


def permutation_test(a, b, statistic: Callable[[np.ndarray, np.ndarray], float], *,
                     n_permutations: int = N_PERMUTATIONS,
                     seed: int | np.random.Generator = SEED) -> tuple[float, float]:
    """Two-sided permutation test of a difference between two groups of replicates.

    The replicates (rows) of `a` and `b` are pooled and dealt again into
    groups of the same sizes. When there are at most `n_permutations`
    ways to deal them, every one is taken and the p-value is exact: the
    fraction of deals whose ``|statistic|`` is at least the observed one.
    Otherwise `n_permutations` random deals are drawn and
    ``p = (1 + count) / (1 + n_permutations)`` (never 0: the observed deal is
    one of the possible ones).

    Parameters
    ----------
    a, b : (N_a, ...) and (N_b, ...) array-like
        One row per replicate (image): a value, or a curve.
    statistic : callable
        ``statistic(a, b) -> float``; its absolute value is compared.
    n_permutations : int
    seed : int or numpy.random.Generator

    Returns
    -------
    statistic, p_value : float

    Examples
    --------
    >>> def mean_difference(x, y):
    ...     return float(np.mean(y) - np.mean(x))
    >>> permutation_test([1.0, 2.0], [3.0, 4.0], mean_difference)  # 6 deals, 2 as extreme
    (2.0, 0.3333333333333333)
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    n_a, n_b = len(a), len(b)
    if n_a == 0 or n_b == 0:
        msg = f"a permutation test needs replicates in both groups; got {n_a} and {n_b}."
        raise ValueError(msg)
    pooled = np.concatenate([a, b])
    observed = float(statistic(a, b))
    tolerance = 1e-12 * max(1.0, abs(observed))  # equal statistics computed in another order
    n = n_a + n_b
    if math.comb(n, n_a) <= n_permutations:
        extreme = total = 0
        for chosen in itertools.combinations(range(n), n_a):
            mask = np.zeros(n, dtype=bool)
            mask[list(chosen)] = True
            value = float(statistic(pooled[mask], pooled[~mask]))
            extreme += abs(value) >= abs(observed) - tolerance
            total += 1
        return observed, extreme / total
    rng = _rng(seed)
    extreme = 0
    for _ in range(int(n_permutations)):
        order = rng.permutation(n)
        value = float(statistic(pooled[order[:n_a]], pooled[order[n_a:]]))
        extreme += abs(value) >= abs(observed) - tolerance
    return observed, (1 + extreme) / (1 + int(n_permutations))


def _mean_difference(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(b) - np.mean(a))


def _max_curve_difference(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(np.mean(b, axis=0) - np.mean(a, axis=0))))


# ------------------------------------------------------ distributions table
def _check_table(distributions: pd.DataFrame, by: Sequence[str], image_column: str,
                 measure: str) -> None:
    needed = ["distance", measure, image_column, *by]
    missing = [c for c in needed if c not in distributions.columns]
    if missing:
        msg = (f"the distributions table has no column {missing[0]!r} (it has "
               f"{', '.join(map(str, distributions.columns))}); group by metadata columns it "
               f"has, e.g. --by rna_type.")
        raise ValueError(msg)


def image_figures(distributions: pd.DataFrame, *, by: Sequence[str] = (),
                  image_column: str = "name", measure: str = MEASURE) -> pd.DataFrame:
    """``distance_50`` and ``auc`` of every image's curve.

    Parameters
    ----------
    distributions : DataFrame
        One row per image and distance (``distance``, `measure`, `image_column`, `by`).
    by : sequence of str
        Metadata columns kept with each image (its group).
    image_column : str
    measure : str
        The curve: ``percent_total_rna`` or ``percent_granule_rna``.

    Returns
    -------
    DataFrame
        One row per image: `image_column`, `by`, ``distance_50``, ``auc``.

    Examples
    --------
    >>> table = pd.DataFrame({"name": ["a"] * 3, "distance": [0.0, 1.0, 2.0],
    ...                       "percent_total_rna": [0.0, 50.0, 100.0]})
    >>> image_figures(table)
      name  distance_50   auc
    0    a          1.0  50.0
    """
    by = list(by)
    _check_table(distributions, by, image_column, measure)
    rows = []
    for name, image in distributions.groupby(image_column, sort=True):
        image = image.sort_values("distance")
        row = {image_column: name, **{c: image[c].iloc[0] for c in by}}
        row["distance_50"] = distance_50(image["distance"], image[measure])
        row["auc"] = auc(image["distance"], image[measure]) if len(image) > 1 else float("nan")
        rows.append(row)
    return pd.DataFrame(rows, columns=[image_column, *by, "distance_50", "auc"])


def _curves(group: pd.DataFrame, image_column: str, measure: str,
            distances: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(distances, (n_images, n_distances) matrix) on the distances every image has."""
    wide = group.pivot_table(index=image_column, columns="distance", values=measure,
                             aggfunc="first")
    wide = wide.dropna(axis=1)
    if distances is not None:
        wide = wide.reindex(columns=distances)
    return wide.columns.to_numpy(np.float64), wide.to_numpy(np.float64)


def _groups(distributions: pd.DataFrame, by: Sequence[str]):
    if not by:
        return [((), distributions)]
    return [(key if isinstance(key, tuple) else (key,), frame)
            for key, frame in distributions.groupby(list(by), sort=True, dropna=False)]


def group_statistics(distributions: pd.DataFrame, *, by: Sequence[str] = (),
                     image_column: str = "name", measure: str = MEASURE,
                     n_bootstrap: int = N_BOOTSTRAP, level: float = BAND_LEVEL,
                     seed: int = SEED) -> pd.DataFrame:
    """Per group of images: the mean curve and figures with their bootstrap intervals.

    For every combination of the values of `by` (e.g. rna_type × cycle), the
    images' mean ``distance_50`` and ``auc`` and, at every distance all its
    images share, the mean of `measure` (and of ``enrichment`` when the table
    has it), each with a percentile bootstrap interval over images
    (:func:`bootstrap_interval`; `seed` makes it repeatable).

    Parameters
    ----------
    distributions : DataFrame
        One row per image and distance.
    by : sequence of str
        Metadata columns defining the groups; empty: one group of every image.
    image_column, measure : str
    n_bootstrap : int
    level : float
    seed : int

    Returns
    -------
    DataFrame
        Tidy: `by`, ``figure`` (``distance_50``, ``auc``, `measure`,
        ``enrichment``), ``distance`` (NaN for the whole-curve figures),
        ``value``, ``ci_low``, ``ci_high``, ``n_images``.

    Examples
    --------
    >>> table = pd.DataFrame({"name": ["a", "a", "b", "b"], "distance": [0.0, 1.0] * 2,
    ...                       "percent_total_rna": [20.0, 100.0, 40.0, 100.0]})
    >>> stats = group_statistics(table)
    >>> stats.loc[stats["figure"] == "auc", ["value", "n_images"]].to_numpy().tolist()
    [[65.0, 2.0]]
    """
    by = list(by)
    figures = image_figures(distributions, by=by, image_column=image_column, measure=measure)
    rng = np.random.default_rng(seed)
    rows = []
    for key, group in _groups(distributions, by):
        labels = dict(zip(by, key))
        names = sorted(group[image_column].unique())
        per_image = figures[figures[image_column].isin(names)]
        n_images = len(names)
        for figure in ("distance_50", "auc"):
            values = per_image[figure].to_numpy(np.float64)
            low, high = bootstrap_interval(values, n_bootstrap=n_bootstrap, level=level, seed=rng)
            value = float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
            rows.append({**labels, "figure": figure, "distance": float("nan"), "value": value,
                         "ci_low": low, "ci_high": high, "n_images": n_images})
        curve_measures = [measure] + (["enrichment"] if "enrichment" in group.columns else [])
        for curve_measure in curve_measures:
            distances, curves = _curves(group, image_column, curve_measure)
            low, high = bootstrap_interval(curves, n_bootstrap=n_bootstrap, level=level, seed=rng)
            means = np.mean(curves, axis=0)
            rows += [{**labels, "figure": curve_measure, "distance": d, "value": m,
                      "ci_low": lo, "ci_high": hi, "n_images": curves.shape[0]}
                     for d, m, lo, hi in zip(distances, means, low, high)]
    return pd.DataFrame(rows, columns=[*by, "figure", "distance", "value", "ci_low", "ci_high",
                                       "n_images"])


def group_tests(distributions: pd.DataFrame, *, by: Sequence[str] = (),
                image_column: str = "name", measure: str = MEASURE,
                n_permutations: int = N_PERMUTATIONS, seed: int = SEED) -> pd.DataFrame:
    """Permutation tests between every two groups that differ in exactly one factor.

    Two tests per pair (:func:`permutation_test`, images as replicates):
    ``auc``, the difference of the groups' mean ``auc`` (b − a), and
    ``max_curve_difference``, the largest absolute difference between the
    groups' mean curves over the distances both have.

    Parameters
    ----------
    distributions : DataFrame
    by : sequence of str
        Metadata columns defining the groups (at least one).
    image_column, measure : str
    n_permutations : int
    seed : int

    Returns
    -------
    DataFrame
        One row per pair and test: ``factor`` (the column that differs), `by`
        values of group a as ``<column>_a`` and of group b as ``<column>_b``,
        ``test``, ``statistic``, ``p_value``, ``n_a``, ``n_b``.

    Examples
    --------
    >>> table = pd.DataFrame({"name": list("aabbccdd"), "rna_type": list("xxxxyyyy"),
    ...                       "distance": [0.0, 1.0] * 4,
    ...                       "percent_total_rna": [10, 100, 20, 100, 80, 100, 90, 100]})
    >>> tests = group_tests(table, by=["rna_type"])
    >>> tests[["factor", "test", "statistic", "p_value", "n_a", "n_b"]]
         factor                  test  statistic   p_value  n_a  n_b
    0  rna_type                   auc       35.0  0.333333    2    2
    1  rna_type  max_curve_difference       70.0  0.333333    2    2
    """
    by = list(by)
    if not by:
        msg = "group_tests needs at least one column in `by` to tell the groups apart."
        raise ValueError(msg)
    figures = image_figures(distributions, by=by, image_column=image_column, measure=measure)
    groups = _groups(distributions, by)
    rng = np.random.default_rng(seed)
    columns = ["factor", *(f"{c}_a" for c in by), *(f"{c}_b" for c in by), "test", "statistic",
               "p_value", "n_a", "n_b"]
    rows = []
    for (key_a, group_a), (key_b, group_b) in itertools.combinations(groups, 2):
        differ = [c for c, x, y in zip(by, key_a, key_b) if x != y]
        if len(differ) != 1:
            continue
        labels = {**{f"{c}_a": v for c, v in zip(by, key_a)},
                  **{f"{c}_b": v for c, v in zip(by, key_b)}}
        auc_a = figures.loc[figures[image_column].isin(group_a[image_column]), "auc"].to_numpy()
        auc_b = figures.loc[figures[image_column].isin(group_b[image_column]), "auc"].to_numpy()
        statistic, p = permutation_test(auc_a, auc_b, _mean_difference,
                                        n_permutations=n_permutations, seed=rng)
        rows.append({"factor": differ[0], **labels, "test": "auc", "statistic": statistic,
                     "p_value": p, "n_a": len(auc_a), "n_b": len(auc_b)})
        shared_a, _ = _curves(group_a, image_column, measure)
        shared_b, _ = _curves(group_b, image_column, measure)
        shared = np.intersect1d(shared_a, shared_b)
        _, curves_a = _curves(group_a, image_column, measure, shared)
        _, curves_b = _curves(group_b, image_column, measure, shared)
        if shared.size == 0:
            statistic, p = float("nan"), float("nan")
        else:
            statistic, p = permutation_test(curves_a, curves_b, _max_curve_difference,
                                            n_permutations=n_permutations, seed=rng)
        rows.append({"factor": differ[0], **labels, "test": "max_curve_difference",
                     "statistic": statistic, "p_value": p, "n_a": len(curves_a),
                     "n_b": len(curves_b)})
    return pd.DataFrame(rows, columns=columns)
