"""No step rewrites the whole table: ids fixed at insert, normalization group by group, VACUUM.

Against a real PostgreSQL. "Untouched" is checked with each row's ``xmin`` and
``ctid`` (the transaction that wrote its current version, and where that
version lies): any UPDATE of a row, even one writing the same values, changes
both, so a whole-table UPDATE (the old renumbering or normalization) fails
these tests.
"""

from __future__ import annotations

import random
import threading
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile

from rna_localization import load_config, steps
from rna_localization.db.tables import (
    ID_STRIDE,
    ensure_schema,
    ensure_structure_table,
    register_images,
    write_image_objects,
)
from rna_localization.distributions import (
    IMAGE_REFERENCE_MIN_OBJECTS,
    MIN_REFERENCE_OBJECTS,
    REFERENCE_ISOLATION_UM,
    REFERENCE_TRIM,
)
from rna_localization.objects import label_objects, measure_objects

import oracles
from datagen import random_blobs
from helpers import database as _db

SPACING = (0.3, 0.1, 0.1)


def _versions(db, table: str = "rna") -> pd.DataFrame:
    """Every row's id with the transaction that wrote its current version and where it lies."""
    return db.query(f"SELECT id, xmin::text AS xmin, ctid::text AS ctid FROM {table} ORDER BY id")


def _assert_untouched(after: pd.DataFrame, before: pd.DataFrame, ids) -> None:
    """The rows `ids` kept the versions `before` saw (:func:`_versions`): not rewritten."""
    pd.testing.assert_frame_equal(after[after["id"].isin(ids)].reset_index(drop=True),
                                  before[before["id"].isin(ids)].reset_index(drop=True))


def _add_image(config_path: Path, name: str, rna_type: str, seed: int) -> None:
    """Write a new image's TIFFs (both structures) and its metadata row."""
    root = config_path.parent
    rng = np.random.default_rng(seed)
    shape = (8, 40, 48)
    for structure, n, radii, labels in (("rna", 25, (0.8, 3.5), False),
                                        ("centrosomes", 3, (1.5, 4.0), True)):
        seg = random_blobs(rng, shape, n, radii, label_image=labels)
        raw = rng.integers(100, 4000, size=shape, dtype=np.uint16)
        raw[seg > 0] += 3000
        tifffile.imwrite(root / structure / "raw-data" / f"{name}.tif", raw)
        tifffile.imwrite(root / structure / "segmentations" / f"{name}_seg.tif", seg)
    table = pd.read_csv(root / "raw-data-metadata.csv")
    row = {"name": name, "rna_type": rna_type, "cycle": "nc13", "replicate": 9}
    pd.concat([table, pd.DataFrame([row])], ignore_index=True).to_csv(
        root / "raw-data-metadata.csv", index=False)


def _set_method(config_path: Path, method: str) -> None:
    text = config_path.read_text(encoding="utf-8")
    assert 'method = "total"' in text
    config_path.write_text(text.replace('method = "total"', f'method = "{method}"'), encoding="utf-8")


def _oracle(rows: pd.DataFrame, method: str, lower: float, upper: float,
            per_image: bool = False) -> np.ndarray:
    """normalized_intensity from PRODUCT.md's definitions, group by group, in plain numpy
    (method "aperture": :func:`oracles.aperture_reference`; with `per_image`, each image
    with enough isolated single spots against its own pulled toward its group's,
    :func:`oracles.image_reference` and :func:`oracles.shrunk_reference`)."""
    expected = np.full(len(rows), np.nan)
    for group in rows["rna_type"].dropna().unique():
        member = (rows["rna_type"] == group).to_numpy()
        area = rows["area"].to_numpy(float)[member]
        if method == "total":
            total = rows["total_intensity"].to_numpy(float)[member]
            reference = np.mean(total[(area >= lower) & (area <= upper)])
            expected[member] = total / reference
        else:
            spot = rows["spot_intensity"].to_numpy(float)[member]
            reference = oracles.aperture_reference(
                spot, area, rows[["z_um", "y_um", "x_um"]].to_numpy(float)[member],
                rows["name"].to_numpy()[member], reach_um=REFERENCE_ISOLATION_UM,
                trim=REFERENCE_TRIM, fewest=MIN_REFERENCE_OBJECTS)
            expected[member] = spot / reference
            if not per_image:
                continue
            names = rows.loc[member, "name"].unique()
            kept = {}
            for name in names:
                mine = member & (rows["name"] == name).to_numpy()
                kept[name] = oracles.image_reference(
                    rows["spot_intensity"].to_numpy(float)[mine], rows["area"].to_numpy(float)[mine],
                    rows[["z_um", "y_um", "x_um"]].to_numpy(float)[mine],
                    reach_um=REFERENCE_ISOLATION_UM, trim=REFERENCE_TRIM,
                    fewest=IMAGE_REFERENCE_MIN_OBJECTS)
            light = {name: rows.loc[member & (rows["name"] == name).to_numpy(),
                                    "spot_intensity"].sum() for name in names}
            for name, own in oracles.shrunk_reference(kept, reference, light).items():
                mine = member & (rows["name"] == name).to_numpy()
                expected[mine] = rows["spot_intensity"].to_numpy(float)[mine] / own
    return expected


