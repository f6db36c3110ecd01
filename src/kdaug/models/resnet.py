"""ResNet18 for 32x32 inputs (He et al. 2016; the CIFAR variant of kuangliu/pytorch-cifar):
a 3x3 stride-1 stem without max-pool, BasicBlocks [2, 2, 2, 2] at 64-128-256-512 channels,
1x1-conv projection shortcuts, global average pooling. 11,173,962 parameters at 10 classes.
"""

from __future__ import annotations

import torch
from torch import nn

from kdaug.models.base import Classifier
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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class ResNet(Classifier):
    def __init__(
        self, blocks: tuple[int, ...], num_classes: int, in_channels: int, width: float
    ) -> None:
        super().__init__()
        planes = [scaled(c, width) for c in (64, 128, 256, 512)]
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, planes[0], 3, 1, 1, bias=False),
            nn.BatchNorm2d(planes[0]),
            nn.ReLU(inplace=True),
        )
        layers, in_planes = [], planes[0]
        for i, (p, n) in enumerate(zip(planes, blocks, strict=True)):
            for j in range(n):
                layers.append(BasicBlock(in_planes, p, stride=2 if i > 0 and j == 0 else 1))
                in_planes = p
        self.layers = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.embedding_dim = in_planes
        self.fc = nn.Linear(in_planes, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.pool(self.layers(self.stem(x))), 1)


@MODELS.register("resnet18")
def resnet18(
    *, num_classes: int, in_channels: int = 3, image_size: int = 32, width: float = 1.0
) -> ResNet:
    """CIFAR ResNet18; any image size works (global pooling)."""
    return ResNet((2, 2, 2, 2), num_classes, in_channels, width)
