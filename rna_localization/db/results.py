"""What the steps after extraction add to the schema, write and read back.

The distance columns of a structure_1 table and the ``distance_measurements``
bookkeeping (with each measured image's chance baseline), the ``images`` table of the metadata CSV, the
``normalized_intensity`` column with the normalization's state (each group's
reference, which images hold values), and the reads of the distributions and the
per-image figure. Every identifier goes through :class:`psycopg2.sql.Identifier`;
every value is a bound parameter or travels by COPY.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from psycopg2 import sql

from .._faults import fault_point
from .tables import copy_frame, copy_numbers

__all__ = [
    "NORMALIZED_COLUMN",
    "REFERENCE_COLUMNS",
    "add_distance_columns",
    "centroid_distance_column",
    "distance_column",
    "measured_images",
    "read_distribution_objects",
    "read_group_objects",
    "clear_normalized_intensities",
    "read_images_table",
    "read_normalization_objects",
    "read_normalization_state",
    "read_chance_baselines",
    "read_plot_objects",
    "read_raw_path",
    "replace_images_table",
    "target_id_column",
    "update_from_frame",
    "write_chance_baseline",
    "write_distances",
    "write_normalization_state",
    "write_normalized_intensities",
]

#: Column of a structure table holding each object's estimated molecules.
NORMALIZED_COLUMN = "normalized_intensity"

# The images table's column types, by the numpy dtype kind of the metadata column.
_SQL_TYPES = {"b": "boolean", "i": "bigint", "u": "bigint", "f": "double precision"}


def distance_column(structure_2: str) -> str:
    """Column of the distance from each object's centroid to the nearest structure_2 voxel.

    Examples
    --------
    >>> distance_column("centrosomes")
    'distance_to_centrosomes'
    """
    return f"distance_to_{structure_2}"


def centroid_distance_column(structure_2: str) -> str:
    """Column of the distance from each object's intensity (spot) centroid.

    Examples
    --------
    >>> centroid_distance_column("centrosomes")
    'centroid_distance_to_centrosomes'
    """
    return f"centroid_distance_to_{structure_2}"


def target_id_column(structure_2: str) -> str:
    """Column of the nearest structure_2 object's id.

    Examples
    --------
    >>> target_id_column("centrosomes")
    'centrosomes_id'
    """
    return f"{structure_2}_id"


def update_from_frame(cursor, table: str, frame: pd.DataFrame, *, keys: Sequence[str],
                      match: Mapping[str, object] | None = None) -> None:
    """Set the columns of `table` named like `frame`'s from its rows, matched on `keys`.

    The rows travel by COPY into a temporary table made like `table`'s columns
    (so with their types), then one ``UPDATE … FROM``. Rows of `table` with no
    row in `frame` keep their values.

    Parameters
    ----------
    cursor : psycopg2 cursor
        In the caller's transaction.
    table : str
        The table to update; `frame`'s columns are columns of it.
    frame : DataFrame
        The `keys` columns and the columns to set.
    keys : sequence of str
        Columns identifying a row (together with `match`).
    match : mapping, optional
        Column → value every updated row must also have (e.g. ``{"name": image}``).
    """
    match = dict(match or {})
    values = [c for c in frame.columns if c not in keys]
    staged = sql.Identifier("staged_update")
    target = sql.Identifier(table)
    # Made like the target's columns, whose types the answer names: numbers then travel in
    # binary (copy_numbers), anything else as CSV.
    cursor.execute(sql.SQL("CREATE TEMP TABLE {} ON COMMIT DROP AS SELECT {} FROM {} WITH NO DATA; "
                           "SELECT * FROM {} LIMIT 0")
                   .format(staged, sql.SQL(", ").join(map(sql.Identifier, frame.columns)), target,
                           staged))
    if not copy_numbers(cursor, staged, frame, [column.type_code for column in cursor.description]):
        copy_frame(cursor, staged, frame)
    conditions = [sql.SQL("o.{c} = s.{c}").format(c=sql.Identifier(c)) for c in keys]
    conditions += [sql.SQL("o.{} = %s").format(sql.Identifier(c)) for c in match]
    cursor.execute(  # the UPDATE and the DROP in one round trip
        sql.SQL("UPDATE {} AS o SET {} FROM {} AS s WHERE {}; DROP TABLE {}").format(
            target,
            sql.SQL(", ").join(sql.SQL("{c} = s.{c}").format(c=sql.Identifier(c)) for c in values),
            staged, sql.SQL(" AND ").join(conditions), staged),
        tuple(match.values()),
    )


# ------------------------------------------------------------------ distances
def add_distance_columns(cursor, structure_1: str, structure_2: str) -> None:
    """Add the distance, target id and centroid distance columns to `structure_1`'s table if missing."""
    cursor.execute(
        sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} double precision, "
                "ADD COLUMN IF NOT EXISTS {} integer, "
                "ADD COLUMN IF NOT EXISTS {} double precision").format(
            sql.Identifier(structure_1), sql.Identifier(distance_column(structure_2)),
            sql.Identifier(target_id_column(structure_2)),
            sql.Identifier(centroid_distance_column(structure_2)))
    )