#: Each object's position in µm (its intensity centroid, else its centroid) for the oracle.
_POSITIONS_UM = ", ".join(
    f"COALESCE(o.spot_centroid_{axis}, o.centroid_{axis}) * l.spacing_{axis} AS {axis}_um"
    for axis in "zyx")
_LABELS = "JOIN label_images AS l ON l.name = o.name AND l.structure = 'rna'"


def _check_normalized(db, config) -> None:
    rows = db.query("SELECT o.id, o.name, o.area, o.total_intensity, o.spot_intensity, "
                    "o.normalized_intensity, " + _POSITIONS_UM + ", "
                    "i.rna_type FROM rna AS o " + _LABELS + " LEFT JOIN images AS i "
                    "ON i.name = o.name ORDER BY o.id")
    n = config.normalization
    expected = _oracle(rows, n.method, n.lower_threshold, n.upper_threshold,
                       per_image=n.reference == "image")
    stored = rows["normalized_intensity"].to_numpy(float)
    np.testing.assert_array_equal(np.isnan(stored), np.isnan(expected))
    np.testing.assert_allclose(stored[~np.isnan(expected)], expected[~np.isnan(expected)], rtol=1e-12)


# ----------------------------------------------------------------------------- ids
def _image(seed: int):
    rng = np.random.default_rng(seed)
    label_image = label_objects(random_blobs(rng, (6, 30, 30), 12, (1.0, 3.0)))
    raw = rng.integers(100, 4000, size=label_image.shape, dtype=np.uint16)
    return label_image, measure_objects(label_image, raw)


