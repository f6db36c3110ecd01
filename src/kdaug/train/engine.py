"""The one training engine for teachers and students.

Data live on the device as uint8 tensors; each step gathers a batch by index, converts it
to float, augments it on the device and runs one SGD step. What differs between a
teacher and a student (loss, augmentation, a frozen teacher) is passed in.

Determinism: epoch ``e`` draws its permutation and every augmentation parameter from
``np.random.default_rng([seed, e])`` and reseeds torch (dropout) with ``(seed, e)``, so a
run resumed from a checkpoint at the start of epoch ``e`` repeats the uninterrupted run.
"""

from __future__ import annotations

import copy
import math
import os
import pickle
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from kdaug.data.canonical import BadFileError, Split
from kdaug.data.imagefolder import ImageFolderSplit, train_draws
from kdaug.io import atomic_path
from kdaug.train.augment import AnyAugmentation, AppendedAugmentation, Pick, pick_highest_entropy
from kdaug.train.losses import LossFn
from kdaug.train.methods import Features, InitStage, trainable


@dataclass(frozen=True)
class Recipe:
    """Optimiser and schedule: SGD with momentum, step decay at ``milestones``."""

    epochs: int
    batch_size: int
    lr: float
    momentum: float = 0.9
    weight_decay: float = 5e-4
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    nesterov: bool = False
    checkpoint_every: int = 1
    # Largest global L2 norm of the gradient per step (None: no clipping). Not in the
    # papers' recipes; the demo's AlexNet students need it under T = 20 KD.
    grad_clip: float | None = None
    # Batches per epoch (the first ones of each epoch's shuffled order); None: the whole
    # split. For smoke runs on full-size data (CI's Fashion-MNIST run), not the papers.
    steps_per_epoch: int | None = None

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> Recipe:
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(cfg) - known
        if unknown:
            raise ValueError(f"unknown recipe keys {sorted(unknown)}; known: {sorted(known)}")
        values = dict(cfg)
        values["milestones"] = tuple(int(m) for m in values.get("milestones", ()))
        return cls(**values)


