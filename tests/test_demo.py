"""The demo end to end on a small simulated data set, checked against the simulator's truth."""

import numpy as np

from rna_localization.demo import run_demo


def test_demo_with_ideal_masks_recovers_the_truth(tmp_path):
    report = run_demo(tmp_path / "demo", n_images=4, seed=3, ideal_masks=True,
                      shape=(20, 160, 160), verbose=False)
    detection = report.detection.set_index("rna_type")
    # Ideal label images: every simulated object is found, none invented.
    assert (detection["objects_detected"] == detection["objects_simulated"]).all()
    assert (detection["molecules_simulated"] >= detection["objects_simulated"]).all()
    localization = report.localization.set_index(["rna_type", "cycle"])
    assert (localization["difference"].abs() < 12).all()
    for cycle in ("nc13", "nc14"):
        assert localization.loc[("cen", cycle), "measured"] > localization.loc[("gapdh", cycle), "measured"] + 15
    granules = report.granules.set_index("rna_type")
    assert granules.loc["cen", "found"] == granules.loc["cen", "granules"] > 0
    assert granules.loc["cen", "mean_abs_error_pct"] < 25
    assert np.isfinite(report.seconds["total"])
    assert {p.name for p in report.plots} >= {"percent_total_rna.png", "percent_granule_rna.pdf"}
    assert "RNA within 1 µm of a centrosome" in str(report)


def test_demo_with_the_segmentation_workflows(tmp_path):
    report = run_demo(tmp_path / "demo", n_images=4, seed=5, shape=(20, 160, 160), verbose=False)
    assert report.segmentation.startswith("rna and centrosome workflows")
    detection = report.detection.set_index("rna_type")
    found = detection["objects_detected"] / detection["objects_simulated"]
    assert found["gapdh"] > 0.8  # dispersed molecules: nearly all found, none invented
    assert found["gapdh"] < 1.05
    localization = report.localization.set_index(["rna_type", "cycle"])
    for cycle in ("nc13", "nc14"):
        assert localization.loc[("cen", cycle), "measured"] > localization.loc[("gapdh", cycle), "measured"] + 15
    assert (localization["difference"].abs() < 15).all()
