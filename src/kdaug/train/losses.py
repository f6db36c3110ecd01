"""Training objectives. ``loss(student_logits, targets, teacher_logits) -> scalar``.

``targets`` are probability vectors (one-hot, or mixed by Mixup/CutMix); ``teacher_logits``
is ``None`` for plain training.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from kdaug.registry import Registry

LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]
LOSSES: Registry[Callable[..., LossFn]] = Registry("loss")


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against probability targets, averaged over the batch.

    Equals ``F.cross_entropy(logits, labels)`` for one-hot targets and the lambda-weighted
    sum of the two cross-entropies for Mixup/CutMix targets.
    """
    return -(targets * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


def distillation_kl(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float
) -> torch.Tensor:
    """``KL(softmax(t/T) || softmax(s/T))`` summed over classes, averaged over the batch."""
    log_p_s = F.log_softmax(student_logits / temperature, dim=1)
    log_p_t = F.log_softmax(teacher_logits / temperature, dim=1)
    return (log_p_t.exp() * (log_p_t - log_p_s)).sum(dim=1).mean()


@dataclass(frozen=True)
class CrossEntropy:
    """Plain (soft-target) cross-entropy; used to train teachers."""

    def __call__(
        self, logits: torch.Tensor, targets: torch.Tensor, teacher_logits: torch.Tensor | None
    ) -> torch.Tensor:
        return soft_cross_entropy(logits, targets)


@dataclass(frozen=True)
class HintonKD:
    """Hinton et al. (2015), as written in Das et al. (2020), eq. in sec. 3.2:

    ``L = (1 - alpha) * CE(f_S(x), y) + alpha * T^2 * KL(f_T^T(x) || f_S^T(x))``.
    """

    temperature: float
    alpha: float

    def __call__(
        self, logits: torch.Tensor, targets: torch.Tensor, teacher_logits: torch.Tensor | None
    ) -> torch.Tensor:
        ce = soft_cross_entropy(logits, targets)
        if self.alpha == 0:  # the students' CE baseline: no teacher is run or read
            return ce
        if teacher_logits is None:
            raise ValueError("HintonKD needs teacher logits")
        return (1 - self.alpha) * ce + self.distill_only(logits, teacher_logits)

    def distill_only(self, logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        """The distillation term alone, ``alpha * T^2 * KL``: Wang et al.'s loss on the
        appended copy ``x'`` (sec. 4.1: "for x', its loss is *only* the KL divergence"),
        weighted as in their eq. (1) and averaged over the rows of ``x'``."""
        if self.alpha == 0:
            return logits.new_zeros(())
        kl = distillation_kl(logits, teacher_logits, self.temperature)
        return self.alpha * self.temperature**2 * kl


def rescale(logits: torch.Tensor) -> torch.Tensor:
    """Choi et al.'s rescaled logits ``f / sigma(f)``: each row divided by its standard
    deviation over classes (``torch.std``, unbiased; the paper does not say which)."""
    return logits / logits.std(dim=1, keepdim=True).clamp_min(1e-12)


@dataclass(frozen=True)
class RescaledKD:
    """Choi et al. (2023), eqs. (3)-(4): the standard deviation replaces the temperature.

    ``L = gamma * CE(f~S(x), y) + alpha * KL(softmax(f~T(x)) || softmax(f~S(x)))`` with
    ``f~ = f / sigma(f)``. Eq. (4) applies the (mixup) cross-entropy to the rescaled student
    logits; eq. (3) prints the KL with the student's distribution first, eq. (2) with the
    teacher's. A public implementation of this loss (``MIXSTDLoss``) settles both: CE on
    ``log_softmax(f_S / std)``, ``KLDivLoss(log p_S, p_T)`` = KL(teacher || student), and
    ``torch.std`` (unbiased), all as here. No T^2 factor: there is no temperature.
    """

    alpha: float
    gamma: float

    def __call__(
        self, logits: torch.Tensor, targets: torch.Tensor, teacher_logits: torch.Tensor | None
    ) -> torch.Tensor:
        if teacher_logits is None:
            raise ValueError("RescaledKD needs teacher logits")
        student = rescale(logits)
        kl = distillation_kl(student, rescale(teacher_logits), 1.0)
        return self.gamma * soft_cross_entropy(student, targets) + self.alpha * kl


LOSSES.register("ce")(CrossEntropy)


@LOSSES.register("rescaled")
def rescaled(alpha: float, gamma: float) -> RescaledKD:
    return RescaledKD(float(alpha), float(gamma))


@LOSSES.register("hinton")
def hinton(temperature: float, alpha: float) -> HintonKD:
    return HintonKD(float(temperature), float(alpha))


NOT_LOSS_PARAMS = ("loss", "name", "epochs_factor")
"""Keys of a ``kd_methods`` entry that are not loss parameters: the entry's name and the
prolonged-training factor (Wang et al.'s k), which scales the student's recipe instead."""


def build_loss(spec: dict) -> LossFn:
    """``{"loss": "hinton", "temperature": 20, "alpha": 0.5}`` -> a loss callable."""
    params = {k: v for k, v in spec.items() if k not in NOT_LOSS_PARAMS}
    return LOSSES.get(spec["loss"])(**params)
