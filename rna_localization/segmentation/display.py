"""Figures and inputs for the playground notebooks: every step beside the raw data.

matplotlib only; ipywidgets is imported lazily by :func:`interactive_playground`.

- :func:`playground_image`: the image a playground starts from (a file, the
  first raw image of a configured data set, or a simulated example);
- :func:`show_intermediates`: every intermediate image of a workflow run
  (:class:`.workflows.Intermediates`), projection and z-slice;
- :func:`show_outline`: the objects' outlines over the raw data;
- :func:`interactive_playground`: one slider per numeric parameter, redrawn
  at every change on a crop of the image.
"""

from __future__ import annotations

import dataclasses
import os
import time
import warnings
from pathlib import Path

import numpy as np
from scipy import ndimage

from ..objects import FACE_CONNECTIVITY
from .params import WORKFLOWS, SegmentationParams
from .quality import FaintSpotsWarning, LargeObjectsRemovedWarning
from .workflows import DEFAULT_SPACING, FILTER_PARAMETERS, Intermediates, segment_intermediates

__all__ = [
    "Playground",
    "default_slice",
    "interactive_playground",
    "playground_image",
    "show_outline",
    "show_intermediates",
]

_TITLES = {
    "raw": "raw",
    "filtered": "background removed, filtered",
    "noise": "local noise SD",
    "score": "score (filtered / noise, SDs)",
    "labels": "objects grown from spots",
    "result": "result",
}




# ------------------------------------------------------------------- inputs
def _structure_for(config, workflow: str) -> str:
    from .batch import _default_workflow

    for structure in config.data.structures:
        if _default_workflow(structure) == workflow:
            return structure
    msg = (
        f"no structure of data.structures {list(config.data.structures)} is segmented with "
        f"the {workflow!r} workflow; set image_path to one of your raw stacks instead."
    )
    raise ValueError(msg)


def playground_image(workflow: str, *, image_path: str | os.PathLike = "",
                     config_path: str | os.PathLike = "", spacing=None,
                     preset: str = "confocal", snr: float = 8.0, seed: int = 0,
                     shape=(30, 256, 256)):
    """The image a playground notebook tunes on, its name and its voxel size.

    In order of precedence:

    1. `image_path`: that stack, with `spacing`, or when `spacing` is None
       the voxel size the file states (ImageJ/OME metadata), else that of
       `config_path`'s ``[scale]``, else :data:`.workflows.DEFAULT_SPACING`
       with a warning to set it;
    2. `config_path` (a ``pipeline.toml``): the first raw image (by name) of
       the structure segmented with `workflow` (``<data_dir>/<structure>/
       raw-data``), with the configuration's voxel size (``[scale]``, as the
       pipeline uses it; a :class:`.calibration.VoxelSizeWarning` if the file
       states another), unless `spacing` is given;
    3. otherwise a simulated example (:func:`rna_localization.synthetic.simulate_image`)
       of the `preset` microscope, with its voxel size (`spacing` is ignored).

    Parameters
    ----------
    workflow : {"rna", "centrosomes"}
    image_path : path-like
        One raw (Z, Y, X) stack; "" for none.
    config_path : path-like
        A pipeline configuration; "" for none.
    spacing : sequence of 3 floats, optional
        Microns per voxel (z, y, x) of the stack; None (or a 0 on any axis):
        read as above.
    preset : {"confocal", "widefield"}
        Microscope of the simulated example.
    snr : float
        Median peak signal-to-noise of a simulated single molecule.
    seed : int
        Seed of the simulated example.
    shape : tuple of 3 int
        Shape of the simulated example.

    Returns
    -------
    image : (Z, Y, X) ndarray
    name : str
    spacing : tuple of 3 floats
    """
    from ..io import read_stack
    from ..objects import normalize_spacing

    if workflow not in WORKFLOWS:
        msg = f"workflow must be one of {list(WORKFLOWS)}; got {workflow!r}."
        raise ValueError(msg)
    if spacing is not None and not all(np.broadcast_to(np.asarray(spacing, dtype=object), (3,))):
        spacing = None  # a 0 (a notebook's "read it") on any axis
    if spacing is not None:
        spacing = tuple(float(s) for s in normalize_spacing(spacing))
    config = None
    if config_path:
        from ..config import load_config

        config = load_config(config_path)
    if image_path:
        path = Path(image_path)
        image = read_stack(path)
        if spacing is None:
            spacing = _stated_spacing(path, config)
        return image, path.stem, spacing
    if config is not None:
        from ..calibration import find_mismatches, scale_source, warn_mismatches
        from .batch import _inputs

        structure = _structure_for(config, workflow)
        raw_dir, _ = config.structure_dirs(structure)
        if not raw_dir.is_dir():
            msg = f"structure {structure!r} has no raw-data folder {raw_dir}."
            raise FileNotFoundError(msg)
        paths = _inputs(raw_dir)
        if not paths:
            msg = f"no .tif stack in {raw_dir}; set image_path to one of your raw stacks."
            raise FileNotFoundError(msg)
        if spacing is None:
            spacing = tuple(config.spacing)
            warn_mismatches(find_mismatches(paths[:1], spacing), spacing,
                            used=scale_source(config), fix="so correct [scale] if the file is right")
        return read_stack(paths[0]), paths[0].stem, spacing
    from ..synthetic import PRESETS, simulate_image

    example = simulate_image("example", rna_type="cen", cycle="nc14", seed=seed, shape=shape,
                             preset=preset, snr=snr)
    image = example.rna if workflow == "rna" else example.centrosomes
    return image, f"example_{preset}", tuple(float(s) for s in PRESETS[preset].spacing)


