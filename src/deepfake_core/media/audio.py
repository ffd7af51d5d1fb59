"""Audio track decoding and the original project's mel-spectrogram windows."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import librosa
import numpy as np
import torch
import torch.nn.functional as F

from ..errors import UnreadableMedia

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


CHUNK_S = 10.0  # seconds of audio decoded and handed on at a time: memory stays bounded for any length


@dataclass
class AudioStats:
    has_track: bool = False  # the file has an audio track
    seconds: float = 0.0  # audio handed on, in seconds
    stopped_at_limit: bool = False  # decoding stopped at `max_seconds` with more audio in the file
    error: str | None = None  # why decoding stopped early, if it did


def audio_chunks(
    path: str | os.PathLike, sample_rate: int = SAMPLE_RATE, max_seconds: float | None = None,
    stats: AudioStats | None = None, chunk_s: float = CHUNK_S,
) -> Iterator[np.ndarray]:
    """Decode the first audio track as mono float32 in [-1, 1) at `sample_rate`, `chunk_s` seconds at a time
    (the last chunk shorter); nothing for a file without an audio track.

    Samples pass through 16-bit PCM, as in the original (ffmpeg -acodec pcm_s16le -ac 1, then librosa.load).
    Decoding stops after `max_seconds` (stats.stopped_at_limit). A decode error part-way ends the chunks
    (stats.error); one before any sample raises UnreadableMedia.
    """
    stats = stats if stats is not None else AudioStats()
    limit = None if max_seconds is None else int(max_seconds * sample_rate)
    step = max(1, int(chunk_s * sample_rate))
    try:
        container = av.open(str(path), mode="r", metadata_errors="ignore")
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as e:
        raise UnreadableMedia(f"cannot read {Path(path).name!r}: {e}") from e
    pending: list[np.ndarray] = []
    held = emitted = 0
    with container:
        if not container.streams.audio:
            return
        stats.has_track = True
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="s16", layout="mono", rate=sample_rate)
        try:
            for frame in itertools.chain(container.decode(stream), [None]):
                if frame is not None:
                    frame.pts = None  # let the resampler count samples itself (robust to gaps)
                for out in resampler.resample(frame):
                    pending.append(out.to_ndarray().reshape(-1))
                    held += len(pending[-1])
                if limit is not None and emitted + held >= limit:
                    stats.stopped_at_limit = frame is not None
                    break
                while held >= step:
                    chunk, pending, held = _take(pending, step)
                    emitted += len(chunk)
                    stats.seconds = emitted / sample_rate
                    yield chunk
        except av.error.FFmpegError as e:
            if emitted + held == 0:
                raise UnreadableMedia(f"cannot decode the audio of {Path(path).name!r}: {e}") from e
            stats.error = f"audio decoding stopped at {(emitted + held) / sample_rate:.1f} s: {e}"
    if limit is not None and emitted + held > limit:
        pending, held = [np.concatenate(pending)[:limit - emitted]], limit - emitted
    while held > 0:
        chunk, pending, held = _take(pending, min(step, held))
        emitted += len(chunk)
        stats.seconds = emitted / sample_rate
        yield chunk


def _take(pending: list[np.ndarray], n: int) -> tuple[np.ndarray, list[np.ndarray], int]:
    """The first n samples of `pending` as float32, the rest, and how many that rest holds."""
    data = np.concatenate(pending)
    rest = data[n:]
    return data[:n].astype(np.float32) / 32768.0, ([rest] if len(rest) else []), len(rest)


def read_audio(path: str | os.PathLike, sample_rate: int = SAMPLE_RATE,
               max_seconds: float | None = None) -> np.ndarray | None:
    """The first audio track (at most `max_seconds` of it) as one mono float32 array in [-1, 1) at
    `sample_rate`; None if there is none. See `audio_chunks`, which pipelines use for tracks of any length."""
    stats = AudioStats()
    chunks = list(audio_chunks(path, sample_rate, max_seconds, stats))
    if not stats.has_track:
        return None
    return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)


def window_spans(
    n_samples: int, sample_rate: int = SAMPLE_RATE, window_s: float = WINDOW_S, overlap: float = OVERLAP,
    min_track_s: float | None = None,
) -> list[tuple[int, int]]:
    """(start, end) sample offsets of each analysis window, in the original's order and rule:
    hop = window x (1 - overlap); stop at the first window shorter than 80 % of a full one. With
    `min_track_s` (the speech model's rule), a track shorter than one window is one window when it lasts at
    least `min_track_s`, else none."""
    win = int(window_s * sample_rate)
    hop = max(1, int(win * (1 - overlap)))
    if min_track_s is not None and n_samples < win:
        return [(0, n_samples)] if n_samples >= int(min_track_s * sample_rate) else []
    spans = []
    for start in range(0, n_samples, hop):
        end = min(start + win, n_samples)
        if end - start < int(MIN_FILL * win):
            break
        spans.append((start, end))
    return spans


def zero_pad(segment: np.ndarray, n: int) -> np.ndarray:
    """`segment` zero-padded at its end to n samples (the original's final window)."""
    return np.pad(segment, (0, n - len(segment))) if len(segment) < n else segment


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


def stream_windows(
    chunks: Iterable[np.ndarray], sample_rate: int = SAMPLE_RATE, window_s: float = WINDOW_S,
    overlap: float = OVERLAP, min_track_s: float | None = None,
) -> Iterator[tuple[int, int, np.ndarray]]:
    """(start, end, samples) of each analysis window of a track given chunk by chunk, at the spans
    `window_spans` gives (the same arguments), holding no more than one window plus one chunk in memory.

    The one windowing loop: inference (`mel_batches`, `speech.speech_windows`) and training data
    (`train.prepare`) all cut their windows here. A window shorter than `window_s` (the last one, or the only
    one of a short track) comes as it is, shorter: the caller pads it as its model expects (`zero_pad`,
    `speech.fit_length`)."""
    win = int(window_s * sample_rate)
    hop = max(1, int(win * (1 - overlap)))
    buffer = np.zeros(0, dtype=np.float32)
    offset = 0  # sample number of buffer[0]
    start = 0  # next window's first sample
    for chunk in chunks:
        buffer = np.concatenate([buffer, np.asarray(chunk, dtype=np.float32).reshape(-1)])
        while start + win <= offset + len(buffer):  # a full window: in every span list, whatever follows
            yield start, start + win, buffer[start - offset:start - offset + win].copy()
            start += hop
        drop = min(start - offset, len(buffer))
        buffer, offset = buffer[drop:], offset + drop
    for a, b in window_spans(offset + len(buffer), sample_rate, window_s, overlap, min_track_s):
        if a >= start:  # the track's end is known now: its last windows, by the same rule
            yield a, b, buffer[a - offset:b - offset].copy()


def mel_batches(
    samples: np.ndarray | Iterable[np.ndarray], batch_size: int, sample_rate: int = SAMPLE_RATE,
    window_s: float = WINDOW_S, overlap: float = OVERLAP, keep=None, counts: dict | None = None,
) -> Iterator[tuple[torch.Tensor, list[tuple[float, float]]]]:
    """`mel_windows`, at most `batch_size` windows at a time: each window's image is 1 MB, so a long track
    is scored in bounded memory. `samples`: a whole track, or its chunks (`audio_chunks`) so that the track
    is never whole in memory. Yields ((n, 3, 299, 299) float32, n (start, end) times in seconds).
    `keep(segment) -> bool` (e.g. speech.has_speech) skips the windows it refuses; `counts` gets "looked" and
    "kept"."""
    chunks = [samples] if isinstance(samples, np.ndarray) else samples
    images, times = [], []
    if counts is not None:
        counts.update(looked=0, kept=0)
    win = int(window_s * sample_rate)
    for start, end, segment in stream_windows(chunks, sample_rate, window_s, overlap):
        segment = zero_pad(segment, win)
        if counts is not None:
            counts["looked"] += 1
        if keep is not None and not keep(segment):
            continue
        if counts is not None:
            counts["kept"] += 1
        images.append(mel_image(log_mel(segment, sample_rate)))
        times.append((start / sample_rate, end / sample_rate))
        if len(images) == batch_size:
            yield torch.stack(images), times
            images, times = [], []
    if images:
        yield torch.stack(images), times
