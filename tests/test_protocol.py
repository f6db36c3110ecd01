"""Issue 15's protocol settings: each default is what produced the papers' numbers, and
each is a config value (per-architecture student lr, full training set, Tiny ImageNet's
augmentation, the MNIST protocol's CutMix)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kdaug import plan

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def config() -> dict:
    """The paper config (config/config.yaml alone)."""
    return plan.load_layered_config([ROOT / "config/config.yaml"])


# ------------------------------------------------------------- 1. per-architecture lr


def student(config: dict, sarch: str, kd: str = "kd_t4", dataset: str = "cifar100") -> dict:
    return plan.student_spec(config, dataset, 0, "resnet32x4", "standard", kd, sarch, "standard")


def test_mobilenet_and_shufflenet_students_train_at_repdistillers_lr(config: dict) -> None:
    for sarch in ("MobileNetV2", "ShuffleV1", "ShuffleV2"):
        assert student(config, sarch)["recipe"]["lr"] == 0.01
        assert student(config, sarch, dataset="tiny_imagenet")["recipe"]["lr"] == 0.01
    for sarch in ("resnet8x4", "vgg8", "wrn_16_2"):
        assert student(config, sarch)["recipe"]["lr"] == 0.05


def test_student_lr_survives_prolonged_training_and_stays_out_of_the_arch(config: dict) -> None:
    spec = student(config, "ShuffleV2", kd="kd_t4_x4")
    assert spec["recipe"]["lr"] == 0.01 and spec["recipe"]["epochs"] == 960
    # The lr is the recipe's: the arch entry (and every other cell's spec) is unchanged.
    assert spec["arch"] == {"name": "ShuffleV2", "model": "ShuffleV2", "width": 1.0}


def test_student_lr_leaves_teachers_alone(config: dict) -> None:
    teacher = plan.teacher_spec(config, "cifar100", 0, "ShuffleV2", "standard")
    assert teacher["recipe"]["lr"] == 0.05
    assert "student_lr" not in teacher["arch"]
