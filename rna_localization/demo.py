"""The demo: simulate embryos, segment them, run the pipeline, and compare with the truth."""

from __future__ import annotations

import shutil
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from . import steps
from .config import RESERVED_TABLES, config_toml, load_config
from .db import Database, stop_server
from .db.tables import drop_tables, read_columns, read_label_image
from .distributions import cumulative_distribution
from .metadata import read_metadata_csv

__all__ = ["DemoReport", "compare_with_truth", "false_granules", "granule_errors", "run_demo"]

#: Folder (under each structure) where the demo writes the workflows' segmentations,
#: beside the simulator's ideal masks in ``segmentations/``.
WORKFLOW_SEGMENTATIONS = "segmentations-workflow"

#: The demo's database (on the embedded server of the demo folder, or RNA_LOCALIZATION_DATABASE_URL's).
DEMO_DATABASE = "rna_localization_demo"

#: Distance (µm) at which the report compares measured and true cumulative distributions.
REPORT_DISTANCE = 1.0


#: Every row of the demo's report: metric name, what it measures, and the truth it is held to.
METRICS = {
    "percent_total_rna_within_1um": "% of the RNA (by light) within 1 µm of a centrosome, mean over images",
    "percent_granule_rna_within_1um": "% of the RNA in granules within 1 µm of a centrosome, mean over images",
    "curve_error_points": "mean |measured - true| of percent_total_rna over every distance, points",
    "molecules_total": "molecules in all the group's images (sum of normalized_intensity)",
    "single_molecule_estimate": "mean normalized_intensity of objects holding one isolated molecule",
    "molecules_per_granule_bias_pct": "mean (estimated / true - 1) over true granules, %",
    "molecules_per_granule_mae_pct": "mean |estimated / true - 1| over true granules, %",
    "molecules_per_granule_mae_floor_pct": ("the same from each granule's true light (its molecules' "
                                            "brightness over its image's mean single molecule's): what "
                                            "exact photometry scores, %"),
    "granules_with_other_molecules_pct": ("true granules whose object also holds molecules of "
                                          "another object, %"),
    "granules_split_pct": ("true granules whose molecules lie in two detected objects or more "
                           "(the one holding most of them is scored), %"),
    "granule_alone_light_bias_pct": ("mean (estimated / true light - 1) over the true granules "
                                     "whose object holds no other molecule: the photometry's "
                                     "own error on a granule, %"),
    "false_granules_pct": ("objects counted as granules (granule_threshold molecules or more) "
                           "that hold no molecule of a true granule, %"),
    "percent_false_granule_rna_within_1um": ("the points of percent_granule_rna_within_1um "
                                             "that those objects make, mean over images"),
    "molecules_in_no_object_pct": "simulated molecules whose voxel is in no detected object, %",
    "molecules_in_no_object_within_1um_pct": ("the same, of the molecules within 1 µm of a "
                                              "centrosome, %"),
    "percent_detected_rna_within_1um": ("percent_total_rna at 1 µm from the molecules in a "
                                        "detected object alone, at their true positions and "
                                        "light, mean over images: the truth without the "
                                        "molecules no object holds"),
    "detection_recall": "resolvable single molecules matched by an object's spot centroid",
    "detection_precision": "objects' spot centroids matching a resolvable single molecule",
    "merged_fraction": "resolvable single molecules inside an object that holds another molecule",
    "centrosome_volume_um3": "mean volume of a centrosome, µm³",
}


