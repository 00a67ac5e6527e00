"""Running one function over many images: in this process, a local Dask cluster, or a remote one.

One task is one image. Tasks carry names and paths, never pixels: each opens its
own files and database connection and commits its own transaction, so a worker
holds only the image it is working on, and an image is either entirely written
or not at all. Where the tasks run:

* ``workers = 1`` (and no scheduler): in this process, one after the other. No
  cluster is started: the fastest choice for small jobs and for tests.
* ``workers = 0``: in this process, :data:`IN_PROCESS_IMAGES` images at a time
  on threads, while a cluster would not save more than it costs to start
  (:func:`cluster_saving`); then a "cluster of one" for the rest — a Dask
  ``LocalCluster`` with one single-threaded worker process per core, on this
  machine's loopback interface, behind mutual TLS with a certificate made for it
  (``Security.temporary``): other users of the machine cannot connect to it and
  run code as you.
* ``workers = N``: a ``LocalCluster`` of N single-threaded worker processes.
* ``scheduler = "tcp://host:8786"``: the workers of an existing Dask cluster
  (e.g. started by dask-jobqueue on SLURM); the database must then be a server
  every worker can reach (``database.url``), and the data on a shared filesystem.

Failures. A worker that dies mid-image (killed, out of memory, node lost) has
its database transaction rolled back by PostgreSQL, and the Dask scheduler gives
the image to another worker; an image whose workers keep dying (four times, Dask's
``distributed.scheduler.allowed-failures`` + 1) stops the work with a RuntimeError
saying so. A task that raises an unexpected error (a dropped
connection, a flaky network filesystem) is retried ``retries`` times. Errors
that name a bad input — ValueError, TypeError, FileNotFoundError, which the
command line reports in one sentence — are deterministic: they are not retried,
and the first one stops the work and is raised here.

Dask is imported only when a cluster is used.
"""

from __future__ import annotations

import logging
import multiprocessing
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from contextlib import contextmanager

from tqdm.auto import tqdm

from ._cores import usable_cores, warning_filters_kept
from ._errors import PipelineError

__all__ = ["CLUSTER_START_SECONDS", "IN_PROCESS_SPEEDUP", "RETRIES", "WORKER_EFFICIENCY",
           "cluster_saving", "map_images", "on_cluster_worker", "shared_clusters", "shares_cores",
           "usable_cores", "worker_count"]

#: How many times a task that raised an unexpected error is tried again.
RETRIES = 2

#: With ``workers = 0``: what starting a local cluster costs, seconds. Its workers are
#: fresh Python processes that import numpy, SciPy, pandas and the package and load its
#: compiled loops (0.5-2.4 s each, side by side, measured on a shared 2-core virtual
#: machine whose speed varied by half), and the scheduler starts first.
CLUSTER_START_SECONDS = 5.0
#: ... the images run in this process :data:`IN_PROCESS_IMAGES` at a time go this many
#: times as fast as one at a time (extract on the demo's 20 images, benchmarks/RESULTS.md,
#: "The whole run on the demo data set": 1.2 on 2026-12-05, 1.36 on 2026-12-07; one
#: image's Python holds the GIL while the other's compiled loops and round trips run;
#: the lower, so that a cluster is not passed over where it would pay) ...
IN_PROCESS_SPEEDUP = 1.2
#: ... and n worker processes go n times this as fast as one (segment_folder's 2 workers
#: 1.37 times as fast as 1: the processes share the memory bandwidth and caches).
WORKER_EFFICIENCY = 0.69


def cluster_saving(seconds_left: float, cores: int) -> float:
    """Seconds a local cluster of `cores` workers would save on what is left.

    ``seconds_left`` is the rest's time in this process, :data:`IN_PROCESS_IMAGES` at a
    time; a cluster of `cores` workers does it :data:`IN_PROCESS_SPEEDUP` /
    (cores × :data:`WORKER_EFFICIENCY`) times as long, so it saves the rest of it
    (none when that ratio is 1 or more). ``workers = 0`` starts a cluster only when
    this is more than :data:`CLUSTER_START_SECONDS`: on 2 cores (a saving of 13%) once
    the rest would take about 38 s here, on 8 cores (78%) about 6 s.

    Examples
    --------
    >>> round(cluster_saving(100.0, 2), 1), round(cluster_saving(100.0, 8), 1)
    (13.0, 78.3)
    >>> cluster_saving(100.0, 1)
    0.0
    """
    return seconds_left * max(0.0, 1.0 - IN_PROCESS_SPEEDUP / (cores * WORKER_EFFICIENCY))

