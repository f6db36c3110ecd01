"""VGG with batch norm for CIFAR as defined in RepDistiller (``models/vgg.py``, the
``vggN_bn`` variants its model dict registers as ``vggN``): the fully connected layers
of the ImageNet VGG are removed.

Five blocks of 3x3 conv (with bias) + BN + ReLU; 2x2 max-pools after the first three
(and after the fourth at 64x64 inputs, as in the reference), global average pooling after
the fifth and a single linear head on the 512-channel embedding (RepDistiller's
``classifier``).
"""

from __future__ import annotations

import torch
from torch import nn

from kdaug.models.base import Classifier, init_conv_bn
from kdaug.models.repdistiller.common import init_linear
from kdaug.models.zoo import MODELS, scaled

# conv widths of the five blocks
CONFIGS: dict[str, tuple[tuple[int, ...], ...]] = {
    "S": ((64,), (128,), (256,), (512,), (512,)),
    "A": ((64,), (128,), (256, 256), (512, 512), (512, 512)),
    "B": ((64, 64), (128, 128), (256, 256), (512, 512), (512, 512)),
    "D": ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512)),
    "E": ((64, 64), (128, 128), (256,) * 4, (512,) * 4, (512,) * 4),
}


class ConvBlock(nn.Sequential):
    """A run of conv3x3 (bias) -> BN -> ReLU layers."""

    def forward_preact(self, x: torch.Tensor) -> torch.Tensor:
        """The block's output before its last ReLU."""
        for module in list(self)[:-1]:
            x = module(x)
        return x


def conv_block(in_channels: int, widths: tuple[int, ...]) -> ConvBlock:
    layers: list[nn.Module] = []
    for c in widths:
        layers += [nn.Conv2d(in_channels, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(True)]
        in_channels = c
    return ConvBlock(*layers)


class VGG(Classifier):
    """RepDistiller's CIFAR VGG with BN for one of :data:`CONFIGS`."""

    def __init__(self, config: str, num_classes: int, in_channels: int, width: float) -> None:
        super().__init__()
        blocks = []
        for widths in CONFIGS[config]:
            scaled_widths = tuple(scaled(c, width) for c in widths)
            blocks.append(conv_block(in_channels, scaled_widths))
            in_channels = scaled_widths[-1]
        self.blocks = nn.ModuleList(blocks)
        self.pool = nn.MaxPool2d(2, 2)
        self.no_pool = nn.Identity()
        self.embedding_dim = in_channels
        self.feature_cuts = (0, 2, 4, 6, 8)  # the five blocks (RepDistiller's f0 ... f4)
        self.fc = nn.Linear(in_channels, num_classes)
        init_conv_bn(self)
        init_linear(self.fc, std=0.01)

    def trunk(self, x: torch.Tensor) -> list[nn.Module]:
        # the reference pools after block 3 only at 64x64
        fourth = self.pool if x.shape[-2] >= 64 else self.no_pool
        b = self.blocks
        return [b[0], self.pool, b[1], self.pool, b[2], self.pool, b[3], fourth, b[4]]


@MODELS.register("vgg8")
def vgg8(
    *, num_classes: int, in_channels: int = 3, image_size: int = 32, width: float = 1.0
) -> VGG:
    """VGG-8 with BN (one conv per block); 3.965M parameters at 100 classes."""
    return VGG("S", num_classes, in_channels, width)


@MODELS.register("vgg11")
def vgg11(
    *, num_classes: int, in_channels: int = 3, image_size: int = 32, width: float = 1.0
) -> VGG:
    """VGG-11 with BN (configuration A); 9.277M parameters at 100 classes."""
    return VGG("A", num_classes, in_channels, width)


@MODELS.register("vgg13")
def vgg13(
    *, num_classes: int, in_channels: int = 3, image_size: int = 32, width: float = 1.0
) -> VGG:
    """VGG-13 with BN (configuration B); 9.462M parameters at 100 classes."""
    return VGG("B", num_classes, in_channels, width)


@MODELS.register("vgg16")
def vgg16(
    *, num_classes: int, in_channels: int = 3, image_size: int = 32, width: float = 1.0
) -> VGG:
    """VGG-16 with BN (configuration D); 14.774M parameters at 100 classes."""
    return VGG("D", num_classes, in_channels, width)


@MODELS.register("vgg19")
def vgg19(
    *, num_classes: int, in_channels: int = 3, image_size: int = 32, width: float = 1.0
) -> VGG:
    """VGG-19 with BN (configuration E); 20.087M parameters at 100 classes."""
    return VGG("E", num_classes, in_channels, width)
