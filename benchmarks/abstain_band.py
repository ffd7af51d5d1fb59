#!/usr/bin/env python
"""Measure the confidence a detector that knows nothing reaches: the default UNCERTAIN band.

    python benchmarks/abstain_band.py VIDEO_OR_FOLDER... [--seeds 3] [--max-samples 20] [--face-models DIR]

For each seed it writes random-initialised video and audio networks in the original layouts (BatchNorm
statistics randomised as after training), analyses every video with abstention off, and records the verdict's
confidence. A network with random weights carries no evidence about the video, so any confidence it reaches is
noise: a default `abstain_below` should sit above the confidences it produces. Prints each run, the quantiles
per seed and over all runs, and the smallest 0.05 step above the largest (the proposed band).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

from deepfake_core.process import configure_process  # noqa: E402

configure_process()  # first: the OpenMP wait policy before torch loads (process.py)
from deepfake_core import AnalysisSettings, Detector  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from deepfake_core.media.files import iter_media  # noqa: E402
from deepfake_core.models.networks import build_audio_model, build_video_model  # noqa: E402
from deepfake_core.models.registry import FACE_CAFFEMODELS, FACE_PROTOTXT  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def random_models(directory: Path, face_models: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    video, audio = build_video_model().eval(), build_audio_model().eval()
    for m in [*video.modules(), *audio.modules()]:
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    torch.save({"model_state_dict": video.state_dict()}, directory / "epoch_007.pt")
    torch.save({"model_state_dict": audio.state_dict()}, directory / "best_audio_xception.pth")
    for name in (FACE_PROTOTXT, FACE_CAFFEMODELS[0]):
        shutil.copy(face_models / name, directory / name)
    return directory


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("paths", nargs="+")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--max-samples", type=int, default=20)
    p.add_argument("--face-models", type=Path, default=ROOT.parent / "shared" / "models")
    args = p.parse_args(argv)
    videos = list(iter_media(args.paths))
    settings = AnalysisSettings(abstain_below=None, max_samples=args.max_samples)
    rows = []
    for seed in range(args.seeds):
        with tempfile.TemporaryDirectory() as tmp:
            detector = Detector.load(random_models(Path(tmp), args.face_models, seed), device="cpu")
            for video in videos:
                report = detector.analyze(video, settings)
                if report.confidence is not None:
                    rows.append({"seed": seed, "file": video.name, "confidence": round(report.confidence, 4)})
                    print(json.dumps(rows[-1]), file=sys.stderr)
    conf = np.array([r["confidence"] for r in rows])
    summary = {
        "videos": len(videos), "seeds": args.seeds, "judged": len(conf),
        "per_seed_max": {s: float(max(r["confidence"] for r in rows if r["seed"] == s)) for s in range(args.seeds)},
        "quantiles": {q: round(float(np.quantile(conf, q)), 4) for q in (0.5, 0.9, 0.99, 1.0)},
        "proposed_band": round(float(np.ceil(conf.max() / 0.05) * 0.05), 2),
    }
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
