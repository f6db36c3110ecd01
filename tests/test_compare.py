"""kdaug.report.compare: a finished run against a committed reference, cell by cell."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from kdaug.report import compare

HEADER = "augmentation,lenet_accuracy_mean,lenet_accuracy_std,lenet_accuracy_n,"
HEADER += "lenet_accuracy_ci_low,lenet_accuracy_ci_high,lenet_accuracy_paper,lenet_accuracy_diff\n"


def table(rows: list[tuple[str, float, float, float]]) -> str:
    return HEADER + "".join(f"{a},{m},0.01,3,{lo},{hi},,\n" for a, m, lo, hi in rows)


CLAIMS = "id,a_label,b_label,verdict,p\n"


def write(root: Path, relative: str, text: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.fixture
def runs(tmp_path: Path) -> tuple[Path, Path]:
    ref, run = tmp_path / "ref", tmp_path / "run"
    t = "exp/last/table3_mnist.csv"
    write(ref, t, table([("none", 0.80, 0.78, 0.82), ("mixup", 0.70, 0.69, 0.71)]))
    write(run, t, table([("mixup", 0.75, 0.74, 0.76), ("none", 0.81, 0.80, 0.82)]))
    write(ref, "exp/last/claims.csv", CLAIMS + "c1,none,mixup,holds,0.01\nc2,x,y,untested,\n")
    write(run, "exp/last/claims.csv", CLAIMS + "c2,x,y,untested,\nc1,none,mixup,reversed,0.02\n")
    write(ref, "exp/training_curves.csv", "epoch,loss\n1,2.0\n")  # not a table: skipped
    return ref, run


def test_cells_are_matched_by_row_and_judged_against_the_reference_interval(runs) -> None:
    cells, missing = compare.compare_runs(*runs)
    assert missing == []
    table_cells = cells[cells.file == "exp/last/table3_mnist.csv"].set_index("row")
    assert table_cells.loc["none", "difference"] == pytest.approx(0.01)
    assert table_cells.loc["none", "inside"] == True  # noqa: E712 (0.81 in [0.78, 0.82])
    assert table_cells.loc["mixup", "difference"] == pytest.approx(0.05)
    assert table_cells.loc["mixup", "inside"] == False  # noqa: E712 (0.75 > 0.71)
    claims = cells[cells.file == "exp/last/claims.csv"].set_index("id")
    assert claims.loc["c1", "reference"] == "holds" and claims.loc["c1", "run"] == "reversed"
    assert not claims.loc["c1", "same"] and claims.loc["c2", "same"]
    text = compare.summary(cells)
    assert "exp/last/table3_mnist.csv: 1/2 cells inside" in text
    assert "exp/last/claims.csv: 1/2 claims with the same verdict" in text


def test_a_file_the_run_lacks_is_reported_and_fails(runs, capsys) -> None:
    ref, run = runs
    (run / "exp/last/claims.csv").unlink()
    out_csv = ref.parent / "cells.csv"
    assert compare.main([str(ref), str(run), "--csv", str(out_csv)]) == 1
    assert "missing in" in capsys.readouterr().err
    assert set(pd.read_csv(out_csv)["file"]) == {"exp/last/table3_mnist.csv"}


def test_a_row_the_run_lacks_is_nan_not_inside(runs) -> None:
    ref, run = runs
    write(run, "exp/last/table3_mnist.csv", table([("none", 0.81, 0.80, 0.82)]))
    cells, _ = compare.compare_runs(ref, run)
    mixup = cells[(cells.file == "exp/last/table3_mnist.csv") & (cells.row == "mixup")]
    assert mixup["run"].isna().all() and mixup["inside"].isna().all()


def test_rows_with_empty_key_cells_match_and_read_as_blank(tmp_path: Path) -> None:
    """A teacher row leaves its student key columns empty (NaN once read): it still
    matches the run's row and its label shows the blanks, not 'nan'."""
    header = "teacher,student," + HEADER.split(",", 1)[1]
    text = header + "resnet20,,0.8,0.01,3,0.78,0.82,,\nresnet20,resnet8,0.7,0.01,3,0.69,0.71,,\n"
    for root in ("ref", "run"):
        write(tmp_path / root, "exp/last/t.csv", text)
    cells, missing = compare.compare_runs(tmp_path / "ref", tmp_path / "run")
    assert missing == [] and list(cells["row"]) == ["resnet20 / ", "resnet20 / resnet8"]
    assert cells["inside"].tolist() == [True, True]
    one_key = "row," + HEADER.split(",", 1)[1] + "kd_t4/standard,0.8,0.01,3,0.78,0.82,,\n"
    for root in ("ref", "run"):  # Wang's and Choi's accuracy tables name their key "row"
        write(tmp_path / root, "exp/last/t.csv", one_key)
    cells, _ = compare.compare_runs(tmp_path / "ref", tmp_path / "run")
    assert list(cells["row"]) == ["kd_t4/standard"]
