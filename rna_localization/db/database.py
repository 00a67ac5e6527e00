"""Which database to use, and connections to it.

``database.url = ""`` → the embedded server under ``<data_dir>/.pgdata`` (or,
when set, the server in ``RNA_LOCALIZATION_DATABASE_URL``: how tests and labs
point every run at one server). Otherwise the URL's server; its database name
when it has one, else ``database.name``. Passwords are never taken from a
notebook: libpq reads them from the URL, ``PGPASSWORD`` or ``~/.pgpass``, and
nothing here prints them.
"""

from __future__ import annotations

import os
import re
import selectors
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote, urlencode

import pandas as pd
import psycopg2
import psycopg2.errors
from psycopg2 import sql
from psycopg2.extensions import STATUS_READY, TRANSACTION_STATUS_IDLE, make_dsn, parse_dsn

from ..config import Config, check_identifier
from .server import start_server

__all__ = ["ENV_URL", "Database", "lab_server_url", "reuse_connections"]

#: Environment variable naming a PostgreSQL server to use instead of the embedded one.
ENV_URL = "RNA_LOCALIZATION_DATABASE_URL"


# Idle connections kept between transactions inside reuse_connections(), per process id
# and database: a forked child never touches (not even closes) its parent's sockets.
_reuse_lock = threading.Lock()
_reuse_depth: dict[int, int] = {}
_idle: dict[int, dict[str, list]] = {}
# At most this many idle connections per database are kept (threads may hold several).
_MAX_IDLE = 4


@contextmanager
def reuse_connections() -> Iterator[None]:
    """Within this block, transactions of this process reuse one connection per database.

    Opening a connection costs a PostgreSQL backend start (milliseconds),
    more than most of the pipeline's transactions. Inside the block, a
    committed transaction leaves its connection open for the next one of the
    same database (checked before it is used again, without a round trip: a
    connection the server ended meanwhile is replaced); one that failed
    closes it. A transaction begun inside
    another gets a connection of its own, as outside the block. When the
    outermost block ends, the idle connections are closed: nothing stays open
    between steps (so a server stop or ``DROP DATABASE`` is never held up).
    Nested blocks, and blocks in other threads of the process, share the pool.

    Examples
    --------
    >>> with reuse_connections():
    ...     pass  # e.g. db.query(...) twice: one connection
    """
    pid = os.getpid()
    with _reuse_lock:
        _reuse_depth[pid] = _reuse_depth.get(pid, 0) + 1
    try:
        yield
    finally:
        with _reuse_lock:
            _reuse_depth[pid] -= 1
            idle = _idle.pop(pid, {}) if _reuse_depth[pid] == 0 else {}
        for connection in (c for pooled in idle.values() for c in pooled):
            connection.close()


def _take_idle(dsn: str):
    """An idle, usable connection to `dsn` kept by :func:`reuse_connections`, or None."""
    pid = os.getpid()
    while True:
        with _reuse_lock:
            pooled = _idle.get(pid, {}).get(dsn, [])
            if not pooled:
                return None
            connection = pooled.pop()
        if _alive(connection):
            return connection
        connection.close()


def _alive(connection) -> bool:
    """Whether a kept connection can still be used (a server restart or an idle timeout ends it).

    Checked without a round trip: an idle connection has nothing to read, and a
    server that ended it sent its error and closed the socket, which then reads
    as ready. (Anything else unread, e.g. a setting the server reports after a
    reload, only costs a new connection.) The socket is polled through
    :mod:`selectors` (epoll or poll: any descriptor number, where
    ``select.select`` fails from 1024 on). A connection the server ends in the
    few milliseconds before it is reused can still pass: its first statement
    then fails like any connection dropped mid-run (the task is retried on a
    cluster; a serial run stops with the error, and running again resumes).
    """
    if connection.closed or connection.status != STATUS_READY:
        return False
    try:
        with selectors.DefaultSelector() as selector:
            selector.register(connection.fileno(), selectors.EVENT_READ)
            readable = selector.select(timeout=0)
    except (OSError, ValueError, psycopg2.Error):
        return False
    return not readable


