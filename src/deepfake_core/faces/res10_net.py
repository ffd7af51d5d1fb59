"""The res10 SSD face detector's network rebuilt in PyTorch from its Caffe files, so that OpenVINO (which no
longer reads Caffe models) can run it: the topology from deploy.prototxt, the weights read through cv2.dnn.
The network ends at the flattened box offsets and softmax scores; the prior boxes and the detection output
are computed in numpy (res10_post)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from .res10_post import param, read_layers

BN_EPS = 1e-5  # Caffe's BatchNorm default (the prototxt sets none)
NORMALIZE_EPS = 1e-10  # Caffe's Normalize default
HEAD_TYPES = {"PriorBox", "DetectionOutput"}  # computed after the network, in numpy


class Res10Net(nn.Module):
    """The prototxt's layers up to the detection output, run in order on named blobs. forward((1, 3, H, W)
    mean-subtracted BGR) -> (box offsets (1, P*4), softmax scores (1, P*2))."""

    def __init__(self, layers: list[dict], blobs: dict[str, list[np.ndarray]]):
        super().__init__()
        self.steps: list[tuple[str, str, list[str], str]] = []  # (type, module key, bottoms, top)
        self.ops = nn.ModuleDict()
        self.params: dict[str, dict] = {}
        self.outputs = ("mbox_loc", "mbox_conf_flatten")
        skipped: set[str] = set()  # the tops of the numpy head (priors, detections) and of what reads them
        for layer in layers:
            kind, name = layer["type"][0], layer["name"][0]
            if kind in HEAD_TYPES or kind == "Input" or skipped & set(layer.get("bottom", [])):
                skipped.update(layer.get("top", []))
                continue
            key = name.replace(".", "_")
            self.steps.append((kind, key, layer.get("bottom", []), layer["top"][0]))
            self.params[key] = layer
            if kind == "Convolution":
                self.ops[key] = _conv(param(layer, "convolution_param"), blobs[name])
            elif kind == "BatchNorm":
                mean, var, factor = (b.reshape(-1) for b in blobs[name][:3])
                f = 0.0 if factor[0] == 0 else 1.0 / factor[0]
                scale = 1.0 / np.sqrt(var * f + BN_EPS)
                self.register_buffer(f"{key}_scale", torch.from_numpy(scale).view(1, -1, 1, 1))
                self.register_buffer(f"{key}_shift", torch.from_numpy(-mean * f).view(1, -1, 1, 1))
            elif kind == "Scale":
                self.register_buffer(f"{key}_scale", torch.from_numpy(blobs[name][0].reshape(1, -1, 1, 1).copy()))
                bias = blobs[name][1] if len(blobs[name]) > 1 else np.zeros_like(blobs[name][0])
                self.register_buffer(f"{key}_shift", torch.from_numpy(bias.reshape(1, -1, 1, 1).copy()))
            elif kind == "Normalize":
                self.register_buffer(f"{key}_scale", torch.from_numpy(blobs[name][0].reshape(1, -1, 1, 1).copy()))
            elif kind == "Pooling":
                p = param(layer, "pooling_param")
                if p.get("pool", ["MAX"])[0] != "MAX":
                    raise ValueError(f"res10 layer {name}: only MAX pooling is rebuilt")
                self.ops[key] = nn.MaxPool2d(p["kernel_size"][0], p.get("stride", [1])[0], p.get("pad", [0])[0],
                                             ceil_mode=True)
            elif kind not in {"ReLU", "Eltwise", "Permute", "Flatten", "Concat", "Reshape", "Softmax"}:
                raise ValueError(f"res10 layer {name}: type {kind} is not rebuilt")

    def forward(self, data: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        blobs = {"data": data}
        for kind, key, bottoms, top in self.steps:
            x = blobs[bottoms[0]] if bottoms else None
            if kind in {"Convolution", "Pooling"}:
                y = self.ops[key](x)
            elif kind == "BatchNorm":
                y = (x + getattr(self, f"{key}_shift")) * getattr(self, f"{key}_scale")
            elif kind == "Scale":
                y = x * getattr(self, f"{key}_scale") + getattr(self, f"{key}_shift")
            elif kind == "ReLU":
                y = torch.relu(x)
            elif kind == "Eltwise":
                y = blobs[bottoms[0]]
                for other in bottoms[1:]:
                    y = y + blobs[other]
            elif kind == "Normalize":
                y = x / torch.sqrt((x * x).sum(1, keepdim=True) + NORMALIZE_EPS) * getattr(self, f"{key}_scale")
            elif kind == "Permute":
                y = x.permute(*param(self.params[key], "permute_param")["order"])
            elif kind == "Flatten":
                y = x.flatten(1)
            elif kind == "Concat":
                y = torch.cat([blobs[b] for b in bottoms], param(self.params[key], "concat_param").get("axis", [1])[0])
            elif kind == "Reshape":
                y = x.reshape(x.shape[0], -1, param(param(self.params[key], "reshape_param"), "shape")["dim"][2])
            else:  # Softmax
                y = torch.softmax(x, param(self.params[key], "softmax_param").get("axis", [1])[0])
            blobs[top] = y
        return blobs[self.outputs[0]], blobs[self.outputs[1]]


def _conv(p: dict, weights: list[np.ndarray]) -> nn.Conv2d:
    w = weights[0]
    conv = nn.Conv2d(w.shape[1], w.shape[0], w.shape[2], p.get("stride", [1])[0], p.get("pad", [0])[0],
                     p.get("dilation", [1])[0], bias=len(weights) > 1)
    conv.weight.data = torch.from_numpy(np.ascontiguousarray(w, np.float32))
    if len(weights) > 1:
        conv.bias.data = torch.from_numpy(np.ascontiguousarray(weights[1].reshape(-1), np.float32))
    return conv


def build(prototxt: str | Path, caffemodel: str | Path) -> tuple[Res10Net, list[dict]]:
    """(the network in eval mode with the caffemodel's weights, the prototxt's layers)."""
    layers = read_layers(prototxt)
    net = cv2.dnn.readNetFromCaffe(str(prototxt), str(caffemodel))
    blobs = {name: [np.asarray(b, np.float32) for b in net.getLayer(name).blobs] for name in net.getLayerNames()}
    return Res10Net(layers, blobs).eval(), layers
