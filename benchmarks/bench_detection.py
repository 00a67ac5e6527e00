"""Spot detection against Big-FISH, scored on simulated images whose molecules are known.

    python -m benchmarks.bench_detection [--quick]

For each microscope preset ("widefield", "confocal") and each median molecule
SNR, the same simulated images (``"gapdh"`` and ``"cen"`` RNA, nc14) go
through:

* **ours**: ``segment(image, "rna", spacing=...)``, then the intensity-weighted
  centroid of each face-connected object (``mask_spots``); with it, the share of
  single molecules the workflow estimates under its threshold (its
  ``FaintSpotsWarning`` from :data:`FAINT_WARN_FRACTION`), against each image's
  recall;
* **Big-FISH** ``bigfish.detection.detect_spots`` with its automatic threshold,
  ``voxel_size`` the preset's spacing and ``spot_radius`` the preset's PSF sigma
  (``σ``) or twice it (``2σ``), each on the raw image and after
  ``bigfish.stack.remove_background_gaussian`` (``bg+``, sigma
  :data:`BACKGROUND_SIGMA_UM` µm).

Every detection list is scored by ``rna_localization.synthetic.score_spots``
(one-to-one matching within (0.6, 0.25, 0.25) µm to the resolvable single
molecules; molecules in granules, and single molecules with another molecule
within (0.8, 0.3, 0.3) µm, are no targets, and detections near them are set
aside). Counts are pooled over the images of a cell, then turned into recall,
precision and F1. Times are wall-clock per image, measured in the same run;
the time ratio is ours / the best Big-FISH variant of that cell.
"""

from __future__ import annotations

import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ._common import Figure, Section, section_markdown, standalone

TITLE = "Spot detection against Big-FISH"
TARGET = ("recall ≥ 0.97 and precision ≥ 0.97 at SNR ≥ 5; "
          "F1 ahead of Big-FISH's best variant at every SNR")
PRESET_NAMES = ("widefield", "confocal")
SNRS = (3, 4, 5, 8, 12, 20)
QUICK_SNRS = (3, 5, 12)
#: (rna_type, seed) of the images of each cell; the same seeds at every SNR
#: and preset, so molecules sit at the same places and only brightness changes.
IMAGES = (("gapdh", 1), ("cen", 2))
SHAPE = (30, 256, 256)
QUICK_SHAPE = (20, 128, 128)
CYCLE = "nc14"
#: Recall and precision are held to the target from this SNR up.
TARGET_SNR = 5
TARGET_SCORE = 0.97
#: Images whose recall is under this must be warned as faint; those at TARGET_SCORE or
#: more must not be.
FAINT_RECALL = 0.9
#: Edges of the bins of single molecules' own peak SNR for the recall-by-brightness table
#: (molecule brightness is log-normal around each cell's median SNR).
SNR_BINS = (0.0, 3.0, 5.0, 8.0, 12.0, 20.0, np.inf)
#: Sigma (µm) of the Gaussian that ``remove_background_gaussian`` subtracts.
BACKGROUND_SIGMA_UM = 2.0
OURS = "ours"
#: Not a detector: the simulator's ideal masks, binarized and split into
#: face-connected objects like ours. The recall a perfect mask could reach.
IDEAL = "ideal masks"
INSTALL_HINT = "pip install -e .[bench]"


