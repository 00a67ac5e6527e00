"""The embedded PostgreSQL server: a pip-installed PostgreSQL (pgserver) on a Unix socket.

The server's files live in ``<data_dir>/.pgdata``; it listens on a Unix socket
only (no TCP port) and trusts the local user, so no password exists to leak.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

from .._errors import PipelineError

__all__ = ["client_program", "embedded_url", "server_status", "start_server", "stop_server"]

# pgserver warns when XDG_RUNTIME_DIR is unset, logs each pg_ctl call, and logs a failed
# start with the server's whole log: noise for users, who get one sentence instead.
logging.getLogger("pgserver").setLevel(logging.CRITICAL)

#: Lines of a complete ``postmaster.pid`` (PostgreSQL writes them one by one while starting).
_POSTMASTER_LINES = 8
#: Seconds to wait for a server that is still writing its ``postmaster.pid``.
_STARTING_WAIT = 10
#: Seconds to wait for a server pgserver gave up on after its 10 s (a busy machine).
_SLOW_START_WAIT = 120
#: Object ids from here up are databases someone created (PostgreSQL's FirstNormalObjectId).
_FIRST_USER_OID = 16384
# Characters a path may hold to pass unquoted through the shell pg_ctl starts postgres with.
_SHELL_SAFE = re.compile(r"[\w@%+=:,./-]+")

_handles: dict[Path, object] = {}

#: In ``.pgdata`` while a server started by ``db start`` must outlive the commands using it.
KEEP_RUNNING_FILE = ".keep_running"


def _pgserver():
    """Import pgserver quietly (it warns about XDG_RUNTIME_DIR at import)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver
        import pgserver._commands
        import pgserver.postgres_server
        import pgserver.utils
    return pgserver


def _running_info(pgdata: Path):
    try:
        info = _pgserver().utils.PostmasterInfo.read_from_pgdata(pgdata)
    except (AssertionError, ValueError, OSError):  # half-written by a server killed while starting
        return None
    if info is not None and info.is_running() and info.status == "ready":
        return info
    return None


def start_server(pgdata: str | os.PathLike, *, keep_running: bool = False) -> str:
    """Start the embedded server in `pgdata`, or reuse the one running there.

    Parameters
    ----------
    pgdata : path-like
        The server's folder, created on first use (initdb takes a second).
    keep_running : bool
        Leave the server running when this process exits (``db start``; until
        :func:`stop_server`). Otherwise the server stops when the last process
        using it exits, whichever started it (overlapping commands, a command
        killed while others used its server), unless ``db start`` started it.

    Returns
    -------
    str
        The server's libpq URL, ``postgresql://postgres:@/postgres?host=<socket dir>``.
    """
    pgdata = Path(pgdata).expanduser().resolve()
    if pgdata in _handles:
        return _handles[pgdata].get_uri()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    if pgdata.is_dir():
        _repair(pgdata)
    already = pgdata.is_dir() and _running_info(pgdata) is not None
    _forget_dead_handles(pgdata, server_running=already)
    keep = pgdata / KEEP_RUNNING_FILE
    if not already:
        keep.unlink(missing_ok=True)  # left by a `db start` whose server is gone
    # Stopped when the last process using it exits: when this one started it, and when it
    # runs for others (each command that started or joined it is in pgserver's list of its
    # users; the last to exit stops it), or for no one (its starter was killed: an orphan).
    # Left running only when `db start` asked for it.
    mode = None if keep_running or (already and keep.is_file()) else "stop"
    try:
        server = _get_server(pgdata, mode)
    except (subprocess.SubprocessError, AssertionError, RuntimeError, OSError) as error:
        if not _timed_out(error):
            raise PipelineError(_start_failure(pgdata, error)) from error
        # pgserver gives pg_ctl 10 s; on a busy machine the server is still starting after
        # that. Once it is ready, pgserver takes it for a running server and uses it.
        deadline = time.monotonic() + _SLOW_START_WAIT
        while _running_info(pgdata) is None and time.monotonic() < deadline:
            time.sleep(0.2)
        try:
            server = _get_server(pgdata, mode)
        except (subprocess.SubprocessError, AssertionError, RuntimeError, OSError) as again:
            raise PipelineError(_start_failure(pgdata, again)) from again
    # pgserver's own exit handler prints a traceback when the server died first.
    atexit.unregister(server._cleanup)
    if keep_running:
        keep.touch()
    _protect_socket_dir(server.get_postmaster_info().socket_dir)
    _handles[pgdata] = server
    return server.get_uri()


@atexit.register
def _stop_at_exit() -> None:
    """At exit, let each server handle of this process go (stopping its server if last user).

    A server that is already gone (its postmaster killed) has nothing to stop:
    no traceback for it, nor for any other failure of this last step.
    """
    for pgdata, handle in list(_handles.items()):
        _handles.pop(pgdata, None)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                handle._cleanup()
        except Exception as error:  # noqa: BLE001 - exiting anyway; one line, no traceback
            if _running_info(pgdata) is not None:
                print(f"warning: could not stop the embedded server in {pgdata} "
                      f"({type(error).__name__}: {error}); `rna-localization db stop` stops it.",
                      file=sys.stderr)


