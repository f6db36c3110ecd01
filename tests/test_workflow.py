"""The Snakemake workflow: dry runs, lint, single-cell targets, schema errors, the demo DAG."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kdaug import plan, verify

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
pytestmark = pytest.mark.workflow


def workdir(tmp_path: Path) -> Path:
    """A copy of the workflow files, so runs never touch the checkout's results/."""
    for name in ("Snakefile", "config", "workflow", "envs", "profiles"):
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, tmp_path / name)
        else:
            shutil.copy(src, tmp_path / name)
    shutil.copy(ROOT / "tests/configs/fast.yaml", tmp_path / "config/fast.yaml")
    return tmp_path


def snakemake(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([SNAKEMAKE, *args], cwd=cwd, capture_output=True, text=True, timeout=2700)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def job_counts(output: str) -> dict[str, int]:
    """Parse the 'Job stats' table of a dry run into {rule: count}."""
    counts = {}
    table = output.split("Job stats:")[1]
    for line in table.splitlines()[3:]:
        match = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if not match:
            break
        counts[match[1]] = int(match[2])
    return counts


@pytest.fixture(scope="module")
def wd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return workdir(tmp_path_factory.mktemp("wf"))


def load_config(*names: str) -> dict:
    return plan.load_layered_config(ROOT / name for name in names)


DAS_RUN = "run=[das2020_cifar10,das2020_augmented_students,das2020_same_augmentation,das2020_mnist]"


def test_paper_grid_dry_run_shows_the_full_plan_offline(wd: Path) -> None:
    out = snakemake(wd, "-n", "--cores", "4", "--resources", "gpu=1", "--config", DAS_RUN).stdout
    counts = job_counts(out)
    # 3 seeds x (5 ResNet18 CIFAR-10 teachers + 3 AlexNet MNIST teachers)
    assert counts["train_teacher"] == 3 * (5 + 3)
    # per seed: 10 main-grid students, 4 + 4 new ablation students, 3 MNIST students
    assert counts["distill_student"] == 3 * (10 + 4 + 4 + 3)
    # one evaluation job per model (all its splits): main grid 15, ablations 8 new
    # students, MNIST 6 (a teacher's job includes the train-split logits its
    # unaugmented students read)
    assert counts["evaluate_model"] == 3 * (15 + 8 + 6)
    # CIFAR-10, CINIC-10, CIFAR-10H and MNIST's four files
    assert counts["download_archive"] == 7
    assert counts["prepare_split"] == 8  # cifar10 train/val/test/cinic10/cifar10h, mnist x3


def test_wang_grid_dry_run(wd: Path) -> None:
    """Wang et al.'s CIFAR-100 cells: 5 teachers; the DA grid's 9 teacher/student column
    pairs x 10 schemes (9 and the constant-image sanity check), Table 1's 7 pairs x 9 rows
    (6 KD rows, 2 of them shared with the DA grid, and 3 CRD rows), the epochs sweep's
    10 KD/CE methods x 4 augmentations (3 cells shared with Table 1)."""
    run = "run=[wang2022_cifar100_da,wang2022_cifar100_accuracy,wang2022_cifar100_epochs]"
    out = snakemake(wd, "-n", "--cores", "4", "--resources", "gpu=1", "--config", run).stdout
    counts = job_counts(out)
    assert counts["train_teacher"] == 3 * 5
    assert counts["distill_student"] == 3 * (9 * 10 + 7 * (9 - 2) + (10 * 4 - 3))
    assert counts["teacher_stats"] == 3 * 9 * 10  # one per student of the DA grid
    assert counts["download_archive"] == 1
    assert counts["prepare_split"] == 3  # cifar100 train/val/test


def test_choi_grid_dry_run(wd: Path) -> None:
    """Choi et al.'s CIFAR-100 cells per seed (shared cells counted once): teachers 5 x
    {plain, mixup} + wrn_40_2 + resnet32x4, vgg13, ResNet50; students: 20 scenario cells,
    25 x 2 temperature cells less the 5 shared with the scenarios, 28 partial-mixup cells
    (26 of the grid, Table 4's KD and Vanilla rows), 13 pairs x 18 Table 1 rows (the
    student alone, KD, the CRD benchmark's 12 other methods, 4 of ours) less 6 shared, 9
    robustness rows less the 5 in Table 1 (vanilla, KD, ICKD, CRD, ours), Figure 6's
    resnet110 -> resnet20 grid (16 PMU + 4 FMU + no mixup) less the 4 in Table 1 (no
    mixup, PMU 10 % and 50 %, FMU at alpha 1); Figure 7's ablation trains nothing new
    (Table 4's students) and attacks its teacher and 8 students."""
    run = (
        "run=[choi2023_scenarios,choi2023_temperature,choi2023_partial_mixup,"
        "choi2023_partial_mixup_rn110,choi2023_rescaled,choi2023_robustness,"
        "choi2023_mixup_attacks]"
    )
    out = snakemake(wd, "-n", "--cores", "4", "--resources", "gpu=1", "--config", run).stdout
    counts = job_counts(out)
    assert counts["train_teacher"] == 3 * (10 + 1 + 3)
    assert counts["distill_student"] == 3 * (
        20 + (50 - 5) + 28 + (13 * 18 - 6) + (9 - 5) + (21 - 4)
    )
    assert counts["attack_model"] == 3 * (1 + 9 + (1 + 8))


def test_fashion_mnist_suite_dry_run(wd: Path) -> None:
    out = snakemake(wd, "-n", "--configfile", "config/fashion.yaml")
    counts = job_counts(out.stdout)
    # 3 seeds. Das: AlexNet teachers x 5 augmentations (Table 3's three among them);
    # Wang and Choi: resnet20 teachers with standard and full-mixup training.
    assert counts["train_teacher"] == 3 * (5 + 2)
    # Das per seed: grid 5 x (LeNet, AlexNet), 4 more augmented students, 4 more same-
    # augmentation students (Table 3's are the grid's). Wang/Choi per seed: 10 appended-
    # copy schemes, Table 1's CE and KD rows, 3 more scenario students, KD at T = 1,
    # rescaled KD x 4 mixup settings (Choi's rescaled and robustness rows are shared).
    assert counts["distill_student"] == 3 * (10 + 4 + 4) + 3 * (10 + 2 + 3 + 1 + 4)
    assert counts["teacher_stats"] == 3 * 10
    assert counts["attack_model"] == 3 * (1 + 3)
    assert counts["download_archive"] == 4  # the four IDX files, through the mirror


def test_demo_dry_run(wd: Path) -> None:
    """`make demo`: Das et al.'s main grid with 3 seeds, Wang's epochs sweep and Choi's
    temperature experiment; one evaluation job per model."""
    out = snakemake(wd, "-n", "--cores", "2", "--configfile", "config/demo.yaml").stdout
    counts = job_counts(out)
    assert counts["train_teacher"] == 3 * 5 + 1 + 1  # ResNet18 x 5 augs x 3 seeds; resnet20s
    assert counts["distill_student"] == 3 * 10 + 8 + 2
    assert counts["evaluate_model"] == counts["train_teacher"] + counts["distill_student"]
    assert "teacher_stats" not in counts and "attack_model" not in counts


def test_demo_all_dry_run(wd: Path) -> None:
    out = snakemake(wd, "-n", "--cores", "2", "--configfile", "config/demo.yaml",
                    "config/demo_all.yaml").stdout  # fmt: skip
    counts = job_counts(out)
    # ResNet18 per augmentation (3 seeds) + the AlexNet trio; Wang's resnet20; Choi's mixup
    # resnet20; Figure 1's resnet8 trained from scratch with and without mixup
    assert counts["train_teacher"] == 3 * 5 + 3 + 1 + 1 + 2
    # Das: 3 x 10 + 4 + 4 + 3; Wang: 9 schemes + the constant-image sanity check, 4 more
    # Table 1 rows, 6 more epochs-sweep cells;
    # Choi: 3 new scenario students, 1 at T = 1, 4 rescaled-KD mixup variants; the KD
    # method zoo: CRD+KD with CutMixPick (Wang), FitNet, AT, CRD, ICKD, FT, CRD + mixup;
    # Figure 1: T = 1, 8, 16 from the plain teacher, T = 8, 16 from the mixup one
    assert counts["distill_student"] == (3 * 10 + 4 + 4 + 3 + 10 + 4 + 6 + 3 + 1 + 4 + 1 + 6 + 5)
    assert counts["evaluate_model"] == counts["train_teacher"] + counts["distill_student"]
    assert counts["teacher_stats"] == 10
    assert counts["attack_model"] == 1 + 3  # the robustness teacher and its 3 students
    assert "download_archive" not in counts


def test_demo_dry_run_without_the_human_role_plans_no_human_files(wd: Path) -> None:
    """A layer can take CIFAR-10H's role away (null): Table 1, Figures 3 and 6 are not
    planned, the other files are, and notes.md says what is left out."""
    (wd / "config/no_human.yaml").write_text(
        "experiments:\n  das2020_digits:\n    eval_splits:\n      human: null\n"
    )
    out = snakemake(wd, "-n", "--configfile", "config/demo.yaml", "config/no_human.yaml").stdout
    assert "das2020_digits/notes.md" in out and "das2020_digits/last/table6_students" in out
    human = ("table1_test", "figure3_human_confidence", "figure6_relative_kl")
    assert not [name for name in human if f"das2020_digits/last/{name}" in out]


def test_lint_is_clean(wd: Path) -> None:
    proc = snakemake(wd, "--lint", check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_one_cell_target_builds_exactly_that_cell(wd: Path) -> None:
    cell = plan.Cell("digits", 0, "resnet18", "cutmix", "hinton_t20", "lenet", "none")
    target = cell.eval_metrics("last")
    out = snakemake(wd, target, "-n", "--cores", "2", "--configfile", "config/demo.yaml").stdout
    assert job_counts(out) == {
        "distill_student": 1,
        "evaluate_model": 2,  # the student; the teacher (its train logits, cached)
        "prepare_split": 4,  # train, val; test_human and test_shifted (the student's)
        "total": 8,
        "train_teacher": 1,
    }
    assert "results/models/digits/seed0/resnet18-cutmix/model.pt" in out


def test_schema_rejects_a_wrong_key_and_names_it(wd: Path) -> None:
    bad = wd / "config/bad.yaml"
    bad.write_text("evaluation:\n  ece_binz: 10\n")
    proc = snakemake(wd, "-n", "--configfile", "config/bad.yaml", check=False)
    assert proc.returncode != 0
    assert "ece_binz" in proc.stdout + proc.stderr


def test_schema_rejects_a_wrong_value_and_names_it(wd: Path) -> None:
    bad = wd / "config/bad_value.yaml"
    bad.write_text("augmentations:\n  cutout:\n    - {op: cutout, size: -3}\n")
    proc = snakemake(wd, "-n", "--configfile", "config/bad_value.yaml", check=False)
    assert proc.returncode != 0
    assert "-3" in proc.stdout + proc.stderr


def test_unknown_augmentation_in_an_experiment_is_named() -> None:
    config = load_config("config/config.yaml")
    config["experiments"]["das2020_cifar10"]["teachers"]["augmentations"].append("randaug")
    with pytest.raises(plan.ConfigError, match="unknown augmentation 'randaug'"):
        plan.check_config(config)


# One experiment per paper: the whole demo runs in CI's `make demo`, checked there by
# `python -m kdaug.verify`; this slice exercises best_val selection and the checker.
E2E_EXPERIMENTS = ["das2020_digits_mnist", "wang2022_digits_da", "choi2023_digits_scenarios"]


def test_demo_slice_end_to_end_produces_every_table_and_figure(wd: Path) -> None:
    snakemake(
        wd, "--cores", "2", "--resources", "gpu=2",  # CPU: the gpu counter must not serialise
        "--configfile", "config/demo.yaml", "config/fast.yaml",
        "--config", f"run=[{','.join(E2E_EXPERIMENTS)}]",
    )  # fmt: skip
    config = load_config("config/config.yaml", "config/demo.yaml", "tests/configs/fast.yaml")
    assert config["evaluation"]["selections"] == ["best_val"]
    config["run"] = E2E_EXPERIMENTS
    assert verify.run_problems(config, wd) == []
    # every job wrote its own log
    assert any((wd / "logs/models").rglob("train.log"))
    # the checker sees a broken file
    table = next((wd / "results/experiments/das2020_digits_mnist").rglob("table3_mnist.md"))
    table.write_text("no table\n")
    assert any("no Markdown table rows" in p for p in verify.run_problems(config, wd))


def check_report_file(path: Path) -> None:
    problem = verify.file_problem(path)
    assert problem is None, f"{path}: {problem}"


def test_choi_figure1_dry_run(wd: Path) -> None:
    """Choi et al.'s Figure 1 alone: 2 archs x {plain, mixup} trained from scratch and a
    resnet56 student of each resnet110 at 4 temperatures, per seed."""
    out = snakemake(
        wd, "-n", "--cores", "4", "--resources", "gpu=1", "--config", "run=[choi2023_figure1]"
    ).stdout
    counts = job_counts(out)
    assert counts["train_teacher"] == 3 * 4
    assert counts["distill_student"] == 3 * 2 * 4
    assert "results/experiments/choi2023_figure1/last/figure1_tsne.png" in out
