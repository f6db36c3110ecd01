"""Metrics against hand-worked values and independent implementations (SciPy, scikit-learn)."""

import math
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest
import scipy.special
import scipy.stats
from scipy.spatial.distance import cosine as cosine_distance
from sklearn.metrics import precision_recall_fscore_support

from kdaug.measure.metrics import (
    METRICS,
    EvalData,
    class_separability_score,
    cohesion_adhesion,
    compute_metrics,
    expected_calibration_error,
    kl_divergence,
    log_softmax,
    pairwise_kl,
    reliability_bins,
    softmax,
)

ALL_METRICS = [
    "accuracy",
    "nll",
    "precision_recall_f1",
    "ece",
    "class_separability",
    "class_discrimination",
    "mean_entropy",
    "vscore",
    "kld_human",
    "top5_accuracy",
]

# The hand-worked 3-class, 6-sample classification case.
LABELS = np.array([0, 0, 1, 1, 2, 2])
PREDICTIONS = np.array([0, 1, 1, 1, 0, 2])


def from_predictions(predictions, labels, num_classes=3, **kwargs) -> EvalData:
    """EvalData whose argmax is ``predictions`` (one-hot logits)."""
    return EvalData(
        logits=np.eye(num_classes)[predictions] * 2.0,
        labels=np.asarray(labels),
        num_classes=num_classes,
        **kwargs,
    )


def from_probs(probs, labels, **kwargs) -> EvalData:
    """EvalData whose softmax is ``probs`` (logits = log probs)."""
    probs = np.asarray(probs, dtype=float)
    return EvalData(np.log(probs), np.asarray(labels), probs.shape[1], **kwargs)


def random_probs(rng: np.random.Generator, n: int, c: int) -> np.ndarray:
    return softmax(rng.normal(scale=2.0, size=(n, c)))


# --------------------------------------------------------------------------- helpers


def test_softmax_and_log_softmax_match_scipy_with_temperature() -> None:
    z = np.random.default_rng(0).normal(scale=5.0, size=(6, 3))
    for t in (1.0, 4.0):
        np.testing.assert_allclose(softmax(z, t), scipy.special.softmax(z / t, axis=-1))
        np.testing.assert_allclose(log_softmax(z / t), scipy.special.log_softmax(z / t, axis=-1))
        np.testing.assert_allclose(log_softmax(z, t), np.log(softmax(z, t)))


def test_softmax_is_stable_for_huge_logits() -> None:
    z = np.array([[1000.0, 0.0, -1000.0], [-1e5, -1e5, -1e5]])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        p, logp = softmax(z), log_softmax(z)
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    np.testing.assert_allclose(p[0], [1.0, 0.0, 0.0], atol=1e-300)
    np.testing.assert_allclose(p[1], [1 / 3] * 3)
    assert logp[0].tolist() == [0.0, -1000.0, -2000.0]


def test_softmax_rejects_a_nonpositive_temperature() -> None:
    with pytest.raises(ValueError, match="temperature"):
        softmax(np.zeros((1, 2)), 0.0)


def test_kl_divergence_hand_values_and_scipy() -> None:
    assert kl_divergence([0.5, 0.5, 0.0], [0.25, 0.25, 0.5]) == pytest.approx(math.log(2))
    assert kl_divergence([0.3, 0.7], [0.3, 0.7]) == 0.0
    # q = 0 where p > 0: clipped at 1e-12, so large but finite
    assert kl_divergence([1.0, 0.0], [0.0, 1.0]) == pytest.approx(-math.log(1e-12))
    rng = np.random.default_rng(1)
    p, q = random_probs(rng, 5, 4), random_probs(rng, 5, 4)
    np.testing.assert_allclose(kl_divergence(p, q), scipy.stats.entropy(p, q, axis=-1))
    np.testing.assert_allclose(kl_divergence(p.T, q.T, axis=0), scipy.stats.entropy(p, q, axis=1))


