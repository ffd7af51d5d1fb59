"""Where the video model looked: Grad-CAM heatmaps (pytorch-grad-cam) for a report's most suspicious faces.

Computed only when asked, after the analysis: the k faces with the highest video P(fake) are read again from
the file (their frames decoded once more, cropped with the report's boxes), so an analysis that does not ask
pays nothing. The heatmap shows where the evidence for the FAKE class lies in the crop the model saw.

    report = detector.analyze("clip.mp4")
    explain_report(detector, "clip.mp4", report, k=4)        # report.explanations, in to_dict() too
"""

from __future__ import annotations

import base64
import contextlib
import os
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from ..errors import InputError, SettingsError
from ..faces.detect import FaceBox, crop_face
from ..media.files import make_folder
from ..media.video import read_frames
from ..models.networks import FAKE, ModelSpec, face_tensor

DEFAULT_TOP_K = 4  # faces explained when no k is given
MAX_TOP_K = 32  # a bound on the work one request can ask for
OVERLAY_WEIGHT = 0.5  # share of the face in the overlay (the rest is the heatmap's colours)

# The layer whose activations Grad-CAM weighs, for the architectures this project ships or trains: the last
# convolutional block's output (xception: the ReLU after conv4/bn4; EfficientNet: conv_head's BatchNorm+act).
# Any other network gets `last_spatial_layer`'s choice, which picks these same layers for these networks.
KNOWN_TARGET_LAYERS = {
    "legacy_xception": "act4",
    "xception": "act4",
    "tf_efficientnet_lite0": "bn2",
}

_LOCK = threading.Lock()  # Grad-CAM hooks a shared module: one explanation at a time


@dataclass
class Explanation:
    rank: int  # 1 = the most suspicious face
    timeline_index: int  # the face's row in report.timeline
    frame_index: int
    time_s: float
    track: int
    box: list[int]  # [x1, y1, x2, y2] in the frame
    video_p_fake: float  # the face's score in the report
    target_layer: str  # the module Grad-CAM weighed
    crop: np.ndarray  # (h, w, 3) uint8 RGB, the face crop as cut from the frame (before the model's resize)
    heatmap: np.ndarray  # (h, w) float32 in [0, 1], the crop's size: 1 = strongest evidence for FAKE
    overlay: np.ndarray  # (h, w, 3) uint8 RGB, the heatmap over the crop
    file: str | None = None  # the overlay's PNG when written to a folder

    def to_dict(self, embed: bool = True) -> dict:
        """JSON-ready: the overlay as a PNG data URL when `embed` and no file was written, else the file."""
        peak_y, peak_x = np.unravel_index(int(np.argmax(self.heatmap)), self.heatmap.shape)
        return {
            "rank": self.rank, "timeline_index": self.timeline_index, "frame_index": self.frame_index,
            "time_s": self.time_s, "track": self.track, "box": list(self.box),
            "video_p_fake": self.video_p_fake, "method": "gradcam", "target_layer": self.target_layer,
            "size": [int(self.heatmap.shape[1]), int(self.heatmap.shape[0])],  # [w, h] of the crop
            "peak": [int(peak_x), int(peak_y)],  # the heatmap's maximum, in crop pixels
            "file": self.file,
            "overlay": png_data_url(self.overlay) if embed and self.file is None else None,
        }


def png_data_url(image_rgb: np.ndarray) -> str:
    ok, data = cv2.imencode(".png", cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return "data:image/png;base64," + base64.b64encode(data.tobytes()).decode("ascii")


def check_out_dir(out_dir: str | os.PathLike) -> Path:
    """The --explain-dir folder, created, or InputError (exit 2) when it cannot be made or written into (a file
    stands where it or a parent should be, no permission, a read-only filesystem): checked before the models load
    rather than after the analysis."""
    folder = Path(out_dir)
    make_folder(folder, f"--explain-dir {folder}", "another folder")
    try:  # a folder that exists may still refuse files (/proc, read-only mounts, permissions)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise InputError(f"--explain-dir {folder} cannot be written ({e.strerror or e}); choose another "
                         f"folder") from None
    return folder


