"""Who can reach the database, and where a password could leak.

The embedded server trusts whoever reaches its Unix socket, so the socket's
folder must be its owner's alone and there must be no TCP port. A lab server's
password, even when written into ``database.url``, must never be printed,
logged, or put on a command line.
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit

import psycopg2
import pytest
from psycopg2 import sql

from rna_localization import load_config
from rna_localization.cli import main
from rna_localization.db import Database, start_server, stop_server
from rna_localization.db.backup import export_tables

SECRET = "s3cret"


def _socket_dir(url: str) -> Path | None:
    host = parse_qs(urlsplit(url).query).get("host", [""])[0]
    return Path(host) if host.startswith("/") else None


def _assert_private_and_socket_only(url: str) -> None:
    socket_dir = _socket_dir(url)
    assert socket_dir is not None, f"{url} is not a Unix-socket server"
    mode = stat.S_IMODE(socket_dir.stat().st_mode)
    assert mode & 0o077 == 0, f"{socket_dir} has mode {oct(mode)}: others can reach the socket"
    assert (socket_dir / ".s.PGSQL.5432").is_socket()
    connection = psycopg2.connect(url)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SHOW listen_addresses")
            assert cursor.fetchone()[0] == ""  # no TCP port at all
    finally:
        connection.close()


def test_embedded_server_listens_on_a_private_unix_socket_only(postgres_server):
    if _socket_dir(postgres_server) is None:
        pytest.skip("RNA_LOCALIZATION_DATABASE_URL names a TCP server, not the embedded one")
    _assert_private_and_socket_only(postgres_server)


def test_socket_outside_pgdata_is_private_too(tmp_path):
    """A pgdata path too long for a Unix socket makes pgserver put it in a runtime folder."""
    pgdata = tmp_path / ("long" * 30) / ".pgdata"
    url = start_server(pgdata)
    try:
        assert _socket_dir(url) != pgdata  # the case under test
        _assert_private_and_socket_only(url)
    finally:
        stop_server(pgdata)


# ---------------------------------------------------------------- passwords
def _url_with_password(server_url: str, database: str, host: str | None = None) -> str:
    """The test server (trust: any password is accepted) addressed with a password in the URL."""
    socket_dir = host or _socket_dir(server_url)
    return f"postgresql://postgres:{SECRET}@/{database}?host={socket_dir}"


@pytest.fixture
def password_config(dataset, postgres_server, database_name):
    if _socket_dir(postgres_server) is None:
        pytest.skip("needs the embedded test server")
    url = _url_with_password(postgres_server, database_name)
    text = dataset.read_text().replace("[database]\n", f'[database]\nurl = "{url}"\n', 1)
    dataset.write_text(text)
    Database(postgres_server).with_name(database_name).create()  # a URL's database must exist
    return dataset


def test_database_url_and_repr_never_show_the_password(password_config):
    db = Database.from_config(load_config(password_config))
    assert SECRET in db.dsn  # libpq needs it to connect...
    assert SECRET not in db.url  # ...but nothing shown to a user carries it
    assert SECRET not in repr(db)
    assert SECRET not in str(db)
    with_ssl = Database(db.dsn + f" sslpassword={SECRET}x sslmode=disable")
    assert SECRET not in with_ssl.url
    psycopg2.connect(db.url.replace("postgresql://", "postgresql://", 1)).close()  # still usable


def test_client_programs_get_the_password_from_the_environment(password_config):
    db = Database.from_config(load_config(password_config))
    dsn, env = db.client_connection()
    assert SECRET not in dsn  # command lines are visible to every user (ps, /proc)
    assert env["PGPASSWORD"] == SECRET


def test_cli_never_prints_or_logs_the_password(password_config, tmp_path, capsys, caplog):
    caplog.set_level(logging.DEBUG)
    config = str(password_config)
    assert main(["db", "url", "--config", config]) == 0
    url = capsys.readouterr().out.strip()
    assert url.startswith("postgresql://postgres@/")
    psycopg2.connect(url).close()
    assert main(["extract", "--config", config]) == 0
    assert main(["backup", "--config", config, "--to", str(tmp_path / "db.dump")]) == 0
    assert main(["restore", "--config", config, "--from", str(tmp_path / "db.dump")]) == 0
    assert main(["export", "--config", config, "--to", str(tmp_path / "csv")]) == 0
    out, err = capsys.readouterr()
    assert SECRET not in out + err + caplog.text
    for path in tmp_path.rglob("*.csv"):
        assert SECRET not in path.read_text(encoding="utf-8")


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://postgres:{SECRET}@/demo?host=/nonexistent/socket/dir",  # no server there
        f"postgresql://postgres:{SECRET}@localhost:notaport/demo",  # bad port
        f"postgresql://postgres:{SECRET}@/demo?bogus=1",  # bad parameter
        f"host=/nonexistent password={SECRET} dbname",  # bad key=value string
    ],
)
def test_connection_errors_never_show_the_password(dataset, capsys, caplog, url):
    caplog.set_level(logging.DEBUG)
    dataset.write_text(dataset.read_text().replace("[database]\n", f"[database]\nurl = '{url}'\n", 1))
    assert main(["extract", "--config", str(dataset)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    assert err.count("\n") == 1, err  # one sentence, no traceback
    assert SECRET not in err + caplog.text


def test_no_password_in_the_environment_is_needed_for_the_embedded_server(postgres_server):
    if _socket_dir(postgres_server) is None:
        pytest.skip("needs the embedded test server")
    env_password = os.environ.get("PGPASSWORD")
    assert env_password is None or env_password not in postgres_server
    assert ":@" in postgres_server or "@" not in postgres_server  # pgserver's URL: no password


# ------------------------------------------------------------ export file names
ODD_TABLES = ["../../raw-data-metadata", "a/b", "a%2Fb", "..", ".hidden", "rna type"]


def test_export_file_names_never_leave_the_folder(dataset, capsys):
    """Table names come from the database (a restored dump, another tool): they are not paths."""
    config = load_config(dataset)
    db = Database.from_config(config)
    metadata_csv = config.metadata_path
    original = metadata_csv.read_bytes()
    with db.transaction() as cursor:
        for table in ODD_TABLES:
            cursor.execute(sql.SQL("CREATE TABLE {} (label text)").format(sql.Identifier(table)))
            cursor.execute(sql.SQL("INSERT INTO {} VALUES ({})").format(sql.Identifier(table), sql.Literal(table)))
    folder = config.output_dir / "backup"
    assert (folder / "../../raw-data-metadata.csv").resolve() == metadata_csv.resolve()  # the attack
    assert main(["export", "--config", str(dataset)]) == 0
    assert metadata_csv.read_bytes() == original
    files = sorted(p for p in config.data.data_dir.rglob("*.csv") if p != metadata_csv)
    assert all(p.parent == folder for p in files), files
    assert not any(p.name.startswith(".") for p in files)
    # One file per table, and its name gives the table back.
    by_table = {unquote(p.stem): p for p in files}
    assert sorted(by_table) == sorted(ODD_TABLES)
    for table in ODD_TABLES:
        assert by_table[table].read_text(encoding="utf-8") == f"label\n{table}\n"


def test_export_refuses_tables_whose_files_would_collide(dataset):
    """On a case-insensitive disk (macOS, Windows) rna.csv and RNA.csv are one file."""
    db = Database.from_config(load_config(dataset))
    with db.transaction() as cursor:
        for table in ("rna", "RNA"):
            cursor.execute(sql.SQL("CREATE TABLE {} (label text)").format(sql.Identifier(table)))
    with pytest.raises(ValueError, match=r"tables 'RNA' and 'rna' would be written to the same file"):
        export_tables(db, dataset.parent / "export")
    assert not (dataset.parent / "export").exists() or not list((dataset.parent / "export").iterdir())


# ------------------------------------------- passwords with URL delimiters in them
# Each fragment between delimiters is distinctive, so that any piece that leaks is caught.
FRAGMENTS = ("Xq7k", "Zk9m", "Wm4p")
AWKWARD = ["Xq7k/Zk9m/Wm4p", "Xq7k@Zk9m@Wm4p", "Xq7k/Zk9m@Wm4p", "Xq7k:Zk9m%Wm4p", "Xq7k?Zk9m#Wm4p"]


def _config_with_url(dataset, postgres_server, database_name, url) -> Path:
    if _socket_dir(postgres_server) is None:
        pytest.skip("needs the embedded test server")
    escaped = url.replace("\\", "\\\\").replace('"', '\\"')
    dataset.write_text(dataset.read_text().replace("[database]\n", f'[database]\nurl = "{escaped}"\n', 1))
    Database(postgres_server).with_name(database_name).create()  # a URL's database must exist
    return dataset


def _assert_no_fragment(text: str) -> None:
    for fragment in FRAGMENTS:
        assert fragment not in text, text


@pytest.mark.parametrize("password", [*AWKWARD, "Xq7k%2FZk9m Wm4p"])
def test_a_percent_encoded_password_works_and_never_shows(dataset, postgres_server, database_name,
                                                          capsys, caplog, password):
    caplog.set_level(logging.DEBUG)
    url = (f"postgresql://postgres:{quote(password, safe='')}@/{database_name}"
           f"?host={_socket_dir(postgres_server)}")
    config = str(_config_with_url(dataset, postgres_server, database_name, url))
    assert main(["db", "url", "--config", config]) == 0
    shown = capsys.readouterr().out.strip()
    assert shown.startswith("postgresql://postgres@/")
    psycopg2.connect(shown).close()
    db = Database.from_config(load_config(config))
    assert db.params["password"] == password  # libpq gets the password itself
    assert main(["extract", "--config", config]) == 0
    out, err = capsys.readouterr()
    _assert_no_fragment(shown + repr(db) + out + err + caplog.text)


@pytest.mark.parametrize("password", AWKWARD)
def test_a_raw_password_with_delimiters_never_shows(dataset, postgres_server, database_name,
                                                    capsys, caplog, password):
    """Written into the URL as is, '/' or '@' make libpq read pieces of it as host, port or database."""
    caplog.set_level(logging.DEBUG)
    url = f"postgresql://postgres:{password}@/{database_name}?host={_socket_dir(postgres_server)}"
    config = str(_config_with_url(dataset, postgres_server, database_name, url))
    readable = "/" not in password and "@" not in password and "%" not in password
    for command in (["db", "url"], ["extract"], ["doctor"]):
        code = main([*command, "--config", config])
        out, err = capsys.readouterr()
        _assert_no_fragment(out + err + caplog.text)
        if command != ["doctor"]:
            assert code == (0 if readable else 2), out + err
        if code == 2:
            assert err.startswith("error: "), err
            assert err.count("\n") == 1, err
    if readable:  # libpq reads it right ('?' and '#' may stand in a password): it is the password
        db = Database.from_config(load_config(config))
        assert db.params["password"] == password
        _assert_no_fragment(db.url + repr(db))
    else:
        with pytest.raises(ValueError, match="percent-encode") as refused:
            Database.from_config(load_config(config))
        _assert_no_fragment(str(refused.value))


@pytest.mark.parametrize("password", AWKWARD)
@pytest.mark.parametrize("encode", [False, True])
def test_redaction_of_any_text_holding_the_url(password, encode):
    from rna_localization.db.database import _redact

    secret = quote(password, safe="") if encode else password
    for url in (f"postgresql://me:{secret}@db.lab.org:5432/rna?sslmode=require",
                f"postgres://me:{secret}@/rna?host=/tmp/sock"):
        for text in (url, f'could not connect to "{url}": timeout', f"invalid dsn: {url}\nDETAIL"):
            redacted = _redact(text)
            _assert_no_fragment(redacted)
            assert "me:***@" in redacted


def _square(value: int) -> int:
    return value * value


def test_local_dask_cluster_refuses_clients_without_its_certificate():
    """Any local user reaches 127.0.0.1; a Dask scheduler runs the code it is sent."""
    from distributed import Client
    from distributed.comm import connect
    from distributed.security import Security

    from rna_localization import parallel

    with parallel._client(2, "") as client:
        address = client.scheduler.address
        assert address.startswith("tls://127.0.0.1:")
        assert client.submit(_square, 7).result() == 49  # the pipeline's own client works
        port = address.rsplit(":", 1)[1]
        # Plain TCP, and TLS with another certificate (another user's own), are both refused.
        for attempt, security in [(f"tcp://127.0.0.1:{port}", None),
                                  (address, Security.temporary())]:
            with pytest.raises((OSError, TimeoutError)):
                Client(attempt, security=security, timeout="3s")
        # The workers too (each listens on its own port, and runs what it is sent):
        # not even a connection opens without the certificate.
        workers = list(client.scheduler_info()["workers"])
        assert len(workers) == 2
        for worker in workers:
            assert worker.startswith("tls://127.0.0.1:")
            with pytest.raises((OSError, TimeoutError)):
                asyncio.run(connect(worker.replace("tls://", "tcp://"), timeout="3s"))
