"""How many cores and how much memory this process may use (one definition for the pipeline
and the array core), a function run on that many threads, a separable filter's passes
shared among them, and the warning filters kept whole around threads."""

from __future__ import annotations

import math
import os
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np

__all__ = ["available_memory", "in_threads", "separable_in_threads", "thread_count",
           "usable_cores", "warning_filters_kept"]

#: :func:`separable_in_threads` cuts a volume into slabs of at least this many voxels
#: (smaller volumes are filtered whole: a thread's start costs more than it saves) ...
SLAB_VOXELS = 1 << 21
#: ... and into this many slabs per thread, so that a thread slowed by another process
#: holds the others up by a fraction of a pass.
SLABS_PER_THREAD = 4


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


def thread_count(threads: int | None) -> int:
    """Threads to use: `threads` (at least 1), or every usable core when None.

    Examples
    --------
    >>> thread_count(0), thread_count(3), thread_count(None) == usable_cores()
    (1, 3, True)
    """
    return usable_cores() if threads is None else max(int(threads), 1)


def available_memory() -> int:
    """Bytes this process may still allocate without swapping.

    The machine's available memory, or less where a control group limits
    this process (a batch job's share of a node, a container): there, its
    limit less what the group uses, the page cache it could drop not counted.

    Examples
    --------
    >>> 0 < available_memory()
    True
    """
    import psutil

    return int(min(psutil.virtual_memory().available, cgroup_room()))


def cgroup_room(proc_cgroup: Path = Path("/proc/self/cgroup"),
                sys_cgroup: Path = Path("/sys/fs/cgroup")) -> float:
    """Bytes left under this process' control-group memory limits (cgroup v2 and v1); inf
    where none is set or none can be read.

    Each limit less its group's usage, plus the group's inactive file pages (page
    cache the kernel drops before it reclaims anything else).
    """
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return math.inf
    room = math.inf
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers == "":  # v2: one hierarchy
            base = sys_cgroup / path.lstrip("/")
            names = ("memory.max", "memory.current", "inactive_file")
        elif "memory" in controllers.split(","):  # v1: the memory controller's own
            base = sys_cgroup / "memory" / path.lstrip("/")
            names = ("memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file")
        else:
            continue
        try:
            limit_text = (base / names[0]).read_text().strip()
            if limit_text == "max":
                continue
            limit, usage = int(limit_text), int((base / names[1]).read_text())
            stat = dict(row.split()[:2] for row in (base / "memory.stat").read_text().splitlines()
                        if len(row.split()) >= 2)
            inactive = int(stat.get(names[2], 0))
        except (OSError, ValueError):
            continue
        if limit < 1 << 60:  # v1 writes "no limit" as a huge number
            room = min(room, limit - usage + inactive)
    return room


@contextmanager
def warning_filters_kept():
    """Put back, on leaving, the warning filters (and their display) found on entering.

    :class:`warnings.catch_warnings` saves and restores the process' filters,
    not a thread's (until Python 3.14). When two threads' blocks overlap and
    the first opened closes first, the second puts back the first one's
    filters, and they stay in force for the whole process. pandas opens such
    a block, ignoring UserWarning, in every ``astype``: two images read on two
    threads could so silence every later warning of the run (a
    :class:`~rna_localization.steps.PipelineWarning` is a UserWarning). Code
    that runs threads is wrapped in this (also as a decorator): whatever the
    threads left, the caller's filters come back. On any thread but the main
    one it does nothing (putting filters back there would race the same way).

    Examples
    --------
    >>> with warning_filters_kept():
    ...     warnings.simplefilter("ignore")
    >>> ("ignore", None, Warning, None, 0) in warnings.filters
    False
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    filters = list(warnings.filters)
    shown = (warnings.showwarning, warnings._showwarnmsg_impl)  # noqa: SLF001
    try:
        yield
    finally:
        warnings.filters = filters
        warnings.showwarning, warnings._showwarnmsg_impl = shown  # noqa: SLF001
        warnings._filters_mutated()  # noqa: SLF001 - the registries' cache, as catch_warnings does


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
    with warning_filters_kept(), ThreadPoolExecutor(min(threads, len(items))) as pool:
        return list(pool.map(function, items))


def separable_in_threads(volume, passes, *, threads: int):
    """A separable filter, one 1-D pass per axis, each pass shared among `threads` threads.

    ``passes`` is a sequence of ``(axis, pass1d)`` in the order to apply them,
    where ``pass1d(input, output)`` filters `input` along `axis` into
    `output` (e.g. ``ndimage.gaussian_filter1d(input, sigma, axis,
    output=output)``), as ``scipy.ndimage``'s separable filters run their
    passes. Each pass cuts the volume into slabs across another axis, so that
    every line along `axis` lies whole in one slab, and each slab is filtered
    straight into the result (the passes after the first in place): the
    result equals the passes run on the whole volume, voxel for voxel (for
    ``scipy.ndimage``'s 1-D filters, which release the GIL, to the bit), with
    no memory beyond it. One thread, or a volume under
    ``2 * SLAB_VOXELS``, is filtered in one call per pass.

    Parameters
    ----------
    volume : ndarray
    passes : sequence of (int, callable)
    threads : int

    Returns
    -------
    ndarray
        Shaped and typed like `volume` (every pass writes into it).

    Examples
    --------
    >>> from scipy import ndimage
    >>> volume = np.random.default_rng(0).random((4, 300, 200), dtype=np.float32)
    >>> passes = [(axis, lambda i, o, axis=axis: ndimage.gaussian_filter1d(
    ...     i, 2.0, axis, output=o, truncate=3.0)) for axis in range(3)]
    >>> whole = ndimage.gaussian_filter(volume, 2.0, truncate=3.0)
    >>> np.array_equal(separable_in_threads(volume, passes, threads=2), whole)
    True
    """
    volume = np.asarray(volume)
    result = np.empty(volume.shape, dtype=volume.dtype)
    if not passes:
        result[...] = volume
        return result
    pieces = min(max(threads, 1) * SLABS_PER_THREAD, volume.size // SLAB_VOXELS)
    source = volume
    for axis, pass1d in passes:
        # Across the longest other axis (stacks are thin along z).
        across = max((a for a in range(volume.ndim) if a != axis), key=lambda a: volume.shape[a])
        count = min(pieces, volume.shape[across])
        if threads <= 1 or count < 2:
            pass1d(source, result)
        else:
            bounds = np.linspace(0, volume.shape[across], count + 1).astype(int)
            cuts = [(slice(None),) * across + (slice(int(a), int(b)),)
                    for a, b in zip(bounds[:-1], bounds[1:])]
            in_threads(lambda cut: pass1d(source[cut], result[cut]), cuts, threads)  # noqa: B023
        source = result
    return result
