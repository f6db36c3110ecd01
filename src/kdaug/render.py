"""Reports: which tables, figures and claim verdicts each kind of experiment renders.

An experiment names its report (``experiments.<name>.report``); the report lists table
specs (:mod:`kdaug.tables`), figure specs (:mod:`kdaug.figures`) and whether the paper's
claims are checked (:mod:`kdaug.claims`). Every file is rendered by its own job from the
experiment's collected metrics (and, for some figures, stored model outputs), so one
table can be redrawn alone.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kdaug.figures import FIGURE_SPECS, FigureSpec
from kdaug.registry import Registry
from kdaug.results import Results, read_long_csv
from kdaug.tables import TableSpec, build_table

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


@dataclass(frozen=True)
class Report:
    """The tables and figures one kind of experiment renders (``experiments.*.report``)."""

    paper: str
    tables: tuple[str, ...]
    figures: tuple[str, ...] = ()
    claims: bool = True
    claim: str = ""  # what the paper claims, for the report's captions
    # "das": tables/figures by spec (kdaug.tables, kdaug.figures); "wang": kdaug.wang,
    # whose columns are teacher/student pairs rather than one teacher's models.
    renderer: str = "das"

    def table(self, name: str) -> TableSpec:
        if name not in self.tables:
            raise KeyError(f"this report has no table {name!r}; it has {list(self.tables)}")
        return DAS_TABLES[name]

    def figure(self, name: str) -> FigureSpec:
        if name not in self.figures:
            raise KeyError(f"this report has no figure {name!r}; it has {list(self.figures)}")
        return FIGURE_SPECS[name]

    def split_roles(self) -> set[str]:
        """The evaluation split roles this report reads (the experiment must define them)."""
        if self.renderer != "das":
            return {"test"}
        roles = {r for t in self.tables for r in DAS_TABLES[t].split_roles}
        for name in self.figures:
            role = FIGURE_SPECS[name].split_role
            if role != "human_or_test":
                roles.add(role)
        return roles


REPORTS: Registry[Report] = Registry("report")
REPORTS.register("das2020")(
    Report(
        "das2020",
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
            "figure3_human_confidence",
            "figure4_tsne",
            "figure5_reliability",
            "figure6_relative_kl",
            "figure7_ece",
            "figure8_masked_confusion",
        ),
    )
)
REPORTS.register("das2020_mnist")(
    Report("das2020", ("table3_mnist",), ("figure1_teacher_vs_student",))
)
REPORTS.register("das2020_augmented_students")(Report("das2020", ("table7_augmented_students",)))
# The paper states no claim about this ablation beyond its table.
REPORTS.register("das2020_same_augmentation")(
    Report("das2020", ("table8_same_augmentation",), claims=False)
)

# Wang et al. 2022: the DA-scheme grid (Tables 3-6, 9, 10, Figure 4) and the accuracy
# grid (Tables 1-2). The paper's claims are read off these tables (no verdict file yet).
REPORTS.register("wang2022_da")(
    Report(
        "wang2022",
        ("table_tstddev", "table_covariance", "table_correlation_coefficient", "table_pearson"),
        ("figure4_tstddev_vs_loss",),
        claims=False,
        renderer="wang",
    )
)
REPORTS.register("wang2022_accuracy")(
    Report("wang2022", ("table_accuracy",), claims=False, renderer="wang")
)
# Figure 2: test error vs training epochs, KD vs CE, per augmentation.
REPORTS.register("wang2022_epochs")(
    Report(
        "wang2022", ("table_accuracy",), ("figure2_error_vs_epochs",), claims=False, renderer="wang"
    )
)

# Choi et al. 2023: the mixup scenarios (Figure 2, V-scores, entropies), temperature
# heat maps (Figure 5), partial mixup grid (Table 4, Figure 6), rescaled-logit KD
# (Table 1) and robustness to attacks (Table 3, Figure 7).
for _name, _tables, _figures in (
    (
        "choi2023_scenarios",
        ("table_scenarios", "table_vscore"),
        ("figure2_scenarios", "figure3_tsne", "figure4_class_distributions"),
    ),
    ("choi2023_temperature", ("table_temperature",), ("figure5_temperature",)),
    ("choi2023_partial_mixup", ("table4_partial_mixup",), ("figure6_partial_mixup",)),
    ("choi2023_rescaled", ("table1_rescaled",), ()),
    ("choi2023_robustness", ("table3_robustness",), ("figure7_robustness",)),
):
    REPORTS.register(_name)(Report("choi2023", _tables, _figures, claims=False, renderer="choi"))


# Renderer -> module, spelled out so that the workflow's code hash sees the dependency.
RENDERER_MODULES = {"wang": "kdaug.wang", "choi": "kdaug.choi"}


def renderer_module(report: Report):
    """The module that renders a non-Das report: ``render(csv, exp, selection, name, out,
    outputs=())`` and optionally ``figure_sources(exp, name, selection)``."""
    import importlib

    return importlib.import_module(RENDERER_MODULES[report.renderer])


CLAIMS_FILE = "claims"


def report_files(config: Mapping[str, Any], experiment: str) -> list[str]:
    """Files (relative to the experiment directory) that rendering produces."""
    report = REPORTS.get(config["experiments"][experiment]["report"])
    files = []
    for selection in config["evaluation"]["selections"]:
        files += [f"{selection}/{t}.{ext}" for t in report.tables for ext in ("csv", "md")]
        files += [f"{selection}/{f}.png" for f in report.figures]
        if report.claims:
            files += [f"{selection}/{CLAIMS_FILE}.{ext}" for ext in ("csv", "md")]
    return files


def render_table(
    long_csv: str | os.PathLike[str],
    experiment_cfg: Mapping[str, Any],
    selection: str,
    name: str,
    stem: str | os.PathLike[str],
) -> None:
    """Write table ``name`` of an experiment's report as ``stem``.csv and ``stem``.md."""
    report = REPORTS.get(experiment_cfg["report"])
    if report.renderer != "das":
        renderer_module(report).render(long_csv, experiment_cfg, selection, name, str(stem))
        return
    results = Results(read_long_csv(long_csv), experiment_cfg)
    # Published values sit beside ours only where the experiment is the paper's own
    # (the demo's digits are not CIFAR-10: a difference to the paper would mislead).
    paper = report.paper if experiment_cfg.get("compare_with_paper", True) else None
    build_table(results, report.table(name), selection, paper).write(stem)


