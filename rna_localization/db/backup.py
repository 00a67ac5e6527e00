"""Backups: every table as CSV, and the whole database with pg_dump / pg_restore."""

from __future__ import annotations

import os
from pathlib import Path

from psycopg2 import sql

from .database import Database
from .locks import pipeline_lock
from .server import run_client

__all__ = ["backup_database", "export_tables", "restore_database"]


def export_tables(db: Database, folder: str | os.PathLike) -> list[Path]:
    """Write every table of the database to ``<folder>/<table>.csv``, with a header.

    Rows are ordered by the table's first column(s), so exports compare line
    by line. Floats are written with every digit PostgreSQL keeps (they
    reload to the same value); ``label_images.labels`` is hex (``\\x...``).

    Returns
    -------
    list of Path
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    connection = db.connect()
    try:
        with connection, connection.cursor() as cursor:
            cursor.execute("SET extra_float_digits = 3")
            for table in db.tables():
                n_columns = len(db.columns(table))
                order = sql.SQL(", ").join(sql.Literal(i) for i in range(1, min(n_columns, 3) + 1))
                statement = sql.SQL("COPY (SELECT * FROM {} ORDER BY {}) TO STDOUT WITH (FORMAT csv, HEADER)")
                path = folder / f"{table}.csv"
                tmp = path.with_name(path.name + ".part")
                with open(tmp, "w", encoding="utf-8", newline="") as handle:
                    cursor.copy_expert(
                        statement.format(sql.Identifier(table), order).as_string(connection), handle
                    )
                os.replace(tmp, path)
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
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    args, env = _libpq_args(db)
    run_client("pg_dump", "--format=custom", "--no-owner", "--file", str(tmp), *args, env=env)
    os.replace(tmp, path)
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
