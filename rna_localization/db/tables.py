"""The schema (PRODUCT.md, "Database schema") and the bulk reads and writes on it.

Every identifier goes through :class:`psycopg2.sql.Identifier`; every value is
a bound parameter or travels by COPY.

Tables
------
``<structure>``
    One row per object (columns of :data:`~rna_localization.objects.OBJECT_COLUMNS`),
    ``(name, object_id)`` unique; distance and normalization columns are added
    by those steps.
``label_images``
    One row per extracted image and structure: its shape, voxel size and the
    label image itself, as its object voxels (``labels_format`` "runs", see
    :mod:`rna_localization.db.labels`), so that distances and re-analysis run
    from the database alone. A row here means "this image is extracted".
    Rows of the first release (the whole volume zlib-compressed,
    ``labels_format`` NULL) are still read, and converted by
    :func:`ensure_schema` (every ``extract`` calls it).
``distance_measurements``
    One row per (structure_1, structure_2, image) whose distances are measured,
    with the image's chance baseline (:mod:`rna_localization.db.results`).
``images``
    The metadata CSV (see :mod:`rna_localization.steps`).
``image_numbers``
    One number per image name, given the first time extraction meets it (in
    name order within one ``extract``); an object's ``id`` is its image's
    number times :data:`ID_STRIDE` plus its ``object_id``, so ids are fixed
    at insert and never renumbered.
``normalized_images``, ``normalization_references``
    Which images hold ``normalized_intensity`` values, under which group, and
    each group's single-molecule reference (:mod:`rna_localization.db.results`):
    what lets ``normalize`` recompute only the groups that changed.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd
from psycopg2 import sql

from .._faults import fault_point
from ..apertures import STORED_COLUMNS
from ..objects import OBJECT_COLUMNS, ObjectVoxels
from .labels import RUNS_FORMAT, decode_dense, decode_runs, encode_runs

__all__ = [
    "ID_STRIDE",
    "LabelImage",
    "add_baseline_columns",
    "convert_dense_label_images",
    "copy_frame",
    "copy_numbers",
    "delete_image",
    "drop_tables",
    "ensure_schema",
    "ensure_structure_table",
    "extracted_images",
    "lock_image",
    "read_columns",
    "read_label_image",
    "read_spot_centroids",
    "register_images",
    "relation_sizes",
    "vacuum_analyze",
    "write_image_objects",
]

#: An object's ``id`` is ``number * ID_STRIDE + object_id``, ``number`` being its
#: image's in ``image_numbers``: object ids are below 2**31 < 10**10, so ids are
#: unique, and their decimal digits show the image number and the object_id.
ID_STRIDE = 10**10

_STRUCTURE_COLUMNS = sql.SQL(
    """
    id bigserial PRIMARY KEY,
    name text NOT NULL,
    object_id integer NOT NULL,
    area bigint NOT NULL,
    centroid_z double precision NOT NULL,
    centroid_y double precision NOT NULL,
    centroid_x double precision NOT NULL,
    min_intensity double precision NOT NULL,
    max_intensity double precision NOT NULL,
    mean_intensity double precision NOT NULL,
    total_intensity double precision NOT NULL,
    spot_intensity double precision,
    background double precision,
    spot_centroid_z double precision,
    spot_centroid_y double precision,
    spot_centroid_x double precision,
    capture_correction double precision,
    clipped_light double precision
    """
)


def ensure_schema(cursor) -> None:
    """Create the package's bookkeeping tables if missing."""
    cursor.execute(
        """
        CREATE TABLE IF NOT EXISTS label_images (
            structure text NOT NULL,
            name text NOT NULL,
            shape_z integer NOT NULL,
            shape_y integer NOT NULL,
            shape_x integer NOT NULL,
            spacing_z double precision NOT NULL,
            spacing_y double precision NOT NULL,
            spacing_x double precision NOT NULL,
            n_objects integer NOT NULL,
            dtype text NOT NULL,
            labels bytea NOT NULL,
            raw_path text,
            segmentation_path text,
            PRIMARY KEY (structure, name)
        );
        -- What tells a replaced file from the one extracted (io.file_fingerprint); added
        -- to tables made before they existed (NULL there: unknown, not checked).
        ALTER TABLE label_images
            ADD COLUMN IF NOT EXISTS raw_size bigint,
            ADD COLUMN IF NOT EXISTS raw_mtime double precision,
            ADD COLUMN IF NOT EXISTS raw_sha256 text,
            ADD COLUMN IF NOT EXISTS segmentation_size bigint,
            ADD COLUMN IF NOT EXISTS segmentation_mtime double precision,
            ADD COLUMN IF NOT EXISTS segmentation_sha256 text;
        -- How `labels` is stored (db/labels.py); NULL: the first release's whole volume.
        ALTER TABLE label_images ADD COLUMN IF NOT EXISTS labels_format text;
        -- The PSF the aperture corrections used (capture.measure_psf on the raw stack) and
        -- how many fits it is the median of: 0 when the image's own were too few and it
        -- took its structure's median over the other images; NULL sigmas: no correction.
        ALTER TABLE label_images
            ADD COLUMN IF NOT EXISTS psf_axial_um double precision,
            ADD COLUMN IF NOT EXISTS psf_lateral_um double precision,
            ADD COLUMN IF NOT EXISTS psf_objects integer;
        -- Whether the single molecules' PSF changes with depth through the stack
        -- (capture.psf_depth_change): normalize then counts the image's objects against the
        -- single molecules at their own depth. NULL: not judged (too few fits, a PSF given).
        ALTER TABLE label_images ADD COLUMN IF NOT EXISTS psf_depth_changes boolean;
        CREATE TABLE IF NOT EXISTS distance_measurements (
            structure_1 text NOT NULL,
            structure_2 text NOT NULL,
            name text NOT NULL,
            PRIMARY KEY (structure_1, structure_2, name)
        );
        """
    )
    add_baseline_columns(cursor)
    _ensure_bookkeeping(cursor)
    convert_dense_label_images(cursor)


