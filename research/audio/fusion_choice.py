"""Choose the default fusion for the built-in models from out-of-fold scores of labelled videos with audio.

Inputs: a CSV of out-of-fold video scores (path,label,family,video_p_fake: each clip scored by a video model
that never trained on it) and a CSV of out-of-fold audio margins for the same clips (path,audio_margin). Each
modality is calibrated on its own out-of-fold scores (a temperature), then every strategy is applied per clip
and judged at the product's threshold (0.5):

    python -m research.audio.fusion_choice VIDEO_OOF.csv AUDIO_OOF.csv --audio-temperature T [--out F.json]
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

from deepfake_core.train.metrics import binary_metrics
from .speech_train import fit_temperature

STRATEGIES = ("video_only", "equal", "noisy_or", "max")


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def fused_p_fake(strategy: str, z_video: np.ndarray, z_audio: np.ndarray) -> np.ndarray:
    """P(fake) per clip from calibrated logits (log-odds of FAKE) of each modality."""
    p_v, p_a = 1 / (1 + np.exp(-z_video)), 1 / (1 + np.exp(-z_audio))
    if strategy == "video_only":
        return p_v
    if strategy == "equal":  # the product's equal fusion: mean of the two modalities' logits
        return 1 / (1 + np.exp(-(0.5 * z_video + 0.5 * z_audio)))
    if strategy == "noisy_or":
        return 1 - (1 - p_v) * (1 - p_a)
    if strategy == "max":
        return np.maximum(p_v, p_a)
    raise ValueError(f"unknown strategy {strategy!r}; choose from {STRATEGIES}")


def compare(rows: list[dict], audio_temperature: float) -> dict:
    """Metrics per strategy on clips that have both scores, the video temperature fitted on the video
    out-of-fold scores, and the choice: best balanced accuracy at 0.5 (ties: higher AUC, then video_only)."""
    y = np.array([r["label"] == "fake" for r in rows], dtype=int)
    z_v_raw = _logit([float(r["video_p_fake"]) for r in rows])
    t_video = fit_temperature(z_v_raw, y)
    z_v = z_v_raw / t_video
    z_a = np.array([float(r["audio_margin"]) for r in rows]) / audio_temperature
    out = {"clips": len(rows), "fake": int(y.sum()), "real": int(len(y) - y.sum()),
           "video_temperature": t_video, "audio_temperature": audio_temperature, "strategies": {}}
    for strategy in STRATEGIES:
        m = binary_metrics(y, fused_p_fake(strategy, z_v, z_a), threshold=0.5)
        out["strategies"][strategy] = {k: m[k] for k in ("roc_auc", "balanced_accuracy", "recall", "eer")} | {
            "false_positive_rate": m["confusion"]["fp"] / max(1, m["n_real"])}
    ranked = sorted(STRATEGIES, key=lambda s: (out["strategies"][s]["balanced_accuracy"] or 0,
                                               out["strategies"][s]["roc_auc"] or 0, s == "video_only"),
                    reverse=True)
    out["choice"] = ranked[0]
    return out


def read_rows(video_csv: Path, audio_csv: Path) -> list[dict]:
    def key(path: str) -> str:
        return Path(path).name

    with open(audio_csv, newline="") as f:
        audio = {key(r["path"]): r["audio_margin"] for r in csv.DictReader(f) if r["audio_margin"] not in ("", "nan")}
    rows = []
    with open(video_csv, newline="") as f:
        for r in csv.DictReader(f):
            if key(r["path"]) in audio and r.get("video_p_fake") not in (None, "", "nan"):
                rows.append({**r, "audio_margin": audio[key(r["path"])]})
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m research.audio.fusion_choice", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("video_oof")
    p.add_argument("audio_oof")
    p.add_argument("--audio-temperature", type=float, required=True)
    p.add_argument("--out")
    args = p.parse_args(argv)
    try:
        rows = read_rows(Path(args.video_oof), Path(args.audio_oof))
    except (OSError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not rows:
        print("error: no clip has both a video and an audio score", file=sys.stderr)
        return 2
    result = compare(rows, args.audio_temperature)
    for name, m in result["strategies"].items():
        print(f"{name:10} AUC {m['roc_auc']:.3f}  balanced acc@0.5 {m['balanced_accuracy']:.3f}  "
              f"recall {m['recall']:.3f}  FPR {m['false_positive_rate']:.3f}")
    print(f"choice: {result['choice']} ({result['clips']} clips, video T {result['video_temperature']:.2f})")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
