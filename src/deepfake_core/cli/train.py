"""`deepfake-detect train`: a video or audio model from a prepared cache. Its options come from the
TrainConfig fields (train/config.py), the recipe's own ones are here."""

from __future__ import annotations

import argparse

from ..errors import InputError
from ..train.config import TrainConfig
from .options import add_options, build


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def register(sub) -> None:
    p = sub.add_parser("train", help="train a video or audio model on a prepared cache")
    add_options(p, TrainConfig)  # modality, and the options declared on TrainConfig's fields (train/config.py)
    p.add_argument("cache", help="folder written by deepfake-detect prepare")
    p.add_argument("--out", required=True, metavar="RUN_DIR",
                   help="run folder: best.safetensors, config.json, metrics.jsonl, summary.json, splits.csv")
    p.add_argument("--arch", default="legacy_xception", help="timm architecture (default: legacy_xception, "
                                                             "in the original layouts)")
    p.add_argument("--input-size", type=int, default=None, metavar="PX",
                   help="video input side (default: the architecture's; 299 for legacy_xception)")
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
    p.set_defaults(func=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    config = build(TrainConfig, args)
    from ..train.loop import train_from_cache, training_spec  # imports torch
    if args.recipe == "pooled":  # the built-in video model's recipe (train/pooled.py)
        from ..train.pooled import PooledRecipe, train_pooled

        if config.modality != "video":
            raise InputError("--recipe pooled trains a video model")
        recipe = PooledRecipe(residual=not args.no_residual, sbi=args.sbi_family, photos=args.photos,
                              c=args.head_c, seed=config.seed)
        summary = train_pooled(args.cache, args.out, recipe, name=config.name)
        print(f"LOFO mean AUC {summary['lofo_mean_generators']:.4f} ({summary['calibration']['aggregation']}) "
              f"-> {summary['path']}")
        return 0
    # SBI v1's real-only recipe (--pseudo-fakes sbi) is research: python -m research.sbi_v1.selfblend
    spec = training_spec(config.modality, args.arch, args.input_size)
    result = train_from_cache(args.cache, args.out, config, spec)
    line = f"best epoch {result.best_epoch} ({config.monitor} {_fmt(result.best_score)}) -> {result.best_path}"
    if result.test_metrics:
        t = result.test_metrics
        line += f"; test split: AUC {_fmt(t.get('auc'))}, per-file AUC {_fmt(t.get('item_auc'))}"
    print(line)
    return 0
