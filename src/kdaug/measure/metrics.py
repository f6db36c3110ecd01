"""Evaluation metrics on stored logits / embeddings (NumPy only: metric jobs start fast).

Each metric is registered under the name the config lists (``evaluation.metrics``), takes
one :class:`EvalData` and returns a flat dict of named floats; :func:`compute_metrics`
merges them. Nothing here imports torch.

Two metrics need more than logits and labels: ``class_discrimination`` reads
``EvalData.embeddings`` and ``kld_human`` reads ``EvalData.soft_labels`` (CIFAR-10H).
:func:`applicable_metrics` drops them from a list of names when the split lacks that input,
so a metrics job on such a split skips them instead of failing.

Registered names and the keys they return:

=======================  =====================================================
``accuracy``             ``accuracy``
``nll``                  ``test_loss``
``precision_recall_f1``  ``precision_macro``, ``recall_macro``, ``f1_macro``
``ece``                  ``ece``
``class_separability``   ``class_separability``
``class_discrimination`` ``cohesion``, ``adhesion``, ``class_discrimination``
``kld_human``            ``kld_human`` (needs ``soft_labels``)
=======================  =====================================================

Das et al. (2020)'s matrices (not registered: they are (C, C) arrays, not floats):
:func:`relative_kl_matrix` (their Figure 6) and :func:`masked_confusion_probabilities`
(their masked confusion matrices; Figure 3 is the same function of the human labels).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from kdaug.registry import Registry

EPS = 1e-12
"""Probabilities are clipped at this before a log (KL divergences), so ``log 0`` never occurs."""

DEFAULT_ECE_BINS = 15

SOFT_LABEL_TOLERANCE = 1e-6
"""``EvalData.soft_labels`` rows must sum to 1 within this."""


# --------------------------------------------------------------------------- helpers


def log_softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """``log softmax(z / T)`` over the last axis, stable: ``z - max z - log sum exp(z - max z)``."""
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """``p_c = exp(z_c / T) / sum_k exp(z_k / T)`` over the last axis (via :func:`log_softmax`,
    so large logits neither overflow nor give NaN)."""
    return np.exp(log_softmax(logits, temperature))


def _clipped_log(p: np.ndarray) -> np.ndarray:
    return np.log(np.clip(p, EPS, None))


def kl_divergence(p: np.ndarray, q: np.ndarray, axis: int = -1) -> np.ndarray:
    """``KL(p || q) = sum p log(p / q)`` along ``axis`` (broadcasting ``p`` against ``q``).

    Both distributions are clipped at ``EPS = 1e-12`` inside the logs: a zero in ``p``
    contributes ``0 * log(...) = 0`` and a zero in ``q`` gives a large but finite value.
    """
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    return np.sum(p * (_clipped_log(p) - _clipped_log(q)), axis=axis)


def pairwise_kl(p: np.ndarray) -> np.ndarray:
    """``M[i, j] = KL(p_i || p_j)`` for the rows of ``p`` (K, C), as :func:`kl_divergence`.

    Uses ``KL(p_i || p_j) = sum_c p_ic log p_ic - (P @ log(P)^T)_ij``: O(K^2) memory
    instead of the (K, K, C) array that broadcasting would build.
    """
    p = np.asarray(p, dtype=np.float64)
    logp = _clipped_log(p)
    out = np.sum(p * logp, axis=1)[:, None] - p @ logp.T
    np.fill_diagonal(out, 0.0)  # exactly 0, not a rounding residue of either sign
    return out


def class_sums(values: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per class present in ``labels``: (classes (K,), counts (K,), row sums of ``values`` (K, D)).

    Classes are in increasing order; classes with no sample do not appear.
    """
    classes, index = np.unique(labels, return_inverse=True)
    sums = np.zeros((len(classes), values.shape[1]))
    np.add.at(sums, index, values)
    return classes, np.bincount(index, minlength=len(classes)), sums


# --------------------------------------------------------------------------- data


