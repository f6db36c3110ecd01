"""Tables and figures of Wang et al. (2022) from an experiment's collected metrics.

Two kinds of experiment:

- **DA schemes** (report ``wang2022_da``; the paper's Tables 3-6, 9, 10 and Figure 4):
  every teacher/student pair distilled with each appended-copy augmentation. Tables give
  the teacher's T. stddev (and v̄, r̄) and each student's test loss per scheme; a
  correlation table gives Pearson's r and its p-value between the teacher statistic and
  the student test loss over the schemes, per pair (points: means over seeds, as the
  paper's Figure 4); the figure is that scatter.
- **accuracy** (report ``wang2022_accuracy``; Tables 1-2): test accuracy (percent) of
  the students per (KD method, augmentation) row and pair, with the teachers' and the
  CE-trained students' accuracies. ``experiments.<name>.paper_rows`` maps our rows
  (``<kd method>/<augmentation>``, or ``teacher``) to the paper's row keys.

Published values (``papers/values/wang2022.yaml``) sit beside ours when the experiment's
dataset is the paper's (``cifar100`` or ``tiny_imagenet``) and ``compare_with_paper`` is
not false. Augmentation names map to the paper's rows by dropping ``append_``
(``append_cutmixpick_t`` -> ``cutmixpick_t``).
"""

from __future__ import annotations

import math
import os
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from kdaug.cells import STREAM_SPLIT, student_variants, students_of
from kdaug.cells import Cell as ModelCell  # tables.Cell is a table cell
from kdaug.io import atomic_path, read_long_csv
from kdaug.report import plots
from kdaug.report.registry import Paper, Report, register_paper, register_report
from kdaug.report.results import Summary, summarize
from kdaug.report.tables import (
    Cell,
    PaperLookup,
    Table,
    latex_tabular,
    markdown_table,
    paper_lookup,
)

PAPER = "wang2022"
# Per dataset: the paper's tables of each kind (a dataset not listed has no paper values).
PAPER_TABLES = {
    "cifar100": {
        "tstddev": ("table3_cifar100_tstddev_loss", "table4_cifar100_tstddev_loss_cont"),
        "vbar": ("table9_cifar100_vbar_loss",),
        "rbar": ("table10_cifar100_rbar_loss",),
        "accuracy": ("table1_cifar100_accuracy",),
    },
    "tiny_imagenet": {
        "tstddev": ("table5_tinyimagenet_tstddev_loss", "table6_tinyimagenet_tstddev_loss_cont"),
        "accuracy": ("table2_tinyimagenet_accuracy",),
    },
    # Appendix A.1 (Figure 5): resnet34 -> resnet18 (``paper_archs`` of the experiments)
    "imagenet100": {"tstddev": ("table7_imagenet100_tstddev_loss",)},
    "imagenet": {"tstddev": ("table8_imagenet_tstddev_loss",)},
}
# Teacher statistics: (metric in the CSV, paper column suffix, display scale, label).
STATISTICS = {
    "t_stddev": ("tstddev", 1e3, "T. stddev (x1e-3)"),
    "cov_mean": ("vbar", 1e4, "v-bar (x1e-4)"),
    "cor_mean": ("rbar", 1e2, "r-bar (x1e-2)"),
}


# Ops that make a scheme a sanity check rather than a method: Wang et al.'s "bad" DA
# (appendix A.2) turns every x' into one constant image, which lowers T. stddev (the
# teacher's output on x' never varies) without helping the student.
SANITY_OPS = frozenset({"constant"})
SANITY_LABEL = "sanity check: every x' one constant image"


def sanity_checks(exp: Mapping[str, Any]) -> set[str]:
    """The experiment's augmentations whose steps or appended copy use a
    :data:`SANITY_OPS` op (from ``augmentation_specs`` of
    :func:`kdaug.plan.experiment_view`; none where the view lacks them)."""
    specs = exp.get("augmentation_specs", {})
    return {
        name
        for name, spec in specs.items()
        if any(step["op"] in SANITY_OPS for step in [*spec["steps"], *spec.get("append", [])])
    }


def row_label(exp: Mapping[str, Any], row: str, aug: str) -> str:
    """A table's row name: ``row``, marked when its augmentation is a sanity check (so
    that it is never read as a competing scheme)."""
    return f"{row} ({SANITY_LABEL})" if aug in sanity_checks(exp) else row


