"""Aperture corrections: the light a spread source carries past its aperture.

Pure array functions: nothing here reads files or talks to the database.

Why
---
An object's aperture (:func:`rna_localization.apertures.aperture_intensities`:
the object grown by 0.25 µm) holds the same share of every single molecule's
light, so dividing by a reference taken from single molecules counts them
right. A granule is not a point: its molecules spread over a ball about as wide
as the PSF, and its image is wider than a single molecule's, so the same
aperture holds less of its light (on simulated widefield images 0.790 of a
granule's light against 0.839 of a single molecule's, and granules whose
object holds nothing else read 7-13% low on the demo; docs/quantification.md,
"Granules alone read low").

What
----
As photometry of stars does with an *aperture correction*, each bright object
is modelled as a Gaussian source: the image's PSF (measured from its single
molecules, :func:`measure_psf`) widened by an extra variance ``u`` (µm², the
same along every axis: a source's spread in space), fitted to the raw light of
its aperture and shell (:func:`fit_source_width`). Its correction is what its
aperture reads of a point source over what it reads of the fitted source, both
at the fitted centre and read as the light is (the aperture's sum less the
shell's median in each plane, which holds part of the source's own tail): 1 for
a point, above 1 for a wider source. Only objects of at least
:data:`CAPTURE_MIN_SINGLES` typical single molecules are fitted; the single
molecules the reference is taken from keep 1.

The extra width credited is capped at :data:`CAPTURE_MAX_EXTRA_SIGMA` lateral
PSF sigmas. The fit cannot tell a compact granule from a clump of single
molecules a spot width apart (both fit a Gaussian about one PSF sigma wider;
docs/quantification.md, "Crowds and small granules look alike"), and a clump's
correction credits it light its missed neighbours left in its aperture's
surroundings. The cap bounds that credit, at the cost of part of a wide
granule's.

Clipped light
-------------
A camera writes its ceiling wherever more light fell (:mod:`rna_localization.saturation`).
An object holding a plateau at the ceiling is read through the image's own single
molecules (:class:`_Singles`): its aperture and shell, laid over each of them, give what
a source of the image's PSF (widened by the object's fitted spread) puts in each of its
aperture voxels, per single molecule. That template, scaled to the object's voxels under
the ceiling, gives its brightness; the template's light at its clipped voxels less their
reading is its ``clipped_light``, added to its reading. Its mask
holds the plateau (``segment``), so its aperture is wider than a single molecule's and
reads more of a point source (of a real objective's rings, much more than a Gaussian model
says): its correction divides by how much more the template's whole aperture holds.
Neither step assumes a shape for the PSF. Where the template cannot be read (fewer than
:data:`WIDER_MIN_SINGLES` single molecules, a shell at the ceiling too) or puts less light
in the aperture than it reads, the Gaussian fitted to the voxels under the ceiling fills
the clipped ones. docs/quantification.md, "Clipped light", gives how close it comes.

Which voxels the fit sees
-------------------------
The object's aperture and shell exactly as
:func:`~rna_localization.apertures.aperture_intensities` draws them (every
voxel within ``grow_um + shell_um`` of an object goes to the nearest, ties to
the smallest label: the same nearest-object keys, formed in a box around the
object, :func:`rna_localization._fits.window_owner`), in a window around the
object: its neighbours' apertures, and whatever lies beyond its shell, weigh
nothing, so that a neighbour's light is not taken for the object's spread.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from ._cores import in_threads
from ._rows import row_medians
from .apertures import (
    APERTURE_GROW_UM,
    APERTURE_SHELL_UM,
    SHELL_PLANE_MIN_VOXELS,
    _aperture_metric,
    _at_most,
    _free_face_steps,
    _key_bits,
    _key_dtype,
    _stencil,
    aperture_intensities,
)
from .objects import normalize_spacing, object_index, object_voxels_and_intensities
from .saturation import MIN_CLIPPED_VOXELS, clipped_objects
from .stats import kruskal_wallis_p

__all__ = ["CAPTURE_MAX_EXTRA_SIGMA", "CAPTURE_MIN_SINGLES", "PSF_DEPTH_RATIO",
           "PSF_MIN_OBJECTS", "PSF_OUTLIER_RATIO", "capture_corrections", "corrected_apertures",
           "fit_source_width", "load_compiled", "measure_psf", "psf_depth_change",
           "psf_outliers"]

#: Objects at least this many times the image's typical single molecule (the median
#: ``spot_intensity`` of its objects) are fitted and corrected; the others keep 1. A
#: single molecule's correction would be 1 but for noise; a source worth correcting
#: holds several molecules.
CAPTURE_MIN_SINGLES = 1.5
#: Largest extra width credited to a source, in lateral PSF sigmas (its extra
#: standard deviation per axis). A simulated granule (molecules in a 0.25 µm ball,
#: 0.11 µm SD per axis) fits about one PSF sigma wider on the demo's grids; clumps of
#: single molecules as much or more. Measured offline on the demo's three seeds and both
#: microscopes (cen, 12 cells): 0.75 brought molecules summed within 5% in 11 cells (2
#: with no correction), every bias within 10%, and raised granule RNA near centrosomes by
#: 0.4-2.6 points; 1.0 pushed two widefield biases past +10% and that figure up by
#: 0.9-4.4 points (docs/quantification.md, "Aperture corrections for spread sources").
CAPTURE_MAX_EXTRA_SIGMA = 0.75
#: Fewest single-molecule fits the PSF is measured from; fewer, and no object of the
#: image is corrected (with a warning), unless a PSF is given.
PSF_MIN_OBJECTS = 10
#: Most objects fitted for the PSF (evenly spread over the image's single-molecule-like
#: objects).
PSF_MOST_OBJECTS = 100
#: An image whose measured PSF (axial or lateral sigma) is more than this many times the
#: median of its structure's images, or less than its inverse, is reported
#: (:func:`psf_outliers`). On the demo's images the measured sigmas lie within 6% of their
#: median; a stack out of focus, taken with another objective, or given the wrong voxel size
#: lies further.
PSF_OUTLIER_RATIO = 1.3
#: Fewest images with a measured PSF that :func:`psf_outliers` compares.
PSF_OUTLIER_MIN_IMAGES = 3
#: A PSF that changes with depth (:func:`psf_depth_change`): either sigma's median over
#: the single-molecule fits in the bottom third of the stack's planes more than this many
#: times the top third's (or less than its inverse), the thirds apart beyond chance (p
#: under :data:`PSF_DEPTH_P`). Measured (2026-12-06) with the workflow's masks: on 24 of the
#: demo's stacks (seeds 0-2, four cen stacks each, both microscopes) the ratios lie within
#: 0.90-1.07, on sim-fish's stacks through one PSF (every benchmark variant, Born-Wolf PSFs
#: through 0-0.5 waves included) within 0.94-1.07, none named; through spherical aberration
#: growing from 0.1 waves (first plane) to 0.4 (last, 8.7 µm deeper), 2.91 (axial, p 3e-17).
PSF_DEPTH_RATIO = 1.25
PSF_DEPTH_P = 1e-3
#: Fewest fits in each third for :func:`psf_depth_change` to judge.
PSF_DEPTH_MIN_FITS = 8
#: The PSF's starting guess, µm (axial, lateral): any value within a factor of two works.
PSF_START_UM = (0.3, 0.1)
#: Most evaluations of the model in one fit (Levenberg-Marquardt: most fits settle in
#: fewer than 20; a few crawl along a shallow valley for longer).
FIT_STEPS = 100
#: Bound on the fitted extra variance, µm² (the fit's own: 0.6 µm of extra sigma).
EXTRA_VARIANCE_BOUND = 0.36


class _Region:
    """An object's aperture and shell voxels in its window, grouped as the background reads them.

    As :func:`~rna_localization.apertures.aperture_intensities` (``"shell_plane"``):
    each aperture voxel's background is the median of the shell voxels in its
    plane, or of the whole shell where that plane holds fewer than
    :data:`~rna_localization.apertures.SHELL_PLANE_MIN_VOXELS`
    (:func:`rna_localization._fits.prepare_region`). The reading's default
    (``"shell_plane_map"``) also moves each median by the background's smooth slope
    from the ring to the aperture; a fit's window spans a micron at most, and its
    model reads the light less the same medians, so the fits leave that slope out.
    """

    def __init__(self, values, owner, label, fallback):
        from ._fits import prepare_region  # compiled on first use (numba)

        (self.grid, self.light, self.aperture, self.slot, self.cat, self.starts,
         self.sizes) = prepare_region(np.asarray(values, np.float64), owner.astype(np.int64),
                                      int(label), float(fallback), SHELL_PLANE_MIN_VOXELS)

    def start(self):
        """Starting amplitude and centre: the peak and light centroid of the aperture."""
        positive = np.where(self.aperture, np.clip(self.light, 0, None), 0.0)
        total = positive.sum()
        if total <= 0:
            return None
        return float(self.light[self.aperture].max()), (self.grid * positive[:, None]).sum(0) / total

    def captured(self, centre, widths_vox):
        """The aperture's background-subtracted reading of a unit Gaussian source."""
        from ._fits import captured

        return captured(self.grid, self.aperture, self.slot, self.cat, self.starts, self.sizes,
                        np.asarray(centre, np.float64), np.asarray(widths_vox, np.float64))


