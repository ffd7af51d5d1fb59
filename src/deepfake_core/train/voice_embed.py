"""The built-in audio model on a pretrained voice encoder: Resemblyzer's GE2E speaker encoder (frozen) and a
logistic head on its statistics, measured leaving one system family out like `speech_train`.

    python -m deepfake_core.train.voice_embed features CACHE --encoder pretrained.pt --out FEATS.npz
    python -m deepfake_core.train.voice_embed lofo FEATS.npz CACHE --out RUN          # head C, T, threshold
    python -m deepfake_core.train.voice_embed final FEATS.npz CACHE --encoder pretrained.pt --lofo RUN/lofo.json \\
        --out FILE.safetensors
    python -m deepfake_core.train.speech_train dev-eval FILE.safetensors ../shared/dev-eval --lofo RUN/lofo.json

`pretrained.pt` is the file inside the `resemblyzer` wheel (PyPI, Apache-2.0): `pip download --no-deps
resemblyzer`, unzip, `resemblyzer/pretrained.pt`. It is read with weights_only=True; nothing of Resemblyzer's
code runs. The encoder is frozen, so its statistics are computed once per cached crop and each head is cheap.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ..models.checkpoints import save_safetensors
from ..errors import DeepfakeError, InputError
from ..models.networks import VoiceEncoderClassifier, voice_encoder_spec
from ..media.speech import speech_windows
from .speech_data import FAMILIES, Cache, load_cache
from .speech_train import DATA_TERMS, _now, auc, fold_split, summarise_lofo

ENCODER_ORIGIN = ("Resemblyzer 0.1.4 (PyPI `resemblyzer`, Apache-2.0, Resemble AI / Corentin Jemine): GE2E speaker "
                  "encoder `pretrained.pt`, trained by its author for speaker verification on the LibriSpeech "
                  "training set, VoxCeleb1 dev and VoxCeleb2 (3,201 h, 8,371 speakers, per the author in "
                  "CorentinJ/Real-Time-Voice-Cloning issue 1032); frozen here")
# Feature groups of VoiceEncoderClassifier.statistics, in order: (mean, std) of each LSTM layer, the embedding.
GROUPS = {"l1": (0, 512), "l2": (512, 1024), "l3": (1024, 1536), "emb": (1536, 1792)}


def encoder_state(pretrained: str | Path) -> dict[str, torch.Tensor]:
    """Resemblyzer's checkpoint as VoiceEncoderClassifier keys (`lstm.K.*_l0`, `linear.*`); the rest of the
    file (optimizer state, similarity scale) is dropped."""
    ckpt = torch.load(pretrained, map_location="cpu", weights_only=True)
    state = ckpt.get("model_state") if isinstance(ckpt, dict) else None
    if not isinstance(state, dict) or "lstm.weight_ih_l0" not in state:
        raise InputError(f"{pretrained} is not Resemblyzer's pretrained.pt (no model_state with lstm weights)")
    out = {}
    for key, value in state.items():
        if key.startswith("lstm."):
            name, layer = key[len("lstm."):].rsplit("_l", 1)
            out[f"lstm.{layer}.{name}_l0"] = value.float()
        elif key.startswith("linear."):
            out[key] = value.float()
    return out


def load_encoder(pretrained: str | Path) -> VoiceEncoderClassifier:
    model = VoiceEncoderClassifier()
    missing, unexpected = model.load_state_dict(encoder_state(pretrained), strict=False)
    if unexpected or set(missing) != {"feature_mean", "feature_std", "head.weight", "head.bias"}:
        raise InputError(f"{pretrained}: unexpected encoder layout (missing {missing}, unexpected {unexpected})")
    return model.eval()


@torch.inference_mode()
def statistics(model: VoiceEncoderClassifier, x: torch.Tensor, batch: int = 64) -> np.ndarray:
    return np.concatenate([model.statistics(x[i:i + batch]).numpy() for i in range(0, len(x), batch)]) \
        if len(x) else np.zeros((0, model.NUM_FEATURES), np.float32)


def extract(cache: Cache, model: VoiceEncoderClassifier, log=print) -> dict[str, np.ndarray]:
    """Encoder statistics of every cached crop, and of every speech window of every clean train-audio clip
    (validation scores a clip whole, as `analyze` does)."""
    from ..media.speech import features

    t0 = time.time()
    crops = [features(c.astype(np.float32) / 32768.0, "ge2e") for c in cache.crops]
    crop_stats = statistics(model, torch.stack(crops))
    log(f"  {len(crops)} crops in {time.time() - t0:.0f} s")
    win_stats, win_clip = [], []
    for i, clip in enumerate(cache.clips):
        if "clean" not in clip:
            continue
        x, _, _ = speech_windows(cache.clean_samples(i), "ge2e")
        win_stats.append(statistics(model, x))
        win_clip += [i] * len(x)
    log(f"  {len(win_clip)} clean windows in {time.time() - t0:.0f} s")
    return {"crop_stats": crop_stats, "window_stats": np.concatenate(win_stats),
            "window_clip": np.array(win_clip)}


def columns(groups: tuple[str, ...]) -> np.ndarray:
    return np.concatenate([np.arange(*GROUPS[g]) for g in groups])


def fit_head(x: np.ndarray, y: np.ndarray, c: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Standardise and fit a class-balanced L2 logistic regression: (mean, std, weight, bias) in the
    standardised space."""
    from sklearn.linear_model import LogisticRegression

    mean, std = x.mean(0), x.std(0) + 1e-6
    clf = LogisticRegression(C=c, class_weight="balanced", max_iter=2000)
    clf.fit((x - mean) / std, y)
    return mean, std, clf.coef_[0], float(clf.intercept_[0])


