"""The command line's shell: its table of commands, a fast start, and which errors are one line."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import tifffile

from rna_localization import cli
from rna_localization._errors import InputTypeError

from helpers import subcommands

HEAVY = ("numpy", "pandas", "scipy", "dask", "distributed", "matplotlib", "seaborn", "skimage",
         "psycopg2")


def _loaded_after(code: str) -> list[str]:
    """The heavy modules a fresh interpreter has imported after running `code`."""
    probe = (f"import sys\n{code}\n"
             f"print('loaded:', *[m for m in {HEAVY!r} if m in sys.modules])")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=120, check=True)
    last = done.stdout.splitlines()[-1]  # after any help text
    assert last.startswith("loaded:"), done.stdout
    return last.split()[1:]


def test_building_the_parser_imports_no_heavy_module():
    assert _loaded_after("import rna_localization.cli as c\nc.build_parser()") == []


@pytest.mark.parametrize("argv", [["--help"], ["extract", "--help"], ["run", "--help"],
                                  ["segment", "--help"], ["demo", "--help"]])
def test_help_imports_no_heavy_module(argv):
    code = ("from rna_localization.cli import main\n"
            f"try:\n    main({argv!r})\nexcept SystemExit as exit:\n    assert exit.code == 0\n")
    assert _loaded_after(code) == []


def test_the_public_api_is_still_importable_by_name():
    # The package's names are loaded on first use; each must still resolve.
    import rna_localization

    for name in rna_localization.__all__:
        assert callable(getattr(rna_localization, name)), name
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        rna_localization.nope  # noqa: B018


def test_every_command_of_the_parser_has_a_function():
    assert set(subcommands()) == set(cli.COMMANDS)
    assert all(callable(function) for function in cli.COMMANDS.values())


def test_a_bug_keeps_its_traceback(monkeypatch, tmp_path):
    """A TypeError that no user input explains (a bug) is raised, not printed as one line."""
    def buggy(args):
        return len(args.data_dir) + 1  # TypeError: a Path has no len()

    monkeypatch.setitem(cli.COMMANDS, "init", buggy)
    with pytest.raises(TypeError, match="has no len"):
        cli.main(["init", str(tmp_path)])


def test_a_bad_value_is_one_line(tmp_path, capsys):
    status = cli.main(["init", str(tmp_path / "missing")])
    assert status == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    assert err.count("\n") == 1
    assert "missing" in err


def test_a_file_of_the_wrong_kind_is_one_line_naming_it(dataset, capsys):
    """A float segmentation is the user's file, not a bug: one line naming it, exit status 2."""
    segmentation = dataset.parent / "rna" / "segmentations" / "img_01_seg.tif"
    tifffile.imwrite(segmentation, (tifffile.imread(segmentation) > 0).astype(np.float32))
    with pytest.raises(InputTypeError, match="img_01_seg.tif: segmentation must hold integers"):
        cli.COMMANDS["extract"](cli.build_parser().parse_args(["extract", "--config", str(dataset)]))
    capsys.readouterr()
    assert cli.main(["extract", "--config", str(dataset)]) == 2
    last = capsys.readouterr().err.rstrip("\n").split("\n")[-1]  # after the progress bar
    assert last.startswith("error: ")
    assert "img_01_seg.tif" in last
