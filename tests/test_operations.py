"""The pipeline as researchers operate it: one cell forced, what a change reruns, slices
from the command line, and a killed training job that resumes."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from test_workflow import ROOT, SNAKEMAKE, job_counts, workdir

pytestmark = pytest.mark.workflow

SLICE = "run=[das2020_digits_augmented_students]"  # 1 teacher, 5 LeNet students
DEMO = ("--configfile", "config/demo.yaml", "config/fast.yaml")
STUDENT = "results/models/digits/seed0/resnet18-none/hinton_t20/lenet-{aug}"


def run(wd: Path, *args: str, check: bool = True, **popen) -> subprocess.CompletedProcess[str]:
    """Snakemake in ``wd``, importing the copy of kdaug under ``wd/src`` (edited by tests)."""
    env = {**os.environ, "PYTHONPATH": str(wd / "src")}
    proc = subprocess.run([SNAKEMAKE, *args], cwd=wd, env=env, capture_output=True, text=True,
                          timeout=1800)  # fmt: skip
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def private_workdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    wd = workdir(path)
    shutil.copytree(ROOT / "src/kdaug", wd / "src/kdaug",
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    return wd


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    wd = private_workdir(tmp_path_factory.mktemp("ops"))
    run(wd, "--cores", "2", "--resources", "gpu=2", *DEMO, "--config", SLICE)
    return wd


def planned(wd: Path, *args: str) -> dict[str, int]:
    out = run(wd, "-n", "--cores", "2", *args).stdout
    return {} if "Nothing to be done" in out else job_counts(out)


def test_a_built_slice_has_nothing_left_to_do(built: Path) -> None:
    assert planned(built, *DEMO, "--config", SLICE) == {}


def test_changing_one_augmentation_reruns_only_its_cells(built: Path) -> None:
    layer = built / "config/cutout8.yaml"
    layer.write_text("augmentations:\n  cutout:\n    - {op: cutout, size: 8}\n")
    counts = planned(built, *DEMO, "config/cutout8.yaml", "--config", SLICE)
    # the cutout student, its evaluation (both splits), the collection and renders
    assert counts["distill_student"] == 1 and "train_teacher" not in counts
    assert counts["evaluate_model"] == 1
    out = run(built, "-n", "--cores", "2", *DEMO, "config/cutout8.yaml", "--config", SLICE).stdout
    # (the training-curve figure lists every model file as an input: look at outputs)
    assert "output: " + STUDENT.format(aug="cutout") + "/model.pt" in out
    assert "output: " + STUDENT.format(aug="mixup") + "/model.pt" not in out


def test_forcing_one_rule_for_one_cell_targets_first(built: Path) -> None:
    target = STUDENT.format(aug="cutmix") + "/eval/best_val/metrics.json"
    counts = planned(built, target, "-R", "distill_student", *DEMO, "--config", SLICE)
    assert counts["distill_student"] == 1 and "train_teacher" not in counts
    assert counts["evaluate_model"] == 1


def planned_after_editing(wd: Path, module: str) -> dict[str, int]:
    """The plan after appending a statement to ``wd``'s copy of a kdaug module (restored);
    a comment would not count (the code hash ignores comments and docstrings)."""
    path = wd / "src/kdaug" / module
    original = path.read_text()
    path.write_text(original + "\nEDITED = 1\n")
    try:
        return planned(wd, *DEMO, "--config", SLICE)
    finally:
        path.write_text(original)


def test_editing_library_code_reruns_the_rules_that_import_it(built: Path) -> None:
    counts = planned_after_editing(built, "report/tables.py")
    # rendering imports kdaug.report.tables; training, extraction and metrics do not
    assert counts.get("render_table", 0) >= 1
    renders = {"render_table", "render_claims", "render_figure", "render_training_curves"}
    assert set(counts) <= renders | {"render_notes", "all", "total"}
    counts = planned_after_editing(built, "train/engine.py")
    assert counts["train_teacher"] == 1 and counts["distill_student"] == 5


def test_narrowing_from_the_command_line(tmp_path: Path) -> None:
    wd = private_workdir(tmp_path)
    narrow = "narrow={seeds: [0], teachers: [resnet18], students: [lenet], teacher_augmentations: [none, mixup]}"  # noqa: E501
    out = run(wd, "-n", "--cores", "2", *DEMO, "--config", "run=[das2020_digits]", narrow).stdout
    counts = job_counts(out)
    assert counts["train_teacher"] == 2 and counts["distill_student"] == 2
    # The slice renders under a name that says so, never over the full experiment's files.
    assert "results/experiments/das2020_digits__narrow_" in out
    assert "results/experiments/das2020_digits/" not in out
    # A value that names nothing (issue 14's `lenett`) is an error naming key and value.
    typo = "narrow={teacher_augmentations: [none], students: [lenett]}"
    bad = run(wd, "-n", *DEMO, "--config", "run=[das2020_digits_mnist]", typo, check=False)
    assert bad.returncode != 0 and "narrow.students: " in bad.stdout + bad.stderr
    assert "'lenett'" in bad.stdout + bad.stderr
    # mixup is a teacher augmentation of das2020_digits, but not of the augmented students'
    empties = "run=[das2020_digits, das2020_digits_augmented_students]"
    only_mixup = "narrow={teacher_augmentations: [mixup]}"
    bad = run(wd, "-n", *DEMO, "--config", empties, only_mixup, check=False)
    assert bad.returncode != 0 and "narrow: leaves experiment" in bad.stdout + bad.stderr


TEACHER = "results/models/digits/seed0/resnet18-none/model.pt"
# Long enough to be killed mid-run (the kill follows the first checkpoint, ~3 s into a
# ~20 s run): 6 epochs, a checkpoint after each.
LONG = "datasets:\n  digits:\n    training:\n      teacher: {epochs: 6, checkpoint_every: 1}\n"
ARGS = (TEACHER, "--cores", "1", *DEMO, "config/long.yaml")


def long_workdir(path: Path) -> Path:
    wd = private_workdir(path)
    (wd / "config/long.yaml").write_text(LONG)
    return wd


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    wd = long_workdir(tmp_path_factory.mktemp("reference"))
    run(wd, *ARGS)
    return wd / TEACHER


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=False)["state_dict"]


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_a_killed_training_job_resumes_to_the_uninterrupted_weights(
    tmp_path, sig, uninterrupted
) -> None:
    killed, args = long_workdir(tmp_path), ARGS

    env = {**os.environ, "PYTHONPATH": str(killed / "src")}
    proc = subprocess.Popen([SNAKEMAKE, *args], cwd=killed, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    checkpoint = killed / (TEACHER + ".ckpt")
    deadline = time.monotonic() + 600
    while not checkpoint.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert checkpoint.exists(), "training never wrote a checkpoint"
    os.killpg(proc.pid, sig)  # Snakemake and its job, as a scheduler or a user would
    proc.wait(120)
    assert not (killed / TEACHER).exists()
    assert checkpoint.exists()  # incomplete-output cleanup must leave it
    run(killed, "--unlock", *args)  # a SIGKILLed Snakemake leaves its lock behind
    run(killed, *args, "--rerun-incomplete")
    log = (killed / "logs/models/digits/seed0/resnet18-none/train.log").read_text()
    assert "resumed from" in log
    assert not checkpoint.exists()  # removed once the model file is written
    expected, got = _weights(uninterrupted), _weights(killed / TEACHER)
    for k, v in expected.items():
        torch.testing.assert_close(got[k], v, rtol=0, atol=0, msg=k)


def test_report_shows_every_table_and_figure_with_captions(built: Path) -> None:
    for name in ("report.html", "report.zip"):
        run(built, "--report", name, *DEMO, "--config", SLICE)
        assert (built / name).stat().st_size > 0
    html = (built / "report.html").read_text()
    assert "Das et al. 2020: augmented teachers" in html  # the paper's category
    assert "das2020_digits_augmented_students" in html  # the experiment's subcategory
    assert "table7_augmented_students" in html and "claims" in html
    assert "What we found" in html and "claim verdicts on our data" in html
    assert "no published value to compare with" in html  # digits: not the paper's data
