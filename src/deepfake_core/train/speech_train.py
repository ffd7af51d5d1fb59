"""Train the built-in audio model (SpeechCNN on a log filterbank), measure it leaving one system family out,
and decide by a fixed rule whether it ships.

    python -m deepfake_core.train.speech_train cache ../shared/train-audio --video ../shared/train-real/clips \
        --video ../shared/train-fake/videos --out CACHE
    python -m deepfake_core.train.speech_train lofo CACHE --out RUN          # recipe, epochs, T, threshold
    python -m deepfake_core.train.speech_train final CACHE --lofo RUN/lofo.json --out FILE.safetensors
    python -m deepfake_core.train.speech_train dev-eval FILE.safetensors ../shared/dev-eval --lofo RUN/lofo.json

Everything runs on the CPU in minutes (the network has ~48 k parameters). Exit codes: 0 done (`dev-eval`: the
rule says ship), 1 the rule says do not ship, 2 bad input.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..media.audio import read_audio
from ..models.checkpoints import save_safetensors
from ..errors import DeepfakeError
from ..models.networks import FAKE, build_model, speech_spec
from ..media.speech import FRONT_ENDS, features, speech_windows
from .metrics import equal_error_rate
from .speech_data import FAMILIES, REAL, Cache, build_cache, load_cache, train_audio_clips, video_speech_clips

SHIP_MIN_LOFO_AUC = 0.80  # written before measuring (issue 13)
SHIP_MAX_DEV_EER = 0.25  # clip level
DATA_TERMS = "research and non-commercial use only (trained on demo-page speech of their owners)"


@dataclass
class Recipe:
    front_end: str = "logmel"  # speech.FRONT_ENDS
    epochs: int = 12
    checkpoints: tuple[int, ...] = (4, 8, 12)  # epochs at which a LOFO run scores its held-out family
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-2
    per_epoch: int = 1600  # crops drawn per epoch, half real and half fake
    video_speech: bool = True  # real speech from the video corpora in the training set
    seed: int = 0


def ship_decision(lofo_mean_auc: float | None, dev_eer: float | None) -> tuple[bool, str]:
    """The rule written before measuring: ship when LOFO mean AUC >= 0.80 and dev-eval clip EER <= 25 %."""
    if lofo_mean_auc is None or dev_eer is None or math.isnan(lofo_mean_auc) or math.isnan(dev_eer):
        return False, "not measured"
    reasons = []
    if lofo_mean_auc < SHIP_MIN_LOFO_AUC:
        reasons.append(f"LOFO mean AUC {lofo_mean_auc:.3f} < {SHIP_MIN_LOFO_AUC:.2f}")
    if dev_eer > SHIP_MAX_DEV_EER:
        reasons.append(f"dev-eval EER {dev_eer:.1%} > {SHIP_MAX_DEV_EER:.0%}")
    if reasons:
        return False, "do not ship: " + "; ".join(reasons)
    return True, f"ship: LOFO mean AUC {lofo_mean_auc:.3f} >= {SHIP_MIN_LOFO_AUC:.2f} and dev-eval EER " \
                 f"{dev_eer:.1%} <= {SHIP_MAX_DEV_EER:.0%}"


# -- training --------------------------------------------------------------------------------------------
def crop_features(cache: Cache, front_end: str) -> torch.Tensor:
    """(N, 1, bands, frames) float16 features of every cached crop."""
    out = [features(c.astype(np.float32) / 32768.0, front_end) for c in cache.crops]
    return torch.stack(out).half()


def _mask(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """SpecAugment-style: one band block (up to 8) and one time block (up to 20 frames) set to 0, per item."""
    n, _, bands, frames = x.shape
    x = x.clone()
    for i in range(n):
        f0 = int(torch.randint(0, bands - 8, (1,), generator=g))
        x[i, :, f0:f0 + int(torch.randint(0, 9, (1,), generator=g))] = 0
        t0 = int(torch.randint(0, frames - 20, (1,), generator=g))
        x[i, :, :, t0:t0 + int(torch.randint(0, 21, (1,), generator=g))] = 0
    return x


def train_model(x: torch.Tensor, y: np.ndarray, recipe: Recipe, on_checkpoint=None, log=None) -> nn.Module:
    """Train a SpeechCNN on features `x` with labels `y` (1 = fake). Each epoch draws `per_epoch` crops,
    half from each class; AdamW with a one-cycle schedule; label smoothing 0.1; band and time masking.
    `on_checkpoint(epoch, model)` is called (in eval mode) at each of `recipe.checkpoints`."""
    torch.manual_seed(recipe.seed)
    g = torch.Generator().manual_seed(recipe.seed)
    rng = np.random.default_rng(recipe.seed)
    model = build_model(speech_spec(x.shape[2]))
    steps = recipe.epochs * (recipe.per_epoch // recipe.batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=recipe.lr, total_steps=steps, pct_start=0.15)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
    fakes, reals = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    if not len(fakes) or not len(reals):
        raise ValueError(f"training needs both classes; got {len(fakes)} fake and {len(reals)} real crops")
    target = torch.from_numpy(np.where(y == 1, FAKE, 1 - FAKE)).long()
    for epoch in range(1, recipe.epochs + 1):
        model.train()
        half = recipe.per_epoch // 2
        order = np.concatenate([rng.choice(fakes, half), rng.choice(reals, half)])
        rng.shuffle(order)
        total = 0.0
        for s in range(0, len(order) - recipe.batch_size + 1, recipe.batch_size):
            idx = torch.from_numpy(order[s:s + recipe.batch_size])
            xb = _mask(x[idx].float(), g)
            xb = torch.roll(xb, int(torch.randint(0, xb.shape[-1], (1,), generator=g)), dims=-1)
            loss = loss_fn(model(xb), target[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item()
        if log:
            log(f"    epoch {epoch}: loss {total / max(1, len(order) // recipe.batch_size):.4f}")
        if on_checkpoint and epoch in recipe.checkpoints:
            model.eval()
            on_checkpoint(epoch, model)
    model.eval()
    return model


@torch.inference_mode()
def clip_margin(model: nn.Module, samples: np.ndarray, front_end: str) -> float:
    """A clip's score: the mean over its speech windows of logit(fake) - logit(real); NaN without speech."""
    x, _, _ = speech_windows(samples, front_end)
    if not len(x):
        return float("nan")
    logits = model(x)
    return float((logits[:, FAKE] - logits[:, 1 - FAKE]).mean())


