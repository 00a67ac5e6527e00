"""Implausible segmentations (no objects, far too many, one huge object) are said, not silent,
and so are single molecules too faint to be found.

The check itself on arrays; then where it is reported: warnings of ``segment_folder``,
the QC page (also for images skipped on a re-run), the ``segment`` command's output,
and ``doctor``. Every file is a real TIFF written with the package's own writer.
"""

from __future__ import annotations

import html
import json
import subprocess
import sys
import warnings

import numpy as np
import pytest
from test_doctor import _find
from test_segmentation import _two_blobs

from rna_localization import io
from rna_localization.demo import _image_truth
from rna_localization.doctor import diagnose
from rna_localization.objects import label_objects
from rna_localization.saturation import CLIPPED_ADVICE
from rna_localization.segmentation import (
    MAX_OBJECT_FRACTION,
    MAX_OBJECTS_PER_UM3,
    FaintSpotsWarning,
    ImplausibleSegmentationWarning,
    SegmentationParams,
    check_segmentation,
    object_sizes,
    segment,
    segment_folder,
    segment_intermediates,
)
from rna_localization.segmentation.batch import qc_problems
from rna_localization.segmentation.quality import (
    FAINT_MIN_SPOTS,
    FAINT_UPPER,
    FAINT_WARN_FRACTION,
    missed_faint_fraction,
)
from rna_localization.synthetic import render_points, simulate_image, unresolvable

from datagen import random_blobs

SPACING = (0.2, 0.065, 0.065)
SHAPE = (8, 64, 64)


# ------------------------------------------------------------------ masks and stacks
def _normal(shape=SHAPE, seed=0):
    """A dozen small blobs: what a segmentation should look like."""
    return random_blobs(np.random.default_rng(seed), shape, 12, (1.5, 3.0))


def _empty(shape=SHAPE):
    return np.zeros(shape, np.uint8)


