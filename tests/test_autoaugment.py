"""AutoAugment (CIFAR-10 and ImageNet policies): batched op equals torchvision image by
image, seeding."""

from collections import Counter

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torchvision.transforms import AutoAugment, AutoAugmentPolicy, InterpolationMode
from torchvision.transforms.autoaugment import _apply_op

from kdaug.train.augment import OPS
from kdaug.train.autoaugment import (
    POLICIES,
    apply_action,
    autoaugment,
    draw_autoaugment,
    magnitude_bins,
    to_uint8,
)

B, H, W, K = 32, 32, 32, 10
TV = AutoAugment(AutoAugmentPolicy.CIFAR10)
ALL_OPS = {op for sub in TV.policies for op, _, _ in sub}
# torchvision's transform per policy name of the op
TORCHVISION = {"cifar10": TV, "imagenet": AutoAugment(AutoAugmentPolicy.IMAGENET)}


def images(seed: int, channels: int = 3, batch: int = B) -> torch.Tensor:
    """uint8-valued float images in [0, 1], a few of them low-contrast or constant."""
    g = torch.Generator().manual_seed(seed)
    u8 = torch.randint(0, 256, (batch, channels, H, W), generator=g, dtype=torch.uint8)
    u8[:3] = u8[:3] // 16 + 100
    u8[3] = 77
    return u8.float() / 255


def targets(batch: int = B) -> torch.Tensor:
    return F.one_hot(torch.arange(batch) % K, K).float()


def reference(
    x: torch.Tensor, seed: int, policy: str = "cifar10"
) -> tuple[torch.Tensor, Counter[str]]:
    """torchvision's AutoAugment.forward, image by image, with the module's draws."""
    tv = TORCHVISION[policy]
    draws = draw_autoaugment(np.random.default_rng(seed), len(x))
    space = tv._augmentation_space(10, (H, W))
    out, used = [], Counter()
    for i, img in enumerate(to_uint8(x)):
        for j, (op, p, bin_) in enumerate(tv.policies[draws.policy[i]]):
            if draws.coin[i, j] <= p:
                magnitudes, signed = space[op]
                m = float(magnitudes[bin_].item()) if bin_ is not None else 0.0
                if signed and draws.negate[i, j]:
                    m *= -1.0
                img = _apply_op(img, op, m, interpolation=InterpolationMode.NEAREST, fill=None)
                used[op] += 1
        out.append(img)
    return torch.stack(out), used


@pytest.mark.parametrize("policy", sorted(TORCHVISION))
def test_policy_table_and_magnitudes_are_torchvisions(policy: str) -> None:
    tv = TORCHVISION[policy]
    assert list(POLICIES[policy]) == tv.policies
    ops = {op for sub in tv.policies for op, _, _ in sub}
    for size in ((H, W), (64, 64)):  # CIFAR and Tiny ImageNet
        space = tv._augmentation_space(10, size)
        for op in ops - {"AutoContrast", "Equalize", "Invert"}:
            assert magnitude_bins(op, size) == [float(v) for v in space[op][0].tolist()]


def test_draws_follow_the_documented_order() -> None:
    d = draw_autoaugment(np.random.default_rng(3), B)
    rng = np.random.default_rng(3)
    np.testing.assert_array_equal(d.policy, rng.integers(0, 25, size=B))
    np.testing.assert_array_equal(d.coin, rng.random((B, 2)))
    np.testing.assert_array_equal(d.negate, rng.integers(0, 2, size=(B, 2)) == 0)


@pytest.mark.parametrize(("policy", "channels"), [("cifar10", 3), ("cifar10", 1), ("imagenet", 3)])
def test_batched_equals_torchvision_per_image(policy: str, channels: int) -> None:
    op = autoaugment(policy)
    used: Counter[str] = Counter()
    for seed in range(8):
        x = images(seed, channels)
        out, _ = op(x, targets(), np.random.default_rng(seed))
        ref, counts = reference(x, seed, policy)
        used += counts
        torch.testing.assert_close(to_uint8(out), ref, rtol=0, atol=0)
    # Every op of the policy ran (and was checked) at least once over these batches.
    ops = {op for sub in TORCHVISION[policy].policies for op, _, _ in sub}
    assert set(used) == ops, ops - set(used)


def test_same_seed_repeats_and_seeds_differ() -> None:
    op = OPS.get("autoaugment")()
    x, y = images(0), targets()
    a, _ = op(x, y, np.random.default_rng(11))
    b, _ = op(x, y, np.random.default_rng(11))
    c, _ = op(x, y, np.random.default_rng(12))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("channels", [3, 1])
def test_shape_dtype_range_and_targets(channels: int) -> None:
    op = autoaugment("cifar10")
    assert op.stage == "pixel"
    x, y = images(1, channels), targets()
    y = 0.8 * y + 0.02  # soft targets must pass through untouched too
    out, ty = op(x, y, np.random.default_rng(0))
    assert out.shape == x.shape and out.dtype == x.dtype
    assert out.min() >= 0 and out.max() <= 1
    assert ty is y
    assert not torch.equal(out, x)


def test_colour_is_identity_on_grey_images() -> None:
    grey = to_uint8(images(2, channels=1))
    for m in (-0.9, 0.0, 0.8):
        assert torch.equal(apply_action(grey, "Color", m), grey)


def test_unknown_policy_and_channel_count_fail_clearly() -> None:
    with pytest.raises(ValueError, match="known: cifar10, imagenet"):
        autoaugment("svhn")
    with pytest.raises(ValueError, match="1 or 3 channels"):
        autoaugment()(torch.rand(2, 4, H, W), targets(2), np.random.default_rng(0))
