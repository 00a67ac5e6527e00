"""Where things sit: nuclei on a lattice, centrosome pairs, and RNA in the cytoplasm (µm)."""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from . import model

__all__ = ["Embryo", "check_geometry", "fused_groups", "hexagonal_nuclei", "inside_ball",
           "place_near", "place_uniform", "sample_on_sphere"]


def check_geometry(shape, spacing) -> tuple[tuple[int, int, int], np.ndarray]:
    """Validate a stack shape and voxel size; the stack must hold the centrosome layer."""
    shape_t = tuple(int(n) for n in shape)
    if len(shape_t) != 3 or min(shape_t) < 8:
        msg = f"shape must be three sizes (Z, Y, X) of at least 8 voxels; got {tuple(shape)}."
        raise ValueError(msg)
    spacing_a = np.asarray(spacing, dtype=np.float64)
    if spacing_a.shape != (3,) or not np.all(np.isfinite(spacing_a)) or np.any(spacing_a <= 0):
        msg = f"spacing must be three positive microns per voxel (z, y, x); got {spacing!r}."
        raise ValueError(msg)
    depth = (shape_t[0] - 1) * spacing_a[0]
    needed = (model.CENTROSOME_DEPTH_UM + 4 * model.CENTROSOME_DEPTH_SD_UM
              + model.CENTROSOME_RADIUS_UM[1])
    if depth < needed:
        msg = (
            f"shape {shape_t} with z spacing {spacing_a[0]} µm spans {depth:.2f} µm in z; "
            f"the centrosome layer needs at least {needed:.2f} µm. Add z planes."
        )
        raise ValueError(msg)
    return shape_t, spacing_a


def hexagonal_nuclei(rng, extent_um, cycle):
    """Lateral nucleus centres (µm) on a jittered, rotated hexagonal lattice.

    Returns the (N, 2) centres of the nuclei whose ellipsoid can reach the
    field, and the nuclear semi-axes (lateral, axial) of the cycle.
    """
    spacing = model.NUCLEAR_SPACING_UM[cycle]
    radius_xy, radius_z = model.NUCLEAR_RADIUS_UM[cycle]
    angle = rng.uniform(0, np.pi / 3)
    basis = spacing * np.array([[1.0, 0.0], [0.5, np.sqrt(3) / 2]])
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    basis = basis @ rotation.T
    reach = int(np.ceil(np.hypot(*extent_um) / spacing)) + 2
    i, j = np.meshgrid(np.arange(-reach, reach + 1), np.arange(-reach, reach + 1), indexing="ij")
    origin = np.asarray(extent_um) / 2 + rng.uniform(-0.5, 0.5, 2) * spacing
    centres = origin + i.reshape(-1, 1) * basis[0] + j.reshape(-1, 1) * basis[1]
    centres = centres + rng.normal(0.0, model.NUCLEAR_JITTER * spacing, centres.shape)
    inside = np.all((centres > -radius_xy) & (centres < np.asarray(extent_um) + radius_xy), axis=1)
    return centres[inside], radius_xy, radius_z


