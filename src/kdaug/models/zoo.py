"""The model registry (kept apart from ``__init__`` so architecture modules can import it)."""

from __future__ import annotations

from collections.abc import Callable

from kdaug.models.base import Classifier
from kdaug.registry import Registry

MODELS: Registry[Callable[..., Classifier]] = Registry("model")


def scaled(channels: int, width: float) -> int:
    """``channels`` scaled by ``width``, rounded, at least 1."""
    return max(1, round(channels * width))
