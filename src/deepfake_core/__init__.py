"""deepfake_core: multimodal (face video + voice audio) deepfake detection.

    from deepfake_core import Detector, AnalysisSettings
    detector = Detector.load()                       # models from ./models, $DEEPFAKE_MODELS_DIR, ...
    report = detector.analyze("clip.mp4", AnalysisSettings(fusion="adaptive"))
    print(report.verdict, report.confidence)

Importing it has no side effects: the entry points (the `deepfake-detect` command, `python -m deepfake_core`,
the web page, the API server, Ray workers) call `process.configure_process()` (the OpenMP wait policy, model
hubs offline) before torch loads; a program embedding the library may call it too.
"""

from .errors import (CheckpointError, ChecksumMismatch, DeepfakeError, DownloadError, InputError,
                     MediaTooLarge, ModelFilesMissing, NoVideoStream, SettingsError, UnreadableMedia, WeightsError)
from .settings import AnalysisSettings
from .version import __version__

# Detector and Report pull in torch; load them on first use so `deepfake-detect weights ...` and
# `import deepfake_core.errors` start fast.
_LAZY = {"Detector": ".analysis.pipeline", "Report": ".analysis.report", "scan_ray": ".scan.ray_scan"}


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
