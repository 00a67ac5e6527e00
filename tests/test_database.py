"""Choosing and creating the database, on the real test server."""

import os

import pytest
from psycopg2.extensions import make_dsn, parse_dsn

from rna_localization import Config
from rna_localization.db import ENV_URL, Database, lab_server_url


def _url_with_database(name: str) -> str:
    params = parse_dsn(os.environ[ENV_URL])
    return f"postgresql://{params.get('user', 'postgres')}@/{name}?host={params['host']}"


def test_database_named_in_url_is_created(tmp_path, database_name):
    config = Config.from_flat(data_dir=str(tmp_path), database_url=_url_with_database(database_name),
                              database_name="ignored")
    db = Database.from_config(config)
    assert db.name == database_name
    assert db.query("SELECT current_database() AS d")["d"].iloc[0] == database_name


def test_database_name_is_used_when_url_has_none(tmp_path, database_name):
    config = Config.from_flat(data_dir=str(tmp_path), database_name=database_name)
    db = Database.from_config(config)
    assert db.query("SELECT current_database() AS d")["d"].iloc[0] == database_name
    assert db.tables() == []
    assert db.row_counts().empty


def test_row_counts(tmp_path, database_name):
    db = Database.from_config(Config.from_flat(data_dir=str(tmp_path), database_name=database_name))
    with db.transaction() as cursor:
        cursor.execute("CREATE TABLE a (x int); INSERT INTO a VALUES (1), (2), (3); CREATE TABLE b (y int)")
    assert db.row_counts().to_dict() == {"a": 3, "b": 0}


def test_numbers_are_staged_in_binary_as_csv_would_store_them(tmp_path, database_name):
    import numpy as np
    import pandas as pd
    from psycopg2 import sql

    from rna_localization.db.tables import copy_frame, copy_numbers

    db = _empty_database(tmp_path, database_name)
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({
        "i4": np.arange(1, 6, dtype=np.int64),
        "i8": np.arange(1, 6, dtype=np.int64) * 10**10 + 7,
        "k": pd.array([3, None, 5, 2**31 - 1, -(2**31)], dtype="Int64"),  # NULL in an integer
        "f": np.concatenate([[np.nan, np.inf, -0.0], rng.normal(size=2) * 1e-300]),
        "small": np.array([1, 2, 3, 4, 5], dtype=np.int16),
    })
    columns = "i4 integer, i8 bigint, k integer, f double precision, small smallint"
    with db.transaction() as cursor:
        cursor.execute(f"CREATE TABLE binary_rows ({columns}); CREATE TABLE csv_rows ({columns}); "
                       "SELECT * FROM binary_rows LIMIT 0")
        oids = [column.type_code for column in cursor.description]
        assert copy_numbers(cursor, sql.Identifier("binary_rows"), frame, oids)
        copy_frame(cursor, sql.Identifier("csv_rows"), frame)
        # Bit for bit (float8send), NULL where the frame has NaN, like the CSV.
        query = ("SELECT i4, i8, k, float8send(f), small FROM {} ORDER BY i4")
        cursor.execute(query.format("binary_rows"))
        stored = cursor.fetchall()
        cursor.execute(query.format("csv_rows"))
        assert [tuple(bytes(v) if isinstance(v, memoryview) else v for v in row) for row in stored] \
            == [tuple(bytes(v) if isinstance(v, memoryview) else v for v in row)
                for row in cursor.fetchall()]
        assert [row[2] for row in stored] == [3, None, 5, 2**31 - 1, -(2**31)]
        cursor.execute("SELECT f IS NULL, f FROM binary_rows ORDER BY i4 LIMIT 3")
        assert cursor.fetchall() == [(True, None), (False, float("inf")), (False, -0.0)]
        cursor.execute("SELECT count(*) FROM binary_rows")
        assert cursor.fetchone()[0] == 5
        # What does not fit an integer column, or is no number, is left to the CSV.
        for bad in ({"k": [1.0]}, {"k": [2**31]}, {"k": ["7"]}):
            assert not copy_numbers(cursor, sql.Identifier("binary_rows"), pd.DataFrame(bad), [23])
        assert not copy_numbers(cursor, sql.Identifier("binary_rows"), pd.DataFrame({"k": [True]}), [23])
        # Floats other than float64 into double precision (a float32's 0.1 is 0.1 in text,
        # 0.10000000149011612 in binary), and floats into real, are left to the CSV too.
        assert not copy_numbers(cursor, sql.Identifier("binary_rows"),
                                pd.DataFrame({"f": np.array([0.1], dtype=np.float32)}), [701])
        assert not copy_numbers(cursor, sql.Identifier("binary_rows"), pd.DataFrame({"f": [0.1]}),
                                [700])
        assert copy_numbers(cursor, sql.Identifier("binary_rows"), frame.iloc[:0], oids)  # no rows
        cursor.execute("SELECT count(*) FROM binary_rows")
        assert cursor.fetchone()[0] == 5