def convert_dense_label_images(cursor) -> int:
    """Store every label image the first release wrote (whole volume) as runs; how many.

    Each row is converted on its own (one label image in memory at a time),
    inside the caller's transaction: the database is converted whole or not at all.
    """
    cursor.execute("SELECT structure, name FROM label_images WHERE labels_format IS NULL "
                   "ORDER BY structure, name")
    keys = cursor.fetchall()
    for structure, name in keys:
        cursor.execute(
            "SELECT shape_z, shape_y, shape_x, dtype, labels FROM label_images "
            "WHERE structure = %s AND name = %s", (structure, name))
        *shape, dtype, blob = cursor.fetchone()
        objects = ObjectVoxels.from_label_image(decode_dense(blob, dtype, shape))
        cursor.execute(
            "UPDATE label_images SET labels = %s, dtype = %s, labels_format = %s "
            "WHERE structure = %s AND name = %s",
            (encode_runs(objects), objects.labels.dtype.name, RUNS_FORMAT, structure, name))
    return len(keys)


def _ensure_bookkeeping(cursor) -> None:
    """The image numbers behind the ids and the normalization's state, if missing.

    A database made before they existed gets them empty: its objects keep
    their ids (all below :data:`ID_STRIDE`, so no new id can equal one) and
    its next ``normalize`` recomputes every group. One normalized before each
    image could have its own reference gets its groups' ``reference_by`` =
    'group' and no image's reference: its next ``normalize`` with
    ``normalization.reference = "image"`` recomputes every group.
    """
    cursor.execute(
        """
        CREATE TABLE IF NOT EXISTS image_numbers (
            name text PRIMARY KEY,
            number bigint NOT NULL UNIQUE
        );
        CREATE TABLE IF NOT EXISTS normalized_images (
            structure text NOT NULL,
            name text NOT NULL,
            grp text NOT NULL,
            PRIMARY KEY (structure, name)
        );
        CREATE TABLE IF NOT EXISTS normalization_references (
            structure text NOT NULL,
            grp text NOT NULL,
            method text NOT NULL,
            group_by text NOT NULL,
            lower_threshold double precision NOT NULL,
            upper_threshold double precision NOT NULL,
            reference double precision NOT NULL,
            single_molecules bigint NOT NULL,
            objects bigint NOT NULL,
            molecules double precision NOT NULL,
            PRIMARY KEY (structure, grp)
        );
        ALTER TABLE normalized_images
            ADD COLUMN IF NOT EXISTS reference double precision,
            ADD COLUMN IF NOT EXISTS single_molecules bigint;
        ALTER TABLE normalization_references
            ADD COLUMN IF NOT EXISTS reference_by text NOT NULL DEFAULT 'group',
            ADD COLUMN IF NOT EXISTS own_reference bigint NOT NULL DEFAULT 0;
        """
    )