def clip_margins(feats: dict, head, clips: list[int], cols: np.ndarray) -> list[float]:
    mean, std, w, b = head
    z = ((feats["window_stats"][:, cols] - mean) / std) @ w + b
    return [float(z[feats["window_clip"] == i].mean()) if (feats["window_clip"] == i).any() else float("nan")
            for i in clips]


def run_lofo(feats: dict, cache: Cache, cs: tuple[float, ...], groups: tuple[str, ...],
             video_speech: bool = True) -> dict:
    """For each family and each head regularisation C: train without the family's pages, score its clips.
    Returns lofo.json's layout (with C in place of the epoch)."""
    cols = columns(groups)
    y_crop = np.array([cache.clips[c]["label"] == "fake" for c in cache.crop_clip], dtype=int)
    result = {"recipe": {"encoder": "ge2e", "groups": list(groups), "cs": list(cs), "video_speech": video_speech},
              "families": {}, "started": _now()}
    for family in FAMILIES:
        val, train = fold_split(cache.clips, family)
        keep = np.zeros(len(cache.clips), bool)
        keep[train] = True
        if not video_speech:
            keep &= np.array([c["corpus"] == "train-audio" for c in cache.clips])
        rows = np.flatnonzero(keep[cache.crop_clip])
        y_val = np.array([cache.clips[i]["label"] == "fake" for i in val], dtype=int)
        margins = {}
        for k, c in enumerate(cs):
            head = fit_head(feats["crop_stats"][rows][:, cols], y_crop[rows], c)
            margins[str(k)] = clip_margins(feats, head, val, cols)
        result["families"][family] = {
            "val_clips": [cache.clips[i]["path"] for i in val], "y": y_val.tolist(),
            "n_fake": int(y_val.sum()), "n_real": int(len(y_val) - y_val.sum()), "margins": margins,
            "auc": {k: auc(y_val, np.array(m)) for k, m in margins.items()}}
    result.update(summarise_lofo(result))
    result["best_c"] = cs[int(result["best_epoch"])]
    return result


