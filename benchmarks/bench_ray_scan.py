#!/usr/bin/env python
"""Videos per minute of `scan --ray` with 1 and 2 workers, and of the local scan, on the same clips in one run.

    python benchmarks/bench_ray_scan.py [--clips N] [--seconds S] [--workers 1 2] [--json]

Generates N clips (a face drifting over a background, a voice-like tone: 640x480, 10 fps, S seconds, H.264/AAC)
and random-initialised checkpoints in the original layouts (speed does not depend on weight values) next to the
res10 files from --face-models, all in a temporary folder that is removed afterwards. Starts a local Ray on
127.0.0.1 with every core of this machine, then for each worker count runs `scan_ray` over the clips (one CPU
per worker, default analysis settings), and `deepfake-detect scan` without Ray (all cores in one process).

For each it prints the wall time of the whole scan (Ray: the actors' start and model load included), and the
steady rate: rows after the first one per minute between the first and the last row, i.e. what a long scan
would sustain once the models are loaded.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

from deepfake_core.process import configure_process  # noqa: E402

configure_process()  # first: the OpenMP wait policy before torch loads (process.py)
from deepfake_core import AnalysisSettings, Detector, scan_ray  # noqa: E402

import torch  # noqa: E402
from deepfake_core.models.networks import build_audio_model, build_video_model  # noqa: E402
from deepfake_core.train.demo import demo_frames, demo_voice, write_clip  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FACE_FILES = ("deploy.prototxt", "res10_300x300_ssd_iter_140000_fp16.caffemodel")
FPS = 10


def write_random_models(directory: Path, face_models: Path) -> Path:
    torch.manual_seed(0)
    video, audio = build_video_model().eval(), build_audio_model().eval()
    torch.save({"epoch": 7, "model_state_dict": video.state_dict()}, directory / "epoch_007.pt")
    torch.save({"epoch": 12, "model_state_dict": audio.state_dict()}, directory / "best_audio_xception.pth")
    for name in FACE_FILES:
        if not (face_models / name).is_file():
            raise SystemExit(f"res10 face-detector file {face_models / name} not found (use --face-models DIR)")
        shutil.copy(face_models / name, directory / name)
    return directory


def write_clips(folder: Path, count: int, seconds: float) -> list[Path]:
    frames = int(seconds * FPS)
    return [write_clip(folder / f"clip_{i:03d}.mp4", demo_frames(frames, fake=i % 2 == 1, size=(480, 640), seed=i),
                       fps=FPS, audio=demo_voice(seconds, fake=i % 2 == 1, seed=i)) for i in range(count)]


def rates(start: float, arrivals: list[float]) -> dict:
    wall = arrivals[-1] - start
    steady = (len(arrivals) - 1) / (arrivals[-1] - arrivals[0]) * 60 if len(arrivals) > 1 else None
    return {"wall_s": round(wall, 2), "videos_per_min_wall": round(len(arrivals) / wall * 60, 2),
            "videos_per_min_steady": round(steady, 2) if steady else None,
            "first_row_s": round(arrivals[0] - start, 2)}


def bench_local(clips: list[Path], models: Path, settings: AnalysisSettings) -> dict:
    start = time.perf_counter()
    detector = Detector.load(models, device="cpu")
    arrivals = []
    for clip in clips:
        detector.analyze(clip, settings)
        arrivals.append(time.perf_counter())
    return {"mode": "local scan (1 process, all cores)", "workers": None, **rates(start, arrivals)}


def bench_ray(clips: list[Path], models: Path, settings: AnalysisSettings, workers: int, out: Path) -> dict:
    arrivals = []
    start = time.perf_counter()
    summary = scan_ray([str(c) for c in clips], out, settings, workers=workers, models_dir=str(models),
                       on_row=lambda row: arrivals.append(time.perf_counter()))
    assert summary.analysed == len(clips), summary
    return {"mode": f"scan --ray, {workers} worker(s) x 1 CPU", "workers": workers, **rates(start, arrivals)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--clips", type=int, default=8)
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--face-models", type=Path, default=ROOT.parent / "shared" / "models")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)

    import ray

    settings = AnalysisSettings()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-ray-scan-") as tmp:
        tmp = Path(tmp)
        (tmp / "models").mkdir()
        models = write_random_models(tmp / "models", args.face_models)
        clips = write_clips(tmp / "clips", args.clips, args.seconds)
        results = [bench_local(clips, models, settings)]
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, _node_ip_address="127.0.0.1",
                 _temp_dir=str(tmp / "ray"), logging_level="WARNING")
        try:
            for workers in args.workers:
                results.append(bench_ray(clips, models, settings, workers, tmp / f"ray_{workers}.csv"))
        finally:
            ray.shutdown()
    result = {
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "python": platform.python_version(), "torch": torch.__version__, "ray": ray.__version__,
                    "load_average_before": load_before, "load_average_after": os.getloadavg()},
        "clips": {"count": args.clips, "seconds": args.seconds, "size": "640x480", "fps": FPS},
        "command": "python benchmarks/bench_ray_scan.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "results": results,
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{args.clips} clips of {args.seconds:g} s; load average {load_before} -> {os.getloadavg()}")
        for r in results:
            print(f"{r['mode']:<40} wall {r['wall_s']:>7.1f} s  {r['videos_per_min_wall']:>6.1f} videos/min "
                  f"(steady {r['videos_per_min_steady']}, first row after {r['first_row_s']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
