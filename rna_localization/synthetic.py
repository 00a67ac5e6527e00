"""Simulated smFISH + centrosome stacks of *Drosophila* syncytial embryos, with ground truth.

Every image is built from an explicit model, so every number the pipeline
reports can be checked against what was put in:

* **Geometry.** Nuclei sit on a jittered hexagonal lattice just under the
  embryo surface (flat over one field of view). Each nucleus has a pair of
  centrosomes above it (apical side); the nuclear spacing, the nuclear shape
  and the centrosome pair spacing depend on the nuclear cycle (``"nc13"`` or
  ``"nc14"``). RNA lives in the cytoplasm: below the surface, outside nuclei
  and centrosomes.
* **RNA.** Single molecules are points of log-normal brightness. Granules are
  tight clusters of 4-15 molecules. ``"cen"`` RNA (like *centrocortin*) is
  enriched around centrosomes and forms granules there; ``"gapdh"`` RNA is
  spread through the cytoplasm with hardly any granules.
* **Optics.** Every molecule is imaged as a 3D Gaussian point-spread function
  (PSF), wider in z than in xy. Centrosomes are small uniform balls of
  pericentriolar material blurred by the same PSF.
* **Camera.** Photon (Poisson) noise on the expected photon counts, plus a
  camera offset and Gaussian read noise, rounded and clipped to uint16
  (gain: one count per photoelectron).
* **Ideal masks.** Each object (single molecule, granule or centrosome) owns
  the voxels where its own noise-free image is at least
  :data:`IDEAL_MASK_FRACTION` of its peak (its half-maximum isosurface). A voxel
  claimed by several objects goes to the one whose own image is brightest
  there; a molecule left without any voxel joins the object that took its
  centre. For a single molecule the mask is the voxels whose centres lie in
  the PSF's half-maximum ellipsoid around the true position: 20 to 32 voxels
  at the default spacing, inside the default normalization range 10..40.

Coordinates are voxel indices ``(z, y, x)`` unless a name ends in ``_um``
(microns, origin at the centre of voxel (0, 0, 0)). ``z`` grows away from the
coverslip into the embryo: plane 0 is outside the embryo, above its surface.

Everything is drawn from one ``np.random.default_rng(seed)``: the same
arguments always give the same image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage
from scipy.spatial import cKDTree

__all__ = [
    "CYCLES",
    "RNA_TYPES",
    "SIMULATOR_VERSION",
    "SimulatedImage",
    "apply_camera",
    "dataset_conditions",
    "expected_distribution",
    "simulate_dataset",
    "simulate_image",
    "write_tiff",
]

#: Bumped whenever the same seed would give different pixels.
SIMULATOR_VERSION = "1.0"

# --------------------------------------------------------------------- optics
#: Voxel size (z, y, x) in microns: 100x/1.4 oil objective on a spinning disk,
#: 6.5 µm camera pixels, 0.2 µm z steps.
SPACING_UM = (0.2, 0.065, 0.065)
#: Gaussian PSF standard deviations (z, y, x) in microns. For ~600 nm emission
#: through a 1.4 NA objective and a spinning-disk pinhole the lateral FWHM is
#: ~0.24 µm and the axial FWHM ~0.7 µm (FWHM = 2.355 sigma).
PSF_SIGMA_UM = (0.30, 0.10, 0.10)
#: Each spot is rendered in a box of +- this many PSF sigmas (the tails beyond
#: carry < 0.1% of its photons).
PSF_TRUNCATION = 3.5
#: Ideal masks are the voxels where an object's own noise-free image reaches
#: this fraction of its peak (0.5: inside its half-maximum isosurface).
IDEAL_MASK_FRACTION = 0.5

# ------------------------------------------------------------------- geometry
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
#: Distance (µm) between the two centrosomes of a nucleus in interphase: they
#: sit over opposite sides of the nucleus, so they are closer in the smaller
#: nc14 nuclei.
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

# ------------------------------------------------------------------ brightness
#: Median number of detected photons of one molecule (its whole PSF, all planes);
#: its peak voxel then receives ~1400 photons, against ~110 counts of background.
MOLECULE_PHOTONS = 80_000.0
#: Standard deviation of the natural log of a molecule's brightness (probe
#: occupancy varies from molecule to molecule).
MOLECULE_BRIGHTNESS_SIGMA = 0.25
#: Smallest and largest number of molecules in a granule.
GRANULE_SIZE = (4, 15)
#: Radius (µm) of the ball a granule's molecules are spread uniformly in:
#: granules are ~0.5 µm across, with a half-maximum mask about twice a single
#: molecule's.
GRANULE_RADIUS_UM = 0.25
#: Photons per µm^3 of centrosome material (~340 photons per voxel inside it),
#: times a per-centrosome factor drawn from the range below.
CENTROSOME_PHOTON_DENSITY = 4.0e5
CENTROSOME_BRIGHTNESS_RANGE = (0.7, 1.3)
#: Diffuse autofluorescence below the embryo surface, photons per µm^3
#: (~10 photons per voxel), in both channels.
AUTOFLUORESCENCE_DENSITY = 1.2e4

# ---------------------------------------------------------------------- camera
#: Camera offset (counts added to every voxel) and read noise (counts, sd) of
#: an sCMOS camera at a gain of one count per photoelectron.
CAMERA_OFFSET = 100.0
READ_NOISE = 2.0


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

# Sub-voxel samples per axis for the partial volumes of centrosome balls.
_SUBSAMPLES = 3

#: Mean distance (µm, exponential) of a granule's centre from its centrosome's surface.
GRANULE_OFFSET_UM = 0.5

_MOLECULE_COLUMNS = {
    "molecule_id": "int64",
    "object_id": "int64",
    "z": "float64",
    "y": "float64",
    "x": "float64",
    "brightness": "float64",
    "in_granule": "bool",
    "distance_to_centrosomes": "float64",
}
_CENTROSOME_COLUMNS = {
    "centrosome_id": "int64",
    "z": "float64",
    "y": "float64",
    "x": "float64",
    "radius_um": "float64",
    "nucleus_id": "int64",
}
_NUCLEUS_COLUMNS = {
    "nucleus_id": "int64",
    "z": "float64",
    "y": "float64",
    "x": "float64",
    "radius_xy_um": "float64",
    "radius_z_um": "float64",
}


@dataclass
class SimulatedImage:
    """One simulated field of view and its ground truth.

    Attributes
    ----------
    name : str
        Image name (the file name without extension in a data set).
    rna : (Z, Y, X) ndarray of uint16
        Raw smFISH channel (camera counts).
    centrosomes : (Z, Y, X) ndarray of uint16
        Raw centrosome channel (camera counts).
    rna_labels : (Z, Y, X) ndarray of uint16
        Ideal segmentation of the RNA: one label per object (single molecule
        or granule), 1..n, 0 as background.
    centrosome_labels : (Z, Y, X) ndarray of uint16
        Ideal segmentation of the centrosomes, one label per centrosome.
    molecules : DataFrame
        One row per molecule: ``molecule_id``, ``object_id`` (its label in
        `rna_labels`), true position ``z``, ``y``, ``x`` in voxel coordinates,
        ``brightness`` (expected detected photons over its whole PSF),
        ``in_granule`` and ``distance_to_centrosomes`` (µm from the true
        position to the centre of the nearest voxel of `centrosome_labels`;
        NaN without centrosomes).
    centrosomes_table : DataFrame
        One row per centrosome: ``centrosome_id`` (its label), centre ``z``,
        ``y``, ``x`` in voxel coordinates, ``radius_um`` and ``nucleus_id``.
    metadata : dict
        ``name``, ``rna_type``, ``cycle``, ``replicate`` and ``seed``.
    nuclei : DataFrame
        One row per nucleus touching the field: ``nucleus_id``, centre ``z``,
        ``y``, ``x`` in voxel coordinates (possibly outside the volume) and
        its semi-axes ``radius_xy_um``, ``radius_z_um``.
    spacing : tuple of float
        Voxel size (z, y, x) in microns.
    """

    name: str
    rna: np.ndarray
    centrosomes: np.ndarray
    rna_labels: np.ndarray
    centrosome_labels: np.ndarray
    molecules: pd.DataFrame
    centrosomes_table: pd.DataFrame
    metadata: dict
    nuclei: pd.DataFrame = field(default_factory=pd.DataFrame)
    spacing: tuple[float, float, float] = SPACING_UM


# ----------------------------------------------------------------- validation
def _check_choice(value, choices, what: str) -> str:
    if value not in choices:
        msg = f"{what} must be one of {list(choices)}; got {value!r}."
        raise ValueError(msg)
    return value


def _check_geometry(shape, spacing) -> tuple[tuple[int, int, int], np.ndarray]:
    shape_t = tuple(int(n) for n in shape)
    if len(shape_t) != 3 or min(shape_t) < 8:
        msg = f"shape must be three sizes (Z, Y, X) of at least 8 voxels; got {tuple(shape)}."
        raise ValueError(msg)
    spacing_a = np.asarray(spacing, dtype=np.float64)
    if spacing_a.shape != (3,) or not np.all(np.isfinite(spacing_a)) or np.any(spacing_a <= 0):
        msg = f"spacing must be three positive microns per voxel (z, y, x); got {spacing!r}."
        raise ValueError(msg)
    depth = (shape_t[0] - 1) * spacing_a[0]
    needed = CENTROSOME_DEPTH_UM + 4 * CENTROSOME_DEPTH_SD_UM + CENTROSOME_RADIUS_UM[1]
    if depth < needed:
        msg = (
            f"shape {shape_t} with z spacing {spacing_a[0]} µm spans {depth:.2f} µm in z; "
            f"the centrosome layer needs at least {needed:.2f} µm. Add z planes."
        )
        raise ValueError(msg)
    return shape_t, spacing_a


# ------------------------------------------------------------------- geometry
def _hexagonal_nuclei(rng, extent_um, cycle):
    """Lateral nucleus centres (µm) on a jittered, rotated hexagonal lattice."""
    spacing = NUCLEAR_SPACING_UM[cycle]
    radius_xy, radius_z = NUCLEAR_RADIUS_UM[cycle]
    angle = rng.uniform(0, np.pi / 3)
    basis = spacing * np.array([[1.0, 0.0], [0.5, np.sqrt(3) / 2]])
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    basis = basis @ rotation.T
    reach = int(np.ceil(np.hypot(*extent_um) / spacing)) + 2
    i, j = np.meshgrid(np.arange(-reach, reach + 1), np.arange(-reach, reach + 1), indexing="ij")
    origin = np.asarray(extent_um) / 2 + rng.uniform(-0.5, 0.5, 2) * spacing
    centres = origin + i.reshape(-1, 1) * basis[0] + j.reshape(-1, 1) * basis[1]
    centres = centres + rng.normal(0.0, NUCLEAR_JITTER * spacing, centres.shape)
    # Keep nuclei whose ellipsoid can reach the field (they exclude RNA there).
    inside = np.all((centres > -radius_xy) & (centres < np.asarray(extent_um) + radius_xy), axis=1)
    return centres[inside], radius_xy, radius_z


def _sample_in_ball(rng, n, radius):
    """`n` points at distance `radius` (scalar or (n,)) from the origin, in
    uniformly random directions. Pass ``r * u ** (1 / 3)`` with ``u`` uniform
    in [0, 1) for points uniform in a ball of radius ``r``."""
    direction = rng.normal(size=(n, 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    return direction * np.asarray(radius, dtype=np.float64).reshape(-1, 1)


class _Embryo:
    """Where RNA may sit: the cytoplasm of one field, in µm."""

    def __init__(self, extent_um, nuclei_um, radius_xy, radius_z, centrosomes_um, radii,
                 margin_um):
        self.extent = np.asarray(extent_um)  # (z, y, x) of the last voxel centre
        self.nuclei = nuclei_um
        self.nuclei_tree = cKDTree(nuclei_um[:, 1:]) if len(nuclei_um) else None
        self.radius_xy, self.radius_z = radius_xy, radius_z
        self.centrosomes = centrosomes_um
        self.centrosome_tree = cKDTree(centrosomes_um) if len(centrosomes_um) else None
        self.centrosome_radii = radii
        self.margin = np.asarray(margin_um)

    def cytoplasm(self, points, margin=0.0):
        """Boolean (N,): inside the volume (with margins), below the surface,
        outside every nucleus and every centrosome."""
        points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        low = self.margin + margin
        ok = np.all((points >= low) & (points <= self.extent - low), axis=1)
        ok &= points[:, 0] >= SURFACE_DEPTH_UM + margin
        if self.nuclei_tree is not None:
            # Nuclei hardly ever overlap laterally: the two nearest centres in xy decide.
            k = min(2, len(self.nuclei))
            _, nearest = self.nuclei_tree.query(points[:, 1:], k=k)
            for column in np.asarray(nearest).reshape(len(points), k).T:
                delta = points - self.nuclei[column]
                inside = (
                    (delta[:, 1] ** 2 + delta[:, 2] ** 2) / self.radius_xy**2
                    + delta[:, 0] ** 2 / self.radius_z**2
                ) <= 1.0
                ok &= ~inside
        if self.centrosome_tree is not None:
            distance, nearest = self.centrosome_tree.query(points)
            ok &= distance > self.centrosome_radii[nearest] + margin
        return ok


def _place_near(rng, embryo, anchors, radii, counts, length_um, margin=0.0):
    """Points at (radius + exponential(length)) from each anchor, in cytoplasm.

    Rejected draws are drawn again (up to 50 rounds); the few still rejected
    are dropped.
    """
    owner = np.repeat(np.arange(len(anchors)), counts)
    accepted = []
    for _ in range(50):
        if owner.size == 0:
            break
        shell = radii[owner] + rng.exponential(length_um, owner.size)
        points = anchors[owner] + _sample_in_ball(rng, owner.size, shell)
        ok = embryo.cytoplasm(points, margin)
        accepted.append(points[ok])
        owner = owner[~ok]
    return np.concatenate(accepted) if accepted else np.zeros((0, 3))


def _place_uniform(rng, embryo, n, margin=0.0):
    """`n` uniform draws in the volume, kept where they fall in cytoplasm."""
    points = rng.uniform(0.0, 1.0, (n, 3)) * embryo.extent
    return points[embryo.cytoplasm(points, margin)]


# ------------------------------------------------------------------ rendering
def _half_widths(sigma_vox) -> np.ndarray:
    return np.ceil(PSF_TRUNCATION * np.asarray(sigma_vox)).astype(np.int64)


def _gaussian_boxes(centres, sigma_vox, shape):
    """Sampled Gaussians of many spots, each in its own small box.

    Parameters
    ----------
    centres : (N, 3) ndarray
        Spot centres in voxel coordinates.
    sigma_vox : (3,) ndarray
        Gaussian standard deviations in voxels.
    shape : tuple of int
        Volume shape.

    Returns
    -------
    flat : (N, B) ndarray of int64
        Flat voxel index of every box entry (0 where outside the volume).
    relative : (N, B) ndarray of float32
        The Gaussian divided by its peak (1 at the centre).
    valid : (N, B) ndarray of bool
        Entry lies inside the volume.
    """
    half = _half_widths(sigma_vox)
    base = np.rint(centres).astype(np.int64)
    profiles, indices, inside = [], [], []
    for axis in range(3):
        offsets = np.arange(-half[axis], half[axis] + 1)
        index = base[:, axis : axis + 1] + offsets
        profiles.append(
            np.exp(-0.5 * ((index - centres[:, axis : axis + 1]) / sigma_vox[axis]) ** 2)
            .astype(np.float32)
        )
        indices.append(index)
        inside.append((index >= 0) & (index < shape[axis]))
    n = len(centres)
    relative = (
        profiles[0][:, :, None, None] * profiles[1][:, None, :, None] * profiles[2][:, None, None, :]
    ).reshape(n, -1)
    valid = (inside[0][:, :, None, None] & inside[1][:, None, :, None]
             & inside[2][:, None, None, :]).reshape(n, -1)
    flat = ((indices[0][:, :, None, None] * shape[1] + indices[1][:, None, :, None]) * shape[2]
            + indices[2][:, None, None, :]).reshape(n, -1)
    flat = np.where(valid, flat, 0)
    return flat, relative, valid


def _render_molecules(positions, photons, owners, is_granule, shape, spacing, sigma_um):
    """Expected photons of all molecules and the ideal-mask candidates.

    Returns the flat expected image (float64) and candidate entries
    ``(flat_index, own_value, object_index)`` of every object's half-maximum
    region. Single molecules use their continuous Gaussian peak; granules the
    largest value of their summed profile on the voxel grid.
    """
    size = int(np.prod(shape))
    image = np.zeros(size, dtype=np.float64)
    sigma_vox = np.asarray(sigma_um) / spacing
    voxel_volume = float(np.prod(spacing))
    peak_per_photon = voxel_volume / ((2 * np.pi) ** 1.5 * float(np.prod(sigma_um)))
    amplitudes = photons * peak_per_photon
    cand_flat, cand_value, cand_owner = [], [], []
    gran_flat, gran_value, gran_owner = [], [], []
    chunk = 2048
    for start in range(0, len(positions), chunk):
        stop = start + chunk
        flat, relative, valid = _gaussian_boxes(positions[start:stop], sigma_vox, shape)
        values = relative * amplitudes[start:stop, None].astype(np.float32)
        image += np.bincount(flat[valid], weights=values[valid], minlength=size)
        owner = owners[start:stop]
        single = ~is_granule[owner]
        pick = valid & single[:, None] & (relative >= IDEAL_MASK_FRACTION)
        rows = np.nonzero(pick)[0]
        cand_flat.append(flat[pick])
        cand_value.append(values[pick])
        cand_owner.append(owner[rows])
        pick = valid & ~single[:, None]
        rows = np.nonzero(pick)[0]
        gran_flat.append(flat[pick])
        gran_value.append(values[pick])
        gran_owner.append(owner[rows])
    if gran_flat and sum(len(g) for g in gran_flat):
        key_owner = np.concatenate(gran_owner)
        key = key_owner * size + np.concatenate(gran_flat)
        unique, inverse = np.unique(key, return_inverse=True)
        summed = np.bincount(inverse, weights=np.concatenate(gran_value).astype(np.float64))
        owner = unique // size
        starts = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])
        peak = np.maximum.reduceat(summed, starts)
        peak = np.repeat(peak, np.diff(np.r_[starts, owner.size]))
        keep = summed >= IDEAL_MASK_FRACTION * peak
        cand_flat.append(unique[keep] % size)
        cand_value.append(summed[keep])
        cand_owner.append(owner[keep])
    return (
        image,
        np.concatenate(cand_flat) if cand_flat else np.zeros(0, np.int64),
        np.concatenate(cand_value).astype(np.float64) if cand_value else np.zeros(0),
        np.concatenate(cand_owner) if cand_owner else np.zeros(0, np.int64),
    )


def _render_centrosomes(centres_um, radii_um, densities, shape, spacing, sigma_um):
    """Uniform balls blurred by the PSF, rendered box by box.

    Returns the flat expected image and the half-maximum candidates as in
    :func:`_render_molecules`.
    """
    size = int(np.prod(shape))
    image = np.zeros(size, dtype=np.float64)
    sigma_vox = np.asarray(sigma_um) / spacing
    cand_flat, cand_value, cand_owner = [], [], []
    sub = (np.arange(_SUBSAMPLES) - (_SUBSAMPLES - 1) / 2) / _SUBSAMPLES
    for index, (centre_um, radius, density) in enumerate(zip(centres_um, radii_um, densities,
                                                             strict=True)):
        centre = centre_um / spacing
        half = np.ceil((radius + PSF_TRUNCATION * np.asarray(sigma_um)) / spacing).astype(int)
        base = np.rint(centre).astype(int)
        axes = [np.arange(base[a] - half[a], base[a] + half[a] + 1) for a in range(3)]
        # Partial volumes: the fraction of sub-voxel samples inside the ball.
        fine = [((a[:, None] + sub).ravel() - centre[i]) * spacing[i] for i, a in enumerate(axes)]
        inside_ball = (fine[0][:, None, None] ** 2 + fine[1][None, :, None] ** 2
                       + fine[2][None, None, :] ** 2) <= radius**2
        box_shape = tuple(len(a) for a in axes)
        coverage = inside_ball.reshape(
            box_shape[0], _SUBSAMPLES, box_shape[1], _SUBSAMPLES, box_shape[2], _SUBSAMPLES
        ).mean(axis=(1, 3, 5))
        photons = coverage * density * float(np.prod(spacing))
        blurred = ndimage.gaussian_filter(photons, sigma_vox, mode="constant",
                                          truncate=PSF_TRUNCATION)
        # Clip the box to the volume.
        lo = [max(0, -int(a[0])) for a in axes]
        hi = [len(a) - max(0, int(a[-1]) - (shape[i] - 1)) for i, a in enumerate(axes)]
        blurred_in = blurred[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
        flat = (((axes[0][lo[0]:hi[0], None, None] * shape[1]) + axes[1][None, lo[1]:hi[1], None])
                * shape[2] + axes[2][None, None, lo[2]:hi[2]]).ravel()
        values = blurred_in.ravel()
        image[flat] += values  # indices are unique within one box
        keep = values >= IDEAL_MASK_FRACTION * blurred.max()
        cand_flat.append(flat[keep])
        cand_value.append(values[keep])
        cand_owner.append(np.full(int(keep.sum()), index, dtype=np.int64))
    if not cand_flat:
        return image, np.zeros(0, np.int64), np.zeros(0), np.zeros(0, np.int64)
    return image, np.concatenate(cand_flat), np.concatenate(cand_value), np.concatenate(cand_owner)


def _resolve_labels(flat, value, owner, shape):
    """Label image (object index + 1) where each voxel goes to its brightest claimant."""
    labels = np.zeros(int(np.prod(shape)), dtype=np.int64)
    if flat.size:
        order = np.lexsort((-value, flat))
        flat, owner = flat[order], owner[order]
        first = np.flatnonzero(np.r_[True, flat[1:] != flat[:-1]])
        labels[flat[first]] = owner[first] + 1
    return labels.reshape(shape)


def apply_camera(expected_photons, rng, *, offset: float = CAMERA_OFFSET,
                 read_noise: float = READ_NOISE) -> np.ndarray:
    """Turn expected photon counts into camera counts.

    Each voxel receives ``Poisson(expected) + offset + Normal(0, read_noise)``
    counts (gain of one count per photoelectron), rounded and clipped to the
    uint16 range.

    Parameters
    ----------
    expected_photons : (Z, Y, X) ndarray of float
        Noise-free expected photoelectrons per voxel (>= 0).
    rng : numpy.random.Generator
        Source of the noise.
    offset : float
        Camera offset, counts.
    read_noise : float
        Standard deviation of the read noise, counts.

    Returns
    -------
    (Z, Y, X) ndarray of uint16

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> image = apply_camera(np.zeros((2, 64, 64)), rng)
    >>> round(float(image.mean()))
    100
    """
    counts = rng.poisson(np.asarray(expected_photons, dtype=np.float64)).astype(np.float32)
    counts += rng.standard_normal(counts.shape, dtype=np.float32) * np.float32(read_noise)
    counts += np.float32(offset)
    np.rint(counts, out=counts)
    np.clip(counts, 0, np.iinfo(np.uint16).max, out=counts)
    return counts.astype(np.uint16)


def _relabel(labels):
    """Labels renumbered 1..n in order of their old values; returns (image, old ids)."""
    counts = np.bincount(labels.ravel())
    present = np.flatnonzero(counts)
    present = present[present != 0]
    lookup = np.zeros(counts.size, dtype=np.int64)
    lookup[present] = np.arange(1, present.size + 1)
    return lookup[labels], present


def _nearest_voxel_distance(points_um, label_image, spacing):
    """µm from each point to the centre of the nearest labelled voxel (NaN if none)."""
    voxels = np.argwhere(label_image)
    if len(voxels) == 0 or len(points_um) == 0:
        return np.full(len(points_um), np.nan)
    tree = cKDTree(voxels * spacing)
    distance, _ = tree.query(points_um)
    return distance


# ------------------------------------------------------------------ simulator
def simulate_image(name: str, *, rna_type: str, cycle: str, replicate: int = 1, seed: int = 0,
                   shape=(30, 256, 256), spacing=SPACING_UM) -> SimulatedImage:
    """Simulate one field of view: raw smFISH and centrosome stacks plus ground truth.

    Parameters
    ----------
    name : str
        Image name, e.g. ``"cen_nc13_r1_01"``.
    rna_type : {"cen", "gapdh"}
        Pericentrosomal RNA in granules (``"cen"``) or dispersed RNA (``"gapdh"``);
        see :data:`RNA_TYPES`.
    cycle : {"nc13", "nc14"}
        Nuclear cycle: sets nuclear spacing and shape and centrosome pair spacing.
    replicate : int
        Replicate number, recorded in the metadata.
    seed : int
        Seed of the ``np.random.default_rng`` every random draw comes from.
    shape : tuple of int
        (Z, Y, X) voxels; at least 8 each, and deep enough to hold the
        centrosome layer (~2.3 µm).
    spacing : (3,) sequence of float
        Voxel size (z, y, x) in microns.

    Returns
    -------
    SimulatedImage
        Raw images (uint16), ideal label images (uint16) and truth tables.

    Examples
    --------
    >>> image = simulate_image("cen_nc14_r1_01", rna_type="cen", cycle="nc14",
    ...                        shape=(16, 64, 64), seed=1)
    >>> image.rna.shape, image.rna.dtype
    ((16, 64, 64), dtype('uint16'))
    >>> bool(image.molecules["object_id"].isin(range(1, image.rna_labels.max() + 1)).all())
    True
    """
    model = RNA_TYPES[_check_choice(rna_type, RNA_TYPES, "rna_type")]
    _check_choice(cycle, CYCLES, "cycle")
    shape, spacing = _check_geometry(shape, spacing)
    rng = np.random.default_rng(seed)
    sigma_um = np.asarray(PSF_SIGMA_UM)
    extent = (np.asarray(shape) - 1) * spacing

    # Nuclei and their centrosome pairs.
    nuclei_yx, radius_xy, radius_z = _hexagonal_nuclei(rng, extent[1:], cycle)
    n_nuclei = len(nuclei_yx)
    layer = CENTROSOME_DEPTH_UM + rng.normal(0.0, CENTROSOME_DEPTH_SD_UM, n_nuclei)
    nuclei_um = np.column_stack([layer + NUCLEUS_GAP_UM + radius_z, nuclei_yx])
    angle = rng.uniform(0, np.pi, n_nuclei)
    pair = CENTROSOME_PAIR_SPACING_UM[cycle] * (
        1 + rng.normal(0.0, CENTROSOME_PAIR_JITTER, n_nuclei)
    )
    half_step = 0.5 * pair[:, None] * np.column_stack([np.sin(angle), np.cos(angle)])
    cen_yx = np.concatenate([nuclei_yx - half_step, nuclei_yx + half_step])
    cen_z = np.concatenate([layer, layer]) + rng.normal(0.0, 0.05, 2 * n_nuclei)
    cen_nucleus = np.tile(np.arange(n_nuclei), 2)
    cen_radius = rng.uniform(*CENTROSOME_RADIUS_UM, 2 * n_nuclei)
    cen_density = CENTROSOME_PHOTON_DENSITY * rng.uniform(*CENTROSOME_BRIGHTNESS_RANGE,
                                                          2 * n_nuclei)
    cen_um = np.column_stack([cen_z, cen_yx])
    # Keep centrosomes wholly inside the field laterally.
    keep = np.all((cen_yx >= cen_radius[:, None]) & (cen_yx <= extent[1:] - cen_radius[:, None]),
                  axis=1)
    order = np.lexsort((cen_nucleus[keep],))
    cen_um, cen_radius = cen_um[keep][order], cen_radius[keep][order]
    cen_density, cen_nucleus = cen_density[keep][order], cen_nucleus[keep][order]

    # Molecules: dispersed singles, singles around centrosomes, granules.
    mask_semi_axes = sigma_um * math.sqrt(2 * math.log(1 / IDEAL_MASK_FRACTION))
    embryo = _Embryo(extent, nuclei_um, radius_xy, radius_z, cen_um, cen_radius,
                     margin_um=mask_semi_axes)
    box_volume = float(np.prod(extent))
    dispersed = _place_uniform(rng, embryo, rng.poisson(model.dispersed_density * box_volume))
    enriched = _place_near(rng, embryo, cen_um, cen_radius,
                           rng.poisson(model.enriched_per_centrosome, len(cen_um)),
                           model.enrichment_length_um)
    n_granules = rng.poisson(model.granules_per_centrosome * max(len(cen_um), 1))
    granule_margin = GRANULE_RADIUS_UM
    if model.granules_near_centrosomes and len(cen_um):
        counts = np.bincount(rng.integers(0, len(cen_um), n_granules), minlength=len(cen_um))
        granule_centres = _place_near(rng, embryo, cen_um, cen_radius + granule_margin, counts,
                                      GRANULE_OFFSET_UM, margin=granule_margin)
    else:
        granule_centres = np.zeros((0, 3))
        for _ in range(50):
            if len(granule_centres) >= n_granules:
                break
            more = _place_uniform(rng, embryo, 4 * n_granules + 4, margin=granule_margin)
            granule_centres = np.concatenate([granule_centres, more])
        granule_centres = granule_centres[:n_granules]
    sizes = rng.integers(GRANULE_SIZE[0], GRANULE_SIZE[1] + 1, len(granule_centres))
    members = np.repeat(granule_centres, sizes, axis=0)
    members = members + _sample_in_ball(
        rng, len(members), GRANULE_RADIUS_UM * rng.random(len(members)) ** (1 / 3)
    )
    low, high = embryo.margin, extent - embryo.margin
    members = np.clip(members, low, high)

    singles = np.concatenate([dispersed, enriched])
    positions_um = np.concatenate([singles, members])
    n_single, n_objects = len(singles), len(singles) + len(granule_centres)
    owners = np.concatenate([np.arange(n_single),
                             n_single + np.repeat(np.arange(len(granule_centres)), sizes)])
    is_granule = np.arange(n_objects) >= n_single
    photons = MOLECULE_PHOTONS * rng.lognormal(0.0, MOLECULE_BRIGHTNESS_SIGMA, len(positions_um))
    positions = positions_um / spacing

    # Render both channels and their ideal masks.
    below_surface = (np.arange(shape[0]) * spacing[0] >= SURFACE_DEPTH_UM)
    background = np.broadcast_to(
        (below_surface * AUTOFLUORESCENCE_DENSITY * float(np.prod(spacing)))[:, None, None],
        shape,
    )
    rna_expected, flat, value, owner = _render_molecules(
        positions, photons, owners, is_granule, shape, spacing, sigma_um
    )
    rna_labels = _resolve_labels(flat, value, owner, shape)
    cen_expected, flat, value, owner = _render_centrosomes(
        cen_um, cen_radius, cen_density, shape, spacing, sigma_um
    )
    centrosome_labels = _resolve_labels(flat, value, owner, shape)

    # A molecule whose object kept no voxel joins the object holding its centre.
    object_label = owners + 1
    present = np.bincount(rna_labels.ravel(), minlength=n_objects + 1) > 0
    lost = ~present[object_label]
    if lost.any():
        centre = np.rint(positions[lost]).astype(np.int64)
        object_label[lost] = rna_labels[tuple(centre.T)]
    rna_labels, old_ids = _relabel(rna_labels)
    lookup = np.zeros(n_objects + 1, dtype=np.int64)
    lookup[old_ids] = np.arange(1, old_ids.size + 1)
    object_id = lookup[object_label]
    centrosome_labels, _ = _relabel(centrosome_labels)

    rna = apply_camera(rna_expected.reshape(shape) + background, rng)
    centrosomes = apply_camera(cen_expected.reshape(shape) + background, rng)

    distance = _nearest_voxel_distance(positions_um, centrosome_labels, spacing)
    molecules = pd.DataFrame(
        {
            "molecule_id": np.arange(1, len(positions) + 1, dtype=np.int64),
            "object_id": object_id,
            "z": positions[:, 0],
            "y": positions[:, 1],
            "x": positions[:, 2],
            "brightness": photons,
            "in_granule": is_granule[owners],
            "distance_to_centrosomes": distance,
        }
    ).astype(_MOLECULE_COLUMNS)
    centrosomes_table = pd.DataFrame(
        {
            "centrosome_id": np.arange(1, len(cen_um) + 1, dtype=np.int64),
            "z": cen_um[:, 0] / spacing[0],
            "y": cen_um[:, 1] / spacing[1],
            "x": cen_um[:, 2] / spacing[2],
            "radius_um": cen_radius,
            "nucleus_id": cen_nucleus + 1,
        }
    ).astype(_CENTROSOME_COLUMNS)
    nuclei = pd.DataFrame(
        {
            "nucleus_id": np.arange(1, n_nuclei + 1, dtype=np.int64),
            "z": nuclei_um[:, 0] / spacing[0],
            "y": nuclei_um[:, 1] / spacing[1],
            "x": nuclei_um[:, 2] / spacing[2],
            "radius_xy_um": np.full(n_nuclei, radius_xy),
            "radius_z_um": np.full(n_nuclei, radius_z),
        }
    ).astype(_NUCLEUS_COLUMNS)
    return SimulatedImage(
        name=name,
        rna=rna,
        centrosomes=centrosomes,
        rna_labels=rna_labels.astype(np.uint16),
        centrosome_labels=centrosome_labels.astype(np.uint16),
        molecules=molecules,
        centrosomes_table=centrosomes_table,
        metadata={"name": name, "rna_type": rna_type, "cycle": cycle,
                  "replicate": int(replicate), "seed": int(seed)},
        nuclei=nuclei,
        spacing=tuple(float(s) for s in spacing),
    )


# -------------------------------------------------------------------- data set
#: Structures of a simulated data set, in the order of the pipeline config.
STRUCTURES = ("rna", "centrosomes")
#: Distance threshold (µm) of the cumulative distributions, per cycle: about
#: half the nuclear spacing, beyond which RNA belongs to the next nucleus.
DISTANCE_THRESHOLDS_UM = {"nc13": 4.0, "nc14": 3.0}
#: Step (µm) between distances of the cumulative distributions.
DISTANCE_STEP_UM = 0.05
#: Molecules from which an object counts as a granule (normalization.granule_threshold).
GRANULE_THRESHOLD = 4
#: Replicates (embryos) per condition; images alternate between them.
N_REPLICATES = 2

_PIPELINE_TOML = """\
# Pipeline settings for this simulated data set (written by rna_localization {version}).
# Run from this folder:  rna-localization run --config pipeline.toml