def add_baseline_columns(cursor) -> None:
    """Give ``distance_measurements`` the chance-baseline columns, if missing.

    ``chance_region`` (the region structure, "" for the whole volume),
    ``chance_distances`` and ``chance_expected`` (the expected percent at each
    of those distances): written with the distances, so gone whenever they are.
    A database made before these columns existed gets them here, NULL: the
    distributions step then computes the baseline and stores it.
    """
    cursor.execute(
        """
        ALTER TABLE distance_measurements
            ADD COLUMN IF NOT EXISTS chance_region text,
            ADD COLUMN IF NOT EXISTS chance_distances double precision[],
            ADD COLUMN IF NOT EXISTS chance_expected double precision[];
        """
    )


#: Percent of each page of a structure table its inserted rows fill. The distances and
#: normalize steps UPDATE every row of an image once each: with half of each page free,
#: most rows' new versions go on their own page (HOT updates: no index entry is written,
#: and the old version's space is reused by the next update without a VACUUM; 9 in 10 of
#: a full frame's run, none with full pages). On a full frame's 70,000 rows the UPDATE
#: took 0.08 s where it took 0.33 s with full pages, and the table, once updated, is no
#: larger than with full pages (which then hold two versions of every row).
STRUCTURE_FILLFACTOR = 50


def ensure_structure_table(cursor, structure: str) -> None:
    """Create the table of one structure if missing (pages filled to
    :data:`STRUCTURE_FILLFACTOR` percent; a table made before keeps its own)."""
    table = sql.Identifier(structure)
    cursor.execute(
        sql.SQL("CREATE TABLE IF NOT EXISTS {} ({}, UNIQUE (name, object_id)) "
                "WITH (fillfactor = {})").format(
            table, _STRUCTURE_COLUMNS, sql.Literal(STRUCTURE_FILLFACTOR)
        )
    )
    # Tables made before the matched-aperture columns existed get them (NULL until
    # their images are extracted again).
    cursor.execute(
        sql.SQL("ALTER TABLE {} ").format(table)
        + sql.SQL(", ").join(sql.SQL("ADD COLUMN IF NOT EXISTS {} double precision").format(
            sql.Identifier(column)) for column in STORED_COLUMNS)
    )


def register_images(cursor, names) -> None:
    """Give each of `names` not yet in ``image_numbers`` the next numbers, in the order given.

    ``extract`` registers every image it will write, sorted, before any is
    written: whichever order workers then commit them in, the ids are the
    same, and within one run they follow (name, object_id). The table lock
    (held to the end of the transaction) makes concurrent registrations wait.
    """
    names = list(dict.fromkeys(map(str, names)))
    cursor.execute("LOCK TABLE image_numbers IN SHARE ROW EXCLUSIVE MODE")
    cursor.execute(
        "INSERT INTO image_numbers (name, number) "
        "SELECT u.name, (SELECT coalesce(max(number), 0) FROM image_numbers) "
        "+ row_number() OVER (ORDER BY u.position) "
        "FROM unnest(%s::text[]) WITH ORDINALITY AS u(name, position) "
        "WHERE NOT EXISTS (SELECT 1 FROM image_numbers AS i WHERE i.name = u.name)",
        (names,),
    )


