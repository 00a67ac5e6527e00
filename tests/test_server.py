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
import sysconfig
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
    monkeypatch.delenv(ENV_URL, raising=False)
    assert main(["db", "start", "--config", str(config)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1, error
    assert error.startswith(f"error: the embedded PostgreSQL server in {config.parent / '.pgdata'} "
                            f"did not start (")
    assert "incompatible" in error
    assert "move" in error
    assert "it holds your tables" in error


# ---------------------------------------------------- who stops the server, and how commands end
_USER = """
import sys, time
from pathlib import Path
from rna_localization.db import start_server
start_server(sys.argv[1])
Path(sys.argv[2]).write_text("up")
while not Path(sys.argv[3]).exists():
    time.sleep(0.05)
"""


def _user(pgdata: Path, folder: Path, name: str) -> tuple[subprocess.Popen, Path]:
    """A process using the server until `folder / (name + '.done')` appears."""
    up, done = folder / f"{name}.up", folder / f"{name}.done"
    process = subprocess.Popen([sys.executable, "-c", _USER, str(pgdata), str(up), str(done)],
                               env={**os.environ, "PYTHONPATH": str(ROOT)},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for(up.exists, f"{name} never started the server: {process}")
    return process, done


def _wait_for(condition, message: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(message)
        time.sleep(0.05)


def _postmaster(pgdata: Path) -> int:
    return int((pgdata / "postmaster.pid").read_text().split()[0])


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_overlapping_commands_the_last_to_exit_stops_the_server(tmp_path):
    pgdata = tmp_path / ".pgdata"
    first, first_done = _user(pgdata, tmp_path, "first")
    postmaster = _postmaster(pgdata)
    second, second_done = _user(pgdata, tmp_path, "second")  # joins the running server
    assert _postmaster(pgdata) == postmaster
    first_done.touch()
    code, error = _finished(first)
    assert code == 0, error
    assert _alive(postmaster)  # the second command still uses it
    assert _select_one(embedded_url(pgdata)) == 1
    second_done.touch()
    code, error = _finished(second)
    assert code == 0, error
    _wait_for(lambda: not _alive(postmaster), "the server outlived every command using it", 30)


def test_a_server_orphaned_by_kill_9_is_stopped_by_the_next_command(tmp_path):
    pgdata = tmp_path / ".pgdata"
    killed, _ = _user(pgdata, tmp_path, "killed")
    postmaster = _postmaster(pgdata)
    killed.kill()
    killed.wait(60)
    assert _alive(postmaster)  # nobody left to stop it
    _in_a_process(pgdata, "c = psycopg2.connect(url); c.close()")
    _wait_for(lambda: not _alive(postmaster), "the orphaned server was never stopped", 30)


def test_db_start_keeps_the_server_for_later_commands_until_db_stop(tmp_path):
    config = write_dataset(tmp_path / "data", database_name="kept")
    pgdata = config.parent / ".pgdata"
    env = {k: v for k, v in os.environ.items() if k != ENV_URL} | {"PYTHONPATH": str(ROOT)}

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "rna_localization.cli", *args, "--config",
                               str(config)], env=env, capture_output=True, text=True, timeout=120)

    assert cli("db", "start").returncode == 0
    postmaster = _postmaster(pgdata)
    assert cli("db", "url").returncode == 0  # another command uses it, then exits
    assert _alive(postmaster)
    assert cli("db", "stop").stdout.strip() == "stopped"
    _wait_for(lambda: not _alive(postmaster), "db stop did not stop the server", 30)


def _finished(process: subprocess.Popen, timeout: float = 60) -> tuple[int, str]:
    """Exit code and stderr of `process`, its pipes drained while it runs (a full pipe
    cannot hold it up); a process still running after `timeout` s fails the test with
    what it printed."""
    try:
        _, error = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        _, error = process.communicate()
        pytest.fail(f"still running after {timeout} s; its stderr ends with:\n{error[-3000:]}")
    return process.returncode, error


def _default_signals() -> None:
    """In the child before it runs: SIGHUP, SIGTERM and SIGINT at their default, as from a
    terminal. A test run under nohup ignores SIGHUP, one started in the background by a
    shell without job control ignores SIGINT, and the command keeps an inherited ignore on
    purpose (docs/robustness.md)."""
    for signum in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, signal.SIG_DFL)


def _paused_run(config: Path, gate: Path) -> subprocess.Popen:
    """`run` on the embedded server, paused inside the first image's transaction."""
    env = {k: v for k, v in os.environ.items() if k != ENV_URL}
    env |= {"PYTHONPATH": str(ROOT), "RNA_LOCALIZATION_TEST_PAUSE_AT": f"extract:1@{gate}"}
    process = subprocess.Popen([sys.executable, "-m", "rna_localization.cli", "run", "--config",
                                str(config)], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, preexec_fn=_default_signals)
    _wait_for(gate.exists, "the run never reached its first image")
    return process


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_stops_the_embedded_server_the_command_started(tmp_path, signum):
    config = write_dataset(tmp_path / "data", database_name="terminated")
    process = _paused_run(config, tmp_path / "gate")
    postmaster = _postmaster(config.parent / ".pgdata")
    assert _alive(postmaster)
    process.send_signal(signum)
    code, error = _finished(process)
    assert code == 128 + signum
    assert "Traceback" not in error
    assert error.splitlines()[-1] == (f"terminated ({signal.Signals(signum).name}): finished "
                                      f"images are kept; run the command again to resume.")
    _wait_for(lambda: not _alive(postmaster), "the server outlived the terminated command", 30)


def test_ctrl_c_is_one_line_and_130_and_stops_the_server(tmp_path):
    config = write_dataset(tmp_path / "data", database_name="interrupted")
    process = _paused_run(config, tmp_path / "gate")
    postmaster = _postmaster(config.parent / ".pgdata")
    process.send_signal(signal.SIGINT)
    code, error = _finished(process)
    assert code == 130
    assert "Traceback" not in error
    assert error.splitlines()[-1] == _INTERRUPTED
    _wait_for(lambda: not _alive(postmaster), "the server outlived the interrupted command", 30)


_INTERRUPTED = "interrupted: finished images are kept; run the command again to resume."


@pytest.mark.parametrize("module", ["numpy", "pandas", "scipy"])
def test_ctrl_c_in_the_first_second_is_one_line(tmp_path, module):
    """While Python imports the pipeline's libraries: no import traceback.

    ``-X importtime`` reports each import as it ends: the signal is sent right
    after `module` is imported, whatever the machine's speed. The run waits at
    its first image until the signal comes, so it cannot end first; a signal
    that lands after the imports anyway (a loaded machine) is a skip, not a
    pass: the run was no longer importing.

    The installed ``rna-localization`` script runs, as a user's terminal would,
    not ``python -m``: CPython marks an interrupt that escapes an ``exec`` or
    ``eval`` of a string as unhandled even when it is caught later (dataclasses,
    namedtuples and library code, e.g. scipy's array-API layer, run such strings
    while these libraries import), and under ``-m`` it then ends the process by
    SIGINT (exit -2) after the command has printed its line and returned 130. A
    script's exit status is the one it returns.
    """
    config = write_dataset(tmp_path / "data", database_name="early")
    gate = tmp_path / "gate"  # never removed: the run cannot end before the signal
    script = Path(sysconfig.get_path("scripts")) / "rna-localization"  # what `make install` wrote
    assert script.is_file(), f"{script} is missing: install the package (make install)"
    process = subprocess.Popen([sys.executable, "-X", "importtime", str(script),
                                "run", "--config", str(config)],
                               env={k: v for k, v in os.environ.items() if k != ENV_URL}
                               | {"PYTHONPATH": str(ROOT),
                                  "RNA_LOCALIZATION_TEST_PAUSE_AT": f"extract:1@{gate}"},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=_default_signals)
    for line in process.stderr:
        if line.startswith("import time:") and line.split("|")[-1].strip() == module:
            process.send_signal(signal.SIGINT)
            break
    else:
        pytest.fail(f"{module} was never imported")
    code, error = _finished(process)
    if gate.exists():  # the run had passed its imports (the pause is another test's case)
        pytest.skip("the signal landed after the imports (a loaded machine)")
    assert code == 130, error[-3000:]
    assert "Traceback" not in error
    assert [line for line in error.splitlines() if not line.startswith("import time:")] == [
        _INTERRUPTED]


def test_a_killed_postmaster_adds_no_traceback_at_exit(tmp_path):
    pgdata = tmp_path / ".pgdata"
    script = ("import os, signal, time; from pathlib import Path; "
              "from rna_localization.db import start_server; "
              f"start_server({str(pgdata)!r}); "
              f"os.kill(int(Path({str(pgdata / 'postmaster.pid')!r}).read_text().split()[0]), "
              "signal.SIGKILL); time.sleep(1); print('exiting')")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert result.returncode == 0
    assert result.stdout == "exiting\n"
    assert result.stderr == ""


def test_a_run_under_nohup_survives_sighup(tmp_path):
    """nohup ignores SIGHUP so that a run outlives its terminal: that must stay so."""
    config = write_dataset(tmp_path / "data", database_name="nohup")
    gate = tmp_path / "gate"
    env = {k: v for k, v in os.environ.items() if k != ENV_URL}
    env |= {"PYTHONPATH": str(ROOT), "RNA_LOCALIZATION_TEST_PAUSE_AT": f"extract:1@{gate}"}
    process = subprocess.Popen(["nohup", sys.executable, "-m", "rna_localization.cli", "run",
                                "--config", str(config)], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    _wait_for(gate.exists, "the run never reached its first image")
    process.send_signal(signal.SIGHUP)
    time.sleep(1)
    assert process.poll() is None  # still running
    gate.unlink()
    code, error = _finished(process, timeout=120)
    assert code == 0, error
