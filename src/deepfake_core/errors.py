"""Typed errors. Each message names the problem and, where there is one, the remedy.

DeepfakeError
├── InputError            the media cannot be analysed (exit code 2)
│   ├── UnreadableMedia   empty, corrupt, truncated or not a media file
│   │   └── TruncatedMedia the container declares more bytes than the file holds (a cut-off copy or upload)
│   ├── NoVideoStream     audio-only file
│   ├── MediaTooLarge     over a configured size, duration or frame-size limit
│   └── AnalysisTimeout   the analysis ran past its wall-clock budget
├── SettingsError         an invalid option (exit code 2)
│   └── ModelsDirMissing  the models folder named by --models-dir or DEEPFAKE_MODELS_DIR does not exist
├── OutputError           a results file that cannot be written (exit code 2)
├── CheckpointError       a model file that does not fit or cannot be read safely (exit code 3)
└── WeightsError          model files missing, corrupt or not downloadable (exit code 3)
    ├── ModelFilesMissing files the detector needs are not in the models directory
    ├── DownloadError     a file could not be downloaded (network, HTTP status, stalled server)
    └── ChecksumMismatch  a download is not the pinned file (its sha256 or size differs)
"""

from __future__ import annotations


class DeepfakeError(Exception):
    """Base class of every error this package raises on purpose."""

    exit_code = 1


class InputError(DeepfakeError):
    exit_code = 2


class UnreadableMedia(InputError):
    pass


class TruncatedMedia(UnreadableMedia):
    """An MP4/MOV or Matroska/WebM file shorter than its own structure says: the copy or upload was cut off."""


class NoVideoStream(InputError):
    pass


class MediaTooLarge(InputError):
    pass


class SettingsError(DeepfakeError, ValueError):
    exit_code = 2

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field  # the setting at fault, when one is (the CLI names its option)


class ModelsDirMissing(SettingsError):
    """The models folder the user named (--models-dir, DEEPFAKE_MODELS_DIR) does not exist: a typo is not taken
    for an empty folder (which would leave the built-in model to judge)."""


class OutputError(DeepfakeError):
    """A results file (scan --out) could not be written; the message says how many rows are safely in it."""

    exit_code = 2


class AnalysisTimeout(InputError):
    """An analysis ran past `AnalysisSettings.max_analysis_s`; nothing partial is reported."""


class CheckpointError(DeepfakeError):
    exit_code = 3


class WeightsError(DeepfakeError):
    exit_code = 3


class ModelFilesMissing(WeightsError):
    """Raised when required model files are not in the models directory."""

    def __init__(self, missing: list[str], models_dir: str, searched: list[str] | None = None, hint: str = ""):
        self.missing = list(missing)
        self.models_dir = str(models_dir)
        self.searched = list(searched or [models_dir])
        where = ", ".join(self.searched)
        # `hint`: what to do, from the caller (model_files.files_missing adds the registry's install hint)
        super().__init__(f"model files missing: {', '.join(self.missing)} (looked in {where})."
                         + (f"\n{hint}" if hint else ""))


class DownloadError(WeightsError):
    """A model file could not be downloaded; the message names the URL and the folder to copy it into."""


class ChecksumMismatch(WeightsError):
    """A downloaded file is not the pinned one (sha256 or size); nothing was installed."""