def test_pairwise_kl_equals_broadcast_kl() -> None:
    p = random_probs(np.random.default_rng(2), 4, 5)
    p[0, 1] = 0.0  # a zero entry on each side of a KL
    expected = kl_divergence(p[:, None, :], p[None, :, :])
    np.testing.assert_allclose(pairwise_kl(p), expected, atol=1e-12)
    assert np.all(np.diag(pairwise_kl(p)) == 0.0)


# --------------------------------------------------------------------------- EvalData, registry


def test_registry_holds_every_configured_metric() -> None:
    assert METRICS.names() == sorted(ALL_METRICS)
    with pytest.raises(KeyError, match="known: accuracy"):
        compute_metrics(from_predictions(PREDICTIONS, LABELS), ["top5"])


def test_compute_metrics_merges_flat_floats() -> None:
    rng = np.random.default_rng(3)
    data = EvalData(
        rng.normal(size=(9, 3)),
        np.arange(9) % 3,
        3,
        rng.normal(size=(9, 4)),
        soft_labels=random_probs(rng, 9, 3),
    )
    out = compute_metrics(data, [*ALL_METRICS, "accuracy"])
    assert set(out) == {
        "accuracy",
        "test_loss",
        "precision_macro",
        "recall_macro",
        "f1_macro",
        "ece",
        "class_separability",
        "cohesion",
        "adhesion",
        "class_discrimination",
        "mean_entropy",  # (vscore adds nothing: no class groups configured here)
        "kld_human",
        "top5_accuracy",
    }
    assert all(type(v) is float and math.isfinite(v) for v in out.values())


def test_evaldata_derives_probs_once_and_is_frozen() -> None:
    data = from_predictions(PREDICTIONS, LABELS)
    assert data.probs is data.probs
    np.testing.assert_allclose(data.probs.sum(axis=1), 1.0)
    with pytest.raises(AttributeError):
        data.num_classes = 4  # type: ignore[misc]


@pytest.mark.parametrize(
    ("logits", "labels", "num_classes", "embeddings", "message"),
    [
        (np.zeros(3), [0, 1, 2], 3, None, "logits must be"),
        (np.zeros((3, 3)), [0, 1, 2], 4, None, "num_classes"),
        (np.zeros((3, 3)), [0, 1], 3, None, "labels must be"),
        (np.zeros((3, 3)), [0.0, 1.0, 2.0], 3, None, "integers"),
        (np.zeros((3, 3)), [0, 1, 3], 3, None, "lie in"),
        (np.zeros((3, 3)), [0, 1, 2], 3, np.zeros((2, 4)), "embeddings must be"),
    ],
)
def test_evaldata_rejects_inconsistent_inputs(
    logits, labels, num_classes, embeddings, message
) -> None:
    with pytest.raises(ValueError, match=message):
        EvalData(logits, np.asarray(labels), num_classes, embeddings)


def test_small_integer_labels_do_not_overflow() -> None:
    # uint8 labels times num_classes would wrap around inside the confusion matrix
    labels = np.arange(300) % 150
    data = from_predictions(labels, labels.astype(np.uint8), 150)
    assert data.labels.dtype == np.int64
    assert compute_metrics(data, ["precision_recall_f1"])["f1_macro"] == 1.0


def test_metrics_module_does_not_import_torch() -> None:
    code = "import sys, kdaug.measure.metrics; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --------------------------------------------------------------------------- accuracy, nll


def test_accuracy_hand_case() -> None:
    # correct at samples 0, 2, 3, 5
    assert compute_metrics(from_predictions(PREDICTIONS, LABELS), ["accuracy"]) == {
        "accuracy": pytest.approx(4 / 6)
    }


def test_accuracy_and_nll_are_invariant_to_adding_constants_to_logits() -> None:
    rng = np.random.default_rng(4)
    logits, labels = rng.normal(size=(20, 5)), rng.integers(0, 5, 20)
    base = compute_metrics(EvalData(logits, labels, 5), ["accuracy", "nll"])
    for shift in (7.0, rng.normal(scale=100.0, size=(20, 1))):  # global and per sample
        shifted = compute_metrics(EvalData(logits + shift, labels, 5), ["accuracy", "nll"])
        assert shifted == pytest.approx(base, rel=1e-9)
    scaled = compute_metrics(EvalData(logits * 3.0, labels, 5), ["accuracy"])
    assert scaled["accuracy"] == base["accuracy"]  # a temperature keeps the argmax too


