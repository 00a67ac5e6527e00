import numpy as np
import pandas as pd
import pytest

from rna_localization import label_objects, measure_objects
from rna_localization.objects import OBJECT_COLUMNS

import oracles


def _same_partition(a, b):
    """Two label images describe the same objects (whatever the numbers)."""
    pairs = {(x, y) for x, y in zip(a.ravel(), b.ravel())}
    return len(pairs) == len(np.unique(a)) == len(np.unique(b))


@pytest.mark.parametrize("dtype", [bool, np.uint8, np.uint16, np.int32, np.int64])
def test_binary_mask_is_split_into_face_connected_components(dtype):
    rng = np.random.default_rng(3)
    mask = rng.random((6, 12, 14)) > 0.7
    # 255 for uint8 (ImageJ's masks), 1 otherwise; the mask's own dtype, never promoted.
    segmentation = mask.astype(dtype) * np.array(255 if dtype == np.uint8 else 1, dtype=dtype)
    assert segmentation.dtype == np.dtype(dtype)
    labels = label_objects(segmentation)
    assert labels.dtype == np.int32
    assert _same_partition(labels, oracles.label(mask))


def test_diagonal_neighbours_are_separate_objects():
    mask = np.zeros((2, 2, 2), np.uint8)
    mask[0, 0, 0] = mask[1, 1, 0] = mask[0, 1, 1] = 255  # edge contacts only
    assert label_objects(mask).max() == 3


def test_label_image_keeps_its_labels():
    image = np.zeros((3, 5, 5), np.uint16)
    image[0, 0, :2] = 7
    image[2, 4, 4] = 3
    image[1, 2, 2] = 7  # not connected to the other 7s: still one object
    labels = label_objects(image)
    np.testing.assert_array_equal(labels, image)


@pytest.mark.parametrize("dtype", [np.int64, np.uint64, np.uint32])
def test_wide_label_images_keep_their_labels_and_refuse_what_int32_cannot_hold(dtype):
    image = np.zeros((2, 4, 4), dtype)
    image[0, 0, :2] = 2**31 - 1  # the largest label the tables' integer column holds
    image[1, 3, 3] = 5
    labels = label_objects(image)
    assert labels.dtype == np.int32
    assert labels[0, 0, 0] == 2**31 - 1
    assert labels[1, 3, 3] == 5
    image[1, 3, 3] = 2**31
    with pytest.raises(ValueError, match=f"label {2**31} does not fit in int32"):
        label_objects(image)


def test_single_label_value_is_a_mask():
    image = np.zeros((1, 1, 5), np.uint16)
    image[0, 0, [0, 3]] = 9
    np.testing.assert_array_equal(label_objects(image)[0, 0], [1, 0, 0, 2, 0])


def test_float_and_2d_segmentations_are_refused():
    with pytest.raises(TypeError, match="float"):
        label_objects(np.ones((2, 3, 3), np.float32))
    with pytest.raises(ValueError, match=r"3D \(Z, Y, X\).*2 dimensions"):
        label_objects(np.ones((3, 3), np.uint8))
    with pytest.raises(ValueError, match="negative"):
        label_objects(np.full((1, 2, 2), -1, np.int16))


def test_validity_checks_on_every_path():
    # Empty: zero objects, int32 zeros.
    empty = label_objects(np.zeros((2, 3, 3), np.uint16))
    assert empty.dtype == np.int32
    assert not empty.any()
    # A negative label hidden among positive ones is found, not only an all-negative image.
    image = np.zeros((2, 3, 3), np.int64)
    image[0, 0, 0], image[1, 2, 2] = 5, -2
    with pytest.raises(ValueError, match=r"negative labels \(smallest -2\)"):
        label_objects(image)
    image[1, 2, 2] = 2**31
    with pytest.raises(ValueError, match="label 2147483648 does not fit in int32"):
        label_objects(image)
    # Two values, one of them the largest: a label image, kept as it is (not a mask).
    image[1, 2, 2] = 3
    image[1, 2, 1] = 5  # touches the 3: a mask would merge them
    np.testing.assert_array_equal(label_objects(image), image)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_measurements_match_plain_numpy(dtype):
    rng = np.random.default_rng(4)
    labels = label_objects(rng.random((5, 16, 11)) > 0.75)
    raw = (rng.random(labels.shape) * 200).astype(dtype)
    measured = measure_objects(labels, raw)
    expected = oracles.objects(labels, raw)
    assert list(measured.columns) == list(OBJECT_COLUMNS)
    pd.testing.assert_frame_equal(measured, expected, check_dtype=False, rtol=1e-12)


def test_total_intensity_past_two_to_the_31():
    labels = np.ones((10, 100, 100), np.int32)  # 100,000 voxels of 65,535
    raw = np.full(labels.shape, 65535, np.uint16)
    row = measure_objects(labels, raw).iloc[0]
    assert row["total_intensity"] == 65535 * 100_000 > 2**31
    assert row["mean_intensity"] == 65535


def test_no_object_gives_typed_empty_table():
    table = measure_objects(np.zeros((2, 3, 3), np.int32), np.ones((2, 3, 3)))
    assert len(table) == 0
    assert dict(table.dtypes.astype(str)) == OBJECT_COLUMNS


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError, match="same shape"):
        measure_objects(np.zeros((2, 3, 3), np.int32), np.zeros((2, 3, 4)))


@pytest.mark.parametrize("kind", ["dense", "sparse"])
def test_measurements_of_dense_and_sparse_labels_match_plain_numpy(kind):
    # Labels 1..n are counted through a table; a few labels spread up to 2**31 - 1
    # through np.unique: both must give every object's own voxels.
    rng = np.random.default_rng(9)
    labels = label_objects(rng.random((6, 14, 12)) > 0.7)
    if kind == "sparse":
        spread = np.r_[0, rng.choice(2**31 - 2, labels.max(), replace=False) + 1]
        spread[-1] = 2**31 - 1
        labels = spread[labels].astype(np.int32)
    raw = rng.integers(0, 60000, labels.shape).astype(np.uint16)
    measured = measure_objects(labels, raw)
    expected = oracles.objects(labels, raw)
    pd.testing.assert_frame_equal(measured, expected, check_dtype=False, rtol=1e-12)
    assert measured["object_id"].max() == labels.max()