def test_url_never_shows_a_password(postgres_server):
    params = parse_dsn(os.environ[ENV_URL])
    db = Database(make_dsn(**{**params, "password": "s3cret", "dbname": "x"}))
    assert "s3cret" not in db.url
    assert "s3cret" not in repr(db)
    assert db.url.startswith("postgresql://")


def test_unreachable_server_is_a_clear_error(tmp_path):
    config = Config.from_flat(data_dir=str(tmp_path),
                              database_url="postgresql://nobody@/x?host=/nonexistent-socket-dir")
    with pytest.raises(ConnectionError, match="cannot connect to postgresql://nobody@/x"):
        Database.from_config(config)


def test_lab_server_url_from_old_parameters():
    assert lab_server_url("demo", "pearl", "db.lab.org", 5432) == "postgresql://pearl@db.lab.org:5432/demo"
    assert lab_server_url("demo") == "postgresql://localhost/demo"


def test_embedded_server_stops_with_its_process_despite_stale_handles(tmp_path):
    """A killed process (e.g. a notebook kernel) must not keep the server alive forever."""
    import json
    import subprocess
    import sys

    from rna_localization.db import embedded_url

    pgdata = tmp_path / ".pgdata"
    script = (f"from rna_localization.db import start_server; start_server({str(pgdata)!r}); "
              f"print('started')")
    subprocess.run([sys.executable, "-c", script], check=True, capture_output=True)
    assert embedded_url(pgdata) is None  # stopped when that process exited
    (pgdata / ".handle_pids.json").write_text(json.dumps([2**22 + 7]))  # a dead process
    subprocess.run([sys.executable, "-c", script], check=True, capture_output=True)
    assert embedded_url(pgdata) is None


def _empty_database(tmp_path, database_name) -> Database:
    return Database.from_config(Config.from_flat(data_dir=str(tmp_path), database_name=database_name))


def test_update_from_frame_sets_only_matched_rows(tmp_path, database_name):
    import pandas as pd

    from rna_localization.db.results import update_from_frame

    db = _empty_database(tmp_path, database_name)
    with db.transaction() as cursor:
        cursor.execute("CREATE TABLE t (name text, object_id integer, d double precision, k integer); "
                       "INSERT INTO t VALUES ('a', 1, NULL, NULL), ('a', 2, NULL, NULL), "
                       "('b', 1, NULL, NULL)")
        frame = pd.DataFrame({"object_id": [1, 2], "d": [0.5, float("nan")], "k": [7, 8]})
        update_from_frame(cursor, "t", frame, keys=["object_id"], match={"name": "a"})
        # Twice in one transaction: the staging table does not outlive its call.
        update_from_frame(cursor, "t", frame.iloc[:1].assign(d=1.5), keys=["object_id"],
                          match={"name": "a"})
    with db.transaction() as cursor:
        cursor.execute("SELECT name, object_id, d, k FROM t ORDER BY name, object_id")
        rows = cursor.fetchall()
    assert rows == [
        ("a", 1, 1.5, 7),
        ("a", 2, None, 8),  # NaN travels as NULL
        ("b", 1, None, None),  # another image: untouched
    ]


