"""The report registry: papers register their files once, reports name only known files."""

from __future__ import annotations

import pytest

import kdaug.papers  # noqa: F401  (registers the papers)
from kdaug.registry import Registry
from kdaug.report.registry import Paper, Report, register_report, report_files


def _render(*_args) -> None:
    return None


def test_a_report_listing_a_file_twice_is_refused() -> None:
    with pytest.raises(ValueError, match=r"listed twice: \['table_a'\]"):
        Report("p", ("table_a", "table_a"))
    with pytest.raises(ValueError, match="listed twice"):
        Report("p", ("x",), ("x",))


def test_a_paper_using_one_name_for_a_table_and_a_figure_is_refused() -> None:
    with pytest.raises(ValueError, match=r"table and a figure: \['x'\]"):
        Paper("p", "P", _render, tables={"x": ""}, figures={"x": ""})


def test_registering_a_paper_or_report_name_twice_is_refused() -> None:
    papers: Registry[Paper] = Registry("paper")
    papers.register("p")(Paper("p", "P", _render, tables={"t": ""}))
    with pytest.raises(ValueError, match="paper 'p' is registered twice"):
        papers.register("p")(Paper("p", "P", _render, tables={"t": ""}))


def test_a_report_naming_a_file_its_paper_does_not_draw_is_refused() -> None:
    with pytest.raises(ValueError, match=r"das2020 draws no \['table_nope'\]"):
        register_report("das2020_bad", Report("das2020", ("table_nope",)))


def test_report_files_per_selection() -> None:
    files = report_files(Report("das2020", ("t",), ("figure_f",)), ["last", "best_val"])
    assert "last/t.csv" in files and "best_val/figure_f.png" in files
    assert "last/claims.md" in files
    assert not [
        f for f in report_files(Report("x", ("t",), claims=False), ["last"]) if "claims" in f
    ]


def test_every_report_has_latex_tables_and_training_curves() -> None:
    files = report_files(Report("x", ("t",), claims=False), ["last", "best_val"])
    assert "last/t.tex" in files and "best_val/t.tex" in files
    # once per experiment, not per selection: the histories hold every epoch
    assert files.count("figure_training_curves.png") == files.count("training_curves.csv") == 1
