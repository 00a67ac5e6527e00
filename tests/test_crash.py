"""Crash safety and concurrency of ``rna-localization run``, with real processes and ``kill -9``.

The kill points are deterministic: ``RNA_LOCALIZATION_TEST_KILL_AT=<point>:<k>``
makes the package SIGKILL itself the k-th time it reaches a point (see
``rna_localization/_faults.py``). Every run here shares one data directory
(the label_images table stores file paths) and has its own database; after a
crash, ``run`` again must give the database of one uninterrupted run, byte for
byte in every table's CSV export (ids and label-image blobs included).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from rna_localization import load_config
from rna_localization._faults import KILL_ENV, PAUSE_ENV
from rna_localization.cli import main
from rna_localization.db import Database
from rna_localization.db.backup import export_tables

from datagen import write_dataset
from helpers import database as _db

N_IMAGES = 6  # 2 structures → 12 extraction transactions: rna img_00..05, then centrosomes
LOCKED = "another rna-localization command is writing to database"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory, postgres_server) -> Path:
    root = tmp_path_factory.mktemp("crash") / "data"
    write_dataset(root, n_images=N_IMAGES, database_name="template")
    return root


def _config(data_dir: Path) -> Path:
    """A pipeline.toml on the shared data set with its own database and output folder."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    text = (data_dir / "pipeline.toml").read_text(encoding="utf-8")
    text = text.replace('name = "template"', f'name = "{name}"')
    text = text.replace("step_size = 0.1", f'step_size = 0.1\noutput_dir = "out_{name}"')
    text += "\n[plot]\ndpi = 40\n"  # figures are not under test here: keep them quick
    path = data_dir / f"{name}.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _snapshot(config_path: Path, folder: Path) -> dict[str, bytes]:
    """Every table's CSV export, and the distributions CSV, as bytes."""
    files = {p.name: p.read_bytes() for p in export_tables(_db(config_path), folder)}
    config = load_config(config_path)
    distributions = config.output_dir / "data" / "cumulative_distributions.csv"
    files["distributions"] = distributions.read_bytes()
    return files


def _assert_same(actual: dict[str, bytes], expected: dict[str, bytes]) -> None:
    assert sorted(actual) == sorted(expected)
    for name in expected:
        assert actual[name] == expected[name], f"{name} differs from the uninterrupted run"


@pytest.fixture(scope="module")
def reference(data_dir, tmp_path_factory) -> dict[str, bytes]:
    """One uninterrupted run."""
    config = _config(data_dir)
    assert main(["run", "--config", str(config)]) == 0
    return _snapshot(config, tmp_path_factory.mktemp("reference"))


