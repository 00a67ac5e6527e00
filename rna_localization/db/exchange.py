"""Whole-table reads for handing the objects to other tools (AnnData, napari)."""

from __future__ import annotations

import pandas as pd
from psycopg2 import sql

from .database import Database
from .tables import extracted_images

__all__ = ["read_image_objects", "read_images", "read_objects", "read_raw_path", "read_spacings"]


def _exists(db: Database, table: str) -> bool:
    return table in db.tables()


def read_objects(db: Database, structure: str) -> pd.DataFrame:
    """Every row of a structure's table, by image name and object_id (without ``id``)."""
    if not _exists(db, structure):
        msg = (f"database {db.name!r} has no table {structure!r}: run `rna-localization extract` "
               f"first, or check data.structures.")
        raise ValueError(msg)
    return db.query(sql.SQL("SELECT * FROM {} ORDER BY name, object_id").format(
        sql.Identifier(structure))).drop(columns="id")


def read_image_objects(db: Database, structure: str, name: str) -> pd.DataFrame:
    """One image's rows of a structure's table, by object_id (without ``id``)."""
    if not _exists(db, structure):
        return pd.DataFrame()
    return db.query(sql.SQL("SELECT * FROM {} WHERE name = %s ORDER BY object_id").format(
        sql.Identifier(structure)), (name,)).drop(columns="id")


def read_images(db: Database) -> pd.DataFrame:
    """The images table (the metadata CSV), without ``id``; empty if there is none."""
    if not _exists(db, "images"):
        return pd.DataFrame()
    return db.query("SELECT * FROM images ORDER BY id").drop(columns="id")


def read_spacings(db: Database) -> pd.DataFrame:
    """``structure``, ``name`` and the voxel size (``spacing_z/y/x``, µm) each image was extracted at."""
    with db.transaction() as cursor:
        return extracted_images(cursor)


def read_raw_path(db: Database, structure: str, name: str) -> str:
    """The raw stack an image of a structure was extracted from ("" if not recorded)."""
    rows = db.query("SELECT raw_path FROM label_images WHERE structure = %s AND name = %s",
                    (structure, name))
    return str(rows["raw_path"].iloc[0] or "") if len(rows) else ""
