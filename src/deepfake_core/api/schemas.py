"""The response bodies as Pydantic models, for the generated OpenAPI document (and the GET answers' checks).
The report's parts are the library's own dataclasses (report.py); its free-form parts stay dicts."""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

from ..analysis.report import AudioWindow, ModalityResult, TimelineRow, Track
from .errors import ErrorBody

Status = Literal["queued", "running", "done", "failed", "cancelled"]


class ReportOut(BaseModel):
    """The same JSON report as `deepfake-detect analyze --json`."""

    model_config = ConfigDict(extra="allow")
    verdict: str = Field(description="REAL, FAKE, UNCERTAIN or NOT_APPLICABLE")
    reason: Optional[str] = None
    explanation: Optional[str] = None
    confidence: Optional[float] = None
    fused_real_prob: Optional[float] = None
    threshold: float
    modalities: dict[str, ModalityResult]
    timeline: list[TimelineRow]
    tracks: list[Track]
    audio_windows: list[AudioWindow]
    media: dict
    counts: dict
    timings: dict
    settings: dict
    models: dict
    notes: list[str]
    file: str
    explanations: Optional[list[dict]] = Field(None, description="Grad-CAM overlays, when explain was asked for")


class Links(BaseModel):
    self: str
    timeline: str


class JobOut(BaseModel):
    """An analysis: its status and progress, and its report once done."""

    id: str
    status: Status
    progress: float = Field(description="0 to 1")
    message: str
    file: str
    created: float = Field(description="Unix time")
    started: Optional[float]
    finished: Optional[float]
    expires: Optional[float] = Field(description="when the result is forgotten (Unix time), once finished")
    links: Links
    error: Optional[ErrorBody] = Field(None, description="why it failed")
    report: Optional[ReportOut] = Field(None, description="once done")


class HealthOut(BaseModel):
    status: Literal["ok"]
    version: str


class ReadyOut(BaseModel):
    status: Literal["ready"]
    workers: int
    queue_size: int
    queued: int
    running: int
