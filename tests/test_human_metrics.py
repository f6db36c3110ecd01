"""Human-label metrics of Das et al. (2020): KL to CIFAR-10H, the relative KL matrix and the
masked confusion matrices, against hand-worked values, loop-based re-implementations and SciPy,
on toy inputs and on the real CIFAR-10H file."""

import hashlib
import math
import os
from pathlib import Path

import numpy as np
import pytest
import scipy.stats

from kdaug.measure.metrics import (
    EvalData,
    applicable_metrics,
    compute_metrics,
    kl_to_human,
    masked_confusion_probabilities,
    relative_kl_matrix,
    softmax,
)

CIFAR10H = Path(__file__).resolve().parents[2] / "shared/data/cifar10h-probs.npy"
CIFAR10H_SHA256 = "436ae98620e00073f9d08585ac870573b588853e7af9f54eb1647408114af77d"
CIFAR10_CLASSES = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
]

LN2, LN3 = math.log(2), math.log(3)

# The hand-worked 2-image, 3-class case: (human, model) per image.
HUMAN = np.array([[1 / 2, 1 / 2, 0.0], [1 / 4, 1 / 4, 1 / 2]])
MODEL = np.array([[1 / 4, 1 / 4, 1 / 2], [1 / 8, 1 / 8, 3 / 4]])
# KL(h || p) = sum_c h log(h / p):
#   image 0: 1/2 log(2) + 1/2 log(2) + 0 * log(0 / (1/2)) = log 2
#   image 1: 1/4 log(2) + 1/4 log(2) + 1/2 log((1/2) / (3/4)) = 1/2 log 2 + 1/2 log(2/3)
#            = log 2 - 1/2 log 3 ~= 0.143841
# (the other direction, KL(p || h), is huge for image 0, where h = 0 < p, and for image 1 is
#  1/4 log(1/2) + 3/4 log(3/2) = 3/4 log 3 - log 2 ~= 0.130812: the direction matters)
HAND_KL = np.array([LN2, LN2 - LN3 / 2])


def random_probs(rng: np.random.Generator, n: int, c: int) -> np.ndarray:
    return softmax(rng.normal(scale=2.0, size=(n, c)))


def from_probs(probs: np.ndarray, labels: np.ndarray, **kwargs) -> EvalData:
    """EvalData whose softmax is ``probs`` (logits = log probs)."""
    probs = np.asarray(probs, dtype=float)
    return EvalData(np.log(probs), np.asarray(labels), probs.shape[1], **kwargs)


# --------------------------------------------------------------------------- kl_to_human


def test_kl_to_human_hand_case() -> None:
    np.testing.assert_allclose(kl_to_human(HUMAN, MODEL), HAND_KL, rtol=1e-14)
    assert HAND_KL[1] == pytest.approx(0.143841, abs=1e-6)


def test_kl_to_human_is_zero_for_the_human_distribution_and_positive_otherwise() -> None:
    rng = np.random.default_rng(0)
    human = random_probs(rng, 20, 5)
    human[:5, 2] = 0.0  # annotators who never chose class 2
    human /= human.sum(axis=1, keepdims=True)
    assert np.all(kl_to_human(human, human) == 0.0)
    kl = kl_to_human(human, random_probs(rng, 20, 5))
    assert kl.shape == (20,)
    assert np.all(kl > 0.0)


def test_kl_to_human_is_cross_entropy_minus_human_entropy() -> None:
    rng = np.random.default_rng(1)
    human, probs = random_probs(rng, 30, 10), random_probs(rng, 30, 10)
    human[::3, :4] = 0.0
    human /= human.sum(axis=1, keepdims=True)
    cross_entropy = -np.sum(human * np.log(probs), axis=1)
    entropy = scipy.stats.entropy(human, axis=1)
    np.testing.assert_allclose(kl_to_human(human, probs), cross_entropy - entropy, atol=1e-12)
    # and the direction is KL(human || model), SciPy's entropy(pk=human, qk=model)
    np.testing.assert_allclose(kl_to_human(human, probs), scipy.stats.entropy(human, probs, axis=1))
    assert not np.allclose(kl_to_human(human, probs), scipy.stats.entropy(probs, human, axis=1))


