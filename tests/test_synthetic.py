"""The simulator: determinism, physics, ideal masks, and the pipeline against its truth.

Oracles are computed here from the truth tables (half-maximum ellipsoids,
brute-force nearest voxels), not read back from the simulator's own helpers.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import tifffile
from scipy import ndimage
from scipy.spatial import cKDTree

from rna_localization import (
    cumulative_distribution,
    distance_steps,
    label_objects,
    load_config,
    measure_objects,
    nearest_distances,
    normalize_intensities,
)
from rna_localization.synthetic import (
    CENTROSOME_PAIR_SPACING_UM,
    NUCLEAR_SPACING_UM,
    PRESETS,
    PSF_SIGMA_UM,
    SPACING_UM,
    apply_camera,
    dataset_conditions,
    simulate_dataset,
    simulate_image,
)
from rna_localization.synthetic import model as synthetic_model

SPACING = np.array(SPACING_UM)
SIGMA = np.array(PSF_SIGMA_UM)
VOXEL_DIAGONAL = float(np.linalg.norm(SPACING))
# Half-maximum semi-axes of the PSF (µm): the extent of a single molecule's ideal mask.
HALF_MAX_AXES = SIGMA * math.sqrt(2 * math.log(2))
SMALL = (20, 192, 192)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """Eight images, two per condition, written to disk."""
    return simulate_dataset(tmp_path_factory.mktemp("sim") / "data", n_images=8, seed=1,
                            shape=SMALL)


@pytest.fixture(scope="module")
def measured(dataset):
    """The pipeline's array core run on the written raw images and ideal masks."""
    metadata = pd.read_csv(dataset / "raw-data-metadata.csv")
    molecules = pd.read_csv(dataset / "truth" / "molecules.csv")
    images = {}
    for row in metadata.itertuples():
        read = {
            (structure, kind): tifffile.imread(dataset / structure / folder / f"{row.name}{suffix}.tif")
            for structure in ("rna", "centrosomes")
            for kind, folder, suffix in [("raw", "raw-data", ""), ("seg", "segmentations", "_seg")]
        }
        rna_labels = label_objects(read["rna", "seg"])
        centrosome_labels = label_objects(read["centrosomes", "seg"])
        objects = measure_objects(rna_labels, read["rna", "raw"])
        # Real images sit on a high background: take it out (the median of the
        # raw stack, nearly all background) before counting molecules by intensity.
        level = float(np.median(read["rna", "raw"]))
        objects["total_intensity"] -= level * objects["area"]
        distances = nearest_distances(rna_labels, centrosome_labels, SPACING)
        objects = objects.merge(distances[["object_id", "distance"]], on="object_id")
        images[row.name] = {
            "row": row, "objects": objects, "rna_labels": rna_labels,
            "centrosome_labels": centrosome_labels,
            "molecules": molecules[molecules["name"] == row.name],
        }
    return images


def _half_max_ellipsoid(position, shape):
    """Voxels (flat indices) whose centres lie in the PSF's half-maximum ellipsoid."""
    reach = np.ceil(HALF_MAX_AXES / SPACING).astype(int) + 1
    base = np.rint(position).astype(int)
    axes = [np.arange(base[a] - reach[a], base[a] + reach[a] + 1) for a in range(3)]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    grid = grid[np.all((grid >= 0) & (grid < shape), axis=1)]
    scaled = (grid - position) * SPACING / SIGMA
    inside = grid[np.sum(scaled**2, axis=1) <= 2 * math.log(2)]
    return np.ravel_multi_index(tuple(inside.T), shape)