def _stated_spacing(path: Path, config) -> tuple[float, float, float]:
    """The voxel size of a stack: its file's, else the config's [scale], else the default (warned)."""
    import warnings

    from ..calibration import VoxelSizeWarning, format_voxel_size
    from ..io import read_voxel_size

    stated = read_voxel_size(path)
    if stated is not None:
        return tuple(float(s) for s in stated)
    if config is not None:
        return tuple(config.spacing)
    warnings.warn(f"{path} states no voxel size: using {format_voxel_size(DEFAULT_SPACING)}; "
                  f"set xy and z (spacing=) to the microscope's.",
                  VoxelSizeWarning, stacklevel=3)
    return tuple(DEFAULT_SPACING)


# ------------------------------------------------------------------ figures
def default_slice(intermediates_or_image) -> int:
    """The z-slice holding the most segmented voxels (the middle one if none).

    Parameters
    ----------
    intermediates_or_image : Intermediates or (Z, Y, X) ndarray
        With an array, the slice of its brightest voxel.

    Returns
    -------
    int
    """
    if isinstance(intermediates_or_image, Intermediates):
        per_slice = np.count_nonzero(intermediates_or_image.result, axis=(1, 2))
        return int(np.argmax(per_slice)) if per_slice.any() else intermediates_or_image.raw.shape[0] // 2
    image = np.asarray(intermediates_or_image)
    return int(np.unravel_index(np.argmax(image), image.shape)[0])


def _limits(image: np.ndarray) -> tuple[float, float]:
    if image.dtype == bool or image.dtype == np.uint8:
        return 0.0, float(max(image.max(), 1))
    low, high = np.percentile(image, [0.5, 99.95])
    return float(low), float(max(high, low + 1e-12))


def _extent(shape, spacing) -> tuple[float, float, float, float]:
    _, dy, dx = (float(s) for s in np.broadcast_to(spacing, (3,)))
    return (0.0, shape[2] * dx, shape[1] * dy, 0.0)


def _show_labels(ax, labels: np.ndarray, extent) -> None:
    colours = np.ma.masked_equal(np.where(labels > 0, (labels - 1) % 20 + 1, 0), 0)
    ax.imshow(np.zeros(labels.shape), cmap="gray", vmin=0, vmax=1, extent=extent)
    ax.imshow(colours, cmap="tab20", vmin=1, vmax=20, extent=extent, interpolation="nearest")