@dataclass
class DemoReport:
    """What the demo measured, next to the simulator's ground truth.

    Attributes
    ----------
    metrics : DataFrame
        One row per metric (:data:`METRICS`) and group: ``metric``,
        ``rna_type``, ``cycle``, ``measured``, ``truth``, ``n_images``,
        ``n_objects`` (the objects, molecules or granules behind the row).
        Written as ``output/data/demo_report.csv``.
    """

    data_dir: Path
    segmentation: str
    metrics: pd.DataFrame
    seconds: dict[str, float] = field(default_factory=dict)
    plots: list[Path] = field(default_factory=list)
    csv: Path | None = None

    def value(self, metric: str, rna_type: str, cycle: str | None = None) -> tuple[float, float]:
        """(measured, truth) of one metric, pooled over cycles when `cycle` is None."""
        rows = self.metrics[(self.metrics["metric"] == metric) & (self.metrics["rna_type"] == rna_type)]
        if cycle is not None:
            rows = rows[rows["cycle"] == cycle]
        if rows.empty:
            msg = f"no {metric!r} row for rna_type {rna_type!r}" + (f", cycle {cycle!r}" if cycle else "")
            raise KeyError(msg)
        if metric == "molecules_total":
            return float(rows["measured"].sum()), float(rows["truth"].sum())
        weights = rows["n_objects"].clip(lower=1).to_numpy(np.float64)
        return (float(np.average(rows["measured"], weights=weights)),
                float(np.average(rows["truth"], weights=weights)))

    def __str__(self) -> str:
        table = self.metrics.copy()
        table["difference"] = table["measured"] - table["truth"]
        table = table[["metric", "rna_type", "cycle", "measured", "truth", "difference",
                       "n_images", "n_objects"]]
        timing = ", ".join(f"{k} {v:.0f} s" for k, v in self.seconds.items())
        return "\n".join([
            f"Demo report: {self.data_dir} (segmentation: {self.segmentation})",
            "",
            table.to_string(index=False, float_format=lambda v: f"{v:.3g}"),
            "",
            *(f"  {k}: {v}" for k, v in METRICS.items()),
            f"time: {timing}",
            f"table: {self.csv}" if self.csv else "",
            "plots: " + ", ".join(str(p) for p in self.plots if p.suffix == ".png"),
        ])


def _demo_config_text(pipeline_toml: Path, *, workflow: bool) -> str:
    """The simulator's pipeline.toml, on the demo's own database, for ideal or workflow masks."""
    settings = tomllib.loads(pipeline_toml.read_text(encoding="utf-8"))
    settings.setdefault("database", {})["name"] = DEMO_DATABASE
    if workflow:
        settings.setdefault("data", {})["segmentation_dir"] = WORKFLOW_SEGMENTATIONS
    masks = "the segmentation workflows' masks" if workflow else "the simulator's ideal masks"
    return config_toml(settings, header=[f"The demo: {pipeline_toml.name}'s settings on {masks}."],
                       comments={"database.name": "cleared by each demo run"})


def _clear(db: Database, config) -> None:
    """Drop the tables a previous demo left in the demo's database."""
    with db.transaction() as cursor:
        drop_tables(cursor, (*config.data.structures, *RESERVED_TABLES))


def run_demo(out_dir: str | Path = "data/demo", *, n_images: int = 20, seed: int = 0,
             ideal_masks: bool = False, shape: tuple[int, int, int] | None = None,
             preset: str | None = None, verbose: bool = True) -> DemoReport:
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
    preset : {"confocal", "widefield"}, optional
        The simulated microscope (:data:`rna_localization.synthetic.PRESETS`);
        the simulator's default (confocal) otherwise.
    verbose : bool
        Print the report.

    Returns
    -------
    DemoReport
    """
    from .synthetic import microscope, simulate_dataset

    settings = {"shape": shape} if shape else {}
    if preset is not None:
        settings["preset"] = microscope(preset)  # a wrong name stops before anything is removed
    out = Path(out_dir).resolve()
    seconds: dict[str, float] = {}
    if (out / ".pgdata").exists():
        stop_server(out / ".pgdata")
        shutil.rmtree(out / ".pgdata")
    for stale in ("output", *(f"{s}/{WORKFLOW_SEGMENTATIONS}" for s in ("rna", "centrosomes"))):
        shutil.rmtree(out / stale, ignore_errors=True)

    start = time.perf_counter()
    simulate_dataset(out, n_images=n_images, seed=seed, **settings)
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
    report.csv = config.output_dir / "data" / "demo_report.csv"
    report.csv.parent.mkdir(parents=True, exist_ok=True)
    report.metrics.to_csv(report.csv, index=False, float_format="%.6g", lineterminator="\n")
    report.seconds = {**seconds, "total": sum(seconds.values())}
    report.plots = results["plots"]
    if verbose:
        print()
        print(report)
    return report


def _image_truth(molecules: pd.DataFrame, labels: np.ndarray | None) -> pd.Series:
    """The detected object (label, 0 = none) at each true molecule's voxel."""
    if labels is None:
        return pd.Series(0, index=molecules.index)
    index = np.clip(np.rint(molecules[["z", "y", "x"]].to_numpy(np.float64)).astype(int), 0,
                    np.array(labels.shape) - 1)
    return pd.Series(labels[tuple(index.T)].astype(np.int64), index=molecules.index)