def _image_number(cursor, name: str) -> int:
    """The number of image `name`, registered now if it has none."""
    cursor.execute("SELECT number FROM image_numbers WHERE name = %s", (name,))
    row = cursor.fetchone()
    if row is None:
        register_images(cursor, [name])
        cursor.execute("SELECT number FROM image_numbers WHERE name = %s", (name,))
        row = cursor.fetchone()
    return int(row[0])


def relation_sizes(cursor, table: str) -> tuple[int, int]:
    """Bytes on disk of `table`: its rows (the heap), and with its indexes and TOAST."""
    name = sql.Identifier(table).as_string(cursor.connection)
    cursor.execute("SELECT pg_relation_size(%s::regclass), pg_total_relation_size(%s::regclass)",
                   (name, name))
    heap, total = cursor.fetchone()
    return int(heap), int(total)


def vacuum_analyze(db, tables) -> None:
    """``VACUUM (ANALYZE)`` each of `tables`: dead row versions made reusable, statistics fresh.

    Run after a bulk DELETE or UPDATE, so the space of the old row versions
    is reused instead of the table growing. VACUUM cannot run inside a
    transaction: this takes a connection of its own, in autocommit mode.

    Parameters
    ----------
    db : Database
    tables : iterable of str
    """
    connection = db.connect()
    try:
        connection.autocommit = True
        with connection.cursor() as cursor:
            for table in tables:
                cursor.execute(sql.SQL("VACUUM (ANALYZE) {}").format(sql.Identifier(table)))
    finally:
        connection.close()


def copy_frame(cursor, table: sql.Composable, frame: pd.DataFrame) -> None:
    """COPY a DataFrame's rows into `table` (its columns named after the frame's)."""
    buffer = io.StringIO()
    frame.to_csv(buffer, header=False, index=False)
    buffer.seek(0)
    columns = sql.SQL(", ").join(map(sql.Identifier, frame.columns))
    statement = sql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT csv)").format(table, columns)
    cursor.copy_expert(statement.as_string(cursor.connection), buffer)


#: Binary layouts of the numeric column types, by PostgreSQL type OID (int2, int4, int8,
#: float4, float8), for :func:`copy_numbers`.
_NUMERIC_OIDS = {21: ">i2", 23: ">i4", 20: ">i8", 700: ">f4", 701: ">f8"}


