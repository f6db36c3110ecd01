"""Choi et al.'s (2023) V-score: how well penultimate features cluster by class.

Choi et al. (Figures 1 and 3) report "clustering metrics, such as the V-score [21]" of
the penultimate-layer features of the samples of five CIFAR-100 classes, for a group of
semantically similar classes (:data:`SIMILAR`) and one of dissimilar classes
(:data:`DISSIMILAR`). [21] is the V-measure of Rosenberg & Hirschberg (2007): for true
classes ``C`` and clusters ``K``, homogeneity ``h = 1 - H(C|K) / H(C)``, completeness
``c = 1 - H(K|C) / H(K)`` and ``V = 2 h c / (h + c)`` (``beta = 1``); 1 when the
clusters are exactly the classes, near 0 when they are independent of them.

The paper does not say which clustering it scores. Ours (a choice, not the paper's):
k-means (scikit-learn ``KMeans``, k-means++ initialisation, ``n_init=10``, a fixed
``random_state``) with ``k`` = the number of classes in the group, on the features as
stored (Euclidean), or on per-dimension z-scores with ``standardize=True``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.cluster import KMeans
from sklearn.metrics import v_measure_score

SIMILAR: tuple[str, ...] = ("baby", "boy", "girl", "man", "woman")
"""Choi et al.'s semantically similar CIFAR-100 classes (fine label names)."""

DISSIMILAR: tuple[str, ...] = ("beaver", "apple", "aquarium_fish", "rocket", "turtle")
"""Choi et al.'s semantically different CIFAR-100 classes (fine label names)."""

GROUPS: dict[str, tuple[str, ...]] = {"similar": SIMILAR, "dissimilar": DISSIMILAR}


def class_indices(class_names: Sequence[str], group: Sequence[str]) -> list[int]:
    """The label index of each name in ``group`` within ``class_names``, in ``group``'s
    order; raises ``ValueError`` naming every class of ``group`` that is missing."""
    names = list(class_names)
    missing = [c for c in group if c not in names]
    if missing:
        raise ValueError(
            f"classes {missing} of the group {list(group)} are not among the "
            f"{len(names)} class names of this split"
        )
    return [names.index(c) for c in group]


def v_score(
    features: np.ndarray,
    labels: np.ndarray,
    classes: Sequence[int],
    seed: int = 0,
    standardize: bool = False,
) -> float:
    """V-measure of a k-means clustering of the rows of ``features`` whose label is in
    ``classes``, against those labels.

    ``features`` is ``(N, D)`` (further dimensions are flattened), ``labels`` ``(N,)``.
    Only rows with ``labels[n]`` in ``classes`` are used; k-means runs with
    ``k = len(set(classes))``, ``n_init=10`` and ``random_state=seed`` on those rows as
    stored, or, with ``standardize``, on each dimension shifted to mean 0 and scaled to
    standard deviation 1 over those rows (constant dimensions are left at 0). Returns
    ``V = 2 h c / (h + c)`` (:func:`sklearn.metrics.v_measure_score`), in [0, 1].
    """
    features = np.asarray(features, dtype=np.float64)
    labels = np.asarray(labels)
    if features.ndim < 2 or len(features) != len(labels):
        raise ValueError(
            f"features must be (N, D) with one row per label; got {features.shape} "
            f"for {labels.shape} labels"
        )
    wanted = sorted(set(int(c) for c in classes))
    if len(wanted) < 2:
        raise ValueError(f"a V-score needs at least two classes, got {list(classes)}")
    keep = np.isin(labels, wanted)
    x = features[keep].reshape(int(keep.sum()), -1)
    y = labels[keep]
    absent = sorted(set(wanted) - set(np.unique(y).tolist()))
    if absent:
        raise ValueError(f"classes {absent} have no samples")
    if standardize:
        std = x.std(axis=0)
        x = (x - x.mean(axis=0)) / np.where(std > 0, std, 1.0)
    clusters = KMeans(n_clusters=len(wanted), n_init=10, random_state=seed).fit_predict(x)
    return float(v_measure_score(y, clusters))
