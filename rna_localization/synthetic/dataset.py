"""Writing a simulated data set: the data layout, ground-truth tables, pipeline.toml, manifest."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from ..config import DistributionConfig, NormalizationConfig, config_toml
from . import model
from .geometry import check_geometry
from .image import microscope, simulate_image
from .model import CYCLES, RNA_TYPES
from .truth import expected_distribution

__all__ = ["dataset_conditions", "pipeline_settings", "simulate_dataset", "single_molecule_voxels"]

STRUCTURES = ("rna", "centrosomes")
#: Distance threshold (µm) of the cumulative distributions, per cycle: about
#: half the nuclear spacing, beyond which RNA belongs to the next nucleus.
DISTANCE_THRESHOLDS_UM = {"nc13": 4.0, "nc14": 3.0}
#: Step (µm) between distances of the cumulative distributions: the config's default.
DISTANCE_STEP_UM = DistributionConfig.step_size
#: Molecules from which an object counts as a granule: the config's default.
GRANULE_THRESHOLD = NormalizationConfig.granule_threshold
#: Replicates (embryos) per condition; images alternate between them.
N_REPLICATES = 2


def pipeline_settings(spacing, preset=model.DEFAULT_PRESET) -> dict[str, dict]:
    """The settings of a simulated data set's pipeline.toml, where they differ from the defaults.

    The voxel size of the simulated microscope, a single-molecule area range
    around its ideal mask's volume (:func:`single_molecule_voxels`), the
    distance threshold per cycle and the figures by RNA type and cycle.
    Written by :func:`rna_localization.config.config_toml`, which adds every
    other key with its default.

    Parameters
    ----------
    spacing : (z, y, x) floats
        Voxel size in microns.
    preset : str or Microscope
        The simulated microscope.

    Returns
    -------
    dict
        Nested as in TOML.

    Examples
    --------
    >>> settings = pipeline_settings((0.2, 0.065, 0.065), "confocal")
    >>> settings["scale"], settings["normalization"]
    ({'xy': 0.065, 'z': 0.2}, {'lower_threshold': 9, 'upper_threshold': 41})
    """
    voxels = single_molecule_voxels(preset)
    return {
        "data": {"data_dir": ".", "structures": list(STRUCTURES)},
        "scale": {"xy": float(spacing[1]), "z": float(spacing[0])},
        "normalization": {"lower_threshold": max(1, math.floor(0.4 * voxels)),
                          "upper_threshold": math.ceil(1.65 * voxels)},
        "distribution": {"distance_threshold": {"column": "cycle", **DISTANCE_THRESHOLDS_UM},
                         "step_size": DISTANCE_STEP_UM},
        "plot": {"hue": "rna_type", "col": "cycle"},
    }


def _pipeline_toml(spacing, scope, snr: float, version: str) -> str:
    voxels = single_molecule_voxels(scope)
    return config_toml(
        pipeline_settings(spacing, scope),
        header=[f"Pipeline settings for this simulated data set (written by rna_localization "
                f"{version}),", f"{scope.name} microscope, median molecule SNR {snr:g}.",
                "Run from this folder:  rna-localization run --config pipeline.toml"],
        comments={"scale": "microns per voxel"},
        notes={"normalization.lower_threshold":
               [f"Ideal single-molecule masks of this microscope hold about {voxels:.0f} voxels."],
               "distribution.distance_threshold": ["About half the nuclear spacing of each cycle."]},
    )


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


def single_molecule_voxels(preset=model.DEFAULT_PRESET) -> float:
    """Volume in voxels of a single molecule's ideal mask (its half-maximum ellipsoid).

    Examples
    --------
    >>> round(single_molecule_voxels("confocal"), 1)
    24.3
    """
    scope = microscope(preset)
    semi_axes = (np.asarray(scope.psf_sigma_um) / np.asarray(scope.spacing)
                 * math.sqrt(2 * math.log(1 / model.IDEAL_MASK_FRACTION)))
    return float(4 / 3 * math.pi * np.prod(semi_axes))


def image_draws(seed: int, n_images: int,
                image_brightness_sigma: float = model.IMAGE_BRIGHTNESS_SIGMA):
    """Each image's seed and brightness factor in :func:`simulate_dataset`'s data set.

    Image ``i`` is simulated with the ``i``-th seed spawned from `seed` by
    ``np.random.SeedSequence``, and its median molecule SNR multiplied by a
    log-normal factor of sigma `image_brightness_sigma`, drawn from one more
    spawned stream (so the factors leave the images' own draws alone).

    Returns
    -------
    seeds : list of int
    factors : (n_images,) ndarray of float

    Examples
    --------
    >>> seeds, factors = image_draws(0, 3, 0.0)
    >>> len(seeds), factors.tolist()
    (3, [1.0, 1.0, 1.0])
    """
    *streams, brightness = np.random.SeedSequence(seed).spawn(n_images + 1)
    seeds = [int(s.generate_state(1)[0]) for s in streams]
    factors = np.exp(np.random.default_rng(brightness).normal(
        0.0, float(image_brightness_sigma), n_images))
    return seeds, factors


def simulate_dataset(out_dir, *, n_images: int = 20, seed: int = 0,
                     shape=(30, 256, 256), preset=model.DEFAULT_PRESET,
                     snr: float = model.MOLECULE_SNR,
                     image_brightness_sigma: float = model.IMAGE_BRIGHTNESS_SIGMA) -> Path:
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
    preset : {"confocal", "widefield"}
        Microscope of every image (:data:`~.model.PRESETS`).
    snr : float
        Median peak SNR of a single molecule, over the data set.
    image_brightness_sigma : float
        Each image's median molecule SNR is `snr` times a log-normal factor of
        this sigma (:data:`~.model.IMAGE_BRIGHTNESS_SIGMA`, as real images
        differ; 0: every image alike). The factors are drawn from their own
        stream of `seed`: the images are otherwise the same whatever it is.
        The manifest lists each image's factor (``image_brightness``).

    Returns
    -------
    Path
        `out_dir`, absolute.
    """
    from tqdm.auto import tqdm

    from .. import __version__
    from ..datasets import MANIFEST_NAME, write_manifest
    from ..io import write_stack

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
    scope = microscope(preset)
    shape, spacing = check_geometry(shape, scope.spacing)
    if not (np.isfinite(image_brightness_sigma) and image_brightness_sigma >= 0):
        msg = f"image_brightness_sigma must be a number >= 0; got {image_brightness_sigma!r}."
        raise ValueError(msg)
    seeds, brightness = image_draws(seed, n_images, image_brightness_sigma)
    out.mkdir(parents=True, exist_ok=True)

    written: list[str] = []
    molecules, centrosomes, nuclei, expected = [], [], [], []
    rows = conditions.to_dict("records")
    for row, image_seed, factor in tqdm(list(zip(rows, seeds, brightness, strict=True)),
                                        desc="simulate", unit="image"):
        image = simulate_image(row["name"], rna_type=row["rna_type"], cycle=row["cycle"],
                               replicate=row["replicate"], seed=image_seed, shape=shape,
                               preset=scope, snr=snr * float(factor))
        for structure, raw, labels in [("rna", image.rna, image.rna_labels),
                                       ("centrosomes", image.centrosomes,
                                        image.centrosome_labels)]:
            for relative, array in [(f"{structure}/raw-data/{image.name}.tif", raw),
                                    (f"{structure}/segmentations/{image.name}_seg.tif", labels)]:
                write_stack(out / relative, array, spacing=spacing)
                written.append(relative)
        molecules.append(image.molecules.assign(name=image.name))
        centrosomes.append(image.centrosomes_table.assign(name=image.name))
        nuclei.append(image.nuclei.assign(name=image.name))
        curve = expected_distribution(image.molecules,
                                      distance_threshold=DISTANCE_THRESHOLDS_UM[row["cycle"]],
                                      step_size=DISTANCE_STEP_UM,
                                      granule_threshold=GRANULE_THRESHOLD)
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
    (out / "pipeline.toml").write_text(_pipeline_toml(spacing, scope, snr, __version__),
                                       encoding="utf-8")
    write_manifest(
        out, written, structures=STRUCTURES,
        generator={
            "simulator": "rna_localization.synthetic",
            "simulator_version": model.SIMULATOR_VERSION,
            "preset": scope.name,
            "snr": float(snr),
            "package_version": __version__,
            "seed": int(seed),
            "n_images": int(n_images),
            "shape": list(shape),
            "spacing": [float(s) for s in spacing],
            "image_seeds": dict(zip(conditions["name"], seeds, strict=True)),
            "image_brightness_sigma": float(image_brightness_sigma),
            "image_brightness": {name: round(float(f), 6)
                                 for name, f in zip(conditions["name"], brightness, strict=True)},
        },
    )
    return out
