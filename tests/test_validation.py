"""Settings and calibration.json: finite, typed, in range; errors name where the bad value came from;
ties never reported at 100 % confidence."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from deepfake_core import AnalysisSettings, SettingsError
from deepfake_core.models.calibration import CALIBRATION_FORMAT, find_calibration, read_calibration
from deepfake_core.cli import main
from deepfake_core.analysis.fusion import fuse
from deepfake_core.settings import TEMPERATURE_RANGE
from deepfake_core.webapp.present import pct

FLOAT_FIELDS = ["threshold", "face_confidence", "min_weight", "audio_overlap", "abstain_below", "audio_temperature",
                "video_temperature", "adaptive_tau", "face_margin", "audio_window_s", "max_file_mb", "max_duration_s",
                "max_analysis_s"]
BAD_VALUES = [math.nan, math.inf, -math.inf, "0.5", True, None, 1e300]


@pytest.mark.parametrize("name", FLOAT_FIELDS)
@pytest.mark.parametrize("value", BAD_VALUES, ids=repr)
def test_every_float_setting_is_checked(name, value):
    if value is None and name in ("abstain_below", "max_analysis_s"):
        assert getattr(AnalysisSettings(**{name: None}), name) is None  # None switches these off
        return
    with pytest.raises(SettingsError, match=f"^{name} must be between") as e:
        AnalysisSettings(**{name: value})
    assert e.value.field == name


@pytest.mark.parametrize("option, value", [
    ("--audio-temperature", "nan"), ("--video-temperature", "inf"), ("--threshold", "-inf"),
    ("--abstain-below", "NaN"), ("--face-margin", "1e308"), ("--time-budget", "-5"), ("--audio-temperature", "0.01"),
])
def test_a_bad_option_is_named(option, value, face_video, original_models, capsys):
    assert main(["analyze", str(face_video), f"{option}={value}", "--models-dir", str(original_models)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: option {option}: ") and "internal error" not in err and "Traceback" not in err


def test_a_string_option_is_refused_by_the_parser(face_video, capsys):
    assert main(["analyze", str(face_video), "--threshold", "high"]) == 2
    assert "--threshold: invalid float value: 'high'" in capsys.readouterr().err


def calibration_text(**changes) -> str:
    d = {"format": CALIBRATION_FORMAT, "video_sha256": "v" * 64, "audio_sha256": "a" * 64,
         "audio_temperature": 1.7, "video_temperature": 1.2, "threshold": 0.45, "fusion": "equal",
         "created": "2026-01-01", "details": {}}
    d.update(changes)
    return json.dumps(d)


@pytest.mark.parametrize("text, message", [
    (calibration_text(audio_temperature="NaN").replace('"NaN"', "NaN"), "NaN is not a number"),
    (calibration_text(video_temperature="Infinity").replace('"Infinity"', "Infinity"), "Infinity is not a number"),
    (calibration_text(audio_temperature="2.0"), "audio_temperature must be between"),
    (calibration_text(video_temperature=0.0), "video_temperature must be between 0.05"),
    (calibration_text(audio_temperature=1e9), "audio_temperature must be between"),
    (calibration_text(threshold=1.5), "threshold must be between 0.0 and 1.0"),
    (calibration_text(threshold=True), "threshold must be between"),
    (calibration_text(fusion="loud"), "fusion must be one of"),
    (calibration_text(video_sha256=7), "video_sha256 must be a 64-character sha256"),
    (calibration_text(details=[1]), "details must be an object"),
    (calibration_text(surprise=1), "unexpected keyword argument 'surprise'"),
    ("[1, 2]", "expected a JSON object"),
    ("{", "Expecting property name"),
])
def test_calibration_fields_are_checked_and_the_file_named(tmp_path, text, message):
    path = tmp_path / "calibration.json"
    path.write_text(text)
    with pytest.raises(SettingsError, match=message) as e:
        read_calibration(path)
    assert str(e.value).startswith(f"{path} is not a valid calibration file")
    cal, _, note = find_calibration(tmp_path, "v" * 64, "a" * 64)  # an analysis goes on without it, and says so
    assert cal is None and str(path) in note


def test_a_bad_calibration_never_ends_in_an_internal_error(face_video, original_models, tmp_path, capsys):
    import shutil

    models = tmp_path / "models"
    shutil.copytree(original_models, models)
    (models / "calibration.json").write_text(calibration_text(audio_temperature="NaN").replace('"NaN"', "NaN"))
    code = main(["analyze", str(face_video), "--models-dir", str(models), "--max-samples", "2", "-q"])
    out, err = capsys.readouterr()
    assert code == 0 and "internal error" not in err
    assert f"{models / 'calibration.json'} is not a valid calibration file" in out


@pytest.mark.parametrize("gap", [0.0, 1e-9, 1e-3])
def test_ties_and_near_ties_are_not_certainties(gap):
    low = TEMPERATURE_RANGE[0]
    video = np.array([[0.0, gap]] * 8)
    for fusion in ("equal", "video_trust", "adaptive"):
        f = fuse(video, video[:, ::-1], fusion, audio_temperature=low, video_temperature=low)
        assert np.all(f.probs.max(axis=1) < 0.55) and np.all(f.video_probs.max(axis=1) < 0.55)
    assert AnalysisSettings().abstain_below > 0.5  # and such a verdict is UNCERTAIN by default


def test_confidence_is_never_shown_as_certain_unless_it_is():
    assert pct(0.9996) == "> 99 %" and pct(1.0) == "100 %" and pct(0.0004) == "< 1 %" and pct(0.5) == "50 %"
