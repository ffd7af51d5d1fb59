"""deepfake_core: multimodal (face video + voice audio) deepfake detection.

    from deepfake_core import Detector, AnalysisSettings
    detector = Detector.load()                       # models from ./models, $DEEPFAKE_MODELS_DIR, ...
    report = detector.analyze("clip.mp4", AnalysisSettings(fusion="adaptive"))
    print(report.verdict, report.confidence)
"""

__version__ = "0.1.0"

import os as _os  # noqa: E402

# PyTorch's OpenMP threads spin while they wait for work. On a small or shared CPU that spinning takes the
# cores the decoder and the face detector need: on 2 vCPUs analyses took twice as long with it
# (benchmarks/RESULTS.md). It only takes effect when set before torch is first imported; a value you set wins.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .offline import hub_offline as _hub_offline  # noqa: E402

_hub_offline()  # model hubs off: an analysis never reaches the network (offline.py)

from .errors import (CheckpointError, ChecksumMismatch, DeepfakeError, DownloadError, InputError,  # noqa: E402
                     MediaTooLarge, ModelFilesMissing, NoVideoStream, SettingsError, UnreadableMedia, WeightsError)
from .settings import AnalysisSettings  # noqa: E402

# Detector and Report pull in torch; load them on first use so `deepfake-detect weights ...` and
# `import deepfake_core.errors` start fast.
_LAZY = {"Detector": ".pipeline", "Report": ".report", "scan_ray": ".ray_scan"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "AnalysisSettings", "CheckpointError", "ChecksumMismatch", "DeepfakeError", "Detector", "DownloadError",
    "InputError", "MediaTooLarge",
    "ModelFilesMissing", "NoVideoStream", "Report", "SettingsError", "UnreadableMedia", "WeightsError",
    "__version__", "scan_ray",
]
