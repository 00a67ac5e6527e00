import math

import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import cdist

from rna_localization.apertures import (
    APERTURE_COLUMNS,
    APERTURE_GROW_UM,
    APERTURE_SHELL_UM,
    aperture_intensities,
)

SPACING = (0.2, 0.065, 0.065)
PSF_SIGMA_UM = np.array((0.3, 0.1, 0.1))


def _steps(spacing, grow_um):
    """The voxel steps distances are measured in: a step longer than a (non-zero) aperture
    reach counts as that reach, so the aperture holds the next voxel along every axis."""
    spacing = np.broadcast_to(np.asarray(spacing, float), (3,))
    return np.array([min(s, grow_um) if grow_um > 0 else s for s in spacing])


def _oracle(labels, raw, spacing, grow_um, shell_um, background_kind="shell", min_voxels=8):
    """All voxel-to-object-voxel distances; ties (to 1e-9 relative) go to the smallest label.

    Distances are measured in `_steps`: the spacing, each step longer than `grow_um`
    counted as `grow_um`.

    background_kind "shell": the median of the object's whole shell; "shell_plane": each
    aperture voxel takes the median of the object's shell voxels in its own plane
    when there are at least `min_voxels` of them, else the whole shell's median.
    """
    steps = _steps(spacing, grow_um)
    object_points = np.argwhere(labels != 0)
    object_labels = labels[labels != 0].astype(np.int64)
    all_points = np.argwhere(np.ones(labels.shape, bool))  # C order, like ravel()
    distance = cdist(all_points * steps, object_points * steps)
    best = distance.min(axis=1)
    tied = distance <= best[:, None] * (1 + 1e-9) + 1e-12
    nearest = np.where(tied, object_labels, np.iinfo(np.int64).max).min(axis=1)
    in_aperture = best <= grow_um * (1 + 1e-9) + 1e-12
    in_shell = ~in_aperture & (best <= (grow_um + shell_um) * (1 + 1e-9) + 1e-12)
    values = raw.ravel()
    plane = all_points[:, 0]
    rows = []
    for object_id in np.unique(object_labels):
        aperture = values[(nearest == object_id) & in_aperture]
        shell = values[(nearest == object_id) & in_shell]
        background = np.median(shell.astype(float)) if shell.size else np.median(raw.astype(float))
        total = math.fsum(float(v) for v in aperture)
        under = background * aperture.size
        if background_kind == "shell_plane" and shell.size:
            aperture_planes = plane[(nearest == object_id) & in_aperture]
            shell_planes = plane[(nearest == object_id) & in_shell]
            under = 0.0
            for z in aperture_planes:
                ring = shell[shell_planes == z].astype(float)
                under += np.median(ring) if ring.size >= min_voxels else background
            background = under / aperture.size
        rows.append({
            "object_id": int(object_id), "spot_intensity": total - under,
            "background": background, "aperture_area": aperture.size, "shell_area": shell.size,
        })
    return pd.DataFrame(rows)


def _fitted_map(labels, raw, spacing, grow_um, sigma_um, reach_um):
    """The smooth background map of ``background="shell_plane_map"`` by brute force, at
    every voxel, for a sigma of under 4 lateral voxels (the plane background's cells are
    then single voxels).

    Each plane's smooth background at a voxel: the least-squares plane through the
    values of the voxels outside the box of half-widths `reach_um` (in the distances'
    steps) around every object voxel, each weighted by a Gaussian of lateral `sigma_um`
    centred on the voxel (scipy's truncated, normalised kernel: 4 sigmas), read at the
    voxel; their weighted mean where the weighted covariance of their positions (in
    sigmas) has a determinant under 0.01; where none weighs, the nearest voxel that has
    one (a plane with none: 0).
    """
    from scipy import ndimage

    steps = _steps(spacing, grow_um)
    reach = np.floor(reach_um * (1 + 1e-9) / steps + 1e-12).astype(int)
    near = ndimage.maximum_filter(labels != 0, size=tuple(2 * reach + 1), mode="constant")
    sigma = sigma_um / np.broadcast_to(np.asarray(spacing, float), (3,))[1:]
    radius = (4.0 * sigma + 0.5).astype(int)
    kernels = []
    for s, r in zip(sigma, radius):
        k = np.exp(-0.5 * (np.arange(-r, r + 1) / s) ** 2)
        kernels.append(k / k.sum())
    light = np.zeros(raw.shape)
    height, width = raw.shape[1:]
    for z in range(raw.shape[0]):
        plane = np.full((height, width), np.nan)
        ys, xs = np.nonzero(~near[z])
        for y in range(height):
            for x in range(width):
                dy, dx = ys - y, xs - x
                inside = (np.abs(dy) <= radius[0]) & (np.abs(dx) <= radius[1])
                w = kernels[0][dy[inside] + radius[0]] * kernels[1][dx[inside] + radius[1]]
                if w.sum() <= 1e-9:
                    continue
                f = raw[z, ys[inside], xs[inside]].astype(float)
                design = np.column_stack([np.ones(w.size), dy[inside] / sigma[0],
                                          dx[inside] / sigma[1]])
                normal = design.T @ (design * w[:, None])
                if np.linalg.det(normal) > 1e-2 * w.sum() ** 3:
                    plane[y, x] = np.linalg.solve(normal, design.T @ (w * f))[0]
                else:
                    plane[y, x] = (w * f).sum() / w.sum()
        unknown = np.isnan(plane)
        if unknown.all():
            plane[:] = 0.0
        elif unknown.any():
            plane = plane[tuple(ndimage.distance_transform_edt(
                unknown, return_distances=False, return_indices=True))]
        light[z] = plane
    return light


def _map_oracle(labels, raw, spacing, grow_um, shell_um, light, min_voxels=8):
    """``background="shell_plane_map"`` by brute force, given the map `light` at every
    voxel: each aperture voxel's level is its plane's ring median of the light, plus the
    map at the voxel, less the map's median over the same ring (both over the whole
    shell where the ring holds fewer than `min_voxels`).
    """
    plain = _oracle(labels, raw, spacing, grow_um, shell_um, "shell_plane", min_voxels)
    # The map read as the light is: its aperture sum less its rings' medians.
    moved = _oracle(labels, light, spacing, grow_um, shell_um, "shell_plane", min_voxels)
    result = plain.copy()
    has_shell = plain["shell_area"] > 0  # no shell at all: the image's median, unmoved
    result.loc[has_shell, "spot_intensity"] -= moved["spot_intensity"][has_shell]
    result.loc[has_shell, "background"] += (moved["spot_intensity"]
                                            / plain["aperture_area"])[has_shell]
    return result