def train_final(feats: dict, cache: Cache, pretrained: Path, lofo: dict, out: Path, name: str) -> Path:
    """The encoder with a head fitted on every cached crop at LOFO's chosen C; fp16 safetensors with the
    metadata the product reads and where the encoder comes from."""
    recipe = lofo["recipe"]
    cols = columns(tuple(recipe["groups"]))
    y = np.array([cache.clips[c]["label"] == "fake" for c in cache.crop_clip], dtype=int)
    keep = np.ones(len(cache.clips), bool)
    if not recipe["video_speech"]:
        keep &= np.array([c["corpus"] == "train-audio" for c in cache.clips])
    rows = np.flatnonzero(keep[cache.crop_clip])
    mean, std, w, b = fit_head(feats["crop_stats"][rows][:, cols], y[rows], lofo["best_c"])
    model = load_encoder(pretrained)
    full_mean = np.zeros(model.NUM_FEATURES, np.float32)
    full_std = np.ones(model.NUM_FEATURES, np.float32)
    full_w = np.zeros(model.NUM_FEATURES, np.float32)
    full_mean[cols], full_std[cols], full_w[cols] = mean, std, w
    with torch.no_grad():
        model.feature_mean.copy_(torch.from_numpy(full_mean))
        model.feature_std.copy_(torch.from_numpy(full_std))
        model.head.weight.copy_(torch.from_numpy(full_w)[None])
        model.head.bias.fill_(b)
    meta = {
        "name": name, "front_end": "ge2e", "sample_rate": "16000", "window_s": "2.0",
        "temperature": f"{lofo['temperature']:.4f}", "threshold": f"{lofo['threshold']:.4f}",
        "families": list(FAMILIES), "lofo_mean_auc": f"{lofo['lofo_mean_auc']:.4f}",
        "lofo_per_family": {f: v["auc"][str(lofo["best_epoch"])] for f, v in lofo["families"].items()},
        "recipe": {**recipe, "c": lofo["best_c"]}, "date": _now(), "data_terms": DATA_TERMS,
        "encoder": ENCODER_ORIGIN, "encoder_license": "Apache-2.0",
        "trained_on": "head: train-audio (28 systems, 14 families) + real speech of the train-real/train-fake "
                      "videos; encoder: " + ENCODER_ORIGIN,
    }
    return save_safetensors(model, voice_encoder_spec(), out, meta, dtype=torch.float16)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m deepfake_core.train.voice_embed", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    f = sub.add_parser("features", help="encoder statistics of every cached crop and clean window, once")
    f.add_argument("cache")
    f.add_argument("--encoder", required=True, help="Resemblyzer's pretrained.pt")
    f.add_argument("--out", required=True)
    lo = sub.add_parser("lofo", help="leave one family out over head regularisations C")
    lo.add_argument("features")
    lo.add_argument("cache")
    lo.add_argument("--out", required=True)
    lo.add_argument("--c", type=float, action="append", help="head regularisation (repeatable)")
    lo.add_argument("--groups", default="l1,l2,l3,emb", help=f"feature groups, of {','.join(GROUPS)}")
    lo.add_argument("--no-video-speech", action="store_true")
    fi = sub.add_parser("final", help="fit the head on everything; write the model file")
    fi.add_argument("features")
    fi.add_argument("cache")
    fi.add_argument("--encoder", required=True)
    fi.add_argument("--lofo", required=True)
    fi.add_argument("--out", required=True)
    fi.add_argument("--name", default="voice_encoder_builtin")
    args = p.parse_args(argv)
    try:
        cache = load_cache(args.cache)
        if args.command == "features":
            feats = extract(cache, load_encoder(args.encoder))
            np.savez(args.out, **feats)
            return 0
        feats = dict(np.load(args.features))
        if args.command == "lofo":
            r = run_lofo(feats, cache, tuple(args.c or (0.001, 0.01, 0.1)), tuple(args.groups.split(",")),
                         not args.no_video_speech)
            Path(args.out).mkdir(parents=True, exist_ok=True)
            (Path(args.out) / "lofo.json").write_text(json.dumps(r, indent=1))
            for fam, v in r["families"].items():
                print(f"  {fam}: {v['n_fake']}/{v['n_real']} " + " ".join(
                    f"C={r['recipe']['cs'][int(k)]:g} {a:.3f}" for k, a in v["auc"].items()))
            print("mean AUC by C " + " ".join(f"{r['recipe']['cs'][int(k)]:g}: {a:.3f}"
                                              for k, a in r["mean_auc"].items())
                  + f"; best C {r['best_c']:g}; pooled AUC {r['pooled_auc']:.3f}, EER {r['pooled_eer']:.3f}; "
                  f"T {r['temperature']:.3f}; threshold {r['threshold']:.3f}")
            return 0
        lofo = json.loads(Path(args.lofo).read_text())
        print(train_final(feats, cache, Path(args.encoder), lofo, Path(args.out), args.name))
        return 0
    except (DeepfakeError, OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
