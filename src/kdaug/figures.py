"""Figures of Das et al. 2020 from an experiment's metrics and stored model outputs.

Each figure is registered with the inputs it reads: the collected metrics CSV (bar
charts over seeds), or the stored outputs (logits, embeddings, soft labels) of every
model of the first seed on one evaluation split (heat maps, reliability curves, t-SNE).
:func:`figure_sources` names those output files; the workflow makes them the rule's
inputs and the plotting code reads them back by the same names.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kdaug import metrics
from kdaug.io import atomic_path
from kdaug.plan import Cell
from kdaug.results import Results, read_long_csv, row_augmentations, row_values

Plot = Callable[["FigureInputs", str, Path], None]


@dataclass(frozen=True)
class FigureSpec:
    name: str
    caption: str
    plot: Plot
    reads: str  # "metrics" or "outputs"
    split_role: str = "test"
    models: str = "all"  # all | teacher


@dataclass(frozen=True)
class FigureInputs:
    """What a plot function gets: the experiment, its metrics and its output files."""

    exp: Mapping[str, Any]
    metrics_csv: str | None
    outputs: Mapping[tuple[str, str], str]  # (row, model) -> outputs .npz

    @property
    def results(self) -> Results:
        return Results(read_long_csv(self.metrics_csv), self.exp)

    def load(self, row: str, model: str) -> metrics.EvalData:
        from kdaug.evaluation import load_eval_data

        return load_eval_data(self.outputs[(row, model)])


def human_or_test(exp: Mapping[str, Any]) -> str:
    """The split role of Table 1's columns: CIFAR-10H when evaluated (same images as the
    test set, plus human labels), else the test split."""
    return "human" if "human" in exp["eval_splits"] else "test"


def model_cell(exp: Mapping[str, Any], seed: int, row: str, model: str) -> Cell:
    taug, saug = row_augmentations(exp, "teacher_aug", row)
    tarch = exp["teachers"]["archs"][0]
    if model == "teacher":
        return Cell(exp["dataset"], seed, tarch, taug)
    kd = exp["students"]["kd_methods"][0]
    return Cell(exp["dataset"], seed, tarch, taug, kd, model, saug)


def figure_sources(
    exp: Mapping[str, Any], spec: FigureSpec, selection: str
) -> dict[tuple[str, str], str]:
    """(row, model) -> the outputs file a figure reads (first seed, one split)."""
    if spec.reads != "outputs":
        return {}
    role = human_or_test(exp) if spec.split_role == "human_or_test" else spec.split_role
    split = exp["eval_splits"][role]
    models = ["teacher"] if spec.models == "teacher" else ["teacher", *exp["students"]["archs"]]
    seed = exp["seeds"][0]
    return {
        (row, m): model_cell(exp, seed, row, m).eval_file(selection, split, "npz")
        for row in row_values(exp, "teacher_aug")
        for m in models
    }


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    _pyplot().close(fig)


def _model_label(exp: Mapping[str, Any], model: str) -> str:
    return f"teacher ({exp['teachers']['archs'][0]})" if model == "teacher" else f"{model} student"


# --------------------------------------------------------------------------- bar charts


def _bars(inputs: FigureInputs, selection: str, path: Path, metric: str, role: str) -> None:
    plt = _pyplot()
    results, exp = inputs.results, inputs.exp
    augs, models = results.row_values("teacher_aug"), results.models("all")
    split = results.split(role)
    width = 0.8 / len(models)
    fig, ax = plt.subplots(figsize=(2.6 + 1.3 * len(augs), 3.8), dpi=150)
    n_seeds, top = 0, 0.0
    for i, model in enumerate(models):
        stats = [results.summary(selection, split, model, metric, "teacher_aug", a) for a in augs]
        n_seeds = max(n_seeds, *(s.n for s in stats))
        means = np.array([s.mean for s in stats])
        errs = np.array([s.std if s.n > 1 else 0.0 for s in stats])
        top = max(top, float(np.nanmax(means + errs)) if len(means) else 0.0)
        xs = np.arange(len(augs)) + (i - (len(models) - 1) / 2) * width
        bars = ax.bar(xs, means, width, yerr=errs, capsize=3, label=_model_label(exp, model))
        ax.bar_label(
            bars, labels=[f"{m:.2f}" for m in means], label_type="center", fontsize=7,
            color="white", rotation=90,
        )  # fmt: skip
    ax.set_xticks(np.arange(len(augs)), augs)
    ax.set_xlabel("teacher augmentation")
    ax.set_ylabel(f"{metric} on {split}")
    ax.set_ylim(0, 1.0 if metric == "accuracy" else max(top * 1.15, 1e-3))
    spread = "mean ± std over" if n_seeds > 1 else "from"
    ax.set_title(f"{metric} per model ({selection} weights; {spread} {n_seeds} seed(s))")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    _save(fig, path)


def plot_teacher_vs_student(inputs: FigureInputs, selection: str, path: Path) -> None:
    _bars(inputs, selection, path, "accuracy", "test")


def plot_ece(inputs: FigureInputs, selection: str, path: Path) -> None:
    _bars(inputs, selection, path, "ece", human_or_test(inputs.exp))


# --------------------------------------------------------------------------- heat maps


def _heatmap_grid(
    inputs: FigureInputs,
    path: Path,
    matrix: Callable[[metrics.EvalData], np.ndarray],
    title: str,
    colorbar: str,
    xlabel: str,
) -> None:
    """One heat map per (model row, augmentation column) on one colour scale."""
    plt = _pyplot()
    keys = list(inputs.outputs)
    augs = list(dict.fromkeys(r for r, _ in keys))
    models = list(dict.fromkeys(m for _, m in keys))
    mats = {k: matrix(inputs.load(*k)) for k in keys}
    names = _class_names(inputs.outputs[keys[0]])
    finite = np.concatenate([m[np.isfinite(m)] for m in mats.values()])
    vmax = float(finite.max()) if finite.size else 1.0
    side = 2.4 if len(names) <= 10 else 3.2
    fig, axes = plt.subplots(
        len(models), len(augs), figsize=(0.8 + side * len(augs), 0.6 + side * len(models)),
        dpi=130, squeeze=False,
    )  # fmt: skip
    image = None
    for i, model in enumerate(models):
        for j, aug in enumerate(augs):
            ax = axes[i][j]
            m = mats[(aug, model)]
            image = ax.imshow(
                m, cmap="viridis", vmin=0.0, vmax=vmax, interpolation="nearest",
            )  # fmt: skip
            ax.set_xticks(range(len(names)), names, rotation=90, fontsize=5)
            ax.set_yticks(range(len(names)), names, fontsize=5)
            if i == 0:
                ax.set_title(aug, fontsize=9)
            if j == 0:
                ax.set_ylabel(f"{_model_label(inputs.exp, model)}\ntrue class", fontsize=7)
    for ax in axes[-1]:
        ax.set_xlabel(xlabel, fontsize=7)
    fig.suptitle(title, fontsize=10)
    if image is not None:  # one colour scale for every panel, as in the paper
        fig.colorbar(image, ax=axes, shrink=0.6, label=colorbar)
    _save(fig, path)


def _class_names(outputs_file: str) -> list[str]:
    with np.load(outputs_file, allow_pickle=False) as f:
        return [str(c) for c in f["class_names"]]


def plot_human_confidence(inputs: FigureInputs, selection: str, path: Path) -> None:
    """Figure 3: mean human label distribution per true class, diagonal masked."""
    plt = _pyplot()
    data = inputs.load(*next(iter(inputs.outputs)))
    if data.soft_labels is None:
        raise ValueError("figure 3 needs a split with human soft labels")
    m = metrics.masked_confusion_probabilities(data.soft_labels, data.labels, data.num_classes)
    names = _class_names(next(iter(inputs.outputs.values())))
    fig, ax = plt.subplots(figsize=(5.2, 4.4), dpi=150)
    image = ax.imshow(m, cmap="viridis", interpolation="nearest")
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.set_xlabel("label given by annotators")
    ax.set_ylabel("true class")
    ax.set_title("Average human confidence per true class\n(diagonal masked)", fontsize=10)
    fig.colorbar(image, ax=ax, label="mean probability")
    fig.tight_layout()
    _save(fig, path)


def plot_relative_kl(inputs: FigureInputs, selection: str, path: Path) -> None:
    """Figure 6: KL(mean human distribution of class i || mean model distribution of
    class j), per model and teacher augmentation, on one colour scale."""

    def matrix(d: metrics.EvalData) -> np.ndarray:
        if d.soft_labels is None:
            raise ValueError("figure 6 needs a split with human soft labels")
        return metrics.relative_kl_matrix(d.soft_labels, d.probs, d.labels, d.num_classes)

    _heatmap_grid(
        inputs, path, matrix,
        f"Relative KL divergence, human vs model class means ({selection} weights)",
        "KL (nats)", "model class (mean prediction)",
    )  # fmt: skip


def plot_masked_confusion(inputs: FigureInputs, selection: str, path: Path) -> None:
    """Mean predicted distribution per true class with the diagonal masked (the text's
    confusion matrices), per model and teacher augmentation."""

    def matrix(d: metrics.EvalData) -> np.ndarray:
        return metrics.masked_confusion_probabilities(d.probs, d.labels, d.num_classes)

    _heatmap_grid(
        inputs, path, matrix,
        f"Mean predicted probability per true class, diagonal masked ({selection} weights)",
        "mean probability", "predicted class",
    )  # fmt: skip


# --------------------------------------------------------------------------- curves


def plot_reliability(inputs: FigureInputs, selection: str, path: Path) -> None:
    """Figure 5: accuracy against confidence in equal-width bins, one panel per model,
    one curve per teacher augmentation (bins with no samples are skipped)."""
    plt = _pyplot()
    keys = list(inputs.outputs)
    augs = list(dict.fromkeys(r for r, _ in keys))
    models = list(dict.fromkeys(m for _, m in keys))
    fig, axes = plt.subplots(1, len(models), figsize=(3.6 * len(models), 3.6), dpi=150)
    axes = np.atleast_1d(axes)
    for ax, model in zip(axes, models, strict=True):
        ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="ideal")
        for aug in augs:
            d = inputs.load(aug, model)
            n_bins = metrics.DEFAULT_ECE_BINS
            bins = metrics.reliability_bins(d.probs, d.labels, n_bins)
            conf, acc, seen = bins["confidence"], bins["accuracy"], bins["count"] > 0
            ece = metrics.expected_calibration_error(d.probs, d.labels, n_bins)
            ax.plot(conf[seen], acc[seen], marker="o", markersize=3, label=f"{aug} (ECE {ece:.3f})")
        ax.set_title(_model_label(inputs.exp, model), fontsize=9)
        ax.set_xlabel("confidence")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.legend(fontsize=6, loc="upper left")
    axes[0].set_ylabel("accuracy")
    fig.suptitle(f"Reliability diagrams ({selection} weights)", fontsize=10)
    fig.tight_layout()
    _save(fig, path)


def plot_tsne(inputs: FigureInputs, selection: str, path: Path) -> None:
    """Figure 4: t-SNE of the teachers' penultimate embeddings for a few classes
    (``figures.tsne_classes``; default the first four), one panel per augmentation."""
    from sklearn.manifold import TSNE

    plt = _pyplot()
    options = inputs.exp.get("figures", {})
    augs = [r for r, _ in inputs.outputs]
    names = _class_names(next(iter(inputs.outputs.values())))
    wanted = options.get("tsne_classes") or names[:4]
    missing = [c for c in wanted if c not in names]
    if missing:
        raise ValueError(f"figures.tsne_classes {missing} are not classes of {names}")
    classes = [names.index(c) for c in wanted]
    per_class = int(options.get("tsne_per_class", 250))
    fig, axes = plt.subplots(1, len(augs), figsize=(3.0 * len(augs), 3.3), dpi=150)
    axes = np.atleast_1d(axes)
    for ax, aug in zip(axes, augs, strict=True):
        d = inputs.load(aug, "teacher")
        if d.embeddings is None:
            raise ValueError("figure 4 needs stored embeddings (evaluation.embeddings_for)")
        rng = np.random.default_rng(0)  # the same images in every panel
        index = np.concatenate(
            [np.sort(rng.permutation(np.flatnonzero(d.labels == c))[:per_class]) for c in classes]
        )
        x = metrics.standardize(d.embeddings[index])
        perplexity = min(30.0, max(2.0, (len(index) - 1) / 3))
        xy = TSNE(perplexity=perplexity, init="pca", random_state=0).fit_transform(x)
        for c in classes:
            rows = d.labels[index] == c
            ax.scatter(xy[rows, 0], xy[rows, 1], s=3, label=names[c])
        ax.set_title(aug, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[-1].legend(fontsize=7, markerscale=3, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.suptitle(f"t-SNE of teacher penultimate embeddings ({selection} weights)", fontsize=10)
    fig.tight_layout()
    _save(fig, path)


FIGURE_SPECS = {
    s.name: s
    for s in (
        FigureSpec(
            "figure1_teacher_vs_student",
            "Figure 1 analogue: test accuracy of each teacher and its KD students per teacher "
            "augmentation (error bars: one std over seeds).",
            plot_teacher_vs_student,
            "metrics",
        ),
        FigureSpec(
            "figure3_human_confidence",
            "Figure 3 analogue: average human label distribution per true class, diagonal masked.",
            plot_human_confidence,
            "outputs",
            "human",
            "teacher",
        ),
        FigureSpec(
            "figure4_tsne",
            "Figure 4 analogue: t-SNE of teacher penultimate embeddings for four classes, "
            "one panel per augmentation (first seed).",
            plot_tsne,
            "outputs",
            "test",
            "teacher",
        ),
        FigureSpec(
            "figure5_reliability",
            "Figure 5 analogue: reliability diagrams of teachers and students (first seed).",
            plot_reliability,
            "outputs",
            "human_or_test",
        ),
        FigureSpec(
            "figure6_relative_kl",
            "Figure 6 analogue: KL divergence between the human and the model class-mean "
            "distributions, per model and augmentation (first seed).",
            plot_relative_kl,
            "outputs",
            "human",
        ),
        FigureSpec(
            "figure7_ece",
            "Figure 7 analogue: expected calibration error (15 bins) per model and teacher "
            "augmentation (error bars: one std over seeds).",
            plot_ece,
            "metrics",
        ),
        FigureSpec(
            "figure8_masked_confusion",
            "Masked confusion-probability matrices (the paper's text, Sec. 5): mean predicted "
            "distribution per true class, diagonal masked (first seed).",
            plot_masked_confusion,
            "outputs",
            "human_or_test",
        ),
    )
}


def render_figure(
    spec: FigureSpec,
    exp: Mapping[str, Any],
    selection: str,
    metrics_csv: str | None,
    outputs: Sequence[str],
    path: str | os.PathLike[str],
) -> None:
    """Draw ``spec`` from the given inputs (outputs in :func:`figure_sources` order)."""
    sources = figure_sources(exp, spec, selection)
    if len(outputs) != len(sources):
        raise ValueError(f"{spec.name} expects {len(sources)} outputs files, got {len(outputs)}")
    mapping = dict(zip(sources, outputs, strict=True))
    spec.plot(FigureInputs(exp, metrics_csv, mapping), selection, Path(path))


__all__ = ["FIGURE_SPECS", "FigureSpec", "figure_sources", "math", "render_figure"]
