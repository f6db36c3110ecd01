"""Das et al. 2020, *An Empirical Analysis of the Impact of Data Augmentation on Knowledge
Distillation*: its tables, figures and claims, registered into :mod:`kdaug.report.registry`.

Tables are :class:`~kdaug.report.tables.TableSpec` s over the experiment's collected
metrics (rows: the teacher's or the student's augmentation; columns: the teacher and its
students). Each figure is registered with the inputs it reads: the collected metrics CSV
(bar charts over seeds), or the stored outputs (logits, embeddings, soft labels) of every
model of the first seed on one evaluation split (heat maps, reliability curves, t-SNE).
:func:`figure_sources` names those output files; the workflow makes them the rule's inputs
and the plotting code reads them back by the same names. The claims checked over seeds are
in ``claims/das2020.yaml``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kdaug.cells import Cell
from kdaug.io import read_long_csv
from kdaug.measure import metrics
from kdaug.report import plots
from kdaug.report.registry import Paper, Report, register_paper, register_report
from kdaug.report.results import Results, row_augmentations, row_values
from kdaug.report.tables import TableSpec, build_table

PAPER = "das2020"

STUDENT_METRICS = ("accuracy", "precision_macro", "recall_macro", "f1_macro")
TEST_AND_SHIFTED = ("test", "shifted")

DAS_TABLES = {
    t.name: t
    for t in (
        TableSpec(
            "table1_test",
            "Table 1 analogue (Das et al. 2020): accuracy, KL divergence to the human label "
            "distributions (KL(human || model), mean over images) and ECE (15 bins) of the "
            "teachers and their KD students, per teacher augmentation.",
            ("accuracy", "kld_human", "ece"),
            ("human",),
            paper_table="table1_test",
        ),
        TableSpec(
            "table2_shifted",
            "Table 2 analogue: accuracy on the shifted test split (CINIC-10's ImageNet "
            "images for CIFAR-10; the corrupted test split for the digits demo).",
            ("accuracy",),
            ("shifted",),
            paper_table="table2_shifted",
        ),
        TableSpec(
            "table3_mnist",
            "Table 3 analogue (MNIST protocol): test accuracy and test loss (mean "
            "cross-entropy) of the AlexNet teachers per augmentation and their LeNet students.",
            ("accuracy", "test_loss"),
            paper_table="table3_mnist",
        ),
        TableSpec(
            "table4_separability",
            "Table 4 analogue: class-separability S_f = (1/C^2) sum_ij KL(p_i || p_j) of the "
            "class-mean predicted distributions on the test split.",
            ("class_separability",),
            paper_table="table4_separability",
        ),
        TableSpec(
            "table5_discrimination",
            "Table 5 analogue: cohesion, adhesion and class-discrimination of the teachers' "
            "standardised penultimate embeddings on the test split.",
            ("cohesion", "adhesion", "class_discrimination"),
            models="teacher",
            paper_table="table5_discrimination",
        ),
        TableSpec(
            "table6_students",
            "Table 6 analogue: accuracy and macro precision / recall / F1 of every student "
            "(distilled without augmentation) on both test sets.",
            STUDENT_METRICS,
            TEST_AND_SHIFTED,
            models="students",
            layout="long",
            paper_table="table6_students",
        ),
        TableSpec(
            "table7_augmented_students",
            "Table 7 analogue (ablation): the baseline teacher distilled into LeNet students "
            "trained with each augmentation (rows: the student's augmentation).",
            STUDENT_METRICS,
            TEST_AND_SHIFTED,
            models="students",
            rows="student_aug",
            layout="long",
            paper_table="table7_baseline_teacher_augmented_student",
        ),
        TableSpec(
            "table8_same_augmentation",
            "Table 8 analogue (ablation): teacher and LeNet student trained with the same "
            "augmentation (rows).",
            STUDENT_METRICS,
            TEST_AND_SHIFTED,
            models="students",
            layout="long",
            paper_table="table8_same_augmentation",
        ),
        TableSpec(
            "table9_teachers",
            "Table 9 analogue: accuracy and macro precision / recall / F1 of every teacher on "
            "both test sets.",
            STUDENT_METRICS,
            TEST_AND_SHIFTED,
            models="teacher",
            layout="long",
            paper_table="table9_teachers",
        ),
    )
}


Plot = Callable[["FigureInputs", str, Path], None]


@dataclass(frozen=True)
class FigureSpec:
    name: str
    caption: str
    plot: Plot
    reads: str  # "metrics", "outputs" or "train_split" (the images, before training)
    split_role: str | None = "test"  # None: reads no evaluation split
    models: str = "all"  # all | teacher


@dataclass(frozen=True)
class FigureInputs:
    """What a plot function gets: the experiment, its metrics and its output files."""

    exp: Mapping[str, Any]
    metrics_csv: str | None
    # (row, model) -> outputs .npz; or TRAIN_SPLIT_KEY -> the canonical train split
    outputs: Mapping[tuple[str, str], str]
    split: str | None = None  # the evaluation split the figure reads of each outputs file

    @property
    def results(self) -> Results:
        return Results(read_long_csv(self.metrics_csv), self.exp)

    def load(self, row: str, model: str) -> metrics.EvalData:
        from kdaug.measure.evaluation import load_eval_data

        if self.split is None:
            raise ValueError("this figure reads no evaluation split")
        return load_eval_data(self.outputs[(row, model)], self.split)


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


# The key of the training split among a figure's files (Figure 2 reads its images).
TRAIN_SPLIT_KEY = ("train", "split")


def figure_files(
    exp: Mapping[str, Any], spec: FigureSpec, selection: str
) -> dict[tuple[str, str], str]:
    """(row, model) -> the outputs file a figure reads (first seed, one split); for
    Figure 2, the experiment's training split (``train_split`` of its view)."""
    if spec.reads == "train_split":
        return {TRAIN_SPLIT_KEY: exp["train_split"]}
    if spec.reads != "outputs":
        return {}
    models = ["teacher"] if spec.models == "teacher" else ["teacher", *exp["students"]["archs"]]
    seed = exp["seeds"][0]
    return {
        (row, m): model_cell(exp, seed, row, m).eval_outputs(selection)
        for row in row_values(exp, "teacher_aug")
        for m in models
    }


