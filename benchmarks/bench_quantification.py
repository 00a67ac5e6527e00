"""Molecules per object against Big-FISH's dense-region decomposition, on simulated images.

    python -m benchmarks.bench_quantification [--quick]

For each microscope preset ("widefield", "confocal") and each median molecule
SNR, the same simulated images (``cen`` RNA at nc13 and nc14, enriched around
centrosomes with granules of 4-15 molecules, and dispersed ``gapdh`` RNA at
nc14) are counted two ways:

* **ours**: ``segment(image, "rna")``, ``label_objects``, then
  ``corrected_apertures`` (background-subtracted matched apertures, bright
  objects' aperture corrections applied, as extraction stores them) divided
  by one single-molecule reference per RNA type and cell
  (``aperture_references``: the mean over the isolated objects of the area
  window within a factor 1.6 of their median):
  the default ``normalize`` of the package, run in memory;
* **Big-FISH**: ``detect_spots`` (automatic threshold, ``spot_radius`` the PSF
  sigma or twice it, the better of the two per cell), ``decompose_dense``
  (each dense region's light over a reference spot's, its default
  parameters but ``alpha`` 0.7 as in its tutorial) and ``detect_clusters``
  (350 nm, at least 4 spots): a granule's molecules are the spots of its
  cluster.

Scored against the simulator's molecules: the molecules counted in all
objects against the simulated ones, and each granule of 4 or more molecules
against the object (ours) or cluster (Big-FISH) holding most of its molecules
(``rna_localization.demo.granule_errors``, as the demo does).

The same two ways then count images rendered by sim-fish, the Big-FISH
authors' simulator (``benchmarks/simfish_images.py``: its own spot rendering
and noise, molecules through the whole stack, its faces included), if it is
installed (``make bench`` installs it): an SNR sweep on the widefield grid, then
one change at a time at SNR 8 (``simfish_images.VARIANTS``: the confocal grid,
a coarse grid, 0.4 µm steps, an uneven background, four times the molecules, granules spread
wider, an objective's diffraction PSF ideal, with 0.2, 0.35 and 0.5 waves of spherical
aberration and with aberration growing from 0.1 to 0.4 waves through the stack, hot pixels,
a 12-bit camera whose ceiling clips the granules, molecules spread in brightness as on real
images; and, last, the real images' background, a mildly aberrated objective, hot pixels and
that spread at once). Last, sim-fish images written as a user's data folder go through the
command line (``init``, ``segment``, ``run`` on the embedded PostgreSQL), and
the molecules per image it writes are scored.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ._common import Figure, Section, section_markdown, standalone

TITLE = "Quantification against Big-FISH"
PRESET_NAMES = ("widefield", "confocal")
SNRS = (3, 5, 8, 12, 20)
QUICK_SNRS = (5, 12)
#: (rna_type, cycle, seed) of the images of each cell: the same at every SNR and preset.
IMAGES = (("cen", "nc13", 11), ("cen", "nc14", 12), ("gapdh", "nc14", 13))
SHAPE = (30, 256, 256)
QUICK_SHAPE = (20, 128, 128)
#: Figures are held to the targets from this SNR up.
TARGET_SNR = 5
#: The issue's targets: molecules summed within 5%, molecules per granule |bias| <= 10%
#: and mean absolute error <= 15%.
TOTAL_PCT, GRANULE_BIAS_PCT, GRANULE_MAE_PCT = 5.0, 10.0, 15.0
GRANULE_THRESHOLD = 4
#: A simulated molecule belongs to the Big-FISH spot nearest to it within this distance (µm).
SPOT_CAPTURE_UM = 0.35
#: Big-FISH ``detect_clusters``: radius (nm) and fewest spots of a cluster.
CLUSTER_RADIUS_NM, CLUSTER_MIN_SPOTS = 350, 4
OURS = "ours"
INSTALL_HINT = "pip install -e .[bench]"


@dataclass
class Cell:
    """One method's counts on the images of one (preset, SNR) cell."""

    estimated: float = 0.0
    simulated: int = 0
    granules: list = field(default_factory=list)
    seconds: float = 0.0
    singles: list = field(default_factory=list)
    #: Molecules centred on the stack's first or last plane: all, and those held by an object.
    face_total: int = 0
    face_found: int = 0
    #: Images counted, and those whose single molecules' PSF changes with depth
    #: (``corrected_apertures``' ``attrs["psf_depth"]``, the check ``extract`` names them by).
    images: int = 0
    depth_named: int = 0

    @property
    def total_pct(self) -> float:
        return 100 * (self.estimated / self.simulated - 1) if self.simulated else np.nan

    def granule_stat(self, column: str) -> float:
        frames = [g for g in self.granules if len(g)]
        if not frames:
            return np.nan
        return 100 * float(pd.concat(frames)[column].astype(np.float64).mean())

    @property
    def n_granules(self) -> int:
        return int(sum(len(g) for g in self.granules))


