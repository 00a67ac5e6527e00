"""Dask for the per-image steps: same database as a serial run, retries, no cluster when serial."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest

from rna_localization import Config, load_config, parallel, steps
from rna_localization.db import Database

from helpers import table_frames as _export

# The tasks below run in Dask worker processes, which import them from this
# module by name (the tests folder is on their sys.path, as in this process).


def fail_once(marker_dir: str, value: int) -> int:
    """Raise an unexpected error on the first call for `value`, then succeed."""
    marker = Path(marker_dir) / f"attempt_{value}"
    if not marker.exists():
        marker.write_text("1")
        msg = f"transient failure of task {value}"
        raise ConnectionError(msg)
    marker.write_text(str(int(marker.read_text()) + 1))
    return value * 10


def bad_input(marker_dir: str, value: int) -> int:
    """Raise an input error, counting the attempts."""
    marker = Path(marker_dir) / f"bad_{value}"
    marker.write_text(str(int(marker.read_text()) + 1) if marker.exists() else "1")
    msg = f"image {value} is not a 3D stack"
    raise ValueError(msg)


def write_or_die(dsn: str, marker_dir: str, value: int) -> int:
    """Insert a row, then on the first attempt kill the worker before committing."""
    marker = Path(marker_dir) / f"died_{value}"
    with Database(dsn).transaction() as cursor:
        cursor.execute("INSERT INTO written (value) VALUES (%s)", (value,))
        if not marker.exists():
            marker.write_text("died")
            os._exit(1)  # the worker process dies mid-transaction
    return value


def pid_after(seconds: float) -> int:
    """The id of the process running it, after `seconds` of sleep."""
    time.sleep(seconds)
    return os.getpid()


def always_die(value: int) -> int:
    """Kill the worker process running it, every time."""
    os._exit(1)


def test_a_cluster_and_threads_give_the_same_database_as_serial(dataset, tmp_path, database_name,
                                                                 capsys):
    serial_config = load_config(dataset)
    assert serial_config.distances.workers == 1
    steps.run(serial_config)
    serial = _export(serial_config, tmp_path / "serial")
    assert "Dask dashboard" not in capsys.readouterr().err

    text = dataset.read_text().replace("workers = 1", "workers = 2").replace(
        f'name = "{database_name}"', f'name = "{database_name}_dask"')
    dataset.write_text(text)
    cluster_config = load_config(dataset)
    assert cluster_config.distances.workers == 2
    steps.run(cluster_config)
    clustered = _export(cluster_config, tmp_path / "cluster")
    assert "Dask dashboard: http://127.0.0.1:" in capsys.readouterr().err  # a cluster ran

    # workers = 0 on a job this short: this process, images two at a time on threads.
    dataset.write_text(text.replace("workers = 2", "workers = 0").replace(
        f'name = "{database_name}_dask"', f'name = "{database_name}_threads"'))
    threads_config = load_config(dataset)
    steps.run(threads_config)
    threaded = _export(threads_config, tmp_path / "threads")
    assert "Dask dashboard" not in capsys.readouterr().err  # no cluster

    assert set(serial) == set(clustered) == set(threaded) == {
        "rna", "centrosomes", "images", "label_images", "distance_measurements", "image_numbers",
        "normalized_images", "normalization_references"}
    for table in serial:  # ids included: fixed at insert by the image numbers, given in name order
        pd.testing.assert_frame_equal(serial[table], clustered[table], obj=table)
        pd.testing.assert_frame_equal(serial[table], threaded[table], obj=table)
    assert len(serial["rna"]) > 50


def test_a_task_that_fails_once_is_retried(tmp_path):
    results = parallel.map_images(fail_once, [(str(tmp_path), v) for v in range(3)],
                                  workers=2, desc="retry")
    assert sorted(results) == [0, 10, 20]
    for value in range(3):  # failed once, then succeeded on the retry
        assert (tmp_path / f"attempt_{value}").read_text() == "2"


def test_input_errors_are_raised_once_not_retried(tmp_path):
    tasks = [(str(tmp_path), v) for v in range(2)]
    with pytest.raises(ValueError, match=r"image \d is not a 3D stack"):
        list(parallel.map_images(bad_input, tasks, workers=2, desc="bad"))
    attempts = [int(marker.read_text()) for marker in tmp_path.glob("bad_*")]
    assert attempts
    assert set(attempts) == {1}  # deterministic errors are not retried


def test_a_worker_dying_mid_transaction_leaves_nothing_and_is_retried(tmp_path, database_name):
    db = Database.from_config(Config.from_flat(data_dir=str(tmp_path), name=database_name))
    with db.transaction() as cursor:
        cursor.execute("CREATE TABLE written (value integer)")
    tasks = [(db.dsn, str(tmp_path), v) for v in range(2)]
    assert sorted(parallel.map_images(write_or_die, tasks, workers=2, desc="die")) == [0, 1]
    for value in range(2):
        assert (tmp_path / f"died_{value}").exists()  # each task's first worker died
    rows = db.query("SELECT value FROM written ORDER BY value")
    assert rows["value"].tolist() == [0, 1]  # the dead attempts' inserts were rolled back


def test_an_image_that_keeps_killing_workers_is_one_clear_error():
    import dask

    with dask.config.set({"distributed.scheduler.allowed-failures": 1}), pytest.raises(
        RuntimeError, match=r"extract: workers died 2 times running image \d of 2 .*nothing of it"
    ):  # two tasks: with one, map_images would run it in this process
        list(parallel.map_images(always_die, [(1,), (2,)], workers=2, desc="extract"))


def test_workers_0_runs_short_jobs_in_this_process_and_long_ones_on_a_cluster(monkeypatch):
    # A short job (a cluster would save far less than CLUSTER_START_SECONDS): every task
    # runs here, with no cluster to start.
    tasks = [()] * 4
    assert set(parallel.map_images(os.getpid, tasks, workers=0)) == {os.getpid()}
    # A long one (here: a cluster that starts at no cost, on 2 cores or more, always saves
    # some): the first two tasks run here (the first's one-off costs make it no measure
    # of the rest), then the rest go to a local cluster's worker processes.
    monkeypatch.setattr(parallel, "CLUSTER_START_SECONDS", 0.0)
    pids = list(parallel.map_images(os.getpid, [()] * 5, workers=0))
    assert pids[:2] == [os.getpid()] * 2
    assert len(pids) == 5
    assert os.getpid() not in pids[2:]


def where_run() -> tuple[bool, bool]:
    """(on a cluster's worker?, sharing the cores with other images' tasks?)."""
    return parallel.on_cluster_worker(), parallel.shares_cores()


def test_tasks_know_when_they_share_the_cores(monkeypatch):
    # workers = 1: each image alone, with every core for its own work.
    assert list(parallel.map_images(where_run, [()] * 3, workers=1)) == [(False, False)] * 3
    # workers = 0 starting a cluster partway: the first two images run here on image
    # threads, side by side (with 2 usable cores), the rest on the cluster's workers. Those
    # sharing the cores use one thread each (steps._extract_one, steps._measure_one ask).
    monkeypatch.setattr(parallel, "CLUSTER_START_SECONDS", 0.0)
    where = list(parallel.map_images(where_run, [()] * 5, workers=0))
    side_by_side = parallel.usable_cores() >= 2
    assert where[:2] == [(False, side_by_side)] * 2
    assert where[2:] == [(True, True)] * 3
    assert parallel.on_cluster_worker() is False
    assert parallel.shares_cores() is False


def test_workers_0_does_not_judge_the_rest_by_a_slow_first_image(monkeypatch):
    # The first image is slow (imports, first connection); the others are quick. Judged by
    # the first, a cluster would save more than its start costs on the three left (0.4 s
    # each: 0.6 s two at a time, of which it saves 13% on 2 cores, more on more); judged
    # by the fastest after it, they stay here.
    monkeypatch.setattr(parallel, "CLUSTER_START_SECONDS", 0.05)
    assert parallel.cluster_saving(3 * 0.4 / 2, 2) > 0.05  # the smallest cluster it could start
    tasks = [(0.4,), (0.0,), (0.0,), (0.0,)]
    assert set(parallel.map_images(pid_after, tasks, workers=0)) == {os.getpid()}


def meet(barrier, value: int) -> int:
    """Wait at `barrier` (for the task running beside this one), then return `value`."""
    barrier.wait(timeout=20)
    return value


def record(log: list, fail_at: int, value: int) -> int:
    """Log when the task for `value` starts and ends; raise an input error at `fail_at`, at
    once (the others take 0.05 s: the task beside the failing one is still running when
    its error comes back, however late the main thread wakes up to it)."""
    log.append(("start", value, time.perf_counter()))
    if value != fail_at:
        time.sleep(0.05)
    log.append(("end", value, time.perf_counter()))
    if value == fail_at:
        msg = f"image {value} is not a 3D stack"
        raise ValueError(msg)
    return value


@pytest.mark.skipif(parallel.usable_cores() < 2, reason="needs 2 usable cores")
def test_workers_0_runs_two_images_at_once_in_this_process():
    # Each pair of tasks meets at a barrier: run one after the other, the first would wait
    # for the second and time out (BrokenBarrierError).
    import threading

    barrier = threading.Barrier(parallel.IN_PROCESS_IMAGES)
    tasks = [(barrier, i) for i in range(6)]
    assert sorted(parallel.map_images(meet, tasks, workers=0)) == list(range(6))


def ignore_user_warnings_crosswise(steps_: dict, value: int) -> int:
    """Open a ``warnings.catch_warnings`` block ignoring UserWarning (as pandas' ``astype``
    does on every call), in the order that leaves it in force for the whole process: task
    0 opens first and closes first, task 1 opens inside task 0's block and closes last."""
    import threading
    import warnings

    def step(name):
        steps_[name].set()

    def after(name):
        assert steps_[name].wait(timeout=20), f"task {value} waited for {name} in vain"

    if value == 1:
        after("0 opened")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        step(f"{value} opened")
        after("1 opened" if value == 0 else "0 closed")
    step(f"{value} closed")
    assert threading.current_thread() is not threading.main_thread()
    return value


