"""Tables and figures of Choi et al. (2023) from an experiment's collected metrics.

- ``choi2023_scenarios`` (Figure 2; Figures 3-4's numbers): the fixed student's test
  accuracy per teacher under the four scenarios T&S, Mix-T&S, Mix-T&Mix-S, T&Mix-S
  (teacher / student trained without or with mixup), and per model the V-scores of the
  two class groups on the train and test splits and the mean entropy of its outputs.
- ``choi2023_figure1`` (Figure 1): t-SNE of the similar classes' train-set features of
  ResNet110 / ResNet56 trained from scratch without / with mixup, and of a ResNet56
  student at each KD temperature, with each model's test accuracy and V-score.
- ``choi2023_temperature`` (Figure 5): student accuracy per (teacher, student) pair of
  mixup-trained teachers, one heat map per KD temperature.
- ``choi2023_partial_mixup`` (Table 4, Figure 6): accuracy per PMU fraction and mixup
  alpha (augmentation names ``pmu<percent>_a<alpha x 10>`` / ``fmu_a<alpha x 10>``).
- ``choi2023_rescaled`` (Table 1's "Ours" rows): accuracy per (KD method, augmentation)
  row and teacher/student pair.
- ``choi2023_robustness`` (Table 3, Figure 7): accuracy under FGSM and I-FGSM per eps.
- ``choi2023_mixup_attacks`` (Figure 7 as the paper draws it: the alpha / PMU ablation on
  Table 4's students): the same attack table and bars, one row per mixup setting.

Published values (``papers/values/choi2023.yaml``: Tables 1, 3, 4) sit beside ours when the
experiment's dataset is the paper's (``cifar100``) and ``compare_with_paper`` is not false.
Table 4's cells are found by the augmentation names; Tables 1 and 3 by
``experiments.<name>.paper_rows`` (our ``<kd method>/<augmentation>`` row, or ``teacher``
-> the paper's row or column key).

Which augmentation is "mixup" comes from the experiment: the teachers' and students'
second augmentation is the mixup one (``augmentations: [standard, fmu_a10]``).
Accuracies are shown in percent, as the paper prints them.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from kdaug.cells import Cell as ModelCell
from kdaug.cells import student_variants, students_of
from kdaug.io import read_long_csv
from kdaug.measure.robustness import ATTACKS, attack_metric
from kdaug.papers.wang2022 import WangResults, accuracy_table
from kdaug.report import plots
from kdaug.report.registry import Paper, Report, register_paper, register_report
from kdaug.report.results import Summary, summarize
from kdaug.report.tables import Cell, PaperLookup, Table, paper_lookup, paper_values

PAPER = "choi2023"
# Per dataset: the paper's tables of each kind (a dataset not listed has no paper values).
PAPER_TABLES = {
    "cifar100": {
        "accuracy": ("table1_cifar100_accuracy",),
        "fgsm": ("table3_cifar100_fgsm",),
        "ifgsm": ("table3_cifar100_ifgsm",),
        "partial_mixup": ("table4_cifar100_alpha_pmu",),
    },
    "imagenet": {"imagenet": ("table2_imagenet_accuracy",)},  # Table 2: top-1 and top-5
}
SCENARIOS = ("T&S", "Mix-T&S", "Mix-T&Mix-S", "T&Mix-S")
PMU_NAME = re.compile(r"^(?:pmu(?P<percent>\d+)|fmu)_a(?P<alpha>\d+)$")


def _paper_tables(exp: Mapping[str, Any], kind: str) -> tuple[str, ...]:
    """The paper's tables of ``kind`` for the experiment (none without comparison)."""
    if not exp.get("compare_with_paper", True):
        return ()
    return tuple(PAPER_TABLES.get(exp["dataset"], {}).get(kind, ()))


def _paper_lookup(exp: Mapping[str, Any], kind: str) -> PaperLookup:
    return paper_lookup(PAPER, _paper_tables(exp, kind))


class ChoiResults:
    """Values over seeds of one experiment (the index of
    :class:`kdaug.papers.wang2022.WangResults`)."""

    def __init__(self, rows, exp: Mapping[str, Any]):
        self.exp = exp
        self.values = WangResults(rows, exp).values

    def get(
        self, tarch: str, taug: str, metric: str, selection: str, split: str | None = None,
        student: tuple[str, str, str] = ("", "", ""),
    ) -> Summary:  # fmt: skip
        """``student`` = (arch, KD method, augmentation); empty for the teacher."""
        split = split or self.exp["eval_splits"]["test"]
        values = self.values.get((tarch, taug, *student, selection, split, metric), {})
        return summarize([values[s] for s in sorted(values)])

    def accuracy(self, tarch: str, taug: str, selection: str, student=("", "", "")) -> Summary:
        return percent(self.get(tarch, taug, "accuracy", selection, student=student))


def percent(s: Summary) -> Summary:
    scale = lambda v: v * 100.0  # noqa: E731
    return Summary(scale(s.mean), scale(s.std), s.n, scale(s.ci_low), scale(s.ci_high))


def _one(items: list[str], what: str) -> str:
    if len(items) != 1:
        raise ValueError(f"this table needs one {what}; got {items}")
    return items[0]


def _plain_and_mixup(exp: Mapping[str, Any], group: str) -> tuple[str, str]:
    augs = exp[group]["augmentations"]
    if len(augs) != 2:
        raise ValueError(f"{group}.augmentations must be [without mixup, with mixup]; got {augs}")
    return augs[0], augs[1]


