"""The metadata CSV, and the distributions CSV built from it: read as the user wrote them.

One rule for every CSV the pipeline reads back: a cell is text unless its whole
column is clearly numeric (or true/false), surrounding whitespace is dropped,
and only an empty cell is missing. pandas' default reading would turn ``NA``,
``None``, ``null``, ``N/A`` or ``nan`` into missing values — a control group
named ``NA`` would vanish from normalization and plots — and ``001`` into 1,
so that the image name no longer matches its file.
"""

from __future__ import annotations

import csv
import difflib
import io
import os
from pathlib import Path

import pandas as pd

from .config import check_identifier
from .distributions import DISTRIBUTION_COLUMNS

__all__ = ["metadata_problems", "read_distributions_csv", "read_metadata_csv"]

# Numbers as a person writes them. A leading zero ("007", "-01") makes a code, not a
# number; "nan" and "inf" are words.
_INTEGER = r"[+-]?(?:0|[1-9][0-9]*)"
_FLOAT = r"[+-]?(?:(?:0|[1-9][0-9]*)(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
_BOOLEANS = {"true": True, "false": False}

#: Columns a metadata CSV may have: PostgreSQL's 1,600 per table, less the images table's id.
MAX_METADATA_COLUMNS = 1599


def _decode(path: Path, what: str) -> str:
    if not path.is_file():
        msg = f"{what} {path} does not exist; check data.metadata_csv."
        raise FileNotFoundError(msg)
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        msg = (
            f"{what} {path} is not UTF-8 (byte {raw[error.start]:#x} at position "
            f"{error.start}); save it as 'CSV UTF-8' (Excel) or re-encode it."
        )
        raise ValueError(msg) from error


def _delimiter(header: str) -> str:
    """``;`` for the CSVs spreadsheets write where the decimal mark is a comma, else ``,``."""
    return ";" if header.count(";") > header.count(",") else ","