def test_nll_hand_case() -> None:
    # softmax rows [1/4, 1/4, 1/2] (label 2) and [1/8, 3/8, 1/2] (label 1)
    logits = np.log([[1.0, 1.0, 2.0], [1.0, 3.0, 4.0]]) + np.array([[0.0], [50.0]])
    out = compute_metrics(EvalData(logits, np.array([2, 1]), 3), ["nll"])
    assert out["test_loss"] == pytest.approx((math.log(2) + math.log(8 / 3)) / 2, rel=1e-12)


def test_nll_of_a_confident_mistake_is_finite() -> None:
    data = EvalData(np.array([[0.0, 800.0]]), np.array([0]), 2)
    assert compute_metrics(data, ["nll"])["test_loss"] == pytest.approx(800.0)


def test_uniform_predictions() -> None:
    # all logits equal: every argmax is class 0, p_y = 1/3 everywhere
    data = EvalData(np.full((6, 3), 0.7), LABELS, 3, options={"ece_bins": 15})
    out = compute_metrics(data, ["accuracy", "nll", "precision_recall_f1", "ece"])
    expected = {
        "accuracy": 1 / 3,
        "test_loss": math.log(3),
        # class 0: P = 2/6, R = 1, F1 = 1/2; classes 1 and 2 never predicted: 0
        "precision_macro": 1 / 9,
        "recall_macro": 1 / 3,
        "f1_macro": 1 / 6,
        "ece": 0.0,  # confidence 1/3 = accuracy 1/3
    }
    assert out == pytest.approx(expected, abs=1e-12)
    separability = compute_metrics(data, ["class_separability"])["class_separability"]
    assert separability == pytest.approx(0.0, abs=1e-12)  # every class has the same mean


def test_perfect_predictions() -> None:
    data = from_predictions(LABELS, LABELS)
    out = compute_metrics(data, ["accuracy", "precision_recall_f1"])
    assert out == {"accuracy": 1.0, "precision_macro": 1.0, "recall_macro": 1.0, "f1_macro": 1.0}


# --------------------------------------------------------------------------- precision, recall, F1


def sklearn_macro(predictions, labels, num_classes) -> dict[str, float]:
    p, r, f, _ = precision_recall_fscore_support(
        labels, predictions, labels=np.arange(num_classes), average="macro", zero_division=0
    )
    return {"precision_macro": p, "recall_macro": r, "f1_macro": f}


def test_precision_recall_f1_hand_case() -> None:
    # class 0: predicted at 0, 4 (TP 1) -> P 1/2, R 1/2, F1 1/2
    # class 1: predicted at 1, 2, 3 (TP 2) -> P 2/3, R 1, F1 4/5
    # class 2: predicted at 5 (TP 1) -> P 1, R 1/2, F1 2/3
    out = compute_metrics(from_predictions(PREDICTIONS, LABELS), ["precision_recall_f1"])
    expected = {"precision_macro": 13 / 18, "recall_macro": 2 / 3, "f1_macro": 59 / 90}
    assert out == pytest.approx(expected, rel=1e-12)
    assert sklearn_macro(PREDICTIONS, LABELS, 3) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    ("predictions", "labels", "num_classes", "expected"),
    [
        # class 2 never predicted: P = R = F1 = 0; class 1: P 1/2, R 1, F1 2/3
        ([0, 0, 1, 1, 1, 1], LABELS, 3, (1 / 2, 2 / 3, 5 / 9)),
        # class 3 neither present nor predicted: it still counts, as 0, in the macro mean
        (LABELS, LABELS, 4, (3 / 4, 3 / 4, 3 / 4)),
    ],
)
def test_precision_recall_f1_zero_division(predictions, labels, num_classes, expected) -> None:
    data = from_predictions(np.asarray(predictions), labels, num_classes)
    out = compute_metrics(data, ["precision_recall_f1"])
    want = dict(zip(["precision_macro", "recall_macro", "f1_macro"], expected, strict=True))
    assert out == pytest.approx(want, rel=1e-12)
    assert sklearn_macro(predictions, labels, num_classes) == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_precision_recall_f1_matches_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    c = 6
    labels = rng.integers(0, c - 1, 40)  # class 5 never a true label
    predictions = np.where(rng.random(40) < 0.5, labels, rng.integers(0, c, 40))
    out = compute_metrics(from_predictions(predictions, labels, c), ["precision_recall_f1"])
    assert out == pytest.approx(sklearn_macro(predictions, labels, c), rel=1e-12)


