"""Ground truth of a simulated image: the :class:`SimulatedImage` record and truth-derived curves."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from .model import PRESETS

__all__ = ["CENTROSOME_COLUMNS", "MOLECULE_COLUMNS", "NUCLEUS_COLUMNS", "SimulatedImage",
           "expected_distribution", "nearest_voxel_distance"]

MOLECULE_COLUMNS = {
    "molecule_id": "int64",
    "object_id": "int64",
    "z": "float64",
    "y": "float64",
    "x": "float64",
    "brightness": "float64",
    "snr": "float64",
    "in_granule": "bool",
    "distance_to_centrosomes": "float64",
}
CENTROSOME_COLUMNS = {
    "centrosome_id": "int64",
    "z": "float64",
    "y": "float64",
    "x": "float64",
    "radius_um": "float64",
    "snr": "float64",
    "nucleus_id": "int64",
}
NUCLEUS_COLUMNS = {
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
        ``brightness`` (expected detected photoelectrons over its whole PSF),
        ``snr`` (its peak SNR), ``in_granule`` and ``distance_to_centrosomes``
        (µm from the true position to the centre of the nearest voxel of
        `centrosome_labels`; NaN without centrosomes).
    centrosomes_table : DataFrame
        One row per centrosome: ``centrosome_id`` (its label), centre ``z``,
        ``y``, ``x`` in voxel coordinates, ``radius_um``, ``snr`` (peak SNR
        in its channel) and ``nucleus_id``.
    metadata : dict
        ``name``, ``rna_type``, ``cycle``, ``replicate``, ``seed``, ``preset``, ``snr``.
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
    spacing: tuple[float, float, float] = PRESETS["confocal"].spacing


def nearest_voxel_distance(points_um, label_image, spacing):
    """µm from each point to the centre of the nearest labelled voxel (NaN if none)."""
    voxels = np.argwhere(label_image)
    if len(voxels) == 0 or len(points_um) == 0:
        return np.full(len(points_um), np.nan)
    tree = cKDTree(voxels * np.asarray(spacing))
    distance, _ = tree.query(points_um)
    return distance


def expected_distribution(molecules: pd.DataFrame, *, distance_threshold: float,
                          step_size: float = 0.05, granule_threshold: float = 4) -> pd.DataFrame:
    """Cumulative distribution of one image computed from its ground truth.

    Every molecule counts at its true position with its true brightness:
    with ``d_i`` the distance (µm) from molecule ``i``'s true centre to the
    centre of the nearest voxel of any ideal centrosome mask
    (``distance_to_centrosomes``), ``b_i`` its brightness and ``t`` the
    threshold, ``percent_total_rna(d) = 100 * sum(b_i, d_i <= d) / sum(b_i,
    d_i <= t)`` at the distances of
    :func:`rna_localization.distributions.distance_steps`;
    ``percent_granule_rna`` restricts the numerator to molecules whose object
    (``object_id``) holds at least `granule_threshold` molecules. Molecules
    without a distance (no centrosome) are left out.

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
    from ..distributions import cumulative_distribution

    per_object = molecules.groupby("object_id")["molecule_id"].transform("size")
    return cumulative_distribution(
        molecules["distance_to_centrosomes"].to_numpy(np.float64),
        molecules["brightness"].to_numpy(np.float64),
        per_object.to_numpy(np.float64),
        step_size=step_size,
        distance_threshold=distance_threshold,
        granule_threshold=granule_threshold,
    )
