"""ImageFolder datasets (ImageNet, ImageNet-100) streamed from a local directory.

ILSVRC-2012 is 1.28 M JPEGs (about 190 GB as 224 x 224 uint8 arrays): it does not fit the
canonical array file of :mod:`kdaug.data.canonical`. Its split file is an **index**
instead: the image paths relative to the dataset's root, their labels, the class names
(WordNet ids), the root it was listed from, the crop and resize sizes, and a digest of the
listing. :class:`ImageFolderSplit` reads it and decodes the JPEGs it is asked for (PIL,
on a thread pool) with torchvision's ImageNet protocol, which both papers' code uses:

- training rows: ``RandomResizedCrop(image_size)`` (scale 0.08-1, ratio 3/4-4/3, bilinear)
  and a horizontal flip with probability 0.5, every random number drawn from the epoch's
  seeded NumPy generator (:func:`train_draws`: a fixed count per image, so a batch's
  pixels are a pure function of the config, the seed and the epoch);
- evaluation rows: ``Resize(eval_resize)`` of the shorter side and
  ``CenterCrop(image_size)``.

Nothing downloads: ImageNet needs a login. The root holds ``train/<wnid>/*.JPEG`` and
``val/<wnid>/*.JPEG`` (the validation images sorted into class folders, as torchvision's
``ImageFolder`` and the common ``valprep.sh`` lay them out).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from kdaug.io import atomic_path

INDEX_KIND = "imagefolder"
INDEX_VERSION = 1
LAYOUT = "train/<wnid>/*.JPEG and val/<wnid>/*.JPEG"
IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")  # compared lower-cased (ImageNet's are .JPEG)
# torchvision's RandomResizedCrop defaults and its number of attempts.
SCALE = (0.08, 1.0)
RATIO = (3.0 / 4.0, 4.0 / 3.0)
ATTEMPTS = 10
# Uniform draws per training image: 4 per attempt (area, log-ratio, top, left) + the flip.
DRAWS_PER_IMAGE = 4 * ATTEMPTS + 1
DEFAULT_IMAGE_SIZE = 224
DEFAULT_EVAL_RESIZE = 256

# ImageNet-100: the 100 WordNet ids of Tian et al.'s CMC (github.com/HobbitLong/CMC,
# imagenet100.txt), the subset most ImageNet-100 work uses (see the protocol ledger:
# Wang et al.'s own list ships as a zip in their repository and could not be read).
CMC_IMAGENET100 = (
    "n02869837", "n01749939", "n02488291", "n02107142", "n13037406", "n02091831",
    "n04517823", "n04589890", "n03062245", "n01773797", "n01735189", "n07831146",
    "n07753275", "n03085013", "n04485082", "n02105505", "n01983481", "n02788148",
    "n03530642", "n04435653", "n02086910", "n02859443", "n13040303", "n03594734",
    "n02085620", "n02099849", "n01558993", "n04493381", "n02109047", "n04111531",
    "n02877765", "n04429376", "n02009229", "n01978455", "n02106550", "n01820546",
    "n01692333", "n07714571", "n02974003", "n02114855", "n03785016", "n03764736",
    "n03775546", "n02087046", "n07836838", "n04099969", "n04592741", "n03891251",
    "n02701002", "n03379051", "n02259212", "n07715103", "n03947888", "n04026417",
    "n02326432", "n03637318", "n01980166", "n02113799", "n02086240", "n03903868",
    "n02483362", "n04127249", "n02089973", "n03017168", "n02093428", "n02804414",
    "n02396427", "n04418357", "n02172182", "n01729322", "n02113978", "n03787032",
    "n02089867", "n02119022", "n03777754", "n04238763", "n02231487", "n03032252",
    "n02138441", "n02104029", "n03837869", "n03494278", "n04136333", "n03794056",
    "n03492542", "n02018207", "n04067472", "n03930630", "n03584829", "n02123045",
    "n04229816", "n02100583", "n03642806", "n04336792", "n03259280", "n02116738",
    "n02108089", "n03424325", "n01855672", "n02090622",
)  # fmt: skip
# Named class lists a config may select (``datasets.<name>.classes``); labels follow the
# sorted WordNet ids, as torchvision's ImageFolder numbers the folders it is given.
CLASS_LISTS: dict[str, tuple[str, ...]] = {"cmc_imagenet100": tuple(sorted(CMC_IMAGENET100))}


class MissingRootError(FileNotFoundError):
    """The dataset's image tree is not where the config says."""