def _keep_idle(dsn: str, connection) -> bool:
    """Keep a connection whose transaction ended cleanly, inside :func:`reuse_connections`."""
    pid = os.getpid()
    with _reuse_lock:
        if not _reuse_depth.get(pid) or connection.closed:
            return False
        if connection.info.transaction_status != TRANSACTION_STATUS_IDLE:
            return False
        pooled = _idle.setdefault(pid, {}).setdefault(dsn, [])
        if len(pooled) >= _MAX_IDLE:
            return False
        pooled.append(connection)
        return True


def lab_server_url(database_name: str, db_user: str = "", db_host: str = "localhost",
                   db_port: int | None = None) -> str:
    """URL of a lab PostgreSQL server from the old pipeline's parameters.

    The old ``db_password`` has no place here: put it in ``~/.pgpass``
    (``host:port:database:user:password``, mode 600) or ``PGPASSWORD``; libpq
    reads both.

    Examples
    --------
    >>> lab_server_url("demo", "pearl", "db.lab.org", 5432)
    'postgresql://pearl@db.lab.org:5432/demo'
    """
    user = f"{quote(db_user)}@" if db_user else ""
    port = f":{db_port}" if db_port else ""
    return f"postgresql://{user}{db_host}{port}/{quote(database_name)}"