def paper_arch(exp: Mapping[str, Any], arch: str) -> str:
    """The paper's name of our architecture in its tables' columns
    (``experiments.*.paper_archs``: ImageNet's ``resnet18_imagenet`` is the paper's
    ``resnet18``; default: the same name)."""
    return exp.get("paper_archs", {}).get(arch, arch)


def paper_row(exp: Mapping[str, Any], row: str) -> str:
    """The paper's row key of our row (``experiments.*.paper_rows``, else the
    augmentation name without ``append_``)."""
    return exp.get("paper_rows", {}).get(row, row.removeprefix("append_"))


class WangResults:
    """Values over seeds of one experiment's cells, keyed by the pair and the row."""

    def __init__(self, rows: Iterable[Mapping[str, str]], exp: Mapping[str, Any]):
        self.exp = exp
        self.values: dict[tuple[str, ...], dict[int, float]] = defaultdict(dict)
        for r in rows:
            student = (
                (r["student_arch"], r["kd"], r["student_aug"])
                if r["role"] == "student"
                else ("", "", "")
            )
            key = (
                r["teacher_arch"],
                r["teacher_aug"],
                *student,
                r["selection"],
                r["split"],
                r["metric"],
            )
            self.values[key][int(r["seed"])] = float(r["value"])

    @property
    def teachers(self) -> list[str]:
        return list(self.exp["teachers"]["archs"])

    @property
    def pairs(self) -> list[tuple[str, str]]:
        return [(t, s) for t in self.teachers for s in students_of(self.exp, t)]

    @property
    def teacher_aug(self) -> str:
        augs = self.exp["teachers"]["augmentations"]
        if len(augs) != 1:
            raise ValueError(f"Wang et al.'s tables need one teacher augmentation; got {augs}")
        return augs[0]

    @property
    def augmentations(self) -> list[str]:
        return list(self.exp["students"]["augmentations"])

    @property
    def kd_methods(self) -> list[str]:
        return list(self.exp["students"]["kd_methods"])

    @property
    def test_split(self) -> str:
        return self.exp["eval_splits"]["test"]

    def student(
        self, pair: tuple[str, str], kd: str, aug: str, metric: str, selection: str
    ) -> Summary:
        split = STREAM_SPLIT if metric in STATISTICS else self.test_split
        selection = "" if metric in STATISTICS else selection
        key = (pair[0], self.teacher_aug, pair[1], kd, aug, selection, split, metric)
        values = self.values.get(key, {})
        return summarize([values[s] for s in sorted(values)])

    def teacher(self, tarch: str, metric: str, selection: str) -> Summary:
        key = (tarch, self.teacher_aug, "", "", "", selection, self.test_split, metric)
        values = self.values.get(key, {})
        return summarize([values[s] for s in sorted(values)])

    def teacher_statistic(self, tarch: str, kd: str, aug: str, metric: str) -> Summary:
        """A teacher statistic of (teacher, scheme): the same stream for every student of
        the teacher (seeds pooled over students; they differ only for student-entropy
        picking, which scores with each student)."""
        values = []
        for sarch in students_of(self.exp, tarch):
            key = (tarch, self.teacher_aug, sarch, kd, aug, "", STREAM_SPLIT, metric)
            values += list(self.values.get(key, {}).values())
        return summarize(values)

    def single_kd(self) -> str:
        if len(self.kd_methods) != 1:
            raise ValueError(f"this table needs one KD method; got {self.kd_methods}")
        return self.kd_methods[0]


def _paper_lookup(exp: Mapping[str, Any], kind: str) -> PaperLookup:
    """The paper's tables of ``kind`` for the experiment's dataset (none when not comparing)."""
    compare = exp.get("compare_with_paper", True)
    names = PAPER_TABLES.get(exp["dataset"], {}).get(kind, ()) if compare else ()
    return paper_lookup(PAPER, names)


def _scaled(summary: Summary, scale: float) -> Summary:
    return Summary(*(v * scale if isinstance(v, float) else v for v in (
        summary.mean, summary.std, summary.n, summary.ci_low, summary.ci_high
    )))  # fmt: skip


