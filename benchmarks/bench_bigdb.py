"""Adding one image to a database of millions of objects costs what it costs on an empty one.

Two databases on one server: an empty one, and one filled with 3 M synthetic
RNA objects (binary COPY through ``write_image_objects``, 20,000 objects per
image; a tenth of the images in three groups, normalized). The same demo
image is then added to each: ``extract``, ``distances`` and ``normalize`` of
that image, timed.
Any step that scanned or rewrote the whole table would make the big
database's side grow with its 3 M rows.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from psycopg2 import sql

from rna_localization import load_config, steps
from rna_localization.db import Database, stop_server
from rna_localization.db.results import distance_column
from rna_localization.db.tables import (
    STRUCTURE_FILLFACTOR,
    drop_tables,
    ensure_schema,
    ensure_structure_table,
    relation_sizes,
    vacuum_analyze,
    write_image_objects,
)

from ._common import Figure, Section, synthetic_objects
from .bench_run import subset_dataset

PER_IMAGE = 20_000  # a quarter of a full 60x2048x2048 confocal frame's
GROUPS = 3
NORMALIZED = 0.1  # the fraction of the images given a metadata row (and a group) and normalized
BATCH = 10  # images per transaction while filling
MIB = 2**20


def _configs(source: Path, folder: Path) -> list[Path]:
    """A one-image data set (links to `source`'s first image) and three configs on it.

    Each names its own database and metadata CSV; both use the one embedded
    server under `folder`.
    """
    subset_dataset(source, folder, 1)
    text = (folder / "pipeline.toml").read_text(encoding="utf-8")
    replacements = {'name = "demo"': 'name = "bench_bigdb_{which}"',
                    'metadata_csv = "raw-data-metadata.csv"': 'metadata_csv = "metadata_{which}.csv"',
                    "workers = 0": "workers = 1"}  # one image: no cluster on either side
    paths = []
    for which in ("warm", "empty", "big"):
        toml = folder / f"{which}.toml"
        edited = text
        for old, new in replacements.items():
            if old not in text:
                msg = f"{folder / 'pipeline.toml'} has no {old!r} line to replace"
                raise ValueError(msg)
            edited = edited.replace(old, new.format(which=which))
        toml.write_text(edited, encoding="utf-8")
        (folder / f"metadata_{which}.csv").write_bytes((folder / "raw-data-metadata.csv").read_bytes())
        paths.append(toml)
    return paths


def _fill(db: Database, structure: str, n_images: int, spacing, seed: int = 0) -> list[str]:
    """`n_images` synthetic images of PER_IMAGE objects each (a 1-voxel label per object)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(1, PER_IMAGE + 1, dtype=np.int32).reshape(1, 1, PER_IMAGE)
    names = [f"bulk_{i:05d}" for i in range(n_images)]
    for start in range(0, n_images, BATCH):
        with db.transaction() as cursor:
            for name in names[start:start + BATCH]:
                objects = synthetic_objects(rng, PER_IMAGE, area=(8, 60), extent=2048,
                                            apertures=True)
                write_image_objects(cursor, structure, name, objects, labels, spacing)
    return names


def _add_image(config) -> tuple[dict[str, float], int]:
    """extract, distances and normalize of the data set's one new image: seconds per step, objects."""
    seconds = {}
    with warnings.catch_warnings():
        # The bulk images have no centrosomes: one warning each from distances.
        warnings.simplefilter("ignore")
        for step, call in (("extract", steps.extract), ("distances", steps.measure_distances),
                           ("normalize", steps.normalize)):
            start = time.perf_counter()
            result = call(config)
            seconds[step] = time.perf_counter() - start
            if step == "extract":
                objects = int(result.loc[result["structure"] == config.normalization.structure,
                                         "objects"].sum())
    return seconds, objects


def _regroup(config, old: str, new: str) -> None:
    """Give the images of group `old` the group `new`, in the metadata CSV and the images table."""
    metadata = pd.read_csv(config.metadata_path)
    metadata.loc[metadata["rna_type"] == old, "rna_type"] = new
    metadata.to_csv(config.metadata_path, index=False)
    steps.load_metadata(config)


def run(dataset: Path, workdir: Path, quick: bool = False) -> Section:
    """Time adding one image to an empty database and to one of ~3 M objects."""
    section = Section("Big database: adding one image to millions of objects")
    n_images = 15 if quick else 150
    folder = workdir / "bigdb"
    warm, empty, big = (load_config(path) for path in _configs(dataset, folder))
    structure = big.normalization.structure
    try:
        db = Database.from_config(big)
        start = time.perf_counter()
        # The big database: synthetic rows, their metadata (ten groups), normalized once.
        with db.transaction() as cursor:
            ensure_schema(cursor)
            ensure_structure_table(cursor, structure)
        names = _fill(db, structure, n_images, big.spacing)
        vacuum_analyze(db, [structure])
        fill_seconds = time.perf_counter() - start
        objects = n_images * PER_IMAGE
        sizes = {}
        with db.transaction() as cursor:
            sizes["after the COPY"] = relation_sizes(cursor, structure)
        metadata = pd.read_csv(big.metadata_path)
        grouped = names[:max(GROUPS, round(NORMALIZED * n_images))]
        bulk = pd.DataFrame({"name": grouped})
        for column in metadata.columns.drop("name"):
            bulk[column] = metadata[column].iloc[0]
        bulk["rna_type"] = [f"group_{i % GROUPS}" for i in range(len(grouped))]
        pd.concat([bulk, metadata]).to_csv(big.metadata_path, index=False)
        for config in (warm, empty, big):
            steps.load_metadata(config)
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            steps.normalize(big)
        normalize_seconds = time.perf_counter() - start
        with db.transaction() as cursor:
            sizes["after normalizing a tenth"] = relation_sizes(cursor, structure)

        _add_image(warm)  # imports and file cache: the first image pays them, not either side
        on_empty, new_objects = _add_image(empty)
        on_big, _ = _add_image(big)
        with db.transaction() as cursor:
            sizes["after adding one image"] = relation_sizes(cursor, structure)
        # One group normalized again, twice (its images moved to a new group and back):
        # its rows rewritten each time.
        regroup = []
        for old, new in (("group_0", "group_0b"), ("group_0b", "group_0")):
            _regroup(big, old, new)
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the images without a metadata row
                steps.normalize(big)
            regroup.append(time.perf_counter() - start)
        with db.transaction() as cursor:
            sizes["after normalizing one group again, twice"] = relation_sizes(cursor, structure)
        # Every row's distance written once, as the distances step writes each image's (its
        # UPDATE, then VACUUM): the pipeline updates every RNA row at least once.
        start = time.perf_counter()
        column = sql.Identifier(distance_column(big.distances.structure_2))
        with db.transaction() as cursor:
            cursor.execute(sql.SQL("UPDATE {} SET {} = 1.0 WHERE {} IS NULL").format(
                sql.Identifier(structure), column, column))
        vacuum_analyze(db, [structure])
        update_seconds = time.perf_counter() - start
        with db.transaction() as cursor:
            sizes["after writing every row's distance"] = relation_sizes(cursor, structure)
    finally:
        for config in (warm, empty, big):
            database = Database.from_config(config)
            with database.transaction() as cursor:
                drop_tables(cursor, database.tables())
        stop_server(folder / ".pgdata")

    ratio = sum(on_big.values()) / sum(on_empty.values())
    per_million = 1e6 / MIB / objects
    section.figures += [
        Figure(f"adding one image (extract + distances + normalize) to {objects / 1e6:.1f} M "
               f"objects / to an empty database", f"{ratio:.2f}x", "<= 1.5", ratio <= 1.5),
        Figure("table + indexes per million objects: " + " / ".join(sizes),
               " / ".join(f"{total * per_million:.0f}" for _, total in sizes.values()) + " MiB"),
    ]
    section.notes.append(
        "Seconds per step, empty database / big one: "
        + ", ".join(f"{step} {on_empty[step]:.2f} / {on_big[step]:.2f}" for step in on_empty)
        + f". The image added is the demo data set's first ({new_objects:,} RNA objects), after "
        f"a warm-up on a third database (imports, file cache). The big database ({objects:,} RNA "
        f"objects: {n_images:,} images of {PER_IMAGE:,}) was written by binary COPY through "
        f"`write_image_objects` in {fill_seconds:.0f} s; {len(grouped)} of its images "
        f"({len(grouped) * PER_IMAGE:,} objects, {GROUPS} groups) have a metadata row and were "
        f"normalized in {normalize_seconds:.0f} s, the others have none (so are not normalized: "
        f"normalizing 3 M objects takes minutes, and normalize never reads the objects of the "
        f"groups it leaves alone). Normalizing one group again (its images moved to a new group, "
        f"then back) took " + " and ".join(f"{seconds:.1f} s" for seconds in regroup)
        + f"; writing every row's distance (one UPDATE, then VACUUM) {update_seconds:.0f} s; "
        "heap alone, MiB per million objects: "
        + " / ".join(f"{heap * per_million:.0f}" for heap, _ in sizes.values()) + ". A "
        f"structure table's pages are filled to {STRUCTURE_FILLFACTOR}% when its rows are "
        "written, so that most rows' updates stay on their page: rows never updated (the big "
        "database's, until the last figure) take that much more room; once every row has "
        "been updated, as every RNA row is by the distances step, full pages would hold two "
        "versions of each and more index entries."
    )
    return section
