"""Logits and penultimate embeddings of one trained model on its evaluation splits."""

from __future__ import annotations

import json
import os
from collections.abc import Collection, Mapping
from typing import Any

import numpy as np
import torch

from kdaug.data.canonical import load_split
from kdaug.io import atomic_path
from kdaug.measure.evaluation import split_key
from kdaug.models import Classifier
from kdaug.train.engine import DeviceData
from kdaug.train.training import load_trained, pick_device, spec_identity


@torch.no_grad()
def _split_arrays(
    model: Classifier,
    split_path: str | os.PathLike[str],
    norm: Mapping[str, Any],
    device: torch.device,
    embeddings: bool,
    batch_size: int,
) -> tuple[dict[str, np.ndarray], tuple[str, ...]]:
    split = load_split(split_path)
    data = DeviceData.from_split(split, norm["mean"], norm["std"], device)
    logits, embs = [], []
    for start in range(0, len(data), batch_size):
        index = torch.arange(start, min(start + batch_size, len(data)), device=device)
        out, emb = model.forward_with_embedding(data.normalized(index))
        logits.append(out.float().cpu())
        if embeddings:
            embs.append(emb.to(torch.float16).cpu())
    arrays = {"logits": torch.cat(logits).numpy(), "labels": split.labels}
    if embeddings:
        arrays["embeddings"] = torch.cat(embs).numpy()
    if split.soft_labels is not None:
        arrays["soft_labels"] = split.soft_labels
    return arrays, tuple(split.class_names)


def extract_outputs(
    model_path: str | os.PathLike[str],
    splits: Mapping[str, str | os.PathLike[str]],
    output: str | os.PathLike[str],
    *,
    selection: str = "last",
    embeddings_for: Collection[str] = (),
    batch_size: int = 1000,
    threads: int | None = None,
    expect: Mapping[str, Any] | None = None,
) -> None:
    """One ``.npz`` with the model's outputs on every split of ``splits`` (name -> split
    file), loading the model once: per split ``<split>.logits`` (float32),
    ``<split>.labels``, ``<split>.embeddings`` (float16, to keep 70k x 512 CINIC
    embeddings small) for the splits in ``embeddings_for``, and the split's soft labels;
    then ``class_names``, ``splits`` (the names, in order), and the model's cell (``cell``,
    JSON) and ``selection``, which a student reading these as its teacher's logits checks.
    ``expect``: the cell the model file must hold (:func:`kdaug.train.training.load_trained`).
    """
    device = pick_device(threads)
    model, payload = load_trained(model_path, device, selection, expect)
    norm = payload["spec"]["normalization"]
    arrays: dict[str, np.ndarray] = {}
    class_names: tuple[str, ...] = ()
    for name, path in splits.items():
        per_split, class_names = _split_arrays(
            model, path, norm, device, name in embeddings_for, batch_size
        )
        arrays.update({split_key(name, k): v for k, v in per_split.items()})
    arrays.update(
        class_names=np.array(class_names, dtype=str),
        splits=np.array(list(splits), dtype=str),
        cell=np.array(json.dumps(spec_identity(payload["spec"]), sort_keys=True)),
        selection=np.array(selection),
    )
    with atomic_path(output) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
