"""The interface every network in the zoo implements."""

from __future__ import annotations

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