def granule_errors(molecules: pd.DataFrame, *, threshold: float) -> pd.DataFrame:
    """Each simulated granule against the object holding most of its molecules.

    Parameters
    ----------
    molecules : DataFrame
        One row per simulated molecule of one group: ``name``, ``object_id``
        (its true object), ``in_granule``, ``brightness``, ``label`` (the
        detected object at its voxel, 0 = none) and ``normalized_intensity``
        (that object's estimate, NaN when none).
    threshold : float
        Molecules from which a granule counts (``granule_threshold``).

    Returns
    -------
    DataFrame
        One row per granule of at least `threshold` molecules held by an
        object: ``size`` (true molecules), ``estimate``, ``error`` (estimate /
        size - 1), ``abs_error``, ``abs_light_error`` (the error of exact
        photometry: |its molecules' brightness over its image's mean single
        molecule's / size - 1|), ``light_error`` (estimate / that light - 1:
        the photometry's own error), ``with_others`` (its object also
        holds molecules that are not of this granule) and ``split`` (its
        molecules lie in two detected objects or more).

    Examples
    --------
    >>> m = pd.DataFrame({"name": "a", "object_id": [1, 1, 1, 1, 2, 3],
    ...                   "in_granule": [True] * 4 + [False] * 2,
    ...                   "brightness": [1.0, 1.0, 1.0, 1.0, 1.0, 1.0],
    ...                   "label": [5, 5, 5, 5, 5, 6],
    ...                   "normalized_intensity": [5.0] * 5 + [1.0]})
    >>> granule_errors(m, threshold=4)[["size", "estimate", "error", "with_others", "split"]]
       size  estimate  error  with_others  split
    0     4       5.0   0.25         True  False
    """
    columns = ["size", "estimate", "error", "abs_error", "abs_light_error", "light_error",
               "with_others", "split"]
    # Each image's mean single molecule: images differ in brightness, and each is counted
    # against its own (normalization.reference "image").
    unit = molecules.loc[~molecules["in_granule"]].groupby("name")["brightness"].mean()
    inside = molecules[molecules["label"] > 0]
    held_by = inside.groupby(["name", "label"])
    rows = []
    for (name, _), granule in molecules[molecules["in_granule"]].groupby(["name", "object_id"]):
        labels = granule["label"][granule["label"] > 0]
        if len(granule) < threshold or labels.empty:
            continue
        label = int(labels.mode().min())
        held = held_by.get_group((name, label))
        estimate = float(held["normalized_intensity"].iloc[0])
        others = ~held.index.isin(granule.index)
        size = len(granule)
        light = granule["brightness"].sum() / unit.get(name, np.nan)
        rows.append({"size": size, "estimate": estimate, "error": estimate / size - 1,
                     "abs_error": abs(estimate / size - 1),
                     "abs_light_error": abs(light / size - 1),
                     "light_error": estimate / light - 1,
                     "with_others": bool(others.any()),
                     "split": bool((labels != label).any())})
    return pd.DataFrame(rows, columns=columns)


