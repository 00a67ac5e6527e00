"""From the microscope to the data layout: `import`, the voxel size files state, `init`.

Every test writes real files with tifffile (ImageJ hyperstacks, OME-TIFF) with
known pixels per channel and known voxel sizes, runs the real command line,
and compares what was written with what was put in.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
import tomllib
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile

from rna_localization import load_config, steps
from rna_localization.calibration import VoxelSizeWarning, same_voxel_size
from rna_localization.doctor import diagnose
from rna_localization.importing import parse_channels
from rna_localization.io import read_voxel_size, tiff_files, write_stack
from rna_localization.segmentation.batch import segment_folder

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = shutil.which("rna-localization") or str(Path(sys.executable).with_name("rna-localization"))
# The installed console script, or the same entry point through the module (an environment
# without the script, e.g. one made only to try the optional readers).
COMMAND = [SCRIPT] if Path(SCRIPT).is_file() else [sys.executable, "-m", "rna_localization.cli"]
VOXEL = (0.3, 0.11, 0.11)  # z, y, x microns: not the package's default, so a default cannot pass


def _cli(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([*COMMAND, *map(str, args)], capture_output=True, text=True, timeout=300,
                          check=False, cwd=cwd)


def _one_sentence(done: subprocess.CompletedProcess) -> str:
    assert done.returncode != 0, done.stdout
    assert done.stderr.startswith("error: "), done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    return done.stderr


def _channels(rng, n_channels, shape=(6, 20, 24), dtype=np.uint16) -> list[np.ndarray]:
    """One (Z, Y, X) stack per channel, each in its own value range so that a swap shows."""
    return [(rng.integers(0, 1000, size=shape) + 10_000 * c).astype(dtype) for c in range(n_channels)]


def _imagej_hyperstack(path, channels, *, voxel=VOXEL, time_point=False, unit="micron"):
    """Write channels as an ImageJ ZCYX (or TZCYX, T = 1) hyperstack with a calibration."""
    data = np.stack(channels, axis=1)  # Z, C, Y, X
    axes = "ZCYX"
    if time_point:
        data, axes = data[np.newaxis], "TZCYX"
    scale = {"micron": 1.0, "nm": 1000.0}[unit]
    tifffile.imwrite(path, data, imagej=True, resolution=(1 / (voxel[2] * scale), 1 / (voxel[1] * scale)),
                     metadata={"axes": axes, "spacing": voxel[0] * scale, "unit": unit})
    return path


def _ome_tiff(path, positions, voxels):
    """Write an OME-TIFF with one CZYX image per position; x/y sizes in nm to test units."""
    with tifffile.TiffWriter(path, ome=True) as tif:
        for channels, (z, y, x) in zip(positions, voxels, strict=True):
            tif.write(np.stack(channels), metadata={
                "axes": "CZYX", "PhysicalSizeZ": z, "PhysicalSizeZUnit": "µm",
                "PhysicalSizeY": y * 1000, "PhysicalSizeYUnit": "nm",
                "PhysicalSizeX": x * 1000, "PhysicalSizeXUnit": "nm",
            })
    return path


def _assert_voxel(path, expected):
    found = read_voxel_size(path)
    assert found is not None, path
    np.testing.assert_allclose(found, expected, rtol=1e-6)


# ====================================================================== import
@pytest.mark.parametrize("time_point", [False, True], ids=["ZCYX", "TZCYX"])
@pytest.mark.parametrize("dtype", [np.uint16, np.float32])
def test_imagej_hyperstack_channels_land_in_their_structures(tmp_path, time_point, dtype):
    rng = np.random.default_rng(1)
    channels = _channels(rng, 3, dtype=dtype)
    source = _imagej_hyperstack(tmp_path / "embryo 1.tif", channels, time_point=time_point)
    data = tmp_path / "data"
    done = _cli("import", source, "--channels", "rna=2,centrosomes=0", "--data-dir", data)
    assert done.returncode == 0, done.stderr
    for structure, channel in [("rna", 2), ("centrosomes", 0)]:
        written = data / structure / "raw-data" / "embryo 1.tif"
        pixels = tifffile.imread(written)
        assert pixels.shape == (6, 20, 24)
        assert pixels.dtype == dtype
        np.testing.assert_array_equal(pixels, channels[channel])
        _assert_voxel(written, VOXEL)
    # Channel 1 was not asked for: no folder holds it.
    assert sorted(p.name for p in data.iterdir()) == ["centrosomes", "raw-data-metadata.csv", "rna"]
    assert "z 0.3, xy 0.11 µm" in done.stdout


def test_ome_tiff_positions_become_one_image_each_with_their_own_voxel_size(tmp_path):
    rng = np.random.default_rng(2)
    positions = [_channels(rng, 2), _channels(rng, 2)]
    voxels = [VOXEL, (0.25, 0.1, 0.1)]
    source = _ome_tiff(tmp_path / "scan.ome.tif", positions, voxels)
    data = tmp_path / "data"
    done = _cli("import", source, "--channels", "rna=1,centrosomes=0", "--data-dir", data)
    assert done.returncode == 0, done.stderr
    for k in (0, 1):
        for structure, channel in [("rna", 1), ("centrosomes", 0)]:
            written = data / structure / "raw-data" / f"scan_s{k}.tif"
            np.testing.assert_array_equal(tifffile.imread(written), positions[k][channel])
            _assert_voxel(written, voxels[k])
    table = pd.read_csv(data / "raw-data-metadata.csv", dtype=str)
    assert table.to_dict("records") == [
        {"name": "scan_s0", "source_file": "scan.ome.tif", "series": "0"},
        {"name": "scan_s1", "source_file": "scan.ome.tif", "series": "1"},
    ]
    # Two voxel sizes in one import: said, since the pipeline uses one.
    assert "different voxel sizes" in done.stderr


def test_metadata_rows_are_appended_once_and_a_second_run_skips(tmp_path):
    rng = np.random.default_rng(3)
    first = _imagej_hyperstack(tmp_path / "a.tif", _channels(rng, 2))
    second_channels = _channels(rng, 2)
    second = _imagej_hyperstack(tmp_path / "b.tif", second_channels, unit="nm")
    data = tmp_path / "data"
    data.mkdir()
    # The user's CSV already lists image a with conditions; text such as "007" must survive.
    (data / "raw-data-metadata.csv").write_text("name,rna_type,replicate\na,cen,007\n")
    args = ["import", first, second, "--channels", "rna=0,centrosomes=1", "--data-dir", data]
    assert _cli(*args).returncode == 0
    table = pd.read_csv(data / "raw-data-metadata.csv", dtype=str, keep_default_na=False)
    assert table.to_dict("records") == [
        {"name": "a", "rna_type": "cen", "replicate": "007", "source_file": "a.tif", "series": "0"},
        {"name": "b", "rna_type": "", "replicate": "", "source_file": "b.tif", "series": "0"},
    ]
    _assert_voxel(data / "rna" / "raw-data" / "b.tif", VOXEL)  # nm in the source, µm out
    # Again: nothing rewritten (a stack edited since stays as it is), no row duplicated.
    edited = data / "rna" / "raw-data" / "b.tif"
    tifffile.imwrite(edited, np.zeros((2, 2, 2), np.uint16))
    again = _cli(*args)
    assert again.returncode == 0, again.stderr
    assert "0 image(s) imported, 2 skipped" in again.stdout
    assert tifffile.imread(edited).shape == (2, 2, 2)
    assert pd.read_csv(data / "raw-data-metadata.csv", dtype=str, keep_default_na=False).equals(table)
    # --overwrite writes it again from the source.
    assert _cli(*args, "--overwrite").returncode == 0
    np.testing.assert_array_equal(tifffile.imread(edited), second_channels[0])


def test_wrong_channel_index_is_one_sentence_and_nothing_is_written(tmp_path):
    rng = np.random.default_rng(4)
    good = _imagej_hyperstack(tmp_path / "good.tif", _channels(rng, 3))
    two = _imagej_hyperstack(tmp_path / "two.tif", _channels(rng, 2))
    data = tmp_path / "data"
    err = _one_sentence(_cli("import", good, two, "--channels", "rna=0,centrosomes=2",
                             "--data-dir", data))
    assert re.search(r"two\.tif has no channel 2 \(for centrosomes\): it has 2 channel\(s\), "
                     r"numbered 0 to 1", err), err
    # good.tif was fine, but the command stops before writing anything.
    assert not data.exists() or not any(data.rglob("*"))


@pytest.mark.parametrize(("shape", "axes"), [((20, 24), "YX"), ((3, 20, 24), "CYX")])
def test_2d_file_is_refused_in_one_sentence(tmp_path, shape, axes):
    path = tmp_path / "plane.tif"
    tifffile.imwrite(path, np.ones(shape, np.uint16), imagej=True, metadata={"axes": axes})
    err = _one_sentence(_cli("import", path, "--channels", "rna=0", "--data-dir", tmp_path / "d"))
    assert f"{path} is a 2D image" in err
    assert "z-stack is expected" in err
    assert not (tmp_path / "d").exists()


def test_time_series_and_unknown_formats_are_refused(tmp_path):
    path = tmp_path / "movie.tif"
    tifffile.imwrite(path, np.ones((2, 4, 3, 8, 8), np.uint16), imagej=True, metadata={"axes": "TZCYX"})
    err = _one_sentence(_cli("import", path, "--channels", "rna=0", "--data-dir", tmp_path / "d"))
    assert "movie.tif is a time series (2 time points" in err
    png = tmp_path / "figure.png"
    png.write_bytes(b"\x89PNG\r\n")
    err = _one_sentence(_cli("import", png, "--channels", "rna=0", "--data-dir", tmp_path / "d"))
    assert "figure.png is not a format the importer reads" in err
    assert ".czi" in err


def test_microscope_files_where_tiffs_belong_name_the_import_command(tmp_path):
    # .czi files put straight into raw-data/: not "0 segmentations written", nor "no .tif files".
    data = tmp_path / "data"
    raw = data / "rna" / "raw-data"
    raw.mkdir(parents=True)
    for name in ("a.czi", "b.CZI", "notes.txt"):
        (raw / name).write_bytes(b"not read")
    (data / "raw-data-metadata.csv").write_text("name\na\nb\n", encoding="utf-8")
    toml = data / "pipeline.toml"
    toml.write_text('[data]\ndata_dir = "."\nstructures = ["rna"]\n', encoding="utf-8")
    expected = (f"{raw} holds no TIFF stack but 2 microscope file(s) the pipeline does not read "
                f"directly (a.czi, b.CZI); convert them into one single-channel TIFF per image "
                f"and structure with `rna-localization import {raw}/*.CZI {raw}/*.czi "
                f"--channels rna=0,centrosomes=1 --data-dir DATA_DIR`")
    for command in (["segment", "--config", toml], ["extract", "--config", toml],
                    ["init", data, "--force"]):
        assert expected in _one_sentence(_cli(*command)), command
    assert not (data / "rna" / "segmentations").exists()
    assert toml.read_text(encoding="utf-8").startswith("[data]")  # init wrote nothing
    found = [f for f in diagnose(toml, database=False) if not f.ok]
    assert found[0].what == expected.split(";")[0]
    assert found[0].fix.startswith("convert them into one single-channel TIFF")
    # Beside TIFF stacks they are not images; an empty folder has none.
    write_stack(raw / "c.tif", np.zeros((2, 4, 4), np.uint16))
    assert list(tiff_files(raw)) == ["c"]
    assert tiff_files(tmp_path / "data" / "rna") == {}


# The command as it runs where bioio and its plugins are not installed: importing them fails.
WITHOUT_BIOIO = ("import sys\n"
                 "for name in ('bioio', 'bioio_czi', 'bioio_nd2', 'bioio_lif'): sys.modules[name] = None\n"
                 "from rna_localization.cli import main\n"
                 "sys.exit(main(sys.argv[1:]))")


@pytest.mark.parametrize(("suffix", "plugin"), [(".czi", "bioio-czi"), (".nd2", "bioio-nd2"),
                                                (".lif", "bioio-lif")])
def test_czi_nd2_lif_without_bioio_name_what_to_install(tmp_path, suffix, plugin):
    path = tmp_path / f"embryo{suffix}"
    path.write_bytes(b"not read: the readers are checked first")
    done = subprocess.run([sys.executable, "-c", WITHOUT_BIOIO, "import", str(path), "--channels",
                           "rna=0", "--data-dir", str(tmp_path / "d")],
                          capture_output=True, text=True, timeout=300, check=False)
    err = _one_sentence(done)
    assert f"pip install 'rna_localization[formats]' (or: pip install bioio {plugin})" in err


@pytest.mark.skipif(importlib.util.find_spec("bioio_czi") is None
                    or importlib.util.find_spec("pylibCZIrw") is None,
                    reason="needs the 'formats' extra (bioio-czi, which brings pylibCZIrw to write a CZI)")
def test_czi_channels_land_in_their_structures_with_the_voxel_size(tmp_path):
    from pylibCZIrw import czi as pyczi

    rng = np.random.default_rng(9)
    channels = _channels(rng, 2)
    source = tmp_path / "embryo.czi"
    with pyczi.create_czi(str(source)) as czi:
        for c, stack in enumerate(channels):
            for z, plane in enumerate(stack):
                czi.write(plane[..., np.newaxis], plane={"C": c, "Z": z, "T": 0})
        # CZI stores the scaling in meters.
        czi.write_metadata(scale_x=VOXEL[2] * 1e-6, scale_y=VOXEL[1] * 1e-6, scale_z=VOXEL[0] * 1e-6)
    data = tmp_path / "data"
    done = _cli("import", source, "--channels", "rna=1,centrosomes=0", "--data-dir", data)
    assert done.returncode == 0, done.stderr
    for structure, channel in [("rna", 1), ("centrosomes", 0)]:
        written = data / structure / "raw-data" / "embryo.tif"
        np.testing.assert_array_equal(tifffile.imread(written), channels[channel])
        _assert_voxel(written, VOXEL)
    assert pd.read_csv(data / "raw-data-metadata.csv", dtype=str).to_dict("records") == [
        {"name": "embryo", "source_file": "embryo.czi", "series": "0"}]


def test_two_files_becoming_one_image_name_are_refused(tmp_path):
    rng = np.random.default_rng(5)
    (tmp_path / "x").mkdir()
    one = _imagej_hyperstack(tmp_path / "e.tif", _channels(rng, 1))
    other = _ome_tiff(tmp_path / "x" / "e.ome.tif", [_channels(rng, 1)], [VOXEL])
    err = _one_sentence(_cli("import", one, other, "--channels", "rna=0", "--data-dir", tmp_path / "d"))
    assert "would both become image 'e'" in err


def test_a_name_imported_from_another_file_is_refused(tmp_path):
    rng = np.random.default_rng(10)
    data = tmp_path / "data"
    first = _imagej_hyperstack(tmp_path / "e.tif", _channels(rng, 1))
    assert _cli("import", first, "--channels", "rna=0", "--data-dir", data).returncode == 0
    kept = tifffile.imread(data / "rna" / "raw-data" / "e.tif")
    (tmp_path / "x").mkdir()
    other = _ome_tiff(tmp_path / "x" / "e.ome.tif", [_channels(rng, 1)], [VOXEL])
    err = _one_sentence(_cli("import", other, "--channels", "rna=0", "--data-dir", data,
                             "--overwrite"))
    assert "image 'e' of" in err
    assert "is already in" in err
    assert "imported from e.tif" in err
    np.testing.assert_array_equal(tifffile.imread(data / "rna" / "raw-data" / "e.tif"), kept)


@pytest.mark.parametrize(("text", "message"), [
    ("rna", r"'rna' is not structure=index"),
    ("rna=-1", r"'rna=-1' is not structure=index"),
    ("rna=0,rna=1", r"names structure 'rna' twice"),
    ("rna=0,centrosomes=0", r"gives channel 0 to two structures"),
    ("my rna=0", r"'my rna' is not a plain identifier"),
    ("images=0", r"'images' is reserved"),
])
def test_bad_channel_specifications_are_named(text, message):
    with pytest.raises(ValueError, match=message):
        parse_channels(text)


def test_parse_channels_reads_pairs_in_order():
    assert parse_channels("rna=2, centrosomes=0,nuclei=1") == {"rna": 2, "centrosomes": 0, "nuclei": 1}


# ================================================================= voxel size
def test_read_voxel_size_from_imagej_ome_and_tifffile_metadata(tmp_path):
    rng = np.random.default_rng(6)
    nm = _imagej_hyperstack(tmp_path / "nm.tif", _channels(rng, 2), voxel=(0.2, 0.065, 0.065), unit="nm")
    np.testing.assert_allclose(read_voxel_size(nm), (0.2, 0.065, 0.065), rtol=1e-6)
    ome = _ome_tiff(tmp_path / "two.ome.tif", [_channels(rng, 1), _channels(rng, 1)],
                    [VOXEL, (0.5, 0.2, 0.2)])
    np.testing.assert_allclose(read_voxel_size(ome, series=1), (0.5, 0.2, 0.2), rtol=1e-6)
    # ImageJ leaves spacing out when z-steps are 1 unit: Fiji reads 1 µm, and so do we.
    unit_depth = tmp_path / "depth1.tif"
    tifffile.imwrite(unit_depth, np.zeros((3, 8, 8), np.uint8), imagej=True, resolution=(10, 10),
                     metadata={"axes": "ZYX", "unit": "micron"})
    np.testing.assert_allclose(read_voxel_size(unit_depth), (1.0, 0.1, 0.1))
    # A dtype ImageJ cannot hold: write_stack falls back to tifffile's own metadata.
    wide = write_stack(tmp_path / "wide.tif", np.zeros((3, 8, 8), np.int32), spacing=(0.4, 0.09, 0.08))
    np.testing.assert_allclose(read_voxel_size(wide), (0.4, 0.09, 0.08), rtol=1e-6)
    # Resolution without a unit of length is no calibration.
    plain = tmp_path / "plain.tif"
    tifffile.imwrite(plain, np.zeros((3, 8, 8), np.uint16), photometric="minisblack")
    assert read_voxel_size(plain) is None
    pixels = tmp_path / "pixels.tif"
    tifffile.imwrite(pixels, np.zeros((3, 8, 8), np.uint16), imagej=True, resolution=(10, 10),
                     metadata={"axes": "ZYX", "unit": "pixel", "spacing": 2})
    assert read_voxel_size(pixels) is None


def test_same_voxel_size_is_within_one_percent():
    assert same_voxel_size((0.2, 0.065, 0.065), (0.2, 0.0656, 0.0656))
    assert not same_voxel_size((0.2, 0.065, 0.065), (0.2, 0.0657, 0.0657))
    assert not same_voxel_size((2.0, 0.065, 0.065), (0.2, 0.065, 0.065))


def _calibrate(data_dir: Path, voxel) -> None:
    """Rewrite every raw stack of a data set with `voxel` as its calibration, pixels unchanged."""
    for path in data_dir.glob("*/raw-data/*.tif"):
        write_stack(path, tifffile.imread(path), spacing=voxel)


def _voxel_warnings(record) -> list[str]:
    return [str(w.message) for w in record if issubclass(w.category, VoxelSizeWarning)]


# The datagen data set's pipeline.toml says [scale] xy = 0.1, z = 0.3.
CONFIG_VOXEL = (0.3, 0.1, 0.1)


def test_extract_warns_when_the_files_say_ten_times_the_config(dataset):
    _calibrate(dataset.parent, (3.0, 1.0, 1.0))
    done = _cli("extract", "--config", dataset)
    assert done.returncode == 0, done.stderr
    # One warning for the 8 raw stacks (2 structures), naming them and both voxel sizes.
    found = re.findall(r"warning: 8 files \((.*?) and 5 more\) state a voxel size of z 3, xy 1 µm "
                       r"but \[scale\] in (\S+) says z 0\.3, xy 0\.1 µm", done.stderr)
    assert len(found) == 1, done.stderr
    assert "rna/raw-data/img_00.tif" in found[0][0]
    assert found[0][1] == str(dataset)


def test_extract_is_silent_when_the_files_agree(dataset):
    _calibrate(dataset.parent, (0.3, 0.1002, 0.1002))  # 0.2% apart: the same
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        steps.extract(load_config(dataset))
    assert _voxel_warnings(record) == []


def test_segment_warns_about_the_files_voxel_size(dataset):
    _calibrate(dataset.parent, (3.0, 1.0, 1.0))
    done = _cli("segment", "--config", dataset, "--structure", "rna", "--overwrite", "--workers", "1")
    assert done.returncode == 0, done.stderr
    assert re.search(r"warning: 4 files \(.*rna/raw-data/img_00\.tif.*\) state a voxel size of "
                     r"z 3, xy 1 µm but \[scale\] in .* says z 0\.3, xy 0\.1 µm", done.stderr), done.stderr
    # The config wins: the masks carry [scale]'s voxel size.
    _assert_voxel(dataset.parent / "rna" / "segmentations" / "img_00_seg.tif", CONFIG_VOXEL)
    _calibrate(dataset.parent, CONFIG_VOXEL)
    agreed = _cli("segment", "--config", dataset, "--structure", "rna", "--overwrite", "--workers", "1")
    assert agreed.returncode == 0, agreed.stderr
    assert "voxel size" not in agreed.stderr


def test_doctor_calls_a_tenfold_voxel_size_an_error(dataset):
    _calibrate(dataset.parent, (0.3, 1.0, 1.0))
    findings = diagnose(dataset, database=False)
    problems = [f for f in findings if not f.ok and "voxel size" in f.what]
    assert len(problems) == 2  # rna's and centrosomes' raw stacks, each structure checked on its own
    assert all("z 0.3, xy 1 µm" in f.what and "z 0.3, xy 0.1 µm" in f.what for f in problems)
    assert any("centrosomes/raw-data/img_00.tif" in f.what for f in problems)
    assert all("correct [scale]" in f.fix for f in problems)
    done = _cli("doctor", "--config", dataset)
    assert done.returncode == 1
    assert "✗ 4 files (" in done.stdout
    # Masks written at another voxel size are an error too.
    _calibrate(dataset.parent, CONFIG_VOXEL)
    write_stack(dataset.parent / "rna" / "segmentations" / "img_01_seg.tif",
                tifffile.imread(dataset.parent / "rna" / "segmentations" / "img_01_seg.tif"),
                spacing=(0.2, 0.065, 0.065))
    problems = [f for f in diagnose(dataset, database=False) if not f.ok]
    assert len(problems) == 1
    assert "img_01_seg.tif states a voxel size of z 0.2, xy 0.065 µm" in problems[0].what
    assert "segment these images again" in problems[0].fix


def test_doctor_finds_nothing_when_the_files_agree(dataset):
    _calibrate(dataset.parent, CONFIG_VOXEL)
    findings = diagnose(dataset, database=False)
    assert [f.what for f in findings if not f.ok] == []
    assert any(f.ok and "states a voxel size other than [scale]'s" in f.what for f in findings)


def _small_stacks(folder: Path, voxels) -> None:
    rng = np.random.default_rng(7)
    folder.mkdir(parents=True)
    for i, voxel in enumerate(voxels):
        image = rng.normal(100, 5, size=(8, 32, 32)).astype(np.float32)
        image[4, 10 + i, 12] += 400
        if voxel is None:
            tifffile.imwrite(folder / f"s{i}.tif", image)
        else:
            write_stack(folder / f"s{i}.tif", image, spacing=voxel)


def test_batch_script_takes_the_files_voxel_size_not_a_default(tmp_path):
    _small_stacks(tmp_path / "raw", [VOXEL, VOXEL])
    script = ROOT / "batch-processing-scripts" / "seg_rna.py"
    done = subprocess.run([sys.executable, script, "--input", tmp_path / "raw", "--output",
                           tmp_path / "seg"], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert "voxel size" not in done.stderr
    _assert_voxel(tmp_path / "seg" / "s0_seg.tif", VOXEL)
    # A scale typed 10x off the files is used, and said.
    typo = subprocess.run([sys.executable, script, "--input", tmp_path / "raw", "--output",
                           tmp_path / "typo", "--xy-scale", "1.1", "--z-scale", "0.3"],
                          capture_output=True, text=True, timeout=300, check=False)
    assert typo.returncode == 0, typo.stderr
    assert re.search(r"warning: 2 files .* state a voxel size of z 0\.3, xy 0\.11 µm but "
                     r"--xy-scale/--z-scale says z 0\.3, xy 1\.1 µm", typo.stderr), typo.stderr
    _assert_voxel(tmp_path / "typo" / "s0_seg.tif", (0.3, 1.1, 1.1))


def test_segment_folder_without_a_voxel_size_anywhere_says_it_uses_the_default(tmp_path):
    _small_stacks(tmp_path / "raw", [None])
    with pytest.warns(VoxelSizeWarning, match=r"no stack in .*raw states one; the default "
                                              r"z 0\.2, xy 0\.065 µm is used"):
        segment_folder(tmp_path / "raw", tmp_path / "seg", workflow="rna", qc=False)
    _assert_voxel(tmp_path / "seg" / "s0_seg.tif", (0.2, 0.065, 0.065))


def test_segment_folder_names_the_stack_that_differs_from_the_others(tmp_path):
    _small_stacks(tmp_path / "raw", [VOXEL, VOXEL, (0.3, 0.22, 0.22)])
    with pytest.warns(VoxelSizeWarning, match=r"s2\.tif states a voxel size of z 0\.3, xy 0\.22 µm "
                                              r"but most stacks in .* says z 0\.3, xy 0\.11 µm"):
        segment_folder(tmp_path / "raw", tmp_path / "seg", workflow="rna", qc=False)
    _assert_voxel(tmp_path / "seg" / "s2_seg.tif", VOXEL)


# ======================================================================= init
def test_init_writes_a_config_that_loads_and_passes_doctor(tmp_path):
    from rna_localization.synthetic import simulate_dataset

    data = simulate_dataset(tmp_path / "sim", n_images=2, shape=(14, 64, 64))
    simulated = tomllib.loads((data / "pipeline.toml").read_text())  # the simulator's own settings
    before = (data / "pipeline.toml").read_text()
    assert "pipeline.toml exists; pass --force" in _one_sentence(_cli("init", data))
    assert (data / "pipeline.toml").read_text() == before

    done = _cli("init", data, "--force")
    assert done.returncode == 0, done.stderr
    config = load_config(data / "pipeline.toml")
    assert config.data.data_dir == data
    assert config.data.structures == ("centrosomes", "rna")
    assert config.data.segmentation_file_suffix == "_seg"
    assert config.scale.xy == pytest.approx(simulated["scale"]["xy"], rel=1e-5)
    assert config.scale.z == pytest.approx(simulated["scale"]["z"], rel=1e-5)
    assert (config.distances.structure_1, config.distances.structure_2) == ("rna", "centrosomes")
    assert config.normalization.group_by == "rna_type"
    text = (data / "pipeline.toml").read_text()
    assert "# Columns found: name, rna_type, cycle, replicate." in text
    assert [f.what for f in diagnose(data / "pipeline.toml", database=False) if not f.ok] == []


def test_import_then_init_carries_the_files_voxel_size_into_the_config(tmp_path):
    rng = np.random.default_rng(8)
    source = _imagej_hyperstack(tmp_path / "e.tif", _channels(rng, 2))
    data = tmp_path / "data"
    assert _cli("import", source, "--channels", "rna=0,nuclei=1", "--data-dir", data).returncode == 0
    out = tmp_path / "configs" / "e.toml"
    done = _cli("init", data, "--out", out)
    assert done.returncode == 0, done.stderr
    config = load_config(out)
    assert config.data.data_dir == data.resolve()
    assert config.data.structures == ("nuclei", "rna")
    assert (config.scale.z, config.scale.xy) == (pytest.approx(0.3), pytest.approx(0.11))
    assert (config.distances.structure_1, config.distances.structure_2) == ("rna", "nuclei")
    assert config.normalization.group_by == "name"  # no RNA column yet: one reference per image


def test_init_without_any_voxel_size_writes_the_defaults_and_says_so(dataset):
    done = _cli("init", dataset.parent, "--out", dataset.with_name("new.toml"))
    assert done.returncode == 0, done.stderr
    assert "no raw stack states its voxel size" in done.stderr
    assert "CHECK THEM" in dataset.with_name("new.toml").read_text()
    config = load_config(dataset.with_name("new.toml"))
    assert (config.scale.z, config.scale.xy) == (0.2, 0.065)


def test_init_refuses_a_folder_without_structures(tmp_path):
    (tmp_path / "empty").mkdir()
    err = _one_sentence(_cli("init", tmp_path / "empty"))
    assert "holds a raw-data/ folder" in err
