"""Tables and figures from an experiment's collected metrics.

The collect step writes one long CSV (one row per cell x selection x split x metric);
everything here reads that file, so tables can be re-rendered without touching models.
Cells show the mean over seeds with the standard deviation (``mean ± std``, n seeds).
"""

from __future__ import annotations

import csv
import math
import os
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from kdaug.io import atomic_path
from kdaug.registry import Registry

LONG_COLUMNS = (
    "experiment", "dataset", "seed", "role", "teacher_arch", "teacher_aug", "kd",
    "student_arch", "student_aug", "selection", "split", "metric", "value",
)  # fmt: skip


def write_long_csv(path: str | os.PathLike[str], rows: Iterable[Mapping[str, Any]]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, LONG_COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if row.get(k) is None else row[k] for k in LONG_COLUMNS})


def read_long_csv(path: str | os.PathLike[str]) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@dataclass(frozen=True)
class Column:
    """One table column: a model (teacher or student arch) and a metric."""

    model: str  # "teacher" or a student architecture name
    metric: str

    @property
    def label(self) -> str:
        return f"{self.model} {self.metric}"


@dataclass(frozen=True)
class TableSpec:
    name: str
    caption: str
    split_role: str  # key of the experiment's eval_splits: "test" or "shifted"
    metrics: tuple[str, ...]
    teachers_only: bool = False


DAS_TABLE1 = TableSpec(
    "table1_test",
    "Table 1 analogue (Das et al. 2020): accuracy and ECE (15 bins) of teachers and "
    "their KD students on the in-distribution test split, per teacher augmentation.",
    "test",
    ("accuracy", "ece"),
)
DAS_TABLE2 = TableSpec(
    "table2_shifted",
    "Table 2 analogue: accuracy on the shifted test split (CINIC-10 ImageNet images for "
    "CIFAR-10; the corrupted test split for the digits demo).",
    "shifted",
    ("accuracy",),
)
DAS_TABLE3 = TableSpec(
    "table3_mnist",
    "Table 3 analogue (Das et al. 2020, MNIST protocol): test accuracy and test loss "
    "(mean cross-entropy) of AlexNet teachers per augmentation and their LeNet KD students.",
    "test",
    ("accuracy", "test_loss"),
)
DAS_TABLE4 = TableSpec(
    "table4_separability",
    "Table 4 analogue: class-separability S_f = (1/C^2) sum_ij KL(p_i || p_j) of "
    "class-mean predicted distributions on the test split.",
    "test",
    ("class_separability",),
)
DAS_TABLE5 = TableSpec(
    "table5_discrimination",
    "Table 5 analogue: cohesion, adhesion and class-discrimination of the teachers' "
    "standardised penultimate embeddings on the test split.",
    "test",
    ("cohesion", "adhesion", "class_discrimination"),
    teachers_only=True,
)
FIGURE1 = "figure1_teacher_vs_student"


@dataclass(frozen=True)
class Report:
    """The tables and figures one kind of experiment renders (``experiments.*.report``)."""

    tables: tuple[TableSpec, ...]
    figures: tuple[str, ...]

    def table(self, name: str) -> TableSpec:
        for spec in self.tables:
            if spec.name == name:
                return spec
        raise KeyError(f"this report has no table {name!r}; it has {[t.name for t in self.tables]}")


REPORTS: Registry[Report] = Registry("report")
REPORTS.register("das2020")(Report((DAS_TABLE1, DAS_TABLE2, DAS_TABLE4, DAS_TABLE5), (FIGURE1,)))
REPORTS.register("das2020_mnist")(Report((DAS_TABLE3,), (FIGURE1,)))


def report_files(config: Mapping[str, Any], experiment: str) -> list[str]:
    """Files (relative to the experiment directory) that rendering produces."""
    report = REPORTS.get(config["experiments"][experiment]["report"])
    files = []
    for selection in config["evaluation"]["selections"]:
        files += [f"{selection}/{t.name}.{ext}" for t in report.tables for ext in ("csv", "md")]
        files += [f"{selection}/{f}.png" for f in report.figures]
    return files


def mean_std(values: Sequence[float]) -> tuple[float, float, int]:
    """Mean, sample standard deviation (ddof=1; NaN for one value) and count."""
    arr = np.asarray(values, dtype=float)
    if arr.size == 0:
        return math.nan, math.nan, 0
    std = float(arr.std(ddof=1)) if arr.size > 1 else math.nan
    return float(arr.mean()), std, int(arr.size)


def format_cell(mean: float, std: float, n: int) -> str:
    if n == 0:
        return "—"
    return f"{mean:.3f}" if n == 1 else f"{mean:.3f} ± {std:.3f}"


