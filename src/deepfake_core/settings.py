"""Analysis settings: one frozen dataclass, validated at construction.

Each field is declared once, with what it needs beyond its type and default in its metadata (`setting()`):
the valid range or choices (the validation), its command-line option (`Option`: flag, help; cli/options.py
makes the argparse options from it) and its widget on the web page (`Widget`). Help texts name the default
as `{default}`, filled in from the field.
"""

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


@dataclass(frozen=True)
class Option:
    """A field's command-line option. `help` may hold `{default}` (str.format, with a format spec if wanted)."""

    flag: str  # e.g. "--frame-skip"; a bool field with default True takes "--no-..." (it turns it off)
    help: str
    metavar: str | None = None
    none_if: object = None  # the option's value that stands for None in the field (e.g. 0: no time limit)
    short: str | None = None  # a one-letter alias, e.g. "-q"


@dataclass(frozen=True)
class Widget:
    """A field's widget on the web page: a select box (choices), a slider or a number input (low..high, step).
    An optional field (None allowed) gets a check box first (`toggle`: its label, key and help)."""

    label: str
    kind: str  # "select", "slider" or "number"
    help: str | None = None
    low: float | None = None
    high: float | None = None
    step: float | None = None
    labels: dict | None = None  # shown names of the choices
    toggle: tuple[str, str, str] | None = None  # (label, key, help) of the check box that turns None on and off


def setting(default, *, range: tuple[float, float] | None = None, minimum: int | None = None,
            choices: tuple[str, ...] | None = None, optional: bool = False, option: Option | None = None,
            widget: Widget | None = None):
    """A dataclass field with its rules: `range` (a finite number in [low, high]), `minimum` (a whole number
    >= minimum), `choices`, `optional` (None allowed: off); its command-line `option` and page `widget`."""
    meta = {k: v for k, v in dict(range=range, minimum=minimum, choices=choices, optional=optional,
                                  option=option, widget=widget).items() if v not in (None, False)}
    return dataclasses.field(default=default, metadata=meta)


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> str:
    """Return `value` if it is one of `choices`, else raise naming the valid ones (and a near match)."""
    if value in choices:
        return value
    near = difflib.get_close_matches(str(value), choices, n=1)
    hint = f" Did you mean {near[0]!r}?" if near else ""
    raise SettingsError(f"{name} must be one of {', '.join(choices)}; got {value!r}.{hint}")


def validate(obj) -> None:
    """Check every field of the dataclass `obj` against the rules in its metadata (`setting()`); raise
    SettingsError naming the field, its rule and the value."""
    for f in dataclasses.fields(obj):
        value, meta = getattr(obj, f.name), f.metadata
        if value is None and meta.get("optional"):
            continue
        if f.type in (bool, "bool") and not isinstance(value, bool):
            raise SettingsError(f"{f.name} must be true or false; got {value!r}", f.name)
        if "choices" in meta:
            check_choice(f.name, value, meta["choices"])
        if "range" in meta:
            check_number(f.name, value, *meta["range"])
        if "minimum" in meta:
            low = meta["minimum"]
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise SettingsError(f"{f.name} must be a whole number >= {low}; got {value!r}", f.name)


def widget_fields(cls) -> list[dataclasses.Field]:
    """The fields of the dataclass `cls` that have a widget on the web page, in declaration order."""
    return [f for f in dataclasses.fields(cls) if "widget" in f.metadata]


_VALUE_TYPES = {"int": int, "float": float, "str": str, "bool": bool}


def value_type(f: dataclasses.Field) -> type:
    """int, float, str or bool: the type of a field's values, None aside (from its annotation)."""
    return _VALUE_TYPES[str(f.type).replace(" | None", "").strip()]


def help_text(f: dataclasses.Field) -> str:
    """The help of a field's option, its default filled in."""
    return f.metadata["option"].help.format(default=f.default)


FUSION_LABELS = {"equal": "equal (0.5 / 0.5)", "video_trust": "video trust (original rule)",
                 "adaptive": "adaptive (confidence-weighted)", "noisy_or": "either fake (noisy-OR)",
                 "max": "either fake (max)"}


