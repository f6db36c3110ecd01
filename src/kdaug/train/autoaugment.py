"""AutoAugment (Cubuk et al., 2019) with the CIFAR-10 and ImageNet policies, batched and seeded.

A policy is torchvision's ``AutoAugment(AutoAugmentPolicy.CIFAR10)`` (Wang et al.'s code on
CIFAR) or ``AutoAugment(AutoAugmentPolicy.IMAGENET)`` (their code on Tiny ImageNet): 25
sub-policies, each two ``(op, probability, magnitude bin)`` steps over 10 magnitude bins.
Every *image* picks its own sub-policy uniformly, then runs each of the two steps with the
step's probability; a signed op (shear, translate, rotate, brightness, colour, contrast,
sharpness) has its magnitude negated with probability 0.5. Magnitudes, sign convention and
op calls are torchvision's (``_augmentation_space`` and ``_apply_op``), with nearest
interpolation and fill 0 for the geometric ops, and the ops run on uint8 images
(``round(255 x)``) so that Posterize, Solarize, Equalize etc. act exactly as on uint8
images in torchvision; the result comes back as ``x.dtype`` in [0, 1].

Draws (all from the NumPy ``Generator``, each a vector over the batch of ``B`` images, all
drawn on every call whether used or not, in this order):

1. ``policy = rng.integers(0, 25, size=B)``: each image's sub-policy (both policies have 25);
2. ``coin = rng.random((B, 2))``: step ``j`` runs when ``coin[:, j] <= prob_j``
   (torchvision's ``probs[i] <= p``);
3. ``negate = rng.integers(0, 2, size=(B, 2)) == 0``: a signed step's magnitude is negated
   (torchvision negates when ``signs[i] == 0``); ignored for unsigned ops.

Each step is applied to the batch by grouping the images that take the same (op, signed
magnitude) and calling torchvision's functional op once per group on that sub-batch, so the
hot loop has no per-image Python: the CIFAR-10 policy has at most 31 distinct actions in
the first step and 27 in the second, so at most 58 grouped calls per batch (fewer for the
ImageNet policy, whose steps are mostly unsigned colour ops).

The ops are ``torchvision.transforms.functional``'s, the module ``_apply_op`` calls, because
its v2 counterparts round differently (off by one grey level for AutoContrast, Color and
Sharpness); Equalize alone uses ``torchvision.transforms.v2.functional.equalize``, which is
bit-identical to v1's but batched (v1 loops over images and channels in Python).

Grey (1-channel) images work unchanged, with torchvision's semantics: Color (saturation) is
the identity, as in PIL; Contrast blends towards the image mean; every other op acts on the
single channel as it would on each channel of an RGB image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from kdaug.train.augment import OPS, Batch, Op, check_per, draw_rows, per_row

Step = tuple[str, float, int | None]
SubPolicy = tuple[Step, Step]

NUM_BINS = 10

# torchvision 0.29 ``AutoAugment._get_policies(AutoAugmentPolicy.CIFAR10)``, verbatim.
POLICIES: dict[str, tuple[SubPolicy, ...]] = {
    "cifar10": (
        (("Invert", 0.1, None), ("Contrast", 0.2, 6)),
        (("Rotate", 0.7, 2), ("TranslateX", 0.3, 9)),
        (("Sharpness", 0.8, 1), ("Sharpness", 0.9, 3)),
        (("ShearY", 0.5, 8), ("TranslateY", 0.7, 9)),
        (("AutoContrast", 0.5, None), ("Equalize", 0.9, None)),
        (("ShearY", 0.2, 7), ("Posterize", 0.3, 7)),
        (("Color", 0.4, 3), ("Brightness", 0.6, 7)),
        (("Sharpness", 0.3, 9), ("Brightness", 0.7, 9)),
        (("Equalize", 0.6, None), ("Equalize", 0.5, None)),
        (("Contrast", 0.6, 7), ("Sharpness", 0.6, 5)),
        (("Color", 0.7, 7), ("TranslateX", 0.5, 8)),
        (("Equalize", 0.3, None), ("AutoContrast", 0.4, None)),
        (("TranslateY", 0.4, 3), ("Sharpness", 0.2, 6)),
        (("Brightness", 0.9, 6), ("Color", 0.2, 8)),
        (("Solarize", 0.5, 2), ("Invert", 0.0, None)),
        (("Equalize", 0.2, None), ("AutoContrast", 0.6, None)),
        (("Equalize", 0.2, None), ("Equalize", 0.6, None)),
        (("Color", 0.9, 9), ("Equalize", 0.6, None)),
        (("AutoContrast", 0.8, None), ("Solarize", 0.2, 8)),
        (("Brightness", 0.1, 3), ("Color", 0.7, 0)),
        (("Solarize", 0.4, 5), ("AutoContrast", 0.9, None)),
        (("TranslateY", 0.9, 9), ("TranslateY", 0.7, 9)),
        (("AutoContrast", 0.9, None), ("Solarize", 0.8, 3)),
        (("Equalize", 0.8, None), ("Invert", 0.1, None)),
        (("TranslateY", 0.7, 9), ("AutoContrast", 0.9, None)),
    ),
    # torchvision 0.29 ``AutoAugment._get_policies(AutoAugmentPolicy.IMAGENET)``, verbatim:
    # what Wang et al.'s code runs on Tiny ImageNet (and ImageNet).
    "imagenet": (
        (("Posterize", 0.4, 8), ("Rotate", 0.6, 9)),
        (("Solarize", 0.6, 5), ("AutoContrast", 0.6, None)),
        (("Equalize", 0.8, None), ("Equalize", 0.6, None)),
        (("Posterize", 0.6, 7), ("Posterize", 0.6, 6)),
        (("Equalize", 0.4, None), ("Solarize", 0.2, 4)),
        (("Equalize", 0.4, None), ("Rotate", 0.8, 8)),
        (("Solarize", 0.6, 3), ("Equalize", 0.6, None)),
        (("Posterize", 0.8, 5), ("Equalize", 1.0, None)),
        (("Rotate", 0.2, 3), ("Solarize", 0.6, 8)),
        (("Equalize", 0.6, None), ("Posterize", 0.4, 6)),
        (("Rotate", 0.8, 8), ("Color", 0.4, 0)),
        (("Rotate", 0.4, 9), ("Equalize", 0.6, None)),
        (("Equalize", 0.0, None), ("Equalize", 0.8, None)),
        (("Invert", 0.6, None), ("Equalize", 1.0, None)),
        (("Color", 0.6, 4), ("Contrast", 1.0, 8)),
        (("Rotate", 0.8, 8), ("Color", 1.0, 2)),
        (("Color", 0.8, 8), ("Solarize", 0.8, 7)),
        (("Sharpness", 0.4, 7), ("Invert", 0.6, None)),
        (("ShearX", 0.6, 5), ("Equalize", 1.0, None)),
        (("Color", 0.4, 0), ("Equalize", 0.6, None)),
        (("Equalize", 0.4, None), ("Solarize", 0.2, 4)),
        (("Solarize", 0.6, 5), ("AutoContrast", 0.6, None)),
        (("Invert", 0.6, None), ("Equalize", 1.0, None)),
        (("Color", 0.6, 4), ("Contrast", 1.0, 8)),
        (("Equalize", 0.8, None), ("Equalize", 0.6, None)),
    ),
}

SIGNED = frozenset(
    {"ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate"}
    | {"Brightness", "Color", "Contrast", "Sharpness"}
)


def magnitude_bins(op: str, size: tuple[int, int], num_bins: int = NUM_BINS) -> list[float]:
    """The op's magnitudes per bin, computed as torchvision does (float32 ``linspace``)."""
    H, W = size
    if op in ("ShearX", "ShearY"):
        values = torch.linspace(0.0, 0.3, num_bins)
    elif op == "TranslateX":
        values = torch.linspace(0.0, 150.0 / 331.0 * W, num_bins)
    elif op == "TranslateY":
        values = torch.linspace(0.0, 150.0 / 331.0 * H, num_bins)
    elif op == "Rotate":
        values = torch.linspace(0.0, 30.0, num_bins)
    elif op in ("Brightness", "Color", "Contrast", "Sharpness"):
        values = torch.linspace(0.0, 0.9, num_bins)
    elif op == "Posterize":
        values = 8 - (torch.arange(num_bins) / ((num_bins - 1) / 4)).round().int()
    elif op == "Solarize":
        values = torch.linspace(255.0, 0.0, num_bins)
    else:
        raise ValueError(f"op {op!r} takes no magnitude")
    return [float(v) for v in values.tolist()]


