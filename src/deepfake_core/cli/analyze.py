"""`deepfake-detect analyze`: one video (or audio file) into a report on stdout."""

from __future__ import annotations

import argparse
import sys

from ..analysis.load import load_detector
from ..media.files import is_audio_file
from .common import EXIT_OK, add_analysis_options, detector_options, progress_bar, resolved_settings, settings_from_args


def register(sub) -> None:
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



def cmd_analyze(args: argparse.Namespace) -> int:
    from ..media.video import check_exists

    settings = settings_from_args(args)
    explain = bool(args.explain or args.explain_dir)
    if explain:
        from ..analysis.explain import check_out_dir, check_top_k

        check_top_k(args.explain_faces)
    check_exists(args.video)  # a missing file, a dangling link or a link loop, before the models load
    if args.explain_dir:
        check_out_dir(args.explain_dir)  # a file where the folder should be: exit 2 now, not after the analysis
    detector = load_detector(detector_options(args), voice_only=settings.audio_only or is_audio_file(args.video))
    settings, notes = resolved_settings(args, detector)
    update, close = progress_bar(not args.quiet and sys.stderr.isatty())
    try:
        report = detector.analyze(args.video, settings, progress=update, notes=notes)
    finally:
        close()
    if explain and report.timeline:  # Grad-CAM of the most suspicious faces, after the analysis (explain.py)
        from ..analysis.explain import explain_report

        explain_report(detector, args.video, report, k=args.explain_faces, out_dir=args.explain_dir)
    print(report.to_json() if args.json else report.summary())
    return EXIT_OK
