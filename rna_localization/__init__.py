"""rna_localization: where RNA sits inside cells in 3D microscopy.

The public API is the list in ``__all__`` (also in the README, "Python API").
"""

from .config import Config, load_config
from .distances import nearest_distances
from .distributions import (
    cumulative_distribution,
    distance_steps,
    normalize_intensities,
    single_molecule_references,
)
from .objects import label_objects, measure_objects
from .viewer import view

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
    "view",
]
