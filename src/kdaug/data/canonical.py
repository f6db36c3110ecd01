"""The canonical array file: one split of one dataset, ready to move to a device.

Format: an uncompressed ``.npz`` (so ``np.load`` is a plain read, well under a second for
CIFAR-size data) holding

- ``images``: uint8, shape ``(N, C, H, W)`` (channels first, as the models consume it);
- ``labels``: int64, shape ``(N,)``;
- ``class_names``: unicode array of length ``num_classes``;
- ``provenance``: a JSON string (source, checksums, conversion code version, ...);
- optionally ``soft_labels``: float64 ``(N, num_classes)`` (for example CIFAR-10H).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kdaug.io import atomic_path

FORMAT_VERSION = 1


class BadFileError(ValueError):
    """A results file that cannot be used: unreadable, corrupt, unsafe or another cell's.
    Its message names the file and says how to rebuild it (:func:`rebuild_hint`)."""


def rebuild_hint(path: str | os.PathLike[str], rule: str | None) -> str:
    """How to remake ``path``: deleting it makes Snakemake rebuild it on the next run;
    ``-R`` forces its rule when the file should be remade in place."""
    force = f", or `snakemake {os.fspath(path)} -R {rule}`" if rule else ""
    return f"rebuild it: delete it and rerun{force}"


@dataclass(frozen=True)
class Split:
    """One split in memory."""

    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    provenance: dict[str, Any] = field(default_factory=dict)
    soft_labels: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.images.dtype != np.uint8 or self.images.ndim != 4:
            raise ValueError(
                f"images must be uint8 (N, C, H, W); got {self.images.dtype} {self.images.shape}"
            )
        n = len(self.images)
        if self.labels.shape != (n,):
            raise ValueError(f"labels must have shape ({n},); got {self.labels.shape}")
        if n and (self.labels.min() < 0 or self.labels.max() >= len(self.class_names)):
            raise ValueError(
                f"labels must lie in [0, {len(self.class_names)}); "
                f"got [{self.labels.min()}, {self.labels.max()}]"
            )
        if self.soft_labels is not None and self.soft_labels.shape != (n, self.num_classes):
            raise ValueError(
                f"soft_labels must have shape ({n}, {self.num_classes}); "
                f"got {self.soft_labels.shape}"
            )

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: np.ndarray, note: str | None = None) -> Split:
        """Rows ``index`` of this split (provenance gains ``note`` if given)."""
        provenance = dict(self.provenance)
        if note:
            provenance["subset"] = note
        soft = None if self.soft_labels is None else self.soft_labels[index]
        return Split(self.images[index], self.labels[index], self.class_names, provenance, soft)


def save_split(path: str | os.PathLike[str], split: Split) -> None:
    """Write ``split`` atomically (a crash never leaves a readable half file); an
    ImageFolder split is written as its index (:mod:`kdaug.data.imagefolder`)."""
    from kdaug.data.imagefolder import ImageFolderSplit, save_index

    if isinstance(split, ImageFolderSplit):
        save_index(path, split)
        return
    arrays: dict[str, np.ndarray] = {
        "images": np.ascontiguousarray(split.images),
        "labels": split.labels.astype(np.int64),
        "class_names": np.array(split.class_names, dtype=str),
        "provenance": np.array(
            json.dumps({**split.provenance, "format_version": FORMAT_VERSION}, sort_keys=True)
        ),
    }
    if split.soft_labels is not None:
        arrays["soft_labels"] = split.soft_labels.astype(np.float64)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)


def load_split(path: str | os.PathLike[str]) -> Split:
    """Read a canonical split file written by :func:`save_split`.

    A missing file raises :class:`FileNotFoundError`; any other failure (a truncated or
    corrupt archive, a missing array, arrays that do not make a split) raises
    :class:`BadFileError` naming the file and its rule, so a job fails on its inputs
    before it trains rather than with a bare ``BadZipFile`` after.

    An ImageFolder index (a streamed dataset such as ImageNet) loads as a
    :class:`kdaug.data.imagefolder.ImageFolderSplit`, which answers the same questions
    and decodes its images on demand.
    """
    from kdaug.data.imagefolder import INDEX_KIND, index_from_arrays

    try:
        with np.load(Path(path), allow_pickle=False) as f:
            if "kind" in f.files and str(f["kind"]) == INDEX_KIND:
                return index_from_arrays(f)  # type: ignore[return-value]
            soft = f["soft_labels"] if "soft_labels" in f.files else None
            return Split(
                images=f["images"],
                labels=f["labels"],
                class_names=tuple(str(c) for c in f["class_names"]),
                provenance=json.loads(str(f["provenance"])),
                soft_labels=soft,
            )
    except FileNotFoundError:
        raise
    except Exception as e:  # zipfile, numpy and our own checks raise many kinds
        raise BadFileError(
            f"{os.fspath(path)}: not a readable split file ({type(e).__name__}: {e}); "
            + rebuild_hint(path, "prepare_split")
        ) from e


def stratified_holdout(labels: np.ndarray, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into (kept, held_out) with ``size`` held out, class-stratified.

    Each class contributes ``round(size * share)`` samples (largest remainders fix the
    total), drawn with ``np.random.default_rng(seed)``; both index arrays are sorted so the
    files keep the source order.
    """
    if not 0 <= size < len(labels):
        raise ValueError(f"holdout size must be in [0, {len(labels)}); got {size}")
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    quota = size * counts / counts.sum()
    take = np.floor(quota).astype(int)
    remainder_order = np.argsort(-(quota - take), kind="stable")
    take[remainder_order[: size - take.sum()]] += 1
    held = [
        rng.choice(np.flatnonzero(labels == c), k, replace=False)
        for c, k in zip(classes, take, strict=True)
    ]
    held_out = np.sort(np.concatenate(held)) if held else np.array([], dtype=int)
    kept = np.setdiff1d(np.arange(len(labels)), held_out)
    return kept, held_out
