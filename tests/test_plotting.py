"""Figures: drawn from small tables whose answer is known, checked on the matplotlib objects and the files."""

from __future__ import annotations

import doctest
import re
import warnings

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PathCollection
from matplotlib.text import Text
from PIL import Image

from rna_localization import load_config, plotting, steps
from rna_localization.db import Database
from rna_localization.plotting import (
    CAPTION,
    curve_summary,
    plot_cumulative_distributions,
    plot_image_objects,
    save_figure,
    y_label,
)

#: Student's t, 97.5th percentile, by degrees of freedom (from printed tables).
T975 = {1: 12.706204736174707, 2: 4.302652729911275}

# Eight images: cycle nc13 measured to 2 µm, nc14 to 1 µm (step 0.5).
_CURVES = {
    # name: (rna_type, cycle, replicate, percent_total_rna, percent_granule_rna)
    "a1": ("cen", "nc13", 1, [40, 60, 80, 90, 100], [0, 10, 20, 30, 30]),
    "a2": ("cen", "nc13", 1, [50, 70, 85, 95, 100], [0, 10, 20, 30, 30]),
    "a3": ("cen", "nc13", 2, [60, 80, 90, 100, 100], [0, 10, 20, 30, 30]),
    "b1": ("gapdh", "nc13", 1, [10, 30, 50, 80, 100], [0, 1, 2, 3, 4]),
    "b2": ("gapdh", "nc13", 2, [20, 40, 60, 90, 100], [0, 1, 2, 3, 5]),
    "c1": ("cen", "nc14", 1, [50, 90, 100], [5, 10, 12]),
    "c2": ("cen", "nc14", 2, [70, 95, 100], [5, 10, 12]),
    "d1": ("gapdh", "nc14", 1, [20, 60, 100], [0, 1, 2]),
}


@pytest.fixture
def table() -> pd.DataFrame:
    rows = []
    for name, (rna_type, cycle, replicate, total, granule) in _CURVES.items():
        for i, (t, g) in enumerate(zip(total, granule)):
            rows.append({"distance": 0.5 * i, "percent_total_rna": float(t),
                         "percent_granule_rna": float(g), "name": name, "rna_type": rna_type,
                         "cycle": cycle, "replicate": replicate})
    return pd.DataFrame(rows)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _legend_texts(ax) -> list[str]:
    return [t.get_text() for t in ax.get_legend().get_texts()]


def _texts(figure) -> list[Text]:
    figure.canvas.draw()  # tick labels exist once drawn
    return [t for t in figure.findobj(Text) if t.get_visible() and t.get_text().strip()]


def _panel(figure, title: str):
    matches = [ax for ax in figure.axes if ax.get_title() == title]
    assert len(matches) == 1, [ax.get_title() for ax in figure.axes]
    return matches[0]


# ------------------------------------------------------------------ numbers
def test_curve_summary_is_the_t_interval_of_the_mean(table):
    summary = curve_summary(table[table["cycle"] == "nc13"], "percent_total_rna", by=["rna_type"])
    cen = summary[summary["rna_type"] == "cen"].set_index("distance")
    # distance 0: 40, 50, 60 → mean 50, sd 10, n 3
    assert cen.loc[0.0, "n"] == 3
    assert cen.loc[0.0, "mean"] == pytest.approx(50)
    assert cen.loc[0.0, "sd"] == pytest.approx(10)
    half = T975[2] * 10 / np.sqrt(3)
    assert cen.loc[0.0, "low"] == pytest.approx(50 - half)
    assert cen.loc[0.0, "high"] == pytest.approx(50 + half)
    # distance 1.5: 90, 95, 100 → the upper end (107.4) is clipped to 100 %
    assert cen.loc[1.5, "mean"] == pytest.approx(95)
    assert cen.loc[1.5, "low"] == pytest.approx(95 - T975[2] * 5 / np.sqrt(3))
    assert cen.loc[1.5, "high"] == 100
    gapdh = summary[summary["rna_type"] == "gapdh"].set_index("distance")
    # two images, 10 and 20: the interval's lower end (15 - 63.5) is clipped to 0 %
    assert gapdh.loc[0.0, "mean"] == pytest.approx(15)
    assert gapdh.loc[0.0, "low"] == 0
    assert gapdh.loc[0.0, "high"] == pytest.approx(15 + T975[1] * np.sqrt(50) / np.sqrt(2))


