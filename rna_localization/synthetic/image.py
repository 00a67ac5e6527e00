"""One simulated field of view: geometry → rendering → camera, with its ground truth."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from . import model
from .camera import apply_camera
from .geometry import (
    Embryo,
    check_geometry,
    fused_groups,
    hexagonal_nuclei,
    inside_ball,
    place_near,
    place_uniform,
    sample_on_sphere,
)
from .model import PRESETS, RNA_TYPES, Microscope
from .rendering import background, relabel, render_centrosomes, render_molecules, resolve_labels
from .truth import (
    CENTROSOME_COLUMNS,
    MOLECULE_COLUMNS,
    NUCLEUS_COLUMNS,
    SimulatedImage,
    nearest_voxel_distance,
)

__all__ = ["microscope", "simulate_image"]


def _check_choice(value, choices, what: str) -> str:
    if value not in choices:
        msg = f"{what} must be one of {list(choices)}; got {value!r}."
        raise ValueError(msg)
    return value


def microscope(preset: str | Microscope) -> Microscope:
    """The :class:`~.model.Microscope` of a preset name (or the one given)."""
    if isinstance(preset, Microscope):
        return preset
    return PRESETS[_check_choice(preset, PRESETS, "preset")]


def _positive(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not (
            math.isfinite(value) and value > 0):
        msg = f"{what} must be a positive number; got {value!r}."
        raise ValueError(msg)
    return float(value)


def simulate_image(name: str, *, rna_type: str, cycle: str, replicate: int = 1, seed: int = 0,
                   shape=(30, 256, 256), preset: str | Microscope = model.DEFAULT_PRESET,
                   snr: float = model.MOLECULE_SNR, centrosome_snr: float = model.CENTROSOME_SNR,
                   spacing=None) -> SimulatedImage:
    """Simulate one field of view: raw smFISH and centrosome stacks plus ground truth.

    * **Geometry.** Nuclei on a jittered hexagonal lattice under the embryo
      surface, a centrosome pair above each; spacings and shapes follow the
      nuclear cycle. RNA lives in the cytoplasm.
    * **RNA.** Single molecules and granules of 4–15 molecules (granules
      whose balls overlap fuse into one); ``"cen"``
      RNA is enriched around centrosomes and forms granules there,
      ``"gapdh"`` RNA is dispersed.
    * **Brightness in units of noise.** Each molecule's peak SNR is
      ``snr`` times a log-normal factor (:data:`~.model.MOLECULE_BRIGHTNESS_SIGMA`);
      each centrosome's is ``centrosome_snr`` times a factor in
      :data:`~.model.CENTROSOME_BRIGHTNESS_RANGE`.
    * **Background** of a real microscope (:func:`.rendering.background`):
      autofluorescence, haze, out-of-focus blobs and texture.
    * **Camera**: Poisson noise, read noise, gain, offset (:func:`.camera.apply_camera`).
    * **Ideal masks**: each object owns the voxels where its own noise-free
      image is at least half its peak; a voxel claimed by several goes to the
      brightest claimant; a molecule left without a voxel joins the object
      that took its centre.

    Parameters
    ----------
    name : str
        Image name, e.g. ``"cen_nc13_r1_01"``.
    rna_type : {"cen", "gapdh"}
    cycle : {"nc13", "nc14"}
    replicate : int
        Recorded in the metadata.
    seed : int
        Seed of the ``np.random.default_rng`` every draw comes from.
    shape : tuple of int
        (Z, Y, X) voxels; at least 8 each and deep enough for the centrosome
        layer (~2.3 µm).
    preset : {"confocal", "widefield"} or Microscope
        Microscope (:data:`~.model.PRESETS`): voxel size, PSF, background, camera.
    snr : float
        Median peak SNR of a single molecule.
    centrosome_snr : float
        Median peak SNR of a centrosome.
    spacing : (3,) sequence of float, optional
        Voxel size (z, y, x) in microns; the preset's by default.

    Returns
    -------
    SimulatedImage

    Examples
    --------
    >>> image = simulate_image("cen_nc14_r1_01", rna_type="cen", cycle="nc14",
    ...                        shape=(16, 64, 64), seed=1)
    >>> image.rna.shape, image.rna.dtype
    ((16, 64, 64), dtype('uint16'))
    >>> bool(image.molecules["object_id"].isin(range(1, image.rna_labels.max() + 1)).all())
    True
    """
    rna_model = RNA_TYPES[_check_choice(rna_type, RNA_TYPES, "rna_type")]
    _check_choice(cycle, model.CYCLES, "cycle")
    scope = microscope(preset)
    snr = _positive(snr, "snr")
    centrosome_snr = _positive(centrosome_snr, "centrosome_snr")
    shape, spacing = check_geometry(shape, scope.spacing if spacing is None else spacing)
    rng = np.random.default_rng(seed)
    sigma_um = np.asarray(scope.psf_sigma_um)
    extent = (np.asarray(shape) - 1) * spacing

    # Nuclei and their centrosome pairs.
    nuclei_yx, radius_xy, radius_z = hexagonal_nuclei(rng, extent[1:], cycle)
    n_nuclei = len(nuclei_yx)
    layer = model.CENTROSOME_DEPTH_UM + rng.normal(0.0, model.CENTROSOME_DEPTH_SD_UM, n_nuclei)
    nuclei_um = np.column_stack([layer + model.NUCLEUS_GAP_UM + radius_z, nuclei_yx])
    angle = rng.uniform(0, np.pi, n_nuclei)
    pair = model.CENTROSOME_PAIR_SPACING_UM[cycle] * (
        1 + rng.normal(0.0, model.CENTROSOME_PAIR_JITTER, n_nuclei)
    )
    half_step = 0.5 * pair[:, None] * np.column_stack([np.sin(angle), np.cos(angle)])
    cen_yx = np.concatenate([nuclei_yx - half_step, nuclei_yx + half_step])
    cen_z = np.concatenate([layer, layer]) + rng.normal(0.0, 0.05, 2 * n_nuclei)
    cen_nucleus = np.tile(np.arange(n_nuclei), 2)
    cen_radius = rng.uniform(*model.CENTROSOME_RADIUS_UM, 2 * n_nuclei)
    cen_snr = centrosome_snr * rng.uniform(*model.CENTROSOME_BRIGHTNESS_RANGE, 2 * n_nuclei)
    cen_um = np.column_stack([cen_z, cen_yx])
    # Keep centrosomes wholly inside the field laterally.
    keep = np.all((cen_yx >= cen_radius[:, None]) & (cen_yx <= extent[1:] - cen_radius[:, None]),
                  axis=1)
    order = np.lexsort((cen_nucleus[keep],))
    cen_um, cen_radius = cen_um[keep][order], cen_radius[keep][order]
    cen_snr, cen_nucleus = cen_snr[keep][order], cen_nucleus[keep][order]

    # Molecules: dispersed singles, singles around centrosomes, granules.
    mask_semi_axes = sigma_um * math.sqrt(2 * math.log(1 / model.IDEAL_MASK_FRACTION))
    embryo = Embryo(extent, nuclei_um, radius_xy, radius_z, cen_um, cen_radius,
                    margin_um=mask_semi_axes)
    box_volume = float(np.prod(extent))
    dispersed = place_uniform(rng, embryo, rng.poisson(rna_model.dispersed_density * box_volume))
    enriched = place_near(rng, embryo, cen_um, cen_radius,
                          rng.poisson(rna_model.enriched_per_centrosome, len(cen_um)),
                          rna_model.enrichment_length_um)
    n_granules = rng.poisson(rna_model.granules_per_centrosome * max(len(cen_um), 1))
    granule_margin = model.GRANULE_RADIUS_UM
    if rna_model.granules_near_centrosomes and len(cen_um):
        counts = np.bincount(rng.integers(0, len(cen_um), n_granules), minlength=len(cen_um))
        granule_centres = place_near(rng, embryo, cen_um, cen_radius + granule_margin, counts,
                                     model.GRANULE_OFFSET_UM, margin=granule_margin)
    else:
        granule_centres = np.zeros((0, 3))
        for _ in range(50):
            if len(granule_centres) >= n_granules:
                break
            more = place_uniform(rng, embryo, 4 * n_granules + 4, margin=granule_margin)
            granule_centres = np.concatenate([granule_centres, more])
        granule_centres = granule_centres[:n_granules]
    sizes = rng.integers(model.GRANULE_SIZE[0], model.GRANULE_SIZE[1] + 1, len(granule_centres))
    members = np.repeat(granule_centres, sizes, axis=0)
    members = members + sample_on_sphere(
        rng, len(members), model.GRANULE_RADIUS_UM * rng.random(len(members)) ** (1 / 3)
    )
    members = np.clip(members, embryo.margin, extent - embryo.margin)

    # Granules whose balls overlap fuse into one condensate: one object holding the
    # molecules of both (the truth counts it as one granule; no image could split it).
    fused = fused_groups(granule_centres, model.GRANULE_RADIUS_UM)
    n_fused = int(fused.max()) + 1 if fused.size else 0

    singles = np.concatenate([dispersed, enriched])
    positions_um = np.concatenate([singles, members])
    n_single, n_objects = len(singles), len(singles) + n_fused
    owners = np.concatenate([np.arange(n_single), n_single + np.repeat(fused, sizes)])
    # A single molecule drawn inside a granule's ball is in the condensate: one of its
    # molecules (its own object then holds none and is not drawn).
    ball = inside_ball(singles, granule_centres, model.GRANULE_RADIUS_UM)
    owners[:n_single][ball >= 0] = n_single + fused[ball[ball >= 0]]
    is_granule = np.arange(n_objects) >= n_single
    molecule_snr = snr * rng.lognormal(0.0, model.MOLECULE_BRIGHTNESS_SIGMA, len(positions_um))
    amplitudes = molecule_snr * scope.noise
    photons_per_peak = (2 * np.pi) ** 1.5 * float(np.prod(sigma_um)) / float(np.prod(spacing))
    positions = positions_um / spacing

    # Render both channels, their ideal masks and their backgrounds.
    rna_expected, flat, value, owner = render_molecules(
        positions, amplitudes, owners, is_granule, shape, spacing, sigma_um
    )
    rna_labels = resolve_labels(flat, value, owner, shape)
    cen_expected, flat, value, owner = render_centrosomes(
        cen_um, cen_radius, cen_snr * scope.noise, shape, spacing, sigma_um
    )
    centrosome_labels = resolve_labels(flat, value, owner, shape)

    # A molecule whose object kept no voxel joins the object holding its centre.
    object_label = owners + 1
    present = np.bincount(rna_labels.ravel(), minlength=n_objects + 1) > 0
    lost = ~present[object_label]
    if lost.any():
        centre = np.rint(positions[lost]).astype(np.int64)
        object_label[lost] = rna_labels[tuple(centre.T)]
    rna_labels, old_ids = relabel(rna_labels)
    lookup = np.zeros(n_objects + 1, dtype=np.int64)
    lookup[old_ids] = np.arange(1, old_ids.size + 1)
    object_id = lookup[object_label]
    centrosome_labels, _ = relabel(centrosome_labels)

    camera = {"offset": scope.camera_offset, "gain": scope.gain, "read_noise": scope.read_noise}
    rna_expected = rna_expected.reshape(shape)
    rna_expected += background(rng, shape, spacing, scope)
    rna = apply_camera(rna_expected, rng, **camera)
    del rna_expected
    cen_expected = cen_expected.reshape(shape)
    cen_expected += background(rng, shape, spacing, scope)
    centrosomes = apply_camera(cen_expected, rng, **camera)
    del cen_expected

    distance = nearest_voxel_distance(positions_um, centrosome_labels, spacing)
    molecules = pd.DataFrame(
        {
            "molecule_id": np.arange(1, len(positions) + 1, dtype=np.int64),
            "object_id": object_id,
            "z": positions[:, 0],
            "y": positions[:, 1],
            "x": positions[:, 2],
            "brightness": amplitudes * photons_per_peak,
            "snr": molecule_snr,
            "in_granule": is_granule[owners],
            "distance_to_centrosomes": distance,
        }
    ).astype(MOLECULE_COLUMNS)
    centrosomes_table = pd.DataFrame(
        {
            "centrosome_id": np.arange(1, len(cen_um) + 1, dtype=np.int64),
            "z": cen_um[:, 0] / spacing[0],
            "y": cen_um[:, 1] / spacing[1],
            "x": cen_um[:, 2] / spacing[2],
            "radius_um": cen_radius,
            "snr": cen_snr,
            "nucleus_id": cen_nucleus + 1,
        }
    ).astype(CENTROSOME_COLUMNS)
    nuclei = pd.DataFrame(
        {
            "nucleus_id": np.arange(1, n_nuclei + 1, dtype=np.int64),
            "z": nuclei_um[:, 0] / spacing[0],
            "y": nuclei_um[:, 1] / spacing[1],
            "x": nuclei_um[:, 2] / spacing[2],
            "radius_xy_um": np.full(n_nuclei, radius_xy),
            "radius_z_um": np.full(n_nuclei, radius_z),
        }
    ).astype(NUCLEUS_COLUMNS)
    return SimulatedImage(
        name=name,
        rna=rna,
        centrosomes=centrosomes,
        rna_labels=rna_labels.astype(np.uint16),
        centrosome_labels=centrosome_labels.astype(np.uint16),
        molecules=molecules,
        centrosomes_table=centrosomes_table,
        metadata={"name": name, "rna_type": rna_type, "cycle": cycle,
                  "replicate": int(replicate), "seed": int(seed), "preset": scope.name,
                  "snr": float(snr)},
        nuclei=nuclei,
        spacing=tuple(float(s) for s in spacing),
    )