def test_kl_to_human_clips_a_zero_model_probability() -> None:
    # h = (1/2, 1/2), p = (1, 0): 1/2 log(1/2) + 1/2 log((1/2) / 1e-12), large but finite
    kl = kl_to_human(np.array([[0.5, 0.5]]), np.array([[1.0, 0.0]]))
    assert kl[0] == pytest.approx(0.5 * math.log(0.5) + 0.5 * math.log(0.5 / 1e-12))


def test_kl_to_human_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="one shape"):
        kl_to_human(HUMAN, MODEL[:, :2])
    with pytest.raises(ValueError, match=r"\(N, C\)"):
        kl_to_human(HUMAN[0], MODEL[0])


# --------------------------------------------------------------------------- relative KL


def loop_relative_kl(human, probs, labels, num_classes) -> np.ndarray:
    """Independent: class means by explicit loops, KL(hbar_i || pbar_j) by SciPy."""
    hbar = np.full((num_classes, human.shape[1]), np.nan)
    pbar = np.full((num_classes, human.shape[1]), np.nan)
    for k in range(num_classes):
        rows = [n for n in range(len(labels)) if labels[n] == k]
        if rows:
            hbar[k] = sum(human[n] for n in rows) / len(rows)
            pbar[k] = sum(probs[n] for n in rows) / len(rows)
    out = np.full((num_classes, num_classes), np.nan)
    for i in range(num_classes):
        for j in range(num_classes):
            if not (np.isnan(hbar[i, 0]) or np.isnan(pbar[j, 0])):
                out[i, j] = scipy.stats.entropy(hbar[i], pbar[j])
    return out


def test_relative_kl_matrix_matches_a_loop() -> None:
    rng = np.random.default_rng(2)
    labels = np.array([0, 0, 1, 1, 2, 2])
    human, probs = random_probs(rng, 6, 3), random_probs(rng, 6, 3)
    human[0] = [1.0, 0.0, 0.0]  # a unanimous image: zeros in the human rows
    expected = loop_relative_kl(human, probs, labels, 3)
    got = relative_kl_matrix(human, probs, labels, 3)
    assert got.shape == (3, 3)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-14)
    # the human mean is the reference: the transpose-direction matrix differs
    reverse = loop_relative_kl(probs, human, labels, 3)
    assert not np.allclose(got, reverse)


def test_relative_kl_matrix_absent_class_is_nan() -> None:
    rng = np.random.default_rng(3)
    labels = np.array([0, 2, 0, 2, 2, 0])  # no image of class 1
    human, probs = random_probs(rng, 6, 3), random_probs(rng, 6, 3)
    got = relative_kl_matrix(human, probs, labels, 3)
    assert np.all(np.isnan(got[1, :])) and np.all(np.isnan(got[:, 1]))
    present = np.ix_([0, 2], [0, 2])
    assert np.all(np.isfinite(got[present]))
    np.testing.assert_allclose(got, loop_relative_kl(human, probs, labels, 3), rtol=1e-12)


def test_relative_kl_matrix_diagonal_zero_for_equal_class_means() -> None:
    rng = np.random.default_rng(4)
    labels = np.array([0, 1, 2, 0, 1, 2])
    human = random_probs(rng, 6, 3)
    # the model swaps the two images of each class: per image it differs from the humans,
    # but its class means are the human class means
    probs = human[[3, 4, 5, 0, 1, 2]]
    assert np.all(kl_to_human(human, probs) > 1e-3)
    got = relative_kl_matrix(human, probs, labels, 3)
    np.testing.assert_allclose(np.diag(got), 0.0, atol=1e-14)
    off = got[~np.eye(3, dtype=bool)]
    assert np.all(off > 0.0)
    # identical inputs: the diagonal is exactly 0, not a rounding residue
    assert np.all(np.diag(relative_kl_matrix(human, human, labels, 3)) == 0.0)


