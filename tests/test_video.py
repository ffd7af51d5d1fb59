import numpy as np
import pytest

from conftest import blank_frames, moving_face_frames, write_video
from deepfake_core.errors import MediaTooLarge, NoVideoStream, UnreadableMedia
from deepfake_core.settings import AnalysisSettings
from deepfake_core.media.video import DecodeStats, probe, read_frames, sample_indices


def test_sampling_every_nth_frame_for_a_short_video():
    assert sample_indices(300, 5, 60) == list(range(0, 300, 5))
    assert sample_indices(12, 5, 60) == [0, 5, 10]
    assert sample_indices(0, 5, 60) == []


def test_sampling_spans_a_long_video_from_start_to_end():
    idx = sample_indices(18_000, 5, 60)  # 10 minutes at 30 fps
    assert len(idx) == 60
    assert idx[0] == 0 and idx[-1] >= 18_000 - 300
    gaps = np.diff(idx)
    assert gaps.min() >= 299 and gaps.max() <= 301


def test_probe(face_video):
    info = probe(face_video)
    assert (info.width, info.height) == (800, 640)
    assert info.fps == pytest.approx(25.0)
    assert info.frame_count == 100
    assert info.duration_s == pytest.approx(4.0, abs=0.1)
    assert info.has_audio and info.audio_codec == "aac"
    assert info.rotation == 0 and not info.is_still_image


def test_read_frames_only_converts_sampled_frames_with_pts_times(face_video):
    stats = DecodeStats()
    frames = list(read_frames(face_video, [0, 10, 55], stats))
    assert [f.index for f in frames] == [0, 10, 55]
    assert [f.time_s for f in frames] == pytest.approx([0.0, 0.4, 2.2], abs=1e-3)
    assert frames[0].image.shape == (640, 800, 3) and frames[0].image.dtype == np.uint8
    assert stats.frames_converted == 3
    assert stats.frames_decoded == 56  # stops after the last sampled frame


def test_variable_frame_rate_times_come_from_pts(tmp_path):
    import av

    path = tmp_path / "vfr.mkv"
    frames = list(blank_frames(10, size=(240, 320)))
    pts = [0, 1, 2, 3, 4, 10, 11, 12, 30, 31]  # in 1/25 s units: gaps
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 320, 240, "yuv420p"
        s.codec_context.time_base = __import__("fractions").Fraction(1, 25)
        for img, p in zip(frames, pts):
            f = av.VideoFrame.from_ndarray(img, format="bgr24")
            f.pts = p
            f.time_base = s.codec_context.time_base
            for packet in s.encode(f):
                out.mux(packet)
        for packet in s.encode():
            out.mux(packet)
    got = list(read_frames(path, list(range(10))))
    assert [round(f.time_s * 25) for f in got] == pts


@pytest.mark.parametrize("rotation, shape, corner", [
    (-90, (800, 640), "top-right"),  # a phone held upright: FFmpeg turns the picture clockwise
    (90, (800, 640), "bottom-left"),
    (180, (640, 800), "bottom-right"),
])
def test_rotation_metadata_is_applied(tmp_path, rotation, shape, corner):
    """A red square in the stored top-left corner lands where FFmpeg's autorotate puts it
    (checked against `ffmpeg -i` output when these expectations were written)."""
    marked = [f.copy() for f in moving_face_frames(3)]
    for f in marked:
        f[:40, :40] = (0, 0, 255)
    path = write_video(tmp_path / "rot.mp4", marked, rotation=rotation)
    info = probe(path)
    assert (info.height, info.width) == shape
    image = next(read_frames(path, [0])).image
    h, w = image.shape[:2]
    assert (h, w) == shape
    corners = {"top-left": image[5, 5], "top-right": image[5, w - 6], "bottom-left": image[h - 6, 5],
               "bottom-right": image[h - 6, w - 6]}
    red = [name for name, px in corners.items() if px[2] > 200 and px[0] < 50]
    assert red == [corner]


def test_limits_give_clear_errors(face_video):
    with pytest.raises(MediaTooLarge, match="pixels per frame"):
        probe(face_video, AnalysisSettings(max_frame_pixels=100_000))
    with pytest.raises(MediaTooLarge, match="lasts 4 s, over the 2 s limit"):
        probe(face_video, AnalysisSettings(max_duration_s=2))
    with pytest.raises(MediaTooLarge, match="MB limit"):
        probe(face_video, AnalysisSettings(max_file_mb=0.001))


def test_unreadable_inputs(tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(UnreadableMedia, match="empty"):
        probe(empty)
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 20)
    with pytest.raises(UnreadableMedia, match="cannot read 'notes.mp4'"):
        probe(text)
    with pytest.raises(UnreadableMedia, match="no such file"):
        probe(tmp_path / "missing.mp4")


def test_audio_only_has_no_video_stream(tmp_path):
    from conftest import tone, write_audio_only

    with pytest.raises(NoVideoStream, match="audio-only"):
        probe(write_audio_only(tmp_path / "a.m4a", tone(1.0)))


def test_seeking_gives_the_same_frames_as_decoding_everything(tmp_path):
    """Samples far apart (a long video): read_frames lists the packets and jumps to the keyframe before each
    sample. The frames (numbers, times, pixels) are those that decoding front to back gives, for less work."""
    import av

    path = tmp_path / "gop.mp4"
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=25, options={"g": "25", "bf": "3"})  # a keyframe every second
        s.width, s.height, s.pix_fmt = 320, 240, "yuv420p"
        for i, img in enumerate(blank_frames(400, size=(240, 320))):
            img[:40, :40] = i % 256
            for packet in s.encode(av.VideoFrame.from_ndarray(img, format="bgr24")):
                out.mux(packet)
        for packet in s.encode():
            out.mux(packet)
    indices = sample_indices(400, 5, 6)  # 66 or 67 frames apart
    assert min(np.diff(indices)) > 48
    seq_stats, seek_stats = DecodeStats(), DecodeStats()
    seq = list(read_frames(path, indices, seq_stats, seek=False))
    jumped = list(read_frames(path, indices, seek_stats))
    assert [f.index for f in jumped] == [f.index for f in seq] == indices
    assert [f.time_s for f in jumped] == pytest.approx([i / 25 for i in indices], abs=1e-3)
    assert all(np.array_equal(a.image, b.image) for a, b in zip(seq, jumped))
    assert abs(int(jumped[3].image[10, 10, 0]) - indices[3] % 256) < 8  # the frame it claims to be
    assert seq_stats.frames_decoded == indices[-1] + 1
    assert seek_stats.frames_decoded < seq_stats.frames_decoded / 3
    assert seek_stats.frames_converted == len(indices)


def test_samples_far_apart_within_one_keyframe_interval_are_decoded_in_one_pass(face_video):
    stats = DecodeStats()
    got = list(read_frames(face_video, [0, 99], stats))  # 99 frames apart, but no keyframe between
    assert [f.index for f in got] == [0, 99]
    assert stats.frames_decoded == 100
