"""LeNet-5 (LeCun et al. 1998) as used on CIFAR: two 5x5 conv + max-pool stages (6, 16
channels), then fully connected 120 -> 84 -> classes. 62,006 parameters at 32x32x3 and 10
classes. The penultimate embedding is the 84-unit ReLU output.
"""

from __future__ import annotations

import torch
from torch import nn

from kdaug.models.base import Classifier
from kdaug.models.zoo import MODELS, scaled


def lenet_feature_size(image_size: int) -> int:
    """Side of the feature map after conv5 -> pool2 -> conv5 -> pool2."""
    return ((image_size - 4) // 2 - 4) // 2


class LeNet(Classifier):
    def __init__(self, num_classes: int, in_channels: int, image_size: int, width: float) -> None:
        super().__init__()
        side = lenet_feature_size(image_size)
        if side < 1:
            raise ValueError(f"LeNet needs images of at least 16x16; got {image_size}x{image_size}")
        c1, c2 = scaled(6, width), scaled(16, width)
        h1, h2 = scaled(120, width), scaled(84, width)
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c1, 5), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 5), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(c2 * side * side, h1), nn.ReLU(inplace=True),
            nn.Linear(h1, h2), nn.ReLU(inplace=True),
        )  # fmt: skip
        self.embedding_dim = h2
        self.feature_cuts = (1, 4)  # the two conv ReLUs (before pooling)
        self.fc = nn.Linear(h2, num_classes)

    def trunk(self, x: torch.Tensor) -> nn.Sequential:
        return self.features

    def head(self, x: torch.Tensor) -> torch.Tensor:
        return x  # the fully connected layers are in the trunk


@MODELS.register("lenet")
def lenet(
    *, num_classes: int, in_channels: int = 3, image_size: int = 32, width: float = 1.0
) -> LeNet:
    return LeNet(num_classes, in_channels, image_size, width)