def root_key(dataset: str) -> str:
    return f"datasets.{dataset}.root"


def check_root(root: str | os.PathLike[str] | None, dataset: str, parts: Sequence[str]) -> Path:
    """``root`` as a path holding the folders ``parts``, or :class:`MissingRootError`
    naming the config key and the expected layout."""
    key = root_key(dataset)
    hint = (
        f"set {key} (or data.mirror, with the tree under <mirror>/<mirror_folder>) to a "
        f"local directory laid out as {LAYOUT} (ImageNet cannot be downloaded without a "
        "login; sort the official val images into class folders, e.g. with valprep.sh)"
    )
    if not root:
        raise MissingRootError(f"{key} is not set: {hint}")
    path = Path(root)
    missing = [p for p in parts if not (path / p).is_dir()]
    if missing:
        raise MissingRootError(
            f"{key}: {os.fspath(path)} has no {', '.join(f'{p}/' for p in missing)} folder: {hint}"
        )
    return path


def class_list(spec: str | Sequence[str] | None) -> tuple[str, ...] | None:
    """A config's ``classes``: a named list of :data:`CLASS_LISTS`, explicit folder names
    (sorted, as labels follow them), or None (every folder)."""
    if spec is None:
        return None
    if isinstance(spec, str):
        if spec not in CLASS_LISTS:
            raise ValueError(f"unknown class list {spec!r} (known: {', '.join(CLASS_LISTS)})")
        return CLASS_LISTS[spec]
    return tuple(sorted(spec))


def list_images(
    root: Path, part: str, classes: Sequence[str] | None = None
) -> tuple[list[str], np.ndarray, tuple[str, ...]]:
    """``(relative paths, labels, class names)`` of ``root/part/<class>/<image>``, sorted by
    class then file name (torchvision's ImageFolder order). ``classes``: the folders to
    keep (all of them when None); a listed class without a folder is an error."""
    base = root / part
    folders = sorted(e.name for e in os.scandir(base) if e.is_dir())
    names = tuple(folders) if classes is None else tuple(classes)
    absent = sorted(set(names) - set(folders))
    if absent:
        raise FileNotFoundError(
            f"{os.fspath(base)}: no folder for {len(absent)} of the {len(names)} classes "
            f"({', '.join(absent[:5])}{', ...' if len(absent) > 5 else ''})"
        )
    paths: list[str] = []
    labels: list[int] = []
    for label, name in enumerate(names):
        files = sorted(
            e.name
            for e in os.scandir(base / name)
            if e.is_file() and e.name.lower().endswith(IMAGE_SUFFIXES)
        )
        paths += [f"{part}/{name}/{f}" for f in files]
        labels += [label] * len(files)
    if not paths:
        raise FileNotFoundError(f"{os.fspath(base)}: no images ({LAYOUT})")
    return paths, np.asarray(labels, dtype=np.int64), names


def listing_digest(paths: Sequence[str], labels: np.ndarray) -> str:
    """sha256 of the ``path<TAB>label`` lines: two indexes with one digest list the same
    images with the same labels."""
    h = hashlib.sha256()
    for p, y in zip(paths, labels.tolist(), strict=True):
        h.update(f"{p}\t{y}\n".encode())
    return "sha256:" + h.hexdigest()


# --------------------------------------------------------------------------- transforms


def train_draws(rng: np.random.Generator, n: int) -> np.ndarray:
    """The uniform numbers of ``n`` training images' crops and flips, (n, 41), drawn in
    one call whatever the images' sizes (so the generator's state after a batch does not
    depend on the files)."""
    return rng.random((n, DRAWS_PER_IMAGE))


