"""The interface every network in the zoo implements, and the pieces the ResNets share."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn


class Classifier(nn.Module):
    """A classifier split into a feature extractor and a linear head.

    ``embed(x)`` returns the penultimate embedding (flattened, shape ``(B, embedding_dim)``);
    ``forward(x)`` returns logits; ``forward_with_embedding(x)`` returns both from one pass,
    which extraction and feature-based metrics use.

    The feature extractor is a *trunk* (modules run in order, :meth:`trunk`) and a
    :meth:`head` that turns the trunk's output into the embedding. ``feature_cuts`` names
    the trunk positions whose outputs are the intermediate feature maps: the stem first,
    then the end of every stage. :meth:`forward_features` returns them, the embedding and
    the logits from the same single pass (RepDistiller's ``is_feat=True``), which the
    feature-based KD methods read (:mod:`kdaug.train.methods`).
    """

    embedding_dim: int
    fc: nn.Module
    feature_cuts: tuple[int, ...] = ()

    def trunk(self, x: torch.Tensor) -> Sequence[nn.Module]:  # pragma: no cover - abstract
        """The modules from the input to the head, in order (may depend on the input size)."""
        raise NotImplementedError

    def head(self, x: torch.Tensor) -> torch.Tensor:
        """Trunk output -> embedding: global average pooling unless a model says otherwise."""
        return global_pool(x)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        for module in self.trunk(x):
            x = module(x)
        return self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.embed(x))

    def forward_with_embedding(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        emb = self.embed(x)
        return self.fc(emb), emb

    def forward_features(
        self, x: torch.Tensor, preact: bool = False
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """``([stem, stage 1, ..., stage K, embedding], logits)`` from one forward pass.

        The maps are in RepDistiller's order (``feats[1:-1]`` are the stage outputs,
        ``feats[-2]`` the last one, ``feats[-1]`` the pooled embedding). With ``preact``
        each stage output is taken before its final ReLU (:meth:`preact_step`), as the
        activation-boundary method needs; the stem map is always post-activation, as in
        RepDistiller. The network computes exactly what :meth:`forward` computes.
        """
        cuts = self.feature_cuts
        maps: list[torch.Tensor] = []
        for i, module in enumerate(self.trunk(x)):
            if i not in cuts:
                x = module(x)
                continue
            if preact and i != cuts[0]:
                pre, x = self.preact_step(i, module, x)
            else:
                x = pre = module(x)
            maps.append(pre)
        emb = self.head(x)
        return [*maps, emb], self.fc(emb)

    def preact_step(
        self, index: int, module: nn.Module, x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(pre-activation map, output)`` of the trunk module at ``index``, a stage end.

        A block with ``forward_both`` says both itself; one with ``forward_preact``
        (residual and ShuffleNet V1 units, VGG blocks) gives its output before the final
        ReLU; a bare ReLU gives its input; a module that ends in no ReLU (MobileNetV2's
        linear bottlenecks) gives its output for both. The ReLU is applied out of place so
        the pre-activation map survives it.
        """
        if hasattr(module, "forward_both"):
            return module.forward_both(x)
        if hasattr(module, "forward_preact"):
            pre = module.forward_preact(x)
            return pre, F.relu(pre)
        if isinstance(module, nn.ReLU):
            return x, F.relu(x)
        out = module(x)
        return out, out


def stage_ends(first: int, sizes: Sequence[int]) -> tuple[int, ...]:
    """Trunk positions of the last module of each stage, when the stages (``sizes``
    modules each) start at position ``first``."""
    ends, position = [], first - 1
    for size in sizes:
        position += size
        ends.append(position)
    return tuple(ends)


def batch_norm_again(bn: nn.BatchNorm2d, x: torch.Tensor) -> torch.Tensor:
    """``bn(x)`` without touching ``bn``'s running statistics: a second look at a
    normalisation the network computes anyway (the pre-activation features of a
    pre-activation network). In training mode it normalises with the batch statistics,
    as ``bn`` itself does; momentum 0 leaves the running averages as they are."""
    return F.batch_norm(
        x, bn.running_mean, bn.running_var, bn.weight, bn.bias,
        training=bn.training, momentum=0.0, eps=bn.eps,
    )  # fmt: skip


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
