"""Config -> cells -> paths, and tables/figures from a constructed long CSV."""

import csv
import math
import re
from pathlib import Path

import pytest
import yaml

from kdaug import plan, render
from kdaug.io import write_long_csv
from kdaug.report.results import row_augmentations, summarize

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
    """Teacher accuracies 0.8/0.9 over two seeds for every augmentation; students half."""
    rows = []
    for seed, acc in [(0, 0.8), (1, 0.9)]:
        base = {"experiment": "e", "dataset": "cifar10", "seed": seed, "selection": "last"}
        for aug in EXP["teachers"]["augmentations"]:
            teacher = {**base, "role": "teacher", "teacher_arch": "resnet18", "teacher_aug": aug}
            for split in ("test", "cinic10", "cifar10h"):
                for metric in ("accuracy", "ece", "kld_human", "class_separability", "cohesion",
                               "adhesion", "class_discrimination", "precision_macro"):  # fmt: skip
                    rows.append({**teacher, "split": split, "metric": metric, "value": acc})
                for sarch in ("lenet", "alexnet"):
                    student = {**teacher, "role": "student", "kd": "hinton_t20",
                               "student_arch": sarch, "student_aug": "none"}  # fmt: skip
                    for metric in ("accuracy", "ece", "kld_human", "precision_macro"):
                        rows.append({**student, "split": split, "metric": metric, "value": acc / 2})
    return rows


@pytest.fixture
def metrics_csv(tmp_path: Path) -> Path:
    path = tmp_path / "metrics.csv"
    write_long_csv(path, long_rows())
    return path


def test_wide_table_mean_std_interval_and_paper_values(metrics_csv: Path, tmp_path: Path) -> None:
    render.render_table(metrics_csv, EXP, "last", "table1_test", tmp_path / "t1")
    rows = list(csv.DictReader((tmp_path / "t1.csv").open()))
    assert [r["teacher_augmentation"] for r in rows] == EXP["teachers"]["augmentations"]
    first = rows[0]
    assert float(first["teacher_accuracy_mean"]) == pytest.approx(0.85)
    assert float(first["teacher_accuracy_std"]) == pytest.approx(0.0707107, rel=1e-5)
    # 95% t-interval, 1 degree of freedom: 0.85 -+ 12.7062 * 0.0707107 / sqrt(2)
    assert float(first["teacher_accuracy_ci_low"]) == pytest.approx(0.85 - 0.635310, rel=1e-4)
    assert float(first["teacher_accuracy_ci_high"]) == pytest.approx(0.85 + 0.635310, rel=1e-4)
    assert float(first["lenet_accuracy_mean"]) == pytest.approx(0.425)
    assert first["alexnet_accuracy_n"] == "2"
    # Das et al. Table 1, baseline row: teacher accuracy 0.852, LeNet KLD 1.002.
    assert float(first["teacher_accuracy_paper"]) == 0.852
    assert float(first["teacher_accuracy_diff"]) == pytest.approx(0.85 - 0.852)
    assert float(first["lenet_kld_human_paper"]) == 1.002
    md = (tmp_path / "t1.md").read_text()
    assert "0.850 ± 0.071 [0.215, 1.485]" in md and "paper 0.852, Δ -0.002" in md


def test_teacher_only_and_long_tables(metrics_csv: Path, tmp_path: Path) -> None:
    render.render_table(metrics_csv, EXP, "last", "table5_discrimination", tmp_path / "t5")
    table5 = list(csv.DictReader((tmp_path / "t5.csv").open()))
    assert not any(k.startswith("lenet") for k in table5[0])  # teachers only
    render.render_table(metrics_csv, EXP, "last", "table6_students", tmp_path / "t6")
    table6 = list(csv.DictReader((tmp_path / "t6.csv").open()))
    # one row per (augmentation, student, split): 5 x 2 x 2
    assert len(table6) == 20
    assert (table6[0]["teacher_augmentation"], table6[0]["model"], table6[0]["split"]) == (
        "none", "lenet", "test",
    )  # fmt: skip
    assert float(table6[0]["precision_macro_mean"]) == pytest.approx(0.425)
    assert float(table6[0]["precision_macro_paper"]) == 0.648  # Das et al. Table 6
    assert table6[0]["recall_macro_n"] == "0"  # not in the results: empty, not invented


def test_bar_figure_is_a_png(metrics_csv: Path, tmp_path: Path) -> None:
    figure = tmp_path / "f1.png"
    render.render_figure(metrics_csv, EXP, "last", "figure1_teacher_vs_student", [], figure)
    assert figure.read_bytes()[:4] == b"\x89PNG"


def test_summary_of_one_value_has_no_spread() -> None:
    s = summarize([0.5])
    assert (s.mean, s.n) == (0.5, 1) and math.isnan(s.std) and math.isnan(s.ci_low)
    assert summarize([]).empty


def test_paired_ablation_cells_and_rows() -> None:
    config = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    cells = plan.experiment_cells(config, "das2020_same_augmentation")
    students = [c for c in cells if c.role == "student"]
    assert len(students) == 15 and all(c.teacher_aug == c.student_aug for c in students)
    exp = config["experiments"]["das2020_augmented_students"]
    assert row_augmentations(exp, "student_aug", "cutmix") == ("none", "cutmix")
    with pytest.raises(ValueError, match="one student augmentation"):
        row_augmentations(exp | {"teachers": EXP["teachers"]}, "teacher_aug", "none")


def test_report_split_roles_are_checked() -> None:
    config = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    del config["experiments"]["das2020_cifar10"]["eval_splits"]["human"]
    with pytest.raises(plan.ConfigError, match=r"needs the split roles \['human'\]"):
        plan.check_config(config)


def test_a_split_serving_two_roles_is_evaluated_once() -> None:
    config = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    config["experiments"]["das2020_cifar10"]["eval_splits"]["test"] = "cifar10h"
    evaluations = list(plan.experiment_evaluations(config, "das2020_cifar10"))
    files = [e.metrics_file for e in evaluations]
    assert len(files) == len(set(files)) == 45  # one metrics file per model
    assert {e.splits for e in evaluations} == {("cifar10h", "cinic10")}
