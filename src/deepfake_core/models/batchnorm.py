"""Folding BatchNorm layers into the layers before them, for inference (both runtimes use it: runtime.py,
ov_runtime.py)."""

from __future__ import annotations

import copy

from torch import nn


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
