"""Segment every centrosome stack of a folder with the parameters tuned in playground_centrosomes.

    python batch-processing-scripts/seg_cent.py --input DIR --output DIR [--params FILE]
        [--xy-scale 0.065 --z-scale 0.2 | --config pipeline.toml] [--suffix _seg]
        [--overwrite] [--workers N]

The voxel size is --xy-scale/--z-scale, else [scale] of --config, else the one the stacks
state (a warning names any stack that states another, and says so if none states one).
Existing segmentations are kept unless --overwrite; DIR/qc/index.html shows every result.
The same as `rna-localization segment --structure ... --workflow FILE` on a data directory.
"""

import sys

from rna_localization.segmentation.batch import script_main

if __name__ == "__main__":
    sys.exit(script_main("centrosomes", description=__doc__.splitlines()[0]))
