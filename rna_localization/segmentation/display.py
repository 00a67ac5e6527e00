"""Figures for the playground notebooks: every step of a workflow beside the raw data.

matplotlib only; ipywidgets is imported lazily by :func:`interactive_playground`.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .params import WORKFLOWS
from .workflows import DEFAULT_SPACING, SegmentationSteps, centrosome_steps, rna_steps

__all__ = ["default_slice", "interactive_playground", "show_outline", "show_steps"]

_TITLES = {
    "raw": "raw",
    "normalized": "normalized",
    "smoothed": "smoothed",
    "thresholded": "spot filter > cutoff",
    "filled": "holes filled",
    "size_filtered": "size filtered",
    "seeds": "watershed seeds",
    "result": "result",
}


def default_slice(steps_or_image) -> int:
    """The z-slice holding the most segmented voxels (the middle one if none).

    Parameters
    ----------
    steps_or_image : SegmentationSteps or (Z, Y, X) ndarray
        With an array, the slice of its brightest voxel.

    Returns
    -------
    int
    """
    if isinstance(steps_or_image, SegmentationSteps):
        per_slice = np.count_nonzero(steps_or_image.result, axis=(1, 2))
        return int(np.argmax(per_slice)) if per_slice.any() else steps_or_image.raw.shape[0] // 2
    image = np.asarray(steps_or_image)
    return int(np.unravel_index(np.argmax(image), image.shape)[0])


def _limits(image: np.ndarray) -> tuple[float, float]:
    if image.dtype == bool or image.dtype == np.uint8:
        return 0.0, float(max(image.max(), 1))
    low, high = np.percentile(image, [0.5, 99.95])
    return float(low), float(max(high, low + 1e-12))


def show_steps(steps: SegmentationSteps, *, z: int | None = None, steps_to_show=None,
               spacing=DEFAULT_SPACING, panel_size: float = 3.2):
    """Every step as a maximum projection and one z-slice, raw data first.

    Parameters
    ----------
    steps : SegmentationSteps
        From :func:`rna_steps` or :func:`centrosome_steps`.
    z : int, optional
        The z-slice to show; None: :func:`default_slice`.
    steps_to_show : sequence of str, optional
        Names from ``steps.images()`` (e.g. ``["raw", "spot_filter_0",
        "result"]``); None: all.
    spacing : sequence of 3 floats
        Microns per voxel (z, y, x), for the scale of the axes.
    panel_size : float
        Inches per panel.

    Returns
    -------
    matplotlib.figure.Figure
        One row per step: maximum projection (left), z-slice (right).
    """
    import matplotlib.pyplot as plt

    images = steps.images()
    names = list(images) if steps_to_show is None else list(steps_to_show)
    unknown = [n for n in names if n not in images]
    if unknown:
        msg = f"unknown step(s) {unknown}; choose from {list(images)}."
        raise ValueError(msg)
    z = default_slice(steps) if z is None else int(z)
    n_z = steps.raw.shape[0]
    if not 0 <= z < n_z:
        msg = f"z-slice {z} is outside the stack (0..{n_z - 1})."
        raise ValueError(msg)
    extent = _extent(steps.raw.shape, spacing)
    fig, axes = plt.subplots(len(names), 2, figsize=(2 * panel_size, panel_size * len(names)),
                             squeeze=False, constrained_layout=True)
    for row, name in enumerate(names):
        image = images[name]
        if name == "seeds":
            image = image > 0
        for col, (view, label) in enumerate([(image.max(axis=0), "max projection"),
                                             (image[z], f"z = {z}")]):
            low, high = _limits(view)
            ax = axes[row, col]
            ax.imshow(view, cmap="gray", vmin=low, vmax=high, extent=extent,
                      interpolation="nearest")
            ax.set_title(f"{_title(name)}: {label}", fontsize=9)
            ax.tick_params(labelsize=7)
        axes[row, 0].set_ylabel("y (µm)", fontsize=8)
    for ax in axes[-1]:
        ax.set_xlabel("x (µm)", fontsize=8)
    return fig


def _title(name: str) -> str:
    if name.startswith("spot_filter_"):
        return f"spot filter #{int(name.rsplit('_', 1)[1]) + 1}"
    return _TITLES.get(name, name)


def _extent(shape, spacing) -> tuple[float, float, float, float]:
    _, dy, dx = (float(s) for s in np.broadcast_to(spacing, (3,)))
    return (0.0, shape[2] * dx, shape[1] * dy, 0.0)


def show_outline(image: np.ndarray, mask: np.ndarray, *, z: int | None = None,
                 spacing=DEFAULT_SPACING, panel_size: float = 5.0):
    """The segmentation's outlines over the raw data: maximum projection and a z-slice.

    Parameters
    ----------
    image : (Z, Y, X) ndarray
        Raw stack.
    mask : (Z, Y, X) ndarray
        Segmentation (non-zero = object).
    z : int, optional
        The z-slice; None: the one with the most segmented voxels.
    spacing : sequence of 3 floats
        Microns per voxel (z, y, x).
    panel_size : float
        Inches per panel.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt
    from skimage.segmentation import find_boundaries

    image, mask = np.asarray(image), np.asarray(mask) > 0
    if z is None:
        per_slice = np.count_nonzero(mask, axis=(1, 2))
        z = int(np.argmax(per_slice)) if per_slice.any() else image.shape[0] // 2
    extent = _extent(image.shape, spacing)
    fig, axes = plt.subplots(1, 2, figsize=(2 * panel_size, panel_size), constrained_layout=True)
    for ax, raw, seg, label in [(axes[0], image.max(axis=0), mask.max(axis=0), "max projection"),
                                (axes[1], image[z], mask[z], f"z = {z}")]:
        low, high = _limits(raw)
        ax.imshow(raw, cmap="gray", vmin=low, vmax=high, extent=extent, interpolation="nearest")
        edges = np.ma.masked_equal(find_boundaries(seg, mode="inner").astype(np.uint8), 0)
        ax.imshow(edges, cmap="spring", vmin=0, vmax=1, extent=extent, interpolation="nearest")
        ax.set_title(f"outlines over raw: {label}", fontsize=10)
        ax.set_xlabel("x (µm)")
    axes[0].set_ylabel("y (µm)")
    return fig


