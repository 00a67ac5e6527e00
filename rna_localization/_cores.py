"""How many cores this process may use: one definition for the pipeline and the array core."""

from __future__ import annotations

import os

__all__ = ["usable_cores"]


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
