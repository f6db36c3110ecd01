"""Intermediate features of every model (``Classifier.forward_features``): RepDistiller's
stage maps, the embedding and the logits from one pass, pre-activation maps, and no side
effects on the network (same logits, same BatchNorm running statistics as ``forward``)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from kdaug.models import MODELS, build_model

# (channels, side) of [stem, stage maps...] at 32x32 and full width; the embedding is the
# model's embedding_dim. RepDistiller's ``is_feat=True`` shapes for its zoo.
SHAPES = {
    "resnet8": [(16, 32), (16, 32), (32, 16), (64, 8)],
    "resnet8x4": [(32, 32), (64, 32), (128, 16), (256, 8)],
    "wrn_40_2": [(16, 32), (32, 32), (64, 16), (128, 8)],
    "vgg8": [(64, 32), (128, 16), (256, 8), (512, 4), (512, 4)],
    "MobileNetV2": [(16, 16), (12, 16), (16, 8), (48, 4), (160, 2)],
    "ShuffleV1": [(24, 32), (240, 16), (480, 8), (960, 4)],
    "ShuffleV2": [(24, 32), (116, 16), (232, 8), (464, 4)],
    "ResNet50": [(64, 32), (256, 32), (512, 16), (1024, 8), (2048, 4)],
    "resnet18": [(64, 32), (64, 32), (128, 16), (256, 8), (512, 4)],
    "lenet": [(6, 28), (16, 10)],
    "alexnet": [(64, 8), (192, 4), (384, 2), (256, 2), (256, 2)],
}
WIDTH = 0.25  # the consistency checks run at a quarter width (fast)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: one thread is faster, and much faster on a shared, loaded machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def small(name: str, width: float = WIDTH) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(name, num_classes=10, width=width)


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_stage_shapes_are_repdistillers(name: str) -> None:
    model = small(name, width=1.0).eval()
    with torch.no_grad():
        feats, logits = model.forward_features(torch.randn(2, 3, 32, 32))
    got = [(f.shape[1], f.shape[2]) for f in feats[:-1]]
    assert got == SHAPES[name]
    assert all(f.shape[2] == f.shape[3] for f in feats[:-1])
    assert feats[-1].shape == (2, model.embedding_dim)
    assert logits.shape == (2, 10)


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("preact", [False, True])
def test_one_pass_gives_what_forward_gives(name: str, preact: bool) -> None:
    """Same logits and embedding as forward, and BatchNorm statistics moved exactly once."""
    model = small(name).train()
    twin = copy.deepcopy(model)
    x = torch.randn(3, 3, 32, 32)
    feats, logits = model.forward_features(x, preact=preact)
    torch.testing.assert_close(logits, twin(x), rtol=0, atol=0)
    torch.testing.assert_close(model.state_dict(), twin.state_dict(), rtol=0, atol=0)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model.forward_features(x)[0][-1], model.embed(x))
    assert len(feats) == len(model.feature_cuts) + 1
    assert all(f.dim() == 4 for f in feats[:-1])


@pytest.mark.parametrize("name", sorted(MODELS))
def test_preact_maps_are_the_maps_before_their_relu(name: str) -> None:
    """relu(pre-activation map) = the map itself; the pre-activation map has negative
    values where the network has them (a WRN's is the next BatchNorm's output)."""
    model = small(name).eval()
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        post, _ = model.forward_features(x)
        pre, _ = model.forward_features(x, preact=True)
    torch.testing.assert_close(pre[0], post[0])  # the stem map is post-activation
    torch.testing.assert_close(pre[-1], post[-1])
    for p, q in zip(pre[1:-1], post[1:-1], strict=True):
        assert p.shape == q.shape
        if name.startswith("wrn"):
            assert not torch.equal(p, q)
        elif name == "MobileNetV2":  # linear bottlenecks: no ReLU at a stage's end
            torch.testing.assert_close(p, q)
        else:
            torch.testing.assert_close(F.relu(p), q)
            assert (p < 0).any()
