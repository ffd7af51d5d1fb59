"""Media that decoders handle, the product handles: raw elementary streams, one damaged track of two,
unwritable scan output, symlink loops, file names starting with '-'."""

from __future__ import annotations

import os
import shutil

import pytest

from conftest import moving_face_frames, speech_like, write_video
from deepfake_core import AnalysisSettings
from deepfake_core.cli import main
from deepfake_core.errors import UnreadableMedia
from deepfake_core.media.video import probe
from media_gen import damage_track, write_raw

NO_ABSTAIN = AnalysisSettings(abstain_below=None)


@pytest.fixture(scope="module")
def av_clip(tmp_path_factory):
    """3 s, a moving face and a voice-like signal: long enough for audio windows that hold speech."""
    return write_video(tmp_path_factory.mktemp("edge") / "clip.mp4", moving_face_frames(75), audio=speech_like(3.0))


@pytest.mark.parametrize("codec, fmt, suffix", [("libx264", "h264", ".h264"), ("libx265", "hevc", ".hevc")])
def test_raw_elementary_streams_are_sampled(detector, tmp_path, codec, fmt, suffix):
    path = write_raw(tmp_path / f"raw{suffix}", list(moving_face_frames(30)), codec, fmt)
    info = probe(path)
    assert info.container == fmt and info.frames_counted and info.frame_count == 30
    report = detector.analyze(path, NO_ABSTAIN)
    assert report.reason != "too_short"
    assert report.counts["frames_sampled"] == 6 and report.verdict in ("REAL", "FAKE")


def test_damaged_audio_drops_the_audio_only(detector, av_clip, tmp_path):
    path = damage_track(av_clip, tmp_path / "bad_audio.mkv", "audio")
    report = detector.analyze(path, NO_ABSTAIN)
    assert report.verdict in ("REAL", "FAKE") and report.counts["faces"] > 0
    audio = report.modalities["audio"]
    assert not audio.available and "could not be decoded" in audio.note
    assert any(n.startswith("audio not judged: the audio track could not be decoded") for n in report.notes)


def test_damaged_video_keeps_the_audio(detector, av_clip, tmp_path):
    path = damage_track(av_clip, tmp_path / "bad_video.mkv", "video")
    report = detector.analyze(path, NO_ABSTAIN)
    assert report.verdict == "NOT_APPLICABLE" and report.reason == "video_unreadable"
    assert report.modalities["audio"].available and report.counts["audio_windows"] >= 1
    assert any(n.startswith("video not judged") for n in report.notes)


def test_both_tracks_damaged_is_still_refused(detector, av_clip, tmp_path):
    once = damage_track(av_clip, tmp_path / "a.mkv", "audio")
    twice = damage_track(once, tmp_path / "both.mkv", "video", seed=1)
    with pytest.raises(UnreadableMedia):
        detector.analyze(twice)


def test_scan_out_is_checked_before_the_models_load(tmp_path, av_clip, capsys, monkeypatch):
    def no_loading(args):
        raise AssertionError("models loaded before --out was checked")

    monkeypatch.setattr("deepfake_core.cli.scan.load_detector", no_loading)
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    folder = tmp_path / "folder.csv"
    folder.mkdir()
    for out in (blocker / "results.csv", folder):
        assert main(["scan", str(av_clip), "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert f"--out {out}" in err and "Traceback" not in err


def test_symlink_loop_has_its_own_message(tmp_path, capsys, original_models, detector):
    loop = tmp_path / "loop.mp4"
    os.symlink(loop, loop)
    assert main(["analyze", str(loop), "--models-dir", str(original_models)]) == 2
    assert "symbolic link loop" in capsys.readouterr().err
    with pytest.raises(UnreadableMedia, match="symbolic link loop"):
        detector.analyze(loop)
    dangling = tmp_path / "dangling.mp4"
    os.symlink(tmp_path / "gone.mp4", dangling)
    assert main(["analyze", str(dangling), "--models-dir", str(original_models)]) == 2
    assert "which does not exist" in capsys.readouterr().err


def test_file_names_starting_with_a_dash(tmp_path, av_clip, capsys, original_models, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shutil.copy(av_clip, tmp_path / "-clip.mp4")
    code = main(["analyze", "--models-dir", str(original_models), "--json", "--", "-clip.mp4"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert '"file": "-clip.mp4"' in out
    code = main(["scan", "--out", "r.csv", "--models-dir", str(original_models), "-q", "--", "-clip.mp4"])
    assert code == 0 and "-clip.mp4" in (tmp_path / "r.csv").read_text()
