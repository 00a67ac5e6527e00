"""Matched-aperture, background-subtracted intensities of segmented spots.

Pure array functions: nothing here reads files or talks to the database.

Aperture and shell
------------------
Every voxel within ``grow_um + shell_um`` microns of an object is given to its
nearest object (Euclidean distance between voxel centres, in microns). The
voxels so given to object *i* at most ``grow_um`` away form its *aperture*
(its own voxels included); those farther, up to ``grow_um + shell_um``, form
its *shell*. Because every voxel goes
to one object only, a bright neighbour's halo is counted in the neighbour's
aperture, not in the dimmer spot's.

An aperture always reaches the next voxel: along an axis whose step is longer
than ``grow_um`` (z steps of 0.3-0.5 µm against a 0.25 µm aperture), distances
count that step as ``grow_um`` (:func:`_aperture_metric`), so the voxels
directly above and below the object are in its aperture and its shell reaches
a step further. A molecule's image spans about three planes at such steps:
without them the aperture of a molecule centred on a plane held that plane
only (on 0.5 µm steps 60% of its light, against 90% for one between two
planes; now 80% and 95%), and counted by light, a granule, spread over more
planes than the single molecules of the reference, read low
(docs/quantification.md, "Coarse z steps"). The widefield preset's 0.3 µm steps
count as 0.25 µm, which draws the same planes as 0.3 would: the object's own and
those directly above and below for the aperture, two more each way for the shell;
the confocal preset's 0.2 µm steps are measured as they are.

The background under an aperture
--------------------------------
The shell is read plane by plane (``background="shell_plane"``):
the aperture's voxels in plane *z* take the median of the object's shell
voxels in plane *z* (a ring around the aperture), or the whole shell's median
where that plane holds fewer than :data:`SHELL_PLANE_MIN_VOXELS` of them.
By default (``background="shell_plane_map"``) each aperture voxel's level is
that median moved by how much the plane's smooth background (a map drawn from
the voxels beyond every object's shell: at each point the plane that fits them
best, weighted by a Gaussian of :data:`MAP_BACKGROUND_SIGMA_UM`) at the voxel
differs from the map's median over the same ring. A ring's median is the background at the
ring's middle: where a neighbour's aperture takes one side of the ring, or at
the image's edge, that middle lies off the object, and on a slope (the flank
of an out-of-focus cell, a curve of the autofluorescence) the median is that
far off. The map carries the slope from the ring to the aperture; the ring
keeps the level, and its local view of the neighbours' light.
Below an embryo's surface the autofluorescence rises over about a micron of
depth, curved over the few planes an aperture spans; the median of the whole
3D shell (``background="shell"``) then misses the background under the
aperture (on simulated images by a tenth of a single molecule's light on
average, a third near the surface, also on ideal masks), so single molecules,
and the single-molecule reference taken from them, read about 10% bright and
granules (whose own halo in their shell offsets it) 11-16% low. The ring in
each plane follows the depth profile and keeps the shell's local view:
in crowded places it holds part of the neighbours' light, as the aperture does.
With ``background="plane"`` each aperture voxel's background is estimated in
its own plane from afar: the Gaussian-weighted mean (lateral sigma
:data:`PLANE_BACKGROUND_SIGMA_UM`) of the plane's voxels outside the box of
half-width ``grow_um`` around every object voxel (a box holds the voxel's
aperture ball, so no aperture voxel is counted). Where a plane has no such
voxel within the weights' reach, the object falls back to its shell's median.

How ties are made exact
-----------------------
No distance transform is used: on a tie it picks a voxel by position, not
the smallest label. The offsets within ``grow_um + shell_um`` form a small
stencil, sorted by length; equal lengths (to a relative 1e-9) share a
*rank* (distinct lengths on a voxel grid differ by far more than that).
Every pair of an object voxel and a stencil offset proposes the key
``rank * 2**b + object index`` (``2**b > n``, the number of objects) for
the voxel it reaches, and each voxel keeps the smallest key proposed (as
``np.minimum.at`` would, in one compiled pass): the nearest distance first,
then the smallest label among those at that distance -- the rule itself,
with no tie-breaking step. Pairs that cannot be nearest are never
formed: an object voxel whose face neighbour on the offset's side is of its
own object is beaten by that neighbour, so each voxel only sends offsets
through its free faces, and interior voxels send none. The work is the
number of voxels within reach of each object, not the volume.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from functools import partial

import numpy as np
import pandas as pd
from scipy import ndimage

from ._cores import warning_filters_kept
from .objects import normalize_spacing, object_index, object_voxels_and_intensities

__all__ = ["APERTURE_COLUMNS", "APERTURE_GROW_UM", "APERTURE_SHELL_UM", "BACKGROUNDS",
           "STORED_COLUMNS", "aperture_intensities", "spot_centroids"]

#: How far an aperture reaches beyond its object, µm. 0.25 holds 86-94% of a single
#: molecule's light, whatever its brightness (86% on the widefield grid, whose axial
#: tails are long, 89% on the confocal, medians over sub-voxel positions; the rest lies
#: mostly along z), which is what molecule counts need; the aperture corrections
#: (rna_localization.capture) add what a granule's wider image puts beyond it. Where RNA
#: is dense, the ring beyond holds more of the neighbours' light than of the object's
#: own: 0.3 (until 2026-12-05) let crowded cen single molecules read 6-14% above isolated
#: ones on the confocal demo (5-8% now), which raised the reference and left sparse
#: images' totals low; 0.4 and 0.5 brought the demo's single molecules to 0.72-0.99
#: (docs/quantification.md, "The aperture's reach").
APERTURE_GROW_UM = 0.25
#: Thickness of the background shell around the aperture, µm.
APERTURE_SHELL_UM = 0.3
#: Ways :func:`aperture_intensities` can estimate the background under an aperture.
BACKGROUNDS = ("shell_plane_map", "shell_plane", "shell", "plane")
#: How the background under an aperture is estimated by default (see
#: :func:`aperture_intensities`): ``"shell_plane_map"``, each of the aperture's planes
#: from the object's shell voxels in that plane (their median), moved by how much the
#: plane's smooth background, measured beyond every object's shell, differs between the
#: aperture and that ring. ``"shell_plane"`` (the ring's median alone) misses a slope
#: across the ring where neighbours take one side of it, as on the flank of an
#: out-of-focus cell: on simulated widefield stacks it scattered isolated single
#: molecules' readings by 0.58 of their light (standard deviation) against 0.40, and
#: lone granules' by 11.4% against 9.3% (docs/quantification.md, "The background's
#: slope"). ``"shell"`` (the median of the whole
#: 3D shell) reads the background under a single molecule about a tenth of a molecule
#: low where the autofluorescence curves with depth, so single molecules, and the
#: reference taken from them, read 10% bright and granules 11-16% low; ``"plane"``
#: (each plane's voxels away from every object) fixes that too but drops the shell's
#: local view of crowded neighbours (docs/quantification.md, "Tried and not adopted").
APERTURE_BACKGROUND = "shell_plane_map"
#: Fewest shell voxels in a plane for that plane's median; fewer, and that plane's
#: aperture voxels take the whole shell's median. A single molecule's shell holds a
#: few hundred voxels in each of its aperture's planes.
SHELL_PLANE_MIN_VOXELS = 8
#: Lateral reach of the plane background: the Gaussian weight's sigma, µm. Short enough
#: to follow the cell's autofluorescence texture (about 1 µm grains), long enough to
#: average a few hundred background voxels per plane.
PLANE_BACKGROUND_SIGMA_UM = 0.6
#: Lateral reach of the smooth background map that moves each ring's median to its
#: aperture (``"shell_plane_map"``), µm; the map is measured beyond every object's shell.
#: Long enough to pass over the fine texture of autofluorescence and over crowds of RNA
#: (which the rings see, and should), short enough to follow an out-of-focus cell's
#: flank (2-4 µm). Measured on the demo's three seeds and both microscopes: 0.6 µm, or
#: a map measured beyond the apertures only, read crowded objects near centrosomes
#: lower (% RNA within 1 µm down to -1.54 points, past its target) where 1.2 µm beyond
#: the shells moved no such cell off target (docs/quantification.md, "The background's
#: slope").
MAP_BACKGROUND_SIGMA_UM = 1.2

#: Columns of :func:`aperture_intensities`, in order, with their dtypes.
APERTURE_COLUMNS = {
    "object_id": "int64",
    "spot_intensity": "float64",
    "background": "float64",
    "aperture_area": "int64",
    "shell_area": "int64",
}
#: Columns of :func:`spot_centroids`.
CENTROID_COLUMNS = {"object_id": "int64", "spot_centroid_z": "float64",
                    "spot_centroid_y": "float64", "spot_centroid_x": "float64"}
#: The columns extraction stores in the database beside measure_objects' ones.
STORED_COLUMNS = ("spot_intensity", "background", "spot_centroid_z", "spot_centroid_y",
                  "spot_centroid_x", "capture_correction", "clipped_light")

#: Distances within this relative tolerance count as equal (voxel-grid distances
#: are sums of squares: exact ties and exactly-on-the-radius voxels are common,
#: and rounding must not split them).
_RTOL = 1e-9

# Voxels of the stack histogrammed at a time by _image_median (four times this).
_CHUNK = 1 << 18

# Voxels of the box handled at a time (a block of planes and rows, with those within
# reach around it), and the most planes of a block (see _block_size: a block through
# all the planes of a frame has no margin above and below it, where pairs are formed
# for voxels the block does not keep).
_SLAB_VOXELS = 1 << 24
_BLOCK_PLANES = 64


def _at_most(limit: float) -> float:
    """Largest distance counted as <= `limit`, allowing for rounding."""
    return limit * (1.0 + _RTOL) + 1e-12


def _aperture_metric(scale: np.ndarray, grow_um: float) -> np.ndarray:
    """The voxel steps apertures and shells are measured with, µm along (z, y, x).

    Each axis's own step, or `grow_um` where the step is longer (and `grow_um`
    is not 0): the aperture then reaches the next voxel along that axis.

    Examples
    --------
    >>> _aperture_metric(np.array([0.5, 0.11, 0.11]), 0.3)
    array([0.3 , 0.11, 0.11])
    >>> _aperture_metric(np.array([0.5, 0.11, 0.11]), 0.0)
    array([0.5 , 0.11, 0.11])
    """
    if grow_um <= 0:
        return scale
    return np.minimum(scale, grow_um)


def _block_size(depth: int, height: int, width: int, margin) -> tuple[int, int]:
    """Planes and rows of the blocks of a (depth, height) box of padded `width`.

    Each block is read with the planes and rows within reach around it (the
    margin) and padded by the margin again, about ``_SLAB_VOXELS`` voxels in
    all. Of the block sizes that fit, the one that forms the fewest (object
    voxel, offset) pairs per voxel kept: the fewest margin planes and rows
    per block plane and row (a block of all the planes has no margin above
    and below it).
    """
    best = None
    for planes in range(1, min(depth, _BLOCK_PLANES) + 1):
        around = 0 if planes == depth else 2 * margin[0]  # the planes within reach
        fit = _SLAB_VOXELS // ((planes + around + 2 * margin[0]) * width) - 4 * margin[1]
        rows = max(1, min(height, fit))
        beside = 0 if rows == height else 2 * margin[1]
        waste = (planes + around) / planes * (rows + beside) / rows
        if best is None or waste <= best[0]:
            best = (waste, planes, rows)
    return best[1], best[2]


def empty_apertures() -> pd.DataFrame:
    """Zero-row table with the columns and dtypes of :func:`aperture_intensities`."""
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in APERTURE_COLUMNS.items()})


def _check_length(value, name: str, *, allow_zero: bool) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError) as error:
        msg = f"{name} must be a number of microns; got {value!r}."
        raise ValueError(msg) from error
    if not np.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        msg = f"{name} must be finite and {bound} microns; got {value!r}."
        raise ValueError(msg)
    return value


def _stencil(scale: np.ndarray, reach: float, strides):
    """Voxel offsets within `reach` microns, their flat offsets and distance ranks.

    Returns
    -------
    offsets : (m, 3) ndarray of int
        Every nonzero offset at most `reach` (to rounding) away.
    flat : (m,) ndarray of int64
        The same as flat-index steps for an array of `strides` (in items).
    rank : (m,) ndarray of int64
        Rank of the offset's distance, from 1: equal distances (to a relative
        1e-9) share a rank, and a larger rank is a larger distance.
    nearest : ndarray of float64
        The smallest distance of each rank, ``nearest[0] = 0`` (the object itself).
    """
    extent = np.floor(_at_most(reach) / scale).astype(int)
    grids = np.meshgrid(*[np.arange(-e, e + 1) for e in extent], indexing="ij")
    offsets = np.column_stack([g.ravel() for g in grids])
    distance = np.sqrt(((offsets * scale) ** 2).sum(axis=1))
    keep = (distance <= _at_most(reach)) & (distance > 0)
    offsets, distance = offsets[keep], distance[keep]
    order = np.argsort(distance, kind="stable")
    offsets, distance = offsets[order], distance[order]
    rank = np.empty(distance.size, dtype=np.int64)
    nearest = [0.0]
    for i, d in enumerate(distance):  # at most a few thousand offsets
        if d > _at_most(nearest[-1]):
            nearest.append(float(d))
        rank[i] = len(nearest) - 1
    flat = offsets @ np.asarray(strides, dtype=np.int64)
    return offsets, flat, rank, np.array(nearest)


def _allowed_offsets(offsets: np.ndarray, faces: int) -> np.ndarray:
    """Offsets that only step through free faces (see :func:`_nearest_keys`)."""
    allowed = np.ones(len(offsets), dtype=bool)
    for axis in range(3):
        if not faces >> (2 * axis) & 1:
            allowed &= offsets[:, axis] <= 0
        if not faces >> (2 * axis + 1) & 1:
            allowed &= offsets[:, axis] >= 0
    return allowed


def _free_face_steps(offsets: np.ndarray, flat_offsets: np.ndarray):
    """The steps each set of free faces allows (6 bits: 64 sets), for ``spread_keys``.

    Returns ``mask_starts`` (65,) and ``steps``, indices into `offsets`: set
    ``f``'s are ``steps[mask_starts[f]:mask_starts[f + 1]]``, in increasing
    `flat_offsets` order (each voxel's writes then sweep its neighbourhood
    plane by plane and row by row, not by distance across it).
    """
    allowed = [np.flatnonzero(_allowed_offsets(offsets, mask)) for mask in range(64)]
    mask_starts = np.r_[0, np.cumsum([a.size for a in allowed])].astype(np.int64)
    steps = np.concatenate([a[np.argsort(flat_offsets[a], kind="stable")] for a in allowed])
    return mask_starts, steps


def _key_bits(n: int) -> int:
    """Bits of a key below its rank: object indices 1..n fit in them."""
    return max(int(n).bit_length(), 1)


def _key_dtype(n_ranks: int, n: int) -> np.dtype:
    """The integer dtype of the keys ``rank << _key_bits(n) | i`` (and of the "beyond reach" mark)."""
    return np.dtype(np.int32 if n_ranks << _key_bits(n) < np.iinfo(np.int32).max else np.int64)


def _nearest_keys(shape, voxels: np.ndarray, index: np.ndarray, scale: np.ndarray,
                  reach: float, n: int, out: np.ndarray | None = None):
    """Nearest object of every voxel within `reach` microns, as one integer key per voxel.

    The objects are the voxels `voxels` (flat C-order indices into an array of
    `shape`) with object indices `index` (1..n); the array is padded by at
    least the reach plus one voxel on every side, so no offset wraps. A voxel's
    key is ``rank << _key_bits(n) | i``: the rank of its distance to the nearest
    object (see :func:`_stencil`) and that object's index, the smallest on
    ties, so the smallest key over all (object voxel, offset) pairs reaching it
    is the answer. The maximum of the key dtype marks voxels beyond `reach`.
    `out`, a flat buffer of that dtype with at least ``prod(shape)`` items,
    holds the keys when given (one buffer for every block: a fresh one would
    cost its page faults each time).

    Only pairs that can be nearest are formed: if the object voxel ``p`` has a
    neighbour ``p + e`` of its own object with ``e`` on the side of the offset
    ``o`` (``o_k >= 1`` for ``e`` one step up axis ``k``), then ``p + e`` is
    strictly closer to ``p + o`` (``|o - e|^2 = |o|^2 - (2 o_k - 1) s_k^2``),
    so the pair is skipped; the nearest object voxel never is.
    """
    from ._stencils import spread_keys  # compiled on first use (numba)

    strides = np.array([shape[1] * shape[2], shape[2], 1], dtype=np.int64)
    offsets, flat_offsets, rank, nearest = _stencil(scale, reach, strides)
    dtype = _key_dtype(len(nearest), n)
    blank = np.iinfo(dtype).max
    size = int(np.prod(shape))
    if out is None or out.dtype != dtype or out.size < size:
        out = np.empty(size, dtype=dtype)
    keys = out[:size]
    keys.fill(blank)
    index = index.astype(dtype, copy=False)
    keys[voxels] = index  # rank 0: every object voxel is its own
    offset_keys = (rank << _key_bits(n)).astype(dtype)
    # Every (voxel, allowed step) pair in one compiled pass; the keys hold the objects'
    # indices and larger keys elsewhere, so they tell each voxel's free faces.
    mask_starts, steps = _free_face_steps(offsets, flat_offsets)
    spread_keys(keys, voxels.astype(np.int64, copy=False), index, strides, mask_starts,
                flat_offsets[steps].astype(np.int64), offset_keys[steps])
    return keys.reshape(shape), nearest, blank


def _image_median(image: np.ndarray) -> float:
    """``np.median(image)`` in float64; for 8- and 16-bit integers from a histogram
    counted in chunks, without the copy of the stack np.median makes."""
    flat = image.reshape(-1)
    if flat.dtype.kind not in "iu" or flat.dtype.itemsize > 2 or flat.size == 0:
        return float(np.median(flat.astype(np.float64, copy=False)))
    offset = int(np.iinfo(flat.dtype).min)
    counts = np.zeros(1 << (8 * flat.dtype.itemsize), dtype=np.int64)
    for start in range(0, flat.size, _CHUNK * 4):
        chunk = flat[start : start + _CHUNK * 4].astype(np.int64) - offset
        counts += np.bincount(chunk, minlength=counts.size)
    cumulative = np.cumsum(counts)
    low, high = np.searchsorted(cumulative, [(flat.size - 1) // 2 + 1, flat.size // 2 + 1])
    return (float(low) + float(high)) / 2 + offset


#: Cells of the background map (planes times cells per plane) :func:`_plane_background`
#: smooths in one call: a few planes of a full frame's map, every plane of the demo's.
_MAP_CELLS = 1 << 16


def _local_linear(weight: np.ndarray, total: np.ndarray, cell_sigma: np.ndarray) -> np.ndarray:
    """The Gaussian-weighted least-squares plane through a plane's cells, at each cell.

    `weight` holds each cell's counted voxels and `total` their summed light (the last two
    axes the cells; any axes before them, planes taken each on its own); the plane
    through the cells' mean values (each at its cell's centre, weighted by its voxels
    times the Gaussian of sigma `cell_sigma` cells) is read at the cell it is fitted
    around. Where the voxels lie about a line or a point (the weighted covariance of
    their positions, in sigmas, has a determinant under 0.01), the weighted mean
    instead; NaN where no voxel weighs. A linear field is read exactly (but for each
    cell's voxels being taken at its centre) whether its voxels surround the cell or
    lie to one side of it, where a mean flattens the slope.
    """
    # Positions in sigmas, and the moments about each cell from the smoothed sums: the
    # nine sums smoothed in one call, stacked along axes the Gaussian leaves alone (each
    # plane and sum filtered exactly as alone).
    i = (np.arange(weight.shape[-2]) / cell_sigma[0])[:, None]
    j = (np.arange(weight.shape[-1]) / cell_sigma[1])[None, :]
    sums = np.stack([weight, weight * i, weight * j, weight * i * i, weight * j * j,
                     weight * i * j, total, total * i, total * j])
    sums = ndimage.gaussian_filter(sums, (0,) * (sums.ndim - 2) + tuple(cell_sigma),
                                   mode="constant", truncate=4.0)
    s0, si, sj, sii, sjj, sij, t0, ti, tj = sums
    mi, mj = si - i * s0, sj - j * s0
    mii, mjj = sii - 2 * i * si + i * i * s0, sjj - 2 * j * sj + j * j * s0
    mij = sij - i * sj - j * si + i * j * s0
    ui, uj = ti - i * t0, tj - j * t0
    # The intercept of [[s0, mi, mj], [mi, mii, mij], [mj, mij, mjj]] (a, bi, bj) = (t0, ui, uj).
    minor = mii * mjj - mij * mij
    det = s0 * minor - mi * (mi * mjj - mij * mj) + mj * (mi * mij - mii * mj)
    intercept = t0 * minor - mi * (ui * mjj - mij * uj) + mj * (ui * mij - mii * uj)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        known = s0 > 1e-9
        mean = np.where(known, t0 / s0, np.nan)
        linear = intercept / det
        planar = known & (det > 1e-2 * s0 ** 3) & np.isfinite(linear)
    return np.where(planar, linear, mean)


def _plane_background(image: np.ndarray, box, local, scale: np.ndarray, reach: np.ndarray,
                      sigma_um: float, linear: bool = False, threads: int = 1):
    """The background of every plane of the box, on a grid of lateral cells.

    For each plane, the Gaussian-weighted mean (lateral sigma `sigma_um`) of
    the plane's voxels that lie outside the box of half-widths `reach` (voxels
    along z, y, x: the aperture's reach) around every object voxel (the box
    holds the voxel's aperture ball, so no aperture voxel is counted, and its
    corners a few more). Computed on cells of about half a sigma (sums of the
    weights and of the weighted values, each smoothed with the Gaussian),
    a plane at a time; `scale`, the voxel size, sets the sigma in voxels.

    The planes are those of `box` (the objects' box, whose voxels `local`
    gives box coordinates); laterally the grid covers the box grown by the
    Gaussian's reach, cut to the image, so every voxel of the image that
    weighs on a box voxel is counted.

    With `threads` of 2 or more, two threads take half the planes each.
    With `linear`, each cell takes the Gaussian-weighted plane through those
    voxels' cells instead of their weighted mean (:func:`_local_linear`): a slope
    is carried into the holes the objects leave, which a mean flattens.

    Returns
    -------
    grid : (Z, cells_y, cells_x) ndarray of float32
        NaN where no voxel outside those boxes lies within the Gaussian's
        reach (4 sigmas, scipy's truncation) in that plane.
    cell : int
        Voxels per cell side.
    corner : (2,) ndarray of int
        Box coordinates (y, x) of the grid's first voxel (zero or negative).
    """
    sigma = sigma_um / scale[1:]
    cell = max(1, int(min(sigma) // 2))
    grown = (4.0 * sigma + 0.5).astype(int) + cell
    lateral = [slice(max(b.start - g, 0), min(b.stop + g, n))
               for b, g, n in zip(box[1:], grown, image.shape[1:])]
    values = image[(box[0], *lateral)]
    corner = np.array([lateral[0].start - box[1].start, lateral[1].start - box[2].start])
    local = (local[0], local[1] - corner[0], local[2] - corner[1])
    depth, n_y, n_x = values.shape
    grid = np.full((depth, -(-n_y // cell), -(-n_x // cell)), np.nan, dtype=np.float32)
    # The boxes around the object voxels, a plane at a time: the object voxels of the
    # planes within reach along z counted at each (y, x) (a running sum over the
    # planes), then each voxel's box a side at a time: along the rows, then down the
    # columns (compiled).
    from ._stencils import free_cell_sums  # compiled on first use (numba)

    # Each plane's run of object voxels (they are in scan order), found once (the
    # planes as local's own dtype: no converted copy of it for each search).
    starts = np.searchsorted(local[0], np.arange(depth + 1, dtype=local[0].dtype))

    def plane_objects(p: int) -> tuple[np.ndarray, np.ndarray]:
        run = slice(starts[p], starts[p + 1])
        return local[1][run], local[2][run]

    cell_sigma = sigma / cell  # the Gaussian's sigma in cells

    cells = grid.shape[1] * grid.shape[2]
    chunk = max(1, _MAP_CELLS // cells)  # planes smoothed at once

    def smooth(first: int, weight: np.ndarray, total: np.ndarray) -> None:
        # Planes stacked along an axis the Gaussian leaves alone: each plane exactly as
        # alone, without a call per plane.
        stop = first + len(weight)
        if linear:
            grid[first:stop] = _local_linear(weight, total, cell_sigma)
            return
        smoothed = ndimage.gaussian_filter(np.stack([weight, total]), (0, 0, *cell_sigma),
                                           mode="constant", truncate=4.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            grid[first:stop] = np.where(smoothed[0] > 1e-9, smoothed[1] / smoothed[0], np.nan)

    def planes(start: int, stop: int) -> None:
        # The planes within reach of the plane before `start`: each step adds one, drops one.
        # (each plane's object voxels are distinct, so adding 1 at each counts them)
        within = np.zeros((n_y, n_x), dtype=np.int32)
        for p in range(max(start - 1 - reach[0], 0), min(start + reach[0], depth)):
            within[plane_objects(p)] += 1
        for first in range(start, stop, chunk):
            last = min(stop, first + chunk)
            weight = np.zeros((last - first, *grid.shape[1:]))
            total = np.zeros((last - first, *grid.shape[1:]))
            for z in range(first, last):
                if z + reach[0] < depth:
                    within[plane_objects(z + reach[0])] += 1
                if z - reach[0] - 1 >= 0:
                    within[plane_objects(z - reach[0] - 1)] -= 1
                plane = values[z]
                if plane.dtype == np.float16 or not plane.dtype.isnative:  # not compiled for
                    plane = plane.astype(np.float32)
                free_cell_sums(within, plane, int(reach[1]), int(reach[2]), cell,
                               weight[z - first], total[z - first])
            smooth(first, weight, total)

    # With two threads, each takes half the planes (the compiled sums release the GIL).
    if threads > 1 and depth > 1:
        with ThreadPoolExecutor(1) as other:
            half = other.submit(planes, depth // 2, depth)
            planes(0, depth // 2)
            half.result()
    else:
        planes(0, depth)
    return grid, cell, corner


def _cell_axis(coordinate: np.ndarray, cell: int, n: int):
    """Along one axis of a cell grid of `n` cells: the cells below and above each voxel
    coordinate (cell centres at ``(k + 0.5) * cell - 0.5``), as a (2, len) int64 array, and
    its fraction of the way up."""
    position = np.clip((coordinate + 0.5) / cell - 0.5, 0, n - 1)
    below = np.floor(position).astype(np.int64)
    return np.stack([below, np.minimum(below + 1, n - 1)]), position - below


def _grid_values(grid: np.ndarray, cell: int, corner: np.ndarray, z: np.ndarray, y: np.ndarray,
                 x: np.ndarray) -> np.ndarray:
    """Bilinear values of :func:`_plane_background`'s grid at voxels (z, y, x) of the box."""
    y, x = y - corner[0], x - corner[1]
    values = np.zeros(z.size)
    total_weight = np.zeros(z.size)
    axes = []
    for coordinate, n in ((y, grid.shape[1]), (x, grid.shape[2])):
        cells, fraction = _cell_axis(coordinate, cell, n)
        axes.append(zip(cells, (1.0 - fraction, fraction)))
    columns = list(axes[1])
    for row, row_weight in axes[0]:
        for column, column_weight in columns:
            corner = grid[z, row, column].astype(np.float64)
            weight = row_weight * column_weight
            known = ~np.isnan(corner)
            values[known] += weight[known] * corner[known]
            total_weight[known] += weight[known]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total_weight > 0, values / total_weight, np.nan)


