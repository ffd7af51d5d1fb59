#!/usr/bin/env python
"""Peak resident memory (RSS) of an analysis on the worst inputs within the default limits.

    python benchmarks/bench_memory.py [--cache-dir DIR] [--budget S] [--case NAME ...]

Each case runs in its own process (so each peak is its own), with random-initialised original-layout models
(memory does not depend on weight values) and the res10 files from ../shared/models:

- `load`: the models loaded and warmed up, nothing analysed (the floor of every other case);
- `8k_video`: a 2 s 7680x4320 (the pixel limit) H.264 clip with a face, default settings;
- `4h_audio`: a 4 h (the duration limit) 16 kHz mono WAV, audio only, analysed until the time budget
  (--budget, default 120 s) stops it: the audio is streamed, so the peak is reached in the first minute;
- `4h_audio_decode_whole` / `4h_audio_decode_streamed`: the same file decoded and windowed without the
  networks, whole in memory (`read_audio`, the former path) vs in chunks (`audio_chunks` + `mel_batches`).

Generated media are cached in --cache-dir (default: the system temp folder), never in the repository.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CASES = ("load", "8k_video", "4h_audio", "4h_audio_decode_whole", "4h_audio_decode_streamed")


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def write_wav(path: Path, seconds: int, rate: int = 16_000) -> Path:
    import wave

    import numpy as np

    if path.is_file():
        return path
    rng = np.random.default_rng(0)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(rate)
        for _ in range(0, seconds, 60):
            w.writeframes((rng.standard_normal(60 * rate) * 2000).astype("<i2").tobytes())
    return path


def write_8k(path: Path, frames: int = 60) -> Path:
    import av
    import cv2
    import numpy as np
    import skimage.data

    if path.is_file():
        return path
    face = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)
    face = cv2.resize(face, (2048, 2048))
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=30)
        s.width, s.height, s.pix_fmt = 7680, 4320, "yuv420p"
        s.options = {"preset": "ultrafast"}
        for i in range(frames):
            img = np.full((4320, 7680, 3), (60, 120, 90), np.uint8)
            x = 1000 + 40 * i
            img[1100:3148, x:x + 2048] = face
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="bgr24")):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    return path


def random_models(directory: Path) -> Path:
    import torch

    from deepfake_core.models.networks import build_audio_model, build_video_model
    from deepfake_core.models.registry import FACE_CAFFEMODELS, FACE_PROTOTXT

    torch.manual_seed(0)
    torch.save({"model_state_dict": build_video_model().state_dict()}, directory / "epoch_007.pt")
    torch.save({"model_state_dict": build_audio_model().state_dict()}, directory / "best_audio_xception.pth")
    for name in (FACE_PROTOTXT, FACE_CAFFEMODELS[0]):
        shutil.copy(ROOT.parent / "shared" / "models" / name, directory / name)
    return directory


def run_case(name: str, media: dict, budget: float) -> dict:
    from deepfake_core import AnalysisSettings, Detector
    from deepfake_core.errors import AnalysisTimeout

    result = {"case": name}
    start = time.perf_counter()
    if name.startswith("4h_audio_decode"):
        from deepfake_core.media.audio import audio_chunks, mel_batches, read_audio

        source = read_audio(media["wav"]) if name.endswith("whole") else audio_chunks(media["wav"])
        windows = 0
        for images, _ in mel_batches(source, 16):
            windows += len(images)
            if windows >= 2000:  # the memory of the decode is what is measured; stop the mel work early
                break
        result["windows"] = windows
    else:
        with tempfile.TemporaryDirectory() as tmp:
            detector = Detector.load(random_models(Path(tmp)), device="cpu")
            if name != "load":
                path = media["8k"] if name == "8k_video" else media["wav"]
                try:
                    report = detector.analyze(path, AnalysisSettings(max_analysis_s=budget))
                    result.update(verdict=report.verdict, faces=report.counts["faces"],
                                  audio_windows=report.counts["audio_windows"])
                except AnalysisTimeout as e:
                    result["stopped"] = str(e).split(" (")[0]
    result.update(seconds=round(time.perf_counter() - start, 1), peak_rss_mb=peak_rss_mb())
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "deepfake-bench-memory")
    p.add_argument("--budget", type=float, default=120.0)
    p.add_argument("--case", action="append", choices=CASES)
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    media = {"wav": args.cache_dir / "4h.wav", "8k": args.cache_dir / "8k.mp4"}
    if args.child:
        print(json.dumps(run_case(args.child, media, args.budget)))
        return 0
    write_wav(media["wav"], 4 * 3600)
    write_8k(media["8k"])
    rows = []
    for name in args.case or CASES:
        out = subprocess.run([sys.executable, __file__, "--child", name, "--cache-dir", str(args.cache_dir),
                              "--budget", str(args.budget)], capture_output=True, text=True, env=os.environ)
        if out.returncode:
            print(out.stderr[-2000:], file=sys.stderr)
            return 1
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