def _psf_bounds(start, spacing):
    """The (axial, lateral) sigmas a PSF fit from `start` (µm) may take: 0.3 voxel to 5x the start."""
    spacing = np.asarray(spacing, np.float64)
    return 0.3 * spacing[:2], 5 * np.asarray(start, np.float64)[:2] + spacing[:2]


def _fit(region, amplitude, centre, widths, spacing, mode, steps=FIT_STEPS):
    """Levenberg-Marquardt fit of a Gaussian to `region`'s light (compiled: rna_localization._fits).

    The model at a voxel is the Gaussian less its group's median (the shell's
    background read off the model, as off the image). mode "psf": free
    amplitude, centre and (axial, lateral) sigma in µm (`widths` the start).
    mode "extra": free amplitude, centre and extra variance u in µm², over the
    fixed sigmas `widths` (µm). A step is taken only if it lowers the sum of
    squared residuals; the fit stops when a step moves the centre by less than
    a hundredth of a voxel and the widths by less than a relative 1e-3, when no
    damping lowers the sum, or after `steps` evaluations of the model.
    Returns (amplitude, centre, width params).
    """
    from ._fits import fit_gaussian  # compiled on first use (numba)

    spacing = np.asarray(spacing, np.float64)
    psf = mode == "psf"
    widths = np.asarray(widths, np.float64)
    low, high = _psf_bounds(widths, spacing)
    if psf:  # (axial, lateral) as the sigmas along (z, y, x)
        widths = np.array([widths[0], widths[1], widths[1]])
    start = np.array([amplitude, *centre], np.float64)
    p = fit_gaussian(region.grid, region.light, region.slot, region.cat, region.starts,
                     region.sizes, start, widths, spacing, psf, int(steps), low, high,
                     EXTRA_VARIANCE_BOUND)
    return p[0], p[1:4], p[4:]


#: Most objects whose windows :meth:`_Windows.fit` gathers at once (about 2,000 voxels,
#: 16 KB, each on the demo's grids).
_FIT_PART = 1024