def write_distances(cursor, structure_1: str, structure_2: str, name: str,
                    distances: pd.DataFrame, *, overwrite: bool = False,
                    baseline: tuple[str, np.ndarray, np.ndarray] | None = None) -> bool:
    """Write one image's distances and mark it measured, with its chance baseline.

    Call inside a transaction. Returns False (and writes nothing) when the
    image is already measured and `overwrite` is false. Whatever baseline the
    image had is replaced by `baseline` (None: none stored; the distributions
    step computes it).

    Parameters
    ----------
    distances : DataFrame
        ``object_id``, ``distance``, ``target_id`` and ``centroid_distance``
        (:func:`rna_localization.nearest_distances` and the centroid distances).
    baseline : (region, distances, expected), optional
        The region structure ("" for the whole volume), the distances in
        microns and the expected percent at each
        (:func:`rna_localization.baseline.expected_cumulative_distribution`).
    """
    # Serializes writers of one image's distances across processes and concurrent runs;
    # the check after it sees what the lock's previous holder committed (one round trip).
    cursor.execute(
        "SELECT pg_advisory_xact_lock(hashtext(%s), hashtext(%s)); SELECT EXISTS (SELECT 1 FROM "
        "distance_measurements WHERE structure_1 = %s AND structure_2 = %s AND name = %s)",
        (f"{structure_1}>{structure_2}", name, structure_1, structure_2, name),
    )
    if cursor.fetchone()[0] and not overwrite:
        return False
    frame = distances[["object_id", "distance", "target_id", "centroid_distance"]].rename(columns={
        "distance": distance_column(structure_2), "target_id": target_id_column(structure_2),
        "centroid_distance": centroid_distance_column(structure_2)})
    update_from_frame(cursor, structure_1, frame, keys=["object_id"], match={"name": name})
    region, grid, expected = _baseline_values(baseline)
    cursor.execute(
        "INSERT INTO distance_measurements (structure_1, structure_2, name, chance_region, "
        "chance_distances, chance_expected) VALUES (%s, %s, %s, %s, %s, %s) "
        "ON CONFLICT (structure_1, structure_2, name) DO UPDATE SET "
        "chance_region = EXCLUDED.chance_region, chance_distances = EXCLUDED.chance_distances, "
        "chance_expected = EXCLUDED.chance_expected",
        (structure_1, structure_2, name, region, grid, expected),
    )
    fault_point("distances")  # crash tests: distances written, not committed
    return True


