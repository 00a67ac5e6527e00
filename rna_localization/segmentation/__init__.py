"""RNA and centrosome segmentation: spots found in units of each image's own noise.

Tune in a playground notebook (:func:`segment_intermediates` and :mod:`.display`),
save the parameters (``SegmentationParams.save``), then segment a folder with them (:func:`segment_folder`, or ``rna-localization segment``).
"""

from .batch import (
    qc_overlay,
    segment_folder,
    segment_structure,
    workflow_for_structure,
    write_qc_page,
)
from .detection import (
    face_noise_profile,
    find_spots,
    grow_objects,
    local_noise,
    noise_threshold,
    remove_background,
    split_blended_spots,
    spot_shape,
)
from .params import (
    PRESETS,
    WORKFLOWS,
    SegmentationParams,
    load_params,
    microns_to_voxels,
    volume_to_voxels,
)
from .quality import (
    MAX_OBJECT_FRACTION,
    MAX_OBJECTS_PER_UM3,
    FaintSpotsWarning,
    ImplausibleSegmentationWarning,
    LargeObjectsRemovedWarning,
    check_clipped,
    check_object_sizes,
    check_segmentation,
    object_sizes,
)
from .workflows import (
    DEFAULT_SPACING,
    Intermediates,
    segment,
    segment_intermediates,
    separate_touching,
    size_filter,
)

__all__ = [
    "DEFAULT_SPACING",
    "MAX_OBJECTS_PER_UM3",
    "MAX_OBJECT_FRACTION",
    "PRESETS",
    "WORKFLOWS",
    "FaintSpotsWarning",
    "ImplausibleSegmentationWarning",
    "Intermediates",
    "LargeObjectsRemovedWarning",
    "SegmentationParams",
    "check_clipped",
    "check_object_sizes",
    "check_segmentation",
    "face_noise_profile",
    "find_spots",
    "grow_objects",
    "load_params",
    "local_noise",
    "microns_to_voxels",
    "noise_threshold",
    "object_sizes",
    "qc_overlay",
    "remove_background",
    "segment",
    "segment_folder",
    "segment_intermediates",
    "segment_structure",
    "separate_touching",
    "size_filter",
    "split_blended_spots",
    "spot_shape",
    "volume_to_voxels",
    "workflow_for_structure",
    "write_qc_page",
]