def render_figure(
    long_csv: str | os.PathLike[str] | None,
    experiment_cfg: Mapping[str, Any],
    selection: str,
    name: str,
    outputs: Sequence[str],
    path: str | os.PathLike[str],
) -> None:
    """Draw figure ``name`` of an experiment's report as the PNG ``path``."""
    from kdaug.figures import render_figure as draw

    report = REPORTS.get(experiment_cfg["report"])
    if report.renderer != "das":
        if name not in report.figures:
            raise KeyError(f"this report has no figure {name!r}; it has {list(report.figures)}")
        module = renderer_module(report)
        module.render(long_csv, experiment_cfg, selection, name, str(path), outputs=outputs)
        return
    spec = report.figure(name)
    draw(
        spec, experiment_cfg, selection, None if long_csv is None else str(long_csv), outputs, path
    )


def figure_inputs(
    config: Mapping[str, Any], experiment: str, selection: str, figure: str
) -> dict[str, Any]:
    """The render_figure rule's named inputs: the metrics CSV and/or outputs files."""
    from kdaug import plan
    from kdaug.figures import figure_sources
    from kdaug.plan import METRICS_CSV

    exp = config["experiments"][experiment]
    report = REPORTS.get(exp["report"])
    if report.renderer != "das":
        sources = getattr(renderer_module(report), "figure_sources", lambda *_: [])
        outputs = sources(plan.experiment_view(config, experiment), figure, selection)
        if outputs:
            return {"outputs": outputs}
        return {"metrics": METRICS_CSV.format(experiment=experiment)}
    spec = report.figure(figure)
    if spec.reads == "metrics":
        return {"metrics": METRICS_CSV.format(experiment=experiment)}
    return {"outputs": list(figure_sources(exp, spec, selection).values())}


# -- snakemake --report: categories and captions ----------------------------------------

