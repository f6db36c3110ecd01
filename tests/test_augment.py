"""Batch augmentations: shapes, target mass, exact areas, seeding."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from kdaug.train.augment import OPS, build_augmentation, cutmix_box, derangement, random_crop

B, C, H, W, K = 8, 3, 32, 32, 10


def batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(B, C, H, W, generator=g)
    y = F.one_hot(torch.arange(B) % K, K).float()
    return x, y


def identity(x: torch.Tensor) -> torch.Tensor:
    return x


@pytest.mark.parametrize("op", OPS.names())
def test_every_op_keeps_shape_dtype_and_target_mass(op: str) -> None:
    x, y = batch()
    out, targets = OPS.get(op)()(x, y, np.random.default_rng(0))
    assert out.shape == x.shape and out.dtype == x.dtype
    assert targets.shape == y.shape
    torch.testing.assert_close(targets.sum(1), torch.ones(B))
    assert (targets >= 0).all()


# Ops that draw nothing: Wang et al.'s constant image (the "bad DA" sanity check).
DRAWS_NOTHING = {"constant"}


@pytest.mark.parametrize("op", sorted(set(OPS.names()) - DRAWS_NOTHING))
def test_seeded_calls_repeat_and_seeds_differ(op: str) -> None:
    x, y = batch()
    kwargs = {"prob": 1.0} if op == "cutmix" else {}
    aug = OPS.get(op)(**kwargs)
    a = aug(x, y, np.random.default_rng(7))
    b = aug(x, y, np.random.default_rng(7))
    c = aug(x, y, np.random.default_rng(8))
    torch.testing.assert_close(a[0], b[0])
    torch.testing.assert_close(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def test_crop_is_a_window_of_the_zero_padded_image() -> None:
    x, _ = batch()
    offsets = np.array([[0, 0], [8, 8], [4, 4], [0, 8], [8, 0], [3, 5], [1, 2], [7, 6]])
    out = random_crop(x, offsets, padding=4)
    padded = F.pad(x, (4, 4, 4, 4))
    for i, (dy, dx) in enumerate(offsets):
        torch.testing.assert_close(out[i], padded[i, :, dy : dy + H, dx : dx + W])
    torch.testing.assert_close(out[2], x[2])  # offset (4, 4) is the original image


def test_flip_mirrors_exactly_the_chosen_images() -> None:
    x, y = batch()
    out, _ = OPS.get("flip")(p=1.0)(x, y, np.random.default_rng(0))
    torch.testing.assert_close(out, x.flip(3))
    out, _ = OPS.get("flip")(p=0.0)(x, y, np.random.default_rng(0))
    torch.testing.assert_close(out, x)


def test_cutout_zeroes_the_stated_clipped_area() -> None:
    x = torch.ones(200, 1, H, W)
    y = F.one_hot(torch.zeros(200, dtype=torch.long), K).float()
    rng = np.random.default_rng(3)
    centres = np.stack([rng.integers(0, H, 200), rng.integers(0, W, 200)], axis=1)
    out, _ = OPS.get("cutout")(size=16)(x, y, np.random.default_rng(3))
    zeros = (out == 0).sum(dim=(1, 2, 3)).numpy()
    # Independent formula: the side along each axis is the overlap of [c-8, c+8) with [0, 32).
    side = lambda c, n: min(c + 8, n) - max(c - 8, 0)  # noqa: E731
    expected = np.array([side(cy, H) * side(cx, W) for cy, cx in centres])
    np.testing.assert_array_equal(zeros, expected)
    assert zeros.max() == 256 and zeros.min() >= 64  # interior hole, corner hole


def test_mixup_mixes_images_and_targets_with_one_lambda() -> None:
    x, y = batch()
    out, targets = OPS.get("mixup")(alpha=1.0)(x, y, np.random.default_rng(5))
    rng = np.random.default_rng(5)
    lam, perm = rng.beta(1.0, 1.0), rng.permutation(B)
    torch.testing.assert_close(out, lam * x + (1 - lam) * x[perm])
    torch.testing.assert_close(targets, lam * y + (1 - lam) * y[perm])


def test_cutmix_lambda_equals_the_exact_pasted_area() -> None:
    # Constant images with distinct values make the pasted area countable.
    x = torch.arange(B, dtype=torch.float32).view(B, 1, 1, 1).expand(B, 1, H, W).clone()
    y = F.one_hot(torch.arange(B), K).float()
    for seed in range(20):
        out, targets = OPS.get("cutmix")(alpha=1.0, prob=1.0)(x, y, np.random.default_rng(seed))
        for i in range(B):
            own = (out[i] == i).float().mean().item()
            assert targets[i, i].item() == pytest.approx(own)


def test_cutmix_box_clips_at_the_border() -> None:
    assert cutmix_box(0.0, (32, 32), (0, 0)) == (0, 16, 0, 16)
    assert cutmix_box(0.75, (32, 32), (16, 16)) == (8, 24, 8, 24)
    assert cutmix_box(1.0, (32, 32), (5, 5)) == (5, 5, 5, 5)


def test_cutmix_probability_zero_is_identity() -> None:
    x, y = batch()
    out, targets = OPS.get("cutmix")(prob=0.0)(x, y, np.random.default_rng(0))
    assert torch.equal(out, x) and torch.equal(targets, y)


def test_pipeline_runs_pixel_ops_before_normalisation() -> None:
    x, y = batch()
    aug = build_augmentation("cutout_only", [{"op": "cutout", "size": 8}])
    out, _ = aug(x, y, np.random.default_rng(0), lambda t: t - 10.0)
    # Cutout acts after normalisation: its hole is exactly 0, not -10.
    assert (out == 0).any() and ((out == 0) | (out < 0)).all()
    crop = build_augmentation("crop_only", [{"op": "crop", "padding": 4}])
    out, _ = crop(x, y, np.random.default_rng(1), lambda t: t - 10.0)
    # Padding happens in pixel space (black = 0), so padded pixels normalise to -10.
    assert out.max() <= -9.0 + 1e-6


def test_pipeline_rejects_pixel_op_after_normalized_op() -> None:
    with pytest.raises(ValueError, match="pixel ops"):
        build_augmentation("bad", [{"op": "cutout"}, {"op": "flip"}])


def test_identity_augmentation_only_normalises() -> None:
    x, y = batch()
    aug = build_augmentation("none", [])
    assert aug.is_identity
    out, targets = aug(x, y, np.random.default_rng(0), lambda t: 2 * t)
    torch.testing.assert_close(out, 2 * x)
    assert torch.equal(targets, y)


# -- Wang et al.'s code draws the appended copy's augmentation once per batch -------------


def _distinct_images(n: int = 12, size: int = 8) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, 3, size, size, generator=g)


@pytest.mark.parametrize(
    "step",
    [
        {"op": "crop", "padding": 2},
        {"op": "flip", "p": 0.5},
        {"op": "cutout", "size": 4},
        {"op": "autoaugment"},
    ],
)
def test_per_batch_draws_apply_one_transform_to_every_image(step) -> None:
    x = _distinct_images()
    y = torch.eye(12)
    op = OPS.get(step["op"])(**{k: v for k, v in step.items() if k != "op"}, per="batch")
    # The same op on one image replays the batch's single draw: every image is transformed
    # as image 0 would be, so compare each row with the op applied to that row alone.
    for seed in range(5):
        out, _ = op(x, y, np.random.default_rng(seed))
        for i in range(len(x)):
            alone, _ = op(x[i : i + 1], y[i : i + 1], np.random.default_rng(seed))
            assert torch.equal(out[i], alone[0])
    with pytest.raises(ValueError, match="per must be"):
        OPS.get("crop")(per="pixel")


def test_per_image_draws_differ_between_images() -> None:
    x = torch.ones(64, 1, 8, 8)
    out, _ = OPS.get("cutout")(size=4)(x, torch.eye(64), np.random.default_rng(0))
    holes = {tuple(torch.nonzero(out[i, 0] == 0).min(0).values.tolist()) for i in range(64)}
    assert len(holes) > 10  # one hole per image, at many places
    out, _ = OPS.get("cutout")(size=4, per="batch")(x, torch.eye(64), np.random.default_rng(0))
    assert all(torch.equal(out[0], out[i]) for i in range(64))


def test_cutmix_without_self_pairs_never_pairs_an_image_with_itself() -> None:
    n = 6
    x = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 1, 8, 8).clone()
    y = torch.eye(n)
    op = OPS.get("cutmix")(alpha=1.0, self_pairs=False)
    for seed in range(200):
        _, out_y = op(x, y, np.random.default_rng(seed))
        # every row that got a box carries two labels: its own and a different partner's
        own = out_y[torch.arange(n), torch.arange(n)]
        assert torch.all(own < 1.0) or torch.allclose(own, torch.ones(n))  # empty box: λ=1
    assert derangement(np.random.default_rng(1), 1).tolist() == [0]
    perms = [derangement(np.random.default_rng(s), 5) for s in range(100)]
    assert all(not np.any(p == np.arange(5)) for p in perms)
    assert all(sorted(p) == list(range(5)) for p in perms)


def test_constant_makes_every_image_one_grey_image_and_keeps_the_targets() -> None:
    x, y = batch()
    rng = np.random.default_rng(0)
    out, targets = OPS.get("constant")(value=0.25)(x, y, rng)
    assert torch.equal(out, torch.full_like(x, 0.25)) and torch.equal(targets, y)
    assert rng.random() == np.random.default_rng(0).random()  # drew nothing
    with pytest.raises(ValueError, match="not a pixel value"):
        OPS.get("constant")(value=2.0)
