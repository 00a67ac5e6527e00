"""What the simulator puts in an image: microscopes, embryo geometry, RNA types, brightness.

Every number here is a documented constant; the other modules of
:mod:`rna_localization.synthetic` only use them.

Brightness is set in units of noise, as on a real microscope: a molecule's
*peak SNR* is the height of its noise-free Gaussian peak above the local
background divided by the background's noise standard deviation (shot noise
of the background, read noise and the fine texture of autofluorescence
together, all in camera counts). That is what was measured on real
hand-tagged widefield smFISH (median ~8, 10th–90th percentiles ~5–15; see
docs/segmentation.md), and what detection has to cope with.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..config import DEFAULT_SPACING

__all__ = [
    "CYCLES",
    "DEFAULT_PRESET",
    "SIMULATOR_VERSION",
    "PRESETS",
    "RNA_TYPES",
    "Microscope",
    "RnaModel",
]


#: Bumped whenever the same seed would give different pixels.
SIMULATOR_VERSION = "2.2"


@dataclass(frozen=True)
class Microscope:
    """A microscope and camera: voxel size, optics, background and noise.

    Attributes
    ----------
    name : str
        Preset name.
    spacing : (float, float, float)
        Voxel size (z, y, x), microns.
    psf_sigma_um : (float, float, float)
        Standard deviations (z, y, x) of the Gaussian point-spread function, microns.
    camera_offset : float
        Counts added to every voxel.
    gain : float
        Counts per photoelectron.
    read_noise : float
        Standard deviation of the read noise, photoelectrons.
    autofluorescence : float
        Mean photoelectrons per voxel of cell autofluorescence inside the
        embryo (smooth, varying by :data:`AUTOFLUORESCENCE_VARIATION` over a
        few microns).
    haze : float
        Mean photoelectrons per voxel of out-of-focus haze (light from
        planes above and below, varying over several microns laterally).
    texture : float
        Standard deviation of the fine texture of autofluorescence (grainy
        at ~0.4 µm), as a fraction of the background's shot noise.
    blobs_per_100um2 : float
        Mean number of bright out-of-focus blobs (cells, yolk) per 100 µm²
        of field.
    """

    name: str
    spacing: tuple[float, float, float]
    psf_sigma_um: tuple[float, float, float]
    camera_offset: float
    gain: float
    read_noise: float
    autofluorescence: float
    haze: float
    texture: float = 0.25
    blobs_per_100um2: float = 0.8

    @property
    def background(self) -> float:
        """Mean background inside the embryo, photoelectrons per voxel."""
        return self.autofluorescence + self.haze

    @property
    def noise(self) -> float:
        """Background noise standard deviation, photoelectrons per voxel.

        Shot noise of the mean background, read noise and the texture, added
        in quadrature: the reference of every peak SNR.
        """
        shot = self.background
        return math.sqrt(shot + self.read_noise**2 + self.texture**2 * shot)


#: Microscopes the simulator knows. Both are 100x oil objectives:
#:
#: - ``"widefield"``: NA 1.45, 11 µm camera pixels (0.11 µm), 0.3 µm z steps,
#:   a bright, hazy background (~3,300 counts, noise ~85 counts), like the
#:   hand-tagged widefield smFISH data the defaults are checked against;
#: - ``"confocal"``: spinning disk, 6.5 µm sCMOS pixels (0.065 µm), 0.2 µm z
#:   steps, a dimmer background (~300 counts, noise ~16 counts). The default:
#:   its voxel size is the pipeline's default scale.
PRESETS: dict[str, Microscope] = {
    "widefield": Microscope(
        name="widefield",
        spacing=(0.3, 0.11, 0.11),
        psf_sigma_um=(0.33, 0.115, 0.115),
        camera_offset=100.0,
        gain=2.0,
        read_noise=1.6,
        autofluorescence=1100.0,
        haze=500.0,
    ),
    "confocal": Microscope(
        name="confocal",
        spacing=DEFAULT_SPACING,
        psf_sigma_um=(0.30, 0.10, 0.10),
        camera_offset=100.0,
        gain=1.0,
        read_noise=1.5,
        autofluorescence=150.0,
        haze=50.0,
    ),
}
#: The preset of :func:`~rna_localization.synthetic.simulate_image` and the demo.
DEFAULT_PRESET = "confocal"

# --------------------------------------------------------------- background
#: Relative standard deviation of the smooth autofluorescence, and its
#: correlation length (µm).
AUTOFLUORESCENCE_VARIATION = 0.25
AUTOFLUORESCENCE_LENGTH_UM = 3.0
#: Relative standard deviation of the haze, and its lateral / axial
#: correlation lengths (µm).
HAZE_VARIATION = 0.4
HAZE_LENGTH_UM = (6.0, 4.0)
#: Correlation length (µm) of the fine texture of autofluorescence.
TEXTURE_LENGTH_UM = 1.0
#: Bright out-of-focus blobs: lateral and axial Gaussian sigmas (µm) and peak
#: height relative to the mean background.
BLOB_SIGMA_XY_UM = (2.0, 4.0)
BLOB_SIGMA_Z_UM = 3.0
BLOB_HEIGHT = (0.5, 2.0)
#: Above the embryo surface the autofluorescence is this fraction of the one below;
#: the step is blurred over this many µm (the axial PSF and out-of-focus light).
OUTSIDE_AUTOFLUORESCENCE = 0.2
SURFACE_BLUR_UM = 1.0

# --------------------------------------------------------------- brightness
#: Median peak SNR of a molecule (see the module docstring).
MOLECULE_SNR = 8.0
#: Standard deviation of the natural log of a molecule's brightness: with a
#: median of 8, 10% of molecules are below ~5.7 and 10% above ~11.3. Measured on
#: the simulated widefield stacks as on hand-tagged real ones (each plane less its
#: 15 x 15 px median, over the noise SD; the brightest voxel by each molecule), the
#: 10th and 90th percentiles over the median read 0.69-0.71 and 1.38-1.45, the real
#: images' 0.70 and 1.40 (docs/quantification.md, "What the granules' mean absolute
#: error is made of").
MOLECULE_BRIGHTNESS_SIGMA = 0.27
#: Standard deviation of the natural log of a data set's images' molecule brightness
#: (:func:`~.dataset.simulate_dataset` multiplies each image's median molecule SNR by a
#: log-normal factor): on the six measured real widefield images, the molecules' median
#: peak above the background (peak SNR times noise SD: 554-884 counts) spreads by 0.18 of
#: log from image to image (docs/quantification.md, "Images whose molecules differ in
#: brightness"). A group's images then differ in brightness as real ones do.
IMAGE_BRIGHTNESS_SIGMA = 0.18
#: Median peak SNR of a centrosome's (blurred) centre in its own channel,
#: times a per-centrosome factor drawn from the range below.
CENTROSOME_SNR = 15.0
CENTROSOME_BRIGHTNESS_RANGE = (0.7, 1.3)

# ----------------------------------------------------------------- geometry
#: Each spot is rendered in a box of +- this many PSF sigmas (the tails beyond
#: carry < 0.1% of its photons).
PSF_TRUNCATION = 3.5
#: Ideal masks are the voxels where an object's own noise-free image reaches
#: this fraction of its peak (0.5: inside its half-maximum isosurface).
IDEAL_MASK_FRACTION = 0.5
#: Nuclear cycles the simulator knows.
CYCLES = ("nc13", "nc14")
#: Centre-to-centre spacing (µm) of neighbouring nuclei at the embryo surface:
#: about 3000 surface nuclei at nc13 and 6000 at nc14 on a ~0.2 mm^2 cortex give
#: hexagonal spacings of ~8.5 µm and ~6 µm.
NUCLEAR_SPACING_UM = {"nc13": 8.5, "nc14": 6.0}
#: Standard deviation of each nucleus' lateral displacement from its lattice
#: site, as a fraction of the spacing.
NUCLEAR_JITTER = 0.08
#: Nuclear semi-axes (lateral, axial) in µm: round at nc13, narrower and
#: elongated along the apical-basal axis at nc14.
NUCLEAR_RADIUS_UM = {"nc13": (2.8, 2.8), "nc14": (2.0, 3.5)}
#: Distance (µm) between the two centrosomes of a nucleus in interphase.
CENTROSOME_PAIR_SPACING_UM = {"nc13": 4.5, "nc14": 3.0}
#: Relative standard deviation of the pair spacing.
CENTROSOME_PAIR_JITTER = 0.05
#: Range (µm) of centrosome radii (pericentriolar material, 0.4-0.9 µm across).
CENTROSOME_RADIUS_UM = (0.2, 0.45)
#: Depth (µm, from plane 0) of the embryo surface; nothing lies above it.
SURFACE_DEPTH_UM = 0.6
#: Mean depth (µm) of centrosome centres, and its standard deviation.
CENTROSOME_DEPTH_UM = 1.4
CENTROSOME_DEPTH_SD_UM = 0.15
#: Gap (µm) between the centrosome layer and the top of the nuclear envelope.
NUCLEUS_GAP_UM = 0.5
#: Smallest and largest number of molecules in a granule as drawn (granules whose balls
#: overlap then fuse into one, which holds their sum).
GRANULE_SIZE = (4, 15)
#: Radius (µm) of the ball a granule's molecules are spread uniformly in.
GRANULE_RADIUS_UM = 0.25
#: Mean distance (µm, exponential) of a granule's centre from its centrosome's surface.
GRANULE_OFFSET_UM = 0.5


@dataclass(frozen=True)
class RnaModel:
    """How one RNA type is spread through the cytoplasm.

    Attributes
    ----------
    dispersed_density : float
        Single molecules per µm^3 of cytoplasm, placed uniformly.
    enriched_per_centrosome : float
        Mean number of extra single molecules around each centrosome.
    enrichment_length_um : float
        Mean distance (µm, exponential) of those molecules from the
        centrosome's surface.
    granules_per_centrosome : float
        Mean number of granules per centrosome in the field.
    granules_near_centrosomes : bool
        Granules sit next to centrosomes (True) or anywhere in the cytoplasm.
    """

    dispersed_density: float
    enriched_per_centrosome: float
    enrichment_length_um: float
    granules_per_centrosome: float
    granules_near_centrosomes: bool


#: The RNA types the simulator knows. ``cen`` behaves like *centrocortin*
#: mRNA (pericentrosomal, in granules); ``gapdh`` like a housekeeping mRNA.
RNA_TYPES = {
    "cen": RnaModel(
        dispersed_density=0.15,
        enriched_per_centrosome=15.0,
        enrichment_length_um=0.6,
        granules_per_centrosome=0.8,
        granules_near_centrosomes=True,
    ),
    "gapdh": RnaModel(
        dispersed_density=0.6,
        enriched_per_centrosome=0.0,
        enrichment_length_um=0.5,
        granules_per_centrosome=0.05,
        granules_near_centrosomes=False,
    ),
}
