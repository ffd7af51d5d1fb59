"""The `deepfake-detect` command.

Exit codes: 0 done (a NOT_APPLICABLE verdict included); 1 unexpected internal error;
2 bad input or usage; 3 model files missing or unloadable.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

from . import __version__
from .errors import DeepfakeError, InputError, ModelFilesMissing

VIDEO_EXTENSIONS = {".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp", ".ts"}
AUDIO_EXTENSIONS = {".wav", ".flac", ".mp3", ".m4a", ".aac", ".ogg", ".opus", ".oga", ".wma"}  # voice-only reports
EXIT_OK, EXIT_INTERNAL, EXIT_INPUT, EXIT_MODELS = 0, 1, 2, 3

# Modules that add subcommands: each has register(subparsers) -> None, setting `func` on its parsers.
COMMAND_MODULES: list[str] = ["deepfake_core.serve", "deepfake_core.weights_cli", "deepfake_core.train.cli",
                               "deepfake_core.api"]


def add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--models-dir", metavar="DIR",
                   help="folder with the model files (default: $DEEPFAKE_MODELS_DIR, ./models, "
                        "then ~/.cache/deepfake-detector/models)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"],
                   help="where the models run (default: auto = CUDA, MPS, then CPU)")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"],
                   help="numeric precision of the models (default: auto = bf16 where the hardware has it)")
    p.add_argument("--video-model", default=None, metavar="original|builtin|PATH",
                   help="the face model: original (the original checkpoint in the models folder), builtin (the "
                        "model shipped inside the package, docs/MODEL_CARD.md) or a checkpoint file "
                        "(default: original when installed, else builtin)")
    p.add_argument("--runtime", default="auto", choices=["auto", "torch", "openvino"],
                   help="what runs the networks (default: auto = OpenVINO on a CPU when the openvino extra is "
                        "installed, else PyTorch; PyTorch on a GPU)")
    p.add_argument("--audio-model", default=None, metavar="original|builtin|none|PATH",
                   help="the voice model: original (the original checkpoint in the models folder), builtin (the "
                        "speech model shipped inside the package, docs/MODEL_CARD_AUDIO.md), none, or a checkpoint "
                        "file (default: original when installed, else builtin when shipped)")


def add_analysis_options(p: argparse.ArgumentParser) -> None:
    """The options every command that analyses videos takes (analyze, scan, evaluate)."""
    from .settings import FUSION_STRATEGIES

    add_model_options(p)
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the models: faster on a GPU once compiled, but each new batch shape "
                        "compiles first (minutes on a CPU); for long-running scans")
    g = p.add_argument_group("analysis settings")
    g.add_argument("--fusion", choices=FUSION_STRATEGIES, default=None,
                   help="how video and audio are combined: equal, video_trust, adaptive (weighted logits), or "
                        "noisy_or / max (either modality confidently fake flags it) (default: equal; the built-in "
                        "audio model's file may name another)")
    g.add_argument("--audio-only", action="store_true",
                   help="judge the voice alone, even in a video (audio files are always judged this way)")
    g.add_argument("--audio-temperature", type=float, default=None, metavar="T",
                   help="divide audio logits by T before fusion (default: the calibration's, else 2.0)")
    g.add_argument("--video-temperature", type=float, default=None, metavar="T",
                   help="divide video logits by T (default: the calibration's, else 1.0)")
    g.add_argument("--threshold", type=float, default=None, metavar="X",
                   help="REAL when the mean fused real probability is above X (default: the calibration's, else 0.5)")
    g.add_argument("--no-calibration", action="store_true",
                   help="ignore calibration.json in the models folder (deepfake-detect calibrate writes it)")
    g.add_argument("--frame-skip", type=int, default=5, metavar="N", help="look at every N-th frame (default: 5)")
    g.add_argument("--max-samples", type=int, default=60, metavar="N",
                   help="at most N sampled frames, spread over the whole video (default: 60)")
    g.add_argument("--abstain-below", type=float, default=None, metavar="C",
                   help="say UNCERTAIN when the confidence is below C, 0.5-1 (default: 0.55; 0.5: never)")
    g.add_argument("--time-budget", type=float, default=None, metavar="S",
                   help="stop an analysis that runs longer than S seconds, with an error (default: 1800; 0: no limit)")
    g.add_argument("--face-margin", type=float, default=0.0, metavar="M",
                   help="grow each face crop by M x its size per side (default: 0, as the models were trained)")


def settings_from_args(args: argparse.Namespace):
    from .errors import SettingsError
    from .settings import AnalysisSettings

    given = {name: getattr(args, name, None)
             for name in ("audio_temperature", "video_temperature", "threshold", "abstain_below")}
    given = {name: value for name, value in given.items() if value is not None}
    budget = getattr(args, "time_budget", None)
    if budget is not None:
        given["max_analysis_s"] = None if budget == 0 else budget
    try:
        return AnalysisSettings(
            fusion=args.fusion or "equal", audio_only=getattr(args, "audio_only", False), **given,
            frame_skip=args.frame_skip, max_samples=args.max_samples, face_margin=args.face_margin,
        )
    except SettingsError as e:  # name the option the value came from
        option = {"max_analysis_s": "time_budget"}.get(e.field, e.field)
        if option is None or not hasattr(args, option):
            raise
        raise SettingsError(f"option --{option.replace('_', '-')}: {e}", e.field) from e


def calibrated_settings(args: argparse.Namespace, settings, detector) -> tuple[object, list[str]]:
    """(`settings` with the models folder's calibration.json applied to the values not given on the command
    line (unless --no-calibration), the notes for the reports: `Detector.analyze(..., notes=)`). The report
    names the calibration in its settings and a note. A calibration fitted for other model files is ignored,
    with a note."""
    explicit_model = {name for name in ("audio_temperature", "fusion") if getattr(args, name, None) is not None}
    if getattr(args, "no_calibration", False) or detector.video is None:
        return detector.default_settings(explicit_model, settings), []
    from .calibration import CALIBRATED_FIELDS, apply_calibration, find_calibration

    calibration, path, note = find_calibration(detector.models_dir, detector.video.sha256,
                                               detector.audio.sha256 if detector.audio is not None else None)
    if calibration is not None:
        explicit = {name for name in CALIBRATED_FIELDS if getattr(args, name, None) is not None}
        settings, note = apply_calibration(settings, calibration, explicit, str(path))
    notes = [note] if note else []
    return detector.default_settings(explicit_model, settings), notes


def load_detector(args: argparse.Namespace, voice_only: bool = False):
    """The detector the options name; `voice_only` (audio files or --audio-only): no video model needed."""
    if not voice_only:
        from .model_files import find_model_files

        # Missing files are reported before the pipeline imports PyTorch (seconds)
        find_model_files(args.models_dir, getattr(args, "video_model", None))
    from .pipeline import Detector

    return Detector.load(args.models_dir, device=args.device, precision=args.precision,
                         video_model=getattr(args, "video_model", None),
                         audio_model=getattr(args, "audio_model", None), compile=getattr(args, "compile", False),
                         runtime=getattr(args, "runtime", "auto"), video_optional=voice_only)


def is_audio_file(path: Path) -> bool:
    return path.suffix.lower() in AUDIO_EXTENSIONS


def progress_bar(enabled: bool) -> tuple[Callable[[float, str], None], Callable[[], None]]:
    """A stderr progress bar fed with (fraction, message); returns (update, close)."""
    if not enabled:
        return (lambda fraction, message: None), (lambda: None)
    from tqdm import tqdm

    bar = tqdm(total=100, file=sys.stderr, leave=False, bar_format="{l_bar}{bar}| {elapsed}")

    def update(fraction: float, message: str) -> None:
        bar.set_description_str(message[:40])
        bar.n = int(round(100 * fraction))
        bar.refresh()

    return update, bar.close


# -- analyze ---------------------------------------------------------------------------------------------
def cmd_analyze(args: argparse.Namespace) -> int:
    from .video import check_exists

    settings = settings_from_args(args)
    explain = bool(args.explain or args.explain_dir)
    if explain:
        from .explain import check_top_k

        check_top_k(args.explain_faces)
    check_exists(args.video)  # a missing file, a dangling link or a link loop, before the models load
    detector = load_detector(args, voice_only=settings.audio_only or is_audio_file(Path(args.video)))
    settings, notes = calibrated_settings(args, settings, detector)
    update, close = progress_bar(not args.quiet and sys.stderr.isatty())
    try:
        report = detector.analyze(args.video, settings, progress=update, notes=notes)
    finally:
        close()
    if explain and report.timeline:  # Grad-CAM of the most suspicious faces, after the analysis (explain.py)
        from .explain import explain_report

        explain_report(detector, args.video, report, k=args.explain_faces, out_dir=args.explain_dir)
    print(report.to_json() if args.json else report.summary())
    return EXIT_OK


# -- scan ------------------------------------------------------------------------------------------------
SCAN_FIELDS = ["file", "path", "verdict", "reason", "confidence", "fused_real_prob", "video_p_fake",
               "audio_p_fake", "faces", "tracks", "audio_windows", "duration_s", "seconds", "error"]


def iter_videos(paths: list[str]):
    """Files given directly, and video and audio files found by walking folders (sorted)."""
    for name in paths:
        p = Path(name)
        if p.is_dir():
            for root, dirs, files in os.walk(p):
                dirs.sort()
                for f in sorted(files):
                    if Path(f).suffix.lower() in VIDEO_EXTENSIONS | AUDIO_EXTENSIONS:
                        yield Path(root) / f
        else:
            yield p


def scan_row(path: Path | str, report=None, error: Exception | None = None) -> dict:
    row = {k: None for k in SCAN_FIELDS}
    # a URL (s3://bucket/a.mp4, from `scan --ray`) stays a string: Path() would fold its "//"
    row.update(file=path.name if isinstance(path, Path) else path.rstrip("/").rsplit("/", 1)[-1], path=str(path))
    if error is not None:
        row.update(verdict="ERROR", error=f"{type(error).__name__}: {error}")
        return row
    m = report.modalities
    row.update(
        verdict=report.verdict, reason=report.reason, confidence=report.confidence,
        fused_real_prob=report.fused_real_prob, video_p_fake=m["video"].fake_prob, audio_p_fake=m["audio"].fake_prob,
        faces=report.counts["faces"], tracks=report.counts["tracks"], audio_windows=report.counts["audio_windows"],
        duration_s=report.media.get("duration_s"), seconds=report.timings["total"],
    )
    return row


def check_writable(out: Path) -> None:
    """InputError unless `out` can be written (its folder is created if missing): checked before models load,
    so a long scan never ends in an error at its first row."""
    if out.is_dir():
        raise InputError(f"--out {out} is a folder; give a file name ending in .csv or .jsonl")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        existed = out.exists()
        with open(out, "a", encoding="utf-8"):
            pass
        if not existed:
            out.unlink()
    except OSError as e:
        raise InputError(f"--out {out} cannot be written ({e.strerror or e}); choose another file") from e


def scan_record(path: Path | str, report=None, error: Exception | None = None, jsonl: bool = False) -> dict:
    """One output line of `scan` (local and --ray): the CSV row, or for JSONL the whole report with its path
    and error (an ERROR record when the file could not be analysed)."""
    row = scan_row(path, report, error)
    if not jsonl:
        return row
    record = report.to_dict() if report is not None else {}
    record.update({"path": str(path), "error": row["error"]})
    if error is not None:
        record.update(verdict="ERROR", file=row["file"])
    return record


def cmd_scan(args: argparse.Namespace) -> int:
    if getattr(args, "ray", None) is not None:
        from .ray_scan import cmd_scan_ray

        return cmd_scan_ray(args)
    settings = settings_from_args(args)
    out = Path(args.out)
    if out.suffix not in (".csv", ".jsonl"):
        raise InputError(f"--out must end in .csv or .jsonl; got {out.name}")
    check_writable(out)
    videos = list(iter_videos(args.paths))
    if not videos:
        raise InputError(f"no video files found in {', '.join(args.paths)}")
    detector = load_detector(args, voice_only=settings.audio_only or all(is_audio_file(v) for v in videos))
    settings, notes = calibrated_settings(args, settings, detector)
    errors = 0
    with open(out, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=SCAN_FIELDS) if out.suffix == ".csv" else None
        if writer:
            writer.writeheader()
        for n, path in enumerate(videos, 1):
            report, error = None, None
            try:
                report = detector.analyze(path, settings, notes=notes)
            except InputError as e:
                error = e
            except Exception as e:  # one broken file must not stop a long scan; it is recorded
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


# -- main ------------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deepfake-detect",
                                     description="Judge whether a video's face and voice are real or generated.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("analyze", help="analyse one video (or audio file) and print its report")
    p.add_argument("video", help="video file (mp4, mov, mkv, webm, avi, ...) or audio file (wav, flac, mp3, m4a, "
                                 "ogg, opus: judged by the voice alone); a name starting with '-' goes after --: "
                                 "analyze [OPTIONS] -- -clip.mp4")
    p.add_argument("--json", action="store_true", help="print the full report as JSON")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.add_argument("--explain", action="store_true",
                   help="after the analysis, Grad-CAM heatmaps of the most suspicious faces (where the video model "
                        "saw FAKE), as PNG data URLs in the --json report, or files with --explain-dir")
    p.add_argument("--explain-faces", type=int, default=4, metavar="K", help="faces --explain shows (default: 4)")
    p.add_argument("--explain-dir", metavar="DIR", help="write the overlays into DIR as PNG files (implies --explain)")
    add_analysis_options(p)
    p.set_defaults(func=cmd_analyze)

    p = sub.add_parser("scan", help="analyse many videos and audio files (folders are walked) into a CSV or JSONL file")
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="video or audio files, or folders (names starting with '-' after --: scan --out r.csv -- -a.mp4)")
    p.add_argument("--out", required=True, metavar="FILE", help="results.csv or results.jsonl")
    p.add_argument("--quiet", "-q", action="store_true", help="no per-file lines on stderr")
    add_analysis_options(p)
    from .ray_scan import add_ray_options  # imports no Ray

    add_ray_options(p)
    p.set_defaults(func=cmd_scan)

    import importlib

    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse exits 2 on usage errors, 0 on --help
        return int(e.code or 0)
    try:
        return int(args.func(args) or 0)
    except ModelFilesMissing as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_MODELS
    except DeepfakeError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # no traceback for users; DEEPFAKE_DEBUG=1 shows it
        if os.environ.get("DEEPFAKE_DEBUG"):
            raise
        print(f"internal error: {type(e).__name__}: {e} (run with DEEPFAKE_DEBUG=1 for the traceback, "
              f"and please report it)", file=sys.stderr)
        return EXIT_INTERNAL
