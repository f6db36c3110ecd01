"""Readers for the official archive formats, each returning plain arrays.

Every reader raises :class:`FormatError` naming the file and what it expected when an
archive is not what its name says (a truncated download, an HTML error page saved under
the archive's name, the wrong dataset), so a bad file never becomes a silent bad split.
"""

from __future__ import annotations

import gzip
import io
import pickle
import tarfile
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

import numpy as np


class FormatError(ValueError):
    """An archive's content is not in the format its reader expects."""


def _images_from_encoded(blobs: Iterable[bytes], where: str) -> np.ndarray:
    """Decode PNG/JPEG bytes to one uint8 ``(N, 3, H, W)`` array (all images one size)."""
    from PIL import Image, UnidentifiedImageError

    arrays = []
    for blob in blobs:
        try:
            arrays.append(np.asarray(Image.open(io.BytesIO(blob)).convert("RGB"), dtype=np.uint8))
        except (UnidentifiedImageError, OSError) as err:
            raise FormatError(f"{where}: an image could not be decoded ({err})") from err
    if not arrays:
        raise FormatError(f"{where}: no images")
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1:
        raise FormatError(f"{where}: images of different sizes {sorted(shapes)}")
    return np.ascontiguousarray(np.stack(arrays).transpose(0, 3, 1, 2))


# --------------------------------------------------------------------- CIFAR python pickles


def read_cifar_pickles(
    archive: Path, members: tuple[str, ...], label_key: str
) -> tuple[np.ndarray, np.ndarray]:
    """Pickled CIFAR batches from the official python tarball.

    ``members`` are file names inside the tarball's top folder (``data_batch_1`` ...,
    ``test_batch`` for CIFAR-10; ``train``, ``test`` for CIFAR-100); ``label_key`` is
    ``labels`` (CIFAR-10) or ``fine_labels`` (CIFAR-100). Returns uint8 ``(N, 3, 32, 32)``
    images and int64 labels, members in the order given.
    """
    images, labels = [], []
    with _open_tar(archive) as tar, _tar_errors(archive):
        by_name = {PurePosixPath(m.name).name: m for m in tar.getmembers() if m.isfile()}
        for member in members:
            if member not in by_name:
                raise FormatError(
                    f"{archive.name}: has no member {member!r} (found {sorted(by_name)[:8]}); "
                    "not the official CIFAR python tarball?"
                )
            batch = _unpickle(tar.extractfile(by_name[member]).read(), f"{archive.name}:{member}")
            key = label_key.encode()
            if b"data" not in batch or key not in batch:
                raise FormatError(f"{archive.name}:{member}: no 'data' or {label_key!r} entry")
            images.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            labels.append(np.asarray(batch[key], dtype=np.int64))
    return np.concatenate(images), np.concatenate(labels)


def read_cifar_class_names(archive: Path, meta_member: str, names_key: str) -> tuple[str, ...]:
    """Class names from ``batches.meta`` (CIFAR-10, ``label_names``) or ``meta`` (CIFAR-100,
    ``fine_label_names``)."""
    with _open_tar(archive) as tar, _tar_errors(archive):
        member = next(
            (m for m in tar.getmembers() if PurePosixPath(m.name).name == meta_member), None
        )
        if member is None:
            raise FormatError(f"{archive.name}: has no {meta_member!r}")
        meta = _unpickle(tar.extractfile(member).read(), f"{archive.name}:{meta_member}")
    return tuple(n.decode() for n in meta[names_key.encode()])


def _unpickle(data: bytes, where: str) -> dict:
    try:
        return pickle.loads(data, encoding="bytes")
    except Exception as err:
        raise FormatError(f"{where}: not a CIFAR pickle ({err})") from err


@contextmanager
def _tar_errors(archive: Path) -> Iterator[None]:
    """A truncated .tar.gz opens fine and fails while its members are read: name the file."""
    try:
        yield
    except (tarfile.TarError, EOFError, OSError, zlib.error) as err:
        raise FormatError(f"{archive.name}: truncated or corrupt tar archive ({err})") from err


def _open_tar(archive: Path) -> tarfile.TarFile:
    try:
        return tarfile.open(archive, "r:*")
    except (tarfile.TarError, EOFError, OSError) as err:
        raise FormatError(f"{archive.name}: not a readable tar archive ({err})") from err


# --------------------------------------------------------------------- CINIC-10 folder tree


