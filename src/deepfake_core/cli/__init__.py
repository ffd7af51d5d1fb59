"""The `deepfake-detect` command: `main(argv)`, and one module per subcommand (each has `register(sub)`,
setting `func` on its parser). The subcommands import no torch until they run, so `--help`, `weights list`
and missing-file errors answer at once (tests/test_startup.py).

Exit codes: 0 done (a NOT_APPLICABLE verdict included); 1 unexpected internal error;
2 bad input or usage; 3 model files missing or unloadable; 130 interrupted (Ctrl-C); 143 terminated (SIGTERM,
stop.py), both after the cleanups ran.
"""

from __future__ import annotations

import argparse
import os
import sys

from ..errors import DeepfakeError, ModelFilesMissing
from ..process import configure_process
from ..version import __version__
from . import analyze, api, calibrate, evaluate, prepare, scan, serve, train, weights
from .common import EXIT_INPUT, EXIT_INTERNAL, EXIT_MODELS, EXIT_OK
from .stop import EXIT_INTERRUPTED, EXIT_TERMINATED, Terminated, sigterm_raises

__all__ = ["EXIT_INPUT", "EXIT_INTERNAL", "EXIT_INTERRUPTED", "EXIT_MODELS", "EXIT_OK", "EXIT_TERMINATED",
           "build_parser", "main"]

SUBCOMMANDS = (analyze, scan, serve, weights, prepare, train, evaluate, calibrate, api)  # in --help's order


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deepfake-detect",
                                     description="Judge whether a video's face and voice are real or generated.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module in SUBCOMMANDS:
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    configure_process()  # before anything imports torch (process.py)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse exits 2 on usage errors, 0 on --help
        return int(e.code or 0)
    try:
        with sigterm_raises():
            return int(args.func(args) or 0)
    except ModelFilesMissing as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_MODELS
    except DeepfakeError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Terminated:
        print("terminated", file=sys.stderr)
        return EXIT_TERMINATED
    except Exception as e:  # no traceback for users; DEEPFAKE_DEBUG=1 shows it
        if os.environ.get("DEEPFAKE_DEBUG"):
            raise
        print(f"internal error: {type(e).__name__}: {e} (run with DEEPFAKE_DEBUG=1 for the traceback, "
              f"and please report it)", file=sys.stderr)
        return EXIT_INTERNAL
