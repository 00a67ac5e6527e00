"""The embedded PostgreSQL server: a pip-installed PostgreSQL (pgserver) on a Unix socket.

The server's files live in ``<data_dir>/.pgdata``; it listens on a Unix socket
only (no TCP port) and trusts the local user, so no password exists to leak.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import shutil
import subprocess
import warnings
from pathlib import Path

from .._errors import PipelineError

__all__ = ["client_program", "embedded_url", "server_status", "start_server", "stop_server"]

# pgserver warns when XDG_RUNTIME_DIR is unset and logs each pg_ctl call: noise for users.
logging.getLogger("pgserver").setLevel(logging.WARNING)

_handles: dict[Path, object] = {}


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
    info = _pgserver().utils.PostmasterInfo.read_from_pgdata(pgdata)
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
        Leave the server running when this process exits (``db start``).
        Otherwise a server this process started stops when it exits; one that
        was already running is left as it was.

    Returns
    -------
    str
        The server's libpq URL, ``postgresql://postgres:@/postgres?host=<socket dir>``.
    """
    pgdata = Path(pgdata).expanduser().resolve()
    if pgdata in _handles:
        return _handles[pgdata].get_uri()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    already = pgdata.is_dir() and _running_info(pgdata) is not None
    _forget_dead_handles(pgdata, server_running=already)
    mode = None if (keep_running or already) else "stop"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        server = _pgserver().get_server(pgdata, cleanup_mode=mode)
    _protect_socket_dir(server.get_postmaster_info().socket_dir)
    _handles[pgdata] = server
    return server.get_uri()


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
    if handle is not None:  # we stop it now: pgserver must not try again at exit
        atexit.unregister(handle._cleanup)
        handle.global_process_id_list.get_and_remove(os.getpid())
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
