"""The old pipeline's distance algorithm, as a baseline: slow, and not exact.

For each object: take the 3 target objects whose centroids are nearest to the
object's centroid, then compare the object's surface voxels with each of those
targets' surface voxels, one pair at a time in Python, and keep the smallest
distance. A surface voxel is a voxel of the object with a face neighbour
outside it (or outside the volume).

Comparing surface voxels only is exact for the targets it looks at (see
``rna_localization.distances``); the error comes from looking at 3 targets
chosen by centroid: a large or long target whose centroid is far can hold the
nearest voxel. :func:`naive_distances_vectorized` gives the same answers with
numpy, to count those errors over every object of an image quickly.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import ndimage
from scipy.spatial import cKDTree

__all__ = [
    "N_CANDIDATES",
    "ObjectSurfaces",
    "compare_surfaces",
    "naive_distances",
    "naive_distances_vectorized",
]

#: Targets compared per object, chosen by nearest centroid (the old pipeline's 3).
N_CANDIDATES = 3

_FACE = ndimage.generate_binary_structure(3, 1)


class ObjectSurfaces:
    """Centroid and surface voxel coordinates (microns) of every object of a label image.

    Parameters
    ----------
    label_image : (Z, Y, X) ndarray of int
    spacing : (3,) sequence of float
        Microns per voxel along (z, y, x).
    """

    def __init__(self, label_image: np.ndarray, spacing):
        scale = np.asarray(spacing, dtype=np.float64)
        self.ids: list[int] = []
        self.centroids: list[np.ndarray] = []
        self.surfaces: list[np.ndarray] = []
        for index, box in enumerate(ndimage.find_objects(label_image)):
            if box is None:
                continue
            label = index + 1
            # One voxel of margin, so that the volume's edge counts as outside.
            padded = np.pad(label_image[box] == label, 1)
            surface = padded & ~ndimage.binary_erosion(padded, _FACE)
            origin = np.array([s.start for s in box]) - 1
            voxels = np.argwhere(padded) + origin
            self.ids.append(label)
            self.centroids.append(voxels.mean(axis=0) * scale)
            self.surfaces.append((np.argwhere(surface) + origin) * scale)
        self.index = {label: i for i, label in enumerate(self.ids)}

    def candidates(self, centroid: np.ndarray, targets: ObjectSurfaces) -> list[int]:
        """Positions in `targets` of the N_CANDIDATES targets with the nearest centroids."""
        order = np.argsort(np.linalg.norm(np.asarray(targets.centroids) - centroid, axis=1),
                           kind="stable")
        return order[:N_CANDIDATES].tolist()


def naive_distances(label_image: np.ndarray, target_label_image: np.ndarray, spacing,
                    object_ids=None) -> pd.DataFrame:
    """Distances as the old pipeline computed them, pair by pair in Python loops.

    Parameters
    ----------
    label_image, target_label_image : (Z, Y, X) ndarray of int
    spacing : (3,) sequence of float
    object_ids : sequence of int, optional
        Measure only these objects (the baseline is slow); default all.

    Returns
    -------
    DataFrame
        ``object_id``, ``distance`` (microns), ``target_id``; NaN / -1 without targets.
    """
    sources = ObjectSurfaces(label_image, spacing)
    targets = ObjectSurfaces(target_label_image, spacing)
    return compare_surfaces(sources, targets, sources.ids if object_ids is None else object_ids)


def compare_surfaces(sources: ObjectSurfaces, targets: ObjectSurfaces, object_ids) -> pd.DataFrame:
    """The pair-by-pair loop of :func:`naive_distances`, on surfaces already found."""
    rows = []
    for label in object_ids:
        i = sources.index[label]
        best, best_target = math.inf, -1
        if targets.ids:
            surface = sources.surfaces[i].tolist()
            for j in sources.candidates(sources.centroids[i], targets):
                for tz, ty, tx in targets.surfaces[j].tolist():
                    for sz, sy, sx in surface:
                        d = math.sqrt((sz - tz) ** 2 + (sy - ty) ** 2 + (sx - tx) ** 2)
                        if d < best:
                            best, best_target = d, targets.ids[j]
        rows.append((label, best if best_target >= 0 else math.nan, best_target))
    return pd.DataFrame(rows, columns=["object_id", "distance", "target_id"])


def naive_distances_vectorized(label_image: np.ndarray, target_label_image: np.ndarray,
                               spacing) -> pd.DataFrame:
    """The same answers as :func:`naive_distances` for every object, with KD-trees.

    Only to count the old algorithm's errors over a whole image; the timing
    baseline is :func:`naive_distances`.
    """
    sources = ObjectSurfaces(label_image, spacing)
    targets = ObjectSurfaces(target_label_image, spacing)
    trees = [cKDTree(surface) for surface in targets.surfaces]
    rows = []
    for label, centroid, surface in zip(sources.ids, sources.centroids, sources.surfaces):
        best, best_target = math.inf, -1
        if trees:
            for j in sources.candidates(centroid, targets):
                d = float(trees[j].query(surface, k=1)[0].min())
                if d < best:
                    best, best_target = d, targets.ids[j]
        rows.append((label, best if best_target >= 0 else math.nan, best_target))
    return pd.DataFrame(rows, columns=["object_id", "distance", "target_id"])
