"""Helpers shared by the RepDistiller-style nets: linear-head initialisation, rounding of
scaled channel counts to a multiple, channel shuffle. (Conv/BN initialisation and global
pooling, shared with the Das et al. ResNet18, live in :mod:`kdaug.models.base`.)"""

from __future__ import annotations

import torch
from torch import nn


def scaled_multiple(channels: int, width: float, multiple: int) -> int:
    """``channels * width`` rounded to a multiple of ``multiple`` (at least ``multiple``).

    Grouped and split convolutions need channel counts divisible by their groups; at
    ``width=1`` a count that is already a multiple comes back unchanged.
    """
    return max(multiple, round(channels * width / multiple) * multiple)


def init_linear(linear: nn.Linear, std: float | None = None) -> None:
    """Zero the bias; when ``std`` is given, draw the weight from N(0, std^2)."""
    if std is not None:
        nn.init.normal_(linear.weight, 0.0, std)
    nn.init.zeros_(linear.bias)


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """ShuffleNet's channel shuffle: (B, g*c, H, W) -> interleave the ``g`` groups."""
    b, c, h, w = x.shape
    return x.view(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)