#: With ``workers = 0``, images run in this process this many at a time (fewer on
#: fewer usable cores), each on a thread with its own connection and transaction:
#: while one image's Python runs, the other's file reads, compiled loops and
#: database round trips, which let go of the GIL, use the other core. Each image
#: in flight holds its own arrays: two images' memory at most.
IN_PROCESS_IMAGES = 2

#: How long to wait for a remote Dask scheduler to answer.
CONNECT_TIMEOUT = "30s"

#: Errors that describe bad input: the same on every attempt, so never retried.
_INPUT_ERRORS = (ValueError, TypeError, FileNotFoundError)

# Dashboard addresses already shown by this process (one line per cluster).
_shown_dashboards: set[str] = set()
# Clients kept open by shared_clusters(), by (workers, scheduler); None outside it.
_shared: dict[tuple[int, str], tuple] | None = None


def worker_count(workers: int, n_tasks: int) -> int:
    """Worker processes to use: `workers`, or one per core when 0; never more than tasks.

    Parameters
    ----------
    workers : int
        Requested workers; 0 → one per core available to this process.
    n_tasks : int
        Number of tasks.

    Returns
    -------
    int
        At least 1.

    Examples
    --------
    >>> worker_count(4, 2)
    2
    """
    if workers == 0:
        workers = usable_cores()
    return max(1, min(workers, n_tasks))


#: Set in a cluster's worker process when it runs its first task (:func:`on_cluster_worker`).
_ON_CLUSTER_WORKER = False


def on_cluster_worker() -> bool:
    """Whether this process is a cluster worker running :func:`map_images`' tasks.

    Such a worker shares the machine's cores with the other workers: a task
    that would use every core (threads of a KD-tree query) should use one.
    False in the process that calls :func:`map_images`, whatever `workers`.
    """
    return _ON_CLUSTER_WORKER


#: Marks this process' image threads (``workers = 0``) while they run a task.
_image_thread = threading.local()


def shares_cores() -> bool:
    """Whether the task calling it shares the cores with other images' tasks running beside it.

    True on a cluster's worker process (:func:`on_cluster_worker`) and on this
    process' image threads (``workers = 0`` runs :data:`IN_PROCESS_IMAGES`
    images at a time): such a task should do its own work on one thread. False
    for a task run alone (``workers = 1``), which may use every core.

    Examples
    --------
    >>> shares_cores()  # here, outside any task
    False
    >>> list(map_images(shares_cores, [()], workers=1, desc="demo"))  # doctest: +SKIP
    [False]
    """
    return _ON_CLUSTER_WORKER or getattr(_image_thread, "active", False)


def _call(function: Callable, task: tuple) -> tuple[bool, object]:
    """Run one task on a worker; return input errors instead of raising them.

    Returning them keeps Dask from retrying an error that would only repeat;
    any other exception propagates, and Dask retries the task.
    """
    global _ON_CLUSTER_WORKER  # noqa: PLW0603 (a per-process fact, set where it becomes true)
    _ON_CLUSTER_WORKER = True
    try:
        return True, function(*task)
    except _INPUT_ERRORS as error:
        return False, error


def _in_notebook() -> bool:
    """Whether stderr is a Jupyter kernel's, which notebooks show in red as if an error."""
    return type(sys.stderr).__module__.startswith("ipykernel")


def _show_dashboard(client) -> None:
    """One line with the address of the cluster's dashboard, once per cluster.

    On stderr in a terminal (stdout stays for results); on stdout in a
    notebook, where it is information, not an error.
    """
    link = client.dashboard_link
    if not link or link in _shown_dashboards:
        return
    _shown_dashboards.add(link)
    try:
        import bokeh  # noqa: F401

        note = " (optional: open it to watch the workers)"
    except ImportError:
        note = " (its pages need bokeh: pip install 'bokeh>=3.1')"
    tqdm.write(f"Dask dashboard: {link}{note}", file=sys.stdout if _in_notebook() else sys.stderr)


@contextmanager
def _fast_worker_start() -> Iterator[None]:
    """Start local workers from a fork server that has imported the pipeline once.

    With the default "spawn", every worker is a fresh interpreter importing
    distributed, numpy, scipy, pandas and the package: seconds per worker on a
    laptop, longer than the work of a small data set. A fork server is a clean,
    single-threaded process (unlike this one, which has Dask's and tqdm's
    threads), so forking workers from it is safe.
    """
    import dask

    if "forkserver" not in multiprocessing.get_all_start_methods():
        yield
        return
    with dask.config.set({"distributed.worker.multiprocessing-method": "forkserver"}):
        from distributed.utils import get_mp_context

        # distributed sets its own preload list (itself, numpy, pandas, ...) on first
        # use; ours adds the pipeline. Either only matters before the fork server starts.
        get_mp_context()
        multiprocessing.set_forkserver_preload(["distributed", "rna_localization.steps"])
        yield


