"""Backups: every table as CSV, and the whole database with pg_dump / pg_restore."""

from __future__ import annotations

import os
from pathlib import Path

from psycopg2 import sql

from ..io import replacing
from .database import Database
from .locks import pipeline_lock
from .server import run_client

__all__ = ["backup_database", "export_tables", "restore_database", "table_file_name"]


def table_file_name(table: str) -> str:
    """File name of a table's CSV export: ``<table>.csv``, the name made safe for a file system.

    Letters, digits and underscores are kept; every other character is
    percent-encoded (UTF-8), so a table named ``../../raw-data-metadata`` (say,
    from a restored dump) is written to ``%2E%2E%2F%2E%2E%2Fraw%2Ddata%2Dmetadata.csv``
    inside the export folder, never over another file. The table name comes
    back with :func:`urllib.parse.unquote` of the file's stem.

    Examples
    --------
    >>> table_file_name("rna"), table_file_name("a/b")
    ('rna.csv', 'a%2Fb.csv')
    """
    encoded = "".join(
        character if character.isascii() and (character.isalnum() or character == "_")
        else "".join(f"%{byte:02X}" for byte in character.encode("utf-8"))
        for character in table
    )
    return f"{encoded}.csv"


def export_tables(db: Database, folder: str | os.PathLike) -> list[Path]:
    """Write every table of the database to ``<folder>/<table>.csv``, with a header.

    Rows are ordered by the table's first column(s), so exports compare line
    by line. Floats are written with every digit PostgreSQL keeps (they
    reload to the same value); ``label_images.labels`` is hex (``\\x...``).
    File names are :func:`table_file_name`: a table whose name is not a plain
    identifier gets a percent-encoded one, inside `folder` all the same.

    Returns
    -------
    list of Path

    Raises
    ------
    ValueError
        Before writing anything, if two tables' file names differ only by
        case (one would overwrite the other on macOS or Windows).
    """
    folder = Path(folder)
    tables = db.tables()
    by_file: dict[str, str] = {}
    for table in tables:
        other = by_file.setdefault(table_file_name(table).casefold(), table)
        if other != table:
            first, second = sorted((other, table))
            msg = (f"tables {first!r} and {second!r} would be written to the same file on a "
                   f"case-insensitive disk (macOS, Windows); rename one of them to export them.")
            raise ValueError(msg)
    if folder.exists() and not folder.is_dir():
        msg = (f"{folder} is a file, not a folder: the export writes one CSV per table into a "
               f"folder; give a folder's name (it is created if missing).")
        raise ValueError(msg)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    connection = db.connect()
    try:
        with connection, connection.cursor() as cursor:
            cursor.execute("SET extra_float_digits = 3")
            for table in tables:
                n_columns = len(db.columns(table))
                order = sql.SQL(", ").join(sql.Literal(i) for i in range(1, min(n_columns, 3) + 1))
                statement = sql.SQL("COPY (SELECT * FROM {} ORDER BY {}) TO STDOUT WITH (FORMAT csv, HEADER)")
                path = folder / table_file_name(table)
                with replacing(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as handle:
                    cursor.copy_expert(
                        statement.format(sql.Identifier(table), order).as_string(connection), handle
                    )
                written.append(path)
    finally:
        connection.close()
    return written


def _libpq_args(db: Database) -> tuple[list[str], dict[str, str]]:
    dsn, env = db.client_connection()  # any password travels in the environment, not argv
    return ["--dbname", dsn], env


def backup_database(db: Database, path: str | os.PathLike) -> Path:
    """The whole database to one file (pg_dump custom format, compressed)."""
    path = Path(path)
    if path.is_dir():
        msg = (f"{path} is a folder: a backup is one file; give a file name, e.g. "
               f"{path / (db.name + '.dump')}.")
        raise ValueError(msg)
    path.parent.mkdir(parents=True, exist_ok=True)
    args, env = _libpq_args(db)
    with replacing(path) as tmp:
        run_client("pg_dump", "--format=custom", "--no-owner", "--file", str(tmp), *args, env=env)
    return path


def restore_database(db: Database, path: str | os.PathLike) -> None:
    """Restore a :func:`backup_database` file into `db` (created if missing), replacing its tables.

    Under the pipeline lock (:func:`~rna_localization.db.locks.pipeline_lock`):
    while another command writes to `db`, it raises RuntimeError at once
    instead of mixing the two data sets.
    """
    path = Path(path)
    if not path.is_file():
        msg = f"backup file {path} does not exist."
        raise FileNotFoundError(msg)
    db.create()
    args, env = _libpq_args(db)
    with pipeline_lock(db):
        run_client("pg_restore", "--clean", "--if-exists", "--no-owner", "--single-transaction",
                   *args, str(path), env=env)