# ------------------------------------------------------------------ basics
@pytest.mark.parametrize("seed", [0, 1])
def test_a_point_inside_a_granule_ball_joins_its_nearest_centre(seed):
    # Oracle: every (point, centre) distance, brute force.
    from rna_localization.synthetic.geometry import inside_ball

    rng = np.random.default_rng(seed)
    centres = rng.uniform(0, 2, (15, 3))
    centres[:3] = [[0.5, 0.5, 0.5], [1.0, 1.0, 1.0], [1.5, 1.5, 1.5]]  # binary fractions
    points = np.concatenate([rng.uniform(0, 2, (400, 3)),
                             centres[:3] + [0.0, 0.0, 0.25]])  # exactly on a surface: inside
    distance = np.linalg.norm(points[:, None] - centres[None], axis=-1)
    expected = np.where(distance.min(axis=1) <= 0.25, distance.argmin(axis=1), -1)
    found = inside_ball(points, centres, 0.25)
    np.testing.assert_array_equal(found, expected)
    assert (found[-3:] >= 0).all()
    assert 0 < (found >= 0).sum() < len(points)
    assert inside_ball(points, np.zeros((0, 3)), 0.25).tolist() == [-1] * len(points)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_overlapping_granules_fuse_and_no_others(seed):
    # Oracle: the transitive closure of "centres closer than a diameter", by repeated
    # merging of a brute-force adjacency matrix, against fused_groups.
    from rna_localization.synthetic.geometry import fused_groups

    rng = np.random.default_rng(seed)
    radius = 0.25
    centres = rng.uniform(0, 3, (60, 3))
    centres[7] = centres[6] + [0, 0.3, 0]  # overlapping
    centres[8] = centres[7] + [0.45, 0, 0]  # overlapping 7, not 6 (0.54 from it): chained
    close = np.linalg.norm(centres[:, None] - centres[None], axis=-1) < 2 * radius
    reach = close.copy()
    while True:
        grown = (reach.astype(int) @ close.astype(int)) > 0
        if (grown == reach).all():
            break
        reach = grown
    groups = fused_groups(centres, radius)
    np.testing.assert_array_equal(groups[:, None] == groups[None], reach)
    assert groups[6] == groups[7] == groups[8]
    # Balls that only touch at a point stay apart.
    assert fused_groups([[0, 0, 0], [0, 0, 0.5]], radius).tolist() == [0, 1]
    # Numbered in the order of each group's first ball.
    first = [int(np.flatnonzero(groups == g)[0]) for g in range(groups.max() + 1)]
    assert first == sorted(first)
    assert fused_groups(np.zeros((0, 3)), radius).size == 0


def test_same_seed_same_image_other_seed_other_image():
    first = simulate_image("a", rna_type="cen", cycle="nc14", seed=5, shape=(16, 96, 96))
    again = simulate_image("a", rna_type="cen", cycle="nc14", seed=5, shape=(16, 96, 96))
    other = simulate_image("a", rna_type="cen", cycle="nc14", seed=6, shape=(16, 96, 96))
    for array in ("rna", "centrosomes", "rna_labels", "centrosome_labels"):
        assert getattr(first, array).dtype == np.uint16
        assert getattr(first, array).shape == (16, 96, 96)
        np.testing.assert_array_equal(getattr(first, array), getattr(again, array))
    pd.testing.assert_frame_equal(first.molecules, again.molecules)
    pd.testing.assert_frame_equal(first.centrosomes_table, again.centrosomes_table)
    assert not np.array_equal(first.rna, other.rna)
    assert first.spacing == pytest.approx(SPACING_UM)
    assert first.metadata == {"name": "a", "rna_type": "cen", "cycle": "nc14",
                              "preset": "confocal", "snr": 8.0,
                              "replicate": 1, "seed": 5}


def test_spacing_sets_the_physical_scale():
    coarse = simulate_image("a", rna_type="gapdh", cycle="nc13", seed=2, shape=(16, 96, 96),
                            spacing=(0.3, 0.1, 0.1))
    assert coarse.spacing == pytest.approx((0.3, 0.1, 0.1))
    molecules = coarse.molecules
    # No molecule above the embryo surface, whatever the voxel size.
    assert (molecules["z"] * 0.3 >= synthetic_model.SURFACE_DEPTH_UM - 1e-9).all()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"rna_type": "actin", "cycle": "nc14"}, "rna_type must be one of"),
        ({"rna_type": "cen", "cycle": "nc12"}, "cycle must be one of"),
        ({"rna_type": "cen", "cycle": "nc14", "shape": (8, 64, 64)}, "Add z planes"),
        ({"rna_type": "cen", "cycle": "nc14", "shape": (16, 64)}, "shape must be three"),
        ({"rna_type": "cen", "cycle": "nc14", "spacing": (0.2, 0, 0.065)}, "spacing must be"),
    ],
)
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        simulate_image("a", seed=0, **{"shape": (16, 64, 64), **kwargs})


