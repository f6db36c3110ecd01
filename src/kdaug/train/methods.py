"""The KD method zoo of the CRD benchmark (Tian et al. 2020, HobbitLong/RepDistiller), as
registry entries that read the networks' intermediate features.

A method's loss on a batch ``x`` is RepDistiller's ``train_distill`` objective:

    L = gamma * CE(s(x), y) + alpha * T^2 * KL(t(x)/T || s(x)/T) + beta * L_method(features)

with the published weights of the benchmark (``scripts/run_cifar_distill.sh``: ``-a 0`` and a
per-method ``-b``, the cross-entropy weight ``-r`` at its default 1); ``alpha > 0`` gives
the "+KD" variants (Wang et al.'s CRD rows are CRD+KD). On Wang et al.'s appended copy
``x'`` only the KL term is trained (:meth:`FeatureMethod.distill_only`), as for Hinton KD.

Each method is an ``nn.Module`` that owns its trainable parts (regressors, embedding heads,
connectors) and buffers (CRD's memory bank): the engine optimises them with the student
(same SGD, same weight decay, as RepDistiller's ``trainable_list``), checkpoints them and
the model file stores them. They are built from the feature shapes of the student and the
teacher (:class:`Probe`, from one probe pass), so a stored method can be rebuilt without
either network. AB and FT have RepDistiller's initialisation stage (:class:`InitStage`):
``init_epochs`` epochs that train the connectors (AB: with the student's feature layers;
FT: the teacher's paraphraser) before the distillation epochs.

Features (``Classifier.forward_features``): ``feats[1:-1]`` the stage outputs,
``feats[-2]`` the last stage's map, ``feats[-1]`` the pooled embedding; pairs of stage maps
of different sides are average-pooled to the smaller one, as in RepDistiller. Every method
computes its term in float32 (under bf16 autocast too: Gram matrices, norms and CRD's
``exp(score / 0.07)`` need the range).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from kdaug.registry import Registry
from kdaug.train.losses import (
    LOSSES,
    NOT_LOSS_PARAMS,
    LossFn,
    build_loss,
    distillation_kl,
    soft_cross_entropy,
)

Shape = tuple[int, ...]  # a feature's shape without the batch dimension


@dataclass(frozen=True)
class Probe:
    """What a method's parts are built from: the student's and the teacher's feature shapes
    (``forward_features`` order, batch dimension dropped) and the training split's size
    (CRD's memory bank has a row per training image)."""

    student: tuple[Shape, ...]
    teacher: tuple[Shape, ...]
    n_data: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Plain values (stored in the model file, which loads with ``weights_only``)."""
        return {
            "student": [list(s) for s in self.student],
            "teacher": [list(s) for s in self.teacher],
            "n_data": self.n_data,
        }

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Probe:
        return cls(
            tuple(tuple(int(d) for d in s) for s in values["student"]),
            tuple(tuple(int(d) for d in s) for s in values["teacher"]),
            int(values["n_data"]),
        )


@dataclass(frozen=True)
class Features:
    """A method's request for intermediate features; ``preact``: stage maps taken before
    their final ReLU (AB)."""

    preact: bool = False


Tensors = Sequence[torch.Tensor]

# Which features a method reads, by name: RepDistiller's indexing of ``feats``.
LAYERS: dict[str, Callable[[Sequence[Any]], list[Any]]] = {
    "stages": lambda feats: list(feats[1:-1]),
    "last_map": lambda feats: [feats[-2]],
    "embedding": lambda feats: [feats[-1]],
}


class FeatureMethod(nn.Module):
    """``gamma * CE + alpha * T^2 * KL + beta * term(features)``; subclasses define
    :meth:`term` over the features named by ``layers`` (a :data:`LAYERS` key) and build
    their trainable parts from the :class:`Probe`."""

    layers: ClassVar[str] = "embedding"
    preact: ClassVar[bool] = False
    needs_index: ClassVar[bool] = False  # CRD: the rows' indices in the training split

    def __init__(
        self,
        probe: Probe,
        *,
        gamma: float = 1.0,
        alpha: float = 0.0,
        beta: float,
        temperature: float = 4.0,
    ) -> None:
        super().__init__()
        self.probe = probe
        self.gamma, self.alpha, self.beta = float(gamma), float(alpha), float(beta)
        self.temperature = float(temperature)
        self.init_stage: InitStage | None = None

    # -- what the engine asks -------------------------------------------------------------
    @property
    def request(self) -> Features | None:
        """The features the distillation epochs need (None: logits only)."""
        return Features(self.preact) if self.beta else None

    def select(self, feats: Sequence[Any]) -> list[Any]:
        return LAYERS[self.layers](feats)

    def forward(
        self,
        logits: torch.Tensor,
        targets: torch.Tensor,
        teacher_logits: torch.Tensor | None,
        student_feats: Tensors | None = None,
        teacher_feats: Tensors | None = None,
        index: torch.Tensor | None = None,
    ) -> torch.Tensor:
        loss = self.gamma * soft_cross_entropy(logits, targets)
        if self.alpha:
            if teacher_logits is None:
                raise ValueError(f"{type(self).__name__} with alpha > 0 needs teacher logits")
            loss = loss + self.distill_only(logits, teacher_logits)
        if self.request is not None:
            if student_feats is None or teacher_feats is None:
                raise ValueError(f"{type(self).__name__} needs student and teacher features")
            s = [f.float() for f in self.select(student_feats)]
            t = [f.detach().float() for f in self.select(teacher_feats)]
            with torch.autocast(logits.device.type, enabled=False):
                loss = loss + self.beta * self.term(s, t, index)
        return loss

    def distill_only(self, logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        """``alpha * T^2 * KL``: the loss on Wang et al.'s appended copy ``x'``."""
        if not self.alpha:
            return logits.new_zeros(())
        kl = distillation_kl(logits, teacher_logits, self.temperature)
        return self.alpha * self.temperature**2 * kl

    def term(
        self, s: list[torch.Tensor], t: list[torch.Tensor], index: torch.Tensor | None
    ) -> torch.Tensor:
        raise NotImplementedError  # pragma: no cover - abstract

    # -- helpers for subclasses -----------------------------------------------------------
    def pairs(self) -> list[tuple[Shape, Shape]]:
        """(student, teacher) shapes of the features this method reads."""
        s, t = self.select(self.probe.student), self.select(self.probe.teacher)
        if len(s) != len(t):
            raise ValueError(
                f"{type(self).__name__} pairs the student's and the teacher's stages, but the "
                f"student has {len(s)} and the teacher {len(t)}: choose another method or pair"
            )
        for shape in (*s, *t):
            if self.layers != "embedding" and len(shape) != 3:
                raise ValueError(f"{type(self).__name__} reads feature maps; got shape {shape}")
        return list(zip(s, t, strict=True))


@dataclass
class InitStage:
    """RepDistiller's initialisation stage (``helper/pretrain.py``): ``epochs`` epochs before
    distillation that train the method's ``parts`` (plain SGD at ``lr``, None: the
    recipe's; the recipe's momentum and weight decay, no schedule) on ``loss(student_feats,
    teacher_feats)`` with the features of ``request``. ``student``: the student runs and
    its layers but the linear head train too (AB); otherwise only the teacher runs (FT).
    The parts are frozen outside this stage."""

    epochs: int
    lr: float | None
    request: Features
    student: bool
    loss: Callable[[Tensors | None, Tensors], torch.Tensor]
    parts: nn.Module


METHODS: Registry[type[FeatureMethod]] = Registry("KD method")


def pool_to_match(s: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Average-pool the larger of two maps to the other's side (RepDistiller's AT, NST, VID,
    FT)."""
    sh, th = s.shape[2], t.shape[2]
    if sh > th:
        s = F.adaptive_avg_pool2d(s, (th, th))
    elif sh < th:
        t = F.adaptive_avg_pool2d(t, (sh, sh))
    return s, t