def _random_objects(rng, shape, n_objects, labels=None):
    """Up to `n_objects` objects, each a few random walks' voxels (overlaps: the last wins)."""
    image = np.zeros(shape, np.int32)
    labels = rng.permutation(np.arange(1, n_objects + 1)) if labels is None else labels
    for label in labels:
        point = np.array([rng.integers(n) for n in shape])
        for _ in range(rng.integers(1, 6)):
            image[tuple(point)] = label
            point = np.clip(point + rng.integers(-1, 2, 3), 0, np.array(shape) - 1)
    return image


@pytest.mark.parametrize(("background", "min_voxels"),
                         [("shell", 8), ("shell_plane", 8), ("shell_plane", 1), ("shell_plane", 30)])
@pytest.mark.parametrize("spacing", [(0.3, 0.1, 0.1), (0.2, 0.065, 0.065), 0.1])
@pytest.mark.parametrize("seed", range(8))
def test_matches_brute_force_oracle(monkeypatch, spacing, seed, background, min_voxels):
    from rna_localization import apertures

    monkeypatch.setattr(apertures, "SHELL_PLANE_MIN_VOXELS", min_voxels)
    rng = np.random.default_rng(seed)
    labels = _random_objects(rng, (6, 10, 10), int(rng.integers(1, 5)))
    raw = rng.integers(0, 1000, labels.shape).astype(np.uint16)
    # Radii on which many voxels lie exactly (a 0.3 um z-step, a 0.1 um xy-step).
    for grow_um, shell_um in [(0.3, 0.3), (0.2, 0.13), (0.0, 0.3), (0.4, 1.0)]:
        measured = aperture_intensities(labels, raw, spacing=spacing, grow_um=grow_um,
                                        shell_um=shell_um, background=background)
        expected = _oracle(labels, raw, spacing, grow_um, shell_um, background, min_voxels)
        assert list(measured.columns) == list(APERTURE_COLUMNS)
        # Integer intensities: sums and medians are exact in float64.
        pd.testing.assert_frame_equal(measured, expected, check_dtype=False, check_exact=True)


@pytest.mark.parametrize("spacing", [(0.3, 0.1, 0.1), (0.2, 0.1, 0.1)])
@pytest.mark.parametrize("seed", range(6))
def test_shell_plane_map_matches_brute_force_oracle(spacing, seed):
    # The ring medians of the light and of the smooth background map beyond every
    # object's shell, on crowded random stacks with a slope and a bump of background;
    # blocks of one plane and row, on two threads, too (each block's map drawn over it,
    # the map's planes split between the threads). The map is held in float32.
    from rna_localization import apertures

    rng = np.random.default_rng(100 + seed)
    shape = (6, 14, 12)
    labels = _random_objects(rng, shape, int(rng.integers(2, 9)))
    zz, yy, xx = np.indices(shape)
    raw = (rng.integers(0, 400, shape) + 40 * yy + 300 * np.exp(-((xx - 8) ** 2) / 8.0)
           + 2000 * (labels > 0)).astype(np.uint16)
    for grow_um, shell_um in [(0.25, 0.3), (0.3, 0.2)]:
        # The map from the voxels beyond every object's shell.
        light = _fitted_map(labels, raw, spacing, grow_um, 0.15, grow_um + shell_um)
        expected = _map_oracle(labels, raw, spacing, grow_um, shell_um, light)
        measured = aperture_intensities(labels, raw, spacing=spacing, grow_um=grow_um,
                                        shell_um=shell_um, background="shell_plane_map",
                                        background_sigma_um=0.15)
        pd.testing.assert_frame_equal(measured, expected, check_dtype=False, rtol=1e-5,
                                      atol=0.05)
        shell_plane = _oracle(labels, raw, spacing, grow_um, shell_um, "shell_plane")
        assert not np.allclose(measured["spot_intensity"], shell_plane["spot_intensity"])
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(apertures, "_SLAB_VOXELS", 1)
        patch.setattr(apertures, "_BLOCK_PLANES", 1)
        patch.setattr(apertures, "_MAP_CELLS", 1)  # the map's planes smoothed one at a time
        blocks = aperture_intensities(labels, raw, spacing=spacing, grow_um=0.3, shell_um=0.2,
                                      background="shell_plane_map", background_sigma_um=0.15,
                                      threads=2)
    pd.testing.assert_frame_equal(blocks, measured, rtol=1e-9)


