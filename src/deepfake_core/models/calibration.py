"""A calibration: temperatures and a threshold fitted on labelled validation videos (`deepfake-detect
calibrate`), stored as `calibration.json` next to the model files and tied to those files' sha256.

`analyze`, `scan`, `evaluate`, the page, the API and the Ray scan apply it by default to every value the user did
not set explicitly (`Detector.resolve_settings`); a calibration fitted for other model files is ignored, with a note
in the report. Light: no torch import.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import SettingsError

CALIBRATION_FILE = "calibration.json"
CALIBRATION_FORMAT = "deepfake_core/models/calibration/1"
CALIBRATED_FIELDS = ("audio_temperature", "video_temperature", "threshold")


@dataclass(frozen=True)
class Calibration:
    video_sha256: str  # the video model file it was fitted with
    audio_sha256: str | None  # the audio model file (None: fitted without an audio model)
    audio_temperature: float | None = None  # None: not fitted
    video_temperature: float | None = None
    threshold: float | None = None  # on the mean fused REAL probability
    fusion: str | None = None  # the fusion strategy the threshold was fitted for
    created: str = ""
    details: dict = field(default_factory=dict)  # how it was fitted: data, counts, NLL before/after, rule

    def values(self) -> dict[str, float]:
        return {name: getattr(self, name) for name in CALIBRATED_FIELDS if getattr(self, name) is not None}

    def to_dict(self) -> dict:
        return {"format": CALIBRATION_FORMAT, **dataclasses.asdict(self)}

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2))
        os.replace(tmp, path)
        return path

    def describe(self) -> str:
        values = ", ".join(f"{k.replace('_', ' ')} {v:.4g}" for k, v in self.values().items())
        where = self.details.get("data")
        return f"{values}" + (f" (fitted on {where})" if where else "")


def read_calibration(path: str | os.PathLike) -> Calibration:
    """The calibration in `path`, every field checked (type, finite, range); SettingsError naming the file
    and the field otherwise."""
    path = Path(path)
    try:
        d = json.loads(path.read_text(), parse_constant=_refuse_constant)
        if not isinstance(d, dict):
            raise ValueError(f"expected a JSON object, got {type(d).__name__}")
        if d.get("format") != CALIBRATION_FORMAT:
            raise ValueError(f"format {d.get('format')!r}, expected {CALIBRATION_FORMAT}")
        d.pop("format")
        cal = Calibration(**d)
        _check_fields(cal)
        return cal
    except (OSError, ValueError, TypeError, RecursionError) as e:  # SettingsError is a ValueError
        raise SettingsError(f"{path} is not a valid calibration file ({e}); delete it or run "
                            f"deepfake-detect calibrate again") from e


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a number a calibration can hold")


def _check_fields(cal: Calibration) -> None:
    from ..settings import FUSION_STRATEGIES, TEMPERATURE_RANGE, check_choice, check_number

    for name in ("video_sha256", "audio_sha256"):
        value = getattr(cal, name)
        if not (isinstance(value, str) and len(value) == 64) and not (value is None and name == "audio_sha256"):
            raise ValueError(f"{name} must be a 64-character sha256; got {value!r}")
    for name in ("audio_temperature", "video_temperature"):
        if getattr(cal, name) is not None:
            check_number(name, getattr(cal, name), *TEMPERATURE_RANGE)
    if cal.threshold is not None:
        check_number("threshold", cal.threshold, 0.0, 1.0)
    if cal.fusion is not None:
        check_choice("fusion", cal.fusion, FUSION_STRATEGIES)
    if not isinstance(cal.created, str):
        raise ValueError(f"created must be a string; got {cal.created!r}")
    if not isinstance(cal.details, dict):
        raise ValueError(f"details must be an object; got {cal.details!r}")


def find_calibration(models_dir: str | os.PathLike, video_sha256: str,
                     audio_sha256: str | None) -> tuple[Calibration | None, Path, str | None]:
    """(the calibration in `models_dir` if it was fitted for these model files, its path, a note when one
    exists but does not apply)."""
    path = Path(models_dir) / CALIBRATION_FILE
    if not path.is_file():
        return None, path, None
    try:
        cal = read_calibration(path)
    except SettingsError as e:
        return None, path, f"{CALIBRATION_FILE} ignored: {e}"
    if cal.video_sha256 != video_sha256 or cal.audio_sha256 != audio_sha256:
        return None, path, (f"{CALIBRATION_FILE} in {path.parent} ignored: it was fitted for other model files "
                            f"(run deepfake-detect calibrate again for these)")
    return cal, path, None


def apply_calibration(settings, calibration: Calibration, explicit: set[str] | frozenset = frozenset(),
                      source: str = CALIBRATION_FILE, take_fusion: bool = False) -> tuple[object, str | None]:
    """(settings with the calibrated values the user did not set in `explicit`, a note naming what was
    used, or None when nothing was). The threshold applies only to the fusion it was fitted for. `take_fusion`:
    with neither the fusion nor the threshold in `explicit`, the calibration's fusion comes with its threshold
    (the rule of `Detector.resolve_settings`)."""
    changes: dict = {}
    if (take_fusion and calibration.fusion and calibration.threshold is not None
            and not {"fusion", "threshold"} & set(explicit) and calibration.fusion != settings.fusion):
        changes["fusion"] = calibration.fusion
    fusion = changes.get("fusion", settings.fusion)
    skipped = []
    for name, value in calibration.values().items():
        if name in explicit:
            continue
        if name == "threshold" and calibration.fusion and calibration.fusion != fusion:
            skipped.append(f"its threshold was fitted for fusion {calibration.fusion}, not {fusion}")
            continue
        changes[name] = value
    if not changes:
        return settings, (f"{source}: not used ({'; '.join(skipped)})" if skipped else None)
    settings = settings.replace(**changes, calibration=source)
    used = ", ".join(f"{k.replace('_', ' ')} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                     for k, v in changes.items())
    note = f"calibrated by {source}: {used}"
    if calibration.details.get("data"):
        note += f" (fitted on {calibration.details['data']})"
    if skipped:
        note += f"; {'; '.join(skipped)}"
    return settings, note
