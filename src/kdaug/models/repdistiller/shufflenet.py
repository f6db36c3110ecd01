"""ShuffleNet V1 (Zhang et al. 2018) and V2 (Ma et al. 2018) for CIFAR as defined in
RepDistiller (``models/ShuffleNetv1.py``, ``models/ShuffleNetv2.py``).

Both start from a 1x1 conv stem to 24 channels at full resolution (no max-pool), halve the
resolution at the start of each of three stages, and end with global average pooling and a
linear head (the reference's ``linear``).

``width`` rounds the stage widths to multiples that keep the grouped convolutions and
channel splits valid (12 for V1 with 3 groups, 2 for V2); ``width=1`` is the reference.
"""

from __future__ import annotations

import torch
from torch import nn

from kdaug.models.base import Classifier, stage_ends
from kdaug.models.repdistiller.common import channel_shuffle, scaled_multiple
from kdaug.models.zoo import MODELS, scaled

STEM = 24


def conv_bn(
    cin: int, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1
) -> nn.Sequential:
    """Bias-free conv -> BN (no activation)."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    )


class ShuffleUnitV1(nn.Module):
    """Grouped 1x1 -> shuffle -> 3x3 depthwise -> grouped 1x1, with the input added (stride
    1) or, at stride 2, a 3x3 average-pooled input concatenated; ReLU after the merge."""

    def __init__(self, cin: int, cout: int, stride: int, groups: int, first_groups: int) -> None:
        super().__init__()
        mid = cout // 4
        self.first_groups = first_groups
        self.reduce = conv_bn(cin, mid, groups=first_groups)
        self.depthwise = conv_bn(mid, mid, 3, stride, groups=mid)
        self.expand = conv_bn(mid, cout, groups=groups)
        self.pool = nn.AvgPool2d(3, 2, 1) if stride == 2 else None
        self.relu = nn.ReLU(inplace=True)

    def forward_preact(self, x: torch.Tensor) -> torch.Tensor:
        """The merged branches before the final ReLU."""
        out = channel_shuffle(self.relu(self.reduce(x)), self.first_groups)
        out = self.expand(self.relu(self.depthwise(out)))
        return out + x if self.pool is None else torch.cat([out, self.pool(x)], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.forward_preact(x))


class ShuffleNetV1(Classifier):
    """RepDistiller's ``ShuffleV1``: 3 groups, stages of 4-8-4 units at 240-480-960."""

    def __init__(self, num_classes: int, in_channels: int, width: float) -> None:
        super().__init__()
        groups, multiple = 3, 12  # mid = cout / 4 must split into the 3 groups
        stem = scaled_multiple(STEM, width, multiple)
        stages = [scaled_multiple(c, width, multiple) for c in (240, 480, 960)]
        if stages[0] <= stem:
            raise ValueError(f"ShuffleV1 is too narrow at width {width}")
        self.stem = nn.Sequential(*conv_bn(in_channels, stem), nn.ReLU(inplace=True))
        units, cin = [], stem
        for i, (cout, blocks) in enumerate(zip(stages, (4, 8, 4), strict=True)):
            # the first unit of a stage concatenates its pooled input, so it adds cout - cin
            # channels; the network's very first 1x1 conv (on the stem) is not grouped
            first_groups = 1 if i == 0 else groups
            units.append(ShuffleUnitV1(cin, cout - cin, 2, groups, first_groups))
            units += [ShuffleUnitV1(cout, cout, 1, groups, groups) for _ in range(blocks - 1)]
            cin = cout
        self.units = nn.Sequential(*units)
        self.embedding_dim = cin
        self.feature_cuts = (0, *stage_ends(1, (4, 8, 4)))
        self.fc = nn.Linear(cin, num_classes)

    def trunk(self, x: torch.Tensor) -> list[nn.Module]:
        return [self.stem, *self.units]