@pytest.mark.parametrize("seed", range(4))
def test_shell_plane_map_reads_cells_of_many_voxels_bilinearly(seed):
    # A sigma of 8 lateral voxels: the map's cells are 4 x 4 voxels, and each aperture and
    # shell voxel reads the map between the four nearest cell centres (the compiled sums'
    # own reading, never a drawn block). Against the same cells read here, voxel by voxel,
    # and the rings' medians by brute force; in blocks of one plane and row too.
    from rna_localization import apertures

    rng = np.random.default_rng(200 + seed)
    shape, spacing, sigma_um = (4, 40, 36), (0.3, 0.1, 0.1), 0.8
    labels = _random_objects(rng, shape, 12)
    zz, yy, xx = np.indices(shape)
    raw = (rng.integers(0, 300, shape) + 25 * yy + 15 * xx * (zz + 1)
           + 800 * np.exp(-((xx - 20) ** 2 + (yy - 12) ** 2) / 60.0)
           + 2000 * (labels > 0)).astype(np.uint16)
    grow_um, shell_um = 0.25, 0.3
    # The map's cells as the module fits them (their fit is checked voxel by voxel above).
    scale = np.array(spacing)
    metric = apertures._aperture_metric(scale, grow_um)
    reach = np.floor(apertures._at_most(grow_um + shell_um) / metric).astype(int)
    # The box the module reads: the objects' own, grown by their reach and one voxel.
    found = np.nonzero(labels)
    box = tuple(slice(max(int(c.min()) - r - 1, 0), min(int(c.max()) + r + 2, n))
                for c, r, n in zip(found, reach, shape))
    local = [(c - b.start).astype(np.int32) for c, b in zip(found, box)]
    grid, cell, corner = apertures._plane_background(raw, box, local, scale, reach, sigma_um,
                                                     linear=True)
    assert cell == 4
    # The planes smoothed in chunks of 1, 2 or 3 (of 4), on one or two threads: the same map.
    plane_cells = grid.shape[1] * grid.shape[2]
    for chunk, threads in [(1, 1), (2, 2), (3, 1), (3, 2)]:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(apertures, "_MAP_CELLS", chunk * plane_cells)
            for linear in (True, False):
                chunked = apertures._plane_background(raw, box, local, scale, reach, sigma_um,
                                                      linear=linear, threads=threads)[0]
                whole = (grid if linear else apertures._plane_background(
                    raw, box, local, scale, reach, sigma_um, linear=False)[0])
                np.testing.assert_array_equal(chunked, whole)
    grid = apertures._filled(grid).astype(np.float64)
    light = np.zeros(shape)  # (no aperture or shell voxel lies outside the box)
    for z, y, x in np.ndindex(tuple(b.stop - b.start for b in box)):
        # Cell k's centre at voxel (k + 0.5) * cell - 0.5 (clamped to the first and last).
        cy = min(max((y - corner[0] + 0.5) / cell - 0.5, 0), grid.shape[1] - 1)
        cx = min(max((x - corner[1] + 0.5) / cell - 0.5, 0), grid.shape[2] - 1)
        y0, x0 = int(cy), int(cx)
        y1, x1 = min(y0 + 1, grid.shape[1] - 1), min(x0 + 1, grid.shape[2] - 1)
        fy, fx = cy - y0, cx - x0
        value = ((1 - fy) * ((1 - fx) * grid[z, y0, x0] + fx * grid[z, y0, x1])
                 + fy * ((1 - fx) * grid[z, y1, x0] + fx * grid[z, y1, x1]))
        light[z + box[0].start, y + box[1].start, x + box[2].start] = value
    expected = _map_oracle(labels, raw, spacing, grow_um, shell_um, light)
    measured = aperture_intensities(labels, raw, spacing=spacing, grow_um=grow_um,
                                    shell_um=shell_um, background_sigma_um=sigma_um)
    # The shell voxels' map values are kept in float32.
    pd.testing.assert_frame_equal(measured, expected, check_dtype=False, rtol=1e-6, atol=0.02)
    plain = _oracle(labels, raw, spacing, grow_um, shell_um, "shell_plane")
    assert np.abs(measured["spot_intensity"] - plain["spot_intensity"]).max() > 1.0
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(apertures, "_SLAB_VOXELS", 1)
        patch.setattr(apertures, "_BLOCK_PLANES", 1)
        patch.setattr(apertures, "_MAP_CELLS", 1)  # the map's planes smoothed one at a time
        blocks = aperture_intensities(labels, raw, spacing=spacing, grow_um=grow_um,
                                      shell_um=shell_um, background_sigma_um=sigma_um,
                                      threads=2)
    pd.testing.assert_frame_equal(blocks, measured, rtol=1e-9)


@pytest.mark.parametrize("flank_um", [(0.0, -2.0), (1.0, -1.0), (0.0, 1.0), (1.0, 2.0)])
def test_shell_plane_map_follows_the_slope_under_a_one_sided_ring(flank_um):
    # A spot beside a much brighter neighbour, whose aperture takes one side of the
    # spot's ring, on the flank of an out-of-focus cell (a bump of background 2 µm wide,
    # three times the spot's peak). The ring's median is the background off to one side:
    # the spot reads 66-114% off what it reads on a flat background. The smooth
    # background map, the plane through the voxels beyond both objects' shells, carries
    # the slope from the ring to the aperture: 2-3% off on the bump's flank; near its top
    # the plane misses the bump's curve (26-41% off).
    spot = _gaussian(SHAPE, CENTRE_UM, 1000.0)
    neighbour = _gaussian(SHAPE, CENTRE_UM + np.array([0.0, 0.0, 0.45]), 8000.0)
    labels = (spot >= spot.max() / 2).astype(np.int32)
    labels[neighbour >= neighbour.max() / 2] = 2
    yy, xx = np.meshgrid(np.arange(SHAPE[1]) * SPACING[1], np.arange(SHAPE[2]) * SPACING[2],
                         indexing="ij")
    bump = 3000.0 * np.exp(-0.5 * ((yy - CENTRE_UM[1] - flank_um[0]) ** 2
                                   + (xx - CENTRE_UM[2] - flank_um[1]) ** 2) / 2.0 ** 2)
    flat = spot + neighbour + 300

    def read(image, background):
        table = aperture_intensities(labels, image, spacing=SPACING, background=background)
        return table.set_index("object_id").loc[1, "spot_intensity"]

    truth = read(flat, "shell_plane")
    ring = read(flat + bump, "shell_plane") / truth - 1
    moved = read(flat + bump, "shell_plane_map") / truth - 1
    assert abs(ring) > 0.6
    assert abs(moved) < 0.5 * abs(ring)
    # On the flat background the map is flat too, and moves nothing but noise.
    assert read(flat, "shell_plane_map") == pytest.approx(truth, rel=0.01)


def test_float_intensities_and_sparse_labels_match_oracle():
    rng = np.random.default_rng(11)
    labels = _random_objects(rng, (7, 12, 9), 3, labels=[9, 2, 40])
    raw = rng.normal(300, 40, labels.shape).astype(np.float32)
    measured = aperture_intensities(labels, raw, spacing=SPACING, grow_um=0.25, shell_um=0.2, background="shell")
    expected = _oracle(labels, raw, SPACING, 0.25, 0.2)
    pd.testing.assert_frame_equal(measured, expected, check_dtype=False, rtol=1e-12)


def test_exact_tie_goes_to_smallest_label():
    # The middle voxel is 2 um from both objects; the distance transform picks
    # the left one (label 2), the rule says label 1.
    labels = np.array([[[2, 0, 0, 0, 1]]], np.int32)
    raw = np.array([[[1, 10, 100, 1000, 10000]]], np.uint16)
    table = aperture_intensities(labels, raw, spacing=1.0, grow_um=2.0, shell_um=1.0, background="shell")
    assert table["aperture_area"].tolist() == [3, 2]
    assert table["shell_area"].tolist() == [0, 0]


