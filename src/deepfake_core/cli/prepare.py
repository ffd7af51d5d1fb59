"""`deepfake-detect prepare`: face crops and mel windows of a labelled dataset into a training cache
(train/prepare.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import add_data_options, read_media


def register(sub) -> None:
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
    add_data_options(p)
    p.set_defaults(func=cmd_prepare)


def cmd_prepare(args: argparse.Namespace) -> int:
    items = read_media(args, args.dataset)
    from ..train.prepare import PrepareOptions, prepare  # after the labels are read: it imports torch

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
