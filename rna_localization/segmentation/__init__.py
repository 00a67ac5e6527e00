"""RNA and centrosome segmentation: spots found in units of each image's own noise.

Tune in a playground notebook (:func:`rna_intermediates`, :func:`centrosome_intermediates` and
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
from .detection import find_spots, grow_objects, local_noise, noise_threshold, remove_background
from .params import (
    WORKFLOWS,
    CentrosomeParams,
    RnaParams,
    load_params,
    microns_to_voxels,
    volume_to_voxels,
)
from .quality import (
    MAX_OBJECT_FRACTION,
    MAX_OBJECTS_PER_UM3,
    ImplausibleSegmentationWarning,
    check_object_sizes,
    check_segmentation,
    object_sizes,
)
from .workflows import (
    DEFAULT_SPACING,
    Intermediates,
    centrosome_intermediates,
    rna_intermediates,
    segment,
    segment_centrosomes,
    segment_rna,
    separate_touching,
    size_filter,
)

__all__ = [
    "DEFAULT_SPACING",
    "MAX_OBJECTS_PER_UM3",
    "MAX_OBJECT_FRACTION",
    "WORKFLOWS",
    "CentrosomeParams",
    "ImplausibleSegmentationWarning",
    "RnaParams",
    "Intermediates",
    "centrosome_intermediates",
    "check_object_sizes",
    "check_segmentation",
    "find_spots",
    "grow_objects",
    "local_noise",
    "noise_threshold",
    "remove_background",
    "load_params",
    "microns_to_voxels",
    "object_sizes",
    "qc_overlay",
    "rna_intermediates",
    "segment",
    "segment_centrosomes",
    "segment_folder",
    "segment_rna",
    "segment_structure",
    "separate_touching",
    "size_filter",
    "volume_to_voxels",
    "workflow_for_structure",
    "write_qc_page",
]
