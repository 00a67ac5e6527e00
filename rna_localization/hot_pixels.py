"""A camera's hot and dead pixels: one-pixel columns through a stack, measured on the stack.

An sCMOS or CCD camera has pixels with a high dark current or offset: each reads
more than its neighbours in every plane of a z-stack. Seen by the spot filters,
which are matched to a molecule's few planes, such a column breaks into several
spots along z, each read as a fraction of a molecule (on sim-fish images with 0.1%
of the pixels hot, 2-50 noise SDs: molecules summed +44%, Big-FISH +187%). A dead
(or cold) pixel, reading less than its neighbours in every plane, is as harmful:
the filters' positive ring around its dark column makes spots (on simulated
widefield stacks, 0.2% of the pixels dead at 30 noise SDs below the background:
about 17 false spots each, precision 0.99 -> 0.50). No light through the
objective is one pixel wide, so the columns are measured on the stack itself and
taken out: by ``segment`` before its filters (step 0 of the workflows,
:mod:`rna_localization.segmentation.detection`) and by ``extract`` before the
apertures sum each object's light. A hot pixel loses its offset; a dead one takes
the mean of its neighbours in each plane. The contract's raw intensities
(``total_intensity`` and the other columns of every structure table) stay the
camera's counts.

Pure array functions.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from ._cores import in_threads, thread_count
from .objects import normalize_spacing

__all__ = ["HOT_PIXEL_MIN_SPANS", "HOT_PIXEL_PASSES", "HOT_PIXEL_SAMPLE", "HOT_PIXEL_SCREEN",
           "HOT_PIXEL_SIGMAS", "HOT_PIXEL_SPREAD_FLOOR", "hot_pixel_offsets", "remove_hot_pixels",
           "repair_in_place", "without_hot_pixels"]

#: :func:`hot_pixel_offsets`: a pixel is hot (or dead) when its median excess over its
#: neighbours, over the stack's planes, is more than this many standard errors above (below) 0.
HOT_PIXEL_SIGMAS = 6.0
#: :func:`hot_pixel_offsets` looks for hot pixels only in stacks at least this many times
#: as deep as a molecule (4 axial spot sigmas): in shorter ones a molecule may raise a
#: pixel in half the planes.
HOT_PIXEL_MIN_SPANS = 3.0
#: :func:`hot_pixel_offsets` measures a cluster of hot pixels at most this many times.
HOT_PIXEL_PASSES = 5
#: :func:`hot_pixel_offsets` takes no pixel's standard error below this fraction of the
#: image's typical one (the median over :data:`HOT_PIXEL_SAMPLE` pixels): a pixel's own,
#: from a few tens of planes, is now and then well under the truth (on a pure-noise stack
#: of 40 × 1024 × 1024, 6 pixels of a million were taken without a floor, 4 with half the
#: median, none with 0.8 or 1).
HOT_PIXEL_SPREAD_FLOOR = 1.0
#: :func:`hot_pixel_offsets` measures the typical standard error on about this many pixels.
HOT_PIXEL_SAMPLE = 10_000
#: :func:`hot_pixel_offsets` measures a pixel only where its median over the planes stands
#: apart from its neighbours' by this fraction of the test (``sigmas`` typical standard
#: errors): 3 of the 6. On a noise stack of 40 × 1024 × 1024 with 2,000 hot and dead pixels
#: of 1-30 noise SDs, every pixel that passes the test stood at least 4.8 apart, and 0.2%
#: of the others 3 apart (with all pixels measured: the same pixels but 2, 4.5 times the
#: time).
HOT_PIXEL_SCREEN = 0.5


def hot_pixel_offsets(image: np.ndarray, *, spacing, spot_sigma_um,
                      sigmas: float = HOT_PIXEL_SIGMAS, rows: int = 64,
                      threads: int | None = 1) -> np.ndarray:
    """A camera's hot and dead pixels: the light a pixel adds (or lacks) in every plane.

    An sCMOS (or CCD) pixel with a high dark current or offset reads more than
    its neighbours in every plane of a stack: a column one pixel wide through
    z, which the spot filter, matched to a molecule's few planes, breaks into
    several spots. No light through the objective is that narrow: the PSF
    spans a few pixels across, and a molecule a few planes. So each pixel's
    excess over the mean of its 8 neighbours in the plane (less the largest and
    the smallest of them: a hot or dead neighbour does not move it) is taken in
    every plane, and its median over the planes is the pixel's offset (a molecule
    raises it in a few planes only, so the median sets it aside). A pixel is
    hot when that median exceeds `sigmas` standard errors of a median of the
    pixel's own excesses (1.2533 · 1.4826 · MAD / sqrt(planes): bright,
    noisy regions measured on their own noise), and no less than the image's
    typical standard error (:data:`HOT_PIXEL_SPREAD_FLOOR`). Beside two or more
    hot pixels the neighbours' mean is off, so the pixels around those found
    are measured again on the stack less the offsets found, at most
    :data:`HOT_PIXEL_PASSES` times in all (a hot pixel's change taken whatever
    its size, a new pixel only past the same test), and in the end only the
    offsets past the same test on the pixel's own standard error stay. Only
    the pixels whose median over the planes stands :data:`HOT_PIXEL_SCREEN` of
    the test apart from their neighbours' medians are measured pixel by pixel
    (the medians of a whole stack are taken in one pass; on a test stack,
    1,833 of the 1,835 pixels that pass the test when every pixel is measured).
    A dead or cold pixel, reading less than its neighbours in every plane, is
    found the same way, below 0: its offset is negative.

    Parameters
    ----------
    image : (Z, Y, X) ndarray
        Raw stack, any numeric dtype.
    spacing : float or sequence of 3 floats
        Microns per voxel (z, y, x).
    spot_sigma_um : float or (axial, lateral)
        Gaussian sigma of a single molecule's image, µm. A stack of fewer than
        :data:`HOT_PIXEL_MIN_SPANS` times the planes a molecule spans (4 axial
        sigmas) is too short to tell a hot pixel from a molecule: no pixel is
        taken for hot.
    sigmas : float
        Standard errors above (below) which a pixel's median excess makes it hot
        (dead).
    rows : int
        Rows (y) a thread takes at a time for the medians over the planes
        (each thread holds ``Z × 512`` float32 values however many rows:
        ``rna_localization._columns.COLUMN_BLOCK``).
    threads : int or None
        Threads the stack's medians over the planes are taken on (a compiled
        loop that lets go of the GIL; about half the time on 2, the same
        answer); None for every usable core.

    Returns
    -------
    (Y, X) ndarray of float32
        Each hot pixel's offset (its median excess, in the image's units;
        negative for a dead or cold pixel), 0 elsewhere: what
        :func:`remove_hot_pixels` repairs (also the ``hot_pixels`` of the spot
        filters, :func:`rna_localization.segmentation.detection.remove_background`).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> stack = rng.normal(100.0, 5.0, (30, 40, 40))
    >>> stack[:, 10, 20] += 40.0   # a hot pixel, 8 noise SDs, in every plane
    >>> offsets = hot_pixel_offsets(stack, spacing=(0.3, 0.11, 0.11),
    ...                             spot_sigma_um=(0.3, 0.11))
    >>> [(int(y), int(x)) for y, x in zip(*np.nonzero(offsets))]
    [(10, 20)]
    >>> bool(35 < offsets[10, 20] < 45)
    True
    """
    image = np.asarray(image)
    if image.ndim != 3:
        msg = f"hot_pixel_offsets takes a (Z, Y, X) stack; got shape {image.shape}."
        raise ValueError(msg)
    if image.dtype.kind not in "iuf" or image.dtype == np.float16 or not image.dtype.isnative:
        # The compiled loops read native integers, float32 and float64.
        image = image.astype(np.float32)
    from ._columns import map_excess  # compiled on first use (numba)

    depth, height, width = image.shape
    offsets = np.zeros((height, width), dtype=np.float32)
    axial = np.asarray(spot_sigma_um, dtype=np.float64).ravel()[0]
    spans = 4.0 * axial / normalize_spacing(spacing)[0]
    if depth < HOT_PIXEL_MIN_SPANS * spans or height < 3 or width < 3:
        return offsets
    scale = np.float32(1.2533 * 1.4826 / math.sqrt(depth))
    sigmas = np.float32(sigmas)
    # The image's typical standard error, on a grid of about HOT_PIXEL_SAMPLE pixels: a
    # pixel's own, from a few tens of planes, is now and then well under the truth, and
    # none is taken below the typical one (HOT_PIXEL_SPREAD_FLOOR of it).
    step = max(1, int(math.sqrt(height * width / HOT_PIXEL_SAMPLE)))
    gy, gx = np.meshgrid(np.arange(0, height, step), np.arange(0, width, step), indexing="ij")
    _, spread = _hot_excess(image, offsets, gy.ravel(), gx.ravel(), scale)
    floor = np.float32(HOT_PIXEL_SPREAD_FLOOR) * np.median(spread)
    # The pixels worth measuring: those whose median over the planes stands apart from their
    # neighbours' medians by HOT_PIXEL_SCREEN of the test (nearly every pixel that passes
    # the test passes this, its medians taken once for the whole stack).
    # The medians in bands of rows, shared among the threads (rna_localization._columns: no
    # copy of a band is made, each thread sorts a block of its rows' pixels at a time).
    level = _plane_medians(image, rows, thread_count(threads))
    screen = np.empty_like(level)
    map_excess(level, screen)
    cy, cx = np.nonzero(np.abs(screen) > np.float32(HOT_PIXEL_SCREEN) * sigmas * floor)
    del level, screen
    median, spread = _hot_excess(image, offsets, cy, cx, scale)
    hot = np.abs(median) > sigmas * np.maximum(spread, floor)
    found = np.zeros_like(offsets)
    found[cy[hot], cx[hot]] = median[hot]
    offsets += found
    # Beside two or more hot (or dead) pixels a pixel's neighbours' mean is off by a sixth
    # of their offsets: each is measured again on the stack less the offsets found, around
    # those that changed (a hot pixel's own change taken whatever its size, a new one only
    # past `sigmas`).
    for _ in range(HOT_PIXEL_PASSES - 1):
        if not found.any():
            break
        changed = ndimage.binary_dilation(found != 0, np.ones((3, 3), bool))
        cy, cx = np.nonzero(changed)
        median, spread = _hot_excess(image, offsets, cy, cx, scale)
        keep = (np.abs(median) > sigmas * np.maximum(spread, floor)) | (offsets[cy, cx] != 0)
        found = np.zeros_like(offsets)
        found[cy, cx] = np.where(keep, median, np.float32(0.0))
        offsets += found
    # What a pixel was taken for by its neighbours' offsets alone settles near 0: only the
    # offsets past `sigmas` standard errors of the pixel's own stay.
    cy, cx = np.nonzero(offsets)
    if cy.size:
        _, spread = _hot_excess(image, offsets, cy, cx, scale)
        small = np.abs(offsets[cy, cx]) <= sigmas * np.maximum(spread, floor)
        offsets[cy[small], cx[small]] = 0.0
    return offsets


_NEIGHBOURS = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]
# Pixels examined at a time (their excesses in every plane held: 16 MB for 60 planes).
_EXAMINED_AT_ONCE = 1 << 16


def _plane_medians(image: np.ndarray, rows: int, threads: int = 1) -> np.ndarray:
    """Each pixel's median over the planes, (Y, X) float32, `rows` rows at a time (on up
    to `threads` threads)."""
    from ._columns import column_medians  # compiled on first use (numba)

    depth, height, width = image.shape
    medians = np.empty((height, width), dtype=np.float32)

    def band(top: int) -> None:
        column_medians(image[:, top:top + rows], out=medians[top:top + rows])

    in_threads(band, range(0, height, rows), threads)
    return medians


def _hot_excess(image: np.ndarray, offsets: np.ndarray, cy: np.ndarray, cx: np.ndarray,
                scale) -> tuple[np.ndarray, np.ndarray]:
    """At the pixels (cy, cx) only, on the stack with the offsets found taken from it: the
    median over the planes of each pixel's excess over its neighbours (the mean of its 8
    without their largest and smallest, in each plane), and `scale` × its median absolute
    deviation; :data:`_EXAMINED_AT_ONCE` pixels at a time."""
    from ._columns import excess_medians  # compiled on first use (numba)

    median = np.empty(cy.size, dtype=np.float32)
    spread = np.empty(cy.size, dtype=np.float32)
    offsets = np.asarray(offsets, dtype=np.float32)
    cy, cx = np.asarray(cy, dtype=np.int64), np.asarray(cx, dtype=np.int64)
    for start in range(0, cy.size, _EXAMINED_AT_ONCE):
        part = slice(start, start + _EXAMINED_AT_ONCE)
        excess_medians(image, offsets, cy[part], cx[part], np.float32(scale), median[part],
                       spread[part])
    return median, spread


def remove_hot_pixels(image: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """The stack with its hot and dead pixels (:func:`hot_pixel_offsets`) repaired.

    Parameters
    ----------
    image : (Z, Y, X) ndarray
        Raw stack.
    offsets : (Y, X) ndarray
        Per-pixel offsets, 0 where a pixel is neither hot nor dead.

    Returns
    -------
    (Z, Y, X) ndarray
        `image` itself when no pixel is hot or dead; otherwise a float32 copy
        repaired by :func:`repair_in_place`.

    Examples
    --------
    >>> stack = np.full((20, 5, 5), 10.0)
    >>> offsets = np.zeros((5, 5), dtype=np.float32); offsets[2, 3] = 7.0
    >>> float(remove_hot_pixels(stack + offsets, offsets).max())
    10.0
    """
    if not np.any(offsets):
        return image
    repaired = np.array(image, dtype=np.float32)
    repair_in_place(repaired, offsets)
    return repaired


def repair_in_place(stack: np.ndarray, offsets: np.ndarray) -> None:
    """Repair a float stack's hot and dead pixels in place.

    A hot pixel (positive offset) loses its offset in every plane: the light
    that fell on it stays. A dead or cold pixel (negative offset) takes, in
    every plane, the mean of its 8 neighbours that are not themselves dead
    (mirrored at the edges; hot ones counted once repaired): a dead pixel's
    reading holds little or none of the light that fell on it. With no such
    neighbour it loses its offset instead.

    Parameters
    ----------
    stack : (Z, Y, X) ndarray of float
        Repaired in place.
    offsets : (Y, X) ndarray
        :func:`hot_pixel_offsets`.

    Examples
    --------
    >>> stack = np.tile(np.arange(5.0), (3, 5, 1))   # each row 0, 1, 2, 3, 4
    >>> stack[:, 2, 2] = 0.0                         # dead
    >>> offsets = np.zeros((5, 5)); offsets[2, 2] = -2.0
    >>> repair_in_place(stack, offsets)
    >>> stack[:, 2, 2].tolist()
    [2.0, 2.0, 2.0]
    """
    offsets = np.asarray(offsets, dtype=np.float32)
    hy, hx = np.nonzero(offsets > 0)
    if hy.size:
        stack[:, hy, hx] -= offsets[hy, hx]
    cy, cx = np.nonzero(offsets < 0)
    if not cy.size:
        return
    height, width = offsets.shape
    total = np.zeros((stack.shape[0], cy.size), dtype=np.float64)
    count = np.zeros(cy.size)
    for dy, dx in _NEIGHBOURS:
        yy, xx = _mirrored(cy + dy, height), _mirrored(cx + dx, width)
        alive = offsets[yy, xx] >= 0
        total[:, alive] += stack[:, yy[alive], xx[alive]]
        count += alive
    fill = np.asarray(stack[:, cy, cx], dtype=np.float64) - offsets[cy, cx]
    some = count > 0
    fill[:, some] = total[:, some] / count[some]
    stack[:, cy, cx] = fill


def _mirrored(index: np.ndarray, size: int) -> np.ndarray:
    """Indices mirrored at an axis' ends: -1 -> 1, size -> size - 2."""
    index = np.abs(index)
    return np.where(index >= size, 2 * size - 2 - index, index)