@dataclass
class Tally:
    """Pooled counts and time of one method over the images of one cell."""

    n_true: int = 0
    n_matched: int = 0
    n_false: int = 0
    n_set_aside: int = 0
    n_true_set_aside: int = 0
    n_images: int = 0
    seconds: float = 0.0
    failures: int = 0
    #: Ours: per image, the share of single molecules estimated under the threshold, and
    #: the recall.
    faint: list = field(default_factory=list)
    image_recall: list = field(default_factory=list)
    #: Targets, and those found, per bin of :data:`SNR_BINS` (the molecules' own SNR).
    by_snr_true: np.ndarray = field(default_factory=lambda: np.zeros(len(SNR_BINS) - 1, int))
    by_snr_found: np.ndarray = field(default_factory=lambda: np.zeros(len(SNR_BINS) - 1, int))

    def add_snr(self, score: dict, molecule_snr: np.ndarray) -> None:
        bins = np.digitize(molecule_snr, SNR_BINS[1:-1])
        n = len(SNR_BINS) - 1
        self.by_snr_true += np.bincount(bins[score["target"]], minlength=n)
        self.by_snr_found += np.bincount(bins[score["found"]], minlength=n)

    def add(self, score: dict, seconds: float) -> None:
        self.n_true += score["n_true"]
        self.n_matched += score["n_matched"]
        self.n_false += score["n_false"]
        self.n_set_aside += score["n_set_aside"]
        self.n_true_set_aside += score["n_true_set_aside"]
        self.n_images += 1
        self.seconds += seconds

    @property
    def recall(self) -> float:
        return self.n_matched / self.n_true if self.n_true else float("nan")

    @property
    def precision(self) -> float:
        scored = self.n_matched + self.n_false
        return self.n_matched / scored if scored else float("nan")

    @property
    def f1(self) -> float:
        total = self.n_true + self.n_matched + self.n_false
        return 2 * self.n_matched / total if total else float("nan")

    @property
    def seconds_per_image(self) -> float:
        return self.seconds / self.n_images if self.n_images else float("nan")


# -------------------------------------------------------------------- methods
def _ours(image: np.ndarray, spacing, faint: list) -> np.ndarray:
    """Our spots; the share of single molecules estimated under the threshold appended to
    `faint` (the value the workflow's FaintSpotsWarning states)."""
    from rna_localization.segmentation import FaintSpotsWarning, segment_intermediates
    from rna_localization.synthetic import mask_spots

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FaintSpotsWarning)  # its value is kept, not listed
        run = segment_intermediates(image, "rna", spacing=spacing)
    faint.append(run.faint)
    return mask_spots(run.result, image)


def _ideal(sim) -> np.ndarray:
    from rna_localization.synthetic import mask_spots

    return mask_spots(sim.rna_labels > 0, sim.rna)


def _bigfish_variant(radius_factor: float, background: bool) -> Callable:
    """A Big-FISH detector: spot radius `radius_factor` PSF sigmas, background removal or not."""

    def detect(image: np.ndarray, spacing, psf_sigma_um) -> np.ndarray:
        import bigfish.detection
        import bigfish.stack

        if background:
            sigma_px = tuple(float(BACKGROUND_SIGMA_UM / s) for s in spacing)
            image = bigfish.stack.remove_background_gaussian(image, sigma=sigma_px)
        spots = bigfish.detection.detect_spots(
            images=image, threshold=None,
            voxel_size=tuple(float(1000 * s) for s in spacing),
            spot_radius=tuple(float(1000 * radius_factor * s) for s in psf_sigma_um))
        return np.asarray(spots, dtype=np.float64).reshape(-1, 3)

    return detect


BIGFISH_VARIANTS: dict[str, Callable] = {
    "Big-FISH σ": _bigfish_variant(1.0, background=False),
    "Big-FISH 2σ": _bigfish_variant(2.0, background=False),
    "Big-FISH bg+σ": _bigfish_variant(1.0, background=True),
    "Big-FISH bg+2σ": _bigfish_variant(2.0, background=True),
}


def bigfish_available() -> str | None:
    """None when ``bigfish`` imports; the reason it does not otherwise."""
    try:
        import bigfish.detection  # noqa: F401
        import bigfish.stack  # noqa: F401
    except Exception as error:  # any import failure: not available
        return f"{type(error).__name__}: {error}"
    return None


def _timed(function: Callable, *args) -> tuple[np.ndarray | None, float, str]:
    """(detections or None on failure, seconds, error or warning text)."""
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            spots = function(*args)
            problem = ""
        except Exception as error:  # reported in the section, not raised
            spots, problem = None, f"{type(error).__name__}: {error}"
    seconds = time.perf_counter() - start
    if not problem and caught:
        problem = "; ".join(sorted({f"{w.category.__name__}: {str(w.message)[:120]}"
                                    for w in caught}))
    return spots, seconds, problem


