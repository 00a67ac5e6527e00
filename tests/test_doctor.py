"""``rna-localization doctor`` on good and broken set-ups: every problem named with its fix."""

from __future__ import annotations

import re
import shutil

import pandas as pd
import pytest

from rna_localization.cli import main
from rna_localization.doctor import Finding, diagnose, format_findings


def _problems(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if not f.ok]


def _find(findings: list[Finding], what: str) -> Finding:
    matches = [f for f in findings if re.search(what, f.what)]
    assert len(matches) == 1, f"{what!r} in {[f.what for f in findings]}"
    return matches[0]


def test_good_data_set_has_no_problem(dataset, capsys):
    findings = diagnose(dataset)
    assert _problems(findings) == []
    _find(findings, r"^Python 3\.")
    _find(findings, r"^numpy \d")
    _find(findings, r"^pgserver \d")
    _find(findings, r"^config .*pipeline\.toml loads")
    _find(findings, r"^database 't_\w+' reachable at postgresql://")
    _find(findings, r"^rna: 4 raw stacks, each with a segmentation")
    _find(findings, r"^centrosomes: 4 raw stacks")
    _find(findings, r"^metadata CSV .*: 4 images, columns name, rna_type, cycle, replicate")
    assert main(["doctor", "--config", str(dataset)]) == 0
    out = capsys.readouterr().out
    assert "✗" not in out
    assert out.rstrip().endswith("no problems found")


def _remove_segmentation_folder(root):
    shutil.rmtree(root / "centrosomes" / "segmentations")


def _remove_one_segmentation(root):
    (root / "rna" / "segmentations" / "img_02_seg.tif").unlink()


def _one_image_in_two_files(root):
    import shutil

    seg = root / "rna" / "segmentations" / "img_02_seg.tif"
    shutil.copy(seg, seg.with_suffix(".TIFF"))


def _header_with_a_space(root):
    (root / "raw-data-metadata.csv").write_text("name,rna type\nimg_00,cen\n", encoding="utf-8")


def _latin1_csv(root):
    (root / "raw-data-metadata.csv").write_bytes("name,rna_type\nimg_00,caf\xe9\n".encode("latin-1"))


def _unknown_image_in_csv(root):
    path = root / "raw-data-metadata.csv"
    table = pd.read_csv(path)
    pd.concat([table, table.iloc[[0]].assign(name="ghost")]).to_csv(path, index=False)


def _misspelt_image_in_csv(root):
    path = root / "raw-data-metadata.csv"
    table = pd.read_csv(path)
    table.loc[table["name"] == "img_01", "name"] = "img_O1"  # a letter O for a zero
    table.to_csv(path, index=False)


def _group_by_column_missing(root):
    path = root / "raw-data-metadata.csv"
    pd.read_csv(path).drop(columns="rna_type").to_csv(path, index=False)


def _no_raw_data(root):
    shutil.rmtree(root / "rna" / "raw-data")


def _shape_mismatch(root):
    import numpy as np
    import tifffile

    tifffile.imwrite(root / "rna" / "segmentations" / "img_01_seg.tif", np.zeros((3, 5, 5), np.uint8),
                     photometric="minisblack")


@pytest.mark.parametrize(
    ("breakage", "what", "fix"),
    [
        (_remove_segmentation_folder, r"centrosomes has no segmentations/ folder",
         r"rna-localization segment --structure centrosomes"),
        (_remove_one_segmentation, r"rna: 1 raw stack\(s\) without a segmentation .*: img_02",
         r"segment --structure rna.*segmentation_file_suffix"),
        (_one_image_in_two_files, r"img_02_seg\.TIFF and img_02_seg\.tif in .* are both image",
         r"remove or rename one of them"),
        (_header_with_a_space, r"'rna type' is not a plain identifier", r"column names of letters"),
        (_latin1_csv, r"raw-data-metadata\.csv is not UTF-8", r"UTF-8"),
        (_unknown_image_in_csv, r"line 6: image 'ghost' is in no structure's raw-data/ folder",
         r"remove the row or add its stack"),
        (_misspelt_image_in_csv, r"line 3: image 'img_O1' is in no structure's raw-data/ folder",
         r"did you mean 'img_01'\?"),
        (_group_by_column_missing, r"normalization\.group_by = 'rna_type' is not a column",
         r"add the column or change normalization\.group_by"),
        (_no_raw_data, r"rna has no raw-data/ folder", r"put the raw stacks in .*rna/raw-data"),
        (_shape_mismatch, r"rna: segmentation and raw stack differ in shape for img_01",
         r"segment those raw stacks again"),
    ],
)
def test_each_problem_is_named_with_its_fix(dataset, breakage, what, fix):
    breakage(dataset.parent)
    finding = _find(diagnose(dataset, database=False), what)
    assert not finding.ok
    assert re.search(fix, finding.fix), finding.fix


def test_several_problems_are_all_reported_and_the_cli_exits_1(dataset, capsys):
    _remove_segmentation_folder(dataset.parent)
    _header_with_a_space(dataset.parent)
    findings = diagnose(dataset)
    assert len(_problems(findings)) == 2
    assert main(["doctor", "--config", str(dataset)]) == 1
    out = capsys.readouterr().out
    assert out.count("✗") == 2
    assert out.count("    fix: ") == 2
    assert "✗ " + _find(findings, "has no segmentations/ folder").what in out
    assert out.rstrip().endswith("2 problem(s) found")


def test_bad_config_is_a_problem_not_a_crash(dataset, capsys):
    dataset.write_text(dataset.read_text().replace("step_size = 0.1", "step_sise = 0.1"))
    findings = diagnose(dataset)
    problem = _find(findings, r"unknown key 'step_sise'.*Did you mean 'step_size'")
    assert not problem.ok
    assert "pipeline.toml" in problem.fix
    missing = diagnose(dataset.with_name("nothing.toml"))
    assert not _find(missing, r"config file .*nothing\.toml does not exist").ok
    assert main(["doctor", "--config", str(dataset)]) == 1
    assert "✗ unknown key" in capsys.readouterr().out


def test_unreachable_database_and_a_password_in_the_config_are_problems(dataset):
    url = "postgresql://me:s3cret@/demo?host=/nonexistent/socket"
    dataset.write_text(dataset.read_text().replace("[database]\n", f'[database]\nurl = "{url}"\n', 1))
    findings = diagnose(dataset)
    unreachable = _find(findings, r"database 'demo' is not reachable: .*connection to server on socket")
    assert "~/.pgpass" in unreachable.fix
    stored = _find(findings, r"database\.url in .* holds a password")
    assert "PGPASSWORD" in stored.fix
    assert "s3cret" not in format_findings(findings)
    assert _find(findings, r"^rna: 4 raw stacks").ok  # the data checks still ran
