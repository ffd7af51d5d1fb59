"""Audio track decoding and the original project's mel-spectrogram windows."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import av
import librosa
import numpy as np
import torch
import torch.nn.functional as F

from .errors import UnreadableMedia

SAMPLE_RATE = 16_000  # Hz
WINDOW_S = 2.0  # seconds
OVERLAP = 0.5  # fraction of a window shared with the next
MIN_FILL = 0.8  # a final window shorter than this fraction of WINDOW_S is dropped
N_FFT = 2048
HOP_LENGTH = 512
N_MELS = 128
FMIN = 20  # Hz
FMAX = 8000  # Hz
INPUT_SIZE = 299  # pixels, the audio Xception's input


def read_audio(path: str | os.PathLike, sample_rate: int = SAMPLE_RATE) -> np.ndarray | None:
    """Decode the first audio track as mono float32 in [-1, 1) at `sample_rate`; None if there is none.

    Samples pass through 16-bit PCM, as in the original (ffmpeg -acodec pcm_s16le -ac 1, then librosa.load).
    A decode error part-way keeps what was decoded; one before any sample raises UnreadableMedia.
    """
    try:
        container = av.open(str(path), mode="r", metadata_errors="ignore")
    except av.error.FFmpegError as e:
        raise UnreadableMedia(f"cannot read {Path(path).name!r}: {e}") from e
    with container:
        if not container.streams.audio:
            return None
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="s16", layout="mono", rate=sample_rate)
        chunks: list[np.ndarray] = []
        try:
            for frame in container.decode(stream):
                frame.pts = None  # let the resampler count samples itself (robust to gaps)
                chunks.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(frame))
            chunks.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(None))
        except av.error.FFmpegError as e:
            if not chunks:
                raise UnreadableMedia(f"cannot decode the audio of {Path(path).name!r}: {e}") from e
    if not chunks:
        return np.zeros(0, dtype=np.float32)
    return (np.concatenate(chunks).astype(np.float32) / 32768.0)


def window_spans(
    n_samples: int, sample_rate: int = SAMPLE_RATE, window_s: float = WINDOW_S, overlap: float = OVERLAP
) -> list[tuple[int, int]]:
    """(start, end) sample offsets of each analysis window, in the original's order and rule:
    hop = window x (1 - overlap); stop at the first window shorter than 80 % of a full one."""
    win = int(window_s * sample_rate)
    hop = max(1, int(win * (1 - overlap)))
    spans = []
    for start in range(0, n_samples, hop):
        end = min(start + win, n_samples)
        if end - start < int(MIN_FILL * win):
            break
        spans.append((start, end))
    return spans


def log_mel(segment: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """(128, T) float32 mel power in dB (ref 1.0), normalised to zero mean and unit std."""
    mel = librosa.feature.melspectrogram(
        y=segment, sr=sample_rate, n_fft=N_FFT, hop_length=HOP_LENGTH, n_mels=N_MELS, fmin=FMIN, fmax=FMAX
    )
    mel_db = librosa.power_to_db(mel, ref=1.0)
    return ((mel_db - mel_db.mean()) / (mel_db.std() + 1e-8)).astype(np.float32)


def mel_image(mel_db: np.ndarray) -> torch.Tensor:
    """(3, 299, 299) float32: a normalised mel resized bilinearly (align_corners=False), repeated to RGB."""
    x = torch.from_numpy(np.ascontiguousarray(mel_db, dtype=np.float32))[None, None]
    x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
    return x[0].repeat(3, 1, 1)


def mel_windows(
    samples: np.ndarray, sample_rate: int = SAMPLE_RATE, window_s: float = WINDOW_S, overlap: float = OVERLAP
) -> tuple[torch.Tensor, list[tuple[float, float]]]:
    """Cut a mono track into the audio model's inputs, exactly as the original project did.

    Returns a float32 tensor (N, 3, 299, 299) — per-window mel dB, mean/std normalised, resized, three
    identical channels — and each window's (start, end) in seconds. A window between 80 % and 100 % of
    `window_s` is zero-padded to full length; N is 0 for a track shorter than 80 % of one window.
    """
    images, times = [], []
    for batch, spans in mel_batches(samples, 64, sample_rate, window_s, overlap):
        images.append(batch)
        times.extend(spans)
    if not images:
        return torch.zeros((0, 3, INPUT_SIZE, INPUT_SIZE), dtype=torch.float32), []
    return torch.cat(images), times


def mel_batches(
    samples: np.ndarray, batch_size: int, sample_rate: int = SAMPLE_RATE, window_s: float = WINDOW_S,
    overlap: float = OVERLAP,
) -> Iterator[tuple[torch.Tensor, list[tuple[float, float]]]]:
    """`mel_windows`, at most `batch_size` windows at a time: each window's image is 1 MB, so a long track
    is scored in bounded memory. Yields ((n, 3, 299, 299) float32, n (start, end) times in seconds)."""
    samples = np.asarray(samples, dtype=np.float32).reshape(-1)
    win = int(window_s * sample_rate)
    images, times = [], []
    for start, end in window_spans(len(samples), sample_rate, window_s, overlap):
        segment = samples[start:end]
        if len(segment) < win:
            segment = np.pad(segment, (0, win - len(segment)))
        images.append(mel_image(log_mel(segment, sample_rate)))
        times.append((start / sample_rate, end / sample_rate))
        if len(images) == batch_size:
            yield torch.stack(images), times
            images, times = [], []
    if images:
        yield torch.stack(images), times
