"""Metrics files per (model, selection, split) and their collection per experiment.

NumPy only (no torch import): these jobs are many and must start fast.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from kdaug.io import read_json, write_json, write_long_csv
from kdaug.measure.metrics import EvalData, applicable_metrics, compute_metrics


def load_eval_data(path: str | os.PathLike[str], **options: Any) -> EvalData:
    with np.load(path, allow_pickle=False) as f:
        embeddings = f["embeddings"].astype(np.float64) if "embeddings" in f.files else None
        soft_labels = f["soft_labels"] if "soft_labels" in f.files else None
        return EvalData(
            logits=f["logits"].astype(np.float64),
            labels=f["labels"],
            embeddings=embeddings,
            soft_labels=soft_labels,
            num_classes=len(f["class_names"]),
            options={"class_names": [str(c) for c in f["class_names"]], **options},
        )


def metrics_file(
    outputs_path: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    cell: Mapping[str, Any],
    selection: str,
    split: str,
    metrics: Sequence[str],
    ece_bins: int = 15,
    vscore_groups: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, float]:
    """Compute ``metrics`` on one outputs file and write them with the cell's identity.

    Metrics whose input the split lacks (embeddings, human soft labels) are skipped, not
    failed: see :func:`kdaug.measure.metrics.applicable_metrics`.
    """
    data = load_eval_data(outputs_path, ece_bins=ece_bins, vscore_groups=dict(vscore_groups or {}))
    values = compute_metrics(data, applicable_metrics(data, metrics))
    write_json(
        output,
        {
            "cell": dict(cell),
            "selection": selection,
            "split": split,
            "n": len(data.labels),
            "metrics": values,
        },
    )
    return values


def collect(
    metrics_paths: Sequence[str | os.PathLike[str]], output: str | os.PathLike[str], experiment: str
) -> None:
    """Write one long CSV row per (metrics file, metric); teacher-statistics files
    (:mod:`kdaug.measure.teacher_stats`) are collected the same way, under their own split."""
    rows = []
    for path in metrics_paths:
        record = read_json(path)
        cell = record["cell"]
        for metric, value in sorted(record["metrics"].items()):
            rows.append(
                {
                    "experiment": experiment,
                    "dataset": cell["dataset"],
                    "seed": cell["seed"],
                    "role": cell["role"],
                    "teacher_arch": cell["teacher_arch"],
                    "teacher_aug": cell["teacher_aug"],
                    "kd": cell["kd"],
                    "student_arch": cell["student_arch"],
                    "student_aug": cell["student_aug"],
                    # Teacher statistics of the training stream have no weight selection.
                    "selection": record.get("selection", ""),
                    "split": record["split"],
                    "metric": metric,
                    "value": repr(float(value)),
                }
            )
    write_long_csv(output, rows)