def auc(y: np.ndarray, score: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    ok = ~np.isnan(score)
    y, score = np.asarray(y)[ok], np.asarray(score)[ok]
    return float(roc_auc_score(y, score)) if len(np.unique(y)) == 2 else float("nan")


# -- leave one family out --------------------------------------------------------------------------------
def fold_split(clips: list[dict], family: str) -> tuple[list[int], list[int]]:
    """(validation clips, training clips) for holding out `family`, page-disjoint: validation is the family's
    fakes against the real recordings of the pages its fakes come from (LJSpeech reals when its page kept
    none); training leaves out every train-audio clip of those pages, real or fake, so no recording and no
    page speaker is on both sides. Video speech (other corpora) always stays in training."""
    fakes = [i for i, c in enumerate(clips) if c["family"] == family]
    pages = {clips[i]["group"] for i in fakes}
    reals = [i for i, c in enumerate(clips) if c["label"] == REAL and c["corpus"] == "train-audio"
             and c["group"] in pages]
    if not reals:
        reals = [i for i, c in enumerate(clips) if c["label"] == REAL and "LJSpeech" in c["system"]]
    held_pages = pages | {clips[i]["group"] for i in reals}
    held = set(fakes) | set(reals)
    train = [i for i, c in enumerate(clips) if i not in held and c["family"] != family
             and not (c["corpus"] == "train-audio" and c["group"] in held_pages)]
    return sorted(held), train


def _train_rows(cache: Cache, train_clips: list[int], recipe: Recipe) -> np.ndarray:
    keep = np.zeros(len(cache.clips), bool)
    keep[train_clips] = True
    if not recipe.video_speech:
        keep &= np.array([c["corpus"] == "train-audio" for c in cache.clips])
    return np.flatnonzero(keep[cache.crop_clip])


def run_lofo(cache: Cache, recipe: Recipe, out: Path, families: list[str] | None = None) -> dict:
    """Hold out each family in turn; score its clips at each checkpoint epoch. Writes lofo.json (per family
    and per epoch AUC, every held-out clip's margin) and returns it."""
    out.mkdir(parents=True, exist_ok=True)
    x = crop_features(cache, recipe.front_end)
    y_crop = np.array([cache.clips[c]["label"] == "fake" for c in cache.crop_clip], dtype=int)
    result = {"recipe": asdict(recipe), "families": {}, "started": _now()}
    for family in families or list(FAMILIES):
        t0 = time.time()
        val, train = fold_split(cache.clips, family)
        rows = _train_rows(cache, train, recipe)
        y_val = np.array([cache.clips[i]["label"] == "fake" for i in val], dtype=int)
        scores: dict[int, list[float]] = {}

        def checkpoint(epoch, model, val=val):
            scores[epoch] = [clip_margin(model, cache.clean_samples(i), recipe.front_end) for i in val]

        train_model(x[rows], y_crop[rows], recipe, checkpoint)
        entry = {"val_clips": [cache.clips[i]["path"] for i in val], "y": y_val.tolist(),
                 "n_fake": int(y_val.sum()), "n_real": int(len(y_val) - y_val.sum()),
                 "margins": {str(e): s for e, s in scores.items()},
                 "auc": {str(e): auc(y_val, np.array(s)) for e, s in scores.items()},
                 "seconds": round(time.time() - t0, 1)}
        result["families"][family] = entry
        print(f"  {family}: {entry['n_fake']} fakes / {entry['n_real']} reals, AUC "
              + ", ".join(f"e{e} {a:.3f}" for e, a in entry["auc"].items()) + f" ({entry['seconds']} s)",
              flush=True)
        (out / "lofo.json").write_text(json.dumps(result, indent=1))
    result.update(summarise_lofo(result))
    (out / "lofo.json").write_text(json.dumps(result, indent=1))
    return result


def summarise_lofo(result: dict) -> dict:
    """Mean AUC per checkpoint epoch, the best epoch, and the temperature and threshold fitted on the pooled
    held-out margins at that epoch (each held-out clip scored once, by the model that never saw its family)."""
    fams = result["families"]
    epochs = sorted({int(e) for f in fams.values() for e in f["auc"]})
    mean_auc = {str(e): float(np.nanmean([f["auc"][str(e)] for f in fams.values()])) for e in epochs}
    best = max(epochs, key=lambda e: mean_auc[str(e)])
    margins, ys, seen = [], [], set()
    for f in fams.values():
        for path, yv, m in zip(f["val_clips"], f["y"], f["margins"][str(best)]):
            if yv == 1 or path not in seen:  # a real held out in several folds counts once (its first)
                seen.add(path)
                margins.append(m)
                ys.append(yv)
    margins, ys = np.array(margins), np.array(ys)
    ok = ~np.isnan(margins)
    temperature = fit_temperature(margins[ok], ys[ok])
    p_fake = 1 / (1 + np.exp(-margins[ok] / temperature))
    eer, threshold = equal_error_rate(ys[ok], p_fake)
    return {"mean_auc": mean_auc, "best_epoch": best, "lofo_mean_auc": mean_auc[str(best)],
            "pooled_auc": auc(ys[ok], margins[ok]), "pooled_eer": eer, "temperature": temperature,
            "threshold": threshold}


def fit_temperature(margins: np.ndarray, y: np.ndarray) -> float:
    """T minimising the log-loss of sigmoid(margin / T) on labels y (1 = fake), over a grid 0.25..20."""
    grid = np.exp(np.linspace(np.log(0.25), np.log(20), 200))
    best, best_loss = 1.0, float("inf")
    for t in grid:
        p = np.clip(1 / (1 + np.exp(-margins / t)), 1e-7, 1 - 1e-7)
        loss = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
        if loss < best_loss:
            best, best_loss = float(t), loss
    return best


# -- final model and dev-eval ----------------------------------------------------------------------------
def train_final(cache: Cache, recipe: Recipe, lofo: dict, out: Path, name: str) -> Path:
    """Train on every family for LOFO's best epoch count; write fp16 safetensors with the metadata the
    product reads (front end, sample rate, temperature, threshold) and what it was measured at."""
    recipe = Recipe(**{**asdict(recipe), "epochs": lofo["best_epoch"], "checkpoints": ()})
    x = crop_features(cache, recipe.front_end)
    y = np.array([cache.clips[c]["label"] == "fake" for c in cache.crop_clip], dtype=int)
    rows = _train_rows(cache, list(range(len(cache.clips))), recipe)
    model = train_model(x[rows], y[rows], recipe, log=print)
    meta = {
        "name": name, "front_end": recipe.front_end, "sample_rate": "16000", "window_s": "2.0",
        "temperature": f"{lofo['temperature']:.4f}", "threshold": f"{lofo['threshold']:.4f}",
        "families": list(FAMILIES), "lofo_mean_auc": f"{lofo['lofo_mean_auc']:.4f}",
        "lofo_per_family": {f: v["auc"][str(lofo["best_epoch"])] for f, v in lofo["families"].items()},
        "recipe": asdict(recipe), "date": _now(), "data_terms": DATA_TERMS,
        "trained_on": "train-audio (28 systems, 14 families) + real speech of the train-real/train-fake videos",
    }
    return save_safetensors(model, speech_spec(x.shape[2]), out, meta, dtype=torch.float16)


def video_oof(cache: Cache, recipe: Recipe, lofo: dict, videos: Path, folds: int = 3) -> list[dict]:
    """Out-of-fold audio margins of every video under `videos` that has speech, for choosing the fusion.

    Without video speech in the recipe, one model trained on everything scores them all (none of them was
    in its training). With it, the videos are dealt into `folds` groups by source (segments `_s1`, `_s2` of
    one source stay together) and each group is scored by a model trained without it."""
    import re
    import zlib

    recipe = Recipe(**{**asdict(recipe), "epochs": lofo["best_epoch"], "checkpoints": ()})
    files = sorted(p for p in Path(videos).rglob("*") if p.suffix.lower() in (".mp4", ".mov", ".mkv", ".webm"))
    source = {str(p): re.sub(r"_s\d+$", "", p.stem) for p in files}
    fold_of = {k: zlib.crc32(v.encode()) % folds for k, v in source.items()}
    x = crop_features(cache, recipe.front_end)
    y = np.array([cache.clips[c]["label"] == "fake" for c in cache.crop_clip], dtype=int)
    rows = []
    for fold in range(folds if recipe.video_speech else 1):
        held = {k for k, f in fold_of.items() if f == fold} if recipe.video_speech else set(fold_of)
        train = [i for i, c in enumerate(cache.clips) if c["path"] not in held]
        keep = _train_rows(cache, train, recipe)
        model = train_model(x[keep], y[keep], recipe)
        for path in sorted(held):
            samples = read_audio(path)
            margin = clip_margin(model, samples, recipe.front_end) if samples is not None else float("nan")
            rows.append({"path": path, "audio_margin": margin, "fold": fold})
        print(f"  fold {fold}: {len(held)} videos scored", flush=True)
    return rows


def dev_eval(model_path: Path, dev_root: Path) -> dict:
    """Clip-level scores of dev-eval's audio (measurement only): EER, AUC, per source page and generator."""
    from ..models.checkpoints import load_model

    loaded = load_model(model_path, "audio")
    net = loaded.module.float()
    front_end = loaded.metadata.get("front_end", "logmel")
    rows = []
    with open(dev_root / "labels.csv", newline="") as f:
        for row in csv.DictReader(f):
            if row["kind"] != "audio":
                continue
            samples = read_audio(dev_root / row["path"])
            margin = clip_margin(net, samples, front_end) if samples is not None else float("nan")
            rows.append({"path": row["path"], "label": row["label"], "source": row["source_repo"],
                         "generator": row["generator"], "margin": margin})
    y = np.array([r["label"] == "fake" for r in rows], dtype=int)
    m = np.array([r["margin"] for r in rows])
    ok = ~np.isnan(m)
    eer, _ = equal_error_rate(y[ok], m[ok])
    per_source = {}
    for source in sorted({r["source"] for r in rows}):
        idx = np.array([r["source"] == source for r in rows]) & ok
        per_source[source] = {"n_fake": int(y[idx].sum()), "n_real": int((1 - y[idx]).sum()),
                              "auc": auc(y[idx], m[idx]), "eer": equal_error_rate(y[idx], m[idx])[0]}
    return {"eer": eer, "auc": auc(y[ok], m[ok]), "n": int(ok.sum()), "no_speech": int((~ok).sum()),
            "per_source": per_source, "clips": rows}


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m deepfake_core.train.speech_train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("cache", help="decode, trim and degrade the training clips once into a crop cache")
    c.add_argument("train_audio")
    c.add_argument("--video", action="append", default=[], help="a folder of videos whose speech is real")
    c.add_argument("--out", required=True)
    c.add_argument("--views", type=int, default=8)
    c.add_argument("--video-views", type=int, default=3)
    for name in ("lofo", "final"):
        q = sub.add_parser(name)
        q.add_argument("cache")
        q.add_argument("--out", required=True)
        q.add_argument("--front-end", choices=FRONT_ENDS, default="logmel")
        q.add_argument("--epochs", type=int, default=12)
        q.add_argument("--per-epoch", type=int, default=1600)
        q.add_argument("--no-video-speech", action="store_true")
        q.add_argument("--seed", type=int, default=0)
    sub.choices["lofo"].add_argument("--family", action="append", help="only these families (repeatable)")
    sub.choices["final"].add_argument("--lofo", required=True, help="lofo.json of the same recipe")
    sub.choices["final"].add_argument("--name", default="speech_cnn_builtin")
    v = sub.add_parser("video-oof", help="out-of-fold audio margins of labelled videos (to choose the fusion)")
    v.add_argument("cache")
    v.add_argument("videos", help="folder of videos (e.g. ../shared/train-fake/videos)")
    v.add_argument("--lofo", required=True)
    v.add_argument("--out", required=True, help="CSV: path,audio_margin,fold")
    d = sub.add_parser("dev-eval", help="measure a finished model on dev-eval's audio and apply the ship rule")
    d.add_argument("model")
    d.add_argument("dev_eval")
    d.add_argument("--lofo", required=True)
    d.add_argument("--out", help="write the scores here (JSON)")
    args = p.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    try:
        if args.command == "cache":
            clips = train_audio_clips(args.train_audio) + video_speech_clips(args.video)
            print(json.dumps(build_cache(clips, args.out, args.views, args.video_views), indent=1))
            return 0
        if args.command in ("lofo", "final"):
            recipe = Recipe(front_end=args.front_end, epochs=args.epochs,
                            checkpoints=tuple(sorted({e for e in (4, 8, 12, 16, 20) if e <= args.epochs}
                                                     | {args.epochs})),
                            per_epoch=args.per_epoch, video_speech=not args.no_video_speech, seed=args.seed)
            cache = load_cache(args.cache)
            if args.command == "lofo":
                r = run_lofo(cache, recipe, Path(args.out), args.family)
                print(f"LOFO mean AUC by epoch {r['mean_auc']}; best epoch {r['best_epoch']}; T "
                      f"{r['temperature']:.3f}; threshold {r['threshold']:.3f}; pooled EER {r['pooled_eer']:.3f}")
                return 0
            lofo = json.loads(Path(args.lofo).read_text())
            print(train_final(cache, recipe, lofo, Path(args.out), args.name))
            return 0
        if args.command == "video-oof":
            lofo = json.loads(Path(args.lofo).read_text())
            recipe = Recipe(**{k: tuple(v) if k == "checkpoints" else v for k, v in lofo["recipe"].items()})
            rows = video_oof(load_cache(args.cache), recipe, lofo, Path(args.videos))
            with open(args.out, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=["path", "audio_margin", "fold"])
                writer.writeheader()
                writer.writerows(rows)
            print(f"{len(rows)} videos -> {args.out}")
            return 0
        lofo = json.loads(Path(args.lofo).read_text())
        r = dev_eval(Path(args.model), Path(args.dev_eval))
        if args.out:
            Path(args.out).write_text(json.dumps(r, indent=1))
        ship, why = ship_decision(lofo["lofo_mean_auc"], r["eer"])
        print(f"dev-eval audio: EER {r['eer']:.3f}, AUC {r['auc']:.3f} on {r['n']} clips "
              f"({r['no_speech']} without speech)")
        for source, v in r["per_source"].items():
            print(f"  {source}: {v['n_fake']} fake / {v['n_real']} real, AUC {v['auc']:.3f}, EER {v['eer']}")
        print(why)
        return 0 if ship else 1
    except (DeepfakeError, OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
