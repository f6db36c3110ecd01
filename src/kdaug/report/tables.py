"""Tables: our values over seeds beside the paper's published ones.

A :class:`TableSpec` says which models, metrics and evaluation splits a table shows and
what its rows are. ``wide`` tables (the papers' Tables 1-5) have one row per
augmentation and one column per (model, metric); ``long`` tables (the appendix Tables
6-9) have one row per (augmentation, model, split) and one column per metric.

Every cell is written to CSV as mean, std, n, 95% interval, the paper's value and our
difference from it; Markdown shows ``mean ± std [95% CI]`` and ``paper p (Δ d)``.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import yaml

from kdaug.io import atomic_path
from kdaug.report.results import Results, Summary

SUMMARY_FIELDS = ("mean", "std", "n", "ci_low", "ci_high", "paper", "diff")


@cache
def paper_values(paper: str) -> dict[str, Any]:
    """The published tables of ``paper`` (``kdaug/papers/values/<paper>.yaml``: data the
    paper modules keep beside them, read by name so that this wing imports no paper)."""
    text = resources.files("kdaug").joinpath(f"papers/values/{paper}.yaml").read_text()
    return yaml.safe_load(text)


# (our row's paper key, paper column) -> (published value, decimals printed), or (None, 3).
PaperLookup = Callable[[str, str], tuple[float | None, int]]


def paper_lookup(paper: str, names: Sequence[str]) -> PaperLookup:
    """Look values up in the paper's tables ``names`` (first table holding the cell wins).

    Printed decimals come from the table's ``decimals`` (one number, or per column) and
    its ``decimals_exceptions`` ([row, column, decimals] triples)."""
    tables = [paper_values(paper)["tables"][n] for n in names]

    def lookup(row: str, column: str) -> tuple[float | None, int]:
        for table in tables:
            value = table.get("values", {}).get(row, {}).get(column)
            if value is None:
                continue
            decimals = table.get("decimals", 3)
            if isinstance(decimals, dict):
                decimals = decimals.get(column, 3)
            for r, c, d in table.get("decimals_exceptions", ()):
                if (r, c) == (row, column):
                    decimals = d
            return float(value), int(decimals)
        return None, 3

    return lookup


@dataclass(frozen=True)
class TableSpec:
    name: str
    caption: str
    metrics: tuple[str, ...]
    split_roles: tuple[str, ...] = ("test",)
    models: str = "all"  # all | teacher | students
    rows: str = "teacher_aug"  # teacher_aug | student_aug
    layout: str = "wide"  # wide | long
    paper_table: str | None = None  # key under `tables:` of the paper's values file

    def paper_key(self, model: str, role: str, metric: str) -> str:
        """The paper file's column name (``lenet_accuracy`` or ``lenet_test_accuracy``)."""
        return f"{model}_{metric}" if len(self.split_roles) == 1 else f"{model}_{role}_{metric}"


@dataclass(frozen=True)
class Cell:
    summary: Summary
    paper: float | None
    paper_decimals: int = 3  # as printed in the paper

    @property
    def diff(self) -> float:
        if self.paper is None or self.summary.empty:
            return math.nan
        return self.summary.mean - self.paper

    def csv_values(self) -> list[Any]:
        s = self.summary
        paper = "" if self.paper is None else self.paper
        return [s.mean, s.std, s.n, s.ci_low, s.ci_high, paper, self.diff]

    def markdown(self) -> str:
        s = self.summary
        if s.empty:
            text = "—"
        elif s.n == 1:
            text = f"{s.mean:.3f}"
        else:
            text = f"{s.mean:.3f} ± {s.std:.3f} [{s.ci_low:.3f}, {s.ci_high:.3f}]"
        if self.paper is not None:
            diff = "" if math.isnan(self.diff) else f", Δ {self.diff:+.3f}"
            text += f"<br>paper {self.paper:.{self.paper_decimals}f}{diff}"
        return text


