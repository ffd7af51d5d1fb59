"""The plumbing every stage of one analysis reads (`Context`), what the stages use of the Detector
(`StageDetector`), and the wall time per stage (`StageTimer`)."""

from __future__ import annotations

import contextlib
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from ..limits import Deadline
from ..media.video import DecodeStats, MediaInfo
from ..settings import AnalysisSettings

if TYPE_CHECKING:  # for the annotations only: these modules import torch
    import numpy as np
    import torch

    from ..faces.detect import FaceBox
    from ..models.checkpoints import LoadedModel

Progress = Callable[[float, str], None]  # (fraction done, what is being done)
STAGES = ("probe_decode", "face_detection", "crop_preprocess", "video_model", "audio_decode_mel",
          "audio_model", "fusion_report")


class StageDetector(Protocol):
    """What the stages (face_stage, audio_stage, run) use of the Detector (pipeline.Detector): its loaded models,
    its networks and its face finder; a test may hand them any object that has these."""

    video: LoadedModel  # the face model
    audio: LoadedModel | None  # the voice model (None: the voice is not judged)
    audio_missing: str | None  # why there is no audio model (None: none was asked for)
    video_aggregation: str  # how the face model's scores become one video score (fusion.AGGREGATIONS)
    video_abstain_below: float | None  # the face model's own UNCERTAIN band (None: the settings decide)
    models_dir: Path  # where the model files were found
    overlap: bool  # decode and find faces in a background thread while the networks run
    min_batch: int  # the smallest batch a forward pass is padded to
    load_notes: tuple[str, ...]  # what loading found; every report starts with these

    def score(self, loaded: LoadedModel, items: torch.Tensor | list[torch.Tensor],
              batch_size: int) -> np.ndarray: ...

    def detect_faces(self, image_bgr: np.ndarray, previous: Sequence[FaceBox] = ()) -> list[FaceBox]: ...

    def describe_models(self) -> dict: ...


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

    detector: StageDetector  # the pipeline.Detector: its networks (score), face finder (detect_faces), models
    path: Path  # the file analysed
    settings: AnalysisSettings
    notify: Progress
    batch: int  # inputs per forward pass
    deadline: Deadline
    timer: StageTimer = field(default_factory=StageTimer)
    stats: DecodeStats = field(default_factory=DecodeStats)  # video decoding, counted by face_stage
    info: MediaInfo | None = None  # the probed video; None for a file without a video track
