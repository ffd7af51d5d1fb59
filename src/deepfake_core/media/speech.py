"""The built-in audio model's front end and a speech-presence check. Pure functions on 16 kHz mono float32.

Every track, whatever its file format, rate or bit depth, is first decoded by `audio.read_audio` to 16 kHz
mono (through 16-bit PCM), so the features below never see the container, the sample rate or the sample
format of the file: only the speech.
"""

from __future__ import annotations

import functools

import librosa
import numpy as np
import torch

from .audio import SAMPLE_RATE, stream_windows, window_spans

N_FFT = 512  # samples (32 ms at 16 kHz)
WIN_LENGTH = 400  # samples (25 ms)
HOP = 160  # samples (10 ms)
N_BANDS = 64  # filterbank bands
FMIN, FMAX = 20.0, 8000.0  # Hz
FRONT_ENDS = ("logmel", "loglin", "ge2e")  # mel-spaced or linearly spaced (LFCC-style) log filterbank, or
# the pretrained voice encoder's input (40-band mel power of a window brought to -30 dBFS, as it was trained)
GE2E_BANDS, GE2E_N_FFT, GE2E_LEVEL_DBFS = 40, 400, -30.0
SPEECH_WINDOW_S = 2.0  # seconds per scored window
MIN_TRACK_S = 1.0  # a track shorter than this has no window; a shorter final window is wrap-padded

# Speech presence (`has_speech`): a window is speech when enough of its 25 ms frames are above the floor,
# its loudness rises and falls like syllables and pauses, and its loud frames are not noise-flat.
VAD_FLOOR_DBFS = -50.0  # dB relative to full scale; quieter frames are silence
VAD_MIN_ACTIVE = 0.2  # fraction of frames above the floor
VAD_MIN_RANGE_DB = 10.0  # 90th minus 10th percentile of frame loudness, dB
VAD_MAX_FLATNESS = 0.35  # median spectral flatness of loud frames (white noise ~0.56, voiced speech < 0.1)


@functools.lru_cache(maxsize=4)
def _filterbank(kind: str) -> torch.Tensor:
    """(bands, n_fft // 2 + 1) float32 triangular filters."""
    if kind == "ge2e":  # librosa's default mel filters (Slaney), as the encoder was trained with
        fb = librosa.filters.mel(sr=SAMPLE_RATE, n_fft=GE2E_N_FFT, n_mels=GE2E_BANDS)
    elif kind == "logmel":
        fb = librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=N_BANDS, fmin=FMIN, fmax=FMAX, norm=None)
    elif kind == "loglin":
        freqs = np.linspace(0, SAMPLE_RATE / 2, N_FFT // 2 + 1)
        edges = np.linspace(FMIN, FMAX, N_BANDS + 2)
        fb = np.zeros((N_BANDS, len(freqs)))
        for i in range(N_BANDS):
            lo, mid, hi = edges[i], edges[i + 1], edges[i + 2]
            fb[i] = np.clip(np.minimum((freqs - lo) / (mid - lo), (hi - freqs) / (hi - mid)), 0, None)
    else:
        raise ValueError(f"front end must be one of {', '.join(FRONT_ENDS)}; got {kind!r}")
    return torch.from_numpy(fb.astype(np.float32))


def power_spectrogram(samples: np.ndarray) -> torch.Tensor:
    """(N_FFT // 2 + 1, T) float32 power, Hann window of WIN_LENGTH, hop HOP, centred (T = n // HOP + 1)."""
    x = torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32).reshape(-1))
    spec = torch.stft(x, N_FFT, HOP, WIN_LENGTH, torch.hann_window(WIN_LENGTH), center=True,
                      return_complex=True)
    return spec.abs().pow(2)


def ge2e_mel(samples: np.ndarray) -> torch.Tensor:
    """(GE2E_BANDS, T) float32 mel power of `samples` brought to an RMS of GE2E_LEVEL_DBFS (the voice
    encoder's input; up or down, so the file's gain does not matter). T = n // HOP + 1."""
    x = torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32).reshape(-1))
    rms = float(x.pow(2).mean().sqrt()) if len(x) else 0.0
    if rms > 1e-6:
        x = x * (10 ** (GE2E_LEVEL_DBFS / 20) / rms)
    spec = torch.stft(x, GE2E_N_FFT, HOP, GE2E_N_FFT, torch.hann_window(GE2E_N_FFT), center=True,
                      pad_mode="constant", return_complex=True)
    return _filterbank("ge2e") @ spec.abs().pow(2)


