"""Words of the figures from the config: ``[plot.labels]``, checked, and read back from the figures."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from rna_localization import load_config, steps  # noqa: E402
from rna_localization.cli import main  # noqa: E402
from rna_localization.config import Config  # noqa: E402

LABELS = """
[plot]
hue = "rna_type"
col = "cycle"
row = "replicate"

[plot.labels]
rna_type = { label = "probe", cen = "centrocortin", gapdh = "GAPDH" }
cycle = { nc13 = "cycle 13", nc14 = "cycle 14" }
replicate = "biological replicate"
"""


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _write(tmp_path, text: str, name: str = "pipeline.toml"):
    path = tmp_path / name
    path.write_text(f'[data]\ndata_dir = "."\n{text}', encoding="utf-8")
    return path


def _distributions() -> pd.DataFrame:
    rows = []
    images = {"a1": ("cen", "nc13", 1), "a2": ("cen", "nc13", 1), "b1": ("gapdh", "nc13", 1),
              "c1": ("cen", "nc14", 2), "d1": ("gapdh", "nc14", 2), "d2": ("gapdh", "nc14", 1)}
    for name, (rna_type, cycle, replicate) in images.items():
        for distance, percent in [(0.0, 40.0), (0.5, 80.0), (1.0, 100.0)]:
            rows.append({"distance": distance, "percent_total_rna": percent,
                         "percent_granule_rna": percent / 4, "name": name, "rna_type": rna_type,
                         "cycle": cycle, "replicate": replicate})
    return pd.DataFrame(rows)


def test_labels_are_read_from_the_config(tmp_path):
    config = load_config(_write(tmp_path, LABELS))
    assert config.plot.labels.columns == {"rna_type": "probe", "replicate": "biological replicate"}
    assert config.plot.labels.values == {"rna_type": {"cen": "centrocortin", "gapdh": "GAPDH"},
                                         "cycle": {"nc13": "cycle 13", "nc14": "cycle 14"}}
    assert Config.from_dict({"data": {"data_dir": "/d"}}).plot.labels.columns == {}  # the default


@pytest.mark.parametrize(("text", "message"), [
    ('[plot.labels]\nrna_typ = "probe"\n',
     r"unknown key 'rna_typ' in \[plot\.labels\] in .*pipeline\.toml: the figures name the "
     r"columns 'rna_type' \(plot\.hue, plot\.col, plot\.row\)\. Did you mean 'rna_type'\?"),
    ('[plot]\ncol = "cycle"\n[plot.labels]\ngenotype = "genotype"\n',
     r"unknown key 'genotype' .* the figures name the columns 'rna_type', 'cycle' .* or set "
     r"plot\.hue/col/row to 'genotype'"),
    ('[plot.labels]\nrna_type = 3\n',
     r"plot\.labels\.rna_type .* must be text \(the column's words\) or a table of its values' words"),
    ('[plot.labels]\nrna_type = { cen = "" }\n', r"plot\.labels\.rna_type\.cen in .* must be non-empty text; got ''"),
    ('[plot]\nlabels = "probe"\n', r"plot\.labels in .* must be a table of metadata columns"),
])
def test_bad_labels_are_named(tmp_path, text, message):
    with pytest.raises(ValueError, match=message):
        load_config(_write(tmp_path, text))


def test_the_figures_use_the_configured_words(tmp_path):
    config = load_config(_write(tmp_path, LABELS))
    figures = steps.cumulative_figures(config, _distributions())
    assert sorted(figures) == ["percent_granule_rna", "percent_total_rna"]
    for figure in figures.values():
        titles = sorted(ax.get_title() for ax in figure.axes if ax.get_title())
        assert titles == ["cycle 13", "cycle 14"]
        rows = sorted(t.get_text() for ax in figure.axes for t in ax.texts
                      if t.get_text().startswith("biological"))
        assert rows == ["biological replicate: 1", "biological replicate: 2"]
        legends = [ax.get_legend() for ax in figure.axes if ax.get_legend() is not None]
        assert {legend.get_title().get_text() for legend in legends} == {"probe"}
        entries = sorted(t.get_text() for legend in legends for t in legend.get_texts())
        assert entries == ["GAPDH (n = 1 image)", "GAPDH (n = 1 image)", "GAPDH (n = 1 image)",
                           "centrocortin (n = 1 image)", "centrocortin (n = 2 images)"]
        texts = [t.get_text() for t in figure.findobj(matplotlib.text.Text) if t.get_text()]
        for text in texts:  # no column name or raw value left anywhere
            assert not text.startswith(("replicate", "rna_type", "cen (", "gapdh")), text
            assert "nc1" not in text, text


def test_words_for_a_value_no_image_has_are_an_error(tmp_path):
    config = load_config(_write(tmp_path, '[plot.labels]\nrna_type = { cne = "centrocortin" }\n'))
    with pytest.raises(ValueError, match=r"\[plot\.labels\] rna_type gives words for 'cne', which no "
                                         r"image has in column 'rna_type' \(it has 'cen', 'gapdh'\)"):
        steps.cumulative_figures(config, _distributions())


def test_the_plot_command_uses_the_labels_and_stops_on_a_typo(tmp_path, database_name, capsys):
    text = LABELS + f'\n[database]\nname = "{database_name}"\n'
    config_path = _write(tmp_path, text)
    config = load_config(config_path)
    data = config.output_dir / "data"
    data.mkdir(parents=True)
    _distributions().to_csv(data / steps.DISTRIBUTIONS_FILE, index=False)
    assert main(["plot", "--config", str(config_path)]) == 0
    for measure in ("percent_total_rna", "percent_granule_rna"):
        for suffix in (".pdf", ".png"):
            assert (config.output_dir / "plots" / f"{measure}{suffix}").stat().st_size > 0
    capsys.readouterr()
    _write(tmp_path, text.replace('replicate = "biological', 'replicat = "biological'))
    assert main(["plot", "--config", str(config_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown key 'replicat' in [plot.labels]"), err
    assert "Did you mean 'replicate'?" in err