def test_one_image_has_no_band(table):
    summary = curve_summary(table[table["name"] == "d1"], "percent_total_rna")
    assert summary["n"].tolist() == [1, 1, 1]
    assert summary["mean"].tolist() == [20, 60, 100]
    assert summary["low"].isna().all()
    assert summary["high"].isna().all()


# ------------------------------------------------------------------ words
def test_words_for_columns_and_values():
    assert plotting.column_label("rna_type") == "RNA type"
    assert plotting.column_label("cell_line") == "cell line"  # generic: underscores become spaces
    assert plotting.column_label("rna_type", {"rna_type": "probe"}) == "probe"
    assert plotting.facet_title("cycle", "nc13") == "nuclear cycle 13"
    assert plotting.facet_title("genotype", "w1118") == "genotype: w1118"  # values as they are
    assert plotting.facet_title("cycle", "nc13", value_labels={"cycle": {"nc13": "NC13"}}) == "NC13"
    assert plotting.value_label("rna_type", "Cen_GFP") == "Cen_GFP"


def test_the_y_label_is_worded_alike_in_every_figure():
    total, granule = y_label("percent_total_rna"), y_label("percent_granule_rna")
    assert total == "RNA within distance\n(% of total RNA)"
    assert granule == "granule " + total
    with pytest.raises(ValueError, match="'percent_rna' is not one of"):
        y_label("percent_rna")


# ----------------------------------------------------------------- figures
@pytest.mark.parametrize("measure", ["percent_total_rna", "percent_granule_rna"])
def test_legends_titles_and_axes(table, measure):
    figure = plot_cumulative_distributions(table, measure, hue="rna_type", col="cycle")
    assert figure.get_size_inches()[0] == pytest.approx(3.5)
    assert len(figure.axes) == 2
    nc13, nc14 = _panel(figure, "nuclear cycle 13"), _panel(figure, "nuclear cycle 14")
    # The images of each curve in each panel, counted.
    assert _legend_texts(nc13) == ["cen (n = 3 images)", "gapdh (n = 2 images)"]
    assert _legend_texts(nc14) == ["cen (n = 2 images)", "gapdh (n = 1 image)"]
    assert nc13.get_legend().get_title().get_text() == "RNA type"
    # Each panel's own distances: 2 µm in nc13, 1 µm in nc14.
    assert nc13.get_xlim() == pytest.approx((0, 2.0))
    assert nc14.get_xlim() == pytest.approx((0, 1.0))
    # The same colour for a value in every panel.
    assert nc13.lines[0].get_color() == nc14.lines[0].get_color() != nc13.lines[1].get_color()
    # The y axis fits the data: 100 % (total) or the granule curves' top, 30 %.
    top = 100 if measure == "percent_total_rna" else 30
    for ax in (nc13, nc14):
        assert ax.get_ylim() == pytest.approx((0, 1.05 * top))
    # The words of the axes and the caption.
    texts = [t.get_text() for t in _texts(figure)]
    assert y_label(measure) in texts
    assert "distance to centrosomes (µm)" in texts
    assert CAPTION in texts
    assert "95% CI of the mean" in CAPTION