def conv_regressor(s: Shape, t: Shape, relu: bool = True) -> nn.Sequential:
    """FitNet's convolutional regressor (RepDistiller ``ConvReg``) from a student map of
    shape ``s`` to the teacher's ``t``: a stride-2 3x3 conv when the student's side is
    twice the teacher's, a stride-2 4x4 transposed conv when it is half, else a conv whose
    kernel shrinks the side to the teacher's; then BatchNorm (and ReLU)."""
    (sc, sh, sw), (tc, th, tw) = s, t
    if sh == 2 * th:
        conv: nn.Module = nn.Conv2d(sc, tc, 3, stride=2, padding=1)
    elif sh * 2 == th:
        conv = nn.ConvTranspose2d(sc, tc, 4, stride=2, padding=1)
    elif sh >= th:
        conv = nn.Conv2d(sc, tc, (1 + sh - th, 1 + sw - tw))
    else:
        raise ValueError(f"no regressor from a student map {s} to a teacher map {t}")
    layers = [conv, nn.BatchNorm2d(tc)]
    return nn.Sequential(*layers, *([nn.ReLU()] if relu else []))


@METHODS.register("fitnet")
class FitNet(FeatureMethod):
    """FitNets (Romero et al. 2015) as in the CRD benchmark: the student's map at
    ``hint_layer`` (2: the middle stage) through a :func:`conv_regressor` regresses the
    teacher's by mean squared error, trained in one stage with the student (RepDistiller's
    ``hint`` has no separate hint-training stage)."""

    def __init__(self, probe: Probe, *, hint_layer: int = 2, **weights: float) -> None:
        self.hint_layer = int(hint_layer)
        super().__init__(probe, **weights)
        ((s, t),) = self.pairs()
        self.regressor = conv_regressor(s, t)

    def select(self, feats: Sequence[Any]) -> list[Any]:
        return [feats[self.hint_layer]]

    def pairs(self) -> list[tuple[Shape, Shape]]:
        if not 0 <= self.hint_layer < min(len(self.probe.student), len(self.probe.teacher)) - 1:
            raise ValueError(f"FitNet's hint_layer {self.hint_layer} is not a feature map of "
                             "both networks")  # fmt: skip
        return super().pairs()

    def term(
        self, s: list[torch.Tensor], t: list[torch.Tensor], index: torch.Tensor | None
    ) -> torch.Tensor:
        return F.mse_loss(self.regressor(s[0]), t[0])