def without_hot_pixels(image: np.ndarray, *, spacing, spot_sigma_um=None,
                       threads: int | None = 1) -> np.ndarray:
    """`image` with its hot and dead pixels repaired: what ``extract``'s apertures sum.

    Parameters
    ----------
    image : (Z, Y, X) ndarray
        Raw stack.
    spacing : float or sequence of 3 floats
        Microns per voxel (z, y, x).
    spot_sigma_um : float or (axial, lateral), optional
        A molecule's spot sigma, µm (:func:`hot_pixel_offsets`); by default the
        ``rna`` workflow's.
    threads : int or None
        As :func:`hot_pixel_offsets`.

    Returns
    -------
    (Z, Y, X) ndarray
        `image` itself when it has no hot or dead pixel, else a float32 copy.

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> stack = rng.normal(100.0, 5.0, (30, 20, 20)); stack[:, 4, 4] += 50.0
    >>> level = np.median(without_hot_pixels(stack, spacing=(0.3, 0.11, 0.11))[:, 4, 4])
    >>> bool(abs(level - 100.0) < 2.0)
    True
    """
    if spot_sigma_um is None:
        from .segmentation.params import PRESETS  # the workflows import this module

        spot_sigma_um = PRESETS["rna"]["spot_sigma_um"]
    return remove_hot_pixels(image, hot_pixel_offsets(image, spacing=spacing,
                                                      spot_sigma_um=spot_sigma_um,
                                                      threads=threads))
