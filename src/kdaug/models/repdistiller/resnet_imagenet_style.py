"""ResNet50 with ImageNet-style Bottleneck blocks at CIFAR resolution, as defined in
RepDistiller (``models/resnetv2.py``, after kuangliu/pytorch-cifar).

A 3x3 stride-1 stem (64 channels, no max-pool), Bottleneck blocks (1x1 -> 3x3 -> 1x1 with
expansion 4) [3, 4, 6, 3] at 64-128-256-512 inner channels and stride 1, 2, 2, 2, 1x1-conv
projection shortcuts with BN, global average pooling, a linear head on the 2048-channel
embedding. 23.705M parameters at 100 classes. (RepDistiller's ResNet18/34 from the same
file are not registered: ``resnet18`` is already the Das et al. CIFAR ResNet18.)
"""

from __future__ import annotations

import torch
from torch import nn

from kdaug.models.base import (
    Classifier,
    conv_bn_relu_stem,
    init_conv_bn,
    residual_stages,
    stage_ends,
)
from kdaug.models.zoo import MODELS, scaled

EXPANSION = 4


class Bottleneck(nn.Module):
    """1x1 reduce -> 3x3 (carries the stride) -> 1x1 expand x4, BN after each, ReLU after
    the sum with the (projected where the shape changes) input."""

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        out_planes = planes * EXPANSION
        self.residual = nn.Sequential(
            nn.Conv2d(in_planes, planes, 1, bias=False), nn.BatchNorm2d(planes),
            nn.ReLU(inplace=True),
            nn.Conv2d(planes, planes, 3, stride, 1, bias=False), nn.BatchNorm2d(planes),
            nn.ReLU(inplace=True),
            nn.Conv2d(planes, out_planes, 1, bias=False), nn.BatchNorm2d(out_planes),
        )  # fmt: skip
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != out_planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, out_planes, 1, stride, bias=False),
                nn.BatchNorm2d(out_planes),
            )
        self.relu = nn.ReLU(inplace=True)

    def forward_preact(self, x: torch.Tensor) -> torch.Tensor:
        """The block's output before its final ReLU (the residual sum)."""
        return self.residual(x) + self.shortcut(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.forward_preact(x))


class BottleneckResNet(Classifier):
    """RepDistiller's ``resnetv2.ResNet`` with Bottleneck blocks."""

    def __init__(
        self, blocks: tuple[int, ...], num_classes: int, in_channels: int, width: float
    ) -> None:
        super().__init__()
        stem = scaled(64, width)
        self.stem = conv_bn_relu_stem(in_channels, stem)
        planes = [scaled(base, width) for base in (64, 128, 256, 512)]
        self.layers, self.embedding_dim = residual_stages(
            Bottleneck, stem, planes, blocks, EXPANSION
        )
        self.feature_cuts = (0, *stage_ends(1, blocks))
        self.fc = nn.Linear(self.embedding_dim, num_classes)
        init_conv_bn(self)

    def trunk(self, x: torch.Tensor) -> list[nn.Module]:
        return [self.stem, *self.layers]


@MODELS.register("ResNet50")
def resnet50(
    *, num_classes: int, in_channels: int = 3, image_size: int = 32, width: float = 1.0
) -> BottleneckResNet:
    """ResNet50 (Bottleneck [3, 4, 6, 3]); 23.705M parameters at 100 classes."""
    return BottleneckResNet((3, 4, 6, 3), num_classes, in_channels, width)
