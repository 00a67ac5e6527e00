"""Normalization to molecules per object and cumulative distributions.

Pure array functions: nothing here reads files or talks to the database.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = [
    "DISTRIBUTION_COLUMNS",
    "IMAGE_REFERENCE_MIN_OBJECTS",
    "MIN_REFERENCE_OBJECTS",
    "REFERENCE_DEPTH_REACH_UM",
    "REFERENCE_DEPTH_STEP_UM",
    "REFERENCE_ISOLATION_UM",
    "REFERENCE_TRIM",
    "SINGLE_AREA_WINDOW",
    "aperture_references",
    "cumulative_distribution",
    "depth_references",
    "distance_grid",
    "distance_steps",
    "image_references",
    "isolated_spots",
    "normalize_intensities",
    "object_references",
    "shrunk_references",
    "single_molecule_references",
]

#: Columns of :func:`cumulative_distribution`.
DISTRIBUTION_COLUMNS = ["distance", "percent_total_rna", "percent_granule_rna"]

#: A distance within this relative tolerance of a grid distance counts as on it. Voxel
#: distances land exactly on the grid (0.1 µm is one 0.1 µm voxel away), and the last bit
#: of their square roots depends on the order of the arithmetic (KD-tree or distance
#: transform), which must not move an object across a grid line.
GRID_RTOL = 1e-9


def single_molecule_references(
    total_intensity, area, groups, *, lower_threshold: float, upper_threshold: float
) -> pd.Series:
    """Mean total intensity of a single molecule, per group.

    The single molecules of a group are its objects with
    ``lower_threshold <= area <= upper_threshold``.

    Parameters
    ----------
    total_intensity, area, groups : (N,) array-like
        One value per object: summed raw intensity, area in voxels, and the
        group (e.g. the image's ``rna_type``).
    lower_threshold, upper_threshold : float
        Inclusive area range, in voxels, of single molecules.

    Returns
    -------
    Series
        Reference total intensity indexed by group, one entry per group.

    Raises
    ------
    ValueError
        If a group has no object in the area range; the message names it.
    """
    if lower_threshold > upper_threshold:
        msg = (
            f"normalization.lower_threshold ({lower_threshold}) is larger than "
            f"upper_threshold ({upper_threshold})."
        )
        raise ValueError(msg)
    table = pd.DataFrame(
        {
            "group": np.asarray(groups, dtype=object),
            "area": np.asarray(area, dtype=np.float64),
            "total_intensity": np.asarray(total_intensity, dtype=np.float64),
        }
    )
    single = table[(table["area"] >= lower_threshold) & (table["area"] <= upper_threshold)]
    references = single.groupby("group", sort=True)["total_intensity"].mean()
    missing = sorted(set(table["group"]) - set(references.index), key=str)
    if missing:
        msg = (
            f"no single-molecule reference for group {', '.join(map(repr, missing))}: "
            f"no object has {lower_threshold} <= area <= {upper_threshold} voxels. "
            f"Widen normalization.lower_threshold/upper_threshold."
        )
        raise ValueError(msg)
    return references


#: Method "aperture": single spots are the objects whose area lies in this range,
#: as a fraction of the median area of their group's objects (most objects of an
#: smFISH image are single molecules, so the median sits on them).
SINGLE_AREA_WINDOW = (0.5, 1.5)
#: Fewer reference objects than this in a group is a warning.
MIN_REFERENCE_OBJECTS = 20
#: Method "aperture": the reference is the mean of the single spots within this factor of
#: their median (either side). Molecules differ in brightness (about log-normally, a sigma
#: of 0.27 of log on real images), and a count divides light by the mean molecule, which
#: lies above the median (by 3.7% at that spread); the cut leaves out a merged pair (two
#: molecules: twice the median) and a spot cut short by the stack's face.
REFERENCE_TRIM = 1.6
#: Method "aperture": the single spots with another object's spot closer than this (µm)
#: are left out of the reference (when at least :data:`MIN_REFERENCE_OBJECTS` are left):
#: a crowded spot's aperture holds some of its neighbours' light, and in a crowd that of
#: the molecules no object holds.
REFERENCE_ISOLATION_UM = 0.5


#: Method "aperture" with ``normalization.reference = "image"``: an image is counted against
#: its own single molecules when it holds at least this many isolated single spots, their
#: trimmed mean pulled toward its group's reference by as much as it is uncertain
#: (:func:`shrunk_references`); with fewer, against its group's. Real images' molecules
#: differ in brightness from one image to the next (by about 18%, one SD of log, on
#: hand-tagged widefield smFISH; docs/quantification.md, "Images whose molecules differ in
#: brightness"), so a reference pooled over a group's images counts each image's objects off
#: by as much. Measured on the demo's images, their isolated spots drawn down to n per image:
#: from 8 spots the shrunk reference errs less than the group's (at 5 as much, at 3 more).
IMAGE_REFERENCE_MIN_OBJECTS = 8


def isolated_spots(points_um, images, *, reach_um: float = REFERENCE_ISOLATION_UM) -> np.ndarray:
    """Whether each object's nearest other object of the same image lies farther than `reach_um`.

    Parameters
    ----------
    points_um : (N, 3) array-like
        Each object's position (z, y, x) in microns (e.g. its spot centroid times the voxel size).
    images : (N,) array-like
        Each object's image: only objects of the same image are neighbours.
    reach_um : float

    Returns
    -------
    (N,) ndarray of bool
        False for an object with a neighbour within `reach_um` (inclusive); True for the
        only object of its image.

    Examples
    --------
    >>> isolated_spots([[0, 0, 0], [0, 0, 0.3], [0, 0, 2.0], [0, 0, 0.1]], ["a", "a", "a", "b"])
    array([False, False,  True,  True])
    """
    from scipy.spatial import cKDTree

    points = np.asarray(points_um, dtype=np.float64).reshape(-1, 3)
    images = pd.Series(np.asarray(images, dtype=object))
    isolated = np.ones(len(points), dtype=bool)
    for rows in images.groupby(images, sort=False).indices.values():
        if len(rows) < 2:
            continue
        nearest, _ = cKDTree(points[rows]).query(points[rows], k=2)
        isolated[rows] = nearest[:, 1] > reach_um
    return isolated


def _trimmed(values: np.ndarray, trim: float) -> np.ndarray:
    """The `values` within a factor `trim` of their median."""
    median = float(np.median(values))
    return values[(values >= median / trim) & (values <= median * trim)]


def _trimmed_mean(values: np.ndarray, trim: float) -> tuple[float, int]:
    """Mean of `values` within a factor `trim` of their median, and how many those are.

    None is within it when the values fall in two groups further apart than `trim`
    squared: the median then, and 0.
    """
    kept = _trimmed(values, trim)
    return (float(kept.mean()) if kept.size else float(np.median(values))), int(kept.size)


def _single_spots(objects: pd.DataFrame, window: tuple[float, float]):
    """The rows of `objects` (``area``, ``spot``) whose area is within `window` times their
    median area and whose intensity is positive: the single spots; and the window's bounds."""
    centre = float(objects["area"].median())
    lower, upper = window[0] * centre, window[1] * centre
    return objects[objects["area"].between(lower, upper) & (objects["spot"] > 0)], lower, upper


def aperture_references(spot_intensity, area, groups, *, isolated=None,
                        window: tuple[float, float] = SINGLE_AREA_WINDOW,
                        trim: float = REFERENCE_TRIM) -> pd.DataFrame:
    """Single-molecule reference per group from matched-aperture intensities.

    For each group, the single spots are the objects whose area is within
    ``window`` times the group's median area, and, given `isolated`, those of
    them isolated from every other object (:func:`isolated_spots`) when at
    least :data:`MIN_REFERENCE_OBJECTS` are. The reference is the mean
    ``spot_intensity`` of the single spots within a factor `trim` of their
    median: the mean molecule, which a count divides light by, without the
    odd merged pair or noise spot of the window.

    Parameters
    ----------
    spot_intensity, area, groups : (N,) array-like
        One value per object: background-subtracted aperture intensity
        (:func:`rna_localization.apertures.aperture_intensities`), area in
        voxels, and the group (e.g. the image's ``rna_type``).
    isolated : (N,) array-like of bool, optional
        Objects with no other object nearby (:func:`isolated_spots`). None:
        every object of the window counts.
    window : (float, float)
        Area range of single spots, as fractions of the group's median area.
    trim : float
        The spots reading over `trim` times the window's median, or under
        its inverse, are left out of the mean.

    Returns
    -------
    DataFrame
        Indexed by group: ``reference``, ``single_molecules`` (objects it is
        the mean of), ``lower_area``, ``upper_area`` (the window in voxels).

    Raises
    ------
    ValueError
        If a group has no object with a positive intensity in its window; the
        message names the group.

    Examples
    --------
    >>> aperture_references([100, 110, 90, 420], [20, 22, 18, 60], ["a"] * 4)["reference"]
    group
    a    100.0
    Name: reference, dtype: float64
    """
    table = pd.DataFrame({
        "group": np.asarray(groups, dtype=object),
        "area": np.asarray(area, dtype=np.float64),
        "spot": np.asarray(spot_intensity, dtype=np.float64),
    })
    table["isolated"] = True if isolated is None else np.asarray(isolated, dtype=bool)
    rows = {}
    for group, objects in table.groupby("group", sort=True):
        single, lower, upper = _single_spots(objects, window)
        if single.empty:
            msg = (
                f"no single-molecule reference for group {group!r}: no object with a positive "
                f"spot intensity has an area of {lower:g}-{upper:g} voxels."
            )
            raise ValueError(msg)
        if single["isolated"].sum() >= MIN_REFERENCE_OBJECTS:
            single = single[single["isolated"]]
        spot = single["spot"].to_numpy()
        reference, kept = _trimmed_mean(spot, trim)
        rows[group] = {"reference": reference, "single_molecules": kept or len(spot),
                       "lower_area": lower, "upper_area": upper}
    result = pd.DataFrame.from_dict(rows, orient="index")
    result.index.name = "group"
    return result


def image_references(spot_intensity, area, images, *, isolated,
                     window: tuple[float, float] = SINGLE_AREA_WINDOW,
                     trim: float = REFERENCE_TRIM,
                     min_objects: int = IMAGE_REFERENCE_MIN_OBJECTS) -> pd.DataFrame:
    """Each image's own single-molecule reference, where it holds enough isolated single spots.

    As :func:`aperture_references` takes a group's reference, over one
    image's objects: its single spots are those whose area is within
    `window` times the image's median area, with a positive intensity and
    `isolated`; the reference is their mean ``spot_intensity`` within a
    factor `trim` of their median. An image with fewer than `min_objects`
    such spots (within the trim) gets none (NaN): too few to say its
    molecules' brightness.

    Parameters
    ----------
    spot_intensity, area, images : (N,) array-like
        One value per object: background-subtracted aperture intensity, area
        in voxels, and the object's image.
    isolated : (N,) array-like of bool
        Objects with no other object nearby (:func:`isolated_spots`).
    window, trim : as in :func:`aperture_references`
    min_objects : int
        Fewest spots behind an image's reference.

    Returns
    -------
    DataFrame
        Indexed by image (sorted): ``reference`` (NaN with too few spots),
        ``single_molecules`` (the spots the mean is of; with too few, the
        isolated single spots found) and ``spread``: their standard deviation
        over their mean (NaN with too few spots), what :func:`shrunk_references`
        takes the mean's uncertainty from.

    Examples
    --------
    Image "b"'s molecules are twice as bright as "a"'s; "c" has one spot only:

    >>> spots = [100, 110, 90, 200, 220, 180, 150]
    >>> image_references(spots, [20] * 7, list("aaabbbc"), isolated=[True] * 7, min_objects=3)
           reference  single_molecules  spread
    image
    a          100.0                 3     0.1
    b          200.0                 3     0.1
    c            NaN                 1     NaN
    """
    table = pd.DataFrame({
        "image": np.asarray(images, dtype=object),
        "area": np.asarray(area, dtype=np.float64),
        "spot": np.asarray(spot_intensity, dtype=np.float64),
        "isolated": np.asarray(isolated, dtype=bool),
    })
    rows = {}
    for image, objects in table.groupby("image", sort=True):
        single, _, _ = _single_spots(objects, window)
        single = single[single["isolated"]]
        kept = _trimmed(single["spot"].to_numpy(), trim) if len(single) else np.empty(0)
        if kept.size < max(min_objects, 2):
            rows[image] = {"reference": np.nan, "single_molecules": len(single), "spread": np.nan}
            continue
        mean = float(kept.mean())
        rows[image] = {"reference": mean, "single_molecules": kept.size,
                       "spread": float(kept.std(ddof=1)) / mean}
    columns = ["reference", "single_molecules", "spread"]
    result = pd.DataFrame.from_dict(rows, orient="index", columns=columns)
    result.index.name = "image"
    return result.astype({"reference": np.float64, "single_molecules": np.int64,
                          "spread": np.float64})


def shrunk_references(own, spread, count, groups, group_reference,
                      molecules=None) -> pd.DataFrame:
    """Each image's own reference pulled toward its group's by as much as it is uncertain.

    An image's own reference, the mean of its few isolated single spots, errs
    by chance; its group's errs by how much the image's molecules differ in
    brightness from the group's. The two are weighed as a random-effects
    meta-analysis weighs studies (DerSimonian & Laird, 1986), on the
    logarithm of the references, group by group:

    - an image's chance error: ``s² / n``, with ``n`` its spots and ``s²`` the
      squared `spread` of its group's images, pooled (``Σ (n - 1) spread² /
      Σ (n - 1)``: the molecules' own spread, the same in every image, is
      measured on all their spots);
    - the images' true spread, ``τ²``: Cochran's ``Q`` of the own references
      about their weighted mean, less what chance gives (``k - 1`` for ``k``
      images), over ``Σw - Σw² / Σw`` (``w = n / s²``); 0 when chance explains
      all of it;
    - each image's weight is ``τ² / (τ² + s² / n)``: the share of its own
      reference in the best estimate of the mean molecule of its kind;
    - but a count divides the image's light by the mean of *its* molecules,
      and its ``n`` spots are ``f = n / m`` of its ``m`` `molecules`: their
      mean is that share of it exactly, so the ``weight`` is
      ``f + (1 - f) · τ² / (τ² + s² / n)``;
    - its reference is ``group_reference · (own / group_reference) ** weight``.

    Many spots, images that truly differ, or an image whose molecules are
    mostly its isolated spots keep their own reference (weight near 1); few
    spots among many molecules, in images alike, take the group's (near 0). A
    group with one image of its own reference, or whose spots read alike to
    the bit (``s² = 0``), keeps the own references (weight 1). An image with
    no own reference (NaN) takes its group's (weight 0).

    Parameters
    ----------
    own, spread : (M,) array-like of float
        Each image's own reference and its spots' spread
        (:func:`image_references`; NaN: none).
    count : (M,) array-like of int
        The spots each own reference is the mean of.
    groups : (M,) array-like
        Each image's group.
    group_reference : Series
        Each group's reference (:func:`aperture_references`), indexed by group.
    molecules : (M,) array-like of float, optional
        Each image's molecules (its light over its own reference). None: many
        more than its spots (``f = 0``).

    Returns
    -------
    DataFrame
        One row per image, in the order given: ``reference`` (the one to count
        it against) and ``weight`` (its own reference's share, in logarithms).

    Examples
    --------
    Three images of 10 spots each, their spots spread by 30%. References 5%
    apart are what chance gives: all three take the group's. With one image
    twice as bright as the other two, the images plainly differ, and each
    keeps nearly its own:

    >>> group = pd.Series({"g": 100.0})
    >>> shrunk_references([95, 105, 100], [0.3] * 3, [10] * 3, ["g"] * 3, group).round(2)
       reference  weight
    0      100.0     0.0
    1      100.0     0.0
    2      100.0     0.0
    >>> shrunk_references([70, 75, 150], [0.3] * 3, [10] * 3, ["g"] * 3, group).round(2)
       reference  weight
    0      71.28    0.95
    1      76.10    0.95
    2     146.95    0.95
    """
    own = np.asarray(own, dtype=np.float64)
    spread = np.asarray(spread, dtype=np.float64)
    count = np.asarray(count, dtype=np.float64)
    groups = np.asarray(groups, dtype=object)
    base = np.log(pd.Series(group_reference).reindex(groups).to_numpy(np.float64))
    weight = np.zeros(own.shape)
    have = ~np.isnan(own)
    share = (np.zeros(own.shape) if molecules is None else
             np.clip(count / np.asarray(molecules, dtype=np.float64), 0.0, 1.0))
    share[~have | ~np.isfinite(share)] = 0.0
    for rows in pd.Series(groups[have]).groupby(groups[have], sort=False).indices.values():
        rows = np.flatnonzero(have)[rows]
        pooled = (np.sum((count[rows] - 1) * spread[rows] ** 2)
                  / np.sum(count[rows] - 1))
        if len(rows) < 2 or not pooled > 0:
            weight[rows] = 1.0
            continue
        chance = pooled / count[rows]  # each own reference's variance, in logarithms
        w = 1.0 / chance
        y = np.log(own[rows])
        centre = np.sum(w * y) / np.sum(w)
        q = np.sum(w * (y - centre) ** 2)
        tau2 = max(0.0, (q - (len(rows) - 1)) / (np.sum(w) - np.sum(w ** 2) / np.sum(w)))
        weight[rows] = share[rows] + (1 - share[rows]) * tau2 / (tau2 + chance)
    logs = np.where(have, np.log(np.where(have, own, 1.0)), base)
    # Weight 1: the own reference to the bit (not through its logarithm); 0: the group's.
    reference = np.where(weight == 1, own, np.exp(base + weight * (logs - base)))
    return pd.DataFrame({"reference": reference, "weight": weight})


#: Method "aperture", images whose PSF changes with depth: an object's reference is taken
#: from the isolated spots within this many µm of its depth (or the
#: :data:`MIN_REFERENCE_OBJECTS` nearest in depth, when fewer are). Through spherical
#: aberration growing from 0.1 waves at the first plane to 0.4 at the last (8.7 µm deeper),
#: the isolated single molecules' light in their apertures changes by up to 30% from one
#: micron of depth to the next (docs/quantification.md, "Aberration that grows with depth").
REFERENCE_DEPTH_REACH_UM = 1.0
#: :func:`depth_references` takes each object's depth to the nearest multiple of this many
#: µm (a twentieth of the reach, finer than any microscope's z step): objects at one such
#: depth share one reference, so a million objects cost a few hundred trimmed means.
REFERENCE_DEPTH_STEP_UM = 0.05




def depth_references(spot_intensity, depth_um, groups, *, isolated,
                     reach_um: float = REFERENCE_DEPTH_REACH_UM, trim: float = REFERENCE_TRIM,
                     min_objects: int = MIN_REFERENCE_OBJECTS,
                     step_um: float = REFERENCE_DEPTH_STEP_UM) -> np.ndarray:
    """Each object's single-molecule reference at its own depth, for a PSF that changes with depth.

    An oil objective focused deeper into a watery sample aberrates more, and
    the share of a molecule's light its aperture holds changes with the
    depth (:func:`rna_localization.capture.psf_depth_change` names such
    stacks). Each object is then counted against the single molecules at its
    depth: its reference is the mean ``spot_intensity`` of its group's
    reference spots (`isolated`, with a positive intensity) whose depth lies
    within `reach_um` of its own (taken to the nearest multiple of
    `step_um`), those within a factor `trim` of their median, as
    :func:`aperture_references` takes them over the whole group but without
    its area window (a molecule's mask grows with its depth's PSF). When
    fewer than `min_objects` spots lie within reach, the `min_objects`
    nearest in depth serve (all of the group's, when it has fewer).

    Parameters
    ----------
    spot_intensity, depth_um, groups : (N,) array-like
        One value per object: background-subtracted aperture intensity, depth
        (µm from the stack's first plane) and group.
    isolated : (N,) array-like of bool
        The objects that may serve as references (:func:`isolated_spots`).
    reach_um : float
        Half the range of depths (µm) the reference spots are taken from.
    trim : float
        As in :func:`aperture_references`.
    min_objects : int
        Fewest reference spots behind a reference.
    step_um : float
        Each object's depth is taken to the nearest multiple of this (µm).

    Returns
    -------
    (N,) ndarray of float64
        Each object's reference; NaN for the objects of a group without a
        reference spot, and for those whose depth is not finite.

    Examples
    --------
    Spots read 100 near the top and 130 three microns down; each object is
    counted against the spots at its depth:

    >>> depth = [0.0, 0.2, 0.4, 3.0, 3.2, 3.4, 0.3, 3.1]
    >>> spot = [100, 100, 100, 130, 130, 130, 200, 260]
    >>> depth_references(spot, depth, ["a"] * 8, isolated=[True] * 6 + [False] * 2,
    ...                  min_objects=2)
    array([100., 100., 100., 130., 130., 130., 100., 130.])
    """
    spot = np.asarray(spot_intensity, dtype=np.float64)
    depth = np.asarray(depth_um, dtype=np.float64)
    groups = np.asarray(groups, dtype=object)
    usable = np.asarray(isolated, dtype=bool) & (spot > 0) & np.isfinite(depth)
    out = np.full(spot.shape, np.nan)
    for group in pd.unique(groups):
        members = np.flatnonzero(groups == group)
        pool = members[usable[members]]
        if pool.size == 0:
            continue
        order = np.argsort(depth[pool], kind="stable")
        levels, values = depth[pool][order], spot[pool][order]
        members = members[np.isfinite(depth[members])]  # no depth: no reference here
        # One reference per depth step: the objects at each are counted alike.
        steps, where = np.unique(np.rint(depth[members] / step_um), return_inverse=True)
        z = steps * step_um
        lo = np.searchsorted(levels, z - reach_um, side="left")
        hi = np.searchsorted(levels, z + reach_um, side="right")
        need = min(int(min_objects), levels.size)
        for k in np.flatnonzero(hi - lo < need):
            # The `need` spots nearest in depth: a run of the sorted depths.
            first = np.arange(max(0, lo[k] - need), min(hi[k], levels.size - need) + 1)
            reach = np.maximum(z[k] - levels[first], levels[first + need - 1] - z[k])
            lo[k] = first[np.argmin(reach)]
            hi[k] = lo[k] + need
        per_step = np.array([_trimmed_mean(values[a:b], trim)[0] for a, b in zip(lo, hi)])
        out[members] = per_step[np.ravel(where)]
    return out


def object_references(spot_intensity, area, groups, *, isolated, depth_um=None,
                      by_depth=None, images=None) -> tuple[pd.DataFrame, np.ndarray]:
    """Method "aperture"'s references: per group or per image, and per depth where the PSF changes.

    Every object is counted against its group's reference
    (:func:`aperture_references` of the group's images through one PSF), but
    the objects of the images whose PSF changes with depth (`by_depth`),
    against the single molecules of those images at their own depth
    (:func:`depth_references`). A group whose every image has a PSF that
    changes with depth reports the reference of them all.

    Given `images`, each image with at least
    :data:`IMAGE_REFERENCE_MIN_OBJECTS` isolated single spots is counted
    against its own (:func:`image_references`), pulled toward its group's by
    as much as it is uncertain (:func:`shrunk_references`; where its PSF
    changes with depth, its own spots at each depth), the others against
    their group's, as above.

    Parameters
    ----------
    spot_intensity, area, groups : (N,) array-like
        As in :func:`aperture_references`.
    isolated : (N,) array-like of bool
        Objects with no other object nearby (:func:`isolated_spots`).
    depth_um : (N,) array-like of float, optional
        Each object's depth, µm from its stack's first plane (needed with `by_depth`).
    by_depth : (N,) array-like of bool, optional
        The objects of images whose PSF changes with depth
        (:func:`rna_localization.capture.psf_depth_change`). None: none.
    images : (N,) array-like, optional
        Each object's image: each image counted against its own single
        molecules where it has enough. None: one reference per group.

    Returns
    -------
    references : DataFrame
        :func:`aperture_references` of the objects the group's reference is
        taken from, plus ``by_depth``: the objects of each group counted
        against a reference at their depth, and ``own_reference``: the images
        of each group counted against their own (0 without `images`). With
        `images`, ``attrs["images"]`` is :func:`image_references` of every
        image, its ``reference`` the one the image is counted against (NaN:
        its group's), plus ``own`` (the image's own, :func:`image_references`'
        ``reference``) and ``weight`` (:func:`shrunk_references`).
    reference : (N,) ndarray of float64
        Each object's reference.

    Examples
    --------
    >>> table, reference = object_references(
    ...     [100, 110, 90, 420], [20, 22, 18, 60], ["a"] * 4, isolated=[True] * 4)
    >>> reference.tolist(), table["by_depth"].tolist()
    ([100.0, 100.0, 100.0, 100.0], [0])

    Per image: "y"'s molecules are twice as bright as "x"'s, and each image is
    counted against its own (at least 8 isolated single spots each, which
    read alike: nothing pulls them toward the group's):

    >>> spots = [100.0] * 60 + [200.0] * 60 + [400.0]
    >>> table, reference = object_references(
    ...     spots, [20] * 121, ["a"] * 121, isolated=[True] * 120 + [False],
    ...     images=["x"] * 60 + ["y"] * 61)
    >>> float(spots[-1] / reference[-1]), table["own_reference"].tolist()
    (2.0, [2])
    """
    spot = np.asarray(spot_intensity, dtype=np.float64)
    groups = np.asarray(groups, dtype=object)
    isolated = np.asarray(isolated, dtype=bool)
    deep = (np.zeros(groups.shape, bool) if by_depth is None
            else np.asarray(by_depth, dtype=bool))
    # The group's reference from its images through one PSF (from all of them, in a
    # group whose every image has a PSF that changes with depth).
    basis = ~deep | ~pd.Series(~deep).groupby(groups).transform("any").to_numpy(bool)
    table = aperture_references(spot[basis], np.asarray(area, np.float64)[basis], groups[basis],
                                isolated=isolated[basis])
    reference = table["reference"].reindex(groups).to_numpy(np.float64, copy=True)
    own = np.zeros(groups.shape, bool)  # objects of the images counted against their own
    if images is not None:
        images = np.asarray(images, dtype=object)
        per_image = image_references(spot, area, images, isolated=isolated)
        # Each image's group and light, in one pass over the objects.
        by_image = pd.DataFrame({"group": groups, "light": spot}, index=images).groupby(
            level=0).agg(group=("group", "first"), light=("light", "sum")).reindex(per_image.index)
        shrunk = shrunk_references(per_image["reference"], per_image["spread"],
                                   per_image["single_molecules"], by_image["group"],
                                   table["reference"],
                                   molecules=by_image["light"] / per_image["reference"])
        # Images without their own reference stay NaN (their group's, as above).
        has_own = per_image["reference"].notna().to_numpy()
        per_image = per_image.assign(own=per_image["reference"],
                                     reference=shrunk["reference"].where(has_own).to_numpy(),
                                     weight=shrunk["weight"].where(has_own).to_numpy())
        mine = per_image["reference"].reindex(images).to_numpy(np.float64)
        own = ~np.isnan(mine)
        reference[own & ~deep] = mine[own & ~deep]
        table.attrs["images"] = per_image
    if deep.any():
        if depth_um is None:
            msg = "object_references: by_depth needs depth_um, each object's depth."
            raise ValueError(msg)
        depth = np.asarray(depth_um, np.float64)[deep]
        at_depth = depth_references(spot[deep], depth, groups[deep], isolated=isolated[deep])
        if own[deep].any():
            # An image with spots enough for its own reference: its own at each depth.
            by_image = depth_references(spot[deep], depth, images[deep], isolated=isolated[deep])
            at_depth = np.where(own[deep] & ~np.isnan(by_image), by_image, at_depth)
        # A group whose depth-changing images have no reference spot keeps its own.
        reference[deep] = np.where(np.isnan(at_depth), reference[deep], at_depth)
    table["by_depth"] = pd.Series(deep, index=groups).groupby(level=0).sum().reindex(
        table.index, fill_value=0).astype(np.int64)
    owners = pd.Series(images if images is not None else groups)[own]
    table["own_reference"] = owners.groupby(groups[own]).nunique().reindex(
        table.index, fill_value=0).astype(np.int64)
    return table, reference


def normalize_intensities(
    total_intensity, area, groups, *, lower_threshold: float, upper_threshold: float
) -> np.ndarray:
    """Estimated molecules per object: total intensity over its group's reference.

    Parameters
    ----------
    total_intensity, area, groups : (N,) array-like
        As in :func:`single_molecule_references`.
    lower_threshold, upper_threshold : float
        Inclusive area range, in voxels, of single molecules.

    Returns
    -------
    (N,) ndarray of float64
        ``total_intensity / reference[group]``.

    Examples
    --------
    >>> normalize_intensities([10, 20, 45], [12, 15, 60], ["a", "a", "a"],
    ...                       lower_threshold=10, upper_threshold=40)
    array([0.66666667, 1.33333333, 3.        ])
    """
    references = single_molecule_references(
        total_intensity, area, groups,
        lower_threshold=lower_threshold, upper_threshold=upper_threshold,
    )
    reference = references.reindex(np.asarray(groups, dtype=object)).to_numpy(np.float64)
    return np.asarray(total_intensity, dtype=np.float64) / reference


def distance_steps(threshold: float, step: float) -> np.ndarray:
    """Distances ``0, step, 2*step, ... < threshold``, then `threshold`.

    Values are rounded to 10 decimals so that ``3 * 0.05`` is ``0.15``.

    Examples
    --------
    >>> distance_steps(0.2, 0.05)
    array([0.  , 0.05, 0.1 , 0.15, 0.2 ])
    >>> distance_steps(0.12, 0.05)
    array([0.  , 0.05, 0.1 , 0.12])
    """
    if not step > 0:
        msg = f"distribution.step_size must be positive; got {step}."
        raise ValueError(msg)
    if not threshold >= 0:
        msg = f"distance threshold must be >= 0 microns; got {threshold}."
        raise ValueError(msg)
    grid = np.round(np.arange(int(np.ceil(threshold / step)) + 1) * step, 10)
    grid = grid[grid < threshold]
    return np.append(grid, threshold).astype(np.float64)


def distance_grid(distance, step_size: float, distance_threshold: float | None) -> np.ndarray | None:
    """The distances one image's curve is computed at (:func:`distance_steps`).

    Up to `distance_threshold`, or, when it is None, the image's largest
    measured distance; None when it is None and nothing is measured.

    Examples
    --------
    >>> distance_grid([0.12, np.nan, 0.08], 0.05, None)
    array([0.  , 0.05, 0.1 , 0.12])
    >>> distance_grid([np.nan], 0.05, None) is None
    True
    """
    if distance_threshold is None:
        distance = np.asarray(distance, dtype=np.float64)
        measured = distance[~np.isnan(distance)]
        if not measured.size:
            return None
        distance_threshold = float(measured.max())
    return distance_steps(distance_threshold, step_size)


def cumulative_distribution(
    distance,
    total_intensity,
    normalized_intensity,
    *,
    step_size: float,
    distance_threshold: float | None = None,
    granule_threshold: float = 4,
) -> pd.DataFrame:
    """Cumulative percent of RNA, and of granule RNA, against distance, for one image.

    Objects with a NaN distance are left out. With ``t`` the threshold and
    ``d`` each distance of :func:`distance_steps`:
    ``percent_total_rna(d) = 100 * sum(total[distance <= d]) / sum(total[distance <= t])``
    and ``percent_granule_rna`` has the same denominator and a numerator
    restricted to ``normalized_intensity >= granule_threshold``. A distance
    within a relative :data:`GRID_RTOL` of ``d`` counts as ``<= d``.

    Parameters
    ----------
    distance, total_intensity, normalized_intensity : (N,) array-like
        One value per object of the image: distance in microns to the nearest
        target, summed raw intensity, estimated molecules.
    step_size : float
        Microns between distances.
    distance_threshold : float or None
        Largest distance; None takes the image's largest measured distance.
    granule_threshold : float
        Molecules from which an object counts as a granule.

    Returns
    -------
    DataFrame
        Columns ``distance``, ``percent_total_rna``, ``percent_granule_rna``;
        zero rows when no object is left (nothing measured, or a zero
        denominator).

    Examples
    --------
    >>> cumulative_distribution([0.0, 0.1 + 1e-16, 0.3], [1, 1, 2], [1, 1, 5],
    ...                         step_size=0.1, distance_threshold=0.3)
       distance  percent_total_rna  percent_granule_rna
    0       0.0               25.0                  0.0
    1       0.1               50.0                  0.0
    2       0.2               50.0                  0.0
    3       0.3              100.0                 50.0
    """
    distance = np.asarray(distance, dtype=np.float64)
    total = np.asarray(total_intensity, dtype=np.float64)
    molecules = np.asarray(normalized_intensity, dtype=np.float64)
    measured = ~np.isnan(distance)
    grid = distance_grid(distance, step_size, distance_threshold)
    if grid is None:
        return pd.DataFrame({c: pd.Series(dtype="float64") for c in DISTRIBUTION_COLUMNS})
    reach = grid * (1.0 + GRID_RTOL)
    kept = measured & (distance <= reach[-1])
    denominator = total[kept].sum()
    if not kept.any() or denominator == 0:
        return pd.DataFrame({c: pd.Series(dtype="float64") for c in DISTRIBUTION_COLUMNS})

    order = np.argsort(distance[kept], kind="stable")
    sorted_distance = distance[kept][order]
    within = np.searchsorted(sorted_distance, reach, side="right")
    cumulative_total = np.r_[0.0, np.cumsum(total[kept][order])]
    granule = np.where(molecules[kept][order] >= granule_threshold, total[kept][order], 0.0)
    cumulative_granule = np.r_[0.0, np.cumsum(granule)]
    return pd.DataFrame(
        {
            "distance": grid,
            "percent_total_rna": 100.0 * cumulative_total[within] / denominator,
            "percent_granule_rna": 100.0 * cumulative_granule[within] / denominator,
        }
    )
