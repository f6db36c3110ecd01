"""Issue 15's protocol settings: each default is what produced the papers' numbers, and
each is a config value (per-architecture student lr, full training set, Tiny ImageNet's
augmentation, the MNIST protocol's CutMix)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import torch
import yaml

from kdaug import plan, render
from kdaug.data.canonical import load_split, save_split
from kdaug.data.datasets import build_split
from kdaug.train.augment import augmentation_from_spec
from kdaug.train.training import train_cell

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


# ------------------------------------------------------------- 2. full training set

DIGITS_FULL = {
    "image_size": 32,
    "test_size": 360,
    "val_size": 0,
    "split_seed": 0,
    "shift": {"seed": 1, "contrast": 0.6, "noise_std": 24.0},
}


def test_paper_datasets_train_on_the_full_training_set(config: dict) -> None:
    for name in ("cifar10", "cifar100", "tiny_imagenet", "mnist"):
        assert config["datasets"][name]["val_size"] == 0, name
    assert config["evaluation"]["selections"] == ["last"]


def test_val_size_0_keeps_every_training_image_and_an_empty_val(tmp_path: Path) -> None:
    train = build_split("digits", "train", {}, DIGITS_FULL)
    val = build_split("digits", "val", {}, DIGITS_FULL)
    test = build_split("digits", "test", {}, DIGITS_FULL)
    assert (len(train), len(val), len(test)) == (1797 - 360, 0, 360)
    assert val.images.shape == (0, *train.images.shape[1:]) and val.labels.dtype == np.int64
    assert "no holdout" in train.provenance["subset"] and "empty" in val.provenance["subset"]
    # The empty split is a file like any other (the val input of every training job).
    save_split(tmp_path / "val.npz", val)
    back = load_split(tmp_path / "val.npz")
    assert len(back) == 0 and back.class_names == train.class_names


def test_training_with_an_empty_val_split_writes_last_weights(tmp_path: Path) -> None:
    """One short teacher run on the full digits training set: validation is skipped, and
    the model file says no epoch was validated."""
    for split in ("train", "val"):
        save_split(tmp_path / f"{split}.npz", build_split("digits", split, {}, DIGITS_FULL))
    spec = {
        "role": "teacher",
        "dataset": "digits",
        "seed": 0,
        "arch": {"name": "lenet", "model": "lenet", "width": 1.0},
        "augmentation": {"name": "none", "steps": []},
        "recipe": {"epochs": 1, "batch_size": 64, "lr": 0.05, "steps_per_epoch": 2},
        "normalization": {"mean": [0.3053], "std": [0.3760]},
    }
    out = tmp_path / "model.pt"
    state = train_cell(
        spec, train_path=str(tmp_path / "train.npz"), val_path=str(tmp_path / "val.npz"),
        output=str(out), threads=1,
    )  # fmt: skip
    assert out.exists() and state.best_val_epoch == 0
    assert "val_accuracy" not in state.history[0]


def demo_with(**datasets_and_selections: object) -> dict:
    config = plan.load_layered_config([ROOT / "config/config.yaml", ROOT / "config/demo.yaml"])
    plan.merge_config(config, datasets_and_selections)
    return config


def test_best_val_without_a_holdout_is_a_config_error(config: dict) -> None:
    config["evaluation"]["selections"] = ["last", "best_val"]
    with pytest.raises(plan.ConfigError, match=r"best_val needs a validation holdout.*cifar10"):
        plan.check_config(config)
    no_val = {"datasets": {"digits": {"val_size": 0}}}
    plan.check_config(demo_with(**no_val))  # last only: fine
    with pytest.raises(plan.ConfigError, match=r"datasets\.digits\.val_size is 0"):
        plan.check_config(demo_with(**no_val, evaluation={"selections": ["best_val"]}))


@pytest.mark.workflow
def test_demo_with_val_size_0_plans(tmp_path: Path) -> None:
    """The demo's MNIST-protocol experiment without a holdout plans end to end (dry run)."""
    for name in ("Snakefile", "config", "workflow", "envs"):
        (shutil.copytree if (ROOT / name).is_dir() else shutil.copy)(ROOT / name, tmp_path / name)
    layer = tmp_path / "config/no_val.yaml"
    layer.write_text("datasets:\n  digits_mnist:\n    val_size: 0\n")
    snakemake = str(Path(sys.executable).with_name("snakemake"))
    args = ["-n", "--cores", "2", "--configfile", "config/demo.yaml", "config/no_val.yaml"]
    proc = subprocess.run(
        [snakemake, *args, "--config", "run=[das2020_digits_mnist]"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "results/data/digits_mnist/val.npz" in proc.stdout
    assert re.search(r"train_teacher\s+3\b", proc.stdout)


# ------------------------------------------------------------- 3. Tiny ImageNet's DA


def tiny_imagenet_augmentations(config: dict) -> set[str]:
    names: set[str] = set()
    for exp in config["experiments"].values():
        if exp["dataset"] == "tiny_imagenet":
            names |= {*exp["teachers"]["augmentations"], *exp["students"]["augmentations"]}
    return names


def test_tiny_imagenet_runs_wangs_schemes_with_padding_8_and_the_imagenet_policy(
    config: dict,
) -> None:
    used = tiny_imagenet_augmentations(config)
    assert "append_autoaugment" in used and "standard" in used
    for name in used:
        spec = plan.teacher_spec(config, "tiny_imagenet", 0, "resnet56", name)["augmentation"]
        steps = spec["steps"] + spec.get("append", [])
        assert {s["padding"] for s in steps if s["op"] == "crop"} == {8}, name
        assert {s["policy"] for s in steps if s["op"] == "autoaugment"} <= {"imagenet"}, name
        assert {s["size"] for s in steps if s["op"] == "cutout"} <= {16}, name
    # x' draws stay the code's: per batch, CutMix without self-pairs.
    auto = plan.teacher_spec(config, "tiny_imagenet", 0, "resnet56", "append_autoaugment")
    assert auto["augmentation"]["append"] == [
        {"op": "autoaugment", "policy": "imagenet", "per": "batch"}
    ]
    cutmix = plan.teacher_spec(config, "tiny_imagenet", 0, "resnet56", "append_cutmixpick_t")
    assert cutmix["augmentation"]["append"][0]["self_pairs"] is False
    assert cutmix["augmentation"]["pick"] == {"by": "teacher", "pool": 2, "keep": 0.5}


def test_cifar100_keeps_its_own_settings(config: dict) -> None:
    spec = plan.teacher_spec(config, "cifar100", 0, "resnet56", "append_autoaugment")
    assert spec["augmentation"]["steps"][0] == {"op": "crop", "padding": 4}
    assert spec["augmentation"]["append"][0]["policy"] == "cifar10"


def test_the_tiny_imagenet_x_prime_runs_on_64x64_batches(config: dict) -> None:
    spec = plan.student_spec(
        config, "tiny_imagenet", 0, "resnet56", "standard", "kd_t4", "resnet20",
        "append_autoaugment",
    )  # fmt: skip
    aug = augmentation_from_spec(spec["augmentation"])
    x = torch.rand(8, 3, 64, 64)
    out, _ = aug.extra.pixel_stage(x, torch.zeros(8, 200), np.random.default_rng(0))
    assert out.shape == x.shape


def test_a_datasets_own_augmentations_do_not_rebuild_its_splits(config: dict) -> None:
    assert "augmentations" not in plan.dataset_params(config, "tiny_imagenet", "train")


def test_a_datasets_own_augmentation_must_name_a_method_of_the_same_kind(config: dict) -> None:
    own = config["datasets"]["tiny_imagenet"]["augmentations"]
    own["crop_flip_64"] = [{"op": "crop", "padding": 8}]
    with pytest.raises(plan.ConfigError, match=r"augmentations\.crop_flip_64: no augmentation"):
        plan.check_config(config)
    del own["crop_flip_64"]
    own["append_mixup"] = [{"op": "mixup"}]
    with pytest.raises(plan.ConfigError, match=r"append_mixup: does not append a copy x'"):
        plan.check_config(config)
    own["append_mixup"] = {"steps": [], "append": [{"op": "mixup", "alpah": 1.0}]}
    with pytest.raises(
        plan.ConfigError,
        match=r"datasets\.tiny_imagenet\.augmentations\.append_mixup\.append\[0\]: op 'mixup' "
        "has no parameter 'alpah'",
    ):
        plan.check_augmentation_ops(config)


def test_the_schema_takes_a_datasets_own_augmentations(config: dict) -> None:
    schema = yaml.safe_load((ROOT / "config/schema.yaml").read_text())
    jsonschema.validate(config, schema)
    config["datasets"]["tiny_imagenet"]["augmentations"]["standard"] = [{"op": "crop", "pad": 8}]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(config, schema)


# ------------------------------------------------------------- 4. the MNIST protocol


def test_mnist_cutmix_runs_without_crop_or_flip_and_cifar10s_keeps_them(config: dict) -> None:
    for dataset in ("mnist", "fashion_mnist"):
        spec = plan.teacher_spec(config, dataset, 0, "alexnet", "cutmix")["augmentation"]
        assert [s["op"] for s in spec["steps"]] == ["cutmix"], dataset
    cifar = plan.teacher_spec(config, "cifar10", 0, "resnet18", "cutmix")["augmentation"]
    assert [s["op"] for s in cifar["steps"]] == ["crop", "flip", "cutmix"]


def cutmix_ops(config: dict, dataset: str) -> list[str]:
    spec = plan.teacher_spec(config, dataset, 0, "alexnet", "cutmix")
    return [step["op"] for step in spec["augmentation"]["steps"]]


def test_demo_mnist_protocol_cutmix_has_no_crop_and_the_main_grids_has() -> None:
    demo = plan.load_layered_config([ROOT / "config/config.yaml", ROOT / "config/demo.yaml"])
    mnist = demo["experiments"]["das2020_digits_mnist"]["dataset"]
    main = demo["experiments"]["das2020_digits"]["dataset"]
    assert cutmix_ops(demo, mnist) == ["cutmix"]
    assert cutmix_ops(demo, main) == ["crop", "cutmix"]


def test_mnist_rows_and_claims_still_find_cutmix() -> None:
    """Tables, the paper's Table 3 values and the claims select the teacher augmentation by
    name: the MNIST experiments still call theirs cutmix."""
    claims = yaml.safe_load((ROOT / "src/kdaug/papers/claims/das2020.yaml").read_text())
    mnist_claims = [c for c in claims if c["report"] == "das2020_mnist"]
    wanted = {side["teacher_aug"] for c in mnist_claims for side in (c["a"], c["b"])}
    values = yaml.safe_load((ROOT / "src/kdaug/papers/values/das2020.yaml").read_text())
    assert "cutmix" in wanted and "cutmix" in values["tables"]["table3_mnist"]["values"]
    for layers in ([], ["config/demo.yaml"], ["config/fashion.yaml"]):
        paths = [ROOT / "config/config.yaml", *(ROOT / layer for layer in layers)]
        for exp in plan.load_layered_config(paths)["experiments"].values():
            if exp["report"] == "das2020_mnist":
                assert wanted <= set(exp["teachers"]["augmentations"])


# ------------------------------------------------------------- 5. which reading ran


def test_each_experiment_says_how_it_was_trained(config: dict) -> None:
    choi = plan.experiment_view(config, "choi2023_partial_mixup")["protocol"]
    assert choi["training set"] == "all of cifar100's training images"
    assert choi["pmu10_a10"].endswith("mixup(alpha 1.0, fraction 0.1, reading official_code)")
    wang = plan.experiment_protocol(config, "wang2022_tiny_imagenet_da")
    assert wang["append_autoaugment"] == (
        "x: crop(padding 8) + flip(p 0.5); x': autoaugment(policy imagenet, per batch)"
    )
    assert wang["append_cutmixpick_s"].endswith(
        "cutmix(alpha 1.0, self_pairs False), keep the 0.5 of highest student entropy of 2 draws"
    )
    assert "ShuffleV2 0.01" in wang["student lr"] and "resnet20 0.05" in wang["student lr"]
    assert (
        plan.experiment_protocol(config, "das2020_mnist")["cutmix"] == "cutmix(alpha 1.0, prob 0.5)"
    )
    demo = plan.load_layered_config([ROOT / "config/config.yaml", ROOT / "config/demo.yaml"])
    held = plan.experiment_protocol(demo, "das2020_digits")["training set"]
    assert held == "digits's training images less a validation holdout of 144"


def test_report_captions_show_the_protocol(config: dict) -> None:
    caption = render.report_caption(
        config, "choi2023_partial_mixup", "last", "table4_partial_mixup"
    )
    assert "As run: training set: all of cifar100's training images" in caption.shows
    assert "reading official_code" in caption.shows
