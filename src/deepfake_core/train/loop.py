"""The training loop: any `ModelSpec`, any datasets of (input, class index); AdamW, cosine or plateau
schedule, early stopping on validation AUC, bf16 autocast and channels_last on a GPU.

    model = build_model(spec)                                    # or any nn.Module in spec's layout
    result = train(model, spec, train_set, val_set, TrainConfig(modality="video"), "runs/x")
    loaded = checkpoints.load_model(result.best_path)            # what inference will load

The run folder gets `best.safetensors` (the loader reads its architecture from the metadata),
`config.json` (the resolved configuration), `metrics.jsonl` (one line per epoch) and `summary.json`.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..models.checkpoints import load_model, normalise_keys, read_state_dict, save_safetensors
from ..errors import CheckpointError, SettingsError
from ..models.networks import FAKE, ORIGINAL_AUDIO, ORIGINAL_VIDEO, ModelSpec
from ..models.runtime import autocast, pick_device
from ..settings import check_choice
from ..version import __version__
from .config import TrainConfig
from .metrics import binary_metrics, group_mean

BEST_FILE = "best.safetensors"


@dataclass
class TrainResult:
    out_dir: Path
    best_path: Path
    best_epoch: int
    best_score: float | None
    history: list[dict] = field(default_factory=list)
    test_metrics: dict | None = None
    stopped_early: bool = False


# -- specs and initialisation ----------------------------------------------------------------------------
def training_spec(modality: str, architecture: str = "legacy_xception", input_size: int | None = None) -> ModelSpec:
    """The spec to train: the original layouts for legacy_xception (video input size may be changed, e.g.
    small for a quick run); for another timm architecture its own input size, mean and std."""
    check_choice("modality", modality, ("video", "audio"))
    base = ORIGINAL_VIDEO if modality == "video" else ORIGINAL_AUDIO
    if architecture in ("legacy_xception", "xception"):
        spec = base
    else:
        import timm

        if not timm.is_model(architecture):
            import difflib

            near = difflib.get_close_matches(architecture, timm.list_models(), n=3)
            raise SettingsError(f"unknown timm architecture {architecture!r}"
                                + (f"; did you mean {', '.join(near)}?" if near else ""))
        from ..models.networks import KNOWN_ARCHITECTURES

        if architecture not in KNOWN_ARCHITECTURES:  # the detector would refuse to load what this trains
            raise SettingsError(f"--arch {architecture}: the detector loads only {', '.join(KNOWN_ARCHITECTURES)}; "
                                f"add the name to networks.KNOWN_ARCHITECTURES to train and ship it")
        cfg = timm.get_pretrained_cfg(architecture)
        cfg = cfg.to_dict() if cfg is not None else {}
        mean = tuple(cfg.get("mean", (0.485, 0.456, 0.406))) if modality == "video" else base.mean
        std = tuple(cfg.get("std", (0.229, 0.224, 0.225))) if modality == "video" else base.std
        size = int(cfg.get("input_size", (3, 224, 224))[-1]) if modality == "video" else base.input_size
        spec = ModelSpec(architecture, modality, base.head, size, mean, std)
    if input_size is not None:
        if modality == "audio" and input_size != base.input_size:
            raise SettingsError(f"audio models take {base.input_size} px mel images; got --input-size {input_size}")
        if input_size < 32:
            raise SettingsError(f"input size must be >= 32 px; got {input_size}")
        spec = dataclasses.replace(spec, input_size=int(input_size))
    return spec


def load_init_weights(model: nn.Module, spec: ModelSpec, path: str | Path) -> dict:
    """Start the backbone from a local ImageNet state dict (timm's layout, e.g. timm's legacy_xception
    file): every backbone tensor must be in the file with its shape; the file's classifier is dropped and
    the model's head keeps its fresh initialisation. Raises CheckpointError naming what does not fit."""
    path = Path(path)
    state = normalise_keys(read_state_dict(path), spec)
    target = model.state_dict()
    if spec.head == "mlp-512-256":
        head_prefixes = ("classifier.",)
        state = {k if k.startswith("backbone.") else "backbone." + k: v for k, v in state.items()}
        source_head = getattr(model.backbone, "pretrained_cfg", {}).get("classifier", "fc")
        state = {k: v for k, v in state.items() if not k.startswith(f"backbone.{source_head}.")}
    else:
        source_head = getattr(model, "pretrained_cfg", {}).get("classifier", "fc")
        head_prefixes = (f"{source_head}.",)
        state = {k: v for k, v in state.items() if not k.startswith(head_prefixes)}
    body = [k for k in target if not k.startswith(head_prefixes)]
    missing = [k for k in body if k not in state]
    unexpected = [k for k in state if k not in target]
    mismatched = [k for k in body if k in state and tuple(state[k].shape) != tuple(target[k].shape)]
    if missing or unexpected or mismatched:
        raise CheckpointError(
            f"{path.name} does not fit the {spec.architecture} backbone: {len(missing)} missing "
            f"(first: {missing[:5]}), {len(unexpected)} unexpected (first: {unexpected[:5]}), "
            f"{len(mismatched)} with other shapes (first: {mismatched[:5]})")
    model.load_state_dict({**target, **state}, strict=True)
    return {"file": str(path), "tensors": len(state)}


