"""The OpenVINO runtime for the networks (the `openvino` extra): each network is converted once per model
file, cached on disk by the file's sha256, and run asynchronously with the throughput hint.

Conversion goes through OpenVINO's PyTorch frontend directly rather than `openvino.convert_model`, which
sends usage telemetry unless the user has opted out: nothing here reaches the network.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import shutil
import tempfile
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from ..offline import import_openvino
from ..version import __version__
from .batchnorm import fold_batchnorm

CACHE_ENV = "DEEPFAKE_OPENVINO_CACHE"  # folder for converted models (default: the per-user cache)
ov = import_openvino()  # its telemetry off first (offline.py)

SOURCE_FILE = "source.json"  # in each cache entry: what it was converted from
ABANDONED_S = 30 * 60  # seconds: an entry being written (".KEY.xxxxxxxx") this old was left by a killed process
_TEMP_NAME = re.compile(r"\.(?:video|audio|faces)-.+-ov[^/]+\.[A-Za-z0-9_]{8}")  # _store's mkdtemp names


@functools.lru_cache(maxsize=1)
def core() -> ov.Core:
    return ov.Core()


def cache_root() -> Path:
    """$DEEPFAKE_OPENVINO_CACHE, else ~/.cache/deepfake-detector/openvino ($XDG_CACHE_HOME respected)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "deepfake-detector" / "openvino"


def version_tag() -> str:
    """The OpenVINO version, as it goes into cache entry names."""
    return re.sub(r"[^A-Za-z0-9.]+", "_", ov.get_version())[:40]


def cache_key(loaded, precision: str) -> str:
    """The cache entry's name: the model file's sha256, the precision, the input size, and the versions of
    OpenVINO and this package (either may change the converted graph)."""
    spec = loaded.spec
    return (f"{spec.modality}-{spec.architecture}-{loaded.sha256[:32]}-{precision}-{spec.input_size}px-"
            f"ov{version_tag()}-{__version__}")


def trace(net: torch.nn.Module, example_shape: tuple[int, ...], input_shape: list[int]) -> ov.Model:
    """An OpenVINO model of `net`, traced on zeros of `example_shape`, its input reshaped to `input_shape`
    (-1: free)."""
    from openvino.frontend import FrontEndManager
    from openvino.frontend.pytorch.ts_decoder import TorchScriptPythonDecoder

    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.trace's deprecation notices
        decoder = TorchScriptPythonDecoder(net, example_input=(torch.zeros(*example_shape),))
        frontend = FrontEndManager().load_by_framework("pytorch")
        model = frontend.convert(frontend.load(decoder))
    model.reshape({model.input(0): ov.PartialShape(input_shape)})
    return model


def convert(module: torch.nn.Module, input_size: int) -> ov.Model:
    """An OpenVINO model of `module` (BatchNorm folded first, as the torch runtime runs it) taking
    (N, 3, S, S) float32 input, N free, and returning (N, classes) logits."""
    net, _ = fold_batchnorm(module)
    return trace(net, (1, 3, input_size, input_size), [-1, 3, input_size, input_size])


def converted_model(loaded, precision: str, root: Path | None = None) -> tuple[ov.Model, str]:
    """(the OpenVINO model of a loaded network, where it came from: "cache" or "converted"); see `cached`."""
    source = {"model_path": str(Path(loaded.path).resolve()), "sha256": loaded.sha256,
              "modality": loaded.spec.modality}
    return cached(cache_key(loaded, precision), source, lambda: convert(loaded.module, loaded.spec.input_size),
                  root)


def cached(key: str, source: dict, make, root: Path | None = None) -> tuple[ov.Model, str]:
    """(the OpenVINO model stored under `key`, "cache"), or (`make()`, "converted") written there.

    `source` (model_path, sha256, modality) is stored beside it: writing an entry replaces the entries of an
    earlier version of the same file (same path, another sha256). A damaged entry is converted again; a cache
    folder that cannot be written only costs the conversion next time."""
    root = root or cache_root()
    entry = root / key
    if (entry / "model.xml").is_file() and (entry / SOURCE_FILE).is_file():
        try:
            return core().read_model(entry / "model.xml"), "cache"
        except RuntimeError:  # damaged or truncated files
            pass
    shutil.rmtree(entry, ignore_errors=True)  # an incomplete or damaged entry is replaced
    model = make()
    try:
        _store(model, dict(source, openvino=ov.get_version(), deepfake_core=__version__), key, root)
    except OSError:
        pass  # read-only or full disk: the model was converted in memory and still runs
    return model, "converted"


