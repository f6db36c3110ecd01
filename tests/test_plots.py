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


def test_das_heatmap_grid_labels_rows_once_and_panels_do_not_collide(tmp_path, monkeypatch):
    """Figure 8's grid with Fashion-MNIST's long class names: row labels on the first
    column only (on every panel they ran into the panel to their left), and no panel's
    tick labels overlap another panel."""
    from kdaug.papers import das2020

    names = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
             "Sneaker", "Bag", "Ankle boot"]  # fmt: skip
    rng = np.random.default_rng(0)
    outputs = {}
    for aug in ("none", "mixup", "cutmix"):
        for model in ("teacher", "lenet"):
            path = tmp_path / f"{aug}-{model}.npz"
            arrays = {"test.logits": rng.normal(size=(40, 10)), "test.labels": np.arange(40) % 10}
            np.savez(path, **arrays, class_names=np.array(names))
            outputs[(aug, model)] = str(path)
    inputs = das2020.FigureInputs({"teachers": {"archs": ["alexnet"]}}, None, outputs, "test")
    figures = []
    monkeypatch.setattr(das2020.plots, "save", lambda fig, path: figures.append(fig))
    das2020.plot_masked_confusion(inputs, "last", tmp_path / "f.png")
    fig = figures[0]
    fig.canvas.draw()
    panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"][:6]
    for k, ax in enumerate(panels):  # row-major: 2 model rows x 3 augmentation columns
        shown = [t.get_text() for t in ax.get_yticklabels()]
        assert shown == (names if k % 3 == 0 else []), (k, shown)
        assert [t.get_text() for t in ax.get_xticklabels()] == names
    renderer = fig.canvas.get_renderer()
    boxes = [ax.get_tightbbox(renderer) for ax in panels]
    for a in range(len(boxes)):
        for b in range(a + 1, len(boxes)):
            overlap_w = min(boxes[a].x1, boxes[b].x1) - max(boxes[a].x0, boxes[b].x0)
            overlap_h = min(boxes[a].y1, boxes[b].y1) - max(boxes[a].y0, boxes[b].y0)
            assert overlap_w <= 0 or overlap_h <= 0, (a, b)
    plots.pyplot().close(fig)