def _filled(grid: np.ndarray) -> np.ndarray:
    """:func:`_plane_background`'s grid with each plane's unknown (NaN) cells given the
    value of the nearest known cell of that plane (0 in a plane with none)."""
    grid = grid.copy()
    for plane in grid:
        unknown = np.isnan(plane)
        if unknown.all():
            plane[:] = 0.0
        elif unknown.any():
            nearest = ndimage.distance_transform_edt(unknown, return_distances=False,
                                                     return_indices=True)
            plane[:] = plane[tuple(nearest)]
    return grid


def _plane_key_dtype(n_keys: int) -> np.dtype:
    """The integer dtype of the (object, plane) keys ``0..n_keys-1``."""
    return np.dtype(np.int32 if n_keys < 2**31 else np.int64)


@warning_filters_kept()
def aperture_intensities(
    label_image: np.ndarray,
    intensity_image: np.ndarray,
    *,
    spacing,
    grow_um: float = APERTURE_GROW_UM,
    shell_um: float = APERTURE_SHELL_UM,
    background: str = APERTURE_BACKGROUND,
    background_sigma_um: float | None = None,
    threads: int = 1,
) -> pd.DataFrame:
    """Matched-aperture, background-subtracted intensity of every object.

    Every voxel within ``grow_um + shell_um`` of an object belongs to its
    nearest object: the smallest Euclidean distance, in microns, between voxel
    centres, with a step longer than `grow_um` counted as `grow_um` (so that
    the aperture reaches the next voxel along every axis: module docstring).
    Ties (to a relative 1e-9) go to the smallest label. Object *i*'s
    *aperture* is the voxels belonging to it at most `grow_um` away (its own
    voxels included); its *shell* those farther, at most ``grow_um + shell_um``
    away. Distances within a relative 1e-9 of a radius count as on it (e.g. a
    voxel one 0.3 um z-step away is in a 0.3 um aperture).

    Parameters
    ----------
    label_image : (Z, Y, X) ndarray of int, or ObjectVoxels
        Objects as positive labels, 0 as background (see
        :func:`~rna_localization.objects.label_objects` and
        :func:`~rna_localization.objects.object_voxels`).
    intensity_image : (Z, Y, X) ndarray
        Raw intensities, same shape; every value must be finite.
    spacing : float or (3,) sequence of float
        Voxel size along (z, y, x) in microns, e.g. ``(0.2, 0.065, 0.065)``.
    grow_um : float
        How far the aperture reaches beyond the object, >= 0 microns.
    shell_um : float
        Thickness of the background shell around the aperture, > 0 microns.
    background : {"shell_plane_map", "shell_plane", "shell", "plane"}
        How the background under the aperture is estimated (see Returns and
        the module docstring).
    background_sigma_um : float, optional
        Lateral sigma of the plane background's Gaussian weights, > 0 microns:
        :data:`PLANE_BACKGROUND_SIGMA_UM` for ``"plane"``,
        :data:`MAP_BACKGROUND_SIGMA_UM` for ``"shell_plane_map"`` by default.
    threads : int
        With 2 or more, a second thread forms the next block's nearest-object
        keys while this one's are summed (a frame of many blocks takes about
        half the time; the answer is the same), and with ``"shell_plane_map"``
        takes the light's ring medians while this thread takes the map's, and
        fits half the map's planes. At most 2 are used.

    Returns
    -------
    DataFrame
        One row per label present, sorted by ``object_id``, with the columns of
        :data:`APERTURE_COLUMNS`:

        - ``background``: the background level per voxel under the aperture.
          ``"shell_plane"``: the mean over the aperture's voxels of the
          median of the shell voxels in each one's plane (the whole shell's
          median for a plane with fewer than :data:`SHELL_PLANE_MIN_VOXELS`).
          ``"shell_plane_map"``: the same, each aperture voxel's median
          moved by a smooth background map at the voxel less the map's median
          over the same shell voxels (the map drawn as ``"plane"`` draws its
          background, but from the voxels beyond every object's shell and as
          the Gaussian-weighted plane through them rather than their mean, each
          plane's cells with no such voxel within reach taking their nearest
          known cell's value).
          ``"shell"``: median intensity over the shell. Either way, when the
          shell is empty (neighbours or the image edge take all of it), the
          median of the whole `intensity_image` instead. ``"plane"``: the mean over the
          aperture's voxels of each one's plane background (module
          docstring), unless one of them has none, then as ``"shell"``.
        - ``spot_intensity``: sum of the intensities over the aperture (in
          float64) minus ``background`` times ``aperture_area``.
        - ``aperture_area``, ``shell_area``: voxel counts.

        No object gives zero rows with the same columns.

    Notes
    -----
    Only the bounding box of the objects, enlarged by ``grow_um + shell_um``,
    is processed a block of planes and rows at a time (about 16 million
    voxels with its margins, its shape chosen to waste the fewest pairs):
    4 bytes per voxel of a block (8 with very many objects; twice that with
    two threads: a block's keys each), plus a few bytes per shell voxel
    kept for the medians until the blocks have passed the object (4 more with
    ``"shell_plane"``: its key). The time grows
    with the number of voxels within reach of an object, not with the
    volume (module docstring). The plane background
    reads every plane of that box laterally grown by its Gaussian's reach,
    a plane at a time, and keeps one float32 per cell of about half a sigma (a cell
    of 4 x 4 voxels at 0.065 µm: 1/16 of a float per voxel);
    ``"shell_plane_map"`` reads it too (cells of 9 x 9 voxels), and reads it at
    each aperture and shell voxel in the same pass as the light (never drawn over
    a block), its shell voxels' values kept beside theirs (4 bytes each).

    Examples
    --------
    >>> labels = np.zeros((1, 1, 9), int); labels[0, 0, 4] = 1
    >>> raw = np.array([[[10, 10, 10, 12, 50, 12, 10, 10, 10]]], dtype=np.uint16)
    >>> aperture_intensities(labels, raw, spacing=1.0, grow_um=1.0, shell_um=2.0)
       object_id  spot_intensity  background  aperture_area  shell_area
    0          1            44.0        10.0              3           4
    """
    from ._stencils import shell_levels, sum_apertures  # compiled on first use (numba)

    objects, intensity_image = object_voxels_and_intensities(label_image, intensity_image)
    if not np.issubdtype(intensity_image.dtype, np.number) or np.iscomplexobj(intensity_image):
        msg = f"intensity_image must hold real numbers; got dtype {intensity_image.dtype}."
        raise TypeError(msg)
    if np.issubdtype(intensity_image.dtype, np.floating):
        bad = intensity_image.size - int(np.count_nonzero(np.isfinite(intensity_image)))
        if bad:
            msg = f"intensity_image has {bad} non-finite voxels (NaN or infinite)."
            raise ValueError(msg)
    scale = normalize_spacing(spacing)
    grow_um = _check_length(grow_um, "grow_um", allow_zero=True)
    metric = _aperture_metric(scale, grow_um)  # a coarse step counts as grow_um (module doc)
    shell_um = _check_length(shell_um, "shell_um", allow_zero=False)
    if background not in BACKGROUNDS:
        msg = f"background must be one of {', '.join(map(repr, BACKGROUNDS))}; got {background!r}."
        raise ValueError(msg)
    if background_sigma_um is None:
        background_sigma_um = (MAP_BACKGROUND_SIGMA_UM if background == "shell_plane_map"
                               else PLANE_BACKGROUND_SIGMA_UM)
    background_sigma_um = _check_length(background_sigma_um, "background_sigma_um",
                                        allow_zero=False)
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
        msg = f"threads must be a whole number >= 1; got {threads!r}."
        raise ValueError(msg)
    if objects.voxels.size == 0:
        return empty_apertures()
    coords = np.unravel_index(objects.voxels, objects.shape)
    extents = [(int(c.min()), int(c.max())) for c in coords]

    outer = grow_um + shell_um
    margin = np.floor(_at_most(outer) / metric).astype(int) + 1
    box = tuple(
        slice(max(found[0] - m, 0), min(found[1] + 1 + m, size))
        for found, m, size in zip(extents, margin, objects.shape)
    )
    values = intensity_image[box]
    if values.dtype == np.float16:  # the compiled loops read float32 and float64, not half floats
        values = values.astype(np.float32)
    elif not values.dtype.isnative:  # nor bytes in the other order (a big-endian file's array)
        values = values.astype(values.dtype.newbyteorder("="))
    object_ids, index = object_index(objects.labels)
    n = object_ids.size
    index_dtype = np.int32 if n < np.iinfo(np.int32).max else np.int64
    # Each object voxel as its object's index 1..n and its place in the box.
    index = index.astype(index_dtype)
    index += 1
    local = [(c - b.start).astype(np.int32) for c, b in zip(coords, box)]
    del coords
    aperture_area = np.zeros(n, dtype=np.int64)
    aperture_sum = np.zeros(n)
    plane = background == "plane"
    mapped = background == "shell_plane_map"
    by_plane = background in ("shell_plane", "shell_plane_map")
    if plane or mapped:
        # Away from every aperture ("plane"), or beyond every shell ("shell_plane_map":
        # where no object's own light reaches), in voxels.
        reach = np.floor(_at_most(outer if mapped else grow_um) / metric).astype(int)
        grid, cell, corner = _plane_background(intensity_image, box, local, scale, reach,
                                               background_sigma_um, linear=mapped,
                                               threads=min(int(threads), 2))
    if plane:
        plane_sum = np.zeros(n)
        no_plane = np.zeros(n, dtype=bool)  # an aperture voxel with no plane background
    # The map read as the light is (its aperture sum less each ring's median), from
    # a map known everywhere (the nearest known cell where no voxel beyond every
    # shell lies within reach): what moves the ring's median to the aperture. The
    # compiled sums read it at each aperture and shell voxel (bilinear between the
    # cells' centres: each column's cells and fraction found once, each row's per block).
    map_grid = _filled(grid) if mapped else np.zeros((0, 0, 0), np.float32)
    no_axis, no_fraction = np.zeros((2, 0), np.int64), np.zeros(0)
    column_cells, column_fraction = no_axis, no_fraction
    if mapped:
        column_cells, column_fraction = _cell_axis(np.arange(values.shape[2]) - corner[1],
                                                   cell, map_grid.shape[2])
    map_sum = np.zeros(n if mapped else 0)
    map_under = np.full(n if mapped else 0, np.nan)
    map_whole = np.full(n if mapped else 0, np.nan)
    pending_map = []
    shell_area = np.zeros(n, dtype=np.int64)
    # Per object once its shell is all seen: the median of its shell, and the
    # background summed under its aperture ring by ring ("shell_plane").
    whole = np.full(n, np.nan)
    under = np.full(n, np.nan)
    background = np.full(n, np.nan)
    settled = np.zeros(n, dtype=bool)
    # Each object's last plane and last row: its shell ends within reach of them, so
    # its median is taken (and its shell voxels let go) once the blocks have passed
    # that far.
    last_plane = np.zeros(n, dtype=np.int32)  # local's dtype: np.maximum.at's fast path
    np.maximum.at(last_plane, index - 1, local[0])
    last_row = np.zeros(n, dtype=np.int32)
    np.maximum.at(last_row, index - 1, local[1])
    pending_owner, pending_values = [], []
    # Without per-plane keys, sum_apertures takes empty key arrays and each shell
    # voxel's group is its object (one "plane" per object).
    key_base = np.zeros(0, dtype=np.int32)
    aperture_planes = np.zeros(0, dtype=np.int64)
    span = 1
    if by_plane:
        # (object, plane) as one key: object * span + its plane less the first plane
        # its reach can touch; the aperture's voxels counted per key, and the shell's
        # voxels kept with their key for the medians.
        # Each object's first plane (the voxels are in scan order: the last is in the last plane).
        origin = np.full(n, local[0][-1], dtype=np.int32)
        np.minimum.at(origin, index - 1, local[0])
        origin = origin.astype(np.int64) - margin[0]
        span = int((last_plane - origin).max()) + margin[0] + 1
        aperture_planes = np.zeros(n * span, dtype=np.int64)
        key_type = _plane_key_dtype(n * span)
        key_base = (np.arange(n, dtype=np.int64) * span - origin).astype(key_type)
        del origin
        pending_keys = []
    # In blocks of planes and rows, each with the planes and rows within reach on
    # every side: every object voxel within reach of a block voxel is in them, so
    # each block is exact, and memory stays bounded on a full frame. A block holds
    # all the planes of a frame (up to _BLOCK_PLANES): the fewer margins, the fewer
    # (object voxel, offset) pairs formed for voxels outside the block.
    box_shape = values.shape
    depth, height = box_shape[0], box_shape[1]
    width = box_shape[2] + 2 * margin[2]
    planes, rows = _block_size(depth, height, width, margin)
    nearest = _stencil(metric, outer, (1, 1, 1))[3]
    # Keys are ordered by distance rank first: the aperture is every key below the
    # first rank farther than grow_um.
    aperture_keys = int(np.count_nonzero(nearest <= _at_most(grow_um))) << _key_bits(n)
    # The blocks in order: planes first..last and rows top..bottom kept, read with
    # planes low..high and rows north..south around them.
    blocks = []
    for first in range(0, depth, planes):
        last = min(first + planes, depth)
        low, high = max(first - margin[0], 0), min(last + margin[0], depth)
        for top in range(0, height, rows):
            bottom = min(top + rows, height)
            blocks.append((first, last, low, high, top, bottom, max(top - margin[1], 0),
                           min(bottom + margin[1], height)))
    # One buffer of keys per thread, as large as the largest block.
    largest_block = ((min(planes + 2 * margin[0], depth) + 2 * margin[0])
                     * (min(rows + 2 * margin[1], height) + 2 * margin[1]) * width)
    buffers = [np.empty(largest_block, dtype=_key_dtype(len(nearest), n))
               for _ in range(min(int(threads), 2, len(blocks)))]

    def block_keys(b: int):
        """Block b's keys (its kept planes and rows), from its buffer."""
        first, last, low, high, top, bottom, north, south = blocks[b]
        # The voxels are in scan order, so those of planes low..high-1 are one run.
        run = slice(*np.searchsorted(local[0], np.array([low, high], local[0].dtype)))
        run_y = local[1][run]
        here_voxels = np.flatnonzero((run_y >= north) & (run_y < south))
        here_voxels += run.start
        # The block, padded by the margin on every side so that no offset wraps,
        # and its object voxels' flat indices in it (still in scan order).
        padded = (high - low + 2 * margin[0], south - north + 2 * margin[1], width)
        flat = (local[0][here_voxels].astype(np.int64) - (low - margin[0])) * padded[1]
        flat += local[1][here_voxels] - (north - margin[1])
        flat *= padded[2]
        flat += local[2][here_voxels] + margin[2]
        keys, _, blank = _nearest_keys(padded, flat, index[here_voxels], metric, outer, n,
                                       out=buffers[b % len(buffers)])
        return keys[first - low + margin[0] : last - low + margin[0],
                    top - north + margin[1] : bottom - north + margin[1],
                    margin[2] : margin[2] + box_shape[2]], blank

    # With two threads, the next block's keys are spread (in the other buffer) while
    # this block's are summed.
    ahead = ThreadPoolExecutor(1) if len(buffers) > 1 else None
    coming = ahead.submit(block_keys, 0) if ahead else None
    try:
        for b, (first, last, _, _, top, bottom, _, _) in enumerate(blocks):
            if ahead:
                keys, blank = coming.result()
                if b + 1 < len(blocks):
                    coming = ahead.submit(block_keys, b + 1)
            else:
                keys, blank = block_keys(b)
            here = values[first:last, top:bottom]
            row_cells, row_fraction = no_axis, no_fraction
            if mapped:
                row_cells, row_fraction = _cell_axis(np.arange(top, bottom) - corner[0],
                                                     cell, map_grid.shape[1])
            owner, shell, plane_key, shell_map = sum_apertures(
                keys, here, _key_bits(n), aperture_keys, blank,
                aperture_area, aperture_sum, key_base, first, aperture_planes,
                map_grid, row_cells, row_fraction, column_cells, column_fraction, map_sum)
            if mapped:
                pending_map.append(shell_map)
            if plane:  # each aperture voxel's plane background, at its place in the box
                at = np.nonzero(keys < aperture_keys)  # blank is above
                aperture_owner = keys[at] & ((1 << _key_bits(n)) - 1)
                aperture_owner -= 1
                level = _grid_values(grid, cell, corner, at[0] + first, at[1] + top, at[2])
                del at
                missing = np.isnan(level)
                no_plane[aperture_owner[missing]] = True
                plane_sum += np.bincount(aperture_owner, weights=np.where(missing, 0.0, level),
                                         minlength=n)
                del aperture_owner, level, missing
            del keys, here
            pending_owner.append(owner)
            pending_values.append(shell)
            if by_plane:
                pending_keys.append(plane_key)
            del owner, shell, plane_key
            # Objects whose whole shell is now seen (every plane within reach of them
            # passed, and in this block of planes every row): their medians, and their
            # shell voxels freed.
            finished = (((last_plane + margin[0] <= last) | (last == depth))
                        & ((last_row + margin[1] <= bottom) | (bottom == height)))
            finished &= ~settled
            if not finished.any():
                continue
            settled |= finished
            owner, shell = np.concatenate(pending_owner), np.concatenate(pending_values)
            keys = np.concatenate(pending_keys) if by_plane else owner
            light = partial(shell_levels, owner, shell, keys, span, finished,
                            aperture_planes if by_plane else aperture_area,
                            SHELL_PLANE_MIN_VOXELS, shell_area, whole, under)
            if mapped:
                # The light's medians and the map's taken side by side with two threads
                # (the light's on the other thread, once it has the next block's keys).
                light = ahead.submit(light).result if ahead else light
                pending_map = [shell_levels(
                    owner, np.concatenate(pending_map), keys, span, finished,
                    aperture_planes, SHELL_PLANE_MIN_VOXELS, np.zeros(n, np.int64),
                    map_whole, map_under)[1]]
            owner, shell, keys = light()
            if mapped:
                under[finished] += map_sum[finished] - map_under[finished]
            pending_owner, pending_values = [owner], [shell]
            if by_plane:  # each plane's ring, else the whole shell's median
                pending_keys = [keys]
                background[finished] = under[finished] / aperture_area[finished]
            else:
                background[finished] = whole[finished]
            del owner, shell, keys, light
    finally:
        if ahead:
            ahead.shutdown(wait=True, cancel_futures=True)
    empty = np.isnan(background)  # no shell voxel at all: the image's median
    if empty.any():
        background[empty] = _image_median(intensity_image)
    subtracted = background * aperture_area
    if by_plane:  # each plane's ring, else the whole shell's median (set above)
        subtracted[~empty] = under[~empty]
    if plane:  # the plane background where every aperture voxel has one, else the shell's
        use = ~no_plane
        subtracted[use] = plane_sum[use]
        background[use] = plane_sum[use] / aperture_area[use]

    return pd.DataFrame(
        {
            "object_id": object_ids.astype(np.int64),
            "spot_intensity": aperture_sum - subtracted,
            "background": background,
            "aperture_area": aperture_area.astype(np.int64),
            "shell_area": shell_area.astype(np.int64),
        }
    )


