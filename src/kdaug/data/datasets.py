"""Dataset builders: each turns official archives into canonical splits.

A builder is registered under a name the config uses (``datasets.<name>.builder``). It
declares which archives each split needs (so the workflow can wire downloads) and builds
one split at a time from those archives and its config section.
"""

from __future__ import annotations

import io
import pickle
import tarfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kdaug.data.canonical import Split, stratified_holdout
from kdaug.registry import Registry

CONVERSION_VERSION = "1"

BuildFn = Callable[[str, Mapping[str, Path], Mapping[str, Any]], Split]


@dataclass(frozen=True)
class DatasetBuilder:
    """How to make each split of one dataset."""

    splits: Mapping[str, tuple[str, ...]]  # split name -> archive file names it reads
    build: BuildFn

    def archives_for(self, split: str) -> tuple[str, ...]:
        if split not in self.splits:
            raise KeyError(f"unknown split {split!r}; this dataset has {sorted(self.splits)}")
        return self.splits[split]


BUILDERS: Registry[DatasetBuilder] = Registry("dataset builder")


def build_split(
    builder: str, split: str, archives: Mapping[str, Path], params: Mapping[str, Any]
) -> Split:
    """Build ``split`` with the named builder, checking the split exists."""
    entry = BUILDERS.get(builder)
    entry.archives_for(split)
    return entry.build(split, archives, params)


def _holdout(full: Split, split: str, params: Mapping[str, Any]) -> Split:
    """Carve the validation split out of the official training data (never from test)."""
    kept, held = stratified_holdout(full.labels, int(params["val_size"]), int(params["split_seed"]))
    note = f"{split}: stratified holdout of {len(held)} (seed {params['split_seed']})"
    return full.subset(held if split == "val" else kept, note)


# --------------------------------------------------------------------------- digits (demo)


