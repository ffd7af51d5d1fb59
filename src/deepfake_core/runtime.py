"""Device and numeric precision: chosen at run time from what the machine has."""

from __future__ import annotations

import contextlib
import copy
import functools
from pathlib import Path

import torch
from torch import nn

from .settings import DEVICES, PRECISIONS, check_choice


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
        from .errors import SettingsError

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


def fold_batchnorm(module: nn.Module) -> tuple[nn.Module, bool]:
    """(a copy of `module` in eval mode with each BatchNorm folded into the Conv or Linear layer it follows,
    True) — the same function with fewer passes over memory; (an unfolded copy, False) when torch.fx cannot
    trace the module. `module` itself is left unchanged."""
    from torch.fx.experimental.optimization import fuse

    module = module.eval()
    try:
        return fuse(module, inplace=False), True
    except Exception:  # torch.fx raises many types on untraceable code; the unfolded copy is still correct
        return copy.deepcopy(module), False


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
