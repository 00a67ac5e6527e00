"""Molecules per object from the default workflow, on realistic simulated images, over an SNR sweep.

The images' signal-to-noise and background follow real microscopes
(``rna_localization.synthetic``: shot and read noise, autofluorescence, haze);
the truth is the simulator's own molecules, never an earlier run. The
benchmark ``python -m benchmarks --only quantification`` runs the same sweep
beside Big-FISH's dense-region decomposition (benchmarks/RESULTS.md).
"""

import numpy as np
import pandas as pd
import pytest

from rna_localization import synthetic
from rna_localization.capture import corrected_apertures
from rna_localization.distributions import aperture_references, isolated_spots, object_references
from rna_localization.objects import label_objects
from rna_localization.segmentation import segment

# Bounds a little outside what these images measure (printed by the test): single
# molecules within 8% of 1 at every SNR from 5 (measured 0.985-1.039); dispersed (gapdh)
# molecules summed within a few percent from SNR 8. Dense cen RNA loses more (molecules 1-3
# spot widths from a brighter one are missed: docs/quantification.md), and at SNR 5 the faintest
# molecules are lost too (widefield singles read 0.99-1.03 there, so the deficit is the missed
# molecules), so totals at SNR 5 and cen's are held to what holds today. Counted as extraction
# counts them: bright objects' aperture corrections applied (rna_localization.capture).
SWEEP = [(preset, snr) for preset in ("confocal", "widefield") for snr in (5, 8, 12, 20)]
SINGLE_TOLERANCE = 0.08
# Measured (confocal / widefield): gapdh -1.0 / -9.5% at SNR 5, within 4.1% from SNR 8; cen
# -0.1 / -10.9% at SNR 5, -0.6 / -2.3% at 8, -0.4 / +0.6% at 12, -0.7 / +0.1% at 20.
TOTAL_FLOOR = {("gapdh", 5): 0.14, ("gapdh", 8): 0.05, ("gapdh", 12): 0.05, ("gapdh", 20): 0.05,
               ("cen", 5): 0.16, ("cen", 8): 0.08, ("cen", 12): 0.05, ("cen", 20): 0.05}


def _counted(sim):
    """Every object's spot intensity and area, and every molecule's object (0: none)."""
    labels = label_objects(segment(sim.rna, "rna", spacing=sim.spacing))
    table = corrected_apertures(labels, sim.rna, spacing=sim.spacing)
    table["area"] = np.bincount(labels.ravel())[table["object_id"]]
    at = np.clip(np.rint(sim.molecules[["z", "y", "x"]].to_numpy()).astype(int), 0,
                 np.array(labels.shape) - 1)
    molecules = sim.molecules.assign(label=labels[tuple(at.T)],
                                     isolated=~synthetic.unresolvable(sim.molecules,
                                                                      spacing=sim.spacing))
    return table, molecules


@pytest.mark.parametrize(("preset", "snr"), SWEEP)
def test_molecule_counts_over_the_snr_sweep(preset, snr):
    for rna_type, seed in (("gapdh", 40), ("cen", 41)):
        # Two images of a type: the reference comes from both, as normalize pools a group.
        counted = [_counted(synthetic.simulate_image(
            f"{rna_type}{i}", rna_type=rna_type, cycle=cycle, seed=seed + 10 * i, preset=preset,
            snr=snr, shape=(30, 192, 192))) for i, cycle in enumerate(("nc13", "nc14"))]
        tables = pd.concat([t.assign(image=i) for i, (t, _) in enumerate(counted)],
                           ignore_index=True)
        reference = aperture_references(tables["spot_intensity"], tables["area"],
                                        np.zeros(len(tables)))["reference"].item()
        tables["molecules"] = tables["spot_intensity"] / reference
        singles, simulated = [], 0
        for i, (_, molecules) in enumerate(counted):
            estimate = tables[tables["image"] == i].set_index("object_id")["molecules"]
            held = molecules.loc[molecules["label"] > 0, "label"].value_counts()
            lone = molecules[molecules["isolated"] & ~molecules["in_granule"]
                             & molecules["label"].map(held).eq(1)]
            singles.append(lone["label"].map(estimate))
            simulated += len(molecules)
        singles = pd.concat(singles)
        total = tables["molecules"].sum() / simulated - 1
        print(f"{preset} SNR {snr} {rna_type}: single molecules {singles.mean():.3f} "
              f"({len(singles)}), molecules summed {100 * total:+.1f}%")
        assert len(singles) >= 100
        assert abs(singles.mean() - 1) <= SINGLE_TOLERANCE, (rna_type, singles.mean())
        assert abs(total) <= TOTAL_FLOOR[(rna_type, snr)], (rna_type, total)