@dataclass(frozen=True, eq=False)
class EvalData:
    """One model's outputs on one split: what every metric reads.

    ``logits`` (N, C) float, ``labels`` (N,) int in ``[0, num_classes)``, optional
    ``embeddings`` (N, D) float (penultimate features), ``options`` for metric
    settings (``{"ece_bins": 15}``), and optional ``soft_labels`` (N, C): one human label
    distribution per sample (CIFAR-10H), non-negative rows summing to 1 within
    ``SOFT_LABEL_TOLERANCE``. ``probs`` and ``predictions`` are derived once, lazily.
    """

    logits: np.ndarray
    labels: np.ndarray
    num_classes: int
    embeddings: np.ndarray | None = None
    options: dict[str, Any] = field(default_factory=dict)
    soft_labels: np.ndarray | None = None

    def __post_init__(self) -> None:
        logits = np.asarray(self.logits, dtype=np.float64)
        labels = np.asarray(self.labels)
        if logits.ndim != 2 or logits.shape[0] == 0:
            raise ValueError(f"logits must be (N, C) with N >= 1, got shape {logits.shape}")
        n, c = logits.shape
        if c != self.num_classes:
            raise ValueError(f"logits have {c} columns but num_classes is {self.num_classes}")
        if labels.shape != (n,) or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"labels must be ({n},) integers, got {labels.dtype} {labels.shape}")
        if labels.min() < 0 or labels.max() >= c:
            raise ValueError(f"labels must lie in [0, {c}), got [{labels.min()}, {labels.max()}]")
        object.__setattr__(self, "logits", logits)
        object.__setattr__(self, "labels", labels.astype(np.int64))  # uint8 would overflow
        if self.embeddings is not None:
            embeddings = np.asarray(self.embeddings, dtype=np.float64)
            if embeddings.ndim != 2 or embeddings.shape[0] != n:
                raise ValueError(f"embeddings must be ({n}, D), got shape {embeddings.shape}")
            object.__setattr__(self, "embeddings", embeddings)
        if self.soft_labels is not None:
            soft = np.asarray(self.soft_labels, dtype=np.float64)
            if soft.shape != (n, c):
                raise ValueError(f"soft_labels must be ({n}, {c}), got shape {soft.shape}")
            if not np.all(soft >= 0):  # also catches NaN
                raise ValueError("soft_labels must be non-negative (and not NaN)")
            error = np.abs(soft.sum(axis=1) - 1.0)
            if not np.all(error <= SOFT_LABEL_TOLERANCE):
                row = int(np.argmax(np.where(np.isfinite(error), error, np.inf)))
                raise ValueError(
                    f"soft_labels rows must sum to 1 (within {SOFT_LABEL_TOLERANCE:g}); "
                    f"row {row} sums to {soft[row].sum()!r}"
                )
            object.__setattr__(self, "soft_labels", soft)

    @cached_property
    def probs(self) -> np.ndarray:
        """Softmax of the logits (T = 1), (N, C)."""
        return softmax(self.logits)

    @cached_property
    def predictions(self) -> np.ndarray:
        """Argmax class per sample (ties: the lowest index), (N,)."""
        return self.logits.argmax(axis=1)


Metric = Callable[[EvalData], dict[str, float]]
METRICS = Registry[Metric]("metric")


REQUIRED_INPUTS: dict[str, str] = {
    "class_discrimination": "embeddings",
    "vscore": "embeddings",
    "kld_human": "soft_labels",
}
"""Metric name -> the optional :class:`EvalData` field it cannot run without."""


def applicable_metrics(data: EvalData, names: Sequence[str]) -> list[str]:
    """``names`` without the metrics that ``data`` lacks the input for, order kept.

    Drops ``class_discrimination`` when ``data.embeddings is None`` and ``kld_human`` when
    ``data.soft_labels is None`` (see ``REQUIRED_INPUTS``); every other name, unknown ones
    included, is kept, so :func:`compute_metrics` still rejects a misspelt name. Use
    ``compute_metrics(data, applicable_metrics(data, names))`` where a configured metric
    should be skipped, not failed, on a split without embeddings or human labels.
    """
    return [
        name
        for name in names
        if name not in REQUIRED_INPUTS or getattr(data, REQUIRED_INPUTS[name]) is not None
    ]


def compute_metrics(data: EvalData, names: Sequence[str]) -> dict[str, float]:
    """The merged outputs of the registered metrics ``names`` (a repeated name runs once).

    A metric whose input is missing raises; filter ``names`` with :func:`applicable_metrics`
    first to skip it instead.
    """
    out: dict[str, float] = {}
    for name in dict.fromkeys(names):
        values = METRICS.get(name)(data)
        clash = out.keys() & values.keys()
        if clash:
            raise ValueError(f"metric {name!r} returns keys already computed: {sorted(clash)}")
        out |= {k: float(v) for k, v in values.items()}
    return out


