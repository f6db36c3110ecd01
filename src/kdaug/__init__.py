"""kdaug: data augmentation in knowledge distillation, as one reproducible pipeline."""

__version__ = "0.1.0"
