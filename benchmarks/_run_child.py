"""One timed ``run`` in a fresh process, for :mod:`benchmarks.bench_run`.

``python -m benchmarks._run_child CONFIG --database NAME --workers N [--profile FILE]``
prints one JSON line: the run's wall time, each step's time, and the peak
resident memory of this process (its own: VmHWM) and of its (finished) child processes.
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import functools
import json
import resource
import time


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("config")
    parser.add_argument("--database", required=True)
    parser.add_argument("--workers", type=int, required=True)
    parser.add_argument("--profile")
    args = parser.parse_args(argv)

    from rna_localization import load_config, steps
    from rna_localization.db import Database

    from ._common import maxrss_kb, own_peak_kb

    config = load_config(args.config)
    config = dataclasses.replace(
        config,
        database=dataclasses.replace(config.database, name=args.database),
        distances=dataclasses.replace(config.distances, workers=args.workers),
    )
    db = Database.from_config(config)  # server start and database creation: not timed

    timings: dict[str, float] = {}

    def timed(name, function):
        @functools.wraps(function)
        def wrapper(*a, **k):
            start = time.perf_counter()
            try:
                return function(*a, **k)
            finally:
                timings[name] = timings.get(name, 0.0) + time.perf_counter() - start
        return wrapper

    # run() calls the steps through the module's globals: time each of them.
    for name in ["extract", "measure_distances", "load_metadata", "normalize",
                 "compute_distributions", "make_plots"]:
        setattr(steps, name, timed(name, getattr(steps, name)))

    profiler = cProfile.Profile() if args.profile else None
    start = time.perf_counter()
    if profiler:
        profiler.enable()
    steps.run(config, db=db)
    if profiler:
        profiler.disable()
        profiler.dump_stats(args.profile)
    seconds = time.perf_counter() - start
    print(json.dumps({
        "seconds": seconds,
        "steps": timings,
        "maxrss_self_mb": own_peak_kb() / 1024,
        "maxrss_children_mb": maxrss_kb(resource.RUSAGE_CHILDREN) / 1024,
    }))


if __name__ == "__main__":
    main()
