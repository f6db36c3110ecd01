"""Dataset builders: each turns official archives into canonical splits.

A builder is registered under a name the config uses (``datasets.<name>.builder``). It
declares, per split, the *roles* of the archives it reads (``images``, ``labels``, ...);
the dataset's config section maps each role to an archive key of ``archives:``. So a new
dataset in an existing format (Fashion-MNIST beside MNIST) is config only, and a new
format is one builder here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kdaug.data import formats
from kdaug.data.canonical import Split, stratified_holdout
from kdaug.registry import Registry

# Bump when a builder's output for the same archives changes (it is in every provenance).
CONVERSION_VERSION = "2"

BuildFn = Callable[[str, Mapping[str, Path], Mapping[str, Any]], Split]


def _no_pools(params: Mapping[str, Any]) -> dict[str, int]:
    return {}


@dataclass(frozen=True)
class DatasetBuilder:
    """How to make each split of one dataset, and what is known of its data without the
    archives (so that ``kdaug.plan.check_config`` can reject a config before any job runs).
    """

    splits: Mapping[str, tuple[str, ...]]  # split name -> archive roles it reads
    build: BuildFn
    channels: int | None = None  # image channels of every split (None: format-dependent)
    # Class names in label order; None where only the archive (or the config's
    # ``class_names``, for IDX) says.
    class_names: tuple[str, ...] | None = None
    # Holdout size parameter (``val_size``, ``test_size``) -> how many images it is drawn
    # from, given the dataset's params; a parameter missing here is checked when built.
    holdout_pools: Callable[[Mapping[str, Any]], dict[str, int]] = _no_pools
    # Its splits are indexes of image files decoded on demand (too big for one array):
    # it reads a local tree (``datasets.<name>.root``), not archives, and a student never
    # reads cached teacher logits (every epoch crops the rows anew).
    streams: bool = False

    def roles_for(self, split: str) -> tuple[str, ...]:
        if split not in self.splits:
            raise KeyError(f"unknown split {split!r}; this dataset has {sorted(self.splits)}")
        return self.splits[split]

    @property
    def roles(self) -> set[str]:
        return {role for roles in self.splits.values() for role in roles}


BUILDERS: Registry[DatasetBuilder] = Registry("dataset builder")


def register_builder(
    name: str,
) -> Callable[[Callable[[], DatasetBuilder]], Callable[[], DatasetBuilder]]:
    """Decorator: register the :class:`DatasetBuilder` that the decorated factory returns."""

    def add(factory: Callable[[], DatasetBuilder]) -> Callable[[], DatasetBuilder]:
        BUILDERS.register(name)(factory())
        return factory

    return add


def build_split(
    builder: str, split: str, files: Mapping[str, Path], params: Mapping[str, Any]
) -> Split:
    """Build ``split`` with the named builder from ``files`` (archive role -> path)."""
    entry = BUILDERS.get(builder)
    missing = set(entry.roles_for(split)) - set(files)
    if missing:
        raise KeyError(f"split {split!r} needs archives for roles {sorted(missing)}")
    return entry.build(split, files, params)


def _provenance(params: Mapping[str, Any], *roles: str, **extra: Any) -> dict[str, Any]:
    """Where a split came from: each archive's URL and checksum, plus builder notes."""
    archives = params.get("archive_files", {})
    sources = {r: dict(archives[r]) for r in roles}
    return {"sources": sources, "conversion_version": CONVERSION_VERSION, **extra}


def _holdout(full: Split, split: str, params: Mapping[str, Any]) -> Split:
    """Carve the validation split out of the official training data (never from test).

    ``val_size: 0`` is the papers' protocol: ``train`` is the whole training data and
    ``val`` an empty split (training then validates nothing; only ``last`` weights mean
    anything, which ``kdaug.plan.check_config`` enforces)."""
    if int(params["val_size"]) == 0:
        if split == "val":
            return full.subset(np.arange(0), "val: empty (val_size 0: no holdout)")
        note = f"{split}: all {len(full)} training images (val_size 0: no holdout)"
        # The same arrays, not a copy (Tiny ImageNet's train split is 1.2 GB).
        return Split(
            full.images,
            full.labels,
            full.class_names,
            {**full.provenance, "subset": note},
            full.soft_labels,
        )
    kept, held = stratified_holdout(full.labels, int(params["val_size"]), int(params["split_seed"]))
    note = f"{split}: stratified holdout of {len(held)} (seed {params['split_seed']})"
    return full.subset(held if split == "val" else kept, note)


