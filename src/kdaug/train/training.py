"""Train one cell (a teacher or a distilled student) and write its model file.

A *cell spec* is the plain dict the workflow passes as a rule param: the cell's role,
architecture, augmentation, KD method, recipe, seed and dataset normalisation. It is
stored verbatim in the model file, so a model file says exactly what made it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from kdaug.data.canonical import load_split
from kdaug.io import atomic_path
from kdaug.models import Classifier, build_model
from kdaug.provenance import environment, file_sha256
from kdaug.train.augment import augmentation_from_spec
from kdaug.train.engine import (
    DeviceData,
    Recipe,
    Speed,
    TeacherLogits,
    TrainState,
    cpu_state,
    evaluate,
    fit,
)
from kdaug.train.losses import build_loss

MODEL_FILE_FORMAT = 1
SELECTIONS = ("last", "best_val")


def pick_device(threads: int | None = None) -> torch.device:
    """CUDA when present (the device Snakemake's job was given), else the CPU.

    Inside a SLURM job or a GPU slot ``CUDA_VISIBLE_DEVICES`` already narrows the
    visible devices, so ``cuda`` (index 0) is the allocated one.
    """
    if threads:
        torch.set_num_threads(threads)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def fingerprint(spec: Mapping[str, Any]) -> str:
    """Stable digest of a cell spec; a checkpoint resumes only under the same one."""
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def build_cell_model(
    arch: Mapping[str, Any], num_classes: int, input_shape: Sequence[int]
) -> Classifier:
    """The network of a cell spec's ``arch`` entry for inputs of shape ``(C, H, W)``."""
    channels, height, width = input_shape
    if height != width:
        raise ValueError(f"models expect square images; got {height}x{width}")
    return build_model(
        arch["model"],
        num_classes=num_classes,
        in_channels=channels,
        image_size=height,
        width=float(arch.get("width", 1.0)),
    )


def load_trained(
    path: str | os.PathLike[str], device: torch.device, selection: str = "last"
) -> tuple[Classifier, dict[str, Any]]:
    """Rebuild a trained model from its file with the weights of ``selection``.

    Returns the model (on ``device``, eval mode) and the file's payload (spec, history...).
    """
    if selection not in SELECTIONS:
        raise ValueError(f"selection must be one of {SELECTIONS}; got {selection!r}")
    payload = torch.load(path, map_location="cpu", weights_only=False)
    model = build_cell_model(
        payload["spec"]["arch"], payload["num_classes"], payload["input_shape"]
    )
    weights = payload["state_dict"] if selection == "last" else payload["best_val"]["state_dict"]
    model.load_state_dict(weights)
    return model.to(device).eval(), payload


def model_history(path: str | os.PathLike[str]) -> list[dict[str, float]]:
    """The per-epoch training history stored in a model file (one row per epoch: epoch,
    train loss and accuracy, validation loss and accuracy, lr), without building the model."""
    payload = torch.load(path, map_location="cpu", weights_only=False)
    return [dict(row) for row in payload["history"]]


def frozen_teacher(path: str | os.PathLike[str], device: torch.device) -> Classifier:
    teacher, _ = load_trained(path, device, "last")
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def cached_teacher(path: str | os.PathLike[str], train: DeviceData) -> TeacherLogits:
    """The teacher's logits on the train split, from its ``extract_outputs`` file."""
    import numpy as np

    with np.load(path, allow_pickle=False) as f:
        return TeacherLogits.for_split(f["logits"], f["labels"], train)


def train_cell(
    spec: Mapping[str, Any],
    *,
    train_path: str,
    val_path: str,
    output: str,
    teacher_path: str | None = None,
    teacher_logits_path: str | None = None,
    threads: int | None = None,
    speed: Mapping[str, Any] | None = None,
) -> TrainState:
    """Train the cell described by ``spec`` and atomically write ``output``.

    A student reads its teacher from ``teacher_path`` (the model, run on every batch) or,
    when trained without augmentation, ``teacher_logits_path`` (the teacher's outputs on
    the train split, looked up by row); a CE-only student (KD weight 0) needs neither.
    ``speed`` holds the ``runtime`` settings of :class:`kdaug.train.engine.Speed`; a checkpoint
    made under other settings is not resumed (they change the rounding).

    The checkpoint lives beside the output (``<output>.ckpt``), which Snakemake does not
    know about, so a killed job's checkpoint survives Snakemake's cleanup of incomplete
    outputs and the rerun resumes from it. It is removed once the model file is written.
    """
    device = pick_device(threads)
    seed = int(spec["seed"])
    torch.manual_seed(seed)  # weight initialisation
    train_split, val_split = load_split(train_path), load_split(val_path)
    norm = spec["normalization"]
    train = DeviceData.from_split(train_split, norm["mean"], norm["std"], device)
    val = DeviceData.from_split(val_split, norm["mean"], norm["std"], device)
    model = build_cell_model(spec["arch"], train_split.num_classes, train_split.images.shape[1:])
    model = model.to(device)
    augmentation = augmentation_from_spec(spec["augmentation"])
    loss_fn = build_loss(spec["kd"] if spec["role"] == "student" else {"loss": "ce"})
    teacher = None
    if teacher_path:
        teacher = frozen_teacher(teacher_path, device)
    elif teacher_logits_path:
        teacher = cached_teacher(teacher_logits_path, train)

    checkpoint = Path(str(output) + ".ckpt")
    state = fit(
        model,
        train,
        val,
        recipe=Recipe.from_config(spec["recipe"]),
        augmentation=augmentation,
        loss_fn=loss_fn,
        seed=seed,
        teacher=teacher,
        checkpoint=checkpoint,
        fingerprint=fingerprint({**spec, "speed": dict(speed or {})}),
        speed=Speed.from_config(speed or {}),
    )
    payload = {
        "format": MODEL_FILE_FORMAT,
        "spec": dict(spec),
        "num_classes": train_split.num_classes,
        "class_names": list(train_split.class_names),
        "input_shape": list(train_split.images.shape[1:]),
        "state_dict": cpu_state(model),
        "best_val": {
            "epoch": state.best_val_epoch,
            "val_accuracy": state.best_val_accuracy,
            "state_dict": state.best_val_state or cpu_state(model),
        },
        "history": state.history,
        "final_val": evaluate(model, val),
        "provenance": {
            **environment(device),
            "data": {
                "train": {"path": str(train_path), "sha256": file_sha256(train_path)},
                "val": {"path": str(val_path), "sha256": file_sha256(val_path)},
            },
            "teacher": teacher_path or teacher_logits_path,
        },
    }
    with atomic_path(output) as tmp:
        torch.save(payload, tmp)
    checkpoint.unlink(missing_ok=True)
    return state