def test_lines_are_the_means_and_bands_the_intervals(table):
    figure = plot_cumulative_distributions(table, "percent_total_rna", hue="rna_type", col="cycle")
    nc13 = _panel(figure, "nuclear cycle 13")
    line = nc13.lines[0]  # cen
    np.testing.assert_allclose(line.get_xdata(), [0, 0.5, 1, 1.5, 2])
    np.testing.assert_allclose(line.get_ydata(), [50, 70, 85, 95, 100])
    band = nc13.collections[0].get_paths()[0].vertices
    at_zero = sorted(set(np.round(band[band[:, 0] == 0, 1], 9)))
    half = T975[2] * 10 / np.sqrt(3)
    assert at_zero == pytest.approx([50 - half, 50 + half])


def test_rows_and_columns_of_panels(table):
    figure = plot_cumulative_distributions(table, "percent_granule_rna", hue="rna_type",
                                           col="cycle", row="replicate")
    assert len(figure.axes) == 2 * 2
    top_titles = sorted(ax.get_title() for ax in figure.axes if ax.get_title())
    assert top_titles == ["nuclear cycle 13", "nuclear cycle 14"]
    texts = [t.get_text() for t in _texts(figure)]
    assert texts.count("replicate: 1") == 1
    assert texts.count("replicate: 2") == 1
    legends = sorted(tuple(_legend_texts(ax)) for ax in figure.axes)
    assert legends == sorted([
        ("cen (n = 2 images)", "gapdh (n = 1 image)"),  # replicate 1, nc13
        ("cen (n = 1 image)", "gapdh (n = 1 image)"),  # replicate 2, nc13 / replicate 1, nc14
        ("cen (n = 1 image)", "gapdh (n = 1 image)"),
        ("cen (n = 1 image)",),  # replicate 2, nc14
    ])


def test_more_than_two_columns_make_a_two_column_figure(table):
    table["stage"] = table["name"].map({"a1": "early", "a2": "early", "a3": "mid", "b1": "mid",
                                        "b2": "late", "c1": "late", "c2": "late", "d1": "early"})
    figure = plot_cumulative_distributions(table, hue="rna_type", col="stage")
    assert figure.get_size_inches()[0] == pytest.approx(7.0)
    assert [ax.get_title() for ax in figure.axes] == ["stage: early", "stage: late", "stage: mid"]


def test_labels_are_overridable(table):
    figure = plot_cumulative_distributions(
        table[table["cycle"] == "nc13"], hue="rna_type", labels={"rna_type": "probe"},
        value_labels={"rna_type": {"cen": "centrocortin"}})
    ax = figure.axes[0]
    assert ax.get_legend().get_title().get_text() == "probe"
    assert _legend_texts(ax) == ["centrocortin (n = 3 images)", "gapdh (n = 2 images)"]


def test_text_sizes_survive_a_one_column_figure_and_settings_stay_local(table):
    before = {key: matplotlib.rcParams[key] for key in ("pdf.fonttype", "font.size", "xtick.labelsize")}
    figure = plot_cumulative_distributions(table, "percent_granule_rna", hue="rna_type",
                                           col="cycle", row="replicate")
    assert figure.get_size_inches()[0] == pytest.approx(3.5)
    sizes = {t.get_text(): t.get_fontsize() for t in _texts(figure)}
    assert sizes
    too_small = {text: size for text, size in sizes.items() if not 7 <= size <= 8}
    assert not too_small
    assert {key: matplotlib.rcParams[key] for key in before} == before


def test_pdf_has_truetype_fonts_and_the_figure_size(table, tmp_path):
    figure = plot_cumulative_distributions(table, hue="rna_type", col="cycle")
    # The check can fail: matplotlib's default writes Type 3 fonts.
    figure.savefig(tmp_path / "default.pdf")
    assert b"/Type3" in (tmp_path / "default.pdf").read_bytes()

    pdf, png = save_figure(figure, tmp_path / "percent_total_rna", dpi=200)
    assert (pdf.name, png.name) == ("percent_total_rna.pdf", "percent_total_rna.png")
    data = pdf.read_bytes()
    # TrueType outlines embedded (FontFile2), as a simple TrueType font or, for text beyond
    # ASCII such as "µ", a composite font over a TrueType CID font; never Type 3.
    assert b"/FontFile2" in data
    assert b"/Subtype /TrueType" in data or b"/Subtype /CIDFontType2" in data
    assert b"/Type3" not in data
    box = re.search(rb"/MediaBox \[\s*0 0 ([\d.]+) ([\d.]+)\s*\]", data)
    assert float(box.group(1)) == pytest.approx(3.5 * 72)  # points
    image = Image.open(png)
    assert image.size[0] == round(3.5 * 200)
    assert round(image.info["dpi"][0]) == 200
    assert matplotlib.rcParams["pdf.fonttype"] == 3  # only inside save_figure