def scenario_augmentations(exp: Mapping[str, Any]) -> dict[str, tuple[str, str]]:
    """Scenario -> (teacher augmentation, student augmentation)."""
    t_plain, t_mix = _plain_and_mixup(exp, "teachers")
    s_plain, s_mix = _plain_and_mixup(exp, "students")
    combos = ((t_plain, s_plain), (t_mix, s_plain), (t_mix, s_mix), (t_plain, s_mix))
    return dict(zip(SCENARIOS, combos, strict=True))


def scenarios_table(results: ChoiResults, selection: str) -> Table:
    exp = results.exp
    kd = _one(exp["students"]["kd_methods"], "KD method")
    t_plain, t_mix = _plain_and_mixup(exp, "teachers")
    header = [f"teacher ({t_plain})", f"teacher ({t_mix})", *SCENARIOS]
    rows = []
    for tarch in exp["teachers"]["archs"]:
        sarch = _one(students_of(exp, tarch), "student arch")
        cells = [Cell(results.accuracy(tarch, a, selection), None) for a in (t_plain, t_mix)]
        for taug, saug in scenario_augmentations(exp).values():
            acc = results.accuracy(tarch, taug, selection, (sarch, kd, saug))
            cells.append(Cell(acc, None))
        rows.append(([tarch, sarch], cells))
    caption = (
        f"**Mixup in KD, four scenarios** ({selection} weights; {kd}): test accuracy (%) "
        "of the teachers and of the student under T&S, Mix-T&S, Mix-T&Mix-S and T&Mix-S "
        "(Mix- = trained with mixup; Choi et al. 2023 Figure 2: a mixup-trained teacher "
        "makes a worse student). Cells: mean ± std [95% t-interval] over seeds."
    )
    return Table(caption, ["teacher", "student"], header, rows, metric="accuracy")


def vscore_table(results: ChoiResults, selection: str) -> Table:
    """V-scores (train and test, per class group) and mean entropy of every model."""
    exp = results.exp
    kd = _one(exp["students"]["kd_methods"], "KD method")
    splits = [exp["eval_splits"][r] for r in ("train", "test") if r in exp["eval_splits"]]
    groups = sorted(
        {k[-1] for k in results.values if k[-1].startswith("vscore_")}
    )  # fmt: skip
    columns = [(m, s) for m in [*groups, "mean_entropy"] for s in splits]
    header = [f"{m} ({s})" for m, s in columns]
    rows = []
    for tarch in exp["teachers"]["archs"]:
        for taug in exp["teachers"]["augmentations"]:
            cells = [Cell(results.get(tarch, taug, m, selection, s), None) for m, s in columns]
            rows.append(([f"teacher {tarch}", taug], cells))
        for scenario, (taug, saug) in scenario_augmentations(exp).items():
            for sarch in students_of(exp, tarch):
                student = (sarch, kd, saug)
                cells = [
                    Cell(results.get(tarch, taug, m, selection, s, student), None)
                    for m, s in columns
                ]
                rows.append(([f"{tarch} → {sarch}", scenario], cells))
    caption = (
        f"**V-scores and output entropy** ({selection} weights): V-measure of a k-means "
        "clustering (k = 5) of penultimate features of each class group against the "
        "labels, and the mean entropy (nats) of the predicted distributions (Choi et al. "
        "Figures 3-4: mixup disperses similar classes and smooths outputs)."
    )
    return Table(caption, ["model", "scenario"], header, rows)


def temperature_table(results: ChoiResults, selection: str) -> Table:
    exp = results.exp
    taug = _one(exp["teachers"]["augmentations"], "teacher augmentation")
    rows = []
    header = [f"{kd}/{saug}" for kd, saug in student_variants(exp, taug)]
    for tarch in exp["teachers"]["archs"]:
        for sarch in students_of(exp, tarch):
            cells = [
                Cell(results.accuracy(tarch, taug, selection, (sarch, kd, saug)), None)
                for kd, saug in student_variants(exp, taug)
            ]
            rows.append(([tarch, sarch], cells))
    caption = (
        f"**Temperature with a mixup-trained teacher** ({selection} weights; teachers "
        f"trained with {taug}): student test accuracy (%) per pair and KD method (Choi et "
        "al. Figure 5: T = 1 beats T = 4 with a mixup teacher)."
    )
    return Table(caption, ["teacher", "student"], header, rows, metric="accuracy")


def pmu_grid(exp: Mapping[str, Any]) -> tuple[list[int], list[str], dict[tuple[int, str], str]]:
    """PMU percents (100 = FMU), alphas, and (percent, alpha) -> augmentation name."""
    cells = {}
    for aug in exp["students"]["augmentations"]:
        match = PMU_NAME.match(aug)
        if match:
            percent_ = int(match["percent"] or 100)
            cells[(percent_, str(int(match["alpha"]) / 10))] = aug
    percents = sorted({p for p, _ in cells})
    alphas = sorted({a for _, a in cells}, key=float)
    return percents, alphas, cells


def _single_pair(exp: Mapping[str, Any]) -> tuple[str, str, str, str]:
    """The partial-mixup grid's (teacher arch, teacher aug, student arch, KD method): the
    KD method is the one the PMU/FMU students use (Table 4's w/o M. rows add others)."""
    tarch = _one(exp["teachers"]["archs"], "teacher arch")
    taug = _one(exp["teachers"]["augmentations"], "teacher augmentation")
    grid_kds = {kd for kd, aug in student_variants(exp, taug) if PMU_NAME.match(aug)}
    return (
        tarch,
        taug,
        _one(students_of(exp, tarch), "student arch"),
        _one(sorted(grid_kds), "KD method"),
    )


