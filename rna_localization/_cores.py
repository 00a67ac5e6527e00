"""How many cores this process may use (one definition for the pipeline and the array core),
and a function run on that many threads."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

__all__ = ["in_threads", "usable_cores"]


def usable_cores() -> int:
    """The cores this process may run on (a batch job's share, not the whole node).

    A job given 32 CPUs of a 128-core node sees 32 here (its CPU affinity),
    where ``os.cpu_count()`` says 128.

    Examples
    --------
    >>> 1 <= usable_cores() <= (os.cpu_count() or 1)
    True
    """
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def in_threads(function, items, threads: int) -> list:
    """``[function(item) for item in items]``, on up to `threads` threads (in order).

    For functions that release the GIL (numpy's large operations, compiled
    loops, KD-tree queries); one thread, or one item, runs here without a pool.

    Examples
    --------
    >>> in_threads(lambda x: x * x, range(4), 2)
    [0, 1, 4, 9]
    """
    items = list(items)
    if threads <= 1 or len(items) <= 1:
        return [function(item) for item in items]
    with ThreadPoolExecutor(min(threads, len(items))) as pool:
        return list(pool.map(function, items))
