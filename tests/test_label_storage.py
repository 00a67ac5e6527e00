"""Label images stored as their object voxels: round trips, labeling a mask's voxels, the first release's rows."""

from __future__ import annotations

import tracemalloc
import zlib

import numpy as np
import pytest

from rna_localization import Config
from rna_localization.db import Database, read_label_image
from rna_localization.db.labels import decode_runs, encode_runs
from rna_localization.db.tables import ensure_schema, extracted_images
from rna_localization.objects import ObjectVoxels, measure_objects, object_voxels

import oracles


def _round_trip(image: np.ndarray) -> np.ndarray:
    blob = encode_runs(ObjectVoxels.from_label_image(image))
    return decode_runs(blob, image.shape).to_label_image(image.dtype)


def _random_labels(rng, shape, n_labels, dtype, fill) -> np.ndarray:
    image = np.zeros(shape, dtype)
    where = rng.random(shape) < fill
    image[where] = rng.integers(1, n_labels + 1, int(where.sum()))
    return image


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.uint32, np.int32, np.int64])
@pytest.mark.parametrize("fill", [0.02, 0.3, 0.9])
def test_random_label_images_come_back_voxel_for_voxel(dtype, fill):
    rng = np.random.default_rng(int(fill * 100) + np.dtype(dtype).itemsize)
    top = {np.uint8: 255, np.uint16: 65_535}.get(dtype, 2**31 - 1)
    for shape in [(3, 7, 11), (1, 1, 40), (5, 16, 9)]:
        image = _random_labels(rng, shape, top, dtype, fill)
        # Runs of one label, several voxels long, as real objects make them.
        image[0, 0, : shape[2] // 2] = top
        back = _round_trip(image)
        np.testing.assert_array_equal(back, image)


@pytest.mark.parametrize("case", ["empty", "one object", "last voxel", "first voxel", "full"])
def test_edge_cases_come_back(case):
    image = np.zeros((4, 5, 6), np.int32)
    if case == "one object":
        image[1:3, 2:4, 1:5] = 7
    elif case == "last voxel":
        image[-1, -1, -1] = 2**31 - 1
    elif case == "first voxel":
        image[0, 0, 0] = 3
    elif case == "full":
        image[:] = 1
        image[2:, 3:] = 2  # runs cross row and plane ends
    np.testing.assert_array_equal(_round_trip(image), image)


def test_labels_keep_the_smallest_dtype_and_the_blob_grows_with_the_objects():
    image = np.zeros((20, 256, 256), np.int32)
    image[3, 10:13, 10:13] = 70_000
    objects = decode_runs(encode_runs(ObjectVoxels.from_label_image(image)), image.shape)
    assert objects.labels.dtype == np.uint32
    assert objects.largest == 70_000
    image[3, 10:13, 10:13] = 300
    small = encode_runs(ObjectVoxels.from_label_image(image))
    assert decode_runs(small, image.shape).labels.dtype == np.uint16
    # One 9-voxel object in 1.3 M voxels: a few dozen bytes, not the volume's zlib stream.
    assert len(small) < 100 < len(zlib.compress(image.astype(np.uint16).tobytes(), 1))


def test_a_blob_of_another_format_or_shape_is_refused():
    with pytest.raises(ValueError, match="not in the 'runs' format"):
        decode_runs(zlib.compress(b"\0" * 64), (4, 4, 4))
    image = np.zeros((2, 2, 2), np.uint8)
    image[-1, -1, -1] = 1
    with pytest.raises(ValueError, match=r"outside a \(1, 2, 2\) image"):
        decode_runs(encode_runs(ObjectVoxels.from_label_image(image)), (1, 2, 2))


@pytest.mark.parametrize("shape", [(9, 6, 7), (8, 7, 1), (1, 5, 9), (6, 1, 6), (1, 1, 40)])
@pytest.mark.parametrize("dtype", [bool, np.uint8, np.uint16, np.int32, ">u2"])
def test_object_voxels_label_a_mask_as_a_flood_fill_does(shape, dtype):
    rng = np.random.default_rng(sum(shape))
    for fill in (0.0, 0.1, 0.35, 0.6, 0.9, 1.0):
        mask = rng.random(shape) < fill
        if min(shape[1:]) > 1:
            # An object winding through every plane, joined only through later planes,
            # and planes whose faces touch only in places.
            mask[:, 0, 0] = mask[-1, 0, :] = mask[:, 0, -1] = True
            mask[shape[0] // 2, 2:, 3:] = False
        segmentation = mask.astype(dtype)
        if dtype is np.uint8:
            segmentation *= np.uint8(255)
        found = object_voxels(segmentation)
        expected = oracles.flood_fill_labels(mask)
        np.testing.assert_array_equal(found.to_label_image(np.int64), expected)
        assert found.labels.dtype == (np.uint8 if expected.max() < 256 else np.uint16)


def test_nonzero_labels_give_positions_values_and_their_range_as_numpy_does():
    """nonzero_labels against np.flatnonzero and indexing: every width, signed values,
    big-endian arrays (their values, not their bytes), unaligned buffers, none at all."""
    from rna_localization._components import nonzero_labels

    rng = np.random.default_rng(15)
    for size in (0, 1, 7, 9, 1000):
        for dtype in (np.uint8, np.int8, np.uint16, np.int32, np.int64, ">i4", ">u2"):
            values = rng.integers(-100, 300, size) * (rng.random(size) < 0.1)
            flat = np.clip(values, *(np.iinfo(np.dtype(dtype)).min, np.iinfo(np.dtype(dtype)).max))
            flat = flat.astype(dtype)
            where = np.flatnonzero(flat)
            for array in (flat, np.frombuffer(b"\0" + flat.tobytes(), flat.dtype, offset=1)):
                voxels, labels, low, high = nonzero_labels(array)
                np.testing.assert_array_equal(voxels, where)
                np.testing.assert_array_equal(labels, flat[where])
                assert (low, high) == ((int(flat[where].min()), int(flat[where].max()))
                                       if where.size else (0, 0))


def test_nonzero_voxels_and_face_components_against_numpy_and_scikit_image():
    from rna_localization._components import face_components, nonzero_voxels

    rng = np.random.default_rng(5)
    # Past 8-byte words, odd tails, every dtype width; long runs of zeros.
    for size in (0, 1, 7, 8, 9, 63, 1000):
        for dtype in (np.uint8, np.int8, np.uint16, np.int64):
            flat = (rng.random(size) < 0.05).astype(dtype) * rng.integers(1, 100, size).astype(dtype)
            np.testing.assert_array_equal(nonzero_voxels(flat), np.flatnonzero(flat))
            # The same values a byte or three into a buffer (a stack mapped at an odd
            # offset of its file): words that are not aligned.
            for shift in (1, 3):
                buffer = np.zeros(flat.nbytes + shift, np.uint8)
                moved = buffer[shift:].view(flat.dtype)
                moved[:] = flat
                np.testing.assert_array_equal(nonzero_voxels(moved), np.flatnonzero(flat))
    # Sparse objects in a larger volume: the same objects and order as scikit-image.
    mask = rng.random((12, 40, 50)) < 0.2
    labels, count = face_components(np.flatnonzero(mask), mask.shape)
    expected = oracles.label(mask)
    assert count == expected.max()
    np.testing.assert_array_equal(labels, expected[mask])


def test_find_gives_each_voxels_position_by_merge_and_by_search_alike():
    """ObjectVoxels.find against a dictionary of positions: many ascending queries (merged,
    duplicates and voxels past both ends included), few or unordered ones (searched)."""
    rng = np.random.default_rng(9)
    shape = (6, 20, 30)
    voxels = np.flatnonzero(rng.random(shape) < 0.3)
    objects = ObjectVoxels(shape, voxels, np.ones(voxels.size, np.uint8))
    where = {int(v): i for i, v in enumerate(voxels)}
    size = int(np.prod(shape))
    ascending = np.sort(rng.integers(-3, size + 3, 2000))
    for flat in (ascending, ascending[::-1], ascending[:5], np.array([], np.int64),
                 np.array([voxels[-1], voxels[-1], size + 8])):
        expected = [where.get(int(v), -1) for v in flat]
        np.testing.assert_array_equal(objects.find(flat), expected)


def test_voxel_box_bounds_voxels_as_their_coordinates_do():
    """voxel_box against np.unravel_index: ascending voxels (one division per row), shuffled
    ones, one voxel, and a box already wider than the voxels (left as it is)."""
    from rna_localization._components import voxel_box

    rng = np.random.default_rng(4)
    shape = (7, 13, 11)
    voxels = np.flatnonzero(rng.random(shape) < 0.01)
    for flat in (voxels, rng.permutation(voxels), voxels[3:4]):
        box = np.array([shape[0], -1, shape[1], -1, shape[2], -1])
        voxel_box(flat, shape[1], shape[2], box)
        coords = np.unravel_index(flat, shape)
        np.testing.assert_array_equal(box, [f(c) for c in coords for f in (np.min, np.max)])
    box = np.array([0, 6, 0, 12, 0, 10])
    voxel_box(voxels[3:4], shape[1], shape[2], box)
    np.testing.assert_array_equal(box, [0, 6, 0, 12, 0, 10])


def test_object_voxels_keep_a_label_image_and_refuse_what_label_objects_refuses():
    image = np.zeros((2, 3, 4), np.uint16)
    image[0, 0, :2], image[1, 2, 3] = 400, 2
    found = object_voxels(image)
    np.testing.assert_array_equal(found.to_label_image(), image)
    assert found.labels.dtype == np.uint16
    with pytest.raises(ValueError, match=r"negative labels \(smallest -1\)"):
        object_voxels(np.full((1, 2, 2), -1, np.int16))
    with pytest.raises(TypeError, match="Threshold probability maps"):
        object_voxels(np.ones((1, 2, 2), np.float32))
    assert object_voxels(np.zeros((2, 2, 2), np.uint8)).voxels.size == 0


@pytest.mark.parametrize(("voxels", "labels", "message"), [
    ([5, 2, 9], [1, 1, 2], "ascending"),          # out of order: binary searches go wrong
    ([2, 2, 9], [1, 1, 2], "ascending"),          # a voxel twice
    ([2, 5, 24], [1, 1, 2], "shape"),             # beyond the (2, 3, 4) volume
    ([-1, 5, 9], [1, 1, 2], "shape"),
    ([2, 5, 9], [1, 0, 2], "label >= 1"),         # a background voxel listed as an object's
    ([2, 5, 9], [1, 1], "one length"),
])
def test_hand_built_object_voxels_are_checked(voxels, labels, message):
    with pytest.raises(ValueError, match=message):
        ObjectVoxels((2, 3, 4), np.array(voxels), np.array(labels, np.uint8))
    # The same objects, well formed, are accepted.
    good = ObjectVoxels((2, 3, 4), np.array([2, 5, 9]), np.array([1, 1, 2], np.uint8))
    assert good.to_label_image().reshape(-1)[[2, 5, 9]].tolist() == [1, 1, 2]


def test_measurements_of_object_voxels_match_the_oracle():
    rng = np.random.default_rng(3)
    mask = rng.random((6, 20, 17)) > 0.7
    raw = rng.integers(0, 5000, mask.shape).astype(np.uint16)
    table = measure_objects(object_voxels(mask), raw)
    expected = oracles.objects(oracles.label(mask), raw)
    np.testing.assert_allclose(table[list(expected.columns)].to_numpy(float),
                               expected.to_numpy(float), rtol=1e-12)


# ------------------------------------------------- the first release's rows
# label_images as the first release made it: no labels_format, no fingerprints.
_FIRST_RELEASE_TABLE = """
CREATE TABLE label_images (
    structure text NOT NULL, name text NOT NULL,
    shape_z integer NOT NULL, shape_y integer NOT NULL, shape_x integer NOT NULL,
    spacing_z double precision NOT NULL, spacing_y double precision NOT NULL,
    spacing_x double precision NOT NULL, n_objects integer NOT NULL, dtype text NOT NULL,
    labels bytea NOT NULL, raw_path text, segmentation_path text,
    PRIMARY KEY (structure, name))
"""


def _first_release_row(cursor, name: str, image: np.ndarray) -> bytes:
    blob = zlib.compress(image.astype(np.uint16).tobytes(), 1)
    cursor.execute(
        "INSERT INTO label_images VALUES ('rna', %s, %s, %s, %s, 0.2, 0.065, 0.065, %s, 'uint16', %s, "
        "'raw.tif', 'seg.tif')",
        (name, *image.shape, len(np.unique(image[image != 0])), blob))
    return blob


def test_first_release_rows_are_read_then_converted_to_runs(tmp_path, database_name):
    db = Database.from_config(Config.from_flat(data_dir=str(tmp_path), database_name=database_name))
    rng = np.random.default_rng(5)
    images = {"a": _random_labels(rng, (4, 30, 40), 900, np.uint16, 0.05),
              "b": np.zeros((2, 3, 4), np.uint16)}
    with db.transaction() as cursor:
        cursor.execute(_FIRST_RELEASE_TABLE)
        dense = {name: _first_release_row(cursor, name, image) for name, image in images.items()}
    # Read as they are, before any conversion (e.g. `distances` on an old database).
    with db.transaction() as cursor:
        stored = read_label_image(cursor, "rna", "a")
    np.testing.assert_array_equal(stored.labels, images["a"])
    assert stored.spacing == (0.2, 0.065, 0.065)
    # The columns added since (fingerprints, PSF) read as missing, not as an error.
    with db.transaction() as cursor:
        listed = extracted_images(cursor).sort_values("name", ignore_index=True)
    assert listed["name"].tolist() == ["a", "b"]
    assert listed["spacing_y"].tolist() == [0.065, 0.065]
    assert listed[["raw_sha256", "psf_axial_um", "psf_lateral_um", "psf_objects"]].isna().all(
        axis=None)
    # The next extract's ensure_schema converts every row.
    with db.transaction() as cursor:
        ensure_schema(cursor)
    rows = db.query("SELECT name, labels_format, dtype, labels FROM label_images ORDER BY name")
    assert rows["labels_format"].tolist() == ["runs", "runs"]
    assert rows["dtype"].tolist() == ["uint16", "uint8"]
    assert all(bytes(blob) != dense[name] for name, blob in zip(rows["name"], rows["labels"]))
    with db.transaction() as cursor:
        for name, image in images.items():
            np.testing.assert_array_equal(read_label_image(cursor, "rna", name).labels, image)
        ensure_schema(cursor)  # nothing left to convert: a no-op


def test_an_unknown_format_is_refused_with_the_fix(tmp_path, database_name):
    db = Database.from_config(Config.from_flat(data_dir=str(tmp_path), database_name=database_name))
    with db.transaction() as cursor:
        cursor.execute(_FIRST_RELEASE_TABLE)
        _first_release_row(cursor, "a", np.ones((1, 2, 2), np.uint16))
        ensure_schema(cursor)
        cursor.execute("UPDATE label_images SET labels_format = 'octree'")
    with db.transaction() as cursor, pytest.raises(ValueError, match=r"'octree'.*extract --overwrite"):
        read_label_image(cursor, "rna", "a")


def test_object_voxels_never_hold_a_whole_stack_label_image():
    # label_objects returns 4 bytes per voxel; object_voxels holds a few bytes per
    # object voxel (and its scan's small chunks), far less than the uint8 mask here.
    rng = np.random.default_rng(11)
    mask = np.zeros((40, 256, 256), np.uint8)
    mask.reshape(-1)[rng.choice(mask.size, 2_000, replace=False)] = 255
    tracemalloc.start()
    try:
        found = object_voxels(mask)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert found.largest > 1_500
    assert peak < 0.5 * mask.nbytes  # a whole int32 label image would be 4x mask.nbytes