def attention_map(f: torch.Tensor, p: int = 2) -> torch.Tensor:
    """Zagoruyko & Komodakis's spatial attention: mean over channels of ``|f|^p``, flattened
    and L2-normalised per sample (RepDistiller uses ``f^p``; equal at p = 2)."""
    return F.normalize(f.pow(p).mean(1).flatten(1))


@METHODS.register("at")
class AttentionTransfer(FeatureMethod):
    """AT (Zagoruyko & Komodakis 2017): per stage, the mean squared difference of the
    normalised attention maps, summed over stages."""

    layers = "stages"

    def __init__(self, probe: Probe, *, p: int = 2, **weights: float) -> None:
        super().__init__(probe, **weights)
        self.p = int(p)
        self.pairs()

    def term(
        self, s: list[torch.Tensor], t: list[torch.Tensor], index: torch.Tensor | None
    ) -> torch.Tensor:
        total = s[0].new_zeros(())
        for fs, ft in zip(s, t, strict=True):
            fs, ft = pool_to_match(fs, ft)
            total = total + (attention_map(fs, self.p) - attention_map(ft, self.p)).pow(2).mean()
        return total


@METHODS.register("sp")
class SimilarityPreserving(FeatureMethod):
    """SP (Tung & Mori 2019): the batch's sample x sample Gram matrices of the last stage's
    maps, rows L2-normalised; squared Frobenius distance over ``B^2``."""

    layers = "last_map"

    def __init__(self, probe: Probe, **weights: float) -> None:
        super().__init__(probe, **weights)
        self.pairs()

    def term(
        self, s: list[torch.Tensor], t: list[torch.Tensor], index: torch.Tensor | None
    ) -> torch.Tensor:
        def gram(f: torch.Tensor) -> torch.Tensor:
            f = f.flatten(1)
            return F.normalize(f @ f.t())

        b = s[0].shape[0]
        return (gram(t[0]) - gram(s[0])).pow(2).sum() / (b * b)


@METHODS.register("cc")
class CorrelationCongruence(FeatureMethod):
    """CC (Peng et al. 2019) as RepDistiller runs it (the authors' code): linear embeddings
    of both networks' embeddings to ``feat_dim``; ``delta = |e_s - e_t|`` and the loss is
    the batch mean of ``<delta_i, delta_{i+1}>`` over consecutive samples."""

    def __init__(self, probe: Probe, *, feat_dim: int = 128, **weights: float) -> None:
        super().__init__(probe, **weights)
        ((s, t),) = self.pairs()
        self.embed_s = nn.Linear(s[0], feat_dim)
        self.embed_t = nn.Linear(t[0], feat_dim)

    def term(
        self, s: list[torch.Tensor], t: list[torch.Tensor], index: torch.Tensor | None
    ) -> torch.Tensor:
        delta = (self.embed_s(s[0]) - self.embed_t(t[0])).abs()
        return (delta[:-1] * delta[1:]).sum(1).mean()