def test_relative_kl_matrix_rejects_bad_labels() -> None:
    probs = np.full((2, 3), 1 / 3)
    with pytest.raises(ValueError, match="lie in"):
        relative_kl_matrix(probs, probs, np.array([0, 3]), 3)
    with pytest.raises(ValueError, match="num_classes"):
        relative_kl_matrix(probs, probs, np.array([0, 1]), 4)


# --------------------------------------------------------------------------- masked confusion


def test_masked_confusion_probabilities_hand_case() -> None:
    probs = np.array(
        [
            [0.6, 0.3, 0.1],  # class 0
            [0.8, 0.1, 0.1],  # class 0 -> mean (0.7, 0.2, 0.1)
            [0.2, 0.7, 0.1],  # class 1
            [0.0, 0.9, 0.1],  # class 1 -> mean (0.1, 0.8, 0.1)
            [0.3, 0.0, 0.7],  # class 2
            [0.1, 0.2, 0.7],  # class 2 -> mean (0.2, 0.1, 0.7)
        ]
    )
    got = masked_confusion_probabilities(probs, np.array([0, 0, 1, 1, 2, 2]), 3)
    assert np.all(np.isnan(np.diag(got)))
    expected = np.array([[np.nan, 0.2, 0.1], [0.1, np.nan, 0.1], [0.2, 0.1, np.nan]])
    np.testing.assert_allclose(got, expected, rtol=1e-12)  # NaNs must sit in the same cells


def test_masked_confusion_probabilities_absent_class_row_is_nan() -> None:
    probs = np.array([[0.5, 0.25, 0.25], [0.1, 0.1, 0.8]])
    got = masked_confusion_probabilities(probs, np.array([0, 2]), 3)
    assert np.all(np.isnan(got[1]))
    np.testing.assert_allclose(got[0], [np.nan, 0.25, 0.25])
    np.testing.assert_allclose(got[2], [0.1, 0.1, np.nan])


# --------------------------------------------------------------------------- EvalData, metric


def test_kld_human_via_compute_metrics_hand_case() -> None:
    data = from_probs(MODEL, np.array([0, 2]), soft_labels=HUMAN)
    out = compute_metrics(data, ["kld_human", "accuracy"])
    # mean of the hand values: (log 2 + log 2 - 1/2 log 3) / 2
    assert out["kld_human"] == pytest.approx((2 * LN2 - LN3 / 2) / 2, rel=1e-12)
    assert out["accuracy"] == 0.5


def test_kld_human_needs_soft_labels() -> None:
    data = from_probs(MODEL, np.array([0, 2]))
    with pytest.raises(ValueError, match=r"kld_human needs a split with human soft labels \(CIFAR"):
        compute_metrics(data, ["kld_human"])


def test_applicable_metrics_drops_what_a_split_cannot_compute() -> None:
    names = ["accuracy", "kld_human", "class_discrimination", "top5", "ece"]
    labels = np.array([0, 2])
    bare = from_probs(MODEL, labels)
    assert applicable_metrics(bare, names) == ["accuracy", "top5", "ece"]  # unknown kept
    human_only = from_probs(MODEL, labels, soft_labels=HUMAN)
    assert applicable_metrics(human_only, names) == ["accuracy", "kld_human", "top5", "ece"]
    embedded = from_probs(MODEL, labels, embeddings=np.eye(2))
    assert applicable_metrics(embedded, names) == [
        "accuracy",
        "class_discrimination",
        "top5",
        "ece",
    ]
    full = from_probs(MODEL, labels, embeddings=np.eye(2), soft_labels=HUMAN)
    assert applicable_metrics(full, names) == names
    configured = ["accuracy", "nll", "class_discrimination", "kld_human"]
    assert set(compute_metrics(bare, applicable_metrics(bare, configured))) == {
        "accuracy",
        "test_loss",
    }


