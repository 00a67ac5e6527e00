"""How ``label_images`` stores a label image: its object voxels as runs, not the volume.

A label image's objects fill a few percent of a stack. Stored densely (the
first release: the whole volume, zlib-compressed, ``labels_format`` NULL),
the blob grows with the volume and costs a whole-volume pass to write and
to read. Stored as runs, it grows with the object voxels only.

The ``runs`` format
-------------------
The object voxels, in C (scan) order, cut into runs: consecutive flat indices
with one label. A run is three unsigned integers: the gap since the previous
run's end (its start for the first), its length and its label, each array in
the smallest dtype that holds its values. The blob is a header
(:data:`_HEADER`: magic, number of runs, the three item sizes) followed by
the three arrays, little-endian, the whole zlib-compressed (level 1): gaps
and lengths repeat from one spot to the next and compress well. Encoding and
decoding are whole-array numpy operations, no loop over objects or runs.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

from ..objects import ObjectVoxels, smallest_label_dtype

__all__ = ["DENSE_FORMAT", "RUNS_FORMAT", "decode_dense", "decode_runs", "encode_runs"]

#: ``label_images.labels_format`` of the blobs :func:`encode_runs` writes.
RUNS_FORMAT = "runs"
#: What the first release wrote (``labels_format`` NULL): the whole volume, zlib.
DENSE_FORMAT = None

_MAGIC = b"RLV1"
_HEADER = struct.Struct("<4sQBBB")


def _smallest(values: np.ndarray) -> np.ndarray:
    largest = int(values.max()) if values.size else 0
    return values.astype(smallest_label_dtype(largest).newbyteorder("<"), copy=False)


def encode_runs(objects: ObjectVoxels) -> bytes:
    """The ``runs`` blob of a label image's object voxels.

    Parameters
    ----------
    objects : ObjectVoxels
        Flat indices ascending, and their labels.

    Returns
    -------
    bytes

    Examples
    --------
    >>> image = np.zeros((2, 3, 4), np.int32)
    >>> image[0, 1, 1:3] = 5; image[1, 2, 3] = 6
    >>> blob = encode_runs(ObjectVoxels.from_label_image(image))
    >>> bool((decode_runs(blob, image.shape).to_label_image() == image).all())
    True
    """
    voxels, labels = objects.voxels, objects.labels
    if voxels.size:
        breaks = np.flatnonzero((np.diff(voxels) != 1) | (labels[1:] != labels[:-1])) + 1
        starts = np.concatenate(([0], breaks))
        ends = np.concatenate((breaks, [voxels.size]))
        lengths = ends - starts
        first = voxels[starts]
        gaps = first - np.concatenate(([0], first[:-1] + lengths[:-1]))
        run_labels = labels[starts]
    else:
        gaps = lengths = run_labels = np.zeros(0, np.int64)
    arrays = [_smallest(gaps), _smallest(lengths), _smallest(run_labels)]
    header = _HEADER.pack(_MAGIC, len(gaps), *(a.dtype.itemsize for a in arrays))
    return header + zlib.compress(b"".join(a.tobytes() for a in arrays), 1)


def decode_runs(blob: bytes, shape) -> ObjectVoxels:
    """Inverse of :func:`encode_runs`: the object voxels of a label image of `shape`.

    A blob that is not in the ``runs`` format is a ValueError.
    """
    blob = bytes(blob)
    try:
        magic, n_runs, *sizes = _HEADER.unpack_from(blob)
    except struct.error:
        magic = None
    if magic != _MAGIC:
        msg = "label_images.labels is not in the 'runs' format (a damaged row?); extract the image again."
        raise ValueError(msg)
    body = zlib.decompress(blob[_HEADER.size :])
    arrays, offset = [], 0
    for size in sizes:
        dtype = np.dtype(f"<u{size}")
        arrays.append(np.frombuffer(body, dtype=dtype, count=n_runs, offset=offset))
        offset += n_runs * size
    gaps, lengths, run_labels = arrays
    lengths = lengths.astype(np.int64)
    total = int(lengths.sum())
    # The k-th object voxel lies k voxels past the background skipped before its run:
    # its run's start is that sum of gaps plus the run voxels before it.
    voxels = np.arange(total, dtype=np.int64) + np.repeat(np.cumsum(gaps.astype(np.int64)), lengths)
    labels = np.repeat(run_labels, lengths)
    if total and voxels[-1] >= int(np.prod(shape)):
        msg = f"label_images.labels reaches voxel {voxels[-1]}, outside a {tuple(shape)} image."
        raise ValueError(msg)
    return ObjectVoxels(tuple(int(s) for s in shape), voxels, labels)


def decode_dense(blob: bytes, dtype: str, shape) -> np.ndarray:
    """The first release's blob (the whole volume in `dtype`, zlib) as a label image."""
    flat = np.frombuffer(zlib.decompress(bytes(blob)), dtype=np.dtype(dtype))
    return flat.reshape(tuple(int(s) for s in shape))