def false_granules(objects: pd.DataFrame, molecules: pd.DataFrame, *,
                   threshold: float) -> pd.Series:
    """Which objects count as granules but hold no molecule of a simulated granule.

    Parameters
    ----------
    objects : DataFrame
        ``name``, ``object_id``, ``normalized_intensity`` (NaN counts as no granule).
    molecules : DataFrame
        One row per simulated molecule: ``name``, ``in_granule`` and ``label``
        (the detected object at its voxel, 0 = none).
    threshold : float
        Molecules from which an object counts as a granule (``granule_threshold``).

    Returns
    -------
    Series of bool
        On `objects`' index: counted as a granule, and no granule molecule's
        voxel is in it (a clump of single molecules, or one read bright).

    Examples
    --------
    >>> objects = pd.DataFrame({"name": "a", "object_id": [1, 2, 3],
    ...                         "normalized_intensity": [5.0, 4.5, 1.0]})
    >>> molecules = pd.DataFrame({"name": "a", "label": [1, 2, 2, 0],
    ...                           "in_granule": [True, False, False, True]})
    >>> false_granules(objects, molecules, threshold=4).tolist()
    [False, True, False]
    """
    holding = molecules.loc[molecules["in_granule"] & (molecules["label"] > 0), ["name", "label"]]
    keys = pd.MultiIndex.from_arrays([holding["name"], holding["label"].astype(np.int64)])
    has_granule = pd.MultiIndex.from_arrays(
        [objects["name"], objects["object_id"].astype(np.int64)]).isin(keys)
    counted = (objects["normalized_intensity"] >= threshold).to_numpy()
    return pd.Series(counted & ~has_granule, index=objects.index)


def _false_granule_rna(config, db: Database, false: pd.DataFrame, names) -> pd.Series:
    """Per image of `names`: percent_granule_rna at REPORT_DISTANCE from the false granules only."""
    objects, _, metadata = steps.distribution_inputs(config, db)
    objects = objects.merge(false, on=["name", "object_id"], how="left")
    rows = {r[config.data.image_name_column]: r for r in metadata.to_dict("records")}
    values = {}
    for name, image in objects.groupby("name"):
        if name not in names or name not in rows:
            continue
        molecules = np.where(image["false"].eq(True), image["normalized_intensity"], 0.0)
        curve = cumulative_distribution(
            image["distance"], image["total_intensity"], molecules,
            step_size=config.distribution.step_size,
            distance_threshold=steps.image_distance_threshold(config, rows[name], name),
            granule_threshold=config.normalization.granule_threshold)
        at = curve.loc[np.isclose(curve["distance"], REPORT_DISTANCE), "percent_granule_rna"]
        if len(at):
            values[name] = float(at.iloc[0])
    return pd.Series(values, dtype=np.float64)


