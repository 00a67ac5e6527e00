"""Separable filters shared among threads: the same as scipy's on the whole volume."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from scipy import ndimage

from rna_localization import _cores
from rna_localization._cores import SLAB_VOXELS, separable_in_threads

# Large enough to be cut into slabs (over 2 * SLAB_VOXELS voxels), thin along z as stacks are.
BIG = (6, 640, 1100)


def _gaussian_passes(sigma, truncate=3.0):
    def one(source, target, *, s, axis):
        ndimage.gaussian_filter1d(source, s, axis, output=target, mode="reflect", truncate=truncate)

    return [(axis, functools.partial(one, s=s, axis=axis)) for axis, s in enumerate(sigma) if s > 0]


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("sigma", [(1.2, 2.5, 2.5), (0.0, 6.0, 1.5)])
def test_gaussian_equals_scipy_on_the_whole_volume(threads, sigma):
    assert np.prod(BIG) > 2 * SLAB_VOXELS
    volume = np.random.default_rng(0).normal(100, 20, BIG).astype(np.float32)
    expected = ndimage.gaussian_filter(volume, sigma, mode="reflect", truncate=3.0)
    result = separable_in_threads(volume, _gaussian_passes(sigma), threads=threads)
    assert result.dtype == np.float32
    assert np.array_equal(result, expected)  # to the bit: the same lines, the same sums
    assert volume[0, 0, 0] != result[0, 0, 0]  # the input is left as it was


@pytest.mark.parametrize("threads", [1, 2])
def test_box_maximum_equals_scipy(threads):
    rng = np.random.default_rng(1)
    volume = (rng.random(BIG) > 0.9995).astype(np.uint8)
    size = (3, 9, 5)

    def one(source, target, *, n, axis):
        ndimage.maximum_filter1d(source, n, axis, output=target, mode="constant")

    passes = [(axis, functools.partial(one, n=n, axis=axis)) for axis, n in enumerate(size)]
    expected = ndimage.maximum_filter(volume, size=size, mode="constant")
    assert np.array_equal(separable_in_threads(volume, passes, threads=threads), expected)


def test_every_line_along_the_axis_is_whole_and_slabs_run_on_threads(monkeypatch):
    # Each pass sees slabs cut across another axis (the whole length along its own), and
    # with two threads the volume is cut into several.
    seen = []

    def record(source, target, *, axis):
        seen.append((axis, source.shape))
        target[...] = source

    volume = np.zeros(BIG, dtype=np.float32)
    passes = [(axis, functools.partial(record, axis=axis)) for axis in range(3)]
    separable_in_threads(volume, passes, threads=2)
    for axis in range(3):
        shapes = [shape for a, shape in seen if a == axis]
        assert len(shapes) == min(2 * _cores.SLABS_PER_THREAD, volume.size // SLAB_VOXELS) >= 2
        assert all(shape[axis] == BIG[axis] for shape in shapes)
        # The slabs tile the volume once.
        assert sum(np.prod(shape) for shape in shapes) == volume.size


def test_small_volumes_and_no_passes():
    volume = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    copy = separable_in_threads(volume, [], threads=2)
    assert np.array_equal(copy, volume)
    assert copy is not volume
    expected = ndimage.gaussian_filter(volume, 1.0, mode="reflect", truncate=3.0)
    result = separable_in_threads(volume, _gaussian_passes((1.0, 1.0, 1.0)), threads=2)
    assert np.array_equal(result, expected)


def _group(folder, files: dict) -> None:
    """A control group's folder with its files, as the kernel shows them."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text + "\n")


def test_cgroup_room_reads_v2_and_v1_limits(tmp_path):
    # A job's control groups: its room is the limit less the usage, plus the page cache it
    # could drop; no limit, no room taken.
    from rna_localization._cores import available_memory, cgroup_room

    proc, root = tmp_path / "cgroup", tmp_path / "sys"
    _group(root / "slurm" / "job_7", {
        "memory.max": "8589934592", "memory.current": "3000000000",
        "memory.stat": "anon 2000000000\nfile 1000000000\ninactive_file 600000000"})
    proc.write_text("0::/slurm/job_7\n")
    assert cgroup_room(proc, root) == 8589934592 - 3000000000 + 600000000
    _group(root / "slurm" / "job_7", {"memory.max": "max"})
    assert cgroup_room(proc, root) == float("inf")

    _group(root / "memory" / "job_8", {
        "memory.limit_in_bytes": "4294967296", "memory.usage_in_bytes": "1000000000",
        "memory.stat": "cache 500\ntotal_inactive_file 200000000"})
    proc.write_text("4:memory:/job_8\n3:cpuset:/\n0::/slurm/job_7\n")
    assert cgroup_room(proc, root) == 4294967296 - 1000000000 + 200000000
    _group(root / "memory" / "job_8", {"memory.limit_in_bytes": "9223372036854771712"})  # none
    assert cgroup_room(proc, root) == float("inf")
    assert cgroup_room(tmp_path / "missing", root) == float("inf")
    assert 0 < available_memory() < 1 << 50