# ----------------------------------------------------------------- geometry
@pytest.mark.parametrize("cycle", ["nc13", "nc14"])
def test_nuclear_lattice_and_centrosome_pairs_follow_the_cycle(cycle):
    shape = (14, 420, 420)  # 27 µm wide, thin in z: geometry only
    spacing = NUCLEAR_SPACING_UM[cycle]
    pair_spacings, neighbour_spacings, densities = [], [], []
    for seed in range(3):
        image = simulate_image("g", rna_type="gapdh", cycle=cycle, seed=seed, shape=shape)
        field_um = (np.array(shape[1:]) - 1) * SPACING[1:]
        nuclei = image.nuclei[["y", "x"]].to_numpy() * SPACING[1:]
        inside = np.all((nuclei >= 0) & (nuclei <= field_um), axis=1)
        densities.append(inside.sum() / np.prod(field_um))
        # Six neighbours on a hexagonal lattice; away from the border all are known.
        interior = np.all((nuclei >= spacing) & (nuclei <= field_um - spacing), axis=1)
        distance, _ = cKDTree(nuclei).query(nuclei[interior], k=7)
        neighbour_spacings.extend(distance[:, 1:].ravel())
        table = image.centrosomes_table
        centres = table[["z", "y", "x"]].to_numpy() * SPACING
        for _, rows in table.groupby("nucleus_id"):
            if len(rows) == 2:
                a, b = centres[rows.index]
                pair_spacings.append(np.linalg.norm(a - b))
                # The pair straddles its own nucleus.
                nucleus = image.nuclei.set_index("nucleus_id").loc[rows["nucleus_id"].iloc[0]]
                midpoint = (a + b)[1:] / 2
                assert np.linalg.norm(midpoint - nucleus[["y", "x"]].to_numpy() * SPACING[1:]) < 0.2
    assert np.mean(pair_spacings) == pytest.approx(CENTROSOME_PAIR_SPACING_UM[cycle], rel=0.05)
    assert len(neighbour_spacings) >= 12
    assert np.median(neighbour_spacings) == pytest.approx(spacing, rel=0.1)
    hexagonal_density = 2 / (math.sqrt(3) * spacing**2)
    assert np.mean(densities) == pytest.approx(hexagonal_density, rel=0.3)


def test_nc14_is_denser_with_closer_centrosome_pairs():
    assert NUCLEAR_SPACING_UM["nc13"] / NUCLEAR_SPACING_UM["nc14"] > 1.3
    assert CENTROSOME_PAIR_SPACING_UM["nc13"] / CENTROSOME_PAIR_SPACING_UM["nc14"] > 1.3
    shape = (14, 420, 420)
    counts = {
        cycle: np.mean([
            simulate_image("g", rna_type="gapdh", cycle=cycle, seed=s, shape=shape)
            .centrosomes_table.shape[0] for s in range(2)
        ])
        for cycle in ("nc13", "nc14")
    }
    assert counts["nc14"] > 1.5 * counts["nc13"]


# -------------------------------------------------------------------- noise
def test_camera_model_mean_and_variance():
    rng = np.random.default_rng(0)
    offset, gain, read_noise = 100.0, 2.0, 1.6
    camera = {"offset": offset, "gain": gain, "read_noise": read_noise}
    dark = apply_camera(np.zeros((4, 256, 256)), rng, **camera).astype(np.float64)
    assert dark.mean() == pytest.approx(offset, abs=0.05)
    assert dark.var() == pytest.approx(gain**2 * read_noise**2 + 1 / 12, rel=0.05)  # + rounding
    lit = apply_camera(np.full((4, 256, 256), 50.0), rng, **camera).astype(np.float64)
    assert lit.mean() == pytest.approx(offset + gain * 50, abs=0.2)
    assert lit.var() == pytest.approx(gain**2 * (50 + read_noise**2), rel=0.05)
    saturated = apply_camera(np.full((1, 2, 2), 1e6), rng)
    assert saturated.dtype == np.uint16
    assert (saturated == 65535).all()


