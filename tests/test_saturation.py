"""Objects whose light the camera clipped (rna_localization.saturation), and extract's warning."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from scipy import ndimage

from rna_localization import load_config, steps
from rna_localization.objects import measure_objects
from rna_localization.saturation import camera_ceiling, clipped_labels, clipped_objects
from rna_localization.synthetic import simulate_image

from helpers import assert_nothing_stale
from helpers import database as _db


@pytest.mark.parametrize("value", [255, 1023, 4095, 16383, 32767, 65535, 4095.0, np.uint16(65535)])
def test_a_converter_ceiling_is_recognized(value):
    assert camera_ceiling(value) == int(value)


@pytest.mark.parametrize("value", [254, 256, 4094, 4096, 4095.5, 511, 65534, np.nan, np.inf, -1])
def test_other_values_are_no_ceiling(value):
    assert camera_ceiling(value) is None


def _cen_stack():
    return simulate_image("cen_nc14_r1_01", rna_type="cen", cycle="nc14", seed=3,
                          shape=(16, 128, 128))


def test_the_objects_holding_the_clipped_plateau_are_named():
    # A simulated confocal cen stack through a camera whose gain puts its brightest
    # voxel at 1.5 times a 12-bit converter's ceiling: what fell above 4,095 reads 4,095.
    image = _cen_stack()
    labels = image.rna_labels
    exposed = np.rint(image.rna * (1.5 * 4095 / image.rna.max()))
    raw = np.minimum(exposed, 4095).astype(np.uint16)
    objects = measure_objects(labels, raw)
    ceiling, clipped = clipped_objects(objects["max_intensity"], raw[labels > 0])
    assert ceiling == 4095
    # Brute force: the labels under the voxels at the ceiling.
    plateau = np.unique(labels[(raw == 4095) & (labels > 0)])
    assert sorted(objects.loc[clipped, "object_id"]) == plateau.tolist()
    assert 1 <= clipped.sum() < len(objects) / 4
    # The clipped objects are the brightest: granules of the simulation.
    molecules = image.molecules.groupby("object_id").size()
    assert (molecules.reindex(plateau, fill_value=0) >= 4).any()
    # The same light through a 16-bit converter: nothing clipped, nothing named.
    unclipped = exposed.astype(np.uint16)
    assert camera_ceiling(unclipped.max()) is None
    assert clipped_objects(measure_objects(labels, unclipped)["max_intensity"],
                           unclipped[labels > 0])[0] is None


def test_clipped_labels_counts_the_objects_under_the_plateau():
    # The same 12-bit camera, from the label image alone (what segment checks).
    image = _cen_stack()
    labels = image.rna_labels
    raw = np.minimum(np.rint(image.rna * (1.5 * 4095 / image.rna.max())), 4095).astype(np.uint16)
    plateau = np.unique(labels[(raw == 4095) & (labels > 0)])
    assert plateau.size >= 1
    assert clipped_labels(labels, raw) == (4095, plateau.size)
    # Light at the ceiling outside every object clips no object.
    outside = raw.copy()
    outside[(labels == 0) & (outside == 4095)] = 0
    outside[labels > 0] = np.minimum(outside[labels > 0], 4000)
    outside[0, 0, :3] = 4095
    assert labels[0, 0, :3].max() == 0
    assert clipped_labels(labels, outside) == (None, 0)
    assert clipped_labels(np.zeros_like(labels), raw) == (None, 0)
    with pytest.raises(ValueError, match=r"differs from the raw stack's"):
        clipped_labels(labels[:-1], raw)


def test_one_voxel_at_a_ceiling_is_no_plateau():
    image = _cen_stack()
    labels = image.rna_labels
    raw = image.rna.copy()
    brightest = np.unravel_index(np.argmax(np.where(labels > 0, raw, 0)), raw.shape)
    raw[brightest] = 4095  # a lone bright voxel that happens to be 2^12 - 1
    objects = measure_objects(labels, raw)
    assert objects["max_intensity"].max() == 4095
    ceiling, clipped = clipped_objects(objects["max_intensity"], raw[labels > 0])
    assert ceiling is None
    assert not clipped.any()
    # A second voxel at it (in another object) makes a plateau of two objects.
    other = np.argwhere((labels > 0) & (labels != labels[brightest]))[0]
    raw[tuple(other)] = 4095
    objects = measure_objects(labels, raw)
    ceiling, clipped = clipped_objects(objects["max_intensity"], raw[labels > 0])
    assert ceiling == 4095
    assert sorted(objects.loc[clipped, "object_id"]) == sorted(
        {int(labels[brightest]), int(labels[tuple(other)])})


def test_voxel_values_are_gathered_only_for_a_ceiling():
    def gather():
        msg = "gathered without a ceiling"
        raise AssertionError(msg)

    assert clipped_objects([900.0, 4000.0], gather)[0] is None
    assert clipped_objects([], gather)[0] is None
    assert clipped_objects([255, 255], lambda: np.array([255, 255, 3]))[0] == 255


def test_extract_names_the_images_with_clipped_objects_once(dataset):
    # datagen's raw stacks are uniform noise below 7,000 in their objects. Three voxels
    # of each of two RNA objects of img_01 at a 14-bit ceiling: a clipped plateau; one
    # voxel of img_02 at it: one bright voxel, not named.
    data = dataset.parent
    segmentation = tifffile.imread(data / "rna" / "segmentations" / "img_01_seg.tif")
    components, _ = ndimage.label(segmentation > 0)
    path = data / "rna" / "raw-data" / "img_01.tif"
    raw = tifffile.imread(path)
    for component in (1, 2):
        for voxel in np.argwhere(components == component)[:3]:
            raw[tuple(voxel)] = 16383
    tifffile.imwrite(path, raw)
    path = data / "rna" / "raw-data" / "img_02.tif"
    raw = tifffile.imread(path)
    raw[tuple(np.argwhere(tifffile.imread(data / "rna" / "segmentations" / "img_02_seg.tif")
                          > 0)[0])] = 16383
    tifffile.imwrite(path, raw)
    with pytest.warns(steps.PipelineWarning,
                      match=r"^1 image\(s\) have objects whose brightest voxels sit at the "
                            r"camera's ceiling, a plateau of clipped light: rna img_01 "
                            r"\(2 objects at 16,383\)\. .*max_intensity is the ceiling\.$"):
        steps.extract(load_config(dataset))
    db = _db(dataset)
    at = db.query("SELECT name, count(*) AS n FROM rna WHERE max_intensity = 16383 GROUP BY name "
                  "ORDER BY name")
    assert at["name"].tolist() == ["img_01", "img_02"]
    assert at["n"].tolist() == [2, 1]
    # Named once: extracting again, with nothing to extract, says nothing.
    assert_nothing_stale(dataset)