def figure_split(exp: Mapping[str, Any], spec: FigureSpec) -> str | None:
    """The evaluation split a figure reads of each model's outputs file."""
    if spec.reads != "outputs":
        return None
    role = human_or_test(exp) if spec.split_role == "human_or_test" else spec.split_role
    return exp["eval_splits"][role]


def _model_label(exp: Mapping[str, Any], model: str) -> str:
    return f"teacher ({exp['teachers']['archs'][0]})" if model == "teacher" else f"{model} student"


# --------------------------------------------------------------------------- bar charts


def _bars(inputs: FigureInputs, selection: str, path: Path, metric: str, role: str) -> None:
    plt = plots.pyplot()
    results, exp = inputs.results, inputs.exp
    augs, models = results.row_values("teacher_aug"), results.models("all")
    split = results.split(role)
    fig, ax = plt.subplots(figsize=(2.6 + 1.3 * len(augs), 3.8))
    series = {
        _model_label(exp, m): [
            results.summary(selection, split, m, metric, "teacher_aug", a) for a in augs
        ]
        for m in models
    }
    n_seeds = max((s.n for values in series.values() for s in values), default=0)
    top = plots.grouped_bars(
        ax, augs, series, f"{metric} on {split}", value_labels=True, legend="right"
    )
    ax.set_xlabel("teacher augmentation")
    ax.set_ylim(0, 1.0 if metric == "accuracy" else max(top * 1.15, 1e-3))
    spread = "mean ± std over" if n_seeds > 1 else "from"
    ax.set_title(f"{metric} per model ({selection} weights; {spread} {n_seeds} seed(s))")
    fig.tight_layout()
    plots.save(fig, path)


