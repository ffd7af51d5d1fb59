"""`deepfake-detect scan`: many videos and audio files (folders are walked) into a CSV or JSONL file, here or on
a Ray cluster with --ray (scan/ray_scan.py). The results file is the checkpoint (scan/results.py): a re-run with the
same --out skips the files already in it, --restart starts over."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..analysis.load import load_detector
from ..errors import InputError
from ..media.files import check_inputs, is_audio_file, iter_media
from ..scan.ray_scan import MAX_ATTEMPTS, RAY_HINT  # imports no Ray
from ..scan.results import ResultsFile, ScanSummary, scan_record
from ..settings import AnalysisSettings
from .common import EXIT_OK, add_analysis_options, detector_options, resolved_settings, settings_from_args
from .options import given_values


def register(sub) -> None:
    p = sub.add_parser("scan", help="analyse many videos and audio files (folders are walked) into a CSV or JSONL file")
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="video or audio files, or folders (names starting with '-' after --: "
                        "scan --out r.csv -- -a.mp4)")
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
    settings = settings_from_args(args)  # a bad option is named before anything loads
    check_inputs(args.paths)
    progress = _progress(args.quiet)
    summary = scan_on_ray(args, progress) if args.ray is not None else scan_here(args, settings, progress)
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


def scan_on_ray(args: argparse.Namespace, progress) -> ScanSummary:
    """The scan on Ray (scan/ray_scan.py): the inputs, the results file and the model files checked here, in that
    order, before Ray starts."""
    from ..models.model_files import judging_line
    from ..scan.ray_scan import check_models, check_ray_options, import_ray, list_inputs, run_scan

    check_ray_options(args.ray_workers, args.ray_gpus_per_worker, args.ray_cpus_per_worker, args.ray_max_attempts)
    import_ray()
    inputs = list_inputs(args.paths)
    if not inputs:
        raise InputError(f"no video files found in {', '.join(args.paths)}")
    options = detector_options(args)
    with ResultsFile(Path(args.out), restart=args.restart) as results:
        files = check_models(options) if len(results.done) < len(inputs) else None
        if files is not None and files.video_choice == "builtin" and not options.video_model:
            print(f"note: {judging_line(options.models_dir)}", file=sys.stderr)  # serve's and api's line
        return run_scan(inputs, results, given_values(args, AnalysisSettings), options,
                        use_calibration=not args.no_calibration, address=args.ray, workers=args.ray_workers,
                        gpus_per_worker=args.ray_gpus_per_worker, cpus_per_worker=args.ray_cpus_per_worker,
                        max_attempts=args.ray_max_attempts, on_row=lambda row: progress(row["path"], row))


def scan_here(args: argparse.Namespace, settings, progress) -> ScanSummary:
    """The local scan: one detector, the files one after the other, each row on disk before the next file."""
    out = Path(args.out)
    videos = list(dict.fromkeys(iter_media(args.paths)))  # a file named twice is analysed once
    if not videos:
        raise InputError(f"no video files found in {', '.join(args.paths)}")
    with ResultsFile(out, restart=args.restart) as results:  # checked before the models load
        todo = [path for path in videos if str(path) not in results.done]
        skipped, errors = len(videos) - len(todo), 0
        if todo:
            detector = load_detector(detector_options(args),
                                     voice_only=settings.audio_only or all(is_audio_file(v) for v in todo))
            settings, notes = resolved_settings(args, detector)
            from ..analysis.report import FIRST_NOTES

            for note in detector.load_notes:  # who judges, when it is not the original model, before any row
                if note.startswith(FIRST_NOTES):
                    print(f"note: {note}", file=sys.stderr)
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