def show_intermediates(intermediates: Intermediates, *, z: int | None = None, which=None,
                       spacing=DEFAULT_SPACING, panel_size: float = 3.2):
    """Every intermediate image as a maximum projection and one z-slice, raw data first.

    The images (``intermediates.images()``): ``raw``; ``filtered`` (background
    removed, filtered at the spot's scale); ``noise`` (its local noise SD);
    ``score`` (filtered / noise, in noise SDs: what the threshold applies
    to; the spots found are marked with crosses); ``labels`` (objects grown
    from the spots, one colour each); ``result`` (the final 0/255 mask).

    Parameters
    ----------
    intermediates : Intermediates
        From :func:`.workflows.segment_intermediates`.
    z : int, optional
        The z-slice to show; None: :func:`default_slice`.
    which : sequence of str, optional
        Names from ``intermediates.images()`` (e.g. ``["raw", "score", "result"]``);
        None: all.
    spacing : sequence of 3 floats
        Microns per voxel (z, y, x), for the scale of the axes.
    panel_size : float
        Inches per panel.

    Returns
    -------
    matplotlib.figure.Figure
        One row per image: maximum projection (left), z-slice (right).
    """
    import matplotlib.pyplot as plt

    images = intermediates.images()
    names = list(images) if which is None else list(which)
    unknown = [n for n in names if n not in images]
    if unknown:
        msg = f"unknown step(s) {unknown}; choose from {list(images)}."
        raise ValueError(msg)
    z = default_slice(intermediates) if z is None else int(z)
    n_z = intermediates.raw.shape[0]
    if not 0 <= z < n_z:
        msg = f"z-slice {z} is outside the stack (0..{n_z - 1})."
        raise ValueError(msg)
    extent = _extent(intermediates.raw.shape, spacing)
    _, dy, dx = (float(s) for s in np.broadcast_to(spacing, (3,)))
    fig, axes = plt.subplots(len(names), 2, figsize=(2 * panel_size, panel_size * len(names)),
                             squeeze=False, constrained_layout=True)
    for row, name in enumerate(names):
        image = images[name]
        for col, (view, label) in enumerate([(image.max(axis=0), "max projection"),
                                             (image[z], f"z = {z}")]):
            ax = axes[row, col]
            if name == "labels":
                _show_labels(ax, view, extent)
            else:
                low, high = _limits(view)
                ax.imshow(view, cmap="gray", vmin=low, vmax=high, extent=extent,
                          interpolation="nearest")
            if name == "score" and len(intermediates.spots):
                spots = intermediates.spots if col == 0 else intermediates.spots[intermediates.spots["zi"] == z]
                ax.plot((spots["x"] + 0.5) * dx, (spots["y"] + 0.5) * dy, "+", color="tab:red",
                        markersize=4, markeredgewidth=0.6)
            ax.set_title(f"{_TITLES.get(name, name)}: {label}", fontsize=9)
            ax.tick_params(labelsize=7)
        axes[row, 0].set_ylabel("y (µm)", fontsize=8)
    for ax in axes[-1]:
        ax.set_xlabel("x (µm)", fontsize=8)
    return fig


def _outline_panel(ax, raw: np.ndarray, labels: np.ndarray, extent) -> None:
    from skimage.segmentation import find_boundaries

    low, high = _limits(raw)
    ax.imshow(raw, cmap="gray", vmin=low, vmax=high, extent=extent, interpolation="nearest")
    edges = np.ma.masked_equal(find_boundaries(labels, mode="inner").astype(np.uint8), 0)
    ax.imshow(edges, cmap="spring", vmin=0, vmax=1, extent=extent, interpolation="nearest")


