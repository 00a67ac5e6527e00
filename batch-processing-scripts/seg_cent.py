"""Segment every centrosome stack of a folder with the parameters tuned in playground_centrosomes.

    python batch-processing-scripts/seg_cent.py --input DIR --output DIR [--params FILE]
        [--xy-scale 0.065 --z-scale 0.2] [--suffix _seg] [--overwrite] [--workers N]

Existing segmentations are kept unless --overwrite; DIR/qc/index.html shows every result.
"""

import argparse
import sys

from rna_localization.segmentation import segment_folder

WORKFLOW = "centrosomes"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", required=True, help="folder of raw .tif stacks")
    parser.add_argument("--output", required=True, help="folder for <name><suffix>.tif masks")
    parser.add_argument("--params", help="parameter file saved by the playground (TOML)")
    parser.add_argument("--xy-scale", type=float, default=0.065, help="microns per pixel in x, y")
    parser.add_argument("--z-scale", type=float, default=0.2, help="microns per z-step")
    parser.add_argument("--suffix", default="_seg", help="appended to each image name")
    parser.add_argument("--overwrite", action="store_true", help="replace existing masks")
    parser.add_argument("--workers", type=int, default=1, help="processes (0: one per core)")
    args = parser.parse_args(argv)
    try:
        written = segment_folder(args.input, args.output, workflow=WORKFLOW, params=args.params,
                                 spacing=(args.z_scale, args.xy_scale, args.xy_scale),
                                 suffix=args.suffix, overwrite=args.overwrite, workers=args.workers)
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"{len(written)} segmentation(s) written to {args.output}; review {args.output}/qc/index.html")
    return 0


if __name__ == "__main__":
    sys.exit(main())