def test_tie_off_the_cell_edge_goes_to_smallest_label():
    # Voxel (3, 2, 5) is sqrt(2) from all three object voxels. The distance
    # transform gives it and all its face neighbours to object 2, so it lies on
    # no boundary between cells: only the within-d(v)-of-a-boundary search finds it.
    labels = np.zeros((5, 6, 8), np.int32)
    labels[2, 2, 6] = 1
    labels[2, 3, 5] = labels[3, 1, 6] = 2
    raw = np.arange(labels.size, dtype=np.uint16).reshape(labels.shape)
    measured = aperture_intensities(labels, raw, spacing=1.0, grow_um=1.5, shell_um=2.5, background="shell")
    expected = _oracle(labels, raw, 1.0, 1.5, 2.5)
    pd.testing.assert_frame_equal(measured, expected, check_dtype=False, check_exact=True)


def test_objects_far_from_each_other_and_the_box_margin():
    # Two objects at opposite corners of a large stack: only their boxes' union is used,
    # and the result equals the oracle on the whole stack.
    labels = np.zeros((10, 60, 60), np.int32)
    labels[0, 0, 0] = 1
    labels[9, 59, 58:] = 2
    raw = np.arange(labels.size, dtype=np.float64).reshape(labels.shape) % 97
    measured = aperture_intensities(labels, raw, spacing=(0.3, 0.1, 0.1), grow_um=0.3, shell_um=0.3, background="shell")
    expected = _oracle(labels, raw, (0.3, 0.1, 0.1), 0.3, 0.3)
    pd.testing.assert_frame_equal(measured, expected, check_dtype=False, rtol=1e-12)


def test_empty_shell_falls_back_to_the_image_median():
    labels = np.zeros((1, 3, 3), np.int32)
    labels[0, :, :2] = 1
    labels[0, :, 2] = 2  # every voxel is an object voxel: no shell
    raw = np.arange(9, dtype=np.uint16).reshape(1, 3, 3)
    table = aperture_intensities(labels, raw, spacing=1.0, background="shell")
    assert table["shell_area"].tolist() == [0, 0]
    assert table["background"].tolist() == [4.0, 4.0]
    assert table["spot_intensity"].tolist() == [0 + 1 + 3 + 4 + 6 + 7 - 4.0 * 6, 2 + 5 + 8 - 4.0 * 3]


# ------------------------------------------------------------------ Gaussian spots
def _gaussian(shape, centre_um, amplitude):
    grids = np.meshgrid(*[np.arange(n) * s for n, s in zip(shape, SPACING)], indexing="ij")
    r2 = sum(((g - c) / s) ** 2 for g, c, s in zip(grids, centre_um, PSF_SIGMA_UM))
    return amplitude * np.exp(-r2 / 2)


SHAPE = (21, 41, 61)
CENTRE_UM = np.array(SHAPE) // 2 * np.array(SPACING)


@pytest.mark.parametrize("offset_voxels", [(0, 0, 0), (0.5, 0.5, 0.5), (0.3, -0.2, 0.4)])
def test_gaussian_spot_is_captured_and_background_removed(offset_voxels):
    spot = _gaussian(SHAPE, CENTRE_UM + np.array(offset_voxels) * SPACING, 1000.0)
    labels = (spot >= spot.max() / 2).astype(np.int32)  # the half-maximum voxels
    truth = spot.sum()
    low = aperture_intensities(labels, spot + 500, spacing=SPACING, grow_um=0.3).iloc[0]
    high = aperture_intensities(labels, spot + 3000, spacing=SPACING, grow_um=0.3).iloc[0]
    assert low["background"] == pytest.approx(500, rel=0.01)
    assert high["background"] == pytest.approx(3000, rel=0.01)
    assert high["spot_intensity"] == pytest.approx(low["spot_intensity"], rel=0.005)
    # With sigma_z = 0.3 um and 0.2 um z-steps a 0.3 um aperture reaches only
    # 1.7 to 2 sigma beyond the centre in z: 90-95% of the light, depending on
    # where the spot sits in its voxel. A 0.5 um aperture reaches 2.3 sigma or more.
    assert 0.90 <= low["spot_intensity"] / truth <= 1.0
    wide = aperture_intensities(labels, spot + 500, spacing=SPACING, grow_um=0.5).iloc[0]
    assert 0.98 <= wide["spot_intensity"] / truth <= 1.0


def test_coarse_z_steps_aperture_reaches_the_next_planes():
    # 0.5 um z-steps, longer than the 0.3 um aperture, under a widefield PSF (sigma_z 0.33
    # um): a spot on a plane has a one-plane half-maximum mask and puts 32% of its peak
    # on the planes either side. Measured as it stands, its aperture held that plane only:
    # 60% of its light, against 90% for a spot between two planes (a two-plane mask).
    # Counting the step as 0.3 um takes in the planes above and below: 80% and 95%.
    spacing, sigma, shape = np.array((0.5, 0.11, 0.11)), np.array((0.33, 0.115, 0.115)), (15, 31, 31)
    grids = np.meshgrid(*[np.arange(n) * s for n, s in zip(shape, spacing)], indexing="ij")
    captured = []
    for dz in (0.0, 0.1, 0.25):
        centre = np.array(shape) // 2 * spacing + (dz, 0.03, -0.02)
        spot = 1000 * np.exp(-sum(((g - c) / w) ** 2 for g, c, w in zip(grids, centre, sigma)) / 2)
        labels = (spot >= spot.max() / 2).astype(np.int32)
        row = aperture_intensities(labels, spot + 500, spacing=spacing).iloc[0]
        assert row["background"] == pytest.approx(500, rel=0.01)
        captured.append(row["spot_intensity"] / spot.sum())
    assert min(captured) >= 0.75, captured
    assert max(captured) / min(captured) <= 1.25, captured


