"""The res10 SSD face detector run by OpenVINO (the `openvino` extra): its network rebuilt in PyTorch from the
Caffe files (res10_net), converted once per pair of files and cached on disk by their sha256 (as ov_runtime
caches the other networks), with free input height and width."""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from pathlib import Path

import numpy as np

from ..models.ov_runtime import cached, core, ov, trace, version_tag  # ov: imported with its telemetry off
from ..models.registry import sha256_file
from .res10_post import detection_output, prior_boxes, read_layers
from ..version import __version__

SOURCE_FILE = "source.json"
PRIOR_SIZES = 8  # input sizes whose prior boxes are kept (a video needs one or two)


def convert(prototxt: Path, caffemodel: Path) -> ov.Model:
    """The OpenVINO model of the rebuilt network: (1, 3, H, W) mean-subtracted BGR -> (offsets, scores)."""
    from .res10_net import build

    net, _ = build(prototxt, caffemodel)
    return trace(net, (1, 3, 300, 300), [1, 3, -1, -1])


def converted_model(prototxt: Path, caffemodel: Path, root: Path | None = None) -> tuple[ov.Model, str]:
    """(the OpenVINO model, "cache" or "converted"), cached under the files' sha256 and the versions."""
    sha = hashlib.sha256((sha256_file(prototxt) + sha256_file(caffemodel)).encode()).hexdigest()
    key = f"faces-res10-{sha[:32]}-ov{version_tag()}-{__version__}"
    source = {"model_path": str(Path(caffemodel).resolve()), "sha256": sha, "modality": "faces"}
    return cached(key, source, lambda: convert(prototxt, caffemodel), root)


class OpenVinoRes10:
    """detect(blob (1, 3, H, W) float32) -> (1, 1, N, 7) detections, as cv2.dnn's net.forward() gives them."""

    def __init__(self, prototxt: Path, caffemodel: Path, precision: str = "fp32"):
        self.model, self.origin = converted_model(Path(prototxt), Path(caffemodel))
        self.layers = read_layers(prototxt)
        self.head = next(layer for layer in self.layers if layer["type"][0] == "DetectionOutput")
        self.hint = "bf16" if precision == "bf16" and "BF16" in core().get_property(
            "CPU", "OPTIMIZATION_CAPABILITIES") else "f32"
        self.done = ["res10 rebuilt in PyTorch", f"openvino model: {self.origin}",
                     f"openvino {ov.get_version().split('-')[0]} ({'bf16' if self.hint == 'bf16' else 'fp32'}, "
                     f"LATENCY hint, free input size)"]
        # one compiled model with free height and width: as fast as one compiled per size (9.9 vs 9.8 ms at
        # 533x300), without ~90 ms of compiling for each new frame size
        compiled = core().compile_model(self.model, "CPU", {"PERFORMANCE_HINT": "LATENCY",
                                                             "INFERENCE_PRECISION_HINT": self.hint})
        self.request = compiled.create_infer_request()
        self._priors: OrderedDict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = OrderedDict()

    def _priors_for(self, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        key = (height, width)
        if key not in self._priors:
            self._priors[key] = prior_boxes(self.layers, height, width)
            while len(self._priors) > PRIOR_SIZES:
                self._priors.popitem(last=False)
        self._priors.move_to_end(key)
        return self._priors[key]

    def __call__(self, blob: np.ndarray) -> np.ndarray:
        priors, variances = self._priors_for(*blob.shape[2:])
        self.request.infer({0: np.ascontiguousarray(blob, np.float32)})
        loc, conf = (self.request.get_output_tensor(i).data[0] for i in range(2))
        return detection_output(self.head, loc, conf, priors, variances)