def statistics_table(results: WangResults, selection: str, metric: str) -> Table:
    """Tables 3-6 (T. stddev), 9 (v̄) and 10 (r̄): per scheme, the teacher statistic of
    each teacher and the test loss of each of its students."""
    suffix, scale, label = STATISTICS[metric]
    lookup = _paper_lookup(results.exp, suffix)
    kd = results.single_kd()
    header, rows = [], []
    for tarch in results.teachers:
        header.append(f"{tarch} {label}")
        header += [f"{tarch}/{s} S. test loss" for s in students_of(results.exp, tarch)]
    for aug in results.augmentations:
        row = paper_row(results.exp, aug)
        cells = []
        for tarch in results.teachers:
            stat = _scaled(results.teacher_statistic(tarch, kd, aug, metric), scale)
            pt = paper_arch(results.exp, tarch)
            value, decimals = lookup(row, f"{pt}__{suffix}")
            if value is not None and suffix != "tstddev":  # v-bar, r-bar printed unscaled
                value, decimals = value * scale, max(decimals - round(math.log10(scale)), 0)
            cells.append(Cell(stat, value, decimals))
            for sarch in students_of(results.exp, tarch):
                loss = results.student((tarch, sarch), kd, aug, "test_loss", selection)
                ps = paper_arch(results.exp, sarch)
                cells.append(Cell(loss, *lookup(row, f"{pt}__{ps}__test_loss")))
        rows.append(([row_label(results.exp, aug, aug)], cells))
    caption = (
        f"**{label} and student test loss** ({selection} weights; {kd}). Teacher statistic "
        "of the KD training stream (x and its appended copy x'), student test loss (mean "
        "cross-entropy on the test split), per appended augmentation. Cells: mean ± std "
        "[95% t-interval] over seeds; paper: Wang et al. 2022 "
        f"{'Tables 3-6' if suffix == 'tstddev' else 'Tables 9-10'}."
    )
    return Table(caption, ["augmentation"], header, rows)


@dataclass(frozen=True)
class Correlation:
    pair: tuple[str, str]
    statistic: str
    r: float
    p: float
    points: int


def correlations(
    results: WangResults, selection: str, target: str = "test_loss"
) -> list[Correlation]:
    """Pearson's r (and two-sided p) between a teacher statistic and the student's
    ``target`` (test loss: Figure 4; accuracy: Figure 6) over the schemes, per pair; each
    point is a mean over seeds. Sanity-check schemes (:func:`sanity_checks`) are left
    out: they break the assumption the statistic rests on (appendix A.2)."""
    from scipy import stats

    kd = results.single_kd()
    schemes = [a for a in results.augmentations if a not in sanity_checks(results.exp)]
    found = []
    for pair in results.pairs:
        for metric in STATISTICS:
            xs, ys = [], []
            for aug in schemes:
                x = results.student(pair, kd, aug, metric, selection).mean
                y = results.student(pair, kd, aug, target, selection).mean
                if not (math.isnan(x) or math.isnan(y)):
                    xs.append(x)
                    ys.append(y)
            r = p = math.nan
            if len(xs) >= 3 and np.ptp(xs) > 0 and np.ptp(ys) > 0:
                r, p = (float(v) for v in stats.pearsonr(xs, ys))
            found.append(Correlation(pair, metric, r, p, len(xs)))
    return found


CORRELATION_COLUMNS = ("teacher", "student", "statistic", "pearson_r", "p_value", "points")


