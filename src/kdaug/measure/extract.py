"""Logits and penultimate embeddings of one trained model on one evaluation split."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from kdaug.data.canonical import load_split
from kdaug.io import atomic_path
from kdaug.train.engine import DeviceData
from kdaug.train.training import load_trained, pick_device, spec_identity


@torch.no_grad()
def extract_outputs(
    model_path: str | os.PathLike[str],
    split_path: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    selection: str = "last",
    embeddings: bool = True,
    batch_size: int = 1000,
    threads: int | None = None,
    expect: Mapping[str, Any] | None = None,
) -> None:
    """Write ``logits`` (float32), ``labels`` and optionally ``embeddings`` (float16, to
    keep 70k x 512 CINIC embeddings small) as an ``.npz``; soft labels are copied along,
    and the model's cell (``cell``, JSON) and ``selection``, which a student reading these
    as its teacher's logits checks. ``expect``: the cell the model file must hold
    (:func:`kdaug.train.training.load_trained`)."""
    device = pick_device(threads)
    model, payload = load_trained(model_path, device, selection, expect)
    split = load_split(split_path)
    norm = payload["spec"]["normalization"]
    data = DeviceData.from_split(split, norm["mean"], norm["std"], device)
    logits, embs = [], []
    for start in range(0, len(data), batch_size):
        index = torch.arange(start, min(start + batch_size, len(data)), device=device)
        out, emb = model.forward_with_embedding(data.normalized(index))
        logits.append(out.float().cpu())
        if embeddings:
            embs.append(emb.to(torch.float16).cpu())
    arrays = {
        "logits": torch.cat(logits).numpy(),
        "labels": split.labels,
        "class_names": np.array(split.class_names, dtype=str),
        "cell": np.array(json.dumps(spec_identity(payload["spec"]), sort_keys=True)),
        "selection": np.array(selection),
    }
    if embeddings:
        arrays["embeddings"] = torch.cat(embs).numpy()
    if split.soft_labels is not None:
        arrays["soft_labels"] = split.soft_labels
    with atomic_path(output) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
