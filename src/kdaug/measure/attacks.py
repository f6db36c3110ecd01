"""White-box FGSM and I-FGSM (Choi et al. 2023, Section 5.2 and Table 3; Figure 7).

Choi et al. "used trained models themselves to generate adversarial examples" with the
Fast Gradient Sign Method (Goodfellow et al. 2015) and its iterative form (Kurakin et al.
2017), "10 iterations with an equal step size", at perturbation sizes ``eps`` given for
every pixel of an image in [0, 1] (0, 0.001, 0.003, 0.005, 0.01).

The attacks work in *pixel* space: ``x`` is the image in [0, 1], the model sees
``normalize(x) = (x - mean) / std`` (:meth:`kdaug.train.engine.DeviceData.normalize`), and the
gradient is taken with respect to ``x`` through ``normalize``, so ``eps`` is a pixel
budget whatever the normalisation. With ``L(x) = CE(model(normalize(x)), y)``:

- FGSM: ``x_adv = clip_[0,1](x + eps * sign(grad_x L(x)))``.
- I-FGSM: ``x_0 = x``, ``x_{k+1} = clip_[0,1](clip_[x-eps, x+eps](x_k + a * sign(grad_x
  L(x_k))))`` with step ``a = eps / steps``, and ``x_adv = x_steps`` (no random start).

``eps = 0`` returns a copy of ``x`` without running the model, so the accuracy at 0 is
the clean accuracy exactly. A pixel whose gradient is exactly 0 does not move
(``sign(0) = 0``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from kdaug.train.engine import DeviceData

Normalize = Callable[[torch.Tensor], torch.Tensor]
ATTACK_METHODS = ("fgsm", "ifgsm")


def cross_entropy_sum(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Summed cross-entropy ``sum_n -log softmax(z_n)_{y_n}``, written so that its gradient
    keeps its sign on confident samples.

    Per sample, ``CE = log(1 + sum_{j != y} exp(z_j - z_y)) = softplus(S)`` with
    ``S = logsumexp_{j != y}(z_j - z_y)``. Its gradient is the usual ``p_j`` for
    ``j != y`` and ``-(1 - p_y) = -sum_{j != y} p_j`` for ``y``; the usual float32 form
    computes the latter as ``p_y - 1``, which rounds to 0 once ``1 - p_y < 6e-8``
    (a logit margin above about 17) and then points the input gradient the wrong way.
    Here it is a sum of small terms, exact until ``p_j`` itself underflows (margin above
    about 100), where, as in any implementation, the gradient is 0 and FGSM leaves the
    sample unchanged. The value equals :func:`torch.nn.functional.cross_entropy` with
    ``reduction="sum"``.
    """
    logits = logits.float()
    true = logits.gather(1, labels[:, None])
    is_true = F.one_hot(labels, logits.shape[1]).bool()
    others = (logits - true).masked_fill(is_true, -torch.inf)
    return F.softplus(torch.logsumexp(others, dim=1)).sum()


def input_gradient(
    model: nn.Module, x: torch.Tensor, labels: torch.Tensor, normalize: Normalize
) -> torch.Tensor:
    """``grad_x sum_n CE(model(normalize(x))_n, y_n)``, the pixel-space input gradient.

    Only the input gradient is computed (:func:`torch.autograd.grad`): the parameters'
    ``.grad`` are left as they are. Gradients are enabled here even inside a
    ``torch.no_grad()`` block. The model runs in whatever mode it is in; call it in eval
    mode (as :func:`adversarial_accuracy` does), where samples are independent and the
    sign of the summed loss's gradient is each sample's own.
    """
    with torch.enable_grad():
        x_in = x.detach().clone().requires_grad_(True)
        loss = cross_entropy_sum(model(normalize(x_in)), labels)
        (grad,) = torch.autograd.grad(loss, x_in)
    return grad


def _check_eps(eps: float) -> float:
    eps = float(eps)
    if not eps >= 0.0:
        raise ValueError(f"eps must be >= 0 (pixel units in [0, 1]), got {eps}")
    return eps


