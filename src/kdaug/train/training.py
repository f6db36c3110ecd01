"""Train one cell (a teacher or a distilled student) and write its model file.

A *cell spec* is the plain dict the workflow passes as a rule param: the cell's role,
architecture, augmentation, KD method, recipe, seed and dataset normalisation. It is
stored verbatim in the model file, so a model file says exactly what made it.

Every reader of a model file goes through :func:`read_model_file`: it loads with
``weights_only=True`` (plain values and tensors; a planted pickle runs nothing), names the
file and its rule in every error, and compares the cell the file holds with the cell the
reader expects (``expect``: fields of :func:`spec_identity`), so a model copied over
another cell's path is refused instead of measured.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from kdaug.cells import Cell
from kdaug.data.canonical import BadFileError, load_split, rebuild_hint
from kdaug.io import atomic_path
from kdaug.models import Classifier, build_model
from kdaug.provenance import environment, file_sha256
from kdaug.train.augment import augmentation_from_spec
from kdaug.train.engine import (
    DeviceData,
    Recipe,
    Speed,
    TeacherLogits,
    TrainingDivergedError,
    TrainState,
    cpu_state,
    evaluate,
    fit,
    foreign_globals,
)
from kdaug.train.methods import (
    FeatureMethod,
    Probe,
    build_method,
    build_objective,
    method_payload,
)

MODEL_FILE_FORMAT = 1
SELECTIONS = ("last", "best_val")


def pick_device(threads: int | None = None) -> torch.device:
    """CUDA when present (the device Snakemake's job was given), else the CPU (with
    :func:`keep_freed_memory`).

    Inside a SLURM job or a GPU slot ``CUDA_VISIBLE_DEVICES`` already narrows the
    visible devices, so ``cuda`` (index 0) is the allocated one.
    """
    if threads:
        torch.set_num_threads(threads)
    if torch.cuda.is_available():
        return torch.device("cuda")
    keep_freed_memory()
    return torch.device("cpu")


def keep_freed_memory() -> bool:
    """Have glibc's malloc keep freed memory in the process instead of unmapping it.

    On the CPU every training step allocates its batch and activations afresh (0.5-3 MB
    tensors for a LeNet batch), above glibc's mmap threshold, so each one was mapped and
    unmapped from the OS and its pages faulted in again: LeNet's step ran ~15-20% faster
    with the threshold raised to its maximum and no trimming (bench/train_throughput.py,
    docs/cpu_knobs.md). Only where memory comes from changes, never a value. Returns
    whether glibc took the settings (False off glibc)."""
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3  # malloc.h
    return all(
        libc.mallopt(option, value) == 1
        for option, value in (
            (m_mmap_threshold, 32 << 20),  # glibc's maximum on 64-bit
            (m_trim_threshold, 1 << 30),
            (m_top_pad, 64 << 20),
        )
    )


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


# What a reader may expect of a model file: the fields of Cell.identity() and the cell's
# ``{model}`` path wildcard (``resnet18-none/hinton/lenet-none``).
IDENTITY_KEYS = (
    "role", "dataset", "seed", "teacher_arch", "teacher_aug", "kd", "student_arch",
    "student_aug", "model",
)  # fmt: skip


def spec_cell(spec: Mapping[str, Any]) -> Cell:
    """The cell a spec (:func:`kdaug.plan.teacher_spec` / ``student_spec``) describes."""
    dataset, seed = str(spec["dataset"]), int(spec["seed"])
    if spec["role"] == "teacher":
        return Cell(dataset, seed, spec["arch"]["name"], spec["augmentation"]["name"])
    teacher = spec["teacher"]
    return Cell(
        dataset, seed, teacher["arch"], teacher["augmentation"], spec["kd"]["name"],
        spec["arch"]["name"], spec["augmentation"]["name"],
    )  # fmt: skip


def spec_identity(spec: Mapping[str, Any]) -> dict[str, Any]:
    """A spec's cell as ``Cell.identity()`` plus its ``model`` wildcard: what ``expect``
    mappings are compared with."""
    cell = spec_cell(spec)
    return {**cell.identity(), "model": cell.model}


def teacher_identity(cell: Mapping[str, Any]) -> dict[str, Any]:
    """The identity of a student cell's teacher (from ``Cell.identity()``-like fields)."""
    return {
        "role": "teacher",
        "dataset": cell["dataset"],
        "seed": int(cell["seed"]),
        "teacher_arch": cell["teacher_arch"],
        "teacher_aug": cell["teacher_aug"],
    }


