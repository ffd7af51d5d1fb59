import pytest

from deepfake_core import AnalysisSettings, SettingsError


def test_defaults_are_the_original_apps():
    s = AnalysisSettings()
    assert (s.fusion, s.audio_temperature, s.threshold, s.frame_skip, s.max_samples) == ("equal", 2.0, 0.5, 5, 60)
    assert s.face_margin == 0.0


@pytest.mark.parametrize("changes, message", [
    ({"fusion": "videotrust"}, "did you mean 'video_trust'"),
    ({"threshold": 1.2}, "threshold must be between"),
    ({"frame_skip": 0}, "frame_skip must be a whole number"),
    ({"max_samples": 2.5}, "max_samples must be a whole number"),
    ({"audio_temperature": 0}, "audio_temperature must be between 0.05 and 50.0"),
    ({"abstain_below": 0.3}, "abstain_below must be between 0.5"),
])
def test_invalid_settings_are_refused_with_the_valid_range(changes, message):
    with pytest.raises(SettingsError, match=f"(?i){message}"):
        AnalysisSettings(**changes)


def test_settings_are_frozen():
    with pytest.raises(Exception):
        AnalysisSettings().threshold = 0.7