def fgsm(
    model: nn.Module,
    x: torch.Tensor,
    labels: torch.Tensor,
    eps: float,
    normalize: Normalize,
) -> torch.Tensor:
    """Fast Gradient Sign Method: ``x_adv = clip_[0,1](x + eps * sign(grad_x L(x)))``.

    ``x`` is a batch of images in [0, 1], ``labels`` their true classes, ``normalize`` the
    map from pixels to the model's input. ``eps = 0`` returns ``x`` (a copy) unchanged.
    """
    eps = _check_eps(eps)
    x = x.detach()
    if eps == 0.0:
        return x.clone()
    grad = input_gradient(model, x, labels, normalize)
    return (x + eps * grad.sign()).clamp_(0.0, 1.0)


def ifgsm(
    model: nn.Module,
    x: torch.Tensor,
    labels: torch.Tensor,
    eps: float,
    normalize: Normalize,
    steps: int = 10,
) -> torch.Tensor:
    """Iterative FGSM (Kurakin et al.), ``steps`` equal steps of ``a = eps / steps``.

    ``x_0 = x``; ``x_{k+1} = clip_[0,1](clip_[x-eps, x+eps](x_k + a * sign(grad_x L(x_k))))``;
    returns ``x_steps``, within ``eps`` of ``x`` in L-inf and inside [0, 1]. With
    ``steps = 1`` it is :func:`fgsm`. ``eps = 0`` returns ``x`` (a copy) unchanged.
    """
    eps = _check_eps(eps)
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    x = x.detach()
    if eps == 0.0:
        return x.clone()
    step = eps / steps
    lower, upper = x - eps, x + eps
    x_adv = x.clone()
    for _ in range(steps):
        grad = input_gradient(model, x_adv, labels, normalize)
        x_adv = x_adv + step * grad.sign()
        x_adv = torch.minimum(torch.maximum(x_adv, lower), upper).clamp_(0.0, 1.0)
    return x_adv


@torch.no_grad()
def adversarial_accuracy(
    model: nn.Module,
    data: DeviceData,
    eps_values: Sequence[float],
    method: str,
    batch_size: int = 500,
    steps: int = 10,
) -> dict[float, float]:
    """Accuracy of ``model`` on ``data`` attacked by ``method`` at each ``eps``.

    ``method`` is ``"fgsm"`` or ``"ifgsm"`` (``steps`` equal steps; ignored by FGSM).
    Each batch of clean pixels ``data.pixels(index)`` is attacked with the model itself
    (white box) and the fraction ``1/N sum_n [argmax model(normalize(x_adv_n)) = y_n]``
    is returned per ``eps`` as ``{float(eps): accuracy}``. The model runs in eval mode
    (its mode is restored afterwards); only input gradients are computed, so parameters'
    ``.grad`` and BatchNorm statistics are untouched. At ``eps = 0`` the images are the
    clean ones, so the value is the clean accuracy.
    """
    if method not in ATTACK_METHODS:
        raise ValueError(f"unknown attack {method!r}; known: {ATTACK_METHODS}")
    eps_list = [_check_eps(e) for e in eps_values]
    device = data.labels.device
    correct = {e: torch.zeros((), dtype=torch.long, device=device) for e in eps_list}
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(data), batch_size):
            index = torch.arange(start, min(start + batch_size, len(data)), device=device)
            x = data.pixels(index)
            labels = data.labels[index]
            for eps in dict.fromkeys(eps_list):
                if method == "fgsm":
                    x_adv = fgsm(model, x, labels, eps, data.normalize)
                else:
                    x_adv = ifgsm(model, x, labels, eps, data.normalize, steps=steps)
                logits = model(data.normalize(x_adv)).float()
                correct[eps] += (logits.argmax(1) == labels).sum()
    finally:
        model.train(was_training)
    n = max(len(data), 1)
    return {e: correct[e].item() / n for e in eps_list}