def _digits_full(image_size: int) -> Split:
    """scikit-learn's bundled 8x8 digits, scaled to uint8 and upsampled (nearest) to size."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    if image_size % 8:
        raise ValueError(f"digits image_size must be a multiple of 8; got {image_size}")
    scale = image_size // 8
    pixels = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)  # values 0..16
    pixels = pixels.repeat(scale, axis=1).repeat(scale, axis=2)[:, None]
    provenance = {
        "source": "sklearn.datasets.load_digits (UCI optdigits test set, bundled)",
        "upsample": f"nearest x{scale} from 8x8",
        "conversion_version": CONVERSION_VERSION,
    }
    names = tuple(str(n) for n in digits.target_names)
    return Split(pixels, digits.target.astype(np.int64), names, provenance)


def shift_images(images: np.ndarray, seed: int, contrast: float, noise_std: float) -> np.ndarray:
    """The demo's *shifted* test set: a documented, deterministic corruption.

    Each image is translated by one pixel in a random direction (edge pixels wrap),
    its contrast is scaled by ``contrast`` around mid-grey (128), and Gaussian pixel noise
    with standard deviation ``noise_std`` (in 0..255 units) is added; the result is
    rounded and clipped to uint8. All draws come from ``np.random.default_rng(seed)``.
    """
    rng = np.random.default_rng(seed)
    n = len(images)
    shifts = rng.integers(-1, 2, size=(n, 2))
    out = np.empty_like(images, dtype=np.float64)
    for dy, dx in {tuple(s) for s in shifts.tolist()}:  # at most 9 groups: vectorised per shift
        rows = (shifts[:, 0] == dy) & (shifts[:, 1] == dx)
        out[rows] = np.roll(images[rows], (dy, dx), axis=(2, 3))
    out = 128.0 + contrast * (out - 128.0) + rng.normal(0.0, noise_std, size=out.shape)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def _build_digits(split: str, archives: Mapping[str, Path], params: Mapping[str, Any]) -> Split:
    full = _digits_full(int(params["image_size"]))
    seed = int(params["split_seed"])
    train_idx, test_idx = stratified_holdout(full.labels, int(params["test_size"]), seed)
    if split in {"test", "test_shifted"}:
        test = full.subset(test_idx, f"test: stratified holdout of {len(test_idx)} (seed {seed})")
        if split == "test":
            return test
        shift = params["shift"]
        images = shift_images(
            test.images, int(shift["seed"]), shift["contrast"], shift["noise_std"]
        )
        provenance = {**test.provenance, "shift": dict(shift)}
        return Split(images, test.labels, test.class_names, provenance)
    return _holdout(full.subset(train_idx), split, params)


BUILDERS.register("digits")(
    DatasetBuilder(
        splits={"train": (), "val": (), "test": (), "test_shifted": ()},
        build=_build_digits,
    )
)


# --------------------------------------------------------------------------- CIFAR-10

CIFAR10_ARCHIVE = "cifar-10-python.tar.gz"
CINIC10_ARCHIVE = "CINIC-10.tar.gz"


def read_cifar_pickles(archive: Path, members: tuple[str, ...], label_key: bytes) -> tuple:
    """Read pickled CIFAR batches from the official python tarball.

    Returns ``(images uint8 (N,3,32,32), labels int64)``; ``members`` are the batch file
    names (``data_batch_1``..., ``test_batch``) inside ``cifar-10-batches-py/``.
    """
    images, labels = [], []
    with tarfile.open(archive, "r:gz") as tar:
        by_name = {Path(m.name).name: m for m in tar.getmembers() if m.isfile()}
        for member in members:
            if member not in by_name:
                raise ValueError(f"{archive.name}: missing member {member!r}; not a CIFAR tarball?")
            batch = pickle.load(tar.extractfile(by_name[member]), encoding="bytes")
            images.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            labels.append(np.asarray(batch[label_key], dtype=np.int64))
    return np.concatenate(images), np.concatenate(labels)


def _cifar10_names(archive: Path) -> tuple[str, ...]:
    with tarfile.open(archive, "r:gz") as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith("batches.meta"))
        meta = pickle.load(tar.extractfile(member), encoding="bytes")
    return tuple(n.decode() for n in meta[b"label_names"])


def _build_cifar10(split: str, archives: Mapping[str, Path], params: Mapping[str, Any]) -> Split:
    if split == "cinic10":
        return read_cinic10_imagenet_test(archives[CINIC10_ARCHIVE], _cinic_provenance(params))
    archive = archives[CIFAR10_ARCHIVE]
    members = ("test_batch",) if split == "test" else tuple(f"data_batch_{i}" for i in range(1, 6))
    images, labels = read_cifar_pickles(archive, members, b"labels")
    provenance = {
        "source": params["archives"][CIFAR10_ARCHIVE]["url"],
        "checksum": params["archives"][CIFAR10_ARCHIVE]["checksum"],
        "conversion_version": CONVERSION_VERSION,
    }
    full = Split(images, labels, _cifar10_names(archive), provenance)
    return full if split == "test" else _holdout(full, split, params)


def _cinic_provenance(params: Mapping[str, Any]) -> dict[str, Any]:
    entry = params["archives"][CINIC10_ARCHIVE]
    return {
        "source": entry["url"],
        "checksum": entry["checksum"],
        "subset": "test fold, ImageNet-sourced images only (files not named cifar10-*)",
        "conversion_version": CONVERSION_VERSION,
    }


CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip


def read_cinic10_imagenet_test(archive: Path, provenance: dict[str, Any]) -> Split:
    """The ImageNet-sourced images of CINIC-10's test fold, labelled in CIFAR-10 order.

    CINIC-10 stores ``test/<class>/<file>.png``; files taken from CIFAR-10 are named
    ``cifar10-...`` and are left out. Images are read in sorted path order.
    """
    from PIL import Image

    rows: list[tuple[str, int, bytes]] = []
    with tarfile.open(archive, "r:*") as tar:
        for member in tar:
            parts = Path(member.name).parts
            if not member.isfile() or len(parts) < 3 or parts[-3] != "test":
                continue
            cls, fname = parts[-2], parts[-1]
            if fname.startswith("cifar10-") or not fname.endswith(".png"):
                continue
            if cls not in CIFAR10_CLASSES:
                raise ValueError(f"{archive.name}: unknown class folder {cls!r} in {member.name}")
            rows.append((member.name, CIFAR10_CLASSES.index(cls), tar.extractfile(member).read()))
    if not rows:
        raise ValueError(f"{archive.name}: no ImageNet-sourced test images found")
    rows.sort()
    images = np.stack(
        [np.asarray(Image.open(io.BytesIO(b)).convert("RGB"), dtype=np.uint8) for _, _, b in rows]
    ).transpose(0, 3, 1, 2)
    labels = np.array([label for _, label, _ in rows], dtype=np.int64)
    return Split(np.ascontiguousarray(images), labels, CIFAR10_CLASSES, provenance)


BUILDERS.register("cifar10")(
    DatasetBuilder(
        splits={
            "train": (CIFAR10_ARCHIVE,),
            "val": (CIFAR10_ARCHIVE,),
            "test": (CIFAR10_ARCHIVE,),
            "cinic10": (CINIC10_ARCHIVE,),
        },
        build=_build_cifar10,
    )
)
