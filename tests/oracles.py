"""Slow, obviously-correct references for the tests: loops and all-pairs distances.

They share no code with the package; labeling uses scikit-image, not scipy.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy.spatial.distance import cdist
from skimage.measure import label as skimage_label


def label(segmentation: np.ndarray) -> np.ndarray:
    values = np.unique(segmentation[segmentation != 0])
    if len(values) <= 1:
        return skimage_label(segmentation != 0, connectivity=1)
    return segmentation.astype(np.int64)


def flood_fill_labels(mask: np.ndarray) -> np.ndarray:
    """Face-connected objects numbered in scan order by their first voxel: a flood fill
    from each voxel, in C order, that no earlier fill reached."""
    mask = np.asarray(mask) != 0
    labels = np.zeros(mask.shape, np.int64)
    count = 0
    for start in zip(*np.nonzero(mask)):  # C order
        if labels[start]:
            continue
        count += 1
        labels[start] = count
        stack = [start]
        while stack:
            here = stack.pop()
            for axis in range(3):
                for step in (-1, 1):
                    there = list(here)
                    there[axis] += step
                    there = tuple(there)
                    if (0 <= there[axis] < mask.shape[axis] and mask[there]
                            and not labels[there]):
                        labels[there] = count
                        stack.append(there)
    return labels


def objects(label_image: np.ndarray, raw: np.ndarray) -> pd.DataFrame:
    rows = []
    for object_id in np.unique(label_image[label_image != 0]):
        where = label_image == object_id
        coords = np.argwhere(where)
        values = raw[where].astype(np.float64)
        rows.append({
            "object_id": int(object_id), "area": int(where.sum()),
            "centroid_z": coords[:, 0].mean(), "centroid_y": coords[:, 1].mean(),
            "centroid_x": coords[:, 2].mean(), "min_intensity": values.min(),
            "max_intensity": values.max(), "mean_intensity": values.mean(),
            "total_intensity": math.fsum(float(v) for v in raw[where]),
        })
    return pd.DataFrame(rows)


def distances(label_image, target_label_image, spacing) -> pd.DataFrame:
    """All voxel pairs; ties (to 1e-9 relative) go to the smallest target label."""
    spacing = np.broadcast_to(np.asarray(spacing, float), (3,))
    target_points = np.argwhere(target_label_image != 0)
    target_labels = target_label_image[target_label_image != 0]
    rows = []
    for object_id in np.unique(label_image[label_image != 0]):
        points = np.argwhere(label_image == object_id)
        if len(target_points) == 0:
            rows.append({"object_id": int(object_id), "distance": np.nan, "target_id": None})
            continue
        per_target_voxel = cdist(points * spacing, target_points * spacing).min(axis=0)
        best = per_target_voxel.min()
        tied = target_labels[per_target_voxel <= best * (1 + 1e-9) + 1e-12]
        rows.append({"object_id": int(object_id), "distance": best, "target_id": int(tied.min())})
    return pd.DataFrame(rows, columns=["object_id", "distance", "target_id"])


def distribution(distance, total, molecules, *, step, threshold, granule_threshold) -> pd.DataFrame:
    distance = np.asarray(distance, float)
    total = np.asarray(total, float)
    molecules = np.asarray(molecules, float)
    keep = ~np.isnan(distance)
    distance, total, molecules = distance[keep], total[keep], molecules[keep]
    if threshold is None:
        threshold = distance.max()
    # The definition's tolerance: a distance within a relative 1e-9 of d is on it.
    def on_or_before(x, d):
        return x <= d + 1e-9 * d

    denominator = sum(t for d, t in zip(distance, total) if on_or_before(d, threshold))
    grid, k = [], 0
    while round(k * step, 10) < threshold:
        grid.append(round(k * step, 10))
        k += 1
    grid.append(threshold)
    rows = []
    for d in grid:
        within = sum(t for x, t in zip(distance, total) if on_or_before(x, d))
        granules = sum(t for x, t, m in zip(distance, total, molecules)
                       if on_or_before(x, d) and m >= granule_threshold)
        rows.append({"distance": d, "percent_total_rna": 100 * within / denominator,
                     "percent_granule_rna": 100 * granules / denominator})
    return pd.DataFrame(rows)


def image_reference(spot, area, points_um, *, reach_um: float, trim: float,
                    fewest: int) -> list | None:
    """The spots of one image's own single-molecule reference (normalization.reference
    "image"), by hand: its mean is the image's own reference.

    The single spots: area within 0.5-1.5x the image's median area, a positive spot
    intensity, and no other object of the image within `reach_um` (all pairs). Those within
    a factor `trim` of their median, if at least `fewest` (and two) are within it; else None
    (the image is counted against its group's reference).
    """
    spot = np.asarray(spot, dtype=float)
    area = np.asarray(area, dtype=float)
    points = np.asarray(points_um, dtype=float)
    centre = np.median(area)
    single = []
    for k in range(len(spot)):
        nearest = min((math.dist(points[k], points[j]) for j in range(len(spot)) if j != k),
                      default=math.inf)
        if 0.5 * centre <= area[k] <= 1.5 * centre and spot[k] > 0 and nearest > reach_um:
            single.append(k)
    if not single:
        return None
    median = float(np.median(spot[single]))
    kept = [spot[k] for k in single if median / trim <= spot[k] <= median * trim]
    return kept if len(kept) >= max(fewest, 2) else None


def shrunk_reference(kept_by_image: dict, group_reference: float,
                     light: dict | None = None) -> dict:
    """Each image's reference within one group (normalization.reference "image"), by hand.

    `kept_by_image`: each image's spots (:func:`image_reference`; None: too few). Each own
    reference (its spots' mean) is pulled toward `group_reference` in logarithms by the
    weight f + (1 - f) tau2 / (tau2 + s2 / n): s2 the images' squared spread (SD over mean)
    pooled with n - 1 degrees of freedom each, tau2 DerSimonian and Laird's estimate of the
    variance of the images' log references beyond chance, f the image's n spots over its
    molecules (its `light` over its own reference, at most 1; no `light`: 0). One image, or
    spots alike to the bit: its own.
    """
    spots = {name: kept for name, kept in kept_by_image.items() if kept is not None}
    means = {name: sum(kept) / len(kept) for name, kept in spots.items()}
    squared = {name: sum((v - means[name]) ** 2 for v in kept) / (len(kept) - 1) / means[name] ** 2
               for name, kept in spots.items()}
    degrees = sum(len(kept) - 1 for kept in spots.values())
    pooled = sum((len(spots[name]) - 1) * squared[name] for name in spots) / max(degrees, 1)
    if len(spots) < 2 or pooled <= 0:
        return means
    weight = {name: len(kept) / pooled for name, kept in spots.items()}
    logs = {name: math.log(mean) for name, mean in means.items()}
    total = sum(weight.values())
    centre = sum(weight[name] * logs[name] for name in spots) / total
    q = sum(weight[name] * (logs[name] - centre) ** 2 for name in spots)
    tau2 = max(0.0, (q - (len(spots) - 1))
               / (total - sum(w * w for w in weight.values()) / total))
    base = math.log(group_reference)
    result = {}
    for name in spots:
        share = 0.0 if light is None else min(1.0, max(0.0, len(spots[name])
                                                          / (light[name] / means[name])))
        pull = share + (1 - share) * tau2 / (tau2 + 1 / weight[name])
        result[name] = means[name] if pull == 1 else math.exp(base + pull * (logs[name] - base))
    return result


def aperture_reference(spot, area, points_um, images, *, reach_um: float, trim: float,
                       fewest: int) -> float:
    """One group's single-molecule reference (method "aperture", README's definition), by hand.

    The single spots: area within 0.5-1.5x the group's median area and a positive spot
    intensity; of them, those with no other object of their image within `reach_um`
    (all pairs) when at least `fewest` are. The reference: the mean of the single spots
    within a factor `trim` of their median (the median when none is).
    """
    spot = np.asarray(spot, dtype=float)
    area = np.asarray(area, dtype=float)
    points = np.asarray(points_um, dtype=float)
    images = np.asarray(images, dtype=object)
    centre = np.median(area)
    single = [k for k in range(len(spot))
              if 0.5 * centre <= area[k] <= 1.5 * centre and spot[k] > 0]
    isolated = []
    for k in single:
        others = [j for j in range(len(spot)) if j != k and images[j] == images[k]]
        nearest = min((math.dist(points[k], points[j]) for j in others), default=math.inf)
        if nearest > reach_um:
            isolated.append(k)
    if len(isolated) >= fewest:
        single = isolated
    median = float(np.median(spot[single]))
    kept = [spot[k] for k in single if median / trim <= spot[k] <= median * trim]
    return sum(kept) / len(kept) if kept else median


def _damped_gauss_newton_step(jacobian, error):
    """``(JᵀJ + 1e-3 diag(JᵀJ) + 1e-12 I)⁻¹ Jᵀe``, J and e over a window's voxels."""
    normal = jacobian.T @ jacobian
    normal[np.diag_indices_from(normal)] *= 1 + 1e-3
    normal[np.diag_indices_from(normal)] += 1e-12
    return np.linalg.solve(normal, jacobian.T @ error)


def granule_fit(window, inside, coords, start, amplitude, sigma, spacing, *, low, high,
                max_extra, steps):
    """One granule's widened Gaussian by Gauss-Newton, written out on the whole window.

    `window` (V,) data, `inside` (V,) bool, `coords` (V, 3) voxel positions;
    ``A exp(-Σ_a (x_a - c_a)² / (2 (sigma_a² + u / spacing_a²)))`` from (`amplitude`,
    `start`, u = 0.01); each step moves the centre by at most a sigma, then A ≥ 0, the
    centre within `low`..`high`, u within 0..`max_extra`. Returns (A, c (3), u).
    """
    sigma = np.asarray(sigma, dtype=float)
    inverse_area = 1.0 / np.asarray(spacing, dtype=float) ** 2
    data = np.where(inside, window, 0.0)
    p = np.array([amplitude, *start, 0.01], dtype=float)
    for _ in range(steps):
        width2 = sigma ** 2 + p[4] * inverse_area
        delta = coords - p[1:4]
        model = np.exp(-0.5 * (delta ** 2 / width2).sum(axis=1))
        columns = [model]
        columns += [p[0] * model * delta[:, a] / width2[a] for a in range(3)]
        columns += [p[0] * model * (0.5 * delta ** 2 / width2 ** 2 * inverse_area).sum(axis=1)]
        jacobian = np.column_stack(columns) * inside[:, None]
        step = _damped_gauss_newton_step(jacobian, (p[0] * model - data) * inside)
        p -= step * min(1.0, 1.0 / max(float(np.max(np.abs(step[1:4]) / sigma)), 1e-12))
        p[0] = max(p[0], 0.0)
        p[1:4] = np.clip(p[1:4], low, high)
        p[4] = min(max(p[4], 0.0), max_extra)
    return p


def pair_fit(window, coords, start_1, start_2, amplitude, sigma, *, steps):
    """Two Gaussians of `sigma` by Gauss-Newton, written out on the whole window.

    `window` (V,) data, NaN where there is none, `coords` (V, 3); from amplitudes
    0.6 `amplitude` at `start_1` and `start_2`; no step moves a molecule by more than a
    sigma. Returns (a1, a2, m1 (3), m2 (3)).
    """
    sigma = np.asarray(sigma, dtype=float)
    inside = np.isfinite(window)
    data = np.where(inside, window, 0.0)
    p = np.array([0.6 * amplitude, 0.6 * amplitude, *start_1, *start_2], dtype=float)
    for _ in range(steps):
        parts = [(coords - p[2 + 3 * m: 5 + 3 * m]) / sigma for m in range(2)]
        models = [np.exp(-0.5 * (part ** 2).sum(axis=1)) for part in parts]
        columns = list(models)
        for m in range(2):
            columns += [p[m] * models[m] * parts[m][:, a] / sigma[a] for a in range(3)]
        jacobian = np.column_stack(columns) * inside[:, None]
        error = (p[0] * models[0] + p[1] * models[1] - data) * inside
        step = _damped_gauss_newton_step(jacobian, error)
        p -= step * min(1.0, 1.0 / max(float(np.max(np.abs(step[2:]).reshape(2, 3) / sigma)),
                                       1e-12))
    return p
