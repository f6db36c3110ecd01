"""KD loss against hand computation."""

import math

import pytest
import torch
import torch.nn.functional as F

from kdaug.train.losses import HintonKD, build_loss, distillation_kl, soft_cross_entropy


def softmax(row: list[float], t: float = 1.0) -> list[float]:
    e = [math.exp(v / t) for v in row]
    return [v / sum(e) for v in e]


def test_hinton_kd_matches_a_hand_computation_on_2x3() -> None:
    s = [[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]]
    t = [[2.0, 0.0, 1.0], [1.0, 1.0, 1.0]]
    labels = [1, 2]
    T, alpha = 2.0, 0.3
    ce = sum(-math.log(softmax(s[i])[labels[i]]) for i in range(2)) / 2
    kl = 0.0
    for i in range(2):
        p, q = softmax(t[i], T), softmax(s[i], T)
        kl += sum(pk * math.log(pk / qk) for pk, qk in zip(p, q, strict=True))
    kl /= 2
    expected = (1 - alpha) * ce + alpha * T * T * kl
    targets = F.one_hot(torch.tensor(labels), 3).double()
    got = HintonKD(T, alpha)(torch.tensor(s).double(), targets, torch.tensor(t).double())
    assert got.item() == pytest.approx(expected, rel=1e-12)


def test_alpha_zero_is_cross_entropy() -> None:
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(5, 4, generator=g), torch.randn(5, 4, generator=g)
    labels = torch.tensor([0, 1, 2, 3, 0])
    loss = HintonKD(20.0, 0.0)(s, F.one_hot(labels, 4).float(), t)
    torch.testing.assert_close(loss, F.cross_entropy(s, labels))


def test_soft_cross_entropy_of_mixed_targets_is_the_mixture_of_ces() -> None:
    g = torch.Generator().manual_seed(1)
    s = torch.randn(6, 5, generator=g)
    a, b = torch.tensor([0, 1, 2, 3, 4, 0]), torch.tensor([1, 1, 3, 0, 2, 4])
    lam = 0.3
    targets = lam * F.one_hot(a, 5).float() + (1 - lam) * F.one_hot(b, 5).float()
    expected = lam * F.cross_entropy(s, a) + (1 - lam) * F.cross_entropy(s, b)
    torch.testing.assert_close(soft_cross_entropy(s, targets), expected)


def test_distillation_kl_is_zero_for_identical_logits_and_positive_otherwise() -> None:
    s = torch.randn(4, 10)
    assert distillation_kl(s, s, 4.0).abs().item() < 1e-6
    assert distillation_kl(s, s.flip(1), 4.0).item() > 0


def test_build_loss_from_config_and_unknown_name() -> None:
    loss = build_loss({"loss": "hinton", "temperature": 20, "alpha": 0.5})
    assert loss == HintonKD(20.0, 0.5)
    with pytest.raises(KeyError, match="unknown loss 'nope'"):
        build_loss({"loss": "nope"})


def test_hinton_requires_teacher_logits() -> None:
    with pytest.raises(ValueError, match="teacher"):
        HintonKD(4.0, 0.5)(torch.zeros(2, 3), torch.ones(2, 3) / 3, None)