# --------------------------------------------------------------------------- ECE


# confidence 0.9 (right), 0.9 (wrong), 0.45 (wrong), 0.7 (right)
ECE_PROBS = np.array(
    [[0.9, 0.05, 0.05], [0.05, 0.9, 0.05], [0.45, 0.35, 0.2], [0.1, 0.2, 0.7]],
)
ECE_LABELS = np.array([0, 0, 2, 2])


def test_reliability_bins_hand_case() -> None:
    bins = reliability_bins(ECE_PROBS, ECE_LABELS)
    np.testing.assert_allclose(bins["bin_lower"], np.arange(15) / 15)
    np.testing.assert_allclose(bins["bin_upper"], np.arange(1, 16) / 15)
    # 0.9 in (13/15, 14/15], 0.7 in (10/15, 11/15], 0.45 in (6/15, 7/15]
    count = np.zeros(15, dtype=int)
    count[[13, 10, 6]] = [2, 1, 1]
    np.testing.assert_array_equal(bins["count"], count)
    filled = count > 0
    np.testing.assert_allclose(bins["accuracy"][[6, 10, 13]], [0.0, 1.0, 0.5])
    np.testing.assert_allclose(bins["confidence"][[6, 10, 13]], [0.45, 0.7, 0.9])
    assert np.isnan(bins["accuracy"][~filled]).all()
    assert np.isnan(bins["confidence"][~filled]).all()


def test_ece_hand_case() -> None:
    expected = 2 / 4 * abs(0.5 - 0.9) + 1 / 4 * abs(0.0 - 0.45) + 1 / 4 * abs(1.0 - 0.7)
    assert expected == pytest.approx(0.3875)
    assert expected_calibration_error(ECE_PROBS, ECE_LABELS) == pytest.approx(expected)
    out = compute_metrics(from_probs(ECE_PROBS, ECE_LABELS), ["ece"])
    assert out["ece"] == pytest.approx(expected)