_URL_START = re.compile(r"postgres(?:ql)?://", re.IGNORECASE)
# A URL as it appears in a message: up to white space or a quote.
_URL_IN_TEXT = re.compile(r"postgres(?:ql)?://[^\s'\"<>]*", re.IGNORECASE)
_KEY_PASSWORD = re.compile(r"password\s*=\s*('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)

_ENCODE_HINT = (
    "percent-encode the user name and password (%2F for '/', %40 for '@', %3A for ':', %25 for "
    "'%': urllib.parse.quote(password, safe='')), or better, leave the password out of the URL "
    "and put it in ~/.pgpass or PGPASSWORD"
)


def _mask_url(url: str) -> str:
    """`url` with everything between ``://`` and its last ``@`` after the user name replaced by ``***``.

    The last ``@``, not the first: a password written with a raw ``@`` or ``/``
    is hidden whole. When an ``@`` stands in the query instead, more than the
    password is hidden, never less.
    """
    head, rest = url.split("://", 1)
    at = rest.rfind("@")
    if at < 0:
        return url
    user, colon, _ = rest[:at].partition(":")
    return f"{head}://{user}:***@{rest[at + 1:]}" if colon else url


def _redact(text: str) -> str:
    """`text` with any password of a libpq URL or key=value string replaced by ``***``."""
    text = _URL_IN_TEXT.sub(lambda m: _mask_url(m.group()), text)
    return _KEY_PASSWORD.sub("password=***", text)


def _check_url_delimiters(url: str) -> None:
    """Refuse a URL whose user name or password holds a raw ``/`` or ``@``.

    libpq takes the user information to end at the first ``@`` or ``/``: the
    rest of such a password would be read as host, port or database name, and
    shown wherever those are (``rna-localization db url``, error messages).
    The message quotes nothing of the URL.
    """
    start = _URL_START.match(url)
    if start is None:
        return
    rest = url[start.end():]
    first = re.search(r"[@/]", rest)
    if first is not None and first.group() == "@":
        rest = rest[first.end():]  # the host part, as libpq reads it
    host_end = re.search(r"[/?]", rest)
    host = rest[:host_end.start()] if host_end else rest
    path = rest[host_end.end():].partition("?")[0] if host_end and host_end.group() == "/" else ""
    if "@" in host or "@" in path:
        msg = (f"database.url has a '/' or '@' in its user name or password, which would be read as "
               f"part of the host or database name: {_ENCODE_HINT}.")
        raise ValueError(msg)


def _params(url_or_dsn: str) -> dict[str, str]:
    _check_url_delimiters(url_or_dsn)
    try:
        return parse_dsn(url_or_dsn)
    except psycopg2.ProgrammingError as error:
        # libpq quotes the piece it could not read, which may be (part of) the password:
        # show it only when the string holds none.
        is_url = _URL_START.match(url_or_dsn) is not None
        has_secret = (is_url and "@" in url_or_dsn) or "password" in url_or_dsn.lower()
        detail = ("not shown, as the URL holds a password; if the password has a '%' or another "
                  f"special character, {_ENCODE_HINT}") if has_secret else _redact(str(error).strip())
        msg = f"database.url is not a PostgreSQL URL (postgresql://user@host:port/db): {detail}"
        raise ValueError(msg) from None  # the chained error could show the password


def _first_line(error: Exception) -> str:
    """The first line of a driver error, any password in it masked."""
    return _redact(str(error).strip().splitlines()[0]) if str(error).strip() else type(error).__name__


class Database:
    """One database on one PostgreSQL server.

    Parameters
    ----------
    dsn : str
        A libpq URL or ``key=value`` string naming the database.
    """

    def __init__(self, dsn: str):
        self.dsn = dsn
        self.params = _params(dsn)
        self._engine = None

    # ------------------------------------------------------------------ building
    @classmethod
    def from_config(cls, config: Config, *, keep_server: bool = False) -> Database:
        """The database a config names, created if missing (server started if embedded)."""
        server = config.database.url or os.environ.get(ENV_URL, "")
        name = config.database.name
        if config.database.url:
            name = _params(config.database.url).get("dbname") or name
        elif not server:
            if not config.data.data_dir.is_dir():  # a typo must not create a server somewhere
                msg = f"data directory {config.data.data_dir} does not exist; check data.data_dir."
                raise FileNotFoundError(msg)
            server = start_server(config.data.data_dir / ".pgdata", keep_running=keep_server)
        check_identifier(name, "database.name")
        params = _params(server)
        params["dbname"] = name
        database = cls(make_dsn(**params))
        database.create()
        return database

    def with_name(self, name: str) -> Database:
        """The database `name` on the same server (not created)."""
        check_identifier(name, "database name")
        return Database(make_dsn(**{**self.params, "dbname": name}))

    def create(self, *, maintenance_db: str = "postgres") -> None:
        """Create this database on its server if it does not exist yet.

        It is created from `maintenance_db`, which the user must be allowed to
        reach; on a lab server where that is not so, ask its administrator to
        create the database once.
        """
        name = self.params.get("dbname", "")
        try:
            psycopg2.connect(self.dsn).close()
            return
        except psycopg2.OperationalError as error:
            if "does not exist" not in str(error):
                msg = f"cannot connect to {self.url}: {_first_line(error)}"
                raise ConnectionError(msg) from error
        try:
            admin = psycopg2.connect(make_dsn(**{**self.params, "dbname": maintenance_db}))
        except psycopg2.OperationalError as error:
            msg = (f"database {name!r} does not exist and cannot be created from "
                   f"{maintenance_db!r}: {_first_line(error)}")
            raise ConnectionError(msg) from error
        try:
            admin.autocommit = True
            with admin.cursor() as cursor:
                cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
                if cursor.fetchone() is None:
                    try:
                        cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
                    except (psycopg2.errors.DuplicateDatabase, psycopg2.errors.UniqueViolation):
                        pass  # created by a concurrent run (which of the two depends on timing)
        finally:
            admin.close()

    # --------------------------------------------------------------- connecting
    @property
    def name(self) -> str:
        return self.params.get("dbname", "")

    @property
    def url(self) -> str:
        """A libpq URL for psql and SQLAlchemy, without any password."""
        user = self.params.get("user", "")
        host = self.params.get("host", "")
        port = self.params.get("port", "")
        query = {k: v for k, v in self.params.items()
                 if k not in ("user", "host", "port", "dbname") and "password" not in k}
        netloc = f"{quote(user, safe='')}@" if user else ""
        if host.startswith("/"):
            query = {"host": host, **query}
            host = ""
        netloc += host + (f":{port}" if port else "")
        suffix = f"?{urlencode(query, safe='/')}" if query else ""
        return f"postgresql://{netloc}/{quote(self.name, safe='')}{suffix}"

    def __repr__(self) -> str:
        return f"Database({self.url!r})"

    def connect(self):
        """A new psycopg2 connection (the caller closes it)."""
        return psycopg2.connect(self.dsn)

    def client_connection(self) -> tuple[str, dict[str, str]]:
        """How to hand this database to psql or pg_dump without the password on their command line.

        Returns
        -------
        dsn : str
            A libpq connection string without any password (command lines are
            visible to every user of the machine).
        env : dict
            ``os.environ`` plus ``PGPASSWORD`` when the URL held a password.
        """
        params = {k: v for k, v in self.params.items() if k != "password"}
        env = dict(os.environ)
        if self.params.get("password"):
            env["PGPASSWORD"] = self.params["password"]
        return make_dsn(**params), env

    @contextmanager
    def transaction(self) -> Iterator[psycopg2.extensions.cursor]:
        """A cursor in one transaction: committed on success, rolled back on error.

        On a new connection, closed at the end; inside :func:`reuse_connections`,
        on the one the last committed transaction left open, kept for the next.
        """
        connection = _take_idle(self.dsn) or self.connect()
        committed = False
        try:
            with connection, connection.cursor() as cursor:
                yield cursor
            committed = True
        finally:
            if not (committed and _keep_idle(self.dsn, connection)):
                connection.close()

    @property
    def engine(self):
        """A SQLAlchemy engine on this database (for pandas and custom queries)."""
        if self._engine is None:
            from sqlalchemy import create_engine

            self._engine = create_engine("postgresql+psycopg2://", creator=self.connect)
        return self._engine

    def query(self, statement, params=None) -> pd.DataFrame:
        """Run a SELECT and return its rows as a DataFrame."""
        with self.transaction() as cursor:
            if isinstance(statement, sql.Composable):
                statement = statement.as_string(cursor.connection)
            cursor.execute(statement, params)
            columns = [d.name for d in cursor.description]
            return pd.DataFrame(cursor.fetchall(), columns=columns)

    def ping(self) -> None:
        """Ask the server for ``SELECT 1``: raises (psycopg2.Error) if the database does not answer."""
        with self.transaction() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()

    def tables(self) -> list[str]:
        """Tables of the public schema, sorted."""
        rows = self.query(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY table_name"
        )
        return rows["table_name"].tolist()

    def row_counts(self) -> pd.Series:
        """Number of rows of every table, indexed by table name."""
        counts = {}
        with self.transaction() as cursor:
            for table in self.tables():
                cursor.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table)))
                counts[table] = cursor.fetchone()[0]
        return pd.Series(counts, name="rows", dtype="int64")

    def columns(self, table: str) -> list[str]:
        """Columns of a table in order (empty if the table does not exist)."""
        # The catalog itself, not the information_schema view: a tenth of the time, and
        # the steps ask this several times each.
        rows = self.query(
            "SELECT a.attname AS column_name FROM pg_attribute AS a "
            "JOIN pg_class AS c ON c.oid = a.attrelid AND c.relkind IN ('r', 'p', 'v', 'm', 'f') "
            "WHERE a.attrelid = to_regclass('public.' || quote_ident(%s)) AND a.attnum > 0 "
            "AND NOT a.attisdropped ORDER BY a.attnum",
            (table,),
        )
        return rows["column_name"].tolist()