def spot_centroids(label_image: np.ndarray, intensity_image: np.ndarray, background) -> pd.DataFrame:
    """Background-subtracted intensity centroid of every object, in voxel coordinates.

    Each voxel of object *i* weighs ``max(intensity - background_i, 0)``: the
    spot's own light, not the background under it (which would pull the
    centroid to the mask's geometric centre) and not its neighbours'. An
    object with no voxel above its background gets its plain centroid.

    Parameters
    ----------
    label_image : (Z, Y, X) ndarray of int, or ObjectVoxels
        Objects 1..n, 0 as background.
    intensity_image : (Z, Y, X) ndarray
        Raw intensities, same shape.
    background : Series or mapping
        Background level of each object, indexed by object id (e.g. from
        :func:`aperture_intensities`).

    Returns
    -------
    DataFrame
        ``object_id``, ``spot_centroid_z``, ``spot_centroid_y``, ``spot_centroid_x``,
        one row per object, sorted by ``object_id``.

    Examples
    --------
    >>> labels = np.zeros((1, 1, 5), np.int32)
    >>> labels[0, 0, 1:4] = 1
    >>> raw = np.array([[[10, 10, 12, 16, 10]]])
    >>> spot_centroids(labels, raw, {1: 10.0})["spot_centroid_x"].tolist()
    [2.75]
    """
    objects, intensity_image = object_voxels_and_intensities(label_image, intensity_image)
    voxels = objects.voxels
    if voxels.size == 0:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in CENTROID_COLUMNS.items()})
    ids, owner = object_index(objects.labels)
    size = ids.size
    level = pd.Series(background).reindex(ids).to_numpy(np.float64)
    values = intensity_image.ravel()[voxels].astype(np.float64)
    weight = np.maximum(values - level[owner], 0.0)
    total = np.bincount(owner, weights=weight, minlength=size)
    count = np.bincount(owner, minlength=size)
    coordinates = np.unravel_index(voxels, objects.shape)
    columns = {"object_id": ids}
    for axis, name in enumerate(("spot_centroid_z", "spot_centroid_y", "spot_centroid_x")):
        weighted = np.bincount(owner, weights=weight * coordinates[axis], minlength=size)
        plain = np.bincount(owner, weights=coordinates[axis], minlength=size)
        with np.errstate(invalid="ignore", divide="ignore"):
            columns[name] = np.where(total > 0, weighted / total, plain / count)
    return pd.DataFrame(columns).astype(CENTROID_COLUMNS)
