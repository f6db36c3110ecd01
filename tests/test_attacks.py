"""FGSM / I-FGSM (kdaug.measure.attacks) against hand-derived answers on a linear model."""

from __future__ import annotations

from collections.abc import Iterator
from itertools import pairwise

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from threadpoolctl import threadpool_limits
from torch import nn

from kdaug.measure.attacks import adversarial_accuracy, cross_entropy_sum, fgsm, ifgsm
from kdaug.models.base import Classifier, global_pool
from kdaug.train.engine import DeviceData, evaluate

EPS = (0.0, 0.001, 0.003, 0.005, 0.01)
SHAPE = (3, 4, 4)  # C, H, W
MEAN = (0.5, 0.4, 0.3)
STD = (0.25, 0.2, 0.3)


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """The problems here are tiny: on a loaded 2-core machine extra threads only contend."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(before)


class LinearNet(Classifier):
    """logits = W flatten(x_norm) + b."""

    def __init__(self, weight: np.ndarray, bias: np.ndarray) -> None:
        super().__init__()
        self.embedding_dim = weight.shape[1]
        self.fc = nn.Linear(weight.shape[1], weight.shape[0])
        with torch.no_grad():
            self.fc.weight.copy_(torch.as_tensor(weight, dtype=torch.float32))
            self.fc.bias.copy_(torch.as_tensor(bias, dtype=torch.float32))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(x, 1)


class SmallCNN(Classifier):
    def __init__(self, num_classes: int = 4) -> None:
        super().__init__()
        self.embedding_dim = 8
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(inplace=True)
        )
        self.fc = nn.Linear(8, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return global_pool(self.features(x))


def device_data(images: np.ndarray, labels: np.ndarray, num_classes: int) -> DeviceData:
    return DeviceData(
        images=torch.from_numpy(images),
        labels=torch.from_numpy(labels.astype(np.int64)),
        num_classes=num_classes,
        mean=torch.tensor(MEAN).view(1, -1, 1, 1),
        std=torch.tensor(STD).view(1, -1, 1, 1),
    )


def normalize_fn(x: torch.Tensor) -> torch.Tensor:
    return (x - torch.tensor(MEAN).view(1, -1, 1, 1)) / torch.tensor(STD).view(1, -1, 1, 1)


# ------------------------------------------------------------------ the hand-solved case


@pytest.fixture(scope="module")
def linear_case() -> dict:
    """A 2-class linear model and uint8 images whose logit margins, computed here in
    float64 independently of the model, are none of them within 1e-3 of a threshold
    ``eps * ||v||_1`` (so float32 rounding cannot decide a flip). No pixel is within
    0.01 of 0 or 1, so no attack at these eps is clipped."""
    rng = np.random.default_rng(0)
    d = int(np.prod(SHAPE))
    weight = rng.normal(0.0, 0.1, size=(2, d))
    std_pix = np.repeat(np.asarray(STD), SHAPE[1] * SHAPE[2])
    mean_pix = np.repeat(np.asarray(MEAN), SHAPE[1] * SHAPE[2])
    # pixel-space direction of logit_0 - logit_1 and its offset
    v = (weight[0] - weight[1]) / std_pix
    images = rng.integers(13, 243, size=(4000, d), dtype=np.uint8)
    x = images / 255.0
    raw = x @ v - mean_pix @ v
    bias = np.array([-np.median(raw), 0.0])  # centre the margins on 0
    diff = raw + bias[0] - bias[1]  # logit_0 - logit_1, float64
    labels = (diff < 0).astype(np.int64)  # mostly correct...
    flip = rng.random(len(labels)) < 0.1  # ...and 10% misclassified
    labels[flip] = 1 - labels[flip]
    sign = np.where(labels == 0, 1.0, -1.0)
    margin = sign * diff  # logit_true - logit_other
    l1 = np.abs(v).sum()
    near = np.zeros(len(labels), dtype=bool)
    for eps in EPS:
        near |= np.abs(margin - eps * l1) < 1e-3
    keep = ~near
    return {
        "model": LinearNet(weight, bias).eval(),
        "images": images[keep].reshape(-1, *SHAPE),
        "labels": labels[keep],
        "margin": margin[keep],
        "l1": l1,
        # sign of (w_true - w_other) in pixel space, per sample
        "direction": sign[keep, None] * np.sign(v)[None, :],
    }


def expected_accuracy(case: dict, eps: float) -> float:
    """Moving every pixel by eps against sign(v_true - v_other) lowers the margin by
    exactly eps * ||v||_1; a sample is right afterwards iff its margin stays > 0."""
    return float(np.mean(case["margin"] - eps * case["l1"] > 0))


def test_fgsm_moves_every_pixel_by_eps_against_the_weight_sign(linear_case: dict) -> None:
    case = linear_case
    x = torch.from_numpy(case["images"]).float() / 255.0
    labels = torch.from_numpy(case["labels"])
    for eps in EPS[1:]:
        x_adv = fgsm(case["model"], x, labels, eps, normalize_fn)
        step = (x_adv - x).reshape(len(x), -1).double().numpy()
        np.testing.assert_allclose(step, -eps * case["direction"], rtol=0, atol=1e-7)


@pytest.mark.parametrize("method", ["fgsm", "ifgsm"])
def test_flips_exactly_the_samples_with_margin_below_eps_l1(linear_case: dict, method: str) -> None:
    case = linear_case
    data = device_data(case["images"], case["labels"], 2)
    got = adversarial_accuracy(case["model"], data, EPS, method, batch_size=777)
    assert list(got) == list(EPS)
    # clean accuracy is what the float64 margins say (no ties near 0 by construction)
    assert got[0.0] == expected_accuracy(case, 0.0)
    for eps in EPS:
        assert got[eps] == expected_accuracy(case, eps), (method, eps)
    # the thresholds do bite: some but not all correct samples flip at the largest eps
    assert 0.1 < got[0.01] < got[0.0] - 0.1


def test_accuracy_monotone_in_eps_and_ifgsm_at_most_fgsm(linear_case: dict) -> None:
    case = linear_case
    data = device_data(case["images"], case["labels"], 2)
    f = adversarial_accuracy(case["model"], data, EPS, "fgsm")
    i = adversarial_accuracy(case["model"], data, EPS, "ifgsm", steps=10)
    for acc in (f, i):
        values = [acc[e] for e in EPS]
        assert all(b <= a for a, b in pairwise(values))
    assert all(i[e] <= f[e] for e in EPS)


def test_gradient_sign_survives_a_confident_margin() -> None:
    """At a logit margin of 30 float32 ``p_true - 1`` rounds to 0 and the plain
    cross-entropy gradient points along ``w_other`` alone; ours keeps ``w_other - w_true``."""
    weight = np.array([[1.0, 3.0, -2.0], [2.0, 1.0, -1.0]])  # w_0 - w_1 = [-1, 2, -1]
    model = LinearNet(weight, np.array([30.0, 0.0])).eval()
    x = torch.zeros(1, 3)
    labels = torch.tensor([0])
    x_adv = fgsm(model, x + 0.5, labels, 0.1, lambda t: t)
    np.testing.assert_allclose((x_adv - 0.5).numpy(), [[0.1, -0.1, 0.1]], atol=1e-7)
    # value equal to the library's cross-entropy
    logits = torch.randn(6, 5, generator=torch.Generator().manual_seed(0))
    lab = torch.tensor([0, 1, 2, 3, 4, 0])
    logits.requires_grad_(True)
    ours = cross_entropy_sum(logits, lab)
    plain = F.cross_entropy(logits, lab, reduction="sum")
    torch.testing.assert_close(ours, plain)
    torch.testing.assert_close(
        torch.autograd.grad(ours, logits)[0], torch.autograd.grad(plain, logits)[0]
    )


class Bowl(nn.Module):
    """Two classes on 1-pixel images: logits ``[0, -(x - c)^2]``. For label 0 the loss
    ``softplus(-(x - c)^2)`` rises towards ``x = c``: its gradient sign is ``-sign(x - c)``."""

    def __init__(self, c: float) -> None:
        super().__init__()
        self.c = c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(len(x), 1)
        return torch.cat([torch.zeros_like(x), -((x - self.c) ** 2)], dim=1)


def test_ifgsm_takes_steps_of_eps_over_steps_from_each_iterate() -> None:
    """From 0.5 towards c = 0.5 + 0.25 eps in steps of 0.1 eps: 0.1, 0.2, 0.3 (past c),
    then back and forth between 0.2 and 0.3, ending at 0.2 eps after 10 steps; FGSM
    jumps the whole eps."""
    eps = 0.1
    model = Bowl(0.5 + 0.25 * eps)
    x, labels = torch.full((1, 1), 0.5), torch.tensor([0])
    got = ifgsm(model, x, labels, eps, lambda t: t, steps=10)
    assert got.item() == pytest.approx(0.5 + 0.2 * eps, abs=1e-6)
    assert ifgsm(model, x, labels, eps, lambda t: t, steps=9).item() == pytest.approx(
        0.5 + 3 * eps / 9,
        abs=1e-6,  # odd step count: ends at 3 steps of eps / 9
    )
    assert fgsm(model, x, labels, eps, lambda t: t).item() == pytest.approx(0.5 + eps, abs=1e-6)


# ------------------------------------------------------------------ any model


@pytest.fixture
def cnn_case() -> tuple[SmallCNN, DeviceData]:
    torch.manual_seed(0)
    model = SmallCNN(num_classes=4)
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(96, *SHAPE), dtype=np.uint8)
    images[:8] = 0  # pixels at the bounds, where clipping must act
    images[8:16] = 255
    labels = rng.integers(0, 4, size=96)
    return model, device_data(images, labels, 4)


@pytest.mark.parametrize("method", ["fgsm", "ifgsm"])
def test_eps_zero_is_clean_accuracy_exactly(
    cnn_case: tuple[SmallCNN, DeviceData], method: str
) -> None:
    model, data = cnn_case
    model.eval()
    clean = evaluate(model, data, batch_size=40)["accuracy"]
    got = adversarial_accuracy(model, data, [0.0], method, batch_size=40)
    assert got == {0.0: clean}
    x = data.pixels(torch.arange(len(data)))
    attack = fgsm if method == "fgsm" else ifgsm
    assert torch.equal(attack(model, x, data.labels, 0.0, data.normalize), x)


@pytest.mark.parametrize("eps", [0.003, 0.05, 0.3])
def test_outputs_in_unit_box_and_eps_ball(
    cnn_case: tuple[SmallCNN, DeviceData], eps: float
) -> None:
    model, data = cnn_case
    model.eval()
    x = data.pixels(torch.arange(len(data)))
    for x_adv in (
        fgsm(model, x, data.labels, eps, data.normalize),
        ifgsm(model, x, data.labels, eps, data.normalize, steps=10),
    ):
        assert x_adv.shape == x.shape and not x_adv.requires_grad
        assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
        assert (x_adv - x).abs().max() <= eps + 1e-7
        assert (x_adv != x).any()
    # one I-FGSM step of size eps is FGSM
    torch.testing.assert_close(
        ifgsm(model, x, data.labels, eps, data.normalize, steps=1),
        fgsm(model, x, data.labels, eps, data.normalize),
        rtol=0,
        atol=0,
    )


@pytest.mark.parametrize("method", ["fgsm", "ifgsm"])
def test_mode_grads_and_buffers_untouched(
    cnn_case: tuple[SmallCNN, DeviceData], method: str
) -> None:
    model, data = cnn_case
    model.train()
    model.fc.weight.grad = torch.full_like(model.fc.weight, 3.0)  # a stale gradient
    before = {k: v.clone() for k, v in model.state_dict().items()}
    adversarial_accuracy(model, data, EPS, method, batch_size=50, steps=3)
    assert model.training
    assert all(m.training for m in model.modules())
    assert torch.equal(model.fc.weight.grad, torch.full_like(model.fc.weight, 3.0))
    assert all(p.grad is None for n, p in model.named_parameters() if n != "fc.weight")
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BN stats included

    model.eval()
    adversarial_accuracy(model, data, [0.01], method, batch_size=50, steps=3)
    assert not model.training


def test_rejects_bad_arguments(cnn_case: tuple[SmallCNN, DeviceData]) -> None:
    model, data = cnn_case
    with pytest.raises(ValueError, match="unknown attack"):
        adversarial_accuracy(model, data, [0.0], "pgd")
    with pytest.raises(ValueError, match="eps"):
        adversarial_accuracy(model, data, [-0.1], "fgsm")
    with pytest.raises(ValueError, match="steps"):
        ifgsm(model, data.pixels(torch.arange(2)), data.labels[:2], 0.1, data.normalize, steps=0)