def _without_mixup_lookup(exp: Mapping[str, Any]) -> Callable[[str], tuple[float | None, int]]:
    """Table 4's "w/o M." rows (KD, Vanilla: one value spanning the alpha columns) by
    ``paper_rows`` (``kd_t4/standard: kd``)."""
    tables = paper_values(PAPER)["tables"]
    values = {}
    for name in _paper_tables(exp, "partial_mixup"):
        values.update(tables[name]["without_mixup"])

    def lookup(label: str) -> tuple[float | None, int]:
        value = values.get(exp.get("paper_rows", {}).get(label, ""))
        return (None, 3) if value is None else (float(value), 2)

    return lookup


def partial_mixup_table(results: ChoiResults, selection: str) -> Table:
    exp = results.exp
    tarch, taug, sarch, kd = _single_pair(exp)
    percents, alphas, names = pmu_grid(exp)
    lookup = _paper_lookup(exp, "partial_mixup")
    rows = []
    for p in percents:
        label = "FMU" if p == 100 else f"PMU={p}%"
        paper_row = "fmu" if p == 100 else f"pmu{p}"
        cells = [
            Cell(
                results.accuracy(tarch, taug, selection, (sarch, kd, names[(p, a)]))
                if (p, a) in names
                else summarize([]),
                *lookup(paper_row, f"alpha_{a}"),
            )
            for a in alphas
        ]
        rows.append(([label], cells))
    without = _without_mixup_lookup(exp)
    for kd_, aug in student_variants(exp, taug):
        if PMU_NAME.match(aug):
            continue
        acc = results.accuracy(tarch, taug, selection, (sarch, kd_, aug))
        label = f"no mixup ({aug})" if kd_ == kd else f"no mixup ({kd_}/{aug})"
        empty = [Cell(summarize([]), None)] * (len(alphas) - 1)
        rows.append(([label], [Cell(acc, *without(f"{kd_}/{aug}")), *empty]))
    caption = (
        f"**Partial mixup** ({selection} weights; {tarch} → {sarch}, {kd}): student test "
        "accuracy (%) per mixed fraction of each batch (rows) and mixup alpha (columns); "
        "each no-mixup row (Table 4's w/o M.: the grid's KD method, KD, Vanilla) has one "
        "value (first column). Choi et al. Table 4."
    )
    return Table(caption, ["mixup"], [f"alpha={a}" for a in alphas], rows, metric="accuracy")


def robustness_table(
    results: ChoiResults, selection: str, source: str = "Choi et al. Table 3"
) -> Table:
    exp = results.exp
    tarch = _one(exp["teachers"]["archs"], "teacher arch")
    taug = _one(exp["teachers"]["augmentations"], "teacher augmentation")
    sarch = _one(students_of(exp, tarch), "student arch")
    eps = _eps_in(results)
    header = [f"{m} eps={e:g}" for m in ATTACKS for e in eps]
    lookups = {m: _paper_lookup(exp, m) for m in ATTACKS}
    rows = []
    for kd, saug in student_variants(exp, taug):
        label = f"{kd}/{saug}"
        paper_column = exp.get("paper_rows", {}).get(label, "")
        cells = [
            Cell(
                percent(
                    results.get(
                        tarch, taug, attack_metric(m, e), selection, student=(sarch, kd, saug)
                    )
                ),
                *lookups[m](f"eps_{float(e)}", paper_column),
            )
            for m in ATTACKS
            for e in eps
        ]
        rows.append(([label], cells))
    caption = (
        f"**Accuracy under white-box attacks** ({selection} weights; {tarch} → {sarch}): "
        "test accuracy (%) under FGSM and 10-step I-FGSM at each eps (pixel units in "
        f"[0, 1]); eps = 0 is the clean accuracy. {source}."
    )
    return Table(caption, ["row"], header, rows, metric="accuracy")


def _eps_in(results: ChoiResults) -> list[float]:
    found = {
        float(k[-1].split("_", 1)[1]) for k in results.values if k[-1].startswith("fgsm_")
    }  # fmt: skip
    return sorted(found)


# -- figures ------------------------------------------------------------------------------


# Table 2's metrics: (our metric, the paper's column suffix, header).
IMAGENET_METRICS = (("accuracy", "top1", "top-1 accuracy (%)"),
                    ("top5_accuracy", "top5", "top-5 accuracy (%)"))  # fmt: skip


def imagenet_table(results: ChoiResults, selection: str) -> Table:
    """Table 2 (ImageNet, resnet34 -> resnet18): top-1 and top-5 accuracy (%) of the
    teacher and of each (KD method, augmentation) row of the student; the paper's cells
    by ``paper_rows`` and ``paper_archs`` (``<teacher>__<student>__top1`` / ``__top5``)."""
    exp = results.exp
    lookup = _paper_lookup(exp, "imagenet")
    tarch = _one(exp["teachers"]["archs"], "teacher arch")
    taug = _one(exp["teachers"]["augmentations"], "teacher augmentation")
    sarch = _one(students_of(exp, tarch), "student arch")
    names = exp.get("paper_archs", {})
    pair = f"{names.get(tarch, tarch)}__{names.get(sarch, sarch)}"
    paper_rows = exp.get("paper_rows", {})

    def cells(row: str, student: tuple[str, str, str]) -> list[Cell]:
        return [
            Cell(percent(results.get(tarch, taug, m, selection, student=student)),
                 *lookup(paper_rows.get(row, row), f"{pair}__{suffix}"))
            for m, suffix, _ in IMAGENET_METRICS
        ]  # fmt: skip

    rows = [(["teacher"], cells("teacher", ("", "", "")))]
    for kd, aug in student_variants(exp, taug):
        rows.append(([f"{kd}/{aug}"], cells(f"{kd}/{aug}", (sarch, kd, aug))))
    caption = (
        f"**Top-1 and top-5 accuracy (%)** ({selection} weights) of the {tarch} teacher and "
        f"its {sarch} students per KD method/augmentation row (Choi et al. 2023 Table 2, "
        "ImageNet validation set). Cells: mean ± std [95% t-interval] over seeds."
    )
    header = [h for _, _, h in IMAGENET_METRICS]
    return Table(caption, ["row"], header, rows, unranked_rows=("teacher",))


