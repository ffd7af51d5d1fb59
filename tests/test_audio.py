import librosa
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import tone, write_audio_only, write_video, moving_face_frames
from deepfake_core.media.audio import mel_windows, read_audio


def reference_windows(y: np.ndarray, sr: int = 16000):
    """An independent transcription of the original project's preprocess_audio()."""
    win_len = int(2.0 * sr)
    hop_len = int(win_len * (1 - 0.5))
    out = []
    for start in range(0, len(y), hop_len):
        y_slice = y[start:start + win_len]
        if len(y_slice) < int(0.8 * win_len):
            break
        if len(y_slice) < win_len:
            y_slice = np.pad(y_slice, (0, win_len - len(y_slice)))
        mel = librosa.feature.melspectrogram(y=y_slice, sr=sr, n_fft=2048, hop_length=512, n_mels=128, fmin=20,
                                             fmax=8000)
        mel_db = librosa.power_to_db(mel, ref=1.0)
        mel_db = (mel_db - mel_db.mean()) / (mel_db.std() + 1e-8)
        resized = F.interpolate(torch.from_numpy(mel_db).unsqueeze(0).unsqueeze(0).float(), size=(299, 299),
                                mode="bilinear", align_corners=False).squeeze()
        out.append(resized.repeat(3, 1, 1))
    return out


@pytest.mark.parametrize("seconds, expected", [(1.5, 0), (2.0, 1), (5.3, 4), (2.7, 2), (3.5, 2)])
def test_mel_windows_match_the_original_recipe(seconds, expected):
    y = tone(seconds, seed=3)
    images, times = mel_windows(y)
    ref = reference_windows(y)
    assert len(ref) == expected
    assert images.shape == (expected, 3, 299, 299)
    assert images.dtype == torch.float32
    assert len(times) == expected
    for i, r in enumerate(ref):
        assert torch.allclose(images[i], r, atol=1e-4)
    for i, (start, end) in enumerate(times):
        assert start == pytest.approx(float(i))
        assert end == pytest.approx(min(i + 2.0, seconds), abs=1e-4)


def test_mel_window_is_normalised_and_channels_identical():
    images, _ = mel_windows(tone(2.0))
    x = images[0]
    assert torch.equal(x[0], x[1]) and torch.equal(x[1], x[2])
    assert abs(float(x.mean())) < 0.05
    assert 0.8 < float(x.std()) < 1.2


def test_padded_final_window_covers_its_real_span():
    _, times = mel_windows(tone(3.8))  # windows at 0 and 1 (full) and 2 (1.8 s = 90 %, padded)
    assert times[-1] == pytest.approx((2.0, 3.8), abs=1e-4)


def test_read_audio_from_video_is_16k_mono_float(tmp_path):
    path = write_video(tmp_path / "v.mp4", moving_face_frames(25), audio=tone(3.0, rate=44100), audio_rate=44100)
    y = read_audio(path)
    assert y.dtype == np.float32 and y.ndim == 1
    assert 2.9 * 16000 < len(y) < 3.2 * 16000
    assert -1.0 <= y.min() and y.max() < 1.0
    # the 440 Hz tone survives decoding and resampling
    spectrum = np.abs(np.fft.rfft(y[:16000]))
    assert abs(np.argmax(spectrum) - 440) <= 2


def test_read_audio_none_without_track(face_video_no_audio):
    assert read_audio(face_video_no_audio) is None


def test_read_audio_only_file(tmp_path):
    y = read_audio(write_audio_only(tmp_path / "a.m4a", tone(2.5)))
    assert 2.4 * 16000 < len(y) < 2.7 * 16000


@pytest.mark.parametrize("seconds", [0.0, 0.9, 1.0, 1.5, 1.6, 2.0, 3.2, 3.8, 5.0, 7.37])
@pytest.mark.parametrize("chunk_s", [0.3, 1.0, 2.5, 100.0])
def test_streamed_windows_are_the_spans_whatever_the_chunks(seconds, chunk_s):
    """One windowing loop: a track given chunk by chunk is cut at exactly `window_spans`' spans (the original
    rule, or the speech model's with min_track_s), each window holding the track's own samples."""
    from deepfake_core.media.audio import stream_windows, window_spans

    y = np.random.default_rng(0).standard_normal(int(seconds * 16000)).astype(np.float32)
    step = int(chunk_s * 16000)
    for min_track_s in (None, 1.0):
        chunks = (y[i:i + step] for i in range(0, len(y), step))
        got = list(stream_windows(chunks, min_track_s=min_track_s))
        assert [(a, b) for a, b, _ in got] == window_spans(len(y), min_track_s=min_track_s)
        for a, b, segment in got:
            assert np.array_equal(segment, y[a:b])  # unpadded: each model's front end pads its own way
    assert window_spans(int(1.5 * 16000), min_track_s=1.0) == [(0, 24000)]  # a short track is one window
    assert window_spans(int(1.5 * 16000)) == []  # the original rule: under 80 % of a window, none