def _start_run(config: Path, **env: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "rna_localization.cli", "run", "--config", str(config)],
        env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _wait_for_disconnect(db: Database, timeout: float = 30) -> None:
    """Until the server has noticed that the killed client's sessions are gone."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        others = db.query("SELECT count(*) AS n FROM pg_stat_activity WHERE datname = %s "
                          "AND pid <> pg_backend_pid()", (db.name,))["n"].iloc[0]
        if others == 0:
            return
        time.sleep(0.05)
    pytest.fail(f"sessions of the killed run on {db.name} did not end within {timeout} s")


def _count(db: Database, statement: str, params=None) -> int:
    return int(db.query(statement, params).iloc[0, 0])


def _check_extract_3(db: Database) -> None:
    # Killed inside the 3rd image's transaction (rna img_02): all of it or nothing.
    assert _count(db, "SELECT count(*) FROM rna WHERE name = 'img_02'") == 0
    assert _count(db, "SELECT count(*) FROM label_images WHERE name = 'img_02'") == 0
    assert _count(db, "SELECT count(DISTINCT name) FROM rna") == 2  # img_00, img_01 committed
    assert _count(db, "SELECT count(*) FROM centrosomes") == 0


def _check_extract_10(db: Database) -> None:
    # 10th transaction: centrosomes img_03.
    assert _count(db, "SELECT count(DISTINCT name) FROM rna") == N_IMAGES
    assert _count(db, "SELECT count(*) FROM centrosomes WHERE name = 'img_03'") == 0
    assert _count(db, "SELECT count(DISTINCT name) FROM centrosomes") == 3


def _check_extracted(db: Database) -> None:
    assert _count(db, "SELECT count(*) FROM label_images") == 2 * N_IMAGES
    assert _count(db, "SELECT count(*) FROM distance_measurements") == 0


def _check_distances_2(db: Database) -> None:
    # Killed while writing img_01's distances: img_00 measured, img_01 untouched.
    assert db.query("SELECT name FROM distance_measurements")["name"].tolist() == ["img_00"]
    assert _count(db, "SELECT count(*) FROM rna WHERE name = 'img_01' "
                      "AND distance_to_centrosomes IS NOT NULL") == 0
    assert _count(db, "SELECT count(*) FROM rna WHERE name = 'img_00' "
                      "AND distance_to_centrosomes IS NULL") == 0


def _check_normalize(db: Database) -> None:
    # The whole normalization is one transaction: not a single value written.
    assert "normalized_intensity" not in db.columns("rna")
    assert _count(db, "SELECT count(*) FROM distance_measurements") == N_IMAGES
    assert _count(db, "SELECT count(*) FROM images") == N_IMAGES


@pytest.mark.parametrize(
    ("kill_at", "check"),
    [
        ("extract:3", _check_extract_3),
        ("extract:10", _check_extract_10),
        ("extracted:1", _check_extracted),
        ("distances:2", _check_distances_2),
        ("normalize:1", _check_normalize),
    ],
)
def test_kill_9_then_run_again_gives_the_uninterrupted_database(data_dir, reference, tmp_path,
                                                                 kill_at, check):
    config = _config(data_dir)
    killed = _start_run(config, **{KILL_ENV: kill_at})
    _, stderr = killed.communicate(timeout=120)
    assert killed.returncode == -signal.SIGKILL, stderr
    db = _db(config)
    _wait_for_disconnect(db)
    check(db)
    assert main(["run", "--config", str(config)]) == 0
    _assert_same(_snapshot(config, tmp_path / "resumed"), reference)


def test_second_run_stops_with_a_clear_message_while_the_first_writes(data_dir, reference, tmp_path):
    config = _config(data_dir)
    gate = tmp_path / "paused"
    first = _start_run(config, **{PAUSE_ENV: f"extract:2@{gate}"})
    try:
        deadline = time.monotonic() + 120
        while not gate.exists():
            assert first.poll() is None, first.communicate()[1]
            assert time.monotonic() < deadline, "the first run never reached its pause point"
            time.sleep(0.05)
        # The first run holds the lock and an open transaction on img_01.
        second = _start_run(config)
        out, err = second.communicate(timeout=120)
        assert second.returncode == 2, out + err
        assert LOCKED in err
        assert err.strip().count("\n") == 0, err  # one sentence
    finally:
        gate.unlink(missing_ok=True)
    out, err = first.communicate(timeout=180)
    assert first.returncode == 0, err
    _assert_same(_snapshot(config, tmp_path / "after"), reference)


def test_two_runs_started_together_never_duplicate_rows(data_dir, reference, tmp_path):
    config = _config(data_dir)
    runs = [_start_run(config), _start_run(config)]
    outputs = [run.communicate(timeout=300) for run in runs]
    results = [(run.returncode, *output) for run, output in zip(runs, outputs)]
    codes = sorted(code for code, _, _ in results)
    assert codes[0] == 0, results
    for code, out, err in results:
        if code != 0:  # the loser: a clear message, not a traceback
            assert code == 2, out + err
            assert LOCKED in err, err
    db = _db(config)
    for table in ("rna", "centrosomes"):
        assert _count(db, f"SELECT count(*) - count(DISTINCT (name, object_id)) FROM {table}") == 0
    assert main(["run", "--config", str(config)]) == 0
    _assert_same(_snapshot(config, tmp_path / "after"), reference)