def _huge(shape=SHAPE):
    """A few small blobs and one slab of a quarter of the stack."""
    mask = _normal(shape)
    mask[:, : shape[1] // 4, :] = 255
    return mask


def _crowded(shape=SHAPE):
    """Isolated voxels, none sharing a face: half the stack, each one an object."""
    z, y, x = np.indices(shape)
    return np.where((z + y + x) % 2 == 0, 255, 0).astype(np.uint8)


def _raw(shape, spacing, *, spots=True, seed=0):
    """A raw stack: a flat background, and with `spots` bright blobs of ~0.12 µm (xy) in Poisson noise."""
    if not spots:
        return np.full(shape, 500, np.uint16)
    rng = np.random.default_rng(seed)
    image = rng.poisson(500, shape).astype(np.float64)
    z, y, x = np.indices(shape)
    sigma = np.array([0.25, 0.12, 0.12]) / np.asarray(spacing)  # voxels
    margin = np.minimum(np.ceil(2 * sigma).astype(int), np.array(shape) // 2 - 1)
    for _ in range(4):
        c = [rng.integers(m, n - m) for m, n in zip(margin, shape)]
        image += 3000 * np.exp(-0.5 * (((z - c[0]) / sigma[0]) ** 2 + ((y - c[1]) / sigma[1]) ** 2
                                       + ((x - c[2]) / sigma[2]) ** 2))
    return image.astype(np.uint16)


# ------------------------------------------------------------------ the check
def test_a_normal_segmentation_is_plausible():
    assert check_segmentation(_normal(), spacing=SPACING, name="embryo") == []


def test_no_objects_is_said_with_the_image_and_what_to_do():
    (problem,) = check_segmentation(_empty(), spacing=SPACING, name="embryo_7")
    assert problem.startswith("The segmentation of embryo_7 has no objects.")
    assert "voxel size (z 0.2, y 0.065, x 0.065 µm)" in problem
    assert "playground notebook" in problem


def test_one_huge_object_is_said_with_its_size():
    mask = _huge()
    voxels = SHAPE[0] * (SHAPE[1] // 4) * SHAPE[2] + int(np.count_nonzero(mask[:, SHAPE[1] // 4, :]))
    largest = int(object_sizes(label_objects(mask)).max())
    assert largest >= voxels  # the slab, with any blob touching it
    (problem,) = check_segmentation(mask, spacing=SPACING, name="embryo")
    um3 = largest * np.prod(SPACING)
    assert f"one object of {largest} voxels ({um3:.3g} µm³), {largest / mask.size:.1%} of the stack" in problem
    assert "more than 5% is implausible" in problem
    assert "playground notebook" in problem


def test_implausibly_many_objects_are_said_with_the_density():
    mask = _crowded()
    n = mask.size // 2
    (problem,) = check_segmentation(mask, spacing=SPACING, name="embryo")
    volume = mask.size * np.prod(SPACING)
    assert f"has {n} objects in {volume:.3g} µm³ ({n / volume:.3g} per µm³" in problem
    assert "more than 2 per µm³ is implausible" in problem


def test_the_limits_are_the_documented_constants():
    # 4 x 8 x 8 voxels of 0.5 µm: 32 µm³, so 64 objects at most; 256 voxels, so objects of 12 at most.
    shape, spacing = (4, 8, 8), 0.5
    volume = np.prod(shape) * spacing**3
    isolated = np.flatnonzero(_crowded(shape).ravel())
    most = int(MAX_OBJECTS_PER_UM3 * volume)
    assert most == 64
    for n, flagged in ((most, False), (most + 1, True)):
        mask = np.zeros(shape, np.uint8)
        mask.ravel()[isolated[:n]] = 255
        assert bool(check_segmentation(mask, spacing=spacing)) == flagged, n
    biggest = int(MAX_OBJECT_FRACTION * np.prod(shape))
    assert biggest == 12
    for n, flagged in ((biggest, False), (biggest + 1, True)):
        mask = np.zeros(shape, np.uint8)
        mask.ravel()[:n] = 255  # one run along x, then the next row: one object
        assert bool(check_segmentation(mask, spacing=spacing)) == flagged, n


def test_missed_faint_fraction_against_the_share_drawn_under_the_threshold():
    """Log-normal molecules cut at a threshold: the share under it, from the rest alone."""
    # ~1,100 spots found: a fit of the cut-off distribution, whose error grows with the
    # share cut off (up to 0.02 at 7%, 0.10 at 26%, 0.13 at 51% over these seeds).
    for cut, tolerance in ((3.0, 0.03), (4.0, 0.12), (5.0, 0.15)):
        errors = []
        for seed in range(10):
            rng = np.random.default_rng(seed)
            scores = np.exp(rng.normal(np.log(5.0), 0.35, 1500))
            truth = float(np.mean(scores < cut))
            found = scores[scores >= cut]
            # Granules and unresolved pairs (3-6 times the median) do not move it.
            bright = rng.uniform(3.0, 6.0, len(found) // 10) * float(np.median(found))
            estimate = missed_faint_fraction(np.r_[found, bright], cut)
            assert abs(estimate - truth) <= tolerance, (cut, seed, estimate, truth)
            errors.append(estimate - truth)
        assert abs(np.mean(errors)) <= 0.03, (cut, np.mean(errors))  # no bias
    # A population far above the threshold misses nothing; nothing is estimated from a
    # handful of spots, or from spots that do not pass the threshold.
    scores = np.exp(np.random.default_rng(0).normal(np.log(20.0), 0.35, 500))
    assert missed_faint_fraction(scores, 3.0) < 1e-4
    assert np.isnan(missed_faint_fraction(scores[: FAINT_MIN_SPOTS - 1], 3.0))
    assert np.isnan(missed_faint_fraction(scores, 100.0))
    assert FAINT_UPPER == 2.0  # as documented
    assert FAINT_WARN_FRACTION == 0.05


def test_missed_faint_fraction_counts_a_source_with_two_maxima_once():
    """A PSF's second maximum along z, paired with its molecule, is no faint molecule."""
    for seed in range(5):
        rng = np.random.default_rng(seed)
        scores = np.exp(rng.normal(np.log(8.0), 0.3, 1200))
        found = scores[scores >= 4.0]
        truth = float(np.mean(scores < 4.0))
        # Every molecule has a maximum 0.4-0.7 times as bright along z; those passing 4 are
        # found too, at the bottom of the distribution.
        lobe = rng.uniform(0.4, 0.7, len(found)) * found
        seen = np.flatnonzero(lobe >= 4.0)
        both = np.r_[found, lobe[seen]]
        pairs = np.c_[seen, len(found) + np.arange(len(seen))]
        assert missed_faint_fraction(both, 4.0) >= truth + 0.05, seed  # the lobes read as faint
        assert abs(missed_faint_fraction(both, 4.0, same_source=pairs) - truth) <= 0.02, seed
        # Either order in a pair; pairs that share a spot (a chain of maxima, here two lobes
        # paired too) leave out the dimmer of each pair and nothing else.
        assert (missed_faint_fraction(both, 4.0, same_source=pairs[:, ::-1])
                == missed_faint_fraction(both, 4.0, same_source=pairs))
        chain = np.r_[pairs, np.c_[pairs[:5, 1], pairs[5:10, 1]]]
        kept = np.delete(both, np.unique(np.r_[pairs[:, 1], pairs[5:10, 1]]))
        assert missed_faint_fraction(both, 4.0, same_source=chain) == missed_faint_fraction(kept, 4.0)
    assert missed_faint_fraction(both, 4.0, same_source=np.zeros((0, 2), int)) == \
        missed_faint_fraction(both, 4.0)


def _faint_case(preset: str, snr: float, seed: int):
    """A simulated gapdh stack; the share of its isolated single molecules in no object."""
    sim = simulate_image(f"gapdh_snr{snr:g}_{seed}", rna_type="gapdh", cycle="nc14", seed=seed,
                         shape=(16, 128, 128), preset=preset, snr=snr)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        run = segment_intermediates(sim.rna, "rna", spacing=sim.spacing)
    found = _image_truth(sim.molecules, label_objects(run.result)) > 0
    isolated = (~unresolvable(sim.molecules, spacing=sim.spacing)
                & ~sim.molecules["in_granule"].to_numpy())
    faint = [w for w in record if w.category is FaintSpotsWarning]
    return sim, run, float(np.mean(~found[isolated])), faint


def test_segment_warns_when_many_single_molecules_are_too_faint_to_find():
    """The estimate against the simulated molecules no object holds, faint to bright."""
    for preset, snr, seed in (("widefield", 3.0, 5), ("widefield", 3.0, 6), ("widefield", 4.0, 5),
                              ("widefield", 4.0, 6), ("widefield", 8.0, 5), ("confocal", 3.0, 5)):
        sim, run, missed, faint = _faint_case(preset, snr, seed)
        assert abs(run.faint - missed) <= 0.12, (preset, snr, seed, run.faint, missed)
        if missed >= 0.15:  # faint widefield stacks: warned, with the estimate
            assert len(faint) == 1
            assert faint[0].message.fraction == run.faint
            assert str(faint[0].message).startswith(
                f"An estimated {run.faint:.0%} of the single molecules score under the "
                f"detection threshold ({run.threshold:.3g} noise SDs;")
            assert faint[0].filename == __file__
        elif missed <= 0.03:  # bright ones, and the confocal's dimmer background: silent
            assert run.faint < FAINT_WARN_FRACTION
            assert not faint
    # segment warns the same; the centrosome workflow finds no single molecules to judge.
    sim = _faint_case("widefield", 3.0, 5)[0]
    with pytest.warns(FaintSpotsWarning, match="An estimated"):
        segment(sim.rna, "rna", spacing=sim.spacing)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FaintSpotsWarning)
        segment(sim.rna, "centrosomes", spacing=sim.spacing)


def _deepening_aberration(seed: int):
    """300 single molecules (log-normal brightness, sigma 0.27) through a widefield objective
    whose spherical aberration grows with depth (0.15, 0.25 and 0.35 waves in thirds of the
    stack), their median peak 8 noise SDs above a flat background; the stack, the molecules
    (voxel coordinates) and the spacing."""
    rng = np.random.default_rng(seed)
    spacing, shape, fine = np.array([0.3, 0.11, 0.11]), np.array([30, 128, 128]), 2
    at = rng.uniform([3, 6, 6], shape - [4, 7, 7], size=(300, 3))
    cells = np.rint((at + 0.5) * fine - 0.5).astype(int)
    brightness = np.exp(rng.normal(0.0, 0.27, len(at)))
    light, unit = (render_points(cells, amplitude, shape, spacing, subpixel=fine,
                                 spherical_waves=0.1, deep_waves=0.4, slabs=3)
                   for amplitude in (brightness, np.ones(len(at))))
    peak = np.median(unit[tuple(np.rint(at).astype(int).T)])
    image = rng.poisson(3300 + light * 8 * np.sqrt(3300) / peak).astype(np.uint16)
    return image, at, tuple(spacing)


def test_a_psfs_second_maxima_along_z_are_not_taken_for_faint_molecules():
    """Through aberration growing with depth, a molecule's second maximum along z scores
    just over the threshold; the estimate counts each molecule once."""
    for seed in range(3):
        image, at, spacing = _deepening_aberration(seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            run = segment_intermediates(image, "rna", spacing=spacing)
        missed = float(np.mean(label_objects(run.result)[tuple(np.rint(at).astype(int).T)] == 0))
        assert len(run.spots) >= 1.05 * len(at)  # the lobes are among the spots
        # Taken for molecules, the lobes read 5-12% where 3-6% are in no object.
        assert abs(run.faint - missed) <= 0.045, (seed, run.faint, missed)


def test_segment_folder_names_the_image_whose_molecules_are_too_faint(tmp_path):
    """Reported from the worker process, on the QC page, and kept with the mask."""
    raw, out = tmp_path / "raw", tmp_path / "seg"
    for snr in (3.0, 8.0):
        sim = simulate_image(f"snr{snr:g}", rna_type="gapdh", cycle="nc14", seed=5,
                             shape=(16, 128, 128), preset="widefield", snr=snr)
        io.write_stack(raw / f"{sim.name}.tif", sim.rna, spacing=sim.spacing)
    with pytest.warns(ImplausibleSegmentationWarning, match="snr3") as record:
        segment_folder(raw, out, workflow="rna", spacing=sim.spacing, workers=2)
    messages = [str(w.message) for w in record if w.category is ImplausibleSegmentationWarning]
    assert len(messages) == 1
    assert messages[0].startswith("In snr3, an estimated ")
    assert "molecule counts read low by about as much" in messages[0]
    assert qc_problems(out) == {"snr3": messages, "snr8": []}
    assert messages[0] in _qc_page(out)
    # The mask cannot show it: judged again (the cache gone), the flag stays.
    (out / "qc" / "objects.json").unlink()
    segment_folder(raw, out, workflow="rna", spacing=sim.spacing)
    assert qc_problems(out) == {"snr3": messages, "snr8": []}


def test_objects_follow_label_objects_masks_by_faces_label_images_by_labels():
    mask = np.zeros((2, 4, 4), np.uint8)
    mask[0, 0, 0] = mask[1, 1, 1] = 255  # touching by a corner only: two objects
    np.testing.assert_array_equal(object_sizes(label_objects(mask)), [1, 1])
    labels = np.zeros((2, 4, 4), np.int32)
    labels[0, 0, :2] = 3
    labels[0, 0, 2:] = 2_000_000_000  # touching labels, one far beyond the voxel count
    labels[1, 3, 3] = 3  # label 3 in two pieces is still one object
    np.testing.assert_array_equal(object_sizes(label_objects(labels)), [3, 2])
    assert object_sizes(np.zeros((2, 2, 2), np.int32)).size == 0


# ------------------------------------------------------------------ segment_folder and the QC page
def _qc_page(folder) -> str:
    return html.unescape((folder / "qc" / "index.html").read_text(encoding="utf-8"))


def test_segment_folder_warns_about_an_empty_segmentation_and_the_qc_page_flags_it(tmp_path):
    raw, out = tmp_path / "raw", tmp_path / "seg"
    io.write_stack(raw / "flat_embryo.tif", _raw(SHAPE, SPACING, spots=False), spacing=SPACING)
    io.write_stack(raw / "spots_embryo.tif", _raw(SHAPE, SPACING), spacing=SPACING)
    with pytest.warns(ImplausibleSegmentationWarning, match="flat_embryo") as record:
        segment_folder(raw, out, workflow="rna", spacing=SPACING, workers=2)
    messages = [str(w.message) for w in record if w.category is ImplausibleSegmentationWarning]
    assert messages == [check_segmentation(_empty(), spacing=SPACING, name="flat_embryo")[0]]
    assert io.read_stack(out / "spots_embryo_seg.tif").any()
    page = _qc_page(out)
    assert "1 of 2 images look wrong" in page
    assert messages[0] in page
    assert page.count('class="flagged"') == 1
    assert qc_problems(out) == {"flat_embryo": messages, "spots_embryo": []}

    # A re-run skips both: no warning, and the page still flags the image (from the cache).
    with warnings.catch_warnings():
        warnings.simplefilter("error", ImplausibleSegmentationWarning)
        assert segment_folder(raw, out, workflow="rna", spacing=SPACING) == []
    assert messages[0] in _qc_page(out)
    cache = json.loads((out / "qc" / "objects.json").read_text(encoding="utf-8"))
    assert cache["flat_embryo"]["problems"] == messages

    # Masks edited by hand are judged again: fixed, flat_embryo is no longer flagged; emptied,
    # spots_embryo is.
    io.write_stack(out / "flat_embryo_seg.tif", _normal(), spacing=SPACING)
    io.write_stack(out / "spots_embryo_seg.tif", _empty(), spacing=SPACING)
    segment_folder(raw, out, workflow="rna", spacing=SPACING)
    assert qc_problems(out)["flat_embryo"] == []
    assert qc_problems(out)["spots_embryo"][0].startswith("The segmentation of spots_embryo has no")
    assert "1 of 2 images look wrong" in _qc_page(out)


def test_segment_folder_names_the_image_whose_large_objects_were_removed(tmp_path):
    """The workflow's warning, raised in a worker process, reaches the user and the QC page."""
    raw, out = tmp_path / "raw", tmp_path / "seg"
    spacing = (0.2, 0.065, 0.065)
    io.write_stack(raw / "blobs.tif", _two_blobs((0.25, 0.6)), spacing=spacing)
    io.write_stack(raw / "small.tif", _two_blobs((0.25,), seed=1), spacing=spacing)
    params = SegmentationParams("centrosomes", max_volume_um3=0.3)  # between the two balls
    with pytest.warns(ImplausibleSegmentationWarning, match="blobs") as record:
        segment_folder(raw, out, workflow="centrosomes", params=params, spacing=spacing,
                       workers=2)
    messages = [str(w.message) for w in record if w.category is ImplausibleSegmentationWarning]
    assert len(messages) == 1
    assert messages[0].startswith("The segmentation of blobs: 1 object of more than "
                                  "max_volume_um3 = 0.3 µm³ removed")
    assert label_objects(io.read_stack(out / "blobs_seg.tif")).max() == 1
    assert qc_problems(out) == {"blobs": messages, "small": []}
    assert messages[0] in _qc_page(out)
    # The mask does not show what was removed: the flag stays with it on re-runs that judge
    # the mask again (its overlay gone), and goes when the mask is replaced.
    (out / "qc" / "blobs.png").unlink()
    segment_folder(raw, out, workflow="centrosomes", params=params, spacing=spacing)
    assert qc_problems(out)["blobs"] == messages
    assert messages[0] in _qc_page(out)
    io.write_stack(out / "blobs_seg.tif", io.read_stack(out / "blobs_seg.tif"), spacing=spacing)
    segment_folder(raw, out, workflow="centrosomes", params=params, spacing=spacing)
    assert qc_problems(out)["blobs"] == []
    # Segmented without a QC page (or by a run stopped before its page), the flag is on the
    # page a later run writes; segmented again without removals, it goes.
    with pytest.warns(ImplausibleSegmentationWarning, match="blobs"):
        segment_folder(raw, out, workflow="centrosomes", params=params, spacing=spacing,
                       overwrite=True, qc=False)
    segment_folder(raw, out, workflow="centrosomes", params=params, spacing=spacing)
    assert qc_problems(out)["blobs"] == messages
    segment_folder(raw, out, workflow="centrosomes", spacing=spacing, overwrite=True)
    assert qc_problems(out)["blobs"] == []
    assert json.loads((out / "qc" / "removed.json").read_text(encoding="utf-8")) == {}


def test_segment_folder_flags_an_image_whose_objects_the_camera_clipped(tmp_path):
    """A plateau at a 12-bit ceiling under the mask's objects: warned, on the QC page, kept."""
    raw, out = tmp_path / "raw", tmp_path / "seg"
    bright = np.minimum(_raw(SHAPE, SPACING).astype(np.float64) * 1.5, 4095).astype(np.uint16)
    io.write_stack(raw / "clipped.tif", bright, spacing=SPACING)
    io.write_stack(raw / "unclipped.tif", _raw(SHAPE, SPACING, seed=1), spacing=SPACING)
    with pytest.warns(ImplausibleSegmentationWarning, match="clipped") as record:
        segment_folder(raw, out, workflow="rna", spacing=SPACING)
    messages = [str(w.message) for w in record if w.category is ImplausibleSegmentationWarning]
    # Brute force: the mask's objects holding a voxel at 4,095.
    labels = label_objects(io.read_stack(out / "clipped_seg.tif"))
    held = np.unique(labels[(bright == 4095) & (labels > 0)]).size
    assert held >= 2
    s = "" if held == 1 else "s"
    assert messages == [f"The segmentation of clipped has {held} object{s} whose brightest voxels "
                        f"sit at the camera's ceiling (4,095), a plateau of clipped light: "
                        f"{CLIPPED_ADVICE}."]
    assert qc_problems(out) == {"clipped": messages, "unclipped": []}
    assert messages[0] in _qc_page(out)
    # Judged again from the files (the cache gone): the same flag.
    (out / "qc" / "objects.json").unlink()
    with warnings.catch_warnings():
        warnings.simplefilter("error", ImplausibleSegmentationWarning)
        assert segment_folder(raw, out, workflow="rna", spacing=SPACING) == []
    assert qc_problems(out) == {"clipped": messages, "unclipped": []}


def test_qc_page_flags_every_kind_of_problem_of_masks_left_by_hand(tmp_path):
    """Masks already there (skipped) are judged from the files: huge, crowded, normal."""
    raw, out = tmp_path / "raw", tmp_path / "seg"
    masks = {"huge": _huge(), "crowded": _crowded(), "normal": _normal()}
    for name, mask in masks.items():
        io.write_stack(raw / f"{name}.tif", _raw(SHAPE, SPACING), spacing=SPACING)
        io.write_stack(out / f"{name}_seg.tif", mask, spacing=SPACING)
    assert segment_folder(raw, out, workflow="rna", spacing=SPACING) == []
    problems = qc_problems(out)
    assert "one object of" in problems["huge"][0]
    assert "objects in" in problems["crowded"][0]
    assert problems["normal"] == []
    page = _qc_page(out)
    assert "2 of 3 images look wrong" in page
    assert page.count('class="flagged"') == 2


def test_segment_command_shows_the_warnings_and_a_summary(dataset):
    """``rna-localization segment`` in its own process, as a user runs it."""
    root = dataset.parent
    shape = io.stack_shape(root / "rna" / "raw-data" / "img_00.tif")
    spacing = (0.3, 0.1, 0.1)  # the data set's [scale]
    for i, name in enumerate(("img_00", "img_01", "img_02", "img_03")):
        io.write_stack(root / "rna" / "raw-data" / f"{name}.tif",
                       _raw(shape, spacing, spots=name != "img_02", seed=i), spacing=spacing)
    done = subprocess.run(
        [sys.executable, "-m", "rna_localization.cli", "segment", "--config", str(dataset),
         "--structure", "rna", "--overwrite"],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "warning: The segmentation of img_02 has no objects." in done.stderr
    assert done.stderr.count("warning: ") == 1, done.stderr
    page = root / "rna" / "segmentations" / "qc" / "index.html"
    assert done.stdout.strip().splitlines()[-1] == (
        f"rna: 4 segmentation(s) written, none skipped; 1 of 4 images look wrong: see {page}")


# ------------------------------------------------------------------ doctor
def _write_segmentation(dataset, name, mask):
    io.write_stack(dataset.parent / "rna" / "segmentations" / f"{name}_seg.tif", mask,
                   spacing=(0.3, 0.1, 0.1))


@pytest.mark.parametrize(
    ("make", "what"),
    [
        (_empty, r"^rna: 1 segmentation\(s\) with no objects: img_01$"),
        (_huge, r"^rna: 1 segmentation\(s\) with one object over 5% of the stack: img_01$"),
        (_crowded, r"^rna: 1 segmentation\(s\) with implausibly many objects \(more than 2 per "
                   r"µm³ of the stack\): img_01$"),
    ],
)
def test_doctor_names_implausible_segmentations_with_the_fix(dataset, make, what):
    shape = io.stack_shape(dataset.parent / "rna" / "raw-data" / "img_01.tif")
    _write_segmentation(dataset, "img_01", make(shape))
    findings = diagnose(dataset, database=False)
    finding = _find(findings, what)
    assert not finding.ok
    assert "voxel size ([scale] xy = 0.1, z = 0.3 in pipeline.toml)" in finding.fix
    assert "playground notebook" in finding.fix
    assert "rna-localization segment --structure rna --workflow FILE --overwrite" in finding.fix
    assert [f.what for f in findings if not f.ok] == [finding.what]  # the other images are fine
    assert _find(findings, r"^rna: 4 raw stacks, each with a segmentation").ok


def test_doctor_lists_every_image_of_a_kind_and_a_float_segmentation(dataset):
    shape = io.stack_shape(dataset.parent / "rna" / "raw-data" / "img_00.tif")
    for name in ("img_00", "img_03"):
        _write_segmentation(dataset, name, _empty(shape))
    _write_segmentation(dataset, "img_01", np.where(_normal(shape) > 0, 0.9, 0.0).astype(np.float32))
    findings = diagnose(dataset, database=False)
    assert not _find(findings, r"^rna: 2 segmentation\(s\) with no objects: img_00, img_03$").ok
    floats = _find(findings, r"img_01_seg\.tif: segmentation must hold integers")
    assert "label image" in floats.fix