class _Windows:
    """Each object's neighbourhood: its raw light and which aperture or shell each voxel is in."""

    def __init__(self, objects, intensity_image, spacing, grow_um, shell_um):
        self.objects, self.image = objects, intensity_image
        self.shape = np.array(objects.shape, dtype=np.int64)
        metric = _aperture_metric(spacing, grow_um)
        outer = grow_um + shell_um
        # The window holds the object's shell; its margin, the objects that may own
        # the window's edge voxels; the keys' padding, every step of the stencil.
        self.reach = np.floor(_at_most(outer) / metric).astype(np.int64) + 1
        self.ids, index = object_index(objects.labels)
        self.labels = np.r_[0, self.ids].astype(np.int64)  # by index from 1; 0 for none
        coords = np.unravel_index(objects.voxels, objects.shape)
        n = self.ids.size
        self.low = np.stack([np.full(n, s, dtype=np.int64) for s in objects.shape], 1)
        self.high = np.zeros((n, 3), np.int64)
        for axis in range(3):
            np.minimum.at(self.low[:, axis], index, coords[axis])
            np.maximum.at(self.high[:, axis], index, coords[axis])
        # The nearest-object keys of aperture_intensities (same stencil, same ranks,
        # ties to the smallest label). The steps are ordered as flat steps of an array
        # wider than the stencil along every axis: lexicographic (z, y, x), their flat
        # order in any box they fit in.
        wide = 2 * int(self.reach.max()) + 1
        offsets, flat, rank, nearest = _stencil(metric, outer, (wide * wide, wide, 1))
        self.bits = _key_bits(n)
        self.dtype = _key_dtype(len(nearest), n)
        self.blank = np.iinfo(self.dtype).max
        self.aperture_keys = int(np.count_nonzero(nearest <= _at_most(grow_um))) << self.bits
        self.mask_starts, steps = _free_face_steps(offsets, flat)
        self.steps = offsets[steps].astype(np.int64)
        self.step_keys = (rank[steps] << self.bits).astype(self.dtype)
        self.index = (index + 1).astype(self.dtype)  # each object voxel's, from 1
        # What _fits.window_owner_at reads of the objects and the stencil.
        self.keying = (objects.voxels, self.index, self.labels, self.shape, self.low,
                       self.high, self.reach, self.mask_starts, self.steps, self.step_keys,
                       self.aperture_keys, self.bits, self.blank)

    def boxes(self, rows):
        """The fit windows of the objects at `rows`: ``(lo, hi)``, each (..., 3), the box of
        each object's voxels grown by the reach (its shell), cut to the stack."""
        return (np.maximum(self.low[rows] - self.reach, 0),
                np.minimum(self.high[rows] + 1 + self.reach, self.shape))

    def __call__(self, row):
        """(values, owner, label) of the object at `row` of ids.

        owner: a voxel's nearest object's label within `grow_um` (its aperture),
        minus that label within ``grow_um + shell_um`` (its shell), else 0; as
        :func:`~rna_localization.apertures.aperture_intensities` draws them.
        """
        from ._fits import window_owner_at  # compiled on first use (numba)

        lo_fit, hi_fit = self.boxes(row)
        owner = window_owner_at(row, lo_fit, hi_fit, *self.keying)
        box = tuple(slice(a, c) for a, c in zip(lo_fit, hi_fit))
        return np.asarray(self.image[box], dtype=np.float64), owner, int(self.ids[row])

    def fit(self, rows, fallbacks, mode, widths, spacing, *, cap=0.0, threads=1):
        """:func:`_fit` from :meth:`_Region.start` for the objects at `rows` (their
        shells' `fallbacks`), in compiled loops over the objects
        (:func:`rna_localization._fits.fit_windows`: the same windows, regions, starts and
        fits as one object at a time), shared among `threads` threads.

        Returns ``(params, left, point, spread)`` as ``fit_windows`` does; `widths` and
        `cap` as :func:`_fit` and :func:`capture_corrections` take them.
        """
        from ._fits import fit_windows  # compiled on first use (numba)

        rows = np.asarray(rows, np.int64)
        fallbacks = np.asarray(fallbacks, np.float64)
        spacing = np.asarray(spacing, np.float64)
        psf = mode == "psf"
        widths = np.asarray(widths, np.float64)
        low, high = _psf_bounds(widths, spacing)
        if psf:
            widths = np.array([widths[0], widths[1], widths[1]])
        fixed = (psf, widths, spacing, int(FIT_STEPS), low, high, EXTRA_VARIANCE_BOUND)
        lo, hi = self.boxes(rows)
        ids = self.ids.astype(np.int64)

        def fit_part(part):
            # Each object's window of light, gathered here (any dtype) into one float64
            # buffer: a few microseconds an object, and one compiled loop for every dtype.
            # Parts of at most _FIT_PART objects bound the buffer.
            ends = np.cumsum(np.prod(hi[part] - lo[part], axis=1))
            light = np.empty(int(ends[-1]) if ends.size else 0)
            for i, end in zip(part, ends):
                box = tuple(slice(a, b) for a, b in zip(lo[i], hi[i]))
                window = self.image[box]
                light[end - window.size:end] = window.ravel()
            return fit_windows(rows[part], fallbacks[part], *fixed, light,
                               np.r_[0, ends].astype(np.int64), lo[part], hi[part], ids,
                               SHELL_PLANE_MIN_VOXELS, float(cap), *self.keying)

        parts = np.array_split(np.arange(rows.size),
                               max(min(int(threads), rows.size), -(-rows.size // _FIT_PART), 1))
        found = in_threads(fit_part, parts, int(threads))
        return tuple(np.concatenate(column) for column in zip(*found))


def fit_source_width(values, owner, label, *, spacing, psf_um, background=0.0):
    """Fit one object's extra width over the PSF to the raw light of its aperture and shell.

    The model is the PSF widened by an extra variance ``u`` (the same in µm²
    along every axis), less the median of the model over the shell in each
    plane (the background the aperture's light is read against, which holds
    the source's own tail too), fitted to the raw light less the same medians.

    Parameters
    ----------
    values : (Z, Y, X) ndarray
        Raw intensities of a window around the object.
    owner : (Z, Y, X) ndarray of int
        ``label`` on the object's aperture voxels, ``-label`` on its shell
        voxels; anything else is left out (e.g. neighbours' apertures).
    label : int
        The object's label.
    spacing : (3,) sequence of float
        Voxel size (z, y, x), µm.
    psf_um : (float, float)
        The PSF's (axial, lateral) sigma, µm.
    background : float
        Background level when the object has no shell voxel.

    Returns
    -------
    (float, ndarray)
        The extra variance ``u`` (µm², >= 0) and the fitted centre (voxels of
        the window), or ``(nan, None)`` when the aperture holds no light.

    Examples
    --------
    >>> zz, yy, xx = np.indices((9, 21, 21))
    >>> spacing, psf = (0.3, 0.1, 0.1), (0.3, 0.1)
    >>> wide = np.hypot(psf, 0.1)  # u = 0.01 µm²
    >>> image = 100 + 1000 * np.exp(-0.5 * (((zz - 4) * 0.3 / wide[0]) ** 2
    ...                              + ((yy - 10) ** 2 + (xx - 10) ** 2) * 0.01 / wide[1] ** 2))
    >>> owner = np.zeros(image.shape, int); owner[1:8, 4:17, 4:17] = -1
    >>> owner[3:6, 7:14, 7:14] = 1
    >>> u, centre = fit_source_width(image, owner, 1, spacing=spacing, psf_um=psf)
    >>> round(u, 4), np.round(centre, 2).tolist()
    (0.01, [4.0, 10.0, 10.0])
    """
    region = _Region(values, owner, label, background)
    start = region.start()
    if start is None:
        return float("nan"), None
    psf = np.array([psf_um[0], psf_um[1], psf_um[1]], float)
    _, centre, (u,) = _fit(region, start[0], start[1], psf, normalize_spacing(spacing), "extra")
    return float(u), centre


def measure_psf(label_image, intensity_image, apertures: pd.DataFrame, *, spacing,
                grow_um: float = APERTURE_GROW_UM, shell_um: float = APERTURE_SHELL_UM):
    """The image's PSF, (axial, lateral) sigma in µm, from its single-molecule-like objects.

    A Gaussian with free centre and widths is fitted (as in
    :func:`fit_source_width`) to each of up to :data:`PSF_MOST_OBJECTS`
    objects, evenly spread, whose ``spot_intensity`` lies within 1/1.5-1.5
    times the median of the image's objects (a molecule's light where single
    molecules are most of the objects); the median of each width over the
    fits that did not run to their bounds. On the demo's widefield images
    (simulated PSF 0.33 and 0.115 µm, voxels 0.3 and 0.11 µm) it reads about
    0.34 and 0.12 µm: the PSF as the voxels sample it.

    Parameters
    ----------
    label_image : (Z, Y, X) ndarray of int, or ObjectVoxels
    intensity_image : (Z, Y, X) ndarray
    apertures : DataFrame
        :func:`~rna_localization.apertures.aperture_intensities` of the same
        objects (``object_id``, ``spot_intensity``, ``background``).
    spacing : float or (3,) sequence of float
        Voxel size (z, y, x), µm.
    grow_um, shell_um : float
        The apertures' reach beyond their objects and their shells' thickness, µm.

    Returns
    -------
    (tuple of float or None, int)
        The PSF's (axial, lateral) sigma in µm (None with fewer than
        :data:`PSF_MIN_OBJECTS` fits) and how many fits it came from.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> zz, yy, xx = np.indices((9, 120, 120))
    >>> raw = np.full(zz.shape, 100.0); labels = np.zeros(zz.shape, int)
    >>> for i, (y, x) in enumerate((y, x) for y in range(8, 120, 16) for x in range(8, 120, 16)):
    ...     raw += 60 * np.exp(-0.5 * (((zz - 4) * 0.3 / 0.3) ** 2
    ...                               + ((yy - y) ** 2 + (xx - x) ** 2) * 0.01 / 0.1 ** 2))
    ...     labels[3:6, y - 1:y + 2, x - 1:x + 2] = i + 1
    >>> raw = rng.poisson(raw).astype(float)
    >>> from rna_localization.apertures import aperture_intensities
    >>> table = aperture_intensities(labels, raw, spacing=(0.3, 0.1, 0.1))
    >>> psf, fits = measure_psf(labels, raw, table, spacing=(0.3, 0.1, 0.1))
    >>> np.round(psf, 2).tolist(), fits >= 40  # simulated: (0.3, 0.1)
    ([0.29, 0.1], True)
    """
    objects, intensity_image = object_voxels_and_intensities(label_image, intensity_image)
    scale = normalize_spacing(spacing)
    windows = _Windows(objects, intensity_image, scale, grow_um, shell_um)
    return _measure(windows, apertures, scale)[:2]


def _each(function, items, threads):
    """`function` over `items`, in order, on up to two of `threads` threads (the fits let go
    of the GIL)."""
    return in_threads(function, items, min(int(threads), 2))


def _typical_single(light: np.ndarray) -> float:
    """A molecule's light where single molecules are most of the objects: the median of
    the positive `light` (NaN when none is: no object then compares with it)."""
    positive = light[light > 0]
    return float(np.median(positive)) if positive.size else float("nan")


#: Most single-molecule-like objects a clipped object's aperture is laid over
#: (:class:`_Singles`), and the fewest it needs.
WIDER_MOST_SINGLES, WIDER_MIN_SINGLES = 60, 10


def _single_like(apertures, clipped, most):
    """Rows of up to `most` objects of 1/1.5-1.5 times the typical single molecule's light
    (evenly spread), none at the ceiling."""
    light = apertures["spot_intensity"].to_numpy(float)
    typical = _typical_single(light)
    like = (light >= typical / 1.5) & (light <= typical * 1.5)
    if clipped is not None:  # a flat top is no PSF
        like &= ~clipped
    like = np.flatnonzero(like)
    if like.size > most:
        like = like[np.linspace(0, like.size - 1, most).round().astype(int)]
    return like


def _box(reach):
    """Every whole-voxel offset within `reach` voxels of the origin along each axis, (n, 3),
    in C order."""
    return np.stack(np.meshgrid(*[np.arange(-r, r + 1) for r in reach], indexing="ij"),
                    axis=-1).reshape(-1, 3)


def _spread_offsets(variance):
    """Whole-voxel offsets and weights whose mixture has `variance` (voxels², per axis):
    a source spread by a Gaussian of that variance, as point sources at those offsets.

    Under one voxel² an axis takes three offsets (-1, 0, 1) weighted to that variance
    exactly; from one voxel², a Gaussian's weights out to three sigmas. Offsets of
    weight under 1e-3 are dropped and the rest renormalized.

    Examples
    --------
    >>> steps, weights = _spread_offsets([0.0, 0.5, 0.5])
    >>> len(steps), round(float(weights @ steps[:, 1] ** 2), 3)
    (9, 0.5)
    """
    axes = []
    for v in np.asarray(variance, dtype=np.float64):
        if v < 1:
            steps, weights = np.array([-1, 0, 1]), np.array([v / 2, 1 - v, v / 2])
        else:
            reach = int(np.ceil(3 * np.sqrt(v)))
            steps = np.arange(-reach, reach + 1)
            weights = np.exp(-0.5 * steps ** 2 / v)
        axes.append((steps, weights / weights.sum()))
    grid = np.stack(np.meshgrid(*[a[0] for a in axes], indexing="ij"), axis=-1).reshape(-1, 3)
    weights = np.einsum("i,j,k->ijk", *[a[1] for a in axes]).ravel()
    keep = weights >= 1e-3
    return grid[keep], weights[keep] / weights[keep].sum()


class _Singles:
    """How a clipped object's aperture reads a source of the image's own PSF: its aperture
    and shell, laid over the image's single molecules.

    A clipped object's mask holds its plateau, so its aperture is wider than a single
    molecule's and holds more of a point source's light (of a real objective's rings and
    out-of-focus light, much more than a Gaussian's); and the light above the ceiling is
    lost. The aperture is laid over each of up to :data:`WIDER_MOST_SINGLES`
    single-molecule-like objects (the plateau on their brightest voxel, :meth:`_centre`)
    and read as the object's own is: each plane less the median of the shell's voxels in
    it, the other objects' voxels left out (a molecule whose laid aperture covers one is
    not used). A source wider than a point (the object's fitted extra variance) is read
    as the molecule laid at whole-voxel offsets around the centre, weighted to that
    variance (:func:`_spread_offsets`). Each voxel's light over the molecule's own
    aperture's reading, the median over the molecules is the template; the median of
    their sums, the ratio of the whole aperture (:meth:`read`).
    """

    def __init__(self, objects, intensity_image, apertures, clipped):
        self.image, self.shape = np.ravel(intensity_image), np.array(objects.shape)
        self.voxels, self.labels = objects.voxels, objects.labels
        rows = _single_like(apertures, clipped, WIDER_MOST_SINGLES)
        self.ids = apertures["object_id"].to_numpy()[rows]
        # Each molecule's brightest voxel (of its own voxels only, not the image's every
        # object's): the last of its voxels sorted by value.
        mine = np.isin(objects.labels, self.ids)
        voxels, labels = objects.voxels[mine], objects.labels[mine].astype(np.int64)
        order = np.lexsort((np.ravel(intensity_image)[voxels], labels))
        last = np.ones(labels.size, dtype=bool)
        last[:-1] = labels[order][1:] != labels[order][:-1]
        brightest = dict(zip(labels[order][last].tolist(), voxels[order][last].tolist()))
        at = np.array([brightest[i] for i in self.ids.tolist()], dtype=np.int64)
        self.centres = np.stack(np.unravel_index(at, objects.shape), axis=1)
        self.light = apertures["spot_intensity"].to_numpy(float)[rows]

    def _laid(self, offsets):
        """Values at `offsets` laid at each molecule's centre (molecules × offsets; NaN
        outside the stack or on another object's voxel)."""
        inside = np.ones((self.ids.size, offsets.shape[0]), dtype=bool)
        flat = np.zeros(inside.shape, dtype=np.int64)
        for axis in range(3):
            at = self.centres[:, axis][:, None] + offsets[None, :, axis]
            inside &= (at >= 0) & (at < self.shape[axis])
            flat = flat * self.shape[axis] + at
        flat[~inside] = 0
        # Another object's voxel (the object voxels are sorted by flat index).
        where = np.minimum(np.searchsorted(self.voxels, flat), self.voxels.size - 1)
        other = (self.voxels[where] == flat) & (self.labels[where] != self.ids[:, None])
        values = self.image[flat].astype(np.float64)
        values[~inside | other] = np.nan
        return values

    def _laid_shifted(self, offsets, shifts):
        """:meth:`_laid` at `offsets` moved by each of `shifts`, in one gather: the values
        at the distinct voxels (molecules × voxels) and, per shift, the columns of its
        offsets (shifts × offsets)."""
        low = offsets.min(axis=0) + shifts.min(axis=0)
        span = tuple(offsets.max(axis=0) + shifts.max(axis=0) - low + 1)
        keys, where = np.unique(np.ravel_multi_index(
            tuple((shifts[:, None] + offsets[None] - low).reshape(-1, 3).T), span),
            return_inverse=True)
        values = self._laid(np.stack(np.unravel_index(keys, span), axis=1) + low)
        return values, where.reshape(shifts.shape[0], offsets.shape[0])

    def _centre(self, plateau):
        """Where the plateau's voxels lie on a molecule's brightest voxel: of the whole
        voxels around their mean, the one that lays them over the most of the molecules'
        light (median over the molecules). A plateau is the light's level set above the
        ceiling, and of all sets of its size, a level set holds the most of its source's
        light; so this lays it as it lay on its own source, were that a point."""
        mean = np.rint(plateau.mean(axis=0)).astype(np.int64)
        around = mean + _box((1, 1, 1))
        values, where = self._laid_shifted(plateau - mean, mean - around)
        held = [np.nanmedian(values[:, at].sum(axis=1) / self.light) for at in where]
        held = np.where(np.isnan(held), -np.inf, held)
        return around[int(np.argmax(held))]

    def read(self, owner, label, top, most):
        """A function of a variance (voxels², per axis, up to `most`; a source spread by
        it) giving ``(whole, template)``: the ratio of the aperture (``owner == label``,
        shell ``owner == -label``, clipped voxels `top`, all of one window) and that
        source's light at each aperture voxel (scan order) over a single molecule's own
        reading (per voxel, the median over the molecules), or None where they cannot be
        read. The molecules' voxels are gathered once, for every spread up to `most`."""
        aperture = owner == label
        if not (top & aperture).any() or not (owner == -label).any():
            return None
        centre = self._centre(np.argwhere(top & aperture))
        inner = np.argwhere(aperture) - centre
        outer = np.argwhere(owner == -label) - centre
        planes, counts = np.unique(outer[:, 0], return_counts=True)
        planes = planes[counts >= SHELL_PLANE_MIN_VOXELS]
        # Each aperture plane's background: the median of the shell's voxels in that plane,
        # or of the whole shell where the plane holds too few (as it is read); the same for
        # the molecule laid a voxel or two aside.
        shell = self._laid(outer)
        overall = row_medians(shell)
        level = np.repeat(overall[:, None], inner.shape[0], axis=1)
        for plane in planes:
            median = row_medians(shell[:, outer[:, 0] == plane])
            level[:, inner[:, 0] == plane] = np.where(np.isnan(median), overall,
                                                      median)[:, None]
        reach = np.array([1 if v < 1 else int(np.ceil(3 * np.sqrt(v))) for v in most])
        values, where = self._laid_shifted(inner, _box(reach))

        def spread(variance):
            shifts, weights = _spread_offsets(variance)
            at = where[np.ravel_multi_index(tuple((shifts + reach).T), tuple(2 * reach + 1))]
            light = np.zeros((self.ids.size, inner.shape[0]))
            for columns, weight in zip(at, weights):
                light += weight * values[:, columns]
            light = (light - level) / self.light[:, None]  # NaN: another object's voxel
            whole = light.sum(axis=1)
            usable = np.isfinite(whole) & (self.light > 0)
            if usable.sum() < WIDER_MIN_SINGLES:
                return None
            return float(np.median(whole[usable])), np.median(light[usable], axis=0)

        return spread


def _measure(windows, apertures, scale, threads=1, clipped=None):
    """The PSF's median (axial, lateral) sigma, the number of fits and
    :func:`psf_depth_change` of the fits (None for both where the PSF is not measured)."""
    like = _single_like(apertures, clipped, PSF_MOST_OBJECTS)
    rows = np.searchsorted(windows.ids, apertures["object_id"].to_numpy()[like])
    background = apertures["background"].to_numpy(float)[like]
    start = np.array(PSF_START_UM)
    high = _psf_bounds(start, scale)[1]

    params = windows.fit(rows, background, "psf", start, scale, threads=threads)[0]
    widths = params[:, 4:6]
    # Fitted and not at the bound; each fit's depth is its object's middle plane.
    kept = np.isfinite(params[:, 0]) & (widths < high * (1 - 1e-6)).all(axis=1)
    middle = 0.5 * (windows.low[rows, 0] + windows.high[rows, 0])
    fits = np.column_stack([middle, widths])[kept].astype(np.float64).reshape(-1, 3)
    if len(fits) < PSF_MIN_OBJECTS:
        return None, len(fits), None
    psf = (float(np.median(fits[:, 1])), float(np.median(fits[:, 2])))
    return psf, len(fits), psf_depth_change(fits[:, 0], fits[:, 1], fits[:, 2],
                                            int(windows.shape[0]))


def psf_depth_change(planes, axial_um, lateral_um, n_planes: int) -> dict | None:
    """How single molecules' fitted PSF changes from the top third of a stack to the bottom.

    An oil objective focused into a watery sample aberrates more with every micron, so one
    stack sees several PSFs; the aperture corrections and the single-molecule reference
    assume one (docs/quantification.md, "Aberration that grows with depth"). The fits
    :func:`measure_psf` makes are split by their object's plane into thirds of the
    stack's planes; the PSF *changes with depth* when either sigma's median in the
    bottom third is more than :data:`PSF_DEPTH_RATIO` times the top third's (or less
    than its inverse) and the three thirds' sigmas differ beyond chance (Kruskal-Wallis,
    p below :data:`PSF_DEPTH_P`).

    Parameters
    ----------
    planes : (n,) array_like of float
        Each fit's plane (0 = the stack's first).
    axial_um, lateral_um : (n,) array_like of float
        Each fit's sigmas, µm.
    n_planes : int
        The stack's planes.

    Returns
    -------
    dict or None
        ``fits`` (per third, top first), ``top`` and ``bottom`` (the thirds' median
        (axial, lateral) sigmas, µm), ``ratio`` (bottom / top, per sigma), ``p`` (per
        sigma) and ``changes`` (bool); None when a third holds fewer than
        :data:`PSF_DEPTH_MIN_FITS` fits.

    Examples
    --------
    >>> planes = np.repeat([2.0, 15.0, 27.0], 20)
    >>> axial = np.repeat([0.3, 0.4, 0.6], 20) + np.tile(np.linspace(-0.02, 0.02, 20), 3)
    >>> change = psf_depth_change(planes, axial, np.full(60, 0.1), 30)
    >>> np.round(change["ratio"], 2).tolist(), bool(change["changes"])
    ([2.0, 1.0], True)
    """
    planes = np.asarray(planes, np.float64)
    widths = np.stack([np.asarray(axial_um, np.float64), np.asarray(lateral_um, np.float64)], 1)
    third = np.clip(np.floor(planes * 3 / int(n_planes)).astype(int), 0, 2)
    fits = np.bincount(third, minlength=3)
    if fits.min() < PSF_DEPTH_MIN_FITS:
        return None
    medians = np.array([np.median(widths[third == k], axis=0) for k in range(3)])
    ratio = medians[2] / medians[0]
    p = np.ones(2)
    for axis in range(2):
        groups = [widths[third == k, axis] for k in range(3)]
        if np.ptp(widths[:, axis]) > 0:  # Kruskal-Wallis needs values that differ
            p[axis] = kruskal_wallis_p(groups)
    apart = (ratio > PSF_DEPTH_RATIO) | (ratio < 1 / PSF_DEPTH_RATIO)
    return {"fits": fits.tolist(), "top": tuple(medians[0].tolist()),
            "bottom": tuple(medians[2].tolist()), "ratio": tuple(ratio.tolist()),
            "p": tuple(p.tolist()), "changes": bool((apart & (p < PSF_DEPTH_P)).any())}


def psf_outliers(images: pd.DataFrame, *, ratio: float = PSF_OUTLIER_RATIO) -> pd.DataFrame:
    """The images whose measured PSF stands apart from the other images' of their structure.

    Each structure's median axial and lateral sigma is taken over its images with a
    measured PSF (at least :data:`PSF_OUTLIER_MIN_IMAGES` of them; fewer, and none of
    its images is reported). An image is reported when either of its sigmas is more
    than `ratio` times that median, or less than its inverse: its aperture
    corrections assume that PSF, and the optics of one data set differ little from
    image to image, so the stack may be out of focus, from another objective, or
    read at the wrong voxel size.

    Parameters
    ----------
    images : DataFrame
        ``structure``, ``name``, ``psf_axial_um``, ``psf_lateral_um`` (NaN where
        none was measured), as :func:`rna_localization.db.tables.extracted_images`
        gives them.
    ratio : float
        Largest ratio to the median allowed (> 1).

    Returns
    -------
    DataFrame
        ``structure``, ``name``, ``psf_axial_um``, ``psf_lateral_um`` and each
        sigma's ratio to its structure's median (``axial_ratio``,
        ``lateral_ratio``), one row per image reported, by structure and name.

    Examples
    --------
    >>> images = pd.DataFrame({"structure": "rna", "name": ["a", "b", "c", "d"],
    ...                        "psf_axial_um": [0.33, 0.32, 0.34, 0.33],
    ...                        "psf_lateral_um": [0.115, 0.118, 0.112, 0.19]})
    >>> psf_outliers(images)[["name", "lateral_ratio"]].round(2).to_dict("records")
    [{'name': 'd', 'lateral_ratio': 1.63}]
    """
    if not float(ratio) > 1:
        msg = f"ratio must be a number > 1; got {ratio!r}."
        raise ValueError(msg)
    columns = ["structure", "name", "psf_axial_um", "psf_lateral_um", "axial_ratio",
               "lateral_ratio"]
    table = images[["structure", "name", "psf_axial_um", "psf_lateral_um"]].astype(
        {"psf_axial_um": float, "psf_lateral_um": float})
    table = table.dropna(subset=["psf_axial_um", "psf_lateral_um"])
    rows = []
    for _, group in table.groupby("structure", sort=True):
        if len(group) < PSF_OUTLIER_MIN_IMAGES:
            continue
        group = group.assign(
            axial_ratio=group["psf_axial_um"] / group["psf_axial_um"].median(),
            lateral_ratio=group["psf_lateral_um"] / group["psf_lateral_um"].median())
        both = group[["axial_ratio", "lateral_ratio"]].to_numpy()
        rows.append(group[((both > ratio) | (both < 1 / ratio)).any(axis=1)])
    if not rows:
        return pd.DataFrame(columns=columns)
    return pd.concat(rows)[columns].sort_values(["structure", "name"], ignore_index=True)


def _clipped_objects(objects, intensity_image, ids, ceiling) -> np.ndarray:
    """Whether each object of `ids` holds at least
    :data:`~rna_localization.saturation.MIN_CLIPPED_VOXELS` voxels at `ceiling`."""
    if ceiling is None:
        return np.zeros(len(ids), dtype=bool)
    present, index = object_index(objects.labels)
    top = np.ravel(intensity_image)[objects.voxels] >= ceiling
    counts = np.bincount(index[top], minlength=present.size)
    place = np.clip(np.searchsorted(present, ids), 0, max(present.size - 1, 0))
    return (present[place] == ids) & (counts[place] >= MIN_CLIPPED_VOXELS)


def _lost_light(region, top, amplitude, centre, widths_vox) -> float:
    """What the clipped voxels (`top`, of the window) of `region`'s aperture would read of
    the fitted Gaussian (peak `amplitude`, at `centre`, sigmas `widths_vox`) beyond what they
    read of the ceiling: both less their group's median, as the light is read (the shell's
    median of the model, as of the image)."""
    g = amplitude * np.exp(-0.5 * (((region.grid - centre) / widths_vox) ** 2).sum(axis=1))
    level = np.zeros(region.starts.size + 1)  # the last: no group
    for k, (first, size) in enumerate(zip(region.starts, region.sizes)):
        level[k] = np.median(g[region.cat[first:first + size]])
    model = g - level[region.slot]
    clipped = region.aperture & top[tuple(region.grid.astype(np.intp).T)]
    return float(np.clip(model[clipped] - region.light[clipped], 0, None).sum())


#: A clipped object's extra sigma is tried at these fractions of the cap
#: (`max_extra_sigma`), the template of each against its voxels under the ceiling, and
#: refined at the vertex of the parabola through the best and its two neighbours.
SPREAD_STEPS = tuple(np.linspace(0.0, 1.0, 9))


def _best_spread(read, region, top, most_sigma, weights):
    """(whole, light above the ceiling) of the spread whose template fits the voxels under
    the ceiling best (:data:`SPREAD_STEPS` of `most_sigma`, voxels per axis), or None."""
    def at(fraction):
        got = read((fraction * most_sigma) ** 2)
        return None if got is None else (got[0],
                                         *_template_light(region, top, got[1], weights))

    fractions = SPREAD_STEPS if np.any(most_sigma > 0) else (0.0,)  # no cap: a point
    tried = [at(f) for f in fractions]
    misfits = np.array([np.nan if t is None else t[2] for t in tried])
    if np.isnan(misfits).all():
        return None
    k = int(np.nanargmin(misfits))
    best = tried[k]
    if 0 < k < len(fractions) - 1 and np.isfinite(misfits[k - 1:k + 2]).all():
        left, middle, right = misfits[k - 1:k + 2]
        curve = left - 2 * middle + right
        if curve > 0:
            step = SPREAD_STEPS[1] - SPREAD_STEPS[0]
            refined = at(SPREAD_STEPS[k] + 0.5 * step * (left - right) / curve)
            if refined is not None and refined[2] <= best[2]:
                best = refined
    return best[0], best[1]


def _template_light(region, top, template, weights) -> tuple[float, float]:
    """(light, misfit): the light above the ceiling at the clipped voxels (`top`, of the
    window) of `region`'s aperture, from the `template` (its aperture voxels' light per
    single molecule, scan order) scaled to the voxels under the ceiling, less what the
    clipped ones read; and the scaled template's sum of squared residuals there (NaN, NaN
    where the template holds nothing there).

    The scale is the ratio of `weights`-weighted sums (the object's fitted Gaussian at
    those voxels: its bright flanks count most, where its own light outweighs its
    neighbours'), not a least-squares fit: the template is a median over noisy molecules,
    and least squares would read its noise as a smaller source."""
    read = region.light[region.aperture]
    under = ~top[tuple(region.grid[region.aperture].astype(np.intp).T)]
    norm = float(weights[under] @ template[under])
    if not norm > 0:
        return float("nan"), float("nan")
    amplitude = float(weights[under] @ read[under]) / norm
    misfit = float(((read[under] - amplitude * template[under]) ** 2).sum())
    return amplitude * float(template[~under].sum()) - float(read[~under].sum()), misfit


def capture_corrections(label_image, intensity_image, apertures: pd.DataFrame, *, spacing,
                        psf_um=None, grow_um: float = APERTURE_GROW_UM,
                        shell_um: float = APERTURE_SHELL_UM,
                        min_singles: float = CAPTURE_MIN_SINGLES,
                        max_extra_sigma: float = CAPTURE_MAX_EXTRA_SIGMA,
                        ceiling: float | None = None,
                        threads: int = 1) -> pd.DataFrame:
    """Each object's aperture correction: the light its aperture misses of a wider source.

    Objects of at least `min_singles` times the image's typical single molecule
    (the median ``spot_intensity`` of its objects) are fitted as the PSF
    widened by an extra variance (:func:`fit_source_width`), capped at
    `max_extra_sigma` lateral PSF sigmas. Their correction is what their
    aperture reads of a point source over what it reads of the fitted source
    (each a unit Gaussian at the fitted centre, summed over the aperture less
    the shell's medians, as the light is read). The others, and every object
    when the PSF cannot be measured, keep 1. Multiply ``spot_intensity`` by it.

    With a camera `ceiling`, the objects holding at least
    :data:`~rna_localization.saturation.MIN_CLIPPED_VOXELS` voxels at it (a
    plateau of clipped light) are fitted whatever their brightness, on their
    aperture and shell voxels under the ceiling only, for their spread. Their
    aperture and shell, laid over the image's single molecules, give a template
    of that spread source's light at each aperture voxel (:class:`_Singles`;
    the spread tried from none to the cap, :data:`SPREAD_STEPS`); scaled to their
    voxels under the ceiling, its light above their reading at the clipped
    voxels is their ``clipped_light``: add it to
    ``spot_intensity`` before multiplying. Their correction is one over how much
    more the template's whole aperture reads than a single molecule's own (a
    plateau widens the mask it is grown from; never above 1). Where no template
    can be read, or it puts less light in the aperture than the aperture reads,
    the fitted Gaussian's light above the ceiling at the clipped voxels (read as
    the light is: less the shell's medians of the model and of the image) is
    used, with the Gaussian's correction over the template's ratio where known.

    Parameters
    ----------
    label_image : (Z, Y, X) ndarray of int, or ObjectVoxels
        Objects as positive labels, 0 as background.
    intensity_image : (Z, Y, X) ndarray
        Raw intensities, same shape.
    apertures : DataFrame
        :func:`~rna_localization.apertures.aperture_intensities` of the same
        objects, `grow_um` and `shell_um`.
    spacing : float or (3,) sequence of float
        Voxel size (z, y, x), µm.
    psf_um : (float, float), optional
        The PSF's (axial, lateral) sigma, µm; by default measured from the
        image's single molecules (:func:`measure_psf`).
    grow_um, shell_um : float
        The apertures' reach beyond their objects and their shells' thickness, µm.
    min_singles : float
        Objects dimmer than this many typical single molecules keep 1.
    max_extra_sigma : float
        Cap on a source's extra width, in lateral PSF sigmas (>= 0; 0 turns the
        correction off, but not the clipped light's estimate).
    ceiling : float, optional
        The camera's ceiling (:func:`~rna_localization.saturation.camera_ceiling`),
        when its light was clipped; None: nothing is.
    threads : int
        With 2 or more, the objects are fitted on two threads (the answer is
        the same).

    Returns
    -------
    DataFrame
        ``object_id``, ``capture_correction`` (>= 1 but where clipped),
        ``source_width_um``
        (the fitted extra sigma, µm, before the cap; NaN where not fitted) and
        ``clipped_light`` (the light the ceiling took, >= 0, in the image's
        units), one row per row of `apertures`, in its order. ``attrs["psf_um"]`` holds the
        PSF used (None if none), ``attrs["psf_objects"]`` how many fits
        measured it (0 when it was given) and ``attrs["psf_depth"]`` how the fits
        change from the stack's top third to its bottom (:func:`psf_depth_change`;
        None when the PSF was given or a third held too few fits).

    Examples
    --------
    >>> zz, yy, xx = np.indices((11, 41, 41))
    >>> spacing, psf = (0.3, 0.1, 0.1), (0.3, 0.1)
    >>> def spot(z, y, x, extra):
    ...     w = np.hypot(psf, extra)
    ...     return np.exp(-0.5 * (((zz - z) * 0.3 / w[0]) ** 2
    ...                           + ((yy - y) ** 2 + (xx - x) ** 2) * 0.01 / w[1] ** 2))
    >>> raw = 100 + 1000 * spot(5, 10, 10, 0.0) + 4000 * spot(5, 30, 30, 0.1)
    >>> labels = np.zeros(raw.shape, int)
    >>> labels[5, 9:12, 9:12] = 1; labels[5, 29:32, 29:32] = 2
    >>> from rna_localization.apertures import aperture_intensities
    >>> table = aperture_intensities(labels, raw, spacing=spacing)
    >>> table = table.assign(spot_intensity=[1000.0, 4000.0])  # one and four molecules
    >>> out = capture_corrections(labels, raw, table, spacing=spacing, psf_um=psf)
    >>> out["capture_correction"].round(2).tolist(), float(out["source_width_um"][1].round(3))
    ([1.0, 1.14], 0.1)
    >>> uncapped = capture_corrections(labels, raw, table, spacing=spacing, psf_um=psf,
    ...                                max_extra_sigma=2)  # 0.1 µm is more than 0.75 sigmas
    >>> round(float(uncapped["capture_correction"][1]), 2)
    1.26
    """
    if not 0 <= float(max_extra_sigma) < np.inf:
        msg = f"max_extra_sigma must be a number >= 0; got {max_extra_sigma!r}."
        raise ValueError(msg)
    objects, intensity_image = object_voxels_and_intensities(label_image, intensity_image)
    scale = normalize_spacing(spacing)
    n = len(apertures)
    correction = np.ones(n)
    width = np.full(n, np.nan)
    clipped = np.zeros(n)
    out = pd.DataFrame({"object_id": apertures["object_id"].to_numpy(np.int64),
                        "capture_correction": correction, "source_width_um": width,
                        "clipped_light": clipped})
    out.attrs.update(psf_um=None, psf_objects=0, psf_depth=None)
    if n == 0 or objects.voxels.size == 0:
        return out
    windows = _Windows(objects, intensity_image, scale, grow_um, shell_um)
    at_ceiling = _clipped_objects(objects, intensity_image, out["object_id"].to_numpy(), ceiling)
    if psf_um is not None:
        psf = (float(psf_um[0]), float(psf_um[1]))
    else:
        psf, count, change = _measure(windows, apertures, scale, threads, at_ceiling)
        out.attrs["psf_objects"] = count
        out.attrs["psf_depth"] = change
        if psf is None:
            warnings.warn(
                f"The PSF could not be measured: {count} single-molecule fits (at least "
                f"{PSF_MIN_OBJECTS} needed); no aperture correction applied to this image.",
                RuntimeWarning, stacklevel=2)
            return out
    out.attrs["psf_um"] = psf
    light = apertures["spot_intensity"].to_numpy(float)
    least = float(min_singles) * _typical_single(light)
    bright = light >= least
    if max_extra_sigma == 0:
        bright[:] = False
    chosen = np.flatnonzero(bright | at_ceiling)
    if chosen.size == 0:
        return out
    rows = np.searchsorted(windows.ids, out["object_id"].to_numpy()[chosen])
    sigma = np.array([psf[0], psf[1], psf[1]])
    cap = (float(max_extra_sigma) * psf[1]) ** 2
    background = apertures["background"].to_numpy(float)
    # A clipped object's mask holds its plateau, and its aperture is wider than a single
    # molecule's: it reads more of a point source, by as much as it reads more of the
    # image's own single molecules (_Singles).
    singles = (_Singles(objects, intensity_image, apertures, at_ceiling)
               if at_ceiling.any() else None)

    def fit_clipped(item):
        # An object at the ceiling, fitted on its voxels under the ceiling only; the
        # clipped ones filled from the fit (the objects under it: windows.fit, below).
        place, row = item
        values, owner, label = windows(row)
        region = _Region(values, owner, label, background[place])
        top = (values >= ceiling) & (owner == label)
        fitted = _Region(values, np.where(top, 0, owner), label, background[place])
        start = fitted.start()
        if start is None:
            return place, np.nan, 1.0, 0.0
        amplitude, centre, (u,) = _fit(fitted, start[0], start[1], sigma, scale, "extra")
        # The image's own single molecules read through the object's aperture give the
        # template; where it cannot be read, where the shell is clipped too (a haze at the
        # ceiling: the plateau is no source's), or where it puts less light in the aperture
        # than the aperture reads (a plateau of neighbours read as one source), the fitted
        # Gaussian fills the clipped voxels.
        read = (singles.read(owner, label, top, cap / scale ** 2)
                if not (values[owner == -label] >= ceiling).any() else None)
        widths = np.sqrt(sigma ** 2 + u) / scale
        weights = np.exp(-0.5 * (((region.grid[region.aperture] - centre) / widths) ** 2
                                 ).sum(axis=1))
        found = (_best_spread(read, region, top, np.sqrt(cap) / scale, weights)
                 if read else None)
        whole = np.nan
        if found is not None:
            whole, above = found
            if above > 0:  # an aperture cut by its neighbours' is not corrected up
                return place, np.sqrt(u), 1 / max(whole, 1.0), above
        lost = _lost_light(region, top, amplitude, centre, np.sqrt(sigma ** 2 + u) / scale)
        point = region.captured(centre, sigma / scale)
        spread = region.captured(centre, np.sqrt(sigma ** 2 + min(u, cap)) / scale)
        if spread <= 0:
            return place, np.sqrt(u), 1.0, lost
        factor = max(point / spread, 1.0)
        if whole > 1:
            factor /= whole
        return place, np.sqrt(u), factor, lost

    # The objects under the ceiling, in compiled loops over them (the one-object functions'
    # fits and readings, to the bit). A fit that followed other light out of the object's
    # aperture (a neighbour, the haze) has no width of the object's, and a source centred
    # there is hardly in the aperture at all (a point over a spread source read 565 once):
    # no correction.
    plain = ~at_ceiling[chosen]
    params, left, point, spread = windows.fit(rows[plain], background[chosen[plain]], "extra",
                                              sigma, scale, cap=cap, threads=threads)
    fitted = np.isfinite(params[:, 0]) & ~left
    u = params[:, 4]
    places = chosen[plain]
    width[places[fitted]] = np.sqrt(u[fitted])
    read = fitted & (spread > 0)
    correction[places[read]] = np.maximum(point[read] / spread[read], 1.0)
    for place, found, factor, lost in _each(fit_clipped, zip(chosen[~plain], rows[~plain]),
                                            threads):
        width[place] = found
        correction[place] = factor
        clipped[place] = lost
    out["capture_correction"] = correction
    out["source_width_um"] = width
    out["clipped_light"] = clipped
    return out


def corrected_apertures(label_image, intensity_image, *, spacing, threads: int = 1,
                        psf_um=None, ceiling="auto") -> pd.DataFrame:
    """Matched-aperture intensities with each bright object's aperture correction applied.

    :func:`~rna_localization.apertures.aperture_intensities` (default aperture
    and background), then :func:`capture_corrections`: ``spot_intensity`` is
    multiplied by ``capture_correction``, which is added as a column. When the
    objects' brightest voxels sit at a camera's ceiling in a plateau
    (:func:`~rna_localization.saturation.clipped_objects`), the light the
    ceiling took from each such object (``clipped_light``, 0 elsewhere) is
    added first. What extraction stores, and what molecule counts divide by
    the reference.

    Parameters
    ----------
    label_image : (Z, Y, X) ndarray of int, or ObjectVoxels
    intensity_image : (Z, Y, X) ndarray
    spacing : float or (3,) sequence of float
        Voxel size (z, y, x), µm.
    threads : int
        Passed to :func:`~rna_localization.apertures.aperture_intensities` and
        :func:`capture_corrections`.
    psf_um : (float, float), optional
        The PSF's (axial, lateral) sigma, µm; measured from the image by default.
    ceiling : "auto", float or None
        The camera's ceiling where the objects' light was clipped (None: it was
        not); "auto" finds it from the objects' voxels
        (:func:`~rna_localization.saturation.clipped_objects`).

    Returns
    -------
    DataFrame
        The columns of :data:`~rna_localization.apertures.APERTURE_COLUMNS`,
        ``capture_correction`` and ``clipped_light``; ``attrs["psf_um"]``,
        ``attrs["psf_objects"]`` and ``attrs["psf_depth"]`` as :func:`capture_corrections`
        sets them.

    Examples
    --------
    >>> labels = np.zeros((5, 15, 15), int); labels[2, 7, 7] = 1
    >>> raw = np.full(labels.shape, 100.0); raw[2, 7, 7] = 600.0
    >>> table = corrected_apertures(labels, raw, spacing=(0.3, 0.1, 0.1), psf_um=(0.3, 0.1))
    >>> table[["spot_intensity", "capture_correction", "clipped_light"]].to_numpy().tolist()
    [[500.0, 1.0, 0.0]]

    A source of 10,000 counts at its peak through a 12-bit camera: its light
    above 4,095 is estimated from the voxels under it.

    >>> zz, yy, xx = np.indices((11, 31, 31))
    >>> light = 100 + 10000 * np.exp(-0.5 * (((zz - 5) * 0.3 / 0.3) ** 2
    ...                                      + ((yy - 15) ** 2 + (xx - 15) ** 2) * 0.01 / 0.1 ** 2))
    >>> labels = np.zeros(light.shape, int); labels[4:7, 13:18, 13:18] = 1
    >>> whole = corrected_apertures(labels, light, spacing=(0.3, 0.1, 0.1), psf_um=(0.3, 0.1))
    >>> clipped = corrected_apertures(labels, np.minimum(light, 4095), spacing=(0.3, 0.1, 0.1),
    ...                               psf_um=(0.3, 0.1))
    >>> ratio = clipped["spot_intensity"] / whole["spot_intensity"]
    >>> round(float(ratio[0]), 3), bool(clipped["clipped_light"][0] > 0.1 * whole["spot_intensity"][0])
    (1.0, True)
    """
    objects, intensity_image = object_voxels_and_intensities(label_image, intensity_image)
    table = aperture_intensities(objects, intensity_image, spacing=spacing, threads=threads)
    if isinstance(ceiling, str):
        values = np.ravel(intensity_image)[objects.voxels]
        ceiling, _ = clipped_objects([values.max()] if values.size else [], values)
    corrected = capture_corrections(objects, intensity_image, table, spacing=spacing,
                                    psf_um=psf_um, ceiling=ceiling, threads=threads)
    table["capture_correction"] = corrected["capture_correction"].to_numpy()
    table["clipped_light"] = corrected["clipped_light"].to_numpy()
    table["spot_intensity"] = ((table["spot_intensity"] + table["clipped_light"])
                               * table["capture_correction"])
    table.attrs.update(corrected.attrs)
    return table


def load_compiled() -> None:
    """Load the compiled fits (numba's on-disk cache, compiled the first time) in this process.

    Each of them costs its loading on its first call in a process: the
    extraction step calls this before timing its first images, so that their
    pace, by which ``workers = 0`` judges the rest, is not theirs.

    Examples
    --------
    >>> load_compiled()
    """
    labels = np.zeros((3, 7, 7), np.int64)
    labels[1, 3, 3] = 1
    values = np.zeros(labels.shape)
    values[1, 3, 3] = 1.0
    table = pd.DataFrame({"object_id": [1], "spot_intensity": [1.0], "background": [0.0]})
    # One object through the windows, the region, the fit and the reading.
    capture_corrections(labels, values, table, spacing=1.0, psf_um=(1.0, 1.0), min_singles=0)