def _ours(sims: list) -> Cell:
    """Segment, label, aperture photometry (without hot pixels, as extract) and one reference
    per RNA type, in memory."""
    from rna_localization.apertures import spot_centroids
    from rna_localization.capture import corrected_apertures
    from rna_localization.demo import _image_truth, granule_errors
    from rna_localization.distributions import isolated_spots, object_references
    from rna_localization.hot_pixels import without_hot_pixels
    from rna_localization.objects import label_objects
    from rna_localization.segmentation import segment
    from rna_localization.synthetic import unresolvable

    cell, tables, found = Cell(), [], []
    for sim in sims:
        start = time.perf_counter()
        labels = label_objects(segment(sim.rna, "rna", spacing=sim.spacing))
        raw = without_hot_pixels(sim.rna, spacing=sim.spacing)
        table = corrected_apertures(labels, raw, spacing=sim.spacing)
        # Where extract puts each object: its background-subtracted intensity centroid.
        where = spot_centroids(labels, raw, table.set_index("object_id")["background"])
        points = (where.set_index("object_id").loc[table["object_id"]].to_numpy(np.float64)
                  * np.asarray(sim.spacing))
        table["isolated"] = isolated_spots(points, np.zeros(len(table)))
        table["depth_um"] = points[:, 0]
        # A PSF that changes with depth: counted against the single molecules at each depth.
        table["by_depth"] = bool((table.attrs["psf_depth"] or {}).get("changes"))
        cell.seconds += time.perf_counter() - start
        cell.images += 1
        cell.depth_named += bool(table["by_depth"].any())
        table["area"] = np.bincount(labels.ravel())[table["object_id"]]
        tables.append(table.assign(name=sim.name, rna_type=sim.name.split("_")[0]))
        molecules = sim.molecules.assign(name=sim.name, label=_image_truth(sim.molecules, labels))
        molecules["isolated"] = ~unresolvable(sim.molecules, spacing=sim.spacing)
        plane = np.rint(molecules["z"].to_numpy(np.float64))
        face = (plane <= 0) | (plane >= labels.shape[0] - 1)
        cell.face_total += int(face.sum())
        cell.face_found += int((face & (molecules["label"].to_numpy() > 0)).sum())
        found.append(molecules)
    objects = pd.concat(tables, ignore_index=True)
    _, reference = object_references(objects["spot_intensity"], objects["area"],
                                     objects["rna_type"], isolated=objects["isolated"],
                                     depth_um=objects["depth_um"], by_depth=objects["by_depth"])
    objects["normalized_intensity"] = objects["spot_intensity"] / reference
    estimates = objects.rename(columns={"object_id": "label"})[
        ["name", "label", "normalized_intensity"]]
    for molecules in found:
        molecules = molecules.merge(estimates, on=["name", "label"], how="left")
        held = molecules[molecules["label"] > 0].groupby("label").size()
        lone = molecules[molecules["isolated"] & molecules["label"].map(held).eq(1)]
        cell.singles.extend(lone["normalized_intensity"].dropna())
        cell.granules.append(granule_errors(molecules, threshold=GRANULE_THRESHOLD))
        cell.simulated += len(molecules)
    cell.estimated = float(objects["normalized_intensity"].sum())
    return cell