def copy_numbers(cursor, table: sql.Composable, frame: pd.DataFrame, type_oids) -> bool:
    """COPY a DataFrame of numbers into `table` in binary, as :func:`copy_frame` would store them.

    Binary skips formatting every float as text in pandas (14 ms for 2,300 rows
    of four columns, 150 ms for 46,000 of two) and parsing it back in the
    server; the values stored are the same bits. NaN and missing values
    (``pd.NA`` of a nullable ``Int64`` column) become NULL, as in
    :func:`copy_frame`'s CSV.

    Parameters
    ----------
    cursor : psycopg2 cursor
    table : psycopg2.sql.Composable
    frame : DataFrame
        Columns named like columns of `table`.
    type_oids : sequence of int
        The PostgreSQL type OID of each of `frame`'s columns in `table`.

    Returns
    -------
    bool
        False, writing nothing, when a column is not of a numeric type above
        or does not fit its column (floats, or integers out of range, for an
        integer column; floats other than float64 into double precision):
        the caller then uses :func:`copy_frame`, whose error, if any, names
        the value.
    """
    n = len(frame)
    parts = [np.full((n, 1), len(frame.columns), dtype=">i2").view(np.uint8)]
    keep = [np.ones((n, 2), dtype=bool)]
    for series, oid in zip((frame[c] for c in frame.columns), type_oids, strict=True):
        kind = _NUMERIC_OIDS.get(oid)
        dtype = getattr(series.dtype, "numpy_dtype", series.dtype)  # Int64 → int64
        if kind is None or not isinstance(dtype, np.dtype) or dtype.kind not in "iuf":
            return False
        kind = np.dtype(kind)
        if dtype.kind == "f" and (dtype.itemsize != 8 or kind.itemsize != 8):
            # Text keeps what binary would not: a float32's shortest decimal (0.1, not
            # 0.10000000149011612), and an error for a double too large for a real.
            return False
        null = series.isna().to_numpy(dtype=bool)
        values = series.to_numpy(dtype=dtype, na_value=0)
        if kind.kind == "i":
            info = np.iinfo(kind)
            if dtype.kind == "f" or (n and (values.min() < info.min or values.max() > info.max)):
                return False
        data = values.astype(kind)
        parts += [np.where(null, -1, kind.itemsize).astype(">i4").reshape(n, 1).view(np.uint8),
                  data.reshape(n, 1).view(np.uint8)]
        keep += [np.ones((n, 4), dtype=bool), np.repeat(~null[:, None], kind.itemsize, axis=1)]
    # The rows as fixed-width bytes, then the data bytes of the NULL fields left out.
    rows = np.hstack(parts)[np.hstack(keep)]
    columns = sql.SQL(", ").join(map(sql.Identifier, frame.columns))
    statement = sql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT binary)").format(table, columns)
    cursor.copy_expert(statement.as_string(cursor.connection),
                       io.BytesIO(_COPY_SIGNATURE + rows.tobytes() + struct.pack(">h", -1)))
    return True


# Binary COPY of object rows: ``id`` bigint, ``name`` text, ``object_id`` integer, ``area`` bigint,
# the rest double precision (see _STRUCTURE_COLUMNS). Sending binary doubles skips
# formatting them as text in pandas and parsing them back in the server: 5x faster,
# and the stored values are the same bits (NaN stays NaN).
_BINARY_KINDS = {"id": ">i8", "object_id": ">i4", "area": ">i8"}
_COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)


def _copy_objects(cursor, structure: str, name: str, objects: pd.DataFrame, number: int) -> None:
    """COPY one image's object rows by binary COPY.

    The columns of :func:`~rna_localization.objects.measure_objects`, and
    those of :data:`~rna_localization.apertures.STORED_COLUMNS` that `objects` has;
    ``id`` is ``number * ID_STRIDE + object_id``.
    """
    columns = list(OBJECT_COLUMNS) + [c for c in STORED_COLUMNS if c in objects.columns]
    encoded = name.encode("utf-8")
    values = {c: objects[c].to_numpy() for c in columns}
    ids = values["object_id"]
    if ids.size and (ids.min() < 1 or ids.max() > np.iinfo(np.int32).max):
        msg = f"image {name!r}: object ids must be 1..2**31-1 (the table's integer column)."
        raise ValueError(msg)
    values["id"] = number * ID_STRIDE + ids.astype(np.int64)
    fields = [("n_fields", ">i2"), ("id_size", ">i4"), ("id", ">i8"),
              ("name_size", ">i4"), ("name", f"S{len(encoded)}")]
    for column in columns:
        fields += [(f"{column}_size", ">i4"), (column, _BINARY_KINDS.get(column, ">f8"))]
    rows = np.empty(len(objects), dtype=fields)
    rows["n_fields"] = 2 + len(columns)
    rows["id_size"] = 8
    rows["id"] = values["id"]
    rows["name_size"] = len(encoded)
    rows["name"] = encoded
    for column in columns:
        kind = np.dtype(_BINARY_KINDS.get(column, ">f8"))
        rows[f"{column}_size"] = kind.itemsize
        rows[column] = values[column]
    data = io.BytesIO(_COPY_SIGNATURE + rows.tobytes() + struct.pack(">h", -1))
    names = sql.SQL(", ").join(map(sql.Identifier, ["id", "name", *columns]))
    statement = sql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT binary)").format(
        sql.Identifier(structure), names)
    cursor.copy_expert(statement.as_string(cursor.connection), data)


