"""The papers: one module each, holding its tables, figures, claims and published values,
registered into :mod:`kdaug.report.registry` on import.

Importing this package registers every paper; a fourth paper is one new module here plus
its line below. The functions below dispatch one report file to the paper that draws it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from kdaug.papers import choi2023, das2020, wang2022  # noqa: F401  (register the papers)
from kdaug.report import claims
from kdaug.report.registry import REPORTS, paper_of

CLAIMS_DIR = Path(__file__).resolve().parent / "claims"
VALUES_DIR = Path(__file__).resolve().parent / "values"


def render_table(
    long_csv: str | os.PathLike[str],
    exp: Mapping[str, Any],
    selection: str,
    name: str,
    stem: str | os.PathLike[str],
) -> None:
    """Write table ``name`` of an experiment's report as ``stem``.csv, .md (and .tex)."""
    report = REPORTS.get(exp["report"])
    if name not in report.tables:
        raise KeyError(f"this report has no table {name!r}; it has {list(report.tables)}")
    paper_of(exp["report"]).render(long_csv, exp, selection, name, str(stem), ())


def render_figure(
    long_csv: str | os.PathLike[str] | None,
    exp: Mapping[str, Any],
    selection: str,
    name: str,
    outputs: Sequence[str],
    path: str | os.PathLike[str],
) -> None:
    """Draw figure ``name`` of an experiment's report as the PNG ``path``."""
    report = REPORTS.get(exp["report"])
    if name not in report.figures:
        raise KeyError(f"this report has no figure {name!r}; it has {list(report.figures)}")
    paper_of(exp["report"]).render(long_csv, exp, selection, name, str(path), list(outputs))


def claims_path(report_name: str) -> Path:
    paper = paper_of(report_name)
    if paper.claims_file is None:
        raise KeyError(f"{paper.name} has no claims file")
    return CLAIMS_DIR / paper.claims_file


def render_claims(
    long_csv: str | os.PathLike[str],
    exp: Mapping[str, Any],
    selection: str,
    stem: str | os.PathLike[str],
) -> list[claims.Verdict]:
    """Check the claims of the experiment's paper over seeds; write ``stem``.csv and .md."""
    return claims.render_claims(long_csv, exp, selection, stem, claims_path(exp["report"]))


__all__ = ["VALUES_DIR", "render_claims", "render_figure", "render_table"]
