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

from helpers import assert_nothing_stale, simulated_dataset
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


def test_extract_estimates_the_clipped_light_of_rna_objects(tmp_path, database_name):
    # One of four simulated confocal stacks through a gain that puts the 95th percentile of
    # its RNA objects' voxels at a 12-bit ceiling: its brightest objects (granules) hold a
    # clipped plateau, and so do molecules on the haze of an out-of-focus cell that the
    # ceiling clips around them too. extract estimates the light above the ceiling
    # (clipped_light) where the fit puts any there, so that those objects read about what
    # they read on the stack unclipped, and says so.
    import pandas as pd

    from rna_localization.capture import corrected_apertures
    from rna_localization.objects import object_voxels

    data, toml, config = simulated_dataset(tmp_path / "sim", database_name)
    name = sorted(pd.read_csv(data / "raw-data-metadata.csv")["name"])[0]
    path = data / "rna" / "raw-data" / f"{name}.tif"
    segmentation = tifffile.imread(data / "rna" / "segmentations" / f"{name}_seg.tif")
    raw = tifffile.imread(path).astype(float)
    exposed = raw * (4095 / np.percentile(raw[segmentation > 0], 95))
    tifffile.imwrite(path, np.minimum(np.rint(exposed), 4095).astype(np.uint16))
    with pytest.warns(steps.PipelineWarning,
                      match=rf"^1 image\(s\) have objects whose brightest voxels sit at the "
                            rf"camera's ceiling, a plateau of clipped light: rna {name} "
                            rf"\((\d+) objects at 4,095; the light above it estimated for "
                            rf"(\d+), (\d+)% of their light\)\. They read less light") as record:
        steps.extract(config)
    stored = _db(toml).query("SELECT object_id, max_intensity, spot_intensity, clipped_light, "
                             "capture_correction FROM rna WHERE name = %s ORDER BY object_id",
                             (name,))
    # Brute force: the objects holding two voxels or more at the ceiling (a plateau; the
    # fit may put nothing above it).
    objects = object_voxels(segmentation)
    clipped = np.minimum(np.rint(exposed), 4095).ravel()[objects.voxels] == 4095
    held = np.bincount(objects.labels[clipped].astype(np.int64),
                       minlength=int(objects.labels.max()) + 1)
    at = held[stored["object_id"].to_numpy()] >= 2
    estimated = stored["clipped_light"].to_numpy() > 0
    assert at.sum() >= 10
    assert (stored["max_intensity"].to_numpy()[at] == 4095).all()
    assert (estimated <= at).all()
    assert estimated.sum() >= 4
    message = str([w.message for w in record if "ceiling" in str(w.message)][0])
    assert f"estimated for {estimated.sum()}," in message
    # The oracle: the same objects' reading of the stack before the ceiling.
    whole = corrected_apertures(objects, np.rint(exposed),
                                spacing=config.spacing)
    assert whole["object_id"].tolist() == stored["object_id"].tolist()
    ratio = (stored["spot_intensity"].to_numpy()[estimated]
             / whole["spot_intensity"].to_numpy()[estimated])
    # Without the estimate (the reading of the clipped stack, less than its correction).
    plain = ((stored["spot_intensity"] / stored["capture_correction"] - stored["clipped_light"])
             * stored["capture_correction"]).to_numpy()[estimated] / whole["spot_intensity"].to_numpy()[estimated]
    print(f"{estimated.sum()} of {at.sum()} objects clipped estimated: estimated / unclipped median {np.median(ratio):.3f} "
          f"(least {ratio.min():.3f}); without {np.median(plain):.3f} (least {plain.min():.3f})")
    assert 0.95 <= np.median(ratio) <= 1.05
    # Closer than without it (the oracle reads each through its own wide aperture, which
    # the estimate corrects to a single molecule's: the two part by that correction).
    assert np.abs(ratio - 1).mean() < np.abs(plain - 1).mean()
    # The truth: the simulated molecules at each object's voxels. The clipped objects holding
    # a granule (4 molecules or more; one here, in a crowd on the haze) read their
    # molecules' light against the image's single molecules (objects holding one, under the
    # ceiling) within 15%, and nearer than without the estimate, which reads them low.
    molecules = pd.read_csv(data / "truth" / "molecules.csv").query("name == @name")
    voxel = np.clip(np.rint(molecules[["z", "y", "x"]].to_numpy()).astype(int), 0,
                    np.array(segmentation.shape) - 1)
    truth = (molecules.assign(label=segmentation[tuple(voxel.T)]).query("label > 0")
             .groupby("label")["brightness"].agg(["sum", "size"]))
    table = stored.set_index("object_id").join(truth)
    single = table[(table["size"] == 1) & (table["max_intensity"] < 4095)]
    per_light = np.median(single["spot_intensity"] / single["sum"])
    granules = table[(table["clipped_light"] > 0) & (table["size"] >= 4)]
    assert len(granules) >= 1
    read = granules["spot_intensity"] / granules["sum"] / per_light
    without = ((granules["spot_intensity"] / granules["capture_correction"]
                - granules["clipped_light"]) * granules["capture_correction"]
               / granules["sum"] / per_light)
    assert (np.abs(read - 1) <= 0.15).all(), read
    assert (np.abs(read - 1) < np.abs(without - 1)).all(), (read, without)
    # The other images hold no plateau: nothing estimated.
    others = _db(toml).query("SELECT clipped_light FROM rna WHERE name <> %s", (name,))
    assert (others["clipped_light"] == 0).all()
    centrosomes = _db(toml).query("SELECT clipped_light FROM centrosomes")
    assert centrosomes["clipped_light"].isna().all()  # not counted: no apertures
