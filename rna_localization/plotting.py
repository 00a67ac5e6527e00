"""Figures: seaborn plots of cumulative distributions."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

__all__ = ["plot_cumulative_distributions", "save_figure"]

_LABELS = {
    "percent_total_rna": "RNA within distance (% of total)",
    "percent_granule_rna": "granule RNA within distance (% of total RNA)",
}


def plot_cumulative_distributions(distributions: pd.DataFrame, measure: str = "percent_total_rna", *,
                                  hue: str | None = "rna_type", col: str | None = None,
                                  structure: str = "centrosomes"):
    """Mean cumulative distribution over images, with a standard-deviation band.

    Parameters
    ----------
    distributions : DataFrame
        Rows of :func:`rna_localization.steps.compute_distributions`.
    measure : {"percent_total_rna", "percent_granule_rna"}
    hue : str or None
        Metadata column coloured (e.g. ``rna_type``).
    col : str or None
        Metadata column split into side-by-side panels (e.g. ``cycle``).
    structure : str
        Name of the target structure, for the x label.

    Returns
    -------
    seaborn.FacetGrid
    """
    import seaborn as sns

    for column in [measure, "distance", hue, col]:
        if column and column not in distributions.columns:
            msg = (
                f"cannot plot: column {column!r} is not in the distributions "
                f"(they have {', '.join(distributions.columns)}); check plot.hue / plot.col."
            )
            raise ValueError(msg)
    if distributions.empty:
        msg = "cannot plot: the distributions table is empty (no image has a distribution)."
        raise ValueError(msg)
    data = distributions.copy()
    for column in [hue, col]:
        if column:
            data[column] = data[column].astype(str)
    grid = sns.relplot(
        data=data, x="distance", y=measure, hue=hue or None, col=col or None, kind="line",
        estimator="mean", errorbar="sd", height=3.5, aspect=1.1,
        facet_kws={"sharey": True},
    )
    grid.set_axis_labels(f"distance to {structure} (µm)", _LABELS.get(measure, measure))
    for ax in grid.axes.flat:
        ax.set_ylim(0, 100)
        ax.set_xlim(left=0)
    return grid


def save_figure(figure, path_stem: str | Path, *, dpi: int = 600) -> list[Path]:
    """Save a figure as ``<stem>.pdf`` and ``<stem>.png`` at `dpi`; return both paths."""
    stem = Path(path_stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for suffix in (".pdf", ".png"):
        path = stem.with_suffix(suffix)
        figure.savefig(path, dpi=dpi, bbox_inches="tight")
        paths.append(path)
    import matplotlib.pyplot as plt

    plt.close(getattr(figure, "figure", figure))
    return paths
