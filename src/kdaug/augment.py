"""Batch augmentations that run on whole batches on the training device.

Every random draw (crop offsets, flip coins, cutout centres, mixing lambdas, permutations)
comes from a NumPy ``Generator`` that the engine seeds from (cell seed, epoch), and only
the arithmetic runs on the device. So a batch is augmented identically on CPU and GPU, and
a resumed run repeats the exact draws of an uninterrupted one.

An augmentation is a list of ops applied in two stages:

- ``pixel`` ops (random crop with zero padding, horizontal flip) act on images in [0, 1]
  before normalisation, as torchvision's transforms act on PIL images (padding is black);
- ``normalized`` ops (Cutout, Mixup, CutMix) act after normalisation, so Cutout's hole is
  zero *after* normalisation, as in DeVries & Taylor's code. Mixup and CutMix commute
  with the per-channel affine normalisation, so their stage only matters for speed.

Targets travel with the images as probability vectors (``(B, K)`` float): one-hot for
clean samples, mixed by lambda for Mixup / CutMix.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from kdaug.registry import Registry

Stage = Literal["pixel", "normalized"]
Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class Op:
    """One augmentation step: ``apply(x, y, rng) -> (x, y)`` at a given stage."""

    name: str
    stage: Stage
    apply: Callable[[torch.Tensor, torch.Tensor, np.random.Generator], Batch]

    def __call__(self, x: torch.Tensor, y: torch.Tensor, rng: np.random.Generator) -> Batch:
        return self.apply(x, y, rng)


OPS: Registry[Callable[..., Op]] = Registry("augmentation op")


def _device_ints(values: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(values, dtype=torch.long).to(like.device, non_blocking=True)


def random_crop(x: torch.Tensor, offsets: np.ndarray, padding: int) -> torch.Tensor:
    """Crop each zero-padded image at its ``(dy, dx)`` offset in ``[0, 2*padding]``."""
    B, _, H, W = x.shape
    padded = F.pad(x, (padding, padding, padding, padding))
    off = _device_ints(offsets, x)
    rows = off[:, 0, None] + torch.arange(H, device=x.device)  # (B, H)
    cols = off[:, 1, None] + torch.arange(W, device=x.device)  # (B, W)
    batch = torch.arange(B, device=x.device)[:, None, None]
    # Advanced indexing over (B, H, W) picks each image's window in one gather.
    out = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]
    return out.permute(0, 3, 1, 2).contiguous()


@OPS.register("crop")
def crop(padding: int = 4) -> Op:
    """Random crop of the original size from the image padded by ``padding`` zeros."""

    def apply(x: torch.Tensor, y: torch.Tensor, rng: np.random.Generator) -> Batch:
        offsets = rng.integers(0, 2 * padding + 1, size=(len(x), 2))
        return random_crop(x, offsets, padding), y

    return Op("crop", "pixel", apply)


@OPS.register("flip")
def flip(p: float = 0.5) -> Op:
    """Horizontal flip of each image with probability ``p``."""

    def apply(x: torch.Tensor, y: torch.Tensor, rng: np.random.Generator) -> Batch:
        coins = torch.as_tensor(rng.random(len(x)) < p).to(x.device, non_blocking=True)
        return torch.where(coins[:, None, None, None], x.flip(3), x), y

    return Op("flip", "pixel", apply)


def box_mask(
    centres: np.ndarray, half: np.ndarray | int, size: tuple[int, int], like: torch.Tensor
) -> torch.Tensor:
    """Boolean ``(B, 1, H, W)`` mask of boxes ``[c - half, c + half)`` clipped to the image.

    ``centres`` is ``(B, 2)`` (row, col); ``half`` is a scalar or ``(B, 2)`` half-sizes.
    """
    H, W = size
    c = _device_ints(centres, like)
    h = _device_ints(np.broadcast_to(np.asarray(half), centres.shape).copy(), like)
    lo = torch.clamp(c - h, min=0)
    hi_rows = torch.clamp(c[:, 0] + h[:, 0], max=H)
    hi_cols = torch.clamp(c[:, 1] + h[:, 1], max=W)
    r = torch.arange(H, device=like.device)
    q = torch.arange(W, device=like.device)
    in_rows = (r[None, :] >= lo[:, 0, None]) & (r[None, :] < hi_rows[:, None])
    in_cols = (q[None, :] >= lo[:, 1, None]) & (q[None, :] < hi_cols[:, None])
    return (in_rows[:, :, None] & in_cols[:, None, :])[:, None]


@OPS.register("cutout")
def cutout(size: int = 16) -> Op:
    """DeVries & Taylor (2017): one ``size`` x ``size`` hole per image, centre uniform over
    the image, clipped at the border, filled with zeros after normalisation."""

    def apply(x: torch.Tensor, y: torch.Tensor, rng: np.random.Generator) -> Batch:
        _, _, H, W = x.shape
        centres = np.stack([rng.integers(0, H, len(x)), rng.integers(0, W, len(x))], axis=1)
        hole = box_mask(centres, size // 2, (H, W), x)
        return x.masked_fill(hole, 0.0), y

    return Op("cutout", "normalized", apply)


def mix(x: torch.Tensor, y: torch.Tensor, lam: float, perm: np.ndarray) -> Batch:
    """Mixup's convex combination of the batch with its permutation ``perm``."""
    p = _device_ints(perm, x)
    return lam * x + (1.0 - lam) * x[p], lam * y + (1.0 - lam) * y[p]


