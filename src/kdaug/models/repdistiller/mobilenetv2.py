"""MobileNetV2 (Sandler et al. 2018) as defined in RepDistiller (``models/mobilenetv2.py``,
``mobile_half``: expansion 6, width multiplier 0.5).

A 3x3 stride-2 stem (16 channels), seven stages of inverted residual blocks (1x1 expand,
3x3 depthwise, linear 1x1 project; residual when stride 1 and the width is kept) at
8-12-16-32-48-80-160 channels, a 1x1 conv to 1280 channels, global average pooling and a
linear head. 0.813M parameters at 100 classes. The embedding is the pooled 1280-vector.
"""

from __future__ import annotations

import torch
from torch import nn

from kdaug.models.base import Classifier, init_conv_bn, stage_ends
from kdaug.models.repdistiller.common import init_linear
from kdaug.models.zoo import MODELS, scaled

# (expansion, channels, blocks, first stride) with the expansion T = 6 of ``mobile_half``
STAGES = ((1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
          (6, 160, 3, 2), (6, 320, 1, 1))  # fmt: skip
HALF = 0.5  # the reference's width multiplier for ``mobile_half``
LAST_CHANNELS = 1280  # not scaled by the reference's multiplier when it is <= 1


def conv_bn_relu(
    cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1
) -> list[nn.Module]:
    return [
        nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    ]


class InvertedResidual(nn.Module):
    """1x1 expand -> 3x3 depthwise -> linear 1x1 projection.

    As in the reference the 1x1 expansion conv is there even at expansion 1.
    """

    def __init__(self, cin: int, cout: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = cin * expansion
        self.conv = nn.Sequential(
            *conv_bn_relu(cin, hidden, 1),
            *conv_bn_relu(hidden, hidden, 3, stride, groups=hidden),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        )
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.residual else self.conv(x)


class MobileNetV2(Classifier):
    """RepDistiller's ``mobile_half``; ``width`` scales on top of its 0.5 multiplier."""

    def __init__(self, num_classes: int, in_channels: int, width: float) -> None:
        super().__init__()
        cin = scaled(int(32 * HALF), width)
        layers: list[nn.Module] = [nn.Sequential(*conv_bn_relu(in_channels, cin, 3, 2))]
        for expansion, channels, blocks, stride in STAGES:
            cout = scaled(int(channels * HALF), width)
            for j in range(blocks):
                layers.append(InvertedResidual(cin, cout, stride if j == 0 else 1, expansion))
                cin = cout
        last = scaled(LAST_CHANNELS, width)
        layers.append(nn.Sequential(*conv_bn_relu(cin, last, 1)))
        self.features = nn.Sequential(*layers)
        self.embedding_dim = last
        # RepDistiller's feature maps: the stem, then after its stage groups (1, 2), (3),
        # (4, 5), (6, 7) of the seven inverted-residual stages (before the 1x1 conv to 1280)
        self.feature_cuts = (0, *stage_ends(1, (3, 3, 7, 4)))
        self.fc = nn.Linear(last, num_classes)
        init_conv_bn(self)
        init_linear(self.fc, std=0.01)

    def trunk(self, x: torch.Tensor) -> nn.Sequential:
        return self.features


@MODELS.register("MobileNetV2")
def mobilenetv2_half(
    *, num_classes: int, in_channels: int = 3, image_size: int = 32, width: float = 1.0
) -> MobileNetV2:
    """MobileNetV2 at width 0.5 (``mobile_half``); 0.813M parameters at 100 classes."""
    return MobileNetV2(num_classes, in_channels, width)