def measured_images(cursor, structure_1: str, structure_2: str) -> list[str]:
    """Names of the images whose distances from structure_1 to structure_2 are measured, sorted."""
    cursor.execute("SELECT name FROM distance_measurements WHERE structure_1 = %s AND "
                   "structure_2 = %s ORDER BY name", (structure_1, structure_2))
    return [row[0] for row in cursor.fetchall()]


def _baseline_values(baseline) -> tuple[str | None, list | None, list | None]:
    if baseline is None:
        return None, None, None
    region, grid, expected = baseline
    grid = np.asarray(grid, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    if grid.ndim != 1 or grid.shape != expected.shape:
        msg = (f"a chance baseline needs one expected value per distance; got {grid.shape} "
               f"distances and {expected.shape} values.")
        raise ValueError(msg)
    # Python floats travel as their shortest exact text: the same bits come back.
    return region or "", grid.tolist(), expected.tolist()


def write_chance_baseline(cursor, structure_1: str, structure_2: str, name: str,
                          baseline: tuple[str, np.ndarray, np.ndarray]) -> bool:
    """Store one measured image's chance baseline (see :func:`write_distances`).

    Returns False (nothing stored) when the image's distances are not measured:
    a baseline lives exactly as long as the distances it goes with. The columns
    must exist (:func:`~rna_localization.db.tables.add_baseline_columns`).
    """
    region, grid, expected = _baseline_values(baseline)
    cursor.execute(
        "UPDATE distance_measurements SET chance_region = %s, chance_distances = %s, "
        "chance_expected = %s WHERE structure_1 = %s AND structure_2 = %s AND name = %s",
        (region, grid, expected, structure_1, structure_2, name),
    )
    return cursor.rowcount > 0


def read_chance_baselines(cursor, structure_1: str,
                          structure_2: str) -> dict[str, tuple[str, np.ndarray, np.ndarray]]:
    """The stored chance baselines of the measured images: name → (region, distances, expected).

    Images measured without one (or by a version that stored none) are left out.
    """
    cursor.execute(
        "SELECT count(*) FROM information_schema.columns WHERE table_schema = 'public' "
        "AND table_name = 'distance_measurements' AND column_name = 'chance_expected'")
    if not cursor.fetchone()[0]:  # a database made before baselines were stored
        return {}
    cursor.execute(
        "SELECT name, chance_region, chance_distances, chance_expected FROM distance_measurements "
        "WHERE structure_1 = %s AND structure_2 = %s AND chance_expected IS NOT NULL",
        (structure_1, structure_2),
    )
    return {name: (region, np.asarray(grid, dtype=np.float64),
                   np.asarray(expected, dtype=np.float64))
            for name, region, grid, expected in cursor.fetchall()}


def replace_images_table(cursor, table: pd.DataFrame, name_column: str) -> None:
    """Make the ``images`` table anew from the metadata CSV's table.

    Its columns are typed from the frame's (boolean, bigint, double precision,
    else text), the `name_column` being unique and not null; an ``id`` serial
    keeps the CSV's row order.
    """
    definitions = [sql.SQL("id serial PRIMARY KEY")]
    for column in table.columns:
        if column == name_column:
            definitions.append(sql.SQL("{} text NOT NULL UNIQUE").format(sql.Identifier(column)))
        else:
            kind = _SQL_TYPES.get(table[column].dtype.kind, "text")
            definitions.append(sql.SQL("{} {}").format(sql.Identifier(column), sql.SQL(kind)))
    cursor.execute("DROP TABLE IF EXISTS images")
    cursor.execute(sql.SQL("CREATE TABLE images ({})").format(sql.SQL(", ").join(definitions)))
    copy_frame(cursor, sql.Identifier("images"), table)


def read_images_table(cursor) -> pd.DataFrame:
    """The ``images`` table in the CSV's order, with its ``id``."""
    cursor.execute("SELECT * FROM images ORDER BY id")
    return pd.DataFrame(cursor.fetchall(), columns=[d.name for d in cursor.description])


# -------------------------------------------------------------- normalization
#: Columns of ``normalization_references`` after ``structure`` (one row per group).
REFERENCE_COLUMNS = ["grp", "method", "group_by", "lower_threshold", "upper_threshold",
                     "reference_by", "reference", "single_molecules", "own_reference", "objects",
                     "molecules"]
#: Columns of ``normalized_images`` after ``structure`` (one row per image).
NORMALIZED_IMAGE_COLUMNS = ["name", "grp", "reference", "single_molecules"]


def read_normalization_objects(cursor, structure: str, names, *, spot_intensity: bool,
                               positions: str | None = None) -> pd.DataFrame:
    """The objects of images `names` of `structure` (through the ``(name, object_id)`` index).

    Columns ``id``, ``name``, ``area``, ``total_intensity``, ``spot_intensity``
    (when asked) and, with `positions`, ``z``, ``y``, ``x`` in voxels: the
    intensity centroid where there is one, else the centroid (`positions` =
    ``"spot"``), or the centroid (``"centroid"``, a table extracted without
    intensity centroids). In (name, object_id) order: sums over them (a mean
    reference, molecules per group) do not depend on where the rows lie, so
    the same data always give the same bits.
    """
    columns = ["id", "name", "area", "total_intensity"] + (["spot_intensity"] if spot_intensity else [])
    selected = [sql.Identifier(column) for column in columns]
    if positions is not None:
        for axis in "zyx":
            centroid = sql.Identifier(f"centroid_{axis}")
            selected.append(sql.SQL("COALESCE({}, {})").format(
                sql.Identifier(f"spot_centroid_{axis}"), centroid) if positions == "spot"
                else centroid)
        columns = [*columns, "z", "y", "x"]
    cursor.execute(
        sql.SQL("SELECT {} FROM {} WHERE name = ANY(%s) ORDER BY name, object_id").format(
            sql.SQL(", ").join(selected), sql.Identifier(structure)),
        (list(names),),
    )
    return pd.DataFrame(cursor.fetchall(), columns=columns)


def read_normalization_state(cursor, structure: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """What the last ``normalize`` of `structure` left: its images and its references.

    Returns
    -------
    images : DataFrame
        ``name``, ``grp``: the images whose objects hold ``normalized_intensity``
        values, and their group; ``reference``, ``single_molecules``: the
        reference the image was counted against, from its own spots (pulled
        toward its group's, :func:`~rna_localization.distributions.shrunk_references`),
        and how many those are (NULL: its group's).
    references : DataFrame
        :data:`REFERENCE_COLUMNS`, one row per group.
    """
    cursor.execute(sql.SQL("SELECT {} FROM normalized_images WHERE structure = %s").format(
        sql.SQL(", ").join(map(sql.Identifier, NORMALIZED_IMAGE_COLUMNS))), (structure,))
    images = pd.DataFrame(cursor.fetchall(), columns=NORMALIZED_IMAGE_COLUMNS)
    cursor.execute(sql.SQL("SELECT {} FROM normalization_references WHERE structure = %s "
                           "ORDER BY grp").format(
        sql.SQL(", ").join(map(sql.Identifier, REFERENCE_COLUMNS))), (structure,))
    references = pd.DataFrame(cursor.fetchall(), columns=REFERENCE_COLUMNS)
    return images, references


def write_normalized_intensities(cursor, structure: str, ids, values) -> None:
    """Set ``normalized_intensity`` of the objects `ids` (their ``id``) to `values`; no other row changes."""
    cursor.execute(sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} double precision").format(
        sql.Identifier(structure), sql.Identifier(NORMALIZED_COLUMN)))
    update_from_frame(cursor, structure, pd.DataFrame({"id": ids, NORMALIZED_COLUMN: values}),
                      keys=["id"])


