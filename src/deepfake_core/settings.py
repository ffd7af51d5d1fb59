"""Analysis settings: one frozen dataclass, validated at construction."""

from __future__ import annotations

import dataclasses
import difflib
import math
import numbers
from dataclasses import dataclass

from .errors import SettingsError

FUSION_STRATEGIES = ("equal", "video_trust", "adaptive", "noisy_or", "max")
TEMPERATURE_RANGE = (0.05, 50.0)  # a logit divisor outside it turns noise into certainty, or anything into a tie
# UNCERTAIN below this confidence by default (benchmarks/RESULTS.md, "Abstention band", says how it was measured)
DEFAULT_ABSTAIN_BELOW = 0.55
PRECISIONS = ("auto", "fp32", "bf16")
DEVICES = ("auto", "cpu", "cuda", "mps")
# What runs the networks: auto = OpenVINO on a CPU when it is installed, else PyTorch (runtime.pick_runtime).
RUNTIMES = ("auto", "torch", "openvino")


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
    # A verdict whose confidence is below this becomes UNCERTAIN (None or 0.5: never).
    abstain_below: float | None = DEFAULT_ABSTAIN_BELOW
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
    # Wall-clock budget of one analysis in seconds: past it the analysis stops with AnalysisTimeout (None: none).
    max_analysis_s: float | None = 1800.0
    # How many sampled frames to keep as small thumbnails (with their face boxes) for display.
    thumbnails: int = 8
    # The calibration file whose fitted values these settings carry (set by the commands; None: none used).
    calibration: str | None = None
    # Judge the voice alone, even in a file with a video track (audio files are always judged this way).
    audio_only: bool = False
    # Skip res10 on a sampled frame whose faces barely moved since the last detection and where nothing else
    # changed: their boxes are reused (tracking.FaceReuse; the same faces found, measured in benchmarks/RESULTS.md).
    face_reuse: bool = True

    def __post_init__(self) -> None:
        check_choice("fusion", self.fusion, FUSION_STRATEGIES)
        for name, low, high in _RANGES:
            value = getattr(self, name)
            if value is None and name in _OPTIONAL:
                continue
            check_number(name, value, low, high)
        for name in ("frame_skip", "max_samples", "max_faces_per_frame", "batch_size",
                     "max_frame_pixels"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise SettingsError(f"{name} must be a whole number >= 1; got {value!r}", name)
        if not isinstance(self.face_reuse, bool):
            raise SettingsError(f"face_reuse must be true or false; got {self.face_reuse!r}", "face_reuse")
        for name in ("min_face_size", "thumbnails"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise SettingsError(f"{name} must be a whole number >= 0; got {value!r}", name)

    def replace(self, **changes) -> "AnalysisSettings":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# Every float setting: (name, lowest, highest), both included. Finite numbers only.
_RANGES = (
    ("threshold", 0.0, 1.0),
    ("face_confidence", 0.0, 1.0),
    ("min_weight", 0.0, 0.5),
    ("audio_overlap", 0.0, 0.95),
    ("abstain_below", 0.5, 1.0),
    ("audio_temperature", *TEMPERATURE_RANGE),
    ("video_temperature", *TEMPERATURE_RANGE),
    ("adaptive_tau", 0.0, 100.0),
    ("face_margin", 0.0, 2.0),
    ("audio_window_s", 0.5, 30.0),
    ("max_file_mb", 0.001, 1_048_576.0),
    ("max_duration_s", 0.1, 1_000_000.0),
    ("max_analysis_s", 1.0, 1_000_000.0),
)
_OPTIONAL = {"abstain_below", "max_analysis_s"}  # None allowed: off


def check_number(name: str, value, low: float, high: float) -> float:
    """`value` as a float if it is a finite real number (not a bool or a string) in [low, high], else raise
    SettingsError naming `name`, the range and the value."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if ok:
        value = float(value)
        ok = math.isfinite(value) and low <= value <= high
    if not ok:
        raise SettingsError(f"{name} must be between {low} and {high} (a finite number); got {value!r}", name)
    return value