@OPS.register("mixup")
def mixup(alpha: float = 1.0) -> Op:
    """Zhang et al. (2018): one lambda ~ Beta(alpha, alpha) per batch, partners by a random
    permutation, images and targets mixed with the same lambda."""

    def apply(x: torch.Tensor, y: torch.Tensor, rng: np.random.Generator) -> Batch:
        lam = float(rng.beta(alpha, alpha))
        return mix(x, y, lam, rng.permutation(len(x)))

    return Op("mixup", "normalized", apply)


def cutmix_box(lam: float, size: tuple[int, int], centre: tuple[int, int]) -> tuple[int, ...]:
    """Yun et al.'s box: side ``sqrt(1 - lam)`` of each image side, clipped at the border.

    Returns ``(y0, y1, x0, x1)``; the caller recomputes lambda from the clipped area.
    """
    H, W = size
    ratio = math.sqrt(1.0 - lam)
    cut_h, cut_w = int(H * ratio), int(W * ratio)
    cy, cx = centre
    y0, y1 = np.clip([cy - cut_h // 2, cy + cut_h // 2], 0, H)
    x0, x1 = np.clip([cx - cut_w // 2, cx + cut_w // 2], 0, W)
    return int(y0), int(y1), int(x0), int(x1)


def paste(x: torch.Tensor, y: torch.Tensor, box: tuple[int, ...], perm: np.ndarray) -> Batch:
    """Paste ``box`` of each partner image into the batch; targets weighted by exact area."""
    y0, y1, x0, x1 = box
    _, _, H, W = x.shape
    p = _device_ints(perm, x)
    out = x.clone()
    out[:, :, y0:y1, x0:x1] = x[p][:, :, y0:y1, x0:x1]
    lam = 1.0 - (y1 - y0) * (x1 - x0) / (H * W)
    return out, lam * y + (1.0 - lam) * y[p]


@OPS.register("cutmix")
def cutmix(alpha: float = 1.0, prob: float = 1.0) -> Op:
    """Yun et al. (2019): with probability ``prob`` per batch, lambda ~ Beta(alpha, alpha),
    one box for the batch with uniform centre, partners by a random permutation, and the
    target weight recomputed from the exact pasted area."""

    def apply(x: torch.Tensor, y: torch.Tensor, rng: np.random.Generator) -> Batch:
        if rng.random() >= prob:
            return x, y
        _, _, H, W = x.shape
        lam = float(rng.beta(alpha, alpha))
        centre = (int(rng.integers(0, H)), int(rng.integers(0, W)))
        return paste(x, y, cutmix_box(lam, (H, W), centre), rng.permutation(len(x)))

    return Op("cutmix", "normalized", apply)


@dataclass(frozen=True)
class Augmentation:
    """A named augmentation: pixel ops, then normalisation, then normalized ops."""

    name: str
    ops: tuple[Op, ...]

    @property
    def is_identity(self) -> bool:
        return not self.ops

    def __call__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        rng: np.random.Generator,
        normalize: Callable[[torch.Tensor], torch.Tensor],
    ) -> Batch:
        """``x``: float images in [0, 1]; returns normalised, augmented images and targets."""
        for op in self.ops:
            if op.stage == "pixel":
                x, y = op(x, y, rng)
        x = normalize(x)
        for op in self.ops:
            if op.stage == "normalized":
                x, y = op(x, y, rng)
        return x, y


def build_augmentation(name: str, steps: Sequence[Mapping[str, Any]]) -> Augmentation:
    """Build from config: ``steps`` is a list like ``[{op: crop, padding: 4}, {op: flip}]``.

    Pixel ops must come before normalized ops in the list, so that the config reads in the
    order the ops run.
    """
    ops = []
    for step in steps:
        params = {k: v for k, v in step.items() if k != "op"}
        ops.append(OPS.get(step["op"])(**params))
    stages = [op.stage for op in ops]
    if stages != sorted(stages, key=lambda s: s != "pixel"):
        raise ValueError(f"augmentation {name!r}: pixel ops (crop, flip) must come first")
    return Augmentation(name, tuple(ops))