def test_curves_mixing_distance_thresholds_are_a_warning(table):
    with pytest.warns(UserWarning, match="curve averages images with different distance") as record:
        plot_cumulative_distributions(table, hue="rna_type")
    # Only the plot's own warnings (a kernel socket of an earlier test may be collected here).
    mine = [w for w in record if issubclass(w.category, UserWarning)]
    assert sorted(str(w.message).split(" curve")[0] for w in mine) == [
        "the rna_type = 'cen'", "the rna_type = 'gapdh'"]
    assert "different distance thresholds (1, 2 µm)" in str(mine[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plot_cumulative_distributions(table, hue="rna_type", col="cycle")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"hue": "genotype"}, r"hue column 'genotype' is not in the distributions"),
        ({"col": "cycle", "row": "cycle"}, r"plot\.row and plot\.col are both 'cycle'"),
        ({"image_column": "image"}, r"image name column 'image' is not in the distributions"),
    ],
)
def test_bad_arguments_are_named(table, kwargs, message):
    with pytest.raises(ValueError, match=message):
        plot_cumulative_distributions(table, **kwargs)


def test_empty_distributions_are_an_error(table):
    with pytest.raises(ValueError, match="the distributions table is empty"):
        plot_cumulative_distributions(table.iloc[:0])


def test_docstring_examples():
    assert doctest.testmod(plotting).failed == 0


# ------------------------------------------------------------ one image
def _image_axes(figure):
    return next(ax for ax in figure.axes if ax.get_xlabel() == "x (µm)")


def _histogram_axes(figure, label_start: str):
    return next(ax for ax in figure.axes if ax.get_xlabel().startswith(label_start))


def test_image_objects_coloured_by_distance_and_reference_marked():
    image = np.zeros((4, 20, 30))
    image[2, 5, 7] = image[1, 12, 20] = image[3, 18, 2] = 100
    objects = pd.DataFrame({"y": [5.0, 12.0, 18.0], "x": [7.0, 20.0, 2.0],
                            "distance": [0.0, 1.5, np.nan], "area": [10, 12, 40],
                            "intensity": [1000.0, 1100.0, 5000.0]})
    outline = np.zeros((4, 20, 30), dtype=bool)
    outline[1, 4:7, 6:9] = True
    figure = plot_image_objects(image, objects, spacing_xy=0.1, reference=1050.0,
                                granule_threshold=4, single_area=(8, 15), outline=outline,
                                outline_label="centrosomes", color_label="distance to centrosomes (µm)",
                                intensity_label="total intensity")
    ax = _image_axes(figure)
    grey, dots = [c for c in ax.collections if isinstance(c, PathCollection)]
    np.testing.assert_allclose(grey.get_offsets(), [[0.25, 1.85]])  # no distance
    # Pixel i spans [i, i + 1) × 0.1 µm: the dot sits at its centre.
    np.testing.assert_allclose(dots.get_offsets(), [[0.75, 0.55], [2.05, 1.25]])
    np.testing.assert_allclose(dots.get_array(), [0.0, 1.5])
    assert ax.get_xlim() == pytest.approx((0, 3.0))
    assert _legend_texts(ax) == ["centrosomes"]
    assert any(a.get_ylabel() == "distance to centrosomes (µm)" for a in figure.axes)  # colour bar
    intensity = _histogram_axes(figure, "total intensity")
    marks = {line.get_label(): line.get_xdata()[0] for line in intensity.lines}
    assert marks == {"1 molecule (1,050)": 1050.0, "granule (≥ 4 molecules)": 4200.0}
    area = _histogram_axes(figure, "area (voxels)")
    assert _legend_texts(area) == ["single-molecule sizes"]
    assert sum(bar.get_height() for bar in area.containers[0]) == 3
    assert area.get_xlim() == pytest.approx((0, 40))


