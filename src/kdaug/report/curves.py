"""Training curves of an experiment: every model file's per-epoch history (train and
validation loss and accuracy, learning rate, seconds) as one CSV and one figure, so that
a run that went wrong is seen, not guessed.

A *curve* is one kind of model, seeds pooled: a teacher per (architecture, augmentation),
a student per (teacher architecture and augmentation, KD method, architecture,
augmentation). The CSV holds, per curve, epoch and history metric, the mean, std, count
and 95% t-interval over seeds (:func:`~kdaug.report.results.summary_frame`); the figure
draws loss and accuracy per epoch, one panel row per model architecture (teachers, then
each teacher's students), one colour per curve, train solid and validation dashed, the
mean with a band of one std over seeds. The train loss is the training objective on the
(augmented) batches, a student's KD loss included; the validation loss is cross-entropy,
so the two are compared by their trends, not their levels.

The figure belongs to every experiment of every paper (see
:func:`kdaug.report.registry.report_files`); it reads the experiment's model files.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from kdaug.cells import Cell
from kdaug.io import atomic_path
from kdaug.report import plots
from kdaug.report.results import summary_frame

if TYPE_CHECKING:
    import pandas as pd

# What makes two models the same curve (the seed is summarised over).
KIND = ("role", "teacher_arch", "teacher_aug", "kd", "student_arch", "student_aug")
# Panel columns: the quantity, and the history metrics drawn in it (train, validation).
QUANTITIES = {"loss": ("train_loss", "val_loss"), "accuracy": ("train_accuracy", "val_accuracy")}
PHASE_LABELS = {"train": "train", "val": "validation"}
# Markers (drawn for short runs, where lines alone hide single points): per phase.
PHASE_MARKERS = {"train": "o", "validation": "X"}

History = list[dict[str, float]]
# (model file, the identity the file must hold) -> its per-epoch history
ReadHistory = Callable[[str | os.PathLike[str], Mapping[str, Any]], History]


def history_frame(cells: Sequence[Cell], histories: Sequence[History]) -> pd.DataFrame:
    """One row per model, epoch and history metric: the model's :data:`KIND` fields
    (empty for a teacher's student fields), seed, epoch, metric and value."""
    import pandas as pd

    records = []
    for cell, history in zip(cells, histories, strict=True):
        kind = {k: v or "" for k, v in cell.identity().items() if k in KIND}
        for row in history:
            for metric, value in row.items():
                if metric != "epoch" and value is not None:
                    records.append({**kind, "seed": cell.seed, "epoch": int(row["epoch"]),
                                    "metric": metric, "value": float(value)})  # fmt: skip
    return pd.DataFrame.from_records(records, columns=[*KIND, "seed", "epoch", "metric", "value"])


def curves_frame(history: pd.DataFrame) -> pd.DataFrame:
    """Per curve, epoch and metric: ``n`` seeds and ``value_mean``, ``value_std``,
    ``value_ci_low``, ``value_ci_high``."""
    out = summary_frame(history, [*KIND, "epoch", "metric"])
    names = {c: f"value_{c}" for c in ("mean", "std", "ci_low", "ci_high")}
    return out.rename(columns=names)


def _panel(kind: Mapping[str, str]) -> str:
    """The panel row a curve is drawn in: its model architecture (and a student's teacher)."""
    if kind["role"] == "teacher":
        return f"teachers: {kind['teacher_arch']}"
    return f"students: {kind['student_arch']} (teacher {kind['teacher_arch']})"


def _labels(kinds: pd.DataFrame) -> list[str]:
    """A legend label per curve of one panel (rows of :data:`KIND` fields): the fields that
    differ within the panel (a teacher's augmentation; a student's teacher augmentation,
    KD method and augmentation)."""
    if kinds["role"].iloc[0] == "teacher":
        names = {"teacher_aug": ""}
    else:
        names = {"teacher_aug": "teacher ", "kd": "", "student_aug": "student "}
    varying = [f for f in names if kinds[f].nunique() > 1] or list(names)[-1:]
    return [" ".join(names[f] + row[f] for f in varying) for _, row in kinds.iterrows()]


def plot_training_curves(
    history: pd.DataFrame, path: str | os.PathLike[str], title: str = "Training curves"
) -> None:
    """The figure of :func:`history_frame`'s ``history`` at ``path`` (PNG)."""
    import pandas as pd

    sns = plots.seaborn()
    plt = plots.pyplot()
    drawn = [m for metrics in QUANTITIES.values() for m in metrics]
    data = history[history["metric"].isin(drawn)].copy()
    data["panel"] = [_panel(k) for k in data[list(KIND)].to_dict("records")]
    panels = list(dict.fromkeys(data["panel"]))
    fig, axes = plt.subplots(
        max(len(panels), 1), len(QUANTITIES), figsize=(10.5, 2.9 * max(len(panels), 1)),
        squeeze=False, sharex="row",
    )  # fmt: skip
    few_epochs = data["epoch"].nunique() <= 12
    for i, panel in enumerate(panels):
        mine = data[data["panel"] == panel]
        kinds = mine[list(KIND)].drop_duplicates().reset_index(drop=True)
        labels = dict(zip(map(tuple, kinds.to_numpy()), _labels(kinds), strict=True))
        mine = mine.assign(
            model=[labels[tuple(k)] for k in mine[list(KIND)].to_numpy()],
            phase=[PHASE_LABELS[m.split("_", 1)[0]] for m in mine["metric"]],
        )
        order = list(dict.fromkeys(labels.values()))
        colours = dict(zip(order, plots.palette(len(order)), strict=True))
        for j, (quantity, metrics) in enumerate(QUANTITIES.items()):
            ax = axes[i, j]
            shown = mine[mine["metric"].isin(metrics)]
            if shown.empty:
                ax.set_axis_off()
                continue
            sns.lineplot(
                data=shown, x="epoch", y="value", hue="model", hue_order=order,
                palette=colours, style="phase", style_order=list(PHASE_LABELS.values()),
                errorbar="sd", ax=ax, legend=j == len(QUANTITIES) - 1,
                markers=PHASE_MARKERS if few_epochs else False, markersize=5,
                linewidth=1.2, alpha=0.9,
            )  # fmt: skip
            ax.set_title(f"{panel}: {quantity}")
            ax.set_ylabel(quantity)
            ax.set_xlabel("epoch")
            ax.grid(alpha=0.3)
            if quantity == "accuracy":
                ax.set_ylim(0.0, 1.02)
            if j == len(QUANTITIES) - 1:
                sns.move_legend(ax, "upper left", bbox_to_anchor=(1.02, 1.0), frameon=False,
                                title=None)  # fmt: skip
    ax_epochs = pd.unique(data["epoch"])
    if len(ax_epochs) and len(ax_epochs) <= 12:
        for ax in axes.flat:
            ax.set_xticks(sorted(int(e) for e in ax_epochs))
    plots.finish(
        fig,
        path,
        f"{title}\nmean over seeds, band: ± 1 std\nsolid: train (the training objective: "
        "KD loss for students, on augmented batches), dashed: validation (cross-entropy)",
        fontsize=10,
    )


def render_training_curves(
    cells: Sequence[Cell],
    model_files: Sequence[str | os.PathLike[str]],
    csv_path: str | os.PathLike[str],
    png_path: str | os.PathLike[str],
    title: str = "Training curves",
    read_history: ReadHistory | None = None,
) -> pd.DataFrame:
    """Read every model file's history, write the curves CSV and the figure; returns the
    history frame. ``read_history(path, expect)`` defaults to
    :func:`kdaug.train.training.model_history`, which checks that the file holds the cell
    (``expect``: the cell's identity and ``model`` path) it is read for."""
    if read_history is None:
        from kdaug.train.training import model_history  # torch: only this job needs it

        read_history = model_history
    if len(cells) != len(model_files):
        raise ValueError(f"{len(cells)} cells but {len(model_files)} model files")
    histories = [
        read_history(path, {**cell.identity(), "model": cell.model})
        for cell, path in zip(cells, model_files, strict=True)
    ]
    history = history_frame(cells, histories)
    with atomic_path(csv_path) as tmp:
        curves_frame(history).to_csv(tmp, index=False, na_rep="nan")
    plot_training_curves(history, png_path, title)
    return history


def read_curves(path: str | os.PathLike[str]) -> pd.DataFrame:
    """The curves CSV :func:`render_training_curves` wrote, as :func:`curves_frame`."""
    import pandas as pd

    frame = pd.read_csv(path, dtype={k: str for k in KIND})
    return frame.fillna({k: "" for k in KIND})


def summary_line(curves: pd.DataFrame) -> str:
    """One phrase on a :func:`curves_frame`: per role, the range over curves of the mean
    validation accuracy at each curve's last epoch (for the report's caption)."""
    val = curves[curves["metric"] == "val_accuracy"]
    if val.empty:
        return "no validation accuracy in the histories"
    last = val[val["epoch"] == val.groupby(list(KIND))["epoch"].transform("max")]
    parts = [
        f"{role}s {mine['value_mean'].min():.3f}-{mine['value_mean'].max():.3f}"
        for role, mine in last.groupby("role", sort=False)
    ]
    return "last-epoch validation accuracy over curves: " + ", ".join(parts)


__all__ = [
    "curves_frame",
    "history_frame",
    "plot_training_curves",
    "read_curves",
    "render_training_curves",
    "summary_line",
]
