"""The res10 SSD face detector run by OpenVINO (the `openvino` extra): its network rebuilt in PyTorch from the
Caffe files (res10_net), converted once per pair of files and cached on disk by their sha256 (as ov_runtime
caches the other networks), with free input height and width."""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import warnings
from collections import OrderedDict
from pathlib import Path

import numpy as np
import openvino as ov

from .ov_runtime import cache_root, core, drop_stale
from .res10_post import detection_output, prior_boxes, read_layers
from .version import __version__

SOURCE_FILE = "source.json"
PRIOR_SIZES = 8  # input sizes whose prior boxes are kept (a video needs one or two)


def _sha256(*paths: Path) -> str:
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def convert(prototxt: Path, caffemodel: Path) -> ov.Model:
    """The OpenVINO model of the rebuilt network: (1, 3, H, W) mean-subtracted BGR -> (offsets, scores)."""
    import torch
    from openvino.frontend import FrontEndManager
    from openvino.frontend.pytorch.ts_decoder import TorchScriptPythonDecoder

    from .res10_net import build

    net, _ = build(prototxt, caffemodel)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.trace's notices
        decoder = TorchScriptPythonDecoder(net, example_input=(torch.zeros(1, 3, 300, 300),))
        frontend = FrontEndManager().load_by_framework("pytorch")
        model = frontend.convert(frontend.load(decoder))
    model.reshape({model.input(0): ov.PartialShape([1, 3, -1, -1])})
    return model


def converted_model(prototxt: Path, caffemodel: Path, root: Path | None = None) -> tuple[ov.Model, str]:
    """(the OpenVINO model, "cache" or "converted"), cached under the files' sha256 and the versions."""
    root = root or cache_root()
    sha = _sha256(prototxt, caffemodel)
    version = "".join(c if c.isalnum() or c == "." else "_" for c in ov.get_version())[:40]
    key = f"faces-res10-{sha[:32]}-ov{version}-{__version__}"
    entry = root / key
    if (entry / "model.xml").is_file() and (entry / SOURCE_FILE).is_file():
        try:
            return core().read_model(entry / "model.xml"), "cache"
        except RuntimeError:
            pass
    shutil.rmtree(entry, ignore_errors=True)
    model = convert(prototxt, caffemodel)
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=root))
        try:
            ov.save_model(model, tmp / "model.xml", compress_to_fp16=False)
            source = {"model_path": str(Path(caffemodel).resolve()), "sha256": sha, "modality": "faces",
                      "openvino": ov.get_version(), "deepfake_core": __version__}
            (tmp / SOURCE_FILE).write_text(json.dumps(source, indent=2))
            drop_stale(root, source["model_path"], sha)
            try:
                tmp.rename(entry)
            except OSError:
                pass
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    except OSError:
        pass  # read-only or full disk: converted again next time
    return model, "converted"


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
