"""Calibration: temperatures recovered from synthetic logits, threshold rules on constructed cases, and the
calibrate command whose calibration.json analyze then uses by default (and ignores for other model files)."""

import json

import numpy as np
import pytest

from deepfake_core.models.calibration import Calibration, apply_calibration, read_calibration
from deepfake_core.cli import main
from deepfake_core.errors import SettingsError
from deepfake_core.settings import AnalysisSettings
from deepfake_core.train.calibrate import choose_threshold, fit_temperature, logit_diff, nll
from deepfake_core.train.demo import write_demo_dataset


@pytest.mark.parametrize("true_temperature", [2.5, 0.6])
def test_fit_temperature_recovers_a_known_temperature(true_temperature):
    rng = np.random.default_rng(1)
    calibrated = rng.normal(0.0, 2.0, 40_000)  # logit differences whose sigmoid is the true P(fake)
    y = rng.random(len(calibrated)) < 1 / (1 + np.exp(-calibrated))
    observed = calibrated * true_temperature  # an over- (or under-) confident model
    t = fit_temperature(observed, y)
    assert t == pytest.approx(true_temperature, rel=0.05)
    assert nll(observed, y, t) < min(nll(observed, y, t * 1.2), nll(observed, y, t / 1.2), nll(observed, y, 1.0))
    with pytest.raises(SettingsError, match="both real and fake"):
        fit_temperature(observed[:10], np.ones(10))


def test_logit_diff_inverts_the_softmax():
    d = np.array([-12.0, -1.5, 0.0, 0.3, 7.0])
    p = 1 / (1 + np.exp(-d))
    assert np.allclose(logit_diff(p), d)
    assert logit_diff([1.0, 0.0]).tolist() == [30.0, -30.0]


def test_threshold_rules_on_a_constructed_case():
    real = [0.6, 0.7, 0.8, 0.9]  # P(real) of the real files
    fake = [0.1, 0.2, 0.3, 0.65]
    r = np.array(real + fake)
    y = np.array([0] * 4 + [1] * 4)
    best = choose_threshold(r, y, "balanced_accuracy")
    # 0.45 and 0.675 both give balanced accuracy 0.875; the one nearer 0.5 wins
    assert best["threshold"] == pytest.approx(0.45) and best["balanced_accuracy"] == pytest.approx(0.875)
    fpr25 = choose_threshold(r, y, "target_fpr", target_fpr=0.25)
    assert fpr25["threshold"] == pytest.approx(0.675) and (fpr25["tpr"], fpr25["fpr"]) == (1.0, 0.25)
    fpr0 = choose_threshold(r, y, "target_fpr", target_fpr=0.0)
    assert fpr0["threshold"] == pytest.approx(0.45) and (fpr0["tpr"], fpr0["fpr"]) == (0.75, 0.0)


def test_apply_calibration_keeps_explicit_values_and_the_fusion_rule():
    cal = Calibration("v" * 64, "a" * 64, audio_temperature=1.7, threshold=0.42, fusion="equal")
    s, note = apply_calibration(AnalysisSettings(), cal, explicit={"audio_temperature"}, source="cal.json")
    assert s.audio_temperature == 2.0 and s.threshold == 0.42 and s.calibration == "cal.json"
    assert "threshold 0.42" in note and "audio temperature" not in note
    s, note = apply_calibration(AnalysisSettings(fusion="adaptive"), cal, source="cal.json")
    assert s.audio_temperature == 1.7 and s.threshold == 0.5
    assert "fitted for fusion equal, not adaptive" in note


def _models_copy(original_models, tmp_path):
    """A models folder of links to the session's files (calibration.json is written into it)."""
    models = tmp_path / "models"
    models.mkdir()
    for f in original_models.iterdir():
        (models / f.name).symlink_to(f)
    return models


def test_calibrate_then_analyze_uses_it(original_models, detector, tmp_path, capsys):
    data = write_demo_dataset(tmp_path / "val", "folders", per_class=2)
    models = _models_copy(original_models, tmp_path)
    code = main(["calibrate", str(data), "--models-dir", str(models), "--max-samples", "2", "-q",
                 "--fit-video-temperature", "--fit-threshold", "balanced_accuracy"])
    out, err = capsys.readouterr()
    assert code == 0, err
    cal = read_calibration(models / "calibration.json")
    assert cal.video_sha256 == detector.video.sha256 and cal.audio_sha256 == detector.audio.sha256
    assert cal.audio_temperature > 0 and cal.video_temperature > 0 and 0 <= cal.threshold <= 1
    assert cal.fusion == "equal" and cal.details["used"] == 4 and cal.details["audio_temperature"]["windows"] == 8

    clip = next((data / "fake").glob("*.mp4"))

    def analyze(*extra):
        assert main(["analyze", str(clip), "--json", "--models-dir", str(models), "--max-samples", "2", *extra]) == 0
        return json.loads(capsys.readouterr()[0])

    report = analyze()
    s = report["settings"]
    assert (s["audio_temperature"], s["video_temperature"], s["threshold"]) == \
        (cal.audio_temperature, cal.video_temperature, cal.threshold)
    assert s["calibration"] == str(models / "calibration.json") and report["threshold"] == cal.threshold
    assert any(n.startswith("calibrated by") for n in report["notes"])
    explicit = analyze("--audio-temperature", "3")["settings"]
    assert explicit["audio_temperature"] == 3.0 and explicit["threshold"] == cal.threshold
    off = analyze("--no-calibration")
    assert (off["settings"]["audio_temperature"], off["settings"]["threshold"], off["settings"]["calibration"]) == \
        (2.0, 0.5, None)
    assert not any("calibrat" in n for n in off["notes"])

    stale = json.loads((models / "calibration.json").read_text())
    stale["video_sha256"] = "0" * 64
    (models / "calibration.json").write_text(json.dumps(stale))
    report = analyze()
    assert report["settings"]["audio_temperature"] == 2.0 and report["settings"]["calibration"] is None
    assert any("fitted for other model files" in n for n in report["notes"])
