"""`deepfake-detect serve`: run the web page (Streamlit) in this process.

The page ships inside the package (deepfake_core/webapp/streamlit_app.py), so an installed copy serves it
with no source checkout. The models folder, device and precision reach the page through the environment
(DEEPFAKE_MODELS_DIR, DEEPFAKE_DEVICE, DEEPFAKE_PRECISION), the server options as Streamlit flags.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import socket
import sys

from .cli import EXIT_INPUT, add_model_options
from .errors import InputError

DEFAULT_PORT = 8501
DEFAULT_HOST = "127.0.0.1"  # this machine only; --host 0.0.0.0 serves the network (the Docker image does)
DEFAULT_MAX_UPLOAD_MB = 500

# Streamlit options for the page, also in app/.streamlit/config.toml for `streamlit run app/streamlit_app.py`.
SERVER_OPTIONS = {
    "server.maxUploadSize": DEFAULT_MAX_UPLOAD_MB,  # MB; the page checks it again
    "browser.gatherUsageStats": False,
    "client.toolbarMode": "minimal",
    "client.showErrorDetails": "none",  # no tracebacks for users
}


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


def streamlit_flags(args: argparse.Namespace) -> list[str]:
    options = dict(SERVER_OPTIONS)
    options.update({
        "server.port": args.port,
        "server.address": args.host,
        "server.maxUploadSize": args.max_upload_mb,
        "server.headless": True,  # never try to open a browser on the server
        "server.fileWatcherType": "none",  # the installed page does not change under a running server
        "server.runOnSave": False,
    })
    if os.environ.get("DEEPFAKE_DEBUG"):
        options["client.showErrorDetails"] = "full"
    return [f"--{key}={str(value).lower() if isinstance(value, bool) else value}" for key, value in options.items()]


def check_port(host: str, port: int) -> None:
    """Refuse early, with the remedy, when the port cannot be listened on."""
    if not 1 <= port <= 65535:
        raise InputError(f"--port must be between 1 and 65535; got {port}")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise InputError(f"--host {host!r} is not an address of this machine ({e.strerror})") from e
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(address)
        except OSError as e:
            raise InputError(f"cannot listen on {host}:{port} ({e.strerror}); is another server using it? "
                             f"Pick another port with --port") from e


def cmd_serve(args: argparse.Namespace) -> int:
    if importlib.util.find_spec("streamlit") is None or importlib.util.find_spec("altair") is None:
        print("error: the web page needs Streamlit and Altair: pip install 'deepfake-detector[app]'",
              file=sys.stderr)
        return EXIT_INPUT
    if args.max_upload_mb < 1:
        raise InputError(f"--max-upload-mb must be at least 1; got {args.max_upload_mb}")
    check_port(args.host, args.port)
    from .weights import MODELS_DIR_ENV, VIDEO_FILES, first_existing, resolve_models_dir
    from .webapp import PAGE

    if args.models_dir:
        os.environ[MODELS_DIR_ENV] = str(args.models_dir)
    os.environ["DEEPFAKE_DEVICE"] = args.device
    os.environ["DEEPFAKE_PRECISION"] = args.precision
    os.environ["DEEPFAKE_RUNTIME"] = args.runtime
    models_dir = resolve_models_dir(args.models_dir)
    if first_existing(models_dir, VIDEO_FILES) is None:
        print(f"note: no video model in {models_dir}; the page will say how to get it "
              f"(deepfake-detect weights pull --models-dir {models_dir})", file=sys.stderr)
    shown = "localhost" if args.host in ("127.0.0.1", "::1") else args.host
    print(f"Deepfake Detector web page: http://{shown}:{args.port}  (Ctrl+C stops it)", file=sys.stderr)

    from streamlit.web import cli as streamlit_cli

    streamlit_cli.main(["run", str(PAGE), *streamlit_flags(args)], prog_name="streamlit", standalone_mode=False)
    return 0