def _get_server(pgdata: Path, mode: str | None):
    try:
        with warnings.catch_warnings(), _shell_safe_socket_dir():
            warnings.simplefilter("ignore")
            return _pgserver().get_server(pgdata, cleanup_mode=mode)
    except BaseException:
        # pgserver keeps the failed handle (returned again by the next call) and its atexit hook.
        failed = _pgserver().postgres_server.PostgresServer._instances.pop(pgdata, None)
        if failed is not None:
            atexit.unregister(failed._cleanup)
        raise


def _timed_out(error: BaseException | None) -> bool:
    """Whether `error` is, or was raised while handling, a subprocess timeout."""
    while error is not None:
        if isinstance(error, subprocess.TimeoutExpired):
            return True
        error = error.__cause__ or error.__context__
    return False


def _start_failure(pgdata: Path, error: BaseException) -> str:
    """One sentence: why the server in `pgdata` did not start, and what to do."""
    log = pgdata / "log"
    lines = log.read_text(errors="replace").splitlines() if log.is_file() else []
    reasons = [line for line in lines if "FATAL" in line or "PANIC" in line] or lines[-1:]
    if reasons:
        reason = reasons[-1].strip()
    elif _timed_out(error):
        reason = "it did not answer in time"
    else:
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return (f"the embedded PostgreSQL server in {pgdata} did not start ({reason}); its log is "
            f"{log}. Stop any other program using that folder and run the command again; if it "
            f"still fails, move {pgdata} elsewhere (it holds your tables) to start a new, empty "
            f"database, or set database.url to another server.")


def _process_is_postgres(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).name() in ("postgres", "postmaster")
    except (psutil.Error, ValueError):
        return False


def _postmaster_pid(pgdata: Path) -> tuple[int | None, int]:
    """The pid of ``postmaster.pid`` (None if unreadable) and how many lines it has."""
    try:
        lines = (pgdata / "postmaster.pid").read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return None, 0
    try:
        return int(lines[0]), len(lines)
    except (IndexError, ValueError):
        return None, len(lines)


def _repair(pgdata: Path) -> None:
    """Undo what a process killed while starting the server leaves behind.

    A ``postmaster.pid`` of no running PostgreSQL (the server was killed, or the
    machine restarted and its pid now belongs to another program) is removed:
    pgserver would take the other program for the server, and cannot read a
    file killed half-written. A server still writing it is waited for. A
    cluster whose first initialization was killed (no ``PG_VERSION`` or no
    ``global/pg_control``: it never held a database) is made again, with a
    warning; one holding databases is never touched.
    """
    pid_file = pgdata / "postmaster.pid"
    pid, n_lines = _postmaster_pid(pgdata)
    deadline = time.monotonic() + _STARTING_WAIT
    while pid is not None and n_lines < _POSTMASTER_LINES and _process_is_postgres(pid) \
            and time.monotonic() < deadline:
        time.sleep(0.2)  # a server starting right now (another command started it)
        pid, n_lines = _postmaster_pid(pgdata)
    if pid_file.exists() and (pid is None or not _process_is_postgres(pid)):
        pid_file.unlink(missing_ok=True)
    elif pid_file.exists():
        return  # a live server: never touch its files
    if not any(pgdata.iterdir()):
        return  # empty: pgserver initializes it
    if (pgdata / "PG_VERSION").is_file() and (pgdata / "global" / "pg_control").is_file():
        return
    base = pgdata / "base"
    databases = [p.name for p in base.iterdir() if p.name.isdigit()
                 and int(p.name) >= _FIRST_USER_OID] if base.is_dir() else []
    if databases:
        msg = (f"the embedded PostgreSQL server's folder {pgdata} is damaged (no "
               f"{'global/pg_control' if (pgdata / 'PG_VERSION').is_file() else 'PG_VERSION'}) "
               f"but holds databases: restore a backup into a new folder "
               f"(`rna-localization restore`), or move {pgdata} elsewhere to start afresh.")
        raise PipelineError(msg)
    warnings.warn(f"the embedded PostgreSQL server's folder {pgdata} was left half-made by an "
                  f"interrupted first start (it held no data); it is made again.",
                  UserWarning, stacklevel=3)
    for child in pgdata.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


