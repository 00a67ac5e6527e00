"""Test images rendered by sim-fish, the Big-FISH authors' simulator: a check of our counting on
images our own simulator did not make.

sim-fish renders each molecule as a Gaussian integrated over its voxels and cut at
√3 sigmas, on a flat background with Poisson noise (``add_spots``,
``add_white_noise``; the uneven background of one variant is drawn the same way,
from a level that varies over the stack). The molecules are placed here: single
molecules uniformly through the whole stack, its first and last planes, rows and
columns included (a real stack cuts through the cells, so molecules sit on its
faces; our simulator keeps them two planes inside), and granules of several
molecules spread normally around a centre. Positions are sub-voxel: the image is rendered on a grid
``SUBPIXEL`` times finer along each axis and summed back to the voxels.

A :class:`Scene` says what is imaged and how: the default, :data:`WIDEFIELD`, is
the grid, optics and flat background of the hand-tagged real widefield images;
:data:`VARIANTS` change one thing each (the confocal grid and optics, a coarse
grid, 0.4 µm steps, an uneven background, four times the molecules, granules spread wider,
a PSF that is not a Gaussian: a widefield objective's diffraction pattern, ideal or with
spherical aberration, the same through the stack or growing with depth,
:func:`rna_localization.synthetic.optics.born_wolf_psf`; a camera with hot pixels; molecules
differing in brightness as on real images), to check that the counting holds beyond one
kind of image; the last one takes the real images' conditions together.

:func:`write_folder` writes such images as a user's data folder (with a
second channel of centrosome-like blobs), for the command line end to end.

The result has the attributes the quantification benchmark reads (``name``,
``rna``, ``spacing``, ``molecules``), like :class:`rna_localization.synthetic.SimulatedImage`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from rna_localization.synthetic.image import microscope
from rna_localization.synthetic.model import MOLECULE_BRIGHTNESS_SIGMA
from rna_localization.synthetic.optics import EMISSION_UM, IMMERSION_INDEX, NA, render_points

#: The widefield grid and optics of the hand-tagged real images (µm): 0.11 µm pixels,
#: 0.3 µm steps, NA 1.45.
SPACING = (0.3, 0.11, 0.11)
PSF_SIGMA_UM = (0.33, 0.115, 0.115)
#: Background (counts) of the real widefield images, and the share of it its level varies
#: by from voxel to voxel (sim-fish's ``random_noise``): with the Poisson noise, a noise SD
#: of ~100 counts, as measured on them (../shared/FACTS.md).
BACKGROUND, BACKGROUND_SPREAD = 3300.0, 0.025
#: Molecules per image: single ones, and granules of each of these sizes.
SINGLES = 400
GRANULE_SIZES = (4, 6, 8, 10, 12, 15)
#: SD (µm) of a granule's molecules around its centre, along every axis.
GRANULE_SPREAD_UM = 0.12
#: Rendering grid: this many times finer along each axis.
SUBPIXEL = 2
#: sim-fish's spread of spot amplitudes and sigmas (its defaults).
AMPLITUDE_SPREAD, SIGMA_SPREAD = 0.05, 0.05


@dataclass(frozen=True)
class Scene:
    """What a sim-fish image shows and how it is seen.

    ``uneven``: the flat background level is replaced by the widefield
    background of this package's simulator (cell autofluorescence with its
    depth profile and grain, haze, out-of-focus cells;
    ``rna_localization.synthetic.rendering.background``) scaled to the same mean
    ``background``; the noise is drawn from it as sim-fish draws it from the flat
    level (each voxel's level spread by ``BACKGROUND_SPREAD``, then Poisson).
    """

    name: str
    spacing: tuple = SPACING
    psf_sigma_um: tuple = PSF_SIGMA_UM
    background: float = BACKGROUND
    singles: int = SINGLES
    uneven: bool = False
    granule_spread_um: float = GRANULE_SPREAD_UM
    #: None: sim-fish's Gaussian spots of ``psf_sigma_um``. A number: the molecules are
    #: rendered through ``born_wolf_psf`` (``rna_localization.synthetic.optics``) with this
    #: many waves of primary spherical
    #: aberration (``psf_sigma_um`` is then only what Big-FISH is told).
    spherical_waves: float | None = None
    #: With ``spherical_waves``: the aberration at the stack's last plane, the first plane
    #: having ``spherical_waves`` (None: the same through the stack). A sample deeper than
    #: the objective is corrected for aberrates more with every micron: the molecules are
    #: rendered in :data:`DEPTH_SLABS` slabs of planes, each through the PSF of its middle.
    deep_waves: float | None = None
    #: The share of the camera's pixels that are hot: each adds an offset, log-uniform over
    #: ``HOT_PIXEL_SDS`` noise SDs, in every plane (a one-pixel column through z).
    hot_pixels: float = 0.0
    #: A 12-bit camera whose ceiling (4,095) stands this many single molecules' median peaks
    #: above the background: the counts are offset to put it there, and clipped at it
    #: (None: nothing is clipped).
    clip_peaks: float | None = None
    #: None: sim-fish's spread of brightness (uniform, :data:`AMPLITUDE_SPREAD`). A number:
    #: each molecule's brightness is log-normal with this sigma of log around the median
    #: (:data:`REAL_BRIGHTNESS_SIGMA`, the real images' spread).
    brightness_sigma: float | None = None


#: Slabs of planes a PSF varying with depth is rendered in (``Scene.deep_waves``).
DEPTH_SLABS = 6


#: The ceiling of ``Scene.clip_peaks``'s camera: a 12-bit converter's.
CLIP_CEILING = 4095

#: A hot pixel's offset ranges over these many noise SDs (log-uniform).
HOT_PIXEL_SDS = (2.0, 50.0)


def _confocal() -> Scene:
    scope = microscope("confocal")
    return Scene("confocal grid and optics", spacing=tuple(scope.spacing),
                 psf_sigma_um=tuple(scope.psf_sigma_um), background=float(scope.background))


#: The Gaussian sigmas (µm, axial and lateral) Big-FISH is told for a Born-Wolf scene: the
#: usual widefield approximations 0.66 λ n / NA² and 0.21 λ / NA (Zhang et al., 2007).
BORN_WOLF_SIGMA_UM = (0.66 * EMISSION_UM * IMMERSION_INDEX / NA ** 2, 0.21 * EMISSION_UM / NA)


#: The images of the hand-tagged real widefield data: grid, optics and background.
WIDEFIELD = Scene("widefield grid")
#: Spread of the real images' single molecules' brightness (sigma of log; as this
#: package's simulator draws them).
REAL_BRIGHTNESS_SIGMA = MOLECULE_BRIGHTNESS_SIGMA
_BORN_WOLF_SIGMAS = (BORN_WOLF_SIGMA_UM[0], BORN_WOLF_SIGMA_UM[1], BORN_WOLF_SIGMA_UM[1])
#: One change each: the confocal preset's grid, PSF and (dimmer) background; a coarse
#: grid (a 40x oil objective's 0.16 µm pixels, under its PSF's width, and 0.5 µm steps);
#: 0.4 µm steps (the real images' coarsest); an uneven background; four times the single
#: molecules; granules spread wider (0.16 and 0.2 µm: their molecules a few spot widths apart,
#: the image shows a cluster of spots more than a blob); the objective's diffraction PSF, ideal,
#: mildly aberrated (0.2 waves, a Strehl ratio of about 0.7) and strongly (0.35 waves, about
#: 0.4: each molecule a column with two maxima along z; 0.5 waves, two or three maxima
#: whose masks do not touch), and aberrated more with depth
#: (0.1 waves at the first plane to 0.4 at the last, 8.7 µm deeper on the 30 planes of
#: the benchmark's stacks: an oil objective focused into a watery sample); a camera with
#: hot pixels; a camera whose ceiling clips the granules' light (an exposure set for single
#: molecules).
VARIANTS = (_confocal(),
            Scene("coarse grid", spacing=(0.5, 0.16, 0.16), psf_sigma_um=(0.40, 0.12, 0.12)),
            Scene("0.4 µm steps", spacing=(0.4, 0.11, 0.11)),
            Scene("uneven background", uneven=True),
            Scene("4x the single molecules", singles=4 * SINGLES),
            Scene("granules spread 0.16 µm", granule_spread_um=0.16),
            Scene("granules spread 0.2 µm", granule_spread_um=0.2),
            Scene("Born-Wolf PSF", psf_sigma_um=_BORN_WOLF_SIGMAS, spherical_waves=0.0),
            Scene("Born-Wolf PSF, 0.2 waves of spherical aberration",
                  psf_sigma_um=_BORN_WOLF_SIGMAS, spherical_waves=0.2),
            Scene("Born-Wolf PSF, 0.35 waves of spherical aberration",
                  psf_sigma_um=_BORN_WOLF_SIGMAS, spherical_waves=0.35),
            Scene("Born-Wolf PSF, 0.5 waves of spherical aberration",
                  psf_sigma_um=_BORN_WOLF_SIGMAS, spherical_waves=0.5),
            Scene("Born-Wolf PSF, spherical aberration from 0.1 waves (first plane) to 0.4 "
                  "(last)", psf_sigma_um=_BORN_WOLF_SIGMAS, spherical_waves=0.1,
                  deep_waves=0.4),
            Scene("hot pixels (0.1% of the camera's)", hot_pixels=0.001),
            Scene("a 12-bit camera clipping 2 single molecules' peaks above the background",
                  clip_peaks=2.0),
            Scene("molecules' brightness spread as on real images (log-normal, sigma 0.27)",
                  brightness_sigma=REAL_BRIGHTNESS_SIGMA),
            Scene("all at once: uneven background, 0.2 waves of spherical aberration, hot "
                  "pixels, brightness spread", uneven=True, psf_sigma_um=_BORN_WOLF_SIGMAS,
                  spherical_waves=0.2, hot_pixels=0.001, brightness_sigma=REAL_BRIGHTNESS_SIGMA))


@dataclass
class SimFishImage:
    """One rendered image and its molecules (voxel coordinates, as our simulator's table)."""

    name: str
    rna: np.ndarray
    spacing: tuple
    molecules: pd.DataFrame


def available() -> str | None:
    """None when ``simfish`` imports; the reason it does not otherwise."""
    try:
        import simfish  # noqa: F401
    except Exception as error:  # noqa: BLE001 (any import failure means: not available)
        return f"{type(error).__name__}: {error}"
    return None


def _through_objective(fine, amplitude, shape, scene: Scene) -> np.ndarray:
    """Point sources on the fine grid through the objective's PSF, the aberration growing
    linearly from the first plane to the last when ``scene.deep_waves`` is set."""
    return render_points(fine, amplitude, shape, scene.spacing, subpixel=SUBPIXEL,
                         spherical_waves=scene.spherical_waves, deep_waves=scene.deep_waves,
                         slabs=DEPTH_SLABS)


def _positions(rng, shape, scene: Scene) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Molecule positions (voxels), their object ids and whether each is in a granule."""
    shape = np.asarray(shape, dtype=np.float64)
    # A voxel spans its index +- 0.5: molecules anywhere in the stack, faces included.
    singles = rng.uniform(-0.5, shape - 0.5, size=(scene.singles, 3))
    centres = rng.uniform(0.5, shape - 1.5, size=(len(GRANULE_SIZES), 3))
    spread = scene.granule_spread_um / np.asarray(scene.spacing)
    members = [centre + rng.normal(0.0, spread, size=(size, 3))
               for centre, size in zip(centres, GRANULE_SIZES)]
    granule = np.clip(np.concatenate(members), -0.5, shape - 0.5 - 1e-6)
    positions = np.concatenate([singles, granule])
    granule_owner = np.repeat(np.arange(len(GRANULE_SIZES)), GRANULE_SIZES)
    owner = np.concatenate([np.arange(1, scene.singles + 1), scene.singles + 1 + granule_owner])
    in_granule = np.arange(len(positions)) >= scene.singles
    return positions, owner, in_granule


def simfish_image(name: str, *, seed: int, snr: float, shape=(30, 256, 256),
                  scene: Scene = WIDEFIELD) -> SimFishImage:
    """A sim-fish image whose single molecules' median peak is `snr` noise SDs above the background.

    Sets NumPy's global random generator (sim-fish draws its noise from it).

    Parameters
    ----------
    name : str
        Image name (its text before the first ``_`` is its group, as the benchmark reads it).
    seed : int
    snr : float
        Median over the single molecules of their peak voxel's light above the background,
        over the noise SD of the scene's mean background level (its shot noise and its
        voxel-to-voxel spread, as sim-fish draws them; an uneven background's grain adds
        to it).
    shape : (3,) tuple of int
    scene : Scene
        Grid, optics, background and molecules (:data:`WIDEFIELD` by default).

    Returns
    -------
    SimFishImage
    """
    import simfish

    rng = np.random.default_rng(seed)
    positions, owner, in_granule = _positions(rng, shape, scene)
    fine_shape = tuple(n * SUBPIXEL for n in shape)
    fine_voxel_nm = [1000 * s / SUBPIXEL for s in scene.spacing]
    # Position p of a voxel maps to fine voxels SUBPIXEL*p .. SUBPIXEL*p + SUBPIXEL - 1.
    fine = np.clip(np.rint((positions + 0.5) * SUBPIXEL - 0.5), 0,
                   np.asarray(fine_shape) - 1)
    # sim-fish renders on the fine grid's voxels: the molecules are where it puts them.
    positions = (fine + 0.5) / SUBPIXEL - 0.5
    sigma = np.asarray([1000 * scene.psf_sigma_um[0], 1000 * scene.psf_sigma_um[1]])
    sigmas = sigma * (1 + SIGMA_SPREAD * rng.standard_normal((len(positions), 2)))
    spread = rng.uniform(1 - AMPLITUDE_SPREAD, 1 + AMPLITUDE_SPREAD, len(positions))
    if scene.brightness_sigma is not None:
        spread = rng.lognormal(0.0, scene.brightness_sigma, len(positions))
    voxel = np.clip(np.rint(positions[~in_granule]).astype(int), 0, np.asarray(shape) - 1)
    noise_sd = float(np.hypot(np.sqrt(scene.background), BACKGROUND_SPREAD * scene.background))

    def render(amplitude):
        # sim-fish draws its shot noise from NumPy's global generator.
        np.random.seed(seed)  # noqa: NPY002 (sim-fish takes no generator)
        if scene.spherical_waves is not None:  # points through the objective's PSF
            return _through_objective(fine, amplitude * spread, shape, scene)
        truth = np.column_stack([fine, sigmas, amplitude * spread]).astype(np.float64)
        light = simfish.add_spots(np.zeros(fine_shape, np.float64), truth,
                                  voxel_size=tuple(fine_voxel_nm))
        return light.reshape(shape[0], SUBPIXEL, shape[1], SUBPIXEL, shape[2], SUBPIXEL).sum(
            axis=(1, 3, 5))

    # Light grows with the amplitude: a first rendering measures the single molecules'
    # median peak, the second has the amplitude that puts it at `snr` noise SDs.
    amplitude = 1000.0 * snr * noise_sd / float(np.median(render(1000.0)[tuple(voxel.T)]))
    light = render(amplitude)
    if scene.uneven:
        from rna_localization.synthetic.rendering import background

        level = background(rng, shape, scene.spacing, microscope("widefield")).astype(np.float64)
        level *= scene.background / level.mean()
        # As add_white_noise draws it, from this level instead of a flat one (its generator
        # seeded above, as sim-fish's).
        level += np.random.normal(0.0, BACKGROUND_SPREAD * level)  # noqa: NPY002
        image = light + np.random.poisson(np.maximum(level, 0.0))  # noqa: NPY002
    else:
        image = simfish.add_white_noise(light, noise_level=scene.background,
                                        random_noise=BACKGROUND_SPREAD)
    if scene.hot_pixels:
        image = image + hot_pixel_offsets(rng, shape[1:], scene.hot_pixels, noise_sd)
    if scene.clip_peaks is not None:
        offset = CLIP_CEILING - scene.background - scene.clip_peaks * snr * noise_sd
        image = np.minimum(image + offset, CLIP_CEILING)
    molecules = pd.DataFrame({
        "object_id": owner.astype(np.int64), "z": positions[:, 0], "y": positions[:, 1],
        "x": positions[:, 2], "brightness": amplitude * spread, "in_granule": in_granule,
    })
    return SimFishImage(name, np.clip(np.rint(image), 0, 65535).astype(np.uint16),
                        tuple(scene.spacing), molecules)


def hot_pixel_offsets(rng, shape, share: float, noise_sd: float) -> np.ndarray:
    """(Y, X) offsets of a camera whose `share` of pixels are hot (:data:`HOT_PIXEL_SDS`)."""
    offsets = np.zeros(shape, dtype=np.float64)
    hot = rng.choice(offsets.size, size=int(round(share * offsets.size)), replace=False)
    low, high = np.log(HOT_PIXEL_SDS)
    offsets.ravel()[hot] = noise_sd * np.exp(rng.uniform(low, high, hot.size))
    return offsets


#: The second channel of :func:`write_folder`: this many centrosome-like balls per stack,
#: their radius (µm), blurred peak and the background (counts).
BLOBS, BLOB_RADIUS_UM, BLOB_PEAK, BLOB_BACKGROUND = 12, 0.3, 3000.0, 500.0


def blob_stack(shape, spacing, psf_sigma_um, seed: int) -> np.ndarray:
    """A stack of centrosome-like balls, blurred by the PSF, with Poisson noise (the second
    structure a data folder needs; only its presence matters to the molecule counts).

    Rendered by this package's simulator
    (:func:`rna_localization.synthetic.rendering.render_centrosomes`).

    Examples
    --------
    >>> blob_stack((8, 48, 48), (0.3, 0.11, 0.11), (0.33, 0.115, 0.115), seed=0).dtype
    dtype('uint16')
    """
    from rna_localization.synthetic.rendering import render_centrosomes

    rng = np.random.default_rng(seed)
    extent = (np.asarray(shape) - 1) * np.asarray(spacing, dtype=np.float64)
    margin = np.minimum(BLOB_RADIUS_UM, extent / 2)
    centres = rng.uniform(margin, extent - margin, size=(BLOBS, 3))
    light = render_centrosomes(centres, np.full(BLOBS, BLOB_RADIUS_UM), np.full(BLOBS, BLOB_PEAK),
                               tuple(shape), np.asarray(spacing, dtype=np.float64),
                               psf_sigma_um)[0].reshape(shape)
    return np.minimum(rng.poisson(light + BLOB_BACKGROUND), 65535).astype(np.uint16)


def write_folder(folder, *, scene: Scene = WIDEFIELD, seeds=range(1, 7), snr: float = 8.0,
                 shape=(30, 256, 256)) -> pd.DataFrame:
    """sim-fish images as a data folder: ``rna/raw-data``, ``centrosomes/raw-data`` (blobs,
    :func:`blob_stack`), each TIFF with its voxel size, and ``raw-data-metadata.csv``.

    Returns
    -------
    DataFrame
        Per image: ``name`` and ``molecules`` (simulated).
    """
    from rna_localization.io import write_stack

    folder = Path(folder)
    truth = []
    for seed in seeds:
        name = f"simfish{seed}"
        image = simfish_image(name, seed=seed, snr=snr, shape=shape, scene=scene)
        write_stack(folder / "rna" / "raw-data" / f"{name}.tif", image.rna, spacing=image.spacing)
        write_stack(folder / "centrosomes" / "raw-data" / f"{name}.tif",
                    blob_stack(shape, image.spacing, scene.psf_sigma_um, seed=1000 + seed),
                    spacing=image.spacing)
        truth.append({"name": name, "molecules": len(image.molecules)})
    truth = pd.DataFrame(truth)
    truth.assign(rna_type="simfish").drop(columns="molecules").to_csv(
        folder / "raw-data-metadata.csv", index=False)
    return truth
