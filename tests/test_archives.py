"""The official archive formats, end to end: small archives written in each exact official
layout (CIFAR-10/100 python tarballs, CINIC-10's folder tree, MNIST-style IDX, Tiny
ImageNet's zip, CIFAR-10H's .npy) are fetched through a mirror, verified and turned into
canonical splits; bad downloads fail loudly. The real Fashion-MNIST (Debian's
dataset-fashion-mnist) and CIFAR-10H files are checked too."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import tarfile
import zipfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from kdaug.data.canonical import Split
from kdaug.data.datasets import CIFAR10_CLASSES, build_split, shift_images
from kdaug.data.download import ChecksumError, fetch_archive, verify
from kdaug.data.formats import FormatError, read_idx, read_npy

ROOT = Path(__file__).resolve().parents[1]
ARCHIVES = yaml.safe_load((ROOT / "config/config.yaml").read_text())["archives"]
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
CIFAR10H_REAL = Path(__file__).resolve().parents[2] / "shared/data/cifar10h-probs.npy"
FASHION_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip

CIFAR10_KEY = "cifar10/cifar-10-python.tar.gz"
CIFAR100_KEY = "cifar100/cifar-100-python.tar.gz"
CINIC_KEY = "cinic10/CINIC-10.tar.gz"
CIFAR10H_KEY = "cifar10h/cifar10h-probs.npy"
TINY_KEY = "tiny-imagenet/tiny-imagenet-200.zip"
IDX_KEYS = {
    "train_images": "fashion-mnist/train-images-idx3-ubyte.gz",
    "train_labels": "fashion-mnist/train-labels-idx1-ubyte.gz",
    "test_images": "fashion-mnist/t10k-images-idx3-ubyte.gz",
    "test_labels": "fashion-mnist/t10k-labels-idx1-ubyte.gz",
}


# ----------------------------------------------------------------------------- helpers


def md5_of(path: Path) -> str:
    return "md5:" + hashlib.md5(path.read_bytes()).hexdigest()


def params_for(files: Mapping[str, Path], keys: Mapping[str, str], **extra: object) -> dict:
    """Builder params: holdout settings plus each role's provenance (its real md5)."""
    archive_files = {
        role: {"key": keys[role], "url": f"https://example.invalid/{keys[role]}", "checksum": c}
        for role, c in ((r, md5_of(p)) for r, p in files.items())
    }
    return {"val_size": 10, "split_seed": 0, "archive_files": archive_files, **extra}


def write_tar_gz(path: Path, members: Mapping[str, bytes]) -> Path:
    """A gzipped tar with each member's parent folders as directory entries, in the order
    given (the official tarballs are not sorted)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        seen: set[str] = set()
        for name, data in members.items():
            parts = name.split("/")[:-1]
            for depth in range(1, len(parts) + 1):
                folder = "/".join(parts[:depth])
                if folder not in seen:
                    seen.add(folder)
                    info = tarfile.TarInfo(folder)
                    info.type, info.mode = tarfile.DIRTYPE, 0o755
                    tar.addfile(info)
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def write_gz(path: Path, data: bytes, mtime: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data, mtime=mtime))
    return path


def truncate(path: Path, fraction: float = 0.6) -> bytes:
    """Cut ``path`` short, as an interrupted download would; returns what is left."""
    raw = path.read_bytes()[: int(path.stat().st_size * fraction)]
    path.write_bytes(raw)
    return raw


def files_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def row_bytes(images: np.ndarray) -> list[bytes]:
    """One identity per image (the fake images are random, so all distinct)."""
    return [img.tobytes() for img in images]


def cifar_pickle(**entries: object) -> bytes:
    """A CIFAR batch/meta dict as the official python-2 pickles load: bytes keys."""
    return pickle.dumps({k.encode(): v for k, v in entries.items()}, protocol=2)


def random_rows(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` CIFAR rows: uint8 (n, 3072), the R, G, B 32x32 planes one after another."""
    return rng.integers(0, 256, (n, 3072), dtype=np.uint8)


