"""Canonical split files, the digits demo dataset and verified fetching (the official
archive formats are tested in test_archives.py)."""

import hashlib
from pathlib import Path

import numpy as np
import pytest

from kdaug.data.canonical import Split, load_split, save_split, stratified_holdout
from kdaug.data.datasets import build_split, shift_images
from kdaug.data.download import ChecksumError, fetch_archive, parse_checksum

DIGITS = {
    "image_size": 32,
    "test_size": 360,
    "val_size": 144,
    "split_seed": 0,
    "shift": {"seed": 1, "contrast": 0.6, "noise_std": 24.0},
}


@pytest.fixture(scope="module")
def digits() -> dict[str, Split]:
    return {
        s: build_split("digits", s, {}, DIGITS) for s in ("train", "val", "test", "test_shifted")
    }


def test_canonical_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    split = Split(
        rng.integers(0, 256, (5, 3, 4, 4), dtype=np.uint8),
        np.array([0, 1, 2, 1, 0]),
        ("a", "b", "c"),
        {"source": "test"},
        soft_labels=np.full((5, 3), 1 / 3),
    )
    save_split(tmp_path / "s.npz", split)
    back = load_split(tmp_path / "s.npz")
    np.testing.assert_array_equal(back.images, split.images)
    np.testing.assert_array_equal(back.labels, split.labels)
    assert back.class_names == ("a", "b", "c")
    assert back.provenance["source"] == "test" and back.provenance["format_version"] == 1
    np.testing.assert_allclose(back.soft_labels, split.soft_labels)
    assert list(tmp_path.iterdir()) == [tmp_path / "s.npz"]  # no temporary left behind


def test_split_rejects_bad_arrays() -> None:
    with pytest.raises(ValueError, match="uint8"):
        Split(np.zeros((2, 1, 4, 4)), np.zeros(2, int), ("a",))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\)"):
        Split(np.zeros((2, 1, 4, 4), np.uint8), np.array([0, 2]), ("a", "b"))


def test_stratified_holdout_is_exact_disjoint_and_seeded() -> None:
    labels = np.repeat(np.arange(4), [10, 20, 30, 40])
    kept, held = stratified_holdout(labels, 10, seed=3)
    assert len(held) == 10 and len(kept) == 90
    assert not set(kept) & set(held)
    np.testing.assert_array_equal(np.bincount(labels[held]), [1, 2, 3, 4])
    np.testing.assert_array_equal(held, stratified_holdout(labels, 10, seed=3)[1])
    assert not np.array_equal(held, stratified_holdout(labels, 10, seed=4)[1])


def test_digits_splits_are_disjoint_stratified_and_complete(digits: dict[str, Split]) -> None:
    sizes = {k: len(v) for k, v in digits.items()}
    assert sizes == {"train": 1293, "val": 144, "test": 360, "test_shifted": 360}
    assert digits["train"].images.shape[1:] == (1, 32, 32)
    for split in digits.values():
        assert split.images.dtype == np.uint8 and split.num_classes == 10
        assert np.bincount(split.labels, minlength=10).min() >= 10
    assert sum(sizes[s] for s in ("train", "val", "test")) == 1797  # a partition of the source


def test_shifted_split_is_a_deterministic_corruption(digits: dict[str, Split]) -> None:
    test, shifted = digits["test"], digits["test_shifted"]
    np.testing.assert_array_equal(test.labels, shifted.labels)
    assert not np.array_equal(test.images, shifted.images)
    again = shift_images(test.images, 1, 0.6, 24.0)
    np.testing.assert_array_equal(again, shifted.images)
    # Contrast 0.6 around 128 shrinks the spread of pixel values.
    assert shifted.images.std() < test.images.std()


def test_fetch_from_mirror_verifies_checksum(tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "a.bin").write_bytes(b"hello")
    good = "md5:" + hashlib.md5(b"hello").hexdigest()
    dest = tmp_path / "dl" / "a.bin"
    fetch_archive("a.bin", "https://example/a.bin", good, dest, mirror)
    assert dest.read_bytes() == b"hello"
    bad = "sha256:" + "0" * 64
    with pytest.raises(ChecksumError, match=r"a\.bin: sha256 is"):
        fetch_archive("a.bin", "https://example/a.bin", bad, tmp_path / "x" / "a.bin", mirror)
    assert not (tmp_path / "x" / "a.bin").exists()
    assert list((tmp_path / "x").iterdir()) == []  # the temporary file is gone too


def test_missing_mirror_file_names_file_and_url(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"b\.bin .*https://example/b\.bin"):
        fetch_archive(
            "b.bin", "https://example/b.bin", "md5:" + "0" * 32, tmp_path / "b.bin", tmp_path
        )


def test_parse_checksum_rejects_unknown_algorithms() -> None:
    assert parse_checksum("md5:ABC") == ("md5", "abc")
    with pytest.raises(ValueError, match="md5"):
        parse_checksum("sha1:abc")