def _read_text(path: Path, what: str) -> pd.DataFrame:
    """Every cell as stripped text; an empty (or blank) cell is missing, nothing else is.

    Comma- or semicolon-separated (whichever the header uses). Rows and
    columns that are entirely empty (a spreadsheet's trailing ``,,,``) are
    dropped; two columns of one name are refused, naming them.
    """
    text = _decode(path, what)
    lines = text.splitlines()
    if not any(line.strip() for line in lines):
        msg = f"{what} {path} is empty: write a header row (e.g. name,rna_type) and one row per image."
        raise ValueError(msg)
    delimiter = _delimiter(next(line for line in lines if line.strip()))
    header = next(csv.reader(io.StringIO(text), delimiter=delimiter))
    names = [cell.strip() for cell in header]
    for position, name in enumerate(names):
        if name and names.index(name) < position:
            msg = (f"{what} {path} has two columns of the same name, {name!r} (columns "
                   f"{names.index(name) + 1} and {position + 1}); rename or delete one of them.")
            raise ValueError(msg)
    try:
        table = pd.read_csv(io.StringIO(text), sep=delimiter, dtype=str, keep_default_na=False,
                            na_values=[], header=None, skiprows=1, names=range(len(header)),
                            skip_blank_lines=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        msg = f"{what} {path} cannot be parsed: {error}"
        raise ValueError(msg) from error
    for position in range(table.shape[1]):
        values = table.iloc[:, position].str.strip()
        table.isetitem(position, values.mask(values == ""))
    table.columns = names
    table = table.dropna(how="all").reset_index(drop=True)  # a spreadsheet's empty rows
    empty = [position for position, name in enumerate(names)
             if not name and table.iloc[:, position].isna().all()]
    return table.iloc[:, [i for i in range(table.shape[1]) if i not in empty]]


def _typed(values: pd.Series) -> pd.Series:
    """`values` (text) as integers, floats or booleans when every value present is one."""
    present = values.dropna()
    if present.empty:
        return values
    missing = len(present) < len(values)
    if present.str.fullmatch(_INTEGER).all():
        try:
            return values.astype("Int64" if missing else "int64")
        except OverflowError:
            pass  # beyond 64-bit integers: a float, as pandas would read it
    if present.str.fullmatch(_FLOAT).all():
        return values.astype("float64")
    lowered = values.str.lower()
    if lowered.dropna().isin(list(_BOOLEANS)).all():
        booleans = lowered.map(_BOOLEANS)
        return booleans.astype("boolean" if missing else "bool")
    return values


def _type_columns(table: pd.DataFrame, text_columns) -> pd.DataFrame:
    for position, column in enumerate(table.columns):
        if column not in text_columns:
            table.isetitem(position, _typed(table.iloc[:, position]))
    return table


def read_metadata_csv(path: str | os.PathLike, *, name_column: str = "name") -> pd.DataFrame:
    """Read the metadata CSV: one row per image, the values as written.

    Every value and column name is stripped of surrounding whitespace (``"cen "``
    and ``"cen"`` are one group). Only an empty cell is missing: ``NA``,
    ``None``, ``null``, ``N/A`` and ``nan`` are values like any other. The
    image names are text (``001`` stays ``001``); another column is typed
    integer, float or boolean when every value in it is clearly one (``12``,
    ``-0.5``, ``1e3``; ``true``/``false``), and text otherwise — a number
    with a leading zero (``007``) is a code, so text.

    Parameters
    ----------
    path : path-like
        A UTF-8 CSV whose first row holds the column names.
    name_column : str
        The column holding image names.

    Returns
    -------
    DataFrame
        One row per image, in the file's order.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        Naming the file: not UTF-8, no `name_column`, duplicate or empty
        image names, column names that are not plain identifiers, or a
        column named ``id`` or after a column of the distributions CSV
        (``distance``, ``percent_total_rna``, ``percent_granule_rna``),
        which it would overwrite.

    Examples
    --------
    >>> import tempfile
    >>> csv = Path(tempfile.mkdtemp()) / "raw-data-metadata.csv"
    >>> _ = csv.write_text("name,rna_type,replicate\\n001,NA,1\\n002, cen ,2\\n")
    >>> read_metadata_csv(csv).to_dict("list")
    {'name': ['001', '002'], 'rna_type': ['NA', 'cen'], 'replicate': [1, 2]}
    """
    path = Path(path)
    what = "metadata CSV"
    table = _read_text(path, what)
    if table.shape[1] > MAX_METADATA_COLUMNS:
        msg = (f"{what} {path} has {table.shape[1]} columns; the images table holds at most "
               f"{MAX_METADATA_COLUMNS} (PostgreSQL's limit of {MAX_METADATA_COLUMNS + 1} columns, "
               f"one being its id). Keep the name and the columns you group, plot or threshold "
               f"by, and move the others to another file.")
        raise ValueError(msg)
    outputs = {column.lower() for column in DISTRIBUTION_COLUMNS}
    for position, column in enumerate(table.columns, start=1):
        if not column or column.startswith("Unnamed: "):  # pandas' name for an empty header cell
            msg = f"{what} {path} has a column without a name (column {position}); name it or delete it."
            raise ValueError(msg)
        check_identifier(column, f"column name in {path}:")
        if column.lower() == "id":
            msg = f"{what} {path} has a column named {column!r}; rename it (the images table adds its own id)."
            raise ValueError(msg)
        if column.lower() in outputs:
            msg = (
                f"{what} {path} has a column named {column!r}, a column the distributions CSV "
                f"computes ({', '.join(DISTRIBUTION_COLUMNS)}); rename it (e.g. {column}_label)."
            )
            raise ValueError(msg)
    if len({column.lower() for column in table.columns}) != len(table.columns):
        msg = (f"{what} {path} has two columns of the same name (ignoring case and surrounding "
               f"spaces): {list(table.columns)}.")
        raise ValueError(msg)
    if name_column not in table.columns:
        msg = (
            f"{what} {path} has no {name_column!r} column (it has "
            f"{', '.join(map(repr, table.columns))}); set data.image_name_column."
        )
        raise ValueError(msg)
    names = table[name_column]
    if names.isna().any():
        msg = f"{what} {path} has rows with an empty {name_column!r}."
        raise ValueError(msg)
    duplicated = sorted(set(names[names.duplicated()]))
    if duplicated:
        msg = f"{what} {path} lists image(s) more than once: {', '.join(duplicated)}."
        raise ValueError(msg)
    return _type_columns(table, {name_column})


def _listed(values, limit: int = 8) -> str:
    values = [str(v) for v in values]
    return ", ".join(values[:limit]) + (f" and {len(values) - limit} more" if len(values) > limit else "")


def _closest(name: str, candidates) -> list[str]:
    """The candidates most like `name` (a typo's intended names): the best, and any as good."""
    scored = sorted(((difflib.SequenceMatcher(None, name, c).ratio(), c) for c in candidates),
                    key=lambda item: (-item[0], item[1]))
    if not scored or scored[0][0] < 0.6:
        return []
    return [c for ratio, c in scored[:3] if ratio >= scored[0][0] - 0.05]


def metadata_problems(table: pd.DataFrame, *, path, name_column: str, images,
                      threshold=None, raw_data_dir: str = "raw-data") -> list[str]:
    """What in a metadata CSV does not fit the images found, one sentence each.

    Checked before any work (``run``, ``doctor``, ``metadata``), so that a typo
    does not surface hours later, after extraction and distances.

    Parameters
    ----------
    table : DataFrame
        As :func:`read_metadata_csv` returns it.
    path : path-like
        The CSV, for the messages.
    name_column : str
    images : iterable of str
        The image names there are (raw stacks found, images extracted).
    threshold : ThresholdTable, optional
        ``distribution.distance_threshold`` when it is looked up in a column:
        every row must have a value it lists.
    raw_data_dir : str
        For the messages.

    Returns
    -------
    list of str
        Empty when all is well. Each names the CSV line (the header is line 1),
        the image and the value, and says what to do; a name that is no image
        comes with the closest image names (a typo).

    Examples
    --------
    >>> table = pd.DataFrame({"name": ["img_01", "img_O2"], "cycle": ["nc13", None]})
    >>> for problem in metadata_problems(table, path="meta.csv", name_column="name",
    ...                                  images=["img_01", "img_02"]):
    ...     print(problem)
    meta.csv line 3: image 'img_O2' is in no structure's raw-data/ folder; did you mean 'img_02'?
    """
    images = set(images)
    problems = []
    for line, name in zip(range(2, len(table) + 2), table[name_column], strict=True):
        if name not in images:
            close = _closest(str(name), images)
            hint = (f"did you mean {' or '.join(map(repr, close))}?" if close else
                    f"remove the row or add its stack (images: {_listed(sorted(images))}).")
            problems.append(f"{path} line {line}: image {name!r} is in no structure's "
                            f"{raw_data_dir}/ folder; {hint}")
    if threshold is not None:
        column = threshold.column
        if column not in table.columns:
            problems.append(f"{path} has no column {column!r}, which distribution.distance_threshold "
                            f"is looked up in (it has {', '.join(map(str, table.columns))}); add it "
                            f"or change distribution.distance_threshold.")
            return problems
        keys = list(threshold.values)
        for line, name, value in zip(range(2, len(table) + 2), table[name_column], table[column],
                                     strict=True):
            if pd.isna(value):
                problems.append(f"{path} line {line}: image {name!r} has an empty {column!r} cell, "
                                f"which distribution.distance_threshold is looked up by; write one "
                                f"of {', '.join(keys)}.")
            elif str(value) not in threshold.values:
                problems.append(f"{path} line {line}: image {name!r} has {column} = {value!r}, which "
                                f"distribution.distance_threshold does not list (it has "
                                f"{', '.join(keys)}); correct the cell or add {value} to it.")
    return problems


def read_distributions_csv(path: str | os.PathLike, *, name_column: str = "name") -> pd.DataFrame:
    """Read back a cumulative distributions CSV with the metadata values as they were.

    Parameters
    ----------
    path : path-like
        ``output_dir/data/cumulative_distributions.csv``.
    name_column : str
        The image name column (kept as text).

    Returns
    -------
    DataFrame
        ``distance``, ``percent_total_rna``, ``percent_granule_rna`` as floats;
        the metadata columns read as :func:`read_metadata_csv` reads them.
    """
    path = Path(path)
    if not path.is_file():
        msg = f"{path} does not exist: run `rna-localization distributions` first."
        raise FileNotFoundError(msg)
    table = _type_columns(_read_text(path, "distributions CSV"), {name_column})
    for column in DISTRIBUTION_COLUMNS:
        if column in table.columns:
            table[column] = table[column].astype("float64")
    return table
