"""The training engine: it learns, seeds repeat, a resumed run equals an uninterrupted one."""

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from kdaug.data.canonical import Split
from kdaug.train.augment import build_augmentation
from kdaug.train.engine import DeviceData, Recipe, batches, evaluate, fit
from kdaug.train.losses import CrossEntropy, HintonKD


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
            nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Dropout(0.1), nn.Linear(16, 3),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def toy_data(n: int = 60) -> DeviceData:
    rng = np.random.default_rng(0)
    labels = np.arange(n) % 3
    images = rng.integers(0, 60, (n, 1, 8, 8)).astype(np.uint8)
    for k in range(3):  # class k is bright in band k: learnable
        images[labels == k, :, 2 * k : 2 * k + 3, :] += 180
    split = Split(images, labels.astype(np.int64), ("a", "b", "c"))
    return DeviceData.from_split(split, [0.3], [0.3], torch.device("cpu"))


RECIPE = Recipe(epochs=6, batch_size=16, lr=0.1, milestones=(4,), checkpoint_every=2)
AUG = build_augmentation("crop_mix", [{"op": "crop", "padding": 1}, {"op": "mixup"}])


def run(tmp: Path | None, epochs: int = 6, seed: int = 0) -> tuple[nn.Module, object]:
    torch.manual_seed(seed)
    model = Tiny()
    recipe = Recipe(**{**RECIPE.__dict__, "epochs": epochs})
    state = fit(
        model, toy_data(), toy_data(), recipe=recipe, augmentation=AUG, loss_fn=CrossEntropy(),
        seed=seed, checkpoint=tmp, fingerprint="f", log=lambda s: None,
    )  # fmt: skip
    return model, state


def test_training_learns_the_toy_task() -> None:
    data = toy_data()
    torch.manual_seed(0)
    before = evaluate(Tiny(), data)["accuracy"]
    model, state = run(None)
    assert evaluate(model, data)["accuracy"] > max(before, 0.8)
    assert [row["epoch"] for row in state.history] == list(range(1, 7))
    assert state.history[-1]["lr"] == pytest.approx(0.01)  # decayed after epoch 4


def test_same_seed_same_weights_other_seed_other_weights() -> None:
    a, _ = run(None, seed=1)
    b, _ = run(None, seed=1)
    c, _ = run(None, seed=2)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_resumed_run_ends_with_the_uninterrupted_weights(tmp_path: Path) -> None:
    ckpt = tmp_path / "model.pt.ckpt"
    full, full_state = run(None)
    run(ckpt, epochs=4)  # "killed" after epoch 4: its checkpoint says 4 epochs done
    saved = torch.load(ckpt, weights_only=True)  # plain values and tensors only
    assert saved["state"]["epoch"] == 4
    resumed, state = run(ckpt, epochs=6)
    for k, v in full.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[k], v, rtol=0, atol=0, msg=k)
    assert [r["epoch"] for r in state.history] == list(range(1, 7))
    assert state.best_val_epoch == full_state.best_val_epoch


def test_checkpoint_with_other_fingerprint_is_ignored(tmp_path: Path) -> None:
    ckpt = tmp_path / "c.ckpt"
    run(ckpt, epochs=2)
    torch.manual_seed(0)
    logs: list[str] = []
    fit(
        Tiny(), toy_data(), None, recipe=Recipe(epochs=1, batch_size=16, lr=0.1),
        augmentation=AUG, loss_fn=CrossEntropy(), seed=0, checkpoint=ckpt,
        fingerprint="other", log=logs.append,
    )  # fmt: skip
    assert any("ignoring" in line for line in logs)


def test_student_training_with_a_frozen_teacher_runs() -> None:
    teacher, _ = run(None, epochs=2)
    teacher.eval()
    torch.manual_seed(0)
    student = Tiny()
    state = fit(
        student, toy_data(), toy_data(), recipe=Recipe(epochs=2, batch_size=16, lr=0.05),
        augmentation=build_augmentation("none", []), loss_fn=HintonKD(4.0, 0.5), seed=0,
        teacher=teacher, log=lambda s: None,
    )  # fmt: skip
    assert np.isfinite(state.history[-1]["train_loss"])


def test_batches_cover_the_epoch_and_drop_a_single_leftover() -> None:
    rng = np.random.default_rng(0)
    chunks = batches(33, 16, rng)
    assert [len(c) for c in chunks] == [16, 16]
    chunks = batches(34, 16, np.random.default_rng(0))
    assert sorted(np.concatenate(chunks)) == list(range(34))


def test_recipe_rejects_unknown_keys() -> None:
    with pytest.raises(ValueError, match="unknown recipe keys \\['epoch'\\]"):
        Recipe.from_config({"epoch": 3, "batch_size": 2, "lr": 0.1})


def _train_with(speed, epochs: int = 2, dropout: bool = True):
    from kdaug.train.engine import Speed

    torch.manual_seed(0)
    model = Tiny()
    if not dropout:
        model.net[5] = nn.Identity()
    fit(
        model, toy_data(), None, recipe=Recipe(epochs=epochs, batch_size=16, lr=0.1),
        augmentation=AUG, loss_fn=CrossEntropy(), seed=0, log=lambda s: None,
        speed=Speed(*speed) if speed else None,
    )  # fmt: skip
    return model.state_dict()


def test_speed_auto_is_float32_channels_last_on_the_cpu() -> None:
    from kdaug.train.engine import Speed

    # channels_last: faster on the CPU for every model here (docs/cpu_knobs.md); bf16: slower
    assert Speed().resolve(torch.device("cpu")) == Speed("fp32", "on", "off")
    assert Speed.from_config({"precision": "bf16", "threads": 2}).precision == "bf16"
    explicit, auto = _train_with(("fp32", "on", "off")), _train_with(("auto", "auto", "off"))
    for k, v in explicit.items():
        assert torch.equal(auto[k], v), k


