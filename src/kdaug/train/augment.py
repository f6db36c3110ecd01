"""Batch augmentations that run on whole batches on the training device.

Every random draw (crop offsets, flip coins, cutout centres, mixing lambdas, permutations)
comes from a NumPy ``Generator`` that the engine seeds from (cell seed, epoch), and only
the arithmetic runs on the device. So a batch is augmented identically on CPU and GPU, and
a resumed run repeats the exact draws of an uninterrupted one.

An augmentation is a list of ops applied in two stages:

- ``pixel`` ops (random crop with zero padding, horizontal flip) act on images in [0, 1]
  before normalisation, as torchvision's transforms act on PIL images (padding is black);
- ``normalized`` ops (Cutout, Mixup, CutMix) act after normalisation, so Cutout's hole is
  zero *after* normalisation, as in DeVries & Taylor's code. Mixup and CutMix commute
  with the per-channel affine normalisation, so their stage only matters for speed.

Targets travel with the images as probability vectors (``(B, K)`` float): one-hot for
clean samples, mixed by lambda for Mixup / CutMix.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from kdaug.registry import Registry

Stage = Literal["pixel", "normalized"]
Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class Op:
    """One augmentation step: ``apply(x, y, rng) -> (x, y)`` at a given stage."""

    name: str
    stage: Stage
    apply: Callable[[torch.Tensor, torch.Tensor, np.random.Generator], Batch]

    def __call__(self, x: torch.Tensor, y: torch.Tensor, rng: np.random.Generator) -> Batch:
        return self.apply(x, y, rng)


OPS: Registry[Callable[..., Op]] = Registry("augmentation op")


def _device_ints(values: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(values, dtype=torch.long).to(like.device, non_blocking=True)


DRAWS = ("image", "batch")


def check_per(per: str) -> None:
    if per not in DRAWS:
        raise ValueError(f"per must be one of {DRAWS}; got {per!r}")


def per_row(draw: np.ndarray, batch_size: int, per: str) -> np.ndarray:
    """A draw made for one row (``per: batch``, shape ``(1, ...)``) repeated for every row,
    or the ``batch_size`` rows drawn as they are (``per: image``).

    ``per: batch`` is what torchvision's transforms do when handed a whole batch tensor,
    as Wang et al.'s code does for the appended copy x' (one crop, one flip coin, one
    Cutout hole, one AutoAugment sub-policy per batch)."""
    return np.repeat(draw, batch_size, axis=0) if per == "batch" else draw


def draw_rows(batch_size: int, per: str) -> int:
    return 1 if per == "batch" else batch_size


def random_crop(x: torch.Tensor, offsets: np.ndarray, padding: int) -> torch.Tensor:
    """Crop each zero-padded image at its ``(dy, dx)`` offset in ``[0, 2*padding]``."""
    B, _, H, W = x.shape
    padded = F.pad(x, (padding, padding, padding, padding))
    off = _device_ints(offsets, x)
    rows = off[:, 0, None] + torch.arange(H, device=x.device)  # (B, H)
    cols = off[:, 1, None] + torch.arange(W, device=x.device)  # (B, W)
    batch = torch.arange(B, device=x.device)[:, None, None]
    # Advanced indexing over (B, H, W) picks each image's window in one gather.
    out = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]
    return out.permute(0, 3, 1, 2).contiguous()


@OPS.register("crop")
def crop(padding: int = 4, per: str = "image") -> Op:
    """Random crop of the original size from the image padded by ``padding`` zeros, one
    offset per image or one for the whole batch (``per``, see :func:`per_row`)."""
    check_per(per)

    def apply(x: torch.Tensor, y: torch.Tensor, rng: np.random.Generator) -> Batch:
        offsets = rng.integers(0, 2 * padding + 1, size=(draw_rows(len(x), per), 2))
        return random_crop(x, per_row(offsets, len(x), per), padding), y

    return Op("crop", "pixel", apply)


@OPS.register("flip")
def flip(p: float = 0.5, per: str = "image") -> Op:
    """Horizontal flip with probability ``p``, one coin per image or per batch."""
    check_per(per)

    def apply(x: torch.Tensor, y: torch.Tensor, rng: np.random.Generator) -> Batch:
        draws = per_row(rng.random(draw_rows(len(x), per)), len(x), per)
        coins = torch.as_tensor(draws < p).to(x.device, non_blocking=True)
        return torch.where(coins[:, None, None, None], x.flip(3), x), y

    return Op("flip", "pixel", apply)


@OPS.register("constant")
def constant(value: float = 0.5) -> Op:
    """Every image becomes one and the same constant image (each pixel ``value`` in
    [0, 1], before normalisation): Wang et al.'s "bad" DA (appendix A.2), a sanity check
    of T. stddev, not a method. As x' it makes the teacher's output the same for every
    appended row, so T. stddev falls (only x varies) while the student learns nothing
    from x'. Draws nothing from ``rng``."""
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"constant: value {value} is not a pixel value in [0, 1]")

    def apply(x: torch.Tensor, y: torch.Tensor, rng: np.random.Generator) -> Batch:
        return torch.full_like(x, value), y

    return Op("constant", "pixel", apply)


