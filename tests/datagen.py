"""Small, deterministic data sets for the tests: random blobs written as real TIFF files.

Independent of ``rna_localization.synthetic`` (which models embryos): here
objects are arbitrary, including shapes that trap approximate algorithms
(long objects whose tip is nearest while other centroids are nearer).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import tifffile


def random_blobs(rng, shape, n, radius_range, *, label_image=False) -> np.ndarray:
    """Balls of random radii (in voxels along y/x, halved along z) at random places."""
    out = np.zeros(shape, dtype=np.uint16 if label_image else np.uint8)
    zz, yy, xx = np.indices(shape, sparse=True)
    for label in range(1, n + 1):
        center = rng.uniform(0, shape)
        radius = rng.uniform(*radius_range)
        ball = ((zz - center[0]) * 2) ** 2 + (yy - center[1]) ** 2 + (xx - center[2]) ** 2 <= radius**2
        out[ball] = label if label_image else 255
    return out


def write_dataset(root: Path, *, seed: int = 0, n_images: int = 4, shape=(8, 40, 48),
                  structures=("rna", "centrosomes"), toml_extra: str = "",
                  database_name: str = "test") -> Path:
    """A data directory in the PRODUCT.md layout, with metadata CSV and pipeline.toml.

    RNA segmentations are binary masks (uint8 0/255); centrosome segmentations
    are label images (uint16), the second image's containing a long rod.
    Returns the path of ``pipeline.toml``.
    """
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n_images):
        name = f"img_{i:02d}"
        rna_type = "cen" if i % 2 == 0 else "gapdh"
        rows.append({"name": name, "rna_type": rna_type, "cycle": f"nc{13 + (i // 2) % 2}",
                     "replicate": 1 + i // 4})
        for structure in structures:
            if structure == "rna":
                seg = random_blobs(rng, shape, 25, (0.8, 3.5))
            else:
                seg = random_blobs(rng, shape, 3, (1.5, 4.0), label_image=True)
                if i == 1:
                    seg[shape[0] // 2, 2, 2:-2] = 9  # a rod across the image
            raw = rng.integers(100, 4000, size=shape, dtype=np.uint16)
            raw[seg > 0] += 3000
            folder = root / structure
            (folder / "raw-data").mkdir(parents=True, exist_ok=True)
            (folder / "segmentations").mkdir(parents=True, exist_ok=True)
            tifffile.imwrite(folder / "raw-data" / f"{name}.tif", raw)
            tifffile.imwrite(folder / "segmentations" / f"{name}_seg.tif", seg)
    pd.DataFrame(rows).to_csv(root / "raw-data-metadata.csv", index=False)
    config = root / "pipeline.toml"
    config.write_text(
        f"""
[database]
name = "{database_name}"

[data]
data_dir = "."
structures = {list(structures)!r}

[scale]
xy = 0.1
z = 0.3

[distances]
workers = 1

[normalization]
method = 'total'   # the oracle of test_pipeline; method 'aperture' has its own test
lower_threshold = 1
upper_threshold = 20

[distribution]
distance_threshold = 2.0
step_size = 0.1
distance = 'voxel'   # the oracle of test_pipeline; 'centroid' has its own test
{toml_extra}
""".replace("'", '"'),
        encoding="utf-8",
    )
    return config
