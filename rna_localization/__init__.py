"""rna_localization: where RNA sits inside cells in 3D microscopy.

The public API is the list in ``__all__`` (also in the README, "Python API").
Its names are imported on first use: ``import rna_localization`` alone loads
no numpy, scipy or pandas, so that the command line answers (and Ctrl-C in its
first second is one line, not an import traceback) at once.
"""

from __future__ import annotations

import importlib

# Public name -> module defining it.
_HOMES = {
    "Config": "config",
    "load_config": "config",
    "nearest_distances": "distances",
    "cumulative_distribution": "distributions",
    "distance_steps": "distributions",
    "normalize_intensities": "distributions",
    "single_molecule_references": "distributions",
    "label_objects": "objects",
    "measure_objects": "objects",
}

__version__ = "0.1.0"

__all__ = [
    "Config",
    "cumulative_distribution",
    "distance_steps",
    "label_objects",
    "load_config",
    "measure_objects",
    "nearest_distances",
    "normalize_intensities",
    "single_molecule_references",
]


def __getattr__(name: str):
    if name in _HOMES:
        value = getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)
        globals()[name] = value
        return value
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
