"""Config -> cells -> paths, and tables/figures from a constructed long CSV."""

import csv
import re
from pathlib import Path

import pytest
import yaml

from kdaug import plan, render

ROOT = Path(__file__).resolve().parents[1]
CONFIG = yaml.safe_load((ROOT / "config/config.yaml").read_text())
EXP = CONFIG["experiments"]["das2020_cifar10"]


def test_experiment_cells_are_teachers_then_students() -> None:
    cells = plan.experiment_cells(CONFIG, "das2020_cifar10")
    teachers = [c for c in cells if c.role == "teacher"]
    students = [c for c in cells if c.role == "student"]
    assert len(teachers) == 3 * 5 and len(students) == 3 * 5 * 2
    assert cells[: len(teachers)] == teachers
    assert all(s.teacher in teachers for s in students)


@pytest.mark.parametrize(
    "cell",
    [
        plan.Cell("cifar10", 2, "resnet18", "cutmix"),
        plan.Cell("cifar10", 0, "wrn_40_2", "none", "hinton_t20", "wrn_16_2", "flip"),
    ],
)
def test_paths_name_the_cell_and_parse_back(cell: plan.Cell) -> None:
    assert plan.cell_from_wildcards(cell.dataset, cell.seed, cell.model) == cell
    assert re.fullmatch(plan.WILDCARDS["model"], cell.model)
    assert cell.model_file.startswith(f"results/models/{cell.dataset}/seed{cell.seed}/")


def test_teacher_path_is_a_prefix_of_its_students() -> None:
    student = plan.Cell("d", 0, "a", "b", "k", "s", "t")
    assert student.directory.startswith(student.teacher.directory + "/")


def test_specs_hold_everything_that_changes_a_result() -> None:
    spec = plan.student_spec(
        CONFIG, "cifar10", "1", "resnet18", "mixup", "hinton_t20", "lenet", "none"
    )
    assert spec["seed"] == 1
    assert spec["kd"] == {"name": "hinton_t20", "loss": "hinton", "temperature": 20, "alpha": 0.5}
    assert spec["recipe"] == CONFIG["datasets"]["cifar10"]["training"]["student"]
    assert spec["augmentation"] == {"name": "none", "steps": []}
    teacher = plan.teacher_spec(CONFIG, "cifar10", 0, "resnet18", "cutout")
    assert teacher["augmentation"]["steps"] == [{"op": "cutout", "size": 16}]


def test_archives_for_each_split() -> None:
    assert plan.archives_for(CONFIG, "cifar10", "train") == {
        "cifar10": "cifar10/cifar-10-python.tar.gz"
    }
    assert plan.archives_for(CONFIG, "cifar10", "cifar10h") == {
        "cifar10": "cifar10/cifar-10-python.tar.gz",
        "cifar10h": "cifar10h/cifar10h-probs.npy",
    }
    params = plan.dataset_params(CONFIG, "cifar10", "cinic10")
    assert list(params["archive_files"]) == ["cinic10"]  # only what this split reads
    assert "training" not in params and "normalization" not in params
    with pytest.raises(KeyError, match="unknown split 'nope'"):
        plan.archives_for(CONFIG, "cifar10", "nope")


def long_rows() -> list[dict]:
    """Teacher accuracies 0.8/0.9 over two seeds for 'none' => mean 0.85, std 0.0707."""
    rows = []
    for seed, acc in [(0, 0.8), (1, 0.9)]:
        base = {"experiment": "e", "dataset": "cifar10", "seed": seed, "selection": "last"}
        for aug in EXP["teachers"]["augmentations"]:
            teacher = {**base, "role": "teacher", "teacher_arch": "resnet18", "teacher_aug": aug}
            for split in ("test", "cinic10"):
                for metric in ("accuracy", "ece", "class_separability", "cohesion", "adhesion",
                               "class_discrimination"):  # fmt: skip
                    rows.append({**teacher, "split": split, "metric": metric, "value": acc})
                for sarch in ("lenet", "alexnet"):
                    student = {**teacher, "role": "student", "kd": "hinton_t20",
                               "student_arch": sarch, "student_aug": "none"}  # fmt: skip
                    for metric in ("accuracy", "ece", "class_separability"):
                        rows.append({**student, "split": split, "metric": metric, "value": acc / 2})
    return rows


def test_tables_show_mean_and_sample_std(tmp_path: Path) -> None:
    path = tmp_path / "metrics.csv"
    render.write_long_csv(path, long_rows())
    for table in ("table1_test", "table5_discrimination"):
        render.render_table(path, EXP, "last", table, tmp_path / "last" / table)
    figure = tmp_path / "last/figure1_teacher_vs_student.png"
    render.render_figure(path, EXP, "last", "figure1_teacher_vs_student", figure)
    rows = list(csv.DictReader((tmp_path / "last/table1_test.csv").open()))
    assert [r["teacher_augmentation"] for r in rows] == EXP["teachers"]["augmentations"]
    first = rows[0]
    assert float(first["teacher_accuracy_mean"]) == pytest.approx(0.85)
    assert float(first["teacher_accuracy_std"]) == pytest.approx(0.0707107, rel=1e-5)
    assert float(first["lenet_accuracy_mean"]) == pytest.approx(0.425)
    assert first["alexnet_accuracy_n"] == "2"
    md = (tmp_path / "last/table1_test.md").read_text()
    assert "0.850 ± 0.071" in md
    table5 = list(csv.DictReader((tmp_path / "last/table5_discrimination.csv").open()))
    assert not any(k.startswith("lenet") for k in table5[0])  # teachers only
    png = (tmp_path / "last/figure1_teacher_vs_student.png").read_bytes()
    assert png[:4] == b"\x89PNG"


def test_mean_std_of_one_value_has_no_spread() -> None:
    mean, std, n = render.mean_std([0.5])
    assert (mean, n) == (0.5, 1) and std != std  # NaN
    assert render.format_cell(0.5, float("nan"), 1) == "0.500"
    assert render.format_cell(0.0, 0.0, 0) == "—"