@pytest.mark.parametrize("brighter", [4.0, 10.0])
def test_bright_neighbour_does_not_leak_into_dim_spot(brighter):
    half_gap = np.array((0, 0, 0.3))  # 0.6 um apart along x
    dim = _gaussian(SHAPE, CENTRE_UM - half_gap, 1000.0)
    bright = _gaussian(SHAPE, CENTRE_UM + half_gap, 1000.0 * brighter)
    labels = np.zeros(SHAPE, np.int32)
    labels[dim >= 500] = 1
    labels[bright >= bright.max() / 2] = 2
    alone = aperture_intensities(labels, dim + 500, spacing=SPACING).iloc[0]
    together = aperture_intensities(labels, dim + bright + 500, spacing=SPACING)
    leak = together["spot_intensity"].iloc[0] / alone["spot_intensity"] - 1
    # The bright one's tail 0.3 um from its centre (3 lateral sigmas) is ~1% of its
    # peak, 10% of the dim one's: a few percent reach the dim aperture.
    assert abs(leak) < (0.03 if brighter < 5 else 0.05)
    assert together["spot_intensity"].iloc[1] / bright.sum() >= 0.88


# ------------------------------------------------------------------ edge cases, bad input
def test_no_object_gives_typed_empty_table():
    table = aperture_intensities(np.zeros((2, 3, 3), np.int32), np.ones((2, 3, 3)), spacing=SPACING)
    assert len(table) == 0
    assert dict(table.dtypes.astype(str)) == APERTURE_COLUMNS


def test_bad_input_is_refused():
    labels = np.zeros((2, 3, 3), np.int32)
    labels[0, 0, 0] = 1
    raw = np.ones((2, 3, 3))
    with pytest.raises(ValueError, match=r"same shape.*\(2, 3, 3\) and \(2, 3, 4\)"):
        aperture_intensities(labels, np.ones((2, 3, 4)), spacing=SPACING)
    bad = raw.copy()
    bad[0, 1, :2] = np.nan
    bad[1, 2, 2] = np.inf
    with pytest.raises(ValueError, match="3 non-finite voxels"):
        aperture_intensities(labels, bad, spacing=SPACING)
    with pytest.raises(ValueError, match="grow_um must be finite and >= 0"):
        aperture_intensities(labels, raw, spacing=SPACING, grow_um=-0.1)
    with pytest.raises(ValueError, match="grow_um must be finite"):
        aperture_intensities(labels, raw, spacing=SPACING, grow_um=np.inf)
    with pytest.raises(ValueError, match="shell_um must be finite and > 0"):
        aperture_intensities(labels, raw, spacing=SPACING, shell_um=0, background="shell")
    with pytest.raises(ValueError, match="spacing must be positive"):
        aperture_intensities(labels, raw, spacing=(0.2, 0, 0.1))
    with pytest.raises(ValueError, match=r"3D \(Z, Y, X\)"):
        aperture_intensities(labels[0], raw[0], spacing=SPACING)
    with pytest.raises(TypeError, match="integer labels"):
        aperture_intensities(labels.astype(float), raw, spacing=SPACING)
    with pytest.raises(ValueError, match="negative"):
        aperture_intensities(-labels, raw, spacing=SPACING)
    for threads in (0, 1.5, None, True):
        with pytest.raises(ValueError, match=r"threads must be a whole number >= 1; got"):
            aperture_intensities(labels, raw, spacing=SPACING, threads=threads)


@pytest.mark.parametrize("seed", range(4))
def test_dense_blocks_and_walks_with_many_ties_match_oracle(seed):
    # Crowded objects, some solid blocks (voxels with no free face, pairs pruned
    # by the free-face rule) beside random walks, on a grid where one z-step is
    # exactly three xy-steps: many voxels are tied between labels and many lie
    # exactly on the aperture and shell radii.
    rng = np.random.default_rng(100 + seed)
    shape = (8, 14, 13)
    labels = _random_objects(rng, shape, 30)
    for label in rng.choice(np.arange(31, 60), 6, replace=False):
        corner = [int(rng.integers(0, n - 2)) for n in shape]
        size = [int(rng.integers(1, 4)) for _ in shape]
        labels[tuple(slice(c, c + s) for c, s in zip(corner, size))] = label
    assert len(np.unique(labels)) > 25
    raw = rng.integers(0, 4000, shape).astype(np.uint16)
    for grow_um, shell_um in [(0.3, 0.3), (0.1, 0.2), (0.0, 0.6)]:
        measured = aperture_intensities(labels, raw, spacing=(0.3, 0.1, 0.1),
                                        grow_um=grow_um, shell_um=shell_um, background="shell")
        expected = _oracle(labels, raw, (0.3, 0.1, 0.1), grow_um, shell_um)
        pd.testing.assert_frame_equal(measured, expected, check_dtype=False, check_exact=True)
        # Float intensities (compiled loops typed for float32) must agree too.
        floats = aperture_intensities(labels, raw.astype(np.float32), spacing=(0.3, 0.1, 0.1),
                                      grow_um=grow_um, shell_um=shell_um, background="shell")
        pd.testing.assert_frame_equal(floats, expected, check_dtype=False, check_exact=True)


@pytest.mark.parametrize(("slab_voxels", "block_planes", "block"),
                         [(1, 1, (1, 1)), (546, 2, (2, 1)), (20_925, 2, (2, 14)),
                          (14_229, 16, (9, 3)), (20_925, 16, (9, 14))])
def test_slabs_of_planes_give_the_whole_stack_answer(monkeypatch, slab_voxels, block_planes, block):
    # A full frame is handled a block of planes and rows at a time, each object's
    # shell median taken once the blocks have passed it; force blocks of one plane
    # and row, of 2 planes x 1 row, of 2 planes x all rows, of all planes x 3 rows
    # and one block, on a crowded stack, and compare with the oracle.
    from rna_localization import apertures

    monkeypatch.setattr(apertures, "_SLAB_VOXELS", slab_voxels)
    monkeypatch.setattr(apertures, "_BLOCK_PLANES", block_planes)
    # (planes, rows) of the blocks: margins of 4 planes and 7 rows at 0.6 um, and
    # the 13 columns padded by 7 on each side.
    assert apertures._block_size(9, 14, 27, (4, 7, 7)) == block
    rng = np.random.default_rng(7)
    shape = (9, 14, 13)
    labels = _random_objects(rng, shape, 35)
    raw = rng.integers(0, 4000, shape).astype(np.uint16)
    monkeypatch.setattr(apertures, "SHELL_PLANE_MIN_VOXELS", 3)  # both ways a plane goes
    for background in ("shell", "shell_plane"):
        expected = _oracle(labels, raw, (0.2, 0.1, 0.1), 0.3, 0.3, background, 3)
        # With two threads the next block's keys are formed while this one's are
        # summed, in a second buffer: the same answer.
        for threads in (1, 2):
            measured = aperture_intensities(labels, raw, spacing=(0.2, 0.1, 0.1), grow_um=0.3,
                                            shell_um=0.3, background=background, threads=threads)
            pd.testing.assert_frame_equal(measured, expected, check_dtype=False, check_exact=True)
    # A lone voxel: the voxels exactly 0.6 um (three planes) above and below it are
    # in its shell, so each slab must see every plane within reach.
    lone = np.zeros((9, 3, 3), np.int32)
    lone[4, 1, 1] = 1
    raw = np.arange(lone.size, dtype=np.uint16).reshape(lone.shape)
    measured = aperture_intensities(lone, raw, spacing=(0.2, 0.1, 0.1), grow_um=0.3, shell_um=0.3, background="shell")
    expected = _oracle(lone, raw, (0.2, 0.1, 0.1), 0.3, 0.3)
    pd.testing.assert_frame_equal(measured, expected, check_dtype=False, check_exact=True)