def box_mask(
    centres: np.ndarray, half: np.ndarray | int, size: tuple[int, int], like: torch.Tensor
) -> torch.Tensor:
    """Boolean ``(B, 1, H, W)`` mask of boxes ``[c - half, c + half)`` clipped to the image.

    ``centres`` is ``(B, 2)`` (row, col); ``half`` is a scalar or ``(B, 2)`` half-sizes.
    """
    H, W = size
    c = _device_ints(centres, like)
    h = _device_ints(np.broadcast_to(np.asarray(half), centres.shape).copy(), like)
    lo = torch.clamp(c - h, min=0)
    hi_rows = torch.clamp(c[:, 0] + h[:, 0], max=H)
    hi_cols = torch.clamp(c[:, 1] + h[:, 1], max=W)
    r = torch.arange(H, device=like.device)
    q = torch.arange(W, device=like.device)
    in_rows = (r[None, :] >= lo[:, 0, None]) & (r[None, :] < hi_rows[:, None])
    in_cols = (q[None, :] >= lo[:, 1, None]) & (q[None, :] < hi_cols[:, None])
    return (in_rows[:, :, None] & in_cols[:, None, :])[:, None]


@OPS.register("cutout")
def cutout(size: int = 16, per: str = "image") -> Op:
    """DeVries & Taylor (2017): one ``size`` x ``size`` hole per image (or one hole for
    the whole batch, ``per: batch``), centre uniform over the image, clipped at the
    border, filled with zeros after normalisation."""
    check_per(per)

    def apply(x: torch.Tensor, y: torch.Tensor, rng: np.random.Generator) -> Batch:
        _, _, H, W = x.shape
        n = draw_rows(len(x), per)
        centres = np.stack([rng.integers(0, H, n), rng.integers(0, W, n)], axis=1)
        centres = per_row(centres, len(x), per)
        hole = box_mask(centres, size // 2, (H, W), x)
        return x.masked_fill(hole, 0.0), y

    return Op("cutout", "normalized", apply)


def mix(x: torch.Tensor, y: torch.Tensor, lam: float, perm: np.ndarray) -> Batch:
    """Mixup's convex combination of the batch with its permutation ``perm``."""
    p = _device_ints(perm, x)
    return lam * x + (1.0 - lam) * x[p], lam * y + (1.0 - lam) * y[p]


MIXUP_READINGS = ("paper_text", "official_code")


@OPS.register("mixup")
def mixup(alpha: float = 1.0, fraction: float = 1.0, reading: str = "paper_text") -> Op:
    """Zhang et al. (2018) mixup, and Choi et al.'s (2023) *partial mixup* (PMU) for
    ``fraction < 1`` ("only 10% mixup pairs used in a batch and the rests keep untouched").

    Two readings (the protocol ledger lists the difference):

    - ``paper_text`` (Zhang et al.'s mixup and the paper's PMU sentence): one lambda ~
      Beta(alpha, alpha) per batch, partners by a random permutation; for PMU exactly
      ``round(fraction * B)`` rows, drawn without replacement after lambda and the
      permutation, are mixed and the others left as they are. ``fraction = 1`` draws
      exactly what plain mixup draws.
    - ``official_code`` (Choi et al.'s public ``PMU`` / ``FMU``): one lambda ~ Beta(alpha,
      alpha) *per sample*; row i of the batch is ``lam_i * x[p1[i]] + (1 - lam_i) *
      x[p2[i]]`` for two independent permutations p1, p2; for PMU the code's ``percent``
      (the *clean* share, 1 - fraction: "PMU 10%" runs with 0.9) sets ``lam = 1`` on
      ``int(B * percent)`` rows drawn *with replacement*, so duplicates leave more rows
      mixed than stated: at B = 64 and fraction 0.1, 57 draws cover ~38 distinct rows, so
      ~41 % of the batch is mixed, not 10 %.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"mixup fraction must be in (0, 1]; got {fraction}")
    if reading not in MIXUP_READINGS:
        raise ValueError(f"mixup reading must be one of {MIXUP_READINGS}; got {reading!r}")

    def paper_text(x: torch.Tensor, y: torch.Tensor, rng: np.random.Generator) -> Batch:
        lam = float(rng.beta(alpha, alpha))
        perm = rng.permutation(len(x))
        if fraction == 1:
            return mix(x, y, lam, perm)
        rows = np.sort(rng.choice(len(x), size=round(fraction * len(x)), replace=False))
        mixed_x, mixed_y = mix(x, y, lam, perm)
        chosen = _device_ints(rows, x)
        x, y = x.clone(), y.clone()
        x[chosen], y[chosen] = mixed_x[chosen], mixed_y[chosen]
        return x, y

    def official_code(x: torch.Tensor, y: torch.Tensor, rng: np.random.Generator) -> Batch:
        B = len(x)
        p1, p2 = rng.permutation(B), rng.permutation(B)
        lam = rng.beta(alpha, alpha, size=B)
        if fraction < 1:
            lam[rng.integers(0, B, size=int(B * (1 - fraction)))] = 1.0
        return mix_per_sample(x, y, lam, p1, p2)

    return Op("mixup", "normalized", paper_text if reading == "paper_text" else official_code)


def mix_per_sample(
    x: torch.Tensor, y: torch.Tensor, lam: np.ndarray, p1: np.ndarray, p2: np.ndarray
) -> Batch:
    """Row i = ``lam[i] * x[p1[i]] + (1 - lam[i]) * x[p2[i]]``, targets alike."""
    first, second = _device_ints(p1, x), _device_ints(p2, x)
    lam_t = torch.as_tensor(lam, dtype=x.dtype, device=x.device)
    lx = lam_t.view(-1, *([1] * (x.dim() - 1)))
    ly = lam_t.view(-1, *([1] * (y.dim() - 1)))
    return lx * x[first] + (1 - lx) * x[second], ly * y[first] + (1 - ly) * y[second]


def cutmix_box(lam: float, size: tuple[int, int], centre: tuple[int, int]) -> tuple[int, ...]:
    """Yun et al.'s box: side ``sqrt(1 - lam)`` of each image side, clipped at the border.

    Returns ``(y0, y1, x0, x1)``; the caller recomputes lambda from the clipped area.
    """
    H, W = size
    ratio = math.sqrt(1.0 - lam)
    cut_h, cut_w = int(H * ratio), int(W * ratio)
    cy, cx = centre
    y0, y1 = np.clip([cy - cut_h // 2, cy + cut_h // 2], 0, H)
    x0, x1 = np.clip([cx - cut_w // 2, cx + cut_w // 2], 0, W)
    return int(y0), int(y1), int(x0), int(x1)


def paste(x: torch.Tensor, y: torch.Tensor, box: tuple[int, ...], perm: np.ndarray) -> Batch:
    """Paste ``box`` of each partner image into the batch; targets weighted by exact area."""
    y0, y1, x0, x1 = box
    _, _, H, W = x.shape
    p = _device_ints(perm, x)
    out = x.clone()
    out[:, :, y0:y1, x0:x1] = x[p][:, :, y0:y1, x0:x1]
    lam = 1.0 - (y1 - y0) * (x1 - x0) / (H * W)
    return out, lam * y + (1.0 - lam) * y[p]


def derangement(rng: np.random.Generator, n: int) -> np.ndarray:
    """A random permutation without fixed points, redrawn until it has none (as Wang et
    al.'s code does; about e = 2.7 draws on average). One row is its own partner."""
    if n < 2:
        return np.arange(n)
    while True:
        perm = rng.permutation(n)
        if not np.any(perm == np.arange(n)):
            return perm


@OPS.register("cutmix")
def cutmix(alpha: float = 1.0, prob: float = 1.0, self_pairs: bool = True) -> Op:
    """Yun et al. (2019): with probability ``prob`` per batch, lambda ~ Beta(alpha, alpha),
    one box for the batch with uniform centre, partners by a random permutation, and the
    target weight recomputed from the exact pasted area. ``self_pairs: false`` redraws the
    permutation until no image is its own partner (Wang et al.'s code)."""

    def apply(x: torch.Tensor, y: torch.Tensor, rng: np.random.Generator) -> Batch:
        if rng.random() >= prob:
            return x, y
        _, _, H, W = x.shape
        lam = float(rng.beta(alpha, alpha))
        centre = (int(rng.integers(0, H)), int(rng.integers(0, W)))
        perm = rng.permutation(len(x)) if self_pairs else derangement(rng, len(x))
        return paste(x, y, cutmix_box(lam, (H, W), centre), perm)

    return Op("cutmix", "normalized", apply)


@dataclass(frozen=True)
class Augmentation:
    """A named augmentation: pixel ops, then normalisation, then normalized ops."""

    name: str
    ops: tuple[Op, ...]

    @property
    def is_identity(self) -> bool:
        return not self.ops

    @property
    def has_pixel_ops(self) -> bool:
        return any(op.stage == "pixel" for op in self.ops)

    @property
    def has_normalized_ops(self) -> bool:
        return any(op.stage == "normalized" for op in self.ops)

    def _stage(self, stage: Stage, x: torch.Tensor, y: torch.Tensor, rng: np.random.Generator):
        for op in self.ops:
            if op.stage == stage:
                x, y = op(x, y, rng)
        return x, y

    def pixel_stage(self, x: torch.Tensor, y: torch.Tensor, rng: np.random.Generator) -> Batch:
        return self._stage("pixel", x, y, rng)

    def normalized_stage(self, x: torch.Tensor, y: torch.Tensor, rng: np.random.Generator) -> Batch:
        return self._stage("normalized", x, y, rng)

    def __call__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        rng: np.random.Generator,
        normalize: Callable[[torch.Tensor], torch.Tensor],
    ) -> Batch:
        """``x``: float images in [0, 1]; returns normalised, augmented images and targets."""
        x, y = self.pixel_stage(x, y, rng)
        return self.normalized_stage(normalize(x), y, rng)


def build_augmentation(name: str, steps: Sequence[Mapping[str, Any]]) -> Augmentation:
    """Build from config: ``steps`` is a list like ``[{op: crop, padding: 4}, {op: flip}]``.

    Pixel ops must come before normalized ops in the list, so that the config reads in the
    order the ops run.
    """
    ops = []
    for step in steps:
        params = {k: v for k, v in step.items() if k != "op"}
        ops.append(OPS.get(step["op"])(**params))
    stages = [op.stage for op in ops]
    if stages != sorted(stages, key=lambda s: s != "pixel"):
        raise ValueError(f"augmentation {name!r}: pixel ops (crop, flip) must come first")
    return Augmentation(name, tuple(ops))


# -- Wang et al. (2022): an augmented copy appended to each batch ----------------------


@dataclass(frozen=True)
class Pick:
    """CutMixPick's entropy-based data picking (Wang et al. 2022, sec. 4.2, eq. 11).

    The appended augmentation is drawn ``pool`` times per batch (the candidates), each
    candidate is scored by the Shannon entropy of the ``by`` model's softmax, and the
    ``keep`` fraction of the candidates with the *highest* entropy is kept. The paper
    says "sort ... in ascending order and keep the top r"; its code sorts ascending and
    keeps the last ``n_pick`` (the largest entropies: "Pick large-entropy cutmix samples"),
    and its tables agree: picking lowers T. stddev (Table 3, CutMix 4.719 -> 4.154).
    Defaults are the paper's: two CutMix draws per batch (``--mix_n_run 2``), keep half
    (r = 0.5), so the appended copy has as many rows as the batch.
    """

    by: Literal["teacher", "student"]
    pool: int = 2
    keep: float = 0.5

    def __post_init__(self) -> None:
        if self.by not in ("teacher", "student"):
            raise ValueError(f"pick.by must be teacher or student; got {self.by!r}")
        if self.pool < 1 or not 0 < self.keep <= 1:
            raise ValueError(f"pick needs pool >= 1 and 0 < keep <= 1; got {self}")

    def count(self, candidates: int) -> int:
        """How many of ``candidates`` rows are kept (at least one)."""
        return max(1, round(self.keep * candidates))


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Shannon entropy of ``softmax(logits)`` per row, eq. (11): ``-p^T log p``."""
    log_p = F.log_softmax(logits.float(), dim=1)
    return -(log_p.exp() * log_p).sum(dim=1)


def pick_highest_entropy(logits: torch.Tensor, n: int) -> torch.Tensor:
    """Row indices of the ``n`` highest-entropy rows, in ascending-entropy order (stable)."""
    order = torch.argsort(entropy(logits), stable=True)
    return order[len(order) - n :]


@dataclass(frozen=True)
class AppendedAugmentation:
    """Wang et al.'s KD+DA (sec. 4.1, Fig. 3b): each batch ``x`` gets the ``base``
    augmentation (the standard crop+flip) and is trained as usual; ``extra`` is applied
    on top of ``x`` to make ``x'``, which is appended to the batch and trained with the
    distillation term only (its augmentation targets are discarded).

    ``extra``'s pixel ops act on ``x`` before normalisation (so a crop pads with black);
    they therefore need a ``base`` without normalized ops. An ``extra`` with no ops is the
    paper's *Identity* scheme: ``x'`` is a plain copy of ``x``.
    """

    name: str
    base: Augmentation
    extra: Augmentation
    pick: Pick | None = None

    def __post_init__(self) -> None:
        if self.extra.has_pixel_ops and self.base.has_normalized_ops:
            raise ValueError(
                f"augmentation {self.name!r}: appended pixel ops (crop, flip, autoaugment) "
                "need a base augmentation without cutout/mixup/cutmix"
            )

    @property
    def draws(self) -> int:
        """How many times ``extra`` is drawn per batch (the picking pool)."""
        return self.pick.pool if self.pick else 1

    def pair(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        rng: np.random.Generator,
        normalize: Callable[[torch.Tensor], torch.Tensor],
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(x, targets, candidates)``: the base batch (normalised) with its targets, and
        ``draws`` stacked draws of ``extra`` on it (``draws * B`` rows, normalised)."""
        pixels, y = self.base.pixel_stage(x, y, rng)
        x_base, y = self.base.normalized_stage(normalize(pixels), y, rng)
        candidates = []
        for _ in range(self.draws):
            if self.extra.has_pixel_ops:
                extra, _ = self.extra.pixel_stage(pixels, y, rng)
                extra, _ = self.extra.normalized_stage(normalize(extra), y, rng)
            else:
                extra, _ = self.extra.normalized_stage(x_base, y, rng)
            candidates.append(extra)
        return x_base, y, torch.cat(candidates)

    def __call__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        rng: np.random.Generator,
        normalize: Callable[[torch.Tensor], torch.Tensor],
    ) -> Batch:
        """The base batch alone (what evaluation-time code that ignores ``x'`` sees)."""
        x_base, y, _ = self.pair(x, y, rng, normalize)
        return x_base, y


AnyAugmentation = Augmentation | AppendedAugmentation


def augmentation_from_spec(spec: Mapping[str, Any]) -> AnyAugmentation:
    """Build from a cell spec's ``augmentation`` entry: ``{name, steps}`` for a plain
    augmentation, plus ``append`` (ops) and optionally ``pick`` for Wang et al.'s scheme."""
    name = spec["name"]
    base = build_augmentation(name, spec["steps"])
    if "append" not in spec:
        return base
    extra = build_augmentation(f"{name}.append", spec["append"])
    pick = Pick(**spec["pick"]) if spec.get("pick") else None
    return AppendedAugmentation(name, base, extra, pick)