def _pad(images: np.ndarray, size: int | None) -> tuple[np.ndarray, dict[str, Any]]:
    """Zero-pad images symmetrically to ``size`` x ``size`` (MNIST's 28 -> 32 for AlexNet)."""
    if not size or images.shape[-1] == size:
        return images, {}
    h, w = images.shape[-2:]
    if h > size or w > size:
        raise ValueError(f"pad_to {size} is smaller than the images ({h}x{w})")
    top, left = (size - h) // 2, (size - w) // 2
    pad = ((0, 0), (0, 0), (top, size - h - top), (left, size - w - left))
    return np.pad(images, pad), {"padding": f"zero-padded {h}x{w} -> {size}x{size}"}


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


# What the bundled digits are, without loading scikit-learn (checked by the test suite).
DIGITS_IMAGES = 1797
DIGITS_CLASSES = tuple(str(n) for n in range(10))


def _digits_pools(params: Mapping[str, Any]) -> dict[str, int]:
    """The test split is held out of every image, the val split out of what remains."""
    test = params.get("test_size")
    rest = DIGITS_IMAGES - int(test) if isinstance(test, int) else DIGITS_IMAGES
    return {"test_size": DIGITS_IMAGES, "val_size": rest}


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


def _shifted(test: Split, params: Mapping[str, Any]) -> Split:
    """``test`` under :func:`shift_images` with the dataset's ``shift`` parameters."""
    shift = params.get("shift")
    if shift is None:
        raise ValueError("test_shifted needs datasets.<name>.shift: {seed, contrast, noise_std}")
    images = shift_images(test.images, int(shift["seed"]), shift["contrast"], shift["noise_std"])
    provenance = {**test.provenance, "shift": dict(shift)}
    return Split(images, test.labels, test.class_names, provenance)


def neighbour_vote_labels(
    queries: np.ndarray, references: np.ndarray, reference_labels: np.ndarray, k: int, classes: int
) -> np.ndarray:
    """Soft labels: the class distribution of each query's ``k`` nearest references
    (Euclidean distance on raw pixels; ties broken by reference order)."""
    q = queries.reshape(len(queries), -1).astype(np.float64)
    r = references.reshape(len(references), -1).astype(np.float64)
    dist = (q**2).sum(1)[:, None] - 2 * q @ r.T + (r**2).sum(1)[None, :]
    nearest = np.argsort(dist, axis=1, kind="stable")[:, :k]
    votes = np.zeros((len(q), classes))
    np.add.at(votes, (np.arange(len(q))[:, None], reference_labels[nearest]), 1.0)
    return votes / k


@register_builder("digits")
def _digits_builder() -> DatasetBuilder:
    """The offline demo. ``test_shifted`` stands in for CINIC-10 (a documented corruption);
    ``test_human`` stands in for CIFAR-10H: the test images with soft labels from a vote of
    their ``human_k`` nearest training images, a crowd of look-alikes in place of human
    annotators (digits have no annotator data)."""

    def build(split: str, files: Mapping[str, Path], params: Mapping[str, Any]) -> Split:
        full = _digits_full(int(params["image_size"]))
        seed = int(params["split_seed"])
        train_idx, test_idx = stratified_holdout(full.labels, int(params["test_size"]), seed)
        if split not in {"test", "test_shifted", "test_human"}:
            return _holdout(full.subset(train_idx), split, params)
        test = full.subset(test_idx, f"test: stratified holdout of {len(test_idx)} (seed {seed})")
        if split == "test":
            return test
        if split == "test_human":
            k = int(params["human_k"])
            train = full.subset(train_idx)
            soft = neighbour_vote_labels(
                test.images, train.images, train.labels, k, full.num_classes
            )
            note = f"soft labels: vote of the {k} nearest training images (stand-in for CIFAR-10H)"
            provenance = {**test.provenance, "soft_labels": note}
            return Split(test.images, test.labels, test.class_names, provenance, soft)
        return _shifted(test, params)

    splits = ("train", "val", "test", "test_shifted", "test_human")
    return DatasetBuilder(
        dict.fromkeys(splits, ()), build, 1, DIGITS_CLASSES, holdout_pools=_digits_pools
    )


# --------------------------------------------------------------------------- CIFAR-10 family

CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
# CIFAR-100's fine label names in label order (the archive's meta file; the builder reads
# them from there, this copy lets a config's V-score groups be checked without it).
CIFAR100_CLASSES = (
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle",
    "bottle", "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle",
    "caterpillar", "cattle", "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch",
    "crab", "crocodile", "cup", "dinosaur", "dolphin", "elephant", "flatfish", "forest", "fox",
    "girl", "hamster", "house", "kangaroo", "keyboard", "lamp", "lawn_mower", "leopard", "lion",
    "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain", "mouse", "mushroom",
    "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree",
    "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray", "road",
    "rocket", "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake",
    "spider", "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank",
    "telephone", "television", "tiger", "tractor", "train", "trout", "tulip", "turtle",
    "wardrobe", "whale", "willow_tree", "wolf", "woman", "worm",
)  # fmt: skip
CIFAR_TRAIN_IMAGES = 50_000  # the official training part of CIFAR-10 and CIFAR-100


def _cifar_pools(params: Mapping[str, Any]) -> dict[str, int]:
    return {"val_size": CIFAR_TRAIN_IMAGES}


def _cifar10_official(split: str, files: Mapping[str, Path], params: Mapping[str, Any]) -> Split:
    archive = files["cifar10"]
    test = split in {"test", "cifar10h"}
    members = ("test_batch",) if test else tuple(f"data_batch_{i}" for i in range(1, 6))
    images, labels = formats.read_cifar_pickles(archive, members, "labels")
    names = formats.read_cifar_class_names(archive, "batches.meta", "label_names")
    full = Split(images, labels, names, _provenance(params, "cifar10"))
    return full if test else _holdout(full, split, params)


@register_builder("cifar10")
def _cifar10_builder() -> DatasetBuilder:
    """CIFAR-10 (train/val/test), CINIC-10's ImageNet-sourced test images, and the CIFAR-10
    test set with CIFAR-10H's human label distributions as ``soft_labels``."""

    def build(split: str, files: Mapping[str, Path], params: Mapping[str, Any]) -> Split:
        if split == "cinic10":
            images, labels = formats.read_cinic_imagenet_fold(
                files["cinic10"], "test", CIFAR10_CLASSES
            )
            note = "CINIC-10 test fold, ImageNet-sourced images only (files not named cifar10-*)"
            return Split(
                images, labels, CIFAR10_CLASSES, _provenance(params, "cinic10", subset=note)
            )
        base = _cifar10_official(split, files, params)
        if split != "cifar10h":
            return base
        probs = formats.read_npy(files["cifar10h"], (base.num_classes,))
        if probs.shape[0] != len(base) or not np.allclose(probs.sum(axis=1), 1.0, atol=1e-6):
            raise formats.FormatError(
                f"{files['cifar10h'].name}: expected {len(base)} rows of probabilities summing "
                f"to 1 (CIFAR-10 test order); got shape {probs.shape}"
            )
        provenance = _provenance(params, "cifar10", "cifar10h")
        return Split(
            base.images, base.labels, base.class_names, provenance, probs.astype(np.float64)
        )

    return DatasetBuilder(
        {
            "train": ("cifar10",),
            "val": ("cifar10",),
            "test": ("cifar10",),
            "cinic10": ("cinic10",),
            "cifar10h": ("cifar10", "cifar10h"),
        },
        build,
        3,
        CIFAR10_CLASSES,
        holdout_pools=_cifar_pools,
    )


@register_builder("cifar100")
def _cifar100_builder() -> DatasetBuilder:
    """CIFAR-100 with its 100 fine labels."""

    def build(split: str, files: Mapping[str, Path], params: Mapping[str, Any]) -> Split:
        archive = files["cifar100"]
        member = "test" if split == "test" else "train"
        images, labels = formats.read_cifar_pickles(archive, (member,), "fine_labels")
        names = formats.read_cifar_class_names(archive, "meta", "fine_label_names")
        full = Split(images, labels, names, _provenance(params, "cifar100"))
        return full if split == "test" else _holdout(full, split, params)

    splits = {s: ("cifar100",) for s in ("train", "val", "test")}
    return DatasetBuilder(splits, build, 3, CIFAR100_CLASSES, holdout_pools=_cifar_pools)


# --------------------------------------------------------------------------- IDX (MNIST family)