def plot_scenarios(results: ChoiResults, selection: str, path: str) -> None:
    table = scenarios_table(results, selection)
    plt = plots.pyplot()
    fig, ax = plt.subplots(figsize=(max(7.0, 1.6 * len(table.rows)), 4.2))
    groups = [keys[0] for keys, _ in table.rows]
    series = {s: [cells[2 + i].summary for _, cells in table.rows] for i, s in enumerate(SCENARIOS)}
    plots.grouped_bars(ax, groups, series, "student test accuracy (%)")
    ax.set_xlabel("teacher")
    values = [c.summary.mean for _, cells in table.rows for c in cells[2:] if not c.summary.empty]
    if values:
        ax.set_ylim(max(0.0, min(values) - 5), min(100.0, max(values) + 3))
    ax.set_title(
        f"Student accuracy under the four mixup scenarios ({selection}; Choi et al. Fig. 2)"
    )
    fig.tight_layout()
    plots.save(fig, path)


def plot_temperature(results: ChoiResults, selection: str, path: str) -> None:
    exp = results.exp
    taug = _one(exp["teachers"]["augmentations"], "teacher augmentation")
    variants = student_variants(exp, taug)
    teachers = list(exp["teachers"]["archs"])
    students = sorted({s for t in teachers for s in students_of(exp, t)}, key=str)
    grids = []
    for kd, saug in variants:
        grid = np.full((len(teachers), len(students)), np.nan)
        for i, t in enumerate(teachers):
            for j, s in enumerate(students):
                if s in students_of(exp, t):
                    grid[i, j] = results.accuracy(t, taug, selection, (s, kd, saug)).mean
        grids.append(grid)
    finite = [g[np.isfinite(g)] for g in grids]
    lo = min((f.min() for f in finite if f.size), default=0.0)
    hi = max((f.max() for f in finite if f.size), default=100.0)
    plt = plots.pyplot()
    fig, axes = plt.subplots(
        1, len(variants), figsize=(4.8 * len(variants) + 1, 4.2), squeeze=False
    )
    for k, (ax, grid, (kd, saug)) in enumerate(zip(axes.flat, grids, variants, strict=True)):
        image = plots.heatmap(ax, grid, lo, hi, students, teachers, annotate=".1f")
        ax.tick_params(axis="x", labelrotation=45)
        ax.tick_params(axis="y", labelrotation=0)
        ax.set_xlabel("student")
        if k == 0:  # the rows are the same teachers in every panel
            ax.set_ylabel(f"teacher ({taug})")
        else:
            ax.tick_params(labelleft=False)
        ax.set_title(f"{kd}, student {saug}", fontsize=10)
    fig.colorbar(image, ax=list(axes.flat), label="student test accuracy (%)")
    fig.suptitle(f"Mixup teachers at each temperature ({selection}; Choi et al. Fig. 5)")
    plots.save(fig, path)


