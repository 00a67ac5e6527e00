"""rna_localization: where RNA sits inside cells in 3D microscopy.

The public API is the list in ``__all__`` (also in the README, "Python API").
Its names are imported on first use, so that the command line starts (and
``rna-localization --help`` answers) without loading numpy, pandas or scipy.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# Public name → the module defining it.
_API = {
    "Config": "config",
    "cumulative_distribution": "distributions",
    "distance_steps": "distributions",
    "label_objects": "objects",
    "load_config": "config",
    "measure_objects": "objects",
    "nearest_distances": "distances",
    "normalize_intensities": "distributions",
    "single_molecule_references": "distributions",
    "view": "viewer",
}

__all__ = sorted(_API)


def __getattr__(name: str):
    if name not in _API:
        msg = f"module {__name__!r} has no attribute {name!r}"
        raise AttributeError(msg)
    value = getattr(importlib.import_module(f".{_API[name]}", __name__), name)
    globals()[name] = value  # once: later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