# ----------------------------------------------------------------------- run
def evaluate(*, snrs=SNRS, images=IMAGES, shape=SHAPE, presets=PRESET_NAMES,
             with_bigfish: bool = True, progress: bool = True):
    """Score every method on every cell.

    Returns
    -------
    tallies : dict
        ``tallies[preset][snr][method]`` -> :class:`Tally`.
    problems : dict
        ``(method, failure or warnings)`` -> list of the images ("preset SNR
        rna_type") it happened on.
    crowding : dict
        Per preset, the fraction of single molecules that are unresolvable
        (another molecule within the scorer's resolution), hence no targets.
    """
    from rna_localization.synthetic import PRESETS, score_spots, simulate_image

    faint: list[float] = []
    methods: dict[str, Callable] = {OURS: lambda sim, _psf: _ours(sim.rna, sim.spacing, faint)}
    if with_bigfish:
        for name, detect in BIGFISH_VARIANTS.items():
            methods[name] = lambda sim, psf, detect=detect: detect(sim.rna, sim.spacing, psf)
    methods[IDEAL] = lambda sim, _psf: _ideal(sim)
    tallies: dict = {}
    problems: dict[tuple[str, str], list[str]] = {}
    crowding: dict[str, float] = {}
    for preset in presets:
        psf = PRESETS[preset].psf_sigma_um
        tallies[preset] = {}
        for snr in snrs:
            cell = tallies[preset][snr] = {name: Tally() for name in methods}
            for rna_type, seed in images:
                sim = simulate_image(f"{rna_type}_{preset}_snr{snr}", rna_type=rna_type,
                                     cycle=CYCLE, seed=seed, shape=shape, preset=preset,
                                     snr=float(snr))
                for name, method in methods.items():
                    spots, seconds, problem = _timed(method, sim, psf)
                    if problem:
                        problems.setdefault((name, problem), []).append(
                            f"{preset} SNR {snr} {rna_type}")
                    if spots is None:
                        cell[name].failures += 1
                        spots = np.empty((0, 3))
                    score = score_spots(spots, sim.molecules, spacing=sim.spacing)
                    cell[name].add(score, seconds)
                    cell[name].add_snr(score, sim.molecules["snr"].to_numpy())
                    if name == OURS:
                        cell[name].faint.append(faint.pop() if faint else float("nan"))
                        cell[name].image_recall.append(
                            score["n_matched"] / score["n_true"] if score["n_true"] else np.nan)
            if progress:
                line = "  ".join(f"{name} F1 {t.f1:.3f}" for name, t in cell.items())
                print(f"  {preset:9s} SNR {snr:>2}: {line}", flush=True)
        # The truth is the same at every SNR and for every method.
        first = tallies[preset][snrs[0]][OURS]
        singles = first.n_true + first.n_true_set_aside
        crowding[preset] = first.n_true_set_aside / singles if singles else float("nan")
    return tallies, problems, crowding


def best_bigfish(cell: dict) -> str | None:
    """The Big-FISH variant of a cell with the highest F1 (None without any)."""
    scored = [(t.f1, name) for name, t in cell.items()
              if name.startswith("Big-FISH") and np.isfinite(t.f1)]
    return max(scored)[1] if scored else None


# ---------------------------------------------------------------- reporting
def _f(value: float, digits: int = 3) -> str:
    return "–" if not np.isfinite(value) else f"{value:.{digits}f}"


def _um(values) -> str:
    return "(" + ", ".join(f"{v:g}" for v in values) + ")"