def clear_normalized_intensities(cursor, structure: str, names, *, all_but: bool = False) -> int:
    """Set ``normalized_intensity`` to NULL for the objects of images `names` that have one.

    With `all_but`, for the objects of every other image instead: a pass over
    the whole table, for a database normalized before the ``normalized_images``
    bookkeeping existed. Returns the number of rows changed.
    """
    table, column = sql.Identifier(structure), sql.Identifier(NORMALIZED_COLUMN)
    match = sql.SQL("NOT (name = ANY(%s))" if all_but else "name = ANY(%s)")
    cursor.execute(sql.SQL("UPDATE {t} SET {c} = NULL WHERE {c} IS NOT NULL AND {m}").format(
        t=table, c=column, m=match), (list(names),))
    return cursor.rowcount


def write_normalization_state(cursor, structure: str, images: pd.DataFrame,
                              references: pd.DataFrame, *, forget) -> None:
    """Record what ``normalize`` wrote: `images` (:data:`NORMALIZED_IMAGE_COLUMNS`) and
    `references` (:data:`REFERENCE_COLUMNS`, one row per group).

    The rows of the images `forget` (names; True for every image and group of
    `structure`) and of the groups in `references` are replaced; a group left
    without images loses its row.
    """
    if forget is True:
        cursor.execute("DELETE FROM normalized_images WHERE structure = %s", (structure,))
        cursor.execute("DELETE FROM normalization_references WHERE structure = %s", (structure,))
    else:
        cursor.execute("DELETE FROM normalized_images WHERE structure = %s AND name = ANY(%s)",
                       (structure, sorted(set(forget) | set(images["name"]))))
        cursor.execute("DELETE FROM normalization_references WHERE structure = %s AND (grp = ANY(%s) "
                       "OR grp NOT IN (SELECT grp FROM normalized_images WHERE structure = %s))",
                       (structure, list(references["grp"]), structure))
    copy_frame(cursor, sql.Identifier("normalized_images"),
               images[NORMALIZED_IMAGE_COLUMNS].assign(structure=structure)[
                   ["structure", *NORMALIZED_IMAGE_COLUMNS]])
    copy_frame(cursor, sql.Identifier("normalization_references"),
               references[REFERENCE_COLUMNS].assign(structure=structure)[["structure", *REFERENCE_COLUMNS]])