def plot_teacher_vs_student(inputs: FigureInputs, selection: str, path: Path) -> None:
    _bars(inputs, selection, path, "accuracy", "test")


def plot_ece(inputs: FigureInputs, selection: str, path: Path) -> None:
    _bars(inputs, selection, path, "ece", human_or_test(inputs.exp))


# --------------------------------------------------------------------------- images

# Figure 2: how many training images (rows, from distinct classes), the batch they are
# augmented in (Mixup's and CutMix's partners come from it), and how many seeds to try
# for a draw that changes the batch (CutMix at prob 0.5 leaves half the batches alone).
EXAMPLE_IMAGES = 3
EXAMPLE_BATCH = 16
EXAMPLE_REDRAWS = 64


def example_rows(labels: np.ndarray, n: int, batch: int, seed: int = 0) -> np.ndarray:
    """Row indices of a batch of ``batch`` training images whose first ``n`` (at most one
    per class) are the ones shown; fixed by ``seed``."""
    rng = np.random.default_rng(seed)
    classes = rng.permutation(np.unique(labels))[:n]
    shown = [int(rng.choice(np.flatnonzero(labels == c))) for c in classes]
    others = rng.permutation(np.setdiff1d(np.arange(len(labels)), shown))
    return np.concatenate([shown, others[: max(batch - len(shown), 0)]]).astype(np.int64)