PAPER_TITLES = {
    "das2020": "Das et al. 2020: augmented teachers",
    "wang2022": "Wang et al. 2022: augmentation during KD",
    "choi2023": "Choi et al. 2023: mixup and KD",
}
CLAIMS = {
    "das2020": "A teacher trained with a mixed-sample augmentation (Mixup, CutMix) "
    "distills a worse student than one trained without it, although it is as accurate "
    "or better itself (Das et al. 2020, abstract and Tables 1-3).",
    "das2020_mnist": "On MNIST too, AlexNet teachers trained with Mixup or CutMix make "
    "worse LeNet students (Das et al. 2020, Table 3).",
    "das2020_augmented_students": "Augmenting the student's own training does not undo "
    "the effect of the teacher's augmentation (Das et al. 2020, Table 7).",
    "das2020_same_augmentation": "Teacher and student sharing one augmentation "
    "(Das et al. 2020, Table 8): no claim beyond the table.",
    "wang2022_da": "A better augmentation for KD gives the teacher a lower T. stddev on "
    "the augmented stream, and T. stddev correlates positively with the student's test "
    "loss; CutMixPick lowers it further (Wang et al. 2022, Sec. 4, Tables 3-6, Fig. 4).",
    "wang2022_accuracy": "CutMix and CutMixPick appended during KD raise the student's "
    "accuracy, most with prolonged training (Wang et al. 2022, Tables 1-2).",
    "wang2022_epochs": "With augmentation, KD keeps improving with longer training while "
    "CE saturates (Wang et al. 2022, Fig. 2).",
    "choi2023_scenarios": "A mixup-trained teacher makes a worse student (Mix-T&S below "
    "T&S); mixup disperses the features of similar classes and smooths the outputs "
    "(Choi et al. 2023, Figs. 1-4).",
    "choi2023_temperature": "With a mixup-trained teacher a low temperature (T = 1) "
    "distills better than T = 4 (Choi et al. 2023, Fig. 5).",
    "choi2023_partial_mixup": "Mixing only part of each batch (PMU) matches or beats full "
    "mixup (Choi et al. 2023, Table 4, Fig. 6).",
    "choi2023_rescaled": "Rescaled-logit KD with partial mixup beats KD and the other "
    "distillation methods (Choi et al. 2023, Table 1).",
    "choi2023_robustness": "Rescaled-logit KD with PMU is more robust to FGSM and I-FGSM "
    "than vanilla training and KD, with or without mixup (Choi et al. 2023, Table 3).",
}


def report_category(config: Mapping[str, Any], experiment: str) -> str:
    """The report's category of an experiment's files: its paper."""
    paper = REPORTS.get(config["experiments"][experiment]["report"]).paper
    return PAPER_TITLES.get(paper, paper)


@dataclass(frozen=True)
class ReportCaption:
    """A report caption: what the paper claims and what the file shows (fixed when the job
    is planned), and what we found, read from the rendered files when the report is made
    (the caption template calls :meth:`found`). Only the fixed fields are in its repr, so
    as a rule param it does not make Snakemake rerun the job."""

    claim: str
    shows: str
    table_csv: str | None = None
    claims_csv: str | None = None

    def found(self) -> str:
        parts = []
        if self.claims_csv and os.path.exists(self.claims_csv):
            verdicts = _verdict_counts(self.claims_csv)
            parts.append("claim verdicts on our data: " + ", ".join(
                f"{n} {v}" for v, n in sorted(verdicts.items())
            ))  # fmt: skip
        if self.table_csv and os.path.exists(self.table_csv):
            parts.append(_paper_difference(self.table_csv))
        return "; ".join(p for p in parts if p) or "see the values shown"


def _verdict_counts(claims_csv: str) -> dict[str, int]:
    import csv

    counts: dict[str, int] = {}
    with open(claims_csv) as fh:
        for row in csv.DictReader(fh):
            counts[row["verdict"]] = counts.get(row["verdict"], 0) + 1
    return counts


def _paper_difference(table_csv: str) -> str:
    import csv
    import math

    diffs = []
    with open(table_csv) as fh:
        for row in csv.DictReader(fh):
            for key, value in row.items():
                if key.endswith("_diff") and value not in ("", "nan"):
                    diffs.append(float(value))
    diffs = [d for d in diffs if math.isfinite(d)]
    if not diffs:
        return "no published value to compare with (not the paper's data)"
    mean_abs = sum(abs(d) for d in diffs) / len(diffs)
    return f"ours minus the paper over {len(diffs)} cells: mean |Δ| = {mean_abs:.3g}"


def report_caption(
    config: Mapping[str, Any], experiment: str, selection: str, name: str
) -> ReportCaption:
    """The caption of one table, figure or claims file of an experiment's report."""
    from kdaug import plan

    exp = config["experiments"][experiment]
    report = REPORTS.get(exp["report"])
    claim = CLAIMS.get(exp["report"], report.claim)
    shows = f"{name.replace('_', ' ')} of {experiment} ({selection} weights)"
    if report.renderer == "das" and name in DAS_TABLES:
        shows = DAS_TABLES[name].caption
    elif report.renderer == "das" and name in FIGURE_SPECS:
        shows = FIGURE_SPECS[name].caption
    where = {"experiment": experiment, "selection": selection}
    table_csv = plan.TABLE_CSV.format(**where, table=name) if name in report.tables else None
    claims_csv = plan.CLAIMS_CSV.format(**where) if report.claims else None
    return ReportCaption(claim, shows, table_csv, claims_csv)
