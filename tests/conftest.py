"""Shared fixtures: one real PostgreSQL server per test session, small data sets on disk.

The server is the package's embedded one (pgserver), unless
RNA_LOCALIZATION_DATABASE_URL names another; every test gets its own database.
"""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from rna_localization.db import ENV_URL, start_server, stop_server  # noqa: E402


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory):
    """URL of the PostgreSQL server every test database lives on.

    Started for the first test that asks for it (directly, or through
    ``database_name`` or ``dataset``): a run of pure array tests starts none.
    """
    url = os.environ.get(ENV_URL)
    if url:
        yield url
        return
    pgdata = tmp_path_factory.mktemp("postgres") / ".pgdata"
    url = start_server(pgdata)
    os.environ[ENV_URL] = url
    try:
        yield url
    finally:
        os.environ.pop(ENV_URL, None)
        stop_server(pgdata)


@pytest.fixture
def database_name(postgres_server):
    """A fresh database's name on the test server."""
    return f"t_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def dataset(tmp_path, database_name):
    """Path of the pipeline.toml of a small data set (4 images, rna + centrosomes)."""
    from datagen import write_dataset

    return write_dataset(tmp_path / "data", database_name=database_name)
