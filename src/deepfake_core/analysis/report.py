"""The analysis report: plain dataclasses, JSON-safe via to_dict(), a readable summary and a CSV timeline."""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import PurePath
from typing import Any

import numpy as np

REAL, FAKE, UNCERTAIN, NOT_APPLICABLE = "REAL", "FAKE", "UNCERTAIN", "NOT_APPLICABLE"

class Reason(str, Enum):
    """Why a report is NOT_APPLICABLE or UNCERTAIN (`Report.reason`). A member equals (and hashes as) its code,
    the plain string reports, JSON and CSV carry: Reason.NO_FACE == "no_face". (Python 3.10 has no StrEnum.)"""

    NO_FACE = "no_face"
    NO_VIDEO_STREAM = "no_video_stream"
    STILL_IMAGE = "still_image"
    TOO_SHORT = "too_short"
    VIDEO_UNREADABLE = "video_unreadable"
    ABSTAINED = "abstained"
    NO_SPEECH = "no_speech"
    NO_AUDIO_TRACK = "no_audio_track"
    NO_AUDIO_MODEL = "no_audio_model"

    def __str__(self) -> str:  # str(), f-strings and csv write the code, as before, on every Python version
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)


# Why a video could not be judged, in plain words (one per Reason; REASONS["no_face"] finds it too).
REASONS: dict[str, str] = {
    Reason.NO_FACE: "No face was found in any sampled frame, so the video could not be judged.",
    Reason.NO_VIDEO_STREAM: "The file has no video track (audio only); this detector judges faces.",
    Reason.STILL_IMAGE: "The file is a single still image, not a video.",
    Reason.TOO_SHORT: "The video has no frames to analyse.",
    Reason.VIDEO_UNREADABLE: "The video track could not be decoded (damaged); only the audio was judged.",
    Reason.ABSTAINED: "The evidence is too weak either way: confidence is below the abstention threshold.",
    Reason.NO_SPEECH: "The audio holds no speech, so the voice could not be judged (and there is no face to judge).",
    Reason.NO_AUDIO_TRACK: "The file has neither a video track nor an audio track to judge.",
    Reason.NO_AUDIO_MODEL: "The file has no video track, and no audio model is installed to judge its voice "
                           "(deepfake-detect weights pull, or a build with the built-in audio model).",
}


# Notes said right under the verdict (the summary's second line, the JSON's first keys hold all notes): who judged
# when it was not the original model the user may expect.
BUILTIN_VIDEO_NOTE = "video judged by the built-in model"
FIRST_NOTES = (BUILTIN_VIDEO_NOTE,)


@dataclass
class ModalityResult:
    available: bool  # False when this modality could not be judged (see `note`)
    fake_prob: float | None = None  # P(FAKE) of its items made one (video: by the model's aggregation, see models)
    real_prob: float | None = None
    prediction: str | None = None  # REAL or FAKE by its own mean (threshold 0.5)
    weight: float | None = None  # mean fusion weight it received
    count: int = 0  # faces (video) or windows (audio) scored
    note: str | None = None


@dataclass
class TimelineRow:
    time_s: float  # presentation time of the sampled frame
    frame_index: int
    box: list[int]  # [x1, y1, x2, y2] in the displayed frame
    detector: str  # "dnn" or "haar"
    face_confidence: float | None
    track: int
    video_p_fake: float
    audio_window: int | None  # index into audio_windows, the window whose span holds time_s (else nearest)
    audio_p_fake: float | None
    fused_p_fake: float
    weight_video: float
    weight_audio: float
    stray: bool = False  # a lone detection (its track has one face): shown, not counted in the verdict


@dataclass
class AudioWindow:
    index: int
    start_s: float
    end_s: float
    p_fake: float  # after the audio temperature


@dataclass
class Track:
    id: int
    first_s: float
    last_s: float
    faces: int
    video_p_fake: float  # its faces' P(fake) made one by the video model's aggregation
    fused_p_fake: float  # the same, of the fused scores
    prediction: str  # by the report's threshold on the mean fused real probability
    stray: bool = False  # seen in a single sampled frame while another track spans several: not counted


@dataclass
class Thumbnail:
    frame_index: int
    time_s: float
    image: np.ndarray  # (h, w, 3) uint8 RGB, downscaled
    boxes: list[list[int]]  # face boxes scaled to the thumbnail
    scale: float