class ShuffleUnitV2(nn.Module):
    """Split the channels in half; one half passes, the other goes 1x1 -> 3x3 depthwise ->
    1x1; concatenate and shuffle with 2 groups."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        half = channels // 2
        self.branch = nn.Sequential(
            *conv_bn(half, half), nn.ReLU(inplace=True),
            *conv_bn(half, half, 3, groups=half),
            *conv_bn(half, half), nn.ReLU(inplace=True),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        keep, change = x.chunk(2, dim=1)
        return channel_shuffle(torch.cat([keep, self.branch(change)], 1), 2)

    def forward_both(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(pre, out)``: the unit's output with the changed half taken before its last
        ReLU, and the output itself (both shuffled; RepDistiller leaves its pre-activation
        map unshuffled, a channel order no feature method depends on)."""
        keep, change = x.chunk(2, dim=1)
        pre = self.branch[:-1](change)
        shuffle = lambda changed: channel_shuffle(torch.cat([keep, changed], 1), 2)  # noqa: E731
        return shuffle(pre), shuffle(torch.relu(pre))


class DownUnitV2(nn.Module):
    """Stride-2 unit: both branches see the whole input (left: 3x3 depthwise -> 1x1; right:
    1x1 -> 3x3 depthwise -> 1x1), each to half the output; concatenate and shuffle."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        mid = cout // 2
        self.left = nn.Sequential(
            *conv_bn(cin, cin, 3, 2, groups=cin),
            *conv_bn(cin, mid), nn.ReLU(inplace=True),
        )  # fmt: skip
        self.right = nn.Sequential(
            *conv_bn(cin, mid), nn.ReLU(inplace=True),
            *conv_bn(mid, mid, 3, 2, groups=mid),
            *conv_bn(mid, mid), nn.ReLU(inplace=True),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return channel_shuffle(torch.cat([self.left(x), self.right(x)], 1), 2)


class ShuffleNetV2(Classifier):
    """RepDistiller's ``ShuffleV2`` (net size 1): a down unit plus 3-7-3 units at
    116-232-464 channels, then a 1x1 conv to 1024 channels with BN and ReLU."""

    def __init__(self, num_classes: int, in_channels: int, width: float) -> None:
        super().__init__()
        stem = scaled(STEM, width)
        self.stem = nn.Sequential(*conv_bn(in_channels, stem), nn.ReLU(inplace=True))
        units: list[nn.Module] = []
        cin = stem
        for channels, blocks in zip((116, 232, 464), (3, 7, 3), strict=True):
            cout = scaled_multiple(channels, width, 2)
            units.append(DownUnitV2(cin, cout))
            units += [ShuffleUnitV2(cout) for _ in range(blocks)]
            cin = cout
        last = scaled(1024, width)
        units += [*conv_bn(cin, last), nn.ReLU(inplace=True)]
        self.units = nn.Sequential(*units)
        self.embedding_dim = last
        # the stem and the three stages (a down unit plus 3, 7, 3 units), before the 1x1 conv
        self.feature_cuts = (0, *stage_ends(1, (4, 8, 4)))
        self.fc = nn.Linear(last, num_classes)

    def trunk(self, x: torch.Tensor) -> list[nn.Module]:
        return [self.stem, *self.units]


@MODELS.register("ShuffleV1")
def shufflenet_v1(
    *, num_classes: int, in_channels: int = 3, image_size: int = 32, width: float = 1.0
) -> ShuffleNetV1:
    """ShuffleNet V1 (3 groups); 0.949M parameters at 100 classes."""
    return ShuffleNetV1(num_classes, in_channels, width)


@MODELS.register("ShuffleV2")
def shufflenet_v2(
    *, num_classes: int, in_channels: int = 3, image_size: int = 32, width: float = 1.0
) -> ShuffleNetV2:
    """ShuffleNet V2 (net size 1); 1.356M parameters at 100 classes."""
    return ShuffleNetV2(num_classes, in_channels, width)
