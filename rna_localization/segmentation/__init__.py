"""RNA and centrosome segmentation built on the Allen Cell Segmenter's functions.

Tune in a playground notebook (:func:`rna_steps`, :func:`centrosome_steps` and
:mod:`.display`), save the parameters (``RnaParams.save``), then segment a
folder with them (:func:`segment_folder`, or ``rna-localization segment``).
"""

from .batch import (
    qc_overlay,
    segment_folder,
    segment_structure,
    workflow_for_structure,
    write_qc_page,
)
from .params import (
    WORKFLOWS,
    CentrosomeParams,
    RnaParams,
    load_params,
    microns_to_voxels,
    volume_to_voxels,
)
from .workflows import (
    DEFAULT_SPACING,
    SegmentationSteps,
    centrosome_steps,
    fill_holes,
    normalize_intensity,
    rna_steps,
    segment,
    segment_centrosomes,
    segment_rna,
    separate_touching,
    size_filter,
    smooth,
    split_objects,
    spot_filter,
)

__all__ = [
    "DEFAULT_SPACING",
    "WORKFLOWS",
    "CentrosomeParams",
    "RnaParams",
    "SegmentationSteps",
    "centrosome_steps",
    "fill_holes",
    "load_params",
    "microns_to_voxels",
    "normalize_intensity",
    "qc_overlay",
    "rna_steps",
    "segment",
    "segment_centrosomes",
    "segment_folder",
    "segment_rna",
    "segment_structure",
    "separate_touching",
    "size_filter",
    "smooth",
    "spot_filter",
    "split_objects",
    "volume_to_voxels",
    "workflow_for_structure",
    "write_qc_page",
]