def _bigfish(sims: list, psf_sigma_um, radius_factor: float) -> Cell:
    """detect_spots, decompose_dense and detect_clusters; a granule is its cluster's spots."""
    import bigfish.detection
    from scipy.spatial import cKDTree

    from rna_localization.demo import granule_errors

    cell = Cell()
    for sim in sims:
        voxel_size = tuple(float(1000 * s) for s in sim.spacing)
        radius = tuple(float(1000 * radius_factor * s) for s in psf_sigma_um)
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            spots = bigfish.detection.detect_spots(images=sim.rna, threshold=None,
                                                   voxel_size=voxel_size, spot_radius=radius)
            try:
                spots, _, _ = bigfish.detection.decompose_dense(
                    image=sim.rna, spots=spots, voxel_size=voxel_size, spot_radius=radius,
                    alpha=0.7, beta=1, gamma=5)
            except (ValueError, RuntimeError, IndexError):
                pass  # too few spots for a reference spot: the detected spots stand
            clustered, _ = bigfish.detection.detect_clusters(
                spots=np.asarray(spots, dtype=np.float64), voxel_size=voxel_size,
                radius=CLUSTER_RADIUS_NM,
                nb_min_spots=CLUSTER_MIN_SPOTS)
        cell.seconds += time.perf_counter() - start
        clustered = np.asarray(clustered, dtype=np.float64).reshape(-1, 4)
        # Each spot is an object: a clustered one stands for its cluster (all its spots).
        cluster = clustered[:, 3].astype(np.int64)
        size = np.ones(len(clustered))
        if (cluster >= 0).any():
            counts = np.bincount(cluster[cluster >= 0])
            size[cluster >= 0] = counts[cluster[cluster >= 0]]
        label = np.where(cluster >= 0, cluster + 1, cluster.max(initial=-1) + 2 + np.arange(len(cluster)))
        molecules = sim.molecules.assign(name=sim.name, label=0, normalized_intensity=np.nan)
        if len(clustered):
            scale = np.asarray(sim.spacing)
            distance, nearest = cKDTree(clustered[:, :3] * scale).query(
                molecules[["z", "y", "x"]].to_numpy(np.float64) * scale)
            captured = distance <= SPOT_CAPTURE_UM
            molecules.loc[captured, "label"] = label[nearest[captured]]
            molecules.loc[captured, "normalized_intensity"] = size[nearest[captured]]
        cell.granules.append(granule_errors(molecules, threshold=GRANULE_THRESHOLD))
        cell.simulated += len(molecules)
        cell.estimated += len(clustered)
    return cell


def bigfish_available() -> str | None:
    """None when ``bigfish`` imports; the reason it does not otherwise."""
    try:
        import bigfish.detection  # noqa: F401
    except Exception as error:  # noqa: BLE001 (any import failure means: not available)
        return f"{type(error).__name__}: {error}"
    return None


def _methods(sims: list, psf_sigma_um, with_bigfish: bool) -> dict:
    """``{method: Cell}``: ours, and Big-FISH with a spot radius of σ and 2σ."""
    methods = {OURS: _ours(sims)}
    if with_bigfish:
        methods.update({f"Big-FISH {label}": _bigfish(sims, psf_sigma_um, factor)
                        for label, factor in (("σ", 1.0), ("2σ", 2.0))})
    return methods


def evaluate(*, snrs=SNRS, shape=SHAPE, presets=PRESET_NAMES, with_bigfish: bool = True,
             progress: bool = True) -> dict:
    """``cells[preset][snr][method]`` -> :class:`Cell`; Big-FISH's better radius per cell."""
    from rna_localization.synthetic import PRESETS, simulate_image

    cells: dict = {}
    for preset in presets:
        cells[preset] = {}
        for snr in snrs:
            sims = [simulate_image(f"{rna_type}_{cycle}_{preset}_snr{snr}", rna_type=rna_type,
                                   cycle=cycle, seed=seed, shape=shape, preset=preset,
                                   snr=float(snr))
                    for rna_type, cycle, seed in IMAGES]
            methods = _methods(sims, PRESETS[preset].psf_sigma_um, with_bigfish)
            cells[preset][snr] = methods
            if progress:
                line = "  ".join(f"{name}: total {c.total_pct:+.1f}%, granule MAE "
                                 f"{c.granule_stat('abs_error'):.0f}%" for name, c in methods.items())
                print(f"  {preset:9s} SNR {snr:>2}: {line}", flush=True)
    return cells