@pytest.mark.parametrize("preset", ["confocal", "widefield"])
def test_images_look_like_real_smfish(preset):
    # Measured as on the real hand-tagged images (docs/segmentation.md): each
    # molecule's peak above the local background (median over 15x15 px) over the
    # noise (1.4826 MAD of the background-subtracted image).
    scope = PRESETS[preset]
    image = simulate_image("r", rna_type="gapdh", cycle="nc14", seed=2, preset=preset, snr=8.0,
                           shape=(30, 192, 192))
    raw = image.rna.astype(np.float64)
    local = ndimage.median_filter(raw, size=(1, 15, 15))
    residual = raw - local
    noise = 1.4826 * np.median(np.abs(residual - np.median(residual)))
    # Dense molecules and background varying inside the 15x15 window add to the
    # shot, read and texture noise the preset states.
    assert scope.gain * scope.noise * 0.9 <= noise <= scope.gain * scope.noise * 1.4
    # A high background: the camera offset plus the autofluorescence and haze.
    inside = raw[10:]
    floor = scope.camera_offset + scope.gain * scope.background
    assert floor * 0.95 <= np.median(inside) <= floor * 1.3  # + out-of-focus blobs
    # Uneven: the background smoothed over microns varies by more than the noise.
    smooth = ndimage.gaussian_filter(local[10:], (0, 10, 10))
    assert np.percentile(smooth, 95) - np.percentile(smooth, 5) > 3 * noise
    singles = image.molecules[~image.molecules["in_granule"]]
    voxel = np.rint(singles[["z", "y", "x"]].to_numpy()).astype(int)
    peak = ndimage.maximum_filter(residual, size=3)[tuple(voxel.T)] / noise
    # Median ~8 like the real images; the max over 27 noisy voxels biases it up a little.
    assert 6.5 <= np.median(peak) <= 10.5
    # Spread like the real images', measured the same way (six hand-tagged widefield images,
    # docs/quantification.md, "What the granules' mean absolute error is made of":
    # 10th percentile over the median 0.66-0.84, 90th 1.07-1.52). Here 0.70 / 1.50
    # (confocal) and 0.68 / 1.46 (widefield); the simulator's brightness spread of before
    # 2026-12-06 (sigma 0.35 of log) read 0.63 / 1.53 and 0.64 / 1.59.
    low, high = np.percentile(peak, [10, 90]) / np.median(peak)
    assert 0.66 <= low <= 0.84
    assert 1.07 <= high <= 1.52
    sigma = synthetic_model.MOLECULE_BRIGHTNESS_SIGMA
    assert np.percentile(singles["snr"], 10) == pytest.approx(8 * np.exp(-1.2816 * sigma), rel=0.15)


# -------------------------------------------------------------- ideal masks
@pytest.fixture(scope="module")
def crowded():
    return simulate_image("m", rna_type="cen", cycle="nc14", seed=4, shape=SMALL)


def test_rna_labels_match_the_molecule_table(crowded):
    labels, molecules = crowded.rna_labels, crowded.molecules
    present = np.unique(labels)
    present = present[present != 0]
    np.testing.assert_array_equal(present, np.arange(1, present.size + 1))
    assert set(molecules["object_id"]) == set(present)
    assert molecules["molecule_id"].is_unique
    sizes = molecules.groupby("object_id").size()
    granules = molecules[molecules["in_granule"]].groupby("object_id").size()
    assert (granules >= 4).all()
    assert molecules["in_granule"].sum() > 0
    # A single molecule's own label sits on its centre (unless a brighter neighbour took it).
    singles = molecules[~molecules["in_granule"] & molecules["object_id"].map(sizes).eq(1)]
    centre = np.rint(singles[["z", "y", "x"]].to_numpy()).astype(int)
    on_centre = labels[tuple(centre.T)] == singles["object_id"].to_numpy()
    assert on_centre.mean() > 0.98


