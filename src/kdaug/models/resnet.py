"""ResNet18 for 32x32 inputs (He et al. 2016; the CIFAR variant of kuangliu/pytorch-cifar):
a 3x3 stride-1 stem without max-pool, BasicBlocks [2, 2, 2, 2] at 64-128-256-512 channels,
1x1-conv projection shortcuts, global average pooling. 11,173,962 parameters at 10 classes.
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


class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward_preact(self, x: torch.Tensor) -> torch.Tensor:
        """The block's output before its final ReLU (the residual sum)."""
        out = self.relu(self.bn1(self.conv1(x)))
        return self.bn2(self.conv2(out)) + self.shortcut(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.forward_preact(x))


class ResNet(Classifier):
    def __init__(
        self, blocks: tuple[int, ...], num_classes: int, in_channels: int, width: float
    ) -> None:
        super().__init__()
        planes = [scaled(c, width) for c in (64, 128, 256, 512)]
        self.stem = self.make_stem(in_channels, planes[0])
        self.layers, self.embedding_dim = residual_stages(BasicBlock, planes[0], planes, blocks)
        self.feature_cuts = (0, *stage_ends(1, blocks))
        self.fc = nn.Linear(self.embedding_dim, num_classes)
        init_conv_bn(self)

    @staticmethod
    def make_stem(in_channels: int, channels: int) -> nn.Module:
        """The CIFAR stem: one 3x3 stride-1 convolution with BN and ReLU."""
        return conv_bn_relu_stem(in_channels, channels)

    def trunk(self, x: torch.Tensor) -> list[nn.Module]:
        return [self.stem, *self.layers]


@MODELS.register("resnet18")
def resnet18(
    *, num_classes: int, in_channels: int = 3, image_size: int = 32, width: float = 1.0
) -> ResNet:
    """CIFAR ResNet18; any image size works (global pooling)."""
    return ResNet((2, 2, 2, 2), num_classes, in_channels, width)
