"""Which model files a Detector loads, found without importing torch: a missing file is reported at once,
not after the seconds PyTorch takes to import (the commands check here before they import the pipeline).
The registry (registry.py) knows the files; this module raises the typed errors, with the install hint."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .errors import ModelFilesMissing, WeightsError
from .registry import (AUDIO_FILES, REGISTRY, VIDEO_FILES, builtin_audio_file, builtin_audio_missing_message,
                       builtin_missing_message, builtin_video_file, choose_model, first_existing, install_hint,
                       megabytes, models_dir_candidates, resolve_models_dir, sha256_file)


@dataclass(frozen=True)
class ModelFiles:
    directory: Path  # the models folder in use
    video: Path  # the video model file (exists)
    video_choice: str  # "original", "builtin" or "path"
    audio: Path | None  # the audio model file; None when there is none (video is judged alone)


def files_missing(missing: list[str], models_dir: str | os.PathLike, searched: list[str] | None = None
                  ) -> ModelFilesMissing:
    """The ModelFilesMissing error for `missing` files, its message ending in how to install them."""
    return ModelFilesMissing(missing, str(models_dir), searched, hint=install_hint(missing, str(models_dir)))


def choose_video_model(choice: str | os.PathLike | None, directory: Path) -> tuple[Path | None, str]:
    """(the video model file, which: "original", "builtin" or "path") for a --video-model value.

    None picks the original checkpoint when `directory` holds it, else the built-in model (when this
    installation has one; else the original's expected place, so the error names the missing file).
    "builtin" without a shipped model raises WeightsError saying so."""
    path, which = choose_model(choice, directory, VIDEO_FILES, builtin_video_file())
    if which == "builtin" and path is None:
        raise WeightsError(builtin_missing_message())
    return path, which


def choose_audio_model(choice: str | os.PathLike | None, directory: Path) -> tuple[Path | None, str]:
    """(the audio model file, which: "original", "builtin", "none" or "path") for an --audio-model value.

    None picks the original checkpoint when `directory` holds it (it wins), else the built-in model when this
    installation ships one, else (None, "original"): no audio model. "builtin" without a shipped model raises
    WeightsError saying so; "none" judges no audio."""
    if choice is not None and str(choice) == "none":
        return None, "none"
    path, which = choose_model(choice, directory, AUDIO_FILES, builtin_audio_file())
    if which == "builtin" and path is None:
        raise WeightsError(builtin_audio_missing_message())
    return path, which


def find_model_files(models_dir: str | os.PathLike | None = None, video_model: str | os.PathLike | None = None,
                     audio_model: str | os.PathLike | None = None, require_audio: bool = False) -> ModelFiles:
    """The files `Detector.load` will read (same arguments). Raises ModelFilesMissing naming each missing
    file, the folder and where it looked; WeightsError for --video-model builtin without a built-in model."""
    directory = resolve_models_dir(models_dir)
    video_path, video_choice = choose_video_model(video_model, directory)
    audio_path = Path(audio_model) if audio_model else first_existing(directory, AUDIO_FILES)
    missing = []
    if video_path is None or not video_path.is_file():
        missing.append(str(video_path) if video_choice == "path" else VIDEO_FILES[-1])
    if require_audio and (audio_path is None or not audio_path.is_file()):
        missing.append(str(audio_path) if audio_model else AUDIO_FILES[-1])
    if missing:
        raise files_missing(missing, directory, [str(p) for p in models_dir_candidates(models_dir)])
    assert video_path is not None
    return ModelFiles(directory, video_path, video_choice,
                      audio_path if audio_path is not None and audio_path.is_file() else None)


def judging_line(models_dir: str | os.PathLike | None = None, video_model: str | os.PathLike | None = None) -> str:
    """One line for a server's start-up: which video model will judge (and, with the built-in one, that the
    original checkpoints are an optional download, with its size), or why none can."""
    directory = resolve_models_dir(models_dir)
    try:
        path, which = choose_video_model(video_model, directory)
    except WeightsError as e:
        return f"note: {e}"
    if path is None or not path.is_file():
        return (f"note: no video model in {directory}; the page says how to get it "
                f"(deepfake-detect weights pull --models-dir {directory})")
    if which == "builtin":
        originals = megabytes(sum(e.size for e in REGISTRY if e.name in ("video", "audio")))
        return (f"video judged by the built-in model, shipped with the package ({path.name}, sha256 "
                f"{sha256_file(path)[:12]}); the original checkpoints ({originals}) are optional: "
                f"deepfake-detect weights pull --models-dir {directory}")
    return f"video judged by {'the original model' if which == 'original' else 'the model file'} {path}"
