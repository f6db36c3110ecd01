"""Choi et al. (2023) Table 3: a trained model's accuracy under white-box attacks.

The attack rule loads the model (not its stored logits: the attacks need gradients) and
evaluates FGSM and I-FGSM (:mod:`kdaug.measure.attacks`) on one split at each configured
perturbation size, in [0, 1] pixel units.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from kdaug.io import write_json

ATTACKS = ("fgsm", "ifgsm")


def attack_metric(method: str, eps: float) -> str:
    """The metric name of one (attack, eps) cell in an experiment's metrics CSV."""
    return f"{method}_{eps:g}"


def attack_file(
    model_path: str | os.PathLike[str],
    split_path: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    cell: Mapping[str, Any],
    selection: str,
    split: str,
    eps: Sequence[float],
    steps: int = 10,
    images: int | None = None,
    threads: int | None = None,
) -> dict[str, float]:
    """Accuracy under FGSM and I-FGSM (``steps`` equal steps) at every ``eps``, as JSON.
    The model file must hold ``cell`` (``Cell.identity()``), the cell the output is filed
    under. ``images``: attack only the split's first ``images`` images (I-FGSM costs
    ``steps`` forward and backward passes per image and eps: on a CPU, 10,000 test images
    are an hour per model)."""
    # Imported here: the report code imports this module for its metric names only.
    from kdaug.data.canonical import load_split
    from kdaug.measure.attacks import adversarial_accuracy
    from kdaug.train.engine import DeviceData
    from kdaug.train.training import load_trained, pick_device

    device = pick_device(threads)
    model, payload = load_trained(model_path, device, selection, expect=cell)
    norm = payload["spec"]["normalization"]
    split_data = load_split(split_path)
    if images is not None and images < len(split_data):
        split_data = split_data.subset(np.arange(images), f"attacks: its first {images} images")
    data = DeviceData.from_split(split_data, norm["mean"], norm["std"], device)
    values: dict[str, float] = {}
    for method in ATTACKS:
        options = {"steps": steps} if method == "ifgsm" else {}
        accuracy = adversarial_accuracy(model, data, list(eps), method, **options)
        values |= {attack_metric(method, e): float(a) for e, a in accuracy.items()}
    record = {
        "kind": "attacks",
        "cell": dict(cell),
        "selection": selection,
        "split": split,
        "settings": {"eps": list(eps), "steps": steps, "images": len(split_data)},
        "metrics": values,
    }
    write_json(output, record)
    return values
