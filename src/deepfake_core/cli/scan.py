"""`deepfake-detect scan`: many videos and audio files (folders are walked) into a CSV or JSONL file; on a
Ray cluster with --ray (ray_scan.py)."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

from ..errors import InputError
from ..load import load_detector
from ..ray_scan import add_ray_options, cmd_scan_ray
from .common import EXIT_OK, add_analysis_options, detector_options, resolved_settings, settings_from_args
from .files import SCAN_FIELDS, check_writable, is_audio_file, iter_videos, scan_record


def register(sub) -> None:
    p = sub.add_parser("scan", help="analyse many videos and audio files (folders are walked) into a CSV or JSONL file")
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="video or audio files, or folders (names starting with '-' after --: scan --out r.csv -- -a.mp4)")
    p.add_argument("--out", required=True, metavar="FILE", help="results.csv or results.jsonl")
    p.add_argument("--quiet", "-q", action="store_true", help="no per-file lines on stderr")
    add_analysis_options(p)
    add_ray_options(p)
    p.set_defaults(func=cmd_scan)



def cmd_scan(args: argparse.Namespace) -> int:
    if getattr(args, "ray", None) is not None:
        return cmd_scan_ray(args)
    settings = settings_from_args(args)
    out = Path(args.out)
    if out.suffix not in (".csv", ".jsonl"):
        raise InputError(f"--out must end in .csv or .jsonl; got {out.name}")
    check_writable(out)
    videos = list(iter_videos(args.paths))
    if not videos:
        raise InputError(f"no video files found in {', '.join(args.paths)}")
    detector = load_detector(detector_options(args),
                             voice_only=settings.audio_only or all(is_audio_file(v) for v in videos))
    settings, notes = resolved_settings(args, detector)
    from ..report import FIRST_NOTES

    for note in detector.load_notes:  # who judges, when it is not the original model, before any row
        if note.startswith(FIRST_NOTES):
            print(f"note: {note}", file=sys.stderr)
    errors = 0
    with open(out, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=SCAN_FIELDS) if out.suffix == ".csv" else None
        if writer:
            writer.writeheader()
        for n, path in enumerate(videos, 1):
            report, error = None, None
            try:
                report = detector.analyze(path, settings, notes=notes)
            except Exception as e:  # one broken file (InputError or worse) must not stop a long scan; it is recorded
                error = e
            errors += error is not None
            row = scan_record(path, report, error, jsonl=writer is None)
            if writer:
                writer.writerow(row)
            else:
                f.write(json.dumps(row) + "\n")
            f.flush()
            if not args.quiet:
                print(f"[{n}/{len(videos)}] {path.name}: {row['verdict']}"
                      + (f" ({row['error']})" if error else ""), file=sys.stderr)
    print(f"{len(videos)} files, {len(videos) - errors} analysed, {errors} errors -> {out}", file=sys.stderr)
    return EXIT_OK
