"""Parameters of the segmentation workflows, in microns, saved as small TOML files.

Every length is in microns and every volume in cubic microns, so one set of
parameters carries across microscopes: the workflows convert them to voxels
with the image's ``spacing`` (z, y, x) at run time (:func:`microns_to_voxels`,
:func:`volume_to_voxels`).

A parameter file names its workflow (``workflow = "rna"``), so the batch run
knows what the playground tuned::

    workflow = "rna"
    normalization = [3.0, 1000.0]
    smoothing_sigma_um = 0.05
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
from typing import Any, ClassVar

import numpy as np

__all__ = [
    "WORKFLOWS",
    "CentrosomeParams",
    "RnaParams",
    "load_params",
    "microns_to_voxels",
    "volume_to_voxels",
]

_SMOOTHING = ("3d", "slice_by_slice")
_REFERENCES = ("background", "mean_std")


def microns_to_voxels(length_um: float, spacing) -> np.ndarray:
    """Convert a length in microns to voxels along each axis.

    Parameters
    ----------
    length_um : float
        A length (e.g. a Gaussian sigma) in microns.
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
    """
    from ..objects import normalize_spacing

    return float(length_um) / normalize_spacing(spacing)


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


#: Documentation of the fields both workflows share (shown in saved TOML files).
_DOCS = {
    "normalization": (
        "Auto-contrast [a, b]: centre - a*spread maps to 0 (lower values clipped) and\n"
        "centre + b*spread to 1; centre and spread: see normalization_reference."
    ),
    "normalization_reference": (
        '"background": centre and spread are the background level and noise (median, MAD),\n'
        'so a cutoff means the same signal-to-noise in every image; "mean_std": mean and\n'
        "standard deviation of the stack (aicssegmentation's auto-contrast)."
    ),
    "smoothing": (
        'Gaussian smoothing "3d" or "slice_by_slice".'
    ),
    "smoothing_sigma_um": (
        "Gaussian smoothing sigma, microns (0: none)."
    ),
    "hole_max_um2": (
        "Fill holes up to this area per z-slice, square microns (0: none)."
    ),
    "min_volume_um3": (
        "Remove objects of at most this volume, cubic microns (0: none)."
    ),
    "split_min_distance_um": (
        "Seeded watershed: seeds are intensity maxima within a box of this half-width,\n"
        "microns (0: no splitting)."
    ),
    "split_saddle_ratio": (
        "Touching parts are merged back unless the intensity between them dips below\n"
        "this fraction of the dimmer one's peak (0: always merged, 1: never)."
    ),
}


class _Params:
    """Validation, TOML saving and loading shared by the parameter classes."""

    workflow: ClassVar[str]

    # ----------------------------------------------------------- validation
    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = _normalize_value(f.name, getattr(self, f.name), f.default)
            object.__setattr__(self, f.name, value)
        self._validate()

    def _positive(self, name: str, *, allow_zero: bool = False) -> None:
        value = getattr(self, name)
        ok = math.isfinite(value) and (value >= 0 if allow_zero else value > 0)
        if not ok:
            expected = "a number >= 0 (0 turns this step off)" if allow_zero else "a positive number"
            msg = f"{self.workflow} parameter {name} must be {expected}; got {value!r}."
            raise ValueError(msg)

    def _validate(self) -> None:
        lower, upper = self.normalization
        if not (math.isfinite(lower) and math.isfinite(upper) and lower >= 0 and upper > 0):
            msg = (
                f"{self.workflow} parameter normalization must be two numbers of standard "
                f"deviations [below, above] the mean, >= 0 and > 0; got {list(self.normalization)}."
            )
            raise ValueError(msg)
        if self.normalization_reference not in _REFERENCES:
            msg = (
                f"{self.workflow} parameter normalization_reference must be one of "
                f"{list(_REFERENCES)}; got {self.normalization_reference!r}."
            )
            raise ValueError(msg)
        if self.smoothing not in _SMOOTHING:
            msg = (
                f"{self.workflow} parameter smoothing must be one of {list(_SMOOTHING)}; "
                f"got {self.smoothing!r}."
            )
            raise ValueError(msg)
        self._positive("smoothing_sigma_um", allow_zero=True)
        if not self.spot_filters:
            msg = (
                f"{self.workflow} parameter spot_filters must list at least one "
                f"[sigma_um, cutoff] pair, e.g. [[0.1, 0.05]]; got []."
            )
            raise ValueError(msg)
        for sigma, cutoff in self.spot_filters:
            if not (math.isfinite(sigma) and sigma > 0 and math.isfinite(cutoff) and cutoff >= 0):
                msg = (
                    f"{self.workflow} parameter spot_filters holds [{sigma}, {cutoff}]: each pair "
                    f"must be [sigma_um > 0, cutoff >= 0]."
                )
                raise ValueError(msg)
        self._positive("min_volume_um3", allow_zero=True)
        self._positive("hole_max_um2", allow_zero=True)
        self._positive("split_min_distance_um", allow_zero=True)
        if not 0 <= self.split_saddle_ratio <= 1:
            msg = (
                f"{self.workflow} parameter split_saddle_ratio must be between 0 and 1; "
                f"got {self.split_saddle_ratio!r}."
            )
            raise ValueError(msg)

    # ------------------------------------------------------------------ TOML
    def to_dict(self) -> dict[str, Any]:
        """The parameters as plain Python values, ``workflow`` first."""
        values: dict[str, Any] = {"workflow": self.workflow}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "spot_filters":
                value = [list(pair) for pair in value]
            elif isinstance(value, tuple):
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
    def from_dict(cls, values: dict[str, Any], *, source: str = "") -> _Params:
        """Build from a mapping such as the one :meth:`to_dict` returns.

        A ``workflow`` key, if present, must name this class's workflow.
        Unknown keys are an error that suggests the closest known name.
        """
        where = f" in {source}" if source else ""
        values = dict(values)
        workflow = values.pop("workflow", cls.workflow)
        if workflow != cls.workflow:
            msg = (
                f"parameters{where} are for workflow {workflow!r}, not {cls.workflow!r}; "
                f"load them with load_params() or {_CLASS_NAMES.get(workflow, 'the matching class')}."
            )
            raise ValueError(msg)
        known = [f.name for f in dataclasses.fields(cls)]
        for key in values:
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1)
                hint = f" Did you mean {close[0]!r}?" if close else f" Known: {', '.join(known)}."
                msg = f"unknown {cls.workflow} parameter {key!r}{where}.{hint}"
                raise ValueError(msg)
        return cls(**values)

    @classmethod
    def load(cls, path: str | os.PathLike) -> _Params:
        """Read parameters written by :meth:`save` (missing keys keep their defaults).

        Parameters
        ----------
        path : path-like
            A TOML parameter file.

        Returns
        -------
        RnaParams or CentrosomeParams
            An instance of the class it is called on.
        """
        return cls.from_dict(_read_toml(path), source=str(path))


def _normalize_value(name: str, value: Any, default: Any) -> Any:
    """Turn TOML lists into tuples and ints into floats, refusing wrong types."""
    if name == "spot_filters":
        try:
            pairs = tuple((float(s), float(c)) for s, c in value)
        except (TypeError, ValueError):
            msg = (
                f"parameter spot_filters must be a list of [sigma_um, cutoff] pairs, "
                f"e.g. [[0.1, 0.05], [0.2, 0.03]]; got {value!r}."
            )
            raise ValueError(msg) from None
        return pairs
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
class RnaParams(_Params):
    """Parameters of the RNA (smFISH) workflow; defaults for 100x spinning-disk stacks.

    Steps: auto-contrast normalization, Gaussian smoothing, multi-scale 3D
    spot filter (scale-normalized Laplacian of Gaussian) thresholded at each
    scale, 2D hole filling, size filter, then a seeded watershed that splits
    touching objects whose brightest points lie at least
    ``split_min_distance_um`` apart.

    Attributes
    ----------
    normalization : (float, float)
        ``[a, b]``: ``centre - a·spread`` maps to 0 and ``centre + b·spread``
        to 1 (aicssegmentation's auto-contrast).
    normalization_reference : {"background", "mean_std"}
        ``"background"``: centre and spread are the background level and
        noise (median and 1.4826·MAD), and bright voxels are not clipped, so a
        cutoff means the same signal-to-noise in every image whatever its
        number of granules. ``"mean_std"``: the stack's mean and standard
        deviation, clipped to [0, 1], exactly aicssegmentation's.
    smoothing : {"3d", "slice_by_slice"}
        Gaussian smoothing in 3D or in each z-slice.
    smoothing_sigma_um : float
        Gaussian sigma, microns; 0 turns smoothing off.
    spot_filters : tuple of (float, float)
        ``(sigma_um, cutoff)`` pairs: the spot filter at each sigma (microns,
        ~ spot radius / √3) is thresholded at its cutoff (normalized units)
        and the results are united. A small sigma finds single molecules, a
        larger one keeps granules whole.
    hole_max_um2 : float
        Holes up to this area (µm², per z-slice) are filled; 0: no filling.
    min_volume_um3 : float
        Objects of at most this volume (µm³) are removed; 0: keep all.
    split_min_distance_um : float
        Seeded watershed: seeds are the smoothed intensity's maxima within a
        box of this half-width (microns); 0: no splitting.
    split_saddle_ratio : float
        Touching watershed basins are merged back unless the intensity
        between them dips below this fraction of the dimmer one's peak.
    """

    workflow: ClassVar[str] = "rna"

    normalization: tuple[float, float] = _doc(_DOCS["normalization"], (3.0, 1000.0))
    normalization_reference: str = _doc(_DOCS["normalization_reference"], "background")
    smoothing: str = _doc(_DOCS["smoothing"], "3d")
    smoothing_sigma_um: float = _doc(_DOCS["smoothing_sigma_um"], 0.05)
    spot_filters: tuple[tuple[float, float], ...] = _doc(
        "3D spot filter (scale-normalized LoG): [sigma_um, cutoff] pairs, results united.\n"
        "sigma ~ spot radius / sqrt(3); a lower cutoff finds more, fatter spots.",
        ((0.1, 0.04),),
    )
    hole_max_um2: float = _doc(_DOCS["hole_max_um2"], 0.05)
    min_volume_um3: float = _doc(_DOCS["min_volume_um3"], 0.005)
    split_min_distance_um: float = _doc(_DOCS["split_min_distance_um"], 0.15)
    split_saddle_ratio: float = _doc(_DOCS["split_saddle_ratio"], 0.9)


@dataclass(frozen=True)
class CentrosomeParams(_Params):
    """Parameters of the centrosome workflow; defaults for 100x spinning-disk stacks.

    Steps: auto-contrast normalization, Gaussian smoothing, 3D spot filter
    tuned to compact blobs of ~0.3–1.5 µm, 2D hole filling, size filter, then
    a seeded watershed seeded at the smoothed image's maxima at least
    ``split_min_distance_um`` apart, so the two centrosomes of a pair stay
    apart even when their blurred images touch.

    Attributes
    ----------
    normalization, normalization_reference
        See :class:`RnaParams`.
    smoothing : {"3d", "slice_by_slice"}
        Gaussian smoothing in 3D or in each z-slice.
    smoothing_sigma_um : float
        Gaussian sigma, microns; 0 turns smoothing off.
    spot_filters : tuple of (float, float)
        ``(sigma_um, cutoff)`` pairs, see :class:`RnaParams`.
    hole_max_um2 : float
        Holes up to this area (µm², per z-slice) are filled; 0: no filling.
    min_volume_um3 : float
        Objects of at most this volume (µm³) are removed; 0: keep all.
    split_min_distance_um : float
        Seeds of the watershed are maxima within a box of this half-width
        (microns); 0: no splitting.
    split_saddle_ratio : float
        See :class:`RnaParams`.
    """

    workflow: ClassVar[str] = "centrosomes"

    normalization: tuple[float, float] = _doc(_DOCS["normalization"], (2.0, 40.0))
    normalization_reference: str = _doc(_DOCS["normalization_reference"], "background")
    smoothing: str = _doc(_DOCS["smoothing"], "3d")
    smoothing_sigma_um: float = _doc(_DOCS["smoothing_sigma_um"], 0.065)
    spot_filters: tuple[tuple[float, float], ...] = _doc(
        "3D spot filter (scale-normalized LoG): [sigma_um, cutoff] pairs, results united.\n"
        "sigma ~ blob radius / sqrt(3); a lower cutoff finds more, fatter blobs.",
        ((0.2, 0.04),),
    )
    hole_max_um2: float = _doc(_DOCS["hole_max_um2"], 0.2)
    min_volume_um3: float = _doc(_DOCS["min_volume_um3"], 0.01)
    split_min_distance_um: float = _doc(_DOCS["split_min_distance_um"], 0.3)
    split_saddle_ratio: float = _doc(_DOCS["split_saddle_ratio"], 0.5)


#: Parameter class of each workflow name.
WORKFLOWS: dict[str, type[_Params]] = {"rna": RnaParams, "centrosomes": CentrosomeParams}
_CLASS_NAMES = {name: kind.__name__ for name, kind in WORKFLOWS.items()}


def load_params(path: str | os.PathLike) -> RnaParams | CentrosomeParams:
    """Read a parameter file of either workflow, chosen by its ``workflow`` key.

    Parameters
    ----------
    path : path-like
        A TOML file written by ``RnaParams.save`` or ``CentrosomeParams.save``.

    Returns
    -------
    RnaParams or CentrosomeParams
    """
    values = _read_toml(path)
    workflow = values.get("workflow")
    if workflow not in WORKFLOWS:
        msg = (
            f"parameter file {path} must name its workflow with a key "
            f"workflow = \"rna\" or \"centrosomes\"; got {workflow!r}."
        )
        raise ValueError(msg)
    return WORKFLOWS[workflow].from_dict(values, source=str(path))
