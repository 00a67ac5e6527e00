"""One ``extract`` in a fresh process, for :mod:`benchmarks.bench_fullframe`.

``python -m benchmarks._extract_child CONFIG --database NAME`` prints one JSON
line: the step's wall time, the peak of the memory Python and numpy
allocated during it (tracemalloc: every array buffer, the TIFFs read, the
blobs sent; not the compiled loops' own arrays, nor a stack mapped from its
file), and the process's resident memory before the step and at its peak
(VmHWM: everything, the pages of a mapped stack that were read included), with
workers = 1 so that the images are extracted in this process.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
import tracemalloc


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("config")
    parser.add_argument("--database", required=True)
    args = parser.parse_args(argv)

    from rna_localization import load_config, steps
    from rna_localization.db import Database

    from ._common import own_peak_kb, status_kb

    config = load_config(args.config)
    config = dataclasses.replace(config, database=dataclasses.replace(config.database,
                                                                      name=args.database))
    db = Database.from_config(config)  # server start and database creation: not measured
    rss_before_kb = status_kb("VmRSS")
    tracemalloc.start()
    start = time.perf_counter()
    steps.extract(config, db=db, workers=1)
    seconds = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(json.dumps({"seconds": seconds, "peak_bytes": peak, "rss_before_kb": rss_before_kb,
                      "peak_rss_kb": own_peak_kb()}))


if __name__ == "__main__":
    main()
