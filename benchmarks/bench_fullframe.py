"""One full confocal frame (60 x 2048 x 2048 uint16): segmentation, label storage, extract's
memory, run / floor.

Also the distances step's array work on the stored object voxels against the
int32 label images it built from them before (time and traced peak).

``python -m benchmarks --only fullframe``. The frame is simulated cheaply (a
tiled noise block, ~74,000 RNA spots and ~1,000 centrosomes stamped as
ellipsoids), written as TIFFs in the data layout with its pipeline.toml.
Segmenting both stacks (the RNA one twice: on every core and on one thread) takes
about 3 minutes; simulation, storage and extract under a minute; then the floor
and the whole run (about 20 s each time) take turns, three times.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import os
import subprocess
import sys
import time
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import tifffile

from rna_localization import load_config
from rna_localization.baseline import image_baseline
from rna_localization.config import DEFAULT_SPACING, DistributionConfig
from rna_localization.db import Database, start_server, stop_server
from rna_localization.db.labels import decode_dense, decode_runs, encode_runs
from rna_localization.db.tables import relation_sizes
from rna_localization.distances import nearest_distances, point_distances
from rna_localization.distributions import distance_grid
from rna_localization.objects import ObjectVoxels, object_voxels

from ._common import Figure, Section, best_time
from .bench_run import REPO, floor_seconds, timed_run

FULL = {"shape": (60, 2048, 2048), "n_rna": 74_000, "n_centrosomes": 1_000}
QUICK = {"shape": (16, 512, 512), "n_rna": 1_200, "n_centrosomes": 20}
# Ellipsoid radii (z, y, x) in voxels at 0.2 x 0.065 x 0.065 um: a diffraction-limited
# RNA spot (~40 voxels) and a centrosome (~2,000 voxels).
RNA_RADII = (1.2, 2.6, 2.6)
CENTROSOME_RADII = (3.5, 11.0, 11.0)
TARGET_PEAK = 2.5
TARGET_RUN = 3.0
TURNS = 3  # the floor and the run, taking turns: the fastest of each is kept


def _ellipsoid(radii) -> np.ndarray:
    """(K, 3) voxel offsets of a filled ellipsoid."""
    grid = np.mgrid[tuple(slice(-int(np.ceil(r)), int(np.ceil(r)) + 1) for r in radii)]
    inside = sum((g / r) ** 2 for g, r in zip(grid, radii)) <= 1
    return np.stack([g[inside] for g in grid], axis=1)


def _stamp(shape, rng, radii, n: int) -> np.ndarray:
    """Flat indices of `n` ellipsoids at random places (overlapping ones merge)."""
    offsets = _ellipsoid(radii)
    low, high = -offsets.min(axis=0), np.array(shape) - offsets.max(axis=0)
    centres = np.column_stack([rng.integers(lo, hi, n) for lo, hi in zip(low, high)])
    strides = np.array([shape[1] * shape[2], shape[2], 1])
    return ((centres @ strides)[:, None] + (offsets @ strides)[None, :]).ravel()


def simulate_frame(folder: Path, *, shape, n_rna: int, n_centrosomes: int, seed: int = 0) -> Path:
    """Write one frame in the data layout (rna, centrosomes); its pipeline.toml's path."""
    rng = np.random.default_rng(seed)
    tile = (rng.normal(400, 30, (shape[0], 256, 256))).astype(np.uint16)
    raw = np.tile(tile, (1, -(-shape[1] // 256), -(-shape[2] // 256)))[:, : shape[1], : shape[2]]
    raw = np.ascontiguousarray(raw)
    for structure, radii, n, bright in [("rna", RNA_RADII, n_rna, 900),
                                        ("centrosomes", CENTROSOME_RADII, n_centrosomes, 600)]:
        voxels = _stamp(shape, rng, radii, n)
        mask = np.zeros(shape, np.uint8)
        mask.reshape(-1)[voxels] = 255
        image = raw.copy()
        image.reshape(-1)[voxels] += np.uint16(bright)
        for kind, array, suffix in [("raw-data", image, ""), ("segmentations", mask, "_seg")]:
            (folder / structure / kind).mkdir(parents=True, exist_ok=True)
            tifffile.imwrite(folder / structure / kind / f"frame{suffix}.tif", array)
        del image, mask
    (folder / "raw-data-metadata.csv").write_text("name,rna_type\nframe,gapdh\n")
    (folder / "pipeline.toml").write_text(
        '[database]\nname = "fullframe"\n\n[data]\ndata_dir = "."\n'
        'structures = ["rna", "centrosomes"]\n\n[scale]\nxy = 0.065\nz = 0.2\n'
        "\n[distances]\nworkers = 1\n"
    )
    return folder / "pipeline.toml"


def _dense_blob(label_image: np.ndarray) -> bytes:
    """The first release's storage: the whole volume in its smallest dtype, zlib level 1."""
    return zlib.compress(np.ascontiguousarray(label_image).tobytes(), 1)


def _storage(folder: Path, structure: str) -> dict:
    segmentation = tifffile.imread(folder / structure / "segmentations" / "frame_seg.tif")
    objects = object_voxels(segmentation)
    del segmentation
    runs_seconds = best_time(lambda: encode_runs(objects))
    blob = encode_runs(objects)
    dense = objects.to_label_image()  # uint8/16/32: what the first release compressed
    start = time.perf_counter()
    old = _dense_blob(dense)
    dense_seconds = time.perf_counter() - start
    del dense
    read_runs = best_time(lambda: decode_runs(blob, objects.shape).to_label_image(np.int32), repeat=2)
    start = time.perf_counter()
    decode_dense(old, objects.labels.dtype.name, objects.shape).astype(np.int32)
    read_dense = time.perf_counter() - start
    return {"stored": decode_runs(blob, objects.shape),
            "objects": objects.largest, "voxels": objects.voxels.size,
            "runs_bytes": len(blob), "dense_bytes": len(old),
            "runs_seconds": runs_seconds, "dense_seconds": dense_seconds,
            "read_runs": read_runs, "read_dense": read_dense}


def _distance_inputs(source: ObjectVoxels, target: ObjectVoxels) -> dict:
    """The distances step's array work (nearest_distances, point_distances, image_baseline at
    the default grid) on the stored object voxels, and on the int32 label images it built from
    them before: seconds and traced peak of each, and whether the answers are identical."""
    spacing = DEFAULT_SPACING
    _, first = np.unique(source.labels, return_index=True)  # a point in every object
    points = np.column_stack(np.unravel_index(source.voxels[first], source.shape)) + 0.25
    answers, measured = {}, {}
    for kind in ("label images", "object voxels"):
        gc.collect()
        tracemalloc.start()
        start = time.perf_counter()
        if kind == "label images":
            rna, targets = source.to_label_image(np.int32), target.to_label_image(np.int32)
        else:
            rna, targets = source, target
        table = nearest_distances(rna, targets, spacing)
        centroid = point_distances(points, targets, spacing)
        grid = distance_grid(centroid, DistributionConfig.step_size,
                             DistributionConfig.distance_threshold)
        curve = image_baseline(targets, spacing, grid)
        seconds = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        del rna, targets
        answers[kind] = (table, centroid, curve)
        measured[kind] = {"seconds": seconds, "peak": peak}
    (table, centroid, curve), (table_2, centroid_2, curve_2) = answers.values()
    same = (table.equals(table_2) and np.array_equal(centroid, centroid_2)
            and np.array_equal(curve, curve_2))
    return {**measured, "identical": same}


def _child(command: list[str], what: str) -> dict:
    """Run `command` (python) from the repository in a fresh process; its last line, JSON."""
    done = subprocess.run([sys.executable, *command], cwd=REPO, capture_output=True, text=True,
                          check=False, env={**os.environ, "PYTHONPATH": str(REPO)})
    if done.returncode != 0:
        msg = f"benchmark {what} failed:\n{done.stderr[-3000:]}"
        raise RuntimeError(msg)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _extract_peak(config: Path, database: str) -> dict:
    # The compiled loops compiled (once per checkout: numba's on-disk cache) beforehand,
    # so that the step is timed as every later run sees it.
    _child(["-c", "from rna_localization.capture import load_compiled; load_compiled(); "
                  "print('{}')"], "compile")
    return _child(["-m", "benchmarks._extract_child", str(config), "--database", database],
                  "extract")


#: One stack segmented in a fresh process with a workflow's defaults on a given number of
#: threads (None: every core): seconds, and the process' peak resident memory (VmHWM) and
#: its resident memory before (the stack read, the modules imported).
_SEGMENT = (
    "import json, sys, time, tifffile\n"
    "from benchmarks._common import own_peak_kb, status_kb\n"
    "from rna_localization.segmentation import segment\n"
    "path, workflow, threads = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])\n"
    "image = tifffile.imread(path)\n"
    "before = status_kb('VmRSS')\n"
    "start = time.perf_counter()\n"
    "segment(image, workflow, spacing=(0.2, 0.065, 0.065), threads=threads)\n"
    "print(json.dumps({'seconds': time.perf_counter() - start, 'peak_rss_kb': own_peak_kb(),\n"
    "                  'rss_before_kb': before}))\n"
)


def _segment_peak(folder: Path, structure: str, threads: int | None) -> dict:
    """:data:`_SEGMENT` on the frame's raw stack of `structure` (its own workflow)."""
    return _child(["-c", _SEGMENT, str(folder / structure / "raw-data" / "frame.tif"), structure,
                   json.dumps(threads)], f"segment ({structure}, threads {threads})")


#: A fresh process writes this many bytes twice, after this many seconds idle: the first
#: write touches its pages first.
_TOUCH_BYTES = 1 << 29
_IDLE_SECONDS = 10.0
_TOUCH = (
    "import time, numpy\n"
    f"a = numpy.empty({_TOUCH_BYTES}, numpy.uint8)\n"
    "t0 = time.perf_counter(); a.fill(1); t1 = time.perf_counter(); a.fill(2)\n"
    "print(t1 - t0, time.perf_counter() - t1)\n"
)


def _table_bytes(config: Path, database: str, table: str) -> int:
    """Bytes on disk of `table` (rows, indexes, TOAST) in `database` of the embedded server."""
    settings = load_config(config)
    settings = dataclasses.replace(
        settings, database=dataclasses.replace(settings.database, name=database))
    with Database.from_config(settings).transaction() as cursor:
        return relation_sizes(cursor, table)[1]


def _first_touch(idle: float = _IDLE_SECONDS) -> tuple[float, float]:
    """Seconds per GiB of a fresh process's first write to its memory, and of its second.

    Started after `idle` seconds: memory freed just before may still be backed.
    """
    time.sleep(idle)
    out = subprocess.run([sys.executable, "-c", _TOUCH], capture_output=True, text=True,
                         check=True).stdout.split()
    return tuple(float(v) * 2**30 / _TOUCH_BYTES for v in out)


def run(workdir: Path, quick: bool = False) -> Section:
    """Storage of both label images, extract's peak memory, and the whole run against its floor."""
    size = QUICK if quick else FULL
    section = Section("One full frame: label storage, extract memory, run / floor")
    folder = workdir / "fullframe"
    start = time.perf_counter()
    config = simulate_frame(folder, **size)
    simulate_seconds = time.perf_counter() - start
    storage = {s: _storage(folder, s) for s in ("rna", "centrosomes")}
    stored = {s: v.pop("stored") for s, v in storage.items()}
    inputs = _distance_inputs(stored["rna"], stored["centrosomes"])
    del stored
    raw_bytes = int(np.prod(size["shape"])) * 2
    # Segmentation of each raw stack (the RNA one on one thread too: the same mask).
    segmented = {(s, t): _segment_peak(folder, s, t)
                 for s, t in (("rna", 1), ("rna", None), ("centrosomes", None))}
    start_server(folder / ".pgdata", keep_running=True)
    try:
        extract = _extract_peak(config, "bench_extract")
        # The floor and the run taking turns (each run on a new database), the fastest of
        # each: both see the same page cache and the same neighbours.
        floors, runs = [], []
        for turn in range(TURNS):
            floors.append(floor_seconds(folder)[0])
            runs.append(timed_run(folder, f"bench_run_{turn}", workers=1))
        floor = min(floors)
        whole = min(runs, key=lambda r: r["seconds"])
        table_bytes = _table_bytes(config, "bench_run_0", "rna")
        first_touch, touched_again = _first_touch()
    finally:
        stop_server(folder / ".pgdata")

    run_seconds = [r["seconds"] for r in runs]
    shape = "x".join(map(str, size["shape"]))
    for structure, s in storage.items():
        section.figures += [
            Figure(f"{structure} ({s['objects']:,} objects): stored bytes, whole-volume zlib / runs",
                   f"{s['dense_bytes'] / s['runs_bytes']:.1f}x"),
            Figure(f"{structure}: encode time, whole-volume zlib / runs",
                   f"{s['dense_seconds'] / s['runs_seconds']:.0f}x"),
            Figure(f"{structure}: read back as an int32 label image, whole-volume zlib / runs",
                   f"{s['read_dense'] / s['read_runs']:.1f}x"),
        ]
    dense, sparse = inputs["label images"], inputs["object voxels"]
    section.figures += [
        Figure("distances step's array work: int32 label images / stored object voxels, time",
               f"{dense['seconds'] / sparse['seconds']:.2f}x"),
        Figure("the same, traced peak memory", f"{dense['peak'] / sparse['peak']:.2f}x"),
    ]
    peak_ratio = extract["peak_bytes"] / raw_bytes
    run_ratio = whole["seconds"] / floor
    section.figures += [
        Figure("extract's peak allocated memory / raw stack", f"{peak_ratio:.2f}",
               f"<= {TARGET_PEAK:g}", peak_ratio <= TARGET_PEAK),
        Figure("extract process' peak resident memory, less its memory before / raw stack",
               f"{(extract['peak_rss_kb'] - extract['rss_before_kb']) * 1024 / raw_bytes:.2f}"),
        Figure("extract (both structures, workers = 1) / floor", f"{extract['seconds'] / floor:.1f}x"),
        Figure("run (workers = 1) / floor, one full frame", f"{run_ratio:.1f}x",
               f"<= {TARGET_RUN:g}x", run_ratio <= TARGET_RUN),
    ]
    def above(r):  # the segmentation's own peak resident memory, in raw stacks
        return (r["peak_rss_kb"] - r["rss_before_kb"]) * 1024 / raw_bytes

    section.figures += [
        Figure("segment (rna workflow): every core / one thread, time",
               f"{segmented['rna', None]['seconds'] / segmented['rna', 1]['seconds']:.2f}"),
        *(Figure(f"segment ({structure} workflow): peak resident memory above the stack read "
                 "/ raw stack", f"{above(segmented[structure, None]):.1f}")
          for structure in ("rna", "centrosomes")),
    ]
    lines = [f"| {s} | {v['objects']:,} | {v['voxels']:,} | {v['dense_bytes']:,} | "
             f"{v['runs_bytes']:,} | {v['dense_seconds']:.2f} | {v['runs_seconds']:.3f} | "
             f"{v['read_dense']:.2f} | {v['read_runs']:.2f} |" for s, v in storage.items()]
    section.notes.append(
        f"A {shape} uint16 frame{' (quick: smaller)' if quick else ''}: {size['n_rna']:,} RNA "
        f"spots (ellipsoids of radii {RNA_RADII} voxels) and {size['n_centrosomes']:,} "
        f"centrosomes ({CENTROSOME_RADII}) stamped at random (touching ones merge) on tiled "
        f"noise, simulated and written in {simulate_seconds:.0f} s.\n\n"
        "| structure | objects | object voxels | whole-volume zlib (bytes) | runs (bytes) | "
        "zlib encode (s) | runs encode (s) | zlib read (s) | runs read (s) |\n"
        "|---|---|---|---|---|---|---|---|---|\n" + "\n".join(lines) + "\n\n"
        "Whole-volume zlib is the first release's storage (the label image in its smallest "
        "dtype, zlib level 1); runs are today's (`db/labels.py`). Encode: best of 3 for runs, "
        "one call for zlib; read: back to the int32 label image `read_label_image` gives.\n\n"
        f"Extract (both structures, workers = 1, a fresh process): {extract['seconds']:.1f} s; "
        f"peak of the memory allocated through Python and numpy (tracemalloc) "
        f"{extract['peak_bytes'] / 2**20:,.0f} MiB against a raw stack of "
        f"{raw_bytes / 2**20:,.0f} MiB; the process' peak resident memory "
        f"{extract['peak_rss_kb'] / 1024:,.0f} MiB, {extract['rss_before_kb'] / 1024:,.0f} MiB "
        "before the step (resident memory counts what tracemalloc does not see: the compiled "
        "loops' own arrays, and the pages of the stacks read from their files: this frame's "
        "TIFFs are uncompressed, so `extract` maps them, `io.read_stack(mapped=True)`, "
        "and allocates nothing for them). The whole run (fresh process, workers = 1, on a new "
        f"database; the fastest of {TURNS}, "
        f"{', '.join(f'{seconds:.1f}' for seconds in run_seconds)} s, "
        f"taking turns with the floor): {whole['seconds']:.1f} s, its process' peak resident "
        f"memory {whole['maxrss_self_mb']:,.0f} MiB, its RNA table (rows and indexes, once "
        f"extracted, measured and normalized) {table_bytes / 2**20:.1f} MiB, "
        f"{table_bytes / 2**20 * 1e6 / storage['rna']['objects']:.0f} MiB per million objects; "
        "the floor (reading "
        f"the four TIFFs and labeling both segmentations with `label_objects`, the fastest of "
        f"{TURNS}: {', '.join(f'{f:.1f}' for f in floors)} s): {floor:.1f} s. Both pay for the memory "
        f"they touch: in a fresh process started after {_IDLE_SECONDS:.0f} s idle, writing "
        f"{_TOUCH_BYTES / 2**30:g} GiB took {first_touch:.2f} s per GiB the first time and "
        f"{touched_again:.2f} s per GiB the second (on a virtual machine whose "
        f"host backs memory when it is first touched, and takes back what a process freed a "
        f"few seconds before, the first write costs the most; the floor's two int32 label "
        f"images are 2 GiB on a full frame).\n\n"
        "The distances step's array work (`nearest_distances`, `point_distances` from a point "
        "in every RNA object, `image_baseline` at the default grid; one call each, under "
        "tracemalloc) on the stored object voxels, as the step passes them: "
        f"{sparse['seconds']:.1f} s, peak {sparse['peak'] / 2**20:,.0f} MiB; on the int32 label "
        f"images the step built from them before (their building included): "
        f"{dense['seconds']:.1f} s, peak {dense['peak'] / 2**20:,.0f} MiB; answers "
        f"{'identical' if inputs['identical'] else 'DIFFERENT'}.\n\n"
        "Segmentation of the frame's raw stacks, each in a fresh process with its "
        "workflow's defaults (`segment(image, workflow)`, the stack read first): rna "
        f"{segmented['rna', None]['seconds']:.1f} s on every core "
        f"({segmented['rna', 1]['seconds']:.1f} s on one thread), centrosomes "
        f"{segmented['centrosomes', None]['seconds']:.1f} s; peak resident memory above the "
        f"stack read {above(segmented['rna', None]) * raw_bytes / 2**30:.1f} GiB (rna) and "
        f"{above(segmented['centrosomes', None]) * raw_bytes / 2**30:.1f} GiB (centrosomes) "
        f"against a raw stack of {raw_bytes / 2**30:.2f} GiB. Its filters' passes (the "
        "Gaussians, the box maxima) are shared among the threads in slabs, so the mask is the "
        "same on any number (tests/test_segmentation.py). The stamped ellipsoids make few "
        "blended or flank spots: on real images the splits cost more.\n\n"
        "Seconds per step of the run: " + ", ".join(
            f"{k} {v:.1f}" for k, v in whole["steps"].items()) + "."
    )
    return section
