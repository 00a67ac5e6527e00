"""``pipeline.toml`` → one typed, validated :class:`Config`.

The keys and defaults are those of the product contract (PRODUCT.md, "Config
file"). Every key name is unique across sections, so notebooks can pass them
flat (:meth:`Config.from_flat`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "DEFAULT_SPACING",
    "RESERVED_TABLES",
    "Config",
    "PlotLabels",
    "ThresholdTable",
    "check_identifier",
    "config_toml",
    "describe_settings",
    "load_config",
    "toml_string",
]

#: ``stats``: bootstrap resamples of the images.
N_BOOTSTRAP = 2000
#: ``stats``: random relabellings of the images in a permutation test (all of them when fewer).
N_PERMUTATIONS = 9999
#: ``stats``: seed of the random generator: the same table gives the same intervals and p-values.
SEED = 0

#: Tables the package keeps besides one per structure; no structure may take these names.
RESERVED_TABLES = ("images", "label_images", "distance_measurements", "image_numbers",
                   "normalized_images", "normalization_references")

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

#: Names of settings without sections (notebooks) that differ from their TOML key.
FLAT_ALIASES = {"database_url": "url", "database_name": "name"}


def check_identifier(value: Any, what: str) -> str:
    """Return `value` if it is a plain SQL identifier, else raise ValueError.

    Plain means letters, digits and underscores, not starting with a digit,
    at most 63 characters (PostgreSQL's limit). Names are quoted in SQL all
    the same; this check keeps them usable from psql and from pandas.
    """
    if not isinstance(value, str) or not _IDENTIFIER.match(value) or len(value) > 63:
        msg = (
            f"{what} {value!r} is not a plain identifier: use letters, digits and "
            f"underscores only, starting with a letter (e.g. 'rna', 'cell_cycle')."
        )
        raise ValueError(msg)
    return value


@dataclass(frozen=True)
class ThresholdTable:
    """Distance threshold looked up per image in a metadata column.

    ``{ column = "cycle", nc13 = 4.0, nc14 = 3.0 }`` in TOML.
    """

    column: str
    values: dict[str, float]

    def for_image(self, metadata: dict[str, Any], image: str) -> float:
        """The threshold of one image, from its metadata row."""
        if self.column not in metadata:
            msg = (
                f"distribution.distance_threshold is keyed by column {self.column!r}, "
                f"which the images table does not have."
            )
            raise ValueError(msg)
        key = str(metadata[self.column])
        if key not in self.values:
            msg = (
                f"image {image!r} has {self.column} = {key!r}, which "
                f"distribution.distance_threshold does not list (it has "
                f"{', '.join(sorted(self.values))})."
            )
            raise ValueError(msg)
        return self.values[key]


@dataclass(frozen=True)
class DatabaseConfig:
    url: str = ""
    name: str = "demo"


@dataclass(frozen=True)
class DataConfig:
    data_dir: Path = Path()
    structures: tuple[str, ...] = ("rna", "centrosomes")
    raw_data_dir: str = "raw-data"
    segmentation_dir: str = "segmentations"
    segmentation_file_suffix: str = "_seg"
    metadata_csv: str = "raw-data-metadata.csv"
    image_name_column: str = "name"


@dataclass(frozen=True)
class ScaleConfig:
    xy: float = 0.065
    z: float = 0.2


#: The default voxel size along (z, y, x) in microns: ``[scale]``'s defaults, used
#: wherever no voxel size is given (the playgrounds, batch segmentation, the simulator).
DEFAULT_SPACING = (ScaleConfig.z, ScaleConfig.xy, ScaleConfig.xy)


@dataclass(frozen=True)
class DistancesConfig:
    structure_1: str = "rna"
    structure_2: str = "centrosomes"
    overwrite: bool = False
    workers: int = 0


#: normalization.method values.
NORMALIZATION_METHODS = ("aperture", "total")
#: normalization.reference values (method "aperture"): each image's own single molecules
#: (its group's where it has too few), or one reference per group.
NORMALIZATION_REFERENCES = ("image", "group")
#: distribution.distance values.
DISTANCE_KINDS = ("centroid", "voxel")


@dataclass(frozen=True)
class NormalizationConfig:
    structure: str = "rna"
    method: str = "aperture"
    lower_threshold: float = 10
    upper_threshold: float = 40
    granule_threshold: float = 4
    group_by: str = "rna_type"
    reference: str = "image"


@dataclass(frozen=True)
class DistributionConfig:
    distance_threshold: float | None | ThresholdTable = 5.0
    step_size: float = 0.05
    distance: str = "centroid"
    output_dir: str = "output"
    chance_region: str = ""

#: Allowed ``plot.dpi``: below, figures are unreadable; above, a two-column figure's
#: PNG passes a gigabyte of memory.
DPI_RANGE = (10, 1200)


@dataclass(frozen=True)
class PlotLabels:
    """Words in the figures for metadata columns and their values (``[plot.labels]``).

    In TOML, one key per column the figures use (``plot.hue``, ``col``,
    ``row``): text for the column's words, or a table of its values' words,
    with ``label`` for the column's own::

        [plot.labels]
        rna_type = { label = "probe", cen = "centrocortin", gapdh = "GAPDH" }
        replicate = "biological replicate"

    Attributes
    ----------
    columns : dict of str to str
        Words for column names (``plotting.plot_cumulative_distributions(labels=)``).
    values : dict of str to dict
        Words for values, by column (``value_labels=``).
    """

    columns: dict[str, str] = field(default_factory=dict)
    values: dict[str, dict[str, str]] = field(default_factory=dict)


#: The key of a ``[plot.labels]`` column table that holds the column's own words.
LABEL_KEY = "label"


@dataclass(frozen=True)
class PlotConfig:
    hue: str = ""
    col: str = ""
    row: str = ""
    dpi: int = 600
    labels: PlotLabels = field(default_factory=PlotLabels)


@dataclass(frozen=True)
class DaskConfig:
    scheduler: str = ""


_SECTIONS = {
    "database": DatabaseConfig,
    "data": DataConfig,
    "scale": ScaleConfig,
    "distances": DistancesConfig,
    "normalization": NormalizationConfig,
    "distribution": DistributionConfig,
    "plot": PlotConfig,
    "dask": DaskConfig,
}


def _owners() -> dict[str, str]:
    """Section of every key (key names are unique across sections)."""
    return {f.name: section for section, kind in _SECTIONS.items() for f in dataclasses.fields(kind)}


def _suggest(word: str, choices) -> str:
    import difflib

    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" Did you mean {close[0]!r}?" if close else ""


@dataclass(frozen=True)
class Config:
    """Every setting of the pipeline, validated.

    Build it with :func:`load_config` (a TOML file), :meth:`from_dict` (the
    same nesting as TOML) or :meth:`from_flat` (key names without sections,
    as in a notebook's parameter cell). Paths are absolute.
    """

    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    data: DataConfig = field(default_factory=DataConfig)
    scale: ScaleConfig = field(default_factory=ScaleConfig)
    distances: DistancesConfig = field(default_factory=DistancesConfig)
    normalization: NormalizationConfig = field(default_factory=NormalizationConfig)
    distribution: DistributionConfig = field(default_factory=DistributionConfig)
    plot: PlotConfig = field(default_factory=PlotConfig)
    dask: DaskConfig = field(default_factory=DaskConfig)
    source: Path | None = None

    # ----------------------------------------------------------------- builders
    @classmethod
    def from_dict(cls, settings: dict[str, Any], *, base_dir: str | os.PathLike = ".",
                  source: Path | None = None) -> Config:
        """Build from nested settings (``{"data": {"data_dir": ...}, ...}``).

        Relative ``data_dir`` resolves against `base_dir` (the config file's folder).
        """
        where = f" in {source}" if source else ""
        sections = {}
        for section, values in settings.items():
            if section not in _SECTIONS:
                msg = f"unknown config section [{section}]{where}.{_suggest(section, _SECTIONS)}"
                raise ValueError(msg)
            if not isinstance(values, dict):
                msg = f"[{section}]{where} must be a table of keys, got {values!r}."
                raise ValueError(msg)
            known = {f.name: f for f in dataclasses.fields(_SECTIONS[section])}
            for key in values:
                if key not in known:
                    msg = (
                        f"unknown key {key!r} in [{section}]{where}."
                        f"{_suggest(key, known)}"
                    )
                    raise ValueError(msg)
            sections[section] = _SECTIONS[section](
                **{k: _coerce(section, k, v, known[k].default, where) for k, v in values.items()}
            )
        if "data" not in sections or "data_dir" not in settings["data"]:
            msg = f"data.data_dir is required{where}: the folder holding your structures."
            raise ValueError(msg)
        data = sections["data"]
        data_dir = Path(base_dir, data.data_dir).expanduser().resolve()
        sections["data"] = dataclasses.replace(data, data_dir=data_dir)
        if "structure_2" not in settings.get("distances", {}):
            distances = sections.get("distances", DistancesConfig())
            sections["distances"] = dataclasses.replace(
                distances, structure_2=_default_structure_2(data.structures))
        config = cls(**sections, source=source)
        config.validate()
        return config

    @classmethod
    def from_flat(cls, *, base_dir: str | os.PathLike = ".", **settings: Any) -> Config:
        """Build from key names without sections, e.g. ``data_dir=..., xy=0.065``.

        ``database_url`` and ``database_name`` are accepted for ``url`` and ``name``.
        """
        owner = _owners()
        nested: dict[str, dict[str, Any]] = {}
        for key, value in settings.items():
            key = FLAT_ALIASES.get(key, key)
            if key not in owner:
                msg = f"unknown setting {key!r}.{_suggest(key, list(owner) + list(FLAT_ALIASES))}"
                raise ValueError(msg)
            nested.setdefault(owner[key], {})[key] = value
        return cls.from_dict(nested, base_dir=base_dir)

    # --------------------------------------------------------------- validation
    def validate(self) -> None:
        """Raise ValueError naming the first setting that cannot work."""
        for name in self.data.structures:
            check_identifier(name, "structure name")
            if name in RESERVED_TABLES:
                msg = f"structure name {name!r} is reserved for the package's own tables; rename the folder."
                raise ValueError(msg)
        if len(set(self.data.structures)) != len(self.data.structures):
            msg = f"data.structures lists a structure twice: {list(self.data.structures)}."
            raise ValueError(msg)
        for key, name in [
            ("distances.structure_1", self.distances.structure_1),
            ("distances.structure_2", self.distances.structure_2),
            ("normalization.structure", self.normalization.structure),
        ]:
            if key == "distances.structure_2" and name == "":
                continue  # no second structure: RNA alone
            check_identifier(name, key)
            if name not in self.data.structures:
                alone = (" For a data set of one structure alone, set distances.structure_2 = \"\"."
                         if key == "distances.structure_2" else "")
                msg = (f"{key} = {name!r} is not in data.structures "
                       f"{list(self.data.structures)}.{alone}")
                raise ValueError(msg)
        if self.distances.structure_1 == self.distances.structure_2:
            msg = "distances.structure_1 and structure_2 must differ."
            raise ValueError(msg)
        check_identifier(self.data.image_name_column, "data.image_name_column")
        check_identifier(self.normalization.group_by, "normalization.group_by")
        for key in ("hue", "col", "row"):
            if getattr(self.plot, key):
                check_identifier(getattr(self.plot, key), f"plot.{key}")
        used = [c for c in dict.fromkeys([self.plot_hue, self.plot.col, self.plot.row]) if c]
        for column in {**self.plot.labels.columns, **self.plot.labels.values}:
            if column not in used:
                msg = (f"unknown key {column!r} in [plot.labels]{self._where}: the figures name the "
                       f"columns {', '.join(repr(c) for c in used)} (plot.hue, plot.col, plot.row)."
                       f"{_suggest(column, used)} Give words for those, or set plot.hue/col/row "
                       f"to {column!r}.")
                raise ValueError(msg)
        if self.plot.row and self.plot.row == self.plot.col:
            msg = (f"plot.row and plot.col are both {self.plot.row!r}: one column cannot split "
                   f"the panels both ways; leave one of them \"\".")
            raise ValueError(msg)
        for key, value in [("scale.xy", self.scale.xy), ("scale.z", self.scale.z),
                           ("distribution.step_size", self.distribution.step_size)]:
            if not (math.isfinite(value) and value > 0):
                msg = f"{key} must be a positive number of microns; got {value}."
                raise ValueError(msg)
        region = self.distribution.chance_region
        if region and region not in self.data.structures:
            msg = (f"distribution.chance_region = {region!r} is not one of data.structures "
                   f"{list(self.data.structures)}: name the structure whose objects are where RNA "
                   f"can be (e.g. \"embryo\"), or \"\" for the whole image.")
            raise ValueError(msg)
        if self.distances.workers < 0:
            msg = f"distances.workers must be >= 0 (0: automatic, 1: serial); got {self.distances.workers}."
            raise ValueError(msg)
        n = self.normalization
        if self.distribution.distance not in DISTANCE_KINDS:
            msg = (
                f"distribution.distance must be one of {list(DISTANCE_KINDS)} (\"centroid\": from "
                f"each object's background-subtracted intensity centroid; \"voxel\": from its "
                f"nearest voxel, the old pipeline's); got {self.distribution.distance!r}."
            )
            raise ValueError(msg)
        if n.method not in NORMALIZATION_METHODS:
            msg = (
                f"normalization.method must be one of {list(NORMALIZATION_METHODS)} "
                f"(\"aperture\": background-subtracted matched apertures; \"total\": the old "
                f"pipeline's raw sums); got {n.method!r}."
            )
            raise ValueError(msg)
        if n.reference not in NORMALIZATION_REFERENCES:
            msg = (
                f"normalization.reference must be one of {list(NORMALIZATION_REFERENCES)} "
                f"(\"image\": each image's own single molecules; \"group\": one reference "
                f"per group_by value); got {n.reference!r}."
            )
            raise ValueError(msg)
        if not 0 <= n.lower_threshold <= n.upper_threshold:
            msg = (
                f"normalization thresholds must satisfy 0 <= lower_threshold <= "
                f"upper_threshold; got {n.lower_threshold} and {n.upper_threshold}."
            )
            raise ValueError(msg)
        if n.granule_threshold <= 0:
            msg = f"normalization.granule_threshold must be positive; got {n.granule_threshold}."
            raise ValueError(msg)
        low, high = DPI_RANGE
        if not low <= self.plot.dpi <= high:
            msg = (f"plot.dpi must be between {low} and {high} (journals ask for 300-600); "
                   f"got {self.plot.dpi}.")
            raise ValueError(msg)
        threshold = self.distribution.distance_threshold
        thresholds = (
            threshold.values.items() if isinstance(threshold, ThresholdTable)
            else [("", threshold)] if threshold is not None else []
        )
        for key, value in thresholds:
            label = f"distribution.distance_threshold{'.' + key if key else ''}"
            if not (math.isfinite(value) and value >= self.distribution.step_size):
                msg = (
                    f"{label} = {value} must be at least distribution.step_size "
                    f"({self.distribution.step_size})."
                )
                raise ValueError(msg)
        if isinstance(threshold, ThresholdTable):
            check_identifier(threshold.column, "distribution.distance_threshold.column")

    # ------------------------------------------------------------ derived paths
    @property
    def _where(self) -> str:
        return f" in {self.source}" if self.source else ""

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size (z, y, x) in microns."""
        return (self.scale.z, self.scale.xy, self.scale.xy)

    @property
    def has_structure_2(self) -> bool:
        """Whether distances are measured: False for a data set of RNA alone.

        ``distances.structure_2 = ""``, or left out when ``data.structures``
        lists one structure: the objects are extracted and their molecules
        counted; distances, distributions and their figures are skipped.

        Examples
        --------
        >>> Config.from_flat(data_dir="/data", structures=["rna"]).has_structure_2
        False
        >>> Config.from_flat(data_dir="/data").has_structure_2
        True
        """
        return bool(self.distances.structure_2)

    @property
    def metadata_path(self) -> Path:
        return self.data.data_dir / self.data.metadata_csv

    @property
    def output_dir(self) -> Path:
        return self.data.data_dir / self.distribution.output_dir

    @property
    def plot_hue(self) -> str:
        return self.plot.hue or self.normalization.group_by

    def structure_dirs(self, structure: str) -> tuple[Path, Path]:
        """(raw-data folder, segmentations folder) of one structure."""
        root = self.data.data_dir / structure
        return root / self.data.raw_data_dir, root / self.data.segmentation_dir


def _default_structure_2(structures: Sequence[str]) -> str:
    """``distances.structure_2`` when not given: none ("") for a data set of one structure
    (RNA alone: nothing to measure distances to), else the default."""
    return "" if len(structures) == 1 else DistancesConfig.structure_2


def _coerce(section: str, key: str, value: Any, default: Any, where: str) -> Any:
    """Check one value's type against its default and convert it."""
    label = f"{section}.{key}{where}"
    if key == "distance_threshold":
        if value is None or (isinstance(value, str) and value.lower() == "none"):
            return None
        if isinstance(value, dict):
            table = dict(value)
            column = table.pop("column", None)
            if not isinstance(column, str):
                msg = f"{label} as a table needs column = \"<metadata column>\"; got {value!r}."
                raise ValueError(msg)
            values = {str(k): _number(v, f"{label}.{k}") for k, v in table.items()}
            if not values:
                msg = f"{label} as a table lists no values for column {column!r}."
                raise ValueError(msg)
            return ThresholdTable(column=column, values=values)
        return _number(value, label)
    if key == "labels":
        return _plot_labels(value, f"{section}.{key}", where)
    if key == "structures":
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            msg = f"{label} must be a list of folder names; got {value!r}."
            raise ValueError(msg)
        return tuple(value)
    if key == "data_dir":
        if not isinstance(value, str | os.PathLike) or str(value) == "":
            msg = f"{label} must be a folder path; got {value!r}."
            raise ValueError(msg)
        return Path(value)
    if isinstance(default, bool):
        if not isinstance(value, bool):
            msg = f"{label} must be true or false; got {value!r}."
            raise ValueError(msg)
        return value
    if isinstance(default, int) and key in ("workers", "dpi"):
        if isinstance(value, bool) or not isinstance(value, int):
            msg = f"{label} must be a whole number; got {value!r}."
            raise ValueError(msg)
        return value
    if isinstance(default, int | float):
        return _number(value, label)
    if isinstance(default, str):
        if not isinstance(value, str):
            msg = f"{label} must be text; got {value!r}."
            raise ValueError(msg)
        return value
    return value


def _plot_labels(value: Any, label: str, where: str = "") -> PlotLabels:
    """``[plot.labels]`` as read from TOML (or a notebook's dict), checked."""
    if isinstance(value, PlotLabels):
        return value
    example = ('e.g. [plot.labels] with rna_type = { label = "probe", cen = "centrocortin" } '
               'or replicate = "biological replicate"')
    if not isinstance(value, dict):
        msg = f"{label}{where} must be a table of metadata columns ({example}); got {value!r}."
        raise ValueError(msg)
    columns, values = {}, {}
    for column, words in value.items():
        check_identifier(column, f"{label} key{where}")
        if isinstance(words, str):
            columns[column] = words
            continue
        if not isinstance(words, dict) or not words:
            msg = (f"{label}.{column}{where} must be text (the column's words) or a table of its "
                   f"values' words ({example}); got {words!r}.")
            raise ValueError(msg)
        for key, text in words.items():
            if not isinstance(text, str) or not text.strip():
                msg = f"{label}.{column}.{key}{where} must be non-empty text; got {text!r}."
                raise ValueError(msg)
        table = dict(words)
        if LABEL_KEY in table:
            columns[column] = table.pop(LABEL_KEY)
        if table:
            values[column] = table
    for column, words in columns.items():
        if not words.strip():
            msg = f"{label}.{column}{where} must be non-empty text; got {words!r}."
            raise ValueError(msg)
    return PlotLabels(columns=columns, values=values)


def _number(value: Any, label: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        msg = f"{label} must be a number; got {value!r}."
        raise ValueError(msg)
    return float(value) if isinstance(value, float) else value


def _shown(value: Any) -> str:
    """A setting as it would be written in a notebook's parameter cell."""
    if isinstance(value, ThresholdTable):
        value = {"column": value.column, **value.values}
    if value is None:
        return '"none"'
    if isinstance(value, str | Path):
        return f'"{value}"'
    if isinstance(value, tuple):
        value = list(value)
    return repr(value)


def describe_settings(config: Config, cell: dict[str, Any] | None = None, *,
                      base_dir: str | os.PathLike = ".") -> str:
    """Say in words where the settings of `config` come from, for a notebook.

    A notebook's parameter cell holds every setting, and ``config_path``: when
    that is set, the settings are read from the file and the cell's values
    are not used. This says so, and lists the cell's values that the file
    overrides, so that an edited cell ignored without notice cannot go
    unseen.

    Parameters
    ----------
    config : Config
        The settings in use (:func:`load_config`, or :meth:`Config.from_flat` of `cell`).
    cell : dict, optional
        The parameter cell's values, by key name without section
        (``database_url``, ``data_dir``, ``xy``, ...).
    base_dir : path-like
        Folder the cell's relative paths are taken from (the notebook's).

    Returns
    -------
    str
        One line, or a first line and one line per overridden value. The
        database URL is never shown (it may hold a password).

    Examples
    --------
    >>> config = Config.from_flat(data_dir="/data", xy=0.1)
    >>> describe_settings(config, {"data_dir": "/data", "xy": 0.1})
    'Settings: from the parameter cell (config_path is None).'
    """
    if config.source is None:
        return "Settings: from the parameter cell (config_path is None)."
    head = (f"Settings: every value comes from {config.source} (config_path is set); "
            f"the values in the parameter cell are not used.")
    owner = _owners()
    lines = []
    for flat, cell_value in (cell or {}).items():
        key = FLAT_ALIASES.get(flat, flat)
        if key not in owner:
            continue
        section = owner[key]
        in_use = getattr(getattr(config, section), key)
        default = next(f.default for f in dataclasses.fields(_SECTIONS[section]) if f.name == key)
        try:
            as_read = _coerce(section, key, cell_value, default, "")
        except ValueError:
            as_read = cell_value
        if key == "data_dir" and isinstance(as_read, Path):
            as_read = Path(base_dir, as_read).expanduser().resolve()
        if as_read == in_use:
            continue
        if key == "url":
            lines.append(f"  {flat}: the file's (printed below as the database address)")
        else:
            lines.append(f"  {flat} = {_shown(in_use)}   (the cell has {_shown(cell_value)})")
    if not lines:
        return head + " They agree with the file."
    return "\n".join([head, "The file's value, where the cell differs:", *lines])


def load_config(path: str | os.PathLike = "pipeline.toml") -> Config:
    """Read and validate a ``pipeline.toml``.

    Parameters
    ----------
    path : path-like
        The config file; relative paths inside it resolve against its folder.

    Returns
    -------
    Config
    """
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        msg = (
            f"config file {path} does not exist; pass --config FILE or create "
            f"pipeline.toml (see README, 'pipeline.toml'; `rna-localization init DATA_DIR` writes one)."
        )
        raise FileNotFoundError(msg)
    import tomllib  # here: the command line's --help builds on this module without reading TOML

    try:
        settings = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        msg = f"config file {path} is not valid TOML: {error}."
        raise ValueError(msg) from error
    return Config.from_dict(settings, base_dir=path.parent, source=path)


# -------------------------------------------------------------------- writing
#: Column at which the comment of a written key starts (when the key is shorter).
_COMMENT_COLUMN = 25
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def toml_string(value: str) -> str:
    """`value` as a TOML basic string, quotes, backslashes and control characters escaped.

    Examples
    --------
    >>> print(toml_string('say "hi"'))
    "say \\"hi\\""
    """
    return json.dumps(str(value), ensure_ascii=False)


def _toml_key(key: Any) -> str:
    key = str(key)
    return key if _BARE_KEY.match(key) else toml_string(key)


def _toml_value(value: Any, label: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        if not math.isfinite(value):
            msg = f"{label} must be a finite number to be written to TOML; got {value!r}."
            raise ValueError(msg)
        return repr(float(value))
    if value is None:
        return toml_string("none")
    if isinstance(value, str | os.PathLike):
        return toml_string(os.fspath(value))
    if isinstance(value, ThresholdTable):
        value = {"column": value.column, **value.values}
    if isinstance(value, PlotLabels):  # back to [plot.labels]'s form
        table: dict[str, Any] = {}
        for column in dict.fromkeys([*value.columns, *value.values]):
            words = value.values.get(column, {})
            if column in value.columns:
                words = {LABEL_KEY: value.columns[column], **words} if words else value.columns[column]
            table[column] = words
        value = table
    if isinstance(value, Mapping):
        items = ", ".join(f"{_toml_key(k)} = {_toml_value(v, f'{label}.{k}')}"
                          for k, v in value.items())
        return f"{{ {items} }}" if items else "{}"
    if isinstance(value, Sequence):
        return "[" + ", ".join(_toml_value(v, label) for v in value) + "]"
    msg = f"{label} cannot be written to TOML: {value!r} ({type(value).__name__})."
    raise TypeError(msg)


def _commented(line: str, comment: str | None) -> str:
    if not comment:
        return line
    return f"{line:<{_COMMENT_COLUMN - 1}} # {comment}" if len(line) < _COMMENT_COLUMN - 1 \
        else f"{line}   # {comment}"


def config_toml(settings: Mapping[str, Mapping[str, Any]], *, header: Sequence[str] = (),
                comments: Mapping[str, str] | None = None,
                notes: Mapping[str, Sequence[str]] | None = None) -> str:
    """The text of a ``pipeline.toml``: every section and key, with `settings` over the defaults.

    The one writer of config files (``rna-localization init``, the simulator,
    the demo): a key not in `settings` is written with its default, the one
    defined by the config's own classes, so no default is written out twice.
    Sections and keys come in the order of the README; ``[plot.labels]`` only
    when given.

    Parameters
    ----------
    settings : mapping of section to mapping of key to value
        The values that differ from the defaults, nested as in TOML
        (``{"data": {"data_dir": "."}}``). Numbers, text, paths, lists,
        ``None`` (written ``"none"``) and tables (e.g. a distance threshold
        per cycle: ``{"column": "cycle", "nc13": 4.0}``).
    header : sequence of str
        Comment lines at the top, without their ``#``.
    comments : mapping of str to str, optional
        A comment at the end of a key's line, by ``"section.key"``, or of a
        section's ``[header]`` line, by ``"section"``.
    notes : mapping of str to sequence of str, optional
        Comment lines above a key, by ``"section.key"``.

    Returns
    -------
    str
        TOML that :func:`load_config` reads back to the same settings.

    Raises
    ------
    ValueError
        For a section or key the config does not have (with a suggestion).

    Examples
    --------
    >>> text = config_toml({"data": {"data_dir": "."}, "scale": {"xy": 0.11}},
    ...                    comments={"scale.xy": "microns per pixel"})
    >>> print(text[text.index("[scale]"):text.index("[distances]")].strip())
    [scale]
    xy = 0.11                # microns per pixel
    z = 0.2
    >>> import tomllib
    >>> settings = tomllib.loads(text)
    >>> settings["normalization"]["lower_threshold"] == NormalizationConfig.lower_threshold
    True
    """
    comments, notes = dict(comments or {}), dict(notes or {})
    for section, values in settings.items():
        if section not in _SECTIONS:
            msg = f"unknown config section [{section}].{_suggest(section, _SECTIONS)}"
            raise ValueError(msg)
        known = [f.name for f in dataclasses.fields(_SECTIONS[section])]
        for key in values:
            if key not in known:
                msg = f"unknown key {key!r} in [{section}].{_suggest(key, known)}"
                raise ValueError(msg)
    lines = [f"# {line}".rstrip() for line in header]
    for section, kind in _SECTIONS.items():
        given = settings.get(section, {})
        if lines:
            lines.append("")
        lines.append(_commented(f"[{section}]", comments.get(section)))
        for item in dataclasses.fields(kind):
            key = item.name
            if key in given:
                value = given[key]
            elif (section, key) == ("distances", "structure_2"):
                value = _default_structure_2(
                    _coerce("data", "structures", settings.get("data", {}).get(
                        "structures", DataConfig.structures), None, ""))
            elif item.default is not dataclasses.MISSING:
                value = item.default
            else:
                value = item.default_factory()
            if isinstance(value, PlotLabels) and not (value.columns or value.values):
                continue
            if isinstance(value, Mapping) and not value:
                continue
            lines += [f"# {line}".rstrip() for line in notes.get(f"{section}.{key}", ())]
            lines.append(_commented(f"{key} = {_toml_value(value, f'{section}.{key}')}",
                                    comments.get(f"{section}.{key}")))
    return "\n".join(lines) + "\n"