@dataclass(frozen=True)
class AnalysisSettings:
    # How video and audio evidence are combined: equal (0.5/0.5, the original app's default),
    # video_trust (the original rule: 0.9/0.1, 0.85/0.15 or 0.7/0.3), adaptive (confidence-weighted), or
    # either modality confidently fake flags the moment: noisy_or (1 - (1 - p_v)(1 - p_a)) or max (max(p_v, p_a)).
    fusion: str = setting(
        "equal", choices=FUSION_STRATEGIES,
        option=Option("--fusion", "how video and audio are combined: equal, video_trust, adaptive (weighted "
                      "logits), or noisy_or / max (either modality confidently fake flags it) (default: {default}; "
                      "the built-in audio model's file may name another)"),
        widget=Widget("Fusion strategy", "select", labels=FUSION_LABELS, help=(
            "How the face and voice scores are combined. **equal**: half each (the original app's default). "
            "**video trust**: mostly the face (0.9 / 0.85 / 0.7 depending on how sure it is). "
            "**adaptive**: the more confident model gets more weight (each at least 0.2). "
            "**either fake**: a confidently fake face *or* voice is enough (a generated face over a real voice): "
            "noisy-OR 1 - (1 - p_face)(1 - p_voice), or the larger of the two.")))
    # Audio logits are divided by this before softmax and fusion (>1 softens an overconfident model).
    audio_temperature: float = setting(
        2.0, range=TEMPERATURE_RANGE,
        option=Option("--audio-temperature", "divide audio logits by T before fusion (default: the calibration's, "
                      "else {default})", metavar="T"),
        widget=Widget("Audio temperature", "slider", low=1.0, high=10.0, step=0.1, help=(
            "The voice model is over-confident; its scores are softened by dividing by this "
            "before they are combined. 1 = unchanged, higher = softer.")))
    # Video logits are divided by this (1.0 = unchanged; a calibration may set it).
    video_temperature: float = setting(
        1.0, range=TEMPERATURE_RANGE,
        option=Option("--video-temperature", "divide video logits by T (default: the calibration's, else {default})",
                      metavar="T"))
    # REAL when the mean fused real probability is above this, else FAKE.
    threshold: float = setting(
        0.5, range=(0.0, 1.0),
        option=Option("--threshold", "REAL when the mean fused real probability is above X (default: the "
                      "calibration's, else {default})", metavar="X"),
        widget=Widget("Decision threshold", "slider", low=0.3, high=0.7, step=0.01, help=(
            "The video is called REAL when the mean combined probability of REAL is above this. "
            "Lower it to call fewer videos FAKE.")))
    # A verdict whose confidence is below this becomes UNCERTAIN (None or 0.5: never).
    abstain_below: float | None = setting(
        DEFAULT_ABSTAIN_BELOW, range=(0.5, 1.0), optional=True,
        option=Option("--abstain-below", "say UNCERTAIN when the confidence is below C, 0.5-1 (default: {default}; "
                      "0.5: never)", metavar="C"),
        widget=Widget("…below this confidence", "slider", low=0.5, high=0.95, step=0.01, toggle=(
            "Say UNCERTAIN when confidence is low", "abstain",
            "Say UNCERTAIN instead of REAL or FAKE when the confidence is below the value you set.")))
    # Sharpness of the adaptive weights: alpha = softmax(tau * [r_video, r_audio]).
    adaptive_tau: float = setting(0.5, range=(0.0, 100.0))
    # Floor for each adaptive weight.
    min_weight: float = setting(0.2, range=(0.0, 0.5))
    # Look at every n-th frame...
    frame_skip: int = setting(
        5, minimum=1, option=Option("--frame-skip", "look at every N-th frame (default: {default})", metavar="N"),
        widget=Widget("Frame skip", "slider", low=1, high=15,
                      help="Look at every n-th frame. Smaller = more frames looked at, slower."))
    # ...but at most this many frames; a longer video gets a wider stride so samples span all of it.
    max_samples: int = setting(
        60, minimum=1,
        option=Option("--max-samples", "at most N sampled frames, spread over the whole video (default: {default})",
                      metavar="N"),
        widget=Widget("Max frames to sample", "number", low=1, high=1000, step=10, help=(
            "At most this many frames are analysed; a long video gets a wider spacing so the "
            "samples cover all of it. Lower = faster.")))
    # Faces analysed per sampled frame (largest first).
    max_faces_per_frame: int = setting(4, minimum=1)
    # res10 SSD confidence a face must exceed.
    face_confidence: float = setting(0.3, range=(0.0, 1.0))
    # Smallest face side in pixels (in the original frame).
    min_face_size: int = setting(80, minimum=0)
    # Extra context around the face box, as a fraction of its size (0 = the raw box the original models saw).
    face_margin: float = setting(
        0.0, range=(0.0, 2.0),
        option=Option("--face-margin", "grow each face crop by M x its size per side (default: {default:g}, as the "
                      "models were trained)", metavar="M"))
    # Audio window length in seconds and overlap fraction (the original recipe: 2.0 s, 0.5).
    audio_window_s: float = setting(2.0, range=(0.5, 30.0))
    audio_overlap: float = setting(0.5, range=(0.0, 0.95))
    # Crops or windows per model forward pass.
    batch_size: int = setting(16, minimum=1)
    # Refuse files larger than this (MB), longer than this (s), or with more pixels per frame than this.
    max_file_mb: float = setting(4096.0, range=(0.001, 1_048_576.0))
    max_duration_s: float = setting(4 * 3600.0, range=(0.1, 1_000_000.0))
    max_frame_pixels: int = setting(7680 * 4320, minimum=1)
    # Wall-clock budget of one analysis in seconds: past it the analysis stops with AnalysisTimeout (None: none).
    max_analysis_s: float | None = setting(
        1800.0, range=(1.0, 1_000_000.0), optional=True,
        option=Option("--time-budget", "stop an analysis that runs longer than S seconds, with an error (default: "
                      "{default:g}; 0: no limit)", metavar="S", none_if=0))
    # How many sampled frames to keep as small thumbnails (with their face boxes) for display.
    thumbnails: int = setting(8, minimum=0)
    # The calibration file whose fitted values these settings carry (set by the commands; None: none used).
    calibration: str | None = None
    # Judge the voice alone, even in a file with a video track (audio files are always judged this way).
    audio_only: bool = setting(
        False, option=Option("--audio-only", "judge the voice alone, even in a video (audio files are always "
                             "judged this way)"))
    # Skip res10 on a sampled frame whose faces barely moved since the last detection and where nothing else
    # changed: their boxes are reused (tracking.FaceReuse; the same faces found, measured in benchmarks/RESULTS.md).
    face_reuse: bool = setting(
        True, option=Option("--no-face-reuse", "run the face detector on every sampled frame (default: a still "
                            "face's box is reused)"))

    def __post_init__(self) -> None:
        validate(self)

    def replace(self, **changes) -> "AnalysisSettings":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


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