def test_every_row_of_a_structure_table_can_be_updated_on_its_own_page(tmp_path, database_name):
    """The distances and normalize steps UPDATE every row of an image: a structure table's
    pages keep room for that, so each row's new version stays on its page (a HOT update,
    no index entry written). With full pages only the last page's rows would."""
    import pandas as pd

    from rna_localization.db.results import update_from_frame
    from rna_localization.db.tables import ensure_structure_table

    db = _empty_database(tmp_path, database_name)
    n = 3000  # a few dozen pages
    with db.transaction() as cursor:
        ensure_structure_table(cursor, "rna")
        cursor.execute(
            "INSERT INTO rna (name, object_id, area, centroid_z, centroid_y, centroid_x, "
            "min_intensity, max_intensity, mean_intensity, total_intensity, spot_intensity, "
            "background) SELECT 'a', i, 40, 1, 2, 3, 100, 900, 300, 12000, 5000, 110 "
            "FROM generate_series(1, %s) AS i", (n,))
    for column in ("spot_intensity", "background"):  # two steps, each in its own transaction
        with db.transaction() as cursor:
            frame = pd.DataFrame({"object_id": range(1, n + 1), column: 1.5})
            update_from_frame(cursor, "rna", frame, keys=["object_id"], match={"name": "a"})
            cursor.execute("SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_xact_user_tables "
                           "WHERE relname = 'rna'")
            assert cursor.fetchone() == (n, n)
    assert db.query("SELECT count(*) AS n FROM rna WHERE spot_intensity = 1.5 "
                    "AND background = 1.5")["n"][0] == n


def test_images_table_is_typed_from_the_frame(tmp_path, database_name):
    import pandas as pd

    from rna_localization.db.results import read_images_table, replace_images_table

    db = _empty_database(tmp_path, database_name)
    table = pd.DataFrame({"name": ["x", "NA"], "n": [1, 2], "f": [0.5, 1.0], "ok": [True, False],
                          "probe": ["p", "001"]})
    with db.transaction() as cursor:
        replace_images_table(cursor, table, "name")
        replace_images_table(cursor, table.iloc[::-1], "name")  # replaced, not appended
        stored = read_images_table(cursor)
    types = db.query("SELECT column_name, data_type FROM information_schema.columns "
                     "WHERE table_name = 'images'").set_index("column_name")["data_type"].to_dict()
    assert types == {"id": "integer", "name": "text", "n": "bigint", "f": "double precision",
                     "ok": "boolean", "probe": "text"}
    assert stored["name"].tolist() == ["NA", "x"]
    assert stored["probe"].tolist() == ["001", "p"]


def _backend(db) -> int:
    return int(db.query("SELECT pg_backend_pid() AS p")["p"].iloc[0])


def _open_backends(db) -> set[int]:
    return set(db.query("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")["pid"])


def test_reused_connections_within_a_block_and_none_kept_after(tmp_path, database_name):
    from rna_localization.db.database import reuse_connections

    db = Database.from_config(Config.from_flat(data_dir=str(tmp_path), database_name=database_name))
    assert _backend(db) != _backend(db)  # outside the block: a connection per transaction
    with reuse_connections():
        first = _backend(db)
        assert _backend(db) == first
        with db.transaction() as cursor:  # a transaction inside another gets its own
            cursor.execute("SELECT pg_backend_pid()")
            assert cursor.fetchone()[0] == first
            assert _backend(db) != first
        # A failed transaction is rolled back and its connection closed, not reused.
        def create_then_fail():
            with db.transaction() as cursor:
                cursor.execute("CREATE TABLE t (x int)")
                msg = "boom"
                raise RuntimeError(msg)

        with pytest.raises(RuntimeError, match="boom"):
            create_then_fail()
        assert db.tables() == []
        assert _backend(db) != first
        kept = _backend(db)
    assert kept not in _open_backends(db)  # closed when the block ended


def test_a_step_opens_one_connection_for_all_its_transactions(dataset, monkeypatch):
    import psycopg2

    from rna_localization import load_config, steps
    from rna_localization.db import database

    config = load_config(dataset)
    db = Database.from_config(config)
    steps.extract(config, db=db)
    real = psycopg2.connect
    opened = []
    monkeypatch.setattr(database.psycopg2, "connect", lambda *a, **k: opened.append(1) or real(*a, **k))
    steps.measure_distances(config, db=db)  # 4 images, workers = 1: 2 transactions each
    # The pipeline lock's own connection, one for every transaction of the step, and the
    # VACUUM's (it rewrote every row of rna; VACUUM runs outside a transaction).
    assert len(opened) == 3
    assert db.query("SELECT count(*) AS n FROM distance_measurements")["n"].iloc[0] == 4


def _child_backend(dsn, queue):
    queue.put(_backend(Database(dsn)))


