"""The playgrounds: their input image and voxel size, saved parameters kept, fast redraws."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rna_localization import synthetic
from rna_localization.calibration import VoxelSizeWarning
from rna_localization.io import read_stack, read_voxel_size, write_stack
from rna_localization.segmentation import (
    SegmentationParams,
    load_params,
    segment,
    segment_intermediates,
)
from rna_localization.segmentation.display import _central_crop, playground_image

from notebook_runner import execute_notebook

ROOT = Path(__file__).resolve().parents[1]
WIDEFIELD = (0.3, 0.11, 0.11)  # not the 0.2 / 0.065 default


def _stack(seed=0, shape=(14, 48, 48)):
    return synthetic.simulate_image("s", rna_type="cen", cycle="nc14", seed=seed, shape=shape).rna


def test_a_stack_alone_brings_its_own_voxel_size(tmp_path):
    image = _stack()
    path = write_stack(tmp_path / "stated.tif", image, spacing=WIDEFIELD)
    got, name, spacing = playground_image("rna", image_path=path)
    np.testing.assert_array_equal(got, image)
    assert name == "stated"
    assert spacing == pytest.approx(WIDEFIELD)
    # The notebook's 0 means "read it"; any other value is the user's and wins.
    assert playground_image("rna", image_path=path, spacing=(0, 0, 0))[2] == pytest.approx(WIDEFIELD)
    assert playground_image("rna", image_path=path, spacing=(0.4, 0.2, 0.2))[2] == (0.4, 0.2, 0.2)
    bare = tmp_path / "bare.tif"
    import tifffile

    tifffile.imwrite(bare, image)  # no calibration at all
    with pytest.warns(VoxelSizeWarning, match=r"bare\.tif states no voxel size: using z 0\.2, "
                                              r"xy 0\.065 µm; set xy and z"):
        assert playground_image("rna", image_path=bare)[2] == (0.2, 0.065, 0.065)


def _config(root: Path, names, *, stated) -> Path:
    for i, name in enumerate(names):
        write_stack(root / "rna" / "raw-data" / f"{name}.tif", _stack(seed=i), spacing=stated)
    config = root / "pipeline.toml"
    config.write_text('[data]\ndata_dir = "."\nstructures = ["rna"]\n\n[scale]\nxy = 0.11\nz = 0.3\n',
                      encoding="utf-8")
    return config


def test_a_config_gives_its_first_image_and_its_scale(tmp_path):
    config = _config(tmp_path / "d", ["embryo_b", "embryo_a", "embryo_c"], stated=WIDEFIELD)
    image, name, spacing = playground_image("rna", config_path=config)
    assert name == "embryo_a"  # the first by name, not by writing order
    np.testing.assert_array_equal(image, read_stack(tmp_path / "d/rna/raw-data/embryo_a.tif"))
    assert spacing == pytest.approx(WIDEFIELD)
    # A stack without calibration, given beside the config, takes the config's [scale].
    import tifffile

    tifffile.imwrite(tmp_path / "bare.tif", image)
    assert playground_image("rna", image_path=tmp_path / "bare.tif",
                            config_path=config)[2] == pytest.approx(WIDEFIELD)
    with pytest.raises(ValueError, match="no structure of data.structures"):
        playground_image("centrosomes", config_path=config)


def test_a_config_whose_files_disagree_with_its_scale_says_so(tmp_path):
    config = _config(tmp_path / "d", ["a"], stated=(0.2, 0.065, 0.065))
    with pytest.warns(VoxelSizeWarning, match=r"a\.tif"):
        _, _, spacing = playground_image("rna", config_path=config)
    assert spacing == pytest.approx(WIDEFIELD)  # [scale] wins, as in the pipeline


@pytest.mark.parametrize("workflow", ["rna", "centrosomes"])
def test_reusing_the_filters_gives_the_same_segmentation(workflow):
    image = _stack(seed=4, shape=(14, 64, 64))
    first = segment_intermediates(image, workflow, spacing=(0.2, 0.065, 0.065))
    moved = SegmentationParams(workflow, threshold=6.0, floor=2.5, mask_fraction=0.4,
                               min_volume_um3=0.005)
    fresh = segment_intermediates(image, moved, spacing=(0.2, 0.065, 0.065))
    reused = segment_intermediates(image, moved, spacing=(0.2, 0.065, 0.065), previous=first)
    assert reused.filtered is first.filtered  # not computed again
    np.testing.assert_array_equal(reused.result, fresh.result)
    np.testing.assert_array_equal(reused.labels, fresh.labels)
    assert not np.array_equal(fresh.result, first.result)  # the change mattered


def test_the_default_crop_takes_the_planes_around_the_brightest():
    image = np.zeros((30, 600, 500), np.uint16)
    image[21, 250:350, 200:300] = 1000  # in focus at z = 21, in the centre
    z, y, x = _central_crop(image, 256, 16)
    assert (z.start, z.stop) == (13, 29)
    assert (y.start, y.stop, x.start, x.stop) == (172, 428, 122, 378)
    image[:] = 0
    image[29, 300, 250] = 1000  # brightest at the last plane: the window stays inside
    assert _central_crop(image, 256, 16)[0] == slice(14, 30)
    assert _central_crop(image[:10], 256, 16)[0] == slice(None)


@pytest.mark.parametrize(("notebook", "workflow"), [("playground_rna.ipynb", "rna"),
                                                   ("playground_centrosomes.ipynb", "centrosomes")])
def test_running_again_from_the_top_keeps_the_saved_tuned_parameters(tmp_path, notebook, workflow):
    """A user tuned and saved, left save_params on and ran everything again: nothing is lost."""
    tuned = SegmentationParams(workflow, threshold=7.5, floor=2.6, min_volume_um3=0.02)
    assert tuned != SegmentationParams(workflow)
    params_file = tuned.save(tmp_path / "params.toml")
    sim = synthetic.simulate_image("tiny", rna_type="cen", cycle="nc14", seed=3,
                                   shape=(16, 96, 96), preset="widefield")
    data = tmp_path / "data"
    structure = "rna" if workflow == "rna" else "centrosomes"
    stack = sim.rna if workflow == "rna" else sim.centrosomes
    write_stack(data / structure / "raw-data" / "b_second.tif", stack[::-1], spacing=WIDEFIELD)
    write_stack(data / structure / "raw-data" / "a_first.tif", stack, spacing=WIDEFIELD)
    config = data / "pipeline.toml"
    config.write_text('[data]\ndata_dir = "."\nstructures = ["rna", "centrosomes"]\n\n'
                      "[scale]\nxy = 0.11\nz = 0.3\n", encoding="utf-8")
    out = tmp_path / "test-segmentations"
    executed = execute_notebook(
        ROOT / "optimized-segmentation-notebooks" / notebook, tmp_path / notebook,
        parameters={"config_path": str(config), "output_dir": str(out),
                    "params_file": str(params_file), "save_params": True},
        cwd=tmp_path, sockets=tmp_path / "kernel",
    )
    assert load_params(params_file) == tuned  # saved again: the tuned values, not the defaults
    text = "".join(o.get("text", "") for c in executed.cells for o in c.get("outputs", []))
    assert "the workflow values in the parameter cell are not used" in text
    # The user's first image, with the config's voxel size.
    saved = out / f"a_first_test_{workflow}_segmentation.tif"
    assert read_voxel_size(saved) == pytest.approx(WIDEFIELD)
    np.testing.assert_array_equal(read_stack(saved), segment(stack, tuned, spacing=WIDEFIELD))


def test_the_sliders_redraw_the_crop_with_the_moved_parameters(capsys):
    import matplotlib

    matplotlib.use("Agg")
    from scipy import ndimage

    from rna_localization.segmentation.display import interactive_playground

    spacing = (0.2, 0.065, 0.065)
    image = _stack(seed=2, shape=(20, 80, 80))
    playground = interactive_playground(image, SegmentationParams("rna"), spacing=spacing, crop_size=64,
                                        crop_planes=16)
    assert playground.crop[0].stop - playground.crop[0].start == 16
    assert (playground.crop[1], playground.crop[2]) == (slice(8, 72), slice(8, 72))
    playground.set(threshold=6.0, floor=2.5)
    moved = SegmentationParams("rna", threshold=6.0, floor=2.5)
    assert playground.params == moved
    expected = segment(image[playground.crop], moved, spacing=spacing)
    np.testing.assert_array_equal(playground.intermediates.result, expected)
    count = ndimage.label(expected > 0, structure=ndimage.generate_binary_structure(3, 1))[1]
    assert count > 0
    assert playground.title == f"{count} objects, threshold 6.0 noise SDs (set by hand)"
    assert f"{count} objects" in playground.status.value
    assert playground.seconds > 0
    intermediates = playground.intermediates
    playground.z_slider.value = 3  # the view alone: the workflow is not run again
    assert playground.intermediates is intermediates


def test_the_playground_title_counts_the_objects_removed_as_too_large():
    import matplotlib

    matplotlib.use("Agg")
    from test_segmentation import _two_blobs

    from rna_localization.segmentation.display import interactive_playground

    spacing = (0.2, 0.065, 0.065)
    playground = interactive_playground(_two_blobs((0.25, 0.6)), SegmentationParams("centrosomes"),
                                        spacing=spacing, crop=False)
    assert playground.title.startswith("2 objects, threshold 10.0 noise SDs")
    assert "removed" not in playground.title
    playground.set(max_volume_um3=0.3)  # between the two balls' masks
    assert playground.title == ("1 objects, threshold 10.0 noise SDs (set by hand), 1 removed as "
                                "over max_volume_um3 = 0.3 µm³")
    assert "1 removed" in playground.status.value


def test_the_playground_title_states_the_single_molecules_under_the_threshold():
    """A faint stack: the share in the title; a bright one: none."""
    import matplotlib

    matplotlib.use("Agg")
    from rna_localization.segmentation.display import interactive_playground

    sim = synthetic.simulate_image("faint", rna_type="gapdh", cycle="nc14", seed=5,
                                   shape=(16, 128, 128), preset="widefield", snr=3.0)
    playground = interactive_playground(sim.rna, SegmentationParams("rna"), spacing=sim.spacing,
                                        crop=False)
    share = playground.intermediates.faint
    assert share >= 0.3  # measured against the simulated molecules in test_quality.py
    assert playground.title.endswith(f"(automatic), ~{share:.0%} of single molecules under it")
    bright = synthetic.simulate_image("bright", rna_type="gapdh", cycle="nc14", seed=5,
                                      shape=(16, 128, 128), preset="widefield", snr=8.0)
    playground = interactive_playground(bright.rna, SegmentationParams("rna"),
                                        spacing=bright.spacing, crop=False)
    assert "under it" not in playground.title