def test_channels_last_stays_off_on_the_cpu_for_a_narrow_strided_1x1_convolution() -> None:
    """torch 2.14.1's channels_last backward of a 1x1 stride-2 conv with 2-7 input channels
    corrupts the heap on the CPU (crashed CI's ResNet-8 at width 0.25): such a model trains
    in NCHW, others keep the faster layout, and the log says why."""
    from kdaug.models import build_model
    from kdaug.train.engine import Speed, cpu_channels_last_hazards

    narrow = build_model("resnet8", num_classes=10, in_channels=1, image_size=32, width=0.25)
    wide = build_model("resnet8", num_classes=10, in_channels=1, image_size=32, width=0.5)
    hazards = cpu_channels_last_hazards(narrow, None)
    assert hazards and all(".shortcut." in name for name in hazards)
    fine = (wide, nn.Conv2d(4, 8, 3, stride=2), nn.Conv2d(1, 8, 1, stride=2))
    assert cpu_channels_last_hazards(*fine) == []
    assert cpu_channels_last_hazards(nn.Conv2d(7, 8, 1, stride=(1, 4))) == ["Conv2d"]
    said: list[str] = []
    on = Speed("fp32", "on", "off")
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert on.clear_of_cpu_layout_hazards(cpu, narrow, log=said.append).channels_last == "off"
    assert "channels_last off" in said[0] and hazards[0] in said[0]
    assert on.clear_of_cpu_layout_hazards(cpu, wide, log=said.append) is on
    assert on.clear_of_cpu_layout_hazards(cuda, narrow, log=said.append) is on
    assert len(said) == 1
    # ... and the batch follows the model: a crop's NHWC gather of 1-channel images has
    # strides that read as channels_last, which made convolutions pick those kernels
    gathered = torch.arange(2 * 8 * 8.0).view(2, 8, 8, 1).permute(0, 3, 1, 2)
    nchw = Speed("fp32", "off", "off").lay_out_input(gathered)
    assert nchw.stride() == (64, 64, 8, 1) and torch.equal(nchw, gathered)
    rgb = torch.zeros(2, 3, 8, 8)
    assert Speed("fp32", "off", "off").lay_out_input(rgb) is rgb
    assert on.lay_out_input(rgb).is_contiguous(memory_format=torch.channels_last)


def test_channels_last_and_bf16_change_rounding_not_the_computation() -> None:
    reference = _train_with(("fp32", "off", "off"))
    for speed, tol in ((("fp32", "on", "off"), 1e-4), (("bf16", "off", "off"), 0.1)):
        other = _train_with(speed)
        for k, v in reference.items():
            if v.is_floating_point():
                torch.testing.assert_close(other[k], v, rtol=tol, atol=tol, msg=f"{speed} {k}")
        if speed[0] == "bf16":  # autocast really ran: the rounding differs somewhere
            assert any(not torch.equal(other[k], v) for k, v in reference.items())


def test_compiled_training_step_matches_eager() -> None:
    # without dropout: compiled code draws its masks from another RNG stream
    reference = _train_with(("fp32", "off", "off"), epochs=1, dropout=False)
    compiled = _train_with(("fp32", "off", "default"), epochs=1, dropout=False)
    for k, v in reference.items():
        if v.is_floating_point():
            torch.testing.assert_close(compiled[k], v, rtol=1e-4, atol=1e-4, msg=k)


def test_divergence_stops_training_with_a_clear_error() -> None:
    torch.manual_seed(0)
    with pytest.raises(FloatingPointError, match=r"diverged in epoch \d.*grad_clip"):
        fit(
            Tiny(), toy_data(), None, recipe=Recipe(epochs=2, batch_size=16, lr=1e6),
            augmentation=AUG, loss_fn=CrossEntropy(), seed=0, log=lambda s: None,
        )  # fmt: skip


def test_gradient_clipping_bounds_each_step() -> None:
    # one step of plain SGD (no momentum, no decay) moves the weights by lr * clipped grad
    data = toy_data()
    recipe = Recipe(epochs=1, batch_size=60, lr=1.0, momentum=0.0, weight_decay=0.0,
                    grad_clip=1e-3)  # fmt: skip
    torch.manual_seed(0)
    model = Tiny()
    model.net[5] = nn.Identity()
    before = [p.detach().clone() for p in model.parameters()]
    fit(model, data, None, recipe=recipe, augmentation=build_augmentation("none", []),
        loss_fn=CrossEntropy(), seed=0, log=lambda s: None)  # fmt: skip
    step = torch.cat(
        [(p.detach() - b).flatten() for p, b in zip(model.parameters(), before, strict=True)]
    )
    assert step.norm().item() == pytest.approx(1e-3, rel=1e-3)


def test_steps_per_epoch_trains_on_the_first_batches_only() -> None:
    for steps, expected in ((2, [16, 16]), (None, [16, 16, 16, 12])):
        sizes: list[int] = []

        def counting(logits, targets, teacher_logits, sizes=sizes):
            sizes.append(len(logits))
            return CrossEntropy()(logits, targets, teacher_logits)

        torch.manual_seed(0)
        recipe = Recipe(epochs=1, batch_size=16, lr=0.1, steps_per_epoch=steps)
        fit(Tiny(), toy_data(), None, recipe=recipe, augmentation=AUG, loss_fn=counting,
            seed=0, log=lambda s: None)  # fmt: skip
        assert sizes == expected
