"""Tables as LaTeX: a booktabs tabular fragment from the same frame as the CSV and Markdown."""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path

import pytest

from kdaug.report.results import Summary, summarize
from kdaug.report.tables import Cell, Table, better, latex_escape


def _cell(*values: float, paper: float | None = None) -> Cell:
    return Cell(summarize(values), paper)


EMPTY = Cell(Summary(math.nan, math.nan, 0, math.nan, math.nan), None)


def _table(**options) -> Table:
    """Rows: two augmentations (one name with LaTeX's special characters); columns: an
    accuracy (higher is best), a KL divergence (lower is best), a metric with no best
    end, and one named by a pair (its metric given by the table)."""
    header = ["lenet accuracy", "lenet kld_human", "cohesion", "wrn_40_2/wrn_16_2"]
    rows = [
        (["none"], [_cell(0.90, 0.92, paper=0.91), _cell(0.20, 0.22), _cell(1.0, 1.1),
                    _cell(70.0, 72.0)]),
        (["cut_mix 50% & #1"], [_cell(0.95, 0.97), _cell(0.30, 0.28), _cell(2.0, 2.2),
                                _cell(0.912)]),
        (["teacher"], [EMPTY, _cell(0.25, 0.27), _cell(3.0), _cell(80.0, 81.0)]),
    ]  # fmt: skip
    return Table("**Table** with `code` (%)", ["augmentation"], header, rows, **options)


def _body(tex: str) -> list[list[str]]:
    """The cells of the rows between \\midrule and \\bottomrule."""
    lines = tex.splitlines()
    body = lines[lines.index(r"\midrule") + 1 : lines.index(r"\bottomrule")]
    return [re.split(r"(?<!\\)&", line.removesuffix(r" \\")) for line in body]


def test_latex_is_a_booktabs_tabular_fragment() -> None:
    tex = _table().to_latex()
    lines = tex.splitlines()
    code = [line for line in lines if not line.startswith("%")]
    assert code[0] == r"\begin{tabular}{lrrrr}" and code[-1] == r"\end{tabular}"
    assert code[1:3] == [r"\toprule", code[2]] and code[3] == r"\midrule"
    assert code[-2] == r"\bottomrule"
    assert all(line.startswith("% ") for line in lines[: lines.index(code[0])])
    assert "**" not in tex and "`" not in tex  # the caption's Markdown is stripped
    # braces balance once escaped braces are set aside
    depth = 0
    for ch in re.sub(r"\\[{}]", "", tex):
        depth += {"{": 1, "}": -1}.get(ch, 0)
        assert depth >= 0
    assert depth == 0
    body = _body(tex)
    assert len(body) == 3 and all(len(row) == 5 for row in body)  # one line per table row
    header = code[2].removesuffix(r" \\").split(" & ")
    assert header[2] == r"lenet kld\_human" and len(header) == 5


def test_cells_are_mean_pm_std_and_the_best_of_each_column_is_bold() -> None:
    body = _body(_table().to_latex())
    cells = [[c.strip() for c in row] for row in body]
    # accuracy: the higher mean (0.960) is best
    assert cells[1][1] == r"$\mathbf{0.960 \pm 0.014}$"
    assert cells[0][1] == r"$0.910 \pm 0.014$"
    assert cells[2][1] == "--"  # no value
    # KL divergence: the lower mean is best
    assert cells[0][2] == r"$\mathbf{0.210 \pm 0.014}$"
    assert "mathbf" not in cells[1][2] + cells[2][2]
    # cohesion has no better end: nothing bold; a single seed shows its value alone
    assert not any("mathbf" in row[3] for row in cells)
    assert cells[2][3] == "$3.000$"
    # a pair column names no metric: nothing bold unless the table says what it shows
    assert not any("mathbf" in row[4] for row in cells)


def test_table_metric_and_unranked_rows_decide_the_bold_cell() -> None:
    cells = [[c.strip() for c in row] for row in _body(_table(metric="accuracy").to_latex())]
    assert "mathbf" in cells[2][4]  # 80.5 of the teacher row
    table = _table(metric="accuracy", unranked_rows=("teacher",))
    cells = [[c.strip() for c in row] for row in _body(table.to_latex())]
    assert cells[0][4] == r"$\mathbf{71.000 \pm 1.414}$"  # the teacher is not ranked
    assert "mathbf" not in cells[2][4] and "mathbf" not in cells[2][2]


def test_rows_are_ranked_within_groups() -> None:
    rows = [
        (["none", "lenet"], [_cell(0.5, 0.6)]),
        (["mixup", "lenet"], [_cell(0.7, 0.8)]),
        (["none", "alexnet"], [_cell(0.9, 0.95)]),
        (["mixup", "alexnet"], [_cell(0.3, 0.4)]),
    ]
    table = Table("t", ["augmentation", "model"], ["accuracy"], rows, rank_within=("model",))
    bold = ["mathbf" in row[2] for row in _body(table.to_latex())]
    assert bold == [False, True, True, False]


def test_special_characters_are_escaped() -> None:
    assert latex_escape("a_b 50% & #1 {x} ~^\\") == (
        r"a\_b 50\% \& \#1 \{x\} \textasciitilde{}\textasciicircum{}\textbackslash{}"
    )
    assert latex_escape("wrn → resnet, Δ ±") == r"wrn $\rightarrow$ resnet, $\Delta$ $\pm$"
    body = _body(_table().to_latex())
    assert body[1][0].strip() == r"cut\_mix 50\% \& \#1"
    assert not re.search(r"(?<!\\)[_%#]", "\n".join(_table().to_latex().splitlines()[5:]))


@pytest.mark.parametrize(
    ("label", "direction"),
    [
        ("lenet accuracy (test)", "max"), ("f1_macro", "max"), ("precision_macro", "max"),
        ("lenet kld_human", "min"), ("ece", "min"), ("test_loss", "min"),
        ("wrn_40_2 T. stddev (x1e-3)", "min"), ("class_discrimination", None),
        ("vscore_similar (train)", None), ("alpha=0.2", None), (None, None),
    ],
)  # fmt: skip
def test_which_end_of_a_metric_is_best(label: str | None, direction: str | None) -> None:
    assert better(label) == direction


def test_write_lands_csv_markdown_and_latex_from_one_frame(tmp_path: Path) -> None:
    table = _table()
    table.write(tmp_path / "t")
    assert (tmp_path / "t.tex").read_text() == table.to_latex()
    rows = list(csv.DictReader((tmp_path / "t.csv").open()))
    assert [r["augmentation"] for r in rows] == ["none", "cut_mix 50% & #1", "teacher"]
    first = rows[0]
    assert float(first["lenet_accuracy_mean"]) == pytest.approx(0.91)
    assert first["lenet_accuracy_n"] == "2"
    assert float(first["lenet_accuracy_paper"]) == 0.91 and first["cohesion_paper"] == ""
    assert rows[2]["lenet_accuracy_mean"] == "nan" and rows[2]["lenet_accuracy_n"] == "0"
    md = (tmp_path / "t.md").read_text()
    assert "| none | 0.910 ± 0.014 [0.783, 1.037]<br>paper 0.910, Δ +0.000 |" in md
    # the frame round-trips to the same cells (frame equality: NaN equals NaN)
    again = Table.from_frame(table.caption, table.frame)
    assert again.key_header == table.key_header and again.value_header == table.value_header
    assert again.frame.equals(table.frame)
