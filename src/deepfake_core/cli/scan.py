"""`deepfake-detect scan`: many videos and audio files (folders are walked) into a CSV or JSONL file, here or on
a Ray cluster with --ray (ray_scan.py). The results file is the checkpoint (scan_results.py): a re-run with the
same --out skips the files already in it, --restart starts over."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import InputError
from ..media_files import check_inputs, is_audio_file, iter_videos
from ..scan_results import ResultsFile, ScanSummary, scan_record
from .common import EXIT_OK, add_analysis_options, calibrated_settings, load_detector, settings_from_args

MAX_ATTEMPTS = 3  # as ray_scan.MAX_ATTEMPTS (not imported: --help must not import the Ray half)
RAY_HINT = "pip install 'deepfake-detector[ray]'"
DETECTOR_OPTIONS = ("models_dir", "device", "precision", "video_model", "audio_model", "runtime", "compile",
                    "no_calibration", "audio_temperature", "video_temperature", "threshold", "fusion")


def register(sub) -> None:
    p = sub.add_parser("scan", help="analyse many videos and audio files (folders are walked) into a CSV or JSONL file")
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="video or audio files, or folders (names starting with '-' after --: scan --out r.csv -- -a.mp4)")
    p.add_argument("--out", required=True, metavar="FILE",
                   help="results.csv or results.jsonl; a re-run with the same file skips the files already in it")
    p.add_argument("--restart", action="store_true", help="empty --out first and analyse every file again")
    p.add_argument("--quiet", "-q", action="store_true", help="no per-file lines on stderr")
    add_analysis_options(p)
    add_ray_options(p)
    p.set_defaults(func=cmd_scan)


def add_ray_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("Ray cluster (needs the ray extra: " + RAY_HINT + ")")
    g.add_argument("--ray", nargs="?", const="auto", default=None, metavar="auto|ADDRESS",
                   help="analyse on Ray: auto (the cluster this machine belongs to, else a local Ray started for "
                        "the scan) or a cluster address (HOST:6379, ray://HOST:10001)")
    g.add_argument("--ray-workers", type=int, default=1, metavar="N",
                   help="analysers in the pool, each loading the models once (default: 1)")
    g.add_argument("--ray-gpus-per-worker", type=float, default=0.0, metavar="X",
                   help="GPUs each analyser reserves; 0 runs on CPUs (default: 0)")
    g.add_argument("--ray-cpus-per-worker", type=float, default=1.0, metavar="X",
                   help="CPUs each analyser reserves, and the threads its networks use (default: 1)")
    g.add_argument("--ray-max-attempts", type=int, default=MAX_ATTEMPTS, metavar="N",
                   help=f"analyses of a file whose worker died (or whose node was lost) before it is recorded as "
                        f"failed (default: {MAX_ATTEMPTS})")


def cmd_scan(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    check_inputs(args.paths)
    progress = _progress(args.quiet)
    if args.ray is not None:
        from ..ray_scan import run_scan

        options = {name: getattr(args, name, None) for name in DETECTOR_OPTIONS}
        summary = run_scan(args.paths, Path(args.out), settings, options, address=args.ray,
                           workers=args.ray_workers, gpus_per_worker=args.ray_gpus_per_worker,
                           cpus_per_worker=args.ray_cpus_per_worker, max_attempts=args.ray_max_attempts,
                           restart=args.restart, on_row=lambda row: progress(row["path"], row))
    else:
        summary = scan_here(args, settings, progress)
    print(f"{summary.total} files, {summary.skipped} already done, {summary.analysed} analysed, "
          f"{summary.errors} errors" + (f", {summary.retried} retried after a worker died" if args.ray else "")
          + f" -> {summary.out}", file=sys.stderr)
    if summary.retried_files:
        print(f"retried after their worker died: {', '.join(summary.retried_files)}", file=sys.stderr)
    return EXIT_OK


def _progress(quiet: bool):
    """show(name, row, todo=None): a stderr line per row written, "[n/todo] name: verdict (error)"."""
    count = [0]

    def show(name: str, row: dict, todo: int | None = None) -> None:
        count[0] += 1
        if not quiet:
            print(f"[{count[0]}{f'/{todo}' if todo else ''}] {name}: {row['verdict']}"
                  + (f" ({row['error']})" if row.get("error") else ""), file=sys.stderr)

    return show


def scan_here(args: argparse.Namespace, settings, progress) -> ScanSummary:
    """The local scan: one detector, the files one after the other, each row on disk before the next file."""
    out = Path(args.out)
    videos = list(dict.fromkeys(iter_videos(args.paths)))  # a file named twice is analysed once
    if not videos:
        raise InputError(f"no video files found in {', '.join(args.paths)}")
    with ResultsFile(out, restart=args.restart) as results:  # checked before the models load
        todo = [path for path in videos if str(path) not in results.done]
        skipped, errors = len(videos) - len(todo), 0
        if todo:
            detector = load_detector(args, voice_only=settings.audio_only or all(is_audio_file(v) for v in todo))
            settings, notes = calibrated_settings(args, settings, detector)
        for path in todo:
            report, error = None, None
            try:
                report = detector.analyze(path, settings, notes=notes)
            except Exception as e:  # one broken file (InputError or worse) must not stop a long scan; it is recorded
                error = e
            errors += error is not None
            row = scan_record(path, report, error, jsonl=results.jsonl)
            results.write(row)
            progress(path.name, row, len(todo))
    return ScanSummary(out, len(videos), skipped, len(todo) - errors, errors)
