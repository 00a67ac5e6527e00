"""The demo: simulate embryos, segment them, run the pipeline, and compare with the truth."""

from __future__ import annotations

import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from psycopg2 import sql

from . import steps
from .config import RESERVED_TABLES, load_config
from .db import Database, stop_server
from .db.tables import read_label_image

__all__ = ["DemoReport", "compare_with_truth", "run_demo"]

#: Folder (under each structure) where the demo writes the workflows' segmentations,
#: beside the simulator's ideal masks in ``segmentations/``.
WORKFLOW_SEGMENTATIONS = "segmentations-workflow"

#: Area range (voxels) of single molecules in the RNA workflow's masks at the demo's voxel size.
#: Its masks reach half of each spot's filtered peak, wider than the simulator's ideal masks (10-40 voxels); read off the
#: area histogram of the dispersed RNA's objects, as a user would (old guide, section 4.5).
WORKFLOW_SINGLE_MOLECULE_AREA = (20, 55)

#: The demo's database (on the embedded server of the demo folder, or RNA_LOCALIZATION_DATABASE_URL's).
DEMO_DATABASE = "rna_localization_demo"

#: Distance (µm) at which the report compares measured and true cumulative distributions.
REPORT_DISTANCE = 1.0


@dataclass
class DemoReport:
    """What the demo measured, next to the simulator's ground truth."""

    data_dir: Path
    segmentation: str
    localization: pd.DataFrame
    detection: pd.DataFrame
    granules: pd.DataFrame
    seconds: dict[str, float] = field(default_factory=dict)
    plots: list[Path] = field(default_factory=list)

    def __str__(self) -> str:
        def block(title, frame):
            return f"{title}\n{frame.to_string(index=False, float_format=lambda v: f'{v:.1f}')}\n"

        timing = ", ".join(f"{k} {v:.0f} s" for k, v in self.seconds.items())
        return "\n".join([
            f"Demo report: {self.data_dir} (segmentation: {self.segmentation})",
            "",
            block(f"RNA within {REPORT_DISTANCE:g} µm of a centrosome (% of total, mean over images)",
                  self.localization),
            block("RNA objects detected vs molecules simulated", self.detection),
            block("Molecules per granule, estimated (normalized_intensity) vs true", self.granules),
            f"time: {timing}",
            "plots: " + ", ".join(str(p) for p in self.plots if p.suffix == ".png"),
        ])


def _demo_config_text(pipeline_toml: Path, *, workflow: bool) -> str:
    """The simulator's pipeline.toml, on the demo's own database, for ideal or workflow masks."""
    text = pipeline_toml.read_text(encoding="utf-8")
    text = f'[database]\nname = "{DEMO_DATABASE}"  # cleared by each demo run\n\n' + text
    if not workflow:
        return text
    old = 'segmentation_dir = "segmentations"'
    if old not in text:
        msg = f"{pipeline_toml} has no line {old!r}; regenerate the demo data set."
        raise ValueError(msg)
    text = text.replace(old, f'segmentation_dir = "{WORKFLOW_SEGMENTATIONS}"')
    lower, upper = WORKFLOW_SINGLE_MOLECULE_AREA
    for key, value in (("lower_threshold", lower), ("upper_threshold", upper)):
        text, n = re.subn(rf"(?m)^{key} = .*$", f"{key} = {value}  # single molecules in the workflow's masks", text)
        if n != 1:
            msg = f"{pipeline_toml} has no single {key} line; regenerate the demo data set."
            raise ValueError(msg)
    return text


def _clear(db: Database, config) -> None:
    """Drop the tables a previous demo left in the demo's database."""
    with db.transaction() as cursor:
        for table in (*config.data.structures, *RESERVED_TABLES):
            cursor.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(table)))


