"""What every benchmark shares: results, timing, profiles and the machine's description."""

from __future__ import annotations

import cProfile
import io
import platform
import pstats
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from rna_localization.apertures import STORED_COLUMNS
from rna_localization.objects import OBJECT_COLUMNS
from rna_localization.parallel import usable_cores

__all__ = ["Figure", "Section", "best_time", "machine_description", "profile_summary",
           "section_markdown", "standalone"]


@dataclass
class Figure:
    """One reported number and its target.

    Attributes
    ----------
    name : str
        What is measured.
    value : str
        The number, formatted (e.g. ``"412x"``).
    target : str
        The target it is held to, or "" when it is for information.
    met : bool or None
        Whether the target is met; None without a target.
    """

    name: str
    value: str
    target: str = ""
    met: bool | None = None

    @property
    def verdict(self) -> str:
        return {True: "met", False: "NOT met", None: ""}[self.met]


@dataclass
class Section:
    """The figures of one benchmark module, with notes in Markdown (method, profile)."""

    title: str
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0


def section_markdown(section: Section, *, heading: bool = True) -> str:
    """The section as Markdown, as ``python -m benchmarks`` writes it into RESULTS.md."""
    lines = [f"## {section.title}", ""] if heading else []
    if section.figures:
        lines += ["| figure | value | target | |", "|---|---|---|---|"]
        lines += [f"| {f.name} | {f.value} | {f.target} | {f.verdict} |" for f in section.figures]
        lines.append("")
    for note in section.notes:
        lines += [note, ""]
    return "\n".join(lines).rstrip() + "\n"


def standalone(module: str, doc: str, run: Callable[..., Section], quick_help: str,
               argv: list[str] | None = None) -> int:
    """``python -m benchmarks.<module> [--quick]``: run one benchmark, print its Markdown."""
    import argparse

    parser = argparse.ArgumentParser(prog=f"python -m benchmarks.{module}",
                                     description=doc.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=quick_help)
    args = parser.parse_args(argv)
    section = run(quick=args.quick)
    print()
    print(section_markdown(section))
    print(f"({section.seconds:.0f} s)")
    return 0


def best_time(function: Callable[[], object], *, repeat: int = 3) -> float:
    """Smallest wall-clock time of `repeat` calls, in seconds (the least disturbed one)."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def profile_summary(function: Callable[[], object], *, top: int = 15,
                    sort: str = "cumulative") -> str:
    """cProfile one call of `function`; the `top` entries, as text for a Markdown code block."""
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        function()
    finally:
        profiler.disable()
    return format_profile(profiler, top=top, sort=sort)


def format_profile(profiler_or_path, *, top: int = 15, sort: str = "cumulative") -> str:
    """The `top` entries of a profile (a cProfile.Profile or a saved file), paths shortened."""
    out = io.StringIO()
    stats = pstats.Stats(str(profiler_or_path) if isinstance(profiler_or_path, Path)
                         else profiler_or_path, stream=out)
    stats.strip_dirs().sort_stats(sort).print_stats(top)
    lines = out.getvalue().splitlines()
    start = next((i for i, line in enumerate(lines) if line.lstrip().startswith("ncalls")), 0)
    return "\n".join(line.rstrip() for line in lines[start:] if line.strip())


def status_kb(field: str) -> int | None:
    """A field of /proc/self/status in kB (``VmRSS``, ``VmHWM``), None where there is none."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def own_peak_kb() -> int:
    """This process's own peak resident memory, kB.

    ``ru_maxrss`` would not do for a child process: Linux carries the parent's
    peak over fork and exec (a child of a 2 GB benchmark process reports 2 GB
    before it has done anything), so it is read from /proc (VmHWM), and from
    ``ru_maxrss`` only where there is no /proc.
    """
    return status_kb("VmHWM") or maxrss_kb(resource.RUSAGE_SELF)


def maxrss_kb(who: int) -> int:
    """``ru_maxrss`` of ``resource.RUSAGE_SELF`` or ``RUSAGE_CHILDREN`` in kB (macOS counts bytes)."""
    peak = resource.getrusage(who).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gb() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return float("nan")


def machine_description() -> list[tuple[str, str]]:
    """(what, value) pairs: CPU, cores, memory, OS and library versions."""
    import dask
    import distributed
    import numba
    import numpy
    import pandas
    import psycopg2
    import scipy

    cores = usable_cores()
    return [
        ("CPU", _cpu_model()),
        ("cores available", str(cores)),
        ("memory", f"{_memory_gb():.1f} GiB"),
        ("OS", platform.platform()),
        ("Python", platform.python_version()),
        ("numpy / scipy / pandas", f"{numpy.__version__} / {scipy.__version__} / {pandas.__version__}"),
        ("numba", numba.__version__),
        ("dask / distributed", f"{dask.__version__} / {distributed.__version__}"),
        ("psycopg2", psycopg2.__version__.split()[0]),
    ]


def synthetic_objects(rng, n: int, *, area=(10, 200), extent: float = 512.0,
                      apertures: bool = False) -> pd.DataFrame:
    """`n` objects with realistic values in the columns extraction writes.

    The columns of ``measure_objects``, with areas drawn in `area` (voxels)
    and centroids within 30 planes of `extent` x `extent` voxels; with
    `apertures`, the matched-aperture columns too (``STORED_COLUMNS``).
    """
    size = rng.integers(area[0], area[1], n)
    mean = rng.uniform(150, 3000, n)
    table = pd.DataFrame({
        "object_id": np.arange(1, n + 1, dtype=np.int64),
        "area": size,
        "centroid_z": rng.uniform(0, 30, n),
        "centroid_y": rng.uniform(0, extent, n),
        "centroid_x": rng.uniform(0, extent, n),
        "min_intensity": mean * 0.5,
        "max_intensity": mean * 1.8,
        "mean_intensity": mean,
        "total_intensity": mean * size,
    })[list(OBJECT_COLUMNS)]
    if apertures:
        table["spot_intensity"] = mean * size * rng.uniform(0.3, 0.6, n)
        table["background"] = rng.uniform(100, 300, n)
        for axis, top in zip("zyx", (30, extent, extent)):
            table[f"spot_centroid_{axis}"] = rng.uniform(0, top, n)
        table["capture_correction"] = 1.0  # a single molecule's aperture: no correction
        table["clipped_light"] = 0.0
        table = table[[*OBJECT_COLUMNS, *STORED_COLUMNS]]
    return table
