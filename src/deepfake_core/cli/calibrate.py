"""`deepfake-detect calibrate`: fit the audio temperature (and optionally more) on labelled validation media
(train/calibrate.py), into calibration.json."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import InputError
from .common import add_analysis_options, add_data_options, labelled_run


def register(sub) -> None:
    p = sub.add_parser("calibrate",
                       help="fit the audio temperature (and optionally more) on labelled validation videos")
    p.add_argument("labels", metavar="LABELS.csv|DIR", help="validation media (never the evaluation set)")
    p.add_argument("--out", metavar="FILE", help="where to write it (default: calibration.json in the models folder)")
    p.add_argument("--fit-video-temperature", action="store_true", help="also fit the video temperature")
    p.add_argument("--fit-threshold", choices=["none", "balanced_accuracy", "target_fpr"], default="none",
                   help="also fit the decision threshold (for the --fusion in use)")
    p.add_argument("--target-fpr", type=float, default=None, metavar="X",
                   help="with --fit-threshold target_fpr: at most this share of real files called FAKE")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    add_data_options(p)
    add_analysis_options(p)
    p.set_defaults(func=cmd_calibrate)


def cmd_calibrate(args: argparse.Namespace) -> int:
    settings, media, detector = labelled_run(args)
    from ..train.calibrate import calibrate, default_calibration_path  # after the checks above: it imports torch

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