def write_correlation_table(
    results: WangResults, selection: str, stem: str | os.PathLike[str]
) -> None:
    """``stem``.csv (one row per pair and statistic), .md and .tex (one row per pair, one
    column per statistic: ``r (p, n)``), from one frame."""
    import pandas as pd

    frame = pd.DataFrame(
        [(*c.pair, c.statistic, c.r, c.p, c.points) for c in correlations(results, selection)],
        columns=list(CORRELATION_COLUMNS),
    )
    with atomic_path(f"{stem}.csv") as tmp:
        frame.to_csv(tmp, index=False, na_rep="nan")
    caption = (
        f"**Correlation of teacher statistics with student test loss** ({selection} weights). "
        "Pearson's r and two-sided p over the appended augmentations (each point a mean "
        "over seeds), per teacher/student pair. Wang et al. 2022 report strong positive "
        "correlation for T. stddev (Figure 4; its r and p values are not in the text) and "
        "weaker agreement for v-bar and r-bar (appendix A.2)."
    )
    left_out = sorted(sanity_checks(results.exp) & set(results.augmentations))
    if left_out:
        caption += f" Not among the points: {', '.join(left_out)} ({SANITY_LABEL})."
    keys, header = ["teacher", "student"], [f"{STATISTICS[m][2]} r (p)" for m in STATISTICS]

    def wide(text: Callable[[Any], str]) -> pd.DataFrame:
        """One row per pair, one text cell per statistic (in :data:`STATISTICS` order)."""
        cells = frame.assign(text=[text(c) for c in frame.itertuples()])
        table = cells.pivot_table(
            index=keys, columns="statistic", values="text", aggfunc="first", sort=False
        )
        return table.reindex(columns=list(STATISTICS))

    def markdown(c: Any) -> str:
        return "—" if math.isnan(c.pearson_r) else (
            f"{c.pearson_r:+.3f} (p={c.p_value:.2g}, n={c.points})"
        )  # fmt: skip

    def latex(c: Any) -> str:
        if math.isnan(c.pearson_r):
            return "--"
        return f"${c.pearson_r:+.3f}$ ($p = {c.p_value:.2g}$, $n = {c.points}$)"

    md = wide(markdown)
    rows = [[*pair, *cells] for pair, cells in zip(md.index, md.to_numpy().tolist(), strict=True)]
    with atomic_path(f"{stem}.md") as tmp:
        tmp.write_text(markdown_table(caption, keys + header, rows))
    tex = wide(latex)
    rows = [
        (list(pair), cells) for pair, cells in zip(tex.index, tex.to_numpy().tolist(), strict=True)
    ]
    # Pearson's r has no better end: no cell is bold.
    with atomic_path(f"{stem}.tex") as tmp:
        tmp.write_text(latex_tabular(caption, keys, header, rows))


def accuracy_table(
    results: WangResults, selection: str, lookup: PaperLookup | None = None,
    source: str = "Wang et al. 2022 Tables 1-2 (CRD rows as CRD+KD, the numbers the paper prints)",
) -> Table:  # fmt: skip
    """Tables 1-2: test accuracy in percent per row and teacher/student pair; published
    values from ``lookup`` (default: Wang et al.'s tables for the dataset)."""
    lookup = lookup or _paper_lookup(results.exp, "accuracy")
    header = [f"{t}/{s}" for t, s in results.pairs]
    rows = []
    teacher_cells = []
    for tarch, sarch in results.pairs:
        acc = _scaled(results.teacher(tarch, "accuracy", selection), 100.0)
        row = results.exp.get("paper_rows", {}).get("teacher", "teacher_accuracy")
        teacher_cells.append(Cell(acc, *lookup(row, f"{tarch}__{sarch}")))
    rows.append((["teacher"], teacher_cells))
    for kd, aug in student_variants(results.exp, results.teacher_aug):
        label = f"{kd}/{aug}"
        cells = []
        for pair in results.pairs:
            acc = _scaled(results.student(pair, kd, aug, "accuracy", selection), 100.0)
            cells.append(Cell(acc, *lookup(paper_row(results.exp, label), "__".join(pair))))
        rows.append(([row_label(results.exp, label, aug)], cells))
    caption = (
        f"**Student test accuracy (%)** ({selection} weights), per KD method/augmentation "
        f"row and teacher/student pair ({source}). Cells: mean ± std [95% t-interval] "
        "over seeds."
    )
    # Columns are pairs: the metric comes from the table; the teacher row is a reference.
    return Table(caption, ["row"], header, rows, metric="accuracy", unranked_rows=("teacher",))


# What Figures 4 and 6 plot against T. stddev: (label, display scale, the paper's figure,
# short name in a panel's r).
SCATTER_TARGETS = {
    "test_loss": ("student test loss", 1.0, "Fig. 4", "loss"),
    "accuracy": ("student test accuracy (%)", 100.0, "Fig. 6", "acc"),
}


def _r_text(c: Correlation, what: str) -> str:
    return f"r({what}) = n/a" if math.isnan(c.r) else f"r({what}) = {c.r:+.2f}, p = {c.p:.2g}"


