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


def split_key(split: str, name: str) -> str:
    """The key of one split's array in a model's outputs file (``test.logits``)."""
    return f"{split}.{name}"


def load_eval_data(path: str | os.PathLike[str], split: str, **options: Any) -> EvalData:
    """One split's outputs from a model's outputs file
    (:func:`kdaug.measure.extract.extract_outputs`)."""
    with np.load(path, allow_pickle=False) as f:
        if split_key(split, "logits") not in f.files:
            stored = ", ".join(str(s) for s in f["splits"]) if "splits" in f.files else "none"
            raise KeyError(f"{os.fspath(path)}: no outputs on split {split!r} (it has: {stored})")

        def get(name: str) -> np.ndarray | None:
            key = split_key(split, name)
            return f[key] if key in f.files else None

        embeddings = get("embeddings")
        return EvalData(
            logits=f[split_key(split, "logits")].astype(np.float64),
            labels=f[split_key(split, "labels")],
            embeddings=None if embeddings is None else embeddings.astype(np.float64),
            soft_labels=get("soft_labels"),
            num_classes=len(f["class_names"]),
            options={"class_names": [str(c) for c in f["class_names"]], **options},
        )


def metrics_file(
    outputs_path: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    cell: Mapping[str, Any],
    selection: str,
    splits: Sequence[str],
    metrics: Sequence[str],
    ece_bins: int = 15,
    vscore_groups: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, dict[str, float]]:
    """Compute ``metrics`` on each split of one outputs file and write them, with the
    cell's identity, as one record: ``{"cell", "selection", "splits": {split: {"n",
    "metrics"}}}``.

    Metrics whose input a split lacks (embeddings, human soft labels) are skipped, not
    failed: see :func:`kdaug.measure.metrics.applicable_metrics`.
    """
    options = {"ece_bins": ece_bins, "vscore_groups": dict(vscore_groups or {})}
    per_split = {}
    for split in splits:
        data = load_eval_data(outputs_path, split, **options)
        values = compute_metrics(data, applicable_metrics(data, metrics))
        per_split[split] = {"n": len(data.labels), "metrics": values}
    write_json(output, {"cell": dict(cell), "selection": selection, "splits": per_split})
    return {split: entry["metrics"] for split, entry in per_split.items()}


# The rule that writes each kind of file collect() reads, by file name ending.
_WRITERS = (
    (".attacks.json", "attack_model"),
    ("teacher_stats.json", "teacher_stats"),
    (".json", "evaluate_model"),
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
    per_split = "splits" in record
    missing = [k for k in ("cell", "split", "metrics") if k not in record]
    if per_split:
        missing = [k for k in ("cell", "splits") if k not in record]
    if missing:
        return f"no {', '.join(missing)} entry"
    if not isinstance(record["cell"], dict) or any(k not in record["cell"] for k in _CELL_KEYS):
        return "its cell entry lacks the cell's identity"
    if per_split and not (
        isinstance(record["splits"], dict)
        and all(isinstance(e, dict) and "metrics" in e for e in record["splits"].values())
    ):
        return "its splits entry is not a mapping of splits to metrics"
    entries = record["splits"].values() if per_split else [record]
    if not all(_numbers(e["metrics"]) for e in entries):
        return "its metrics entry is not a mapping of names to numbers"
    return None


def _numbers(values: Any) -> bool:
    return isinstance(values, dict) and all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in values.values()
    )


def record_entries(record: Mapping[str, Any]) -> dict[str, Mapping[str, float]]:
    """Split -> metrics of a record: a model's metrics file holds several splits, a
    teacher-statistics or attacks file one."""
    if "splits" in record:
        return {split: entry["metrics"] for split, entry in record["splits"].items()}
    return {record["split"]: record["metrics"]}


def collect(
    metrics_paths: Sequence[str | os.PathLike[str]],
    output: str | os.PathLike[str],
    experiment: str,
    splits: Sequence[str] | None = None,
) -> None:
    """Write one long CSV row per (metrics file, split, metric); teacher-statistics files
    (:mod:`kdaug.measure.teacher_stats`) are collected the same way, under their own split.
    ``splits``: the evaluation splits the experiment reads (a model evaluated for other
    experiments too has more in its file); teacher statistics and attacks are always kept."""
    rows = []
    for path in metrics_paths:
        record = read_record(path)
        cell = record["cell"]
        entries = record_entries(record)
        if splits is not None and "splits" in record:
            missing = [s for s in splits if s not in entries]
            if missing:
                raise CorruptRecordError(
                    f"{path}: no metrics on {', '.join(missing)} (the model was evaluated "
                    f"for the experiments of `run`; add {experiment!r} to `run` and rerun)"
                )
            entries = {s: v for s, v in entries.items() if s in splits}
        for split, values in entries.items():
            for metric, value in sorted(values.items()):
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
                        "split": split,
                        "metric": metric,
                        "value": repr(float(value)),
                    }
                )
    write_long_csv(output, rows)