def _store(model: ov.Model, source: dict, key: str, root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    drop_abandoned(root)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=root))
    try:
        ov.save_model(model, tmp / "model.xml", compress_to_fp16=False)
        (tmp / SOURCE_FILE).write_text(json.dumps(source, indent=2))
        drop_stale(root, source["model_path"], source["sha256"])
        try:
            tmp.rename(root / key)
        except OSError:  # another process stored the same entry first
            pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def drop_abandoned(root: Path, older_than_s: float = ABANDONED_S) -> list[Path]:
    """Remove the half-written entries a killed process (kill -9) left in `root`: `_store`'s temporary folders
    not changed for `older_than_s` (a younger one may be another process's, still writing). Returns them."""
    removed = []
    now = time.time()
    for path in root.glob(".*"):
        with contextlib.suppress(OSError):
            if (_TEMP_NAME.fullmatch(path.name) and path.is_dir() and not path.is_symlink()
                    and now - path.stat().st_mtime > older_than_s):
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
    return removed


def drop_stale(root: Path, model_path: str, sha256: str) -> list[Path]:
    """Remove the cache entries converted from `model_path` when it had another sha256; returns them."""
    removed = []
    for source in root.glob(f"*/{SOURCE_FILE}"):
        try:
            meta = json.loads(source.read_text())
        except (OSError, ValueError):
            continue
        if meta.get("model_path") == model_path and meta.get("sha256") != sha256:
            shutil.rmtree(source.parent, ignore_errors=True)
            removed.append(source.parent)
    return removed


class OpenVinoRunner:
    """A network compiled for the CPU by OpenVINO with the THROUGHPUT hint. A batch is split over the
    compiled model's infer requests, which run at once (an AsyncInferQueue); one batch at a time."""

    runtime = "openvino"

    def __init__(self, model: ov.Model, precision: str, done: list[str] | None = None):
        self.done = list(done or [])
        hint = "f32"
        if precision == "bf16":
            if "BF16" in core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
                hint = "bf16"
            else:
                self.done.append("bf16 not available on this CPU in OpenVINO: fp32")
        self.compiled = core().compile_model(model, "CPU", {"PERFORMANCE_HINT": "THROUGHPUT",
                                                            "INFERENCE_PRECISION_HINT": hint})
        self.requests = int(self.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        self._queue = ov.AsyncInferQueue(self.compiled, self.requests)
        self._queue.set_callback(_collect)
        self._lock = threading.Lock()  # one batch in the queue at a time
        self.done.append(f"openvino {ov.get_version().split('-')[0]} ({'bf16' if hint == 'bf16' else 'fp32'}, "
                         f"THROUGHPUT hint, {self.requests} infer requests)")

    @classmethod
    def for_model(cls, loaded, precision: str) -> "OpenVinoRunner":
        model, origin = converted_model(loaded, precision)
        return cls(model, precision, ["batchnorm folded", f"openvino model: {origin}"])

    def __call__(self, x: torch.Tensor | np.ndarray, pad_to: int = 0) -> np.ndarray:
        """(N, 2) float32 logits for (N, 3, S, S) float32 inputs (`pad_to` is for GPUs; unused here)."""
        x = np.ascontiguousarray(x.numpy() if isinstance(x, torch.Tensor) else x, dtype=np.float32)
        if not len(x):
            return np.zeros((0, self.compiled.output(0).get_partial_shape()[1].get_length()), np.float32)
        chunks = np.array_split(x, min(self.requests, len(x)))
        out: list[np.ndarray | None] = [None] * len(chunks)
        with self._lock:
            for i, chunk in enumerate(chunks):
                self._queue.start_async({0: chunk}, (out, i))
            self._queue.wait_all()
        return np.concatenate(out).astype(np.float32, copy=False)


def _collect(request: ov.InferRequest, userdata) -> None:
    out, i = userdata
    out[i] = request.get_output_tensor(0).data.copy()
