"""Batch segmentation of a folder of TIFF stacks, with a quality-control page.

File I/O lives here; the workflows themselves (:mod:`.workflows`) only see arrays.
"""

from __future__ import annotations

import html
import json
import multiprocessing
import os
import sys
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from urllib.parse import quote

import numpy as np
from scipy import ndimage
from tqdm.auto import tqdm

from .._cores import available_memory, usable_cores
from ..calibration import (
    FIX_RAW,
    VoxelSizeWarning,
    find_mismatches,
    format_voxel_size,
    same_voxel_size,
    scale_source,
    warn_mismatches,
)
from ..config import DEFAULT_SPACING, DataConfig
from ..io import read_stack, read_voxel_size, stack_shape, tiff_files, write_stack
from ..objects import label_objects, normalize_spacing
from ..parallel import worker_count
from .params import WORKFLOWS, SegmentationParams, load_params
from .quality import ImplausibleSegmentationWarning, _clipped, check_object_sizes, object_sizes
from .workflows import _run

__all__ = ["SEGMENT_BYTES_PER_VOXEL", "images_at_once", "qc_overlay", "qc_problems",
           "segment_folder", "segment_structure", "workflow_for_structure", "write_qc_page"]

_QC_CACHE = "objects.json"
#: What the workflow removed from each mask as too large, and the single molecules too faint
#: to be found (:func:`_record_unseen`).
_QC_REMOVED = "removed.json"
#: Sub-folder of ``qc/`` holding each overlay at the stack's full resolution (the page links to it).
QC_FULL_DIR = "full"
#: Largest side of a QC overlay, pixels; bigger projections are reduced by block maxima.
QC_MAX_SIDE = 800


#: Memory a process takes to segment a stack, bytes per voxel, the (uint16) stack itself
#: included: its float32 filtered image, noise and score, the spots' model, the objects'
#: int32 labels. Measured above the stack: 18.8 on a 60 x 2048 x 2048 frame of stamped
#: spots with either workflow (``python -m benchmarks --only fullframe``), 23.5 (rna) and
#: 20.2 (centrosomes) on a simulated embryo stack of 30 x 1024 x 1024 (denser spots, and
#: the process' fixed costs weigh more); rounded up.
SEGMENT_BYTES_PER_VOXEL = 26