# The lock writers of one image's objects take (parameters: structure, name).
_LOCK_IMAGE = "SELECT pg_advisory_xact_lock(hashtext(%s), hashtext(%s))"


def lock_image(cursor, structure: str, name: str) -> None:
    """Hold, until the transaction ends, the lock writers of one image's objects take.

    Serializes writers of one image across processes and concurrent runs; a
    reader that stores something computed from the image's label image holds
    it so that the image cannot be replaced in between.
    """
    cursor.execute(_LOCK_IMAGE, (structure, name))


def _lock_and_look(cursor, structure: str, name: str) -> tuple[bool, int | None, bool]:
    """Take the image's lock, then: is it extracted, its number (None: not registered), and
    whether the normalization's bookkeeping tables exist. One round trip.

    The statements run in order in the transaction, so what the SELECT sees is what
    the previous holder of the lock committed.
    """
    cursor.execute(
        _LOCK_IMAGE + "; SELECT EXISTS (SELECT 1 FROM label_images WHERE structure = %s AND "
        "name = %s), (SELECT number FROM image_numbers WHERE name = %s), "
        "to_regclass('normalized_images') IS NOT NULL",
        (structure, name, structure, name, name),
    )
    extracted, number, normalized = cursor.fetchone()
    return bool(extracted), None if number is None else int(number), bool(normalized)


def _delete_statements(structure: str, name: str, *,
                       normalized: bool) -> tuple[list[sql.Composable], list]:
    """The DELETEs of one image's rows of one structure, and their parameters, to send at once."""
    statements = [
        sql.SQL("DELETE FROM {} WHERE name = %s").format(sql.Identifier(structure)),
        sql.SQL("DELETE FROM label_images WHERE structure = %s AND name = %s"),
        sql.SQL("DELETE FROM distance_measurements WHERE name = %s AND "
                "(structure_1 = %s OR structure_2 = %s)"),
    ]
    params = [name, structure, name, name, structure, structure]
    if normalized:
        # Its normalized_intensity is gone with its rows, and its group's reference is out
        # of date (the image may not come back): the next normalize recomputes that group.
        statements += [
            sql.SQL("DELETE FROM normalization_references WHERE structure = %s AND grp IN "
                    "(SELECT grp FROM normalized_images WHERE structure = %s AND name = %s)"),
            sql.SQL("DELETE FROM normalized_images WHERE structure = %s AND name = %s"),
        ]
        params += [structure, structure, name, structure, name]
    return statements, params


def _delete_rows(cursor, structure: str, name: str) -> None:
    cursor.execute("SELECT to_regclass('normalized_images') IS NOT NULL")
    statements, params = _delete_statements(structure, name, normalized=cursor.fetchone()[0])
    cursor.execute(sql.SQL("; ").join(statements), params)