@register_builder("idx")
def _idx_builder() -> DatasetBuilder:
    """MNIST-format datasets (MNIST, Fashion-MNIST): four IDX files; class names from the
    config (IDX carries none); optional ``pad_to`` zero-pads the 28x28 images."""
    pairs = {"train": ("train_images", "train_labels"), "test": ("test_images", "test_labels")}

    def build(split: str, files: Mapping[str, Path], params: Mapping[str, Any]) -> Split:
        if split == "test_shifted":
            return _shifted(build("test", files, params), params)
        roles = pairs["test" if split == "test" else "train"]
        images, labels = formats.read_idx_pair(files[roles[0]], files[roles[1]])
        images, padding = _pad(images, params.get("pad_to"))
        names = tuple(params.get("class_names") or ())
        if len(names) <= int(labels.max()):
            raise ValueError(
                f"datasets.<name>.class_names lists {len(names)} classes; "
                f"the labels go up to {int(labels.max())}"
            )
        full = Split(images, labels, names, _provenance(params, *roles, **padding))
        return full if split == "test" else _holdout(full, split, params)

    # One channel; class names and sizes depend on the files (MNIST, Fashion-MNIST, ...).
    # test_shifted: the test images under the demo's corruption (``shift`` parameters), a
    # shifted set for data that has none of its own (Fashion-MNIST has no CINIC-10).
    splits = {"train": pairs["train"], "val": pairs["train"], "test": pairs["test"]}
    return DatasetBuilder({**splits, "test_shifted": pairs["test"]}, build, 1)


# --------------------------------------------------------------------------- Tiny ImageNet


@register_builder("tiny_imagenet")
def _tiny_imagenet_builder() -> DatasetBuilder:
    """Tiny ImageNet 200: ``train`` (and our ``val`` holdout) from the official train part,
    ``test`` from the official labelled val part (the official test part has no labels)."""

    def build(split: str, files: Mapping[str, Path], params: Mapping[str, Any]) -> Split:
        part = "val" if split == "test" else "train"
        images, labels, names = formats.read_tiny_imagenet(files["tiny_imagenet"], part)
        note = {"part": f"official {part} part"}
        full = Split(images, labels, names, _provenance(params, "tiny_imagenet", **note))
        return full if split == "test" else _holdout(full, split, params)

    splits = {s: ("tiny_imagenet",) for s in ("train", "val", "test")}
    return DatasetBuilder(
        splits, build, 3, holdout_pools=lambda params: {"val_size": TINY_IMAGENET_TRAIN_IMAGES}
    )


TINY_IMAGENET_TRAIN_IMAGES = 100_000  # 500 per class x 200 classes in the official train part


# --------------------------------------------------------------------------- ImageFolder trees


@register_builder("imagefolder")
def _imagefolder_builder() -> DatasetBuilder:
    """ImageNet (ILSVRC-2012) and its subsets (ImageNet-100) from a local ImageFolder tree
    (``datasets.<name>.root``; nothing downloads): ``train`` (and our ``val`` holdout)
    index ``<root>/train``, ``test`` indexes ``<root>/val`` (the official validation
    images, labelled). ``classes`` names the class subset; ``image_size`` and
    ``eval_resize`` the crop and resize sizes (224 and 256). The split files are indexes
    (:mod:`kdaug.data.imagefolder`): images are decoded when a batch asks for them."""

    def build(split: str, files: Mapping[str, Path], params: Mapping[str, Any]) -> Split:
        from kdaug.data import imagefolder

        dataset = str(params.get("dataset", "imagefolder"))
        part = "val" if split == "test" else "train"
        root = imagefolder.check_root(params.get("root"), dataset, (part,))
        full = imagefolder.build_index(root, part, params, dataset)
        if split == "test":
            return full  # type: ignore[return-value]
        size = int(params["val_size"])
        if size == 0:
            if split == "val":
                return full.subset(np.arange(0), "val: empty (val_size 0: no holdout)")  # type: ignore[return-value]
            return full.subset(  # type: ignore[return-value]
                np.arange(len(full)), f"{split}: all {len(full)} training images (val_size 0)"
            )
        kept, held = stratified_holdout(full.labels, size, int(params["split_seed"]))
        note = f"{split}: stratified holdout of {len(held)} (seed {params['split_seed']})"
        return full.subset(held if split == "val" else kept, note)  # type: ignore[return-value]

    return DatasetBuilder(dict.fromkeys(("train", "val", "test"), ()), build, 3, streams=True)