def test_a_forked_process_never_uses_the_parents_kept_connection(tmp_path, database_name):
    import multiprocessing

    from rna_localization.db.database import reuse_connections

    db = Database.from_config(Config.from_flat(data_dir=str(tmp_path), database_name=database_name))
    context = multiprocessing.get_context("fork")
    with reuse_connections():
        mine = _backend(db)  # kept idle, inherited by the child
        queue = context.Queue()
        child = context.Process(target=_child_backend, args=(db.dsn, queue))
        child.start()
        theirs = queue.get(timeout=60)
        child.join(60)
        assert child.exitcode == 0
        assert theirs != mine
        assert _backend(db) == mine  # still usable here: the child neither used nor closed it


def test_a_kept_connection_on_a_descriptor_past_1023_is_still_seen_alive():
    # select.select refuses descriptors from 1024 on (a process with many files open):
    # every kept connection was then taken for dead and replaced.
    import resource
    import socket

    from psycopg2.extensions import STATUS_READY

    from rna_localization.db.database import _alive

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft <= 1100:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(2048, hard), hard))
    ours, server = socket.socketpair()
    high = os.dup2(ours.fileno(), 1100)

    class Kept:  # what _alive reads of a psycopg2 connection
        closed = 0
        status = STATUS_READY

        def fileno(self):
            return high

    try:
        assert _alive(Kept())  # idle: nothing to read
        server.sendall(b"E")  # the server's goodbye (an error message) waits to be read
        assert not _alive(Kept())
    finally:
        os.close(high)
        ours.close()
        server.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_kept_connection_ended_by_the_server_is_replaced(tmp_path, database_name):
    from rna_localization.db.database import reuse_connections

    db = Database.from_config(Config.from_flat(data_dir=str(tmp_path), database_name=database_name))
    with reuse_connections():
        kept = _backend(db)
        # The server ends it while it is idle (a restart, an idle_session_timeout): waiting
        # (up to 60 s) until its backend has exited, as it has long since in those cases ...
        with psycopg2_connection(db) as other, other.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s, 60000)", (kept,))
            assert cursor.fetchone()[0]
        # ... and the next transaction runs on a new one instead of failing.
        with db.transaction() as cursor:
            cursor.execute("CREATE TABLE t (x int)")
        assert db.tables() == ["t"]
        assert _backend(db) != kept


def psycopg2_connection(db):
    from contextlib import closing

    return closing(db.connect())


def _counting_statements(monkeypatch, sent: list) -> None:
    """Every connection the package opens records each statement batch and COPY it sends."""
    import psycopg2
    import psycopg2.extensions

    from rna_localization.db import database

    class Counting(psycopg2.extensions.cursor):
        def execute(self, query, params=None):
            sent.append(query if isinstance(query, str) else query.as_string(self.connection))
            return super().execute(query, params)

        def copy_expert(self, query, file, *args):
            sent.append(query)
            return super().copy_expert(query, file, *args)

    real = psycopg2.connect
    monkeypatch.setattr(database.psycopg2, "connect",
                        lambda *a, **k: real(*a, **{**k, "cursor_factory": Counting}))


def test_an_image_is_extracted_and_measured_in_a_few_round_trips(dataset, monkeypatch):
    """Per image, extraction sends 3 batches (lock and checks; DELETEs and label_images; COPY)
    and distances 8 (two label images and the centroids; lock and check, staging table, COPY,
    UPDATE, bookkeeping); a kept connection is reused without asking the server first."""
    from rna_localization import load_config, steps

    config = load_config(dataset)
    db = Database.from_config(config)
    sent, per_image = [], []
    _counting_statements(monkeypatch, sent)

    def counted(function):
        def wrapper(*args):
            before = len(sent)
            result = function(*args)
            per_image.append(len(sent) - before)
            return result
        return wrapper

    monkeypatch.setattr(steps, "_extract_one", counted(steps._extract_one))
    monkeypatch.setattr(steps, "_measure_one", counted(steps._measure_one))
    report = steps.extract(config, db=db, workers=1)
    assert (report["status"] == "extracted").all()
    assert per_image == [3] * len(report)  # 4 images x 2 structures
    per_image.clear()
    measured = steps.measure_distances(config, db=db, workers=1)
    assert (measured["status"] == "measured").all()
    assert per_image == [8] * len(measured)
    assert not [s for s in sent if s.strip() == "SELECT 1"]
    # What was written is whole: every object with its distance, every label image back.
    assert db.query("SELECT count(*) AS n FROM rna WHERE distance_to_centrosomes IS NULL")["n"].iloc[0] == 0
    assert db.query("SELECT count(*) AS n FROM label_images")["n"].iloc[0] == len(report)
