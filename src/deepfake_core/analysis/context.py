"""The plumbing every stage of one analysis reads (`Context`), and the wall time per stage (`StageTimer`)."""

from __future__ import annotations

import contextlib
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..limits import Deadline
from ..settings import AnalysisSettings
from ..media.video import DecodeStats, MediaInfo

Progress = Callable[[float, str], None]  # (fraction done, what is being done)
STAGES = ("probe_decode", "face_detection", "crop_preprocess", "video_model", "audio_decode_mel",
          "audio_model", "fusion_report")


class StageTimer:
    """Accumulates wall time per named stage."""

    def __init__(self):
        self.seconds: dict[str, float] = defaultdict(float)

    @contextlib.contextmanager
    def __call__(self, stage: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] += time.perf_counter() - start


@dataclass
class Context:
    """One analysis as its stages (audio_stage, face_stage) see it."""

    detector: Any  # the pipeline.Detector: its networks (score), face detector (detect_faces), video, audio
    path: Path  # the file analysed
    settings: AnalysisSettings
    notify: Progress
    batch: int  # inputs per forward pass
    deadline: Deadline
    timer: StageTimer = field(default_factory=StageTimer)
    stats: DecodeStats = field(default_factory=DecodeStats)  # video decoding, counted by face_stage
    info: MediaInfo | None = None  # the probed video; None for a file without a video track
