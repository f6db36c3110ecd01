"""Published ImageNet weights for the zoo's torchvision-architecture models.

Wang et al. (2022) and Choi et al. (2023) distil torchvision's pretrained ResNet34 on
ImageNet ("For ImageNet, we use torchvision models following CRD"). Nothing downloads
here: the weights file is read from a local path and checked as torchvision checks its
own downloads (``torch.hub.load_state_dict_from_url(check_hash=True)``): the file name
ends in ``-<first hex digits of its sha256>.pth``.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import torch
from torch import nn

HASH_IN_NAME = re.compile(r"-([a-f0-9]{8,})\.pth$")
TORCHVISION_URL = "https://download.pytorch.org/models/"


class WeightsFileError(ValueError):
    """A pretrained weights file that is missing, is not the one its name promises, or
    does not fit the model."""


def check_weights_file(path: str | os.PathLike[str], where: str) -> Path:
    """``path`` exists and its sha256 starts with the hex digits its name carries
    (torchvision's convention); ``where`` names the config key that gave it."""
    path = Path(path)
    match = HASH_IN_NAME.search(path.name)
    if match is None:
        raise WeightsFileError(
            f"{where}: {path}: not a torchvision weights file name (<name>-<sha256 prefix>.pth)"
        )
    if not path.is_file():
        raise WeightsFileError(
            f"{where}: {path} not found (fetch it from {TORCHVISION_URL}{path.name}, or set "
            f"{where} to null to train the teacher instead)"
        )
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if not digest.startswith(match.group(1)):
        raise WeightsFileError(
            f"{where}: {path}: sha256 {digest[:12]}... does not start with {match.group(1)} "
            "(a damaged or other file)"
        )
    return path


def load_torchvision_weights(model: nn.Module, path: str | os.PathLike[str]) -> None:
    """Load a torchvision ResNet state dict into ``model``, a zoo model of the same
    architecture (``resnet18_imagenet``, ``resnet34_imagenet``).

    The zoo names modules differently (``stem.0`` for ``conv1``, one flat ``layers`` list
    for ``layer1``-``layer4``, ``shortcut`` for ``downsample``) but registers the same
    tensors in the same order, so entries are matched by position and checked by their
    last name part (``weight``, ``running_mean``, ...) and shape."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    ours = model.state_dict()
    if len(state) != len(ours):
        raise WeightsFileError(
            f"{path}: {len(state)} tensors, the model has {len(ours)} (another architecture?)"
        )
    mapped = {}
    for (theirs, tensor), (name, own) in zip(state.items(), ours.items(), strict=True):
        if theirs.rsplit(".", 1)[-1] != name.rsplit(".", 1)[-1] or tensor.shape != own.shape:
            raise WeightsFileError(
                f"{path}: {theirs} {tuple(tensor.shape)} does not fit the model's {name} "
                f"{tuple(own.shape)}"
            )
        mapped[name] = tensor
    model.load_state_dict(mapped, strict=True)