def test_image_threads_leave_the_callers_warning_filters_whole(monkeypatch):
    # Two image threads' catch_warnings blocks closing in the wrong order (two pandas
    # astype calls at once can) leave the second one's filter, UserWarning ignored, for
    # the whole process: a PipelineWarning after them was silently dropped (extract's PSF
    # outlier warning went missing so in 2 of 5 full test runs). map_images puts back
    # the caller's filters.
    import threading
    import warnings

    monkeypatch.setattr(parallel, "usable_cores", lambda: 2)  # two image threads on any machine
    events = {f"{v} {what}": threading.Event() for v in (0, 1) for what in ("opened", "closed")}
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        before = list(warnings.filters)
        assert sorted(parallel.map_images(ignore_user_warnings_crosswise,
                                          [(events, 0), (events, 1)], workers=0)) == [0, 1]
        assert all(event.is_set() for event in events.values())  # the crosswise order ran
        assert warnings.filters == before
        with pytest.warns(steps.PipelineWarning, match="still heard"):
            warnings.warn("still heard", steps.PipelineWarning, stacklevel=1)
    # The same two blocks on in_threads' threads (the array core's): also put back.
    from rna_localization._cores import in_threads

    for event in events.values():
        event.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        before = list(warnings.filters)
        assert in_threads(lambda v: ignore_user_warnings_crosswise(events, v), [0, 1], 2) == [0, 1]
        assert warnings.filters == before