def spec_teacher_identity(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The identity of the teacher a student spec distils from."""
    return teacher_identity(spec_identity(spec))


def describe(identity: Mapping[str, Any]) -> str:
    """``student resnet18-none/hinton/lenet-none (digits, seed 0)`` for an error message."""
    if {"role", "model", "dataset", "seed"} <= set(identity):
        return (f"{identity['role']} {identity['model']} "
                f"({identity['dataset']}, seed {identity['seed']})")  # fmt: skip
    return ", ".join(f"{k} {v!r}" for k, v in identity.items())


def check_identity(
    path: str | os.PathLike[str],
    stored: Mapping[str, Any],
    expect: Mapping[str, Any] | None,
    rule: str | None,
) -> None:
    """Raise :class:`BadFileError` unless the ``stored`` identity has every field of
    ``expect`` (seeds compared as integers)."""
    if not expect:
        return
    unknown = set(expect) - set(IDENTITY_KEYS)
    if unknown:
        raise ValueError(f"unknown identity fields {sorted(unknown)}; known: {IDENTITY_KEYS}")

    def norm(key: str, value: Any) -> Any:
        return int(value) if key == "seed" and value is not None else value

    wrong = [k for k, v in expect.items() if norm(k, stored.get(k)) != norm(k, v)]
    if wrong:
        diff = ", ".join(f"{k} {expect[k]!r} expected, {stored.get(k)!r} found" for k in wrong)
        raise BadFileError(
            f"{os.fspath(path)} holds {describe(stored)}, not the cell its job names "
            f"({diff}): it was copied or moved here from another cell; " + rebuild_hint(path, rule)
        )


_STUDENT_PATH = re.compile(r"seed\d+/[^/]+-[^/]+/[^/]+/[^/]+-[^/]+/model\.pt$")


def model_rule(path: str | os.PathLike[str], role: str | None = None) -> str:
    """The rule that writes a model file: by the role, else by where the path lies."""
    if role is None:
        role = "student" if _STUDENT_PATH.search(Path(path).as_posix()) else "teacher"
    return "distill_student" if role == "student" else "train_teacher"


# Model files written before weights-only loading record torch.__version__ as a
# TorchVersion (a str subclass, harmless to build): allowed, so they stay readable.
OLD_FILE_GLOBALS = [torch.torch_version.TorchVersion]


def read_model_file(
    path: str | os.PathLike[str], expect: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """A model file's payload, read with ``weights_only=True`` and checked against
    ``expect`` (:func:`check_identity`). Every failure raises :class:`BadFileError` naming
    the file and its rule; a missing file raises :class:`FileNotFoundError`."""
    rule = model_rule(path, (expect or {}).get("role"))
    try:
        with torch.serialization.safe_globals(OLD_FILE_GLOBALS):
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except pickle.UnpicklingError:
        with torch.serialization.safe_globals(OLD_FILE_GLOBALS):
            foreign = foreign_globals(Path(path))
        names = ", ".join(foreign or []) or "objects beyond plain values"
        raise BadFileError(
            f"{os.fspath(path)}: refusing to load this model file: its pickle asks for "
            f"{names}, which kdaug never writes (a file planted or made elsewhere); "
            + rebuild_hint(path, rule)
        ) from None  # not torch's advice to load it with weights_only=False
    except Exception as e:  # torch raises RuntimeError, EOFError, KeyError... on damage
        raise BadFileError(
            f"{os.fspath(path)}: not a readable model file ({type(e).__name__}: "
            f"{str(e)[:200]}); " + rebuild_hint(path, rule)
        ) from e
    try:
        stored = spec_identity(payload["spec"])
    except (KeyError, TypeError, ValueError) as e:
        raise BadFileError(
            f"{os.fspath(path)}: not a kdaug model file (no cell spec: {e!r}); "
            + rebuild_hint(path, rule)
        ) from e
    check_identity(path, stored, expect, rule)
    return payload


def load_trained(
    path: str | os.PathLike[str],
    device: torch.device,
    selection: str = "last",
    expect: Mapping[str, Any] | None = None,
) -> tuple[Classifier, dict[str, Any]]:
    """Rebuild a trained model from its file with the weights of ``selection``.

    ``expect``: identity fields (:data:`IDENTITY_KEYS`) the file's cell must have; pass
    the cell the job's path or params name. Returns the model (on ``device``, eval mode)
    and the file's payload (spec, history...).
    """
    if selection not in SELECTIONS:
        raise ValueError(f"selection must be one of {SELECTIONS}; got {selection!r}")
    payload = read_model_file(path, expect)
    try:
        model = build_cell_model(
            payload["spec"]["arch"], payload["num_classes"], payload["input_shape"]
        )
        weights = (
            payload["state_dict"] if selection == "last" else payload["best_val"]["state_dict"]
        )
        model.load_state_dict(weights)
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise BadFileError(
            f"{os.fspath(path)}: its weights do not fit its spec ({type(e).__name__}: "
            f"{str(e)[:200]}); " + rebuild_hint(path, model_rule(path, payload["spec"]["role"]))
        ) from e
    return model.to(device).eval(), payload


def load_method(
    path: str | os.PathLike[str], device: torch.device, expect: Mapping[str, Any] | None = None
) -> FeatureMethod:
    """The KD method a student's model file stores (its regressors, embedding heads,
    connectors, memory bank), rebuilt from the stored probe shapes (no network needed) and
    loaded strictly, on ``device``. CRD comes back without its negative sampler (the
    training labels are not stored): enough to inspect or reuse its parts."""
    payload = read_model_file(path, expect)
    stored = payload.get("method")
    if not stored:
        raise BadFileError(f"{os.fspath(path)}: its KD method has no stored parts")
    try:
        method = build_method(payload["spec"]["kd"], Probe.from_dict(stored["probe"]))
        method.load_state_dict(stored["state_dict"])
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise BadFileError(
            f"{os.fspath(path)}: its KD method's parts do not fit its spec "
            f"({type(e).__name__}: {str(e)[:200]}); " + rebuild_hint(path, "distill_student")
        ) from e
    return method.to(device)


def model_history(
    path: str | os.PathLike[str], expect: Mapping[str, Any] | None = None
) -> list[dict[str, float]]:
    """The per-epoch training history stored in a model file (one row per epoch: epoch,
    train loss and accuracy, validation loss and accuracy, lr), without building the model."""
    return [dict(row) for row in read_model_file(path, expect)["history"]]


def frozen_teacher(
    path: str | os.PathLike[str], device: torch.device, expect: Mapping[str, Any] | None = None
) -> Classifier:
    teacher, _ = load_trained(path, device, "last", expect)
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def cached_teacher(
    path: str | os.PathLike[str], train: DeviceData, expect: Mapping[str, Any] | None = None
) -> TeacherLogits:
    """The teacher's logits on the train split, from its ``extract_outputs`` file (made
    from the ``last`` weights of the cell ``expect`` names)."""
    import numpy as np

    hint = rebuild_hint(path, "evaluate_model")
    try:
        with np.load(path, allow_pickle=False) as f:
            # keys as kdaug.measure.evaluation.split_key (train/ may not import measure/)
            logits, labels = f["train.logits"], f["train.labels"]
            stored = json.loads(str(f["cell"])) if "cell" in f.files else None
            selection = str(f["selection"]) if "selection" in f.files else None
    except FileNotFoundError:
        raise
    except Exception as e:  # zipfile, numpy and json raise many kinds
        raise BadFileError(
            f"{os.fspath(path)}: not a readable outputs file ({type(e).__name__}: {e}); {hint}"
        ) from e
    if expect:
        if stored is None or selection != "last":
            raise BadFileError(
                f"{os.fspath(path)}: does not say which model's last weights made it "
                f"(an older kdaug's, or not an extract_outputs file); {hint}"
            )
        check_identity(path, stored, expect, "evaluate_model")
    try:
        return TeacherLogits.for_split(logits, labels, train)
    except ValueError as e:
        raise BadFileError(f"{os.fspath(path)}: {e}; {hint}") from e


def load_published_weights(
    model: Classifier, spec: Mapping[str, Any], weights_path: str | None
) -> TrainState:
    """Load the published weights a teacher spec names (``spec["pretrained"]``, the file's
    name) into ``model``; the model file then records no training (an empty history)."""
    from kdaug.models.pretrained import check_weights_file, load_torchvision_weights

    where = f"datasets.{spec['dataset']}.teacher_weights.{spec['arch']['name']}"
    if weights_path is None or Path(weights_path).name != spec["pretrained"]:
        raise ValueError(f"{where}: the cell loads {spec['pretrained']}, given {weights_path}")
    load_torchvision_weights(model, check_weights_file(weights_path, where))
    return TrainState()


def train_cell(
    spec: Mapping[str, Any],
    *,
    train_path: str,
    val_path: str,
    output: str,
    teacher_path: str | None = None,
    teacher_logits_path: str | None = None,
    weights_path: str | None = None,
    threads: int | None = None,
    speed: Mapping[str, Any] | None = None,
    code: str | None = None,
) -> TrainState:
    """Train the cell described by ``spec`` and atomically write ``output``.

    A student reads its teacher from ``teacher_path`` (the model, run on every batch) or,
    when trained without augmentation, ``teacher_logits_path`` (the teacher's outputs on
    the train split, looked up by row); a CE-only student (KD weight 0) needs neither.
    ``speed`` holds the ``runtime`` settings of :class:`kdaug.train.engine.Speed`; a checkpoint
    made under other settings is not resumed (they change the rounding), nor one made by
    other training code (``code``: the rule's code hash, :func:`kdaug.provenance.code_hash`).

    Every input (splits, teacher model or logits) is read and checked before training
    starts, so a bad input costs no training and its error names the file. A run whose
    loss blows up raises :class:`TrainingDivergedError` naming ``output``, and writes no model.

    The checkpoint lives beside the output (``<output>.ckpt``), which Snakemake does not
    know about, so a killed job's checkpoint survives Snakemake's cleanup of incomplete
    outputs and the rerun resumes from it. It is removed once the model file is written.
    """
    device = pick_device(threads)
    seed = int(spec["seed"])
    torch.manual_seed(seed)  # weight initialisation
    # Inputs first: a corrupt split or a foreign teacher fails here, before any training.
    train_split, val_split = load_split(train_path), load_split(val_path)
    norm = spec["normalization"]
    train = DeviceData.from_split(train_split, norm["mean"], norm["std"], device)
    val = DeviceData.from_split(val_split, norm["mean"], norm["std"], device)
    teacher = None
    if teacher_path:
        teacher = frozen_teacher(teacher_path, device, spec_teacher_identity(spec))
    elif teacher_logits_path:
        teacher = cached_teacher(teacher_logits_path, train, spec_teacher_identity(spec))
    model = build_cell_model(spec["arch"], train_split.num_classes, train_split.images.shape[1:])
    model = model.to(device)
    augmentation = augmentation_from_spec(spec["augmentation"])
    loss_fn = build_objective(
        spec["kd"] if spec["role"] == "student" else {"loss": "ce"},
        student=model,
        teacher=teacher,
        input_shape=train_split.images.shape[1:],
        labels=train.labels,
    )

    checkpoint = Path(str(output) + ".ckpt")
    if spec.get("pretrained"):  # a teacher loaded from published weights, not trained
        state = load_published_weights(model, spec, weights_path)
    else:
        try:
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
                fingerprint=fingerprint({**spec, "speed": dict(speed or {}), "code": code}),
                speed=Speed.from_config(speed or {}),
            )
        except TrainingDivergedError as e:
            cell = describe(spec_identity(spec))
            raise TrainingDivergedError(
                f"{output} ({cell}): {e}, in the config's datasets.{spec['dataset']}.training."
                f"{spec['role']}. No model was written."
            ) from None
    payload = {
        "format": MODEL_FILE_FORMAT,
        # JSON round trip: plain values only, so the file loads with weights_only=True
        "spec": json.loads(json.dumps(spec)),
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
        # a KD method's trainable parts and buffers (None for the logit losses)
        "method": method_payload(loss_fn),
        "init_losses": state.init_losses,
        "final_val": evaluate(model, val),
        # JSON round trip: torch.__version__ is a TorchVersion, not a plain str
        "provenance": json.loads(
            json.dumps(
                {
                    **environment(device),
                    "data": {
                        "train": {"path": str(train_path), "sha256": file_sha256(train_path)},
                        "val": {"path": str(val_path), "sha256": file_sha256(val_path)},
                    },
                    "teacher": teacher_path or teacher_logits_path,
                    "weights": weights_path,
                    "code": code,
                }
            )
        ),
    }
    with atomic_path(output) as tmp:
        torch.save(payload, tmp)
    checkpoint.unlink(missing_ok=True)
    return state
