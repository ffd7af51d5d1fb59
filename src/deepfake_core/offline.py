"""Model hubs off for the whole process: an analysis never reaches the network.

Every model is built locally (networks.KNOWN_ARCHITECTURES); these variables are a second wall in case a
library on the way (timm, huggingface_hub, transformers) would still try to fetch a config or weights.
`deepfake-detect weights pull` downloads with its own client (download.py) and is not affected.
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


def hub_offline() -> None:
    """Set the hub libraries offline for this process (also when huggingface_hub is already imported)."""
    os.environ.update(HUB_OFFLINE_ENV)
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:  # it read the environment when it was imported
        constants.HF_HUB_OFFLINE = True
        constants.HF_HUB_DISABLE_TELEMETRY = True