def augmented_examples(
    spec: Mapping[str, Any], pixels: np.ndarray, labels: np.ndarray, num_classes: int,
    normalization: Mapping[str, Sequence[float]],
) -> tuple[np.ndarray, np.ndarray, int]:  # fmt: skip
    """``pixels`` (floats in [0, 1], a batch) under augmentation ``spec`` as the training
    engine applies it, mapped back to [0, 1] from the normalised space the network sees
    (so Cutout's hole, zero after normalisation, shows the dataset's mean colour), with
    the targets (Mixup and CutMix mix them) and the seed of the draw shown: the first of
    0, 1, ... where every op changes the batch (CutMix at prob 0.5 skips half the batches:
    a figure of a skipped draw would show the crop under it and call it CutMix)."""
    import dataclasses

    import torch

    from kdaug.train.augment import Augmentation, Op, augmentation_from_spec

    changed: list[bool] = []

    def watched(op: Op) -> Op:
        def apply(v: torch.Tensor, t: torch.Tensor, rng: np.random.Generator) -> Any:
            out = op(v, t, rng)
            changed.append(not (torch.equal(out[0], v) and torch.equal(out[1], t)))
            return out

        return dataclasses.replace(op, apply=apply)

    built = augmentation_from_spec(spec)
    if not isinstance(built, Augmentation):
        raise ValueError(f"{spec['name']}: Figure 2 shows a teacher's augmentation, not x'")
    augmentation = Augmentation(built.name, tuple(watched(op) for op in built.ops))
    mean = torch.tensor(normalization["mean"], dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(normalization["std"], dtype=torch.float32).view(1, -1, 1, 1)

    def normalize(v: torch.Tensor) -> torch.Tensor:
        return (v - mean) / std

    x = torch.from_numpy(pixels).float()
    y = torch.nn.functional.one_hot(torch.from_numpy(labels), num_classes).float()
    for seed in range(EXAMPLE_REDRAWS):
        changed.clear()
        out, targets = augmentation(x.clone(), y.clone(), np.random.default_rng(seed), normalize)
        if all(changed):
            break
    return (out * std + mean).numpy(), targets.numpy(), seed


def target_text(target: np.ndarray, names: Sequence[str]) -> str:
    """A training target in words: its class, or the two classes it mixes with their
    weights (``cat 0.62 + dog 0.38``)."""
    order = np.argsort(target)[::-1]
    if target[order[0]] > 0.995:
        return names[order[0]]
    return " + ".join(f"{names[i]} {target[i]:.2f}" for i in order[:2] if target[i] > 0.005)


def plot_augmentations(inputs: FigureInputs, selection: str, path: Path) -> None:
    """Figure 2: a few training images (rows) under each teacher augmentation (columns),
    drawn by the training code from the experiment's own augmentation entries, with the
    training target under each image."""
    import textwrap

    from kdaug.data.canonical import load_split

    plt = plots.pyplot()
    exp = inputs.exp
    split = load_split(inputs.outputs[TRAIN_SPLIT_KEY])
    n = int(exp.get("figures", {}).get("augmentation_examples", EXAMPLE_IMAGES))
    rows = example_rows(split.labels, n, EXAMPLE_BATCH)
    n = min(n, len(np.unique(split.labels)))
    pixels = split.images[rows].astype(np.float32) / 255.0
    labels = split.labels[rows]
    names = list(split.class_names)
    augs = list(exp["teachers"]["augmentations"])
    columns = {"original": (pixels, np.eye(split.num_classes)[labels], None)}
    for aug in augs:
        spec = exp["augmentation_specs"][aug]
        if spec["steps"] or spec.get("append"):
            columns[aug] = augmented_examples(
                spec, pixels, labels, split.num_classes, exp["normalization"]
            )
    fig, axes = plt.subplots(
        n, len(columns), figsize=(1.45 * len(columns), 1.55 * n + 0.9), squeeze=False
    )
    for j, (name, (images, targets, _)) in enumerate(columns.items()):
        how = exp.get("protocol", {}).get(name, "no augmentation" if name == "original" else "")
        title = name if name != "original" else "original" + (" (none)" if "none" in augs else "")
        axes[0][j].set_title(
            title + "\n" + "\n".join(textwrap.wrap(how, 26)), fontsize=7, loc="center"
        )
        for i in range(n):
            plots.image(axes[i][j], images[i])
            axes[i][j].set_xlabel(target_text(targets[i], names), fontsize=6)
    plots.finish(
        fig,
        path,
        f"Training images of {exp['dataset']} under each teacher augmentation, as the "
        "network sees them (target below)",
        fontsize=9,
    )


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
    plt = plots.pyplot()
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
        squeeze=False,
    )  # fmt: skip
    image = None
    for i, model in enumerate(models):
        for j, aug in enumerate(augs):
            ax = axes[i][j]
            # every panel has the same classes in the same order: the first column's row
            # labels serve the whole row (on the others they ran into the panel to the left)
            rows = names if j == 0 else False
            image = plots.heatmap(ax, mats[(aug, model)], 0.0, vmax, names, rows, square=True)
            ax.tick_params(axis="x", labelrotation=90, labelsize=5)
            ax.tick_params(axis="y", labelrotation=0, labelsize=5)
            if i == 0:
                ax.set_title(aug, fontsize=9)
            if j == 0:
                ax.set_ylabel(f"{_model_label(inputs.exp, model)}\ntrue class", fontsize=7)
    for ax in axes[-1]:
        ax.set_xlabel(xlabel, fontsize=7)
    fig.suptitle(title, fontsize=10)
    if image is not None:  # one colour scale for every panel, as in the paper
        fig.colorbar(image, ax=axes, shrink=0.6, label=colorbar)
    plots.save(fig, path)


def _class_names(outputs_file: str) -> list[str]:
    with np.load(outputs_file, allow_pickle=False) as f:
        return [str(c) for c in f["class_names"]]