def _detected_rna_within(config, molecules: pd.DataFrame, image_rows: dict,
                         at: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """Per image of `molecules` with a true curve in `at`: percent_total_rna at
    REPORT_DISTANCE from its molecules in a detected object (``label > 0``) at their
    true positions and light, and the true figure (every molecule)."""
    from .synthetic import expected_distribution

    true = at.set_index("name")["percent_total_rna_true"]
    detected = {}
    for name, image in molecules.groupby("name"):
        if name not in true.index:
            continue
        curve = expected_distribution(
            image[image["label"] > 0],
            distance_threshold=steps.image_distance_threshold(config, image_rows[name], name),
            step_size=config.distribution.step_size,
            granule_threshold=config.normalization.granule_threshold)
        value = curve.loc[np.isclose(curve["distance"], REPORT_DISTANCE), "percent_total_rna"]
        if len(value):
            detected[name] = float(value.iloc[0])
    detected = pd.Series(detected, dtype=np.float64)
    return detected, true.reindex(detected.index)


def compare_with_truth(config, db: Database, distributions: pd.DataFrame) -> DemoReport:
    """Every metric of :data:`METRICS` per RNA type and cycle, measured and true.

    The truth comes from the simulator's ``truth/`` tables (``data/README.md``
    defines each): molecules at their true positions and brightness, the
    expected cumulative distributions, the centrosomes' true radii. Each true
    molecule belongs to the detected object at its voxel (or none).

    `distributions` is what :func:`.steps.compute_distributions` returned for
    `db`: the false granules' part of the granule RNA is computed again from
    `db`'s objects (:func:`.steps.distribution_inputs`), so the two agree only
    for that table. ``false_granules_pct`` counts every object of the group.
    """
    from .synthetic import score_spots, unresolvable

    root = config.data.data_dir
    truth = root / "truth"
    molecules = pd.read_csv(truth / "molecules.csv")
    molecules["in_granule"] = molecules["in_granule"].astype(str) == "True"
    expected = pd.read_csv(truth / "expected_distributions.csv")
    centrosomes = pd.read_csv(truth / "centrosomes.csv")
    table = read_metadata_csv(config.metadata_path)
    image_rows = {row[config.data.image_name_column]: row for row in table.to_dict("records")}
    metadata = table[["name", "rna_type", "cycle"]]
    group = ["rna_type", "cycle"]
    spacing = np.asarray(config.spacing, dtype=np.float64)
    structure_2 = config.distances.structure_2
    threshold = config.normalization.granule_threshold

    rna_columns = set(db.columns("rna"))
    position = ("spot_centroid_z", "spot_centroid_y", "spot_centroid_x")
    if not set(position) <= rna_columns:
        position = ("centroid_z", "centroid_y", "centroid_x")
    with db.transaction() as cursor:
        objects = read_columns(cursor, "rna", ["name", "object_id", "normalized_intensity", *position])
        targets = (read_columns(cursor, structure_2, ["name", "area"])
                   if structure_2 in db.tables() else pd.DataFrame({"name": [], "area": []}))
    objects["normalized_intensity"] = objects["normalized_intensity"].fillna(0.0)

    rows = []

    def add(metric, key, measured, true, n_images, n_objects):
        rows.append({"metric": metric, "rna_type": key[0], "cycle": key[1],
                     "measured": float(measured), "truth": float(true),
                     "n_images": int(n_images), "n_objects": int(n_objects)})

    # Curves: measured and expected, image by image.
    curves = distributions.merge(expected, on=["name", "distance"], suffixes=("", "_true"))
    curves = curves.merge(metadata, on="name", suffixes=("_x", ""))
    at = curves[np.isclose(curves["distance"], REPORT_DISTANCE)]
    for key, part in at.groupby(group):
        add("percent_total_rna_within_1um", key, part["percent_total_rna"].mean(),
            part["percent_total_rna_true"].mean(), part["name"].nunique(), 0)
        add("percent_granule_rna_within_1um", key, part["percent_granule_rna"].mean(),
            part["percent_granule_rna_true"].mean(), part["name"].nunique(), 0)
    for key, part in curves.groupby(group):
        error = (part["percent_total_rna"] - part["percent_total_rna_true"]).abs()
        add("curve_error_points", key, error.groupby(part["name"]).mean().mean(), 0.0,
            part["name"].nunique(), 0)

    # Objects against the molecules they hold.
    per_image = []
    with db.transaction() as cursor:
        for name, image_molecules in molecules.groupby("name"):
            stored = read_label_image(cursor, "rna", name)
            labels = stored.labels if stored is not None else None
            found = image_molecules.assign(label=_image_truth(image_molecules, labels))
            found["isolated"] = ~unresolvable(image_molecules, spacing=spacing)
            detected = objects.loc[objects["name"] == name, list(position)].to_numpy(np.float64)
            score = score_spots(detected, image_molecules, spacing=spacing)
            per_image.append((name, found, score))
    molecules_found = pd.concat([found for _, found, _ in per_image], ignore_index=True)
    scores = pd.DataFrame([{"name": name, **score} for name, _, score in per_image])
    molecules_found = molecules_found.merge(metadata, on="name", suffixes=("_x", ""))
    scores = scores.merge(metadata, on="name")
    estimates = objects.merge(metadata, on="name")

    held = molecules_found[molecules_found["label"] > 0].groupby(["name", "label"]).size()
    held = held.rename("held").reset_index()
    molecules_found = molecules_found.merge(held, on=["name", "label"], how="left")
    molecules_found = molecules_found.merge(
        objects[["name", "object_id", "normalized_intensity"]].rename(columns={"object_id": "label"}),
        on=["name", "label"], how="left")

    # Objects counted as granules that hold no granule molecule, and the points of granule
    # RNA near the centrosomes they make (from the objects the distributions were computed from).
    estimates["false"] = false_granules(estimates, molecules_found, threshold=threshold)
    false_rna = _false_granule_rna(config, db, estimates[["name", "object_id", "false"]],
                                   set(at["name"]))
    for key, part in molecules_found.groupby(group):
        images = part["name"].nunique()
        mine = estimates[(estimates["rna_type"] == key[0]) & (estimates["cycle"] == key[1])]
        counted = mine[mine["normalized_intensity"] >= threshold]
        add("false_granules_pct", key, 100 * counted["false"].mean() if len(counted) else np.nan,
            0.0, images, len(counted))
        curves_of = at.loc[(at["rna_type"] == key[0]) & (at["cycle"] == key[1]), "name"]
        points = false_rna.reindex(sorted(set(curves_of)))
        add("percent_false_granule_rna_within_1um", key, points.mean(), 0.0,
            int(points.notna().sum()), 0)
        add("molecules_total", key, mine["normalized_intensity"].sum(), len(part), images, len(mine))
        lone = part[part["isolated"] & (part["held"] == 1)]
        add("single_molecule_estimate", key,
            lone["normalized_intensity"].mean() if len(lone) else np.nan, 1.0, images, len(lone))
        singles_inside = part[part["isolated"] & (part["label"] > 0)]
        add("merged_fraction", key,
            (singles_inside["held"] >= 2).mean() if len(singles_inside) else np.nan, 0.0,
            images, len(singles_inside))
        add("molecules_in_no_object_pct", key, 100 * (part["label"] == 0).mean(), 0.0, images,
            len(part))
        near = part[part["distance_to_centrosomes"] <= REPORT_DISTANCE]
        add("molecules_in_no_object_within_1um_pct", key,
            100 * (near["label"] == 0).mean() if len(near) else np.nan, 0.0,
            near["name"].nunique(), len(near))
        detected, true = _detected_rna_within(config, part, image_rows, at)
        add("percent_detected_rna_within_1um", key, detected.mean(), true.mean(), len(detected), 0)
        granules = granule_errors(part, threshold=threshold)
        for metric, column in (("molecules_per_granule_bias_pct", "error"),
                               ("molecules_per_granule_mae_pct", "abs_error"),
                               ("molecules_per_granule_mae_floor_pct", "abs_light_error"),
                               ("granules_with_other_molecules_pct", "with_others"),
                               ("granules_split_pct", "split")):
            values = granules[column].astype(np.float64)
            add(metric, key, 100 * values.mean() if len(values) else np.nan, 0.0, images,
                len(granules))
        alone = granules.loc[~granules["with_others"].astype(bool), "light_error"]
        add("granule_alone_light_bias_pct", key,
            100 * alone.astype(np.float64).mean() if len(alone) else np.nan, 0.0, images,
            len(alone))
    for key, part in scores.groupby(group):
        matched, true = part["n_matched"].sum(), part["n_true"].sum()
        scored = matched + part["n_false"].sum()
        add("detection_recall", key, matched / true if true else np.nan, 1.0, len(part), true)
        add("detection_precision", key, matched / scored if scored else np.nan, 1.0, len(part), scored)

    # Centrosomes: volume of the detected objects against the simulated balls.
    voxel = float(np.prod(spacing))
    targets = targets.merge(metadata, on="name")
    true_volume = centrosomes.merge(metadata, on="name").assign(
        volume=lambda t: 4.0 / 3.0 * np.pi * t["radius_um"] ** 3)
    for key, part in true_volume.groupby(group):
        mine = targets[(targets["rna_type"] == key[0]) & (targets["cycle"] == key[1])]
        add("centrosome_volume_um3", key, mine["area"].mean() * voxel if len(mine) else np.nan,
            part["volume"].mean(), part["name"].nunique(), len(mine))

    metrics = pd.DataFrame(rows, columns=["metric", "rna_type", "cycle", "measured", "truth",
                                          "n_images", "n_objects"])
    order = {name: i for i, name in enumerate(METRICS)}
    metrics = metrics.sort_values(["metric", "rna_type", "cycle"],
                                  key=lambda c: c.map(order) if c.name == "metric" else c)
    return DemoReport(root, "", metrics.reset_index(drop=True))
