"""The interface every network in the zoo implements, and the pieces the ResNets share."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn


class Classifier(nn.Module):
    """A classifier split into a feature extractor and a linear head.

    ``embed(x)`` returns the penultimate embedding (flattened, shape ``(B, embedding_dim)``);
    ``forward(x)`` returns logits; ``forward_with_embedding(x)`` returns both from one pass,
    which extraction and feature-based metrics use.
    """

    embedding_dim: int
    fc: nn.Module

    def embed(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.embed(x))

    def forward_with_embedding(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        emb = self.embed(x)
        return self.fc(emb), emb


def count_parameters(model: nn.Module) -> int:
    """Trainable and BatchNorm affine parameters (buffers such as running stats excluded)."""
    return sum(p.numel() for p in model.parameters())


def init_conv_bn(module: nn.Module) -> None:
    """He-normal (fan-out) convolutions with zero bias, BatchNorm weight 1 and bias 0
    (the initialisation of kuangliu/pytorch-cifar and RepDistiller)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def global_pool(x: torch.Tensor) -> torch.Tensor:
    """Average over the spatial dimensions: (B, C, H, W) -> (B, C). The CIFAR nets' fixed
    8x8 pool is the same at 32x32; the adaptive form also works at 64x64."""
    return torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)


def conv_bn_relu_stem(in_channels: int, channels: int) -> nn.Sequential:
    """The CIFAR ResNets' stem: 3x3 stride-1 conv (no bias), BatchNorm, ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, channels, 3, 1, 1, bias=False),
        nn.BatchNorm2d(channels),
        nn.ReLU(inplace=True),
    )


Block = Callable[[int, int, int], nn.Module]  # (in_planes, planes, stride) -> block


def residual_stages(
    block: Block,
    in_planes: int,
    planes: Sequence[int],
    blocks: Sequence[int],
    expansion: int = 1,
) -> tuple[nn.Sequential, int]:
    """Stages of residual blocks, stride 2 at the first block of every stage but the
    first; returns the blocks in one ``nn.Sequential`` and the output channel count."""
    layers = []
    for i, (p, n) in enumerate(zip(planes, blocks, strict=True)):
        for j in range(n):
            layers.append(block(in_planes, p, 2 if i > 0 and j == 0 else 1))
            in_planes = p * expansion
    return nn.Sequential(*layers), in_planes