def write_image_objects(
    cursor,
    structure: str,
    name: str,
    objects: pd.DataFrame,
    label_image: np.ndarray | ObjectVoxels,
    spacing,
    *,
    raw_path: str = "",
    segmentation_path: str = "",
    raw_fingerprint=None,
    segmentation_fingerprint=None,
    psf=None,
    psf_depth_changes: bool | None = None,
    overwrite: bool = False,
) -> bool:
    """Write one image's objects and label image, replacing what it had.

    Call inside a transaction: the image is then entirely in the database or
    not at all. Returns False (and writes nothing) when the image is already
    extracted and `overwrite` is false. The fingerprints
    (:class:`~rna_localization.io.FileFingerprint`, optional) of the files read
    let the next extraction see that one was replaced. `label_image` is a
    (Z, Y, X) label image or its :class:`~rna_localization.objects.ObjectVoxels`;
    only its object voxels are stored (:mod:`rna_localization.db.labels`).
    `psf`, ``(axial_um, lateral_um, fits)`` or None, is the PSF the aperture
    corrections used: measured on the raw stack
    (:func:`rna_localization.capture.measure_psf`), the other images' median
    with ``fits`` 0, or the sigmas None (and the fits counted) where none was.
    `psf_depth_changes` says whether that PSF changes with depth through the stack
    (:func:`rna_localization.capture.psf_depth_change`; None: not judged).
    """
    # Round trips, not statements, are what a small image's write costs: the lock and
    # every check go in one, the DELETEs of what the image had and its label_images row
    # in another, then the COPY of its objects.
    extracted, number, normalized = _lock_and_look(cursor, structure, name)
    if extracted and not overwrite:
        return False
    if number is None:  # extract registers its images first; a lone call may not have
        number = _image_number(cursor, name)
    n_rows = len(objects)
    voxels = (label_image if isinstance(label_image, ObjectVoxels)
              else ObjectVoxels.from_label_image(label_image))
    blob = encode_runs(voxels)
    fingerprints = [value for fingerprint in (raw_fingerprint, segmentation_fingerprint)
                    for value in ((fingerprint.size, fingerprint.mtime, fingerprint.sha256)
                                  if fingerprint is not None else (None, None, None))]
    statements, params = _delete_statements(structure, name, normalized=normalized)
    statements.append(sql.SQL(
        """
        INSERT INTO label_images (structure, name, shape_z, shape_y, shape_x, spacing_z,
            spacing_y, spacing_x, n_objects, dtype, labels, labels_format, raw_path,
            segmentation_path, raw_size, raw_mtime, raw_sha256, segmentation_size,
            segmentation_mtime, segmentation_sha256, psf_axial_um, psf_lateral_um, psf_objects,
            psf_depth_changes)
        VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s,
                %s, %s, %s, %s)
        """))
    psf_values = ((None if psf[0] is None else float(psf[0]),
                   None if psf[1] is None else float(psf[1]), int(psf[2]))
                  if psf is not None else (None, None, None))
    params += [structure, name, *map(int, voxels.shape), *map(float, spacing), n_rows,
               voxels.labels.dtype.name, blob, RUNS_FORMAT, raw_path, segmentation_path,
               *fingerprints, *psf_values,
               None if psf_depth_changes is None else bool(psf_depth_changes)]
    cursor.execute(sql.SQL("; ").join(statements), params)
    _copy_objects(cursor, structure, name, objects, number)
    fault_point("extract")  # crash tests: rows written, transaction not committed
    return True


_EXTRACTED_COLUMNS = ["structure", "name", "n_objects", "spacing_z", "spacing_y", "spacing_x",
                      "raw_path", "raw_size", "raw_mtime", "raw_sha256", "segmentation_path",
                      "segmentation_size", "segmentation_mtime", "segmentation_sha256",
                      "psf_axial_um", "psf_lateral_um", "psf_objects", "psf_depth_changes"]


def extracted_images(cursor) -> pd.DataFrame:
    """Every extracted image: ``structure``, ``name``, ``n_objects``, the voxel size (z, y, x) it
    was extracted at, the path, size, mtime and SHA-256 of its raw and segmentation files, and
    the PSF its aperture corrections used (``psf_axial_um``, ``psf_lateral_um``, and
    ``psf_objects``, the fits it is the median of: 0 for its structure's median over the other
    images; NaN where there was none), and ``psf_depth_changes`` (True where that PSF changes
    with depth through the stack; False where it does not or was not judged). A column the
    table lacks (a database made before it, not extracted into since) reads as NULL (False
    for ``psf_depth_changes``)."""
    cursor.execute("SELECT column_name FROM information_schema.columns "
                   "WHERE table_schema = current_schema() AND table_name = 'label_images'")
    present = {row[0] for row in cursor.fetchall()}
    cursor.execute(sql.SQL("SELECT {} FROM label_images").format(sql.SQL(", ").join(
        sql.Identifier(column) if column in present
        else sql.SQL("NULL AS {}").format(sql.Identifier(column))
        for column in _EXTRACTED_COLUMNS)))
    table = pd.DataFrame(cursor.fetchall(), columns=_EXTRACTED_COLUMNS).astype(
        {"spacing_z": float, "spacing_y": float, "spacing_x": float, "psf_axial_um": float,
         "psf_lateral_um": float, "psf_objects": float})
    table["psf_depth_changes"] = [value is True for value in table["psf_depth_changes"]]
    return table


