"""deepfake_core: multimodal (face video + voice audio) deepfake detection.

    from deepfake_core import Detector, AnalysisSettings
    detector = Detector.load()                       # models from ./models, $DEEPFAKE_MODELS_DIR, ...
    report = detector.analyze("clip.mp4", AnalysisSettings(fusion="adaptive"))
    print(report.verdict, report.confidence)
"""

__version__ = "0.1.0"

from .errors import (CheckpointError, DeepfakeError, InputError, MediaTooLarge, ModelFilesMissing,  # noqa: E402
                     NoVideoStream, SettingsError, UnreadableMedia, WeightsError)
from .pipeline import Detector  # noqa: E402
from .report import Report  # noqa: E402
from .settings import AnalysisSettings  # noqa: E402

__all__ = [
    "AnalysisSettings", "CheckpointError", "DeepfakeError", "Detector", "InputError", "MediaTooLarge",
    "ModelFilesMissing", "NoVideoStream", "Report", "SettingsError", "UnreadableMedia", "WeightsError",
    "__version__",
]
