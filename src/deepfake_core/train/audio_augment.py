"""Seeded degradations for training the audio model, applied alike to real and fake speech so that no file
format, codec, level, noise or room can tell the classes apart. Pure functions on 16 kHz mono float32."""

from __future__ import annotations

import io

import av
import numpy as np
from scipy import signal

from ..media.audio import SAMPLE_RATE

CODECS = {  # PyAV encoder -> (container format, bit rates in kbit/s to draw from)
    "libmp3lame": ("mp3", (24, 32, 48, 64, 96, 128)),
    "aac": ("adts", (24, 32, 48, 64, 96, 128)),
    "libopus": ("ogg", (12, 16, 24, 32, 48, 64)),
}


def _to_s16(samples: np.ndarray) -> np.ndarray:
    return (np.clip(samples, -1.0, 32767 / 32768) * 32768).astype(np.int16)


def encode_s16(out, stream, samples: np.ndarray, rate: int) -> None:
    """Mono float `samples` at `rate`, as 16-bit PCM, resampled to the audio `stream`'s sample format and rate
    and encoded into the open container `out`; the stream is flushed."""
    frame = av.AudioFrame.from_ndarray(_to_s16(samples)[None], format="s16", layout="mono")
    frame.sample_rate = rate
    resampler = av.AudioResampler(format=stream.format.name, layout="mono", rate=stream.rate)
    for chunk in resampler.resample(frame) + resampler.resample(None):
        for packet in stream.encode(chunk):
            out.mux(packet)
    for packet in stream.encode(None):
        out.mux(packet)


def codec_roundtrip(samples: np.ndarray, codec: str, kbps: int) -> np.ndarray:
    """`samples` encoded with `codec` (a CODECS key) at `kbps` in memory and decoded back to 16 kHz float32."""
    fmt, _ = CODECS[codec]
    rate = 48_000 if codec == "libopus" else SAMPLE_RATE  # Opus runs at 48 kHz
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format=fmt) as out:
        stream = out.add_stream(codec, rate=rate, layout="mono")
        stream.bit_rate = kbps * 1000
        encode_s16(out, stream, samples, SAMPLE_RATE)
    buffer.seek(0)
    decoded = []
    with av.open(buffer, mode="r") as inp:
        back = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
        for frame in inp.decode(audio=0):
            frame.pts = None
            decoded.extend(f.to_ndarray().reshape(-1) for f in back.resample(frame))
        decoded.extend(f.to_ndarray().reshape(-1) for f in back.resample(None))
    if not decoded:
        return samples.copy()
    return np.concatenate(decoded).astype(np.float32) / 32768.0


def add_noise(samples: np.ndarray, rng: np.random.Generator, snr_db: float) -> np.ndarray:
    """White or pink noise at `snr_db` below the signal's power."""
    noise = rng.standard_normal(len(samples))
    if rng.random() < 0.5:  # pink: 1/f power
        spectrum = np.fft.rfft(noise)
        spectrum /= np.sqrt(np.maximum(np.arange(len(spectrum)), 1))
        noise = np.fft.irfft(spectrum, n=len(samples))
    power = float(np.mean(samples ** 2)) + 1e-10
    noise *= np.sqrt(power / (np.mean(noise ** 2) + 1e-12) / 10 ** (snr_db / 10))
    return (samples + noise).astype(np.float32)


def reverberate(samples: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Convolution with a synthetic room response: a direct path and exponentially decaying noise (RT60
    0.15-0.8 s), mixed at a random direct-to-reverberant ratio."""
    rt60 = rng.uniform(0.15, 0.8)
    n = int(rt60 * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    tail = rng.standard_normal(n) * np.exp(-6.9 * t / rt60)
    tail[0] = 0.0
    rir = tail * rng.uniform(0.05, 0.4) / np.sqrt(np.sum(tail ** 2) + 1e-12)
    rir[0] = 1.0
    wet = signal.fftconvolve(samples, rir)[: len(samples)]
    return (wet / (np.max(np.abs(wet)) + 1e-9) * np.max(np.abs(samples))).astype(np.float32)


def band_limit(samples: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A low-pass at 3.4-7.5 kHz (telephone to wide band), sometimes with a 100-300 Hz high-pass."""
    cutoff = rng.uniform(3400, 7500)
    sos = signal.butter(6, cutoff, "lowpass", fs=SAMPLE_RATE, output="sos")
    out = signal.sosfilt(sos, samples)
    if rng.random() < 0.5:
        out = signal.sosfilt(signal.butter(2, rng.uniform(100, 300), "highpass", fs=SAMPLE_RATE, output="sos"), out)
    return out.astype(np.float32)


def degrade(samples: np.ndarray, seed: int) -> tuple[np.ndarray, list[str]]:
    """One random chain of degradations, the same for the same (samples, seed): gain, then each of room,
    band limit, noise and a lossy codec with its own probability. Returns the audio and what was applied."""
    rng = np.random.default_rng(seed)
    x = np.asarray(samples, dtype=np.float32).copy()
    done = []
    if rng.random() < 0.25:
        x, _ = reverberate(x, rng), done.append("reverb")
    if rng.random() < 0.25:
        x, _ = band_limit(x, rng), done.append("band-limit")
    if rng.random() < 0.35:
        snr = float(rng.uniform(10, 40))
        x, _ = add_noise(x, rng, snr), done.append(f"noise {snr:.0f} dB")
    if rng.random() < 0.6:
        codec = str(rng.choice(list(CODECS)))
        kbps = int(rng.choice(CODECS[codec][1]))
        x, _ = codec_roundtrip(x, codec, kbps), done.append(f"{codec} {kbps}k")
    gain_db = float(rng.uniform(-18, 3))
    peak = float(np.max(np.abs(x))) + 1e-9
    x = x / peak * min(10 ** (gain_db / 20), 0.99)
    done.append(f"peak {gain_db:.0f} dBFS")
    return x.astype(np.float32), done