def test_workers_0_runs_every_image_once_and_stops_at_the_first_input_error():
    log: list = []
    assert sorted(parallel.map_images(record, [(log, -1, i) for i in range(7)], workers=0)) == \
        list(range(7))
    assert sorted(v for kind, v, _ in log if kind == "start") == list(range(7))
    log.clear()
    with pytest.raises(ValueError, match="image 2 is not a 3D stack"):
        list(parallel.map_images(record, [(log, 2, i) for i in range(10)], workers=0))
    started = {v for kind, v, _ in log if kind == "start"}
    ended = {v for kind, v, _ in log if kind == "end"}
    # Task 2's error stops new tasks: at most the one beside it was running (and finished).
    assert started <= set(range(2 + parallel.IN_PROCESS_IMAGES))
    assert started == ended


def test_workers_0_on_one_core_runs_one_image_at_a_time(monkeypatch):
    # One usable core: worker_count(0, ...) is 1, so map_images takes its one-after-the-other
    # path (no image threads, no cluster); every task ends before the next starts.
    monkeypatch.setattr(parallel, "usable_cores", lambda: 1)
    log: list = []
    assert sorted(parallel.map_images(record, [(log, -1, i) for i in range(4)], workers=0)) == \
        list(range(4))
    events = [(kind, v) for kind, v, _ in sorted(log, key=lambda e: e[2])]
    assert events == [(kind, v) for v in range(4) for kind in ("start", "end")]


def test_serial_map_images_starts_no_cluster(tmp_path):
    script = textwrap.dedent(
        """
        import sys
        import rna_localization, rna_localization.steps, rna_localization.cli
        from rna_localization.parallel import map_images
        assert "distributed" not in sys.modules, "importing the package imported distributed"
        assert list(map_images(pow, [(2, 3), (3, 2)], workers=1)) == [8, 9]
        assert list(map_images(pow, [(2, 5)], workers=0)) == [32]  # one task: no cluster either
        assert "distributed" not in sys.modules, "a serial map_images imported distributed"
        print("ok")
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_serial_map_images_does_not_touch_dask(monkeypatch):
    distributed = pytest.importorskip("distributed")

    def refuse(*args, **kwargs):
        msg = "a cluster was started"
        raise AssertionError(msg)

    monkeypatch.setattr(distributed, "LocalCluster", refuse)
    monkeypatch.setattr(distributed, "Client", refuse)
    assert list(parallel.map_images(divmod, [(7, 2), (9, 4)], workers=1)) == [(3, 1), (2, 1)]


def test_unreachable_scheduler_is_one_clear_error(monkeypatch):
    monkeypatch.setattr(parallel, "CONNECT_TIMEOUT", "2s")
    with pytest.raises(ValueError, match=r"no Dask scheduler answers at dask.scheduler = 'tcp://127.0.0.1:9'"):
        list(parallel.map_images(pow, [(2, 3)], scheduler="tcp://127.0.0.1:9"))


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="CPU affinity is Linux-only")
def test_workers_0_counts_the_cores_the_job_may_use_not_the_machines():
    """A batch job given 1 CPU of a bigger node starts 1 worker, for extract and segment alike."""
    code = textwrap.dedent("""
        import os
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
        from rna_localization.parallel import usable_cores, worker_count
        from rna_localization.segmentation import batch
        print(usable_cores(), worker_count(0, 50), batch.worker_count is worker_count)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=True)
    assert done.stdout.split() == ["1", "1", "True"]
