"""Helpers shared by the RepDistiller-style nets: weight initialisation, rounding of scaled
channel counts to a multiple, channel shuffle and global pooling."""

from __future__ import annotations

import torch
from torch import nn


def scaled_multiple(channels: int, width: float, multiple: int) -> int:
    """``channels * width`` rounded to a multiple of ``multiple`` (at least ``multiple``).

    Grouped and split convolutions need channel counts divisible by their groups; at
    ``width=1`` a count that is already a multiple comes back unchanged.
    """
    return max(multiple, round(channels * width / multiple) * multiple)


def init_conv_bn(module: nn.Module) -> None:
    """He-normal (fan-out) convolutions with zero bias, BatchNorm weight 1 and bias 0.

    This is RepDistiller's ``kaiming_normal_(mode='fan_out')`` and, equivalently, its
    ``normal_(0, sqrt(2 / (k * k * out_channels)))``.
    """
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def init_linear(linear: nn.Linear, std: float | None = None) -> None:
    """Zero the bias; when ``std`` is given, draw the weight from N(0, std^2)."""
    if std is not None:
        nn.init.normal_(linear.weight, 0.0, std)
    nn.init.zeros_(linear.bias)


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """ShuffleNet's channel shuffle: (B, g*c, H, W) -> interleave the ``g`` groups."""
    b, c, h, w = x.shape
    return x.view(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)


def global_pool(x: torch.Tensor) -> torch.Tensor:
    """Average over the spatial dimensions: (B, C, H, W) -> (B, C).

    RepDistiller pools with a fixed window that covers the whole 32x32 feature map; the
    adaptive form is the same there and also works at 64x64 (Tiny ImageNet).
    """
    return torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)
