"""AlexNet for CIFAR (Krizhevsky et al. 2012, as adapted in bearpaw/pytorch-classification,
``models/cifar/alexnet.py``): conv 11x11/4 (64) -> pool -> conv 5x5 (192) -> pool ->
conv 3x3 (384, 256, 256) -> pool -> linear. At 32x32 the last map is 256x1x1, the
embedding; 2,472,266 parameters at 32x32x3 and 10 classes.
"""

from __future__ import annotations

import torch
from torch import nn

from kdaug.models.base import Classifier
from kdaug.models.zoo import MODELS, scaled


def alexnet_feature_size(image_size: int) -> int:
    """Side of the last feature map: conv11/4 pad 5, then three 2x2 max-pools."""
    side = (image_size + 2 * 5 - 11) // 4 + 1
    for _ in range(3):
        side //= 2
    return side


class AlexNet(Classifier):
    def __init__(self, num_classes: int, in_channels: int, image_size: int, width: float) -> None:
        super().__init__()
        side = alexnet_feature_size(image_size)
        if side < 1:
            raise ValueError(
                f"AlexNet needs images of at least 29x29; got {image_size}x{image_size}"
            )
        c = [scaled(n, width) for n in (64, 192, 384, 256, 256)]
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c[0], 11, stride=4, padding=5), nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(c[0], c[1], 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(c[1], c[2], 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(c[2], c[3], 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(c[3], c[4], 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Flatten(),
        )  # fmt: skip
        self.embedding_dim = c[4] * side * side
        self.feature_cuts = (1, 4, 7, 9, 11)  # the five conv ReLUs (before pooling)
        self.fc = nn.Linear(self.embedding_dim, num_classes)

    def trunk(self, x: torch.Tensor) -> nn.Sequential:
        return self.features

    def head(self, x: torch.Tensor) -> torch.Tensor:
        return x  # flattened in the trunk


@MODELS.register("alexnet")
def alexnet(
    *, num_classes: int, in_channels: int = 3, image_size: int = 32, width: float = 1.0
) -> AlexNet:
    return AlexNet(num_classes, in_channels, image_size, width)