def plot_partial_mixup(results: ChoiResults, selection: str, path: str) -> None:
    table = partial_mixup_table(results, selection)
    plt = plots.pyplot()
    fig, ax = plt.subplots(figsize=(7.0, 4.2))
    alphas = [h.split("=")[1] for h in table.value_header]
    styles = iter(["--", ":", "-."] * len(table.rows))
    for keys, cells in table.rows:
        if keys[0].startswith("no mixup"):
            if not cells[0].summary.empty:
                ax.axhline(cells[0].summary.mean, color="grey", ls=next(styles), label=keys[0])
            continue
        ys = [c.summary.mean for c in cells]
        errs = [0.0 if math.isnan(c.summary.std) else c.summary.std for c in cells]
        ax.errorbar([float(a) for a in alphas], ys, yerr=errs, marker="o", capsize=2, label=keys[0])
    ax.set_xlabel("mixup alpha")
    ax.set_ylabel("student test accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"Partial vs full mixup ({selection}; Choi et al. Fig. 6 / Table 4)")
    fig.tight_layout()
    plots.save(fig, path)


def mixup_attacks_table(results: ChoiResults, selection: str) -> Table:
    """Figure 7's ablation as a table: rows are Table 4's students (full mixup per alpha,
    partial mixup per fraction), columns FGSM / I-FGSM per eps."""
    return robustness_table(results, selection, "Choi et al. Fig. 7 (the Table 4 students)")


def plot_robustness(
    results: ChoiResults, selection: str, path: str, figure: str = "Table 3 / Fig. 7"
) -> None:
    table = robustness_table(results, selection)
    plt = plots.pyplot()
    fig, axes = plt.subplots(1, len(ATTACKS), figsize=(6.0 * len(ATTACKS), 4.2), squeeze=False)
    per_attack = len(table.value_header) // len(ATTACKS)
    for k, (ax, method) in enumerate(zip(axes.flat, ATTACKS, strict=True)):
        columns = table.value_header[k * per_attack : (k + 1) * per_attack]
        groups = [c.split(" ", 1)[1] for c in columns]
        series = {
            keys[0]: [c.summary for c in cells[k * per_attack : (k + 1) * per_attack]]
            for keys, cells in table.rows
        }
        plots.grouped_bars(ax, groups, series, "test accuracy (%)")
        ax.set_title(method.upper())
    plots.finish(fig, path, f"Accuracy under attack ({selection}; Choi et al. {figure})")


# -- figures from stored outputs (Figures 1, 3, 4) -------------------------------------------


def figure_teachers(exp: Mapping[str, Any]) -> list[str]:
    """The teacher archs the output figures show (``figures.teachers``; default the first):
    Choi et al. contrast ResNet110 with ResNet20 in Figures 3 and 4."""
    return list((exp.get("figures") or {}).get("teachers") or exp["teachers"]["archs"][:1])


def scenario_models(exp: Mapping[str, Any]) -> list[tuple[str, ModelCell]]:
    """(label, model), first seed, per :func:`figure_teachers` arch: its teachers trained
    without and with mixup (Figure 1's S / Mix-S) and the student of each scenario
    (Figure 3)."""
    kd = _one(exp["students"]["kd_methods"], "KD method")
    seed, dataset = exp["seeds"][0], exp["dataset"]
    t_plain, t_mix = _plain_and_mixup(exp, "teachers")
    teachers = figure_teachers(exp)
    models = []
    for tarch in teachers:
        sarch = _one(students_of(exp, tarch), "student arch")
        models += [
            (f"T:{tarch}", ModelCell(dataset, seed, tarch, t_plain)),
            (f"Mix-T:{tarch}", ModelCell(dataset, seed, tarch, t_mix)),
        ]
        for scenario, (taug, saug) in scenario_augmentations(exp).items():
            # with several teachers a scenario names its teacher: Mix-T(resnet110)&S
            named = scenario if len(teachers) == 1 else scenario.replace("T", f"T({tarch})", 1)
            cell = ModelCell(dataset, seed, tarch, taug, kd, sarch, saug)
            models.append((f"{named}:{sarch}", cell))
    return models


def _panels_per_teacher(exp: Mapping[str, Any]) -> list[list[str]]:
    """:func:`scenario_models` labels in one row per figure teacher (its 6 models)."""
    labels = [label for label, _ in scenario_models(exp)]
    width = len(labels) // len(figure_teachers(exp))
    return [labels[i : i + width] for i in range(0, len(labels), width)]


def figure1_models(exp: Mapping[str, Any]) -> list[list[tuple[str, ModelCell]]]:
    """Figure 1's panels (label, model), first seed, one list per row: first every teacher
    arch trained from scratch without and with mixup (the paper's S:RN110, Mix-S:RN110,
    S:RN56, Mix-S:RN56), then per distilling teacher (its arch and augmentation) the
    student at each KD method (the paper's temperature row: a standard teacher; a
    mixup-trained teacher's row follows where the experiment has one)."""
    seed, dataset = exp["seeds"][0], exp["dataset"]
    t_plain, t_mix = _plain_and_mixup(exp, "teachers")
    prefix = {t_plain: "", t_mix: "Mix-"}
    rows = [[(f"{prefix[a]}S:{t}", ModelCell(dataset, seed, t, a))
             for t in exp["teachers"]["archs"] for a in (t_plain, t_mix)]]  # fmt: skip
    for tarch in exp["teachers"]["archs"]:
        for taug in (t_plain, t_mix):
            for sarch in students_of(exp, tarch):
                variants = student_variants(exp, taug)
                several = len({saug for _, saug in variants}) > 1
                rows.append([
                    (f"{prefix[taug]}T:{tarch} & {sarch}, {_kd_label(exp, kd)}"
                     + (f" ({saug})" if several else ""),
                     ModelCell(dataset, seed, tarch, taug, kd, sarch, saug))
                    for kd, saug in variants
                ])  # fmt: skip
    return rows


def _kd_label(exp: Mapping[str, Any], kd: str) -> str:
    """``KD T = 4`` for a KD method with a temperature (the render view says which), else
    the method's name."""
    temperature = exp.get("kd_temperature", {}).get(kd)
    return f"KD T = {temperature:g}" if temperature is not None else kd


def _figure_models(exp: Mapping[str, Any], name: str) -> list[tuple[str, ModelCell]]:
    """The (label, model) pairs output figure ``name`` draws, in reading order."""
    if name == "figure1_tsne":
        return [model for row in figure1_models(exp) for model in row]
    return scenario_models(exp)


def _figure_splits(exp: Mapping[str, Any], name: str) -> list[str]:
    roles = ("train",) if name == "figure3_tsne" else ("train", "test")
    splits = [exp["eval_splits"][r] for r in roles if r in exp["eval_splits"]]
    return splits or [exp["eval_splits"]["test"]]


def figure_sources(exp: Mapping[str, Any], name: str, selection: str) -> list[str]:
    """The outputs files figure ``name`` reads (none for the figures drawn from metrics):
    per split, per model of the figure (:func:`scenario_models`, :func:`figure1_models`)."""
    if name not in OUTPUT_FIGURES:
        return []
    return [
        cell.eval_outputs(selection)  # one file per model, holding every split
        for _split in _figure_splits(exp, name)
        for _, cell in _figure_models(exp, name)
    ]


def _load_outputs(
    exp: Mapping[str, Any], name: str, outputs: Sequence[str]
) -> dict[tuple[str, str], Any]:
    """(model label, split) -> EvalData, from ``outputs`` in :func:`figure_sources` order."""
    from kdaug.measure.evaluation import load_eval_data

    keys = [(label, s) for s in _figure_splits(exp, name) for label, _ in _figure_models(exp, name)]
    if len(outputs) != len(keys):
        raise ValueError(f"{name} expects {len(keys)} outputs files, got {len(outputs)}")
    return {k: load_eval_data(path, k[1]) for k, path in zip(keys, outputs, strict=True)}


def _tsne_rows(labels: np.ndarray, classes: Sequence[int], per_class: int) -> np.ndarray:
    """Up to ``per_class`` samples of each class, the same ones for every model."""
    rng = np.random.default_rng(0)
    return np.concatenate(
        [np.sort(rng.permutation(np.flatnonzero(labels == c))[:per_class]) for c in classes]
    )


def _tsne_panel(
    ax: Any, d: Any, label: str, classes: Sequence[str], per_class: int, legend: bool
) -> float:
    """One t-SNE panel: up to ``per_class`` samples of each of ``classes`` (the same ones
    for every model) by their penultimate features, each class's centre a star. Returns
    the V-score of the group on all of its samples (as the tables)."""
    from sklearn.manifold import TSNE

    from kdaug.measure.metrics import standardize
    from kdaug.measure.vscore import class_indices, v_score

    if d.embeddings is None:
        raise ValueError(f"{label} has no stored embeddings (evaluation.embeddings_for)")
    indices = class_indices(d.options["class_names"], classes)
    rows = _tsne_rows(d.labels, indices, per_class)
    x = standardize(d.embeddings[rows])
    perplexity = min(30.0, max(2.0, (len(rows) - 1) / 3))
    xy = TSNE(perplexity=perplexity, init="pca", random_state=0).fit_transform(x)
    shown = [classes[indices.index(c)] for c in d.labels[rows]]
    colours = plots.class_scatter(ax, xy, shown, classes, legend=legend)
    for c, name in zip(indices, classes, strict=True):
        centre = xy[d.labels[rows] == c].mean(axis=0)
        ax.scatter(*centre, marker="*", s=120, color=colours[name],
                   edgecolors="k", linewidths=0.6)  # fmt: skip
    return v_score(d.embeddings, d.labels, indices, seed=0)


def plot_tsne(exp: Mapping[str, Any], selection: str, outputs: Sequence[str], path: str) -> None:
    """Figure 3: t-SNE of the penultimate features of each class group (rows) for the
    teachers without / with mixup and the student of each scenario (columns), with each
    class's centre (star) and the V-score of the group (as in the tables)."""
    groups = exp.get("vscore_groups") or {}
    if not groups:
        raise ValueError("figure3_tsne needs evaluation.vscore_groups")
    data = _load_outputs(exp, "figure3_tsne", outputs)
    split = _figure_splits(exp, "figure3_tsne")[0]
    rows_ = [(models, g, c) for models in _panels_per_teacher(exp) for g, c in groups.items()]
    per_class = int(exp.get("figures", {}).get("tsne_per_class", 250))
    plt = plots.pyplot()
    width = len(rows_[0][0])
    fig, axes = plt.subplots(
        len(rows_), width, figsize=(2.5 * width + 1.2, 2.6 * len(rows_)), squeeze=False
    )
    for i, (models, group, classes) in enumerate(rows_):
        for j, label in enumerate(models):
            legend = j == len(models) - 1
            v = _tsne_panel(axes[i, j], data[(label, split)], f"{label} on {split}", classes,
                            per_class, legend)  # fmt: skip
            axes[i, j].set_title(f"{label}\nV = {v:.3f}", fontsize=8)
        axes[i, 0].set_ylabel(f"{group} classes", fontsize=9)
    plots.finish(
        fig,
        path,
        f"t-SNE of penultimate features on {split} ({selection}; Choi et al. Fig. 3); "
        "* = class centre, V = V-score of the group",
        fontsize=10,
    )


def _figure1_row_name(exp: Mapping[str, Any], row: int, cell: ModelCell) -> str:
    if row == 0:
        return "trained from scratch"
    if cell.teacher_aug == _plain_and_mixup(exp, "teachers")[0]:
        return f"distilled from T:{cell.teacher_arch}"
    return f"distilled from Mix-T:{cell.teacher_arch}\n(not in the paper's figure)"


def plot_figure1(exp: Mapping[str, Any], selection: str, outputs: Sequence[str], path: str) -> None:
    """Figure 1: t-SNE of the train-set penultimate features of the first V-score group
    (the paper's baby, boy, girl, man, woman) for each :func:`figure1_models` model, rows
    as the paper's (trained from scratch; distilled at each temperature), each panel
    titled with the model's test accuracy (the paper's inline table) and V-score."""
    groups = exp.get("vscore_groups") or {}
    if not groups:
        raise ValueError("figure1_tsne needs evaluation.vscore_groups")
    group, classes = next(iter(groups.items()))
    data = _load_outputs(exp, "figure1_tsne", outputs)
    split, test = _figure_splits(exp, "figure1_tsne")[0], exp["eval_splits"]["test"]
    rows_ = figure1_models(exp)
    per_class = int(exp.get("figures", {}).get("tsne_per_class", 250))
    width = max(len(row) for row in rows_)
    legend_row = next(i for i, row in enumerate(rows_) if len(row) == width)
    plt = plots.pyplot()
    fig, axes = plt.subplots(
        len(rows_), width, figsize=(2.6 * width + 1.3, 2.7 * len(rows_) + 0.3), squeeze=False
    )
    for i, row in enumerate(rows_):
        for j, (label, _) in enumerate(row):
            legend = (i, j) == (legend_row, width - 1)
            v = _tsne_panel(axes[i, j], data[(label, split)], f"{label} on {split}", classes,
                            per_class, legend)  # fmt: skip
            d = data[(label, test)]
            accuracy = float((d.logits.argmax(axis=1) == d.labels).mean()) * 100
            title = label.replace(", ", "\n")
            axes[i, j].set_title(f"{title}\nacc {accuracy:.2f}%, V = {v:.3f}", fontsize=8)
        for ax in axes[i, len(row) :]:
            ax.axis("off")
        axes[i, 0].set_ylabel(_figure1_row_name(exp, i, row[0][1]), fontsize=9)
    plots.finish(
        fig,
        path,
        f"t-SNE of penultimate features of the {group} classes on {split} ({selection}, seed "
        f"{exp['seeds'][0]}; Choi et al. Fig. 1)\n* = class centre, acc = {test} accuracy, "
        "V = V-score of the group",
        fontsize=10,
    )


def figure1_table(results: ChoiResults, selection: str) -> Table:
    """Figure 1's inline table over seeds: per model, test accuracy (%) and the V-score
    of each class group on the train and test splits."""
    exp = results.exp
    splits = [exp["eval_splits"][r] for r in ("train", "test") if r in exp["eval_splits"]]
    columns = [(f"vscore_{g}", s) for g in exp.get("vscore_groups") or {} for s in splits]
    header = ["test accuracy (%)", *(f"{m} ({s})" for m, s in columns)]
    rows = []
    for label, cell in (m for row in figure1_models(exp) for m in row):
        student = (cell.student_arch or "", cell.kd or "", cell.student_aug or "")
        key = (cell.teacher_arch, cell.teacher_aug, selection)
        cells = [Cell(results.accuracy(*key, student), None)]
        cells += [Cell(results.get(*key[:2], m, selection, s, student), None) for m, s in columns]
        rows.append(([label.split(", ")[0], cell.kd or "none"], cells))
    caption = (
        f"**Figure 1's models** ({selection} weights): test accuracy (%) and V-scores of "
        "the teachers trained from scratch without / with mixup (S, Mix-S) and of the "
        "students at each temperature (Choi et al. 2023 Figure 1: higher capacity clusters "
        "tighter, mixup and a higher temperature disperse). Cells: mean ± std [95% "
        "t-interval] over seeds."
    )
    return Table(caption, ["model", "KD method"], header, rows)


def class_mean_distributions(
    probs: np.ndarray, labels: np.ndarray, classes: Sequence[int]
) -> np.ndarray:
    """``M[i]`` = mean predicted distribution over the samples of true class ``classes[i]``
    (Choi et al. Figure 4's per-category mean distribution), shape (len(classes), C)."""
    return np.stack([probs[labels == c].mean(axis=0) for c in classes])


def plot_class_distributions(
    exp: Mapping[str, Any], selection: str, outputs: Sequence[str], path: str
) -> None:
    """Figure 4: per model (columns) and split (rows), the mean predicted distribution of
    each class of the first V-score group (heat-map rows) over all classes, with the
    model's accuracy and mean entropy on all samples of the split."""
    from kdaug.measure.metrics import log_softmax
    from kdaug.measure.vscore import class_indices

    groups = exp.get("vscore_groups") or {}
    if not groups:
        raise ValueError("figure4_class_distributions needs evaluation.vscore_groups")
    group, classes = next(iter(groups.items()))
    data = _load_outputs(exp, "figure4_class_distributions", outputs)
    rows_ = [(m, s) for m in _panels_per_teacher(exp)
             for s in _figure_splits(exp, "figure4_class_distributions")]  # fmt: skip
    plt = plots.pyplot()
    width = len(rows_[0][0])
    fig, axes = plt.subplots(
        len(rows_), width, figsize=(2.3 * width + 1.0, 2.2 * len(rows_) + 0.6),
        squeeze=False, layout="constrained",
    )  # fmt: skip
    for i, (models, split) in enumerate(rows_):
        for j, label in enumerate(models):
            d, ax = data[(label, split)], axes[i, j]
            logp = log_softmax(d.logits)
            probs = np.exp(logp)
            indices = class_indices(d.options["class_names"], classes)
            means = class_mean_distributions(probs, d.labels, indices)
            bottom = i == len(rows_) - 1  # columns name every class, once per column
            image = plots.heatmap(
                ax, means, 0.0, 1.0, cmap="magma",
                xticklabels=d.options["class_names"] if bottom else False,
                yticklabels=classes if j == 0 else False,
            )  # fmt: skip
            accuracy = float((probs.argmax(axis=1) == d.labels).mean()) * 100
            entropy = float(-(probs * logp).sum(axis=1).mean())
            ax.set_title(f"{label}\n{split}: acc {accuracy:.1f}%, H {entropy:.2f}", fontsize=8)
            ax.tick_params(axis="y", labelrotation=0, labelsize=7)
            ax.tick_params(axis="x", labelrotation=90, labelsize=6)
            for c in indices:  # outline the true class of each row
                ax.add_patch(plt.Rectangle((c, indices.index(c)), 1, 1, fill=False,
                                           edgecolor="c", linewidth=0.8))  # fmt: skip
            if bottom:
                ax.set_xlabel("predicted class (all)", fontsize=8)
        axes[i, 0].set_ylabel(f"true class ({split})", fontsize=8)
    fig.colorbar(image, ax=axes, label="mean predicted probability", shrink=0.8, pad=0.01)
    fig.suptitle(
        f"Mean predicted distribution (columns: all classes) of each {group} class "
        f"({selection}; Choi et al. Fig. 4); H = mean entropy (nats)",
        fontsize=10,
    )
    plots.save(fig, path)


OUTPUT_FIGURES: dict[str, Callable[[Mapping[str, Any], str, Sequence[str], str], None]] = {
    "figure1_tsne": plot_figure1,
    "figure3_tsne": plot_tsne,
    "figure4_class_distributions": plot_class_distributions,
}


# -- what the reports render ------------------------------------------------------------

TABLES: dict[str, Callable[[ChoiResults, str], Table]] = {
    "table_scenarios": scenarios_table,
    "table_vscore": vscore_table,
    "table_temperature": temperature_table,
    "table_figure1": figure1_table,
    "table4_partial_mixup": partial_mixup_table,
    "table3_robustness": robustness_table,
    "table_mixup_attacks": mixup_attacks_table,
    "table2_imagenet": imagenet_table,
}
FIGURES: dict[str, Callable[[ChoiResults, str, str], None]] = {
    "figure2_scenarios": plot_scenarios,
    "figure5_temperature": plot_temperature,
    "figure6_partial_mixup": plot_partial_mixup,
    "figure7_robustness": plot_robustness,
    "figure7_mixup_attacks": partial(plot_robustness, figure="Fig. 7, alpha / PMU ablation"),
}


def render(
    long_csv: str | os.PathLike[str] | None,
    exp: Mapping[str, Any],
    selection: str,
    name: str,
    out: str,
    outputs: Sequence[str] = (),
) -> None:
    """Write table ``name`` (``out`` is the stem) or figure ``name`` (``out`` is the PNG);
    figures of :data:`OUTPUT_FIGURES` read ``outputs`` (:func:`figure_sources` order)."""
    if name in OUTPUT_FIGURES:
        OUTPUT_FIGURES[name](exp, selection, outputs, out)
        return
    rows = read_long_csv(long_csv)
    if name == "table1_rescaled":  # pairs x (KD method, augmentation) rows, as Wang's Table 1
        lookup = _paper_lookup(exp, "accuracy")
        table = accuracy_table(
            WangResults(rows, exp), selection, lookup, "Choi et al. 2023 Table 1"
        )
        table.write(Path(out))
    elif name in TABLES:
        TABLES[name](ChoiResults(rows, exp), selection).write(Path(out))
    else:
        FIGURES[name](ChoiResults(rows, exp), selection, out)


register_paper(
    Paper(
        PAPER,
        "Choi et al. 2023: mixup and KD",
        render,
        tables={name: "" for name in (*TABLES, "table1_rescaled")},
        figures={name: "" for name in (*FIGURES, *OUTPUT_FIGURES)},
        figure_sources=figure_sources,
        claims_file="choi2023.yaml",
    )
)
# The mixup scenarios (Figure 2, V-scores, entropies), Figure 1's features, temperature
# heat maps (Figure 5), partial mixup grid (Table 4, Figure 6), rescaled-logit KD (Table 1)
# and robustness to attacks (Table 3, Figure 7); each checks its claims of
# papers/claims/choi2023.yaml.
for _name, _tables, _figures, _claim in (
    (
        "choi2023_scenarios",
        ("table_scenarios", "table_vscore"),
        ("figure2_scenarios", "figure3_tsne", "figure4_class_distributions"),
        "A mixup-trained teacher makes a worse student (Mix-T&S below T&S); mixup disperses "
        "the features of similar classes and smooths the outputs (Choi et al. 2023, Figs. 1-4).",
    ),
    (
        "choi2023_figure1",
        ("table_figure1",),
        ("figure1_tsne",),
        "A higher-capacity model clusters similar classes tighter (higher V-score); mixup "
        "and a higher KD temperature disperse them (Choi et al. 2023, Fig. 1).",
    ),
    (
        "choi2023_temperature",
        ("table_temperature",),
        ("figure5_temperature",),
        "With a mixup-trained teacher a low temperature (T = 1) distills better than T = 4 "
        "(Choi et al. 2023, Fig. 5).",
    ),
    (
        "choi2023_partial_mixup",
        ("table4_partial_mixup",),
        ("figure6_partial_mixup",),
        "Mixing only part of each batch (PMU) matches or beats full mixup (Choi et al. 2023, "
        "Table 4, Fig. 6).",
    ),
    (
        "choi2023_rescaled",
        ("table1_rescaled",),
        (),
        "Rescaled-logit KD with partial mixup beats KD and the other distillation methods "
        "(Choi et al. 2023, Table 1).",
    ),
    (
        "choi2023_robustness",
        ("table3_robustness",),
        ("figure7_robustness",),
        "Rescaled-logit KD with PMU is more robust to FGSM and I-FGSM than vanilla training "
        "and KD, with or without mixup (Choi et al. 2023, Table 3).",
    ),
    (
        "choi2023_mixup_attacks",
        ("table_mixup_attacks",),
        ("figure7_mixup_attacks",),
        "Stronger mixup (higher alpha, more of each batch mixed) makes a student more robust "
        "to FGSM and I-FGSM (Choi et al. 2023, Fig. 7).",
    ),
):
    register_report(_name, Report(PAPER, _tables, _figures, claim=_claim))
# Table 2: ImageNet, resnet34 -> resnet18, top-1 and top-5 (its claims are not checked).
register_report(
    "choi2023_imagenet",
    Report(
        PAPER,
        ("table2_imagenet",),
        claims=False,
        claim="On ImageNet, rescaled-logit KD with full mixup beats the student trained alone "
        "by 2.07 (top-1) and 1.56 (top-5) points, and beats PMU 10 % (Choi et al. 2023, "
        "Table 2).",
    ),
)