def make_cifar10(
    path: Path, train_labels: np.ndarray, test_labels: np.ndarray, seed: int = 0
) -> dict[str, np.ndarray]:
    """``cifar-10-python.tar.gz``: five ``data_batch_*`` (``train_labels`` split evenly),
    ``test_batch``, ``batches.meta``; returns the rows written."""
    rng = np.random.default_rng(seed)
    batches = np.array_split(np.arange(len(train_labels)), 5)
    rows = {f"data_batch_{i}": random_rows(rng, len(b)) for i, b in enumerate(batches, 1)}
    rows["test_batch"] = random_rows(rng, len(test_labels))
    labels = {f"data_batch_{i}": train_labels[b] for i, b in enumerate(batches, 1)}
    labels["test_batch"] = test_labels
    blobs = {
        name: cifar_pickle(
            batch_label=f"batch {name}".encode(),
            labels=[int(x) for x in labels[name]],
            data=rows[name],
            filenames=[f"img_{j}.png".encode() for j in range(len(labels[name]))],
        )
        for name in rows
    }
    blobs["batches.meta"] = cifar_pickle(
        num_cases_per_batch=len(batches[0]),
        label_names=[n.encode() for n in CIFAR10_CLASSES],
        num_vis=3072,
    )
    blobs["readme.html"] = b"<html>CIFAR-10</html>"
    order = ("data_batch_4", "readme.html", "test_batch", "data_batch_3", "batches.meta",
             "data_batch_2", "data_batch_5", "data_batch_1")  # fmt: skip
    write_tar_gz(path, {f"cifar-10-batches-py/{name}": blobs[name] for name in order})
    return rows


def cifar10_labels(n_train: int = 100, n_test: int = 30) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    return rng.permutation(np.arange(n_train) % 10), np.arange(n_test) % 10


def make_idx(array: np.ndarray) -> bytes:
    """IDX bytes: two zero bytes, 0x08 (unsigned byte), the dimension count, big-endian
    uint32 dims, then the data (MNIST's images magic 0x00000803, labels 0x00000801)."""
    dims = b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return bytes([0, 0, 0x08, array.ndim]) + dims + np.ascontiguousarray(array, np.uint8).tobytes()