def plot_tstddev_scatter(
    results: WangResults, selection: str, path: str | os.PathLike[str], target: str
) -> None:
    """T. stddev vs the student's ``target`` per pair, one point per scheme (error bars:
    one std over seeds): Figure 4 (test loss) or Figure 6 (test accuracy, whose panels
    also give r for the loss, the contrast the paper's appendix draws). A sanity-check
    scheme is drawn as a black cross and left out of r."""
    plt = plots.pyplot()
    kd = results.single_kd()
    ylabel, scale, figure, _ = SCATTER_TARGETS[target]
    shown = {t: {(c.pair, c.statistic): c for c in correlations(results, selection, t)}
             for t in dict.fromkeys([target, "test_loss"])}  # fmt: skip
    sanity = sanity_checks(results.exp)
    pairs = results.pairs
    cols = min(len(pairs), 3)
    rows = math.ceil(len(pairs) / cols)
    width = max(4.6 * cols, 8.0)  # room for the title and the legend with one panel
    fig, axes = plt.subplots(rows, cols, figsize=(width, 3.9 * rows + 1.0), squeeze=False)
    colours = plots.palette(len(results.augmentations))
    for ax, pair in zip(axes.flat, pairs, strict=False):
        for i, aug in enumerate(results.augmentations):
            x = _scaled(results.student(pair, kd, aug, "t_stddev", selection), 1e3)
            y = _scaled(results.student(pair, kd, aug, target, selection), scale)
            if x.empty or y.empty:
                continue
            xerr = None if math.isnan(x.std) else x.std
            yerr = None if math.isnan(y.std) else y.std
            label = paper_row(results.exp, aug)
            style = {"fmt": "o", "color": colours[i], "label": label}
            if aug in sanity:
                style = {"fmt": "X", "color": "black", "markersize": 8,
                         "label": f"{label} ({SANITY_LABEL}; not in r)"}  # fmt: skip
            ax.errorbar(x.mean, y.mean, xerr=xerr, yerr=yerr, capsize=2, **style)
        stats = [_r_text(shown[t][(pair, "t_stddev")], SCATTER_TARGETS[t][3]) for t in shown]
        n = shown[target][(pair, "t_stddev")].points
        ax.set_title(f"{pair[0]} → {pair[1]} (n={n})\n" + "\n".join(stats), fontsize=9)
        ax.set_xlabel("T. stddev (x1e-3)")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(pairs) :]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 4), fontsize=8,
               bbox_to_anchor=(0.5, 0.0), title="appended augmentation")  # fmt: skip
    fig.suptitle(f"T. stddev vs {ylabel} ({selection} weights; Wang et al. {figure})")
    legend_rows = math.ceil(len(labels) / 4)
    bottom = (0.3 + 0.2 * legend_rows) / fig.get_figheight()  # room for the legend
    fig.tight_layout(rect=(0, bottom, 1, 1))
    plots.save(fig, path)


def plot_scatter(results: WangResults, selection: str, path: str | os.PathLike[str]) -> None:
    """Figure 4: T. stddev vs student test loss per pair, one point per scheme."""
    plot_tstddev_scatter(results, selection, path, "test_loss")


def plot_scatter_accuracy(
    results: WangResults, selection: str, path: str | os.PathLike[str]
) -> None:
    """Figure 6: T. stddev vs student test accuracy per pair (the paper: no clear
    correlation with accuracy, where the loss has a strong one)."""
    plot_tstddev_scatter(results, selection, path, "accuracy")