def test_a_band_of_rows_without_objects(monkeypatch):
    # Blocks of one plane and row: those in the 30 empty rows between two groups of
    # objects (beyond every object's reach) hold no object voxel, as a full frame's
    # blocks do where it runs past the embryo; they used to raise IndexError.
    from rna_localization import apertures

    rng = np.random.default_rng(11)
    labels = np.zeros((6, 44, 9), np.int32)
    labels[:, :7] = _random_objects(rng, (6, 7, 9), 5)
    far = _random_objects(rng, (6, 7, 9), 5)
    labels[:, -7:] = np.where(far > 0, far + labels.max(), 0)
    raw = rng.integers(0, 4000, labels.shape).astype(np.uint16)
    whole = {kind: aperture_intensities(labels, raw, spacing=(0.2, 0.1, 0.1), background=kind)
             for kind in ("shell", "shell_plane", "plane")}
    monkeypatch.setattr(apertures, "_SLAB_VOXELS", 1)
    monkeypatch.setattr(apertures, "_BLOCK_PLANES", 1)
    for kind, expected in whole.items():
        measured = aperture_intensities(labels, raw, spacing=(0.2, 0.1, 0.1), background=kind,
                                        threads=2)
        pd.testing.assert_frame_equal(measured, expected, check_exact=True)
        if kind != "plane":
            oracle = _oracle(labels, raw, (0.2, 0.1, 0.1), APERTURE_GROW_UM, APERTURE_SHELL_UM,
                             kind)
            pd.testing.assert_frame_equal(measured, oracle, check_dtype=False, check_exact=True)


@pytest.mark.parametrize(("dtype", "low", "high"), [
    (np.uint16, 100, 600),
    (np.uint16, 2**16 - 50, 2**16 - 1),  # the sum of two middle values would wrap
    (np.int16, -3000, 3000),             # negative intensities
    (np.uint32, 2**32 - 5000, 2**32 - 1),
    (np.int64, -(2**40), 2**40),
    (np.float16, 0, 2000),               # half floats: read as float32 by the compiled loops
    (np.dtype(">u2"), 100, 600),         # bytes in the other order: read as native ones
])
def test_intensities_of_every_dtype_and_range_match_oracle(dtype, low, high):
    # The shell medians are selected among the intensities in their own dtype and the
    # two middle ones averaged in float64: unsigned values near the top of their
    # range, negative ones and 41-bit ones must not wrap or round.
    rng = np.random.default_rng(21)
    labels = _random_objects(rng, (7, 12, 11), 12)
    raw = rng.integers(low, high, labels.shape, endpoint=True).astype(dtype)
    _assert_both_shells_match_oracle(labels, raw, (0.2, 0.1, 0.1), 0.2)


def test_int64_keys_give_the_same_answer(monkeypatch):
    # Keys are int32 unless the distance ranks and object count need more bits
    # (tens of millions of objects), and so are the (object, plane) keys of
    # "shell_plane"; force int64 keys on a crowded stack.
    from rna_localization import apertures

    monkeypatch.setattr(apertures, "_key_dtype", lambda n_ranks, n: np.dtype(np.int64))
    monkeypatch.setattr(apertures, "_plane_key_dtype", lambda n_keys: np.dtype(np.int64))
    rng = np.random.default_rng(5)
    labels = _random_objects(rng, (8, 13, 12), 30)
    raw = rng.integers(0, 4000, labels.shape).astype(np.uint16)
    _assert_both_shells_match_oracle(labels, raw, (0.3, 0.1, 0.1), 0.3)


def _assert_both_shells_match_oracle(labels, raw, spacing, grow_um, shell_um=0.3):
    for background in ("shell", "shell_plane"):
        measured = aperture_intensities(labels, raw, spacing=spacing, grow_um=grow_um,
                                        shell_um=shell_um, background=background)
        expected = _oracle(labels, raw, spacing, grow_um, shell_um, background)
        pd.testing.assert_frame_equal(measured, expected, check_dtype=False, check_exact=True)