@dataclass(frozen=True, eq=False)
class AutoAugmentDraws:
    """One batch's draws, in the order they are taken from the generator."""

    policy: np.ndarray  # (B,) int: sub-policy index
    coin: np.ndarray  # (B, 2) float in [0, 1): step j runs when coin <= its probability
    negate: np.ndarray  # (B, 2) bool: negate a signed step's magnitude


def draw_autoaugment(
    rng: np.random.Generator, batch_size: int, num_policies: int = 25
) -> AutoAugmentDraws:
    """All random draws for one batch (see the module docstring for the order)."""
    policy = rng.integers(0, num_policies, size=batch_size)
    coin = rng.random((batch_size, 2))
    negate = rng.integers(0, 2, size=(batch_size, 2)) == 0
    return AutoAugmentDraws(policy, coin, negate)


Action = tuple[str, float]


@dataclass(frozen=True)
class _Plan:
    """A policy resolved for one image size: each (sub-policy, step, sign) -> action id."""

    actions: tuple[Action, ...]
    prob: np.ndarray  # (P, 2)
    positive: np.ndarray  # (P, 2) action id with the magnitude as is
    negative: np.ndarray  # (P, 2) action id with the magnitude negated (signed ops)


@lru_cache(maxsize=16)
def _plan(policy: str, size: tuple[int, int]) -> _Plan:
    subs = POLICIES[policy]
    actions: dict[Action, int] = {}
    prob = np.zeros((len(subs), 2))
    ids = np.zeros((2, len(subs), 2), dtype=np.int64)
    for s, sub in enumerate(subs):
        for j, (op, p, bin_) in enumerate(sub):
            prob[s, j] = p
            m = magnitude_bins(op, size)[bin_] if bin_ is not None else 0.0
            for k, sign in enumerate((1.0, -1.0)):
                action = (op, sign * m if op in SIGNED else m)
                ids[k, s, j] = actions.setdefault(action, len(actions))
    return _Plan(tuple(actions), prob, ids[0], ids[1])