def plot_error_vs_epochs(
    results: WangResults, selection: str, path: str | os.PathLike[str], figure: str = "Fig. 2"
) -> None:
    """Figure 2 (resnet56 -> resnet20) and Figure 7 (the appendix's wrn_40_2 -> wrn_16_2
    and vgg13 -> vgg8): student test error against its number of training epochs, CE
    (alpha 0) vs KD, one line per (loss, augmentation), one panel per pair; error bars:
    one std over seeds. Epochs per KD method come from ``student_epochs`` (see
    :func:`kdaug.plan.experiment_view`). One colour per augmentation, dashed for CE and
    solid for KD, in one legend under the panels (a legend inside covers the lines)."""
    plt = plots.pyplot()
    epochs, alpha = results.exp["student_epochs"], results.exp["kd_alpha"]
    pairs = results.pairs
    augs = list(dict.fromkeys(a for _, a in student_variants(results.exp, results.teacher_aug)))
    colour = dict(zip(augs, plots.palette(len(augs)), strict=True))
    fig, axes = plt.subplots(
        1, len(pairs), figsize=(max(5.5 * len(pairs), 7.0), 5.0), squeeze=False
    )
    for ax, pair in zip(axes.flat, pairs, strict=True):
        lines: dict[tuple[str, str], list[tuple[int, Summary]]] = defaultdict(list)
        for kd, aug in student_variants(results.exp, results.teacher_aug):
            acc = results.student(pair, kd, aug, "accuracy", selection)
            if not acc.empty:
                kind = "KD" if alpha[kd] > 0 else "CE"
                lines[(kind, aug)].append((epochs[kd], _scaled(acc, 100.0)))
        for (kind, aug), points in sorted(lines.items()):
            points.sort(key=lambda p: p[0])
            xs = [p[0] for p in points]
            errors = [100.0 - p[1].mean for p in points]
            spread = [0.0 if math.isnan(p[1].std) else p[1].std for p in points]
            style = "-" if kind == "KD" else "--"
            ax.errorbar(xs, errors, yerr=spread, fmt=style + "o", capsize=2,
                        color=colour[aug], label=f"{kind}, {aug}")  # fmt: skip
        ax.set_xscale("log", base=2)
        ticks = sorted({x for points in lines.values() for x, _ in points})
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.minorticks_off()
        ax.set_xlabel("training epochs")
        ax.set_ylabel("test error (%)")
        ax.set_title(f"{pair[0]} → {pair[1]}", fontsize=10)
        ax.grid(alpha=0.3)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 4), fontsize=8,
               bbox_to_anchor=(0.5, 0.0))  # fmt: skip
    fig.suptitle(f"Test error vs epochs, KD vs CE ({selection} weights; Wang et al. {figure})")
    bottom = (0.15 + 0.2 * math.ceil(len(labels) / 4)) / fig.get_figheight()
    fig.tight_layout(rect=(0, bottom, 1, 1))
    plots.save(fig, path)


# -- Figure 8: CutMix samples the teacher labels otherwise ------------------------------

# Figure 8 (appendix A.4): how many CutMix batches of x' to draw (at the paper's batch
# size), from a fixed seed, and how many disagreeing samples to show.
DISAGREEMENT_BATCHES = 10
DISAGREEMENT_BATCH_SIZE = 64
DISAGREEMENT_SHOWN = 8


def cutmix_scheme(exp: Mapping[str, Any]) -> str:
    """The experiment's plain CutMix scheme: the first student augmentation whose
    appended copy is a cutmix op and that picks nothing (``append_cutmix``)."""
    for name in exp["students"]["augmentations"]:
        spec = exp.get("augmentation_specs", {}).get(name, {})
        ops = [step["op"] for step in spec.get("append", [])]
        if ops == ["cutmix"] and not spec.get("pick"):
            return name
    raise ValueError("Figure 8 needs a student augmentation appending CutMix alone")


def disagreement_sources(exp: Mapping[str, Any]) -> list[str]:
    """Figure 8's inputs: the training split and the first teacher of the first seed."""
    tarch, taug = exp["teachers"]["archs"][0], exp["teachers"]["augmentations"][0]
    teacher = ModelCell(exp["dataset"], exp["seeds"][0], tarch, taug)
    return [exp["train_split"], teacher.model_file]


@dataclass(frozen=True)
class CutMixSamples:
    """CutMix copies x' with CutMix's targets and the teacher's probabilities."""

    images: np.ndarray  # (N, C, H, W) in [0, 1], as the teacher saw them, de-normalised
    targets: np.ndarray  # (N, K): CutMix's label mixture
    probs: np.ndarray  # (N, K): the teacher's softmax at T = 1

    @property
    def disagrees(self) -> np.ndarray:
        """Where the teacher's top class is not CutMix's (the larger share's) class."""
        return self.probs.argmax(axis=1) != self.targets.argmax(axis=1)