def _private_security():
    """Mutual TLS settings with a new self-signed certificate, for one local cluster."""
    from distributed.security import Security

    try:
        return Security.temporary()
    except ImportError as error:
        msg = ("a local Dask cluster needs the cryptography package for its private TLS "
               "certificate: pip install cryptography (or set distances.workers = 1).")
        raise ImportError(msg) from error


@contextmanager
def _client(workers: int, scheduler: str) -> Iterator:
    """A Dask client on `scheduler`, or on a new LocalCluster of `workers` processes."""
    try:
        from distributed import Client, LocalCluster
    except ImportError as error:  # pragma: no cover - dask[distributed] is a dependency
        msg = "parallel work needs dask.distributed: pip install 'dask[distributed]'."
        raise ImportError(msg) from error
    if scheduler:
        try:
            client = Client(scheduler, timeout=CONNECT_TIMEOUT)
        except OSError as error:
            msg = (
                f"no Dask scheduler answers at dask.scheduler = {scheduler!r} ({error}); start "
                f"one (`dask scheduler`) or set scheduler = \"\" to use this machine's cores."
            )
            raise ValueError(msg) from error
        try:
            yield client
        finally:
            client.close()
        return
    # Loopback only, a free port for the dashboard, one thread per worker: each
    # task is one image using one core, and several images never share a worker.
    # Every other user of the machine reaches the loopback interface too, and a
    # Dask scheduler runs whatever code it is sent: so mutual TLS with a key and
    # certificate made for this cluster alone, held in memory (never on disk) by
    # this process and the workers it starts. A client without them is refused.
    security = _private_security()
    with _fast_worker_start():
        cluster = LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
            protocol="tls://", security=security,
            dashboard_address="127.0.0.1:0", silence_logs=logging.ERROR,
        )
    try:
        client = Client(cluster, security=security)
        try:
            yield client
        finally:
            client.close()
    finally:
        cluster.close()


@contextmanager
def shared_clusters() -> Iterator[None]:
    """Let every :func:`map_images` call inside this block reuse one cluster.

    Starting a local cluster takes a few seconds; ``run`` extracts and then
    measures distances on the same workers. A cluster is started only when a
    call first needs one, and closed when the block ends. Nested blocks share
    the outermost one's clusters.

    Examples
    --------
    >>> with shared_clusters():  # doctest: +SKIP
    ...     extract(config)
    ...     measure_distances(config)
    """
    global _shared
    if _shared is not None:
        yield
        return
    _shared = {}
    try:
        yield
    finally:
        opened, _shared = _shared, None
        for context, _ in opened.values():
            context.__exit__(None, None, None)


def _cluster_running(workers: int) -> bool:
    """Whether :func:`shared_clusters` already holds a local cluster of `workers` workers."""
    return _shared is not None and (workers, "") in _shared


@contextmanager
def _use_client(workers: int, scheduler: str) -> Iterator:
    if _shared is None:
        with _client(workers, scheduler) as client:
            yield client
        return
    key = (workers, scheduler)
    if key not in _shared:
        context = _client(workers, scheduler)
        _shared[key] = (context, context.__enter__())
    yield _shared[key][1]


def _timed(function: Callable, task: tuple, sharing: bool) -> tuple[object, float]:
    """``function(*task)`` on an image thread (:func:`shares_cores` says `sharing`), and the
    seconds it took."""
    started = time.perf_counter()
    _image_thread.active = sharing
    try:
        value = function(*task)
    finally:
        _image_thread.active = False
    return value, time.perf_counter() - started


