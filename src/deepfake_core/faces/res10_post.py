"""The res10 SSD face detector's layers outside the network, in numpy: the prototxt reader, the prior boxes
(Caffe's PriorBox, for any input size) and the detection output (Caffe's DetectionOutput: decode, threshold,
NMS, keep_top_k). The result is laid out as cv2.dnn gives it: (1, 1, N, 7) [image, label, score, x1, y1, x2, y2]."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

_TOKEN = re.compile(r'\s*(?:(#[^\n]*)|([A-Za-z_][\w.]*)\s*:\s*("(?:[^"\\]|\\.)*"|[^\s{}]+)|([A-Za-z_]\w*)\s*\{|(\}))')


def parse_prototxt(text: str) -> dict:
    """A protobuf text file as nested dicts; every field's value is a list (fields repeat)."""
    root: dict = {}
    stack = [root]
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise ValueError(f"cannot read the prototxt at character {pos}: {text[pos:pos + 40]!r}")
        pos = m.end()
        comment, key, value, block, close = m.groups()
        if comment:
            continue
        if key:
            stack[-1].setdefault(key, []).append(_scalar(value))
        elif block:
            child: dict = {}
            stack[-1].setdefault(block, []).append(child)
            stack.append(child)
        elif close:
            stack.pop()
    return root


def _scalar(value: str):
    if value.startswith('"'):
        return value[1:-1]
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(value, value)


def read_layers(prototxt: str | Path) -> list[dict]:
    """The prototxt's layers in order (those of the TRAIN phase only left out)."""
    layers = parse_prototxt(Path(prototxt).read_text()).get("layer", [])
    return [layer for layer in layers
            if not any(inc.get("phase", ["TEST"])[0] == "TRAIN" for inc in layer.get("include", []))]


def param(layer: dict, block: str) -> dict:
    return (layer.get(block) or [{}])[0]


def _one(p: dict, key: str, default):
    return p.get(key, [default])[0]


def _conv_geometry(p: dict) -> tuple[int, int, int, int]:
    """(kernel, stride, pad, dilation) of a square convolution or pooling."""
    return _one(p, "kernel_size", 1), _one(p, "stride", 1), _one(p, "pad", 0), _one(p, "dilation", 1)


