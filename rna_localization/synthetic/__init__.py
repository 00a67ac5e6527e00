"""Simulated smFISH + centrosome stacks of *Drosophila* syncytial embryos, with ground truth.

Images look like what microscopes make: molecules a few noise standard
deviations above a high, uneven background (autofluorescence, haze,
out-of-focus blobs), seen through a Gaussian PSF by a camera with gain, offset,
shot and read noise. Every image comes with its truth (molecule positions and
brightness, ideal masks), so every number the pipeline reports can be checked.

Modules, in the order an image is made:

- :mod:`.model`: microscopes (:data:`PRESETS`), geometry, RNA types, brightness;
- :mod:`.geometry`: nuclei, centrosome pairs, where RNA may sit;
- :mod:`.rendering`: noise-free images, background and ideal masks;
- :mod:`.camera`: the camera's noise and counts;
- :mod:`.truth`: :class:`SimulatedImage` and curves computed from the truth;
- :mod:`.image`: :func:`simulate_image`;
- :mod:`.dataset`: :func:`simulate_dataset`, a whole data set on disk;
- :mod:`.optics`: :func:`born_wolf_psf`, a real objective's PSF (rings, defocus, spherical
  aberration), for test images beyond the Gaussian one.

Coordinates are voxel indices ``(z, y, x)`` unless a name ends in ``_um``;
``z`` grows away from the coverslip into the embryo. Everything is drawn
from one ``np.random.default_rng(seed)``: the same arguments give the same image.
"""

from .camera import apply_camera
from .dataset import (
    DISTANCE_STEP_UM,
    DISTANCE_THRESHOLDS_UM,
    GRANULE_THRESHOLD,
    STRUCTURES,
    dataset_conditions,
    simulate_dataset,
    single_molecule_voxels,
)
from .image import microscope, simulate_image
from .model import (
    CENTROSOME_PAIR_SPACING_UM,
    CYCLES,
    DEFAULT_PRESET,
    NUCLEAR_SPACING_UM,
    PRESETS,
    RNA_TYPES,
    SIMULATOR_VERSION,
    Microscope,
    RnaModel,
)
from .optics import born_wolf_psf, render_points
from .scoring import mask_spots, match_points, score_spots, unresolvable
from .truth import SimulatedImage, expected_distribution

#: Voxel size (z, y, x) µm and PSF sigmas (z, y, x) µm of the default preset.
SPACING_UM = PRESETS[DEFAULT_PRESET].spacing
PSF_SIGMA_UM = PRESETS[DEFAULT_PRESET].psf_sigma_um

__all__ = [
    "CENTROSOME_PAIR_SPACING_UM",
    "CYCLES",
    "DEFAULT_PRESET",
    "DISTANCE_STEP_UM",
    "DISTANCE_THRESHOLDS_UM",
    "GRANULE_THRESHOLD",
    "NUCLEAR_SPACING_UM",
    "PRESETS",
    "PSF_SIGMA_UM",
    "RNA_TYPES",
    "SIMULATOR_VERSION",
    "SPACING_UM",
    "STRUCTURES",
    "Microscope",
    "RnaModel",
    "SimulatedImage",
    "apply_camera",
    "born_wolf_psf",
    "dataset_conditions",
    "expected_distribution",
    "mask_spots",
    "match_points",
    "microscope",
    "render_points",
    "score_spots",
    "simulate_dataset",
    "simulate_image",
    "single_molecule_voxels",
    "unresolvable",
]