def _summary_table(preset: str, cells: dict) -> list[str]:
    lines = [f"**{preset}** (pooled over {next(iter(cells.values()))[OURS].n_images} images "
             "per SNR)", "",
             "| SNR | ours recall | ours precision | ours F1 | best Big-FISH | its recall | "
             "its precision | its F1 | F1 ours − best | s/image ours | s/image Big-FISH | "
             "time ours / Big-FISH | ideal-mask recall |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for snr, cell in cells.items():
        ours, best = cell[OURS], best_bigfish(cell)
        row = [str(snr), _f(ours.recall), _f(ours.precision), _f(ours.f1)]
        if best is None:
            row += ["–"] * 5 + [f"{ours.seconds_per_image:.2f}", "–", "–"]
        else:
            them = cell[best]
            row += [best, _f(them.recall), _f(them.precision), _f(them.f1),
                    f"{ours.f1 - them.f1:+.3f}", f"{ours.seconds_per_image:.2f}",
                    f"{them.seconds_per_image:.2f}", f"{ours.seconds / them.seconds:.2f}x"]
        row.append(_f(cell[IDEAL].recall) if IDEAL in cell else "–")
        lines.append("| " + " | ".join(row) + " |")
    return lines


def _detail_table(tallies: dict) -> list[str]:
    lines = ["| preset | SNR | method | recall | precision | F1 | true | matched | false | "
             "set aside | s/image |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for preset, cells in tallies.items():
        for snr, cell in cells.items():
            best = best_bigfish(cell)
            for name, t in cell.items():
                label = f"**{name}**" if name in (OURS, best) else name
                failed = f" ({t.failures} failed)" if t.failures else ""
                lines.append(f"| {preset} | {snr} | {label}{failed} | {_f(t.recall)} | "
                             f"{_f(t.precision)} | {_f(t.f1)} | {t.n_true} | {t.n_matched} | "
                             f"{t.n_false} | {t.n_set_aside} | {t.seconds_per_image:.2f} |")
    return lines


def _pooled(cells: dict, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Targets and found targets per molecule-SNR bin of one method, over a preset's sweep."""
    true = sum(cell[name].by_snr_true for cell in cells.values() if name in cell)
    found = sum(cell[name].by_snr_found for cell in cells.values() if name in cell)
    return np.asarray(true), np.asarray(found)


def _bin_labels() -> list[str]:
    edges = [f"{e:g}" for e in SNR_BINS]
    return [f"< {edges[1]}"] + [f"{a}–{b}" for a, b in zip(edges[1:-2], edges[2:-1])] + \
        [f"≥ {edges[-2]}"]


def _by_snr_table(tallies: dict) -> list[str]:
    lines = ["| preset | method | " + " | ".join(_bin_labels()) + " |",
             "|---|---|" + "---|" * (len(SNR_BINS) - 1)]
    for preset, cells in tallies.items():
        methods = next(iter(cells.values()))
        for name in methods:
            true, found = _pooled(cells, name)
            values = [f"{f / t:.3f} ({t})" if t else "–" for t, f in zip(true, found)]
            lines.append(f"| {preset} | {name} | " + " | ".join(values) + " |")
    return lines


def _faint_pairs(cells: dict) -> tuple[np.ndarray, np.ndarray]:
    """Ours, every image of every SNR: (estimated share under the threshold, recall)."""
    faint = np.array([f for cell in cells.values() for f in cell[OURS].faint], dtype=float)
    recall = np.array([r for cell in cells.values() for r in cell[OURS].image_recall], dtype=float)
    return faint, recall


def _faint_figures(preset: str, cells: dict) -> list[Figure]:
    """Faint images warned, and bright ones not: each image's estimate against its recall."""
    from rna_localization.segmentation.quality import FAINT_WARN_FRACTION

    faint, recall = _faint_pairs(cells)
    warned = faint >= FAINT_WARN_FRACTION  # NaN (no estimate): not warned
    low, high = recall < FAINT_RECALL, recall >= TARGET_SCORE
    # With no image of a kind, there is nothing to hold to the target.
    return [
        Figure(f"{preset}: images `segment` warns as faint (≥ {FAINT_WARN_FRACTION:.0%} of "
               f"single molecules estimated under the threshold), of those whose recall is "
               f"under {FAINT_RECALL}", f"{int((warned & low).sum())} of {int(low.sum())}",
               "every one", bool((warned & low).sum() == low.sum()) if low.any() else None),
        Figure(f"{preset}: images warned as faint, of those whose recall is ≥ {TARGET_SCORE}",
               f"{int((warned & high).sum())} of {int(high.sum())}", "none",
               bool(not (warned & high).any()) if high.any() else None),
    ]


def _faint_table(tallies: dict) -> list[str]:
    presets = list(tallies)
    lines = ["| SNR | " + " | ".join(presets) + " |", "|---|" + "---|" * len(presets)]
    for snr in next(iter(tallies.values())):
        row = [str(snr)]
        for preset in presets:
            ours = tallies[preset][snr][OURS]
            row.append(" / ".join(f"{f:.3f} ({1 - r:.3f})"
                                  for f, r in zip(ours.faint, ours.image_recall, strict=True)))
        lines.append("| " + " | ".join(row) + " |")
    return lines


def _figures(tallies: dict, with_bigfish: bool) -> list[Figure]:
    figures = []
    for preset, cells in tallies.items():
        snrs = list(cells)
        if with_bigfish:
            deltas = [cells[s][OURS].f1 - cells[s][best_bigfish(cells[s])].f1 for s in snrs]
            figures.append(Figure(
                f"{preset}: F1 ours − best Big-FISH at SNR {'/'.join(map(str, snrs))}",
                " / ".join(f"{d:+.3f}" for d in deltas), "> 0 at every SNR",
                all(d > 0 for d in deltas)))
        high = [s for s in snrs if s >= TARGET_SNR]
        for what in ("recall", "precision"):
            values = [getattr(cells[s][OURS], what) for s in high]
            if not values:
                continue
            worst = min(values, key=lambda v: v if np.isfinite(v) else -1.0)
            figures.append(Figure(
                f"{preset}: our {what} at SNR ≥ {TARGET_SNR} (lowest of "
                f"{'/'.join(map(str, high))})",
                f"{_f(worst)} ({' / '.join(_f(v) for v in values)})",
                f"≥ {TARGET_SCORE}", bool(np.isfinite(worst) and worst >= TARGET_SCORE)))
        # The target read per molecule: recall of the single molecules whose own peak SNR
        # is at least TARGET_SNR, pooled over the whole sweep.
        true, found = _pooled(cells, OURS)
        bright = np.asarray(SNR_BINS[:-1]) >= TARGET_SNR
        if true[bright].sum():
            recall = found[bright].sum() / true[bright].sum()
            figures.append(Figure(
                f"{preset}: our recall of the molecules whose own peak SNR is ≥ {TARGET_SNR} "
                f"(pooled over the sweep, {int(true[bright].sum())} molecules)",
                _f(recall), f"≥ {TARGET_SCORE}", bool(recall >= TARGET_SCORE)))
        if with_bigfish:
            ratios = [cells[s][OURS].seconds / cells[s][best_bigfish(cells[s])].seconds
                      for s in snrs]
            figures.append(Figure(f"{preset}: time ours / best Big-FISH (median over SNR)",
                                  f"{float(np.median(ratios)):.2f}x"))
        figures += _faint_figures(preset, cells)
    return figures


def run(quick: bool = False) -> Section:
    """The benchmark as a :class:`Section`: figures against the target, tables in the notes."""
    section = Section(TITLE)
    start = time.perf_counter()
    missing = bigfish_available()
    snrs, shape = (QUICK_SNRS, QUICK_SHAPE) if quick else (SNRS, SHAPE)
    from rna_localization.synthetic.model import MOLECULE_BRIGHTNESS_SIGMA
    from rna_localization.synthetic.scoring import RESOLUTION_UM, SCORE_RADIUS_UM

    tallies, problems, crowding = evaluate(snrs=snrs, shape=shape,
                                           with_bigfish=missing is None)
    section.figures = _figures(tallies, with_bigfish=missing is None)
    if missing is not None:
        section.notes.append(
            f"**Big-FISH is not installed** (`import bigfish` failed: {missing}); only our "
            f"detection was scored. Install it with `{INSTALL_HINT}` (`make bench` does).")
    section.notes.append(
        f"Target: {TARGET}. Images: {len(IMAGES)} per cell "
        f"({', '.join(f'{r} seed {s}' for r, s in IMAGES)}; {CYCLE}, "
        f"{'×'.join(map(str, shape))} voxels), the same at every SNR; SNR is the median "
        "peak SNR of a single molecule. Scoring: `rna_localization.synthetic.score_spots` "
        f"(one-to-one exact matching within {_um(SCORE_RADIUS_UM)} µm (z, y, x) to the "
        "resolvable single molecules; molecules in granules and single molecules with "
        f"another molecule within {_um(RESOLUTION_UM)} µm are no targets, and detections "
        "within the matching radius of them are set aside, neither true nor false), counts "
        "pooled over the images of a cell. Ours: `segment(image, 'rna')` → intensity-weighted "
        "centroids of its face-connected objects. Big-FISH: `detect_spots` with its automatic threshold, "
        "`voxel_size` = the preset's spacing, `spot_radius` = the PSF sigma (σ) or twice "
        f"it (2σ), on the raw image or after `remove_background_gaussian` (bg+, sigma "
        f"{BACKGROUND_SIGMA_UM} µm); the best variant of each cell (by F1) is named. "
        "Times are wall-clock per image in this run; the ratio is ours / that best variant.")
    crowd = ", ".join(f"{p} {100 * c:.1f}%" for p, c in crowding.items())
    section.notes.append(
        f"Single molecules set aside as unresolvable (another molecule within "
        f"{_um(RESOLUTION_UM)} µm): {crowd}. The *ideal masks* row is no "
        "detector: the simulator's own ideal masks (`rna_labels > 0`), split into "
        "face-connected objects and scored like ours, the recall a perfect 0/255 mask "
        "could reach on these images.")
    if missing is None:
        for preset, cells in tallies.items():
            section.notes.append("\n".join(_summary_table(preset, cells)))
    section.notes.append(
        "Recall by each single molecule's own peak SNR (its brightness is log-normal around "
        f"the cell's median SNR, σ of log {MOLECULE_BRIGHTNESS_SIGMA:g}), pooled over the "
        "sweep; in parentheses the targets in the bin:\n\n" + "\n".join(_by_snr_table(tallies)))
    section.notes.append(
        "Single molecules our workflow estimates under its threshold (a log-normal fitted to "
        "the found spots' scores, `segmentation.quality.missed_faint_fraction`; `segment` warns "
        "from 5%), per image (" + " / ".join(r for r, _ in IMAGES) + "), and in parentheses "
        "the share of the image's targets it missed (1 − recall):\n\n"
        + "\n".join(_faint_table(tallies)))
    section.notes.append("All methods (bold: ours and the best Big-FISH variant of each "
                         "cell):\n\n" + "\n".join(_detail_table(tallies)))
    if problems:
        lines = []
        for (name, problem), where in problems.items():
            places = ", ".join(where[:6]) + (", …" if len(where) > 6 else "")
            lines.append(f"- {name}, {len(where)} image(s) ({places}): {problem}")
        section.notes.append("Failures and warnings (a failed call counts as no detection):"
                             "\n\n" + "\n".join(lines))
    section.seconds = time.perf_counter() - start
    return section


def to_markdown(section: Section) -> str:
    """The section as Markdown, as ``python -m benchmarks`` writes it."""
    return section_markdown(section)


def main(argv: list[str] | None = None) -> int:
    return standalone("bench_detection", __doc__, run,
                      f"SNR {'/'.join(map(str, QUICK_SNRS))}, "
                      f"{'x'.join(map(str, QUICK_SHAPE))} images: a smoke check", argv)


if __name__ == "__main__":
    sys.exit(main())