# --------------------------------------------------------------------------- classification


@METRICS.register("accuracy")
def accuracy(data: EvalData) -> dict[str, float]:
    """Fraction of samples whose argmax logit is the true class."""
    return {"accuracy": float(np.mean(data.predictions == data.labels))}


@METRICS.register("top5_accuracy")
def top5_accuracy(data: EvalData) -> dict[str, float]:
    """Fraction of samples whose true class is among the 5 highest logits (all of them
    with fewer than 5 classes): fewer than 5 classes score strictly above it, so a tie at
    the fifth place counts as a hit (Choi et al.'s Table 2 reports top-1 and top-5)."""
    true = data.logits[np.arange(len(data.labels)), data.labels]
    above = (data.logits > true[:, None]).sum(axis=1)
    return {"top5_accuracy": float(np.mean(above < 5))}


@METRICS.register("mean_entropy")
def mean_entropy(data: EvalData) -> dict[str, float]:
    """Mean Shannon entropy (nats) of the predicted distributions, ``-1/N sum_n p_n^T log
    p_n``: Choi et al.'s measure of how smooth a model's outputs are (their Figure 4)."""
    logp = log_softmax(data.logits)
    return {"mean_entropy": float(-(np.exp(logp) * logp).sum(axis=1).mean())}


@METRICS.register("vscore")
def vscore(data: EvalData) -> dict[str, float]:
    """Choi et al.'s V-score per class group (``options["vscore_groups"]``, name -> class
    names): V-measure of a k-means clustering of the penultimate features of the group's
    samples against their labels (:mod:`kdaug.measure.vscore`). Groups whose classes the split
    does not have (digits, Fashion-MNIST for CIFAR-100's groups) are skipped."""
    from kdaug.measure.vscore import class_indices, v_score

    names = list(data.options.get("class_names", []))
    out = {}
    for group, classes in data.options.get("vscore_groups", {}).items():
        if set(classes) <= set(names):
            indices = class_indices(names, classes)
            out[f"vscore_{group}"] = v_score(data.embeddings, data.labels, indices, seed=0)
    return out


