"""Hostile media for the hardening tests, generated here: raw elementary streams, growing frames, damaged tracks."""

from __future__ import annotations

import io
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from deepfake_core.train.demo import encode_frames, encode_mono


def write_raw(path: Path, frames, codec: str = "libx264", fmt: str = "h264", fps: int = 25) -> Path:
    """A raw elementary stream (no container: no duration, no frame count) of BGR frames."""
    with av.open(str(path), "w", format=fmt) as out:
        stream = out.add_stream(codec, rate=fps)
        h, w = frames[0].shape[:2]
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        if codec == "libx265":
            stream.options = {"x265-params": "log-level=error"}
        encode_frames(out, stream, frames)
    return path


def write_growing(path: Path, small: int = 64, large=(240, 320), n: int = 10) -> Path:
    """A raw H.264 stream whose header (first SPS) says small x small, then whose frames grow to `large`."""
    a = write_raw(path.with_suffix(".a.h264"), [np.full((small, small, 3), 10 * i, np.uint8) for i in range(n)])
    b = write_raw(path.with_suffix(".b.h264"), [np.full((*large, 3), 10 * i, np.uint8) for i in range(n)])
    path.write_bytes(a.read_bytes() + b.read_bytes())
    a.unlink(), b.unlink()
    return path


def damage_track(src: Path, dst: Path, kind: str, seed: int = 0) -> Path:
    """A Matroska copy of `src` whose `kind` ("audio" or "video") packets are replaced by random bytes."""
    rng = np.random.default_rng(seed)
    with av.open(str(src)) as inp, av.open(str(dst), "w", format="matroska") as out:
        streams = {s.index: out.add_stream_from_template(s) for s in (inp.streams.video[0], inp.streams.audio[0])}
        for packet in inp.demux():
            if packet.dts is None:
                continue
            target = streams[packet.stream.index]
            if packet.stream.type == kind:
                junk = av.Packet(rng.integers(0, 256, packet.size, dtype=np.uint8).tobytes())
                junk.pts, junk.dts, junk.time_base = packet.pts, packet.dts, packet.time_base
                junk.is_keyframe = packet.is_keyframe
                packet = junk
            packet.stream = target
            out.mux(packet)
    return dst


def write_long_audio(path: Path, seconds: float, rate: int = 8000) -> Path:
    """A mono Opus file of `seconds` of quiet noise at a low bit rate: minutes of audio in little space."""
    with av.open(str(path), "w", format="ogg") as out:
        stream = out.add_stream("libopus", rate=48000)
        stream.layout, stream.bit_rate = "mono", 6000
        rng = np.random.default_rng(0)
        step = 48000
        for i in range(0, int(seconds * 48000), step):
            samples = (0.01 * rng.standard_normal(step)).astype(np.float32)[None, :]
            frame = av.AudioFrame.from_ndarray(samples, format="flt", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = 48000, i, Fraction(1, 48000)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def write_declared_audio(path: Path, declared_s: float, rate: int = 16000, video_frames=None, fps: int = 25) -> Path:
    """An MP4 holding 2 s of a voice-like signal (conftest.speech_like: windows without speech are not scored)
    whose last audio packet is stamped at `declared_s`: a small file whose audio stream declares `declared_s`
    seconds. With `video_frames` (BGR), a video stream too."""
    from conftest import speech_like

    samples = speech_like(2.0, rate)
    with av.open(str(path), "w", format="mp4") as out:
        video = None
        if video_frames is not None:
            video = out.add_stream("libx264", rate=fps)
            h, w = video_frames[0].shape[:2]
            video.width, video.height, video.pix_fmt = w, h, "yuv420p"
        audio = out.add_stream("aac", rate=rate)
        audio.layout = "mono"
        packets = []
        for i in range(0, len(samples), 1024):
            frame = av.AudioFrame.from_ndarray(samples[i:i + 1024][None, :], format="flt", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = rate, i, Fraction(1, rate)
            packets.extend(audio.encode(frame))
        packets.extend(audio.encode())
        last = packets[-1]
        last.pts = last.dts = int(declared_s / last.time_base)
        for packet in packets:
            out.mux(packet)
        if video is not None:
            encode_frames(out, video, video_frames)
    return path


class _Pipe(io.RawIOBase):
    """A write-only, unseekable file: muxers cannot go back to write a duration or an index."""

    def __init__(self, f):
        self.f = f

    def writable(self):
        return True

    def seekable(self):
        return False

    def write(self, b):
        return self.f.write(b)


def write_undeclared_audio(path: Path, samples: np.ndarray, rate: int = 16000) -> Path:
    """An audio-only Matroska (FLAC) file written as to a pipe: it declares no duration at all."""
    with open(path, "wb") as f, av.open(_Pipe(f), "w", format="matroska") as out:
        stream = out.add_stream("flac", rate=rate)
        stream.layout = "mono"
        encode_mono(out, stream, samples, rate)
    return path
