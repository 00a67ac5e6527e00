"""Deterministic fault injection for the crash-safety tests; a no-op unless asked for.

The pipeline calls :func:`fault_point` at the moments where an interruption
matters most (inside a transaction, after its rows are written and before it
commits). Two environment variables turn a point into a fault:

``RNA_LOCALIZATION_TEST_KILL_AT=<point>:<k>``
    SIGKILL this process (as ``kill -9`` would) the k-th time it reaches
    ``<point>``, e.g. ``extract:3`` kills inside the transaction of the third
    image written.
``RNA_LOCALIZATION_TEST_PAUSE_AT=<point>:<k>@<gate file>``
    The k-th time it reaches ``<point>``, create ``<gate file>`` and wait
    (at most 5 minutes) until someone deletes it: a test can then act while
    this process holds its locks and an open transaction.

Points: ``extract`` (one image of one structure written, not committed),
``extracted`` (every image extracted, the tables not yet vacuumed), ``distances`` (one
image's distances written, not committed), ``normalize`` (every
normalized_intensity written, not committed).
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from pathlib import Path

__all__ = ["KILL_ENV", "PAUSE_ENV", "fault_point"]

KILL_ENV = "RNA_LOCALIZATION_TEST_KILL_AT"
PAUSE_ENV = "RNA_LOCALIZATION_TEST_PAUSE_AT"

_reached: Counter[str] = Counter()


def _matches(spec: str, point: str, count: int) -> bool:
    name, _, k = spec.partition(":")
    return name == point and k.isdigit() and int(k) == count


def fault_point(point: str) -> None:
    """Mark a point where a test may kill or pause this process; does nothing otherwise."""
    kill, pause = os.environ.get(KILL_ENV, ""), os.environ.get(PAUSE_ENV, "")
    if not (kill or pause):
        return
    _reached[point] += 1
    count = _reached[point]
    if kill and _matches(kill, point, count):
        os.kill(os.getpid(), signal.SIGKILL)
    spec, _, gate = pause.partition("@")
    if pause and gate and _matches(spec, point, count):
        gate_file = Path(gate)
        gate_file.write_text(str(os.getpid()), encoding="utf-8")
        deadline = time.monotonic() + 300
        while gate_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
