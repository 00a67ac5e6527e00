"""Extraction's insert rate into PostgreSQL: objects per second through ``write_image_objects``."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from psycopg2 import sql

from rna_localization import Config
from rna_localization.db import Database, stop_server
from rna_localization.db.tables import (
    copy_frame,
    ensure_schema,
    ensure_structure_table,
    write_image_objects,
)

from ._common import Figure, Section, profile_summary, synthetic_objects

SPACING = (0.2, 0.065, 0.065)


def run(workdir: Path, quick: bool = False) -> Section:
    """Insert one large image, then many realistic ones, each in its own transaction."""
    section = Section("Extraction: insert rate into PostgreSQL")
    rng = np.random.default_rng(0)
    data_dir = workdir / "insert"
    data_dir.mkdir(parents=True, exist_ok=True)
    config = Config.from_flat(data_dir=str(data_dir), name="bench_insert")
    db = Database.from_config(config)
    try:
        with db.transaction() as cursor:
            ensure_schema(cursor)
            ensure_structure_table(cursor, "rna")
            cursor.execute("SELECT current_setting('server_version')")
            version = cursor.fetchone()[0]

        # One image with many objects: the COPY path's throughput.
        n_bulk = 20_000 if quick else 200_000
        bulk = synthetic_objects(rng, n_bulk)
        tiny_labels = np.ones((1, 1, 1), np.int32)
        bulk_seconds = []
        for repeat in range(3):
            start = time.perf_counter()
            with db.transaction() as cursor:
                write_image_objects(cursor, "rna", f"bulk_{repeat}", bulk, tiny_labels, SPACING)
            bulk_seconds.append(time.perf_counter() - start)
        bulk_rate = n_bulk / min(bulk_seconds)

        # Realistic images: ~2000 objects and a 30x512x512 label image each.
        n_images, per_image = (3, 2000) if quick else (10, 2000)
        shape = (16, 128, 128) if quick else (30, 512, 512)
        labels = np.zeros(shape, np.int32)
        flat = labels.reshape(-1)
        flat[rng.choice(flat.size, per_image * 30, replace=False)] = np.repeat(
            np.arange(1, per_image + 1), 30)
        table = synthetic_objects(rng, per_image)
        start = time.perf_counter()
        for i in range(n_images):
            with db.transaction() as cursor:
                write_image_objects(cursor, "rna", f"image_{i}", table, labels, SPACING)
        image_seconds = (time.perf_counter() - start) / n_images
        image_rate = per_image / image_seconds

        # The same rows through text COPY (CSV made by pandas), as extraction did before.
        with db.transaction() as cursor:
            ensure_structure_table(cursor, "rna_csv")
        rows = bulk.copy()
        rows.insert(0, "name", "csv")
        start = time.perf_counter()
        with db.transaction() as cursor:
            copy_frame(cursor, sql.Identifier("rna_csv"), rows)
        csv_rate = n_bulk / (time.perf_counter() - start)
        profile = ""
        if bulk_rate < 100_000:
            def insert_once():
                with db.transaction() as cursor:
                    write_image_objects(cursor, "rna", "profiled", bulk, tiny_labels, SPACING,
                                        overwrite=True)
            profile = profile_summary(insert_once, sort="tottime", top=10)
    finally:
        stop_server(data_dir / ".pgdata")

    section.figures += [
        Figure(f"objects per second, one image of {n_bulk:,} objects", f"{bulk_rate:,.0f}",
               ">= 100,000", bulk_rate >= 100_000),
        Figure("binary COPY / text (CSV) COPY of the same rows, speed-up",
               f"{bulk_rate / csv_rate:.1f}x"),
        Figure(f"objects per second, images of {per_image:,} objects + a "
               f"{'x'.join(map(str, shape))} label image", f"{image_rate:,.0f}"),
    ]
    section.notes.append(
        f"Embedded PostgreSQL {version} (pgserver) on a Unix socket, one transaction per image "
        f"through `write_image_objects` (advisory lock, existence check, binary COPY of the "
        f"rows, the label image as runs of its object voxels). Best of 3 for the large image "
        f"({min(bulk_seconds):.2f} s). Text COPY of the same rows, with pandas formatting every "
        f"double as CSV and the server parsing it back, runs at {csv_rate:,.0f} objects/s. "
        f"Realistic images take {image_seconds * 1e3:.0f} ms each; there the label image "
        f"and the per-transaction round trips weigh as much as the rows."
    )
    if profile:
        section.notes.append("Profile of one large insert (cProfile, by internal time):\n\n```\n"
                             + profile + "\n```")
    return section
