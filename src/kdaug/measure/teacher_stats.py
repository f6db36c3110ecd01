"""Wang et al. (2022): how "good" an augmentation is for KD, measured on the teacher alone.

The teacher runs over the KD training stream (each batch ``x`` with the standard
augmentation plus its appended copy ``x'``) and its softmax outputs (temperature 1) are
summarised three ways:

- **T. stddev** ``m̄`` (eqs. 9-10, appendix A.3): consecutive groups of ``group_batches``
  training batches (5 batches of ``x`` + ``x'`` = the paper's K = 10 matrices of 64 rows,
  640 samples) give one *teacher's mean probability* ``u = mean of the group's rows``
  (eq. 9); ``m = Var(u)`` per class over all groups (eq. 10) and
  ``m̄ = (1/C) Σ_i sqrt(m_i)``. The variance is the sample variance (ddof 1) as in the
  paper's code (``torch.std``); groups run on across epoch boundaries and an incomplete
  last group is dropped. Lower is better.
- **v̄ and r̄** (appendix A.2, eqs. 12-13), the baselines the paper rejects: per batch, the
  teacher's output matrix ``P`` (rows: the batch's ``x`` and ``x'`` samples, columns:
  classes) gives ``v = mean(Cov(P, P))`` and ``r = mean(Cor(P, P))``, the N x N covariance
  and correlation between *samples* (``numpy.cov(P)`` / ``numpy.corrcoef(P)``, rows as
  variables, classes as observations); ``v̄`` and ``r̄`` average them over all batches.

The paper computes these over 10 epochs of the stream with the student frozen (its
``T_stddev_*.sh`` scripts train with learning rate 0).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from kdaug.cells import STREAM_SPLIT
from kdaug.train.augment import AnyAugmentation, augmentation_from_spec
from kdaug.train.engine import DeviceData, Teacher, batches, seed_epoch, step_batch


def t_stddev(group_means: np.ndarray) -> float:
    """``m̄`` of eq. (10) from the ``(groups, C)`` matrix of teacher's mean probabilities."""
    u = np.asarray(group_means, dtype=np.float64)
    if u.ndim != 2 or len(u) < 2:
        raise ValueError(f"T. stddev needs at least 2 group means (G, C); got shape {u.shape}")
    return float(np.sqrt(u.var(axis=0, ddof=1)).mean())


def sample_covariance_mean(probs: np.ndarray) -> float:
    """``v`` of eq. (12): the mean entry of the N x N covariance between the rows of ``P``."""
    p = np.asarray(probs, dtype=np.float64)
    centred = p - p.mean(axis=1, keepdims=True)
    cov = centred @ centred.T / (p.shape[1] - 1)
    return float(cov.mean())


def sample_correlation_mean(probs: np.ndarray) -> float:
    """``r`` of eq. (12): the mean entry of the N x N correlation between the rows of ``P``.

    A row with no spread over classes (a uniform output) has no correlation; such rows
    are left out rather than making the whole batch NaN.
    """
    p = np.asarray(probs, dtype=np.float64)
    centred = p - p.mean(axis=1, keepdims=True)
    norms = np.sqrt((centred**2).sum(axis=1))
    keep = norms > 0
    unit = centred[keep] / norms[keep, None]
    return float((unit @ unit.T).mean()) if keep.any() else math.nan


