"""The report rules' wiring: which files a render job reads, and the captions and
categories of ``snakemake --report``. The workflow's side of :mod:`kdaug.report.registry`
(the papers register there when :mod:`kdaug.papers` is imported, as it is here).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kdaug import plan
from kdaug.cells import Cell
from kdaug.papers import render_claims, render_figure, render_table
from kdaug.report import registry
from kdaug.report.registry import PAPERS, REPORTS, paper_of, report_files

# The LaTeX beside each table's CSV and Markdown (plan names those two).
TABLE_TEX = plan.TABLE_CSV.removesuffix(".csv") + ".tex"
# Per experiment, for every selection: its models' training curves and their data.
TRAINING_CURVES_FIGURE = f"{plan.EXPERIMENT}/{registry.TRAINING_CURVES_FIGURE}"
TRAINING_CURVES_CSV = f"{plan.EXPERIMENT}/{registry.TRAINING_CURVES_CSV}"
# Per experiment that sets a split role to null: what its report leaves out, and why.
NOTES = f"{plan.EXPERIMENT}/{registry.NOTES_FILE}"


def figure_inputs(
    config: Mapping[str, Any], experiment: str, selection: str, figure: str
) -> dict[str, Any]:
    """The render_figure rule's named inputs: the stored outputs the figure reads, or
    else the experiment's metrics CSV."""
    exp = plan.experiment_view(config, experiment)
    outputs = paper_of(exp["report"]).figure_sources(exp, figure, selection)
    if outputs:
        return {"outputs": outputs}
    return {"metrics": plan.METRICS_CSV.format(experiment=experiment)}


def training_curve_cells(config: Mapping[str, Any], experiment: str) -> list[Cell]:
    """The models whose histories the training-curve figure draws: every cell of the
    experiment (teachers first)."""
    return plan.experiment_cells(config, experiment)


def training_curve_inputs(config: Mapping[str, Any], experiment: str) -> list[str]:
    """The render_training_curves rule's inputs: the model files, in
    :func:`training_curve_cells` order."""
    return [cell.model_file for cell in training_curve_cells(config, experiment)]


def left_out_note(config: Mapping[str, Any], experiment: str) -> str:
    """One sentence on the split roles an experiment sets to null and the report files
    left out for it ('' when it lacks none)."""
    absent = plan.absent_roles(config["experiments"][experiment])
    if not absent:
        return ""
    left = plan.left_out_files(config, experiment)
    roles = ", ".join(f"eval_splits.{r}: null" for r in absent)
    return (
        f"This experiment has no {' or '.join(absent)} split ({roles}): "
        + (f"{', '.join(left)} left out, " if left else "")
        + "tables that also read other splits show those only, and claims on "
        + f"{' or '.join(absent)} read 'not in this experiment'."
    )


def report_notes(config: Mapping[str, Any], experiment: str) -> str:
    """``notes.md`` of an experiment: which split roles it lacks and which tables and
    figures are therefore not drawn (rather than drawn from another split)."""
    exp = config["experiments"][experiment]
    paper = paper_of(exp["report"])
    left = plan.left_out_files(config, experiment)
    rows = ""
    for role in plan.absent_roles(exp):
        mine = [n for n in left if role in paper.file_roles(n)]
        rows += f"| {role} | {', '.join(mine) or 'nothing: its tables show the other splits'} |\n"
    return (
        f"# Notes on {experiment}\n\n{left_out_note(config, experiment)}\n\n"
        "| absent split role | tables and figures left out |\n|---|---|\n" + rows
    )


# -- snakemake --report: categories and captions ----------------------------------------


def report_category(config: Mapping[str, Any], experiment: str) -> str:
    """The report's category of an experiment's files: its paper."""
    return paper_of(config["experiments"][experiment]["report"]).title


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
    curves_csv: str | None = None

    def found(self) -> str:
        parts = []
        if self.claims_csv and os.path.exists(self.claims_csv):
            claims, others = _verdict_counts(self.claims_csv)
            for label, counts in (
                ("claim verdicts on our data", claims),
                ("table-only or qualified observations", others),
            ):
                if counts:
                    parts.append(f"{label}: " + ", ".join(
                        f"{n} {v}" for v, n in sorted(counts.items())
                    ))  # fmt: skip
        if self.table_csv and os.path.exists(self.table_csv):
            parts.append(_paper_difference(self.table_csv))
        if self.curves_csv and os.path.exists(self.curves_csv):
            from kdaug.report import curves

            parts.append(curves.summary_line(curves.read_curves(self.curves_csv)))
        return "; ".join(p for p in parts if p) or "see the values shown"


def _verdict_counts(claims_csv: str) -> tuple[dict[str, int], dict[str, int]]:
    """Verdict counts of the paper's claims and, apart, of the table-only and qualified
    observations (``kind`` other than ``text``; a file without the column has only claims)."""
    import csv

    claims: dict[str, int] = {}
    others: dict[str, int] = {}
    with open(claims_csv) as fh:
        for row in csv.DictReader(fh):
            counts = claims if row.get("kind", "text") in ("", "text") else others
            counts[row["verdict"]] = counts.get(row["verdict"], 0) + 1
    return claims, others


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
    exp = config["experiments"][experiment]
    report = REPORTS.get(exp["report"])
    shows = paper_of(exp["report"]).caption(name)
    shows = shows or f"{name.replace('_', ' ')} of {experiment} ({selection} weights)"
    # Which reading of each protocol setting made these numbers (issue 15).
    protocol = plan.experiment_protocol(config, experiment)
    shows += " As run: " + "; ".join(f"{k}: {v}" for k, v in protocol.items()) + "."
    note = left_out_note(config, experiment)
    shows += f" {note}" if note else ""
    where = {"experiment": experiment, "selection": selection}
    table_csv = plan.TABLE_CSV.format(**where, table=name) if name in report.tables else None
    claims_csv = plan.CLAIMS_CSV.format(**where) if report.claims else None
    return ReportCaption(report.claim, shows, table_csv, claims_csv)


def training_curves_caption(config: Mapping[str, Any], experiment: str) -> ReportCaption:
    """The caption of an experiment's training-curve figure."""
    report = REPORTS.get(config["experiments"][experiment]["report"])
    shows = (
        f"Training curves of every model of {experiment}: train and validation loss and "
        "accuracy per epoch, one line per kind of model (teachers per augmentation, "
        "students per teacher augmentation, KD method and augmentation), mean over seeds "
        "with a band of one std (train loss: the training objective, a student's KD loss "
        "included; validation loss: cross-entropy); the numbers are in training_curves.csv."
    )
    curves_csv = TRAINING_CURVES_CSV.format(experiment=experiment)
    return ReportCaption(report.claim, shows, curves_csv=curves_csv)


__all__ = [
    "NOTES",
    "PAPERS",
    "REPORTS",
    "TABLE_TEX",
    "TRAINING_CURVES_CSV",
    "TRAINING_CURVES_FIGURE",
    "figure_inputs",
    "render_claims",
    "render_figure",
    "render_table",
    "report_caption",
    "report_category",
    "report_files",
    "report_notes",
    "training_curve_inputs",
    "training_curves_caption",
]
