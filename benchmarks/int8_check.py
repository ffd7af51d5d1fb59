#!/usr/bin/env python
"""int8 for the built-in video model (issue 17, item 2): quantise it with NNCF on crops from the training data,
then measure, once, whether int8 keeps its dev-eval results.

    python benchmarks/int8_check.py --train ../shared/train-fake/videos ../shared/train-real/clips \
        --dev-eval ../shared/dev-eval/videos --models-dir ../shared/models --work /tmp/int8 [--out int8.xml] [--json]

1. Calibration crops: a few hundred faces cut from the training clips by the product's own face detector and
   crop function (2 evenly spaced frames per clip, the first face of each), resized to the model's input as
   `models.face_tensor` does; cached as uint8 in --work.
2. NNCF post-training quantisation (default settings: the performance preset, every calibration crop) of the
   OpenVINO model that `--runtime openvino` runs (BatchNorm folded), written to --out when given.
3. The ship rule, written before measuring (issue 17): keep int8 only if, on dev-eval's videos, the video-level
   ROC-AUC changes by <= 0.005 and every video's P(fake) by <= 0.02 against the fp32 model (PyTorch, and the
   bf16 OpenVINO model the runtime would otherwise run). Each video is analysed once by the product
   (`Detector.analyze`, default settings, video only); every batch of face inputs goes through the fp32, bf16 and
   int8 networks, and each variant's video score is the product's aggregation of its faces (stray faces out).
4. The speed of the network alone: images/s of int8 vs bf16 OpenVINO at batch 16 and 64, interleaved rounds.

Needs nncf and scikit-learn (pip install nncf scikit-learn) besides the `openvino` extra.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from deepfake_core import Detector  # first: it sets the thread policy before torch loads

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from deepfake_core.models.checkpoints import load_model  # noqa: E402
from deepfake_core.faces.detect import crop_face, load_face_detector  # noqa: E402
from deepfake_core.analysis.fusion import video_p_fake  # noqa: E402
from deepfake_core.models.networks import face_tensor  # noqa: E402
from deepfake_core.models.registry import builtin_video_file  # noqa: E402
from deepfake_core.media.video import probe, read_frames, sample_indices  # noqa: E402

VIDEO_SUFFIXES = {".mp4", ".mpg", ".mov", ".avi", ".webm", ".mkv"}
FRAMES_PER_CLIP = 2
MAX_AUC_CHANGE = 0.005
MAX_SCORE_CHANGE = 0.02


def calibration_crops(folders: list[Path], models_dir: Path, cache: Path, limit: int) -> np.ndarray:
    """(N, 224, 224, 3) uint8 RGB face crops at the model's input size, from the training clips (cached)."""
    if cache.is_file():
        return np.load(cache)
    spec = load_model(builtin_video_file(), "video").spec
    faces, _ = load_face_detector(models_dir, [])
    crops = []
    files = sorted(p for f in folders for p in f.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES)
    for path in files:
        try:
            info = probe(path)
            indices = sample_indices(info.frame_count, max(1, info.frame_count // FRAMES_PER_CLIP), FRAMES_PER_CLIP)
            for frame in read_frames(path, indices):
                boxes = [b for b in faces.detect(frame.image) if b.confidence is None or b.confidence > 0.3]
                if boxes:
                    crop = cv2.cvtColor(crop_face(frame.image, boxes[0]), cv2.COLOR_BGR2RGB)
                    crops.append(np.asarray(Image.fromarray(crop).resize((spec.input_size,) * 2, Image.BILINEAR)))
        except Exception as e:  # an unreadable clip is left out of the calibration set
            print(f"  {path.name}: {e}", file=sys.stderr)
    rng = np.random.default_rng(0)
    chosen = rng.permutation(len(crops))[:limit]
    out = np.stack([crops[i] for i in sorted(chosen)])
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.save(cache, out)
    return out


def to_input(crops_rgb: np.ndarray, spec) -> torch.Tensor:
    return torch.stack([face_tensor(c, spec) for c in crops_rgb])


def quantise(loaded, crops_rgb: np.ndarray):
    import nncf
    from deepfake_core.models.ov_runtime import convert

    model = convert(loaded.module, loaded.spec.input_size)
    data = [to_input(crops_rgb[i:i + 1], loaded.spec).numpy() for i in range(len(crops_rgb))]
    return nncf.quantize(model, nncf.Dataset(data), subset_size=len(data))


class Recorder:
    """Stands in for the detector's video runner: returns fp32 logits, records every variant's."""

    def __init__(self, runners: dict):
        self.runners = runners
        self.logits = {name: [] for name in runners}

    def __call__(self, x, pad_to: int = 0):
        out = {name: runner(x, pad_to) for name, runner in self.runners.items()}
        for name, z in out.items():
            self.logits[name].append(z)
        return out["fp32"]


def auc(y: np.ndarray, p: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, p))


def throughput(runners: dict, size: int, batches=(16, 64), rounds: int = 7) -> dict:
    x = {b: torch.randn(b, 3, size, size) for b in batches}
    times = {(n, b): [] for n in runners for b in batches}
    for n in runners:
        for b in batches:
            runners[n](x[b])  # warm
    for _ in range(rounds):
        for b in batches:
            for n, runner in runners.items():
                t = time.perf_counter()
                runner(x[b])
                times[(n, b)].append(time.perf_counter() - t)
    rate = {f"{n}@{b}": round(b / statistics.median(ts), 1) for (n, b), ts in times.items()}
    ratio = {f"int8/bf16@{b}": round(statistics.median(times[("bf16", b)]) / statistics.median(times[("int8", b)]), 3)
             for b in batches}
    return {"images_per_s": rate, "ratio": ratio}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train", nargs="+", type=Path, required=True)
    p.add_argument("--dev-eval", type=Path, required=True, help="dev-eval's videos folder (fake/ and real/)")
    p.add_argument("--models-dir", type=Path, required=True)
    p.add_argument("--work", type=Path, required=True, help="cache folder for the calibration crops")
    p.add_argument("--crops", type=int, default=300)
    p.add_argument("--out", type=Path, help="write the int8 OpenVINO model here (.xml)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    import openvino as ov
    from deepfake_core.models.ov_runtime import OpenVinoRunner, convert
    from deepfake_core.models.runtime import TorchRunner

    loaded = load_model(builtin_video_file(), "video")
    crops = calibration_crops(args.train, args.models_dir, args.work / f"calibration_{args.crops}.npy", args.crops)
    print(f"calibration crops: {len(crops)}", file=sys.stderr)
    started = time.perf_counter()
    int8 = quantise(loaded, crops)
    quantise_s = time.perf_counter() - started
    if args.out:
        ov.save_model(int8, args.out, compress_to_fp16=False)
    runners = {"fp32": TorchRunner(loaded.module, torch.device("cpu"), "fp32"),
               "bf16": OpenVinoRunner(convert(loaded.module, loaded.spec.input_size), "bf16"),
               "int8": OpenVinoRunner(int8, "bf16")}  # bf16 hint: the layers left in float run as bf16 does

    detector = Detector.load(args.models_dir, device="cpu", precision="fp32", video_model="builtin",
                             audio_model="none", runtime="torch")
    settings = detector.default_settings()
    videos = sorted(p for p in args.dev_eval.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES)
    rows = []
    for path in videos:
        rec = Recorder(runners)
        detector.runners["video"] = rec
        report = detector.analyze(path, settings)
        if not report.timeline:
            rows.append({"video": path.name, "label": path.parent.name, "faces": 0})
            continue
        counted = np.array([not r.stray for r in report.timeline])
        row = {"video": path.name, "label": path.parent.name, "faces": len(report.timeline),
               "product_p_fake": 1.0 - report.fused_real_prob}
        for name, zs in rec.logits.items():
            z = np.concatenate(zs)[:len(counted)]
            p_fake = 1.0 / (1.0 + np.exp(-(z[:, 0] - z[:, 1])))
            row[name] = video_p_fake(p_fake[counted], detector.video_aggregation)
            row[f"{name}_face_max_diff"] = None
            if name != "fp32":
                z32 = np.concatenate(rec.logits["fp32"])[:len(counted)]
                p32 = 1.0 / (1.0 + np.exp(-(z32[:, 0] - z32[:, 1])))
                row[f"{name}_face_max_diff"] = float(np.abs(p_fake - p32).max())
        rows.append(row)
        print(f"  {path.parent.name}/{path.name}: faces {row['faces']}, fp32 {row['fp32']:.4f}, bf16 {row['bf16']:.4f},"
              f" int8 {row['int8']:.4f}", file=sys.stderr)
    judged = [r for r in rows if r.get("faces")]
    y = np.array([r["label"] == "fake" for r in judged])
    result = {"calibration_crops": len(crops), "quantise_s": round(quantise_s, 1), "videos": len(videos),
              "videos_judged": len(judged),
              "auc": {n: round(auc(y, np.array([r[n] for r in judged])), 4) for n in runners}}
    for n in ("bf16", "int8"):
        result[f"{n}_vs_fp32"] = {
            "auc_change": round(result["auc"][n] - result["auc"]["fp32"], 4),
            "max_video_score_change": round(max(abs(r[n] - r["fp32"]) for r in judged), 4),
            "max_face_p_change": round(max(r[f"{n}_face_max_diff"] for r in judged), 4)}
    result["int8_vs_bf16"] = {
        "auc_change": round(result["auc"]["int8"] - result["auc"]["bf16"], 4),
        "max_video_score_change": round(max(abs(r["int8"] - r["bf16"]) for r in judged), 4)}
    result["keep_int8"] = bool(abs(result["int8_vs_fp32"]["auc_change"]) <= MAX_AUC_CHANGE
                               and result["int8_vs_fp32"]["max_video_score_change"] <= MAX_SCORE_CHANGE
                               and abs(result["int8_vs_bf16"]["auc_change"]) <= MAX_AUC_CHANGE
                               and result["int8_vs_bf16"]["max_video_score_change"] <= MAX_SCORE_CHANGE)
    result["product_matches_fp32"] = round(max(abs(r["product_p_fake"] - r["fp32"]) for r in judged), 6)
    result["speed"] = throughput({"bf16": runners["bf16"], "int8": runners["int8"]}, loaded.spec.input_size)
    result["rows"] = rows
    print(json.dumps(result, indent=None if args.json else 2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