def resized_crop_box(width: int, height: int, u: np.ndarray) -> tuple[int, int, int, int]:
    """torchvision's ``RandomResizedCrop.get_params`` with its random numbers taken from
    ``u`` (4 per attempt): ``(top, left, height, width)`` of the crop."""
    area = height * width
    log_ratio = (math.log(RATIO[0]), math.log(RATIO[1]))
    for a in range(ATTEMPTS):
        ua, ur, ui, uj = u[4 * a : 4 * a + 4]
        target_area = area * (SCALE[0] + (SCALE[1] - SCALE[0]) * ua)
        aspect = math.exp(log_ratio[0] + (log_ratio[1] - log_ratio[0]) * ur)
        w = round(math.sqrt(target_area * aspect))
        h = round(math.sqrt(target_area / aspect))
        if 0 < w <= width and 0 < h <= height:
            return int(ui * (height - h + 1)), int(uj * (width - w + 1)), h, w
    in_ratio = width / height  # fallback: the central crop of the clamped ratio
    if in_ratio < min(RATIO):
        w, h = width, round(width / min(RATIO))
    elif in_ratio > max(RATIO):
        h, w = height, round(height * max(RATIO))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def decode_image(path: Path, size: int, resize: int, draws: np.ndarray | None) -> np.ndarray:
    """One image as uint8 (3, size, size): the training transform when ``draws`` (one row
    of :func:`train_draws`) is given, else the evaluation transform."""
    import torch
    from PIL import Image
    from torchvision.transforms.v2 import InterpolationMode
    from torchvision.transforms.v2 import functional as F

    with Image.open(path) as im:
        img = im.convert("RGB")
    bilinear = InterpolationMode.BILINEAR
    if draws is None:
        img = F.center_crop(F.resize(img, [resize], bilinear, antialias=True), [size, size])
    else:
        top, left, h, w = resized_crop_box(img.width, img.height, draws[: 4 * ATTEMPTS])
        img = F.resized_crop(img, top, left, h, w, [size, size], bilinear, antialias=True)
        if draws[4 * ATTEMPTS] < 0.5:
            img = F.horizontal_flip(img)
    out = F.pil_to_tensor(img)
    assert out.dtype == torch.uint8 and out.shape == (3, size, size), out.shape
    return out.numpy()


def decode_threads() -> int:
    """Decoding threads: ``KDAUG_DECODE_THREADS``, else one per CPU core (PIL releases the
    GIL while it decodes)."""
    return max(1, int(os.environ.get("KDAUG_DECODE_THREADS", 0)) or os.cpu_count() or 1)


# --------------------------------------------------------------------------- the split


class LazyImages:
    """``split.images`` of an :class:`ImageFolderSplit`: the shape and dtype of the array
    it stands for, and rows decoded on demand (evaluation transform). Turning all of it
    into one array is refused: that is what streaming avoids."""

    dtype = np.dtype(np.uint8)
    ndim = 4

    def __init__(self, split: ImageFolderSplit) -> None:
        self._split = split
        self.shape = (len(split), 3, split.image_size, split.image_size)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows: Any) -> np.ndarray:
        index = np.arange(len(self))[rows]
        if np.ndim(index) == 0:
            return self._split.decode(index[None])[0]
        return self._split.decode(index)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        raise TypeError(self._split.cannot_load("its whole image array"))