def _here_until_long(function: Callable, tasks: list, bar) -> Iterator:
    """Run `tasks` in this process, :data:`IN_PROCESS_IMAGES` at a time, until the rest
    looks long enough to pay for a cluster; yield each result as it finishes, and
    return how many tasks ran (a prefix of `tasks`).

    The rest is judged at the pace of the fastest task after the first (the first also
    pays one-off costs: imports, compiled loops loaded, the first connection), as
    ``fastest * left / threads``, and a cluster is worth its start when it would save
    more than :data:`CLUSTER_START_SECONDS` of that (:func:`cluster_saving`): the
    first `threads` tasks start together, and no
    other starts while they run until one of them but the first has finished. The
    first error stops new tasks; those running finish (each commits or rolls back
    its own transaction), then it is raised. So does an interruption (Ctrl-C): the
    images in flight are written whole, the others not begun.
    """
    cores = usable_cores()
    threads = max(1, min(IN_PROCESS_IMAGES, cores, len(tasks)))
    fastest = float("inf")
    started, stop = 0, False
    with ThreadPoolExecutor(threads, thread_name_prefix="image") as pool:
        running = {}
        try:
            while True:
                # The first `threads` together; then more once a pace is known (or when
                # nothing runs) and while the rest stays short.
                while (started < len(tasks) and len(running) < threads and not stop
                       and (started < threads or fastest < float("inf") or not running)):
                    running[pool.submit(_timed, function, tasks[started], threads > 1)] = started
                    started += 1
                if not running:
                    return started
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in sorted(finished, key=running.get):
                    index = running.pop(future)
                    value, seconds = future.result()
                    if index:
                        fastest = min(fastest, seconds)
                    yield value
                    bar.update()
                left = len(tasks) - started
                # The cluster map_images would start: one worker per core, no more than
                # the images left.
                stop = stop or bool(left and fastest < float("inf") and cluster_saving(
                    fastest * left / threads, min(cores, left)) > CLUSTER_START_SECONDS)
        finally:
            for future in running:
                future.cancel()


def map_images(function: Callable, tasks: Iterable[tuple], *, workers: int = 1,
               scheduler: str = "", desc: str = "images", unit: str = "image",
               retries: int = RETRIES) -> Iterator:
    """Call ``function(*task)`` for every task and yield the results as they finish.

    Each task is one image: it opens its own files and database connection and
    commits its own transaction, so an interruption loses at most the images
    in flight, and running again resumes. The first input error (ValueError,
    TypeError, FileNotFoundError) stops the remaining tasks and is raised.

    Parameters
    ----------
    function : callable
        A module-level function (it is pickled by reference to the workers,
        which must be able to import it).
    tasks : iterable of tuple
        Positional arguments, one tuple per call: names and paths, not arrays.
    workers : int
        Worker processes when `scheduler` is empty: 1 → in this process, one
        after the other, no cluster; 0 → in this process, up to
        :data:`IN_PROCESS_IMAGES` at a time on threads, while a cluster would
        save no more than :data:`CLUSTER_START_SECONDS` of the images left
        (:func:`cluster_saving`, judged from the fastest image done after the
        first), then a local Dask cluster with one worker per usable core for
        the rest; N → a local cluster of N
        workers (never more than tasks).
    scheduler : str
        Address of a running Dask scheduler (``tcp://host:8786``): its workers
        run the tasks and `workers` is ignored. "" → this machine.
    desc, unit : str
        Progress bar labels.
    retries : int
        Attempts after the first for a task that raised an unexpected error
        (not an input error). A worker that dies is replaced by Dask anyway.

    Yields
    ------
    object
        ``function(*task)`` of each task, in the order they finish.

    Examples
    --------
    >>> sorted(map_images(pow, [(2, 3), (3, 2)], workers=1, desc="demo"))  # doctest: +SKIP
    [8, 9]
    """
    tasks = list(tasks)
    n = worker_count(workers, len(tasks))
    # The caller's warning filters whole afterwards, whatever the image threads (and the
    # Dask client's) left of them (rna_localization._cores.warning_filters_kept).
    with tqdm(total=len(tasks), desc=desc, unit=unit, disable=not tasks) as bar, \
            warning_filters_kept():
        if not tasks:
            return
        if n == 1 and not scheduler:
            for task in tasks:
                yield function(*task)
                bar.update()
            return
        if workers == 0 and not scheduler and not _cluster_running(n):
            done = yield from _here_until_long(function, tasks, bar)
            tasks = tasks[done:]
            if not tasks:
                return
            n = worker_count(workers, len(tasks))
        from distributed import KilledWorker, as_completed

        with _use_client(n, scheduler) as client:
            _show_dashboard(client)
            # pure=False: each call is its own task, even with equal arguments
            # (the same image extracted again must run again).
            batch = uuid.uuid4().hex[:12]  # keys unique on a scheduler shared by many runs
            futures = [client.submit(_call, function, task, pure=False, retries=retries,
                                     key=f"{desc}-{batch}-{i}")
                       for i, task in enumerate(tasks)]
            index = {future.key: i for i, future in enumerate(futures)}
            try:
                for future in as_completed(futures):
                    try:
                        ok, value = future.result()
                    except KilledWorker as error:
                        msg = (
                            f"{desc}: workers died {error.allowed_failures + 1} times running "
                            f"{unit} {index[future.key] + 1} of {len(tasks)} (killed, or out of "
                            f"memory); nothing of it was written. Give each worker more memory, "
                            f"or use fewer workers, and run again."
                        )
                        raise PipelineError(msg) from error
                    if not ok:
                        raise value
                    yield value
                    bar.update()
            finally:
                client.cancel(futures)