#: sim-fish images: the SNRs, and the seeds of the images of each cell.
SIMFISH_SNRS = (5, 8, 12)
QUICK_SIMFISH_SNRS = (8,)
#: The SNR of the sim-fish variants (one change each from the widefield grid).
SIMFISH_VARIANT_SNR = 8
SIMFISH_SEEDS = (1, 2, 3)
SIMFISH = "sim-fish, widefield grid"


def evaluate_simfish(*, snrs=SIMFISH_SNRS, shape=SHAPE, with_bigfish: bool = True,
                     progress: bool = True, variants=None) -> tuple[dict, dict]:
    """On images rendered by sim-fish: ``cells[snr][method]`` (widefield grid) and
    ``variants[scene name][method]`` (at :data:`SIMFISH_VARIANT_SNR`), each a :class:`Cell`."""
    from .simfish_images import VARIANTS, WIDEFIELD, simfish_image

    def count(scene, snr):
        sims = [simfish_image(f"simfish_{seed}_snr{snr}", seed=seed, snr=float(snr),
                              shape=shape, scene=scene)
                for seed in SIMFISH_SEEDS]
        methods = _methods(sims, scene.psf_sigma_um, with_bigfish)
        if progress:
            line = "  ".join(f"{name}: total {c.total_pct:+.1f}%" for name, c in methods.items())
            print(f"  sim-fish, {scene.name}, SNR {snr:>2}: {line}", flush=True)
        return methods

    cells = {snr: count(WIDEFIELD, snr) for snr in snrs}
    others = {scene.name: count(scene, SIMFISH_VARIANT_SNR)
              for scene in (VARIANTS if variants is None else variants)}
    return cells, others


#: Folders through the command line: these scenes (by name), six images each.
COMMAND_LINE_SCENES = ("widefield grid", "coarse grid", "uneven background",
                       "confocal grid and optics", "0.4 µm steps",
                       "Born-Wolf PSF, 0.2 waves of spherical aberration",
                       "hot pixels (0.1% of the camera's)",
                       "a 12-bit camera clipping 2 single molecules' peaks above the background",
                       "all at once: uneven background, 0.2 waves of spherical aberration, hot "
                       "pixels, brightness spread",
                       # extract stores its PSF's change with depth; normalize counts by depth.
                       "Born-Wolf PSF, spherical aberration from 0.1 waves (first plane) to 0.4 "
                       "(last)")
#: A faint folder through the command line (the widefield grid at this SNR): `segment`
#: must name every image whose single molecules it misses many of.
COMMAND_LINE_FAINT_SNR = 3
COMMAND_LINE_SEEDS = tuple(range(1, 7))
#: Longest a command of the folders may take, seconds.
COMMAND_TIMEOUT = 1800


def _command(args: list[str], cwd: Path) -> str:
    """``rna-localization ARGS`` with this checkout, on the embedded server (no session URL);
    its standard error (the warnings)."""
    from rna_localization.db import ENV_URL

    from .bench_run import REPO

    env = {key: value for key, value in os.environ.items() if key != ENV_URL}
    env["PYTHONPATH"] = str(REPO)
    done = subprocess.run([sys.executable, "-m", "rna_localization.cli", *args], cwd=cwd,
                          env=env, capture_output=True, text=True, check=False,
                          timeout=COMMAND_TIMEOUT)
    if done.returncode != 0:
        msg = (f"rna-localization {' '.join(args)} failed in {cwd} (kept for a look):\n"
               f"{done.stderr[-3000:]}")
        raise RuntimeError(msg)
    return done.stderr


#: `segment`'s sentence for an image many of whose single molecules are too faint to find.
_FAINT_SENTENCE = re.compile(r"In (\S+), an estimated (\d+)% of the single molecules")


