#!/usr/bin/env python
"""Load-test the HTTP API with plain httpx: N analyses from C concurrent clients, each upload -> poll -> done.

    python benchmarks/api_load.py VIDEO --url http://127.0.0.1:8000 [--key KEY] --requests 20 --clients 4
    python benchmarks/api_load.py VIDEO --serve --workers 2 [--models-dir DIR] --requests 8 --clients 4
    python benchmarks/api_load.py --generate --serve ...     # VIDEO: a generated 4 s clip of a moving face

With --serve it starts `deepfake-detect api` itself on a free 127.0.0.1 port (random-initialised checkpoints
in the original layouts unless --models-dir: speed does not depend on weight values), stops it at the end and
checks that its private upload folder is gone. A client refused with 429 (queue full) waits 0.2 s and retries.

Printed: wall time, analyses per second, end-to-end seconds per analysis (upload until the poll sees it done,
median and p90), the POST round trip (upload + probe; median), 429 refusals, and the server's own mean seconds
per analysis (from /metrics).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
FACE_FILES = ("deploy.prototxt", "res10_300x300_ssd_iter_140000_fp16.caffemodel")


def write_random_models(directory: Path, face_models: Path) -> None:
    """Original-layout checkpoints with random weights, and the res10 files."""
    import shutil

    import torch

    from deepfake_core.models.networks import build_audio_model, build_video_model

    torch.manual_seed(0)
    torch.save({"model_state_dict": build_video_model().state_dict()}, directory / "epoch_007.pt")
    torch.save({"model_state_dict": build_audio_model().state_dict()}, directory / "best_audio_xception.pth")
    for name in FACE_FILES:
        shutil.copy(face_models / name, directory / name)


def generate_clip(path: Path) -> Path:
    """4 s, 25 fps, 800x640: a photo of a face (scikit-image's astronaut) drifting across, a tone."""
    import cv2
    import numpy as np
    import skimage.data

    from deepfake_core.train.demo import write_clip

    face = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)
    frames = []
    for i in range(100):
        frame = np.full((640, 800, 3), (60, 120, 90), np.uint8)
        x = int((800 - 512) * i / 99)
        frame[64:576, x:x + 512] = face
        frames.append(frame)
    t = np.arange(4 * 16_000) / 16_000
    return write_clip(path, frames, fps=25, audio=(0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32),
                      audio_rate=16_000)


def start_server(args, temp: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-m", "deepfake_core", "api", "--port", str(port), "--workers", str(args.workers),
               "--queue-size", str(args.queue_size), "--models-dir", str(args.models_dir), "--device", args.device]
    env = {**os.environ, "TMPDIR": str(temp)}
    env.pop("DEEPFAKE_API_KEYS", None)
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server exited with {process.returncode}: {' '.join(command)}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return process, url
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    process.kill()
    raise SystemExit("the server was not ready within 600 s")


def run_load(url: str, video: Path, requests: int, clients: int, options: dict, key: str | None) -> dict:
    data = video.read_bytes()
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    lock = threading.Lock()
    refused = [0]
    todo = list(range(requests))

    def client() -> list[dict]:
        out = []
        with httpx.Client(base_url=url, headers=headers, timeout=600) as c:
            while True:
                with lock:
                    if not todo:
                        return out
                    n = todo.pop(0)
                start = time.perf_counter()
                while True:
                    r = c.post("/v1/analyses", params=options, files={"file": (f"load{n}.mp4", data, "video/mp4")})
                    if r.status_code != 429:
                        break
                    with lock:
                        refused[0] += 1
                    time.sleep(0.2)
                posted = time.perf_counter()
                if r.status_code != 202:
                    raise SystemExit(f"request {n}: HTTP {r.status_code}: {r.text[:300]}")
                job_id = r.json()["id"]
                while (job := c.get(f"/v1/analyses/{job_id}").json())["status"] in ("queued", "running"):
                    time.sleep(0.1)
                if job["status"] != "done":
                    raise SystemExit(f"request {n}: {job['status']}: {job.get('error')}")
                out.append({"post_s": posted - start, "end_to_end_s": time.perf_counter() - start})

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = [r for batch in pool.map(lambda _: client(), range(clients)) for r in batch]
    wall = time.perf_counter() - started
    metrics = httpx.get(f"{url}/metrics", headers=headers).text
    values = {line.split(" ")[0]: float(line.split(" ")[1]) for line in metrics.splitlines()
              if line.startswith("deepfake_api_analysis_seconds_")}
    e2e = sorted(r["end_to_end_s"] for r in results)
    return {
        "requests": requests, "clients": clients, "options": options, "wall_s": round(wall, 2),
        "analyses_per_s": round(len(results) / wall, 3),
        "end_to_end_median_s": round(statistics.median(e2e), 2),
        "end_to_end_p90_s": round(e2e[min(len(e2e) - 1, int(0.9 * len(e2e)))], 2),
        "post_median_s": round(statistics.median(r["post_s"] for r in results), 3),
        "refused_429": refused[0],
        "server_mean_analysis_s": round(values["deepfake_api_analysis_seconds_sum"]
                                        / max(1.0, values["deepfake_api_analysis_seconds_count"]), 2),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("video", nargs="?", type=Path, help="the video every request uploads")
    p.add_argument("--generate", action="store_true", help="upload a generated 4 s clip (no VIDEO needed)")
    p.add_argument("--url", default="http://127.0.0.1:8000", help="a running API (without --serve)")
    p.add_argument("--key", default=os.environ.get("DEEPFAKE_API_KEY"), help="API key (default: $DEEPFAKE_API_KEY)")
    p.add_argument("--serve", action="store_true", help="start `deepfake-detect api` for the test, then stop it")
    p.add_argument("--workers", type=int, default=2, help="with --serve: analysis workers (default: 2)")
    p.add_argument("--queue-size", type=int, default=8, help="with --serve: queue length (default: 8)")
    p.add_argument("--models-dir", type=Path, help="with --serve: model files (default: random, temporary)")
    p.add_argument("--face-models", type=Path, default=ROOT.parent / "shared" / "models",
                   help="with --serve and no --models-dir: the folder holding the res10 files")
    p.add_argument("--device", default="auto", help="with --serve: auto, cpu, cuda")
    p.add_argument("--requests", type=int, default=20)
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--option", action="append", default=[], metavar="NAME=VALUE",
                   help="an analysis option for every request, e.g. max_samples=10 or explain=true")
    args = p.parse_args(argv)
    options = dict(o.split("=", 1) for o in args.option)
    with tempfile.TemporaryDirectory(prefix="deepfake-load-") as scratch:
        scratch = Path(scratch)
        video = generate_clip(scratch / "face.mp4") if args.generate else args.video
        if video is None:
            p.error("give a VIDEO or --generate")
        process = None
        url = args.url
        if args.serve:
            if args.models_dir is None:
                args.models_dir = scratch / "models"
                args.models_dir.mkdir()
                write_random_models(args.models_dir, args.face_models)
            temp = scratch / "server-tmp"
            temp.mkdir()
            process, url = start_server(args, temp)
        try:
            result = run_load(url, video, args.requests, args.clients, options, args.key)
        finally:
            if process is not None:
                process.send_signal(signal.SIGTERM)
                process.wait(120)
        if process is not None:
            result["workers"] = args.workers
            result["uploads_left_after_stop"] = len(list(temp.iterdir()))
        result.update(video=video.name, video_bytes=video.stat().st_size, machine=platform.machine(),
                      cpus=os.cpu_count(), load_average_at_end=round(os.getloadavg()[0], 2))
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