@dataclass
class Report:
    verdict: str  # REAL, FAKE, UNCERTAIN or NOT_APPLICABLE
    reason: str | None  # a Reason when NOT_APPLICABLE or UNCERTAIN
    confidence: float | None  # probability of the verdict's class (fused)
    # fused P(REAL) of the counted faces made one by the video model's aggregation (models["video"]["aggregation"]:
    # mean_logit for the built-in model, mean_prob for the original); faces judged alone: 1 - video fake_prob
    fused_real_prob: float | None
    threshold: float
    modalities: dict[str, ModalityResult]
    timeline: list[TimelineRow]
    tracks: list[Track]
    media: dict
    counts: dict
    timings: dict  # seconds per stage, and "total"
    settings: dict
    models: dict
    audio_windows: list[AudioWindow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what could not be judged, and why
    file: str = ""
    thumbnails: list[Thumbnail] = field(default_factory=list, repr=False)  # for display; not in to_dict()
    # Grad-CAM heatmaps of the most suspicious faces (explain.Explanation), only when asked (explain_report)
    explanations: list = field(default_factory=list, repr=False)

    @property
    def explanation(self) -> str:
        if self.reason in REASONS:
            return REASONS[self.reason]
        if self.verdict in (REAL, FAKE):
            return (f"Mean fused probability of REAL is {self.fused_real_prob:.3f} "
                    f"({'above' if self.verdict == REAL else 'not above'} the threshold {self.threshold:.2f}).")
        return ""

    def to_dict(self) -> dict[str, Any]:
        d = {
            "verdict": self.verdict,
            "reason": None if self.reason is None else str(self.reason),  # the plain code
            "explanation": self.explanation,
            "notes": list(self.notes),  # near the top: who judged, what could not be judged
            "confidence": self.confidence,
            "fused_real_prob": self.fused_real_prob,
            "threshold": self.threshold,
            "modalities": {k: asdict(v) for k, v in self.modalities.items()},
            "timeline": [asdict(r) for r in self.timeline],
            "tracks": [asdict(t) for t in self.tracks],
            "audio_windows": [asdict(w) for w in self.audio_windows],
            "media": self.media,
            "counts": self.counts,
            "timings": self.timings,
            "settings": self.settings,
            "models": self.models,
            "file": self.file,
        }
        if self.explanations:
            d["explanations"] = [e.to_dict() for e in self.explanations]
        return json_safe(d)

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def timeline_csv(self) -> str:
        out = io.StringIO()
        names = list(TimelineRow.__dataclass_fields__)
        writer = csv.DictWriter(out, fieldnames=names)
        writer.writeheader()
        for row in self.timeline:
            d = asdict(row)
            d["box"] = " ".join(str(v) for v in row.box)
            writer.writerow(d)
        return out.getvalue()

    def summary(self) -> str:
        """A few lines for a person reading a terminal."""
        lines = [f"{self.file}", f"  verdict:     {self.verdict}"]
        unofficial = unofficial_models(self.models)
        if unofficial:
            lines[-1] += f"   ({unofficial_sentence(unofficial)})"
        first = [note for note in self.notes if note.startswith(FIRST_NOTES)]
        lines += [f"  note:        {note}" for note in first]
        if self.reason:
            lines.append(f"  why:         {self.explanation}")
        if self.confidence is not None:
            lines.append(f"  confidence:  {self.confidence:.3f}   (fused P(real) {self.fused_real_prob:.3f}, "
                         f"threshold {self.threshold:.2f}, fusion {self.settings.get('fusion')})")
        for name, m in self.modalities.items():
            if m.available:
                weight = f", weight {m.weight:.2f}" if m.weight is not None else ""
                lines.append(f"  {name + ':':12} P(fake) {m.fake_prob:.3f} -> {m.prediction} "
                             f"({m.count} scored{weight})")
            else:
                lines.append(f"  {name + ':':12} not judged: {m.note}")
        c = self.counts
        lines.append(f"  analysed:    {c.get('frames_sampled', 0)} frames sampled of {c.get('frames_decoded', 0)} "
                     f"decoded, {c.get('faces', 0)} faces in {len(self.tracks)} track(s), "
                     f"{c.get('audio_windows', 0)} audio windows, {self.timings.get('total', 0.0):.1f} s")
        if len(self.tracks) > 1:
            for t in self.tracks:
                lines.append(f"  person {t.id}:    {t.faces} faces {t.first_s:.1f}-{t.last_s:.1f} s, "
                             f"P(fake) {t.fused_p_fake:.3f} -> {t.prediction}")
        used = []
        for name in ("video", "audio"):
            m = self.models.get(name)
            if isinstance(m, dict):
                origin = ("published file" if m.get("published") else
                          "the built-in model" if m.get("shipped") else "not the published file")
                used.append(f"{name} {m.get('file')} ({str(m.get('sha256'))[:8]}, {origin})")
        if used:
            lines.append(f"  models:      {' · '.join(used)}; {self.models.get('device')}, "
                         f"{self.models.get('precision')}")
        faces = self.models.get("face_detector")
        if isinstance(faces, dict) and faces.get("methods"):
            lines.append(f"  faces by:    {face_finder_words(faces)}")
        if self.explanations:
            files = [e.file for e in self.explanations if e.file]
            lines.append(f"  explained:   {len(self.explanations)} most suspicious face(s), Grad-CAM"
                         + (f": {', '.join(files)}" if files else " (overlays in the --json report)"))
        lines += [f"  note:        {note}" for note in self.notes if note not in first]
        return "\n".join(lines)


def face_finder_words(face_detector: dict) -> str:
    """How the faces were found, in words: "res10 SSD (files from the models folder) + Haar cascade", or
    "Haar cascade only (...)" (a report's models["face_detector"])."""
    if "dnn" not in (face_detector.get("methods") or []):
        return "Haar cascade only (no res10 files: see the WARNING note)"
    source = face_detector.get("source")
    return "res10 SSD" + (f" (files from the {source})" if source else "") + " + Haar cascade"


def unofficial_models(models: dict) -> list[str]:
    """"video FILE" / "audio FILE" for each loaded model file that is neither a published file (its sha256
    pinned in the weights registry, or converted from one) nor the shipped built-in model."""
    out = []
    for name in ("video", "audio"):
        m = models.get(name) if isinstance(models, dict) else None
        if isinstance(m, dict) and not (m.get("published") or m.get("shipped")):
            out.append(f"{name} {m.get('file')}")
    return out


def unofficial_sentence(unofficial: list[str]) -> str:
    return (f"judged by model files that are not the published ones: {', '.join(unofficial)}; "
            f"the verdict is only as good as those files")


def json_safe(obj):
    """`obj` with numpy scalars and arrays turned into Python numbers and lists, NaN/inf into None, paths
    into strings and dict keys into strings, so json.dumps accepts it."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        value = float(obj)
        return value if math.isfinite(value) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist())
    if isinstance(obj, PurePath):
        return str(obj)
    return obj