def read_cinic_imagenet_fold(
    archive: Path, fold: str, class_names: tuple[str, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """ImageNet-sourced images of one CINIC-10 fold (``train``/``valid``/``test``).

    CINIC-10 stores ``<fold>/<class>/<file>.png``; files taken from CIFAR-10 are named
    ``cifar10-...`` and are left out. Images are returned in sorted path order, labelled
    by the position of their class folder in ``class_names``.
    """
    rows: list[tuple[str, int, bytes]] = []
    with _open_tar(archive) as tar, _tar_errors(archive):
        for member in tar:
            parts = PurePosixPath(member.name).parts
            if not member.isfile() or len(parts) < 3 or parts[-3] != fold:
                continue
            cls, fname = parts[-2], parts[-1]
            if fname.startswith("cifar10-") or not fname.endswith(".png"):
                continue
            if cls not in class_names:
                raise FormatError(f"{archive.name}: unknown class folder {cls!r} in {member.name}")
            rows.append((member.name, class_names.index(cls), tar.extractfile(member).read()))
    if not rows:
        raise FormatError(f"{archive.name}: no ImageNet-sourced images under {fold}/")
    rows.sort()
    images = _images_from_encoded((blob for _, _, blob in rows), f"{archive.name}:{fold}")
    return images, np.array([label for _, label, _ in rows], dtype=np.int64)


# --------------------------------------------------------------------- IDX (MNIST family)

IDX_DTYPES = {0x08: np.uint8}


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (gzipped or not), as used by MNIST and Fashion-MNIST.

    Format: two zero bytes, a type byte (0x08 = unsigned byte), a dimension count, then
    one big-endian uint32 per dimension, then the data in C order.
    """
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as err:
            raise FormatError(f"{path.name}: truncated or corrupt gzip ({err})") from err
    if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[2] not in IDX_DTYPES:
        raise FormatError(f"{path.name}: not an unsigned-byte IDX file (magic {raw[:4].hex()})")
    ndim = raw[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(shape)) if shape else 0
    if len(raw) - header != expected:
        raise FormatError(
            f"{path.name}: IDX header says shape {shape} ({expected} bytes) "
            f"but the file holds {len(raw) - header}"
        )
    return np.frombuffer(raw, dtype=IDX_DTYPES[raw[2]], offset=header).reshape(shape).copy()


def read_idx_pair(images_file: Path, labels_file: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(N, 1, H, W)`` uint8 and labels int64 from an IDX images/labels pair."""
    images, labels = read_idx(images_file), read_idx(labels_file)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise FormatError(
            f"{images_file.name} {images.shape} and {labels_file.name} {labels.shape} "
            "are not an (N, H, W) images / (N,) labels pair"
        )
    return images[:, None], labels.astype(np.int64)


# --------------------------------------------------------------------- Tiny ImageNet zip


def read_tiny_imagenet(archive: Path, part: str) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """The ``train`` (100k) or ``val`` (10k) part of ``tiny-imagenet-200.zip``.

    Classes are the WordNet ids of ``wnids.txt`` in sorted order; train images live under
    ``train/<wnid>/images/``; val images under ``val/images/`` with their labels in
    ``val/val_annotations.txt`` (file, wnid, box). Images are returned in sorted file
    order. The class names returned are ``wnid: first words`` from ``words.txt``.
    """
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as err:
        raise FormatError(f"{archive.name}: not a readable zip archive ({err})") from err
    with zf:
        names = zf.namelist()
        root = _zip_root(names, archive)
        wnids = sorted(_zip_text(zf, f"{root}wnids.txt", archive).split())
        index = {w: i for i, w in enumerate(wnids)}
        if part == "train":
            rows = []
            for name in names:
                p = PurePosixPath(name)
                if len(p.parts) >= 4 and p.parts[-4:-3] == ("train",) and p.suffix == ".JPEG":
                    rows.append((name, _class_index(index, p.parts[-3], archive)))
        elif part == "val":
            rows = []
            for line in _zip_text(zf, f"{root}val/val_annotations.txt", archive).splitlines():
                fields = line.split("\t")
                if len(fields) >= 2:
                    rows.append(
                        (f"{root}val/images/{fields[0]}", _class_index(index, fields[1], archive))
                    )
        else:
            raise ValueError(f"Tiny ImageNet part must be 'train' or 'val'; got {part!r}")
        rows.sort()
        try:
            images = _images_from_encoded((zf.read(n) for n, _ in rows), f"{archive.name}:{part}")
        except (KeyError, zipfile.BadZipFile) as err:
            raise FormatError(f"{archive.name}: {err}") from err
        words = _tiny_words(zf, root, archive)
    labels = np.array([label for _, label in rows], dtype=np.int64)
    class_names = tuple(f"{w}: {words.get(w, w)}" for w in wnids)
    return images, labels, class_names


def _zip_root(names: list[str], archive: Path) -> str:
    hits = [n for n in names if PurePosixPath(n).name == "wnids.txt"]
    if not hits:
        raise FormatError(f"{archive.name}: has no wnids.txt; not tiny-imagenet-200.zip?")
    return hits[0][: -len("wnids.txt")]


def _zip_text(zf: zipfile.ZipFile, name: str, archive: Path) -> str:
    try:
        return zf.read(name).decode()
    except KeyError:
        raise FormatError(f"{archive.name}: has no {name}") from None


def _class_index(index: dict[str, int], wnid: str, archive: Path) -> int:
    if wnid not in index:
        raise FormatError(f"{archive.name}: class {wnid!r} is not in wnids.txt")
    return index[wnid]


def _tiny_words(zf: zipfile.ZipFile, root: str, archive: Path) -> dict[str, str]:
    if f"{root}words.txt" not in zf.namelist():
        return {}
    words = {}
    for line in _zip_text(zf, f"{root}words.txt", archive).splitlines():
        wnid, _, text = line.partition("\t")
        words[wnid] = text.split(",")[0].strip()
    return words


# --------------------------------------------------------------------- NumPy arrays


def read_npy(path: Path, shape_tail: tuple[int, ...]) -> np.ndarray:
    """A ``.npy`` file whose shape ends in ``shape_tail`` (for example CIFAR-10H's probs)."""
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise FormatError(f"{path.name}: not a readable .npy file ({err})") from err
    if array.shape[-len(shape_tail) :] != shape_tail:
        raise FormatError(f"{path.name}: shape {array.shape}, expected (..., {shape_tail})")
    return array
