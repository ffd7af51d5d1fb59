"""Analysis settings: one frozen dataclass, validated at construction."""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass

from .errors import SettingsError

FUSION_STRATEGIES = ("equal", "video_trust", "adaptive", "noisy_or", "max")
PRECISIONS = ("auto", "fp32", "bf16")
DEVICES = ("auto", "cpu", "cuda", "mps")


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> str:
    """Return `value` if it is one of `choices`, else raise naming the valid ones (and a near match)."""
    if value in choices:
        return value
    near = difflib.get_close_matches(str(value), choices, n=1)
    hint = f" Did you mean {near[0]!r}?" if near else ""
    raise SettingsError(f"{name} must be one of {', '.join(choices)}; got {value!r}.{hint}")


@dataclass(frozen=True)
class AnalysisSettings:
    # How video and audio evidence are combined: equal (0.5/0.5, the original app's default),
    # video_trust (the original rule: 0.9/0.1, 0.85/0.15 or 0.7/0.3), adaptive (confidence-weighted), or
    # either modality confidently fake flags the moment: noisy_or (1 - (1 - p_v)(1 - p_a)) or max (max(p_v, p_a)).
    fusion: str = "equal"
    # Audio logits are divided by this before softmax and fusion (>1 softens an overconfident model).
    audio_temperature: float = 2.0
    # Video logits are divided by this (1.0 = unchanged; a calibration may set it).
    video_temperature: float = 1.0
    # REAL when the mean fused real probability is above this, else FAKE.
    threshold: float = 0.5
    # When set, a verdict whose confidence is below this becomes UNCERTAIN.
    abstain_below: float | None = None
    # Sharpness of the adaptive weights: alpha = softmax(tau * [r_video, r_audio]).
    adaptive_tau: float = 0.5
    # Floor for each adaptive weight.
    min_weight: float = 0.2
    # Look at every n-th frame...
    frame_skip: int = 5
    # ...but at most this many frames; a longer video gets a wider stride so samples span all of it.
    max_samples: int = 60
    # Faces analysed per sampled frame (largest first).
    max_faces_per_frame: int = 4
    # res10 SSD confidence a face must exceed.
    face_confidence: float = 0.3
    # Smallest face side in pixels (in the original frame).
    min_face_size: int = 80
    # Extra context around the face box, as a fraction of its size (0 = the raw box the original models saw).
    face_margin: float = 0.0
    # Audio window length in seconds and overlap fraction (the original recipe: 2.0 s, 0.5).
    audio_window_s: float = 2.0
    audio_overlap: float = 0.5
    # Crops or windows per model forward pass.
    batch_size: int = 16
    # Refuse files larger than this (MB), longer than this (s), or with more pixels per frame than this.
    max_file_mb: float = 4096.0
    max_duration_s: float = 4 * 3600.0
    max_frame_pixels: int = 7680 * 4320
    # How many sampled frames to keep as small thumbnails (with their face boxes) for display.
    thumbnails: int = 8
    # The calibration file whose fitted values these settings carry (set by the commands; None: none used).
    calibration: str | None = None
    # Judge the voice alone, even in a file with a video track (audio files are always judged this way).
    audio_only: bool = False

    def __post_init__(self) -> None:
        check_choice("fusion", self.fusion, FUSION_STRATEGIES)
        for name in ("threshold", "min_weight", "face_confidence"):
            _in_range(name, getattr(self, name), 0.0, 1.0)
        _in_range("min_weight", self.min_weight, 0.0, 0.5)
        _in_range("audio_overlap", self.audio_overlap, 0.0, 0.95)
        if self.abstain_below is not None:
            _in_range("abstain_below", self.abstain_below, 0.5, 1.0)
        for name in ("audio_temperature", "video_temperature", "audio_window_s",
                     "max_file_mb", "max_duration_s"):
            if not getattr(self, name) > 0:
                raise SettingsError(f"{name} must be > 0; got {getattr(self, name)!r}")
        if self.adaptive_tau < 0:
            raise SettingsError(f"adaptive_tau must be >= 0; got {self.adaptive_tau!r}")
        if self.face_margin < 0:
            raise SettingsError(f"face_margin must be >= 0; got {self.face_margin!r}")
        for name in ("frame_skip", "max_samples", "max_faces_per_frame", "batch_size",
                     "max_frame_pixels"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise SettingsError(f"{name} must be a whole number >= 1; got {value!r}")
        if not isinstance(self.min_face_size, int) or self.min_face_size < 0:
            raise SettingsError(f"min_face_size must be a whole number >= 0; got {self.min_face_size!r}")
        if not isinstance(self.thumbnails, int) or self.thumbnails < 0:
            raise SettingsError(f"thumbnails must be a whole number >= 0; got {self.thumbnails!r}")

    def replace(self, **changes) -> "AnalysisSettings":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _in_range(name: str, value, low: float, high: float) -> None:
    try:
        ok = low <= float(value) <= high
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise SettingsError(f"{name} must be between {low} and {high}; got {value!r}")
