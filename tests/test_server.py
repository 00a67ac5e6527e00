"""The embedded server (pgserver) starts, or says in one sentence why not, whatever a killed
process left in its folder; and a command that started it stops it, however it ends.

Each test has its own data folder and its own real server.
"""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import psycopg2
import pytest

from rna_localization.db import ENV_URL, embedded_url, start_server, stop_server

from datagen import write_dataset

ROOT = Path(__file__).resolve().parents[1]


def _select_one(url: str) -> int:
    connection = psycopg2.connect(url)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            return cursor.fetchone()[0]
    finally:
        connection.close()


def _in_a_process(pgdata: Path, code: str = "") -> None:
    """Start the server in `pgdata` from another process, run `code` on it, let it stop."""
    script = (f"import psycopg2; from rna_localization.db import start_server; "
              f"url = start_server({str(pgdata)!r}); {code}")
    subprocess.run([sys.executable, "-c", script], check=True, capture_output=True,
                   env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)


@pytest.fixture
def stopped(tmp_path):
    """A data folder whose server was made, used and stopped by another process."""
    pgdata = tmp_path / ".pgdata"
    _in_a_process(pgdata)
    assert (pgdata / "PG_VERSION").is_file()
    assert embedded_url(pgdata) is None
    yield pgdata
    stop_server(pgdata)


def test_a_data_folder_with_a_space_in_its_path_starts(tmp_path):
    pgdata = tmp_path / "My Data" / ".pgdata"
    url = start_server(pgdata)
    try:
        assert _select_one(url) == 1
        # The socket went to a folder whose path has no space, and only its owner reaches it.
        socket_dir = Path(url.split("host=")[1])
        assert " " not in str(socket_dir)
        assert stat.S_IMODE(socket_dir.stat().st_mode) & 0o077 == 0
    finally:
        assert stop_server(pgdata)
    assert embedded_url(pgdata) is None


def test_a_truncated_postmaster_pid_of_a_killed_server_is_removed(stopped):
    # The server was killed while writing it: pid, folder and start time only.
    dead = 2**22 + 11
    (stopped / "postmaster.pid").write_text(f"{dead}\n{stopped}\n1700000000\n")
    url = start_server(stopped)
    assert _select_one(url) == 1


def test_a_postmaster_pid_naming_another_program_is_stale(stopped):
    # After a reboot the old server's pid can belong to any program (here: this test).
    (stopped / "postmaster.pid").write_text(
        f"{os.getpid()}\n{stopped}\n1700000000\n5432\n{stopped}\n\n  5432001    65536\nready   \n")
    url = start_server(stopped)
    assert _select_one(url) == 1
    assert embedded_url(stopped) == url


@pytest.mark.parametrize("missing", ["global", "PG_VERSION"])
def test_a_half_initialized_cluster_is_made_again(stopped, missing):
    # A first initialization killed before it wrote the cluster's control file (or its version).
    target = stopped / missing
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    with pytest.warns(UserWarning, match=r"left half-made by an interrupted first start"):
        url = start_server(stopped)
    assert _select_one(url) == 1
    assert (stopped / "global" / "pg_control").is_file()


def test_a_damaged_cluster_holding_databases_is_never_deleted(tmp_path):
    pgdata = tmp_path / ".pgdata"
    _in_a_process(pgdata, "c = psycopg2.connect(url); c.autocommit = True; "
                          "c.cursor().execute('CREATE DATABASE precious'); c.close()")
    (pgdata / "global" / "pg_control").unlink()
    before = sorted(p.relative_to(pgdata) for p in pgdata.rglob("*"))
    with pytest.raises(RuntimeError, match=r"is damaged \(no global/pg_control\) but holds "
                                           r"databases: restore a backup"):
        start_server(pgdata)
    assert sorted(p.relative_to(pgdata) for p in pgdata.rglob("*")) == before


def test_a_server_that_does_not_start_is_one_sentence(stopped, monkeypatch, capsys):
    from rna_localization.cli import main

    (stopped / "PG_VERSION").write_text("9.6\n")  # files of another PostgreSQL version
    config = write_dataset(stopped.parent / "data", database_name="x")
    shutil.move(stopped, config.parent / ".pgdata")
    monkeypatch.delenv(ENV_URL)
    assert main(["db", "start", "--config", str(config)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1, error
    assert error.startswith(f"error: the embedded PostgreSQL server in {config.parent / '.pgdata'} "
                            f"did not start (")
    assert "incompatible" in error
    assert "move" in error and "it holds your tables" in error