def test_single_molecule_masks_are_half_maximum_ellipsoids(crowded):
    labels, molecules = crowded.rna_labels, crowded.molecules
    sizes = molecules.groupby("object_id").size()
    singles = molecules[~molecules["in_granule"] & molecules["object_id"].map(sizes).eq(1)]
    flat = labels.ravel()
    area = np.bincount(flat)
    whole = 0
    for row in singles.itertuples():
        ellipsoid = _half_max_ellipsoid(np.array([row.z, row.y, row.x]), labels.shape)
        assert 10 <= ellipsoid.size <= 40
        own = np.flatnonzero(flat == row.object_id) if area[row.object_id] else np.array([])
        assert np.isin(own, ellipsoid).all()  # never beyond its ellipsoid
        whole += own.size == ellipsoid.size
    assert whole / len(singles) > 0.85  # most are not crowded at all
    single_areas = area[singles["object_id"]]
    granule_areas = area[molecules.loc[molecules["in_granule"], "object_id"].unique()]
    assert ((single_areas >= 10) & (single_areas <= 40)).mean() > 0.95
    assert np.median(granule_areas) >= 2 * np.median(single_areas)


def test_centrosome_masks_hold_their_centres_and_pairs_do_not_touch(crowded):
    labels, table = crowded.centrosome_labels, crowded.centrosomes_table
    assert len(table) >= 4
    np.testing.assert_array_equal(np.unique(labels)[1:], table["centrosome_id"])
    centre = np.rint(table[["z", "y", "x"]].to_numpy()).astype(int)
    np.testing.assert_array_equal(labels[tuple(centre.T)], table["centrosome_id"])
    cube = np.ones((3, 3, 3), bool)
    for _, pair in table.groupby("nucleus_id"):
        if len(pair) == 2:
            a, b = pair["centrosome_id"]
            grown = ndimage.binary_dilation(labels == a, cube)
            assert not (grown & (labels == b)).any()
    diameter = 2 * np.cbrt(np.bincount(labels.ravel())[1:] * np.prod(SPACING) * 3 / (4 * np.pi))
    assert ((diameter > 0.3) & (diameter < 1.6)).all()


# --------------------------------------------- the pipeline against the truth
def test_written_data_set_layout(dataset):
    metadata = pd.read_csv(dataset / "raw-data-metadata.csv")
    pd.testing.assert_frame_equal(metadata, dataset_conditions(8))
    assert metadata.groupby(["rna_type", "cycle"]).size().eq(2).all()
    for name in metadata["name"]:
        for structure in ("rna", "centrosomes"):
            raw = dataset / structure / "raw-data" / f"{name}.tif"
            with tifffile.TiffFile(raw) as tif:
                assert tif.series[0].shape == SMALL
                assert tif.imagej_metadata["spacing"] == pytest.approx(SPACING_UM[0])
            seg = tifffile.imread(dataset / structure / "segmentations" / f"{name}_seg.tif")
            assert seg.dtype == np.uint16
    config = load_config(dataset / "pipeline.toml")
    assert config.data.data_dir == dataset
    assert config.spacing == pytest.approx(SPACING_UM)
    assert config.plot.col == "cycle"


def test_expected_distributions_follow_the_definition(dataset):
    expected = pd.read_csv(dataset / "truth" / "expected_distributions.csv")
    molecules = pd.read_csv(dataset / "truth" / "molecules.csv")
    config = load_config(dataset / "pipeline.toml")
    threshold_table = config.distribution.distance_threshold
    for name, curve in expected.groupby("name"):
        row = curve.iloc[0]
        threshold = threshold_table.for_image(row.to_dict(), name)
        np.testing.assert_allclose(curve["distance"], distance_steps(threshold, 0.05))
        mine = molecules[molecules["name"] == name]
        kept = mine[mine["distance_to_centrosomes"] <= threshold]
        at_one = kept.loc[kept["distance_to_centrosomes"] <= 1.0, "brightness"].sum()
        value = curve.loc[np.isclose(curve["distance"], 1.0), "percent_total_rna"].item()
        assert value == pytest.approx(100 * at_one / kept["brightness"].sum(), abs=1e-3)
        assert curve["percent_total_rna"].iloc[-1] == pytest.approx(100)


