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

from torch import nn

from kdaug.models.resnet import ResNet
from kdaug.models.zoo import MODELS


class TorchvisionResNet(ResNet):
    """:class:`kdaug.models.resnet.ResNet` with torchvision's ImageNet stem."""

    @staticmethod
    def make_stem(in_channels: int, channels: int) -> nn.Module:
        return nn.Sequential(
            nn.Conv2d(in_channels, channels, 7, 2, 3, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2, 1),
        )


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