@dataclass
class TeacherStreamStats:
    """Accumulates the teacher's probabilities batch by batch (see the module docstring)."""

    group_batches: int = 5
    group_means: list[np.ndarray] = field(default_factory=list)
    covariances: list[float] = field(default_factory=list)
    correlations: list[float] = field(default_factory=list)
    group_rows: int = 0  # samples in the last complete group (the paper's K = 640)
    _pending: list[np.ndarray] = field(default_factory=list)

    def add(self, probs: np.ndarray) -> None:
        """One training batch's ``(N, C)`` teacher probabilities (``x`` rows and ``x'`` rows)."""
        self.covariances.append(sample_covariance_mean(probs))
        self.correlations.append(sample_correlation_mean(probs))
        self._pending.append(np.asarray(probs, dtype=np.float64))
        if len(self._pending) == self.group_batches:
            rows = np.concatenate(self._pending)
            self.group_means.append(rows.mean(axis=0))
            self.group_rows = len(rows)
            self._pending = []

    def summary(self) -> dict[str, float | int]:
        return {
            "t_stddev": t_stddev(np.stack(self.group_means)),
            "cov_mean": float(np.mean(self.covariances)),
            "cor_mean": float(np.nanmean(self.correlations)),
            "groups": len(self.group_means),
            "batches": len(self.covariances),
            "samples_per_group": self.group_rows,
        }

    def extend(self, stream: Iterable[np.ndarray]) -> TeacherStreamStats:
        for probs in stream:
            self.add(probs)
        return self


@torch.no_grad()
def teacher_stream(
    teacher: Teacher,
    data: DeviceData,
    augmentation: AnyAugmentation,
    *,
    seed: int,
    epochs: int,
    batch_size: int,
    student: nn.Module | None = None,
    steps_per_epoch: int | None = None,
    progress: Callable[[int, int], None] = lambda epoch, epochs: None,
) -> Iterator[np.ndarray]:
    """The teacher's softmax on each training batch's ``x`` and ``x'`` rows, for ``epochs``
    epochs of the same stream a student of this cell trains on (same seeds, same draws;
    a recipe's ``steps_per_epoch`` cuts each epoch to its first batches, as in training)."""
    for epoch in range(epochs):
        rng = seed_epoch(seed, epoch)
        for chunk in batches(len(data), batch_size, rng)[:steps_per_epoch]:
            index = torch.as_tensor(chunk).to(data.labels.device, non_blocking=True)
            batch = step_batch(data, index, augmentation, rng, teacher, student)
            logits = [batch.teacher_logits]
            if batch.extra_teacher_logits is not None:
                logits.append(batch.extra_teacher_logits)
            yield torch.cat(logits).float().softmax(dim=1).cpu().numpy()
        progress(epoch + 1, epochs)


def cell_teacher_stats(
    spec: Mapping[str, Any],
    *,
    cell: Mapping[str, Any],
    train_path: str,
    teacher_path: str,
    output: str,
    epochs: int,
    group_batches: int,
    student_path: str | None = None,
    threads: int | None = None,
) -> dict[str, Any]:
    """T. stddev, v̄ and r̄ of one student cell's teacher on the cell's training stream
    (its augmentation, batch size and seed), written as JSON to ``output``."""
    from kdaug.data.canonical import load_split
    from kdaug.io import write_json
    from kdaug.train.training import frozen_teacher, load_trained, pick_device, teacher_identity

    device = pick_device(threads)
    norm = spec["normalization"]
    data = DeviceData.from_split(load_split(train_path), norm["mean"], norm["std"], device)
    # The model files must hold the cell this output is filed under (and its teacher).
    teacher = frozen_teacher(teacher_path, device, teacher_identity(cell))
    student = load_trained(student_path, device, expect=cell)[0] if student_path else None
    stream = teacher_stream(
        teacher,
        data,
        augmentation_from_spec(spec["augmentation"]),
        seed=int(spec["seed"]),
        epochs=epochs,
        batch_size=int(spec["recipe"]["batch_size"]),
        student=student,
        steps_per_epoch=spec["recipe"].get("steps_per_epoch"),
        progress=lambda e, n: print(f"teacher stream: epoch {e}/{n}", file=sys.stderr, flush=True),
    )
    stats = TeacherStreamStats(group_batches).extend(stream).summary()
    record = {
        "kind": "teacher_stats",
        "cell": dict(cell),
        "split": STREAM_SPLIT,
        "settings": {"epochs": epochs, "group_batches": group_batches},
        "metrics": {k: stats[k] for k in ("t_stddev", "cov_mean", "cor_mean")},
        "counts": {k: stats[k] for k in ("groups", "batches", "samples_per_group")},
    }
    write_json(output, record)
    return record