def test_image_objects_coloured_by_another_column():
    # No second structure: the dots take the molecules; an object without a value is grey.
    image = np.zeros((2, 10, 10))
    objects = pd.DataFrame({"y": [1.0, 4.0, 8.0], "x": [2.0, 6.0, 3.0], "distance": np.nan,
                            "area": [5, 6, 9], "intensity": [10.0, 11.0, 30.0],
                            "molecules": [1.0, np.nan, 2.9]})
    figure = plot_image_objects(image, objects, spacing_xy=0.2, color="molecules",
                                color_label="molecules")
    ax = _image_axes(figure)
    grey, dots = [c for c in ax.collections if isinstance(c, PathCollection)]
    np.testing.assert_allclose(grey.get_offsets(), [[1.3, 0.9]])
    np.testing.assert_allclose(dots.get_offsets(), [[0.5, 0.3], [0.7, 1.7]])
    np.testing.assert_allclose(dots.get_array(), [1.0, 2.9])
    assert any(a.get_ylabel() == "molecules" for a in figure.axes)
    with pytest.raises(ValueError, match=r"objects has no column 'spot' \(it has y, x, distance, "
                                         r"area, intensity, molecules\); .* color='spot'"):
        plot_image_objects(image, objects, spacing_xy=0.2, color="spot")


def test_image_objects_from_the_database(dataset):
    config = load_config(dataset)
    steps.run(config)
    db = Database.from_config(config)
    figure = steps.plot_image_objects(config, "img_01", db=db)
    objects = db.query("SELECT centroid_y, centroid_x, distance_to_centrosomes FROM rna "
                       "WHERE name = 'img_01' ORDER BY object_id")
    ax = _image_axes(figure)
    assert ax.get_title() == f"img_01: {len(objects)} rna objects"
    _, dots = [c for c in ax.collections if isinstance(c, PathCollection)]
    np.testing.assert_allclose(dots.get_offsets(), (objects[["centroid_x", "centroid_y"]] + 0.5) * 0.1)
    np.testing.assert_allclose(dots.get_array(), objects["distance_to_centrosomes"])
    # Method "total": one molecule is the mean total intensity of the group's objects of
    # 1-20 voxels (datagen's thresholds), over every image of img_01's RNA type.
    reference = db.query(
        "SELECT avg(total_intensity) AS r FROM rna JOIN images USING (name) WHERE area BETWEEN 1 AND 20 "
        "AND rna_type = (SELECT rna_type FROM images WHERE name = 'img_01')")["r"][0]
    intensity = _histogram_axes(figure, "total intensity")
    one = next(line for line in intensity.lines if line.get_label().startswith("1 molecule"))
    assert one.get_xdata()[0] == pytest.approx(reference)
    assert _histogram_axes(figure, "area (voxels)").get_title().startswith("RNA type: gapdh (")
    assert _legend_texts(ax) == ["centrosomes"]
    # The first measured image by default; an unknown one is named.
    assert _image_axes(steps.plot_image_objects(config, db=db)).get_title().startswith("img_00:")
    with pytest.raises(ValueError, match=r"image 'img_99' has no measured distances from rna to "
                                         r"centrosomes; measured images: img_00, img_01"):
        steps.plot_image_objects(config, "img_99", db=db)