@dataclass(frozen=True)
class ImageFolderSplit:
    """One split of an ImageFolder dataset: an index of image files, decoded on demand.

    It answers what consumers of :class:`kdaug.data.canonical.Split` read (``labels``,
    ``class_names``, ``num_classes``, ``len``, ``provenance``, ``soft_labels``,
    ``images.shape``, a few rows of ``images``) and decodes batches with :meth:`decode`.
    """

    root: Path
    paths: tuple[str, ...]
    labels: np.ndarray
    class_names: tuple[str, ...]
    provenance: dict[str, Any] = field(default_factory=dict)
    image_size: int = DEFAULT_IMAGE_SIZE
    eval_resize: int = DEFAULT_EVAL_RESIZE
    soft_labels: None = None

    def __post_init__(self) -> None:
        n = len(self.paths)
        if self.labels.shape != (n,):
            raise ValueError(f"labels must have shape ({n},); got {self.labels.shape}")
        if n and (self.labels.min() < 0 or self.labels.max() >= len(self.class_names)):
            raise ValueError(f"labels must lie in [0, {len(self.class_names)})")
        if self.eval_resize < self.image_size:
            raise ValueError(
                f"eval_resize {self.eval_resize} is smaller than image_size {self.image_size}"
            )

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return len(self.paths)

    @cached_property
    def images(self) -> LazyImages:
        return LazyImages(self)

    @property
    def dataset(self) -> str:
        return str(self.provenance.get("dataset", "this ImageFolder dataset"))

    def cannot_load(self, what: str) -> str:
        """The message of a consumer that needs ``what`` in memory."""
        return (
            f"{self.dataset} ({len(self)} images under {os.fspath(self.root)}) is streamed "
            f"from its image files, not held in memory: {what} cannot be loaded at once"
        )

    def subset(self, index: np.ndarray, note: str | None = None) -> ImageFolderSplit:
        provenance = dict(self.provenance)
        if note:
            provenance["subset"] = note
        return ImageFolderSplit(
            self.root,
            tuple(self.paths[i] for i in np.asarray(index, dtype=np.int64)),
            self.labels[index],
            self.class_names,
            provenance,
            self.image_size,
            self.eval_resize,
        )

    def decode(self, rows: np.ndarray, draws: np.ndarray | None = None) -> np.ndarray:
        """uint8 (len(rows), 3, S, S): rows ``rows`` under the evaluation transform, or the
        training transform with ``draws`` (:func:`train_draws`, one row per image)."""
        rows = np.asarray(rows, dtype=np.int64)
        if draws is not None and len(draws) != len(rows):
            raise ValueError(f"{len(draws)} rows of draws for {len(rows)} images")
        out = np.empty((len(rows), 3, self.image_size, self.image_size), dtype=np.uint8)

        def one(i: int) -> None:
            path = self.root / self.paths[rows[i]]
            try:
                out[i] = decode_image(
                    path, self.image_size, self.eval_resize, None if draws is None else draws[i]
                )
            except FileNotFoundError as e:
                raise FileNotFoundError(
                    f"{os.fspath(path)}: listed in the {self.dataset} index but missing; the "
                    "tree changed since the index was built (rebuild the split)"
                ) from e

        if len(rows) <= 1:
            for i in range(len(rows)):
                one(i)
        else:
            with ThreadPoolExecutor(min(decode_threads(), len(rows))) as pool:
                list(pool.map(one, range(len(rows))))
        return out


# --------------------------------------------------------------------------- the index file


def save_index(path: str | os.PathLike[str], split: ImageFolderSplit) -> None:
    """Write ``split`` as an index file (atomically, as :func:`kdaug.data.canonical.save_split`)."""
    arrays = {
        "kind": np.array(INDEX_KIND),
        "paths": np.array(split.paths, dtype=str),
        "labels": split.labels.astype(np.int64),
        "class_names": np.array(split.class_names, dtype=str),
        "root": np.array(os.fspath(split.root)),
        "sizes": np.array([split.image_size, split.eval_resize], dtype=np.int64),
        "provenance": np.array(
            json.dumps({**split.provenance, "index_version": INDEX_VERSION}, sort_keys=True)
        ),
    }
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)


def index_from_arrays(f: Mapping[str, np.ndarray]) -> ImageFolderSplit:
    """The split an index file's arrays describe (``np.load`` of :func:`save_index`'s file)."""
    size, resize = (int(v) for v in f["sizes"])
    return ImageFolderSplit(
        root=Path(str(f["root"])),
        paths=tuple(str(p) for p in f["paths"]),
        labels=f["labels"],
        class_names=tuple(str(c) for c in f["class_names"]),
        provenance=json.loads(str(f["provenance"])),
        image_size=size,
        eval_resize=resize,
    )


def load_index(path: str | os.PathLike[str]) -> ImageFolderSplit:
    """Read an index written by :func:`save_index`."""
    with np.load(Path(path), allow_pickle=False) as f:
        return index_from_arrays(f)


def build_index(
    root: Path,
    part: str,
    params: Mapping[str, Any],
    dataset: str,
) -> ImageFolderSplit:
    """The index of ``root/part`` with the dataset's class list and sizes."""
    paths, labels, names = list_images(root, part, class_list(params.get("classes")))
    provenance = {
        "dataset": dataset,
        "source": f"ImageFolder tree {os.fspath(root)} ({LAYOUT})",
        "part": f"{part}/ folder",
        "images": len(paths),
        "classes": params.get("classes") if isinstance(params.get("classes"), str) else None,
        "listing": listing_digest(paths, labels),
    }
    return ImageFolderSplit(
        root,
        tuple(paths),
        labels,
        names,
        provenance,
        int(params.get("image_size", DEFAULT_IMAGE_SIZE)),
        int(params.get("eval_resize", DEFAULT_EVAL_RESIZE)),
    )
