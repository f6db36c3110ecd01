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


# The rule that writes each kind of file collect() reads, by file name ending.
_WRITERS = (
    (".attacks.json", "attack_model"),
    ("teacher_stats.json", "teacher_stats"),
    (".json", "evaluate_split"),
)
_CELL_KEYS = ("dataset", "seed", "role", "teacher_arch", "teacher_aug", "kd", "student_arch",
              "student_aug")  # fmt: skip


class CorruptRecordError(ValueError):
    """A metrics (or teacher statistics, or attacks) file that cannot be collected."""


def read_record(path: str | os.PathLike[str]) -> dict[str, Any]:
    """One metrics file as :func:`collect` reads it; a file that is not such a record
    (cut short, edited, another file copied over it) is a :class:`CorruptRecordError`
    naming it and how to rebuild it."""
    try:
        record = read_json(path)
        problem = _record_problem(record)
    except (ValueError, UnicodeDecodeError) as err:  # JSONDecodeError is a ValueError
        problem = f"not valid JSON ({err})"
    if problem:
        rule = next(r for end, r in _WRITERS if str(path).endswith(end))
        raise CorruptRecordError(
            f"{path}: {problem}; rebuild it: delete it, or run snakemake {path} -R {rule}"
        )
    return record


def _record_problem(record: Any) -> str | None:
    if not isinstance(record, dict):
        return "not a metrics record (a JSON object)"
    missing = [k for k in ("cell", "split", "metrics") if k not in record]
    if missing:
        return f"no {', '.join(missing)} entry"
    if not isinstance(record["cell"], dict) or any(k not in record["cell"] for k in _CELL_KEYS):
        return "its cell entry lacks the cell's identity"
    values = record["metrics"]
    if not isinstance(values, dict) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in values.values()
    ):
        return "its metrics entry is not a mapping of names to numbers"
    return None


def collect(
    metrics_paths: Sequence[str | os.PathLike[str]], output: str | os.PathLike[str], experiment: str
) -> None:
    """Write one long CSV row per (metrics file, metric); teacher-statistics files
    (:mod:`kdaug.measure.teacher_stats`) are collected the same way, under their own split."""
    rows = []
    for path in metrics_paths:
        record = read_record(path)
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
