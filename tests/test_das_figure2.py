"""Das et al.'s Figure 2: training images under each teacher augmentation, drawn by the
training code from the experiment's own augmentation entries."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kdaug import plan, render
from kdaug.data.canonical import Split, save_split
from kdaug.papers import das2020 as das

ROOT = Path(__file__).resolve().parents[1]
FIGURE = "figure2_augmentations"


@pytest.fixture(scope="module")
def config() -> dict:
    return plan.load_layered_config([ROOT / "config/config.yaml", ROOT / "config/demo.yaml"])


def rgb_split(path: Path, n: int = 60, classes: int = 10) -> Path:
    """Coloured squares on a grey ground, one colour per class (CIFAR-like: RGB, 32x32)."""
    rng = np.random.default_rng(0)
    labels = np.arange(n) % classes
    colours = rng.integers(0, 256, size=(classes, 3), dtype=np.uint8)
    images = np.full((n, 3, 32, 32), 90, dtype=np.uint8)
    for i, c in enumerate(labels):
        x, y = rng.integers(2, 16, size=2)
        images[i, :, y : y + 14, x : x + 14] = colours[c][:, None, None]
    save_split(path, Split(images, labels, tuple(f"class{c}" for c in range(classes))))
    return path


def test_the_figure_reads_the_training_split_so_snakemake_builds_it_first(config) -> None:
    inputs = render.figure_inputs(config, "das2020_digits", "last", FIGURE)
    assert inputs == {"outputs": ["results/data/digits/train.npz"]}
    files = plan.experiment_report_files(config, "das2020_digits")
    assert f"last/{FIGURE}.png" in files
    assert das.file_roles(FIGURE) == {"test"}  # reads no evaluation split: never left out


def test_every_op_of_a_shown_draw_changed_the_batch(config) -> None:
    exp = plan.experiment_view(config, "das2020_cifar10")
    pixels = np.random.default_rng(1).random((16, 3, 32, 32)).astype(np.float32)
    labels = np.arange(16) % 10
    spec = exp["augmentation_specs"]["cutmix"]  # crop + flip + CutMix at prob 0.5
    images, targets, seed = das.augmented_examples(spec, pixels, labels, 10, exp["normalization"])
    assert images.shape == pixels.shape and (targets.max(axis=1) < 1).any()  # CutMix ran
    assert seed < das.EXAMPLE_REDRAWS
    again = das.augmented_examples(spec, pixels, labels, 10, exp["normalization"])
    assert np.array_equal(again[0], images)  # a fixed seed: the same figure every time
    plain = das.augmented_examples(exp["augmentation_specs"]["none"], pixels, labels, 10,
                                   exp["normalization"])  # fmt: skip
    assert np.allclose(plain[0], pixels, atol=1e-6)  # mapped back to [0, 1] exactly


def test_target_text_names_the_mixed_classes() -> None:
    names = ["cat", "dog", "car"]
    assert das.target_text(np.array([0.0, 1.0, 0.0]), names) == "dog"
    assert das.target_text(np.array([0.62, 0.0, 0.38]), names) == "cat 0.62 + car 0.38"


@pytest.mark.parametrize("experiment", ["das2020_cifar10", "das2020_digits"])
def test_figure2_renders_from_a_split_file(config, experiment: str, tmp_path: Path) -> None:
    exp = plan.experiment_view(config, experiment)
    split = rgb_split(tmp_path / "train.npz")
    if experiment == "das2020_digits":  # one channel, as the demo's images
        from kdaug.data.canonical import load_split

        s = load_split(split)
        save_split(split, Split(s.images[:, :1].copy(), s.labels, s.class_names))
    exp["train_split"] = str(split)
    png = tmp_path / f"{experiment}.png"
    render.render_figure(None, exp, "last", FIGURE, [str(split)], png)
    assert png.read_bytes()[:4] == b"\x89PNG"
