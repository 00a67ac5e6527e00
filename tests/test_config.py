"""Config keys of the figures."""

from __future__ import annotations

from pathlib import Path

import pytest

from rna_localization import Config, load_config


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
