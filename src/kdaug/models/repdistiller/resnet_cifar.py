"""CIFAR ResNets of He et al. 2016 as defined in RepDistiller (``models/resnet.py``).

A 3x3 stem, then three stages of ``n = (depth - 2) / 6`` BasicBlocks at stride 1, 2, 2,
with 1x1-conv + BN projection shortcuts where the shape changes, global average pooling
and a linear head. ``resnetN`` uses 16-16-32-64 channels (stem, stages); ``resnet8x4`` and
``resnet32x4`` use 32-64-128-256. The embedding is the pooled output of the last stage.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from kdaug.models.base import (
    Classifier,
    conv_bn_relu_stem,
    init_conv_bn,
    residual_stages,
    stage_ends,
)
from kdaug.models.resnet import BasicBlock
from kdaug.models.zoo import MODELS, scaled

NARROW = (16, 16, 32, 64)
WIDE = (32, 64, 128, 256)


def blocks_per_stage(depth: int) -> int:
    """BasicBlocks per stage of a ``depth``-layer CIFAR ResNet (depth = 6n + 2)."""
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(f"a CIFAR ResNet with BasicBlocks needs depth 6n+2; got {depth}")
    return (depth - 2) // 6


class CifarResNet(Classifier):
    """RepDistiller's CIFAR ResNet; ``filters`` are the stem and three stage widths."""

    def __init__(
        self,
        depth: int,
        filters: Sequence[int],
        num_classes: int,
        in_channels: int,
        width: float,
    ) -> None:
        super().__init__()
        n = blocks_per_stage(depth)
        stem, *stages = (scaled(c, width) for c in filters)
        self.stem = conv_bn_relu_stem(in_channels, stem)
        self.layers, self.embedding_dim = residual_stages(
            BasicBlock, stem, stages, [n] * len(stages)
        )
        self.feature_cuts = (0, *stage_ends(1, [n] * len(stages)))
        self.fc = nn.Linear(self.embedding_dim, num_classes)
        init_conv_bn(self)

    def trunk(self, x: torch.Tensor) -> list[nn.Module]:
        return [self.stem, *self.layers]


@MODELS.register("resnet8")
def resnet8(
    *, num_classes: int, in_channels: int = 3, image_size: int = 32, width: float = 1.0
) -> CifarResNet:
    """ResNet-8 (1 block per stage, 16-16-32-64); 0.084M parameters at 100 classes."""
    return CifarResNet(8, NARROW, num_classes, in_channels, width)


@MODELS.register("resnet14")
def resnet14(
    *, num_classes: int, in_channels: int = 3, image_size: int = 32, width: float = 1.0
) -> CifarResNet:
    """ResNet-14 (2 blocks per stage, 16-16-32-64); 0.181M parameters at 100 classes."""
    return CifarResNet(14, NARROW, num_classes, in_channels, width)


@MODELS.register("resnet20")
def resnet20(
    *, num_classes: int, in_channels: int = 3, image_size: int = 32, width: float = 1.0
) -> CifarResNet:
    """ResNet-20 (3 blocks per stage, 16-16-32-64); 0.278M at 100 classes, 0.272M at 10."""
    return CifarResNet(20, NARROW, num_classes, in_channels, width)


@MODELS.register("resnet32")
def resnet32(
    *, num_classes: int, in_channels: int = 3, image_size: int = 32, width: float = 1.0
) -> CifarResNet:
    """ResNet-32 (5 blocks per stage, 16-16-32-64); 0.473M parameters at 100 classes."""
    return CifarResNet(32, NARROW, num_classes, in_channels, width)


@MODELS.register("resnet44")
def resnet44(
    *, num_classes: int, in_channels: int = 3, image_size: int = 32, width: float = 1.0
) -> CifarResNet:
    """ResNet-44 (7 blocks per stage, 16-16-32-64); 0.667M parameters at 100 classes."""
    return CifarResNet(44, NARROW, num_classes, in_channels, width)


@MODELS.register("resnet56")
def resnet56(
    *, num_classes: int, in_channels: int = 3, image_size: int = 32, width: float = 1.0
) -> CifarResNet:
    """ResNet-56 (9 blocks per stage, 16-16-32-64); 0.862M parameters at 100 classes."""
    return CifarResNet(56, NARROW, num_classes, in_channels, width)


@MODELS.register("resnet110")
def resnet110(
    *, num_classes: int, in_channels: int = 3, image_size: int = 32, width: float = 1.0
) -> CifarResNet:
    """ResNet-110 (18 blocks per stage, 16-16-32-64); 1.737M parameters at 100 classes."""
    return CifarResNet(110, NARROW, num_classes, in_channels, width)


@MODELS.register("resnet8x4")
def resnet8x4(
    *, num_classes: int, in_channels: int = 3, image_size: int = 32, width: float = 1.0
) -> CifarResNet:
    """ResNet-8x4 (1 block per stage, 32-64-128-256); 1.234M parameters at 100 classes."""
    return CifarResNet(8, WIDE, num_classes, in_channels, width)


@MODELS.register("resnet32x4")
def resnet32x4(
    *, num_classes: int, in_channels: int = 3, image_size: int = 32, width: float = 1.0
) -> CifarResNet:
    """ResNet-32x4 (5 blocks per stage, 32-64-128-256); 7.434M parameters at 100 classes."""
    return CifarResNet(32, WIDE, num_classes, in_channels, width)