def interactive_playground(image: np.ndarray, params, *, spacing=DEFAULT_SPACING,
                           z: int | None = None, steps_to_show=("raw", "spot_filter_0",
                                                                "size_filtered", "result")):
    """Sliders for the main parameters; the figure redraws on release.

    Parameters
    ----------
    image : (Z, Y, X) ndarray
        Raw stack.
    params : RnaParams or CentrosomeParams
        Starting values; the workflow follows its class.
    spacing : sequence of 3 floats
        Microns per voxel (z, y, x).
    z : int, optional
        The z-slice shown.
    steps_to_show : sequence of str
        Steps redrawn (see :func:`show_steps`).

    Returns
    -------
    ipywidgets.Widget
        Display it in a notebook; read the tuned parameters from its
        ``.params`` attribute (a dict holding the current parameter object).

    Raises
    ------
    ImportError
        When ipywidgets is not installed (``pip install ipywidgets``).
    """
    try:
        import ipywidgets as widgets
    except ImportError as error:
        msg = "sliders need ipywidgets: pip install ipywidgets (the playground works without them)."
        raise ImportError(msg) from error
    import matplotlib.pyplot as plt

    run = rna_steps if params.workflow == "rna" else centrosome_steps
    if params.workflow not in WORKFLOWS:
        msg = f"unknown workflow {params.workflow!r}."
        raise ValueError(msg)
    state = {"params": params}
    sigma0, cutoff0 = params.spot_filters[0]
    sliders = {
        "smoothing_sigma_um": widgets.FloatSlider(value=params.smoothing_sigma_um, min=0, max=0.5,
                                                  step=0.005, description="smooth σ µm"),
        "sigma_um": widgets.FloatSlider(value=sigma0, min=0.02, max=1.0, step=0.01,
                                        description="spot σ µm"),
        "cutoff": widgets.FloatLogSlider(value=max(cutoff0, 1e-4), base=10, min=-4, max=0,
                                         step=0.05, description="spot cutoff"),
        "min_volume_um3": widgets.FloatSlider(value=params.min_volume_um3, min=0, max=0.2,
                                              step=0.001, readout_format=".3f",
                                              description="min µm³"),
        "split_min_distance_um": widgets.FloatSlider(value=params.split_min_distance_um, min=0,
                                                     max=2.0, step=0.05,
                                                     description="split µm"),
    }
    for slider in sliders.values():
        slider.continuous_update = False
    output = widgets.Output()

    def redraw(_change=None):
        values = {k: s.value for k, s in sliders.items()}
        spots = ((values.pop("sigma_um"), values.pop("cutoff")), *params.spot_filters[1:])
        current = dataclasses.replace(params, spot_filters=spots, **values)
        state["params"] = current
        with output:
            output.clear_output(wait=True)
            fig = show_steps(run(image, current, spacing=spacing), z=z,
                             steps_to_show=steps_to_show, spacing=spacing)
            plt.show(fig)

    for slider in sliders.values():
        slider.observe(redraw, names="value")
    redraw()
    box = widgets.VBox([widgets.HBox(list(sliders.values())[:3]),
                        widgets.HBox(list(sliders.values())[3:]), output])
    box.params = state
    return box
