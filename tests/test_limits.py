"""Bounded work for every stream: duration limits on audio too, audio in chunks, decoded frame sizes checked,
a wall-clock budget per analysis."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from conftest import moving_face_frames, tone, write_audio_only, write_video
from deepfake_core import AnalysisSettings
from deepfake_core import limits
from deepfake_core.media.audio import audio_chunks, mel_batches, mel_windows, read_audio
from deepfake_core.cli import main
from deepfake_core.errors import AnalysisTimeout, MediaTooLarge
from deepfake_core.media.video import probe
from media_gen import write_declared_audio, write_growing, write_undeclared_audio

NO_ABSTAIN = AnalysisSettings(abstain_below=None)


def probe_duration(path):
    import av

    with av.open(str(path)) as c:
        return c.duration if c.duration is not None else c.streams.audio[0].duration


def test_audio_only_file_declaring_hours_is_refused_before_decoding(detector, tmp_path, monkeypatch, capsys,
                                                                       original_models):
    path = write_declared_audio(tmp_path / "hours.mp4", 5 * 3600)
    assert path.stat().st_size < 1_000_000

    def no_decoding(*args, **kwargs):
        raise AssertionError("the audio was decoded")

    monkeypatch.setattr("deepfake_core.analysis.audio_stage.audio_chunks", no_decoding)
    with pytest.raises(MediaTooLarge, match="declares 18000 s of audio, over the 14400 s limit"):
        detector.analyze(path)
    assert main(["analyze", str(path), "--models-dir", str(original_models)]) == 2
    assert "declares 18000 s of audio" in capsys.readouterr().err


def test_audio_longer_than_the_video_is_judged_over_the_video_only(detector, tmp_path):
    path = write_declared_audio(tmp_path / "long_audio.mp4", 5 * 3600, video_frames=list(moving_face_frames(50)))
    info = probe(path)
    assert info.duration_s == pytest.approx(2.0, abs=0.1) and info.audio_duration_s > 3600
    report = detector.analyze(path, NO_ABSTAIN)
    assert report.verdict in ("REAL", "FAKE")
    assert max(w.end_s for w in report.audio_windows) <= info.duration_s + 2.0


def test_audio_only_file_longer_than_the_limit_stops_decoding(detector, tmp_path):
    path = write_undeclared_audio(tmp_path / "undeclared.mkv", tone(6.0))
    assert probe_duration(path) is None
    with pytest.raises(MediaTooLarge, match="more than 3 s of audio"):
        detector.analyze(path, AnalysisSettings(max_duration_s=3.0))


def test_audio_is_decoded_in_bounded_chunks(tmp_path):
    y = tone(12.0)
    path = write_audio_only(tmp_path / "tone.m4a", y)
    chunks = list(audio_chunks(path, chunk_s=1.0))
    assert len(chunks) >= 12 and all(len(c) <= 16_000 and c.dtype == np.float32 for c in chunks)
    whole = read_audio(path)
    assert np.array_equal(np.concatenate(chunks), whole)
    # windows from the chunks are the windows of the whole track
    images, times = mel_windows(whole)
    streamed = [(b, t) for b, t in mel_batches(iter(chunks), 4)]
    assert [t for _, ts in streamed for t in ts] == times
    assert np.allclose(np.concatenate([b.numpy() for b, _ in streamed]), images.numpy(), atol=1e-5)
    assert len(np.concatenate(list(audio_chunks(path, max_seconds=5.0)))) == 5 * 16_000


def test_frames_that_outgrow_their_header_are_stopped(detector, tmp_path, capsys, original_models):
    path = write_growing(tmp_path / "growing.h264")
    settings = AnalysisSettings(max_frame_pixels=64 * 64 * 4, frame_skip=1)
    info = probe(path, settings)
    assert (info.width, info.height) == (64, 64)  # the header passes the limit
    with pytest.raises(MediaTooLarge, match="320x240 frames .decoded; its header says smaller."):
        detector.analyze(path, settings)


def test_the_time_budget_ends_an_analysis_cleanly(detector, face_video, monkeypatch):
    clock = iter(range(0, 10_000_000, 7))  # each reading of the clock is 7 s after the last
    monkeypatch.setattr(limits.time, "monotonic", lambda: float(next(clock)))
    threads = threading.active_count()
    with pytest.raises(AnalysisTimeout, match="ran past its 20 s budget"):
        detector.analyze(face_video, AnalysisSettings(max_analysis_s=20.0))
    assert threading.active_count() == threads  # the decoding thread has stopped


def test_the_time_budget_option(capsys, original_models, face_video, monkeypatch):
    clock = iter(range(0, 10_000_000, 50))
    monkeypatch.setattr(limits.time, "monotonic", lambda: float(next(clock)))
    code = main(["analyze", str(face_video), "--models-dir", str(original_models), "--time-budget", "60", "-q"])
    err = capsys.readouterr().err
    assert code == 2 and "ran past its 60 s budget" in err and "--time-budget" in err