# ------------------------------------------------------------------ the plane background
def _plane_oracle(labels, raw, spacing, grow_um, sigma_um, shell_um=0.3):
    """Voxel by voxel: every aperture voxel's background is the Gaussian-weighted mean of its
    plane's voxels outside every aperture box, within scipy's truncation (4 sigmas);
    an object with an aperture voxel that has none takes the shell oracle's row."""
    spacing = np.broadcast_to(np.asarray(spacing, float), (3,))
    shell = _oracle(labels, raw, spacing, grow_um, shell_um).set_index("object_id")
    object_points = np.argwhere(labels != 0)
    object_labels = labels[labels != 0].astype(np.int64)
    all_points = np.argwhere(np.ones(labels.shape, bool))
    steps = _steps(spacing, grow_um)
    distance = cdist(all_points * steps, object_points * steps)
    best = distance.min(axis=1)
    tied = distance <= best[:, None] * (1 + 1e-9) + 1e-12
    nearest = np.where(tied, object_labels, np.iinfo(np.int64).max).min(axis=1)
    in_aperture = best <= grow_um * (1 + 1e-9) + 1e-12
    reach = np.floor(grow_um * (1 + 1e-9) / steps + 1e-12 / steps).astype(int)
    boxed = np.zeros(labels.shape, bool)
    for point in object_points:
        boxed[tuple(slice(max(c - r, 0), c + r + 1) for c, r in zip(point, reach))] = True
    sigma = sigma_um / spacing[1:]
    radius = (4.0 * sigma + 0.5).astype(int)
    rows = []
    for object_id in np.unique(object_labels):
        total, level, missing = 0.0, 0.0, False
        for flat in np.flatnonzero((nearest == object_id) & in_aperture):
            z, y, x = all_points[flat]
            y0, y1 = max(y - radius[0], 0), min(y + radius[0] + 1, labels.shape[1])
            x0, x1 = max(x - radius[1], 0), min(x + radius[1] + 1, labels.shape[2])
            outside = ~boxed[z, y0:y1, x0:x1]
            dy, dx = np.meshgrid(np.arange(y0, y1) - y, np.arange(x0, x1) - x, indexing="ij")
            weight = np.exp(-0.5 * ((dy / sigma[0]) ** 2 + (dx / sigma[1]) ** 2)) * outside
            if weight.sum() == 0:
                missing = True
                continue
            here = (weight * raw[z, y0:y1, x0:x1]).sum() / weight.sum()
            total += float(raw[z, y, x]) - here
            level += here
        area = int(((nearest == object_id) & in_aperture).sum())
        row = shell.loc[object_id].to_dict()
        if not missing:
            row.update(spot_intensity=total, background=level / area)
        rows.append({"object_id": int(object_id), **row})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("seed", range(6))
def test_plane_background_matches_voxel_by_voxel_oracle(seed):
    # A Gaussian sigma of 1.5 voxels makes cells of one voxel: the grid is then the
    # plane itself and the package's answer must be the oracle's (to the float32 the
    # grid is kept in: about 1e-7 of the level per voxel).
    rng = np.random.default_rng(300 + seed)
    shape = (6, 18, 17)
    labels = _random_objects(rng, shape, int(rng.integers(2, 12)))
    raw = rng.integers(100, 3000, shape).astype(np.uint16)
    for grow_um in (0.3, 0.1, 0.0):
        measured = aperture_intensities(labels, raw, spacing=(0.3, 0.1, 0.1), grow_um=grow_um,
                                        background_sigma_um=0.15, background="plane")
        expected = _plane_oracle(labels, raw, (0.3, 0.1, 0.1), grow_um, 0.15)
        pd.testing.assert_frame_equal(measured, expected[list(APERTURE_COLUMNS)],
                                      check_dtype=False, rtol=1e-6, atol=0.05)


@pytest.mark.parametrize(("slab_voxels", "block_planes"), [(1, 16), (2 * 18 * 17, 2), (20_925, 16)])
def test_plane_background_in_slabs_gives_the_whole_stack_answer(monkeypatch, slab_voxels,
                                                                 block_planes):
    from rna_localization import apertures

    rng = np.random.default_rng(5)
    shape = (9, 18, 17)
    labels = _random_objects(rng, shape, 20)
    raw = rng.integers(0, 4000, shape).astype(np.uint16)
    expected = aperture_intensities(labels, raw, spacing=(0.2, 0.1, 0.1), background_sigma_um=0.15, background="plane")
    monkeypatch.setattr(apertures, "_SLAB_VOXELS", slab_voxels)
    monkeypatch.setattr(apertures, "_BLOCK_PLANES", block_planes)
    monkeypatch.setattr(apertures, "_MAP_CELLS", block_planes)  # planes smoothed in chunks
    measured = aperture_intensities(labels, raw, spacing=(0.2, 0.1, 0.1), background_sigma_um=0.15, background="plane")
    pd.testing.assert_frame_equal(measured, expected, check_exact=True)
    oracle = _plane_oracle(labels, raw, (0.2, 0.1, 0.1), APERTURE_GROW_UM, 0.15)
    pd.testing.assert_frame_equal(measured, oracle[list(APERTURE_COLUMNS)], check_dtype=False,
                                  rtol=1e-6, atol=0.05)


def test_plane_background_follows_a_steep_depth_profile():
    # Autofluorescence rising with depth below the embryo surface, curved over the
    # aperture's own depth: a 3D shell's median misses the background under the spot
    # (its shell reaches planes whose background differs from the aperture's), the
    # plane background takes each plane's own level.
    from scipy.special import ndtr

    z_um = np.arange(SHAPE[0]) * SPACING[0]
    depth = 800.0 * ndtr((z_um - CENTRE_UM[0] + 0.6) / 0.8)[:, None, None]
    lateral = np.linspace(0, 150, SHAPE[2])[None, None, :]  # a gentle lateral slope too
    spot = _gaussian(SHAPE, CENTRE_UM, 1000.0)
    labels = (spot >= spot.max() / 2).astype(np.int32)
    image = spot + 300 + depth + lateral
    inside = aperture_intensities(labels, spot, spacing=SPACING, background="shell").iloc[0]
    plane = aperture_intensities(labels, image, spacing=SPACING, background="plane").iloc[0]
    shell = aperture_intensities(labels, image, spacing=SPACING, background="shell").iloc[0]
    by_plane = aperture_intensities(labels, image, spacing=SPACING, background="shell_plane").iloc[0]
    light = inside["spot_intensity"]  # the spot's own light in its aperture, on black
    assert plane["spot_intensity"] == pytest.approx(light, rel=0.01)
    assert abs(shell["spot_intensity"] / light - 1) > 0.05
    # The shell plane by plane follows the depth profile as well (the lateral slope is
    # linear, so each plane's ring median is nearly its centre's level): it reads what it
    # reads of the spot on black, its rings' medians of the spot's own tail taken off
    # alike, to 1% (0.6% low: in rings 0.25 µm out, the tail and the slope no longer add
    # exactly under a median; under 0.05% with the 0.3 µm aperture before 2026-12-05).
    on_black = aperture_intensities(labels, spot, spacing=SPACING,
                                    background="shell_plane").iloc[0]["spot_intensity"]
    assert by_plane["spot_intensity"] == pytest.approx(on_black, rel=0.01)


