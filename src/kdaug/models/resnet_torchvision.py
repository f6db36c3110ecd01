"""ResNet18 and ResNet34 as torchvision defines them for 224x224 ImageNet (He et al.
2016): a 7x7 stride-2 stem (64 channels) with BatchNorm, ReLU and a 3x3 stride-2
max-pool, BasicBlocks [2, 2, 2, 2] / [3, 4, 6, 3] at 64-128-256-512 channels, 1x1-conv
projection shortcuts with BN, global average pooling, a linear head. 11,689,512 /
21,797,672 parameters at 1000 classes, as ``torchvision.models.resnet18/34`` (Wang et
al.'s ImageNet pairs follow CRD in using torchvision's models; Choi et al.'s Table 2 uses
the same pair). Registered as ``resnet18_imagenet`` and ``resnet34_imagenet``
(``resnet18`` is Das et al.'s CIFAR ResNet18).
"""

from __future__ import annotations

import torch
from torch import nn

from kdaug.models.base import Classifier, init_conv_bn, residual_stages, stage_ends
from kdaug.models.resnet import BasicBlock
from kdaug.models.zoo import MODELS, scaled


class TorchvisionResNet(Classifier):
    def __init__(
        self, blocks: tuple[int, ...], num_classes: int, in_channels: int, width: float
    ) -> None:
        super().__init__()
        planes = [scaled(c, width) for c in (64, 128, 256, 512)]
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, planes[0], 7, 2, 3, bias=False),
            nn.BatchNorm2d(planes[0]),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2, 1),
        )
        self.layers, self.embedding_dim = residual_stages(BasicBlock, planes[0], planes, blocks)
        self.feature_cuts = (0, *stage_ends(1, blocks))
        self.fc = nn.Linear(self.embedding_dim, num_classes)
        init_conv_bn(self)  # torchvision's: He-normal fan-out convolutions, BN 1 / 0

    def trunk(self, x: torch.Tensor) -> list[nn.Module]:
        return [self.stem, *self.layers]


@MODELS.register("resnet18_imagenet")
def resnet18_imagenet(
    *, num_classes: int, in_channels: int = 3, image_size: int = 224, width: float = 1.0
) -> TorchvisionResNet:
    """torchvision's ResNet18 (any input of at least 32x32 works: global pooling)."""
    return TorchvisionResNet((2, 2, 2, 2), num_classes, in_channels, width)


@MODELS.register("resnet34_imagenet")
def resnet34_imagenet(
    *, num_classes: int, in_channels: int = 3, image_size: int = 224, width: float = 1.0
) -> TorchvisionResNet:
    """torchvision's ResNet34."""
    return TorchvisionResNet((3, 4, 6, 3), num_classes, in_channels, width)
