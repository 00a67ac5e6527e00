"""Backups beyond the round trip of test_pipeline.py: restoring over a database, and bad backup files."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import pytest

from rna_localization import load_config, steps
from rna_localization._faults import PAUSE_ENV
from rna_localization.cli import main

from helpers import database as _db
from helpers import table_bytes as _snapshot


@pytest.fixture
def backed_up(dataset, tmp_path):
    """Extracted objects and metadata, saved: (config path, backup file, snapshot at backup time)."""
    config = load_config(dataset)
    steps.extract(config)
    steps.load_metadata(config)
    backup = tmp_path / "saved.dump"
    assert main(["backup", "--config", str(dataset), "--to", str(backup)]) == 0
    assert not list(tmp_path.glob("*.part"))
    return dataset, backup, _snapshot(dataset, tmp_path / "saved")


def _damage(config_path) -> None:
    db = _db(config_path)
    with db.transaction() as cursor:
        cursor.execute("DELETE FROM rna WHERE name = 'img_01'")
        cursor.execute("UPDATE images SET rna_type = 'changed'")
        cursor.execute("DROP TABLE centrosomes")


def test_restore_into_the_same_database_replaces_its_tables(backed_up, tmp_path, capsys):
    config, backup, saved = backed_up
    _damage(config)
    assert main(["restore", "--config", str(config), "--from", str(backup)]) == 0
    assert "restored into database" in capsys.readouterr().out
    assert _snapshot(config, tmp_path / "restored") == saved
    steps.extract(load_config(config))  # and the pipeline carries on from the restored state
    assert _snapshot(config, tmp_path / "resumed") == saved


@pytest.mark.parametrize(
    ("make_file", "message"),
    [
        (lambda path: None, r"backup file .*missing\.dump does not exist"),
        (lambda path: path.write_text("name,rna_type\nimg_00,cen\n"), r"pg_restore failed: .*not .*valid archive"),
    ],
)
def test_bad_backup_file_is_named_and_the_database_kept(backed_up, tmp_path, capsys, make_file, message):
    config, _, _ = backed_up
    _damage(config)
    before = _snapshot(config, tmp_path / "before")
    path = tmp_path / "missing.dump"
    make_file(path)
    assert main(["restore", "--config", str(config), "--from", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    assert re.search(message, err), err
    assert _snapshot(config, tmp_path / "after") == before


def test_truncated_backup_restores_nothing(backed_up, tmp_path, capsys):
    """pg_restore runs in one transaction: a dump cut short leaves the database as it was."""
    config, backup, _ = backed_up
    _damage(config)
    before = _snapshot(config, tmp_path / "before")
    data = backup.read_bytes()
    cut = tmp_path / "cut.dump"
    cut.write_bytes(data[: len(data) * 2 // 3])
    assert main(["restore", "--config", str(config), "--from", str(cut)]) == 2
    err = capsys.readouterr().err
    assert "pg_restore failed" in err
    assert _snapshot(config, tmp_path / "after") == before


def test_restore_refuses_while_a_run_holds_the_pipeline_lock(backed_up, tmp_path, capsys):
    """Restoring under a running pipeline would mix two data sets: it stops with the lock's sentence."""
    config, backup, saved = backed_up
    _damage(config)
    gate = tmp_path / "paused"
    run = subprocess.Popen(
        [sys.executable, "-m", "rna_localization.cli", "run", "--config", str(config)],
        env={**os.environ, PAUSE_ENV: f"extracted:1@{gate}"},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not gate.exists():
            assert run.poll() is None, run.communicate()[1]
            assert time.monotonic() < deadline, "the run never reached its pause point"
            time.sleep(0.05)
        # The run holds the pipeline lock (after extraction, no transaction open).
        capsys.readouterr()
        assert main(["restore", "--config", str(config), "--from", str(backup)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: another rna-localization command is writing to database"), err
        assert err.count("\n") == 1, err
        # Nothing restored: the damage is still there (the paused run has not reached metadata).
        assert _db(config).query("SELECT DISTINCT rna_type FROM images")["rna_type"].tolist() == ["changed"]
    finally:
        gate.unlink(missing_ok=True)
    _, err = run.communicate(timeout=300)
    assert run.returncode == 0, err
    assert main(["restore", "--config", str(config), "--from", str(backup)]) == 0  # free again
    assert _snapshot(config, tmp_path / "restored") == saved
