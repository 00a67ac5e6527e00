"""Fit the cost model by which ``nearest_distances(method="auto")`` picks its method.

    python -m benchmarks.fit_distance_costs [--quick]

Times both methods of :func:`rna_localization.nearest_distances` (``"kdtree"`` and
``"edt"``, one thread, CPU seconds, best of 2) on images of random balls (RNA of
0.35 µm, 300 to 30,000 asked per 30x512x512 voxels, touching ones merged; targets
of 0.4 to 12 µm; stacks of 30x256x256 to 60x1024x1024), fits each method's cost
terms (the comment above ``_KD_SECONDS`` in ``rna_localization/distances.py``) by
non-negative least squares on relative errors, and prints the constants with how
far the choice they make lands from the faster method: on every image, and with
each image left out of the fit. Not part of ``make bench``: about 8 minutes.
"""

from __future__ import annotations

import sys
import time

import numpy as np
from scipy.optimize import nnls

from rna_localization import distances
from rna_localization.objects import ObjectVoxels, label_objects

from .bench_distances import SPACING, _balls, recording_choices

#: (shapes, RNA balls asked per 30x512x512 voxels, (count per 30x512x512, diameter µm) of targets)
GRIDS = (
    (((30, 256, 256), (30, 512, 512), (60, 1024, 1024)), (300, 2000, 8000, 30000),
     ((70, 0.6), (30, 1.5), (12, 3.0), (6, 6.0), (2, 12.0))),
    (((30, 384, 384), (40, 768, 768)), (1000, 5000, 20000),
     ((100, 0.4), (40, 1.0), (15, 2.0), (4, 8.0))),
)
QUICK_GRIDS = ((((20, 192, 192),), (2000, 30000), ((70, 0.6), (6, 6.0))),)


def _cpu_seconds(call, repeat: int = 2) -> float:
    best = np.inf
    for _ in range(repeat):
        start = time.process_time()
        call()
        best = min(best, time.process_time() - start)
    return best


def measure(grids=GRIDS, seed: int = 7) -> list[dict]:
    """The cost model's inputs and both methods' CPU seconds, one dict per image."""
    rng = np.random.default_rng(seed)
    rows = []
    for shapes, densities, targets in grids:
        for shape in shapes:
            scale = np.prod(shape) / (30 * 512 * 512)
            for density in densities:
                rna = ObjectVoxels.from_label_image(
                    label_objects(_balls(rng, max(1, int(density * scale)), 0.35, shape)))
                for count, diameter in targets:
                    target = ObjectVoxels.from_label_image(
                        label_objects(_balls(rng, max(1, int(count * scale)), diameter, shape)))
                    calls: list = []
                    with recording_choices(calls):
                        distances.nearest_distances(rna, target, SPACING, workers=1)
                    if not calls:  # every object touches a target: nothing to choose
                        continue
                    source_voxels, target_voxels, box_shape, n_objects = calls[0][0]
                    planes, plane = distances._transform_size(source_voxels, target_voxels,
                                                              box_shape)
                    row = {"objects": n_objects, "targets": len(target_voxels),
                           "sources": len(source_voxels), "planes": planes, "plane": plane}
                    for method in ("kdtree", "edt"):
                        row[method] = _cpu_seconds(lambda m=method: distances.nearest_distances(
                            rna, target, SPACING, workers=1, method=m))  # noqa: B023
                    rows.append(row)
                    print(f"  {shape} {row['objects']:>7,} objects, {row['targets']:>7,} target "
                          f"voxels: KD-tree {row['kdtree']:.3f} s, transforms {row['edt']:.3f} s",
                          flush=True)
    return rows


def terms(rows: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """Each image's cost terms (``distances._cost_terms``): (KD-tree's, transforms'), a row each."""
    both = [distances._cost_terms(r["objects"], r["targets"], r["sources"], r["planes"],
                                  r["plane"]) for r in rows]
    return np.array([kd for kd, _ in both]), np.array([edt for _, edt in both])


def fit(rows: list[dict], keep=None) -> tuple[np.ndarray, np.ndarray]:
    """(KD-tree constants, transform constants) by least squares on relative errors."""
    kd, edt = terms(rows)
    seconds = {m: np.array([r[m] for r in rows]) for m in ("kdtree", "edt")}
    keep = np.ones(len(rows), bool) if keep is None else keep
    return tuple(nnls(x[keep] / seconds[m][keep, None], np.ones(int(keep.sum())))[0]
                 for x, m in ((kd, "kdtree"), (edt, "edt")))


def choice_ratios(rows: list[dict], constants) -> np.ndarray:
    """Per image: the time of the method the constants pick over the faster one's."""
    kd, edt = terms(rows)
    fast = np.array([min(r["kdtree"], r["edt"]) for r in rows])
    pick_kd = kd @ constants[0] <= edt @ constants[1]
    return np.where(pick_kd, [r["kdtree"] for r in rows], [r["edt"] for r in rows]) / fast


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    rows = measure(QUICK_GRIDS if "--quick" in argv else GRIDS)
    constants = fit(rows)
    left_out = [choice_ratios([rows[i]], fit(rows, np.arange(len(rows)) != i))[0]
                for i in range(len(rows))]
    today = (distances._KD_COSTS, distances._EDT_COSTS)
    print(f"\n{len(rows)} images")
    print(f"_KD_SECONDS = {constants[0][0]:.3g}")
    for name, value in zip(("_EDT_TIE_SECONDS", "_EDT_PLANE_SECONDS", "_EDT_SOURCE_SECONDS"),
                           constants[1]):
        print(f"{name} = {value:.3g}")
    for label, ratios in (("fitted constants", choice_ratios(rows, constants)),
                          ("each image left out of the fit", np.array(left_out)),
                          ("the constants in distances.py", choice_ratios(rows, today))):
        print(f"picked / faster, {label}: worst {ratios.max():.2f}, mean {ratios.mean():.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
