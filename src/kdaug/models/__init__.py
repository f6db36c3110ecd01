"""The model zoo. Every model is a :class:`Classifier` (logits and penultimate embedding)."""

from __future__ import annotations

import kdaug.models.repdistiller  # noqa: F401  (registers the RepDistiller zoo)
from kdaug.models import alexnet, lenet, resnet, resnet_torchvision  # noqa: F401  (registers the models)
from kdaug.models.base import Classifier, count_parameters
from kdaug.models.zoo import MODELS

__all__ = ["MODELS", "Classifier", "build_model", "count_parameters"]


def build_model(
    name: str, *, num_classes: int, in_channels: int = 3, image_size: int = 32, width: float = 1.0
) -> Classifier:
    """Build the registered model ``name``; ``width`` scales its channel counts."""
    return MODELS.get(name)(
        num_classes=num_classes, in_channels=in_channels, image_size=image_size, width=width
    )
