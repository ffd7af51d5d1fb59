"""`deepfake-detect api`: the HTTP API (api/: the app and its workers), served by uvicorn."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..analysis.load import load_detector
from ..api import DEFAULT_HOST, DEFAULT_MAX_UPLOAD_MB, DEFAULT_PORT, KEYS_ENV, NEEDS
from ..errors import InputError
from ..webapp.server import check_port
from .common import EXIT_INPUT, add_model_options, detector_options, missing_extra, shown_host


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "api", help="start the HTTP API (upload a video, poll, read the JSON report)",
        description="Start the HTTP API. The OpenAPI document is at /openapi.json, the docs page at /docs. "
                    f"API keys: ${KEYS_ENV} (comma-separated) or --api-keys-file; without either, no key is needed.")
    p.add_argument("--host", default=DEFAULT_HOST,
                   help=f"address to listen on (default: {DEFAULT_HOST}, this machine only; 0.0.0.0 = every "
                        f"network interface)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port to listen on (default: {DEFAULT_PORT})")
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="analyses run at once, in threads sharing one loaded model (default: 1)")
    p.add_argument("--queue-size", type=int, default=8, metavar="N",
                   help="analyses that may wait for a worker; one more is refused with 429 (default: 8)")
    p.add_argument("--max-upload-mb", type=float, default=DEFAULT_MAX_UPLOAD_MB, metavar="MB",
                   help=f"largest upload; a bigger one is refused with 413 as it streams (default: "
                        f"{DEFAULT_MAX_UPLOAD_MB})")
    p.add_argument("--result-ttl", type=float, default=3600.0, metavar="S",
                   help="seconds a finished analysis (report, timeline) is kept, then forgotten (default: 3600)")
    p.add_argument("--wait-timeout", type=float, default=300.0, metavar="S",
                   help="longest a ?wait=true request waits before answering 202 (default: 300)")
    p.add_argument("--allow-dir", metavar="DIR",
                   help="also take JSON {\"path\": ...} requests naming files inside DIR (default: uploads only)")
    p.add_argument("--body-grace", type=float, default=30.0, metavar="S",
                   help="seconds a request body may take before its rate is checked (default: 30)")
    p.add_argument("--body-min-rate", type=float, default=50.0, metavar="KB/S",
                   help="after the grace, a body arriving slower than this on average (kB/s since the request "
                        "came) is cut off with 408 upload_timeout and its temporary file removed (default: 50)")
    p.add_argument("--body-deadline", type=float, default=900.0, metavar="S",
                   help="the longest a request body may take, however fast it comes (default: 900)")
    p.add_argument("--api-keys-file", metavar="FILE",
                   help=f"API keys, one per line (with ${KEYS_ENV}: either key works)")
    add_model_options(p)
    p.set_defaults(func=cmd_api)


def config_from_args(args: argparse.Namespace):
    from ..api.body import BodyClock
    from ..api.config import ApiConfig, load_api_keys

    for name in ("workers", "queue_size"):
        if getattr(args, name) < 1:
            raise InputError(f"--{name.replace('_', '-')} must be at least 1; got {getattr(args, name)}")
    for name in ("max_upload_mb", "result_ttl", "wait_timeout", "body_grace", "body_min_rate", "body_deadline"):
        if not getattr(args, name) > 0:
            raise InputError(f"--{name.replace('_', '-')} must be above 0; got {getattr(args, name)}")
    allow_dir = None
    if args.allow_dir:
        allow_dir = Path(args.allow_dir)
        if not allow_dir.is_dir():
            raise InputError(f"--allow-dir {args.allow_dir}: no such folder")
    return ApiConfig(workers=args.workers, queue_size=args.queue_size,
                     max_upload_bytes=int(args.max_upload_mb * 2**20), result_ttl_s=args.result_ttl,
                     wait_timeout_s=args.wait_timeout, allow_dir=allow_dir,
                     body_clock=BodyClock(args.body_grace, args.body_min_rate * 1000, args.body_deadline),
                     api_keys=load_api_keys(os.environ.get(KEYS_ENV), args.api_keys_file))


def cmd_api(args: argparse.Namespace) -> int:
    if missing_extra(NEEDS, "the API", "api"):
        return EXIT_INPUT
    config = config_from_args(args)
    check_port(args.host, args.port)
    detector = load_detector(detector_options(args))  # missing or broken model files stop here, with exit code 3

    import uvicorn

    from ..analysis.report import face_finder_words
    from ..api.app import create_app
    from ..models.model_files import judging_line

    print(f"{judging_line(args.models_dir, getattr(args, 'video_model', None))}; faces by "
          f"{face_finder_words(detector.describe_models()['face_detector'])}", file=sys.stderr)
    print(f"Deepfake Detector API: http://{shown_host(args.host)}:{args.port}  (docs /docs, {args.workers} worker(s), "
          f"{'API keys required' if config.api_keys else 'no API key needed'}; Ctrl+C stops it)", file=sys.stderr)
    uvicorn.run(create_app(detector, config), host=args.host, port=args.port, log_level="info",
                timeout_graceful_shutdown=10)
    return 0
