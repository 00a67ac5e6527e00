"""Per-image summaries read from the database, one query each."""

from __future__ import annotations

import pandas as pd
from psycopg2 import sql

__all__ = ["distance_summary", "first_objects", "molecules_per_image"]


def molecules_per_image(db, structure: str) -> pd.DataFrame:
    """Objects and estimated molecules of every extracted image of one structure.

    Parameters
    ----------
    db : Database
    structure : str
        A structure table with a ``normalized_intensity`` column (after ``normalize``).

    Returns
    -------
    DataFrame
        One row per extracted image, by name: ``name``, ``objects`` (0 for an
        image without objects) and ``molecules``, the sum of its objects'
        ``normalized_intensity`` (0 without objects; NaN when its objects are
        not normalized, e.g. no metadata row).

    Examples
    --------
    >>> molecules_per_image(db, "rna")  # doctest: +SKIP
         name  objects  molecules
    0  img_00       25       31.2
    """
    statement = sql.SQL(
        "SELECT l.name, l.n_objects AS objects, "
        "CASE WHEN l.n_objects = 0 THEN 0 "
        # Summed in object order: the same digits whatever order the rows were stored in.
        "ELSE SUM(o.normalized_intensity ORDER BY o.object_id) END AS molecules "
        "FROM label_images AS l LEFT JOIN {table} AS o ON o.name = l.name "
        "WHERE l.structure = %s GROUP BY l.name, l.n_objects ORDER BY l.name"
    ).format(table=sql.Identifier(structure))
    table = db.query(statement, (structure,))
    table["objects"] = table["objects"].astype(int)
    table["molecules"] = table["molecules"].astype(float)
    return table


def distance_summary(db, structure: str, column: str) -> pd.DataFrame:
    """How many objects of each image have a distance, and the smallest and largest.

    Parameters
    ----------
    db : Database
    structure : str
        The structure table measured (``distances.structure_1``).
    column : str
        Its distance column, e.g. ``distance_to_centrosomes``.

    Returns
    -------
    DataFrame
        One row per image with objects, by name: ``name``, ``objects``,
        ``with_distance`` (objects whose distance is not NULL), ``min_um`` and
        ``max_um``.

    Examples
    --------
    >>> distance_summary(db, "rna", "distance_to_centrosomes")  # doctest: +SKIP
         name  objects  with_distance  min_um  max_um
    0  img_00       25             25     0.0    4.87
    """
    statement = sql.SQL(
        "SELECT name, count(*) AS objects, count({d}) AS with_distance, min({d}) AS min_um, "
        "max({d}) AS max_um FROM {table} GROUP BY name ORDER BY name"
    ).format(d=sql.Identifier(column), table=sql.Identifier(structure))
    table = db.query(statement)
    for count in ("objects", "with_distance"):
        table[count] = table[count].astype(int)
    return table


def first_objects(db, structure: str, *, by: str | None = None, limit: int = 5,
                  columns: list[str] | None = None) -> pd.DataFrame:
    """The first objects of a structure's table: as stored, or the largest of a column.

    Parameters
    ----------
    db : Database
    structure : str
        The structure's table.
    by : str, optional
        A column: the objects with its largest values first. Default: by
        image name and object id, the order they are stored in.
    limit : int
        How many objects.
    columns : list of str, optional
        The columns to return; default all.

    Returns
    -------
    DataFrame
    """
    chosen = (sql.SQL(", ").join(sql.Identifier(c) for c in columns) if columns
              else sql.SQL("*"))
    order = (sql.SQL("{} DESC NULLS LAST, name, object_id").format(sql.Identifier(by)) if by
             else sql.SQL("name, object_id"))
    statement = sql.SQL("SELECT {} FROM {} ORDER BY {} LIMIT %s").format(
        chosen, sql.Identifier(structure), order)
    return db.query(statement, (int(limit),))