def evaluate_command_line(*, scenes=COMMAND_LINE_SCENES, seeds=COMMAND_LINE_SEEDS,
                          shape=SHAPE, snr: float = SIMFISH_VARIANT_SNR,
                          progress: bool = True) -> dict:
    """``{scene name: DataFrame}``: per image, simulated and counted molecules, after
    ``init``, ``segment`` and ``run`` on a data folder of sim-fish images; ``faint_pct``,
    the share of single molecules `segment` named the image for as too faint to find (NaN:
    not named)."""
    from .simfish_images import VARIANTS, WIDEFIELD, write_folder

    known = {scene.name: scene for scene in (WIDEFIELD, *VARIANTS)}
    results = {}
    for name in scenes:
        folder = Path(tempfile.mkdtemp(prefix="simfish_folder_"))  # kept if a command fails
        truth = write_folder(folder, scene=known[name], seeds=seeds, shape=shape, snr=snr)
        start = time.perf_counter()
        _command(["init", str(folder)], folder)
        said = _command(["segment", "--config", "pipeline.toml"], folder)
        _command(["run", "--config", "pipeline.toml"], folder)
        seconds = time.perf_counter() - start
        counted = pd.read_csv(folder / "output" / "data" / "molecules_per_image.csv")
        shutil.rmtree(folder)
        table = truth.merge(counted[["name", "molecules"]].rename(
            columns={"molecules": "counted"}), on="name", how="left")
        faint = {image: float(pct) for image, pct in _FAINT_SENTENCE.findall(said)}
        table["faint_pct"] = table["name"].map(faint)
        if table["counted"].isna().any():
            missing = ", ".join(table.loc[table["counted"].isna(), "name"])
            msg = f"run counted no molecules for {missing} ({name}): the pipeline lost them"
            raise RuntimeError(msg)
        table.attrs["seconds"] = seconds
        results[name] = table
        if progress:
            print(f"  command line, {name}: molecules summed {_errors(table)[0]:+.1f}%",
                  flush=True)
    return results


def _errors(table: pd.DataFrame) -> tuple[float, pd.Series]:
    """Counted against simulated molecules, %: summed over the images, and per image."""
    total = 100 * (table["counted"].sum() / table["molecules"].sum() - 1)
    return float(total), 100 * (table["counted"] / table["molecules"] - 1)


def _faint_named(table: pd.DataFrame) -> str:
    """"2 of 6 (12-16%)": images `segment` named as too faint, and the shares it stated."""
    named = table["faint_pct"].dropna()
    shares = f" ({named.min():.0f}–{named.max():.0f}%)" if len(named) else ""
    return f"{len(named)} of {len(table)}{shares}"


def _command_line_figures(results: dict, faint: dict | None = None) -> list[Figure]:
    errors = [_errors(table) for table in results.values()]
    per_image = np.concatenate([image for _, image in errors])
    worst = float(np.max(np.abs([total for total, _ in errors])))
    return [
        Figure("sim-fish folders through the command line (init, segment, run): molecules "
               "summed vs simulated, worst |error| % over the scenes", f"{worst:.1f}",
               f"<= {TOTAL_PCT:g}", bool(worst <= TOTAL_PCT)),
        Figure("the same, molecules per image vs simulated, range %",
               f"{per_image.min():+.1f} to {per_image.max():+.1f}", "", None),
        Figure("the same, images `segment` named as too faint to count (a false alarm at "
               f"SNR {SIMFISH_VARIANT_SNR})",
               f"{sum(t['faint_pct'].notna().sum() for t in results.values())} of "
               f"{sum(len(t) for t in results.values())}", "none",
               not any(t["faint_pct"].notna().any() for t in results.values())),
    ] + [
        Figure(f"{name} through the command line: images `segment` named as too faint to "
               f"count (share of single molecules it stated); molecules summed vs simulated "
               f"{_errors(table)[0]:+.1f}%", _faint_named(table), "every one",
               bool(table["faint_pct"].notna().all()))
        for name, table in (faint or {}).items()
    ]


def _command_line_table(results: dict) -> list[str]:
    lines = ["| scene | images | molecules simulated | counted | summed | per image | "
             "named too faint by `segment` (share stated) | seconds (init + segment + run) |",
             "|---|---|---|---|---|---|---|---|"]
    for name, table in results.items():
        total, error = _errors(table)
        lines.append(f"| {name} | {len(table)} | {int(table['molecules'].sum()):,} | "
                     f"{table['counted'].sum():,.0f} | {total:+.1f}% | "
                     f"{error.min():+.1f} to {error.max():+.1f}% | {_faint_named(table)} | "
                     f"{table.attrs['seconds']:.0f} |")
    return lines


