"""`deepfake-detect evaluate`: the detector on labelled videos: scores, metrics, curves (train/evaluate.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import add_analysis_options, add_data_options, labelled_run, resolved_settings


def register(sub) -> None:
    p = sub.add_parser("evaluate", help="run the detector on labelled videos: scores, metrics, curves")
    p.add_argument("labels", metavar="LABELS.csv|DIR", help="CSV (path,label; paths relative to it) or a folder "
                                                            "with real/ and fake/")
    p.add_argument("--out", required=True, metavar="EVAL_DIR", help="scores.csv, summary.json, roc/pr/confusion.png")
    p.add_argument("--group-by", action="append", metavar="COLUMN",
                   help="also metrics per value of a manifest column (each group's fakes vs all reals)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    add_data_options(p)
    add_analysis_options(p)
    p.set_defaults(func=cmd_evaluate)


def cmd_evaluate(args: argparse.Namespace) -> int:
    settings, media, detector = labelled_run(args)
    from ..train.evaluate import evaluate, summary_lines  # after the checks above: it imports torch

    settings, notes = resolved_settings(args, detector)
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
