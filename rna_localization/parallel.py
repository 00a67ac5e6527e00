"""Running one function over many images, in worker processes, with a progress bar."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait

from tqdm.auto import tqdm

__all__ = ["map_images", "worker_count"]


def worker_count(workers: int, n_tasks: int) -> int:
    """Processes to use: `workers`, or one per core when 0; never more than tasks."""
    if workers == 0:
        workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(workers, n_tasks))


def map_images(function: Callable, tasks: Iterable[tuple], *, workers: int = 1,
               scheduler: str = "", desc: str = "images", unit: str = "image") -> Iterator:
    """Call ``function(*task)`` for every task and yield the results as they finish.

    Each task is one image: it opens its own files and database connection and
    commits its own transaction, so an interruption loses at most the images
    in flight. The first error stops the pool and is raised.

    Parameters
    ----------
    function : callable
        A module-level function (it is pickled to the worker processes).
    tasks : iterable of tuple
        Positional arguments, one tuple per call.
    workers : int
        Processes; 0 → one per core; 1 → in this process.
    scheduler : str
        Address of a Dask scheduler (``tcp://host:8786``); "" → local processes.
    desc, unit : str
        Progress bar labels.
    """
    tasks = list(tasks)
    n = worker_count(workers, len(tasks))
    with tqdm(total=len(tasks), desc=desc, unit=unit, disable=not tasks) as bar:
        if n == 1:
            for task in tasks:
                yield function(*task)
                bar.update()
            return
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=n, mp_context=context) as pool:
            pending = {pool.submit(function, *task) for task in tasks}
            try:
                while pending:
                    done, pending = wait(pending, return_when=FIRST_EXCEPTION)
                    for future in done:
                        yield future.result()
                        bar.update()
            finally:
                for future in pending:
                    future.cancel()
