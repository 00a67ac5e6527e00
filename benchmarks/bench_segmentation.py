"""Segmentation workflows against the same steps called the plainest way from aicssegmentation.

    python -m benchmarks.bench_segmentation [--quick] [--shape Z Y X]

For each workflow, one 100x spinning-disk-like uint16 stack (default 40 x 1024 x
1024, drawn deterministically: Poisson photons on blurred spots) is segmented in
fresh processes, once by ``rna_localization.segmentation`` with its defaults and
once by a plain script of the same steps: ``intensity_normalization``,
``image_smoothing_gaussian_3d``, ``dot_3d_wrapper``, ``hole_filling``,
scikit-image ``remove_small_objects`` and a seeded ``watershed`` (float64, as
those functions return). Each process reports its wall time and its peak
resident memory above the loaded image (Linux VmHWM, reset before the run). The table gives both
and their ratio (ours / plain; the target is <= 1).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SPACING = (0.2, 0.065, 0.065)
PSF_UM = (0.3, 0.1, 0.1)


def make_stack(shape, workflow: str, seed: int = 0) -> np.ndarray:
    """A deterministic uint16 stack of blurred spots (rna) or blobs (centrosomes)."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    spacing = np.asarray(SPACING)
    volume_um3 = float(np.prod(np.asarray(shape) * spacing))
    photons = np.zeros(shape, np.float32)
    if workflow == "rna":
        n = int(0.3 * volume_um3)  # single molecules per um^3
        where = tuple(rng.integers(0, s, n) for s in shape)
        np.add.at(photons, where, rng.lognormal(np.log(50_000), 0.25, n).astype(np.float32))
        centres = rng.uniform(0, 1, (n // 50, 3)) * np.asarray(shape)  # granules of ~8
        members = np.repeat(centres, 8, axis=0) + rng.normal(0, 0.12, (len(centres) * 8, 3)) / spacing
        members = np.clip(np.rint(members), 0, np.asarray(shape) - 1).astype(int)
        np.add.at(photons, tuple(members.T), np.float32(50_000))
        blurred = ndimage.gaussian_filter(photons, np.asarray(PSF_UM) / spacing, truncate=3.5)
    else:
        n = int(volume_um3 / 60)  # centrosomes
        where = tuple(rng.integers(0, s, n) for s in shape)
        photons[where] = 1.0
        radius = np.asarray([0.35, 0.35, 0.35]) / spacing
        ball = ndimage.gaussian_filter(photons, radius / 2, truncate=3.0)
        ball *= np.float32(400 / max(float(ball.max()), 1e-12))
        blurred = ndimage.gaussian_filter(ball, np.asarray(PSF_UM) / spacing, truncate=3.5)
    expected = blurred + 10.0
    return (rng.poisson(expected) + 100 + rng.normal(0, 2, shape)).clip(0, 65535).astype(np.uint16)


def ours(image: np.ndarray, workflow: str) -> np.ndarray:
    from rna_localization.segmentation import segment

    return segment(image, workflow, spacing=SPACING)


def plain(image: np.ndarray, workflow: str) -> np.ndarray:
    """The same steps, straight from aicssegmentation / scikit-image, as a playground would."""
    from aicssegmentation.core.pre_processing_utils import (
        image_smoothing_gaussian_3d,
        intensity_normalization,
    )
    from aicssegmentation.core.seg_dot import dot_3d_wrapper
    from aicssegmentation.core.utils import hole_filling
    from scipy import ndimage
    from skimage.feature import peak_local_max
    from skimage.measure import label
    from skimage.morphology import remove_small_objects
    from skimage.segmentation import watershed

    from rna_localization.segmentation import CentrosomeParams, RnaParams

    p = RnaParams() if workflow == "rna" else CentrosomeParams()
    spacing = np.asarray(SPACING)
    struct_img = intensity_normalization(image.copy(), scaling_param=list(p.normalization))
    smooth = image_smoothing_gaussian_3d(struct_img, sigma=tuple(p.smoothing_sigma_um / spacing))
    # dot_3d_wrapper takes one sigma in voxels for all axes: the xy one.
    s3_param = [[sigma / spacing[2], cutoff] for sigma, cutoff in p.spot_filters]
    bw = dot_3d_wrapper(smooth, s3_param)
    bw = hole_filling(bw, 0, int(p.hole_max_um2 / spacing[1] / spacing[2]), fill_2d=True)
    bw = remove_small_objects(bw, max_size=int(p.min_volume_um3 / np.prod(spacing)),
                              connectivity=1)
    distance = max(1, round(p.split_min_distance_um / spacing[2]))
    peaks = peak_local_max(smooth, labels=label(bw, connectivity=1), min_distance=distance)
    markers = np.zeros(bw.shape, bool)
    markers[tuple(peaks.reshape(-1, 3).T)] = True
    labels = watershed(-smooth, markers=ndimage.label(markers)[0], mask=bw, connectivity=1)
    return (labels > 0).astype(np.uint8) * 255


def _child(args) -> None:
    """One measurement in a fresh process: load, run once, report time and memory."""
    image = np.load(args.child_image)
    run = ours if args.child_side == "ours" else plain
    run(image[:8, :32, :32].copy(), args.child_workflow)  # imports out of the timing
    base = _reset_peak_kb()
    start = time.perf_counter()
    mask = run(image, args.child_workflow)
    seconds = time.perf_counter() - start
    peak = _peak_kb()
    print(json.dumps({"seconds": seconds, "peak_mb": (peak - base) / 1024,
                      "objects": int(mask.any())}))


def _status_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak_kb() -> int:
    """Current resident memory (kB), after resetting the peak where Linux allows it.

    ``ru_maxrss`` would not do: Linux carries the parent's peak over fork and
    exec, so a child's own peak is read from /proc (VmHWM, reset through
    clear_refs).
    """
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return _status_kb("VmRSS") or 0


def _peak_kb() -> int:
    return _status_kb("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _measure(image_path: Path, side: str, workflow: str) -> dict:
    command = [sys.executable, "-m", "benchmarks.bench_segmentation", "--child-image",
               str(image_path), "--child-side", side, "--child-workflow", workflow]
    done = subprocess.run(command, capture_output=True, text=True, check=False,
                          cwd=Path(__file__).resolve().parents[1])
    if done.returncode != 0:
        msg = f"{side} {workflow} failed:\n{done.stderr[-3000:]}"
        raise SystemExit(msg)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", "--small", action="store_true",
                        help="a 16 x 256 x 256 stack instead of 40 x 1024 x 1024")
    parser.add_argument("--shape", type=int, nargs=3, metavar=("Z", "Y", "X"))
    parser.add_argument("--child-image", help=argparse.SUPPRESS)
    parser.add_argument("--child-side", help=argparse.SUPPRESS)
    parser.add_argument("--child-workflow", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_image:
        _child(args)
        return 0
    shape = tuple(args.shape) if args.shape else (16, 256, 256) if args.quick else (40, 1024, 1024)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for workflow in ("rna", "centrosomes"):
            path = Path(tmp) / f"{workflow}.npy"
            np.save(path, make_stack(shape, workflow))
            mine, theirs = _measure(path, "ours", workflow), _measure(path, "plain", workflow)
            rows.append((workflow, mine, theirs))
    print(f"Segmentation of one {shape[0]} x {shape[1]} x {shape[2]} uint16 stack "
          f"(fresh process per run; memory = peak RSS above the loaded image)")
    header = (f"{'workflow':<12} {'ours s':>8} {'plain s':>8} {'time ratio':>10} "
              f"{'ours MB':>8} {'plain MB':>9} {'mem ratio':>9}")
    print(header)
    print("-" * len(header))
    worst = 0.0
    for workflow, mine, theirs in rows:
        ratio = mine["seconds"] / theirs["seconds"]
        worst = max(worst, ratio)
        print(f"{workflow:<12} {mine['seconds']:8.2f} {theirs['seconds']:8.2f} {ratio:10.2f} "
              f"{mine['peak_mb']:8.0f} {theirs['peak_mb']:9.0f} "
              f"{mine['peak_mb'] / max(theirs['peak_mb'], 1e-9):9.2f}")
    print(f"time ratio (ours / plain aicssegmentation), target <= 1: worst {worst:.2f} "
          f"{'PASS' if worst <= 1 else 'FAIL'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