[data]
data_dir = "."
structures = ["rna", "centrosomes"]
raw_data_dir = "raw-data"
segmentation_dir = "segmentations"
segmentation_file_suffix = "_seg"
metadata_csv = "raw-data-metadata.csv"
image_name_column = "name"

[scale]                  # microns per voxel
xy = {xy}
z = {z}

[distances]
structure_1 = "rna"
structure_2 = "centrosomes"
workers = 0

[normalization]
structure = "rna"
# Ideal single-molecule masks hold 20-32 voxels, granule masks 40-120.
lower_threshold = 10
upper_threshold = 40
granule_threshold = {granule_threshold}
group_by = "rna_type"

[distribution]
# About half the nuclear spacing of each cycle.
distance_threshold = {{ column = "cycle", nc13 = {nc13}, nc14 = {nc14} }}
step_size = {step}
output_dir = "output"

[plot]
hue = "rna_type"
col = "cycle"
"""


def dataset_conditions(n_images: int) -> pd.DataFrame:
    """Names and metadata of the images of a simulated data set.

    Images cycle through the four conditions (``cen``/``gapdh`` x
    ``nc13``/``nc14``); successive images of a condition alternate between
    :data:`N_REPLICATES` replicates. Names read
    ``<rna_type>_<cycle>_r<replicate>_<number>``.

    Parameters
    ----------
    n_images : int
        Number of images (>= 1).

    Returns
    -------
    DataFrame
        Columns ``name``, ``rna_type``, ``cycle``, ``replicate``, one row per image.

    Examples
    --------
    >>> dataset_conditions(5)["name"].tolist()
    ['cen_nc13_r1_01', 'cen_nc14_r1_01', 'gapdh_nc13_r1_01', 'gapdh_nc14_r1_01', 'cen_nc13_r2_01']
    """
    if isinstance(n_images, bool) or not isinstance(n_images, int | np.integer) or n_images < 1:
        msg = f"n_images must be a whole number >= 1; got {n_images!r}."
        raise ValueError(msg)
    conditions = [(rna_type, cycle) for rna_type in RNA_TYPES for cycle in CYCLES]
    rows = []
    for index in range(int(n_images)):
        rna_type, cycle = conditions[index % len(conditions)]
        round_ = index // len(conditions)
        replicate = round_ % N_REPLICATES + 1
        number = round_ // N_REPLICATES + 1
        rows.append((f"{rna_type}_{cycle}_r{replicate}_{number:02d}", rna_type, cycle, replicate))
    return pd.DataFrame(rows, columns=["name", "rna_type", "cycle", "replicate"])


def expected_distribution(molecules: pd.DataFrame, *, distance_threshold: float,
                          step_size: float = DISTANCE_STEP_UM,
                          granule_threshold: float = GRANULE_THRESHOLD) -> pd.DataFrame:
    """Cumulative distribution of one image computed from its ground truth.

    Every molecule counts at its true position with its true brightness:
    with ``d_i`` the distance (µm) from molecule ``i``'s true centre to the
    centre of the nearest voxel of any ideal centrosome mask
    (``distance_to_centrosomes``), ``b_i`` its brightness (expected photons)
    and ``t`` the threshold,
    ``percent_total_rna(d) = 100 * sum(b_i, d_i <= d) / sum(b_i, d_i <= t)``
    at the distances of :func:`rna_localization.distributions.distance_steps`;
    ``percent_granule_rna`` restricts the numerator to molecules whose object
    (``object_id``) holds at least `granule_threshold` molecules. Molecules
    without a distance (no centrosome) are left out.

    This is what the pipeline estimates from intensities: it differs from the
    pipeline's output on ideal masks by the mask extent (distances measured
    from the nearest mask voxel, not the centre) and by the background
    counted in ``total_intensity``.

    Parameters
    ----------
    molecules : DataFrame
        :attr:`SimulatedImage.molecules` of one image.
    distance_threshold : float
        Largest distance, µm.
    step_size : float
        Microns between distances.
    granule_threshold : float
        Molecules from which an object is a granule.

    Returns
    -------
    DataFrame
        Columns ``distance``, ``percent_total_rna``, ``percent_granule_rna``;
        zero rows when no molecule has a distance.
    """
    from .distributions import cumulative_distribution

    per_object = molecules.groupby("object_id")["molecule_id"].transform("size")
    return cumulative_distribution(
        molecules["distance_to_centrosomes"].to_numpy(np.float64),
        molecules["brightness"].to_numpy(np.float64),
        per_object.to_numpy(np.float64),
        step_size=step_size,
        distance_threshold=distance_threshold,
        granule_threshold=granule_threshold,
    )


def write_tiff(path: str | Path, image: np.ndarray, spacing=SPACING_UM) -> None:
    """Write a (Z, Y, X) stack as an ImageJ hyperstack TIFF with its voxel size.

    The file is zlib-compressed (which ImageJ and Fiji read) and records the voxel size in microns
    (x/y resolution and ImageJ ``spacing``), so Fiji opens it calibrated.

    Parameters
    ----------
    path : path-like
        Target ``.tif`` file; its folder is created.
    image : (Z, Y, X) ndarray of uint8 or uint16
        Stack to write.
    spacing : (3,) sequence of float
        Voxel size (z, y, x) in microns.
    """
    import tifffile

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    z, y, x = (float(s) for s in spacing)
    tifffile.imwrite(
        path, image, imagej=True, resolution=(1.0 / x, 1.0 / y),
        metadata={"spacing": z, "unit": "um", "axes": "ZYX"},
        compression="zlib", compressionargs={"level": 1},  # fast; level 6 saves only ~5%
    )


def simulate_dataset(out_dir, *, n_images: int = 20, seed: int = 0,
                     shape=(30, 256, 256)) -> Path:
    """Write a simulated data set with ground truth, a pipeline.toml and a manifest.

    Layout under `out_dir` (PRODUCT.md, "Data layout")::

        raw-data-metadata.csv                    name, rna_type, cycle, replicate
        rna/raw-data/<name>.tif                  raw smFISH, uint16
        rna/segmentations/<name>_seg.tif         ideal label image, uint16
        centrosomes/raw-data/<name>.tif
        centrosomes/segmentations/<name>_seg.tif
        pipeline.toml                            works as written
        truth/molecules.csv                      name + SimulatedImage.molecules
        truth/centrosomes.csv                    name + SimulatedImage.centrosomes_table
        truth/nuclei.csv                         name + SimulatedImage.nuclei
        truth/expected_distributions.csv         see expected_distribution()
        manifest.json                            checksums, simulator version, seed

    The same arguments always write the same bytes. Images are spread evenly
    over the four conditions (see :func:`dataset_conditions`); image ``i`` is
    simulated with a seed spawned from `seed` by ``np.random.SeedSequence``.

    Parameters
    ----------
    out_dir : path-like
        Folder to write; created if needed. It must be empty or hold an
        earlier simulated data set (which is overwritten).
    n_images : int
        Number of images.
    seed : int
        Seed of the whole data set.
    shape : tuple of int
        (Z, Y, X) voxels of every image.

    Returns
    -------
    Path
        `out_dir`, absolute.
    """
    from tqdm.auto import tqdm

    from . import __version__
    from .datasets import MANIFEST_NAME, write_manifest

    out = Path(out_dir).expanduser().resolve()
    if out.exists() and not out.is_dir():
        msg = f"out_dir {out} is a file; give a folder for the data set."
        raise ValueError(msg)
    if out.is_dir() and any(out.iterdir()) and not (out / MANIFEST_NAME).is_file():
        msg = (
            f"out_dir {out} is not empty and holds no simulated data set ({MANIFEST_NAME}); "
            f"choose an empty or new folder."
        )
        raise ValueError(msg)
    conditions = dataset_conditions(n_images)
    shape, spacing = _check_geometry(shape, SPACING_UM)
    seeds = [int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed).spawn(n_images)]
    out.mkdir(parents=True, exist_ok=True)

    written: list[str] = []
    molecules, centrosomes, nuclei, expected = [], [], [], []
    rows = conditions.to_dict("records")
    for row, image_seed in tqdm(list(zip(rows, seeds, strict=True)), desc="simulate",
                                unit="image"):
        image = simulate_image(row["name"], rna_type=row["rna_type"], cycle=row["cycle"],
                               replicate=row["replicate"], seed=image_seed, shape=shape,
                               spacing=spacing)
        for structure, raw, labels in [("rna", image.rna, image.rna_labels),
                                       ("centrosomes", image.centrosomes,
                                        image.centrosome_labels)]:
            for relative, array in [(f"{structure}/raw-data/{image.name}.tif", raw),
                                    (f"{structure}/segmentations/{image.name}_seg.tif", labels)]:
                write_tiff(out / relative, array, spacing)
                written.append(relative)
        molecules.append(image.molecules.assign(name=image.name))
        centrosomes.append(image.centrosomes_table.assign(name=image.name))
        nuclei.append(image.nuclei.assign(name=image.name))
        curve = expected_distribution(image.molecules,
                                      distance_threshold=DISTANCE_THRESHOLDS_UM[row["cycle"]])
        expected.append(curve.assign(**row))

    def _first(table: pd.DataFrame, first: list[str]) -> pd.DataFrame:
        return table[first + [c for c in table.columns if c not in first]]

    truth = out / "truth"
    truth.mkdir(exist_ok=True)
    tables = {
        "raw-data-metadata.csv": conditions,
        "truth/molecules.csv": _first(pd.concat(molecules, ignore_index=True), ["name"]),
        "truth/centrosomes.csv": _first(pd.concat(centrosomes, ignore_index=True), ["name"]),
        "truth/nuclei.csv": _first(pd.concat(nuclei, ignore_index=True), ["name"]),
        "truth/expected_distributions.csv": _first(
            pd.concat(expected, ignore_index=True), list(conditions.columns)
        ),
    }
    for relative, table in tables.items():
        table.to_csv(out / relative, index=False, float_format="%.8g", lineterminator="\n")
        written.append(relative)
    (out / "pipeline.toml").write_text(
        _PIPELINE_TOML.format(
            version=__version__, xy=spacing[1], z=spacing[0],
            granule_threshold=GRANULE_THRESHOLD, nc13=DISTANCE_THRESHOLDS_UM["nc13"],
            nc14=DISTANCE_THRESHOLDS_UM["nc14"], step=DISTANCE_STEP_UM,
        ),
        encoding="utf-8",
    )
    write_manifest(
        out, written, structures=STRUCTURES,
        generator={
            "simulator": "rna_localization.synthetic",
            "simulator_version": SIMULATOR_VERSION,
            "package_version": __version__,
            "seed": int(seed),
            "n_images": int(n_images),
            "shape": list(shape),
            "spacing": [float(s) for s in spacing],
            "image_seeds": dict(zip(conditions["name"], seeds, strict=True)),
        },
    )
    return out