def make_idx_set(
    folder: Path, n_train: int = 40, n_test: int = 20, seed: int = 0
) -> tuple[dict[str, Path], dict[str, np.ndarray]]:
    """The four MNIST-layout .gz files under ``folder/<key>``; images are 1..255 (never 0)
    so zero padding is recognisable. Returns role -> path and role -> array."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train_images": rng.integers(1, 256, (n_train, 28, 28), dtype=np.uint8),
        "train_labels": rng.permutation(np.arange(n_train) % 10).astype(np.uint8),
        "test_images": rng.integers(1, 256, (n_test, 28, 28), dtype=np.uint8),
        "test_labels": (np.arange(n_test) % 10).astype(np.uint8),
    }
    paths = {role: write_gz(folder / IDX_KEYS[role], make_idx(a)) for role, a in arrays.items()}
    return paths, arrays


def encoded_image(rgb: tuple[int, int, int], size: int, fmt: str) -> bytes:
    """A solid-colour RGB image as PNG or JPEG bytes."""
    buf = io.BytesIO()
    Image.new("RGB", (size, size), rgb).save(buf, format=fmt)
    return buf.getvalue()


def fetch(key: str, mirror: Path, downloads: Path, checksum: str) -> Path:
    """Fetch ``key`` from ``mirror`` into ``downloads/<key>``; return where it landed."""
    dest = downloads / key
    fetch_archive(key, f"https://example.invalid/{key}", checksum, dest, mirror)
    return dest


def real_data(path: Path, how_to_get_it: str) -> Path:
    """Real data must be tested in CI: skip only on a developer machine without it."""
    if path.exists():
        return path
    if os.environ.get("CI"):
        pytest.fail(f"{path} is missing: {how_to_get_it}")
    pytest.skip(f"{path} is missing ({how_to_get_it})")


# ----------------------------------------------------------------------------- CIFAR-10


@pytest.fixture
def cifar10(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray], np.ndarray, np.ndarray]:
    train_labels, test_labels = cifar10_labels()
    path = tmp_path / CIFAR10_KEY
    rows = make_cifar10(path, train_labels, test_labels)
    return path, rows, train_labels, test_labels


def cifar10_splits(archive: Path, *splits: str) -> Iterator[Split]:
    params = params_for({"cifar10": archive}, {"cifar10": CIFAR10_KEY})
    return (build_split("cifar10", s, {"cifar10": archive}, params) for s in splits)


def test_cifar10_test_split_is_test_batch(cifar10) -> None:
    path, rows, _, test_labels = cifar10
    (test,) = cifar10_splits(path, "test")
    assert test.images.shape == (30, 3, 32, 32) and test.images.dtype == np.uint8
    np.testing.assert_array_equal(test.images[0], rows["test_batch"][0].reshape(3, 32, 32))
    # Row-major planes: byte 1024 + 5*32 + 7 is green, row 5, column 7.
    assert test.images[0, 1, 5, 7] == rows["test_batch"][0, 1024 + 5 * 32 + 7]
    np.testing.assert_array_equal(test.images.reshape(30, -1), rows["test_batch"])
    np.testing.assert_array_equal(test.labels, test_labels)
    assert test.class_names == CIFAR10_CLASSES


def test_cifar10_val_is_a_disjoint_stratified_holdout_of_train(cifar10) -> None:
    path, rows, train_labels, _ = cifar10
    train, val = cifar10_splits(path, "train", "val")
    assert (len(train), len(val)) == (90, 10)
    assert train.images.shape[1:] == (3, 32, 32)
    np.testing.assert_array_equal(np.bincount(val.labels, minlength=10), np.ones(10))
    # Batches 1..5 in that order (the tarball lists them shuffled), never the test batch.
    source = np.concatenate([rows[f"data_batch_{i}"] for i in range(1, 6)])
    position = {b: i for i, b in enumerate(row_bytes(source.reshape(-1, 3, 32, 32)))}
    train_pos = [position[b] for b in row_bytes(train.images)]
    val_pos = [position[b] for b in row_bytes(val.images)]
    assert train_pos == sorted(train_pos) and val_pos == sorted(val_pos)
    assert sorted(train_pos + val_pos) == list(range(100))  # disjoint and complete
    np.testing.assert_array_equal(train.labels, train_labels[train_pos])
    np.testing.assert_array_equal(val.labels, train_labels[val_pos])
    assert train.provenance["sources"]["cifar10"]["checksum"] == md5_of(path)


# ----------------------------------------------------------------------------- CIFAR-100


def make_cifar100(path: Path, n_train: int, n_test: int, seed: int = 0) -> dict[str, dict]:
    """``cifar-100-python.tar.gz``: ``train``, ``test``, ``meta`` (and ``file.txt~``);
    fine labels cycle through all 100 classes, coarse labels are fine // 5."""
    rng = np.random.default_rng(seed)
    written = {}
    for name, n in (("train", n_train), ("test", n_test)):
        fine = rng.permutation(np.arange(n) % 100)
        written[name] = {"data": random_rows(rng, n), "fine": fine, "coarse": fine // 5}
    blobs = {
        name: cifar_pickle(
            filenames=[f"f{j}.png".encode() for j in range(len(w["fine"]))],
            batch_label=name.encode(),
            fine_labels=[int(x) for x in w["fine"]],
            coarse_labels=[int(x) for x in w["coarse"]],
            data=w["data"],
        )
        for name, w in written.items()
    }
    blobs["meta"] = cifar_pickle(
        fine_label_names=[f"fine{i:02d}".encode() for i in range(100)],
        coarse_label_names=[f"coarse{i:02d}".encode() for i in range(20)],
    )
    blobs["file.txt~"] = b""
    write_tar_gz(path, {f"cifar-100-python/{n}": b for n, b in blobs.items()})
    return written


def test_cifar100_uses_fine_labels_and_names(tmp_path: Path) -> None:
    path = tmp_path / CIFAR100_KEY
    written = make_cifar100(path, n_train=200, n_test=50)
    files = {"cifar100": path}
    params = params_for(files, {"cifar100": CIFAR100_KEY}, val_size=100)
    train, val, test = (build_split("cifar100", s, files, params) for s in ("train", "val", "test"))
    assert test.class_names == tuple(f"fine{i:02d}" for i in range(100))
    np.testing.assert_array_equal(test.labels, written["test"]["fine"])
    np.testing.assert_array_equal(test.images.reshape(50, -1), written["test"]["data"])
    assert (len(train), len(val)) == (100, 100)
    np.testing.assert_array_equal(np.bincount(val.labels, minlength=100), np.ones(100))
    by_image = dict(zip(row_bytes(written["train"]["data"]), written["train"]["fine"], strict=True))
    for split in (train, val):
        flat = split.images.reshape(len(split), -1)
        np.testing.assert_array_equal(split.labels, [by_image[b] for b in row_bytes(flat)])


# ----------------------------------------------------------------------------- CINIC-10

CINIC_IMAGENET = {  # test-fold ImageNet files per class (names as in CINIC-10)
    "truck": ["n03417042_2.png", "n03417042_11.png"],
    "cat": ["n02123045_7.png"],
    "airplane": ["n02691156_30.png", "n02691156_4.png"],
}


def cinic_colour(fold: int, cls: str, index: int) -> tuple[int, int, int]:
    """A lossless PNG colour that identifies fold, class and file."""
    return fold, CIFAR10_CLASSES.index(cls), index


def make_cinic(path: Path) -> list[tuple[str, tuple[int, int, int]]]:
    """``CINIC-10.tar.gz``: ``train|valid|test/<class>/<file>.png``, with CIFAR-10-sourced
    ``cifar10-*.png`` files beside the ImageNet ones; members written in a shuffled order.
    Returns the ImageNet test files (path, colour)."""
    members: dict[str, bytes] = {"README.md": b"CINIC-10"}
    expected = []
    for fold_id, fold in enumerate(("train", "valid", "test")):
        for cls, names in CINIC_IMAGENET.items():
            cifar_name = f"{fold}/{cls}/cifar10-{fold}-{fold_id}.png"
            members[cifar_name] = encoded_image((255, 255, 255), 32, "PNG")
            for i, name in enumerate(names):
                colour = cinic_colour(fold_id, cls, i)
                members[f"{fold}/{cls}/{name}"] = encoded_image(colour, 32, "PNG")
                if fold == "test":
                    expected.append((f"{fold}/{cls}/{name}", colour))
    shuffled = dict(reversed(members.items()))
    write_tar_gz(path, shuffled)
    return expected


def test_cinic10_reads_imagenet_test_images_in_sorted_order(tmp_path: Path) -> None:
    path = tmp_path / CINIC_KEY
    expected = sorted(make_cinic(path))
    files = {"cinic10": path}
    split = build_split("cifar10", "cinic10", files, params_for(files, {"cinic10": CINIC_KEY}))
    assert split.images.shape == (5, 3, 32, 32)
    assert split.class_names == CIFAR10_CLASSES
    colours = [tuple(int(v) for v in img[:, 0, 0]) for img in split.images]
    assert colours == [c for _, c in expected]  # sorted paths; no cifar10-*, no train/valid
    assert (split.images == split.images[:, :, :1, :1]).all()  # each image one solid colour
    names = [p.split("/")[1] for p, _ in expected]
    np.testing.assert_array_equal(split.labels, [CIFAR10_CLASSES.index(n) for n in names])
    assert split.labels.tolist() == [0, 0, 3, 9, 9]


# ----------------------------------------------------------------------------- IDX


def idx_params(paths: Mapping[str, Path], **extra: object) -> dict:
    return params_for(paths, IDX_KEYS, class_names=list(FASHION_CLASSES), **extra)


def test_idx_pair_padded_to_32(tmp_path: Path) -> None:
    paths, arrays = make_idx_set(tmp_path)
    params = idx_params(paths, pad_to=32)
    test = build_split("idx", "test", paths, params)
    assert test.images.shape == (20, 1, 32, 32)
    np.testing.assert_array_equal(test.images[:, 0, 2:30, 2:30], arrays["test_images"])
    border = test.images.copy()
    border[:, :, 2:30, 2:30] = 0
    assert not border.any()  # two zero rows/columns on every side
    np.testing.assert_array_equal(test.labels, arrays["test_labels"])
    assert test.labels.dtype == np.int64 and test.class_names == FASHION_CLASSES
    assert test.provenance["padding"] == "zero-padded 28x28 -> 32x32"
    train, val = (build_split("idx", s, paths, params) for s in ("train", "val"))
    assert (len(train), len(val)) == (30, 10)
    assert train.images.shape[1:] == (1, 32, 32)
    source = row_bytes(arrays["train_images"])
    held = set(row_bytes(val.images[:, 0, 2:30, 2:30]))
    kept = set(row_bytes(train.images[:, 0, 2:30, 2:30]))
    assert not held & kept and held | kept == set(source)


def test_idx_without_pad_keeps_28(tmp_path: Path) -> None:
    paths, arrays = make_idx_set(tmp_path)
    test = build_split("idx", "test", paths, idx_params(paths))
    np.testing.assert_array_equal(test.images[:, 0], arrays["test_images"])
    assert "padding" not in test.provenance


def test_idx_test_shifted_is_the_test_split_under_the_shift(tmp_path: Path) -> None:
    paths, _ = make_idx_set(tmp_path)
    shift = {"seed": 3, "contrast": 0.6, "noise_std": 24.0}
    params = idx_params(paths, pad_to=32, shift=shift)
    test = build_split("idx", "test", paths, params)
    shifted = build_split("idx", "test_shifted", paths, params)
    np.testing.assert_array_equal(shifted.labels, test.labels)
    np.testing.assert_array_equal(shifted.images, shift_images(test.images, 3, 0.6, 24.0))
    assert shifted.provenance["shift"] == shift
    with pytest.raises(ValueError, match=r"test_shifted needs datasets\.<name>\.shift"):
        build_split("idx", "test_shifted", paths, idx_params(paths, pad_to=32))


@pytest.mark.parametrize(
    ("role", "content", "message"),
    [
        ("test_images", make_idx(np.ones((20, 28, 28), np.uint8))[:-5], r"t10k-images.*shape"),
        ("test_labels", make_idx(np.zeros(19, np.uint8)), r"t10k-images.*t10k-labels"),
        ("test_images", b"<html>404 Not Found</html>", r"t10k-images.*not an unsigned-byte IDX"),
    ],
    ids=["header-size-mismatch", "count-mismatch", "html-page"],
)
def test_idx_bad_content_is_a_format_error(
    tmp_path: Path, role: str, content: bytes, message: str
) -> None:
    paths, _ = make_idx_set(tmp_path)
    write_gz(paths[role], content)
    with pytest.raises(FormatError, match=message):
        build_split("idx", "test", paths, idx_params(paths))


# ----------------------------------------------------------------------------- Tiny ImageNet

TINY_WNIDS = {"n02124075": (200, 30, 30), "n01443537": (30, 200, 30), "n01629819": (30, 30, 200)}
TINY_WORDS = {
    "n00001740": "entity",
    "n01443537": "goldfish, Carassius auratus",
    "n01629819": "European fire salamander, Salamandra salamandra",
    "n02124075": "Egyptian cat",
}
TINY_VAL = 12  # more than 10, so sorted file order (val_0, val_1, val_10, ...) is not numeric


def tiny_val_wnid(i: int) -> str:
    return list(TINY_WNIDS)[i % len(TINY_WNIDS)]


def make_tiny_imagenet(path: Path, per_class: int = 4) -> None:
    """``tiny-imagenet-200.zip``: wnids.txt (unsorted), words.txt, train/<wnid>/images and
    boxes, val/images with val_annotations.txt, an unlabelled test/images; 64x64 JPEGs in
    one colour per class."""
    root = "tiny-imagenet-200/"
    entries: dict[str, bytes] = {
        f"{root}wnids.txt": "".join(f"{w}\n" for w in TINY_WNIDS).encode(),
        f"{root}words.txt": "".join(f"{w}\t{t}\n" for w, t in TINY_WORDS.items()).encode(),
    }
    for wnid, colour in TINY_WNIDS.items():
        boxes = "".join(f"{wnid}_{i}.JPEG\t0\t0\t63\t63\n" for i in range(per_class))
        entries[f"{root}train/{wnid}/{wnid}_boxes.txt"] = boxes.encode()
        for i in range(per_class):
            entries[f"{root}train/{wnid}/images/{wnid}_{i}.JPEG"] = encoded_image(
                colour, 64, "JPEG"
            )
    annotations = []
    for i in range(TINY_VAL):
        wnid = tiny_val_wnid(i)
        annotations.append(f"val_{i}.JPEG\t{wnid}\t1\t2\t60\t61\n")
        entries[f"{root}val/images/val_{i}.JPEG"] = encoded_image(TINY_WNIDS[wnid], 64, "JPEG")
    entries[f"{root}val/val_annotations.txt"] = "".join(annotations).encode()
    entries[f"{root}test/images/test_0.JPEG"] = encoded_image((0, 0, 0), 64, "JPEG")
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        for folder in ("", "train/", "val/", "val/images/", "test/", "test/images/"):
            zf.writestr(f"{root}{folder}", b"")  # directory entries, as in the official zip
        for name, data in entries.items():
            zf.writestr(name, data)


def assert_tiny_colours(split: Split, sorted_wnids: list[str]) -> None:
    """Each image's mean colour is its class's colour (JPEG is lossy: within 8 levels)."""
    means = split.images.reshape(len(split), 3, -1).mean(axis=2)
    expected = np.array([TINY_WNIDS[sorted_wnids[label]] for label in split.labels])
    np.testing.assert_allclose(means, expected, atol=8)


@pytest.fixture
def tiny(tmp_path: Path) -> dict[str, Path]:
    path = tmp_path / TINY_KEY
    make_tiny_imagenet(path)
    return {"tiny_imagenet": path}


def test_tiny_imagenet_test_split_is_official_val(tiny: dict[str, Path]) -> None:
    params = params_for(tiny, {"tiny_imagenet": TINY_KEY}, val_size=3)
    test = build_split("tiny_imagenet", "test", tiny, params)
    sorted_wnids = sorted(TINY_WNIDS)
    assert test.class_names == (
        "n01443537: goldfish",
        "n01629819: European fire salamander",
        "n02124075: Egyptian cat",
    )
    assert test.images.shape == (TINY_VAL, 3, 64, 64)
    files = sorted(f"val_{i}.JPEG" for i in range(TINY_VAL))
    by_file = {f"val_{i}.JPEG": sorted_wnids.index(tiny_val_wnid(i)) for i in range(TINY_VAL)}
    np.testing.assert_array_equal(test.labels, [by_file[f] for f in files])
    assert test.labels.tolist()[:4] == [2, 0, 0, 1]  # val_0, val_1, val_10, val_11
    assert_tiny_colours(test, sorted_wnids)
    assert test.provenance["part"] == "official val part"


def test_tiny_imagenet_train_and_val_holdout(tiny: dict[str, Path]) -> None:
    params = params_for(tiny, {"tiny_imagenet": TINY_KEY}, val_size=3)
    train, val = (build_split("tiny_imagenet", s, tiny, params) for s in ("train", "val"))
    assert (len(train), len(val)) == (9, 3)  # 3 classes x 4; the test/ image is not train
    assert train.images.shape[1:] == (3, 64, 64)
    np.testing.assert_array_equal(np.bincount(train.labels, minlength=3), [3, 3, 3])
    np.testing.assert_array_equal(np.bincount(val.labels, minlength=3), [1, 1, 1])
    for split in (train, val):
        assert_tiny_colours(split, sorted(TINY_WNIDS))


# ----------------------------------------------------------------------------- CIFAR-10H


def fake_probs(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).dirichlet(np.ones(10), size=n)


def cifar10h_files(tmp_path: Path, probs: np.ndarray) -> dict[str, Path]:
    train_labels, test_labels = cifar10_labels(n_test=30)
    archive = tmp_path / CIFAR10_KEY
    make_cifar10(archive, train_labels, test_labels)
    probs_path = tmp_path / CIFAR10H_KEY
    probs_path.parent.mkdir(parents=True)
    np.save(probs_path, probs)
    return {"cifar10": archive, "cifar10h": probs_path}


def build_cifar10h(files: dict[str, Path], split: str = "cifar10h") -> Split:
    keys = {"cifar10": CIFAR10_KEY, "cifar10h": CIFAR10H_KEY}
    return build_split("cifar10", split, files, params_for(files, keys))


def test_cifar10h_soft_labels_align_with_test(tmp_path: Path) -> None:
    probs = fake_probs(30)
    files = cifar10h_files(tmp_path, probs)
    split, test = build_cifar10h(files), build_cifar10h(files, "test")
    np.testing.assert_array_equal(split.images, test.images)
    np.testing.assert_array_equal(split.labels, test.labels)
    assert split.soft_labels.dtype == np.float64
    np.testing.assert_array_equal(split.soft_labels, probs)
    np.testing.assert_allclose(split.soft_labels.sum(axis=1), 1.0)
    assert set(split.provenance["sources"]) == {"cifar10", "cifar10h"}


@pytest.mark.parametrize(
    ("probs", "message"),
    [
        (fake_probs(29), r"cifar10h-probs\.npy: expected 30 rows"),
        (fake_probs(30) * 1.01, r"cifar10h-probs\.npy: expected 30 rows of probabilities"),
        (fake_probs(30)[:, :9], r"cifar10h-probs\.npy: shape \(30, 9\)"),
    ],
    ids=["29-rows", "rows-not-summing-to-1", "9-columns"],
)
def test_cifar10h_bad_probs_are_a_format_error(
    tmp_path: Path, probs: np.ndarray, message: str
) -> None:
    files = cifar10h_files(tmp_path, probs)
    with pytest.raises(FormatError, match=message):
        build_cifar10h(files)


# ----------------------------------------------------------------------------- via the mirror


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    return tmp_path / "mirror", tmp_path / "downloads"


def test_cifar10_fetched_from_mirror_builds(dirs: tuple[Path, Path]) -> None:
    mirror, downloads = dirs
    train_labels, test_labels = cifar10_labels()
    rows = make_cifar10(mirror / CIFAR10_KEY, train_labels, test_labels)
    checksum = md5_of(mirror / CIFAR10_KEY)
    dest = downloads / "cifar10/cifar-10-python.tar.gz"
    how = fetch_archive(CIFAR10_KEY, ARCHIVES[CIFAR10_KEY]["url"], checksum, dest, mirror)
    assert how == "archive md5"
    assert dest.read_bytes() == (mirror / CIFAR10_KEY).read_bytes()
    assert files_in(downloads) == [dest]  # no temporary left beside it
    train, val, test = cifar10_splits(dest, "train", "val", "test")
    assert (len(train), len(val), len(test)) == (90, 10, 30)
    np.testing.assert_array_equal(test.images.reshape(30, -1), rows["test_batch"])
    assert test.provenance["sources"]["cifar10"]["checksum"] == checksum


def test_idx_fetched_from_mirror_builds(dirs: tuple[Path, Path]) -> None:
    mirror, downloads = dirs
    _, arrays = make_idx_set(mirror)
    fetched = {}
    for role, key in IDX_KEYS.items():
        fetched[role] = fetch(key, mirror, downloads, md5_of(mirror / key))
        assert fetched[role] == downloads / key
    test = build_split("idx", "test", fetched, idx_params(fetched, pad_to=32))
    np.testing.assert_array_equal(test.images[:, 0, 2:30, 2:30], arrays["test_images"])
    np.testing.assert_array_equal(test.labels, arrays["test_labels"])
    assert files_in(downloads) == sorted(fetched.values())


def test_checksum_mismatch_leaves_nothing(dirs: tuple[Path, Path]) -> None:
    mirror, downloads = dirs
    train_labels, test_labels = cifar10_labels()
    make_cifar10(mirror / CIFAR10_KEY, train_labels, test_labels)
    with pytest.raises(ChecksumError, match=r"cifar10/cifar-10-python\.tar\.gz: md5 is [0-9a-f]"):
        fetch(CIFAR10_KEY, mirror, downloads, "md5:" + "0" * 32)
    assert not (downloads / CIFAR10_KEY).exists()
    assert files_in(downloads) == []  # nor a temporary file


def make_cifar10_mirror(folder: Path) -> None:
    make_cifar10(folder / CIFAR10_KEY, *cifar10_labels())


def make_idx_mirror(folder: Path) -> None:
    make_idx_set(folder)


@pytest.mark.parametrize(
    ("builder", "keys", "make", "broken"),
    [
        ("cifar10", {"cifar10": CIFAR10_KEY}, make_cifar10_mirror, "cifar10"),
        ("idx", IDX_KEYS, make_idx_mirror, "train_images"),
    ],
    ids=["tar.gz", "idx.gz"],
)
def test_truncated_archive_passing_its_checksum_is_a_format_error(
    dirs: tuple[Path, Path],
    builder: str,
    keys: dict[str, str],
    make: Callable[[Path], None],
    broken: str,
) -> None:
    """A truncated file whose (wrong) checksum was pinned gets through verification; the
    reader must still refuse it, naming the file."""
    mirror, downloads = dirs
    make(mirror)
    left = truncate(mirror / keys[broken])
    files = {
        role: fetch(key, mirror, downloads, md5_of(mirror / key)) for role, key in keys.items()
    }
    assert files[broken].read_bytes() == left
    params = params_for(files, keys, class_names=list(FASHION_CLASSES))  # (cifar10 ignores)
    with pytest.raises(FormatError, match=Path(keys[broken]).name.replace(".", r"\.")):
        build_split(builder, "train", files, params)


def test_missing_mirror_file_names_key_and_url(dirs: tuple[Path, Path]) -> None:
    mirror, downloads = dirs
    mirror.mkdir()
    url = ARCHIVES[CIFAR10_KEY]["url"]
    dest = downloads / CIFAR10_KEY
    with pytest.raises(FileNotFoundError) as err:
        fetch_archive(CIFAR10_KEY, url, ARCHIVES[CIFAR10_KEY]["checksum"], dest, mirror)
    assert CIFAR10_KEY in str(err.value) and url in str(err.value)
    assert not dest.exists() and files_in(downloads) == []


def test_content_checksum_accepts_recompressed_gzip(dirs: tuple[Path, Path]) -> None:
    mirror, downloads = dirs
    key = IDX_KEYS["test_labels"]
    content = make_idx(np.arange(50, dtype=np.uint8) % 10)
    official = write_gz(downloads.parent / "official" / key, content, mtime=0)
    recompressed = write_gz(mirror / key, content, mtime=1_234_567_890)
    assert md5_of(official) != md5_of(recompressed)  # the gzip header differs
    content_md5 = "md5:" + hashlib.md5(content).hexdigest()
    how = fetch_archive(key, "u", md5_of(official), downloads / key, mirror, content_md5)
    assert how.startswith("decompressed-content md5")
    np.testing.assert_array_equal(read_idx(downloads / key), np.arange(50) % 10)


def test_content_checksum_rejects_different_content(dirs: tuple[Path, Path]) -> None:
    mirror, downloads = dirs
    key = IDX_KEYS["test_labels"]
    content = make_idx(np.arange(50, dtype=np.uint8) % 10)
    official = write_gz(downloads.parent / "official" / key, content)
    write_gz(mirror / key, content[:-1] + bytes([content[-1] ^ 1]), mtime=1)
    content_md5 = "md5:" + hashlib.md5(content).hexdigest()
    with pytest.raises(ChecksumError, match=rf"{key}: md5 is .* decompressed md5 is"):
        fetch_archive(key, "u", md5_of(official), downloads / key, mirror, content_md5)
    assert not (downloads / key).exists() and files_in(downloads) == []


# ----------------------------------------------------------------------------- real data


@pytest.fixture(scope="module")
def fashion_dir() -> Path:
    return real_data(FASHION_DIR, "install the Debian package dataset-fashion-mnist")


@pytest.fixture(scope="module")
def fashion_files(fashion_dir: Path) -> dict[str, Path]:
    return {role: fashion_dir / Path(key).name for role, key in IDX_KEYS.items()}


def test_real_fashion_mnist_verifies_against_config(fashion_dir: Path, tmp_path: Path) -> None:
    """/usr/share/datasets is a mirror as is; Debian recompressed the official files, so
    the decompressed-content md5 (or the archive md5, for original files) must match."""
    for key in IDX_KEYS.values():
        entry = ARCHIVES[key]
        how = fetch_archive(
            key,
            entry["url"],
            entry["checksum"],
            tmp_path / key,
            fashion_dir.parent,
            entry["content_checksum"],
        )
        assert how.startswith(("archive md5", "decompressed-content md5")), how
        # The pinned content md5 alone (whatever the archive md5) matches the data.
        path = fashion_dir / Path(key).name
        wrong = "md5:" + "0" * 32
        how = verify(path, wrong, name=key, content_checksum=entry["content_checksum"])
        assert how.startswith("decompressed-content md5"), how


def test_real_fashion_mnist_test_split(fashion_files: dict[str, Path]) -> None:
    test = build_split("idx", "test", fashion_files, idx_params(fashion_files))
    assert test.images.shape == (10000, 1, 28, 28) and test.images.dtype == np.uint8
    np.testing.assert_array_equal(np.bincount(test.labels), np.full(10, 1000))
    assert test.images.max() == 255 and test.images.min() == 0


def test_real_fashion_mnist_train_padded(fashion_files: dict[str, Path]) -> None:
    params = idx_params(fashion_files, pad_to=32) | {"val_size": 6000}
    train, val = (build_split("idx", s, fashion_files, params) for s in ("train", "val"))
    assert train.images.shape == (54000, 1, 32, 32) and val.images.shape == (6000, 1, 32, 32)
    counts = np.bincount(train.labels, minlength=10) + np.bincount(val.labels, minlength=10)
    np.testing.assert_array_equal(counts, np.full(10, 6000))
    np.testing.assert_array_equal(np.bincount(val.labels), np.full(10, 600))
    border = val.images.copy()
    border[:, :, 2:30, 2:30] = 0
    assert not border.any() and val.images[:, :, 2:30, 2:30].any()


def test_real_cifar10h_probs(tmp_path: Path) -> None:
    path = real_data(CIFAR10H_REAL, "the repository's sibling shared/data should hold it")
    entry = ARCHIVES[CIFAR10H_KEY]
    assert entry["checksum"].startswith("sha256:")
    assert verify(path, entry["checksum"], name=CIFAR10H_KEY) == "archive sha256"
    probs = read_npy(path, (10,))
    assert probs.shape == (10000, 10) and (probs >= 0).all()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-9)
    # It fits the builder's cifar10h split of a 10000-image CIFAR-10 test set.
    archive = tmp_path / CIFAR10_KEY
    write_tar_gz(
        archive,
        {
            "cifar-10-batches-py/test_batch": cifar_pickle(
                labels=probs.argmax(axis=1).tolist(), data=np.zeros((10000, 3072), np.uint8)
            ),
            "cifar-10-batches-py/batches.meta": cifar_pickle(
                label_names=[n.encode() for n in CIFAR10_CLASSES]
            ),
        },
    )
    files = {"cifar10": archive, "cifar10h": path}
    split = build_cifar10h(files)
    assert split.soft_labels.shape == (10000, 10)
    np.testing.assert_array_equal(split.soft_labels, probs)