def cutmix_samples(
    exp: Mapping[str, Any], train_path: str, teacher_path: str, seed: int = 0
) -> CutMixSamples:
    """Draw x' as the KD+CutMix student's training does (the loader's crop + flip, then
    the scheme's CutMix on the batch) for :data:`DISAGREEMENT_BATCHES` batches from
    ``seed``, and run the frozen teacher on them (CPU)."""
    import torch

    from kdaug.data.canonical import load_split
    from kdaug.train.augment import augmentation_from_spec
    from kdaug.train.engine import DeviceData
    from kdaug.train.training import frozen_teacher

    device = torch.device("cpu")
    norm = exp["normalization"]
    data = DeviceData.from_split(load_split(train_path), norm["mean"], norm["std"], device)
    teacher = frozen_teacher(teacher_path, device)
    scheme = augmentation_from_spec(exp["augmentation_specs"][cutmix_scheme(exp)])
    rng = np.random.default_rng(seed)
    images, targets, probs = [], [], []
    with torch.no_grad():
        for _ in range(DISAGREEMENT_BATCHES):
            rows = rng.choice(len(data), min(DISAGREEMENT_BATCH_SIZE, len(data)), replace=False)
            index = torch.as_tensor(rows)
            y = torch.nn.functional.one_hot(data.labels[index], data.num_classes).float()
            # x: the base pixel ops (no normalised ops under an appended copy); x' = CutMix
            # of x after normalisation, the order AppendedAugmentation.pair runs them in.
            pixels, y = scheme.base.pixel_stage(data.pixels(index), y, rng)
            x_extra, y_extra = scheme.extra(pixels, y, rng, data.normalize)
            probs.append(teacher(x_extra).float().softmax(dim=1).numpy())
            images.append((x_extra * data.std + data.mean).clamp(0, 1).numpy())
            targets.append(y_extra.numpy())
    return CutMixSamples(np.concatenate(images), np.concatenate(targets), np.concatenate(probs))


def _top_text(p: np.ndarray, names: Sequence[str], k: int) -> str:
    order = np.argsort(p)[::-1][:k]
    return ", ".join(f"{names[i]} {p[i]:.2f}" for i in order if p[i] >= 0.005)


def plot_cutmix_disagreement(
    exp: Mapping[str, Any], selection: str, outputs: Sequence[str], path: str
) -> None:
    """Figure 8: CutMix copies x' on which the teacher's top class is not CutMix's label,
    with CutMix's target and the teacher's top-3 under each, and the share of such
    samples among all drawn (the paper: 52.1% on ImageNet, resnet34 teacher)."""
    from kdaug.data.canonical import load_split

    train_path, teacher_path = outputs
    samples = cutmix_samples(exp, train_path, teacher_path)
    names = list(load_split(train_path).class_names)
    # The most mixed first (largest second share): the cases the paper shows, where the
    # pasted box may cover the object CutMix still names.
    second = np.sort(samples.targets, axis=1)[:, -2]
    disagreeing = np.flatnonzero(samples.disagrees)
    shown = disagreeing[np.argsort(-second[disagreeing], kind="stable")][:DISAGREEMENT_SHOWN]
    plt = plots.pyplot()
    cols = 4
    rows = max(1, math.ceil(len(shown) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2.3 * cols, 2.6 * rows + 0.9), squeeze=False)
    for ax, i in zip(axes.flat, shown, strict=False):
        plots.image(ax, samples.images[i])
        ax.set_xlabel(
            f"CutMix: {_top_text(samples.targets[i], names, 2)}\n"
            f"teacher: {_top_text(samples.probs[i], names, 3)}",
            fontsize=6,
        )
    for ax in list(axes.flat)[len(shown) :]:
        ax.axis("off")
    share = float(samples.disagrees.mean()) if len(samples.disagrees) else math.nan
    tarch = exp["teachers"]["archs"][0]
    plots.finish(
        fig,
        path,
        f"CutMix copies x' whose label the {tarch} teacher disagrees with: {share:.1%} of "
        f"{len(samples.disagrees)} (seed {exp['seeds'][0]}; Wang et al. Fig. 8: 52.1% on ImageNet)",
        fontsize=9,
    )


# Figures drawn from stored files rather than the metrics CSV: name -> (sources, plot).
OUTPUT_FIGURES: dict[
    str,
    tuple[
        Callable[[Mapping[str, Any]], list[str]],
        Callable[[Mapping[str, Any], str, Sequence[str], str], None],
    ],
] = {"figure8_cutmix_disagreement": (disagreement_sources, plot_cutmix_disagreement)}


def figure_sources(exp: Mapping[str, Any], figure: str, selection: str) -> list[str]:
    """The stored files a figure reads (:data:`OUTPUT_FIGURES`); none for the others,
    which read the metrics CSV."""
    return OUTPUT_FIGURES[figure][0](exp) if figure in OUTPUT_FIGURES else []