def resolve(draws: AutoAugmentDraws, policy: str, size: tuple[int, int]) -> np.ndarray:
    """``(B, 2)`` action ids per image and step (``-1``: step skipped); see :func:`actions`."""
    plan = _plan(policy, size)
    p = draws.policy
    ids = np.where(draws.negate, plan.negative[p], plan.positive[p])
    return np.where(draws.coin <= plan.prob[p], ids, -1)


def actions(policy: str, size: tuple[int, int]) -> tuple[Action, ...]:
    """The distinct ``(op, signed magnitude)`` actions of a policy at an image size."""
    return _plan(policy, size).actions


def apply_action(img: torch.Tensor, op: str, magnitude: float) -> torch.Tensor:
    """One torchvision op on a uint8 batch ``(N, C, H, W)``, called as ``_apply_op`` does."""
    # Imported here: torchvision takes seconds to import, and every training and
    # extraction job imports this module (the registry), most never running AutoAugment.
    import torchvision.transforms.functional as TF
    import torchvision.transforms.v2.functional as TF2
    from torchvision.transforms import InterpolationMode

    nearest = InterpolationMode.NEAREST
    if op in ("ShearX", "ShearY"):
        shear = math.degrees(math.atan(magnitude))
        return TF.affine(
            img,
            angle=0.0,
            translate=[0, 0],
            scale=1.0,
            shear=[shear, 0.0] if op == "ShearX" else [0.0, shear],
            interpolation=nearest,
            fill=None,
            center=[0, 0],
        )
    if op in ("TranslateX", "TranslateY"):
        shift = int(magnitude)
        return TF.affine(
            img,
            angle=0.0,
            translate=[shift, 0] if op == "TranslateX" else [0, shift],
            scale=1.0,
            interpolation=nearest,
            shear=[0.0, 0.0],
            fill=None,
        )
    if op == "Rotate":
        return TF.rotate(img, magnitude, interpolation=nearest, fill=None)
    if op == "Brightness":
        return TF.adjust_brightness(img, 1.0 + magnitude)
    if op == "Color":
        return TF.adjust_saturation(img, 1.0 + magnitude)
    if op == "Contrast":
        return TF.adjust_contrast(img, 1.0 + magnitude)
    if op == "Sharpness":
        return TF.adjust_sharpness(img, 1.0 + magnitude)
    if op == "Posterize":
        return TF.posterize(img, int(magnitude))
    if op == "Solarize":
        return TF.solarize(img, magnitude)
    if op == "AutoContrast":
        return TF.autocontrast(img)
    if op == "Equalize":
        return TF2.equalize(img)
    if op == "Invert":
        return TF.invert(img)
    raise ValueError(f"unknown AutoAugment op {op!r}")


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Float images in [0, 1] to uint8 as ``round(255 x)``."""
    return (x * 255).round_().clamp_(0, 255).to(torch.uint8)


def apply_autoaugment(x: torch.Tensor, ids: np.ndarray, acts: tuple[Action, ...]) -> torch.Tensor:
    """Run each image's two steps (``ids`` from :func:`resolve`) on float images in [0, 1]."""
    img = to_uint8(x)
    for j in range(ids.shape[1]):
        step = ids[:, j]
        active = np.flatnonzero(step >= 0)
        if active.size == 0:
            continue
        # Sort the active images by action so that each group is one contiguous slice.
        order = active[np.argsort(step[active], kind="stable")]
        keys = step[order]
        starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
        ends = np.r_[starts[1:], len(keys)]
        index = torch.as_tensor(order, dtype=torch.long).to(x.device, non_blocking=True)
        sub = img.index_select(0, index)
        parts = [apply_action(sub[a:b], *acts[keys[a]]) for a, b in zip(starts, ends, strict=True)]
        img = img.index_copy(0, index, torch.cat(parts))
    return img.to(x.dtype).div_(255)


@OPS.register("autoaugment")
def autoaugment(policy: str = "cifar10", per: str = "image") -> Op:
    """AutoAugment with a learned policy (torchvision's ``cifar10`` or ``imagenet``), one sub-policy
    and its coins per image, or one for the whole batch (``per: batch``, what torchvision's
    ``AutoAugment`` does to a batch tensor); acts on [0, 1] images before normalisation."""
    check_per(per)
    if policy not in POLICIES:
        known = ", ".join(sorted(POLICIES))
        raise ValueError(f"unknown AutoAugment policy {policy!r}; known: {known}")

    def apply(x: torch.Tensor, y: torch.Tensor, rng: np.random.Generator) -> Batch:
        B, C, H, W = x.shape
        if C not in (1, 3):
            raise ValueError(f"AutoAugment needs 1 or 3 channels, got {C}")
        one = draw_autoaugment(rng, draw_rows(B, per), len(POLICIES[policy]))
        draws = AutoAugmentDraws(
            per_row(one.policy, B, per), per_row(one.coin, B, per), per_row(one.negate, B, per)
        )
        ids = resolve(draws, policy, (H, W))
        return apply_autoaugment(x, ids, actions(policy, (H, W))), y

    return Op("autoaugment", "pixel", apply)