def best_bigfish(methods: dict) -> str | None:
    """The Big-FISH variant whose molecule total is nearest the truth."""
    names = [name for name in methods if name != OURS]
    if not names:
        return None
    return min(names, key=lambda name: abs(np.nan_to_num(methods[name].total_pct, nan=1e9)))


def _figures(cells: dict, with_bigfish: bool) -> list[Figure]:
    figures = []
    for preset, by_snr in cells.items():
        held = [snr for snr in by_snr if snr >= TARGET_SNR]
        for label, value, limit in (
                ("molecules summed vs simulated, worst |error| %", lambda c: abs(c.total_pct),
                 TOTAL_PCT),
                ("molecules per granule, worst |bias| %",
                 lambda c: abs(c.granule_stat("error")), GRANULE_BIAS_PCT),
                ("molecules per granule, worst mean absolute error %",
                 lambda c: c.granule_stat("abs_error"), GRANULE_MAE_PCT)):
            # NaN (a cell without a scored granule) is left out, not compared.
            ours = float(np.nanmax([value(by_snr[snr][OURS]) for snr in held] + [np.nan]))
            text = f"{ours:.1f}"
            if with_bigfish:
                theirs = np.nanmax([value(by_snr[snr][best_bigfish(by_snr[snr])])
                                    for snr in held] + [np.nan])
                text += f" (Big-FISH {theirs:.1f})"
            figures.append(Figure(f"{preset}, SNR ≥ {TARGET_SNR}: {label}, ours (Big-FISH's best)",
                                  text, f"<= {limit:g}", bool(ours <= limit)))
    if with_bigfish:
        for label, value in (("|molecules summed − simulated|", lambda c: abs(c.total_pct)),
                             ("molecules per granule, mean absolute error",
                              lambda c: c.granule_stat("abs_error"))):
            pairs = [(value(methods[OURS]), value(methods[best_bigfish(methods)]))
                     for by_snr in cells.values() for methods in by_snr.values()]
            pairs = [(ours, theirs) for ours, theirs in pairs
                     if np.isfinite(ours) and np.isfinite(theirs)]
            ahead = sum(ours <= theirs for ours, theirs in pairs)
            figures.append(Figure(f"cells (microscope x SNR) where ours is no worse than "
                                  f"Big-FISH's best: {label}", f"{ahead} of {len(pairs)}",
                                  "every cell", ahead == len(pairs)))
    return figures


def _simfish_figures(by_snr: dict, variants: dict, with_bigfish: bool) -> list[Figure]:
    cells = [by_snr[snr] for snr in by_snr if snr >= TARGET_SNR] + list(variants.values())
    figures = []
    for label, value, limit in (
            ("molecules summed vs simulated, worst |error| %", lambda c: abs(c.total_pct),
             TOTAL_PCT),
            ("molecules per granule, worst |bias| %", lambda c: abs(c.granule_stat("error")),
             GRANULE_BIAS_PCT),
            ("molecules per granule, worst mean absolute error %",
             lambda c: c.granule_stat("abs_error"), GRANULE_MAE_PCT)):
        ours = float(np.nanmax([value(methods[OURS]) for methods in cells] + [np.nan]))
        text = f"{ours:.1f}"
        if with_bigfish:
            theirs = np.nanmax([value(methods[best_bigfish(methods)]) for methods in cells]
                               + [np.nan])
            text += f" (Big-FISH {theirs:.1f})"
        figures.append(Figure(f"{SIMFISH}, SNR ≥ {TARGET_SNR}, and its variants: {label}, "
                              "ours (Big-FISH's best)", text, f"<= {limit:g}",
                              bool(ours <= limit)))
    face_found = sum(by_snr[snr][OURS].face_found for snr in by_snr)
    face_total = sum(by_snr[snr][OURS].face_total for snr in by_snr)
    figures.append(Figure(f"{SIMFISH}: molecules centred on the stack's first or last plane "
                          "held by an object (ours)", f"{face_found} of {face_total}", "", None))
    return figures