class VIDHead(nn.Module):
    """VID's predictor for one stage: three 1x1 convs (student channels -> teacher channels,
    no bias, ReLUs between) for the mean, and a per-channel variance ``softplus(log_scale)
    + eps`` initialised at ``init_var``."""

    def __init__(self, cin: int, cout: int, init_var: float = 5.0, eps: float = 1e-5) -> None:
        super().__init__()
        self.mean = nn.Sequential(
            nn.Conv2d(cin, cout, 1, bias=False), nn.ReLU(),
            nn.Conv2d(cout, cout, 1, bias=False), nn.ReLU(),
            nn.Conv2d(cout, cout, 1, bias=False),
        )  # fmt: skip
        # softplus^-1(init_var - eps), so that the initial variance is init_var
        self.log_scale = nn.Parameter(torch.full((cout,), math.log(math.expm1(init_var - eps))))
        self.eps = eps

    def forward(self, s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        s, t = pool_to_match(s, t)
        var = (F.softplus(self.log_scale) + self.eps).view(1, -1, 1, 1)
        return (0.5 * ((self.mean(s) - t).pow(2) / var + var.log())).mean()


@METHODS.register("vid")
class VariationalInformation(FeatureMethod):
    """VID (Ahn et al. 2019): per stage, the Gaussian negative log-likelihood (constant
    dropped) of the teacher's map under a heteroscedastic prediction from the student's
    (:class:`VIDHead`), averaged over elements and summed over stages."""

    layers = "stages"

    def __init__(self, probe: Probe, **weights: float) -> None:
        super().__init__(probe, **weights)
        self.heads = nn.ModuleList(VIDHead(s[0], t[0]) for s, t in self.pairs())

    def term(
        self, s: list[torch.Tensor], t: list[torch.Tensor], index: torch.Tensor | None
    ) -> torch.Tensor:
        return sum(h(fs, ft) for h, fs, ft in zip(self.heads, s, t, strict=True))


def pairwise_distances(e: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Euclidean distances between the rows of ``e`` (squared form clamped at ``eps``),
    zero diagonal."""
    sq = e.pow(2).sum(1)
    d = (sq.unsqueeze(1) + sq.unsqueeze(0) - 2 * e @ e.t()).clamp_min(eps).sqrt()
    return d * (1 - torch.eye(len(e), device=e.device, dtype=e.dtype))


def angle_matrix(e: torch.Tensor) -> torch.Tensor:
    """cos of the angle at vertex j of every triangle (i, j, k) of rows, flattened."""
    diff = F.normalize(e.unsqueeze(0) - e.unsqueeze(1), p=2, dim=2)
    return torch.bmm(diff, diff.transpose(1, 2)).flatten()


@METHODS.register("rkd")
class RelationalKD(FeatureMethod):
    """RKD (Park et al. 2019) on the embeddings: Huber loss between the distance matrices
    (each over its mean positive distance), weight ``w_d``, and between the angle
    matrices, weight ``w_a``."""

    def __init__(self, probe: Probe, *, w_d: float = 25.0, w_a: float = 50.0, **weights) -> None:
        super().__init__(probe, **weights)
        self.w_d, self.w_a = float(w_d), float(w_a)
        self.pairs()

    def term(
        self, s: list[torch.Tensor], t: list[torch.Tensor], index: torch.Tensor | None
    ) -> torch.Tensor:
        def normalised(d: torch.Tensor) -> torch.Tensor:
            return d / d[d > 0].mean()

        es, et = s[0].flatten(1), t[0].flatten(1)
        loss_d = F.smooth_l1_loss(normalised(pairwise_distances(es)),
                                  normalised(pairwise_distances(et)))  # fmt: skip
        loss_a = F.smooth_l1_loss(angle_matrix(es), angle_matrix(et))
        return self.w_d * loss_d + self.w_a * loss_a


@METHODS.register("pkt")
class ProbabilisticKT(FeatureMethod):
    """PKT (Passalis & Tefas 2018): cosine similarities of the embeddings within the batch,
    mapped to [0, 1] and normalised per row into conditional probabilities; the mean over
    entries of ``p_t * log(p_t / p_s)`` (eps 1e-7, as the authors' code)."""

    eps: ClassVar[float] = 1e-7

    def __init__(self, probe: Probe, **weights: float) -> None:
        super().__init__(probe, **weights)
        self.pairs()

    def term(
        self, s: list[torch.Tensor], t: list[torch.Tensor], index: torch.Tensor | None
    ) -> torch.Tensor:
        def conditional(e: torch.Tensor) -> torch.Tensor:
            e = e / (e.norm(dim=1, keepdim=True) + self.eps)
            sim = (e @ e.t() + 1.0) / 2.0
            return sim / sim.sum(1, keepdim=True)

        ps, pt = conditional(s[0]), conditional(t[0])
        return (pt * ((pt + self.eps) / (ps + self.eps)).log()).mean()


def boundary_loss(s: torch.Tensor, t: torch.Tensor, margin: float) -> torch.Tensor:
    """AB's alternative L2 (Heo et al. 2019): the student's pre-activation pushed beyond
    ``-margin`` where the teacher's neuron is off and beyond ``+margin`` where it is on;
    summed."""
    off = (s + margin).pow(2) * ((s > -margin) & (t <= 0)).float()
    on = (s - margin).pow(2) * ((s <= margin) & (t > 0)).float()
    return (off + on).sum()


@contextmanager
def trainable(module: nn.Module) -> Iterator[None]:
    """``module``'s parameters require gradients inside the block only."""
    module.requires_grad_(True)
    try:
        yield
    finally:
        module.requires_grad_(False)


@METHODS.register("ab")
class ActivationBoundary(FeatureMethod):
    """AB (Heo et al. 2019) as in the CRD benchmark: an initialisation stage of
    ``init_epochs`` (30) trains connectors (:func:`conv_regressor` without ReLU where the
    shapes differ) and the student's feature layers so that the student's pre-activation
    stage maps, through the connectors, fall on the teacher's side of each activation
    boundary (stage ``i`` of ``n`` weighted ``2^(i-n+1)``, the sum over the batch size, x
    3/1000); the distillation epochs then train with cross-entropy alone (RepDistiller's
    ``abound`` sets its distillation term to 0), so they read no features."""

    layers = "stages"
    preact = True

    def __init__(
        self, probe: Probe, *, margin: float = 1.0, init_epochs: int = 30,
        init_lr: float | None = None, **weights: float,
    ) -> None:  # fmt: skip
        super().__init__(probe, **weights)
        self.margin = float(margin)
        self.connectors = nn.ModuleList(
            nn.Identity() if s[:2] == t[:2] else conv_regressor(s, t, relu=False)
            for s, t in self.pairs()
        )
        self.connectors.requires_grad_(False)  # trained in the initialisation stage only
        n = len(self.connectors)
        self.stage_weights = [2.0 ** (i - n + 1) for i in range(n)]
        if init_epochs:
            self.init_stage = InitStage(int(init_epochs), init_lr, Features(preact=True),
                                        True, self.init_loss, self.connectors)  # fmt: skip

    @property
    def request(self) -> Features | None:
        return None

    def init_loss(self, student_feats: Tensors | None, teacher_feats: Tensors) -> torch.Tensor:
        assert student_feats is not None
        s, t = self.select(student_feats), self.select(teacher_feats)
        total = s[0].new_zeros((), dtype=torch.float32)
        for w, connect, fs, ft in zip(self.stage_weights, self.connectors, s, t, strict=True):
            total = total + w * boundary_loss(connect(fs).float(), ft.float(), self.margin)
        return total / s[0].shape[0] / 1000 * 3

    def term(
        self, s: list[torch.Tensor], t: list[torch.Tensor], index: torch.Tensor | None
    ) -> torch.Tensor:
        return s[0].new_zeros(())


def leaky_convs(
    channels: Sequence[int], transpose: bool = False, bn: bool = False
) -> nn.Sequential:
    """3x3 (transposed) convs between consecutive ``channels``, each followed by (BN and)
    LeakyReLU(0.1): the paraphraser's and translator's layers."""
    conv = nn.ConvTranspose2d if transpose else nn.Conv2d
    layers: list[nn.Module] = []
    for cin, cout in itertools.pairwise(channels):
        layers += [conv(cin, cout, 3, 1, 1), *([nn.BatchNorm2d(cout)] if bn else []),
                   nn.LeakyReLU(0.1)]  # fmt: skip
    return nn.Sequential(*layers)


@METHODS.register("ft")
class FactorTransfer(FeatureMethod):
    """FT (Kim et al. 2018) as in the CRD benchmark, on the last stage's maps: an
    initialisation stage of ``init_epochs`` (30) trains the teacher's paraphraser (a 3-conv
    encoder to ``k`` x the teacher's channels and a 3-transposed-conv decoder, no BN) to
    reconstruct the teacher's map (MSE); it is then frozen, and a translator on the
    student's map (3 convs with BN) is trained with the student so that the L1 distance
    of the normalised channel-mean squares (the factors, p1 = 2, p2 = 1) matches the
    paraphraser's encoding."""

    layers = "last_map"

    def __init__(
        self, probe: Probe, *, k: float = 0.5, init_epochs: int = 30,
        init_lr: float | None = None, **weights: float,
    ) -> None:  # fmt: skip
        super().__init__(probe, **weights)
        ((s, t),) = self.pairs()
        factor = int(t[0] * k)
        self.paraphraser = nn.ModuleDict({
            "encoder": leaky_convs([t[0], t[0], factor, factor]),
            "decoder": leaky_convs([factor, factor, t[0], t[0]], transpose=True),
        })  # fmt: skip
        self.paraphraser.requires_grad_(False)
        self.translator = leaky_convs([s[0], s[0], factor, factor], bn=True)
        if init_epochs:
            self.init_stage = InitStage(int(init_epochs), init_lr, Features(), False,
                                        self.init_loss, self.paraphraser)  # fmt: skip

    def init_loss(self, student_feats: Tensors | None, teacher_feats: Tensors) -> torch.Tensor:
        (t,) = self.select(teacher_feats)
        t = t.float()
        rebuilt = self.paraphraser["decoder"](self.paraphraser["encoder"](t))
        return F.mse_loss(rebuilt, t)

    def term(
        self, s: list[torch.Tensor], t: list[torch.Tensor], index: torch.Tensor | None
    ) -> torch.Tensor:
        with torch.no_grad():
            factor_t = self.paraphraser["encoder"](t[0])
        fs, ft = pool_to_match(self.translator(s[0]), factor_t)
        return (attention_map(fs) - attention_map(ft)).abs().mean()


@METHODS.register("nst")
class NeuronSelectivity(FeatureMethod):
    """NST (Huang & Wang 2017): per stage, each channel's spatial map L2-normalised; the
    squared MMD with the polynomial kernel ``k(a, b) = <a, b>^2`` between the student's and
    the teacher's channels, summed over stages."""

    layers = "stages"

    def __init__(self, probe: Probe, **weights: float) -> None:
        super().__init__(probe, **weights)
        self.pairs()

    def term(
        self, s: list[torch.Tensor], t: list[torch.Tensor], index: torch.Tensor | None
    ) -> torch.Tensor:
        def kernel_mean(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return torch.bmm(b, a.transpose(1, 2)).pow(2).mean()

        total = s[0].new_zeros(())
        for fs, ft in zip(s, t, strict=True):
            fs, ft = pool_to_match(fs, ft)
            fs, ft = (F.normalize(f.flatten(2), dim=2) for f in (fs, ft))
            total = total + kernel_mean(ft, ft) + kernel_mean(fs, fs) - 2 * kernel_mean(fs, ft)
        return total


@METHODS.register("ickd")
class InterChannelCorrelation(FeatureMethod):
    """ICKD (Liu et al. 2021, the authors' CIFAR code): the student's last stage map through
    a 1x1 conv (no bias) + BN to the teacher's channel count; per sample the channel x
    channel Gram matrix, rows L2-normalised; squared Frobenius distance summed over the
    batch, over ``channels * B``."""

    layers = "last_map"

    def __init__(self, probe: Probe, **weights: float) -> None:
        super().__init__(probe, **weights)
        ((s, t),) = self.pairs()
        self.embed = nn.Sequential(nn.Conv2d(s[0], t[0], 1, bias=False), nn.BatchNorm2d(t[0]))

    def term(
        self, s: list[torch.Tensor], t: list[torch.Tensor], index: torch.Tensor | None
    ) -> torch.Tensor:
        def correlation(f: torch.Tensor) -> torch.Tensor:
            f = f.flatten(2)
            return F.normalize(torch.bmm(f, f.transpose(1, 2)), dim=2)

        fs = self.embed(s[0])
        b, c = fs.shape[:2]
        return (correlation(fs) - correlation(t[0])).pow(2).sum() / (c * b)


class ContrastMemory(nn.Module):
    """CRD's memory bank (RepDistiller ``crd/memory.py``): one unit-norm ``dim`` vector per
    training image for each network, initialised uniform in ``+-1/sqrt(dim/3)``; scores of
    an anchor against its row (the positive) and ``k`` sampled rows (the negatives) of the
    *other* network's bank are ``exp(<v, m> / T) / Z``, with ``Z`` set once from the first
    batch (mean score x ``n_data``). After scoring, each batch row's entry becomes
    ``normalise(momentum * old + (1 - momentum) * new)``."""

    def __init__(self, dim: int, n_data: int, k: int, temperature: float, momentum: float):
        super().__init__()
        self.k, self.temperature, self.momentum = int(k), float(temperature), float(momentum)
        bound = 1.0 / math.sqrt(dim / 3)
        self.register_buffer("memory_s", torch.rand(n_data, dim).mul_(2 * bound).sub_(bound))
        self.register_buffer("memory_t", torch.rand(n_data, dim).mul_(2 * bound).sub_(bound))
        self.register_buffer("z", torch.full((2,), -1.0))  # Z of the student / teacher scores
        self._z_known = False  # avoids a device sync per step once Z is set

    def scores(self, v: torch.Tensor, memory: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """``exp(<v_b, memory[rows[b, j]]> / T)``: shape ``(B, 1 + k)``."""
        weights = memory[rows].detach()  # (B, 1 + k, dim)
        return torch.bmm(weights, v.unsqueeze(2)).squeeze(2).div(self.temperature).exp()

    def forward(
        self, v_s: torch.Tensor, v_t: torch.Tensor, index: torch.Tensor, negatives: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised scores of the student anchors (against the teacher's bank) and of the
        teacher anchors (against the student's bank); then the banks' update."""
        rows = torch.cat([index.unsqueeze(1), negatives], 1)
        out_s = self.scores(v_s, self.memory_t, rows)
        out_t = self.scores(v_t, self.memory_s, rows)
        if not self._z_known:
            unset = self.z < 0
            if bool(unset.any()):
                first = torch.stack([out_s.mean(), out_t.mean()]).detach() * len(self.memory_s)
                self.z.copy_(torch.where(unset, first, self.z))
            self._z_known = True
        self.update(v_s, v_t, index)
        return out_s / self.z[0], out_t / self.z[1]

    @torch.no_grad()
    def update(self, v_s: torch.Tensor, v_t: torch.Tensor, index: torch.Tensor) -> None:
        for memory, v in ((self.memory_s, v_s), (self.memory_t, v_t)):
            mixed = memory[index] * self.momentum + v.detach() * (1 - self.momentum)
            memory.index_copy_(0, index, F.normalize(mixed, dim=1).to(memory.dtype))

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        self._z_known = False  # a loaded Z is read again on the next step


class NegativeSampler(nn.Module):
    """CRD's ``exact`` sampling (RepDistiller ``CIFAR100InstanceSample``): for each row,
    ``k`` indices among the training rows of *other* classes, uniformly without
    replacement, or with replacement when the other classes have fewer than ``k`` rows
    (numpy's ``choice`` there). On the device, for the whole batch at once: without
    replacement, the ``k`` smallest of one uniform draw per training row (own class
    excluded); with replacement, a uniform draw below ``n - count(class)`` that skips the
    row's own class block in the class-sorted order. Draws come from torch's generator,
    which the engine seeds per epoch."""

    def __init__(self, labels: torch.Tensor) -> None:
        super().__init__()
        labels = labels.long()
        counts = torch.bincount(labels)
        self.register_buffer("labels", labels, persistent=False)
        self.register_buffer("order", torch.argsort(labels, stable=True), persistent=False)
        self.register_buffer("counts", counts, persistent=False)
        self.register_buffer("starts", torch.cumsum(counts, 0) - counts, persistent=False)
        self.fewest_others = len(labels) - int(counts.max())  # known here: no sync per step

    def forward(self, index: torch.Tensor, k: int) -> torch.Tensor:
        cls = self.labels[index]
        count, start = self.counts[cls].unsqueeze(1), self.starts[cls].unsqueeze(1)
        others = len(self.labels) - count
        if k <= self.fewest_others:
            keys = torch.rand(len(index), len(self.labels), device=index.device)
            keys.masked_fill_(self.labels.unsqueeze(0) == cls.unsqueeze(1), 2.0)  # never first
            return keys.topk(k, dim=1, largest=False, sorted=False).indices
        u = (torch.rand(len(index), k, device=index.device) * others).long()
        u = torch.minimum(u, others - 1)  # rand() < 1, but float rounding may reach the top
        return self.order[u + (u >= start).long() * count]


def nce_loss(scores: torch.Tensor, n_data: int, eps: float = 1e-7) -> torch.Tensor:
    """CRD's NCE objective (RepDistiller ``ContrastLoss``, eq. 18) on normalised scores
    ``(B, 1 + k)``, positive first: ``-(sum log h(pos) + sum log(1 - h(neg))) / B`` with
    ``h(s) = s / (s + k / n_data)``."""
    m = scores.shape[1] - 1
    noise = m / n_data
    log_pos = (scores[:, 0] / (scores[:, 0] + noise + eps)).log()
    log_neg = (noise / (scores[:, 1:] + noise + eps)).log()
    return -(log_pos.sum() + log_neg.sum()) / scores.shape[0]


@METHODS.register("crd")
class ContrastiveRepresentation(FeatureMethod):
    """CRD (Tian et al. 2020): linear heads map both embeddings to ``feat_dim`` (128) unit
    vectors; NCE with ``nce_k`` (16,384) negatives from a momentum (0.5) memory bank
    (:class:`ContrastMemory`), temperature ``nce_t`` (0.07), symmetric (student and
    teacher anchors). The positive of a row is its own training index, also when the row
    is mixed with another (mixup, CutMix)."""

    needs_index = True

    def __init__(
        self, probe: Probe, *, feat_dim: int = 128, nce_k: int = 16384, nce_t: float = 0.07,
        nce_m: float = 0.5, labels: torch.Tensor | None = None, **weights: float,
    ) -> None:  # fmt: skip
        super().__init__(probe, **weights)
        ((s, t),) = self.pairs()
        if probe.n_data < 2:
            raise ValueError("CRD needs the training split's size for its memory bank")
        self.embed_s = nn.Linear(s[0], feat_dim)
        self.embed_t = nn.Linear(t[0], feat_dim)
        self.memory = ContrastMemory(feat_dim, probe.n_data, nce_k, nce_t, nce_m)
        self.sampler = NegativeSampler(labels) if labels is not None else None

    def term(
        self, s: list[torch.Tensor], t: list[torch.Tensor], index: torch.Tensor | None
    ) -> torch.Tensor:
        if index is None or self.sampler is None:
            raise ValueError("CRD needs the batch's row indices and the split's labels")
        v_s = F.normalize(self.embed_s(s[0]), dim=1)
        v_t = F.normalize(self.embed_t(t[0]), dim=1)
        out_s, out_t = self.memory(v_s, v_t, index, self.sampler(index, self.memory.k))
        n = self.probe.n_data
        return nce_loss(out_s, n) + nce_loss(out_t, n)


# -- building -------------------------------------------------------------------------------
def method_params(spec: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in spec.items() if k not in NOT_LOSS_PARAMS}


def build_method(
    spec: Mapping[str, Any], probe: Probe, labels: torch.Tensor | None = None
) -> FeatureMethod:
    """The method a ``kd_methods`` entry names, its parts built for ``probe``'s shapes;
    ``labels``: the training split's labels (CRD samples its negatives by class)."""
    cls = METHODS.get(spec["loss"])
    extra = {"labels": labels} if cls.needs_index else {}
    return cls(probe, **method_params(spec), **extra)


@torch.no_grad()
def probe(
    student: nn.Module, teacher: nn.Module, input_shape: Sequence[int], preact: bool,
    n_data: int = 0,
) -> Probe:  # fmt: skip
    """Feature shapes of both networks from one pass of a 2-image zero batch in eval mode
    (no BatchNorm statistics move)."""
    shapes = []
    for net in (student, teacher):
        was_training = net.training
        net.eval()
        device = next(net.parameters()).device
        feats, _ = net.forward_features(torch.zeros(2, *input_shape, device=device), preact)
        net.train(was_training)
        shapes.append(tuple(tuple(f.shape[1:]) for f in feats))
    return Probe(shapes[0], shapes[1], n_data)


def build_objective(
    spec: Mapping[str, Any],
    *,
    student: nn.Module | None = None,
    teacher: Any = None,
    input_shape: Sequence[int] = (),
    labels: torch.Tensor | None = None,
) -> LossFn:
    """A cell's training objective: a logit loss (:data:`kdaug.train.losses.LOSSES`) or a
    method of this zoo, built for the student and teacher networks (which must be models:
    cached teacher logits have no features) and the training labels, on the student's
    device."""
    if spec["loss"] in LOSSES:
        return build_loss(dict(spec))
    cls = METHODS.get(spec["loss"])
    if not isinstance(teacher, nn.Module) or not hasattr(teacher, "forward_features"):
        raise ValueError(
            f"KD method {spec['loss']!r} reads the teacher's features: it needs the teacher "
            "model, not its cached logits"
        )
    assert student is not None
    n_data = len(labels) if labels is not None else 0
    found = probe(student, teacher, input_shape, cls.preact, n_data)
    device = next(student.parameters()).device
    return build_method(spec, found, labels).to(device)


def method_payload(method: Any) -> dict[str, Any] | None:
    """What a model file stores of a method: its name, probe and state (parts and buffers);
    None for the logit losses, which have none."""
    if not isinstance(method, FeatureMethod):
        return None
    name = next(n for n in METHODS if METHODS.get(n) is type(method))
    state = {k: v.detach().to("cpu", copy=True) for k, v in method.state_dict().items()}
    return {"loss": name, "probe": method.probe.to_dict(), "state_dict": state}