@dataclass(frozen=True)
class Speed:
    """How steps run on the device (``runtime:`` in the config). Each setting changes
    rounding, not what is computed, and ``auto`` picks the fastest correct one:

    - ``precision``: ``bf16`` autocast (forward and loss; weights, optimizer and
      gradients stay float32) where the device supports it, else ``fp32``. ``auto`` =
      bf16 on CUDA GPUs that support it, fp32 on the CPU (CPU bf16 is slower there).
    - ``channels_last``: NHWC memory layout for convolutions; ``auto`` = on, on CUDA
      (tensor cores) and on the CPU, where one SGD step at batch 128 on 1x32x32 images ran
      1.20-1.62x faster on every model of the demo and Fashion-MNIST configs (LeNet 1.56,
      AlexNet 1.20, ResNet-8 1.62, ResNet-20 1.40, ResNet-18 1.26; 1 thread,
      ``bench/cpu_knobs.py``), while CPU bf16 autocast was 0.81-0.98x (slower). A model
      with a convolution whose channels_last backward corrupts memory on the CPU trains
      in NCHW there whatever the setting (:func:`cpu_channels_last_hazards`).
    - ``compile``: ``torch.compile`` mode for the training forward/backward: ``off``,
      ``default``, ``reduce-overhead`` (CUDA graphs: small batches stop being
      launch-bound) or ``max-autotune``. Compiled dropout draws its masks from another
      random stream than eager mode (same distribution). Default ``off``: the compile time (about a
      minute per model) only pays off over long runs, and it was not measured on a GPU
      here.
    """

    precision: str = "auto"  # auto | fp32 | bf16
    channels_last: str = "auto"  # auto | on | off
    compile: str = "off"  # off | default | reduce-overhead | max-autotune

    @classmethod
    def from_config(cls, runtime: Mapping[str, Any]) -> Speed:
        return cls(
            **{
                k: str(runtime[k])
                for k in ("precision", "channels_last", "compile")
                if k in runtime
            }
        )

    def resolve(self, device: torch.device) -> Speed:
        """``auto`` settings made concrete for ``device``."""
        cuda = device.type == "cuda"
        precision = self.precision
        if precision == "auto":
            precision = "bf16" if cuda and torch.cuda.is_bf16_supported() else "fp32"
        layout = self.channels_last
        if layout == "auto":
            layout = "on"
        return Speed(precision, layout, self.compile)

    def clear_of_cpu_layout_hazards(
        self, device: torch.device, *modules: object, log: Callable[[str], None]
    ) -> Speed:
        """This setting, with channels_last turned off on the CPU when ``modules`` hold a
        convolution whose channels_last backward corrupts memory there
        (:func:`cpu_channels_last_hazards`); the layout changes speed, never a value."""
        if device.type != "cpu" or self.channels_last != "on":
            return self
        hazards = cpu_channels_last_hazards(*modules)
        if not hazards:
            return self
        log(f"channels_last off: on the CPU its backward corrupts memory for "
            f"{', '.join(hazards)} (1x1 convolutions with stride > 1 and 2-7 input "
            f"channels; torch 2.14.1)")  # fmt: skip
        return replace(self, channels_last="off")

    def autocast(self, device: torch.device):
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16")

    def lay_out(self, model: nn.Module) -> nn.Module:
        """The model in the memory layout of this setting (in place)."""
        if self.channels_last == "on":
            model.to(memory_format=torch.channels_last)
        return model

    def lay_out_input(self, x: torch.Tensor) -> torch.Tensor:
        """An image batch in this setting's layout. Needed both ways: convolutions follow
        the input's strides as well as the weights', and a 1-channel batch gathered in
        NHWC (a random crop) has strides that read as channels_last, so an NCHW model
        fed with it ran the channels_last kernels anyway."""
        if x.dim() != 4:
            return x
        if self.channels_last == "on":
            return x.contiguous(memory_format=torch.channels_last)
        _, c, h, w = x.shape
        if x.stride() == (c * h * w, h * w, w, 1):
            return x
        return x.clone(memory_format=torch.contiguous_format)

    def lay_out_batch(self, batch: StepBatch) -> StepBatch:
        """A training step's inputs (``x`` and the appended ``x'``) in this layout."""
        extra = None if batch.extra is None else self.lay_out_input(batch.extra)
        return replace(batch, x=self.lay_out_input(batch.x), extra=extra)

    def prepare(self, model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
        """Lay the model out and return the callable to train with: the model, or its
        compiled wrapper (which shares its parameters and state dict)."""
        self.lay_out(model)
        if self.compile == "off":
            return model
        return torch.compile(model, mode=None if self.compile == "default" else self.compile)


def cpu_channels_last_hazards(*modules: object) -> list[str]:
    """Names of the convolutions in ``modules`` (``nn.Module``s; anything else is skipped)
    whose training step in channels_last crashes or corrupts the heap on the CPU.

    torch 2.14.1 on a 2-core AMD EPYC without AVX-512: the weight gradient of a 1x1
    convolution with stride 2 or 4 and 2-7 input channels, in channels_last, ends in
    "double free or corruption", "corrupted size vs. prev_size", a bus error or a
    segfault; 1 or >= 8 input channels, other kernels, stride 1 or 3, NCHW and
    forward-only passes are fine (every case checked, one process each). CI machines
    with AVX-512 ran the same step without a crash, but a quietly corrupted heap would
    not crash either, so the check holds on every CPU. A ResNet's shortcut at width <= 0.25 has such
    a convolution (ResNet-8 at 0.25: 4 input channels)."""
    return [
        f"{type(module).__name__}.{name}" if name else type(module).__name__
        for module in modules
        if isinstance(module, nn.Module)
        for name, layer in module.named_modules()
        if isinstance(layer, nn.Conv2d)
        and tuple(layer.kernel_size) == (1, 1)
        and max(layer.stride) > 1
        and 2 <= layer.in_channels < 8
    ]


@dataclass
class DeviceData:
    """A split resident on the device: uint8 images, int64 labels, normalisation."""

    images: torch.Tensor
    labels: torch.Tensor
    num_classes: int
    mean: torch.Tensor
    std: torch.Tensor

    @classmethod
    def from_split(
        cls, split: Split, mean: Sequence[float], std: Sequence[float], device: torch.device
    ) -> DeviceData:
        """The split on ``device``; an ImageFolder index (ImageNet) becomes a
        :class:`StreamData`, which decodes each batch when it is asked for."""
        if isinstance(split, ImageFolderSplit):
            return StreamData.from_index(split, mean, std, device)  # type: ignore[return-value]
        channels = split.images.shape[1]
        if len(mean) != channels or len(std) != channels:
            raise ValueError(f"mean/std need {channels} values (one per channel)")
        check_normalization(mean, std)
        as_param = lambda v: torch.tensor(v, dtype=torch.float32, device=device).view(1, -1, 1, 1)  # noqa: E731
        return cls(
            images=torch.from_numpy(split.images).to(device),
            labels=torch.from_numpy(split.labels).to(device),
            num_classes=split.num_classes,
            mean=as_param(mean),
            std=as_param(std),
        )

    def __len__(self) -> int:
        return len(self.labels)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def pixels(self, index: torch.Tensor, rng: np.random.Generator | None = None) -> torch.Tensor:
        """Float images in [0, 1] for rows ``index`` (``rng``: a training step's generator,
        which only a streamed split draws from)."""
        return self.images[index].float().div_(255.0)

    def normalized(self, index: torch.Tensor) -> torch.Tensor:
        return self.normalize(self.pixels(index))


@dataclass
class StreamData:
    """A streamed split (:class:`kdaug.data.imagefolder.ImageFolderSplit`) with
    :class:`DeviceData`'s interface: labels on the device, images decoded per batch.

    A training step (``pixels(index, rng)``) decodes its rows with RandomResizedCrop and
    flip drawn from the step's generator; every other read (evaluation, extraction) gets
    the resize + centre crop. The batch-level augmentations then run on the decoded
    batch as on any other."""

    source: ImageFolderSplit
    labels: torch.Tensor
    num_classes: int
    mean: torch.Tensor
    std: torch.Tensor

    @classmethod
    def from_index(
        cls,
        split: ImageFolderSplit,
        mean: Sequence[float],
        std: Sequence[float],
        device: torch.device,
    ) -> StreamData:
        if len(mean) != 3 or len(std) != 3:
            raise ValueError("mean/std need 3 values (one per channel)")
        check_normalization(mean, std)
        as_param = lambda v: torch.tensor(v, dtype=torch.float32, device=device).view(1, -1, 1, 1)  # noqa: E731
        return cls(
            source=split,
            labels=torch.from_numpy(np.asarray(split.labels, dtype=np.int64)).to(device),
            num_classes=split.num_classes,
            mean=as_param(mean),
            std=as_param(std),
        )

    @property
    def images(self) -> Any:
        raise TypeError(self.source.cannot_load("a device tensor of every image"))

    def __len__(self) -> int:
        return len(self.labels)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def pixels(self, index: torch.Tensor, rng: np.random.Generator | None = None) -> torch.Tensor:
        rows = index.cpu().numpy()
        draws = None if rng is None else train_draws(rng, len(rows))
        batch = torch.from_numpy(self.source.decode(rows, draws))
        return batch.to(self.labels.device, non_blocking=True).float().div_(255.0)

    def normalized(self, index: torch.Tensor) -> torch.Tensor:
        return self.normalize(self.pixels(index))


def check_normalization(mean: Sequence[float], std: Sequence[float]) -> None:
    """Refuse a normalisation that makes some input non-finite. It is affine per channel,
    so the extreme inputs are those of pixels 0 and 1; checking them in float32 (the
    training dtype) catches a std of 0, a tiny std that overflows and non-finite values,
    which would otherwise surface as a NaN loss blamed on the learning rate."""
    m = torch.tensor([float(v) for v in mean], dtype=torch.float32)
    s = torch.tensor([float(v) for v in std], dtype=torch.float32)
    extremes = torch.stack([(0.0 - m) / s, (1.0 - m) / s])
    if not torch.isfinite(extremes).all():
        raise ValueError(
            f"normalization mean {list(mean)} / std {list(std)} makes the inputs non-finite "
            "(a std of 0 or a non-finite value): fix the dataset's `normalization` in the "
            "config"
        )


@dataclass
class TrainState:
    """Everything a checkpoint holds; also the result of :func:`fit`."""

    epoch: int = 0  # epochs completed
    history: list[dict[str, float]] = field(default_factory=list)
    best_val_accuracy: float = -math.inf
    best_val_epoch: int = 0
    best_val_state: dict[str, torch.Tensor] | None = None
    # The loss of the very first step (the untrained model): the reference of the
    # divergence check, kept across resumes.
    first_loss: float | None = None
    # A KD method's initialisation stage (AB, FT): its epochs' mean losses once it ran.
    init_losses: list[float] | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain values and tensors only, so a checkpoint loads with ``weights_only``."""
        return {
            "epoch": self.epoch,
            "history": [dict(row) for row in self.history],
            "best_val_accuracy": self.best_val_accuracy,
            "best_val_epoch": self.best_val_epoch,
            "best_val_state": self.best_val_state,
            "first_loss": self.first_loss,
            "init_losses": self.init_losses,
        }

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainState:
        return cls(**{k: values[k] for k in cls.__dataclass_fields__ if k in values})


def cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


@torch.no_grad()
def evaluate(model: nn.Module, data: DeviceData, batch_size: int = 1000) -> dict[str, float]:
    """Mean cross-entropy and accuracy of ``model`` on ``data`` (eval mode)."""
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=data.labels.device)
    correct = torch.zeros((), device=data.labels.device)
    for start in range(0, len(data), batch_size):
        index = torch.arange(start, min(start + batch_size, len(data)), device=data.labels.device)
        logits = model(data.normalized(index)).float()
        labels = data.labels[index]
        loss_sum += F.cross_entropy(logits, labels, reduction="sum")
        correct += (logits.argmax(1) == labels).sum()
    model.train(was_training)
    n = max(len(data), 1)
    return {"loss": loss_sum.item() / n, "accuracy": correct.item() / n}


def seed_epoch(seed: int, epoch: int, stage: int = 0) -> np.random.Generator:
    """Seed torch (dropout, CRD's negatives) for ``epoch`` (0-based) and return the
    generator for its draws. ``stage`` 1 is a KD method's initialisation stage, whose
    epochs draw from streams of their own."""
    entropy = [seed, epoch] if stage == 0 else [seed, epoch, stage]
    torch.manual_seed(int(np.random.SeedSequence(entropy).generate_state(1)[0]))
    return np.random.default_rng(entropy)


def batches(n: int, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """A shuffled epoch in batches; a last batch of one sample is dropped (BatchNorm needs 2)."""
    order = rng.permutation(n)
    chunks = [order[i : i + batch_size] for i in range(0, n, batch_size)]
    return [c for c in chunks if len(c) > 1]


Teacher = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class TeacherLogits:
    """A frozen teacher's logits on every row of the training split, computed once (the
    teacher's ``extract_outputs`` on the train split): what a student trained *without
    augmentation* needs, since its batches are exactly those rows. Looking them up
    replaces a teacher forward pass per step (issue: cached-logit students)."""

    logits: torch.Tensor  # (N, C) float32 on the training device

    @classmethod
    def for_split(cls, logits: np.ndarray, labels: np.ndarray, data: DeviceData) -> TeacherLogits:
        """Check that the cached rows are ``data``'s rows (count, classes, labels)."""
        if isinstance(data, StreamData):
            raise ValueError(
                f"{data.source.dataset} is streamed with a random crop per epoch: cached "
                "teacher logits on its plain rows do not match any batch (use the teacher "
                "model)"
            )
        expected = (len(data), data.num_classes)
        if logits.shape != expected:
            raise ValueError(f"cached teacher logits have shape {logits.shape}; the training "
                             f"split needs {expected}")  # fmt: skip
        if not np.array_equal(labels, data.labels.cpu().numpy()):
            raise ValueError("cached teacher logits were made on a different training split "
                             "(labels differ row by row)")  # fmt: skip
        return cls(
            torch.from_numpy(np.ascontiguousarray(logits, np.float32)).to(data.labels.device)
        )


AnyTeacher = Teacher | TeacherLogits


@dataclass
class StepBatch:
    """What one training step sees: the augmented batch ``x`` with its targets and the
    teacher's logits on it, and for Wang et al.'s scheme the appended copy ``x'`` with
    the teacher's logits on it (``None`` otherwise)."""

    x: torch.Tensor
    targets: torch.Tensor
    teacher_logits: torch.Tensor | None = None
    extra: torch.Tensor | None = None
    extra_teacher_logits: torch.Tensor | None = None
    # For the feature-based KD methods: the teacher's features on x, the rows' indices
    teacher_features: list[torch.Tensor] | None = None
    index: torch.Tensor | None = None


@torch.no_grad()
def appended_rows(
    candidates: torch.Tensor, pick: Pick | None, teacher: Teacher, student: nn.Module | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``x'`` and the teacher's logits on it: all candidates, or the picked ones.

    Student-entropy picking scores the candidates with the student in eval mode, so the
    scoring pass does not move BatchNorm's running statistics (the paper's code scores in
    train mode; its text does not say).
    """
    if pick is None:
        return candidates, teacher(candidates)
    n = pick.count(len(candidates))
    if pick.by == "teacher":
        logits = teacher(candidates)
        keep = pick_highest_entropy(logits, n)
        return candidates[keep], logits[keep]
    if student is None:
        raise ValueError("student-entropy picking needs the student")
    was_training = student.training
    student.eval()
    keep = pick_highest_entropy(student(candidates), n)
    student.train(was_training)
    return candidates[keep], teacher(candidates[keep])


@torch.no_grad()
def run_teacher(
    teacher: Teacher, x: torch.Tensor, request: Features | None
) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
    """The teacher's logits on ``x``, and its features when a KD method asks for them."""
    if request is None:
        return teacher(x), None
    feats, logits = teacher.forward_features(x, request.preact)  # type: ignore[attr-defined]
    return logits, feats


def step_batch(
    data: DeviceData,
    index: torch.Tensor,
    augmentation: AnyAugmentation,
    rng: np.random.Generator,
    teacher: AnyTeacher | None = None,
    student: nn.Module | None = None,
    request: Features | None = None,
) -> StepBatch:
    """Gather rows ``index``, augment them on the device and run the teacher on them
    (or look its logits up: :class:`TeacherLogits`, unaugmented students only).
    ``request``: the features a KD method reads (the teacher model's, on ``x``)."""
    targets = F.one_hot(data.labels[index], data.num_classes).float()
    pixels = data.pixels(index, rng)  # a streamed split draws its crops from rng
    if request is not None and not hasattr(teacher, "forward_features"):
        raise ValueError("this KD method reads the teacher's features: it needs the teacher "
                         "model (not cached logits)")  # fmt: skip
    if isinstance(teacher, TeacherLogits):
        if isinstance(augmentation, AppendedAugmentation) or not augmentation.is_identity:
            raise ValueError(f"cached teacher logits are the teacher's outputs on the plain "
                             f"training rows; augmentation {augmentation.name!r} changes "
                             "them: use the teacher model")  # fmt: skip
        x, targets = augmentation(pixels, targets, rng, data.normalize)
        return StepBatch(x, targets, teacher.logits[index])
    if isinstance(augmentation, AppendedAugmentation):
        if teacher is None:
            raise ValueError(f"augmentation {augmentation.name!r} appends x' for KD: no teacher")
        x, targets, candidates = augmentation.pair(pixels, targets, rng, data.normalize)
        extra, extra_logits = appended_rows(candidates, augmentation.pick, teacher, student)
        logits, feats = run_teacher(teacher, x, request)
        return StepBatch(x, targets, logits, extra, extra_logits, feats, index)
    x, targets = augmentation(pixels, targets, rng, data.normalize)
    if teacher is None:
        return StepBatch(x, targets, index=index)
    logits, feats = run_teacher(teacher, x, request)
    return StepBatch(x, targets, logits, teacher_features=feats, index=index)


def step_loss(
    model: Callable[[torch.Tensor], torch.Tensor],
    batch: StepBatch,
    loss_fn: LossFn,
    request: Features | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The step's loss and the student's logits on ``x``. The appended copy ``x'`` gets the
    distillation term only, in a forward pass of its own (BatchNorm sees ``x`` and ``x'``
    as separate batches, as in the paper's code). A feature-based KD method (``request``)
    reads the student's features from the same pass that gives its logits."""
    if request is None:
        logits = model(batch.x)
        loss = loss_fn(logits, batch.targets, batch.teacher_logits)
    else:
        feats, logits = model.forward_features(batch.x, request.preact)  # type: ignore[attr-defined]
        loss = loss_fn(logits, batch.targets, batch.teacher_logits,  # type: ignore[call-arg]
                       feats, batch.teacher_features, batch.index)  # fmt: skip
    if batch.extra is not None:
        loss = loss + loss_fn.distill_only(model(batch.extra), batch.extra_teacher_logits)  # type: ignore[attr-defined]
    return loss, logits


def train_one_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    data: DeviceData,
    augmentation: AnyAugmentation,
    loss_fn: LossFn,
    teacher: AnyTeacher | None,
    rng: np.random.Generator,
    batch_size: int,
    progress: Callable[[int, int, int], None] = lambda step, steps, seen: None,
    speed: Speed = Speed("fp32", "off", "off"),
    forward: Callable[[torch.Tensor], torch.Tensor] | None = None,
    grad_clip: float | None = None,
    max_steps: int | None = None,
) -> dict[str, float]:
    """One epoch of SGD; ``progress(step, steps, images_seen)`` is called after each step.
    ``forward`` is the model or its compiled wrapper (:meth:`Speed.prepare`). Returns the
    epoch's mean train loss and accuracy, and ``first_loss``, the loss of its first step
    (taken before that step's update). A KD method with trainable parts (an ``nn.Module``
    loss) trains in the same step; the optimizer holds its parameters too."""
    model.train()
    if isinstance(loss_fn, nn.Module):
        loss_fn.train()
    request: Features | None = getattr(loss_fn, "request", None)
    clipped = trained_parameters(model, loss_fn)
    device = data.labels.device
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device)
    first_loss = math.nan
    seen = 0
    chunks = batches(len(data), batch_size, rng)[:max_steps]
    for step, chunk in enumerate(chunks, 1):
        index = torch.as_tensor(chunk).to(device, non_blocking=True)
        with speed.autocast(device):
            batch = step_batch(data, index, augmentation, rng, teacher, model, request)
            batch = speed.lay_out_batch(batch)
            net = model if forward is None else forward
            loss, logits = step_loss(net, batch, loss_fn, request)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(clipped, grad_clip)
        optimizer.step()
        if step == 1:  # one device sync per epoch
            first_loss = loss.detach().float().item()
        loss_sum += loss.detach() * len(chunk)
        correct += (logits.detach().argmax(1) == batch.targets.argmax(1)).sum()
        seen += len(chunk)
        progress(step, len(chunks), seen)
    return {
        "train_loss": loss_sum.item() / seen,
        "train_accuracy": correct.item() / seen,
        "first_loss": first_loss,
    }


def trained_parameters(model: nn.Module, loss_fn: Any) -> list[nn.Parameter]:
    """What a step trains: the model's parameters and a KD method's trainable parts (its
    parts frozen outside an initialisation stage excluded)."""
    params = list(model.parameters())
    if isinstance(loss_fn, nn.Module):
        params += [p for p in loss_fn.parameters() if p.requires_grad]
    return params


def run_init_stage(
    model: nn.Module,
    stage: InitStage,
    data: DeviceData,
    *,
    recipe: Recipe,
    augmentation: AnyAugmentation,
    teacher: AnyTeacher | None,
    seed: int,
    speed: Speed,
    log: Callable[[str], None],
) -> list[float]:
    """A KD method's initialisation stage (:class:`kdaug.train.methods.InitStage`, AB and
    FT): ``stage.epochs`` epochs of plain SGD on the stage's loss over the cell's training
    stream (its own seeds, :func:`seed_epoch` stage 1), before the distillation epochs.
    Returns the epochs' mean losses."""
    device = data.labels.device
    head = {id(p) for p in model.fc.parameters()} if stage.student else set()
    params = [p for p in model.parameters() if id(p) not in head] if stage.student else []
    means = []
    with trainable(stage.parts):
        params += list(stage.parts.parameters())
        optimizer = torch.optim.SGD(params, lr=stage.lr or recipe.lr, momentum=recipe.momentum,
                                    weight_decay=recipe.weight_decay)  # fmt: skip
        model.train()
        stage.parts.train()
        for epoch in range(stage.epochs):
            rng = seed_epoch(seed, epoch, stage=1)
            total = torch.zeros((), device=device)
            chunks = batches(len(data), recipe.batch_size, rng)[: recipe.steps_per_epoch]
            for chunk in chunks:
                index = torch.as_tensor(chunk).to(device, non_blocking=True)
                with speed.autocast(device):
                    batch = step_batch(data, index, augmentation, rng, teacher, model,
                                       stage.request)  # fmt: skip
                    student = None
                    if stage.student:
                        student = model.forward_features(batch.x, stage.request.preact)[0]  # type: ignore[operator]
                    loss = stage.loss(student, batch.teacher_features or [])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if recipe.grad_clip is not None:
                    torch.nn.utils.clip_grad_norm_(params, recipe.grad_clip)
                optimizer.step()
                total += loss.detach()
            means.append(total.item() / max(len(chunks), 1))
            log(f"init epoch {epoch + 1}/{stage.epochs} loss={means[-1]:.4g}")
    return means


class EpochProgress:
    """Logs the position within a long epoch about every ``every`` seconds (CPU runs of
    the larger grids take minutes per epoch; a silent log looks like a hung job)."""

    def __init__(self, epoch: int, epochs: int, log: Callable[[str], None], every: float = 30.0):
        self.epoch, self.epochs, self.log, self.every = epoch, epochs, log, every
        self.start = self.last = time.monotonic()

    def __call__(self, step: int, steps: int, seen: int) -> None:
        now = time.monotonic()
        if now - self.last < self.every or step == steps:
            return
        self.last = now
        rate = seen / (now - self.start)
        eta = (steps - step) * (now - self.start) / step
        self.log(
            f"epoch {self.epoch + 1}/{self.epochs}: step {step}/{steps}, "
            f"{rate:.0f} img/s, epoch ETA {eta:.0f}s"
        )


# Divergence: an epoch whose mean train loss exceeds DIVERGENCE_FACTOR times the larger
# of log(C) (the loss of a uniform guess) and the loss of the run's first step (the
# untrained model; KD losses with a T^2 factor start above log(C)) has blown up. Healthy
# runs stay below that reference after their first steps (the demo's sit below log(10) =
# 2.3 from the first epoch on); a run that blew up stays far above it, finite or not
# (lr 1 on LeNet ends near 7e19 at chance accuracy). A factor of 10 is far from both.
DIVERGENCE_FACTOR = 10.0


class TrainingDivergedError(FloatingPointError):
    """The train loss blew up (non-finite, or above the divergence threshold)."""


def divergence(row: Mapping[str, float], reference: float) -> str | None:
    """Why this epoch's row shows a diverged run, or None (see :data:`DIVERGENCE_FACTOR`)."""
    loss = row["train_loss"]
    if not math.isfinite(loss):
        return f"train loss {loss}"
    if loss > DIVERGENCE_FACTOR * reference:
        return (f"train loss {loss:.4g} > {DIVERGENCE_FACTOR:g} x {reference:.4g}, the larger "
                "of log(classes) and the first step's loss")  # fmt: skip
    return None


CHECKPOINT_FORMAT = 2  # 2: plain values only (weights_only); 1 pickled TrainState


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def set_aside(path: Path, why: str, log: Callable[[str], None]) -> Path:
    """Rename an unusable checkpoint to ``<path>.corrupt`` (kept for a post-mortem, out of
    the way of every later run) and say so in the log."""
    aside = path.with_name(path.name + ".corrupt")
    os.replace(path, aside)
    log(f"WARNING: {path} {why}; moved it to {aside} and training restarts from scratch")
    return aside


def read_checkpoint(path: Path, log: Callable[[str], None]) -> dict[str, Any] | None:
    """The checkpoint at ``path``, or None where it cannot be resumed from.

    It is read with ``weights_only=True``: plain values and tensors, never code. A file
    that cannot be read (truncated by a full disk, garbage) or was written by an older
    kdaug (pickled kdaug classes) is set aside (:func:`set_aside`) and training restarts.
    A file whose pickle names code outside kdaug was not written by this pipeline (a
    planted file): it raises :class:`BadFileError` and is left in place for a person.
    """
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        foreign = foreign_globals(path)
        if foreign is None or foreign:
            names = ", ".join(foreign or []) or "not a torch.save file"
            raise BadFileError(
                f"{path}: refusing to resume from this checkpoint: its pickle asks to run "
                f"code ({names}), which kdaug never writes. It was not made by this "
                "pipeline; inspect it, then delete it"
            ) from None  # not torch's advice to load it with weights_only=False
        set_aside(path, "cannot be read safely (an older kdaug version's, or damaged)", log)
        return None
    except Exception as e:  # torch raises RuntimeError, EOFError, KeyError... on damage
        set_aside(path, f"is unreadable ({type(e).__name__}: {str(e)[:200]})", log)
        return None
    if not isinstance(saved, dict) or saved.get("format") != CHECKPOINT_FORMAT:
        set_aside(path, "is not a checkpoint of this kdaug version", log)
        return None
    return saved


def foreign_globals(path: Path) -> list[str] | None:
    """The globals (importable names: classes, functions) a ``torch.save`` file's pickle
    asks for beyond what ``weights_only`` allows, other than kdaug's own; None when the
    file is not a ``torch.save`` archive. Read from the pickle's opcodes, run nothing."""
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:
        return None
    return [n for n in names if not n.startswith("kdaug.")]


def fit(
    model: nn.Module,
    train: DeviceData,
    val: DeviceData | None,
    *,
    recipe: Recipe,
    augmentation: AnyAugmentation,
    loss_fn: LossFn,
    seed: int,
    teacher: AnyTeacher | None = None,
    checkpoint: Path | None = None,
    fingerprint: str = "",
    log: Callable[[str], None] = lambda s: print(s, file=sys.stderr, flush=True),
    speed: Speed | None = None,
) -> TrainState:
    """Train ``model`` in place for ``recipe.epochs`` and return the final state.

    With ``checkpoint`` set, an atomic checkpoint is written every
    ``recipe.checkpoint_every`` epochs, and an existing checkpoint whose ``fingerprint``
    matches (same cell, same code) is resumed from; a mismatching one is ignored, an
    unreadable one set aside (:func:`read_checkpoint`).
    ``speed`` (default: float32, plain layout, eager) says how steps run on the device.
    A KD method with trainable parts (an ``nn.Module`` ``loss_fn``, on the model's device)
    is optimised with the model and checkpointed with it; its initialisation stage, if
    any, runs first (:func:`run_init_stage`) and is checkpointed as done.

    Raises :class:`TrainingDivergedError` when an epoch's train loss is non-finite or far above
    its starting value (:data:`DIVERGENCE_FACTOR`): a blown-up model is never returned.
    """
    device = train.labels.device
    speed = (speed or Speed("fp32", "off", "off")).resolve(device)
    speed = speed.clear_of_cpu_layout_hazards(device, model, loss_fn, log=log)
    forward = speed.prepare(model)
    if isinstance(teacher, nn.Module):
        speed.lay_out(teacher)  # the teacher runs eagerly, under no_grad
    log(f"device {device}: precision {speed.precision}, channels_last {speed.channels_last}, "
        f"compile {speed.compile}")  # fmt: skip
    optimizer = torch.optim.SGD(
        trained_parameters(model, loss_fn),
        lr=recipe.lr,
        momentum=recipe.momentum,
        weight_decay=recipe.weight_decay,
        nesterov=recipe.nesterov,
    )
    scheduler = torch.optim.lr_scheduler.MultiStepLR(
        optimizer, milestones=list(recipe.milestones), gamma=recipe.gamma
    )
    method = loss_fn if isinstance(loss_fn, nn.Module) else None
    state = TrainState()
    saved = read_checkpoint(checkpoint, log) if checkpoint and checkpoint.exists() else None
    if saved is not None and saved.get("fingerprint") == fingerprint:
        model.load_state_dict(saved["model"])
        if method is not None:
            method.load_state_dict(saved["method"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        state = TrainState.from_dict(saved["state"])
        log(f"resumed from {checkpoint} after epoch {state.epoch}")
    elif saved is not None:
        log(f"ignoring {checkpoint}: it was made by a different cell or code version")

    def save(state: TrainState) -> None:
        if checkpoint is None:
            return
        payload = {
            "format": CHECKPOINT_FORMAT,
            "fingerprint": fingerprint,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "state": copy.deepcopy(state.to_dict()),
        }
        if method is not None:
            payload["method"] = method.state_dict()
        save_checkpoint(checkpoint, payload)

    stage: InitStage | None = getattr(loss_fn, "init_stage", None)
    if stage is not None and state.epoch == 0 and state.init_losses is None:
        log(f"initialisation stage: {stage.epochs} epochs")
        state.init_losses = run_init_stage(
            model, stage, train, recipe=recipe, augmentation=augmentation, teacher=teacher,
            seed=seed, speed=speed, log=log,
        )  # fmt: skip
        save(state)

    start_time = time.monotonic()
    start_epoch = state.epoch
    for epoch in range(state.epoch, recipe.epochs):
        tic = time.monotonic()
        rng = seed_epoch(seed, epoch)
        row: dict[str, float] = {"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"]}
        progress = EpochProgress(epoch, recipe.epochs, log)
        row |= train_one_epoch(
            model,
            optimizer,
            train,
            augmentation,
            loss_fn,
            teacher,
            rng,
            recipe.batch_size,
            progress,
            speed,
            forward,
            recipe.grad_clip,
            recipe.steps_per_epoch,
        )
        first_loss = row.pop("first_loss")
        reference = max(math.log(train.num_classes), first_loss)
        if state.first_loss is None:
            state.first_loss = first_loss
            log(f"divergence check: a train loss above {DIVERGENCE_FACTOR * reference:.4g} "
                f"stops the run ({DIVERGENCE_FACTOR:g} x max(log {train.num_classes} classes, "
                f"first step's loss {first_loss:.4g}))")  # fmt: skip
        reference = max(math.log(train.num_classes), state.first_loss)
        why = divergence(row, reference if math.isfinite(reference) else math.inf)
        if why:
            raise TrainingDivergedError(
                f"training diverged in epoch {epoch + 1} ({why}): lower the recipe's lr "
                f"(now {recipe.lr:g}) or set its grad_clip (now {recipe.grad_clip})"
            )
        scheduler.step()
        if val is not None and len(val):
            metrics = evaluate(model, val)
            row |= {"val_loss": metrics["loss"], "val_accuracy": metrics["accuracy"]}
            if metrics["accuracy"] > state.best_val_accuracy:
                state.best_val_accuracy = metrics["accuracy"]
                state.best_val_epoch = epoch + 1
                state.best_val_state = cpu_state(model)
        row["seconds"] = time.monotonic() - tic
        state.history.append(row)
        state.epoch = epoch + 1
        done = state.epoch - start_epoch
        eta = (time.monotonic() - start_time) / done * (recipe.epochs - state.epoch)
        log(
            f"epoch {state.epoch}/{recipe.epochs} "
            + " ".join(f"{k}={v:.4g}" for k, v in row.items() if k != "epoch")
            + f" eta={eta:.0f}s"
        )
        if state.epoch % recipe.checkpoint_every == 0 or state.epoch == recipe.epochs:
            save(state)
    return state
