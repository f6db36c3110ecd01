"""RepDistiller's CIFAR model zoo: published parameter counts, logits and embeddings at 32x32
and 64x64, 1-channel inputs, width scaling."""

from __future__ import annotations

import functools

import pytest
import torch

from kdaug.models import MODELS, Classifier, build_model, count_parameters

# DESIGN.md "CIFAR model zoo": millions of parameters at 100 classes, BN included
PUBLISHED_M = {
    "resnet8": 0.084, "resnet14": 0.181, "resnet20": 0.278, "resnet32": 0.473,
    "resnet44": 0.667, "resnet56": 0.862, "resnet110": 1.737, "resnet8x4": 1.234,
    "resnet32x4": 7.434, "wrn_16_2": 0.703, "wrn_40_2": 2.255, "vgg8": 3.965,
    "vgg13": 9.462, "MobileNetV2": 0.813, "ShuffleV1": 0.949, "ShuffleV2": 1.356,
    "ResNet50": 23.705,
}  # fmt: skip
UNPUBLISHED = ("wrn_16_1", "wrn_40_1", "vgg11", "vgg16", "vgg19")
ZOO = (*PUBLISHED_M, *UNPUBLISHED)


@functools.cache
def count(name: str, num_classes: int = 100, width: float = 1.0) -> int:
    """Parameter count of a fresh model (cached: several tests ask for the same one)."""
    return count_parameters(build_model(name, num_classes=num_classes, width=width))


def conv(cin: int, cout: int, k: int, bias: bool = False) -> int:
    return cin * cout * k * k + (cout if bias else 0)


def bn(c: int) -> int:
    return 2 * c


def linear(cin: int, cout: int) -> int:
    return cin * cout + cout


def wrn_by_hand(depth: int, widen: int, num_classes: int) -> int:
    """Stem, pre-activation blocks (1x1 shortcut where the width changes), BN, linear."""
    n, total, cin = (depth - 4) // 6, conv(3, 16, 3), 16
    for c in (16 * widen, 32 * widen, 64 * widen):
        for _ in range(n):
            total += bn(cin) + conv(cin, c, 3) + bn(c) + conv(c, c, 3)
            total += conv(cin, c, 1) if cin != c else 0
            cin = c
    return total + bn(cin) + linear(cin, num_classes)


def vgg_by_hand(widths: tuple[int, ...], num_classes: int) -> int:
    """3x3 convs with bias, each followed by BN, then one linear layer."""
    total, cin = 0, 3
    for c in widths:
        total += conv(cin, c, 3, bias=True) + bn(c)
        cin = c
    return total + linear(cin, num_classes)


VGG_WIDTHS = {
    "vgg8": (64, 128, 256, 512, 512),
    "vgg11": (64, 128, 256, 256, 512, 512, 512, 512),
    "vgg13": (64, 64, 128, 128, 256, 256, 512, 512, 512, 512),
    "vgg16": (64, 64, 128, 128, *(256,) * 3, *(512,) * 6),
    "vgg19": (64, 64, 128, 128, *(256,) * 4, *(512,) * 8),
}
WRN_SHAPES = {"wrn_16_1": (16, 1), "wrn_16_2": (16, 2), "wrn_40_1": (40, 1), "wrn_40_2": (40, 2)}


def test_every_zoo_name_is_registered() -> None:
    assert set(ZOO) <= set(MODELS.names())


@pytest.mark.parametrize(("name", "millions"), PUBLISHED_M.items())
def test_parameter_count_matches_the_published_one(name: str, millions: float) -> None:
    assert round(count(name) / 1e6, 3) == millions


def test_resnet20_at_10_classes_has_the_published_count() -> None:
    assert round(count("resnet20", num_classes=10) / 1e6, 3) == 0.272


@pytest.mark.parametrize("name", WRN_SHAPES)
def test_wrn_parameter_count_by_hand(name: str) -> None:
    assert count(name) == wrn_by_hand(*WRN_SHAPES[name], num_classes=100)


@pytest.mark.parametrize("name", VGG_WIDTHS)
def test_vgg_parameter_count_by_hand(name: str) -> None:
    assert count(name) == vgg_by_hand(VGG_WIDTHS[name], num_classes=100)


def check_logits_and_embedding(model: Classifier, x: torch.Tensor, num_classes: int) -> None:
    with torch.no_grad():
        logits, emb = model.forward_with_embedding(x)
        assert logits.shape == (x.shape[0], num_classes)
        assert emb.shape == (x.shape[0], model.embedding_dim)
        torch.testing.assert_close(model(x), logits)
        torch.testing.assert_close(model.fc(emb), logits)


@pytest.mark.parametrize("name", ZOO)
def test_logits_and_embedding_at_32_and_64_pixels(name: str) -> None:
    torch.manual_seed(0)
    model = build_model(name, num_classes=100).eval()
    check_logits_and_embedding(model, torch.randn(2, 3, 32, 32), 100)  # CIFAR
    with torch.no_grad():  # Tiny ImageNet: one pass, shapes only, to keep the test fast
        logits, emb = model.forward_with_embedding(torch.randn(2, 3, 64, 64))
    assert logits.shape == (2, 100)
    assert emb.shape == (2, model.embedding_dim)


@pytest.mark.parametrize("name", ZOO)
def test_grayscale_input_at_half_width(name: str) -> None:
    torch.manual_seed(0)
    model = build_model(name, num_classes=10, in_channels=1, width=0.5).eval()
    with torch.no_grad():
        logits, emb = model.forward_with_embedding(torch.randn(2, 1, 32, 32))
    assert logits.shape == (2, 10)
    assert emb.shape == (2, model.embedding_dim)


@pytest.mark.parametrize("name", ZOO)
def test_width_scales_the_model_down(name: str) -> None:
    assert count(name, width=0.5) < count(name) / 2.5
