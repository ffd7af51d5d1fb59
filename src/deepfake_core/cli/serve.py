"""`deepfake-detect serve`: run the web page (Streamlit) in this process (webapp/server.py: its options)."""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys

from ..errors import InputError
from ..webapp.server import DEFAULT_HOST, DEFAULT_MAX_UPLOAD_MB, DEFAULT_PORT, check_port, streamlit_flags
from .common import EXIT_INPUT, add_model_options, shown_host


def register(subparsers) -> None:
    p = subparsers.add_parser("serve", help="start the web page (upload a video, read the verdict)",
                              description="Start the web page. Open the address it prints in a browser.")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port to listen on (default: {DEFAULT_PORT})")
    p.add_argument("--host", default=DEFAULT_HOST,
                   help=f"address to listen on (default: {DEFAULT_HOST}, this machine only; 0.0.0.0 = every "
                        f"network interface)")
    p.add_argument("--max-upload-mb", type=int, default=DEFAULT_MAX_UPLOAD_MB, metavar="MB",
                   help=f"largest video a user may upload (default: {DEFAULT_MAX_UPLOAD_MB})")
    add_model_options(p)
    p.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    if importlib.util.find_spec("streamlit") is None or importlib.util.find_spec("altair") is None:
        print("error: the web page needs Streamlit and Altair: pip install 'deepfake-detector[app]'",
              file=sys.stderr)
        return EXIT_INPUT
    if args.max_upload_mb < 1:
        raise InputError(f"--max-upload-mb must be at least 1; got {args.max_upload_mb}")
    check_port(args.host, args.port)
    from ..models.model_files import judging_line
    from ..models.registry import MODELS_DIR_ENV
    from ..webapp import PAGE

    if args.models_dir:
        os.environ[MODELS_DIR_ENV] = str(args.models_dir)
    os.environ["DEEPFAKE_DEVICE"] = args.device
    os.environ["DEEPFAKE_PRECISION"] = args.precision
    os.environ["DEEPFAKE_RUNTIME"] = args.runtime
    print(judging_line(args.models_dir), file=sys.stderr)  # the page picks automatically (its sidebar to change)
    print(f"Deepfake Detector web page: http://{shown_host(args.host)}:{args.port}  (Ctrl+C stops it)", file=sys.stderr)

    from streamlit.web import cli as streamlit_cli

    streamlit_cli.main(["run", str(PAGE), *streamlit_flags(args)], prog_name="streamlit", standalone_mode=False)
    return 0