def feature_sizes(layers: list[dict], height: int, width: int) -> dict[str, tuple[int, int]]:
    """Each blob's spatial size (h, w) for a (height, width) input: convolutions floor, pooling ceils (Caffe)."""
    sizes = {"data": (height, width)}
    for layer in layers:
        kind, bottom = layer["type"][0], layer.get("bottom", [None])[0]
        if bottom not in sizes:
            continue
        h, w = sizes[bottom]
        if kind == "Convolution":
            k, s, p, d = _conv_geometry(param(layer, "convolution_param"))
            h, w = ((n + 2 * p - d * (k - 1) - 1) // s + 1 for n in (h, w))
        elif kind == "Pooling":
            k, s, p, _ = _conv_geometry(param(layer, "pooling_param"))
            h, w = (int(math.ceil((n + 2 * p - k) / s)) + 1 for n in (h, w))
        for top in layer.get("top", []):
            sizes[top] = (h, w)
    return sizes


def prior_boxes(layers: list[dict], height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(priors (P, 4) as normalised x1, y1, x2, y2; variances (P, 4)) of every PriorBox layer in order, for a
    (height, width) input, as Caffe's PriorBox computes them (float32)."""
    sizes = feature_sizes(layers, height, width)
    boxes, variances = [], []
    for layer in layers:
        if layer["type"][0] != "PriorBox":
            continue
        p = param(layer, "prior_box_param")
        fh, fw = sizes[layer["bottom"][0]]
        step = p.get("step", [None])[0]
        step_h, step_w = (step, step) if step else (height / fh, width / fw)
        offset = _one(p, "offset", 0.5)
        ratios = [1.0]
        for ar in p.get("aspect_ratio", []):
            for r in ([ar, 1.0 / ar] if _one(p, "flip", True) else [ar]):
                if all(abs(r - known) > 1e-6 for known in ratios):
                    ratios.append(r)
        sides: list[tuple[float, float]] = []  # (box width, box height) per prior at one place
        for i, min_size in enumerate(p["min_size"]):
            sides.append((min_size, min_size))
            if p.get("max_size"):
                s = math.sqrt(min_size * p["max_size"][i])
                sides.append((s, s))
            sides.extend((min_size * math.sqrt(r), min_size / math.sqrt(r)) for r in ratios[1:])
        side = np.array(sides, np.float32)  # (K, 2)
        cy, cx = np.meshgrid((np.arange(fh, dtype=np.float32) + offset) * np.float32(step_h),
                             (np.arange(fw, dtype=np.float32) + offset) * np.float32(step_w), indexing="ij")
        cx, cy = cx[..., None], cy[..., None]  # (fh, fw, 1)
        half_w, half_h = side[:, 0] / 2, side[:, 1] / 2
        box = np.stack([(cx - half_w) / np.float32(width), (cy - half_h) / np.float32(height),
                        (cx + half_w) / np.float32(width), (cy + half_h) / np.float32(height)], -1).reshape(-1, 4)
        if _one(p, "clip", False):
            box = np.clip(box, 0.0, 1.0)
        boxes.append(box.astype(np.float32))
        variances.append(np.broadcast_to(np.array(p.get("variance", [0.1]) * (4 // len(p.get("variance", [0.1]))),
                                                  np.float32), box.shape))
    return np.concatenate(boxes), np.concatenate(variances)


def detection_output(layer: dict, loc: np.ndarray, conf: np.ndarray, priors: np.ndarray,
                     variances: np.ndarray) -> np.ndarray:
    """Caffe's DetectionOutput (CENTER_SIZE code, shared locations) for one image: loc (P*4,), conf (P*C,)
    softmax scores; (1, 1, N, 7) as cv2.dnn returns it (without its zero rows padding N to keep_top_k)."""
    p = param(layer, "detection_output_param")
    nms = param(p, "nms_param")
    classes, background = _one(p, "num_classes", 2), _one(p, "background_label_id", 0)
    threshold, nms_threshold = _one(p, "confidence_threshold", 0.0), _one(nms, "nms_threshold", 0.3)
    top_k, keep_top_k = _one(nms, "top_k", -1), _one(p, "keep_top_k", -1)
    scores = conf.reshape(-1, classes)
    loc = loc.reshape(-1, 4)
    clip = bool(_one(p, "clip", False))
    found = []  # (scores, label, boxes) per class, best first
    for label in range(classes):
        if label == background:
            continue
        candidates = np.flatnonzero(scores[:, label] > threshold)
        if -1 < top_k < len(candidates):  # those scoring at least the top_k-th best first (a partial sort)
            kth = np.partition(scores[candidates, label], len(candidates) - top_k)[len(candidates) - top_k]
            candidates = candidates[scores[candidates, label] >= kth]
        candidates = candidates[np.argsort(-scores[candidates, label], kind="stable")]  # ties in index order
        if top_k > -1:
            candidates = candidates[:top_k]
        boxes = decode(loc[candidates], priors[candidates], variances[candidates], clip)  # only the candidates
        kept = nms_keep(boxes, nms_threshold)
        found.append((scores[candidates[kept], label], label, boxes[kept]))
    score = np.concatenate([f[0] for f in found]) if found else np.zeros(0, np.float32)
    label = np.concatenate([np.full(len(f[0]), f[1], np.float32) for f in found]) if found else score
    box = np.concatenate([f[2] for f in found]) if found else np.zeros((0, 4), np.float32)
    if -1 < keep_top_k < len(score):  # the best keep_top_k over all classes (ties: the earlier), class by class
        best = np.sort(np.argsort(-score, kind="stable")[:keep_top_k])
        score, label, box = score[best], label[best], box[best]
    out = np.zeros((1, 1, len(score), 7), np.float32)
    out[0, 0, :, 1], out[0, 0, :, 2], out[0, 0, :, 3:] = label, score, box
    return out


def decode(loc: np.ndarray, priors: np.ndarray, variances: np.ndarray, clip: bool) -> np.ndarray:
    """CENTER_SIZE decoding of the location offsets against the priors (normalised x1, y1, x2, y2)."""
    pw, ph = priors[:, 2] - priors[:, 0], priors[:, 3] - priors[:, 1]
    pcx, pcy = (priors[:, 0] + priors[:, 2]) / 2, (priors[:, 1] + priors[:, 3]) / 2
    cx = variances[:, 0] * loc[:, 0] * pw + pcx
    cy = variances[:, 1] * loc[:, 1] * ph + pcy
    w = np.exp(variances[:, 2] * loc[:, 2]) * pw
    h = np.exp(variances[:, 3] * loc[:, 3]) * ph
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1).astype(np.float32)
    return np.clip(boxes, 0.0, 1.0) if clip else boxes


def nms_keep(boxes: np.ndarray, nms_threshold: float) -> list[int]:
    """Caffe's ApplyNMSFast (eta 1) on boxes sorted best first: each is kept when it overlaps no kept box by
    more than `nms_threshold` (IoU of normalised boxes). The overlaps are computed at once (float32)."""
    x1, y1, x2, y2 = (boxes[:, i] for i in range(4))
    areas = np.where((x2 > x1) & (y2 > y1), (x2 - x1) * (y2 - y1), np.float32(0))
    iw = np.minimum(x2[:, None], x2[None]) - np.maximum(x1[:, None], x1[None])
    ih = np.minimum(y2[:, None], y2[None]) - np.maximum(y1[:, None], y1[None])
    inter = np.where((iw > 0) & (ih > 0), iw * ih, np.float32(0))
    union = areas[:, None] + areas[None] - inter
    overlap = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    over = overlap > nms_threshold
    suppressed = np.zeros(len(boxes), bool)
    kept: list[int] = []
    for i in range(len(boxes)):
        if not suppressed[i]:  # overlaps no kept box: kept, and suppresses what it overlaps
            kept.append(i)
            suppressed |= over[i]
    return kept