def plot_human_confidence(inputs: FigureInputs, selection: str, path: Path) -> None:
    """Figure 3: mean human label distribution per true class, diagonal masked."""
    plt = plots.pyplot()
    data = inputs.load(*next(iter(inputs.outputs)))
    if data.soft_labels is None:
        raise ValueError("figure 3 needs a split with human soft labels")
    m = metrics.masked_confusion_probabilities(data.soft_labels, data.labels, data.num_classes)
    names = _class_names(next(iter(inputs.outputs.values())))
    fig, ax = plt.subplots(figsize=(5.2, 4.4))
    image = plots.heatmap(ax, m, 0.0, float(np.nanmax(m)), names, names, square=True)
    ax.tick_params(axis="x", labelrotation=90, labelsize=7)
    ax.tick_params(axis="y", labelrotation=0, labelsize=7)
    ax.set_xlabel("label given by annotators")
    ax.set_ylabel("true class")
    ax.set_title("Average human confidence per true class\n(diagonal masked)", fontsize=10)
    fig.colorbar(image, ax=ax, label="mean probability")
    fig.tight_layout()
    plots.save(fig, path)


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
    plt = plots.pyplot()
    keys = list(inputs.outputs)
    augs = list(dict.fromkeys(r for r, _ in keys))
    models = list(dict.fromkeys(m for _, m in keys))
    fig, axes = plt.subplots(1, len(models), figsize=(3.6 * len(models), 3.6))
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
    plots.finish(fig, path, f"Reliability diagrams ({selection} weights)", fontsize=10)


def plot_tsne(inputs: FigureInputs, selection: str, path: Path) -> None:
    """Figure 4: t-SNE of the teachers' penultimate embeddings for a few classes
    (``figures.tsne_classes``; default the first four), one panel per augmentation."""
    from sklearn.manifold import TSNE

    plt = plots.pyplot()
    options = inputs.exp.get("figures", {})
    augs = [r for r, _ in inputs.outputs]
    names = _class_names(next(iter(inputs.outputs.values())))
    wanted = options.get("tsne_classes") or names[:4]
    missing = [c for c in wanted if c not in names]
    if missing:
        raise ValueError(f"figures.tsne_classes {missing} are not classes of {names}")
    classes = [names.index(c) for c in wanted]
    per_class = int(options.get("tsne_per_class", 250))
    fig, axes = plt.subplots(1, len(augs), figsize=(3.0 * len(augs), 3.3))
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
        shown = [names[c] for c in d.labels[index]]
        plots.class_scatter(ax, xy, shown, list(wanted), legend=ax is axes[-1])
        ax.set_title(aug, fontsize=9)
    plots.finish(
        fig, path, f"t-SNE of teacher penultimate embeddings ({selection} weights)", fontsize=10
    )


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
            "figure2_augmentations",
            "Figure 2 analogue: training images of the split (rows, distinct classes, fixed "
            "seed) under each teacher augmentation (columns), applied by the training code "
            "to a batch of 16 as the teacher's training applies it and mapped back from the "
            "normalised inputs (a Cutout hole shows the mean colour); under each image its "
            "training target (Mixup and CutMix mix two classes). An augmentation applied "
            "with a probability is shown at the first seed whose draw applies it.",
            plot_augmentations,
            "train_split",
            None,
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
            "human_or_test",
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


def draw_figure(
    spec: FigureSpec,
    exp: Mapping[str, Any],
    selection: str,
    metrics_csv: str | None,
    outputs: Sequence[str],
    path: str | os.PathLike[str],
) -> None:
    """Draw ``spec`` from the given inputs (outputs in :func:`figure_sources` order)."""
    sources = figure_files(exp, spec, selection)
    if len(outputs) != len(sources):
        raise ValueError(f"{spec.name} expects {len(sources)} outputs files, got {len(outputs)}")
    mapping = dict(zip(sources, outputs, strict=True))
    inputs = FigureInputs(exp, metrics_csv, mapping, figure_split(exp, spec))
    spec.plot(inputs, selection, Path(path))


def split_roles(report: Report) -> set[str]:
    """The evaluation split roles a Das report reads (the experiment must define them)."""
    roles = {r for t in report.tables for r in DAS_TABLES[t].split_roles}
    for name in report.figures:
        role = FIGURE_SPECS[name].split_role
        if role not in ("human_or_test", None):
            roles.add(role)
    return roles