def sample_on_sphere(rng, n, radius):
    """`n` points at distance `radius` (scalar or (n,)) from the origin, in
    uniformly random directions.

    Pass ``r * u ** (1 / 3)`` with ``u`` uniform in [0, 1) as `radius` for
    points uniform in a ball of radius ``r``.
    """
    direction = rng.normal(size=(n, 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    return direction * np.asarray(radius, dtype=np.float64).reshape(-1, 1)


class Embryo:
    """Where RNA may sit: the cytoplasm of one field, in µm."""

    def __init__(self, extent_um, nuclei_um, radius_xy, radius_z, centrosomes_um, radii,
                 margin_um):
        self.extent = np.asarray(extent_um)  # (z, y, x) of the last voxel centre
        self.nuclei = nuclei_um
        self.nuclei_tree = cKDTree(nuclei_um[:, 1:]) if len(nuclei_um) else None
        self.radius_xy, self.radius_z = radius_xy, radius_z
        self.centrosomes = centrosomes_um
        self.centrosome_tree = cKDTree(centrosomes_um) if len(centrosomes_um) else None
        self.centrosome_radii = radii
        self.margin = np.asarray(margin_um)

    def cytoplasm(self, points, margin=0.0):
        """Boolean (N,): inside the volume (with margins), below the surface,
        outside every nucleus and every centrosome."""
        points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        low = self.margin + margin
        ok = np.all((points >= low) & (points <= self.extent - low), axis=1)
        ok &= points[:, 0] >= model.SURFACE_DEPTH_UM + margin
        if self.nuclei_tree is not None:
            # Nuclei hardly ever overlap laterally: the two nearest centres in xy decide.
            k = min(2, len(self.nuclei))
            _, nearest = self.nuclei_tree.query(points[:, 1:], k=k)
            for column in np.asarray(nearest).reshape(len(points), k).T:
                delta = points - self.nuclei[column]
                inside = (
                    (delta[:, 1] ** 2 + delta[:, 2] ** 2) / self.radius_xy**2
                    + delta[:, 0] ** 2 / self.radius_z**2
                ) <= 1.0
                ok &= ~inside
        if self.centrosome_tree is not None:
            distance, nearest = self.centrosome_tree.query(points)
            ok &= distance > self.centrosome_radii[nearest] + margin
        return ok


def fused_groups(centres, radius: float) -> np.ndarray:
    """Group balls of `radius` that overlap, directly or through others: one index each.

    Two granules whose balls overlap are one condensate (they fuse), so the
    simulator gives them one object. Groups are numbered 0, 1, ... in the order
    of their first ball.

    Parameters
    ----------
    centres : (N, 3) array-like
        Ball centres, µm.
    radius : float
        Ball radius, µm: centres closer than ``2 * radius`` overlap.

    Returns
    -------
    (N,) ndarray of int64

    Examples
    --------
    >>> fused_groups([[0, 0, 0], [0, 0, 0.4], [0, 0, 0.8], [0, 0, 2.0]], 0.25).tolist()
    [0, 0, 0, 1]
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    centres = np.asarray(centres, dtype=np.float64).reshape(-1, 3)
    n = len(centres)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    # Strictly closer than the diameter: balls that only touch at a point stay apart.
    pairs = cKDTree(centres).query_pairs(np.nextafter(2 * radius, 0), output_type="ndarray")
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    _, groups = connected_components(graph, directed=False)
    # connected_components numbers groups by a search from each unvisited node in
    # order, so the group of ball 0 is 0, the next new group is the next ball's, ...
    return groups.astype(np.int64)


def inside_ball(points, centres, radius: float) -> np.ndarray:
    """The ball of `radius` around `centres` that holds each point, -1 for none.

    A point inside several balls gets the one with the nearest centre (on an
    exact tie, either: the KD-tree's choice); a point on a ball's surface is
    inside it.

    Parameters
    ----------
    points, centres : (N, 3), (M, 3) array-like
        Positions, µm.
    radius : float
        Ball radius, µm.

    Returns
    -------
    (N,) ndarray of int64
        Index into `centres`, or -1.

    Examples
    --------
    >>> inside_ball([[0, 0, 0.2], [0, 0, 0.9], [0, 0, 0.5]], [[0, 0, 0], [0, 0, 1]], 0.25).tolist()
    [0, 1, -1]
    """
    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    centres = np.asarray(centres, dtype=np.float64).reshape(-1, 3)
    found = np.full(len(points), -1, dtype=np.int64)
    if len(points) == 0 or len(centres) == 0:
        return found
    distance, nearest = cKDTree(centres).query(points, distance_upper_bound=np.nextafter(radius, np.inf))
    hit = distance <= radius
    found[hit] = nearest[hit]
    return found


def place_near(rng, embryo, anchors, radii, counts, length_um, margin=0.0):
    """Points at (radius + exponential(length)) from each anchor, in cytoplasm.

    Rejected draws are drawn again (up to 50 rounds); the few still rejected
    are dropped.
    """
    owner = np.repeat(np.arange(len(anchors)), counts)
    accepted = []
    for _ in range(50):
        if owner.size == 0:
            break
        shell = radii[owner] + rng.exponential(length_um, owner.size)
        points = anchors[owner] + sample_on_sphere(rng, owner.size, shell)
        ok = embryo.cytoplasm(points, margin)
        accepted.append(points[ok])
        owner = owner[~ok]
    return np.concatenate(accepted) if accepted else np.zeros((0, 3))


def place_uniform(rng, embryo, n, margin=0.0):
    """`n` uniform draws in the volume, kept where they fall in cytoplasm."""
    points = rng.uniform(0.0, 1.0, (n, 3)) * embryo.extent
    return points[embryo.cytoplasm(points, margin)]