# -- what the reports render ------------------------------------------------------------

TableWriter = Callable[[WangResults, str, Path], None]


def _table_writer(build: Callable[[WangResults, str], Table]) -> TableWriter:
    return lambda results, selection, stem: build(results, selection).write(stem)


TABLES: dict[str, TableWriter] = {
    "table_tstddev": _table_writer(lambda r, s: statistics_table(r, s, "t_stddev")),
    "table_covariance": _table_writer(lambda r, s: statistics_table(r, s, "cov_mean")),
    "table_correlation_coefficient": _table_writer(lambda r, s: statistics_table(r, s, "cor_mean")),
    "table_pearson": write_correlation_table,
    "table_accuracy": _table_writer(accuracy_table),
}
FIGURES = {
    "figure4_tstddev_vs_loss": plot_scatter,
    "figure6_tstddev_vs_accuracy": plot_scatter_accuracy,
    "figure2_error_vs_epochs": plot_error_vs_epochs,
    "figure7_error_vs_epochs": partial(plot_error_vs_epochs, figure="Fig. 7"),
}


def render(
    long_csv: str | os.PathLike[str],
    exp: Mapping[str, Any],
    selection: str,
    name: str,
    out: str,
    outputs: Sequence[str] = (),
) -> None:
    """Write table ``name`` (``out`` is the stem) or figure ``name`` (``out`` is the PNG);
    figures of :data:`OUTPUT_FIGURES` read ``outputs`` (:func:`figure_sources` order),
    the others the metrics CSV."""
    if name in OUTPUT_FIGURES:
        OUTPUT_FIGURES[name][1](exp, selection, outputs, out)
        return
    results = WangResults(read_long_csv(long_csv), exp)
    if name in TABLES:
        TABLES[name](results, selection, Path(out))
    else:
        FIGURES[name](results, selection, out)


register_paper(
    Paper(
        PAPER,
        "Wang et al. 2022: augmentation during KD",
        render,
        tables={name: "" for name in TABLES},
        figures={name: "" for name in (*FIGURES, *OUTPUT_FIGURES)},
        figure_sources=figure_sources,
        claims_file="wang2022.yaml",
    )
)
# The DA-scheme grid (Tables 3-6, 9, 10, Figure 4) and the accuracy grid (Tables 1-2);
# each checks its claims of papers/claims/wang2022.yaml per teacher/student pair.
register_report(
    "wang2022_da",
    Report(
        PAPER,
        ("table_tstddev", "table_covariance", "table_correlation_coefficient", "table_pearson"),
        ("figure4_tstddev_vs_loss", "figure6_tstddev_vs_accuracy", "figure8_cutmix_disagreement"),
        claim="A better augmentation for KD gives the teacher a lower T. stddev on the "
        "augmented stream, and T. stddev correlates positively with the student's test "
        "loss; CutMixPick lowers it further (Wang et al. 2022, Sec. 4, Tables 3-6, Fig. 4).",
    ),
)
register_report(
    "wang2022_accuracy",
    Report(
        PAPER,
        ("table_accuracy",),
        claim="CutMix and CutMixPick appended during KD raise the student's accuracy, most "
        "with prolonged training (Wang et al. 2022, Tables 1-2).",
    ),
)
# Figure 2: test error vs training epochs, KD vs CE, per augmentation.
register_report(
    "wang2022_epochs",
    Report(
        PAPER,
        ("table_accuracy",),
        ("figure2_error_vs_epochs",),
        claim="With augmentation, KD keeps improving with longer training while CE "
        "saturates (Wang et al. 2022, Fig. 2).",
    ),
)
# Figure 7 (appendix): the same sweep on the two other pairs, wrn_40_2 -> wrn_16_2 and
# vgg13 -> vgg8. Its claims are Figure 2's, checked on that experiment; none of its own.
register_report(
    "wang2022_epochs_pairs",
    Report(
        PAPER,
        ("table_accuracy",),
        ("figure7_error_vs_epochs",),
        claims=False,
        claim="As in Figure 2, with augmentation the best number of epochs comes later, "
        "later for KD than for CE, and later still with a stronger augmentation (Wang et "
        "al. 2022, appendix Fig. 7).",
    ),
)