def images_at_once(workers: int, n_images: int, largest_voxels: int,
                   available_bytes: int) -> tuple[int, str | None]:
    """How many images `segment_folder` segments at a time, and a warning if memory is short.

    ``workers = 0`` (one per core) takes no more images at a time than fit in
    `available_bytes`, each as large as the largest stack
    (:data:`SEGMENT_BYTES_PER_VOXEL`); a number asked for is kept, with a
    warning when that many would not fit. One image that would not fit on
    its own is warned about too.

    Parameters
    ----------
    workers : int
        As asked (0: one per core).
    n_images : int
        Images to segment.
    largest_voxels : int
        Voxels of the largest of them.
    available_bytes : int
        Memory available to start processes in
        (:func:`rna_localization._cores.available_memory`: a batch job's
        share, not the whole node).

    Returns
    -------
    (int, str or None)
        Processes (at least 1), and the warning's text.

    Examples
    --------
    >>> frame = 60 * 2048 * 2048  # a full confocal frame: 6.5 GB to segment
    >>> images_at_once(0, 10, frame, 10 * 2**30)[0]  # 10 GiB free: one frame at a time
    1
    >>> images_at_once(2, 10, frame, 64 * 2**30)
    (2, None)
    """
    n = worker_count(workers, n_images)
    need = largest_voxels * SEGMENT_BYTES_PER_VOXEL
    fit = max(int(available_bytes // max(need, 1)), 1)
    gb = f"{need / 1e9:.1f} GB"
    free = f"{available_bytes / 1e9:.1f} GB"
    if need > available_bytes:
        return (1 if workers == 0 else n), (
            f"segmenting the largest stack ({largest_voxels:,} voxels) takes about {gb} of "
            f"memory, and {free} is available: close other programs, or segment on a machine "
            "with more memory (the operating system may stop the process).")
    if workers == 0:
        return min(n, fit), None
    if n > fit:
        return n, (f"segmenting {n} images at a time takes about {gb} each ({largest_voxels:,} "
                   f"voxels in the largest stack), and {free} is available: use --workers {fit} "
                   f"(distances.workers = {fit}, or workers = 0 to choose by memory).")
    return n, None


def _resolve_params(workflow: str, params):
    if workflow not in WORKFLOWS:
        msg = f"workflow must be one of {list(WORKFLOWS)}; got {workflow!r}."
        raise ValueError(msg)
    if params is None:
        return SegmentationParams(workflow)
    if isinstance(params, str | os.PathLike):
        params = load_params(params)
    if getattr(params, "workflow", None) != workflow:
        msg = (
            f"the {workflow!r} workflow needs its own parameters; got parameters for "
            f"workflow {getattr(params, 'workflow', type(params).__name__)!r}."
        )
        raise ValueError(msg)
    return params


def _inputs(input_dir: Path) -> list[Path]:
    if not input_dir.is_dir():
        msg = f"input folder {input_dir} does not exist or is not a folder."
        raise FileNotFoundError(msg)
    return list(tiff_files(input_dir).values())


def _assess(segmentation: np.ndarray, spacing, name: str,
            image: np.ndarray) -> tuple[int, list[str]]:
    """(objects, problems) of a segmentation and its raw stack: one labelling for all."""
    labels = label_objects(segmentation)
    sizes = object_sizes(labels)
    return int(sizes.size), (check_object_sizes(sizes, segmentation.shape, spacing=spacing, name=name)
                             + _clipped(labels, image, name))


def _segment_one(raw_path: Path, out_path: Path, qc_path: Path | None, workflow: str, params,
                 spacing, threads: int | None = None) -> tuple[Path, int, list[str], list[str]]:
    """Worker: read, segment (the filters on `threads` threads), write the mask (and the QC
    overlay).

    Returns (path, objects, problems, unseen): the problems of
    :func:`.quality.check_segmentation`, and what the mask cannot show (sentences
    naming the image, or none): what the workflow removed as larger than its
    ``max_volume_um3``, and the single molecules too faint to be found
    (:meth:`.workflows.Intermediates.faint_text`), for the main process to warn about.
    """
    image = read_stack(raw_path)
    run = _run(image, params, spacing, keep=False, threads=threads)
    write_stack(out_path, run.result, spacing=spacing)
    count, problems = _assess(run.result, spacing, raw_path.stem, image)
    unseen = ([f"The segmentation of {raw_path.stem}: {run.removed_text(params)}"]
              if run.removed else [])
    faint = run.faint_text(raw_path.stem)
    unseen += [faint] if faint else []
    if qc_path is not None:
        _write_overlays(qc_path, image, run.result)
    return out_path, count, problems, unseen


def _record_unseen(qc_dir: Path, name: str, out_path: Path, unseen: list[str]) -> None:
    """Keep what the workflow removed from an image, and the single molecules too faint to
    be found (``qc/removed.json``), as it is written.

    The mask cannot show them, so they are kept with the mask's modification time
    for :func:`_finish_qc` (also after an interrupted run or one without QC);
    an image segmented again with neither loses its record.
    """
    path = qc_dir / _QC_REMOVED
    records = _read_json(path)
    if unseen:  # kept under the key "removed" that files written before the faint share use
        records[name] = {"mtime_ns": out_path.stat().st_mtime_ns, "removed": unseen}
    elif records.pop(name, None) is None:
        return
    _write_json(path, records)


def _strings(value) -> list[str]:
    """The strings of a list read from a JSON cache (anything else: none)."""
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _warn(problems: list[str]) -> None:
    """One ImplausibleSegmentationWarning per problem, around any progress bar.

    Shown every time (not once per message, Python's default), so a notebook
    that segments the same image again hears about it again; a filter the
    user set (e.g. "ignore") still wins.
    """
    if not problems:
        return
    with tqdm.external_write_mode(file=sys.stderr), warnings.catch_warnings():
        warnings.filterwarnings("always", category=ImplausibleSegmentationWarning, append=True)
        for problem in problems:
            warnings.warn(ImplausibleSegmentationWarning(problem), stacklevel=3)


def qc_overlay(image: np.ndarray, mask: np.ndarray, *, max_side: int = QC_MAX_SIDE) -> np.ndarray:
    """Maximum projection of a stack with the segmentation's outlines drawn on it.

    Parameters
    ----------
    image : (Z, Y, X) ndarray
        Raw stack.
    mask : (Z, Y, X) ndarray
        Its segmentation (non-zero = object).
    max_side : int
        Projections larger than this are reduced by integer block maxima.

    Returns
    -------
    (Y', X', 3) ndarray of uint8
        RGB: the raw projection in grey (contrast 0.5–99.9 percentiles),
        outlines of the projected mask in magenta.
    """
    from skimage.segmentation import find_boundaries

    raw = np.asarray(image).max(axis=0).astype(np.float32)
    seg = np.asarray(mask).max(axis=0) > 0
    factor = max(1, int(np.ceil(max(raw.shape) / max_side)))
    if factor > 1:
        raw, seg = _block_max(raw, factor), _block_max(seg, factor)
    low, high = np.percentile(raw, [0.5, 99.9])
    grey = np.clip((raw - low) / max(high - low, 1e-12), 0, 1)
    rgb = np.repeat((grey * 255).astype(np.uint8)[..., None], 3, axis=2)
    edges = find_boundaries(ndimage.label(seg)[0], mode="inner")
    rgb[edges] = (255, 0, 255)
    return rgb


def _block_max(array: np.ndarray, factor: int) -> np.ndarray:
    ny, nx = (-(-n // factor) * factor for n in array.shape)
    fill = array.min() if array.dtype != bool else False
    padded = np.full((ny, nx), fill, dtype=array.dtype)
    padded[: array.shape[0], : array.shape[1]] = array
    return padded.reshape(ny // factor, factor, nx // factor, factor).max(axis=(1, 3))


def _full_png(png: Path) -> Path:
    """Where the full-resolution overlay of the thumbnail ``qc/<name>.png`` goes."""
    return png.parent / QC_FULL_DIR / png.name


def _write_overlays(png: Path, image: np.ndarray, mask: np.ndarray) -> None:
    """The page's thumbnail (at most QC_MAX_SIDE pixels) and the full-resolution overlay."""
    full = qc_overlay(image, mask, max_side=max(np.shape(image)[1:]))
    _write_png(_full_png(png), full)
    _write_png(png, full if max(full.shape[:2]) <= QC_MAX_SIDE else qc_overlay(image, mask))


def _write_png(path: Path, rgb: np.ndarray) -> None:
    import matplotlib.image

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part.png")
    matplotlib.image.imsave(tmp, rgb)
    os.replace(tmp, path)


def write_qc_page(qc_dir: str | os.PathLike, entries, *, title: str = "Segmentation QC") -> Path:
    """Write ``index.html`` showing QC overlays with their names.

    Each image links to its full-resolution overlay, ``qc_dir/full/<png>``,
    where that file exists (to the PNG itself otherwise).

    Parameters
    ----------
    qc_dir : path-like
        Folder holding the PNG files; the page is written there.
    entries : list of (name, png file name, object count or None[, problems])
        One per image, in display order. ``problems``, optional, is a list of
        sentences (:func:`.quality.check_segmentation`): each is shown in red
        under the image, and the page says at the top how many images look
        wrong, with links to them.
    title : str
        Page title.

    Returns
    -------
    Path
        The page.
    """
    qc_dir = Path(qc_dir)
    qc_dir.mkdir(parents=True, exist_ok=True)
    cards, flagged = [], []
    for entry in entries:
        name, png, count, *rest = entry
        problems = list(rest[0]) if rest and rest[0] else []
        caption = html.escape(name) + (f" &middot; {count} objects" if count is not None else "")
        src = quote(png)
        href = quote(f"{QC_FULL_DIR}/{png}") if (qc_dir / QC_FULL_DIR / png).is_file() else src
        anchor = html.escape(quote(name, safe=""))
        if problems:
            flagged.append(f'<a href="#{anchor}">{html.escape(name)}</a>')
        notes = "".join(f'<p class="problem">{html.escape(problem)}</p>' for problem in problems)
        flag = ' class="flagged"' if problems else ""
        cards.append(
            f'<figure id="{anchor}"{flag}>'
            f'<a href="{href}"><img src="{src}" alt="{html.escape(name)}" loading="lazy"></a>'
            f"<figcaption>{caption}{notes}</figcaption></figure>"
        )
    summary = (f'<p class="problem">{len(flagged)} of {len(entries)} images look wrong (in red '
               f"below): {', '.join(flagged)}.</p>" if flagged else
               "<p>No image looks implausible (no objects, far too many, one huge object, "
               "objects removed as larger than the workflow's max_volume_um3, or many single "
               "molecules too faint to be found).</p>")
    page = (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{html.escape(title)}</title><style>"
        "body{font-family:sans-serif;margin:1em;background:#111;color:#eee}"
        "main{display:grid;grid-template-columns:repeat(auto-fill,minmax(320px,1fr));gap:12px}"
        "figure{margin:0}img{width:100%;image-rendering:pixelated;border:1px solid #444}"
        "figure.flagged img{border:2px solid #f33}.problem{color:#f55;margin:2px 0;word-break:normal}"
        "a{color:inherit}"
        "figcaption{font-size:0.9em;padding:2px 0;word-break:break-all}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><p>{len(entries)} images: maximum projection of the raw "
        "stack, segmentation outlines in magenta. Click an image to open it at full resolution."
        "</p>"
        f"{summary}<main>\n"
        + "\n".join(cards)
        + "\n</main></body></html>\n"
    )
    path = qc_dir / "index.html"
    path.write_text(page, encoding="utf-8")
    return path


def _spacing_from_files(inputs: list[Path], input_dir: Path) -> tuple[float, float, float]:
    """The voxel size most stacks of a folder state (warning about the others), else the default.

    One voxel size serves the whole folder: stacks that state another are
    named in a warning, stacks that state none are segmented with it.
    """
    stated = {}
    for path in inputs:
        try:
            voxel_size = read_voxel_size(path)
        except ValueError:  # named by the step that reads the pixels
            continue
        if voxel_size is not None:
            stated[path] = voxel_size
    if not stated:
        with warnings.catch_warnings():
            warnings.filterwarnings("always", category=VoxelSizeWarning, append=True)
            warnings.warn(VoxelSizeWarning(
                f"no voxel size was given and no stack in {input_dir} states one; the default "
                f"{format_voxel_size(DEFAULT_SPACING)} is used: give the right one (--xy-scale and "
                f"--z-scale, --config FILE, or [scale] in pipeline.toml) if it is not that."
            ), stacklevel=3)
        return tuple(float(s) for s in DEFAULT_SPACING)
    votes: dict[tuple[float, ...], int] = {}
    for voxel_size in stated.values():
        key = next((k for k in votes if same_voxel_size(voxel_size, k)), tuple(voxel_size))
        votes[key] = votes.get(key, 0) + 1
    spacing = max(votes, key=votes.get)
    others = [path for path, voxel_size in stated.items() if not same_voxel_size(voxel_size, spacing)]
    warn_mismatches(find_mismatches(others, spacing), spacing,
                    used=f"most stacks in {input_dir}", stacklevel=3,
                    fix="so give the voxel size (--xy-scale and --z-scale, or --config FILE) or "
                        "segment those stacks separately")
    return tuple(float(s) for s in spacing)


def segment_folder(input_dir: str | os.PathLike, output_dir: str | os.PathLike, *,
                   workflow: str, params=None, spacing=None,
                   suffix: str = DataConfig.segmentation_file_suffix,
                   overwrite: bool = False, workers: int = 1, qc: bool = True,
                   spacing_source: str = "the given spacing") -> list[Path]:
    """Segment every TIFF stack of a folder.

    Each ``input_dir/<name>.tif`` (or ``.tiff``) becomes
    ``output_dir/<name><suffix>.tif``: a uint8 0/255 mask of the input's shape.
    Existing outputs are skipped unless `overwrite`, so an interrupted run
    resumes where it stopped (outputs are written atomically). With `qc`, a
    PNG overlay per image (``qc/<name>.png``, at most ``QC_MAX_SIDE`` pixels a
    side, and ``qc/full/<name>.png`` at full resolution) and
    ``output_dir/qc/index.html`` showing all of them are written too.

    Each segmentation written is checked (:func:`.quality.check_segmentation`:
    no objects, implausibly many, one huge object; objects the
    workflow's ``max_volume_um3`` removed, :class:`.quality.LargeObjectsRemovedWarning`;
    many single molecules too faint to be found, :class:`.quality.FaintSpotsWarning`):
    every problem is an :class:`.quality.ImplausibleSegmentationWarning` naming
    the image, and the QC page flags those images, skipped ones included
    (:func:`qc_problems` reads the flags back).

    Parameters
    ----------
    input_dir, output_dir : path-like
        Raw stacks in, segmentations out (created if missing).
    workflow : {"rna", "centrosomes"}
    params : SegmentationParams, path-like or None
        Parameters, or a TOML file saved from a playground; None: defaults.
    spacing : sequence of 3 floats, optional
        Microns per voxel (z, y, x). A stack whose own voxel size
        (:func:`..io.read_voxel_size`) differs by more than 1% is a
        :class:`.calibration.VoxelSizeWarning`; `spacing` is used all the
        same. None: the voxel size the stacks state (the most common one, the
        others named in a warning), or ``DEFAULT_SPACING`` with a warning when
        none states one.
    suffix : str
        Appended to the image name for the output file.
    overwrite : bool
        Segment again images whose output exists.
    workers : int
        Processes; 1: in this process; 0: one per core, as many as fit in
        the memory available (:func:`images_at_once`). Each image's filters
        share the cores left to it (one image: all of them); the masks are
        the same on any number.
    qc : bool
        Write the quality-control overlays and page.
    spacing_source : str
        Where `spacing` comes from, as the warnings name it (e.g.
        ``"[scale] in pipeline.toml"``).

    Returns
    -------
    list of Path
        The segmentations written by this call, in input order (skipped ones
        are not listed).

    Raises
    ------
    ValueError
        Naming the file, for an input that is not a readable 3D TIFF stack;
        all inputs to do are checked before any work starts.
    """
    input_dir, output_dir = Path(input_dir), Path(output_dir)
    params = _resolve_params(workflow, params)
    if spacing is not None:
        spacing = tuple(float(s) for s in normalize_spacing(spacing))
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 0:
        msg = f"workers must be a whole number >= 0 (0: one per core); got {workers!r}."
        raise ValueError(msg)
    inputs = _inputs(input_dir)
    outputs = [output_dir / f"{p.stem}{suffix}.tif" for p in inputs]
    qc_dir = output_dir / "qc"
    todo = [i for i, out in enumerate(outputs) if overwrite or not out.exists()]
    # Fail early, naming the file; the largest stack sets the memory an image takes.
    largest = max((int(np.prod(stack_shape(inputs[i]))) for i in todo), default=0)
    if spacing is None:
        spacing = _spacing_from_files(inputs, input_dir)
    else:
        warn_mismatches(find_mismatches([inputs[i] for i in todo], spacing), spacing,
                        used=spacing_source, fix=FIX_RAW if "[scale]" in spacing_source else "",
                        stacklevel=2)
    output_dir.mkdir(parents=True, exist_ok=True)
    results: dict[int, tuple[int, list[str], list[str]]] = {}  # index: (objects, problems, unseen)
    n_workers, short = images_at_once(workers, len(todo), largest, available_memory())
    if todo and short:
        warnings.warn(short, UserWarning, stacklevel=2)
    # The images at a time share the cores for their filters (one image: all of them).
    threads = max(usable_cores() // n_workers, 1)
    jobs = [(inputs[i], outputs[i], qc_dir / f"{inputs[i].stem}.png" if qc else None, workflow,
             params, spacing, threads) for i in todo]
    bar = tqdm(total=len(jobs), desc=f"segment {workflow}", unit="image", disable=not jobs)
    try:
        if n_workers <= 1:
            for i, job in zip(todo, jobs, strict=True):
                results[i] = _segment_one(*job)[1:]
                _record_unseen(qc_dir, inputs[i].stem, outputs[i], results[i][2])
                _warn(results[i][1] + results[i][2])
                bar.update()
        else:
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=n_workers, mp_context=context) as pool:
                futures = {pool.submit(_segment_one, *job): i for i, job in zip(todo, jobs, strict=True)}
                for future in as_completed(futures):
                    i = futures[future]
                    results[i] = future.result()[1:]
                    _record_unseen(qc_dir, inputs[i].stem, outputs[i], results[i][2])
                    _warn(results[i][1] + results[i][2])
                    bar.update()
    finally:
        bar.close()
    if qc:
        _finish_qc(inputs, outputs, qc_dir, results, workflow, spacing)
    return [outputs[i] for i in todo]


def _finish_qc(inputs, outputs, qc_dir: Path,
               results: dict[int, tuple[int, list[str], list[str]]],
               workflow: str, spacing: tuple[float, ...]) -> None:
    """Make the overlays missing or stale for skipped images, then the page for all.

    Object counts and problems are cached in ``qc/objects.json`` with each
    mask's modification time (and the spacing the problems were judged
    with), so a re-run over a large data set does not read every mask again;
    a mask changed since (e.g. edited by hand) gets a new overlay. The
    objects the workflow removed as too large are not in the mask: their
    sentences come from ``qc/removed.json`` (:func:`_record_unseen`) and
    stay with the image for as long as its mask is the one segmented.
    """
    cache_path = qc_dir / _QC_CACHE
    cache = _read_json(cache_path)
    records = _read_json(qc_dir / _QC_REMOVED)
    entries, fresh = [], {}
    for i, (raw, out) in enumerate(zip(inputs, outputs, strict=True)):
        if not out.exists():
            continue
        png = qc_dir / f"{raw.stem}.png"
        stamp = out.stat().st_mtime_ns
        cached = cache.get(raw.stem)
        cached = cached if isinstance(cached, dict) else {}
        record = records.get(raw.stem)
        unseen = (_strings(record.get("removed"))
                  if isinstance(record, dict) and record.get("mtime_ns") == stamp else [])
        current = png.exists() and _full_png(png).exists() and cached.get("mtime_ns") == stamp
        if i in results:
            count, problems = results[i][0], results[i][1] + unseen
        elif (current and cached.get("spacing") == list(spacing)
              and isinstance(cached.get("problems"), list)):
            # Written for this very mask, what it cannot show (recorded with it) included.
            count, problems = cached.get("objects"), _strings(cached["problems"])
        else:
            mask, image = read_stack(out), read_stack(raw)
            try:
                count, problems = _assess(mask, spacing, raw.stem, image)
            except (TypeError, ValueError) as error:  # e.g. a float mask saved by hand
                count, problems = None, [f"{out.name} cannot be read as objects: {error}"]
            problems += unseen
            if not current:
                _write_overlays(png, image, mask)
        fresh[raw.stem] = {"objects": count, "problems": problems, "spacing": list(spacing),
                           "mtime_ns": stamp}
        entries.append((raw.stem, png.name, count, problems))
    _write_json(cache_path, fresh)
    write_qc_page(qc_dir, entries, title=f"Segmentation QC: {workflow}, {qc_dir.parent}")


def _write_json(path: Path, data: dict) -> None:
    """Write a cache file whole or not at all (a ``.part`` file renamed over it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(json.dumps(data, indent=1, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, path)


def _read_json(path: Path) -> dict:
    """A JSON object from a cache file; {} when it is missing or not one."""
    try:
        cache = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return cache if isinstance(cache, dict) else {}


def qc_problems(output_dir: str | os.PathLike) -> dict[str, list[str]]:
    """The problems the last QC page of a segmentation folder shows, per image.

    Parameters
    ----------
    output_dir : path-like
        A folder :func:`segment_folder` wrote to with ``qc=True``.

    Returns
    -------
    dict
        Image name → its problems (sentences; empty when it looks plausible),
        for every image on ``output_dir/qc/index.html``; empty when there is
        no QC page.

    Examples
    --------
    >>> wrong = {n: p for n, p in qc_problems("rna/segmentations").items() if p}  # doctest: +SKIP
    """
    return {name: list(entry.get("problems", []))
            for name, entry in _read_json(Path(output_dir) / "qc" / _QC_CACHE).items()
            if isinstance(entry, dict)}


def _qc_summary(output_dir: str | os.PathLike) -> str:
    """"2 of 20 images look wrong: see …/qc/index.html" (the end of a segment command's output)."""
    problems = qc_problems(output_dir)
    page = Path(output_dir) / "qc" / "index.html"
    wrong = sum(bool(p) for p in problems.values())
    if wrong:
        return f"{wrong} of {len(problems)} images look wrong: see {page}"
    return f"none of the {len(problems)} images looks wrong; review {page}"


def _segment_summary(written, n_images: int, output_dir: str | os.PathLike) -> str:
    """What a segment command did, in one line (after the structure or folder's name).

    "2 segmentation(s) written, 1 skipped (it exists; --overwrite rewrites it); none of the 3
    images looks wrong; review …/qc/index.html"
    """
    skipped = n_images - len(written)
    if skipped:
        it = "it exists; --overwrite rewrites it" if skipped == 1 else \
            "they exist; --overwrite rewrites them"
        skipped_text = f"{skipped} skipped ({it})"
    else:
        skipped_text = "none skipped"
    return f"{len(written)} segmentation(s) written, {skipped_text}; {_qc_summary(output_dir)}"


def _count_images(input_dir: str | os.PathLike) -> int:
    """The number of raw stacks (``.tif``/``.tiff``) :func:`segment_folder` reads in a folder."""
    return len(_inputs(Path(input_dir)))


def _default_workflow(structure: str) -> str | None:
    if structure == "rna":
        return "rna"
    if "centrosome" in structure.lower():
        return "centrosomes"
    return None


def workflow_for_structure(structure: str) -> str:
    """The default workflow of a structure folder name.

    ``"rna"`` → ``"rna"``; any name containing ``"centrosome"`` →
    ``"centrosomes"``. Other structures need a parameter file that names its
    workflow.

    Raises
    ------
    ValueError
        For any other name.
    """
    workflow = _default_workflow(structure)
    if workflow is not None:
        return workflow
    msg = (
        f"no default segmentation workflow for structure {structure!r}: pass a parameter "
        f"file (--workflow FILE) whose TOML names its workflow, e.g. workflow = \"rna\"."
    )
    raise ValueError(msg)


def segment_structure(config, structure: str, *, workflow_file=None, overwrite: bool = False,
                      workers: int | None = None, qc: bool = True) -> list[Path]:
    """Segment ``<data_dir>/<structure>/raw-data`` into its ``segmentations`` folder.

    Parameters
    ----------
    config : rna_localization.config.Config
        Supplies the folders, ``data.segmentation_file_suffix`` and the spacing
        (``[scale]``; raw stacks stating another voxel size are named in a
        :class:`.calibration.VoxelSizeWarning`).
    structure : str
        Structure folder name, e.g. ``"rna"`` or ``"centrosomes"``.
    workflow_file : path-like, optional
        Parameter file saved from a playground; its ``workflow`` key picks the
        workflow. Without it the workflow follows the structure's name
        (:func:`workflow_for_structure`) with default parameters.
    overwrite : bool
        Segment again images whose segmentation exists.
    workers : int, optional
        Processes (0: one per core); None: ``config.distances.workers``.
    qc : bool
        Write ``segmentations/qc/`` overlays and ``index.html``.

    Returns
    -------
    list of Path
        Segmentations written by this call.
    """
    raw_dir, seg_dir = config.structure_dirs(structure)
    if workflow_file is not None:
        params = load_params(workflow_file)
        workflow = params.workflow
        expected = _default_workflow(structure)
        if expected is not None and expected != workflow:
            msg = (
                f"parameter file {workflow_file} is for the {workflow!r} workflow but structure "
                f"{structure!r} is segmented with {expected!r}; name the structure it is for "
                f"(--structure) or save parameters of the {expected!r} workflow."
            )
            raise ValueError(msg)
    else:
        workflow = workflow_for_structure(structure)
        params = None
    if not raw_dir.is_dir():
        msg = (
            f"structure {structure!r} has no raw-data folder {raw_dir}; expected "
            f"<data_dir>/{structure}/{config.data.raw_data_dir}/<name>.tif."
        )
        raise FileNotFoundError(msg)
    return segment_folder(
        raw_dir, seg_dir, workflow=workflow, params=params, spacing=config.spacing,
        suffix=config.data.segmentation_file_suffix, overwrite=overwrite,
        workers=config.distances.workers if workers is None else workers, qc=qc,
        spacing_source=scale_source(config),
    )


def script_main(workflow: str, argv=None, *, description: str = "") -> int:
    """Command line of ``batch-processing-scripts/seg_rna.py`` and ``seg_cent.py``.

    ``--input DIR --output DIR [--params FILE] [--xy-scale XY --z-scale Z | --config FILE]
    [--suffix SUFFIX] [--overwrite] [--workers N]``; returns the exit status.

    The voxel size is, in order: ``--xy-scale`` and ``--z-scale``; the
    ``[scale]`` of ``--config``; the one the stacks state; the default, with a
    warning. Stacks stating another than the one used are named in a warning.
    """
    import argparse

    from ..config import load_config

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--input", required=True, help="folder of raw .tif stacks")
    parser.add_argument("--output", required=True, help="folder for <name><suffix>.tif masks")
    parser.add_argument("--params", help="parameter file saved by the playground (TOML)")
    parser.add_argument("--xy-scale", type=float, help="microns per pixel in x, y "
                        "(default: [scale] of --config, else the voxel size the stacks state)")
    parser.add_argument("--z-scale", type=float, help="microns per z-step (as --xy-scale)")
    parser.add_argument("--config", help="pipeline.toml whose [scale] gives the voxel size")
    parser.add_argument("--suffix", default=DataConfig.segmentation_file_suffix,
                        help="appended to each image name (default: %(default)s)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing masks")
    parser.add_argument("--workers", type=int, default=1, help="processes (0: one per core)")
    args = parser.parse_args(argv)
    formatter = warnings.formatwarning
    warnings.formatwarning = lambda message, *_, **__: f"warning: {message}\n"
    try:
        if (args.xy_scale is None) != (args.z_scale is None):
            msg = "give both --xy-scale and --z-scale (microns per voxel), or neither."
            raise ValueError(msg)
        if args.xy_scale is not None:
            spacing, source = (args.z_scale, args.xy_scale, args.xy_scale), "--xy-scale/--z-scale"
        elif args.config:
            config = load_config(args.config)
            spacing, source = config.spacing, scale_source(config)
        else:
            spacing, source = None, ""
        written = segment_folder(args.input, args.output, workflow=workflow, params=args.params,
                                 spacing=spacing, spacing_source=source, suffix=args.suffix,
                                 overwrite=args.overwrite, workers=args.workers)
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    finally:
        warnings.formatwarning = formatter
    print(f"{args.output}: {_segment_summary(written, _count_images(args.input), args.output)}")
    return 0
