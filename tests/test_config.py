"""Config keys of the figures, where a notebook's settings come from, and writing pipeline.toml."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import pytest

from rna_localization import Config, load_config
from rna_localization.config import config_toml, describe_settings


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


# ------------------------------------------------------------------- writing
def _settings(config: Config) -> dict:
    values = dataclasses.asdict(config)
    values.pop("source")
    return values


def test_config_toml_reads_back_as_the_settings_given_and_the_defaults_for_the_rest(tmp_path):
    given = {
        "database": {"name": "lab"},
        "data": {"data_dir": ".", "structures": ["rna", "nuclei"], "metadata_csv": 'my "meta".csv'},
        "scale": {"xy": 0.11, "z": 0.3},
        "distances": {"structure_2": "nuclei", "overwrite": True, "workers": 3},
        "normalization": {"method": "total", "lower_threshold": 2.5},
        "distribution": {"distance_threshold": {"column": "cycle", "nc13": 4.0, "nc 14": 3},
                         "step_size": 0.1},
        "plot": {"col": "cycle", "dpi": 300,
                 "labels": {"rna_type": {"label": "probe", "cen": "centrocortin"},
                            "cycle": "nuclear cycle"}},
    }
    text = config_toml(given, header=["a header"], comments={"scale": "µm", "plot.dpi": "dots"},
                       notes={"normalization.method": ["why total"]})
    path = _write(tmp_path, text)
    # Oracle: the same settings given to the config directly; every key is written.
    assert _settings(load_config(path)) == _settings(Config.from_dict(given, base_dir=tmp_path))
    written = tomllib.loads(text)
    for section in ("database", "data", "scale", "distances", "normalization", "distribution",
                    "plot", "dask"):
        kind = type(getattr(Config.from_dict({"data": {"data_dir": "."}}), section))
        expected = {f.name for f in dataclasses.fields(kind)}
        assert set(written[section]) == expected, section  # plot.labels too: it is given
    assert text.startswith("# a header\n")
    assert "[scale]                  # µm\n" in text
    assert "# why total\nmethod = \"total\"\n" in text
    assert "dpi = 300                # dots\n" in text


def test_config_toml_writes_no_second_structure_for_one_structure(tmp_path):
    text = config_toml({"data": {"data_dir": ".", "structures": ["rna"]}})
    assert 'structure_2 = ""\n' in text
    assert not load_config(_write(tmp_path, text)).has_structure_2


@pytest.mark.parametrize(("settings", "message"), [
    ({"scale": {"xyz": 0.1}}, r"unknown key 'xyz' in \[scale\]\. Did you mean 'xy'\?"),
    ({"scal": {"xy": 0.1}}, r"unknown config section \[scal\]\. Did you mean 'scale'\?"),
    ({"scale": {"xy": float("nan")}}, r"scale\.xy must be a finite number"),
])
def test_config_toml_names_what_it_cannot_write(settings, message):
    with pytest.raises(ValueError, match=message):
        config_toml({"data": {"data_dir": "."}, **settings})


def test_the_simulated_data_sets_config_is_the_defaults_but_for_its_own_settings(tmp_path):
    from rna_localization.synthetic import simulate_dataset
    from rna_localization.synthetic.dataset import pipeline_settings
    from rna_localization.synthetic.image import microscope
    from rna_localization.synthetic.model import DEFAULT_PRESET

    data = simulate_dataset(tmp_path / "sim", n_images=1, shape=(14, 32, 32))
    config = load_config(data / "pipeline.toml")
    scope = microscope(DEFAULT_PRESET)
    own = pipeline_settings(scope.spacing, scope)
    assert _settings(config) == _settings(Config.from_dict(own, base_dir=data))
    assert config.normalization.granule_threshold == Config.from_dict(
        {"data": {"data_dir": "."}}).normalization.granule_threshold