def features(samples: np.ndarray, front_end: str = "logmel") -> torch.Tensor:
    """(1, N_BANDS, T) float32: log filterbank energies (dB) of one window, normalised to zero mean and unit
    std over the whole window (so gain does not matter; the spectral shape does). Front end "ge2e":
    (1, GE2E_BANDS, T) mel power for the pretrained voice encoder (`ge2e_mel`)."""
    if front_end == "ge2e":
        return ge2e_mel(samples)[None]
    fb = _filterbank(front_end)
    energies = 10.0 * torch.log10(fb @ power_spectrogram(samples) + 1e-10)
    energies = (energies - energies.mean()) / (energies.std() + 1e-5)
    return energies[None]


def fit_length(segment: np.ndarray, n: int) -> np.ndarray:
    """`segment` cut or wrap-padded (repeated from its start) to exactly n samples. Repeating speech, unlike
    zero-padding, adds no block of digital silence that a model could learn."""
    segment = np.asarray(segment, dtype=np.float32).reshape(-1)
    if len(segment) >= n:
        return segment[:n]
    if len(segment) == 0:
        return np.zeros(n, np.float32)
    return np.pad(segment, (0, n - len(segment)), mode="wrap")


def speech_spans(n_samples: int, window_s: float = SPEECH_WINDOW_S, overlap: float = 0.5,
                 sample_rate: int = SAMPLE_RATE) -> list[tuple[int, int]]:
    """(start, end) sample offsets of the scored windows: the original windows (`audio.window_spans`: hop
    window x (1 - overlap), a final window kept when 80 % full) or, for a track shorter than one window but at
    least MIN_TRACK_S long, the whole track as one window (wrap-padded when scored)."""
    return window_spans(n_samples, sample_rate, window_s, overlap, min_track_s=MIN_TRACK_S)


def frame_levels(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per 25 ms frame (hop 10 ms): loudness in dBFS and spectral flatness (0 tonal .. 1 white noise)."""
    power = power_spectrogram(samples).numpy().astype(np.float64)  # (F, T)
    # mean power of a full-scale sine through this window is sum(w)^2 / 4 per bin pair; dBFS relative to that
    window_gain = float(np.hanning(WIN_LENGTH).sum()) ** 2 / 2
    loud = 10 * np.log10(power.sum(axis=0) / window_gain + 1e-12)
    bins = power[2:] + 1e-12  # skip DC and the lowest bin
    flatness = np.exp(np.log(bins).mean(axis=0)) / bins.mean(axis=0)
    return loud, flatness


def has_speech(segment: np.ndarray) -> bool:
    """True when a window of 16 kHz audio holds speech (energy, syllabic loudness range and not noise-flat).

    Silence, steady tones and steady noise are not speech; a voice over mild background noise is.
    """
    loud, flatness = frame_levels(segment)
    if len(loud) < 10:
        return False
    active = loud > VAD_FLOOR_DBFS
    if active.mean() < VAD_MIN_ACTIVE:
        return False
    if np.percentile(loud, 90) - np.percentile(loud, 10) < VAD_MIN_RANGE_DB:
        return False
    loudest = loud >= np.percentile(loud[active], 50)
    return bool(np.median(flatness[active & loudest]) < VAD_MAX_FLATNESS)


def trim_silence(samples: np.ndarray, top_db: float = 40.0) -> np.ndarray:
    """`samples` without leading and trailing stretches quieter than `top_db` below the loudest frame."""
    if len(samples) < WIN_LENGTH:
        return samples
    trimmed, _ = librosa.effects.trim(samples, top_db=top_db, frame_length=WIN_LENGTH, hop_length=HOP)
    return trimmed if len(trimmed) >= int(0.5 * SAMPLE_RATE) else samples


def speech_windows(samples: np.ndarray, front_end: str = "logmel", window_s: float = SPEECH_WINDOW_S,
                   overlap: float = 0.5) -> tuple[torch.Tensor, list[tuple[float, float]], int]:
    """The built-in audio model's inputs for a whole 16 kHz track: only the windows that hold speech.

    Returns ((N, 1, N_BANDS, T) float32 features, each kept window's (start, end) in seconds, the number of
    windows looked at). A window shorter than `window_s` (the last, or the only one of a short track) is
    wrap-padded to full length; one without speech (`has_speech`) is left out.
    """
    win = int(window_s * SAMPLE_RATE)
    kept, times, looked = [], [], 0
    for start, end, segment in stream_windows([samples], SAMPLE_RATE, window_s, overlap, MIN_TRACK_S):
        looked += 1
        if not has_speech(segment):
            continue
        kept.append(features(fit_length(segment, win), front_end))
        times.append((start / SAMPLE_RATE, end / SAMPLE_RATE))
    if not kept:
        bands = GE2E_BANDS if front_end == "ge2e" else N_BANDS
        return torch.zeros((0, 1, bands, win // HOP + 1)), [], looked
    return torch.stack(kept), times, looked