def _depth_figures(cells: dict, by_snr: dict, variants: dict) -> list[Figure]:
    """The images ``extract`` would name for a PSF that changes with depth: every image of the
    sim-fish variants aberrated more with depth, none of the others (ours or sim-fish's)."""
    from .simfish_images import VARIANTS

    deep = {scene.name for scene in VARIANTS if scene.deep_waves is not None}
    changing = [methods[OURS] for name, methods in variants.items() if name in deep]
    one_psf = ([methods[OURS] for name, methods in variants.items() if name not in deep]
               + [methods[OURS] for methods in by_snr.values()]
               + [methods[OURS] for by_preset in cells.values() for methods in by_preset.values()])
    figures = []
    for label, group, target in (
            ("sim-fish variants aberrated more with depth: images named for a PSF that "
             "changes with depth", changing, "every image"),
            ("every other image, ours and sim-fish's (one PSF through the stack): images named "
             "for a PSF that changes with depth", one_psf, "none")):
        named = sum(c.depth_named for c in group)
        total = sum(c.images for c in group)
        met = named == total if target == "every image" else named == 0
        figures.append(Figure(label, f"{named} of {total}", target, bool(total) and met))
    return figures


def _table(preset: str, by_snr: dict, n_images: int = len(IMAGES), row: str = "SNR") -> list[str]:
    names = list(next(iter(by_snr.values())))
    lines = [f"**{preset}**: molecules summed vs simulated (%) / molecules per granule bias (%) / "
             "mean absolute error (%) / granules scored; single molecules (ours, mean estimate "
             "of isolated ones); seconds per image", "",
             f"| {row} | " + " | ".join(names) + " | single molecules (ours) |",
             "|---|" + "---|" * (len(names) + 1)]
    for snr, methods in by_snr.items():
        cells = []
        for name in names:
            c = methods[name]
            cells.append(f"{c.total_pct:+.1f} / {c.granule_stat('error'):+.0f} / "
                         f"{c.granule_stat('abs_error'):.0f} / {c.n_granules}; "
                         f"{c.seconds / n_images:.1f} s")
        singles = methods[OURS].singles
        lines.append(f"| {snr} | " + " | ".join(cells)
                     + f" | {np.mean(singles):.3f} ({len(singles)}) |")
    return lines


def _scene_line(scene) -> str:
    """One sim-fish scene, described for the notes."""
    background = "uneven" if scene.uneven else "flat"
    return (f"- {scene.name}: spacing {' x '.join(f'{s:g}' for s in scene.spacing)} µm, PSF "
            f"sigma {' x '.join(f'{s:.3g}' for s in scene.psf_sigma_um)} µm, {background} "
            f"background of {scene.background:,.0f} counts on average, {scene.singles} single "
            f"molecules, granule molecules spread {scene.granule_spread_um:g} µm (SD per axis)"
            + (f", molecules' brightness log-normal (sigma {scene.brightness_sigma:g} of log)"
               if scene.brightness_sigma is not None else ""))