def test_plane_background_ignores_a_neighbour_inside_its_own_aperture():
    # A very bright neighbour with no tails (a flat block confined to its mask): its
    # aperture is excluded from the background, so the dim object's background is the
    # flat level exactly.
    labels = np.zeros((5, 30, 30), np.int32)
    labels[2, 10:12, 10:12] = 1
    labels[1:4, 14:18, 10:14] = 2
    raw = np.full(labels.shape, 200.0)
    raw[labels == 1] += 50
    raw[labels == 2] += 100_000
    table = aperture_intensities(labels, raw, spacing=(0.3, 0.1, 0.1), background="plane").set_index("object_id")
    assert table.loc[1, "background"] == pytest.approx(200.0, rel=1e-12)
    assert table.loc[1, "spot_intensity"] == pytest.approx(50.0 * 4, rel=1e-9)
    assert table.loc[2, "spot_intensity"] == pytest.approx(100_000.0 * 48, rel=1e-9)


def test_plane_background_falls_back_to_the_shell_where_a_plane_has_none():
    # Objects fill every plane: no voxel outside every aperture, so the shell's answer.
    labels = np.zeros((1, 3, 3), np.int32)
    labels[0, :, :2] = 1
    labels[0, :, 2] = 2
    raw = np.arange(9, dtype=np.uint16).reshape(1, 3, 3)
    plane = aperture_intensities(labels, raw, spacing=1.0, background="plane")
    shell = aperture_intensities(labels, raw, spacing=1.0, background="shell")
    pd.testing.assert_frame_equal(plane, shell, check_exact=True)
    with pytest.raises(ValueError, match="background must be one of 'shell_plane_map', 'shell_plane', 'shell', 'plane'; got 'median'"):
        aperture_intensities(labels, raw, spacing=1.0, background="median")
    with pytest.raises(ValueError, match="background_sigma_um must be finite and > 0"):
        aperture_intensities(labels, raw, spacing=1.0, background_sigma_um=0, background="plane")


# ------------------------------------------------------------------ the compiled loops
@pytest.mark.parametrize("dtype", [np.uint16, np.int16, np.int64, np.float32, np.float64])
def test_quickselect_median_is_numpys_median(dtype):
    # Sizes 1 to 60 and a few hundreds (several partitions before the insertion sort),
    # few distinct values (many ties: the partition's equal keys) or many, sorted,
    # reversed and random: the package's median against np.median.
    from rna_localization._stencils import _median

    rng = np.random.default_rng(3)
    for size in [*range(1, 61), 99, 100, 257, 1000]:
        for spread in (2, 5, 30_000):
            values = rng.integers(0, spread, size).astype(dtype)
            for case in (values, np.sort(values), np.sort(values)[::-1].copy()):
                expected = float(np.median(case.astype(np.float64)))
                assert _median(case.copy()) == expected
    # A large run of one value among others (a clipped or zero background) and none.
    values = np.r_[np.zeros(5000), rng.integers(1, 9, 1001)].astype(dtype)
    assert _median(rng.permutation(values)) == float(np.median(values.astype(np.float64)))
    assert np.isnan(_median(np.zeros(0, dtype)))


def test_free_cell_sums_against_a_box_filter():
    # Planes of object counts (some voxels counted more than once) with reaches of 0 to 5
    # and cells of 1 to 5 voxels, planes narrower than a box and a cell included: each
    # cell's free voxels (no object voxel in the box around them) and their light,
    # against scipy's maximum filter over the box and a sum per cell.
    from scipy import ndimage

    from rna_localization._stencils import free_cell_sums

    rng = np.random.default_rng(12)
    for _ in range(60):
        height, width = rng.integers(1, 40, 2)
        objects = (rng.random((height, width)) < rng.random() * 0.15) * rng.integers(1, 4)
        objects = objects.astype(np.int32)
        values = rng.integers(0, 1000, (height, width)).astype(np.uint16)
        reach_y, reach_x = rng.integers(0, 6, 2)
        cell = int(rng.integers(1, 6))
        shape = (-(-height // cell), -(-width // cell))
        weight, total = np.zeros(shape), np.zeros(shape)
        free_cell_sums(objects, values, int(reach_y), int(reach_x), cell, weight, total)
        free = ~ndimage.maximum_filter(objects > 0, size=(2 * reach_y + 1, 2 * reach_x + 1),
                                       mode="constant")
        cells = (np.arange(height)[:, None] // cell) * shape[1] + np.arange(width) // cell
        expected_weight = np.bincount(cells[free], minlength=weight.size).reshape(shape)
        expected_total = np.bincount(cells[free], weights=values[free].astype(float),
                                     minlength=weight.size).reshape(shape)
        np.testing.assert_array_equal(weight, expected_weight)
        np.testing.assert_array_equal(total, expected_total)


def test_shell_levels_against_a_loop_over_the_objects():
    # Shell voxels of 40 objects over 5 planes each, some objects with no shell voxel
    # and some planes with fewer than min_voxels; a third of the objects finished.
    from rna_localization._stencils import shell_levels

    rng = np.random.default_rng(8)
    n, span, min_voxels = 40, 5, 4
    owner = rng.integers(0, n, 3000).astype(np.int32)
    owner = owner[owner % 7 != 3]  # objects 3, 10, ... have no shell voxel
    keys = (owner * span + rng.integers(0, span, owner.size)).astype(np.int32)
    values = rng.integers(0, 5000, owner.size).astype(np.uint16)
    aperture_planes = rng.integers(0, 4, n * span).astype(np.int64)
    finished = rng.random(n) < 0.35
    shell_area = np.full(n, 5, np.int64)
    whole, under = np.full(n, -1.0), np.full(n, -1.0)
    rest = shell_levels(owner, values, keys, span, finished, aperture_planes, min_voxels,
                        shell_area, whole, under)
    kept = ~finished[owner]
    for got, expected in zip(rest, (owner[kept], values[kept], keys[kept])):
        np.testing.assert_array_equal(got, expected)
    for o in range(n):
        mine = owner == o
        if not finished[o]:
            assert shell_area[o] == 5
            assert under[o] == -1.0
            continue
        assert shell_area[o] == 5 + mine.sum()
        if not mine.any():
            assert np.isnan(under[o])
            continue
        median = np.median(values[mine].astype(float))
        total = 0.0
        for g in range(o * span, o * span + span):
            ring = values[keys == g].astype(float)
            total += aperture_planes[g] * (np.median(ring) if ring.size >= min_voxels else median)
        assert under[o] == total
