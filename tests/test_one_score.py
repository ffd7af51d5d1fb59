"""One video score: when only the faces are judged, the combined (fused) score is the face score, made one by the
aggregation the video model declares (mean logit for the built-in model), under every fusion strategy; the
report, the CLI summary, the page's evidence rows, the API's JSON and the scan rows show the same numbers."""

from __future__ import annotations

import numpy as np
import pytest

from deepfake_core import AnalysisSettings, Detector
from deepfake_core.analysis.fusion import fuse, video_p_fake
from deepfake_core.analysis.timeline import modality_result, tracks
from deepfake_core.scan.results import scan_row
from deepfake_core.settings import FUSION_STRATEGIES
from deepfake_core.webapp import present


def logit(p):
    p = np.asarray(p, dtype=np.float64)
    return np.log(p / (1 - p))


@pytest.mark.parametrize("how", ["mean_prob", "mean_logit", "median", "top3_mean", "trimmed_mean"])
@pytest.mark.parametrize("strategy", FUSION_STRATEGIES)
def test_faces_alone_fuse_to_the_face_score(strategy, how):
    face_logits = np.array([[2.0, -1.0], [-3.0, 2.5], [0.2, 0.1], [4.0, -4.0], [-1.0, 1.0]])
    fused = fuse(face_logits, None, strategy)
    combined = video_p_fake(fused.probs[:, 0], how)
    face = modality_result(fused.video_probs[:, 0], fused.w_video, how).fake_prob
    assert combined == pytest.approx(face, abs=1e-12)
    if how == "mean_logit":  # the rule differs from the mean probability here: the test can tell them apart
        assert abs(face - float(np.mean(fused.video_probs[:, 0]))) > 0.05


@pytest.fixture(scope="module")
def builtin_detector(tmp_path_factory):
    """The built-in video model, no audio model, an empty models folder: the offline default."""
    return Detector.load(tmp_path_factory.mktemp("no_models"), device="cpu", video_model="builtin",
                         audio_model="none")


@pytest.mark.parametrize("strategy", FUSION_STRATEGIES)
def test_every_output_shows_the_face_score_as_the_combined_score(builtin_detector, face_video, strategy):
    report = builtin_detector.analyze(face_video, AnalysisSettings(fusion=strategy, max_samples=20,
                                                                   abstain_below=None))
    assert report.models["video"]["aggregation"] == "mean_logit"
    assert not report.modalities["audio"].available and len(report.tracks) == 1
    faces = [row.video_p_fake for row in report.timeline]
    expected = float(1 / (1 + np.exp(-np.mean(logit(faces)))))  # the mean logit, computed here
    face, combined = report.modalities["video"].fake_prob, 1.0 - report.fused_real_prob
    assert face == pytest.approx(expected, abs=1e-9) and combined == pytest.approx(expected, abs=1e-9)
    assert report.tracks[0].video_p_fake == pytest.approx(expected, abs=1e-9)
    assert report.tracks[0].fused_p_fake == pytest.approx(expected, abs=1e-9)
    assert tracks(report.timeline, report.threshold, "mean_logit")[0].fused_p_fake == pytest.approx(expected)
    summary = report.summary()
    assert f"fused P(real) {1 - expected:.3f}" in summary and f"P(fake) {expected:.3f}" in summary
    rows = {row["name"]: row for row in present.modality_rows(report)}
    assert rows["video"]["p_fake"] == pytest.approx(rows["fused"]["p_fake"], abs=1e-9)
    assert "the face score itself: only the faces were judged (mean logit over the faces)" in rows["fused"]["detail"]
    api = report.to_dict()  # what the API returns inside its job
    assert api["modalities"]["video"]["fake_prob"] == pytest.approx(1.0 - api["fused_real_prob"], abs=1e-9)
    row = scan_row(face_video, report)
    assert row["video_p_fake"] == pytest.approx(1.0 - row["fused_real_prob"], abs=1e-9)


def test_the_page_says_why_the_combined_score_differs_when_the_voice_is_judged(detector, face_video):
    report = detector.analyze(face_video, AnalysisSettings(fusion="equal", abstain_below=None, max_samples=6))
    assert report.modalities["audio"].available
    fused = {row["name"]: row for row in present.modality_rows(report)}["fused"]
    assert "each face fused with the voice of its moment (fusion: equal)" in fused["detail"]
    assert "differs from the face score by the voice's share" in fused["detail"]


def test_the_shipped_builtin_model_is_not_called_conservative(builtin_detector, face_video):
    """Its file's own summary says "conservative: a REAL verdict is weak evidence", but it falsely accuses real
    clips (the model card): the report's first note gives the corrected text, naming the false accusations."""
    report = builtin_detector.analyze(face_video, AnalysisSettings(max_samples=4))
    first = report.notes[0]
    assert first.startswith("video judged by the built-in model"), first
    assert "conservative" not in first and "calls some real clips FAKE" in first, first