@contextmanager
def _shell_safe_socket_dir():
    """Make pgserver put the server's socket in a folder whose path has no space.

    pgserver passes ``-k <socket dir>`` to postgres through pg_ctl, which starts
    it with a shell command line, unquoted: a space in the path (``My Data``)
    splits it, and the server never starts. Such a socket goes to a private
    folder of the runtime directory instead (pgserver's own fallback for paths
    too long for a socket), keyed by the data folder.
    """
    module = _pgserver().postgres_server
    original = module.find_suitable_socket_dir

    def find(pgdata, runtime_path):
        found = original(pgdata, runtime_path)
        if _SHELL_SAFE.fullmatch(str(found)):
            return found
        key = hashlib.sha256(f"{pgdata}-{pgdata.stat().st_ino}".encode()).hexdigest()[:10]
        folder = Path(runtime_path) / key
        if not _SHELL_SAFE.fullmatch(str(folder)):
            folder = Path(tempfile.gettempdir()) / f"rna-localization-pg-{key}"
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        return folder

    module.find_suitable_socket_dir = find
    try:
        yield
    finally:
        module.find_suitable_socket_dir = original


def _protect_socket_dir(socket_dir) -> None:
    """Let only the server's owner reach its socket: the server trusts whoever connects.

    The socket is in pgdata (0700, from initdb) unless that path is too long
    for a Unix socket; pgserver then uses a folder under the user's runtime
    directory, which it makes world-writable when run as root.
    """
    if socket_dir is None or os.name != "posix":
        return
    socket_dir = Path(socket_dir)
    if os.geteuid() != 0 and socket_dir.stat().st_uid != os.geteuid():
        return  # another user's server: theirs to protect
    try:
        if os.geteuid() == 0:  # the server runs as the `pgserver` user; root gets in regardless
            import pwd

            owner = pwd.getpwnam("pgserver")
            os.chown(socket_dir, owner.pw_uid, owner.pw_gid)
        socket_dir.chmod(0o700)
    except (OSError, KeyError) as error:
        msg = f"cannot make the server's socket folder {socket_dir} private: {error}"
        raise PipelineError(msg) from error


def _forget_dead_handles(pgdata: Path, *, server_running: bool) -> None:
    """Drop pids of dead processes from pgserver's list of the server's users.

    pgserver stops the server when the last process in that list exits; a
    process that was killed (a notebook kernel, kill -9) never removes itself,
    and the server would then never be stopped again.
    """
    handles = pgdata / ".handle_pids.json"
    if not handles.is_file():
        return
    import psutil

    with _pgserver().postgres_server.PostgresServer._lock:
        try:
            pids = json.loads(handles.read_text())
        except ValueError:
            pids = []
        alive = [p for p in pids if server_running and psutil.pid_exists(p)]
        if alive != pids:
            handles.write_text(json.dumps(alive))


def embedded_url(pgdata: str | os.PathLike) -> str | None:
    """URL of the server running in `pgdata`, or None when none runs."""
    pgdata = Path(pgdata).expanduser().resolve()
    if not pgdata.is_dir():
        return None
    info = _running_info(pgdata)
    return info.get_uri() if info is not None else None


def server_status(pgdata: str | os.PathLike) -> str:
    """One line: running (with its socket) or stopped."""
    pgdata = Path(pgdata).expanduser().resolve()
    if not (pgdata / "PG_VERSION").exists():
        return f"no embedded server in {pgdata} yet (it is created on first use)"
    url = embedded_url(pgdata)
    return f"running: {url.replace(':@', '@')}" if url else f"stopped ({pgdata})"


def stop_server(pgdata: str | os.PathLike) -> bool:
    """Stop the server running in `pgdata`; False if none was running."""
    pgdata = Path(pgdata).expanduser().resolve()
    handle = _handles.pop(pgdata, None)
    if handle is not None:  # we stop it now: nothing to do at exit
        handle.global_process_id_list.get_and_remove(os.getpid())
    (pgdata / KEEP_RUNNING_FILE).unlink(missing_ok=True)
    if not pgdata.is_dir() or _running_info(pgdata) is None:
        return False
    user = "pgserver" if os.name == "posix" and os.geteuid() == 0 else None
    _pgserver()._commands.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=user)
    return True


def client_program(name: str) -> str:
    """Path of a PostgreSQL client (psql, pg_dump, pg_restore) shipped with pgserver.

    Falls back to the one on PATH; raises FileNotFoundError naming it if neither exists.
    """
    try:
        candidate = Path(_pgserver()._commands.POSTGRES_BIN_PATH) / name
        if candidate.is_file():
            return str(candidate)
    except ImportError:
        pass
    found = shutil.which(name)
    if found:
        return found
    msg = f"PostgreSQL client {name!r} not found: install pgserver (pip install pgserver) or PostgreSQL."
    raise FileNotFoundError(msg)


def run_client(name: str, *args: str, check: bool = True,
               env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run a PostgreSQL client program, raising with its stderr on failure."""
    result = subprocess.run([client_program(name), *args], capture_output=True, text=True,
                            check=False, env=env)
    if check and result.returncode != 0:
        msg = f"{name} failed: {result.stderr.strip() or result.stdout.strip()}"
        raise PipelineError(msg)
    return result
