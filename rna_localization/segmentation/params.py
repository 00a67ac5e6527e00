"""Parameters of the segmentation workflows, in microns, saved as small TOML files.

Every length is in microns and every volume in cubic microns, so one set of
parameters carries across microscopes: the workflows convert them to voxels
with the image's ``spacing`` (z, y, x) at run time (:func:`microns_to_voxels`,
:func:`volume_to_voxels`).

One type, :class:`SegmentationParams`, holds the parameters of every workflow;
each workflow is a preset of it (:data:`PRESETS`): the values a field takes
when not given. A parameter file names its workflow (``workflow = "rna"``), so
the batch run knows what the playground tuned::

    workflow = "rna"
    spot_sigma_um = [0.3, 0.11]
    threshold = 0.0
    ...
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .refine import REFINE_SHELL, REFINE_SMOOTHING

__all__ = [
    "PRESETS",
    "WORKFLOWS",
    "SegmentationParams",
    "load_params",
    "microns_to_voxels",
    "volume_to_voxels",
]



def microns_to_voxels(length_um, spacing) -> np.ndarray:
    """Convert a length in microns to voxels along each axis.

    Parameters
    ----------
    length_um : float, (axial, lateral) or (z, y, x)
        A length (e.g. a Gaussian sigma) in microns: one for every axis, one
        along z and one in the plane, or one per axis.
    spacing : float or sequence of 3 floats
        Microns per voxel along (z, y, x).

    Returns
    -------
    (3,) ndarray of float64
        ``length_um / spacing``: the same physical length in voxels per axis.

    Examples
    --------
    >>> microns_to_voxels(0.13, (0.2, 0.065, 0.065))
    array([0.65, 2.  , 2.  ])
    >>> microns_to_voxels((0.3, 0.13), (0.2, 0.065, 0.065))
    array([1.5, 2. , 2. ])
    """
    from ..objects import normalize_spacing

    length = np.asarray(length_um, dtype=np.float64).ravel()
    if length.size == 2:
        length = length[[0, 1, 1]]
    return np.broadcast_to(length, (3,)) / normalize_spacing(spacing)


def volume_to_voxels(volume_um3: float, spacing) -> float:
    """Convert a volume in cubic microns to a number of voxels.

    Parameters
    ----------
    volume_um3 : float
        Volume in µm³.
    spacing : float or sequence of 3 floats
        Microns per voxel along (z, y, x).

    Returns
    -------
    float
        ``volume_um3 / (spacing_z * spacing_y * spacing_x)``.

    Examples
    --------
    >>> round(volume_to_voxels(0.00845, (0.2, 0.065, 0.065)), 6)
    10.0
    """
    from ..objects import normalize_spacing

    return float(volume_um3) / float(np.prod(normalize_spacing(spacing)))


def _doc(text: str, default: Any) -> Any:
    """A dataclass field whose documentation is written into the TOML file."""
    return field(default=default, metadata={"doc": text})


#: Documentation of every parameter (written into saved TOML files).
_DOCS = {
    "spot_sigma_um": (
        "[axial, lateral] Gaussian sigma of the detection filter, microns: a little under the\n"
        "PSF's (~0.3, 0.1) for single molecules (separates neighbours better); larger for blobs."
    ),
    "background_ratio": (
        "The smooth background removed is the image blurred by this many times the spot\n"
        "sigma (axis by axis): everything broader than a spot."
    ),
    "threshold": (
        "Spots must exceed this many noise SDs of the filtered image; 0: automatic, from\n"
        "false_positives_per_1000um3 (about 4.6-4.9 for single molecules)."
    ),
    "false_positives_per_1000um3": (
        "With threshold = 0: false spots per 1000 cubic microns of pure noise, calibrated on\n"
        "white noise on the image's own voxel grid (measured 0.5-0.9 of the rate asked for)."
    ),
    "noise_block_um": (
        "The noise is measured in blocks of about [axial, lateral] microns, and interpolated."
    ),
    "borrow_crowded_noise": (
        "Where spots crowd a noise block (fewer than 100 voxels clear of them), take the\n"
        "nearest clear block's noise (true: dense RNA) or measure it on all the block's voxels\n"
        "(false: broad structure such as out-of-focus cells then counts as noise; centrosomes)."
    ),
    "floor": (
        "No voxel below this many noise SDs joins an object."
    ),
    "mask_fraction": (
        "Each object keeps the voxels where the filtered image reaches this fraction of\n"
        "its peak (of its dimmest spot's, for spots merged into one object)."
    ),
    "mask_smoothing": (
        "Masks are cut from the background-removed image smoothed by this many spot sigmas:\n"
        "1 is the detection filter itself; less follows each object's own outline (centrosomes)."
    ),
    "refine_masks": (
        "Cut each mask again at mask_fraction of the object's own peak above the median light\n"
        f"of a shell {REFINE_SHELL[0]:g}-{REFINE_SHELL[1]:g} spot sigmas around it, in the raw"
        f" stack blurred by {REFINE_SMOOTHING:g} spot sigmas\n"
        "(true: blobs as wide as the background filter, whose own light it takes; centrosomes),\n"
        "or keep the cut in the background-removed image (false: single molecules, granules).\n"
        "Objects grown past max_volume_um3 are left out first."
    ),
    "split_saddle_ratio": (
        "Touching objects are merged unless the filtered intensity between them dips below\n"
        "this fraction of the dimmer one's peak (0: always merged, 1: never)."
    ),
    "granule_saddle_ratio": (
        "The same next to a granule (a spot at least 3 times as bright as the median spot):\n"
        "lower, so the lumpy image of a granule stays one object."
    ),
    "blend_fraction": (
        "Two molecules too close to make two maxima: once each spot's own image (its shape\n"
        "measured on the image) is subtracted, a bump of at least this fraction of the spot's\n"
        "peak beside it makes the spot two molecules, fitted and kept apart; any value above 0\n"
        "also looks for single molecules on a granule's flank (0: neither)."
    ),
    "defocus_ratio": (
        "A faint spot (under 0.6 of a typical spot and 2x the threshold) above or below a spot\n"
        "this many times as bright, within a cone of 2-7 axial spot sigmas, is that spot's\n"
        "out-of-focus light (a widefield granule's defocused disc or rings) and is left out;\n"
        "above 0, a strongly aberrated PSF is also measured on the image's spots: a molecule's\n"
        "maxima along z become one object, spots a brighter spot's far field explains are\n"
        "left out (0: none of these)."
    ),
    "min_volume_um3": (
        "Remove objects of at most this volume, cubic microns (0: none)."
    ),
    "max_volume_um3": (
        "Remove objects of more than this volume, cubic microns (0: none): for compact blobs,\n"
        "larger objects are out-of-focus light or autofluorescence that passed the threshold."
    ),
}


#: Each workflow's defaults: every field of :class:`SegmentationParams` (one set of steps,
#: :mod:`.detection`) with the value it takes when not given.
PRESETS: dict[str, dict[str, Any]] = {
    # Single molecules and granules: the defaults work on real widefield and confocal
    # smFISH without tuning, the threshold set in each image's own noise.
    "rna": {
        "spot_sigma_um": (0.22, 0.08),
        "background_ratio": 2.0,
        "threshold": 0.0,
        "false_positives_per_1000um3": 1.0,
        "noise_block_um": (1.0, 3.0),
        "borrow_crowded_noise": True,
        "floor": 2.0,
        "mask_fraction": 0.5,
        "mask_smoothing": 1.0,
        "refine_masks": False,
        "split_saddle_ratio": 0.95,
        "granule_saddle_ratio": 0.8,
        # A lone molecule leaves a few percent of its peak once its image is subtracted,
        # a hidden second molecule 30-70%.
        "blend_fraction": 0.25,
        # Out of focus, a widefield objective spreads a granule's light into a disc (rings
        # and lobes with spherical aberration) whose noise maxima pass the threshold:
        # detection.DEFOCUS_RATIO.
        "defocus_ratio": 8.0,
        "min_volume_um3": 0.0,
        "max_volume_um3": 0.0,
    },
}
# Compact blobs of ~0.3-1 um: a larger spot, half-maximum masks cut around each blob and
# a lower saddle ratio, so the two centrosomes of a pair stay apart even when their blurred
# images touch.
PRESETS["centrosomes"] = {
    **PRESETS["rna"],
    "spot_sigma_um": (0.35, 0.2),
    # Fixed, not from the false-positive rate: at the centrosomes' scale the background
    # itself (autofluorescence varying over a few microns) makes local maxima the
    # white-noise rate does not count; centrosomes score 50-100 noise SDs.
    "threshold": 10.0,
    "false_positives_per_1000um3": 0.1,
    # Measured on every voxel of a block crowded by a centrosome or by out-of-focus light:
    # taken from the nearest clear block, widefield out-of-focus cells scored up to 25
    # noise SDs (centrosomes 18-80) and were found as 4-150 um^3 objects.
    "borrow_crowded_noise": False,
    # Grown in a less smoothed image (0.7 spot sigmas: 0.89-1.01x the centrosomes' volume,
    # against 1.15-1.35x in the filtered image), then cut again at half of each
    # centrosome's own peak above the light around it (refine_masks): cut in the
    # background-removed image alone (which takes part of a large centrosome's own light),
    # the masks held 0.64-2.1x the half-maximum region of each centrosome's image on the
    # simulated demo (5-95%: 0.77-1.70x; smaller centrosomes larger).
    "mask_smoothing": 0.7,
    "refine_masks": True,
    "split_saddle_ratio": 0.5,
    # Centrosomes are not diffraction-limited spots of one shape.
    "blend_fraction": 0.0,
    "defocus_ratio": 0.0,
    "min_volume_um3": 0.01,
    # A ball of 1.56 um. On the simulated widefield demo (three seeds, 60 stacks) a bright
    # out-of-focus blob's residual passed the threshold in 4 stacks (10.3-10.5 noise SDs)
    # and grew into objects of 2.8-8.2 um^3, one of them a target for every RNA object
    # around it; the 2,149 centrosomes' masks there measured at most 1.05 um^3 (99% under
    # 0.28), and at most 0.26 um^3 on the confocal demo.
    "max_volume_um3": 2.0,
}

#: The workflows' names, in order.
WORKFLOWS = tuple(PRESETS)


def _check_workflow(workflow: Any, where: str = "") -> str:
    if workflow not in PRESETS:
        msg = (f"workflow{where} must be one of {', '.join(map(repr, WORKFLOWS))}; "
               f"got {workflow!r}.")
        raise ValueError(msg)
    return workflow


class _Params:
    """Validation, TOML saving and loading of :class:`SegmentationParams`."""

    workflow: str

    # ----------------------------------------------------------- validation
    def __post_init__(self) -> None:
        preset = PRESETS[_check_workflow(self.workflow)]
        for f in dataclasses.fields(self):
            if f.name == "workflow":
                continue
            value = getattr(self, f.name)
            value = preset[f.name] if value is None else value  # not given: the preset's
            object.__setattr__(self, f.name, _normalize_value(f.name, value, preset[f.name]))
        self._validate()

    def _positive(self, name: str, *, allow_zero: bool = False) -> None:
        value = getattr(self, name)
        ok = math.isfinite(value) and (value >= 0 if allow_zero else value > 0)
        if not ok:
            expected = "a number >= 0 (0 turns this step off)" if allow_zero else "a positive number"
            msg = f"{self.workflow} parameter {name} must be {expected}; got {value!r}."
            raise ValueError(msg)

    def _validate(self) -> None:
        axial, lateral = self.spot_sigma_um
        if not (math.isfinite(axial) and math.isfinite(lateral) and axial > 0 and lateral > 0):
            msg = (
                f"{self.workflow} parameter spot_sigma_um must be two positive microns "
                f"[axial, lateral], e.g. [0.3, 0.1]; got {list(self.spot_sigma_um)}."
            )
            raise ValueError(msg)
        if not (math.isfinite(self.background_ratio) and self.background_ratio > 1):
            msg = (
                f"{self.workflow} parameter background_ratio must be a number > 1 (times the "
                f"spot sigma; 2 is the default); got {self.background_ratio!r}."
            )
            raise ValueError(msg)
        self._positive("threshold", allow_zero=True)
        self._positive("false_positives_per_1000um3")
        if not all(math.isfinite(v) and v > 0 for v in self.noise_block_um):
            msg = (
                f"{self.workflow} parameter noise_block_um must be two positive microns "
                f"[axial, lateral]; got {list(self.noise_block_um)}."
            )
            raise ValueError(msg)
        self._positive("floor", allow_zero=True)
        self._positive("min_volume_um3", allow_zero=True)
        self._positive("max_volume_um3", allow_zero=True)
        if 0 < self.max_volume_um3 <= self.min_volume_um3:
            preset = PRESETS[self.workflow]["max_volume_um3"]
            whose = (f"; {preset!r} is the {self.workflow} preset's, which parameters that do "
                     f"not set max_volume_um3 take" if self.max_volume_um3 == preset else "")
            msg = (f"{self.workflow} parameter max_volume_um3 ({self.max_volume_um3!r}{whose}) "
                   f"must be above min_volume_um3 ({self.min_volume_um3!r}): set max_volume_um3 "
                   f"above it, or to 0 for no limit.")
            raise ValueError(msg)
        if not (math.isfinite(self.mask_smoothing) and 0 < self.mask_smoothing <= 1):
            msg = (f"{self.workflow} parameter mask_smoothing must be in (0, 1] (spot sigmas); "
                   f"got {self.mask_smoothing!r}.")
            raise ValueError(msg)
        for name in ("mask_fraction", "split_saddle_ratio", "granule_saddle_ratio",
                     "blend_fraction"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                msg = f"{self.workflow} parameter {name} must be between 0 and 1; got {value!r}."
                raise ValueError(msg)
        if not (self.defocus_ratio == 0 or 1 < self.defocus_ratio < math.inf):
            msg = (f"{self.workflow} parameter defocus_ratio must be 0 (off) or a number above 1 "
                   f"(times as bright); got {self.defocus_ratio!r}.")
            raise ValueError(msg)

    # ------------------------------------------------------------------ TOML
    def to_dict(self) -> dict[str, Any]:
        """The parameters as plain Python values, ``workflow`` first."""
        values: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, tuple):
                value = list(value)
            values[f.name] = value
        return values

    def to_toml(self) -> str:
        """The parameter file's text: one commented key per parameter."""
        lines = [
            f"# {type(self).__name__}: parameters of the {self.workflow!r} segmentation workflow.",
            "# Lengths in microns, volumes in cubic microns; see rna_localization.segmentation.",
            f"workflow = {_toml_value(self.workflow)}",
        ]
        for f in dataclasses.fields(self):
            if f.name == "workflow":
                continue
            lines.append("")
            lines.extend(f"# {line}" for line in f.metadata["doc"].splitlines())
            lines.append(f"{f.name} = {_toml_value(self.to_dict()[f.name])}")
        return "\n".join(lines) + "\n"

    def save(self, path: str | os.PathLike) -> Path:
        """Write the parameters to a TOML file (folders are created).

        Parameters
        ----------
        path : path-like
            Where to write, e.g. ``params_rna.toml``.

        Returns
        -------
        Path
            The file written.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_toml(), encoding="utf-8")
        return path

    @classmethod
    def from_dict(cls, values: dict[str, Any], *, workflow: str | None = None,
                  source: str = "") -> SegmentationParams:
        """Build from a mapping such as the one :meth:`to_dict` returns.

        Its ``workflow`` key picks the preset (or `workflow`, when it has
        none; both given must agree); keys not given take the preset's value.
        Unknown keys are an error that suggests the closest known name.
        """
        where = f" in {source}" if source else ""
        values = dict(values)
        named = values.pop("workflow", None)
        if named is not None and workflow is not None and named != workflow:
            msg = f"parameters{where} are for workflow {named!r}, not {workflow!r}."
            raise ValueError(msg)
        workflow = _check_workflow(named or workflow, where)
        known = [f.name for f in dataclasses.fields(cls) if f.name != "workflow"]
        for key in values:
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1)
                hint = f" Did you mean {close[0]!r}?" if close else f" Known: {', '.join(known)}."
                msg = f"unknown {workflow} parameter {key!r}{where}.{hint}"
                raise ValueError(msg)
        try:
            return cls(workflow=workflow, **values)
        except ValueError as error:  # a value out of range: say which file holds it
            if not source:
                raise
            msg = f"parameter file {source}: {error}"
            raise ValueError(msg) from None

    @classmethod
    def load(cls, path: str | os.PathLike) -> SegmentationParams:
        """Read parameters written by :meth:`save` (missing keys keep their preset's value).

        The same as :func:`load_params`.
        """
        return load_params(path)


def _normalize_value(name: str, value: Any, default: Any) -> Any:
    """Turn TOML lists into tuples and ints into floats, refusing wrong types."""
    if isinstance(default, tuple):
        if (
            not isinstance(value, list | tuple)
            or len(value) != len(default)
            or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
        ):
            msg = f"parameter {name} must be a list of {len(default)} numbers; got {value!r}."
            raise ValueError(msg)
        return tuple(float(v) for v in value)
    if isinstance(default, bool):
        if not isinstance(value, bool):
            msg = f"parameter {name} must be true or false; got {value!r}."
            raise ValueError(msg)
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, int | float):
            msg = f"parameter {name} must be a number; got {value!r}."
            raise ValueError(msg)
        return float(value)
    if isinstance(default, str) and not isinstance(value, str):
        msg = f"parameter {name} must be text; got {value!r}."
        raise ValueError(msg)
    return value


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(float(value)) if isinstance(value, float) else str(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    msg = f"cannot write {value!r} ({type(value).__name__}) to TOML."
    raise TypeError(msg)


def _read_toml(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        msg = f"parameter file {path} does not exist; save one from a playground notebook first."
        raise FileNotFoundError(msg)
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        msg = f"parameter file {path} is not valid TOML: {error}."
        raise ValueError(msg) from error


@dataclass(frozen=True)
class SegmentationParams(_Params):
    """Parameters of a segmentation workflow, in microns: a preset and what differs from it.

    Every workflow runs the same steps (:mod:`.detection`); ``workflow``
    names the preset (:data:`PRESETS`) whose value every field not given
    takes. The ``"rna"`` preset finds single molecules and granules, the
    ``"centrosomes"`` preset compact blobs kept apart in pairs.

    Attributes
    ----------
    workflow : {"rna", "centrosomes"}
        The preset.
    spot_sigma_um : (float, float)
        ``[axial, lateral]`` Gaussian sigma of a spot's image, µm.
    background_ratio : float
        Scale of the smooth background removed, in spot sigmas (> 1).
    threshold : float
        Noise SDs a spot must exceed; 0: automatic from
        `false_positives_per_1000um3`.
    false_positives_per_1000um3 : float
        Expected false spots per 1,000 µm³ of pure noise (automatic threshold).
    noise_block_um : (float, float)
        ``[axial, lateral]`` size of the blocks the noise is measured in, µm.
    borrow_crowded_noise : bool
        Where spots crowd a block, its noise is the nearest clear block's
        (true), or measured on all its voxels (false).
    floor : float
        Noise SDs below which no voxel joins an object.
    mask_fraction : float
        Fraction of its own peak an object's mask reaches down to.
    mask_smoothing : float
        In (0, 1]: the masks are cut from the background-removed image
        smoothed by this many spot sigmas; 1 is the detection filter itself.
    refine_masks : bool
        Cut each mask again at `mask_fraction` of the object's own peak
        above the light of a shell around it, in the raw stack blurred by
        :data:`.refine.REFINE_SMOOTHING` spot sigmas
        (:func:`.refine.refine_to_own_peak`), or not; the objects grown past
        `max_volume_um3` are left out first.
    split_saddle_ratio : float
        Touching objects merge unless the intensity dips below this fraction
        of the dimmer one's peak.
    granule_saddle_ratio : float
        The same next to a granule (a spot at least 3 times as bright as the
        image's median spot).
    blend_fraction : float
        A spot is split into two molecules when, its own image subtracted,
        a bump of this fraction of its peak is left beside it; above 0, single
        molecules on a granule's flank are also looked for; 0: neither.
    defocus_ratio : float
        A faint spot above or below a spot this many times as bright is its
        out-of-focus light, and left out (:func:`.detection.drop_defocus_spots`);
        above 0, a PSF far from a Gaussian is also measured on the image's spots
        (:func:`.detection.axial_lobe_pairs`, :func:`.detection.drop_explained_spots`,
        and a granule's axial lobes in :func:`.detection.find_flank_spots`, from
        :func:`.detection.axial_lobe_depths`); 0: neither.
    min_volume_um3 : float
        Objects of at most this volume (µm³) are removed; 0: keep all.
    max_volume_um3 : float
        Objects of more than this volume (µm³) are removed; 0: no limit.

    Examples
    --------
    >>> SegmentationParams("centrosomes").threshold
    10.0
    >>> SegmentationParams("rna", threshold=5).threshold
    5.0
    """

    workflow: str = "rna"
    spot_sigma_um: tuple[float, float] = _doc(_DOCS["spot_sigma_um"], None)
    background_ratio: float = _doc(_DOCS["background_ratio"], None)
    threshold: float = _doc(_DOCS["threshold"], None)
    false_positives_per_1000um3: float = _doc(_DOCS["false_positives_per_1000um3"], None)
    noise_block_um: tuple[float, float] = _doc(_DOCS["noise_block_um"], None)
    borrow_crowded_noise: bool = _doc(_DOCS["borrow_crowded_noise"], None)
    floor: float = _doc(_DOCS["floor"], None)
    mask_fraction: float = _doc(_DOCS["mask_fraction"], None)
    mask_smoothing: float = _doc(_DOCS["mask_smoothing"], None)
    refine_masks: bool = _doc(_DOCS["refine_masks"], None)
    split_saddle_ratio: float = _doc(_DOCS["split_saddle_ratio"], None)
    granule_saddle_ratio: float = _doc(_DOCS["granule_saddle_ratio"], None)
    blend_fraction: float = _doc(_DOCS["blend_fraction"], None)
    defocus_ratio: float = _doc(_DOCS["defocus_ratio"], None)
    min_volume_um3: float = _doc(_DOCS["min_volume_um3"], None)
    max_volume_um3: float = _doc(_DOCS["max_volume_um3"], None)


def load_params(path: str | os.PathLike) -> SegmentationParams:
    """Read a parameter file of any workflow, chosen by its ``workflow`` key.

    Parameters
    ----------
    path : path-like
        A TOML file written by :meth:`SegmentationParams.save` (or by an
        earlier version's ``RnaParams.save`` / ``CentrosomeParams.save``: the
        same keys).

    Returns
    -------
    SegmentationParams
    """
    values = _read_toml(path)
    workflow = values.get("workflow")
    if workflow not in PRESETS:
        names = " or ".join(f'"{name}"' for name in WORKFLOWS)
        msg = (f"parameter file {path} must name its workflow with a key workflow = {names}; "
               f"got {workflow!r}.")
        raise ValueError(msg)
    return SegmentationParams.from_dict(values, source=str(path))
