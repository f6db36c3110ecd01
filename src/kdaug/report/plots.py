"""One plotting module for every paper: the pyplot handle with the house style (seaborn's
``ticks`` theme, one set of font sizes), atomic saving at one DPI, and the chart kinds the
papers share: bars with seed error bars, heat maps on one colour scale, class-coloured
scatter panels (t-SNE), and lines with a band over seeds (training curves).

seaborn draws where its functions fit the data as we hold it: ``heatmap`` for matrices,
``scatterplot`` for per-class points, ``lineplot`` for values per seed. Bars are drawn with
matplotlib from :class:`~kdaug.report.results.Summary` s (the tables' own numbers; seaborn's
``barplot`` would recompute them from raw values).

matplotlib and seaborn are imported inside the functions (about 1.5 s together) so that
importing a paper module, which every job that plans the workflow does, stays cheap;
figures are drawn off-screen (Agg).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from kdaug.io import atomic_path

DPI = 150
# Font sizes of every figure (points); explicit sizes in the papers' code only shrink
# crowded tick labels.
STYLE = {
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 8,
    "legend.title_fontsize": 8,
    "figure.titlesize": 11,
    "savefig.bbox": "tight",
}


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend, with the house style applied."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(context="notebook", style="ticks", rc=STYLE)
    return plt


def seaborn() -> Any:
    """The seaborn module, with the house style applied."""
    pyplot()
    import seaborn as sns

    return sns


def palette(n: int) -> list[Any]:
    """``n`` distinct colours of the house palette (the same order in every figure)."""
    return list(seaborn().color_palette(n_colors=max(n, 1)))


def save(fig: Any, path: str | os.PathLike[str], dpi: int = DPI) -> None:
    """Write ``fig`` as a PNG at ``path`` atomically, and close it."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    pyplot().close(fig)


def finish(fig: Any, path: str | os.PathLike[str], title: str, fontsize: float = 10) -> None:
    """A figure's last steps: its title over all panels, the layout fitted, saved."""
    fig.suptitle(title, fontsize=fontsize)
    fig.tight_layout()
    save(fig, path)


def grouped_bars(
    ax: Any,
    groups: Sequence[str],
    series: Mapping[str, Sequence[Any]],
    ylabel: str,
    value_labels: bool = False,
    legend: str = "below",
) -> float:
    """Bars of ``series`` (label -> one summary with ``mean``/``std``/``n`` per group),
    side by side per group, error bars one std over seeds (none for a single seed).
    Returns the highest bar top (mean + error)."""
    width = 0.8 / max(len(series), 1)
    x = np.arange(len(groups))
    top = 0.0
    for i, (label, values) in enumerate(series.items()):
        means = np.array([v.mean for v in values], dtype=float)
        errs = np.array([0.0 if v.n < 2 or math.isnan(v.std) else v.std for v in values])
        if len(means) and np.isfinite(means).any():
            top = max(top, float(np.nanmax(means + errs)))
        xs = x + (i - (len(series) - 1) / 2) * width
        bars = ax.bar(xs, means, width, yerr=errs, capsize=3, label=label)
        if value_labels:
            ax.bar_label(bars, labels=[f"{m:.2f}" for m in means], label_type="center",
                         fontsize=7, color="white", rotation=90)  # fmt: skip
    ax.set_xticks(x, groups)
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)
    if legend == "right":
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    else:  # below the axes: bars reach every height, a legend inside would cover some
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=min(len(series), 4))
    return top


def heatmap(
    ax: Any,
    matrix: np.ndarray,
    vmin: float,
    vmax: float,
    xticklabels: Sequence[str] | bool = False,
    yticklabels: Sequence[str] | bool = False,
    cmap: str = "viridis",
    annotate: str | None = None,
    square: bool = False,
) -> Any:
    """One heat-map panel (NaN cells left blank) on the colour scale ``[vmin, vmax]`` and
    without a colour bar of its own, so that panels share one: returns the mappable for
    ``fig.colorbar``. Row 0 on top; cell (i, j) spans [j, j + 1] x [i, i + 1], its tick
    at the centre; ``True`` labels the ticks with their indices. ``annotate``: a format
    (``".1f"``) to print each value in its cell, dark on light colours and light on dark.

    Drawn with matplotlib's ``pcolormesh``, as seaborn's ``heatmap`` draws but without
    its tick-label check: that draws the whole figure once per panel, which made Das et
    al.'s 15-panel Figures 6 and 8 take 9.7 and 9.6 s on the demo (2.0 and 1.5 s now)."""
    values = np.ma.masked_invalid(np.asarray(matrix, dtype=float))
    rows, cols = values.shape
    mesh = ax.pcolormesh(values, vmin=vmin, vmax=vmax, cmap=cmap)
    ax.set_xlim(0, cols)
    ax.set_ylim(rows, 0)
    for axis, labels, n in ((ax.xaxis, xticklabels, cols), (ax.yaxis, yticklabels, rows)):
        if labels is False:
            axis.set_ticks([])
        else:
            names = [str(k) for k in range(n)] if labels is True else list(labels)
            axis.set_ticks(np.arange(n) + 0.5, labels=names)
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    if square:
        ax.set_aspect("equal")
    if annotate is not None:
        colours = mesh.cmap(mesh.norm(values))
        for (i, j), value in np.ndenumerate(values.filled(np.nan)):
            if np.isfinite(value):
                dark = _luminance(colours[i, j]) > 0.408  # seaborn's threshold
                ax.text(j + 0.5, i + 0.5, format(value, annotate), ha="center", va="center",
                        fontsize=8, color="black" if dark else "white")  # fmt: skip
    return mesh


def _luminance(rgba: np.ndarray) -> float:
    """Relative luminance of an sRGB colour (WCAG 2.0), seaborn's own function, which its
    heatmap uses to pick the annotation colour."""
    from seaborn.utils import relative_luminance

    return float(relative_luminance(rgba))


def class_scatter(
    ax: Any,
    xy: np.ndarray,
    classes: Sequence[str],
    order: Sequence[str],
    legend: bool = False,
) -> dict[str, Any]:
    """Points ``xy`` coloured by their class (seaborn's ``scatterplot``), each class in
    the same colour in every panel; no axis ticks (t-SNE axes mean nothing). Returns
    class -> colour; ``legend`` puts the classes' legend right of the panel."""
    sns = seaborn()
    colours = dict(zip(order, palette(len(order)), strict=True))
    sns.scatterplot(
        x=xy[:, 0], y=xy[:, 1], hue=list(classes), hue_order=list(order), palette=colours,
        s=6, linewidth=0, ax=ax, legend=legend,
    )  # fmt: skip
    if legend:
        sns.move_legend(ax, "upper left", bbox_to_anchor=(1.0, 1.0), title=None,
                        frameon=False, markerscale=2)  # fmt: skip
    ax.set_xticks([])
    ax.set_yticks([])
    return colours


def image(ax: Any, pixels: np.ndarray) -> None:
    """One image panel: ``pixels`` as ``(C, H, W)`` floats in [0, 1] (grey for one
    channel), pixels drawn as squares (no smoothing: small images stay legible), no
    ticks."""
    pixels = np.clip(np.asarray(pixels, dtype=float), 0.0, 1.0)
    if pixels.shape[0] == 1:
        ax.imshow(pixels[0], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    else:
        ax.imshow(pixels.transpose(1, 2, 0), interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