def _write_concurrently(db, images: dict, order: list[str]) -> None:
    """Each image in its own transaction, from two threads, in the order given."""
    queue = list(order)
    lock = threading.Lock()

    def work():
        while True:
            with lock:
                if not queue:
                    return
                name = queue.pop(0)
            label_image, objects = images[name]
            with db.transaction() as cursor:
                assert write_image_objects(cursor, "rna", name, objects, label_image, SPACING)

    threads = [threading.Thread(target=work) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def load_config_for(database_name: str):
    """A config naming `database_name` on the test server (no data set needed for direct writes)."""
    from rna_localization import Config

    return Config.from_flat(data_dir=str(Path.cwd()), name=database_name)


def test_ids_do_not_depend_on_the_order_images_are_written_in(postgres_server, database_name):
    from rna_localization.db import Database

    names = [f"img_{i:02d}" for i in range(6)]
    images = {name: _image(i) for i, name in enumerate(names)}
    tables = []
    for k, order in enumerate([names, names[::-1], random.Random(3).sample(names, len(names))]):
        db = Database.from_config(load_config_for(database_name + f"_{k}"))
        with db.transaction() as cursor:
            ensure_schema(cursor)
            ensure_structure_table(cursor, "rna")
            register_images(cursor, names)  # as extract does, before any image is written
        _write_concurrently(db, images, order)
        tables.append(db.query("SELECT * FROM rna ORDER BY id"))
    for table in tables[1:]:
        pd.testing.assert_frame_equal(table, tables[0])
    rows = tables[0]
    assert rows["id"].is_unique
    # The k-th name (sorted) is image number k: id = k * ID_STRIDE + object_id.
    number = rows["name"].map({name: k + 1 for k, name in enumerate(names)})
    assert (rows["id"] == number * ID_STRIDE + rows["object_id"]).all()
    # ids follow (name, object_id): ORDER BY id is ORDER BY name, object_id.
    assert rows[["name", "object_id"]].equals(
        rows.sort_values(["name", "object_id"], ignore_index=True)[["name", "object_id"]])


def test_an_image_never_registered_gets_the_next_number(postgres_server, database_name):
    from rna_localization.db import Database

    db = Database.from_config(load_config_for(database_name))
    label_image, objects = _image(0)
    with db.transaction() as cursor:
        ensure_schema(cursor)
        ensure_structure_table(cursor, "rna")
        register_images(cursor, ["b", "c"])
        write_image_objects(cursor, "rna", "a", objects, label_image, SPACING)
        write_image_objects(cursor, "rna", "c", objects, label_image, SPACING)
    rows = db.query("SELECT name, min(id) / %s AS number FROM rna GROUP BY name ORDER BY name",
                    (ID_STRIDE,))
    assert rows["number"].tolist() == [3, 2]  # "a" after the registered "b" (1) and "c" (2)


def test_extracting_more_images_touches_no_existing_row(dataset):
    """New images whose names sort first get new ids; nothing already there is rewritten."""
    config = load_config(dataset)
    steps.extract(config)
    db = _db(dataset)
    before = _versions(db)
    _add_image(dataset, "a_first", "cen", seed=11)
    report = steps.extract(config)
    assert report.loc[report["status"] == "extracted", "name"].tolist() == ["a_first", "a_first"]
    after = _versions(db)
    kept = after[after["id"].isin(before["id"])]
    pd.testing.assert_frame_equal(kept.reset_index(drop=True), before)
    new = db.query("SELECT id, object_id FROM rna WHERE name = 'a_first'")
    assert (new["id"] == 5 * ID_STRIDE + new["object_id"]).all()  # the 5th name met
    assert after["id"].is_unique


# ------------------------------------------------------------------- normalization
@pytest.mark.parametrize("method", ["total", "aperture"])
def test_normalize_rewrites_only_the_groups_that_changed(dataset, method):
    _set_method(dataset, method)
    config = load_config(dataset)
    assert config.normalization.method == method
    steps.run(config)
    db = _db(dataset)
    _check_normalized(db, config)
    first = _versions(db)

    # Two images of a new group: only their rows are written.
    _add_image(dataset, "img_10", "new_type", seed=21)
    _add_image(dataset, "img_11", "new_type", seed=22)
    steps.extract(config)
    steps.measure_distances(config)
    steps.load_metadata(config)
    summary = steps.normalize(config)
    assert summary["rna_type"].tolist() == ["cen", "gapdh", "new_type"]
    _check_normalized(db, config)
    second = _versions(db)
    old = second[second["id"].isin(first["id"])].reset_index(drop=True)
    pd.testing.assert_frame_equal(old, first)  # not one old row rewritten
    stored = db.query("SELECT grp, reference, objects FROM normalization_references ORDER BY grp")
    counts = db.query("SELECT i.rna_type AS grp, count(*) AS objects FROM rna AS o JOIN images AS i "
                      "ON i.name = o.name GROUP BY 1 ORDER BY 1")
    assert stored["objects"].tolist() == counts["objects"].tolist()
    pd.testing.assert_frame_equal(summary[["reference", "objects"]],
                                  stored[["reference", "objects"]], check_dtype=False)

    # Nothing changed: nothing written.
    steps.normalize(config)
    pd.testing.assert_frame_equal(_versions(db), second)

    # img_01 moves from gapdh to cen, img_02 (cen) leaves the metadata: cen and gapdh are
    # recomputed, img_02's objects become NULL, new_type is left alone.
    metadata = config.metadata_path
    table = pd.read_csv(metadata)
    table.loc[table["name"] == "img_01", "rna_type"] = "cen"
    table[table["name"] != "img_02"].to_csv(metadata, index=False)
    steps.load_metadata(config)
    with pytest.warns(UserWarning, match="without a 'rna_type'.*img_02"):
        summary = steps.normalize(config)
    assert summary["rna_type"].tolist() == ["cen", "gapdh", "new_type"]
    _check_normalized(db, config)
    assert db.query("SELECT count(normalized_intensity) AS n FROM rna "
                    "WHERE name = 'img_02'")["n"].iloc[0] == 0
    third = _versions(db)
    new_type = db.query("SELECT id FROM rna WHERE name IN ('img_10', 'img_11')")["id"]
    _assert_untouched(third, second, new_type)


def test_a_deleted_image_renormalizes_its_group(dataset):
    config = load_config(dataset)
    steps.run(config)
    db = _db(dataset)
    gapdh = db.query("SELECT id FROM rna WHERE name IN ('img_01', 'img_03')")["id"]
    before = _versions(db)
    steps.delete_image_data(config, "img_00", "rna")  # cen: img_00 and img_02
    summary = steps.normalize(config)
    _check_normalized(db, config)
    # The cen reference and counts are img_02's alone now, checked against the oracle.
    rows = db.query("SELECT o.name, o.area, o.total_intensity, o.spot_intensity, "
                    "o.normalized_intensity, " + _POSITIONS_UM + ", i.rna_type FROM rna AS o "
                    + _LABELS + " JOIN images AS i ON i.name = o.name "
                    "WHERE i.rna_type = 'cen' ORDER BY o.id")
    assert set(rows["name"]) == {"img_02"}
    n = config.normalization
    expected = _oracle(rows, n.method, n.lower_threshold, n.upper_threshold)
    intensity = rows["spot_intensity" if n.method == "aperture" else "total_intensity"]
    cen = summary.set_index("rna_type").loc["cen"]
    np.testing.assert_allclose(cen["reference"], (intensity / expected).median(), rtol=1e-12)
    assert cen["objects"] == len(rows)
    _assert_untouched(_versions(db), before, gapdh)


def test_a_changed_method_recomputes_every_group(dataset):
    config = load_config(dataset)
    steps.run(config)
    db = _db(dataset)
    _set_method(dataset, "aperture")
    aperture = load_config(dataset)
    steps.normalize(aperture)
    _check_normalized(db, aperture)
    assert set(db.query("SELECT method FROM normalization_references")["method"]) == {"aperture"}


def test_a_re_extracted_image_renormalizes_its_group(dataset):
    config = load_config(dataset)
    steps.run(config)
    db = _db(dataset)
    # img_00 (cen) gets another raw stack: extracted again, its rows NULL until normalize.
    raw = dataset.parent / "rna" / "raw-data" / "img_00.tif"
    tifffile.imwrite(raw, tifffile.imread(raw) // 2)
    with pytest.warns(UserWarning, match="changed since they were extracted"):
        steps.extract(config)
    assert db.query("SELECT count(normalized_intensity) AS n FROM rna "
                    "WHERE name = 'img_00'")["n"].iloc[0] == 0
    gapdh = db.query("SELECT id FROM rna WHERE name IN ('img_01', 'img_03')")["id"]
    before = _versions(db)
    steps.normalize(config)
    _check_normalized(db, config)
    after = _versions(db)
    _assert_untouched(after, before, gapdh)


def test_a_bulk_rewrite_is_vacuumed(dataset):
    """normalize rewriting every row (a new method) leaves the table vacuumed and analyzed."""
    config = load_config(dataset)
    steps.run(config)
    db = _db(dataset)

    def vacuums() -> int:
        return int(db.query("SELECT vacuum_count FROM pg_stat_user_tables "
                            "WHERE relname = 'rna'")["vacuum_count"].iloc[0])

    count = vacuums()
    _set_method(dataset, "aperture")
    steps.normalize(load_config(dataset))
    assert vacuums() == count + 1
    steps.normalize(load_config(dataset))  # nothing changed: no VACUUM
    assert vacuums() == count + 1


# ----------------------------------------------------------------------- migration
def _make_old_release_state(db) -> None:
    """What 567307e left: no image numbers or normalization state, ids 1..n in (name, object_id) order."""
    with db.transaction() as cursor:
        cursor.execute("DROP TABLE image_numbers, normalized_images, normalization_references")
        for table in ("rna", "centrosomes"):
            cursor.execute(f"UPDATE {table} AS o SET id = r.n FROM (SELECT id, row_number() OVER "
                           f"(ORDER BY name, object_id) AS n FROM {table}) AS r WHERE o.id = r.id")


def test_a_database_of_the_previous_release_keeps_working(dataset):
    config = load_config(dataset)
    steps.run(config)
    db = _db(dataset)
    _make_old_release_state(db)
    old_ids = db.query("SELECT id FROM rna ORDER BY id")["id"]
    assert old_ids.tolist() == list(range(1, len(old_ids) + 1))
    # The previous release's normalize left values on img_03; it now leaves the metadata.
    metadata = config.metadata_path
    table = pd.read_csv(metadata)
    table[table["name"] != "img_03"].to_csv(metadata, index=False)
    _add_image(dataset, "img_10", "new_type", seed=31)
    with pytest.warns(UserWarning, match="img_03"):
        steps.run(config)
    ids = db.query("SELECT id, name, object_id FROM rna ORDER BY id")
    assert ids["id"].is_unique
    assert ids.loc[ids["name"] != "img_10", "id"].tolist() == old_ids.tolist()  # kept as they were
    new = ids[ids["name"] == "img_10"]
    assert (new["id"] == new["id"].iloc[0] // ID_STRIDE * ID_STRIDE + new["object_id"]).all()
    assert (new["id"] > ID_STRIDE).all()
    _check_normalized(db, config)
    assert db.query("SELECT count(normalized_intensity) AS n FROM rna "
                    "WHERE name = 'img_03'")["n"].iloc[0] == 0


def test_a_normalize_with_nothing_to_do_waits_for_no_reader(dataset):
    """Nothing changed: normalize writes nothing, so it takes no lock a long read would block."""
    import psycopg2

    config = load_config(dataset)
    steps.run(config)
    db = _db(dataset)
    reader = psycopg2.connect(db.dsn)
    try:
        reader.cursor().execute("LOCK TABLE rna IN ACCESS SHARE MODE")  # as a long SELECT holds
        done = threading.Event()
        worker = threading.Thread(target=lambda: (steps.normalize(config), done.set()))
        worker.start()
        finished = done.wait(30)
    finally:
        reader.rollback()  # lets a blocked normalize go on
        reader.close()
    worker.join()
    assert finished, "normalize waited for a reader although it had nothing to write"


def test_normalize_takes_its_reference_from_the_isolated_spots(dataset):
    # The two cen images become a grid of spots (3x3-voxel boxes in one plane) 0.8 µm apart,
    # its first row with a second spot between each two (0.4 µm apart, under
    # REFERENCE_ISOLATION_UM) and brighter: crowded spots whose neighbours' light would
    # raise the reference.
    root = dataset.parent
    shape = (8, 40, 48)
    for name in ("img_00", "img_02"):
        seg = np.zeros(shape, np.uint8)
        raw = np.full(shape, 100, np.uint16)
        centres = [(y, x, False) for y in range(4, 40, 8) for x in range(4, 48, 8)]
        centres += [(4, x, True) for x in range(8, 44, 8)]
        for y, x, _ in centres:
            crowded = y == 4
            seg[4, y - 1:y + 2, x - 1:x + 2] = 255
            raw[4, y - 1:y + 2, x - 1:x + 2] += 1400 if crowded else 1000
        tifffile.imwrite(root / "rna" / "raw-data" / f"{name}.tif", raw)
        tifffile.imwrite(root / "rna" / "segmentations" / f"{name}_seg.tif", seg)
    _set_method(dataset, "aperture")
    config = load_config(dataset)
    assert config.normalization.method == "aperture"
    steps.run(config)
    db = _db(dataset)
    _check_normalized(db, config)  # the oracle: isolation by brute force, in µm
    rows = db.query("SELECT o.name, o.area, o.spot_intensity, o.normalized_intensity, "
                    + _POSITIONS_UM + " FROM rna AS o " + _LABELS
                    + " WHERE o.name IN ('img_00', 'img_02') ORDER BY o.id")
    assert len(rows) == 2 * 35
    crowded = (rows["y_um"] < 0.5).to_numpy()  # the first row, y = 0.4 µm
    assert crowded.sum() == 2 * 11
    spot = rows["spot_intensity"].to_numpy(float)
    reference = (spot / rows["normalized_intensity"].to_numpy(float))
    np.testing.assert_allclose(reference, reference[0], rtol=1e-12)
    # The isolated spots' trimmed mean (every spot here within 1.6x of the median) ...
    assert reference[0] == pytest.approx(spot[~crowded].mean(), rel=1e-12)
    # ... which the crowded spots would have moved.
    assert abs(spot.mean() / spot[~crowded].mean() - 1) > 0.05
    assert spot[crowded].min() > spot[~crowded].max()


def test_normalize_counts_each_image_against_its_own_single_molecules(dataset):
    # The two cen images become grids of 120 isolated spots (3x3-voxel boxes in one plane,
    # 0.8 µm apart), img_02's molecules 1.5 times as bright as img_00's, as real images
    # differ from one another. Each is counted against its own spots: every spot reads one
    # molecule; with one reference for the group, img_00's read 0.8 and img_02's 1.2.
    root = dataset.parent
    shape = (8, 80, 96)
    light = {"img_00": 1000, "img_02": 1500}
    for name, added in light.items():
        seg = np.zeros(shape, np.uint8)
        raw = np.full(shape, 100, np.uint16)
        for y in range(4, 80, 8):
            for x in range(4, 96, 8):
                seg[4, y - 1:y + 2, x - 1:x + 2] = 255
                raw[4, y - 1:y + 2, x - 1:x + 2] += added
        for structure in ("rna", "centrosomes"):
            tifffile.imwrite(root / structure / "raw-data" / f"{name}.tif", raw)
            tifffile.imwrite(root / structure / "segmentations" / f"{name}_seg.tif", seg)
    _set_method(dataset, "aperture")
    config = load_config(dataset)
    assert config.normalization.reference == "image"  # the default
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        steps.run(config)
    db = _db(dataset)
    _check_normalized(db, config)  # the oracle, brute force
    rows = db.query("SELECT name, spot_intensity, normalized_intensity FROM rna "
                    "WHERE name IN ('img_00', 'img_02') ORDER BY id")
    assert (rows.groupby("name").size() == 120).all()
    np.testing.assert_allclose(rows["normalized_intensity"], 1.0, rtol=1e-9)
    stored = db.query("SELECT name, reference, single_molecules FROM normalized_images "
                      "WHERE structure = 'rna' ORDER BY name").set_index("name")
    spot = rows.groupby("name")["spot_intensity"].mean()
    assert stored.loc["img_00", "reference"] == pytest.approx(spot["img_00"], rel=1e-12)
    assert stored.loc["img_02", "reference"] == pytest.approx(spot["img_02"], rel=1e-12)
    assert spot["img_02"] / spot["img_00"] == pytest.approx(1.5, rel=0.01)
    assert stored.loc[["img_00", "img_02"], "single_molecules"].tolist() == [120, 120]
    # The small images hold too few spots: their group's reference, none of their own.
    assert stored.loc[["img_01", "img_03"], "reference"].isna().all()
    # ... and the warning names them, with how many isolated single spots each holds.
    few = stored.loc[["img_01", "img_03"], "single_molecules"].astype(int).tolist()
    named = [str(w.message) for w in caught if "isolated single spots" in str(w.message)]
    assert len(named) == 1
    assert named[0].startswith(f"2 image(s) of rna_type = 'gapdh' hold fewer than "
                               f"{IMAGE_REFERENCE_MIN_OBJECTS} ")
    assert f"(img_01, img_03: {min(few)}-{max(few)})" in named[0]
    groups = db.query("SELECT grp, reference_by, own_reference FROM normalization_references "
                      "ORDER BY grp")
    assert groups["reference_by"].tolist() == ["image-shrunk", "image-shrunk"]
    assert groups["own_reference"].tolist() == [2, 0]

    # One reference for the group: every row written again, each image off by its brightness.
    config_path = Path(dataset)
    config_path.write_text(config_path.read_text(encoding="utf-8").replace(
        "[normalization]\n", '[normalization]\nreference = "group"\n', 1), encoding="utf-8")
    config = load_config(dataset)
    assert config.normalization.reference == "group"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summary = steps.normalize(config)
    assert not [w for w in caught if "isolated single spots" in str(w.message)]
    assert summary["own_reference"].tolist() == [0, 0]
    _check_normalized(db, config)
    rows = db.query("SELECT name, normalized_intensity FROM rna "
                    "WHERE name IN ('img_00', 'img_02') ORDER BY id")
    read = rows.groupby("name")["normalized_intensity"].mean()
    assert read["img_00"] == pytest.approx(0.8, rel=0.01)
    assert read["img_02"] == pytest.approx(1.2, rel=0.01)
    assert db.query("SELECT reference FROM normalized_images WHERE structure = 'rna'")[
        "reference"].isna().all()
