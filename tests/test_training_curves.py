"""Training curves from synthetic per-epoch histories stored in model-like files."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch
import yaml

from kdaug import render
from kdaug.cells import Cell
from kdaug.render import ReportCaption
from kdaug.report import curves

EPOCHS = 6
TEACHER_AUGS = ("none", "cutmix")


def _history(offset: float, seed: int) -> list[dict[str, float]]:
    """Loss falls and accuracy rises per epoch; each seed shifts both a little."""
    rows = []
    for epoch in range(1, EPOCHS + 1):
        loss = 2.0 / epoch + offset + 0.05 * seed
        rows.append({
            "epoch": epoch, "lr": 0.1, "train_loss": loss, "train_accuracy": 1 - loss / 3,
            "val_loss": loss + 0.1, "val_accuracy": 1 - (loss + 0.1) / 3, "seconds": 1.5,
        })  # fmt: skip
    return rows


def _cells() -> list[Cell]:
    teachers = [Cell("digits", s, "resnet18", a) for s in (0, 1) for a in TEACHER_AUGS]
    students = [Cell("digits", t.seed, "resnet18", t.teacher_aug, "hinton", "lenet", "none")
                for t in teachers]  # fmt: skip
    return teachers + students


def _offset(cell: Cell) -> float:
    return 0.3 * (cell.teacher_aug == "cutmix") + 0.5 * (cell.role == "student")


def _spec(cell: Cell) -> dict:
    """The parts of a cell spec (:func:`kdaug.plan.teacher_spec`) naming the cell."""
    spec = {
        "role": cell.role,
        "dataset": cell.dataset,
        "seed": cell.seed,
        "arch": {"name": cell.teacher_arch},
        "augmentation": {"name": cell.teacher_aug},
    }
    if cell.role == "student":
        spec |= {
            "teacher": {"arch": cell.teacher_arch, "augmentation": cell.teacher_aug},
            "kd": {"name": cell.kd},
            "arch": {"name": cell.student_arch},
            "augmentation": {"name": cell.student_aug},
        }
    return spec  # fmt: skip


@pytest.fixture
def model_files(tmp_path: Path) -> list[str]:
    """Model-like files holding only what :func:`model_history` reads: spec and history."""
    files = []
    for i, cell in enumerate(_cells()):
        path = tmp_path / f"model{i}.pt"
        torch.save({"spec": _spec(cell), "history": _history(_offset(cell), cell.seed)}, path)
        files.append(str(path))
    return files


def test_curves_csv_and_figure_from_model_histories(tmp_path: Path, model_files) -> None:
    out_csv, out_png = tmp_path / "training_curves.csv", tmp_path / "curves.png"
    curves.render_training_curves(_cells(), model_files, out_csv, out_png, "Training curves")
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = list(csv.DictReader(out_csv.open()))
    # 4 curves (2 teacher, 2 student kinds) x 6 epochs x 6 history metrics, seeds pooled
    assert len(rows) == 4 * EPOCHS * 6
    assert {r["n"] for r in rows} == {"2"}
    found = {
        (r["role"], r["teacher_aug"], r["epoch"], r["metric"]): r for r in rows
    }  # fmt: skip
    row = found[("student", "cutmix", "2", "train_loss")]
    assert row["kd"] == "hinton" and row["student_arch"] == "lenet"
    expected = [2.0 / 2 + 0.8 + 0.05 * seed for seed in (0, 1)]
    assert float(row["value_mean"]) == pytest.approx(sum(expected) / 2)
    assert float(row["value_std"]) == pytest.approx(0.05 / math.sqrt(2))
    teacher = found[("teacher", "none", "1", "val_accuracy")]
    assert teacher["kd"] == "" and teacher["student_arch"] == ""
    line = curves.summary_line(curves.read_curves(out_csv))
    assert line.startswith("last-epoch validation accuracy over curves: teachers ")
    assert "students" in line
    # the report's caption reads the same sentence from the CSV
    assert ReportCaption("claim", "shows", curves_csv=str(out_csv)).found() == line
    # a file holding another cell than the one it is read for is refused
    with pytest.raises(Exception, match="resnet18-cutmix"):
        curves.render_training_curves(_cells()[:1], model_files[1:2], out_csv, out_png)


def test_labels_name_what_differs_within_a_panel() -> None:
    cells = _cells()
    history = curves.history_frame(cells, [_history(0.0, c.seed) for c in cells])
    students = history[history["role"] == "student"][list(curves.KIND)].drop_duplicates()
    assert curves._labels(students) == ["teacher none", "teacher cutmix"]
    teachers = history[history["role"] == "teacher"][list(curves.KIND)].drop_duplicates()
    assert curves._labels(teachers) == ["none", "cutmix"]


def test_a_history_without_validation_still_draws(tmp_path: Path) -> None:
    cell = Cell("digits", 0, "resnet18", "none")
    history = [{"epoch": 1, "lr": 0.1, "train_loss": 1.0, "train_accuracy": 0.5, "seconds": 1}]
    out_csv, out_png = tmp_path / "c.csv", tmp_path / "c.png"
    curves.render_training_curves(
        [cell], ["unused"], out_csv, out_png, read_history=lambda _path, _expect: history
    )
    assert out_png.stat().st_size > 0
    metrics = {r["metric"] for r in csv.DictReader(out_csv.open())}
    assert metrics == {"lr", "train_loss", "train_accuracy", "seconds"}
    assert "no validation accuracy" in curves.summary_line(curves.read_curves(out_csv))
    with pytest.raises(ValueError, match="1 cells but 2 model files"):
        curves.render_training_curves([cell], ["a", "b"], out_csv, out_png)


def test_every_experiment_renders_its_curves_from_its_model_files() -> None:
    config = yaml.safe_load(Path("config/config.yaml").read_text())
    for experiment in config["experiments"]:
        inputs = render.training_curve_inputs(config, experiment)
        cells = render.training_curve_cells(config, experiment)
        assert inputs == [c.model_file for c in cells] and len(set(inputs)) == len(inputs)
        caption = render.training_curves_caption(config, experiment)
        assert caption.curves_csv == f"results/experiments/{experiment}/training_curves.csv"
        assert caption.claim
