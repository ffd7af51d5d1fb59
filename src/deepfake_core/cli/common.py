"""What the subcommands share: exit codes, the model and analysis options (turned into the library's
DetectorOptions and given settings), the progress bar, the manifest options of the training commands."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from ..errors import InputError
from ..analysis.load import DetectorOptions, load_detector
from ..settings import DEVICES, PRECISIONS, RUNTIMES, AnalysisSettings
from .options import add_options, build, given_values

EXIT_OK, EXIT_INTERNAL, EXIT_INPUT, EXIT_MODELS = 0, 1, 2, 3


# -- options -----------------------------------------------------------------------------------------------
def add_models_dir(p: argparse.ArgumentParser, help: str | None = None) -> None:
    p.add_argument("--models-dir", metavar="DIR",
                   help=help or "folder with the model files (default: $DEEPFAKE_MODELS_DIR, ./models, "
                                "then ~/.cache/deepfake-detector/models)")


def add_model_options(p: argparse.ArgumentParser) -> None:
    add_models_dir(p)
    p.add_argument("--device", default="auto", choices=DEVICES,
                   help="where the models run (default: auto = CUDA, MPS, then CPU)")
    p.add_argument("--precision", default="auto", choices=PRECISIONS,
                   help="numeric precision of the models (default: auto = bf16 where the hardware has it)")
    p.add_argument("--video-model", default=None, metavar="original|builtin|PATH",
                   help="the face model: original (the original checkpoint in the models folder), builtin (the "
                        "model shipped inside the package, docs/MODEL_CARD.md) or a checkpoint file "
                        "(default: original when installed, else builtin)")
    p.add_argument("--runtime", default="auto", choices=RUNTIMES,
                   help="what runs the networks (default: auto = OpenVINO on a CPU when the openvino extra is "
                        "installed, else PyTorch; PyTorch on a GPU)")
    p.add_argument("--audio-model", default=None, metavar="original|builtin|none|PATH",
                   help="the voice model: original (the original checkpoint in the models folder), builtin (the "
                        "speech model shipped inside the package, docs/MODEL_CARD_AUDIO.md), none, or a checkpoint "
                        "file (default: original when installed, else builtin when shipped)")


def add_analysis_options(p: argparse.ArgumentParser) -> None:
    """The options every command that analyses videos takes (analyze, scan, evaluate, calibrate): the model
    options, and one option per AnalysisSettings field that declares one (settings.py)."""
    add_model_options(p)
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the models: faster on a GPU once compiled, but each new batch shape "
                        "compiles first (minutes on a CPU); for long-running scans")
    g = p.add_argument_group("analysis settings")
    add_options(g, AnalysisSettings)
    g.add_argument("--no-calibration", action="store_true",
                   help="ignore calibration.json in the models folder (deepfake-detect calibrate writes it)")


def settings_from_args(args: argparse.Namespace) -> AnalysisSettings:
    """The AnalysisSettings the options name (the defaults for those not given): checked before the models load."""
    return build(AnalysisSettings, args)


# -- the detector and its settings -------------------------------------------------------------------------
def detector_options(args: argparse.Namespace) -> DetectorOptions:
    """The model options given (load.DetectorOptions; a command without some of them gets their defaults)."""
    return DetectorOptions(models_dir=args.models_dir, device=getattr(args, "device", "auto"),
                           precision=getattr(args, "precision", "auto"), video_model=getattr(args, "video_model", None),
                           audio_model=getattr(args, "audio_model", None), runtime=getattr(args, "runtime", "auto"),
                           compile=getattr(args, "compile", False))


def resolved_settings(args: argparse.Namespace, detector) -> tuple[AnalysisSettings, list[str]]:
    """(settings, notes for the reports) by the library's rule (`Detector.resolve_settings`): the options given,
    then the models folder's calibration.json (unless --no-calibration), the model files' own values, the
    defaults."""
    return detector.resolve_settings(given_values(args, AnalysisSettings),
                                     use_calibration=not getattr(args, "no_calibration", False))


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


def missing_extra(modules: tuple[str, ...], what: str, extra: str) -> bool:
    """True (after saying which to install, on stderr) when any of `modules` is not installed."""
    import importlib.util

    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    if missing:
        print(f"error: {what} needs {', '.join(missing)}: pip install 'deepfake-detector[{extra}]'", file=sys.stderr)
    return bool(missing)


def shown_host(host: str) -> str:
    """The host name to print in a server's address."""
    return "localhost" if host in ("127.0.0.1", "::1") else host


# -- labelled media (prepare, evaluate, calibrate) -----------------------------------------------------------
def add_data_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--only", action="append", metavar="COLUMN=VALUE",
                   help="keep only manifest rows whose COLUMN equals VALUE (repeatable), e.g. --only kind=video")
    p.add_argument("--label", choices=["real", "fake"], default=None,
                   help="label for manifest rows without a label column (e.g. a list of real clips)")


def only_filters(values: list[str] | None) -> list[tuple[str, str]]:
    out = []
    for value in values or []:
        if "=" not in value:
            raise InputError(f"--only takes COLUMN=VALUE; got {value!r}")
        column, _, wanted = value.partition("=")
        out.append((column.strip(), wanted.strip()))
    return out


def read_media(args: argparse.Namespace, source):
    """The labelled media of a manifest or folder, filtered by --only and labelled by --label."""
    from ..train.data import read_labels

    return read_labels(source, args.label, only_filters(args.only))


def labelled_run(args: argparse.Namespace):
    """(settings, media, detector) for evaluate and calibrate, checked in that order (the cheap checks before
    the models load)."""
    settings = settings_from_args(args)
    media = read_media(args, args.labels)
    return settings, media, load_detector(detector_options(args))