# ------------------------------------------------------ distributions, figures
def read_distribution_objects(cursor, structure_1: str, structure_2: str, *, distance: str,
                              weight: str) -> pd.DataFrame:
    """The objects of every measured image.

    Columns ``name``, ``object_id``, ``distance``, ``total_intensity``,
    ``normalized_intensity``.

    Parameters
    ----------
    distance : str
        The distance column to read.
    weight : {"total", "spot"}
        ``total_intensity`` is the object's total intensity, or its
        background-subtracted spot intensity floored at 0 (a NULL one counts 0).
    """
    if weight not in ("total", "spot"):
        msg = f"weight must be 'total' or 'spot', not {weight!r}."
        raise ValueError(msg)
    # GREATEST ignores NULL: an object without a spot intensity weighs 0.
    expression = "GREATEST(o.spot_intensity, 0)" if weight == "spot" else "o.total_intensity"
    cursor.execute(
        sql.SQL("SELECT o.name, o.object_id, o.{distance} AS distance, " + expression
                + " AS total_intensity, "
                "o.normalized_intensity "
                "FROM {table} AS o JOIN distance_measurements AS m ON m.name = o.name "
                "AND m.structure_1 = %s AND m.structure_2 = %s ORDER BY o.name, o.object_id").format(
            distance=sql.Identifier(distance), table=sql.Identifier(structure_1)),
        (structure_1, structure_2),
    )
    return pd.DataFrame(cursor.fetchall(),
                        columns=["name", "object_id", "distance", "total_intensity",
                                 "normalized_intensity"])