def test_evaldata_stores_soft_labels_as_float64() -> None:
    data = from_probs(MODEL, np.array([0, 2]), soft_labels=[[1, 0, 0], [0, 0, 1]])
    assert data.soft_labels.dtype == np.float64
    np.testing.assert_array_equal(data.soft_labels, [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    assert from_probs(MODEL, np.array([0, 2])).soft_labels is None
    # rounding within 1e-6 is accepted
    near = HUMAN.copy()
    near[0, 0] += 5e-7
    assert from_probs(MODEL, np.array([0, 2]), soft_labels=near).soft_labels[0, 0] == near[0, 0]


@pytest.mark.parametrize(
    ("soft_labels", "message"),
    [
        (np.full((3, 3), 1 / 3), r"soft_labels must be \(2, 3\)"),
        (np.full((2, 4), 1 / 4), r"soft_labels must be \(2, 3\)"),
        (np.full(2, 1.0), r"soft_labels must be \(2, 3\)"),
        (np.array([[0.5, 0.5, 0.0], [0.5, 0.5, 1e-5]]), "row 1 sums to"),
        (np.array([[0.4, 0.4, 0.1], [0.5, 0.5, 0.0]]), "row 0 sums to"),
        (np.array([[1.5, -0.5, 0.0], [0.5, 0.5, 0.0]]), "non-negative"),
        (np.array([[np.nan, 0.5, 0.5], [0.5, 0.5, 0.0]]), "non-negative"),
    ],
)
def test_evaldata_rejects_bad_soft_labels(soft_labels, message) -> None:
    with pytest.raises(ValueError, match=message):
        from_probs(MODEL, np.array([0, 2]), soft_labels=soft_labels)


# --------------------------------------------------------------------------- real CIFAR-10H


def load_cifar10h(path: Path) -> np.ndarray:
    """The CIFAR-10H probabilities; a missing file skips locally but fails under CI."""
    if not path.is_file():
        message = f"CIFAR-10H probabilities are expected at {path}"
        if "CI" not in os.environ:
            pytest.skip(f"{message} (file missing)")
        pytest.fail(f"{message}, but the file is missing (CI is set, so this is not skipped)")
    return np.load(path, allow_pickle=False)


def test_missing_cifar10h_skips_locally_and_fails_under_ci(monkeypatch, tmp_path) -> None:
    missing = tmp_path / "cifar10h-probs.npy"
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception):
        load_cifar10h(missing)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"expected at .*cifar10h-probs\.npy"):
        load_cifar10h(missing)


@pytest.fixture(scope="module")
def cifar10h() -> np.ndarray:
    human = load_cifar10h(CIFAR10H)
    assert hashlib.sha256(CIFAR10H.read_bytes()).hexdigest() == CIFAR10H_SHA256
    assert human.shape == (10000, 10)
    np.testing.assert_allclose(human.sum(axis=1), 1.0, atol=1e-12)
    return human


@pytest.fixture(scope="module")
def stand_in_labels(cifar10h) -> np.ndarray:
    """Synthetic labels: the human argmax per image. NOT the CIFAR-10 test labels (the
    majority vote disagrees with them on some images); a stand-in wherever a metric needs
    a true class."""
    return cifar10h.argmax(axis=1)


def test_cifar10h_model_equal_to_humans(cifar10h, stand_in_labels) -> None:
    # (a) the model predicts the human distribution itself
    assert np.all(kl_to_human(cifar10h, cifar10h) == 0.0)
    # logits log(h), clipped so the classes no annotator chose get ~1e-300 instead of log 0
    logits = np.log(np.clip(cifar10h, 1e-300, None))
    data = EvalData(logits, stand_in_labels, 10, soft_labels=cifar10h)
    assert compute_metrics(data, ["kld_human"])["kld_human"] == pytest.approx(0.0, abs=1e-12)
    matrix = relative_kl_matrix(cifar10h, cifar10h, stand_in_labels, 10)
    assert np.all(np.diag(matrix) == 0.0)
    assert np.all(matrix[~np.eye(10, dtype=bool)] > 0.1)  # class means differ between classes