def run(quick: bool = False) -> Section:
    """The benchmark as a :class:`Section`: figures against the targets, tables in the notes."""
    section = Section(TITLE)
    start = time.perf_counter()
    missing = bigfish_available()
    snrs, shape = (QUICK_SNRS, QUICK_SHAPE) if quick else (SNRS, SHAPE)
    cells = evaluate(snrs=snrs, shape=shape, with_bigfish=missing is None)
    section.figures = _figures(cells, with_bigfish=missing is None)
    if missing is not None:
        section.notes.append(
            f"**Big-FISH is not installed** (`import bigfish` failed: {missing}); only our "
            f"counts were scored. Install it with `{INSTALL_HINT}` (`make bench` does).")
    section.notes.append(
        f"Images per cell: {', '.join(f'{r} {c} seed {s}' for r, c, s in IMAGES)} "
        f"({'×'.join(map(str, shape))} voxels), the same at every SNR (the median peak SNR "
        "of a single molecule). Ours: `segment(image, 'rna')` → `label_objects` → "
        "`corrected_apertures` → one `aperture_references` reference per RNA type and "
        "cell. Big-FISH: `detect_spots` (automatic threshold, `spot_radius` the PSF sigma σ "
        f"or 2σ) → `decompose_dense` (alpha 0.7, beta 1, gamma 5) → `detect_clusters` "
        f"({CLUSTER_RADIUS_NM} nm, ≥ {CLUSTER_MIN_SPOTS} spots); each simulated molecule "
        f"belongs to the spot nearest it within {SPOT_CAPTURE_UM} µm, and a clustered spot "
        "counts its cluster's spots. The figures take Big-FISH's variant whose total is "
        "nearest the truth in each cell. Granules: each simulated granule of ≥ "
        f"{GRANULE_THRESHOLD} molecules against the object or cluster holding most of its "
        "molecules (`rna_localization.demo.granule_errors`); granules held by none are not "
        "scored (the count of those scored is in the table). Times: segmentation, labeling "
        "and photometry (ours) or the three Big-FISH calls, per image, in this run.")
    for preset, by_snr in cells.items():
        section.notes.append("\n".join(_table(preset, by_snr)))
    from .simfish_images import GRANULE_SIZES, SINGLES, VARIANTS, available

    unavailable = available()
    if unavailable is None:
        simfish_cells, variant_cells = evaluate_simfish(
            snrs=QUICK_SIMFISH_SNRS if quick else SIMFISH_SNRS, shape=shape,
            with_bigfish=missing is None)
        section.figures += _simfish_figures(simfish_cells, variant_cells,
                                            with_bigfish=missing is None)
        section.figures += _depth_figures(cells, simfish_cells, variant_cells)
        section.notes.append(
            f"Images rendered by sim-fish (`benchmarks/simfish_images.py`), seeds "
            f"{', '.join(map(str, SIMFISH_SEEDS))} at each SNR: {SINGLES} single molecules "
            f"anywhere in the stack (its faces included) and granules of "
            f"{', '.join(map(str, GRANULE_SIZES))} molecules, on the widefield grid and PSF, a "
            "flat background of 3,300 counts with sim-fish's noise; counted as above.\n\n"
            + "\n".join(_table(SIMFISH, simfish_cells, len(SIMFISH_SEEDS)))
            + f"\n\nOne change at a time from the widefield grid, at SNR {SIMFISH_VARIANT_SNR}, "
            "the same seeds (an uneven background is the widefield background of this "
            "package's simulator, scaled to the same mean, its noise drawn as sim-fish draws "
            "it):\n\n"
            + "\n".join(_scene_line(scene) for scene in VARIANTS) + "\n\n"
            + "\n".join(_table("sim-fish variants", variant_cells, len(SIMFISH_SEEDS),
                                row="variant")))
        seeds = COMMAND_LINE_SEEDS[:2] if quick else COMMAND_LINE_SEEDS
        folders = evaluate_command_line(
            scenes=COMMAND_LINE_SCENES[:1] if quick else COMMAND_LINE_SCENES,
            seeds=seeds, shape=shape)
        scene = COMMAND_LINE_SCENES[0]  # the widefield grid
        faint = {f"{scene}, SNR {COMMAND_LINE_FAINT_SNR}": table for table in
                 evaluate_command_line(scenes=(scene,), seeds=seeds, shape=shape,
                                       snr=COMMAND_LINE_FAINT_SNR).values()}
        section.figures += _command_line_figures(folders, faint)
        section.notes.append(
            "sim-fish images written as a user's data folder (`simfish_images.write_folder`: "
            "the RNA stacks with their voxel size, a second channel of blurred balls as the "
            f"centrosomes, a metadata CSV), SNR {SIMFISH_VARIANT_SNR}, then `rna-localization "
            "init`, `segment` and "
            "`run` on the embedded PostgreSQL with every default; the molecules per image "
            "`run` writes (`molecules_per_image.csv`) against the simulated ones; the last "
            f"folder at SNR {COMMAND_LINE_FAINT_SNR}, where many single molecules are too "
            "faint to find and `segment` must say so.\n\n"
            + "\n".join(_command_line_table({**folders, **faint})))
    else:
        section.notes.append(
            f"**sim-fish is not installed** (`import simfish` failed: {unavailable}): its images "
            "were not counted. `make bench` installs it.")
    section.seconds = time.perf_counter() - start
    return section


def to_markdown(section: Section) -> str:
    """The section as Markdown, as ``python -m benchmarks`` writes it."""
    return section_markdown(section)


def main(argv: list[str] | None = None) -> int:
    return standalone("bench_quantification", __doc__, run,
                      f"SNR {'/'.join(map(str, QUICK_SNRS))}, "
                      f"{'x'.join(map(str, QUICK_SHAPE))} images: a smoke check", argv)


if __name__ == "__main__":
    sys.exit(main())
