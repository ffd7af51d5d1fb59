"""`calibrate`: fit the audio temperature (optionally the video temperature and the decision threshold) on
labelled validation media, and write `calibration.json` next to the model files.

The detector runs once with both temperatures at 1, so each face's and window's P(fake) is the softmax of the
raw logits; the logit difference d = z_fake - z_real = log(p / (1 - p)) is recovered from it (|d| is capped
at 30, where P(fake) stops being representable). Temperatures minimise the negative log-likelihood of the
labels under sigmoid(d / T) (audio: every window, with its file's audio label; video: every face). The
threshold is fitted on the files' fused P(real), recomputed with `fusion.fuse` under the fitted temperatures
and the fusion in use: the one with the best balanced accuracy, or the one that catches the most fakes with
a false-positive rate (real files called FAKE) at most a target.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ..models.calibration import CALIBRATION_FILE, Calibration
from ..errors import InputError, SettingsError
from ..analysis.fusion import fuse
from ..settings import TEMPERATURE_RANGE, AnalysisSettings
from .data import FAKE, LabelledMedia
from .evaluate import run_detector

LOGIT_CAP = 30.0
THRESHOLD_RULES = ("balanced_accuracy", "target_fpr")


# -- pure fitting functions ------------------------------------------------------------------------------
def nll(diffs, y_fake, temperature: float) -> float:
    """Mean negative log-likelihood of labels y (1 = fake) under P(fake) = sigmoid(d / T)."""
    d = np.asarray(diffs, dtype=np.float64) / temperature
    sign = np.where(np.asarray(y_fake).astype(bool), 1.0, -1.0)
    return float(np.mean(np.logaddexp(0.0, -sign * d)))


def fit_temperature(diffs, y_fake) -> float:
    """The temperature T in settings.TEMPERATURE_RANGE (0.05-50) minimising `nll` (searched over log T)."""
    from scipy.optimize import minimize_scalar

    d = np.asarray(diffs, dtype=np.float64)
    y = np.asarray(y_fake).astype(int)
    if len(d) == 0:
        raise SettingsError("no scores to fit a temperature on")
    if len(np.unique(y)) < 2:
        raise SettingsError("a temperature needs both real and fake examples in the validation set")
    lo, hi = np.log(TEMPERATURE_RANGE[0]), np.log(TEMPERATURE_RANGE[1])
    res = minimize_scalar(lambda log_t: nll(d, y, float(np.exp(log_t))), bounds=(lo, hi), method="bounded",
                          options={"xatol": 1e-6})
    return float(np.exp(res.x))


def logit_diff(p_fake) -> np.ndarray:
    """d = log(p / (1 - p)): the logit difference z_fake - z_real behind a two-class softmax P(fake)."""
    p = np.asarray(p_fake, dtype=np.float64)
    with np.errstate(divide="ignore"):
        d = np.log(p) - np.log1p(-p)
    return np.clip(d, -LOGIT_CAP, LOGIT_CAP)


def choose_threshold(real_prob, y_fake, rule: str = "balanced_accuracy", target_fpr: float | None = None) -> dict:
    """The decision threshold on P(real) (REAL when above it) by `rule`:
    balanced_accuracy: the best balanced accuracy (ties: the threshold nearest 0.5);
    target_fpr: the most fakes caught with at most `target_fpr` of the real files called FAKE (ties: the
    lowest false-positive rate, then the threshold nearest 0.5).
    Candidates are 0, 1 and the midpoints between consecutive distinct scores."""
    if rule not in THRESHOLD_RULES:
        raise SettingsError(f"threshold rule must be one of {', '.join(THRESHOLD_RULES)}; got {rule!r}")
    r = np.asarray(real_prob, dtype=np.float64)
    y = np.asarray(y_fake).astype(bool)
    if y.all() or not y.any():
        raise SettingsError("a threshold needs both real and fake files in the validation set")
    values = np.unique(r)
    candidates = np.unique(np.concatenate([[0.0, 1.0], (values[:-1] + values[1:]) / 2]))
    best = None
    for t in candidates:
        called_fake = r <= t
        tpr = called_fake[y].mean()
        fpr = called_fake[~y].mean()
        if rule == "balanced_accuracy":
            key = ((tpr + 1 - fpr) / 2, -abs(t - 0.5))
        else:
            if target_fpr is None or not 0 <= target_fpr <= 1:
                raise SettingsError(f"target_fpr must be in [0, 1]; got {target_fpr!r}")
            if fpr > target_fpr + 1e-12:
                continue
            key = (tpr, -fpr, -abs(t - 0.5))
        if best is None or key > best[0]:
            best = (key, float(t), float(tpr), float(fpr))
    _, t, tpr, fpr = best
    return {"threshold": t, "rule": rule, "target_fpr": target_fpr, "tpr": tpr, "fpr": fpr,
            "balanced_accuracy": (tpr + 1 - fpr) / 2}


# -- collecting logits from the product ------------------------------------------------------------------
@dataclass
class FileLogits:
    media: LabelledMedia
    video: np.ndarray  # (faces,) logit differences, raw (temperature 1)
    audio_per_face: np.ndarray | None  # (faces,) the matched window's logit difference, or None
    audio_windows: np.ndarray  # (windows,) every window's logit difference


def collect_logits(detector, media: list[LabelledMedia], settings: AnalysisSettings, progress: bool = True,
                   log: Callable[[str], None] | None = None) -> tuple[list[FileLogits], list[tuple[str, str]]]:
    """Run the detector at temperature 1 and recover the raw logit differences; (files, skipped files with why)."""
    log = log or (lambda message: print(message, file=sys.stderr))
    raw = settings.replace(audio_temperature=1.0, video_temperature=1.0, abstain_below=None)
    files, skipped = [], []
    for item, report, error in run_detector(detector, media, raw, progress):
        if error is not None:
            skipped.append((str(item.path), f"{type(error).__name__}: {error}"))
            continue
        windows = logit_diff([w.p_fake for w in report.audio_windows]) if report.audio_windows else np.zeros(0)
        if not report.timeline:
            if len(windows):
                files.append(FileLogits(item, np.zeros(0), None, windows))
            skipped.append((str(item.path), f"{report.verdict} ({report.reason})"))
            continue
        video = logit_diff([row.video_p_fake for row in report.timeline])
        matched = [row.audio_window for row in report.timeline]
        audio = windows[np.array(matched, dtype=int)] if len(windows) and None not in matched else None
        files.append(FileLogits(item, video, audio, windows))
    return files, skipped


def fused_real(files: list[FileLogits], settings: AnalysisSettings) -> np.ndarray:
    """Each file's mean fused P(real), as the report computes it, under `settings`' temperatures and fusion."""
    out = []
    for f in files:
        zeros = np.zeros_like(f.video)
        video = np.stack([f.video, zeros], axis=1)  # only the difference matters to a 2-class softmax
        audio = np.stack([f.audio_per_face, zeros], axis=1) if f.audio_per_face is not None else None
        fused = fuse(video, audio, settings.fusion, settings.audio_temperature, settings.video_temperature,
                     settings.adaptive_tau, settings.min_weight)
        out.append(float(fused.probs[:, 1].mean()))
    return np.array(out)


def calibrate(detector, media: list[LabelledMedia], settings: AnalysisSettings | None = None,
              fit_video_temperature: bool = False, threshold_rule: str | None = None,
              target_fpr: float | None = None, data_name: str = "", progress: bool = True,
              log: Callable[[str], None] | None = None) -> Calibration:
    """Fit a Calibration for `detector`'s model files on `media` (never the evaluation set)."""
    log = log or (lambda message: print(message, file=sys.stderr))
    settings = settings or AnalysisSettings()
    files, skipped = collect_logits(detector, media, settings, progress, log)
    details: dict = {"data": data_name or f"{len(media)} files", "files": len(media), "used": len(files),
                     "skipped": [{"path": p, "why": why} for p, why in skipped]}
    audio_t = video_t = threshold = None
    if detector.audio is None:
        log("no audio model: the audio temperature is not fitted")
    else:
        d, y = _pooled((f.audio_windows, f.media.audio_label == FAKE) for f in files)
        if not len(d):
            raise InputError("no audio windows in the validation set: nothing to fit the audio temperature on")
        audio_t = fit_temperature(d, y)
        details["audio_temperature"] = {"windows": int(len(d)), "fake": int(np.sum(y)), "nll_at_1": nll(d, y, 1.0),
                                        "previous": settings.audio_temperature,
                                        "nll_at_previous": nll(d, y, settings.audio_temperature),
                                        "nll_fitted": nll(d, y, audio_t)}
        _warn_at_bound("audio", audio_t, details, log)
    with_faces = [f for f in files if len(f.video)]
    if fit_video_temperature:
        d, y = _pooled((f.video, f.media.video_label == FAKE) for f in with_faces)
        if not len(d):
            raise InputError("no faces in the validation set: nothing to fit the video temperature on")
        video_t = fit_temperature(d, y)
        details["video_temperature"] = {"faces": int(len(d)), "fake": int(np.sum(y)), "nll_at_1": nll(d, y, 1.0),
                                        "nll_fitted": nll(d, y, video_t)}
        _warn_at_bound("video", video_t, details, log)
    if threshold_rule:
        fitted = settings.replace(audio_temperature=audio_t or settings.audio_temperature,
                                  video_temperature=video_t or settings.video_temperature)
        r = fused_real(with_faces, fitted)
        y = np.array([f.media.label == FAKE for f in with_faces])
        if not len(r):
            raise InputError("no judged videos in the validation set: nothing to fit the threshold on")
        choice = choose_threshold(r, y, threshold_rule, target_fpr)
        threshold = choice["threshold"]
        details["threshold"] = {**choice, "videos": int(len(r)), "fusion": settings.fusion}
    return Calibration(
        video_sha256=detector.video.sha256, audio_sha256=detector.audio.sha256 if detector.audio else None,
        audio_temperature=audio_t, video_temperature=video_t, threshold=threshold,
        fusion=settings.fusion if threshold is not None else None,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        details={**details, "models": {"video": detector.video.path.name,
                                       "audio": detector.audio.path.name if detector.audio else None},
                 "settings": {k: v for k, v in settings.to_dict().items()
                              if k in ("fusion", "frame_skip", "max_samples", "face_margin", "audio_window_s",
                                       "audio_overlap", "adaptive_tau", "min_weight")}})


def _pooled(per_file) -> tuple[np.ndarray, np.ndarray]:
    """(scores, is_fake) per file -> every file's scores in one array, and each score's label."""
    per_file = list(per_file)
    if not per_file:
        return np.zeros(0), np.zeros(0, dtype=bool)
    return (np.concatenate([scores for scores, _ in per_file]),
            np.concatenate([np.full(len(scores), fake) for scores, fake in per_file]))


def _warn_at_bound(modality: str, temperature: float, details: dict, log) -> None:
    lo, hi = TEMPERATURE_RANGE
    if temperature > hi / 1.01 or temperature < lo * 1.01:
        warning = (f"the {modality} temperature ran to the edge of its range ({temperature:.3g}): the {modality} "
                   f"scores carry little or no information about these labels")
        details.setdefault("warnings", []).append(warning)
        log(f"warning: {warning}")


def default_calibration_path(detector) -> Path:
    return Path(detector.models_dir) / CALIBRATION_FILE
