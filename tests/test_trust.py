"""Trust what is in results/ (issue 14): each hole's attack on tiny cells made here.

A planted pickle runs nothing; a blown-up run writes no model; a model file copied over
another cell's path is refused; a corrupt input fails before training, naming the file and
its rule; a checkpoint of other training code is not resumed; a killed attempt's log
survives the rerun; a corrupt checkpoint is set aside and training restarts.
"""

from __future__ import annotations

import json
import os
import pathlib
import pickle
import shutil
import signal
import subprocess
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from kdaug.data.canonical import BadFileError, Split, load_split, save_split
from kdaug.joblog import history_path, job_log
from kdaug.measure.extract import extract_outputs
from kdaug.measure.robustness import attack_file
from kdaug.measure.teacher_stats import cell_teacher_stats
from kdaug.train import training
from kdaug.train.engine import (
    DeviceData,
    Recipe,
    TrainingDivergedError,
    divergence,
    fit,
    read_checkpoint,
)
from kdaug.train.losses import CrossEntropy
from kdaug.train.training import load_trained, model_history, train_cell
from test_engine import AUG, Tiny, toy_data

CPU = torch.device("cpu")
RECIPE = {"epochs": 2, "batch_size": 16, "lr": 0.05}
NORM = {"mean": [0.3], "std": [0.3]}


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """Tiny problems: on a loaded 2-core machine extra threads only contend."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def toy_split(n: int = 60) -> Split:
    """Three classes, each bright in its own band of a 16x16 image (LeNet's smallest)."""
    rng = np.random.default_rng(0)
    labels = np.arange(n) % 3
    images = rng.integers(0, 60, (n, 1, 16, 16)).astype(np.uint8)
    for k in range(3):
        images[labels == k, :, 4 * k : 4 * k + 4, :] += 180
    return Split(images, labels.astype(np.int64), ("a", "b", "c"))


def teacher_spec(arch: str = "lenet", aug: str = "none", **recipe: Any) -> dict[str, Any]:
    return {
        "role": "teacher", "dataset": "toy", "seed": 0,
        "arch": {"name": arch, "model": "lenet", "width": 0.5},
        "augmentation": {"name": aug, "steps": []},
        "recipe": {**RECIPE, **recipe}, "normalization": NORM,
    }  # fmt: skip


def student_spec(tarch: str = "lenet", **recipe: Any) -> dict[str, Any]:
    return {
        **teacher_spec("lenet", "none", **recipe), "role": "student",
        "teacher": {"arch": tarch, "augmentation": "none"},
        "kd": {"name": "hinton", "loss": "hinton", "temperature": 4.0, "alpha": 0.9},
    }  # fmt: skip


TEACHER = "models/toy/seed0/lenet-none/model.pt"
STUDENT = "models/toy/seed0/lenet-none/hinton/lenet-none/model.pt"


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A results tree: the splits, a trained teacher, its train-split logits."""
    root = tmp_path_factory.mktemp("results")
    save_split(root / "train.npz", toy_split())
    save_split(root / "val.npz", toy_split(30))
    (root / TEACHER).parent.mkdir(parents=True)
    train_cell(teacher_spec(), train_path=str(root / "train.npz"),
               val_path=str(root / "val.npz"), output=str(root / TEACHER))  # fmt: skip
    extract_outputs(root / TEACHER, {"train": root / "train.npz"}, root / "logits.npz")
    return root


@pytest.fixture
def results(made: Path, tmp_path: Path) -> Path:
    """A private copy of :func:`made` that a test may tamper with."""
    return Path(shutil.copytree(made, tmp_path / "results"))


def train_student(results: Path, spec: dict[str, Any] | None = None, **inputs: Any) -> Path:
    out = results / STUDENT
    out.parent.mkdir(parents=True, exist_ok=True)
    train_cell(spec or student_spec(), train_path=str(results / "train.npz"),
               val_path=str(results / "val.npz"), output=str(out), **inputs)  # fmt: skip
    return out


class Planted:
    """Unpickling this creates ``marker``: what a planted file would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


# 1. A planted file runs code.
@pytest.mark.parametrize("form", ["torch.save", "raw pickle"])
def test_a_planted_checkpoint_runs_nothing_and_is_named(results: Path, form: str) -> None:
    marker = results / "marker"
    ckpt = results / (STUDENT + ".ckpt")
    ckpt.parent.mkdir(parents=True)
    payload = {"format": 2, "fingerprint": "x", "model": Planted(marker)}
    if form == "torch.save":
        torch.save(payload, ckpt)
    else:
        ckpt.write_bytes(pickle.dumps(payload, protocol=2))
    with pytest.raises(BadFileError, match=f"{ckpt}: refusing to resume.*run code") as caught:
        train_student(results, teacher_path=str(results / TEACHER))
    assert not marker.exists()
    # torch's own advice (load it with weights_only=False) is not passed on
    assert "weights_only" not in "".join(traceback.format_exception(caught.value))
    assert ckpt.exists()  # left for a person to inspect, not silently dropped


def test_a_planted_model_file_runs_nothing_and_is_named(results: Path) -> None:
    marker = results / "marker"
    model = results / TEACHER
    torch.save({"spec": teacher_spec(), "state_dict": Planted(marker)}, model)
    for read in (lambda: load_trained(model, CPU), lambda: model_history(model)):
        with pytest.raises(BadFileError, match=f"{model}: refusing to load.*train_teacher"):
            read()
    with pytest.raises(BadFileError, match=f"{model}: refusing to load") as caught:
        train_student(results, teacher_path=str(model))
    assert "weights_only" not in "".join(traceback.format_exception(caught.value))
    assert not marker.exists()
    assert not (results / STUDENT).exists()


def test_model_files_and_checkpoints_hold_plain_values_only(made: Path) -> None:
    payload = torch.load(made / TEACHER, weights_only=True)  # raises on anything else
    assert payload["spec"] == teacher_spec()
    assert [row["epoch"] for row in model_history(made / TEACHER)] == [1, 2]
    # files written before weights-only loading hold torch.__version__ (a TorchVersion)
    older = made / "older.pt"
    torch.save({**payload, "provenance": {"torch": torch.__version__}}, older)
    assert type(torch.load(older, weights_only=False)["provenance"]["torch"]) is not str
    assert model_history(older) == model_history(made / TEACHER)
    older.unlink()


# 2. A finite blow-up is saved as a valid model.
def test_a_finite_blow_up_writes_no_model_and_names_cell_and_keys(results: Path) -> None:
    out = results / "models/toy/seed0/lenet-cutout/model.pt"
    with pytest.raises(TrainingDivergedError) as caught:  # lr 3: loss ~1e20, finite
        train_cell(teacher_spec(aug="cutout", lr=3.0), train_path=str(results / "train.npz"),
                   val_path=str(results / "val.npz"), output=str(out))  # fmt: skip
    text = str(caught.value)
    assert f"{out} (teacher lenet-cutout (toy, seed 0))" in text and "train loss" in text
    assert "lr (now 3)" in text and "grad_clip" in text and "datasets.toy.training.teacher." in text
    assert "nan" not in text and not out.exists()


def test_divergence_rule_fires_on_finite_blow_ups_only() -> None:
    reference = max(np.log(10), 2.4)  # the larger of log(C) and the first step's loss
    assert divergence({"train_loss": 7e19}, reference)  # the lr-1 LeNet
    assert divergence({"train_loss": float("nan")}, reference)
    assert divergence({"train_loss": 25.0}, reference)
    for healthy in (2.4, 2.3, 0.5, 1e-4):  # a start at log(C), and what follows it
        assert divergence({"train_loss": healthy}, reference) is None


def test_a_zero_std_is_reported_as_such_not_as_divergence(results: Path) -> None:
    spec = {**teacher_spec(), "normalization": {"mean": [0.3], "std": [0.0]}}
    with pytest.raises(ValueError, match=r"std \[0\.0\] makes the inputs non-finite"):
        train_cell(spec, train_path=str(results / "train.npz"),
                   val_path=str(results / "val.npz"), output=str(results / "t.pt"))  # fmt: skip
    with pytest.raises(ValueError, match="normalization"):
        DeviceData.from_split(toy_split(), [0.3], [1e-40], CPU)  # overflows float32


# 4. A model file's identity is never checked.
def test_a_model_copied_over_another_cells_path_is_refused(results: Path) -> None:
    alexnet = results / "models/toy/seed0/alexnet-none/model.pt"
    alexnet.parent.mkdir(parents=True)
    shutil.copy(results / TEACHER, alexnet)
    expect = {"dataset": "toy", "seed": "0", "model": "alexnet-none"}  # extract's wildcards
    pattern = f"{alexnet} holds teacher lenet-none .*model 'alexnet-none' expected, 'lenet-none'"
    with pytest.raises(BadFileError, match=pattern):
        load_trained(alexnet, CPU, expect=expect)
    with pytest.raises(BadFileError, match=pattern):
        extract_outputs(alexnet, {"val": results / "val.npz"}, results / "o.npz", expect=expect)
    cell = {"role": "teacher", "dataset": "toy", "seed": 0, "teacher_arch": "alexnet",
            "teacher_aug": "none", "kd": None, "student_arch": None,
            "student_aug": None}  # fmt: skip
    with pytest.raises(BadFileError, match=f"{alexnet} holds teacher lenet-none"):
        attack_file(alexnet, results / "val.npz", results / "a.json", cell=cell,
                    selection="last", split="val", eps=[0.01], steps=1)  # fmt: skip
    assert not (results / "o.npz").exists() and not (results / "a.json").exists()
    load_trained(results / TEACHER, CPU, expect={"model": "lenet-none", "role": "teacher"})


def test_a_student_refuses_another_cells_teacher(results: Path) -> None:
    spec = student_spec(tarch="resnet18")  # its teacher is resnet18-none; lenet's is given
    with pytest.raises(BadFileError, match=f"{results / TEACHER} holds teacher lenet-none.*"
                       "teacher_arch 'resnet18' expected, 'lenet' found"):  # fmt: skip
        train_student(results, spec, teacher_path=str(results / TEACHER))
    with pytest.raises(BadFileError, match=f"{results / 'logits.npz'} holds teacher lenet-none"):
        train_student(results, spec, teacher_logits_path=str(results / "logits.npz"))
    student_cell = {**training.spec_identity(spec)}
    with pytest.raises(BadFileError, match=f"{results / TEACHER} holds teacher lenet-none"):
        cell_teacher_stats(spec, cell=student_cell, train_path=str(results / "train.npz"),
                           teacher_path=str(results / TEACHER), output=str(results / "s.json"),
                           epochs=1, group_batches=2)  # fmt: skip
    assert not (results / STUDENT).exists()


# 5. A corrupt input costs a trained model and names no file.
def test_a_truncated_split_fails_before_training_naming_file_and_rule(results: Path) -> None:
    val = results / "val.npz"
    os.truncate(val, val.stat().st_size - 1000)  # the issue's `truncate -s -1000`
    out = results / STUDENT
    out.parent.mkdir(parents=True)
    out.write_bytes(b"a model trained before")  # what the job must not destroy itself
    pattern = f"{val}: not a readable split file .*`snakemake {val} -R prepare_split`"
    with pytest.raises(BadFileError, match=pattern):
        load_split(val)
    with pytest.raises(BadFileError, match=pattern):
        train_student(results, teacher_path=str(results / TEACHER))
    assert out.read_bytes() == b"a model trained before"
    assert not Path(str(out) + ".ckpt").exists()  # no epoch was trained


@pytest.mark.parametrize(
    ("name", "rule", "kind"),
    [(TEACHER, "train_teacher", "teacher_path"), ("logits.npz", "evaluate_model",
                                                   "teacher_logits_path")],
)  # fmt: skip
def test_a_truncated_teacher_input_fails_before_training(
    results: Path, name: str, rule: str, kind: str
) -> None:
    path = results / name
    os.truncate(path, path.stat().st_size - 1000)
    with pytest.raises(BadFileError, match=f"{path}: not a readable .*-R {rule}`"):
        train_student(results, **{kind: str(path)})
    assert not Path(str(results / STUDENT) + ".ckpt").exists()


# 7. Checkpoints resume across code changes.
def killed_after_training(results: Path, monkeypatch: pytest.MonkeyPatch, code: str) -> Path:
    """Train a student whose job dies after its last checkpoint, before the model file."""

    def killed(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt

    (results / STUDENT).unlink(missing_ok=True)  # as Snakemake does before a job
    with monkeypatch.context() as m, pytest.raises(KeyboardInterrupt):
        m.setattr(training, "evaluate", killed)
        train_student(results, teacher_path=str(results / TEACHER), code=code)
    ckpt = Path(str(results / STUDENT) + ".ckpt")
    assert ckpt.exists() and not (results / STUDENT).exists()
    return ckpt


def test_a_checkpoint_of_other_training_code_is_not_resumed(
    results: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    killed_after_training(results, monkeypatch, code="v1")
    capsys.readouterr()
    train_student(results, teacher_path=str(results / TEACHER), code="v2")
    log = capsys.readouterr().err
    assert "different cell or code version" in log and "resumed" not in log
    killed_after_training(results, monkeypatch, code="v1")
    capsys.readouterr()
    train_student(results, teacher_path=str(results / TEACHER), code="v1")
    assert "resumed from" in capsys.readouterr().err


# 8. A killed attempt's log is wiped on rerun.
KILLED_JOB = """
import os, signal, sys
from kdaug.joblog import job_log
with job_log(sys.argv[1]):
    print("attempt 1: epoch 1/12 train_loss=2.1")
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_killed_attempts_log_survives_the_rerun(tmp_path: Path) -> None:
    log = tmp_path / "logs/train.log"
    killed = subprocess.run([sys.executable, "-c", KILLED_JOB, str(log)], check=False)
    assert killed.returncode == -signal.SIGKILL
    log.unlink()  # what Snakemake does to a job's log before it runs the job again
    with pytest.raises(RuntimeError), job_log(log):
        print("attempt 2: resumed")
        raise RuntimeError("attempt 2 failed")
    assert log.read_text().startswith("attempt 2: resumed")  # this attempt, as before
    history = Path(history_path(log)).read_text()
    assert history.count("===== attempt started") == 2
    first, second = history.index("attempt 1: epoch 1/12"), history.index("attempt 2: resumed")
    assert first < second and "RuntimeError: attempt 2 failed" in history


# 10. A truncated checkpoint fails every rerun until deleted by hand.
def test_a_truncated_checkpoint_is_set_aside_and_training_restarts(
    results: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ckpt = killed_after_training(results, monkeypatch, code="v1")
    os.truncate(ckpt, ckpt.stat().st_size // 2)
    capsys.readouterr()
    train_student(results, teacher_path=str(results / TEACHER), code="v1")
    log = capsys.readouterr().err
    aside = Path(str(ckpt) + ".corrupt")
    assert f"WARNING: {ckpt} is unreadable" in log and f"moved it to {aside}" in log
    assert "resumed" not in log and aside.exists() and not ckpt.exists()
    assert [row["epoch"] for row in model_history(results / STUDENT)] == [1, 2]


def test_an_older_kdaug_checkpoint_is_set_aside(tmp_path: Path) -> None:
    ckpt = tmp_path / "model.pt.ckpt"
    torch.save({"fingerprint": "f", "state": Recipe(epochs=1, batch_size=2, lr=0.1)}, ckpt)
    logs: list[str] = []
    assert read_checkpoint(ckpt, logs.append) is None
    assert "cannot be read safely" in logs[0] and (tmp_path / "model.pt.ckpt.corrupt").exists()
    ckpt = tmp_path / "c.ckpt"  # while a checkpoint of this version still resumes
    kwargs: dict[str, Any] = dict(
        augmentation=AUG, loss_fn=CrossEntropy(), seed=0, checkpoint=ckpt, fingerprint="f",
    )  # fmt: skip
    fit(Tiny(), toy_data(), None, recipe=Recipe(epochs=1, batch_size=16, lr=0.1),
        log=logs.append, **kwargs)  # fmt: skip
    fit(Tiny(), toy_data(), None, recipe=Recipe(epochs=2, batch_size=16, lr=0.1),
        log=logs.append, **kwargs)  # fmt: skip
    assert any(line.startswith(f"resumed from {ckpt} after epoch 1") for line in logs)


def test_extracted_outputs_say_which_model_made_them(made: Path) -> None:
    with np.load(made / "logits.npz", allow_pickle=False) as f:
        cell = json.loads(str(f["cell"]))
        assert str(f["selection"]) == "last"
    assert cell["model"] == "lenet-none" and cell["role"] == "teacher"


def test_attacks_on_a_split_prefix_attack_exactly_those_images(results: Path) -> None:
    cell = {"role": "teacher", "dataset": "toy", "seed": 0, "teacher_arch": "lenet",
            "teacher_aug": "none", "kd": None, "student_arch": None,
            "student_aug": None}  # fmt: skip
    first = attack_file(results / TEACHER, results / "val.npz", results / "a5.json", cell=cell,
                        selection="last", split="val", eps=[0.0], steps=1, images=5)  # fmt: skip
    record = json.loads((results / "a5.json").read_text())
    assert record["settings"]["images"] == 5
    model, _ = load_trained(results / TEACHER, CPU, expect=cell)
    val = load_split(results / "val.npz")
    data = DeviceData.from_split(val.subset(np.arange(5)), NORM["mean"], NORM["std"], CPU)
    with torch.no_grad():
        clean = (model(data.normalized(torch.arange(5))).argmax(1) == data.labels).float().mean()
    assert first["fgsm_0"] == pytest.approx(float(clean))  # eps 0: clean accuracy of those 5


# One evaluation job per model: every split in one outputs file, metrics per split.
def test_one_outputs_file_holds_each_split_and_its_metrics(made: Path, tmp_path: Path) -> None:
    from kdaug.io import read_json
    from kdaug.measure.evaluation import load_eval_data, metrics_file

    splits = {"train": made / "train.npz", "val": made / "val.npz"}
    out = tmp_path / "outputs.npz"
    extract_outputs(made / TEACHER, splits, out, embeddings_for=["val"])
    model, _ = load_trained(made / TEACHER, CPU)
    for name, path in splits.items():
        split = load_split(path)
        data = load_eval_data(out, name)
        assert data.logits.shape == (len(split), 3) and (data.labels == split.labels).all()
        x = (torch.from_numpy(split.images).float() / 255 - NORM["mean"][0]) / NORM["std"][0]
        with torch.no_grad():
            expected = model(x).numpy()
        np.testing.assert_allclose(data.logits, expected, rtol=1e-4, atol=1e-4)
        assert (data.embeddings is not None) == (name == "val")  # only where asked
    missing = rf"{out}: no outputs on split 'test' \(it has: train, val\)"
    with pytest.raises(KeyError, match=missing):
        load_eval_data(out, "test")
    metrics = tmp_path / "metrics.json"
    values = metrics_file(out, metrics, cell={"role": "teacher"}, selection="last",
                          splits=["train", "val"], metrics=["accuracy"])  # fmt: skip
    record = read_json(metrics)
    assert record["splits"]["val"] == {"n": 30, "metrics": values["val"]}
    val = load_eval_data(out, "val")
    assert values["val"]["accuracy"] == pytest.approx((val.logits.argmax(1) == val.labels).mean())