def file_roles(name: str) -> frozenset[str]:
    """The split roles table or figure ``name`` reads: drawn when the experiment has one
    of them (Table 6 without CINIC-10 shows the test columns), else left out (Table 1,
    Figures 3 and 6 without CIFAR-10H; never drawn from another split instead)."""
    if name in DAS_TABLES:
        return frozenset(DAS_TABLES[name].split_roles)
    role = FIGURE_SPECS[name].split_role
    if role is None:  # reads no evaluation split: drawn whenever the report is
        return frozenset({"test"})
    return frozenset({"human", "test"} if role == "human_or_test" else {role})


def figure_sources(exp: Mapping[str, Any], figure: str, selection: str) -> list[str]:
    """The outputs files figure ``figure`` reads, in the order :func:`render` takes them."""
    return list(figure_files(exp, FIGURE_SPECS[figure], selection).values())


def render(
    long_csv: str | os.PathLike[str] | None,
    exp: Mapping[str, Any],
    selection: str,
    name: str,
    out: str,
    outputs: Sequence[str] = (),
) -> None:
    """Write table ``name`` (``out`` is the stem) or draw figure ``name`` (``out``: PNG)."""
    if name in FIGURE_SPECS:
        csv = None if long_csv is None else str(long_csv)
        draw_figure(FIGURE_SPECS[name], exp, selection, csv, outputs, out)
        return
    results = Results(read_long_csv(long_csv), exp)
    # Published values sit beside ours only where the experiment is the paper's own
    # (the demo's digits are not CIFAR-10: a difference to the paper would mislead).
    paper = PAPER if exp.get("compare_with_paper", True) else None
    build_table(results, DAS_TABLES[name], selection, paper).write(out)


register_paper(
    Paper(
        PAPER,
        "Das et al. 2020: augmented teachers",
        render,
        tables={name: spec.caption for name, spec in DAS_TABLES.items()},
        figures={name: spec.caption for name, spec in FIGURE_SPECS.items()},
        figure_sources=figure_sources,
        split_roles=split_roles,
        file_roles=file_roles,
        claims_file="das2020.yaml",
    )
)

register_report(
    "das2020",
    Report(
        PAPER,
        (
            "table1_test",
            "table2_shifted",
            "table4_separability",
            "table5_discrimination",
            "table6_students",
            "table9_teachers",
        ),
        (
            "figure1_teacher_vs_student",
            "figure2_augmentations",
            "figure3_human_confidence",
            "figure4_tsne",
            "figure5_reliability",
            "figure6_relative_kl",
            "figure7_ece",
            "figure8_masked_confusion",
        ),
        claim="A teacher trained with a mixed-sample augmentation (Mixup, CutMix) distills a "
        "worse student than one trained without it, although it is as accurate or better "
        "itself (Das et al. 2020, abstract and Tables 1-3).",
    ),
)
register_report(
    "das2020_mnist",
    Report(
        PAPER,
        ("table3_mnist",),
        ("figure1_teacher_vs_student",),
        claim="On MNIST too, AlexNet teachers trained with Mixup or CutMix make worse LeNet "
        "students (Das et al. 2020, Table 3).",
    ),
)
register_report(
    "das2020_augmented_students",
    Report(
        PAPER,
        ("table7_augmented_students",),
        claim="Augmenting the student's own training does not undo the effect of the "
        "teacher's augmentation (Das et al. 2020, Table 7).",
    ),
)
register_report(
    "das2020_same_augmentation",
    Report(
        PAPER,
        ("table8_same_augmentation",),
        claim="A LeNet student trained with its teacher's augmentation is still worse than "
        "the baseline pair trained without any (Das et al. 2020, Sec. 4.4.2, Table 8).",
    ),
)