def delete_image(cursor, structure: str, name: str) -> None:
    """Remove one image's objects of one structure (and what was measured from them)."""
    lock_image(cursor, structure, name)
    _delete_rows(cursor, structure, name)


@dataclass(frozen=True)
class LabelImage:
    """A label image as stored by extraction, with its voxel size in microns.

    ``objects`` holds its object voxels as stored (what the distances step
    and the chance baseline take); ``labels``, the dense (Z, Y, X) int32
    label image (4 bytes a voxel of the stack), is built from them when first
    asked for (the plots, the viewer).
    """

    structure: str
    name: str
    objects: ObjectVoxels = field(repr=False)
    spacing: tuple[float, float, float]
    n_objects: int

    @cached_property
    def labels(self) -> np.ndarray:
        return self.objects.to_label_image(np.int32)


def read_spot_centroids(cursor, structure: str, name: str) -> pd.DataFrame:
    """``object_id`` and ``spot_centroid_z/y/x`` of one image's objects that have them."""
    cursor.execute(
        sql.SQL("SELECT object_id, spot_centroid_z, spot_centroid_y, spot_centroid_x FROM {} "
                "WHERE name = %s AND spot_centroid_z IS NOT NULL ORDER BY object_id").format(
            sql.Identifier(structure)),
        (name,),
    )
    return pd.DataFrame(cursor.fetchall(), columns=["object_id", "spot_centroid_z",
                                                    "spot_centroid_y", "spot_centroid_x"])


def read_label_image(cursor, structure: str, name: str) -> LabelImage | None:
    """The stored label image of one image and structure, or None if not extracted.

    Its ``objects`` are decoded here (a few bytes per object voxel); its dense
    ``labels`` only when a caller asks for them. A row of the first release
    (whole volume) is read too; one in a format this version does not know is
    a ValueError saying to run ``rna-localization extract --overwrite``.
    """
    # Every column, named by the answer: a database of the first release has no
    # labels_format column until the next extract converts it (ensure_schema), and its
    # rows are then all whole volumes. One round trip either way.
    cursor.execute("SELECT * FROM label_images WHERE structure = %s AND name = %s",
                   (structure, name))
    row = cursor.fetchone()
    if row is None:
        return None
    row = dict(zip((column.name for column in cursor.description), row))
    shape = (row["shape_z"], row["shape_y"], row["shape_x"])
    spacing = (row["spacing_z"], row["spacing_y"], row["spacing_x"])
    n_objects, dtype, blob, kind = row["n_objects"], row["dtype"], row["labels"], row.get("labels_format")
    if kind == RUNS_FORMAT:
        objects = decode_runs(blob, shape)
    elif kind is not None:
        msg = (f"label image {structure} {name!r} is stored as {kind!r}, a format this version "
               f"does not know: update rna_localization, or run `rna-localization extract "
               f"--overwrite` to store it again.")
        raise ValueError(msg)
    else:  # the first release's whole volume, until ensure_schema converts it
        objects = ObjectVoxels.from_label_image(decode_dense(blob, dtype, shape))
    return LabelImage(structure, name, objects, tuple(spacing), n_objects)


def read_columns(cursor, table: str, columns) -> pd.DataFrame:
    """Columns `columns` of every row of `table`, in no particular order."""
    columns = list(columns)
    cursor.execute(sql.SQL("SELECT {} FROM {}").format(
        sql.SQL(", ").join(map(sql.Identifier, columns)), sql.Identifier(table)))
    return pd.DataFrame(cursor.fetchall(), columns=columns)


def drop_tables(cursor, tables) -> None:
    """Drop each of `tables` that exists."""
    for table in tables:
        cursor.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(table)))
