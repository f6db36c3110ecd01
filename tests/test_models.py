"""The model zoo: shapes, embeddings, parameter counts against hand arithmetic."""

from __future__ import annotations

import pytest
import torch

from kdaug.models import MODELS, build_model, count_parameters

PAPER_GRID = ("resnet18", "lenet", "alexnet")


def conv(cin: int, cout: int, k: int, bias: bool = True) -> int:
    return cin * cout * k * k + (cout if bias else 0)


def linear(cin: int, cout: int) -> int:
    return cin * cout + cout


@pytest.mark.parametrize("name", PAPER_GRID)
def test_logits_and_embedding_shapes(name: str) -> None:
    torch.manual_seed(0)
    model = build_model(name, num_classes=10).eval()
    x = torch.randn(3, 3, 32, 32)
    logits, emb = model.forward_with_embedding(x)
    assert logits.shape == (3, 10)
    assert emb.shape == (3, model.embedding_dim)
    torch.testing.assert_close(model(x), logits)
    torch.testing.assert_close(model.fc(emb), logits)


def test_lenet_parameter_count_by_hand() -> None:
    # conv 3->6 5x5, conv 6->16 5x5, fc 16*5*5->120->84->10
    expected = conv(3, 6, 5) + conv(6, 16, 5) + linear(400, 120) + linear(120, 84) + linear(84, 10)
    assert expected == 62_006
    assert count_parameters(build_model("lenet", num_classes=10)) == expected


def test_alexnet_parameter_count_by_hand() -> None:
    expected = (
        conv(3, 64, 11) + conv(64, 192, 5) + conv(192, 384, 3) + conv(384, 256, 3)
        + conv(256, 256, 3) + linear(256, 10)
    )  # fmt: skip
    assert expected == 2_472_266
    assert count_parameters(build_model("alexnet", num_classes=10)) == expected


def test_resnet18_parameter_count_by_hand() -> None:
    def bn(c: int) -> int:
        return 2 * c

    def block(cin: int, cout: int) -> int:
        n = conv(cin, cout, 3, bias=False) + bn(cout) + conv(cout, cout, 3, bias=False) + bn(cout)
        if cin != cout:
            n += conv(cin, cout, 1, bias=False) + bn(cout)
        return n

    expected = conv(3, 64, 3, bias=False) + bn(64)
    for cin, cout in ((64, 64), (128, 128), (256, 256), (512, 512)):
        expected += block(cin // 2 if cin > 64 else 64, cout) + block(cout, cout)
    expected += linear(512, 10)
    # kuangliu/pytorch-cifar's ResNet18 reports 11,173,962 parameters
    assert expected == 11_173_962
    assert count_parameters(build_model("resnet18", num_classes=10)) == expected


@pytest.mark.parametrize("name", PAPER_GRID)
def test_width_scales_the_model_down(name: str) -> None:
    full = count_parameters(build_model(name, num_classes=10))
    half = count_parameters(build_model(name, num_classes=10, width=0.5))
    assert half < full / 2.5  # conv/linear weights scale roughly with width squared


@pytest.mark.parametrize("name", PAPER_GRID)
def test_grayscale_input_and_more_classes(name: str) -> None:
    model = build_model(name, num_classes=100, in_channels=1, width=0.25).eval()
    assert model(torch.zeros(2, 1, 32, 32)).shape == (2, 100)


@pytest.mark.parametrize(("name", "smallest"), [("lenet", 16), ("alexnet", 29)])
def test_too_small_images_are_refused_with_the_minimum(name: str, smallest: int) -> None:
    build_model(name, num_classes=10, image_size=smallest)(torch.zeros(1, 3, smallest, smallest))
    with pytest.raises(ValueError, match=f"at least {smallest}x{smallest}"):
        build_model(name, num_classes=10, image_size=smallest - 1)


def test_unknown_model_is_named_with_the_known_ones() -> None:
    with pytest.raises(KeyError, match="resnet1000"):
        build_model("resnet1000", num_classes=10)
    assert set(PAPER_GRID) <= set(MODELS.names())