def test_each_image_is_counted_against_its_own_molecules():
    # Real images' molecules differ in brightness from one image to the next (by about 18%,
    # one SD of log, on the measured widefield smFISH; docs/quantification.md, "Images whose
    # molecules differ in brightness"). Two widefield gapdh images at 0.8 and 1.25 times the
    # median SNR of 8: against one reference for both, each image's molecules read off by
    # about its brightness; against the image's own isolated single spots (the default,
    # normalization.reference = "image"), within a few percent of the simulated molecules.
    sims = [synthetic.simulate_image(f"g{i}", rna_type="gapdh", cycle="nc14", seed=60 + i,
                                     preset="widefield", snr=8.0 * factor, shape=(30, 192, 192))
            for i, factor in enumerate((0.8, 1.25))]
    counted = [_counted(sim) for sim in sims]
    tables = []
    for i, (sim, (table, _)) in enumerate(zip(sims, counted)):
        labels = label_objects(segment(sim.rna, "rna", spacing=sim.spacing))
        voxels = np.nonzero(labels)
        size = np.bincount(labels[voxels])
        centre = np.column_stack([np.bincount(labels[voxels], weights=v)[table["object_id"]]
                                  / size[table["object_id"]] for v in voxels])
        tables.append(table.assign(image=i, z_um=centre[:, 0] * sim.spacing[0],
                                   y_um=centre[:, 1] * sim.spacing[1],
                                   x_um=centre[:, 2] * sim.spacing[2]))
    tables = pd.concat(tables, ignore_index=True)
    isolated = isolated_spots(tables[["z_um", "y_um", "x_um"]], tables["image"])
    read = {}
    for mode, images in (("group", None), ("image", tables["image"])):
        table, reference = object_references(tables["spot_intensity"], tables["area"],
                                             np.zeros(len(tables)), isolated=isolated,
                                             images=images)
        molecules = tables["spot_intensity"] / reference
        for i, (sim, (_, truth)) in enumerate(zip(sims, counted)):
            mine = (tables["image"] == i).to_numpy()
            estimate = pd.Series(molecules[mine].to_numpy(), index=tables.loc[mine, "object_id"])
            held = truth.loc[truth["label"] > 0, "label"].value_counts()
            lone = truth[truth["isolated"] & ~truth["in_granule"] & truth["label"].map(held).eq(1)]
            read[mode, i] = (molecules[mine].sum() / len(sim.molecules) - 1,
                             lone["label"].map(estimate).mean())
        assert table["own_reference"].tolist() == [2 if images is not None else 0]
    print({key: f"{100 * total:+.1f}% / {single:.3f}" for key, (total, single) in read.items()})
    # Measured: -6.5% / 0.960 (the dim image, median SNR 6.4, whose faintest molecules are
    # missed and whose found spots lean bright) and -0.7% / 0.994; one reference for both
    # read -23.5% / 0.786 and +23.7% / 1.237.
    for i in range(2):
        total, single = read["image", i]
        assert abs(total) <= 0.08, (i, total)
        assert abs(single - 1) <= 0.05, (i, single)
    # One reference for both: the dim image's molecules read low, the bright one's high.
    assert read["group", 0][0] <= -0.12
    assert read["group", 1][0] >= 0.12