def read_plot_objects(cursor, structure: str, name: str, *, distance: str | None, intensity: str,
                      spot_centroids: bool) -> pd.DataFrame:
    """One image's objects for its figure: ``y``, ``x``, ``distance``, ``area``, ``intensity``, ``molecules``.

    With `spot_centroids`, ``y`` and ``x`` are the intensity centroid where
    there is one, else the centroid. ``distance`` is NULL when `distance` is
    None (no second structure); ``molecules`` is ``normalized_intensity``, or
    NULL before normalization.
    """
    y, x = (("COALESCE(spot_centroid_y, centroid_y)", "COALESCE(spot_centroid_x, centroid_x)")
            if spot_centroids else ("centroid_y", "centroid_x"))
    distance_sql = sql.Identifier(distance) if distance else sql.SQL("NULL::float8")
    molecules = (sql.Identifier(NORMALIZED_COLUMN) if NORMALIZED_COLUMN in _columns(cursor, structure)
                 else sql.SQL("NULL::float8"))
    cursor.execute(
        sql.SQL("SELECT " + y + " AS y, " + x + " AS x, {distance} AS distance, area, "
                "{intensity} AS intensity, {molecules} AS molecules FROM {table} WHERE name = %s "
                "ORDER BY object_id").format(
            distance=distance_sql, intensity=sql.Identifier(intensity), molecules=molecules,
            table=sql.Identifier(structure)),
        (name,),
    )
    return pd.DataFrame(cursor.fetchall(),
                        columns=["y", "x", "distance", "area", "intensity", "molecules"])


def read_group_objects(cursor, structure: str, name: str, *, intensity: str,
                       group_by: str | None = None, name_column: str = "name") -> pd.DataFrame:
    """``name``, ``area``, ``intensity`` and ``molecules`` of image `name`'s objects.

    With `group_by`, of every image sharing its ``images.<group_by>`` value
    (and a ``grp`` column). ``molecules`` is ``normalized_intensity``, or
    None before normalization.
    """
    normalized = NORMALIZED_COLUMN in _columns(cursor, structure)
    molecules = (sql.SQL("o.{}").format(sql.Identifier(NORMALIZED_COLUMN)) if normalized
                 else sql.SQL("NULL::float8"))
    if group_by is None:
        cursor.execute(
            sql.SQL("SELECT o.name, o.area, o.{intensity} AS intensity, {molecules} AS molecules "
                    "FROM {table} AS o WHERE o.name = %s").format(
                intensity=sql.Identifier(intensity), molecules=molecules,
                table=sql.Identifier(structure)),
            (name,),
        )
        return pd.DataFrame(cursor.fetchall(), columns=["name", "area", "intensity", "molecules"])
    cursor.execute(
        sql.SQL("SELECT o.name, o.area, o.{intensity} AS intensity, {molecules} AS molecules, "
                "i.{group} AS grp FROM {table} AS o JOIN images AS i "
                "ON i.{image} = o.name WHERE i.{group} = (SELECT {group} FROM images "
                "WHERE {image} = %s)").format(
            intensity=sql.Identifier(intensity), molecules=molecules, group=sql.Identifier(group_by),
            table=sql.Identifier(structure), image=sql.Identifier(name_column)),
        (name,),
    )
    return pd.DataFrame(cursor.fetchall(), columns=["name", "area", "intensity", "molecules", "grp"])


def read_raw_path(cursor, structure: str, name: str) -> str | None:
    """The raw stack an image was extracted from, as recorded then (None if unknown)."""
    cursor.execute("SELECT raw_path FROM label_images WHERE structure = %s AND name = %s",
                   (structure, name))
    row = cursor.fetchone()
    return row[0] if row and row[0] else None


def _columns(cursor, table: str) -> list[str]:
    cursor.execute("SELECT column_name FROM information_schema.columns "
                   "WHERE table_schema = 'public' AND table_name = %s", (table,))
    return [row[0] for row in cursor.fetchall()]
