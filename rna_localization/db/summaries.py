"""Per-image summaries read from the database, one query each."""

from __future__ import annotations

import pandas as pd
from psycopg2 import sql

__all__ = ["molecules_per_image"]


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
        "CASE WHEN l.n_objects = 0 THEN 0 ELSE SUM(o.normalized_intensity) END AS molecules "
        "FROM label_images AS l LEFT JOIN {table} AS o ON o.name = l.name "
        "WHERE l.structure = %s GROUP BY l.name, l.n_objects ORDER BY l.name"
    ).format(table=sql.Identifier(structure))
    table = db.query(statement, (structure,))
    table["objects"] = table["objects"].astype(int)
    table["molecules"] = table["molecules"].astype(float)
    return table
