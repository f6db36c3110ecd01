"""Choi et al.'s V-score (kdaug.measure.vscore) on toy clusters and a hand-computed example."""

from __future__ import annotations

import math
from collections.abc import Iterator
from itertools import pairwise

import numpy as np
import pytest
from sklearn.metrics import v_measure_score
from threadpoolctl import threadpool_limits

from kdaug.measure.vscore import DISSIMILAR, SIMILAR, class_indices, v_score

# CIFAR-100's fine label names, in their (alphabetical) label order.
CIFAR100 = (
    "apple",
    "aquarium_fish",
    "baby",
    "bear",
    "beaver",
    "bed",
    "bee",
    "beetle",
    "bicycle",
    "bottle",
    "bowl",
    "boy",
    "bridge",
    "bus",
    "butterfly",
    "camel",
    "can",
    "castle",
    "caterpillar",
    "cattle",
    "chair",
    "chimpanzee",
    "clock",
    "cloud",
    "cockroach",
    "couch",
    "crab",
    "crocodile",
    "cup",
    "dinosaur",
    "dolphin",
    "elephant",
    "flatfish",
    "forest",
    "fox",
    "girl",
    "hamster",
    "house",
    "kangaroo",
    "keyboard",
    "lamp",
    "lawn_mower",
    "leopard",
    "lion",
    "lizard",
    "lobster",
    "man",
    "maple_tree",
    "motorcycle",
    "mountain",
    "mouse",
    "mushroom",
    "oak_tree",
    "orange",
    "orchid",
    "otter",
    "palm_tree",
    "pear",
    "pickup_truck",
    "pine_tree",
    "plain",
    "plate",
    "poppy",
    "porcupine",
    "possum",
    "rabbit",
    "raccoon",
    "ray",
    "road",
    "rocket",
    "rose",
    "sea",
    "seal",
    "shark",
    "shrew",
    "skunk",
    "skyscraper",
    "snail",
    "snake",
    "spider",
    "squirrel",
    "streetcar",
    "sunflower",
    "sweet_pepper",
    "table",
    "tank",
    "telephone",
    "television",
    "tiger",
    "tractor",
    "train",
    "trout",
    "tulip",
    "turtle",
    "wardrobe",
    "whale",
    "willow_tree",
    "wolf",
    "woman",
    "worm",
)

K, PER_CLASS, DIM = 5, 100, 8


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """The problems here are tiny: on a loaded 2-core machine extra threads only contend."""
    with threadpool_limits(1):
        yield


def blobs(spread: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """K Gaussian blobs at ``5 * e_k`` (pairwise 7.07 apart), noise ``spread * Z`` with
    the same ``Z`` for every spread, so only the overlap changes."""
    labels = np.repeat(np.arange(K), PER_CLASS)
    z = np.random.default_rng(seed).normal(size=(len(labels), DIM))
    return 5.0 * np.eye(K, DIM)[labels] + spread * z, labels


def test_perfectly_separated_blobs_score_one() -> None:
    features, labels = blobs(0.05)
    assert v_score(features, labels, range(K)) == pytest.approx(1.0, abs=1e-12)
    assert v_score(features, labels, range(K), standardize=True) == pytest.approx(1.0, abs=1e-12)


def test_noise_independent_of_labels_scores_near_zero() -> None:
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(K), 200)
    features = rng.normal(size=(len(labels), 16))
    assert 0.0 <= v_score(features, labels, range(K)) < 0.1


def test_score_falls_as_blobs_overlap() -> None:
    scores = [v_score(*blobs(s), range(K)) for s in (1.5, 2.5, 4.0, 6.0)]
    assert all(0.0 < s < 1.0 for s in scores)
    assert all(b < a for a, b in pairwise(scores)), scores


def test_invariant_to_renaming_classes() -> None:
    features, labels = blobs(2.5)
    renamed = np.array([7, 3, 9, 1, 5])[labels]
    expected = v_score(features, labels, range(K))
    assert v_score(features, renamed, [1, 3, 5, 7, 9]) == pytest.approx(expected, rel=1e-12)


def test_only_rows_of_the_chosen_classes_count() -> None:
    features, labels = blobs(2.5)
    rng = np.random.default_rng(2)
    noise = rng.normal(0.0, 50.0, size=(300, DIM))  # other classes, far off and wide
    all_features = np.concatenate([noise[:150], features, noise[150:]])
    all_labels = np.concatenate([np.full(150, 11), labels + 20, np.full(150, 12)])
    assert v_score(all_features, all_labels, [20, 21, 22, 23, 24]) == v_score(
        features, labels, range(K)
    )


def test_errors() -> None:
    features, labels = blobs(1.0)
    with pytest.raises(ValueError, match=r"\[7\]"):
        v_score(features, labels, [0, 1, 7])
    with pytest.raises(ValueError, match="two classes"):
        v_score(features, labels, [0])


def entropy(counts: np.ndarray) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def v_measure_by_hand(table: np.ndarray) -> float:
    """Rosenberg & Hirschberg from a contingency table ``table[class, cluster]``."""
    n = table.sum()
    h_c, h_k = entropy(table.sum(1)), entropy(table.sum(0))
    h_c_given_k = sum(table[:, k].sum() / n * entropy(table[:, k]) for k in range(table.shape[1]))
    h_k_given_c = sum(table[c].sum() / n * entropy(table[c]) for c in range(table.shape[0]))
    homogeneity = 1.0 - h_c_given_k / h_c
    completeness = 1.0 - h_k_given_c / h_k
    return 2 * homogeneity * completeness / (homogeneity + completeness)


def test_v_measure_on_a_hand_example() -> None:
    # classes [0, 0, 1, 1] vs clusters [0, 0, 0, 1]: table [[2, 0], [1, 1]]
    table = np.array([[2, 0], [1, 1]])
    h = 1.0 - 0.75 * entropy(np.array([2, 1])) / math.log(2)
    c = 1.0 - 0.5 * math.log(2) / entropy(np.array([3, 1]))
    expected = 2 * h * c / (h + c)
    assert v_measure_by_hand(table) == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(0.3437110184854, rel=1e-9)  # the numbers written out
    assert v_measure_score([0, 0, 1, 1], [0, 0, 0, 1]) == pytest.approx(expected, rel=1e-12)
    # the same through v_score: k-means (k=2) on 1-D points groups {0, 0, 0.01} | {10}
    features = np.array([[0.0], [0.0], [0.01], [10.0]])
    assert v_score(features, np.array([0, 0, 1, 1]), [0, 1]) == pytest.approx(expected, rel=1e-12)


def test_class_indices_on_cifar100_names() -> None:
    assert len(CIFAR100) == 100 and sorted(CIFAR100) == list(CIFAR100)
    assert class_indices(CIFAR100, SIMILAR) == [2, 11, 35, 46, 98]
    assert class_indices(CIFAR100, DISSIMILAR) == [4, 0, 1, 69, 93]


def test_class_indices_names_the_missing_class() -> None:
    names = [n for n in CIFAR100 if n != "aquarium_fish"]
    with pytest.raises(ValueError, match="aquarium_fish") as info:
        class_indices(names, DISSIMILAR)
    assert "['aquarium_fish']" in str(info.value)
    with pytest.raises(ValueError, match=r"'girl'.*'woman'"):
        class_indices([str(d) for d in range(10)] + ["baby", "boy", "man"], SIMILAR)
