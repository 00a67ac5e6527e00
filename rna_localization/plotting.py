"""Figures for papers and for checking: cumulative distributions, and one image's objects.

Everything here draws from tables and arrays it is given; the database and the
files are read by :mod:`rna_localization.steps`. The figures are made for print:
one journal column (3.5 in) wide unless there are more than two columns of
panels, text of 7-8 pt at that size, and fonts embedded in PDFs as TrueType
(Type 42), which journals and Illustrator accept, when written by
:func:`save_figure`. These settings apply inside :func:`matplotlib.rc_context`
only: the caller's matplotlib settings are left as they are.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = [
    "CAPTION",
    "COLUMN_LABELS",
    "ONE_COLUMN",
    "PALETTE",
    "PAPER_RC",
    "PNG_COMPRESS_LEVEL",
    "SAVE_RC",
    "TWO_COLUMNS",
    "VALUE_LABELS",
    "column_label",
    "curve_summary",
    "facet_title",
    "plot_cumulative_distributions",
    "plot_group_statistics",
    "plot_image_objects",
    "save_figure",
    "value_label",
    "y_label",
]

#: Width of a one-column journal figure, inches.
ONE_COLUMN = 3.5
#: Width of a two-column (page-wide) journal figure, inches.
TWO_COLUMNS = 7.0

#: Matplotlib settings for writing files: text as TrueType (Type 42) fonts, not Type 3.
SAVE_RC = {"pdf.fonttype": 42, "ps.fonttype": 42}
#: zlib level of the PNGs :func:`save_figure` writes (lossless at every level): 3 encodes a
#: 600-dpi figure about a quarter faster than Pillow's default 6, for a file about 13% larger.
PNG_COMPRESS_LEVEL = 3
#: Matplotlib settings of every figure drawn here (applied with ``matplotlib.rc_context``).
#: Sizes are points at the figure's own size, which is its printed size.
PAPER_RC = {
    "font.size": 8,
    "axes.titlesize": 8,
    "axes.labelsize": 8,
    "figure.titlesize": 8,
    "figure.labelsize": 8,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "legend.fontsize": 7,
    "legend.title_fontsize": 7,
    "axes.linewidth": 0.6,
    "xtick.major.width": 0.6,
    "ytick.major.width": 0.6,
    "xtick.major.size": 2.5,
    "ytick.major.size": 2.5,
    "lines.linewidth": 1.2,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.frameon": False,
    **SAVE_RC,
}

#: Words for metadata columns in legends and panel titles. Other columns: underscores
#: become spaces. Override per call with ``labels=``.
COLUMN_LABELS = {
    "rna_type": "RNA type",
    "cycle": "nuclear cycle",
    "replicate": "replicate",
    "genotype": "genotype",
    "name": "image",
}
#: Words for values that say on their own what they are, by column. Other values are
#: shown as they are. Override or extend per call with ``value_labels=``.
VALUE_LABELS = {
    "cycle": {f"nc{i}": f"nuclear cycle {i}" for i in range(1, 15)},
}
#: What each measure counts, for the y label.
_MEASURES = {"percent_total_rna": "RNA", "percent_granule_rna": "granule RNA"}
#: Coverage of the bands drawn around the mean curves.
BAND_LEVEL = 0.95
#: The line under every cumulative-distribution figure, saying what lines and bands are.
CAPTION = f"Line: mean over images; band: {BAND_LEVEL:.0%} CI of the mean."
#: Added to the caption when the chance baseline is drawn.
CHANCE_CAPTION = "\nDashed: expected if the RNA were spread uniformly."
#: The distributions column of the chance baseline (:mod:`rna_localization.baseline`).
EXPECTED_COLUMN = "expected_percent_total_rna"
#: Colours of the groups, in order (then again from the first): the colour-blind-safe
#: palette of Okabe & Ito ("Color Universal Design", 2008), yellow and black last (faint or
#: heavy as lines on white). Defined here so that a figure needs matplotlib alone.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442",
           "#000000")
#: Height of one row of panels as a fraction of its width, and its bounds (inches).
_PANEL_ASPECT, _PANEL_HEIGHT = 0.75, (1.5, 2.6)
#: Height of the strip under the panels that holds the caption line, inches.
_CAPTION_HEIGHT = 0.2


def _colours(levels: Sequence) -> dict:
    """One :data:`PALETTE` colour per level, in order, cycling past the palette's end.

    Examples
    --------
    >>> _colours(["cen", "gapdh"])
    {'cen': '#0072B2', 'gapdh': '#E69F00'}
    """
    return {level: PALETTE[i % len(PALETTE)] for i, level in enumerate(levels)}


# ------------------------------------------------------------------ words
def column_label(column: str, labels: Mapping[str, str] | None = None) -> str:
    """The words for a metadata column: `labels`, then :data:`COLUMN_LABELS`, then the name.

    Examples
    --------
    >>> column_label("rna_type"), column_label("cell_line"), column_label("cycle", {"cycle": "stage"})
    ('RNA type', 'cell line', 'stage')
    """
    merged = {**COLUMN_LABELS, **(labels or {})}
    return merged.get(column, column.replace("_", " "))


def value_label(column: str | None, value, value_labels: Mapping[str, Mapping] | None = None) -> str:
    """The words for one value of a column, or the value itself as text.

    Examples
    --------
    >>> value_label("cycle", "nc13"), value_label("rna_type", "gapdh"), value_label("replicate", 2)
    ('nuclear cycle 13', 'gapdh', '2')
    """
    text = str(value)
    if column is None:
        return text
    merged = {**VALUE_LABELS.get(column, {}), **(value_labels or {}).get(column, {})}
    return str(merged.get(text, text))


def facet_title(column: str, value, labels: Mapping[str, str] | None = None,
                value_labels: Mapping[str, Mapping] | None = None) -> str:
    """A panel's title for one value of a facet column.

    A value with words of its own (:data:`VALUE_LABELS`) is shown alone;
    any other as ``<column words>: <value>``.

    Examples
    --------
    >>> facet_title("cycle", "nc14"), facet_title("rna_type", "cen"), facet_title("replicate", 1)
    ('nuclear cycle 14', 'RNA type: cen', 'replicate: 1')
    """
    words = value_label(column, value, value_labels)
    if words != str(value):
        return words
    return f"{column_label(column, labels)}: {value}"


def y_label(measure: str) -> str:
    """The y label of a measure; every figure words it the same way.

    Examples
    --------
    >>> y_label("percent_granule_rna")
    'granule RNA within distance\\n(% of total RNA)'
    """
    if measure not in _MEASURES:
        msg = f"measure {measure!r} is not one of {list(_MEASURES)}."
        raise ValueError(msg)
    return f"{_MEASURES[measure]} within distance\n(% of total RNA)"


# ---------------------------------------------------------------- numbers
def curve_summary(distributions: pd.DataFrame, measure: str = "percent_total_rna", *,
                  by: Sequence[str] = ()) -> pd.DataFrame:
    """Mean curve over images, with the 95% confidence interval of the mean.

    The rows at one distance (one per image) give ``n``, their ``mean`` and
    standard deviation ``sd``; the interval is ``mean ± t(0.975, n - 1) · sd / √n``,
    clipped to 0-100 (a percentage cannot leave that range). With one image
    there is no interval (NaN).

    Parameters
    ----------
    distributions : DataFrame
        One row per image and distance (:func:`rna_localization.steps.compute_distributions`).
    measure : str
        Column averaged.
    by : sequence of str
        Columns whose values get a curve each (e.g. ``["rna_type"]``).

    Returns
    -------
    DataFrame
        Columns `by`, ``distance``, ``n``, ``mean``, ``sd``, ``low``, ``high``, sorted.

    Examples
    --------
    >>> table = pd.DataFrame({"distance": [0.0] * 3 + [1.0] * 3,
    ...                       "percent_total_rna": [40, 50, 60, 100, 100, 100]})
    >>> curve_summary(table).round(2)
       distance  n   mean    sd     low    high
    0       0.0  3   50.0  10.0   25.16   74.84
    1       1.0  3  100.0   0.0  100.00  100.00
    """
    from scipy.special import stdtrit  # Student's t quantile (scipy.stats.t.ppf), lighter to import

    keys = [*by, "distance"]
    grouped = distributions.groupby(keys, sort=True, dropna=False)[measure]
    summary = grouped.agg(n="count", mean="mean", sd="std").reset_index()
    n = summary["n"].to_numpy(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        half = np.where(n > 1, stdtrit(n - 1, 0.5 + BAND_LEVEL / 2) * summary["sd"] / np.sqrt(n),
                        np.nan)
    summary["low"] = np.clip(summary["mean"] - half, 0, 100)
    summary["high"] = np.clip(summary["mean"] + half, 0, 100)
    return summary


def _levels(values: pd.Series) -> list:
    """Distinct values in a natural order: numbers by value, then text alphabetically."""
    def key(value):
        number = pd.to_numeric(pd.Series([value]), errors="coerce").iloc[0]
        return (0, float(number), "") if pd.notna(number) else (1, 0.0, str(value))

    return sorted(pd.unique(values), key=key)


def _check_columns(distributions: pd.DataFrame, columns: dict[str, str | None]) -> None:
    for what, column in columns.items():
        if column and column not in distributions.columns:
            msg = (
                f"cannot plot: {what} column {column!r} is not in the distributions "
                f"(they have {', '.join(map(str, distributions.columns))}); check plot.hue, "
                f"plot.col and plot.row, or data.image_name_column."
            )
            raise ValueError(msg)


# ------------------------------------------------------------------ figures
def plot_cumulative_distributions(distributions: pd.DataFrame, measure: str = "percent_total_rna", *,
                                  hue: str | None = "rna_type", col: str | None = None,
                                  row: str | None = None, structure: str = "centrosomes",
                                  image_column: str = "name",
                                  labels: Mapping[str, str] | None = None,
                                  value_labels: Mapping[str, Mapping] | None = None,
                                  width: float | None = None, height: float | None = None):
    """Mean cumulative distribution over images, with its 95% confidence band, for a paper.

    One line per value of `hue` in each panel; one panel per value of `row`
    (rows) and of `col` (columns). Each legend entry gives the number of
    images of its curve in that panel; a caption line under the panels says
    what lines and bands are (:data:`CAPTION`). When the table has the chance
    baseline (``expected_percent_total_rna``), the percent_total_rna figure
    draws its mean over images dashed, in the curve's colour. Panels share the y axis,
    which runs from 0 to just above the highest mean or band (so a granule
    curve reaching 30 % is not drawn in the bottom third of a 0-100 axis);
    each panel's x axis runs from 0 to its own largest distance (panels whose
    images have different distance thresholds keep their own range).

    Parameters
    ----------
    distributions : DataFrame
        Rows of :func:`rna_localization.steps.compute_distributions`: ``distance``,
        `measure`, `image_column` and the metadata columns named below.
    measure : {"percent_total_rna", "percent_granule_rna"}
    hue : str or None
        Metadata column whose values get a colour each (e.g. ``"rna_type"``).
    col, row : str or None
        Metadata columns split into columns and rows of panels (e.g. ``"cycle"``).
    structure : str
        The target structure, for the x label.
    image_column : str
        Column naming each image (``data.image_name_column``), to count images.
    labels : mapping, optional
        Words for column names, over :data:`COLUMN_LABELS` (e.g. ``{"rna_type": "probe"}``).
    value_labels : mapping, optional
        Words for values, by column, over :data:`VALUE_LABELS`
        (e.g. ``{"rna_type": {"cen": "centrocortin"}}``).
    width, height : float, optional
        Figure size in inches. Default width: :data:`ONE_COLUMN` (3.5 in) for up
        to two columns of panels, :data:`TWO_COLUMNS` (7 in) for more.

    Returns
    -------
    matplotlib.figure.Figure
        Save it with :func:`save_figure` (TrueType fonts in the PDF).

    Examples
    --------
    >>> table = pd.DataFrame({"name": ["a", "a", "b", "b"], "rna_type": ["cen"] * 4,
    ...                       "distance": [0.0, 1.0, 0.0, 1.0],
    ...                       "percent_total_rna": [40.0, 100.0, 60.0, 100.0]})
    >>> figure = plot_cumulative_distributions(table)
    >>> [t.get_text() for t in figure.axes[0].get_legend().get_texts()]
    ['cen (n = 2 images)']
    """
    import matplotlib
    import matplotlib.pyplot as plt

    y_text = y_label(measure)
    _check_columns(distributions, {"measure": measure, "distance": "distance",
                                   "image name": image_column, "hue": hue, "col": col, "row": row})
    if col and row and col == row:
        msg = f"plot.row and plot.col are both {col!r}: choose two different columns, or leave one empty."
        raise ValueError(msg)
    if distributions.empty:
        msg = "cannot plot: the distributions table is empty (no image has a distribution)."
        raise ValueError(msg)
    data = distributions.copy()
    levels = {}
    for column in (hue, col, row):
        if column:
            levels[column] = [str(v) for v in _levels(data[column])]
            data[f"_{column}"] = data[column].astype(str)
    hue_levels = levels[hue] if hue else [None]
    row_levels = levels[row] if row else [None]
    col_levels = levels[col] if col else [None]
    n_rows, n_cols = len(row_levels), len(col_levels)
    if width is None:
        width = ONE_COLUMN if n_cols <= 2 else TWO_COLUMNS
    with_chance = (measure == "percent_total_rna" and EXPECTED_COLUMN in data.columns
                   and data[EXPECTED_COLUMN].notna().any())
    caption_height = _CAPTION_HEIGHT * (2 if with_chance else 1)  # a second caption line
    if height is None:
        panel_height = float(np.clip(_PANEL_ASPECT * width / n_cols, *_PANEL_HEIGHT))
        height = n_rows * panel_height + 0.5 + caption_height
    colours = _colours(hue_levels)

    with matplotlib.rc_context(PAPER_RC):
        figure = plt.figure(figsize=(width, height), layout="constrained")
        # Panels above, the caption line in a strip of its own below them.
        panels, strip = figure.subfigures(2, 1, height_ratios=[height - caption_height,
                                                               caption_height])
        axes = panels.subplots(n_rows, n_cols, sharey=True, squeeze=False)
        top, drawn = 0.0, []
        for (r, row_value), (c, col_value) in (
            (a, b) for a in enumerate(row_levels) for b in enumerate(col_levels)
        ):
            ax = axes[r, c]
            ax.tick_params(labelsize=PAPER_RC["xtick.labelsize"])
            _facet_titles(ax, r, c, n_cols, row, row_value, col, col_value, labels, value_labels)
            in_panel = np.ones(len(data), dtype=bool)
            if row:
                in_panel &= (data[f"_{row}"] == row_value).to_numpy()
            if col:
                in_panel &= (data[f"_{col}"] == col_value).to_numpy()
            panel = data[in_panel]
            if panel.empty:
                ax.text(0.5, 0.5, "no images", transform=ax.transAxes, ha="center", va="center")
                continue
            drawn.append(ax)
            for hue_value in hue_levels:
                curve = panel if hue is None else panel[panel[f"_{hue}"] == hue_value]
                if curve.empty:
                    continue
                _warn_mixed_thresholds(curve, image_column, hue, hue_value)
                summary = curve_summary(curve, measure)
                n_images = curve[image_column].nunique()
                words = "all images" if hue is None else value_label(hue, hue_value, value_labels)
                ax.fill_between(summary["distance"], summary["low"], summary["high"],
                                color=colours[hue_value], alpha=0.25, linewidth=0)
                ax.plot(summary["distance"], summary["mean"], color=colours[hue_value],
                        label=f"{words} (n = {n_images} image{'s' if n_images != 1 else ''})")
                top = max(top, np.nanmax(summary[["mean", "high"]].to_numpy()))
                if with_chance and curve[EXPECTED_COLUMN].notna().any():
                    chance = curve.groupby("distance", sort=True)[EXPECTED_COLUMN].mean()
                    ax.plot(chance.index, chance.to_numpy(), color=colours[hue_value],
                            linestyle="--", linewidth=0.8, label="_nolegend_")
            ax.set_xlim(0, float(panel["distance"].max()))
        axes[0, 0].set_ylim(0, 1.05 * top if top > 0 else 1.0)
        panels.supxlabel(f"distance to {structure} (µm)")
        panels.supylabel(y_text)
        strip.text(0.01, 0.5, CAPTION + (CHANCE_CAPTION if with_chance else ""), ha="left",
                   va="center", fontsize=PAPER_RC["legend.fontsize"])
        # Each panel's legend sits above it, under the panel's title: it counts that
        # panel's images, and inside the axes it would hide curves or bands.
        for ax in drawn:
            ax.legend(loc="lower left", bbox_to_anchor=(0, 1), borderaxespad=0.2,
                      title=column_label(hue, labels) if hue else None, alignment="left",
                      handlelength=1.2)
        renderer = figure.canvas.get_renderer()
        for ax in axes.flat:
            legend = ax.get_legend()
            if legend is not None and ax.get_title():
                points = legend.get_window_extent(renderer).height * 72 / figure.dpi
                ax.set_title(ax.get_title(), pad=points + 3)
    return figure


def _facet_titles(ax, r: int, c: int, n_cols: int, row, row_value, col, col_value,
                  labels, value_labels) -> None:
    """Column values on top of the first row, row values at the right of the last column.

    With only one facet column each panel's title names its value.
    """
    if col and (r == 0 or not row):
        ax.set_title(facet_title(col, col_value, labels, value_labels))
    if row and not col:
        ax.set_title(facet_title(row, row_value, labels, value_labels))
    elif row and c == n_cols - 1:
        ax.annotate(facet_title(row, row_value, labels, value_labels), xy=(1, 0.5),
                    xycoords="axes fraction", xytext=(6, 0), textcoords="offset points",
                    rotation=-90, ha="left", va="center", fontsize=PAPER_RC["axes.titlesize"])


def _warn_mixed_thresholds(curve: pd.DataFrame, image_column: str, hue, hue_value) -> None:
    ends = np.unique(curve.groupby(image_column)["distance"].max())
    if len(ends) > 1:
        import warnings

        which = f"the {hue} = {hue_value!r} curve" if hue else "the curve"
        warnings.warn(
            f"{which} averages images with different distance thresholds "
            f"({', '.join(f'{v:g}' for v in ends)} µm): beyond the smallest, "
            f"fewer images count. Split the panels by the threshold's column (plot.col or "
            f"plot.row).", UserWarning, stacklevel=3)


def plot_image_objects(image: np.ndarray, objects: pd.DataFrame, *, spacing_xy: float,
                       histogram_objects: pd.DataFrame | None = None,
                       reference: float | None = None, granule_threshold: float | None = None,
                       single_area: tuple[float, float] | None = None,
                       outline: np.ndarray | None = None, outline_label: str = "",
                       color: str = "distance", color_label: str = "distance (µm)",
                       intensity_label: str = "intensity", title: str = "",
                       histogram_title: str = ""):
    """One image's objects: where they are, coloured by distance; their sizes and intensities.

    Left: the maximum projection of `image` along z, in grey, with a dot at
    every object's centroid coloured by its distance (colour bar in µm; grey
    dots: no distance), or by another column of `objects` (`color`: e.g. the
    molecules of a data set with no second structure), and the outline of
    `outline` (the target structure). Right: histograms of the objects' areas
    and intensities, the single molecule's area range and intensity
    (`reference`), and the granule threshold, marked.

    Parameters
    ----------
    image : (Z, Y, X) or (Y, X) ndarray
        Raw intensities.
    objects : DataFrame
        One row per object of `image`: ``y``, ``x`` (centroid, voxels),
        ``area`` (voxels), ``intensity``, and the `color` column (default
        ``distance``, µm).
    spacing_xy : float
        Microns per pixel, for the axes.
    histogram_objects : DataFrame, optional
        ``area`` and ``intensity`` of the objects of the histograms (e.g. every
        image of the same RNA type); default `objects`.
    reference : float, optional
        Intensity of one molecule, marked on the intensity histogram.
    granule_threshold : float, optional
        Molecules from which an object is a granule; marked at
        ``granule_threshold * reference``.
    single_area : (float, float), optional
        Area range (voxels) of the objects taken as single molecules, shaded.
    outline : (Z, Y, X) or (Y, X) bool ndarray, optional
        Mask of the target structure, outlined on the projection.
    color : str
        The column of `objects` the dots are coloured by, from 0 up (grey: no
        value); default ``"distance"``.
    outline_label, color_label, intensity_label, title, histogram_title : str
        Words for the legend, colour bar, x axis and titles.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> image = np.zeros((3, 20, 20)); image[1, 5, 5] = image[1, 12, 15] = 100
    >>> objects = pd.DataFrame({"y": [5, 12], "x": [5, 15], "distance": [0.5, 2.0],
    ...                         "area": [10, 25], "intensity": [900, 2000]})
    >>> figure = plot_image_objects(image, objects, spacing_xy=0.1, reference=1000)
    >>> figure.axes[-1].get_ylabel()
    'distance (µm)'
    >>> objects["molecules"] = [1.0, 2.2]  # no second structure: colour by molecules
    >>> figure = plot_image_objects(image, objects, spacing_xy=0.1, color="molecules",
    ...                             color_label="molecules")
    >>> figure.axes[-1].get_ylabel()
    'molecules'
    """
    import matplotlib
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    missing = [c for c in ("y", "x", color, "area", "intensity") if c not in objects.columns]
    if missing:
        msg = (f"objects has no column {missing[0]!r} (it has "
               f"{', '.join(map(str, objects.columns))}); plot_image_objects needs y, x, area, "
               f"intensity and the column named by color={color!r}.")
        raise ValueError(msg)
    image = np.asarray(image)
    projection = image.max(axis=0) if image.ndim == 3 else image
    if projection.ndim != 2:
        msg = f"image must be (Z, Y, X) or (Y, X); got shape {image.shape}."
        raise ValueError(msg)
    if histogram_objects is None:
        histogram_objects = objects
    n_y, n_x = projection.shape
    extent = (0, n_x * spacing_xy, n_y * spacing_xy, 0)

    with matplotlib.rc_context(PAPER_RC):
        figure = plt.figure(figsize=(TWO_COLUMNS, 3.8), layout="constrained")
        axes = figure.subplot_mosaic([["image", "area"], ["image", "intensity"]],
                                     width_ratios=[1.45, 1])
        ax = axes["image"]
        low, high = np.percentile(projection, [1, 99.8])
        ax.imshow(projection, cmap="gray", vmin=low, vmax=max(high, low + 1e-12),
                  extent=extent, interpolation="nearest")
        values = pd.to_numeric(objects[color], errors="coerce").to_numpy(np.float64)
        measured = np.isfinite(values)
        x = (objects["x"].to_numpy(np.float64) + 0.5) * spacing_xy  # voxel i spans [i, i + 1)
        y = (objects["y"].to_numpy(np.float64) + 0.5) * spacing_xy
        ax.scatter(x[~measured], y[~measured], s=9, color="0.6", linewidths=0)
        dots = ax.scatter(x[measured], y[measured], c=values[measured],
                          s=9, cmap="viridis", vmin=0, linewidths=0)
        figure.colorbar(dots, ax=ax, label=color_label, shrink=0.8)
        if outline is not None:
            mask = np.asarray(outline)
            mask = mask.max(axis=0) if mask.ndim == 3 else mask
            if mask.any():
                centres_x = (np.arange(mask.shape[1]) + 0.5) * spacing_xy
                centres_y = (np.arange(mask.shape[0]) + 0.5) * spacing_xy
                ax.contour(centres_x, centres_y, mask.astype(float), levels=[0.5], colors="red",
                           linewidths=0.7)
                ax.legend(handles=[Line2D([], [], color="red", linewidth=0.7,
                                          label=outline_label or "target structure")],
                          loc="upper right", labelcolor="white")
        ax.set_xlabel("x (µm)")
        ax.set_ylabel("y (µm)")
        ax.set_title(title or f"{len(objects)} objects")

        marks_area = []
        if single_area is not None:
            marks_area.append(("span", single_area, "single-molecule sizes"))
        _histogram(axes["area"], histogram_objects["area"], "area (voxels)", marks_area)
        marks_intensity = []
        if reference is not None:
            marks_intensity.append(("line", reference, f"1 molecule ({reference:,.4g})"))
            if granule_threshold is not None:
                marks_intensity.append(("dashed", granule_threshold * reference,
                                        f"granule (≥ {granule_threshold:g} molecules)"))
        _histogram(axes["intensity"], histogram_objects["intensity"], intensity_label,
                   marks_intensity)
        if histogram_title:
            axes["area"].set_title(histogram_title)
    return figure


def _histogram(ax, values, xlabel: str, marks: list) -> None:
    """Histogram of `values` over their 0.5-99.5 percentile range and the marks, with the marks."""
    values = pd.to_numeric(pd.Series(values), errors="coerce").dropna().to_numpy(np.float64)
    points = [float(p) for kind, value, _ in marks
              for p in (value if kind == "span" else [value])]
    if len(values):  # the range of all but the most extreme 0.5 % on each side
        low = np.percentile(values, 0.5, method="lower")
        high = np.percentile(values, 99.5, method="higher")
    else:
        low, high = 0.0, 1.0
    low = min([low, 0.0, *points])
    high = max([high, *[1.3 * p for p in points]])
    if high <= low:
        high = low + 1.0
    ax.hist(values, bins=50, range=(low, high), color="0.45")
    outside = int(np.sum((values < low) | (values > high)))
    if outside:
        xlabel = f"{xlabel}\n({outside} object{'s' if outside != 1 else ''} beyond the axis)"
    for kind, value, label in marks:
        if kind == "span":
            ax.axvspan(*value, color="C0", alpha=0.2, linewidth=0, label=label)
        else:
            ax.axvline(value, color="C1", linestyle="--" if kind == "dashed" else "-",
                       linewidth=1, label=label)
    if marks:
        ax.legend(loc="upper right")
    ax.set_xlim(low, high)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("objects")


def save_figure(figure, path_stem: str | Path, *, dpi: int = 600) -> list[Path]:
    """Save a figure as ``<stem>.pdf`` and ``<stem>.png``, close it, and return both paths.

    Each file is written beside its target and renamed over it, so a failed
    or interrupted save leaves the previous file as it was.

    The PDF embeds its fonts as TrueType (Type 42: editable text, accepted by
    journals) and keeps the figure's size (a 3.5 in figure stays 3.5 in wide);
    the PNG is drawn at `dpi` and records it. Both files have one layout: the
    figure's layout engine (e.g. constrained) runs once, before either is
    drawn, and each file is then drawn once. The PNG is compressed at
    :data:`PNG_COMPRESS_LEVEL` (lossless at every level).

    Parameters
    ----------
    figure : matplotlib Figure (or anything with a ``.figure``, e.g. a seaborn grid)
    path_stem : path-like
        Path without suffix; its folder is made if missing.
    dpi : int
        Resolution of the PNG (and of any raster part of the PDF).

    Returns
    -------
    list of Path
        The PDF and the PNG.
    """
    import matplotlib
    import matplotlib.pyplot as plt

    figure = getattr(figure, "figure", figure)
    stem = Path(path_stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    try:
        with matplotlib.rc_context(SAVE_RC):
            if figure.get_layout_engine() is not None:
                # Laid out once for both files, drawing nothing. Then no layout engine at
                # all (not even "none"'s placeholder): savefig draws a figure that has one
                # twice, the first time only to lay it out (the figure is closed below).
                figure.draw_without_rendering()
                with matplotlib.rc_context({"figure.autolayout": False,
                                            "figure.constrained_layout.use": False}):
                    figure.set_layout_engine(None)
            for suffix, options in ((".pdf", {}),
                                    (".png", {"pil_kwargs": {"compress_level": PNG_COMPRESS_LEVEL}})):
                path = stem.with_name(stem.name + suffix)
                # Drawn beside the target, then renamed over it: an interrupted or failed
                # save leaves the previous figure whole, never a truncated one.
                part = path.with_name(path.name + ".part")
                try:
                    figure.savefig(part, dpi=dpi, format=suffix[1:], **options)
                    os.replace(part, path)
                finally:
                    part.unlink(missing_ok=True)
                paths.append(path)
    finally:
        plt.close(figure)
    return paths


def plot_group_statistics(stats: pd.DataFrame, figure: str = "enrichment", *,
                          hue: str | None = "rna_type", col: str | None = None,
                          tests: pd.DataFrame | None = None, test: str = "auc",
                          structure: str = "centrosomes",
                          labels: Mapping[str, str] | None = None,
                          value_labels: Mapping[str, Mapping] | None = None,
                          width: float | None = None):
    """Each group's mean curve with its bootstrap band, and the p-values between hue groups.

    Draws a curve of :func:`rna_localization.stats.group_statistics`
    (``figure``: ``"enrichment"``, with chance, 1, dashed; or
    ``"percent_total_rna"``): one line per value of `hue`, its band from
    ``ci_low`` to ``ci_high``, one panel per value of `col`. With `tests`
    (:func:`rna_localization.stats.group_tests`), each panel lists the
    p-value of `test` between every two of its hue groups.

    Parameters
    ----------
    stats : DataFrame
        ``stats.csv``: `hue`, `col`, ``figure``, ``distance``, ``value``,
        ``ci_low``, ``ci_high``, ``n_images``.
    figure : str
    hue, col : str or None
    tests : DataFrame, optional
        ``stats_tests.csv``.
    test : {"auc", "max_curve_difference"}
    structure : str
        The target structure, for the x label.
    labels, value_labels : mapping, optional
        As in :func:`plot_cumulative_distributions`.
    width : float, optional
        Inches; default one journal column up to two panels.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> stats = pd.DataFrame({"rna_type": ["cen"] * 2 + ["gapdh"] * 2, "figure": "enrichment",
    ...     "distance": [0.5, 1.0] * 2, "value": [8.0, 6.0, 1.2, 1.1],
    ...     "ci_low": [7.0, 5.5, 1.0, 1.0], "ci_high": [9.0, 6.5, 1.4, 1.2], "n_images": 5})
    >>> tests = pd.DataFrame({"factor": ["rna_type"], "rna_type_a": ["cen"],
    ...     "rna_type_b": ["gapdh"], "test": ["auc"], "p_value": [0.0079]})
    >>> fig = plot_group_statistics(stats, tests=tests)
    >>> [t.get_text() for t in fig.axes[0].texts]
    ['cen vs gapdh: p = 0.0079 (auc)']
    >>> fig.axes[0].get_lines()[-1].get_linestyle()  # chance: an enrichment of 1
    '--'
    """
    import matplotlib
    import matplotlib.pyplot as plt

    rows = stats[(stats["figure"] == figure) & stats["distance"].notna()]
    if rows.empty:
        msg = (f"the statistics have no {figure!r} curve (they have "
               f"{', '.join(map(str, pd.unique(stats['figure'])))}).")
        raise ValueError(msg)
    for what, column in {"hue": hue, "col": col}.items():
        if column and column not in rows.columns:
            msg = f"the statistics have no {what} column {column!r}; group them by it (--by {column})."
            raise ValueError(msg)
    data = rows.copy()
    hue_levels = [str(v) for v in _levels(data[hue])] if hue else [None]
    col_levels = [str(v) for v in _levels(data[col])] if col else [None]
    colours = _colours(hue_levels)
    if width is None:
        width = ONE_COLUMN if len(col_levels) <= 2 else TWO_COLUMNS
    panel_height = float(np.clip(_PANEL_ASPECT * width / len(col_levels), *_PANEL_HEIGHT))
    y_text = ("enrichment over chance\n(observed / expected)" if figure == "enrichment"
              else y_label(figure) if figure in _MEASURES else figure)
    with matplotlib.rc_context(PAPER_RC):
        fig, axes = plt.subplots(1, len(col_levels), figsize=(width, panel_height + 0.8),
                                 sharey=True, squeeze=False, layout="constrained")
        for ax, col_value in zip(axes[0], col_levels):
            panel = data if col is None else data[data[col].astype(str) == col_value]
            if col:
                ax.set_title(facet_title(col, col_value, labels, value_labels))
            for hue_value in hue_levels:
                curve = panel if hue is None else panel[panel[hue].astype(str) == hue_value]
                if curve.empty:
                    continue
                curve = curve.sort_values("distance")
                n = int(curve["n_images"].max())
                words = "all images" if hue is None else value_label(hue, hue_value, value_labels)
                ax.fill_between(curve["distance"], curve["ci_low"], curve["ci_high"],
                                color=colours[hue_value], alpha=0.25, linewidth=0)
                ax.plot(curve["distance"], curve["value"], color=colours[hue_value],
                        label=f"{words} (n = {n} image{'s' if n != 1 else ''})")
            if figure == "enrichment":
                ax.axhline(1.0, color="0.4", linestyle="--", linewidth=0.8)
            if tests is not None and hue and len(tests):
                chosen = tests[(tests["factor"] == hue) & (tests["test"] == test)]
                if col and f"{col}_a" in chosen.columns:
                    chosen = chosen[chosen[f"{col}_a"].astype(str) == col_value]
                lines = [f"{value_label(hue, r[f'{hue}_a'], value_labels)} vs "
                         f"{value_label(hue, r[f'{hue}_b'], value_labels)}: p = {r['p_value']:.2g} ({test})"
                         for _, r in chosen.iterrows()]
                if lines:  # under the panel's title, clear of the curves
                    ax.annotate("\n".join(lines), xy=(0.5, 1), xycoords="axes fraction",
                                xytext=(0, 2), textcoords="offset points", ha="center",
                                va="bottom", fontsize=PAPER_RC["legend.fontsize"] - 1)
                    if col:
                        ax.set_title(ax.get_title(), pad=4 + 8 * len(lines))
            ax.legend(loc="upper right", title=column_label(hue, labels) if hue else None,
                      alignment="right", handlelength=1.2, fontsize=PAPER_RC["legend.fontsize"] - 1,
                      title_fontsize=PAPER_RC["legend.fontsize"] - 1)
        fig.supxlabel(f"distance to {structure} (µm)")
        fig.supylabel(y_text)
    return fig