def test_truth_distances_are_nearest_centrosome_voxels(measured):
    for image in measured.values():
        voxels = np.argwhere(image["centrosome_labels"]) * SPACING
        molecules = image["molecules"]
        truth, _ = cKDTree(voxels).query(molecules[["z", "y", "x"]].to_numpy() * SPACING)
        # The CSV keeps 8 significant digits.
        np.testing.assert_allclose(molecules["distance_to_centrosomes"], truth, atol=1e-5)


def test_pipeline_distances_of_single_molecules_match_the_truth(measured):
    differences = []
    for image in measured.values():
        molecules, objects = image["molecules"], image["objects"].set_index("object_id")
        sizes = molecules.groupby("object_id").size()
        singles = molecules[~molecules["in_granule"] & molecules["object_id"].map(sizes).eq(1)]
        measured_distance = singles["object_id"].map(objects["distance"])
        differences.append(measured_distance - singles["distance_to_centrosomes"])
    difference = pd.concat(differences)
    assert len(difference) > 500
    # The mask reaches at most its half-maximum semi-axis towards the centrosome,
    # and holds the voxel nearest the true centre (at most half a diagonal away).
    assert difference.min() >= -HALF_MAX_AXES.max() - 1e-6
    assert difference.max() <= VOXEL_DIAGONAL / 2 + 1e-6
    assert (difference.abs() <= VOXEL_DIAGONAL).mean() > 0.9


def test_normalization_counts_molecules_in_granules(measured):
    objects = []
    for image in measured.values():
        table = image["objects"].copy()
        molecules = image["molecules"]
        table["molecules"] = table["object_id"].map(molecules.groupby("object_id").size())
        table["granule"] = table["object_id"].map(molecules.groupby("object_id")["in_granule"].any())
        table["rna_type"] = image["row"].rna_type
        objects.append(table)
    objects = pd.concat(objects, ignore_index=True)
    objects["normalized"] = normalize_intensities(
        objects["total_intensity"], objects["area"], objects["rna_type"],
        lower_threshold=10, upper_threshold=40,
    )
    granules = objects[objects["granule"]]
    assert len(granules) >= 10
    ratio = granules["normalized"] / granules["molecules"]
    assert ratio.mean() == pytest.approx(1.0, abs=0.15)
    singles = objects[~objects["granule"] & objects["molecules"].eq(1)]
    # The reference is a mean of log-normal brightnesses (MOLECULE_BRIGHTNESS_SIGMA): a
    # median single sits at exp(-sigma**2 / 2) of it (0.96 at sigma 0.27).
    sigma = synthetic_model.MOLECULE_BRIGHTNESS_SIGMA
    assert singles["normalized"].median() == pytest.approx(np.exp(-sigma**2 / 2), abs=0.1)


def test_cen_rna_is_closer_to_centrosomes_than_gapdh(measured, dataset):
    thresholds = {"nc13": 4.0, "nc14": 3.0}
    expected = pd.read_csv(dataset / "truth" / "expected_distributions.csv")
    at_one = []
    for name, image in measured.items():
        objects, row = image["objects"], image["row"]
        curve = cumulative_distribution(
            objects["distance"], objects["total_intensity"], np.ones(len(objects)),
            step_size=0.05, distance_threshold=thresholds[row.cycle],
        )
        truth = expected[expected["name"] == name]
        # On ideal masks the pipeline follows the true curve within a few points:
        # it measures from each mask's nearest voxel (~0.13 µm nearer than the
        # centre) and counts background in total_intensity.
        np.testing.assert_allclose(curve["distance"], truth["distance"])
        gap = np.abs(curve["percent_total_rna"].to_numpy() - truth["percent_total_rna"].to_numpy())
        assert gap.mean() < 8
        value = curve.loc[np.isclose(curve["distance"], 1.0), "percent_total_rna"].item()
        at_one.append({"rna_type": row.rna_type, "cycle": row.cycle, "percent": value})
    table = pd.DataFrame(at_one).pivot_table(index="cycle", columns="rna_type", values="percent")
    assert (table["cen"] - table["gapdh"] >= 15).all(), table