def check_top_k(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_TOP_K:
        raise SettingsError(f"explain must be a whole number of faces from 1 to {MAX_TOP_K}; got {k!r}")
    return k


# -- the target layer ----------------------------------------------------------------------------------------
def last_spatial_layer(module: nn.Module, input_size: int) -> str:
    """The name of the module that finishes last, in a forward pass, with a spatial (N, C, H, W) output of more
    than one position: the last convolutional block, whatever the architecture (a residual stage's output,
    not the activation inside its last block). Raises SettingsError when the network has none."""
    finished: list[str] = []

    def hook(name):
        def record(_module, _inputs, output):
            if isinstance(output, torch.Tensor) and output.ndim == 4 and output.shape[-1] * output.shape[-2] > 1:
                finished.append(name)
        return record

    handles = [m.register_forward_hook(hook(name)) for name, m in module.named_modules() if name]
    try:
        with torch.inference_mode():
            module(torch.zeros(1, 3, input_size, input_size))
    finally:
        for h in handles:
            h.remove()
    if not finished:
        raise SettingsError(f"{type(module).__name__} has no layer with a spatial output: Grad-CAM cannot "
                            f"explain it")
    return finished[-1]


def target_layer(module: nn.Module, spec: ModelSpec) -> tuple[str, nn.Module]:
    """(name, module) of the layer Grad-CAM weighs for a video network in `spec`'s layout."""
    modules = dict(module.named_modules())
    name = KNOWN_TARGET_LAYERS.get(spec.architecture)
    if name not in modules:
        name = last_spatial_layer(module, spec.input_size)
    return name, modules[name]


# -- heatmaps ------------------------------------------------------------------------------------------------
def _need_grad_cam() -> None:
    import importlib.util

    if importlib.util.find_spec("pytorch_grad_cam") is None:
        raise SettingsError("explanations need the grad-cam package: pip install 'deepfake-detector[api]' "
                            "(or pip install grad-cam)")


def gradcam(module: nn.Module, layer: nn.Module, inputs: torch.Tensor, target: int = FAKE) -> np.ndarray:
    """Grad-CAM maps for a batch: (N, S, S) float32 in [0, 1] for (N, 3, S, S) inputs, each map scaled to its
    own maximum. `target` is the class explained (FAKE: where the evidence for "fake" is)."""
    _need_grad_cam()
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    device = next(module.parameters()).device
    x = inputs.detach().to(device=device, dtype=torch.float32).requires_grad_(True)  # a graph to take grads from
    with _LOCK, torch.enable_grad(), _frozen(module), GradCAM(model=module, target_layers=[layer]) as cam:
        maps = cam(input_tensor=x, targets=[ClassifierOutputTarget(target)] * len(x))
    return np.nan_to_num(np.asarray(maps, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)


@contextlib.contextmanager
def _frozen(module: nn.Module):
    """No gradients for the weights while inside (Grad-CAM needs the activations' only)."""
    flags = [(p, p.requires_grad) for p in module.parameters()]
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
            p.grad = None


def explain_crops(module: nn.Module, spec: ModelSpec, crops_rgb: list[np.ndarray],
                  layer_name: str | None = None) -> tuple[str, list[np.ndarray]]:
    """(the layer's name, one (h, w) float32 heatmap in [0, 1] per (h, w, 3) uint8 RGB crop, at the crop's
    size) for the video network `module` and its `spec` (preprocessing as in the analysis)."""
    if not crops_rgb:
        return layer_name or "", []
    if layer_name is None:
        layer_name, layer = target_layer(module, spec)
    else:
        layer = dict(module.named_modules())[layer_name]
    x = torch.stack([face_tensor(c, spec) for c in crops_rgb])
    maps = gradcam(module, layer, x)
    return layer_name, [cv2.resize(m, (c.shape[1], c.shape[0]), interpolation=cv2.INTER_LINEAR).clip(0.0, 1.0)
                        for m, c in zip(maps, crops_rgb, strict=False)]


def overlay(crop_rgb: np.ndarray, heatmap: np.ndarray) -> np.ndarray:
    """(h, w, 3) uint8 RGB: the heatmap in the JET colours over the crop."""
    from pytorch_grad_cam.utils.image import show_cam_on_image

    return show_cam_on_image(crop_rgb.astype(np.float32) / 255.0, heatmap, use_rgb=True,
                             image_weight=OVERLAY_WEIGHT)


# -- a report's faces ----------------------------------------------------------------------------------------
def top_faces(report, k: int) -> list[int]:
    """Timeline rows of the k faces with the highest video P(fake) (earliest first on ties), among the faces
    that count toward the verdict (rows marked `stray`, where the timeline has the mark, only when all are)."""
    rows = [i for i, r in enumerate(report.timeline) if not getattr(r, "stray", False)]
    order = sorted(rows or range(len(report.timeline)), key=lambda i: (-report.timeline[i].video_p_fake, i))
    return order[:k]


def read_crops(path: str | os.PathLike, report, rows: list[int], margin: float) -> dict[int, np.ndarray]:
    """{row: (h, w, 3) uint8 RGB crop} for timeline rows, their frames decoded again from `path`."""
    wanted: dict[int, list[int]] = {}
    for i in rows:
        wanted.setdefault(report.timeline[i].frame_index, []).append(i)
    crops = {}
    frames = read_frames(path, sorted(wanted))
    with contextlib.closing(frames):
        for frame in frames:
            for i in wanted.get(frame.index, []):
                x1, y1, x2, y2 = report.timeline[i].box
                crop = crop_face(frame.image, FaceBox(x1, y1, x2, y2, None, "report"), margin)
                if crop.size:
                    crops[i] = cv2.cvtColor(crop, cv2.COLOR_BGR2RGB)
    return crops


def explain_report(detector, path: str | os.PathLike, report, k: int = DEFAULT_TOP_K,
                   out_dir: str | os.PathLike | None = None) -> list:
    """Grad-CAM explanations of the k most suspicious faces of `report` (an analysis of `path` by `detector`),
    stored in `report.explanations` (and returned). With `out_dir` each overlay is written there as a PNG and
    the report names the file; otherwise to_dict() embeds it as a data URL. Adds timings["explain"]."""
    check_top_k(k)
    _need_grad_cam()
    started = time.perf_counter()
    rows = top_faces(report, k)
    crops = read_crops(path, report, rows, float(report.settings.get("face_margin", 0.0)))
    rows = [i for i in rows if i in crops]
    loaded = detector.video
    layer, heatmaps = explain_crops(loaded.module, loaded.spec, [crops[i] for i in rows])
    folder = check_out_dir(out_dir) if out_dir is not None else None
    explanations = []
    for rank, (i, heat) in enumerate(zip(rows, heatmaps, strict=False), start=1):
        row = report.timeline[i]
        e = Explanation(rank, i, row.frame_index, row.time_s, row.track, list(row.box), row.video_p_fake, layer,
                        crops[i], heat, overlay(crops[i], heat))
        if folder is not None:
            target = folder / f"{Path(report.file).stem or 'video'}_face{rank}_frame{row.frame_index}.png"
            if not cv2.imwrite(str(target), cv2.cvtColor(e.overlay, cv2.COLOR_RGB2BGR)):
                raise InputError(f"cannot write {target}: check that the folder is writable")
            e.file = str(target)
        explanations.append(e)
    report.explanations = explanations
    report.timings["explain"] = round(time.perf_counter() - started, 4)
    return explanations