def run_demo(out_dir: str | Path = "data/demo", *, n_images: int = 20, seed: int = 0,
             ideal_masks: bool = False, shape: tuple[int, int, int] | None = None,
             verbose: bool = True) -> DemoReport:
    """Simulate a data set, segment it, run the whole pipeline and report against the truth.

    The folder is made anew each time (its embedded database included), so
    the demo always starts from scratch; a non-empty folder that is not a
    simulated data set is refused.

    Parameters
    ----------
    out_dir : path-like
        Where the data set, its database (``.pgdata``) and outputs go.
    n_images : int
        Images to simulate (half ``cen``-like enriched RNA, half ``gapdh``-like
        dispersed RNA, over two nuclear cycles).
    seed : int
        Seed of the simulation.
    ideal_masks : bool
        Skip segmentation and use the simulator's ideal masks.
    shape : (Z, Y, X), optional
        Stack shape; the simulator's default otherwise.
    verbose : bool
        Print the report.

    Returns
    -------
    DemoReport
    """
    from .synthetic import simulate_dataset

    out = Path(out_dir).resolve()
    seconds: dict[str, float] = {}
    if (out / ".pgdata").exists():
        stop_server(out / ".pgdata")
        shutil.rmtree(out / ".pgdata")
    for stale in ("output", *(f"{s}/{WORKFLOW_SEGMENTATIONS}" for s in ("rna", "centrosomes"))):
        shutil.rmtree(out / stale, ignore_errors=True)

    start = time.perf_counter()
    simulate_dataset(out, n_images=n_images, seed=seed, **({"shape": shape} if shape else {}))
    seconds["simulate"] = time.perf_counter() - start

    config_path = out / "demo.toml"
    config_path.write_text(_demo_config_text(out / "pipeline.toml", workflow=not ideal_masks),
                           encoding="utf-8")
    config = load_config(config_path)
    if ideal_masks:
        segmentation = "the simulator's ideal masks"
    else:
        from .segmentation import segment_structure

        start = time.perf_counter()
        for structure in config.data.structures:
            segment_structure(config, structure, overwrite=True)
        seconds["segment"] = time.perf_counter() - start
        segmentation = "rna and centrosome workflows with default parameters"

    start = time.perf_counter()
    db = Database.from_config(config)
    _clear(db, config)
    results = steps.run(config, db=db)
    seconds["pipeline"] = time.perf_counter() - start

    report = compare_with_truth(config, db, results["distributions"])
    report.segmentation = segmentation
    report.seconds = {**seconds, "total": sum(seconds.values())}
    report.plots = results["plots"]
    if verbose:
        print()
        print(report)
    return report


def compare_with_truth(config, db: Database, distributions: pd.DataFrame) -> DemoReport:
    """Measured localization, detection and granule sizes next to the simulator's truth files."""
    root = config.data.data_dir
    truth = root / "truth"
    molecules = pd.read_csv(truth / "molecules.csv")
    expected = pd.read_csv(truth / "expected_distributions.csv")
    metadata = pd.read_csv(config.metadata_path)
    group = ["rna_type", "cycle"]

    def at_distance(frame):
        rows = frame[np.isclose(frame["distance"], REPORT_DISTANCE)]
        return rows.groupby(group)["percent_total_rna"].mean()

    localization = pd.DataFrame({
        "measured": at_distance(distributions),
        "truth": at_distance(expected),
    }).reset_index()
    localization["difference"] = localization["measured"] - localization["truth"]

    objects = db.query("SELECT name, object_id, normalized_intensity FROM rna")
    objects = objects.merge(metadata[["name", "rna_type"]], on="name")
    molecules = molecules.merge(metadata[["name", "rna_type"]], on="name")
    true_objects = molecules.groupby(["rna_type", "name", "object_id"]).size().groupby("rna_type").size()
    detection = pd.DataFrame({
        "molecules_simulated": molecules.groupby("rna_type").size(),
        "objects_simulated": true_objects,
        "objects_detected": objects.groupby("rna_type").size(),
    }).fillna(0).astype(int).reset_index()

    granules = _granule_estimates(db, molecules, objects)
    return DemoReport(root, "", localization, detection, granules)


def _granule_estimates(db: Database, molecules: pd.DataFrame, objects: pd.DataFrame) -> pd.DataFrame:
    """Each true granule's molecule count next to the normalized intensity of the object at its centre."""
    in_granules = molecules[molecules["in_granule"].astype(str) == "True"]
    granules = in_granules.groupby(["rna_type", "name", "object_id"]).agg(
        true_molecules=("molecule_id", "size"), z=("z", "mean"), y=("y", "mean"), x=("x", "mean")
    ).reset_index()
    found = []
    with db.transaction() as cursor:
        for name, rows in granules.groupby("name"):
            stored = read_label_image(cursor, "rna", name)
            index = np.clip(np.rint(rows[["z", "y", "x"]].to_numpy()).astype(int), 0,
                            np.array(stored.labels.shape) - 1)
            found.append(pd.Series(stored.labels[tuple(index.T)], index=rows.index))
    granules["detected_id"] = pd.concat(found) if found else pd.Series(dtype=int)
    granules = granules.merge(
        objects[["name", "object_id", "normalized_intensity"]].rename(
            columns={"object_id": "detected_id", "normalized_intensity": "estimated_molecules"}),
        on=["name", "detected_id"], how="left")
    granules["relative_error"] = (granules["estimated_molecules"] / granules["true_molecules"] - 1).abs()
    summary = granules.groupby("rna_type").agg(
        granules=("true_molecules", "size"),
        found=("detected_id", lambda v: int((v > 0).sum())),
        true_mean=("true_molecules", "mean"),
        estimated_mean=("estimated_molecules", "mean"),
        mean_abs_error_pct=("relative_error", lambda v: 100 * v.mean()),
    )
    return summary.reset_index()
