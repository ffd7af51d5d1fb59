"""A tiny generated dataset for the walkthrough notebooks and the tests: no download, a few seconds to make.

Clips show the scikit-image astronaut's face drifting across a plain background with a tone and noise for a
voice. "Fake" clips have a tinted, blurred face (the video track) and a buzzier voice that starts after half
a second of silence (the audio track), like FakeAVCeleb's shortcut. It exercises the commands end to end;
it says nothing about real deepfakes. Needs scikit-image (for the photo).
"""

from __future__ import annotations

import csv
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from ..media.audio import SAMPLE_RATE
from ..errors import SettingsError

LAYOUTS = ("folders", "fakeavceleb", "manifest")
FRAME_SIZE = (360, 480)  # pixels (h, w)


def demo_face_bgr() -> np.ndarray:
    """A 300 x 300 BGR photo with one frontal face (~100 px), from scikit-image's sample data."""
    try:
        import skimage.data
    except ImportError as e:
        raise SettingsError("the demo dataset uses a scikit-image sample photo: pip install scikit-image") from e
    return cv2.cvtColor(skimage.data.astronaut()[0:300, 100:400], cv2.COLOR_RGB2BGR)


def demo_frames(n: int, fake: bool = False, size: tuple[int, int] = FRAME_SIZE, seed: int = 0) -> list[np.ndarray]:
    """`n` BGR frames: the face drifting right; a fake one is tinted and blurred."""
    face = demo_face_bgr()
    if fake:
        face = cv2.GaussianBlur(face, (0, 0), 1.2)
        face = np.clip(face.astype(np.int16) + np.array([-25, 10, 30], np.int16), 0, 255).astype(np.uint8)
    h, w = size
    fh, fw = face.shape[:2]
    background = np.array(np.random.default_rng(seed).integers(40, 160, 3), dtype=np.uint8)
    frames = []
    for i in range(n):
        frame = np.empty((h, w, 3), np.uint8)
        frame[:] = background
        x = int((w - fw) * i / max(1, n - 1))
        y = (h - fh) // 2
        frame[y:y + fh, x:x + fw] = face
        frames.append(frame)
    return frames


def demo_voice(seconds: float, fake: bool = False, seed: int = 0) -> np.ndarray:
    """Mono float32 at 16 kHz: a tone with noise; a fake one is buzzier and opens with 0.5 s of silence."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    freq = 180.0 + 40.0 * rng.random()
    wave = np.sin(2 * np.pi * freq * t)
    if fake:
        wave = np.sign(wave) * np.abs(wave) ** 0.3  # buzzy
    voice = 0.3 * wave * (0.6 + 0.4 * np.sin(2 * np.pi * 3.0 * t)) + rng.normal(0, 0.02, t.shape)
    if fake:
        voice[: SAMPLE_RATE // 2] = 0.0
    return voice.astype(np.float32)


def write_clip(path: str | Path, frames: list[np.ndarray], fps: int = 10, audio: np.ndarray | None = None,
               audio_rate: int = SAMPLE_RATE, rotation: int | None = None,
               options: dict[str, str] | None = None) -> Path:
    """Encode BGR frames (H.264) and optional mono float audio (AAC) into `path`. `rotation` (degrees)
    goes into the display matrix; `options` are muxer options (e.g. {"movflags": "faststart"})."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = frames[0].shape[:2]
    with av.open(str(path), mode="w", options=options or {}) as out:
        vs = out.add_stream("libx264", rate=fps)
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        if rotation is not None:
            vs.set_display_rotation(rotation)
        astream = None
        if audio is not None:
            astream = out.add_stream("aac", rate=audio_rate)
            astream.layout = "mono"
        encode_frames(out, vs, frames)
        if astream is not None:
            encode_mono(out, astream, audio, audio_rate)
    return path


def encode_frames(out, stream, frames) -> None:
    """Encode BGR frames into the video `stream` of the open container `out`, then flush it."""
    for image in frames:
        for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="bgr24")):
            out.mux(packet)
    for packet in stream.encode():
        out.mux(packet)


def encode_mono(out, stream, samples, rate: int, chunk: int = 1024) -> None:
    """Encode mono float samples at `rate` into the audio `stream` of the open container `out`, `chunk`
    samples a frame, then flush it."""
    samples = np.asarray(samples, dtype=np.float32)
    for i in range(0, len(samples), chunk):
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples[i:i + chunk][None, :]), format="flt",
                                           layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = rate, i, Fraction(1, rate)
        for packet in stream.encode(frame):
            out.mux(packet)
    for packet in stream.encode():
        out.mux(packet)


def _clip(path: Path, fake_video: bool, fake_audio: bool, seconds: float, fps: int, seed: int) -> Path:
    frames = demo_frames(int(seconds * fps), fake_video, seed=seed)
    return write_clip(path, frames, fps, demo_voice(seconds, fake_audio, seed))


def write_demo_dataset(root: str | Path, layout: str = "folders", per_class: int = 3, seconds: float = 3.0,
                       fps: int = 10, seed: int = 0) -> Path:
    """Write a tiny labelled dataset under `root` and return what to pass to prepare/evaluate:
    folders: root/real/*.mp4, root/fake/*.mp4 (both tracks fake) -> root;
    fakeavceleb: the four FakeAVCeleb folders for `per_class` identities, with meta_data.csv -> root;
    manifest: root/clips/*.mp4 and root/labels.csv (path,label,audio_label,identity,generator) -> the CSV."""
    if layout not in LAYOUTS:
        raise SettingsError(f"layout must be one of {', '.join(LAYOUTS)}; got {layout!r}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    if layout == "folders":
        for label in ("real", "fake"):
            for i in range(per_class):
                _clip(root / label / f"{label}_{i:02d}.mp4", label == "fake", label == "fake", seconds, fps,
                      seed + 100 * (label == "fake") + i)
        return root
    if layout == "fakeavceleb":
        rows = []
        types = {"RealVideo-RealAudio": (False, False, "real"), "FakeVideo-RealAudio": (True, False, "faceswap"),
                 "RealVideo-FakeAudio": (False, True, "rtvc"), "FakeVideo-FakeAudio": (True, True, "faceswap-wav2lip")}
        for i in range(per_class):
            ident = f"id{i + 1:05d}"
            for kind, (fv, fa, method) in types.items():
                name = "00001.mp4" if kind.startswith("RealVideo-RealAudio") else f"00001_{method}.mp4"
                folder = Path(kind) / "African" / "men" / ident
                _clip(root / folder / name, fv, fa, seconds, fps, seed + 10 * i + len(rows))
                rows.append([ident, "-" if method == "real" else f"id{i + 50:05d}", "-", method, "A", kind,
                             "African", "men", name, f"FakeAVCeleb/{folder.as_posix()}"])
        with open(root / "meta_data.csv", "w", newline="", encoding="utf-8") as f:
            f.write("source,target1,target2,method,category,type,race,gender,path,\n")
            csv.writer(f).writerows(rows)
        return root
    labels = root / "labels.csv"
    with open(labels, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label", "audio_label", "identity", "generator"])
        for i in range(2 * per_class):
            fake = i % 2 == 1
            fake_audio = fake and i % 4 == 1
            rel = f"clips/clip_{i:02d}.mp4"
            _clip(root / rel, fake, fake_audio, seconds, fps, seed + i)
            writer.writerow([rel, "fake" if fake else "real", "fake" if fake_audio else "real", f"person{i // 2}",
                             ("tint-a" if i % 4 == 1 else "tint-b") if fake else "none"])
    return labels
