"""The wall-clock budget of one analysis (AnalysisSettings.max_analysis_s)."""

from __future__ import annotations

import time

from .errors import AnalysisTimeout


class Deadline:
    """`check(stage)` raises AnalysisTimeout once `seconds` have passed since construction (never for None).
    Checked between batches and frames, so an analysis ends within one batch of its budget."""

    def __init__(self, seconds: float | None, name: str = "the file"):
        self.seconds = seconds
        self.name = name
        self.start = time.monotonic()

    def expired(self) -> bool:
        return self.seconds is not None and time.monotonic() - self.start > self.seconds

    def check(self, stage: str) -> None:
        if self.expired():
            raise AnalysisTimeout(
                f"the analysis of {self.name!r} ran past its {self.seconds:g} s budget (while {stage}) and was "
                f"stopped; raise max_analysis_s (--time-budget), or look at fewer frames (--max-samples)")
