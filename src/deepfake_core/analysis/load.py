"""Loading a Detector from typed options: what every front end (the commands, the page, the API server, the Ray
workers) calls, so they all read the same files by the same rules (model_files.py). Missing or unreadable files
are reported before PyTorch is imported (seconds)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..settings import DEVICES, PRECISIONS, RUNTIMES, check_choice


@dataclass(frozen=True)
class DetectorOptions:
    # The models folder (None: $DEEPFAKE_MODELS_DIR, ./models, then the per-user cache). A folder named here or in
    # $DEEPFAKE_MODELS_DIR must exist (ModelsDirMissing).
    models_dir: str | None = None
    device: str = "auto"  # auto (CUDA, MPS, then CPU), cpu, cuda or mps
    precision: str = "auto"  # auto (bf16 where the hardware runs it natively), fp32 or bf16
    # original, builtin, a checkpoint path, or None: the original when installed, else the built-in model
    video_model: str | None = None
    audio_model: str | None = None  # the same choices, and "none"
    runtime: str = "auto"  # auto (OpenVINO on a CPU when installed, else PyTorch), torch or openvino
    compile: bool = False  # torch.compile the networks (pays on a GPU, for long-running scans)

    def __post_init__(self) -> None:
        check_choice("device", self.device, DEVICES)
        check_choice("precision", self.precision, PRECISIONS)
        check_choice("runtime", self.runtime, RUNTIMES)
        for name in ("models_dir", "video_model", "audio_model"):  # a Path is welcome; stored as a string
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                object.__setattr__(self, name, os.fspath(value))

    def absolute(self) -> "DetectorOptions":
        """These options with the models folder made absolute (for workers that start elsewhere)."""
        if not self.models_dir:
            return self
        from dataclasses import replace

        return replace(self, models_dir=os.path.abspath(os.path.expanduser(self.models_dir)))


def load_detector(options: DetectorOptions | None = None, voice_only: bool = False):
    """The Detector `options` name (default: DetectorOptions()). `voice_only`: a detector for audio files (or
    --audio-only): no video model needed. Raises ModelsDirMissing (exit 2), ModelFilesMissing, CheckpointError,
    WeightsError (exit 3) or SettingsError."""
    options = options or DetectorOptions()
    if not voice_only:
        from ..models.model_files import find_model_files

        # Missing or unreadable files are reported before the pipeline imports PyTorch (seconds)
        find_model_files(options.models_dir, options.video_model)
    from .pipeline import Detector

    return Detector.load(options.models_dir, device=options.device, precision=options.precision,
                         video_model=options.video_model, audio_model=options.audio_model, compile=options.compile,
                         runtime=options.runtime, video_optional=voice_only)