@dataclass(frozen=True)
class Table:
    caption: str
    key_header: list[str]
    value_header: list[str]
    rows: list[tuple[list[str], list[Cell]]]

    def to_markdown(self) -> str:
        header = self.key_header + self.value_header
        lines = [self.caption, "", "| " + " | ".join(header) + " |"]
        lines.append("|" + "|".join(["---"] * len(header)) + "|")
        for keys, cells in self.rows:
            lines.append("| " + " | ".join(keys + [c.markdown() for c in cells]) + " |")
        return "\n".join(lines) + "\n"

    def write(self, stem: str | os.PathLike[str]) -> None:
        with atomic_path(f"{stem}.csv") as tmp, open(tmp, "w", newline="") as fh:
            writer = csv.writer(fh)
            columns = [c.replace(" ", "_") for c in self.value_header]
            writer.writerow(
                [k.replace(" ", "_") for k in self.key_header]
                + [f"{c}_{f}" for c in columns for f in SUMMARY_FIELDS]
            )
            for keys, cells in self.rows:
                writer.writerow(keys + [v for c in cells for v in c.csv_values()])
        with atomic_path(f"{stem}.md") as tmp:
            tmp.write_text(self.to_markdown())


def _paper_lookup(spec: TableSpec, paper: str | None):
    """``(row, model, role, metric) -> (published value or None, decimals printed)``."""
    table: dict[str, Any] = {}
    if paper and spec.paper_table:
        table = paper_values(paper)["tables"][spec.paper_table]
    values = table.get("values", {})
    exceptions = {(r, c): d for r, c, d in table.get("decimals_exceptions", [])}

    def lookup(row: str, model: str, role: str, metric: str) -> tuple[float | None, int]:
        column = spec.paper_key(model, role, metric)
        value = values.get(row, {}).get(column)
        printed = table.get("decimals", 3)  # one number, or one per column
        if isinstance(printed, dict):
            printed = printed.get(column, 3)
        decimals = exceptions.get((row, column), printed)
        return (None if value is None else float(value)), int(decimals)

    return lookup


def build_table(
    results: Results, spec: TableSpec, selection: str, paper: str | None = None
) -> Table:
    """Our values of ``spec`` for the ``selection`` weights, beside ``paper``'s."""
    lookup = _paper_lookup(spec, paper)
    row_label = spec.rows.replace("_aug", " augmentation")
    models = results.models(spec.models)
    rows: list[tuple[list[str], list[Cell]]] = []

    def cell(row: str, model: str, role: str, metric: str) -> Cell:
        split = results.split(role)
        summary = results.summary(selection, split, model, metric, spec.rows, row)
        return Cell(summary, *lookup(row, model, role, metric))

    if spec.layout == "wide":
        header = [
            f"{m} {metric}" + (f" ({r})" if len(spec.split_roles) > 1 else "")
            for m in models
            for r in spec.split_roles
            for metric in spec.metrics
        ]
        for row in results.row_values(spec.rows):
            cells = [
                cell(row, m, r, metric)
                for m in models
                for r in spec.split_roles
                for metric in spec.metrics
            ]
            rows.append(([row], cells))
        keys = [row_label]
    else:
        header = list(spec.metrics)
        for row in results.row_values(spec.rows):
            for m in models:
                for r in spec.split_roles:
                    cells = [cell(row, m, r, metric) for metric in spec.metrics]
                    rows.append(([row, m, results.split(r)], cells))
        keys = [row_label, "model", "split"]
    splits = ", ".join(f"`{results.split(r)}`" for r in spec.split_roles)
    source = f" Paper values: {paper}, {spec.paper_table}." if paper and spec.paper_table else ""
    caption = (
        f"**{spec.name}** ({selection} weights; splits {splits}). {spec.caption} "
        f"Cells: mean ± std [95% t-interval] over seeds.{source}"
    )
    return Table(caption, keys, header, rows)
