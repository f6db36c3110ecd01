"""The report registry: which papers exist, and which tables, figures and claim checks each
kind of experiment renders.

Papers live one module each in :mod:`kdaug.papers` and register themselves here: a
:class:`Paper` (how its files are drawn, what each shows) and one :class:`Report` per kind
of experiment (``experiments.<name>.report`` in the config). The planning code asks this
registry which files an experiment renders; it never imports a paper module by name, so a
fourth paper is one new module under ``kdaug/papers/``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kdaug.registry import Registry

# render(long_csv, exp, selection, name, out, outputs): a table (``out`` is the file stem:
# one file per TABLE_FORMATS) or a figure (``out`` is the PNG path).
Render = Callable[
    [str | os.PathLike[str] | None, Mapping[str, Any], str, str, str, Sequence[str]], None
]
# figure_sources(exp, figure, selection): the stored model outputs a figure reads, in the
# order render() receives them; empty when the figure reads the metrics CSV.
FigureSources = Callable[[Mapping[str, Any], str, str], list[str]]


@dataclass(frozen=True)
class Report:
    """The tables and figures one kind of experiment renders."""

    paper: str
    tables: tuple[str, ...]
    figures: tuple[str, ...] = ()
    claims: bool = True
    claim: str = ""  # what the paper claims, for the report's captions

    def __post_init__(self) -> None:
        names = [*self.tables, *self.figures]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"report of {self.paper}: file names listed twice: {twice}")


def _no_sources(exp: Mapping[str, Any], figure: str, selection: str) -> list[str]:
    return []


def _test_split_only(report: Report) -> set[str]:
    return {"test"}


def _reads_test(name: str) -> frozenset[str]:
    return frozenset({"test"})


@dataclass(frozen=True)
class Paper:
    """One paper's renderer: every table and figure it can draw, with what each shows."""

    name: str
    title: str
    render: Render
    tables: Mapping[str, str]  # table name -> caption
    figures: Mapping[str, str] = field(default_factory=dict)  # figure name -> caption
    figure_sources: FigureSources = _no_sources
    split_roles: Callable[[Report], set[str]] = _test_split_only
    # file_roles(name): the split roles one table or figure reads. It is drawn when the
    # experiment has at least one of them (and shows only those), else left out: an
    # experiment without CINIC-10 or CIFAR-10H sets that role to null (plan.absent_roles).
    file_roles: Callable[[str], frozenset[str]] = _reads_test
    claims_file: str | None = None  # YAML of the paper's claims (kdaug/papers/claims/)

    def __post_init__(self) -> None:
        both = sorted(set(self.tables) & set(self.figures))
        if both:
            raise ValueError(f"paper {self.name}: names used by a table and a figure: {both}")

    def caption(self, name: str) -> str | None:
        return self.tables.get(name) or self.figures.get(name) or None

    def left_out(self, report: Report, roles: Collection[str]) -> list[str]:
        """The report's tables and figures that read none of the split ``roles`` an
        experiment has (they are not drawn, rather than drawn from another split)."""
        return [n for n in (*report.tables, *report.figures) if not self.file_roles(n) & set(roles)]


PAPERS: Registry[Paper] = Registry("paper")
REPORTS: Registry[Report] = Registry("report")


def register_paper(paper: Paper) -> Paper:
    return PAPERS.register(paper.name)(paper)


def register_report(name: str, report: Report) -> Report:
    """Register an experiment kind; its paper must be registered and know every file."""
    paper = PAPERS.get(report.paper)
    unknown = [t for t in report.tables if t not in paper.tables]
    unknown += [f for f in report.figures if f not in paper.figures]
    if unknown:
        raise ValueError(f"report {name!r}: {paper.name} draws no {unknown}")
    if report.claims and paper.claims_file is None:
        raise ValueError(f"report {name!r} checks claims, but {paper.name} has no claims file")
    return REPORTS.register(name)(report)


def paper_of(report_name: str) -> Paper:
    return PAPERS.get(REPORTS.get(report_name).paper)


CLAIMS_FILE = "claims"
TABLE_FORMATS = ("csv", "md", "tex")
# Every experiment, of every paper, also draws its models' training curves (one figure
# and its data, for all selections: the histories hold every epoch).
TRAINING_CURVES_FIGURE = "figure_training_curves.png"
TRAINING_CURVES_CSV = "training_curves.csv"
# Where an experiment lacks a split role its report reads: which files were left out, why.
NOTES_FILE = "notes.md"


def report_files(
    report: Report, selections: Sequence[str], left_out: Collection[str] = ()
) -> list[str]:
    """Files (relative to the experiment directory) that rendering a report produces;
    ``left_out`` names tables and figures not drawn (see :data:`NOTES_FILE`)."""
    files = [TRAINING_CURVES_FIGURE, TRAINING_CURVES_CSV]
    tables = [t for t in report.tables if t not in left_out]
    figures = [f for f in report.figures if f not in left_out]
    for selection in selections:
        files += [f"{selection}/{t}.{ext}" for t in tables for ext in TABLE_FORMATS]
        files += [f"{selection}/{f}.png" for f in figures]
        if report.claims:
            files += [f"{selection}/{CLAIMS_FILE}.{ext}" for ext in ("csv", "md")]
    return files
