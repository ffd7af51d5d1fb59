"""`deepfake-detect prepare`: face crops and mel windows of a labelled dataset into a training cache
(train/prepare.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..train.config import PrepareOptions
from .common import add_data_options, read_media
from .options import add_options, build


def register(sub) -> None:
    p = sub.add_parser("prepare", help="cut face crops and mel windows of a labelled dataset into a training cache")
    p.add_argument("dataset", help="FakeAVCeleb v1.2 folder, a folder with real/ and fake/, or a CSV manifest "
                                   "(path,label[,audio_label][,identity])")
    p.add_argument("--out", required=True, metavar="CACHE", help="cache folder (resumed when it exists)")
    p.add_argument("--models-dir", metavar="DIR", help="where the res10 face-detector files are (as for analyze)")
    p.add_argument("--workers", type=int, default=0, metavar="N", help="parallel processes (default: 0, this one)")
    add_options(p, PrepareOptions)
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    add_data_options(p)
    p.set_defaults(func=cmd_prepare)


def cmd_prepare(args: argparse.Namespace) -> int:
    items = read_media(args, args.dataset)
    options = build(PrepareOptions, args)
    from ..train.prepare import prepare  # after the labels and options are read: it imports torch

    summary = prepare(items, args.out, options, args.models_dir, args.workers, source=str(args.dataset),
                      progress=not args.quiet)
    for path, error in summary.errors[:20]:
        print(f"  error: {path}: {error}", file=sys.stderr)
    if len(summary.errors) > 20:
        print(f"  ... {len(summary.errors) - 20} more errors in {Path(args.out) / 'items.csv'}", file=sys.stderr)
    print(summary.line())
    return 0