# -- the loop --------------------------------------------------------------------------------------------
def _precision(config: TrainConfig, device: torch.device) -> str:
    if config.precision != "auto":
        return config.precision
    return "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"


def _class_weights(labels: list[str] | None, class_names: tuple[str, ...]) -> torch.Tensor | None:
    if not labels:
        return None
    counts = np.array([labels.count(c) for c in class_names], dtype=np.float64)
    if (counts == 0).any():
        return None
    return torch.tensor(counts.sum() / (len(counts) * counts), dtype=torch.float32)


def predict(model: nn.Module, loader: DataLoader, device: torch.device, precision: str,
            channels_last: bool, max_batches: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(logits (N, C) float32, labels (N,)) of a dataset, in loader order."""
    model.eval()
    logits, labels = [], []
    with torch.inference_mode():
        for b, (x, y) in enumerate(loader):
            if max_batches is not None and b >= max_batches:
                break
            x = x.to(device, non_blocking=True)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast(device, precision):
                out = model(x)
            logits.append(out.float().cpu().numpy())
            labels.append(y.numpy())
    if not logits:
        return np.zeros((0, 2), np.float32), np.zeros(0, np.int64)
    return np.concatenate(logits), np.concatenate(labels)


def score(logits: np.ndarray, labels: np.ndarray, class_names: tuple[str, ...], groups: list[str] | None = None) -> dict:
    """Loss and binary metrics (positive = fake) of logits, per sample and, with groups, per media file."""
    fake = class_names.index("fake") if "fake" in class_names else FAKE
    if not len(labels):
        return {"loss": None, "auc": None, "item_auc": None}
    z = torch.from_numpy(logits)
    loss = float(nn.functional.cross_entropy(z, torch.from_numpy(labels).long()).item())
    p_fake = torch.softmax(z, dim=1)[:, fake].numpy()
    y_fake = (labels == fake).astype(int)
    m = binary_metrics(y_fake, p_fake)
    out = {"loss": loss, "auc": m.get("roc_auc"), "accuracy": m.get("accuracy"),
           "balanced_accuracy": m.get("balanced_accuracy"), "eer": m.get("eer"), "n": m["n"]}
    if groups is not None:
        groups = groups[: len(labels)]
        p_item, names = group_mean(p_fake, groups)
        y_item, _ = group_mean(y_fake, groups)
        mi = binary_metrics((y_item >= 0.5).astype(int), p_item)
        out.update(item_auc=mi.get("roc_auc"), item_accuracy=mi.get("accuracy"), items=len(names))
    return out


def train(model: nn.Module, spec: ModelSpec, train_set: Dataset, val_set: Dataset, config: TrainConfig,
          out_dir: str | Path, test_set: Dataset | None = None, metadata: dict | None = None,
          log: Callable[[str], None] | None = None) -> TrainResult:
    """Train `model` (in `spec`'s layout) and keep the weights with the best validation monitor."""
    log = log or (lambda message: print(message, file=sys.stderr))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if len(train_set) == 0:
        raise SettingsError("the training split is empty: prepare more data or lower --val/--test fractions")
    if len(val_set) == 0:
        raise SettingsError("the validation split is empty: raise --val-fraction or prepare more data")
    torch.manual_seed(config.seed)
    device = pick_device(config.device)
    precision = _precision(config, device)
    channels_last = config.channels_last if config.channels_last is not None else device.type == "cuda"
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    class_names = tuple(spec.class_names)
    weights = _class_weights(getattr(train_set, "labels", None), class_names) if config.balance else None
    criterion = nn.CrossEntropyLoss(weight=weights.to(device) if weights is not None else None,
                                    label_smoothing=config.label_smoothing)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    pin = device.type == "cuda"
    generator = torch.Generator().manual_seed(config.seed)
    train_loader = DataLoader(train_set, batch_size=config.batch_size, shuffle=True, num_workers=config.workers,
                              pin_memory=pin, drop_last=len(train_set) > config.batch_size, generator=generator,
                              persistent_workers=config.workers > 0)
    eval_kwargs = dict(batch_size=config.batch_size, shuffle=False, num_workers=config.workers, pin_memory=pin)
    val_loader = DataLoader(val_set, **eval_kwargs)
    steps = len(train_loader) if config.max_steps_per_epoch is None else min(len(train_loader), config.max_steps_per_epoch)
    if config.schedule == "cosine":
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, steps * config.epochs),
                                                               eta_min=config.lr / 100)
    else:
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=0.5,
                                                               patience=max(1, config.patience // 2))
    resolved = {**config.to_dict(), "device": str(device), "precision": precision, "channels_last": channels_last,
                "spec": spec.to_dict(), "train_samples": len(train_set), "val_samples": len(val_set),
                "test_samples": len(test_set) if test_set is not None else 0, "steps_per_epoch": steps,
                "class_weights": weights.tolist() if weights is not None else None, "version": __version__,
                "torch": torch.__version__, **({"metadata": metadata} if metadata else {})}
    (out / "config.json").write_text(json.dumps(resolved, indent=2, default=str))
    metrics_log = open(out / "metrics.jsonl", "w", encoding="utf-8")
    best_path = out / BEST_FILE
    best_score, best_epoch, since_best, history, stopped = -math.inf, 0, 0, [], False
    val_groups = getattr(val_set, "groups", None)
    warned_fallback = False
    try:
        for epoch in range(1, config.epochs + 1):
            model.train()
            started, seen, loss_sum, correct = time.perf_counter(), 0, 0.0, 0
            for step, (x, y) in enumerate(train_loader):
                if step >= steps:
                    break
                x = x.to(device, non_blocking=True)
                y = y.to(device, non_blocking=True)
                if channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                with autocast(device, precision):
                    logits = model(x)
                loss = criterion(logits.float(), y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if config.grad_clip:
                    nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
                optimizer.step()
                if config.schedule == "cosine":
                    scheduler.step()
                seen += len(y)
                loss_sum += float(loss.item()) * len(y)
                correct += int((logits.argmax(1) == y).sum().item())
            if device.type == "cuda":
                torch.cuda.synchronize()
            train_seconds = time.perf_counter() - started
            val_logits, val_labels = predict(model, val_loader, device, precision, channels_last, config.max_eval_batches)
            val = score(val_logits, val_labels, class_names, val_groups)
            monitor = val.get("auc") if config.monitor == "val_auc" else val.get("item_auc")
            if monitor is None:
                if not warned_fallback:
                    log("note: the validation split holds one class only, so AUC is undefined; "
                        "early stopping and the best checkpoint follow the validation loss instead")
                    warned_fallback = True
                monitor = -val["loss"]
            row = {"epoch": epoch, "train_loss": loss_sum / max(1, seen), "train_accuracy": correct / max(1, seen),
                   "train_samples": seen, "train_seconds": round(train_seconds, 3),
                   "images_per_s": round(seen / train_seconds, 2) if train_seconds > 0 else None,
                   "lr": optimizer.param_groups[0]["lr"], **{f"val_{k}": v for k, v in val.items()},
                   "monitor": monitor}
            improved = monitor > best_score + config.min_delta
            if improved:
                best_score, best_epoch, since_best = monitor, epoch, 0
                save_safetensors(model, spec, best_path, _checkpoint_metadata(config, out, epoch, val, metadata))
            else:
                since_best += 1
            row["best"] = improved
            history.append(row)
            metrics_log.write(json.dumps(row) + "\n")
            metrics_log.flush()
            log(f"epoch {epoch}/{config.epochs}: train loss {row['train_loss']:.4f}, "
                f"{row['images_per_s'] or 0:.1f} img/s; val loss {val['loss']:.4f}, AUC {_fmt(val.get('auc'))}, "
                f"item AUC {_fmt(val.get('item_auc'))}{' (best)' if improved else ''}")
            if config.schedule == "plateau":
                scheduler.step(monitor)
            if since_best >= config.patience:
                stopped = True
                log(f"early stop: no better {config.monitor} for {config.patience} epochs (best: epoch {best_epoch})")
                break
    finally:
        metrics_log.close()
    if not best_path.is_file():
        raise SettingsError("training wrote no checkpoint: the validation loss was never finite (lower --lr?)")
    best = load_model(best_path)  # the same loader inference uses: proves the file loads
    test_metrics = None
    if test_set is not None and len(test_set):
        best.module.to(device)
        if channels_last:
            best.module.to(memory_format=torch.channels_last)
        test_loader = DataLoader(test_set, **eval_kwargs)
        t_logits, t_labels = predict(best.module, test_loader, device, precision, channels_last)
        test_metrics = score(t_logits, t_labels, class_names, getattr(test_set, "groups", None))
    summary = {"best_epoch": best_epoch, "best_monitor": best_score if best_score > -math.inf else None,
               "monitor": config.monitor, "epochs_run": len(history), "stopped_early": stopped,
               "best_file": str(best_path), "sha256": best.sha256, "test": test_metrics,
               "images_per_s": [h["images_per_s"] for h in history], "device": str(device), "precision": precision}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return TrainResult(out, best_path, best_epoch, summary["best_monitor"], history, test_metrics, stopped)


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _checkpoint_metadata(config: TrainConfig, out: Path, epoch: int, val: dict, metadata: dict | None) -> dict:
    meta = {
        "name": config.name or out.name,
        "trained_with": f"deepfake-detect train {config.modality} (deepfake_core {__version__})",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "epoch": str(epoch),
        "val_auc": "" if val.get("auc") is None else f"{val['auc']:.6f}",
        "val_item_auc": "" if val.get("item_auc") is None else f"{val['item_auc']:.6f}",
        "train_config": json.dumps(config.to_dict()),
    }
    meta.update(metadata or {})
    return meta


# -- from a prepared cache -------------------------------------------------------------------------------
def train_from_cache(cache_dir: str | Path, out_dir: str | Path, config: TrainConfig,
                     spec: ModelSpec | None = None, model: nn.Module | None = None,
                     log: Callable[[str], None] | None = None) -> TrainResult:
    """Split a prepared cache (identity-disjoint where identities are known), build the datasets with
    their augmentations, and train. `spec` defaults to the original layout of `config.modality`; `model`
    to `build_model(spec)`, started from `config.init` when given."""
    from ..models.networks import build_model
    from .augment import SpecAugment, VideoAugment
    from .cache import load_cache
    from .datasets import CachedFaces, CachedMels, face_dataset, mel_dataset, split_items

    log = log or (lambda message: print(message, file=sys.stderr))
    cache = load_cache(cache_dir)
    spec = spec or training_spec(config.modality)
    items = cache.usable()
    label = (lambda item: item.video_label) if config.modality == "video" else (lambda item: item.audio_label)
    if config.modality == "video":
        items = [item for item in items if item.faces]
    else:
        items = [item for item in items if item.windows]
    if not items:
        raise SettingsError(f"{cache.root} holds no {'face crops' if config.modality == 'video' else 'audio windows'}"
                            f" to train on (prepare with video/audio on, and check items.csv for errors)")
    splits = split_items(items, config.val_fraction, config.test_fraction, config.seed, label)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "splits.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["key", "path", "identity", "label", "split"])
        writer.writerows([item.key, item.path, item.identity or "", label(item), splits[item.key]] for item in items)
    part = {name: [item for item in items if splits[item.key] == name] for name in ("train", "val", "test")}
    if config.modality == "video":
        make = lambda sub, train: face_dataset(CachedFaces(sub), spec, VideoAugment() if train and config.augment
                                                else None, deterministic=not train, seed=config.seed)
    else:
        make = lambda sub, train: mel_dataset(CachedMels(sub, config.trim_silence), spec,
                                              SpecAugment() if train and config.augment else None,
                                              deterministic=not train, seed=config.seed)
    datasets = {name: make(sub, name == "train") for name, sub in part.items()}
    log(f"{cache.root}: {', '.join(f'{n} {len(part[n])} files / {len(d)} samples' for n, d in datasets.items())}")
    if model is None:
        model = build_model(spec)
        if config.init:
            load_init_weights(model, spec, config.init)
    metadata = {"training_data": str(cache.meta.get("source") or cache.root)}
    return train(model, spec, datasets["train"], datasets["val"], config, out,
                 test_set=datasets["test"] if len(datasets["test"]) else None, metadata=metadata, log=log)