def test_ece_bins_are_closed_on_the_right_and_the_first_holds_zero() -> None:
    # 4 bins with exact edges; confidences exactly on the edges 0.5 and 1.0
    # (ties predict class 0: rows 0 and 3 are right and wrong, rows 1 and 2 both right)
    probs = np.array([[0.5, 0.5], [1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    bins = reliability_bins(probs, np.array([0, 0, 1, 1]), n_bins=4)
    np.testing.assert_array_equal(bins["count"], [0, 2, 0, 2])
    np.testing.assert_array_equal(bins["accuracy"][[1, 3]], [0.5, 1.0])
    np.testing.assert_array_equal(bins["confidence"][[1, 3]], [0.5, 1.0])
    zero = reliability_bins(np.zeros((1, 3)), np.array([0]), n_bins=4)
    np.testing.assert_array_equal(zero["count"], [1, 0, 0, 0])


def test_ece_is_zero_for_a_perfectly_calibrated_construction() -> None:
    # per confidence level c, a fraction c of the samples is right: acc(B) = conf(B)
    rows, labels = [], []
    for confidence, n, n_right in [(0.7, 10, 7), (0.5, 4, 2), (1.0, 3, 3)]:
        rest = (1.0 - confidence) / 2
        rows += [[confidence, rest, rest]] * n
        labels += [0] * n_right + [1] * (n - n_right)
    probs, labels = np.array(rows), np.array(labels)
    assert expected_calibration_error(probs, labels) == pytest.approx(0.0, abs=1e-12)
    data = from_probs(np.clip(probs, 1e-300, None), labels, options={"ece_bins": 10})
    assert compute_metrics(data, ["ece"])["ece"] == pytest.approx(0.0, abs=1e-12)


def test_ece_bin_count_comes_from_options() -> None:
    # confidences 0.4 (right) and 0.9 (wrong)
    probs, labels = [[0.4, 0.3, 0.3], [0.05, 0.05, 0.9]], [0, 0]
    one_bin = 1.0 * abs(1 / 2 - 0.65)
    two_bins = 1 / 2 * abs(1.0 - 0.4) + 1 / 2 * abs(0.0 - 0.9)
    for n_bins, expected in [(1, one_bin), (2, two_bins), (15, two_bins)]:
        data = from_probs(probs, labels, options={"ece_bins": n_bins})
        assert compute_metrics(data, ["ece"])["ece"] == pytest.approx(expected)
    assert compute_metrics(from_probs(probs, labels), ["ece"])["ece"] == pytest.approx(two_bins)


# --------------------------------------------------------------------------- class separability


def test_class_separability_hand_case() -> None:
    # p_0 = [0.7, 0.3], p_1 = [0.3, 0.7]: KL both ways = 0.4 ln(7/3), S = 2 KL / 2^2
    probs = np.array([[0.8, 0.2], [0.6, 0.4], [0.2, 0.8], [0.4, 0.6]])
    labels = np.array([0, 0, 1, 1])
    expected = 0.2 * math.log(7 / 3)
    assert class_separability_score(probs, labels) == pytest.approx(expected, rel=1e-12)
    out = compute_metrics(from_probs(probs, labels), ["class_separability"])
    assert out["class_separability"] == pytest.approx(expected, rel=1e-12)


def test_class_separability_matches_scipy_and_skips_absent_classes() -> None:
    rng = np.random.default_rng(5)
    probs = random_probs(rng, 9, 4)
    labels = np.array([0, 0, 0, 2, 2, 1, 1, 1, 2])  # class 3 absent: C = 3
    means = [probs[labels == k].mean(axis=0) for k in range(3)]
    expected = sum(scipy.stats.entropy(p, q) for p in means for q in means) / 3**2
    assert class_separability_score(probs, labels) == pytest.approx(expected, rel=1e-12)
    out = compute_metrics(from_probs(probs, labels), ["class_separability"])
    assert out["class_separability"] == pytest.approx(expected, rel=1e-9)


# --------------------------------------------------------------------------- class discrimination


def brute_force_discrimination(embeddings: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Sec. 3.4 by double loops over sample pairs (SciPy z-scores and cosine distance)."""
    z = scipy.stats.zscore(embeddings, axis=0)
    classes = sorted(set(labels.tolist()))
    members = {k: [a for a in range(len(labels)) if labels[a] == k] for k in classes}
    cohesions = []
    for k in classes:
        pairs = [(a, b) for a in members[k] for b in members[k] if a < b]
        if pairs:
            cohesions.append(np.mean([1 - cosine_distance(z[a], z[b]) for a, b in pairs]))
    adhesions = [
        np.mean([1 - cosine_distance(z[a], z[b]) for a in members[i] for b in members[j]])
        for i in classes
        for j in classes
        if i < j
    ]
    cohesion, adhesion = float(np.mean(cohesions)), float(np.mean(adhesions))
    return {
        "cohesion": cohesion,
        "adhesion": adhesion,
        "class_discrimination": (cohesion - adhesion) / math.sqrt(z.shape[1]),
    }


def discrimination(embeddings, labels) -> dict[str, float]:
    embeddings, labels = np.asarray(embeddings, dtype=float), np.asarray(labels)
    c = int(labels.max()) + 1
    data = EvalData(np.zeros((len(labels), c)), labels, c, embeddings)
    return compute_metrics(data, ["class_discrimination"])


@pytest.mark.parametrize("seed", range(3))
def test_class_discrimination_matches_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = np.array([0, 0, 0, 1, 1, 1, 2, 2, 3])  # class 3 has one sample: no cohesion
    embeddings = rng.normal(size=(9, 4)) + 1.5 * rng.normal(size=(4, 4))[labels]
    expected = brute_force_discrimination(embeddings, labels)
    assert discrimination(embeddings, labels) == pytest.approx(expected, rel=1e-10)


def test_class_discrimination_hand_case() -> None:
    # already standardised (means 0, stds 1); unit vectors (+-1, +-1) / sqrt 2
    # cohesion: cos((1,1),(1,-1)) = cos((-1,1),(-1,-1)) = 0
    # adhesion: cross cosines 0, -1, -1, 0 -> -1/2; D = (0 + 1/2) / sqrt 2
    embeddings = [[1, 1], [1, -1], [-1, 1], [-1, -1]]
    out = discrimination(embeddings, [0, 0, 1, 1])
    expected = {"cohesion": 0.0, "adhesion": -0.5, "class_discrimination": 0.5 / math.sqrt(2)}
    assert out == pytest.approx(expected, abs=1e-12)


def test_cohesion_is_the_pair_mean_not_half_of_it() -> None:
    # identical samples within a class: cohesion exactly 1 (the paper's printed normaliser
    # would give 1/2); the constant second feature standardises to 0 but still counts in d
    embeddings = [[1, 7], [1, 7], [1, 7], [-1, 7], [-1, 7], [-1, 7]]
    out = discrimination(embeddings, [0, 0, 0, 1, 1, 1])
    expected = {"cohesion": 1.0, "adhesion": -1.0, "class_discrimination": 2 / math.sqrt(2)}
    assert out == pytest.approx(expected, abs=1e-12)


def test_class_discrimination_is_invariant_to_feature_affine_maps() -> None:
    rng = np.random.default_rng(6)
    labels = np.arange(12) % 3
    embeddings = rng.normal(size=(12, 5))
    mapped = embeddings * rng.uniform(0.1, 10.0, 5) + rng.normal(scale=50.0, size=5)
    assert discrimination(mapped, labels) == pytest.approx(discrimination(embeddings, labels))


def test_cohesion_adhesion_nan_without_pairs_or_second_class() -> None:
    embeddings = np.random.default_rng(7).normal(size=(3, 2))
    assert np.isnan(cohesion_adhesion(embeddings, np.array([0, 1, 2]))[0])
    assert np.isnan(cohesion_adhesion(embeddings, np.array([0, 0, 0]))[1])


def test_class_discrimination_needs_embeddings() -> None:
    with pytest.raises(ValueError, match="needs embeddings"):
        compute_metrics(from_predictions(PREDICTIONS, LABELS), ["class_discrimination"])


def test_class_discrimination_builds_no_n_by_n_matrix() -> None:
    rng = np.random.default_rng(8)
    n, d = 10_000, 16  # an N x N float64 matrix would be 800 MB
    embeddings, labels = rng.normal(size=(n, d)), rng.integers(0, 10, n)
    tracemalloc.start()
    try:
        cohesion, adhesion = cohesion_adhesion(embeddings, labels)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 20 * n * d * 8  # a few copies of the embeddings
    assert abs(cohesion) < 0.01 and abs(adhesion) < 0.01  # isotropic noise: ~0


def test_top5_accuracy_by_hand() -> None:
    """7 classes, 4 samples: the true class ranked 1st, 5th (a hit), 6th (a miss), and
    tied with the fifth-best (a hit: only 4 classes score strictly higher)."""
    logits = np.array([
        [9.0, 1, 2, 3, 4, 5, 6],  # label 0 ranked 1st
        [7.0, 6, 5, 4, 3, 2, 1],  # label 4 (logit 3) ranked 5th
        [7.0, 6, 5, 4, 3, 2, 1],  # label 5 (logit 2) ranked 6th
        [7.0, 6, 5, 4, 3, 3, 1],  # label 5 (logit 3) tied with label 4 at the 5th place
    ])  # fmt: skip
    data = EvalData(logits, np.array([0, 4, 5, 5]), 7)
    assert compute_metrics(data, ["top5_accuracy"]) == {"top5_accuracy": 0.75}
    # with at most 5 classes every sample is a top-5 hit
    assert compute_metrics(from_predictions(PREDICTIONS, LABELS), ["top5_accuracy"]) == {
        "top5_accuracy": 1.0
    }
