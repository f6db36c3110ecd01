"""Wide ResNets (Zagoruyko & Komodakis 2016) as defined in RepDistiller (``models/wrn.py``).

WRN-d-k: a 3x3 stem with 16 channels, three stages of ``n = (d - 4) / 6`` pre-activation
blocks (BN-ReLU-conv3x3-BN-ReLU-conv3x3) at 16k-32k-64k channels and stride 1, 2, 2, a
bias-free 1x1 shortcut on the pre-activated input where the shape changes, then BN-ReLU,
global average pooling and a linear head. No dropout. The embedding is the pooled
BN-ReLU output.
"""

from __future__ import annotations

import torch
from torch import nn

from kdaug.models.base import (
    Classifier,
    batch_norm_again,
    global_pool,
    init_conv_bn,
    stage_ends,
)
from kdaug.models.repdistiller.common import init_linear
from kdaug.models.zoo import MODELS, scaled


class WideBlock(nn.Module):
    """Pre-activation basic block; identity shortcut when the shape is kept."""

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module | None = None
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Conv2d(in_planes, planes, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.relu(self.bn1(x))
        out = self.conv2(self.relu(self.bn2(self.conv1(pre))))
        # as in the reference: a projection sees the pre-activated input, identity the raw one
        return out + (x if self.shortcut is None else self.shortcut(pre))


def blocks_per_stage(depth: int) -> int:
    """Blocks per stage of a WRN of ``depth`` layers (depth = 6n + 4)."""
    if depth < 10 or (depth - 4) % 6:
        raise ValueError(f"a Wide ResNet needs depth 6n+4; got {depth}")
    return (depth - 4) // 6


class WideResNet(Classifier):
    """WRN-``depth``-``widen``; ``width`` further scales every channel count."""

    def __init__(
        self, depth: int, widen: int, num_classes: int, in_channels: int, width: float
    ) -> None:
        super().__init__()
        n = blocks_per_stage(depth)
        stem = scaled(16, width)
        self.stem = nn.Conv2d(in_channels, stem, 3, 1, 1, bias=False)
        layers, in_planes = [], stem
        for i, base in enumerate((16, 32, 64)):
            planes = scaled(base * widen, width)
            for j in range(n):
                layers.append(WideBlock(in_planes, planes, stride=2 if i > 0 and j == 0 else 1))
                in_planes = planes
        self.layers = nn.Sequential(*layers)
        self.head_act = nn.Sequential(nn.BatchNorm2d(in_planes), nn.ReLU(inplace=True))
        self.embedding_dim = in_planes
        self.feature_cuts = (0, *stage_ends(1, [n] * 3))
        self.fc = nn.Linear(in_planes, num_classes)
        init_conv_bn(self)
        init_linear(self.fc)

    def trunk(self, x: torch.Tensor) -> list[nn.Module]:
        return [self.stem, *self.layers]

    def head(self, x: torch.Tensor) -> torch.Tensor:
        return global_pool(self.head_act(x))

    def preact_step(
        self, index: int, module: nn.Module, x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """A pre-activation stage ends in a sum that the *next* BatchNorm -> ReLU activates
        (the next stage's first block, or the head): its pre-activation map is that
        BatchNorm's output, as in RepDistiller's ``preact`` features of WRNs."""
        out = module(x)
        # trunk position i holds layers[i - 1], so the next block is layers[index]
        bn = self.layers[index].bn1 if index < len(self.layers) else self.head_act[0]
        return batch_norm_again(bn, out), out


@MODELS.register("wrn_16_1")
def wrn_16_1(
    *, num_classes: int, in_channels: int = 3, image_size: int = 32, width: float = 1.0
) -> WideResNet:
    """WRN-16-1 (2 blocks per stage, 16-32-64); 0.181M parameters at 100 classes."""
    return WideResNet(16, 1, num_classes, in_channels, width)


@MODELS.register("wrn_16_2")
def wrn_16_2(
    *, num_classes: int, in_channels: int = 3, image_size: int = 32, width: float = 1.0
) -> WideResNet:
    """WRN-16-2 (2 blocks per stage, 32-64-128); 0.703M parameters at 100 classes."""
    return WideResNet(16, 2, num_classes, in_channels, width)


@MODELS.register("wrn_40_1")
def wrn_40_1(
    *, num_classes: int, in_channels: int = 3, image_size: int = 32, width: float = 1.0
) -> WideResNet:
    """WRN-40-1 (6 blocks per stage, 16-32-64); 0.570M parameters at 100 classes."""
    return WideResNet(40, 1, num_classes, in_channels, width)


@MODELS.register("wrn_40_2")
def wrn_40_2(
    *, num_classes: int, in_channels: int = 3, image_size: int = 32, width: float = 1.0
) -> WideResNet:
    """WRN-40-2 (6 blocks per stage, 32-64-128); 2.255M parameters at 100 classes."""
    return WideResNet(40, 2, num_classes, in_channels, width)
