"""Model hubs off for the whole process: an analysis never reaches the network.

Every model is built locally (networks.KNOWN_ARCHITECTURES); these variables are a second wall in case a
library on the way (timm, huggingface_hub, transformers) would still try to fetch a config or weights.
`deepfake-detect weights pull` downloads with its own client (download.py) and is not affected.

OpenVINO's telemetry has no switch a process can set (its opt-out is a file in the user's home): `import openvino`
sends a usage event from a forked child (a DNS lookup of www.google-analytics.com). When `openvino_telemetry`
cannot be imported, OpenVINO falls back to its own no-op stub, so `no_telemetry()` makes it unimportable; it must
run before the first `import openvino`: configure_process calls it, and the package imports openvino only
through `import_openvino()`.
"""

from __future__ import annotations

import os
import sys

# The switches huggingface_hub, transformers and datasets read; set (not defaulted): a caller's "0" loses.
HUB_OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HUB_DISABLE_IMPLICIT_TOKEN": "1",
}


TELEMETRY_MODULES = ("openvino_telemetry",)  # made unimportable: their users fall back to a no-op stub


def no_telemetry() -> None:
    """Stop the runtimes' usage telemetry for this process (before they are imported)."""
    for name in TELEMETRY_MODULES:
        if name not in sys.modules:  # None in sys.modules: `import name` raises ImportError
            sys.modules[name] = None  # type: ignore[assignment]


def import_openvino():
    """The `openvino` module, imported with its telemetry off (the one place the package imports it)."""
    no_telemetry()
    import openvino

    return openvino


def hub_offline() -> None:
    """Set the hub libraries offline for this process (also when huggingface_hub is already imported), and the
    runtimes' telemetry off."""
    no_telemetry()
    os.environ.update(HUB_OFFLINE_ENV)
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:  # it read the environment when it was imported
        constants.HF_HUB_OFFLINE = True
        constants.HF_HUB_DISABLE_TELEMETRY = True