def test_cifar10h_uniform_model(cifar10h, stand_in_labels) -> None:
    # (b) uniform model: KL(h || u) = log 10 - H(h) per image
    data = EvalData(np.zeros((10000, 10)), stand_in_labels, 10, soft_labels=cifar10h)
    expected = np.mean(math.log(10) - scipy.stats.entropy(cifar10h, axis=1))
    assert compute_metrics(data, ["kld_human"])["kld_human"] == pytest.approx(expected, rel=1e-10)
    assert 1.5 < expected < math.log(10)  # humans are confident but not always unanimous
    # relative KL of a uniform model: every cell of row i is log 10 - H(hbar_i)
    matrix = relative_kl_matrix(cifar10h, np.full((10000, 10), 0.1), stand_in_labels, 10)
    for i in range(10):
        hbar_i = cifar10h[stand_in_labels == i].mean(axis=0)
        np.testing.assert_allclose(matrix[i], math.log(10) - scipy.stats.entropy(hbar_i))


@pytest.mark.parametrize("eps", [0.1, 0.01])
def test_cifar10h_smoothed_one_hot_model(cifar10h, stand_in_labels, eps) -> None:
    # (c) the model puts 1 - eps + eps/10 on the human argmax a_n and eps/10 elsewhere, so
    # KL(h || p) = -H(h) - h_a log(1 - eps + eps/10) - (1 - h_a) log(eps/10)
    n = len(cifar10h)
    probs = (1 - eps) * np.eye(10)[stand_in_labels] + eps / 10
    h_a = cifar10h[np.arange(n), stand_in_labels]
    expected = np.mean(
        -scipy.stats.entropy(cifar10h, axis=1)
        - h_a * math.log(1 - eps + eps / 10)
        - (1 - h_a) * math.log(eps / 10)
    )
    data = EvalData(np.log(probs), stand_in_labels, 10, soft_labels=cifar10h)
    got = compute_metrics(data, ["kld_human"])["kld_human"]
    assert got == pytest.approx(expected, rel=1e-10)
    assert got == pytest.approx(scipy.stats.entropy(cifar10h, probs, axis=1).mean(), rel=1e-10)


def test_cifar10h_hard_one_hot_model_is_clipped(cifar10h, stand_in_labels) -> None:
    # eps = 0: p = 0 wherever a minority of annotators voted, so log p is clipped at 1e-12:
    # KL(h || p) = -H(h) - (1 - h_a) log 1e-12
    h_a = cifar10h[np.arange(len(cifar10h)), stand_in_labels]
    kl = kl_to_human(cifar10h, np.eye(10)[stand_in_labels])
    expected = -scipy.stats.entropy(cifar10h, axis=1) - (1 - h_a) * math.log(1e-12)
    np.testing.assert_allclose(kl, expected, rtol=1e-10, atol=1e-12)
    assert np.all(np.isfinite(kl))


def test_cifar10h_masked_human_confusion_shows_the_papers_pairs(cifar10h, stand_in_labels) -> None:
    # Figure 3 of Das et al.: the masked class-mean human distribution; "humans are more
    # likely to confuse a dog with a cat than a car"
    matrix = masked_confusion_probabilities(cifar10h, stand_in_labels, 10)
    assert np.all(np.isnan(np.diag(matrix)))
    # off-diagonal row sum = 1 - mean human confidence in the (stand-in) true class
    for i in range(10):
        rows = cifar10h[stand_in_labels == i]
        assert np.nansum(matrix[i]) == pytest.approx(1 - rows[:, i].mean(), rel=1e-10)
    index = {name: k for k, name in enumerate(CIFAR10_CLASSES)}
    nearest = {CIFAR10_CLASSES[i]: CIFAR10_CLASSES[int(np.nanargmax(matrix[i]))] for i in range(10)}
    assert nearest["cat"] == "dog" and nearest["dog"] == "cat"
    assert nearest["automobile"] == "truck" and nearest["truck"] == "automobile"
    assert matrix[index["dog"], index["cat"]] > 10 * matrix[index["dog"], index["automobile"]]
