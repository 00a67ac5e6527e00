"""Config keys of the figures, and where a notebook's settings come from."""

from __future__ import annotations

from pathlib import Path

import pytest

from rna_localization import Config, load_config
from rna_localization.config import describe_settings


def _write(folder: Path, text: str) -> Path:
    path = folder / "pipeline.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_plot_row_is_read_and_checked(tmp_path):
    config = load_config(_write(tmp_path, '[data]\ndata_dir = "."\n[plot]\ncol = "cycle"\nrow = "replicate"\n'))
    assert (config.plot.col, config.plot.row) == ("cycle", "replicate")
    assert Config.from_flat(data_dir=".").plot.row == ""
    with pytest.raises(ValueError, match=r"plot\.row and plot\.col are both 'cycle'"):
        Config.from_flat(data_dir=".", col="cycle", row="cycle")
    with pytest.raises(ValueError, match=r"plot\.row 'cell cycle' is not a plain identifier"):
        Config.from_flat(data_dir=".", row="cell cycle")


def test_settings_from_the_cell(tmp_path):
    cell = {"data_dir": str(tmp_path), "xy": 0.1}
    assert describe_settings(Config.from_flat(**cell), cell) == (
        "Settings: from the parameter cell (config_path is None).")


def test_settings_from_a_file_name_the_cell_values_it_overrides(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    config = load_config(_write(data, (
        '[database]\nurl = "postgresql://me:secret@db.example.org/lab"\nname = "lab"\n'
        '[data]\ndata_dir = "."\n[scale]\nxy = 0.1\n'
        '[distribution]\ndistance_threshold = { column = "cycle", nc13 = 4.0, nc14 = 3.0 }\n'
        '[plot]\ncol = "cycle"\n')))
    cell = {
        "database_url": "", "database_name": "demo", "data_dir": "data", "xy": 0.065, "z": 0.2,
        "structures": ["rna", "centrosomes"], "distance_threshold": 5.0, "col": "", "row": "",
        "dpi": 600,
    }
    lines = describe_settings(config, cell, base_dir=tmp_path).splitlines()
    assert lines[0] == (f"Settings: every value comes from {data / 'pipeline.toml'} (config_path is "
                        f"set); the values in the parameter cell are not used.")
    assert lines[1:] == [
        "The file's value, where the cell differs:",
        "  database_url: the file's (printed below as the database address)",
        '  database_name = "lab"   (the cell has "demo")',
        "  xy = 0.1   (the cell has 0.065)",
        "  distance_threshold = {'column': 'cycle', 'nc13': 4.0, 'nc14': 3.0}   (the cell has 5.0)",
        '  col = "cycle"   (the cell has "")',
    ]  # data_dir "data" from tmp_path is the file's folder: the same; z, structures, dpi agree
    assert "secret" not in "\n".join(lines)


def test_settings_from_a_file_that_agrees_with_the_cell(tmp_path):
    config = load_config(_write(tmp_path, '[data]\ndata_dir = "."\n[distribution]\n'
                                          'distance_threshold = "none"\n'))
    cell = {"data_dir": str(tmp_path), "xy": 0.065, "hue": "", "distance_threshold": "none",
            "structures": ["rna", "centrosomes"]}
    message = describe_settings(config, cell)
    assert message.endswith("the values in the parameter cell are not used. They agree with the file.")
    cell["distance_threshold"] = 5.0
    assert describe_settings(config, cell).endswith(
        '  distance_threshold = "none"   (the cell has 5.0)')


@pytest.mark.parametrize("dpi", [0, 5, 1201, 60000])
def test_dpi_out_of_range_is_named(tmp_path, dpi):
    path = tmp_path / "pipeline.toml"
    path.write_text(f'[data]\ndata_dir = "data"\n\n[plot]\ndpi = {dpi}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=rf"plot.dpi must be between 10 and 1200.*got {dpi}"):
        load_config(path)