class _Failing(matplotlib.artist.Artist):
    """An artist whose drawing fails, as a full disk or a bad value would mid-save."""

    def draw(self, renderer):
        msg = "drawing failed"
        raise RuntimeError(msg)


def test_a_failed_save_leaves_the_previous_figures_whole(tmp_path):
    figure, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    good = save_figure(figure, tmp_path / "curves", dpi=40)
    before = {path: path.read_bytes() for path in good}
    figure, ax = plt.subplots()
    ax.add_artist(_Failing())
    with pytest.raises(RuntimeError, match="drawing failed"):
        save_figure(figure, tmp_path / "curves", dpi=40)
    assert {path: path.read_bytes() for path in good} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curves.pdf", "curves.png"]


class _CountedDraws(matplotlib.artist.Artist):
    """An artist that counts how often the figure draws it."""

    def __init__(self):
        super().__init__()
        self.draws = 0

    def draw(self, renderer):
        self.draws += 1


def test_a_saved_figure_is_laid_out_once_and_each_file_drawn_once(table, tmp_path):
    figure = plot_cumulative_distributions(table, hue="rna_type", col="cycle")
    assert figure.get_layout_engine() is not None  # constrained: savefig alone would draw twice
    counter = _CountedDraws()
    figure.axes[0].add_artist(counter)
    laid_out = plot_cumulative_distributions(table, hue="rna_type", col="cycle")
    laid_out.draw_without_rendering()  # the layout the constrained engine gives
    pdf, png = save_figure(figure, tmp_path / "curves", dpi=50)
    assert counter.draws == 3  # the layout, the PDF, the PNG
    # Laid out all the same: the panels sit where the layout engine puts them.
    for ax, reference in zip(figure.axes, laid_out.axes):
        assert ax.get_position().bounds == pytest.approx(reference.get_position().bounds)
    assert Image.open(png).size[0] == round(3.5 * 50)
    assert pdf.read_bytes().startswith(b"%PDF")
    plt.close(laid_out)


# ------------------------------------------------------------ colours and imports
def test_groups_take_the_colour_blind_palette_in_order():
    from matplotlib.colors import to_hex

    from rna_localization.plotting import PALETTE

    # The Okabe-Ito colours as published (blue, orange, bluish green, vermillion, ...).
    assert PALETTE[:4] == ("#0072B2", "#E69F00", "#009E73", "#D55E00")
    groups = [f"g{i}" for i in range(len(PALETTE) + 1)]  # one more group than colours
    table = pd.DataFrame({"name": [f"{g}_{k}" for g in groups for k in (1, 2)],
                          "rna_type": [g for g in groups for _ in (1, 2)]})
    table = table.merge(pd.DataFrame({"distance": [0.0, 1.0]}), how="cross")
    table["percent_total_rna"] = np.where(table["distance"] == 0, 50.0, 100.0)
    figure = plot_cumulative_distributions(table, hue="rna_type")
    colours = [to_hex(line.get_color()) for line in figure.axes[0].lines]
    assert colours == [c.lower() for c in PALETTE] + [PALETTE[0].lower()]  # then again from the first
    plt.close(figure)


def test_drawing_and_saving_figures_imports_neither_seaborn_nor_scipy_stats(tmp_path):
    import subprocess
    import sys

    code = (
        "import sys, pandas as pd\n"
        "from rna_localization.plotting import plot_cumulative_distributions, save_figure\n"
        "table = pd.DataFrame({'name': ['a', 'a', 'b', 'b'], 'rna_type': ['cen'] * 4,\n"
        "                      'distance': [0.0, 1.0] * 2, 'percent_total_rna': [40.0, 100.0, 60.0, 100.0]})\n"
        f"save_figure(plot_cumulative_distributions(table), {str(tmp_path / 'figure')!r}, dpi=100)\n"
        "print(*[m for m in ('seaborn', 'scipy.stats') if m in sys.modules])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ""
    assert (tmp_path / "figure.png").stat().st_size > 0
