"""The web page's server: its Streamlit options and the port check (`deepfake-detect serve`, cli/serve.py,
runs the page in this process).

The page ships inside the package (deepfake_core/webapp/streamlit_app.py), so an installed copy serves it
with no source checkout. The models folder, device and precision reach the page through the environment
(DEEPFAKE_MODELS_DIR, DEEPFAKE_DEVICE, DEEPFAKE_PRECISION), the server options as Streamlit flags.
"""

from __future__ import annotations

import argparse
import os
import socket

from ..errors import InputError

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
