"""Is a segmentation plausible? Cheap checks that catch a wrong run before the analysis.

A segmentation is flagged when it has no object at all, implausibly many
objects for the stack's volume (noise picked up), or one object that fills a
large part of the stack (background or a merged mass); and, given the raw
stack, when the camera clipped its objects' light (:func:`check_clipped`); and,
from the spots a workflow found, when many single molecules are too faint to be
found at all (:func:`missed_faint_fraction`).
Each problem is a sentence that names the image and says what to do. Pure array code: nothing
here reads files; :func:`.batch.segment_folder` and ``rna-localization
doctor`` call it.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy import optimize, special

from ..objects import label_objects, normalize_spacing
from ..saturation import CLIPPED_ADVICE, clipped_labels

__all__ = [
    "FAINT_MIN_SPOTS",
    "FAINT_WARN_FRACTION",
    "MAX_OBJECTS_PER_UM3",
    "MAX_OBJECT_FRACTION",
    "FaintSpotsWarning",
    "ImplausibleSegmentationWarning",
    "LargeObjectsRemovedWarning",
    "check_clipped",
    "check_object_sizes",
    "check_segmentation",
    "missed_faint_fraction",
    "object_sizes",
]

#: More objects than this per µm³ of the stack is implausible. Diffraction-limited
#: spots (about 0.2 × 0.2 × 0.6 µm) this dense would be about 0.8 µm apart over the
#: whole stack, background included: such a segmentation is picking up noise.
MAX_OBJECTS_PER_UM3 = 2.0
#: One object larger than this fraction of the stack's voxels is implausible: RNA
#: spots, granules and centrosomes are tiny; such an object is background or
#: many structures merged.
MAX_OBJECT_FRACTION = 0.05
#: :func:`missed_faint_fraction` estimates nothing from fewer spots than this.
FAINT_MIN_SPOTS = 50
#: The workflows warn (:class:`FaintSpotsWarning`) when at least this share of an image's
#: single molecules is estimated to score under the threshold. On simulated widefield
#: stacks (gapdh nc14, 16x256x256, four seeds) the estimate reads 0.6-1.2% at a median
#: single-molecule peak SNR of 8, 6-12% at 5, 18-31% at 4, where 0.1-1.4%, 8-14% and
#: 20-30% of the isolated single molecules score under the threshold.
FAINT_WARN_FRACTION = 0.05
#: Spots scoring more than this many times the median spot are left out of the fit:
#: granules and unresolved pairs, not single molecules.
FAINT_UPPER = 2.0


class ImplausibleSegmentationWarning(UserWarning):
    """A segmentation that is probably wrong (no objects, far too many, one huge object),
    or objects whose light the camera clipped.

    Issued by :func:`.batch.segment_folder` once per problem, with the sentence
    of :func:`check_segmentation` as its message. Silence it with
    ``warnings.simplefilter("ignore", ImplausibleSegmentationWarning)``.
    """


class LargeObjectsRemovedWarning(UserWarning):
    """A workflow removed objects larger than its ``max_volume_um3``.

    Issued by :func:`.workflows.segment` and
    :func:`.workflows.segment_intermediates` (whose ``Intermediates`` also
    count them): out-of-focus light grown into a mask, or structures larger
    than the workflow expects, which a larger ``max_volume_um3`` (or 0) keeps.
    ``count`` is the number of objects removed, ``largest_um3`` the volume of
    the largest. :func:`.batch.segment_folder` reports the same sentence,
    naming the image, as an :class:`ImplausibleSegmentationWarning` and on
    its QC page.
    """

    def __init__(self, message: str, count: int = 0, largest_um3: float = float("nan")):
        super().__init__(message)
        self.count = count
        self.largest_um3 = largest_um3


class FaintSpotsWarning(UserWarning):
    """Many of an image's single molecules score under the detection threshold.

    Issued by :func:`.workflows.segment` and :func:`.workflows.segment_intermediates`
    for the workflows that find single molecules, when :func:`missed_faint_fraction`
    reaches :data:`FAINT_WARN_FRACTION`: those molecules are in no object, so molecule
    counts read low by about that share. ``fraction`` is the estimate.
    :func:`.batch.segment_folder` reports the same sentence, naming the image, as an
    :class:`ImplausibleSegmentationWarning` and on its QC page.
    """

    def __init__(self, message: str, fraction: float = float("nan")):
        super().__init__(message)
        self.fraction = fraction


def missed_faint_fraction(scores, threshold: float, *, min_spots: int = FAINT_MIN_SPOTS,
                          same_source=None) -> float:
    """Estimated share of single molecules that score under the detection threshold.

    A detector sees only the molecules whose score (filtered peak over the
    local noise) passes its threshold, so the scores it finds are a
    distribution cut off at the threshold. Single molecules' brightnesses
    spread about log-normally; a normal distribution is fitted by maximum
    likelihood to the logarithms of the scores between the threshold and
    :data:`FAINT_UPPER` times their median (granules and unresolved pairs
    score higher), truncated at both ends, and its mass under the threshold
    is the share the detector missed. When the spots' median lies many
    noise SDs above the threshold the estimate is next to 0; when the spots
    crowd against it, a large share is missing. The spots are taken for
    molecules: under a threshold low enough to let noise through, false spots
    crowd the cut-off and the estimate rises, so it says how faint the
    molecules are against the threshold used, not what a lower one would find.
    So do a PSF's own maxima: a molecule seen through an aberrated objective
    has a second, dimmer maximum along z scoring just over the threshold, one
    per molecule; given as `same_source` pairs, the dimmer spot of each pair is
    left out.

    Parameters
    ----------
    scores : (N,) array-like of float
        The found spots' scores (``find_spots``' ``score`` column), noise SDs.
    threshold : float
        The score the spots had to pass.
    min_spots : int
        Fewest spots to fit (between the threshold and the upper cut).
    same_source : (K, 2) array-like of int, optional
        Positions in `scores` of pairs of spots that are maxima of one source
        (:func:`.detection.axial_lobe_pairs`, :func:`.detection.plateau_pairs`);
        the dimmer of each pair is not a molecule of its own.

    Returns
    -------
    float
        The estimated share of single molecules under the threshold, 0-1;
        NaN with fewer than `min_spots` spots to fit.

    Examples
    --------
    A log-normal population of molecules, cut at a threshold of 3 and of 5
    noise SDs: the estimate from the spots found, and the true share missed:

    >>> rng = np.random.default_rng(0)
    >>> scores = np.exp(rng.normal(np.log(5.0), 0.35, 4000))
    >>> [(round(missed_faint_fraction(scores[scores >= t], t), 2), round(float(np.mean(scores < t)), 2))
    ...  for t in (3.0, 5.0)]
    [(0.08, 0.07), (0.48, 0.51)]

    Each molecule found at 3 with a dimmer maximum 0.6 times its score, where
    that passes 3 too: the lobes' scores read as faint molecules, unless
    paired with their molecules:

    >>> found = scores[scores >= 3.0]
    >>> lobes = 0.6 * found[0.6 * found >= 3.0]
    >>> pairs = np.c_[np.flatnonzero(0.6 * found >= 3.0), len(found) + np.arange(len(lobes))]
    >>> both = np.r_[found, lobes]
    >>> round(missed_faint_fraction(both, 3.0), 2), round(missed_faint_fraction(both, 3.0, same_source=pairs), 2)
    (0.27, 0.08)
    """
    scores = np.asarray(scores, dtype=np.float64)
    if same_source is not None and len(same_source):
        pairs = np.asarray(same_source, dtype=np.int64).reshape(-1, 2)
        dimmer = np.where(scores[pairs[:, 0]] < scores[pairs[:, 1]], pairs[:, 0], pairs[:, 1])
        scores = np.delete(scores, np.unique(dimmer))
    scores = scores[np.isfinite(scores) & (scores >= threshold)]
    if threshold <= 0 or scores.size == 0:
        return float("nan")
    low, high = np.log(threshold), np.log(FAINT_UPPER * float(np.median(scores)))
    x = np.log(scores)
    x = x[x <= high]
    if x.size < min_spots or high <= low:
        return float("nan")

    def cost(p: np.ndarray) -> float:
        mu, sigma = p[0], np.exp(p[1])
        # log(Phi(b) - Phi(a)), computed on the side of the mean where it does not cancel.
        a, b = (low - mu) / sigma, (high - mu) / sigma
        inside = (special.log_ndtr(b) + np.log1p(-np.exp(special.log_ndtr(a) - special.log_ndtr(b)))
                  if a < 0 else
                  special.log_ndtr(-a) + np.log1p(-np.exp(special.log_ndtr(-b) - special.log_ndtr(-a))))
        z = (x - mu) / sigma
        return float(0.5 * (z @ z) + x.size * (np.log(sigma) + inside))

    start = np.array([float(np.median(x)), np.log(max(float(np.std(x)), 1e-3))])
    with np.errstate(divide="ignore", invalid="ignore"):
        fit = optimize.minimize(cost, start, method="Nelder-Mead",
                                options={"xatol": 1e-6, "fatol": 1e-9, "maxiter": 2000})
    mu, sigma = fit.x[0], np.exp(fit.x[1])
    return float(np.clip(special.ndtr((low - mu) / sigma), 0.0, 1.0))


class _Problem(NamedTuple):
    """One implausibility: ``kind`` is "empty", "crowded" or "huge"; ``text`` the sentence."""

    kind: str
    text: str


def object_sizes(label_image: np.ndarray) -> np.ndarray:
    """Voxels of each object of a label image, in label order.

    Parameters
    ----------
    label_image : (Z, Y, X) ndarray of int
        0 is background (see :func:`rna_localization.objects.label_objects`).

    Returns
    -------
    (n_objects,) ndarray of int64
        One entry per label present (labels need not be consecutive).
    """
    labels = np.asarray(label_image)
    largest = int(labels.max()) if labels.size else 0
    if largest == 0:
        return np.zeros(0, np.int64)
    if largest <= labels.size:  # masks, and ordinary label images: one pass, no sort
        counts = np.bincount(labels.ravel(), minlength=largest + 1)[1:]
        return counts[counts > 0].astype(np.int64)
    return np.unique(labels[labels != 0], return_counts=True)[1].astype(np.int64)


def _fix(spacing: np.ndarray, *, stack: str = "", tune: str = "") -> str:
    voxel = ", ".join(f"{axis} {s:g}" for axis, s in zip("zyx", spacing))
    return (f"Check the voxel size ({voxel} µm) and the raw stack{stack}; tune the parameters "
            f"in the playground notebook{tune} and segment again.")


def _problems(sizes, shape, spacing, name: str = "") -> list[_Problem]:
    sizes = np.asarray(sizes, dtype=np.int64)
    spacing = normalize_spacing(spacing)
    voxel_um3 = float(np.prod(spacing))
    n_voxels = int(np.prod(shape))
    stack_um3 = n_voxels * voxel_um3
    what = f"The segmentation of {name}" if name else "The segmentation"
    if sizes.size == 0:
        return [_Problem("empty", f"{what} has no objects. {_fix(spacing, stack=' (is the signal there?)')}")]
    problems = []
    density = sizes.size / stack_um3
    if density > MAX_OBJECTS_PER_UM3:
        problems.append(_Problem(
            "crowded",
            f"{what} has {sizes.size} objects in {stack_um3:.3g} µm³ ({density:.3g} per µm³; "
            f"more than {MAX_OBJECTS_PER_UM3:g} per µm³ is implausible): probably noise. "
            + _fix(spacing, tune=" (e.g. a higher spot-filter cutoff or min_volume_um3)"),
        ))
    largest = int(sizes.max())
    fraction = largest / n_voxels
    if fraction > MAX_OBJECT_FRACTION:
        problems.append(_Problem(
            "huge",
            f"{what} has one object of {largest} voxels ({largest * voxel_um3:.3g} µm³), "
            f"{fraction:.1%} of the stack (more than {MAX_OBJECT_FRACTION:.0%} is implausible): "
            f"probably background or many structures merged. "
            + _fix(spacing, tune=" (e.g. a higher normalization or spot-filter cutoff)"),
        ))
    return problems


def check_object_sizes(sizes, shape, *, spacing, name: str = "") -> list[str]:
    """:func:`check_segmentation` from object sizes already measured.

    For callers that have labelled the segmentation anyway, so it is not
    labelled twice.

    Parameters
    ----------
    sizes : sequence of int
        Voxels of each object (:func:`object_sizes`).
    shape : tuple of 3 int
        The stack's shape.
    spacing : float or sequence of 3 floats
        Microns per voxel (z, y, x).
    name : str
        Image name, put in the sentences.

    Returns
    -------
    list of str
        One sentence per problem; empty when the segmentation looks plausible.
    """
    return [problem.text for problem in _problems(sizes, shape, spacing, name)]


def check_segmentation(segmentation: np.ndarray, *, spacing, name: str = "") -> list[str]:
    """Say why a segmentation looks wrong, if it does.

    Objects are those of :func:`rna_localization.objects.label_objects`: the
    face-connected (6-connected) components of a mask, the labels of a label
    image. A segmentation is implausible when it has

    - no objects;
    - more than :data:`MAX_OBJECTS_PER_UM3` objects per µm³ of the stack;
    - one object larger than :data:`MAX_OBJECT_FRACTION` of the stack's voxels.

    Parameters
    ----------
    segmentation : (Z, Y, X) ndarray of bool or integers
        Mask or label image.
    spacing : float or sequence of 3 floats
        Microns per voxel (z, y, x).
    name : str
        Image name, put in the sentences.

    Returns
    -------
    list of str
        One sentence per problem, naming the image and saying what to do;
        empty when the segmentation looks plausible.

    See Also
    --------
    ImplausibleSegmentationWarning : how :func:`.batch.segment_folder` reports them.

    Examples
    --------
    >>> mask = np.zeros((8, 64, 64), np.uint8)
    >>> check_segmentation(mask, spacing=(0.2, 0.065, 0.065), name="embryo1")[0][:44]
    'The segmentation of embryo1 has no objects. '
    >>> mask[4, 30:33, 30:33] = 255  # one spot: plausible
    >>> check_segmentation(mask, spacing=(0.2, 0.065, 0.065), name="embryo1")
    []
    >>> mask[:, :16, :] = 255  # and a slab, a quarter of the stack
    >>> print(check_segmentation(mask, spacing=(0.2, 0.065, 0.065))[0].split(" (more")[0])
    The segmentation has one object of 8192 voxels (6.92 µm³), 25.0% of the stack
    """
    labels = label_objects(segmentation)
    return check_object_sizes(object_sizes(labels), labels.shape, spacing=spacing, name=name)


def check_clipped(segmentation: np.ndarray, image: np.ndarray, *, name: str = "") -> list[str]:
    """Say whether the camera clipped the segmented objects' light, if it did.

    A plateau of voxels at a converter's ceiling (2^k - 1) among the objects'
    brightest (:func:`rna_localization.saturation.clipped_labels`): those
    objects will read less light than fell on them. ``segment`` flags such an
    image as it writes its mask, before anything is measured.

    Parameters
    ----------
    segmentation : (Z, Y, X) ndarray of bool or integers
        Mask or label image (objects as :func:`~rna_localization.objects.label_objects`
        makes them).
    image : (Z, Y, X) ndarray
        The raw stack it was segmented from.
    name : str
        Image name, put in the sentence.

    Returns
    -------
    list of str
        One sentence naming the image, how many objects reach the ceiling and
        what to do; empty when none does.

    Examples
    --------
    >>> raw = np.full((4, 32, 32), 100, np.uint16)
    >>> raw[2, 10:12, 10:12] = 4095  # a granule's peak, clipped by a 12-bit converter
    >>> raw[2, 20, 20] = 900
    >>> mask = raw > 500
    >>> print(check_clipped(mask, raw, name="embryo1")[0].split(":")[0])
    The segmentation of embryo1 has 1 object whose brightest voxels sit at the camera's ceiling (4,095), a plateau of clipped light
    >>> check_clipped(mask, np.minimum(raw, 1000), name="embryo1")
    []
    """
    return _clipped(label_objects(segmentation), image, name)


def _clipped(labels: np.ndarray, image: np.ndarray, name: str = "") -> list[str]:
    """:func:`check_clipped` of objects already labelled (not labelled again)."""
    ceiling, count = clipped_labels(labels, image)
    if ceiling is None:
        return []
    what = f"The segmentation of {name}" if name else "The segmentation"
    objects = f"{count} object whose brightest voxels sit" if count == 1 else (
        f"{count} objects whose brightest voxels sit")
    return [f"{what} has {objects} at the camera's ceiling ({ceiling:,}), a plateau of clipped "
            f"light: {CLIPPED_ADVICE}."]
