"""Every kind of bad input gives a typed error or a NOT_APPLICABLE report, never a crash or a stray file."""

import os
import tempfile

import cv2
import pytest

from conftest import astronaut_bgr, moving_face_frames, speech_like, tone, write_audio_only, write_video
from deepfake_core import AnalysisSettings
from deepfake_core.cli import main
from deepfake_core.errors import MediaTooLarge, UnreadableMedia


@pytest.fixture
def no_new_temp_files(tmp_path_factory, monkeypatch):
    """Point the process's temporary directory at an empty folder and check it is still empty after."""
    scratch = tmp_path_factory.mktemp("scratch")
    monkeypatch.setenv("TMPDIR", str(scratch))
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    yield
    assert os.listdir(scratch) == []


def cli(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def test_zero_byte_file(detector, tmp_path, capsys, original_models, no_new_temp_files):
    path = tmp_path / "empty.mp4"
    path.write_bytes(b"")
    with pytest.raises(UnreadableMedia, match="empty"):
        detector.analyze(path)
    code, _, err = cli(capsys, "analyze", str(path), "--models-dir", str(original_models))
    assert code == 2 and "empty" in err


def test_text_file_named_mp4(detector, tmp_path, capsys, original_models, no_new_temp_files):
    path = tmp_path / "notes.mp4"
    path.write_text("not a video at all\n" * 100)
    with pytest.raises(UnreadableMedia, match="cannot read 'notes.mp4'"):
        detector.analyze(path)
    code, _, err = cli(capsys, "analyze", str(path), "--models-dir", str(original_models))
    assert code == 2 and "notes.mp4" in err


def test_truncated_mp4_without_its_index(detector, face_video, tmp_path, no_new_temp_files):
    data = face_video.read_bytes()
    path = tmp_path / "cut.mp4"
    path.write_bytes(data[: len(data) // 2])  # the moov index is at the end: gone
    with pytest.raises(UnreadableMedia):
        detector.analyze(path)


def test_truncated_mp4_with_index_first_gives_a_partial_report(detector, tmp_path, no_new_temp_files):
    full = write_video(tmp_path / "fast.mp4", moving_face_frames(100), options={"movflags": "faststart"})
    data = full.read_bytes()
    cut = tmp_path / "cut_fast.mp4"
    cut.write_bytes(data[: int(len(data) * 0.8)])  # the first key frame is large: keep it
    report = detector.analyze(cut, AnalysisSettings(abstain_below=None))
    assert report.verdict in ("REAL", "FAKE")
    assert 0 < report.counts["frames_sampled"] < 20
    assert any("fewer frames" in n or "decoding stopped" in n for n in report.notes)


def test_audio_only_file(detector, tmp_path, capsys, original_models, no_new_temp_files):
    path = write_audio_only(tmp_path / "voice.m4a", speech_like(3.0))
    report = detector.analyze(path, AnalysisSettings(abstain_below=None))  # judged by the voice alone
    assert report.verdict in ("REAL", "FAKE") and not report.modalities["video"].available
    assert report.modalities["audio"].available and report.modalities["audio"].count == 2
    code, out, _ = cli(capsys, "analyze", str(path), "--models-dir", str(original_models))
    assert code == 0 and "voice alone" in out and "the file has no video track" in out
    tone_only = detector.analyze(write_audio_only(tmp_path / "tone.m4a", tone(3.0)))
    assert tone_only.verdict == "NOT_APPLICABLE" and tone_only.reason == "no_speech"
    assert "no speech" in tone_only.modalities["audio"].note


@pytest.mark.parametrize("name", ["still.png", "still.jpg", "photo.mp4"])
def test_still_image(detector, tmp_path, name, no_new_temp_files):
    path = tmp_path / name
    ok, buf = cv2.imencode(".png" if name.endswith((".png", ".mp4")) else ".jpg", astronaut_bgr())
    path.write_bytes(buf.tobytes())
    report = detector.analyze(path)
    assert report.verdict == "NOT_APPLICABLE" and report.reason == "still_image"


def test_video_without_faces(detector, faceless_video, capsys, original_models):
    code, out, _ = cli(capsys, "analyze", str(faceless_video), "--models-dir", str(original_models))
    assert code == 0 and "NOT_APPLICABLE" in out and "No face" in out


def test_video_without_audio(detector, face_video_no_audio):
    report = detector.analyze(face_video_no_audio, AnalysisSettings(abstain_below=None))
    assert report.verdict in ("REAL", "FAKE") and not report.modalities["audio"].available


def test_audio_shorter_than_one_window(detector, tmp_path):
    path = write_video(tmp_path / "short_audio.mp4", moving_face_frames(50), audio=tone(1.2))
    report = detector.analyze(path, AnalysisSettings(abstain_below=None))
    assert report.verdict in ("REAL", "FAKE")
    assert not report.modalities["audio"].available
    assert "shorter than one 2.0 s window" in report.modalities["audio"].note
    assert report.counts["audio_windows"] == 0


def test_absurd_frame_size(detector, tmp_path, capsys, original_models):
    path = tmp_path / "huge.y4m"  # a header claiming 16000 x 12000 frames (192 Mpixel)
    path.write_bytes(b"YUV4MPEG2 W16000 H12000 F25:1 Ip A1:1 C420jpeg\nFRAME\n" + b"\x80" * 1000)
    with pytest.raises(MediaTooLarge, match="16000x12000"):
        detector.analyze(path)
    code, _, err = cli(capsys, "analyze", str(path), "--models-dir", str(original_models))
    assert code == 2 and "pixels per frame" in err


def test_file_over_the_size_limit(detector, face_video):
    with pytest.raises(MediaTooLarge, match="MB limit"):
        detector.analyze(face_video, AnalysisSettings(max_file_mb=0.01))


def test_missing_file_and_bad_option(capsys, original_models, face_video):
    code, _, err = cli(capsys, "analyze", "/nonexistent/x.mp4", "--models-dir", str(original_models))
    assert code == 2 and "no such file" in err
    code, _, err = cli(capsys, "analyze", str(face_video), "--threshold", "1.5", "--models-dir", str(original_models))
    assert code == 2 and "threshold must be between 0.0 and 1.0" in err
