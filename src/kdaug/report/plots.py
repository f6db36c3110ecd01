"""One plotting module for every paper: the pyplot handle, the house style, atomic saving,
and the chart kinds the papers share (bars with seed error bars, heat maps).

matplotlib is imported inside :func:`pyplot` so that importing a paper module (which every
render job does) stays cheap; figures are drawn off-screen (Agg).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from kdaug.io import atomic_path

DPI = 150


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend, with the house style (seaborn's ``ticks``
    theme where seaborn is installed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 9, "axes.titlesize": 10, "savefig.bbox": "tight"})
    return plt


def save(fig: Any, path: str | os.PathLike[str], dpi: int = DPI) -> None:
    """Write ``fig`` as a PNG at ``path`` atomically, and close it."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    pyplot().close(fig)


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
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    else:  # below the axes: bars reach every height, a legend inside would cover some
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.12),
                  ncol=min(len(series), 4))  # fmt: skip
    return top