@METRICS.register("nll")
def nll(data: EvalData) -> dict[str, float]:
    """Mean cross-entropy ``-1/N sum_n log p_{n, y_n}`` (the papers' "test loss"),
    from :func:`log_softmax` of the logits, so a confident mistake stays finite."""
    logp = log_softmax(data.logits)
    return {"test_loss": float(-logp[np.arange(len(data.labels)), data.labels].mean())}


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """``M[i, j]`` = number of samples of true class i predicted as j, (C, C)."""
    flat = np.asarray(labels) * num_classes + np.asarray(predictions)
    return np.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def _safe_divide(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a / b`` with 0 where ``b == 0`` (scikit-learn's ``zero_division=0``)."""
    return np.divide(a, b, out=np.zeros_like(a, dtype=np.float64), where=b > 0)


@METRICS.register("precision_recall_f1")
def precision_recall_f1(data: EvalData) -> dict[str, float]:
    """Macro averages over all ``num_classes`` classes.

    Per class: ``P = TP / (TP + FP)``, ``R = TP / (TP + FN)``, ``F1 = 2PR / (P + R)``; a class
    never predicted has P = 0, a class absent from the labels R = 0, and P = R = 0 gives
    F1 = 0 (scikit-learn's ``zero_division=0``). Macro F1 is the mean of the per-class F1
    (scikit-learn's definition), not the F1 of the macro P and R.
    """
    cm = confusion_matrix(data.labels, data.predictions, data.num_classes).astype(np.float64)
    tp = np.diag(cm)
    precision = _safe_divide(tp, cm.sum(axis=0))
    recall = _safe_divide(tp, cm.sum(axis=1))
    f1 = _safe_divide(2 * precision * recall, precision + recall)
    return {
        "precision_macro": float(precision.mean()),
        "recall_macro": float(recall.mean()),
        "f1_macro": float(f1.mean()),
    }


# --------------------------------------------------------------------------- calibration


def reliability_bins(
    probs: np.ndarray, labels: np.ndarray, n_bins: int = DEFAULT_ECE_BINS
) -> dict[str, np.ndarray]:
    """Confidence histogram for reliability diagrams and the ECE.

    Confidence is the max probability; bin m (0-based) holds confidences in
    ``(m / M, (m + 1) / M]``, the first bin also 0, compared against the same float edges
    as the bins report (as Guo et al.'s reference code). Returns arrays of length M:
    ``bin_lower``, ``bin_upper``, ``count`` (int), ``accuracy`` (fraction of argmax
    predictions that are correct) and ``confidence`` (mean max probability); the last two
    are NaN for empty bins.
    """
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    probs = np.asarray(probs, dtype=np.float64)
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == np.asarray(labels)).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # searchsorted(upper, c, "left") = the m with upper[m-1] < c <= upper[m]
    index = np.minimum(np.searchsorted(edges[1:], confidence, side="left"), n_bins - 1)
    count = np.bincount(index, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        bin_accuracy = np.bincount(index, weights=correct, minlength=n_bins) / count
        bin_confidence = np.bincount(index, weights=confidence, minlength=n_bins) / count
    return {
        "bin_lower": edges[:-1],
        "bin_upper": edges[1:],
        "count": count,
        "accuracy": bin_accuracy,
        "confidence": bin_confidence,
    }


def expected_calibration_error(
    probs: np.ndarray, labels: np.ndarray, n_bins: int = DEFAULT_ECE_BINS
) -> float:
    """``ECE = sum_m |B_m| / N * |acc(B_m) - conf(B_m)|`` over the equal-width confidence
    bins of :func:`reliability_bins` (Guo et al. 2017; the calibration metric of Das et al.
    2020); empty bins contribute nothing."""
    bins = reliability_bins(probs, labels, n_bins)
    filled = bins["count"] > 0
    gaps = np.abs(bins["accuracy"][filled] - bins["confidence"][filled])
    return float(np.sum(bins["count"][filled] * gaps) / bins["count"].sum())


@METRICS.register("ece")
def ece(data: EvalData) -> dict[str, float]:
    """Expected calibration error with ``options["ece_bins"]`` bins (default 15)."""
    n_bins = int(data.options.get("ece_bins", DEFAULT_ECE_BINS))
    return {"ece": expected_calibration_error(data.probs, data.labels, n_bins)}


# --------------------------------------------------------------------------- Das et al. 2020


def class_mean_probabilities(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``p_k`` = mean predicted distribution over the samples whose true class is k, one row
    per class present in ``labels`` (in increasing class order), (K, C)."""
    _, counts, sums = class_sums(np.asarray(probs, dtype=np.float64), labels)
    return sums / counts[:, None]


def class_separability_score(probs: np.ndarray, labels: np.ndarray) -> float:
    """Das et al. (2020): ``S_f = 1/C^2 sum_i sum_j KL(p_{f,i} || p_{f,j})``.

    ``p_{f,k}`` is model f's mean predicted distribution over the samples of true class k
    (:func:`class_mean_probabilities`); KL as :func:`kl_divergence` (clipped at 1e-12).
    Classes with no sample are left out, and C counts only the classes present.
    """
    means = class_mean_probabilities(probs, labels)
    return float(pairwise_kl(means).sum() / len(means) ** 2)


@METRICS.register("class_separability")
def class_separability(data: EvalData) -> dict[str, float]:
    """:func:`class_separability_score` of the softmax outputs."""
    return {"class_separability": class_separability_score(data.probs, data.labels)}


def standardize(x: np.ndarray) -> np.ndarray:
    """Per-feature z-scores over samples, ``(x - mean) / std`` (population std);
    features with zero std become 0."""
    x = np.asarray(x, dtype=np.float64)
    mean, std = x.mean(axis=0), x.std(axis=0)
    return np.divide(x - mean, std, out=np.zeros_like(x), where=std > 0)


def cohesion_adhesion(embeddings: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Das et al. (2020) sec. 3.4: mean cohesion and mean adhesion of the classes.

    Embeddings are standardised (:func:`standardize`) and compared by cosine similarity
    ``S(a, b) = u_a . u_b`` with ``u = z / |z|`` (a sample whose standardised vector is 0
    gets ``u = 0``, i.e. similarity 0 to everything).

    * Cohesion ``C(i)``: the mean of S over the ``N_i (N_i - 1) / 2`` distinct pairs within
      class i. The paper prints the normaliser ``1 / (N (N - 1))`` for a sum over pairs
      ``i < j``, which would halve the mean (at most 0.5); its published cohesions
      (0.739-0.917) are consistent only with the true mean, used here. Classes with fewer
      than 2 samples have no pair and are left out.
    * Adhesion ``A(i, j)``: the mean of S over all ``N_i N_j`` pairs across classes i and j.

    Returns ``(mean_i C(i), mean_{i<j} A(i, j))`` over the classes present (NaN where there
    is no class with 2 samples, or fewer than 2 classes).

    Vectorised without an N x N similarity matrix: with class sums ``s_i = sum_{a in i} u_a``,
    ``sum_{a, b in i} u_a . u_b = |s_i|^2``, so the sum over ordered distinct pairs is
    ``|s_i|^2 - sum_{a in i} |u_a|^2`` and the cross-class sum is ``s_i . s_j``: O(N D + K^2 D)
    time and O(N D) memory.
    """
    z = standardize(embeddings)
    norms = np.linalg.norm(z, axis=1, keepdims=True)
    u = np.divide(z, norms, out=np.zeros_like(z), where=norms > 0)
    nonzero = (norms > 0).astype(np.float64)  # |u_a|^2: 1, or 0 for a zero vector
    # one grouping pass: per class, the sum of u (columns :-1) and of |u_a|^2 (last column)
    _, counts, sums = class_sums(np.hstack([u, nonzero]), labels)
    s, self_similarity = sums[:, :-1], sums[:, -1]
    gram = s @ s.T
    counts = counts.astype(np.float64)
    paired = counts >= 2
    within = (np.diag(gram) - self_similarity)[paired] / (counts * (counts - 1))[paired]
    upper = np.triu_indices(len(counts), k=1)
    cross = gram[upper] / np.outer(counts, counts)[upper]
    cohesion = float(within.mean()) if within.size else float("nan")
    adhesion = float(cross.mean()) if cross.size else float("nan")
    return cohesion, adhesion


@METRICS.register("class_discrimination")
def class_discrimination(data: EvalData) -> dict[str, float]:
    """Das et al. (2020) sec. 3.4: ``D = (mean_i C(i) - mean_{i<j} A(i, j)) / sqrt(d)``,
    d the embedding dimension; cohesion and adhesion as :func:`cohesion_adhesion`."""
    if data.embeddings is None:
        raise ValueError(
            "metric 'class_discrimination' needs embeddings, but this EvalData has none"
        )
    cohesion, adhesion = cohesion_adhesion(data.embeddings, data.labels)
    return {
        "cohesion": cohesion,
        "adhesion": adhesion,
        "class_discrimination": (cohesion - adhesion) / float(np.sqrt(data.embeddings.shape[1])),
    }


# ------------------------------------------------------------- human labels (Das et al. 2020)


def _check_distributions(
    name: str, values: np.ndarray, labels: np.ndarray | None = None, num_classes: int | None = None
) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2 or values.shape[0] == 0:
        raise ValueError(f"{name} must be (N, C) with N >= 1, got shape {values.shape}")
    if num_classes is not None and values.shape[1] != num_classes:
        raise ValueError(f"{name} have {values.shape[1]} columns but num_classes is {num_classes}")
    if labels is not None:
        labels = np.asarray(labels)
        n = values.shape[0]
        if labels.shape != (n,) or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"labels must be ({n},) integers, got {labels.dtype} {labels.shape}")
        if labels.min() < 0 or labels.max() >= values.shape[1]:
            raise ValueError(
                f"labels must lie in [0, {values.shape[1]}), got [{labels.min()}, {labels.max()}]"
            )
    return values


def class_mean_matrix(values: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Row k = mean of the rows of ``values`` (N, C) whose true class is k, (num_classes, C);
    a class with no sample gives a row of NaN. :func:`class_mean_probabilities` scattered
    into all ``num_classes`` rows."""
    values = _check_distributions("values", values, labels, num_classes)
    labels = np.asarray(labels, dtype=np.int64)
    out = np.full((num_classes, values.shape[1]), np.nan)
    out[np.unique(labels)] = class_mean_probabilities(values, labels)
    return out


def kl_to_human(human: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Per sample, ``KL(h_n || p_n) = sum_c h_nc log(h_nc / p_nc)``, (N,).

    Direction: the human distribution ``h_n`` (CIFAR-10H) is the reference and the model's
    ``p_n`` the approximation. Das et al. (2020) print ``D_KL(p_f(x_i), p_h(x_i))`` but call
    it "nothing but the cross-entropy loss between the model predictions and human labels",
    i.e. ``CE(h, p) = -sum_c h log p = H(h) + KL(h || p)``: with the human labels as targets
    the two differ by ``H(h)``, which does not depend on the model. Clipping as
    :func:`kl_divergence` (at ``EPS``): a class no annotator chose contributes 0, a class the
    model gives probability 0 but a human does not gives a large but finite term.
    """
    human = _check_distributions("human", human)
    probs = _check_distributions("probs", probs)
    if human.shape != probs.shape:
        raise ValueError(f"human {human.shape} and probs {probs.shape} must have one shape")
    return kl_divergence(human, probs, axis=1)


def relative_kl_matrix(
    human: np.ndarray, probs: np.ndarray, labels: np.ndarray, num_classes: int
) -> np.ndarray:
    """Das et al. (2020) Figure 6, "Relative KL-Divergence Confusion Matrix", (C, C):
    ``M[i, j] = KL(hbar_i || pbar_j) = sum_c hbar_ic log(hbar_ic / pbar_jc)``.

    ``hbar_k`` and ``pbar_k`` are the mean human and mean model distributions over the
    samples of true class k (:func:`class_mean_matrix`); "each cell represents the
    KL-Divergence between the human estimate on that class and the model's estimate". The
    human mean is the reference, as in :func:`kl_to_human`; the diagonal compares the same
    class and is exactly 0 where ``hbar_k == pbar_k``. A class with no sample gives NaN in its
    row and column. KL clipped as :func:`kl_divergence`; computed as
    ``sum_c hbar_ic log hbar_ic - (Hbar @ log(Pbar)^T)_ij`` (no (C, C, C) array).
    """
    human = _check_distributions("human", human, labels, num_classes)
    probs = _check_distributions("probs", probs, labels, num_classes)
    if human.shape != probs.shape:
        raise ValueError(f"human {human.shape} and probs {probs.shape} must have one shape")
    hbar = class_mean_matrix(human, labels, num_classes)
    pbar = class_mean_matrix(probs, labels, num_classes)
    out = np.sum(hbar * _clipped_log(hbar), axis=1)[:, None] - hbar @ _clipped_log(pbar).T
    # the diagonal term by term, so equal means give exactly 0 rather than a rounding residue
    np.fill_diagonal(out, kl_divergence(hbar, pbar, axis=1))
    absent = np.bincount(np.asarray(labels), minlength=num_classes) == 0
    out[absent, :] = np.nan
    out[:, absent] = np.nan
    return out


def masked_confusion_probabilities(
    probs: np.ndarray, labels: np.ndarray, num_classes: int
) -> np.ndarray:
    """Das et al. (2020)'s masked confusion matrix, (C, C): ``M[i, j] = mean_{n: y_n = i}
    p_nj`` for ``i != j``, ``M[i, i] = NaN``.

    Row i is the mean predicted distribution over the samples of true class i
    (:func:`class_mean_matrix`); the diagonal (the confident, correct mass) is masked to show
    which classes share probability. Applied to the CIFAR-10H distributions it gives the
    paper's Figure 3 (average human confidence per ground-truth class). A class with no
    sample gives a row of NaN.
    """
    probs = _check_distributions("probs", probs, labels, num_classes)
    out = class_mean_matrix(probs, labels, num_classes)
    np.fill_diagonal(out, np.nan)
    return out


@METRICS.register("kld_human")
def kld_human(data: EvalData) -> dict[str, float]:
    """Das et al. (2020) sec. 3.4: ``1/N sum_n KL(h_n || p_n)``, the mean of
    :func:`kl_to_human` between the human labels ``data.soft_labels`` and the softmax
    outputs (the mean cross-entropy to the human labels minus their mean entropy)."""
    if data.soft_labels is None:
        raise ValueError(
            "kld_human needs a split with human soft labels (CIFAR-10H), "
            "but this EvalData has no soft_labels"
        )
    return {"kld_human": float(kl_to_human(data.soft_labels, data.probs).mean())}