def _objects(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """Face-connected objects of a mask, as the pipeline counts them."""
    labels, count = ndimage.label(np.asarray(mask) > 0, structure=FACE_CONNECTIVITY)
    return labels, int(count)


def show_outline(image: np.ndarray, mask: np.ndarray, *, z: int | None = None,
                 spacing=DEFAULT_SPACING, panel_size: float = 5.0):
    """The segmentation's outlines over the raw data: maximum projection and a z-slice.

    Parameters
    ----------
    image : (Z, Y, X) ndarray
        Raw stack.
    mask : (Z, Y, X) ndarray
        Segmentation (non-zero = object; objects are its face-connected
        components, outlined one by one).
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

    image = np.asarray(image)
    labels, count = _objects(mask)
    if z is None:
        per_slice = np.count_nonzero(labels, axis=(1, 2))
        z = int(np.argmax(per_slice)) if per_slice.any() else image.shape[0] // 2
    extent = _extent(image.shape, spacing)
    fig, axes = plt.subplots(1, 2, figsize=(2 * panel_size, panel_size), constrained_layout=True)
    for ax, raw, seg, label in [(axes[0], image.max(axis=0), labels.max(axis=0), "max projection"),
                                (axes[1], image[z], labels[z], f"z = {z}")]:
        _outline_panel(ax, raw, seg, extent)
        ax.set_title(f"{count} objects, outlines over raw: {label}", fontsize=10)
        ax.set_xlabel("x (µm)")
    axes[0].set_ylabel("y (µm)")
    return fig


# --------------------------------------------------------------- playground
#: Slider of each numeric parameter: (label, min, max, step); a step of None: a
#: log10 slider from 10**min to 10**max.
_SLIDERS = {
    "spot_sigma_axial": ("spot σ z µm", 0.05, 1.5, 0.01),
    "spot_sigma_lateral": ("spot σ xy µm", 0.03, 1.0, 0.005),
    "background_ratio": ("background ×σ", 1.1, 6.0, 0.1),
    "threshold": ("threshold (0 auto)", 0.0, 20.0, 0.1),
    "false_positives_per_1000um3": ("false pos./1000µm³", -3.0, 2.0, None),
    "floor": ("floor SDs", 0.0, 10.0, 0.1),
    "mask_fraction": ("mask fraction", 0.0, 1.0, 0.01),
    "mask_smoothing": ("mask smoothing ×σ", 0.05, 1.0, 0.05),
    "split_saddle_ratio": ("saddle ratio", 0.0, 1.0, 0.01),
    "granule_saddle_ratio": ("granule saddle", 0.0, 1.0, 0.01),
    "blend_fraction": ("blend fraction (0 off)", 0.0, 1.0, 0.01),
    "defocus_ratio": ("defocus ratio (0 off)", 0.0, 30.0, 0.5),
    "min_volume_um3": ("min volume µm³", 0.0, 0.5, 0.001),
    "max_volume_um3": ("max volume µm³ (0 off)", 0.0, 10.0, 0.1),
}


def _central_crop(image: np.ndarray, size: int = 256, planes: int = 16) -> tuple[slice, slice, slice]:
    """The central `size` x `size` pixels, and the `planes` z-slices around the brightest one.

    The brightest z-slice (highest mean intensity within the crop) is the one
    in focus; every z-slice when the stack has no more than `planes`.
    """
    def centre(n: int, width: int, middle: int | None = None) -> slice:
        middle = n // 2 if middle is None else middle
        start = min(max(middle - width // 2, 0), max(n - width, 0))
        return slice(start, min(start + width, n))

    y, x = centre(image.shape[1], size), centre(image.shape[2], size)
    if image.shape[0] <= planes:
        return (slice(None), y, x)
    brightest = int(np.argmax(image[:, y, x].mean(axis=(1, 2))))
    return (centre(image.shape[0], planes, brightest), y, x)


class Playground:
    """Sliders over one crop of an image; made by :func:`interactive_playground`.

    Attributes
    ----------
    params : SegmentationParams
        The parameters the sliders show now (save them with ``.save(path)``).
    intermediates : Intermediates
        The workflow's run on the crop with `params`.
    crop : tuple of 3 slices
        The part of the image the sliders work on.
    widget : ipywidgets.VBox
        The sliders, the status line and the figure; a notebook displays the
        Playground as this widget.
    seconds : float
        Time of the last redraw (workflow and figure).
    """

    def __init__(self, image, params, *, spacing, crop, z, panel_size, widgets):
        self.image = image
        self.crop = crop
        self.spacing = spacing
        self.params = params
        self.intermediates = None
        self._filter_key = None
        self.seconds = float("nan")
        self._panel_size = panel_size
        self._widgets = widgets
        self._crop_image = np.asarray(image[crop])
        self.sliders = {}
        for name, (label, low, high, step) in _SLIDERS.items():
            value = self._value(name)
            if step is None:
                exponent = float(np.log10(value))
                self.sliders[name] = widgets.FloatLogSlider(
                    value=value, base=10, min=min(low, exponent), max=max(high, exponent),
                    step=0.05, description=label, readout_format=".3g")
            else:
                self.sliders[name] = widgets.FloatSlider(
                    value=value, min=min(low, value), max=max(high, value), step=step,
                    description=label, readout_format=".3f" if step < 0.01 else ".2f")
        n_z = self._crop_image.shape[0]
        self.z_slider = widgets.IntSlider(value=-1 if z is None else int(z), min=-1, max=n_z - 1,
                                          description="z (-1: proj.)")
        style = {"description_width": "130px"}
        for slider in [*self.sliders.values(), self.z_slider]:
            slider.continuous_update = False
            slider.style = style
            slider.layout = widgets.Layout(width="360px")
        self.status = widgets.HTML()
        self.output = widgets.Output()
        for slider in self.sliders.values():
            slider.observe(self._on_params, names="value")
        self.z_slider.observe(self._on_view, names="value")
        controls = list(self.sliders.values()) + [self.z_slider]
        self.widget = widgets.VBox([
            widgets.HBox([widgets.VBox(controls[:5]), widgets.VBox(controls[5:])]),
            self.status, self.output,
        ])
        self.redraw()

    def _value(self, name: str) -> float:
        if name == "spot_sigma_axial":
            return self.params.spot_sigma_um[0]
        if name == "spot_sigma_lateral":
            return self.params.spot_sigma_um[1]
        return float(getattr(self.params, name))

    def _slider_params(self):
        values = {name: float(s.value) for name, s in self.sliders.items()}
        sigma = (values.pop("spot_sigma_axial"), values.pop("spot_sigma_lateral"))
        return dataclasses.replace(self.params, spot_sigma_um=sigma, **values)

    def set(self, **values) -> None:
        """Move sliders by parameter name (``spot_sigma_axial``, ``threshold``, ...)."""
        for name, value in values.items():
            if name not in self.sliders:
                msg = f"no slider {name!r}; sliders: {list(self.sliders)}."
                raise ValueError(msg)
            self.sliders[name].value = value

    def _on_params(self, _change=None) -> None:
        try:
            self.params = self._slider_params()
        except ValueError as error:  # e.g. a value the parameters refuse
            self.status.value = f"<b style='color:#b00'>{error}</b>"
            return
        self.redraw()

    def _on_view(self, _change=None) -> None:
        self.redraw(rerun=False)

    @property
    def title(self) -> str:
        """e.g. ``"412 objects, threshold 4.7 noise SDs (automatic)"``.

        Objects the maximum volume removed are counted after the threshold:
        ``"..., 2 removed as over max_volume_um3 = 2 µm³"``; and the single
        molecules estimated under it, from :data:`.quality.FAINT_WARN_FRACTION`
        on: ``"..., ~12% of single molecules under it"``.
        """
        _, count = _objects(self.intermediates.result)
        how = "automatic" if self.params.threshold == 0 else "set by hand"
        title = f"{count} objects, threshold {self.intermediates.threshold:.1f} noise SDs ({how})"
        if self.intermediates.removed:
            title += (f", {self.intermediates.removed} removed as over max_volume_um3 = "
                      f"{self.params.max_volume_um3:g} µm³")
        if self.intermediates.faint_text():
            title += f", ~{self.intermediates.faint:.0%} of single molecules under it"
        return title

    def redraw(self, *, rerun: bool = True) -> None:
        """Run the workflow on the crop (unless `rerun` is False) and draw the outlines."""
        import matplotlib.pyplot as plt
        from IPython.display import display

        start = time.perf_counter()
        if rerun or self.intermediates is None:
            # The filters are the costly part: reused when no parameter of theirs moved.
            key = tuple(getattr(self.params, name) for name in FILTER_PARAMETERS)
            previous = self.intermediates if key == self._filter_key else None
            with warnings.catch_warnings():  # the title counts them (a slider's callback
                # would send the warning to the Jupyter log, not to the notebook)
                warnings.simplefilter("ignore", LargeObjectsRemovedWarning)
                warnings.simplefilter("ignore", FaintSpotsWarning)
                self.intermediates = segment_intermediates(self._crop_image, self.params,
                                                           spacing=self.spacing, previous=previous)
            self._filter_key = key
        labels, _ = _objects(self.intermediates.result)
        z = self.z_slider.value
        if z < 0:
            raw, seg, view = self._crop_image.max(axis=0), labels.max(axis=0), "max projection"
        else:
            raw, seg, view = self._crop_image[z], labels[z], f"z = {z}"
        fig, ax = plt.subplots(figsize=(self._panel_size, self._panel_size),
                               constrained_layout=True)
        _outline_panel(ax, raw, seg, _extent(self._crop_image.shape, self.spacing))
        title = self.title
        ax.set_title(f"{title}\n{view}", fontsize=10)
        ax.set_xlabel("x (µm, in the crop)")
        ax.set_ylabel("y (µm)")
        with self.output:
            self.output.clear_output(wait=True)
            display(fig)
        plt.close(fig)
        self.seconds = time.perf_counter() - start
        self.status.value = f"<b>{title}</b> &nbsp; (crop {_crop_text(self.crop)}, {self.seconds:.2f} s)"

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)


def _crop_text(crop) -> str:
    parts = []
    for axis, s in zip("zyx", crop, strict=True):
        parts.append(f"{axis} all" if s == slice(None) else f"{axis} {s.start}:{s.stop}")
    return ", ".join(parts)


def interactive_playground(image: np.ndarray, params, *, spacing=DEFAULT_SPACING, crop=None,
                           crop_size: int = 256, crop_planes: int = 16, z: int | None = None,
                           panel_size: float = 6.0) -> Playground:
    """One slider per numeric parameter; the outlines redraw at every change.

    The sliders: spot sigma (axial and lateral, µm), background ratio,
    threshold (noise SDs; 0: automatic from the false-positive rate), false
    positives per 1000 µm³, floor, mask fraction, saddle ratio, minimum and
    maximum volume (µm³; the title counts the objects the maximum removed).
    At every change (when a slider is released) the workflow runs again and
    the figure shows the raw maximum projection (or z-slice,
    with the z slider) with the objects' outlines, titled with the number of
    objects and the threshold used, e.g. "412 objects, threshold 4.7 noise
    SDs (automatic)".

    To redraw fast the sliders work on a **crop**: by default the central
    ``crop_size`` x ``crop_size`` pixels in x and y and the ``crop_planes``
    z-slices around the brightest one (the one in focus): under 1 s per
    change on a 16 x 256 x 256 crop (``benchmarks/bench_playground.py``
    measures it on a 30 x 512 x 512 stack). Objects are counted in the
    crop; the noise is measured locally, so the crop finds the same objects
    as the whole image away from the crop's edges.

    Parameters
    ----------
    image : (Z, Y, X) ndarray
        Raw stack.
    params : SegmentationParams
        Starting values; the workflow follows its class.
    spacing : sequence of 3 floats
        Microns per voxel (z, y, x).
    crop : tuple of slices, optional
        ``(z, y, x)`` or ``(y, x)`` slices of the part to work on; None: the
        central crop; ``False``: the whole image (slow on large stacks).
    crop_size : int
        Side in pixels of the default central crop.
    crop_planes : int
        z-slices of the default crop.
    z : int, optional
        The z-slice shown at first; None: the maximum projection.
    panel_size : float
        Inches of the figure's side.

    Returns
    -------
    Playground
        Display it in a notebook (it shows as its widget); its ``.params`` are
        the parameters the sliders show now, ready to ``.save(path)``.

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
    if not isinstance(params, SegmentationParams):
        msg = f"params must be SegmentationParams; got {type(params).__name__}."
        raise TypeError(msg)
    image = np.asarray(image)
    if image.ndim != 3:
        msg = f"image must be a 3D (Z, Y, X) stack; got shape {image.shape}."
        raise ValueError(msg)
    if crop is None:
        crop = _central_crop(image, crop_size, crop_planes)
    elif crop is False:
        crop = (slice(None),) * 3
    else:
        crop = tuple(crop)
        if len(crop) == 2:
            crop = (slice(None), *crop)
        if len(crop) != 3 or not all(isinstance(s, slice) for s in crop):
            msg = f"crop must be 2 or 3 slices, e.g. (slice(0, 256), slice(0, 256)); got {crop!r}."
            raise ValueError(msg)
        crop = tuple(slice(*s.indices(n)[:2]) if s != slice(None) else s
                     for s, n in zip(crop, image.shape, strict=True))
    return Playground(image, params, spacing=spacing, crop=crop, z=z, panel_size=panel_size,
                      widgets=widgets)