class Results:
    """Collected metrics of one experiment, indexed for table lookups."""

    def __init__(self, rows: Iterable[Mapping[str, str]], experiment_cfg: Mapping[str, Any]):
        self.cfg = experiment_cfg
        self.kd = experiment_cfg["students"]["kd_methods"][0]
        self.student_aug = experiment_cfg["students"]["augmentations"][0]
        self.values: dict[tuple[str, ...], list[float]] = defaultdict(list)
        for r in rows:
            model = "teacher" if r["role"] == "teacher" else r["student_arch"]
            if r["role"] == "student" and (r["kd"], r["student_aug"]) != (
                self.kd,
                self.student_aug,
            ):
                continue
            key = (r["selection"], r["split"], r["teacher_aug"], model, r["metric"])
            self.values[key].append(float(r["value"]))

    @property
    def teacher_augs(self) -> list[str]:
        return list(self.cfg["teachers"]["augmentations"])

    def models(self, teachers_only: bool = False) -> list[str]:
        return ["teacher"] if teachers_only else ["teacher", *self.cfg["students"]["archs"]]

    def stat(self, selection: str, split: str, aug: str, model: str, metric: str) -> tuple:
        return mean_std(self.values.get((selection, split, aug, model, metric), []))


@dataclass(frozen=True)
class Table:
    caption: str
    header: list[str]
    rows: list[list[str]]
    csv_header: list[str]
    csv_rows: list[list[Any]]

    def to_markdown(self) -> str:
        lines = [f"{self.caption}", "", "| " + " | ".join(self.header) + " |"]
        lines.append("|" + "|".join(["---"] * len(self.header)) + "|")
        lines += ["| " + " | ".join(r) + " |" for r in self.rows]
        return "\n".join(lines) + "\n"

    def write(self, stem: str | os.PathLike[str]) -> None:
        with atomic_path(f"{stem}.csv") as tmp, open(tmp, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(self.csv_header)
            writer.writerows(self.csv_rows)
        with atomic_path(f"{stem}.md") as tmp:
            tmp.write_text(self.to_markdown())


def build_table(results: Results, spec: TableSpec, selection: str) -> Table:
    split = results.cfg["eval_splits"][spec.split_role]
    columns = [
        Column(m, metric) for m in results.models(spec.teachers_only) for metric in spec.metrics
    ]
    header = ["teacher augmentation", *(c.label for c in columns)]
    csv_header = ["teacher_augmentation"]
    for c in columns:
        csv_header += [f"{c.model}_{c.metric}_{s}" for s in ("mean", "std", "n")]
    rows, csv_rows = [], []
    for aug in results.teacher_augs:
        stats = [results.stat(selection, split, aug, c.model, c.metric) for c in columns]
        rows.append([aug, *(format_cell(*s) for s in stats)])
        csv_rows.append([aug, *(v for s in stats for v in s)])
    caption = f"**{spec.name}** ({selection} weights, split `{split}`). {spec.caption}"
    return Table(caption, header, rows, csv_header, csv_rows)


def plot_teacher_vs_student(results: Results, selection: str, path: str | os.PathLike[str]) -> None:
    """Figure 1 analogue: test accuracy of each teacher and its students, per augmentation,
    with error bars of one standard deviation over seeds where there are several."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    split = results.cfg["eval_splits"]["test"]
    augs, models = results.teacher_augs, results.models()
    teacher_arch = results.cfg["teachers"]["archs"][0]
    width = 0.8 / len(models)
    fig, ax = plt.subplots(figsize=(2.6 + 1.3 * len(augs), 3.8), dpi=150)
    n_seeds = 0
    for i, model in enumerate(models):
        stats = [results.stat(selection, split, aug, model, "accuracy") for aug in augs]
        n_seeds = max(n_seeds, *(s[2] for s in stats))
        means = np.array([s[0] for s in stats])
        errs = np.array([s[1] if s[2] > 1 else 0.0 for s in stats])
        xs = np.arange(len(augs)) + (i - (len(models) - 1) / 2) * width
        label = f"teacher ({teacher_arch})" if model == "teacher" else f"{model} student"
        bars = ax.bar(xs, means, width, yerr=errs, capsize=3, label=label)
        ax.bar_label(
            bars, labels=[f"{m:.2f}" for m in means], label_type="center", fontsize=7,
            color="white", rotation=90,
        )  # fmt: skip
    ax.set_xticks(np.arange(len(augs)), augs)
    ax.set_xlabel("teacher augmentation")
    ax.set_ylabel(f"accuracy on {split}")
    ax.set_ylim(0, 1.0)
    spread = "mean ± std over" if n_seeds > 1 else "from"
    ax.set_title(
        f"Teacher vs KD student accuracy ({selection} weights; {spread} {n_seeds} seed(s))"
    )
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def render_table(
    long_csv: str | os.PathLike[str],
    experiment_cfg: Mapping[str, Any],
    selection: str,
    name: str,
    stem: str | os.PathLike[str],
) -> None:
    """Write table ``name`` of an experiment's report as ``stem``.csv and ``stem``.md."""
    spec = REPORTS.get(experiment_cfg["report"]).table(name)
    results = Results(read_long_csv(long_csv), experiment_cfg)
    build_table(results, spec, selection).write(stem)


FIGURE_PLOTTERS = {FIGURE1: plot_teacher_vs_student}


def render_figure(
    long_csv: str | os.PathLike[str],
    experiment_cfg: Mapping[str, Any],
    selection: str,
    name: str,
    path: str | os.PathLike[str],
) -> None:
    """Draw figure ``name`` of an experiment's report as the PNG ``path``."""
    if name not in REPORTS.get(experiment_cfg["report"]).figures:
        raise KeyError(f"the {experiment_cfg['report']} report has no figure {name!r}")
    results = Results(read_long_csv(long_csv), experiment_cfg)
    FIGURE_PLOTTERS[name](results, selection, path)
