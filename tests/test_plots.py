"""kdaug.report.plots: the heat-map panel (cells, blanks, colour scale, labels, values)."""

from __future__ import annotations

import numpy as np

from kdaug.report import plots


def test_heatmap_cells_blanks_scale_labels_and_values() -> None:
    plt = plots.pyplot()
    fig, ax = plt.subplots()
    m = np.array([[0.0, 1.0, np.nan], [2.0, 3.0, 4.0]])
    mesh = plots.heatmap(ax, m, 0.0, 4.0, ["a", "b", "c"], ["r0", "r1"], annotate=".1f")
    assert mesh.get_clim() == (0.0, 4.0)
    shown = mesh.get_array()
    assert shown.mask.ravel().tolist() == [False, False, True, False, False, False]  # NaN: blank
    assert shown.compressed().tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]  # row by row, row 0 first
    assert ax.get_ylim() == (2.0, 0.0) and ax.get_xlim() == (0.0, 3.0)  # row 0 on top
    assert list(ax.get_xticks()) == [0.5, 1.5, 2.5]  # each tick at its cell's centre
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "c"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["r0", "r1"]
    texts = {(t.get_position(), t.get_text()): t.get_color() for t in ax.texts}
    assert set(texts) == {((0.5, 0.5), "0.0"), ((1.5, 0.5), "1.0"), ((0.5, 1.5), "2.0"),
                          ((1.5, 1.5), "3.0"), ((2.5, 1.5), "4.0")}  # fmt: skip
    # viridis: dark purple at 0 (light text), yellow at the top (dark text)
    assert texts[((0.5, 0.5), "0.0")] == "white" and texts[((2.5, 1.5), "4.0")] == "black"
    plt.close(fig)


def test_heatmap_without_labels_or_values_and_square() -> None:
    plt = plots.pyplot()
    fig, ax = plt.subplots()
    plots.heatmap(ax, np.eye(3), 0.0, 1.0, square=True)
    assert list(ax.get_xticks()) == [] and list(ax.get_yticks()) == [] and not ax.texts
    assert ax.get_aspect() == 1.0
    plt.close(fig)


def test_luminance_of_black_white_and_green() -> None:
    assert plots._luminance(np.array([0.0, 0.0, 0.0, 1.0])) == 0.0
    assert abs(plots._luminance(np.array([1.0, 1.0, 1.0, 1.0])) - 1.0) < 1e-12
    assert abs(plots._luminance(np.array([0.0, 1.0, 0.0])) - 0.7152) < 1e-12
