"""Choi et al. (2023): partial mixup and the rescaled-logit KD loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kdaug.train.augment import OPS
from kdaug.train.losses import RescaledKD, build_loss, rescale


def _batch(n: int = 20, classes: int = 4):
    x = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 1, 2, 2).clone()
    y = torch.nn.functional.one_hot(torch.arange(n) % classes, classes).float()
    return x, y


@pytest.mark.parametrize("fraction", [0.1, 0.3, 0.5, 0.8])
def test_partial_mixup_mixes_exactly_the_stated_fraction(fraction):
    x, y = _batch()
    op = OPS.get("mixup")(alpha=1.0, fraction=fraction)
    out_x, out_y = op(x, y, np.random.default_rng(7))
    # Replay the op's draws: lambda, the partner permutation, then the mixed rows.
    rng = np.random.default_rng(7)
    lam, perm = rng.beta(1.0, 1.0), rng.permutation(len(x))
    rows = rng.choice(len(x), size=round(fraction * len(x)), replace=False)
    assert len(rows) == round(fraction * len(x))
    for i in range(len(x)):
        if i in rows:
            expected = lam * x[i] + (1 - lam) * x[perm[i]]
            torch.testing.assert_close(out_x[i], expected)
            torch.testing.assert_close(out_y[i], lam * y[i] + (1 - lam) * y[perm[i]])
        else:
            assert torch.equal(out_x[i], x[i]) and torch.equal(out_y[i], y[i])
    # A row paired with itself stays (up to rounding of lam * x + (1 - lam) * x).
    changed = (~torch.isclose(out_x, x)).flatten(1).any(dim=1).sum().item()
    assert changed == sum(perm[i] != i for i in rows)
    assert torch.equal(x, _batch()[0])  # the input batch is not modified in place


def test_full_mixup_is_plain_mixup():
    x, y = _batch()
    a = OPS.get("mixup")(alpha=0.4)(x, y, np.random.default_rng(3))
    b = OPS.get("mixup")(alpha=0.4, fraction=1.0)(x, y, np.random.default_rng(3))
    assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))
    with pytest.raises(ValueError, match="fraction"):
        OPS.get("mixup")(fraction=0.0)


def test_official_code_reading_mixes_per_sample_with_two_permutations():
    x, y = _batch()
    out_x, out_y = OPS.get("mixup")(alpha=0.4, fraction=0.1, reading="official_code")(
        x, y, np.random.default_rng(5)
    )
    # Replay the draws Choi et al.'s PMU makes: two permutations, one lambda per sample,
    # int(B * 0.9) rows drawn with replacement set clean (lambda = 1).
    rng = np.random.default_rng(5)
    p1, p2 = rng.permutation(20), rng.permutation(20)
    lam = rng.beta(0.4, 0.4, size=20)
    lam[rng.integers(0, 20, size=int(20 * 0.9))] = 1.0
    for i in range(20):
        torch.testing.assert_close(out_x[i], lam[i] * x[p1[i]] + (1 - lam[i]) * x[p2[i]])
        torch.testing.assert_close(out_y[i], lam[i] * y[p1[i]] + (1 - lam[i]) * y[p2[i]])
    with pytest.raises(ValueError, match="reading"):
        OPS.get("mixup")(reading="paper")


def test_official_code_pmu_10_percent_mixes_about_41_percent_at_batch_64():
    """The code's "PMU 10%" (percent 0.9) draws 57 clean rows with replacement: expected
    distinct rows 64 (1 - (63/64)^57) = 37.9, so ~40.8 % of the batch stays mixed."""
    n = 64
    x = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1)
    y = torch.nn.functional.one_hot(torch.arange(n) % 4, 4).float()
    op = OPS.get("mixup")(alpha=1.0, fraction=0.1, reading="official_code")
    rng = np.random.default_rng(0)
    mixed = []
    for _ in range(400):
        _, out_y = op(x, y, rng)
        mixed.append(((out_y > 0).sum(dim=1) > 1).float().mean().item())  # two labels
    expected = (1 - 1 / n) ** int(n * 0.9)  # share of rows no clean draw hits
    # rows whose two partners share a label also look clean: at most 1/4 of them here
    assert expected * 0.70 < np.mean(mixed) <= expected + 0.02
    assert 0.40 < expected < 0.42
    paper = OPS.get("mixup")(alpha=1.0, fraction=0.1)
    _, out_y = paper(x, y, np.random.default_rng(0))
    assert ((out_y > 0).sum(dim=1) > 1).sum().item() <= round(0.1 * n)


def _softmax(v: np.ndarray) -> np.ndarray:
    e = np.exp(v - v.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_rescaled_kd_equals_hand_computation():
    s = np.array([[2.0, 0.5, -1.0, 0.0], [0.1, 0.2, 0.3, 3.0]])
    t = np.array([[4.0, 1.0, 0.0, -2.0], [0.0, 0.0, 1.0, 5.0]])
    y = np.array([[0.7, 0.3, 0, 0], [0, 0, 0, 1.0]])  # a mixup target and a clean one
    st = s / s.std(axis=1, ddof=1, keepdims=True)
    tt = t / t.std(axis=1, ddof=1, keepdims=True)
    p_s, p_t = _softmax(st), _softmax(tt)
    ce = np.mean(-(y * np.log(p_s)).sum(axis=1))
    kl = np.mean((p_t * np.log(p_t / p_s)).sum(axis=1))
    expected = 0.1 * ce + 0.9 * kl
    loss = build_loss({"loss": "rescaled", "alpha": 0.9, "gamma": 0.1})
    assert isinstance(loss, RescaledKD)
    got = loss(torch.tensor(s), torch.tensor(y), torch.tensor(t)).item()
    assert got == pytest.approx(expected, rel=1e-9)


def test_rescaled_kd_is_invariant_to_a_constant_added_to_all_logits():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(5, 10, generator=g), 3 * torch.randn(5, 10, generator=g)
    y = torch.eye(10)[:5]
    loss = RescaledKD(alpha=0.9, gamma=0.1)
    base = loss(s, y, t)
    torch.testing.assert_close(loss(s + 7.5, y, t), base)
    torch.testing.assert_close(loss(s, y, t - 4.0), base)
    # ...and to a positive scale: the standard deviation absorbs it (no temperature left).
    torch.testing.assert_close(loss(2.0 * s, y, 0.5 * t), base)


def test_rescaled_logits_have_unit_std():
    f = torch.tensor([[1.0, 2.0, 3.0, 10.0]])
    assert rescale(f).std(dim=1).item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="teacher logits"):
        RescaledKD(0.9, 0.1)(f, torch.eye(4)[:1], None)


def test_mean_entropy_metric_by_hand():
    from kdaug.measure.metrics import EvalData, compute_metrics

    logits = np.log(np.array([[0.5, 0.5, 1e-300], [1.0, 1e-300, 1e-300]]))
    data = EvalData(logits, np.array([0, 0]), 3)
    value = compute_metrics(data, ["mean_entropy"])["mean_entropy"]
    assert value == pytest.approx(np.log(2) / 2)  # (ln 2 + 0) / 2


def test_vscore_metric_runs_per_group_the_split_has():
    from kdaug.measure.metrics import EvalData, applicable_metrics, compute_metrics

    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 25)
    centres = np.eye(4)[labels] * 50.0  # four far-apart clusters
    data = EvalData(
        rng.normal(size=(100, 4)),
        labels,
        4,
        centres + rng.normal(size=(100, 4)),
        options={
            "class_names": ["a", "b", "c", "d"],
            "vscore_groups": {"ab": ["a", "b"], "cd": ["c", "d"], "xy": ["x", "y"]},
        },
    )
    values = compute_metrics(data, ["vscore"])
    assert values == {"vscore_ab": pytest.approx(1.0), "vscore_cd": pytest.approx(1.0)}
    no_embeddings = EvalData(data.logits, labels, 4, options=data.options)
    assert applicable_metrics(no_embeddings, ["vscore", "accuracy"]) == ["accuracy"]
