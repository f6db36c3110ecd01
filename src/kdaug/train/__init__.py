"""Training: augmentations on device batches, KD losses, the engine and the cell trainer."""

# AutoAugment registers itself in augment.OPS; importing it here (not from augment.py)
# keeps the two modules out of an import circle.
from kdaug.train import autoaugment  # noqa: F401
