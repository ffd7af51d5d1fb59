"""Device and numeric precision: chosen at run time from what the machine has."""

from __future__ import annotations

import contextlib
import functools
import importlib.util
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .batchnorm import fold_batchnorm
from .networks import is_speech_model
from ..settings import DEVICES, PRECISIONS, RUNTIMES, check_choice


def pick_device(device: str = "auto") -> torch.device:
    """auto: CUDA, then Apple MPS, then CPU. An explicit device that is not there raises."""
    check_choice("device", device, DEVICES)
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if device == "cuda" and not torch.cuda.is_available():
        from ..errors import SettingsError

        raise SettingsError("device 'cuda' was asked for, but PyTorch sees no CUDA GPU (use --device cpu)")
    return torch.device(device)


@functools.lru_cache(maxsize=1)
def cpu_has_bf16() -> bool:
    """True when the CPU computes bfloat16 natively (x86 AVX512-BF16 or AMX-BF16; Arm BF16)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    flags = set()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            flags.update(line.split(":", 1)[1].split())
            break
    return bool({"avx512_bf16", "amx_bf16", "bf16"} & flags)


def pick_precision(precision: str, device: torch.device) -> str:
    """auto: bf16 where the hardware runs it natively (CUDA with bf16, or a CPU with AVX512-BF16/AMX), else fp32."""
    check_choice("precision", precision, PRECISIONS)
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if device.type == "cpu":
        return "bf16" if cpu_has_bf16() else "fp32"
    return "fp32"


def autocast(device: torch.device, precision: str):
    """The context in which model forward passes run."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def prepare_for_inference(module: nn.Module, device: torch.device, precision: str,
                          compile: bool = False) -> tuple[nn.Module, list[str]]:
    """An inference copy of `module` on `device` and the list of what was done to it.

    BatchNorm folded into the layer before it; channels_last memory format on CPU and CUDA (oneDNN's and
    cuDNN's fast convolution layout); with `compile`, torch.compile (slow the first time a batch shape is
    seen, then faster on CUDA). Precision is applied at run time by `autocast`. The original `module` is
    left as it was.
    """
    net, folded = fold_batchnorm(module)
    done = ["batchnorm folded"] if folded else []
    net = net.to(device)
    if device.type in ("cpu", "cuda"):
        net = net.to(memory_format=torch.channels_last)
        done.append("channels_last")
    if precision == "bf16":
        done.append("bf16 autocast")
    if compile:
        net = torch.compile(net)
        done.append("torch.compile")
    for p in net.parameters():
        p.requires_grad_(False)
    return net, done


# -- runners: one object per network that turns a batch of inputs into logits ---------------------------------
def openvino_installed() -> bool:
    return importlib.util.find_spec("openvino") is not None


def pick_runtime(runtime: str, device: torch.device, compile: bool = False) -> str:
    """"torch" or "openvino". auto: OpenVINO on a CPU when it is installed (and no torch.compile was asked
    for), PyTorch otherwise and on GPUs. An explicit runtime that cannot run here raises, naming the fix."""
    from ..errors import SettingsError

    check_choice("runtime", runtime, RUNTIMES)
    if runtime == "auto":
        return "openvino" if device.type == "cpu" and not compile and openvino_installed() else "torch"
    if runtime == "openvino":
        if not openvino_installed():
            raise SettingsError("runtime 'openvino' needs OpenVINO: pip install 'deepfake-detector[openvino]' "
                                "(or use --runtime torch)")
        if device.type != "cpu":
            raise SettingsError(f"runtime 'openvino' runs the networks on the CPU, but device {device.type!r} was "
                                f"asked for (use --device cpu, or --runtime torch)")
        if compile:
            raise SettingsError("--compile (torch.compile) applies to the torch runtime, not to 'openvino'")
    return runtime


class TorchRunner:
    """A network's inference copy (`prepare_for_inference`) run by PyTorch. Thread-safe."""

    runtime = "torch"

    def __init__(self, module: nn.Module, device: torch.device, precision: str, compile: bool = False):
        self.device, self.precision = device, precision
        self.net, self.done = prepare_for_inference(module, device, precision, compile)

    def __call__(self, x: torch.Tensor, pad_to: int = 0) -> np.ndarray:
        """(N, 2) float32 logits for (N, 3, S, S) float32 inputs on the CPU. On CUDA a batch shorter than
        `pad_to` is padded with zeros: one input shape, so cuDNN's autotuning (and torch.compile) run once, at
        warm-up, not for every new count of faces (~4 s each)."""
        n = len(x)
        if self.device.type == "cuda":
            if n < pad_to:
                x = torch.cat([x, x.new_zeros((pad_to - n, *x.shape[1:]))])
            x = x.pin_memory().to(self.device, non_blocking=True)
        if self.device.type in ("cpu", "cuda"):
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), autocast(self.device, self.precision):
            logits = self.net(x.to(self.device))
        return logits[:n].float().cpu().numpy()


def make_runner(runtime: str, loaded, device: torch.device, precision: str, compile: bool = False):
    """The runner of a loaded network (`checkpoints.LoadedModel`) for a runtime from `pick_runtime`. The speech
    models (variable-length windows, a few milliseconds each) always run in PyTorch."""
    if runtime == "openvino" and not is_speech_model(loaded.spec):
        from .ov_runtime import OpenVinoRunner

        return OpenVinoRunner.for_model(loaded, precision)
    return TorchRunner(loaded.module, device, precision, compile)
