"""The pipeline lock: one writer per database at a time."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from .._errors import PipelineError
from .database import Database

__all__ = ["LOCK_KEY", "pipeline_lock"]

#: Key of the PostgreSQL advisory lock (hashed with ``hashtext``), per database.
LOCK_KEY = "rna_localization pipeline"

_held = threading.local()


@contextmanager
def pipeline_lock(db: Database) -> Iterator[None]:
    """Hold the database's pipeline lock, so that two commands never interleave writes.

    Every step that writes takes it, and so does a restore: restoring under a
    running pipeline would mix two data sets. It is a session-level advisory
    lock, released when the block ends or the process dies. Re-entrant within
    a thread (``run`` calls the other steps).

    Raises
    ------
    RuntimeError
        At once, naming the database, when another command holds the lock.
    """
    held = getattr(_held, "dsns", None)
    if held is None:
        held = _held.dsns = set()
    if db.dsn in held:
        yield
        return
    connection = db.connect()
    try:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_lock(hashtext(%s))", (LOCK_KEY,))
            if not cursor.fetchone()[0]:
                msg = (
                    f"another rna-localization command is writing to database {db.name!r}; "
                    f"wait for it to finish (or stop it) and run this again."
                )
                raise PipelineError(msg)
        held.add(db.dsn)
        try:
            yield
        finally:
            held.discard(db.dsn)
    finally:
        connection.close()  # closing the session releases the lock
