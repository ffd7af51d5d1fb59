"""Which model files a Detector loads, found without importing torch: a missing file is reported at once,
not after the seconds PyTorch takes to import (the commands check here before they import the pipeline).
The registry (registry.py) knows the files; this module raises the typed errors, with the install hint.

The rules for a models folder (docs/models.md):
- a folder the user named (--models-dir, DEEPFAKE_MODELS_DIR) that does not exist is an error (exit 2), never
  taken for an empty one;
- a model file that is there but cannot be one (a folder, a broken link, an empty file, a pipe) is an error
  naming it (exit 3), never passed over for the next choice; a damaged or foreign file fails when it loads (exit 3);
- the built-in model judges only when no original file is there at all.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from ..errors import CheckpointError, ModelFilesMissing, ModelsDirMissing, WeightsError
from .registry import (
    AUDIO_FILES,
    FACE_CAFFEMODELS,
    FACE_PROTOTXT,
    MODELS_DIR_ENV,
    PULL_COMMAND,
    REGISTRY,
    VIDEO_FILES,
    builtin_audio_file,
    builtin_audio_missing_message,
    builtin_missing_message,
    builtin_video_file,
    choose_model,
    install_hint,
    megabytes,
    models_dir_candidates,
    resolve_models_dir,
    sha256_file,
)


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


def named_models_dir(models_dir: str | os.PathLike | None = None) -> Path | None:
    """The models folder the user named: `models_dir`, else $DEEPFAKE_MODELS_DIR; None when neither is set (the
    default places are searched, and finding none of them means nothing is installed). ModelsDirMissing (exit 2)
    when the named folder does not exist: a mistyped folder is not an empty one."""
    if models_dir:
        path, source = Path(models_dir).expanduser(), ""
    elif os.environ.get(MODELS_DIR_ENV):
        path, source = Path(os.environ[MODELS_DIR_ENV]).expanduser(), f" (from {MODELS_DIR_ENV})"
    else:
        return None
    try:
        if path.is_dir():
            return path
        what = "is not a folder" if os.path.lexists(path) else "does not exist"
    except OSError as e:  # a name too long, a folder we may not enter: as unusable as a missing one
        what = f"cannot be used ({e.strerror or e})"
    raise ModelsDirMissing(f"the models folder {path}{source} {what}: check its name, or install the model "
                           f"files there with: {PULL_COMMAND} --models-dir {path}")


def unusable(path: Path) -> str | None:
    """Why the entry at `path` cannot be a model file (a folder, a broken link, an empty file, a pipe), or None.
    Cheap: reads nothing; a damaged or foreign file is found when it loads (checkpoints.py, faces.py)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return f"a link to {os.readlink(path)}, which does not exist" if path.is_symlink() else "not there"
    except OSError as e:  # a link loop, a folder we may not enter
        return f"not openable ({e.strerror or e})"
    if stat.S_ISDIR(st.st_mode):
        return "a folder, not a file"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    if st.st_size == 0:
        return "empty (0 bytes)"
    if not os.access(path, os.R_OK):
        return "not readable (permission denied)"
    return None


def check_model_file(path: Path) -> Path:
    """`path`, or CheckpointError naming it and why it cannot be read (`unusable`)."""
    problem = unusable(path)
    if problem is not None:
        raise CheckpointError(f"model file {path} is {problem}; replace it with a good copy ({PULL_COMMAND} "
                              f"--models-dir {path.parent} re-downloads and checks the published ones) or remove it")
    return path


def installed_model_file(directory: Path, names: tuple[str, ...]) -> Path | None:
    """The first of `names` (the loader's preference order) that `directory` holds, checked: an entry there that
    cannot be a model file raises CheckpointError naming it (`check_model_file`) rather than being passed over
    (which would leave the next choice, e.g. the built-in model, to judge). None when none of them is there."""
    for name in names:
        path = directory / name
        if os.path.lexists(path):
            return check_model_file(path)
    return None


def _checked_choice(choice: str | os.PathLike | None, directory: Path, originals: tuple[str, ...]) -> None:
    """Check the file a choice would read before `registry.choose_model` looks for it by existence alone."""
    if choice is None or str(choice) in ("", "original"):
        installed_model_file(directory, originals)
    elif str(choice) not in ("builtin", "none") and os.path.lexists(choice):
        check_model_file(Path(choice))


def choose_video_model(choice: str | os.PathLike | None, directory: Path) -> tuple[Path | None, str]:
    """(the video model file, which: "original", "builtin" or "path") for a --video-model value.

    None picks the original checkpoint when `directory` holds it, else the built-in model (when this
    installation has one; else the original's expected place, so the error names the missing file).
    "builtin" without a shipped model raises WeightsError saying so; an installed file that cannot be read,
    CheckpointError (`installed_model_file`)."""
    _checked_choice(choice, directory, VIDEO_FILES)
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
    _checked_choice(choice, directory, AUDIO_FILES)
    path, which = choose_model(choice, directory, AUDIO_FILES, builtin_audio_file())
    if which == "builtin" and path is None:
        raise WeightsError(builtin_audio_missing_message())
    return path, which


def find_model_files(models_dir: str | os.PathLike | None = None, video_model: str | os.PathLike | None = None,
                     audio_model: str | os.PathLike | None = None, require_audio: bool = False) -> ModelFiles:
    """The files `Detector.load` will read (same arguments). Raises ModelFilesMissing naming each missing
    file, the folder and where it looked; WeightsError for --video-model builtin without a built-in model;
    ModelsDirMissing for a named folder that does not exist; CheckpointError for an installed file that cannot
    be read."""
    directory = resolve_models_dir(named_models_dir(models_dir))
    video_path, video_choice = choose_video_model(video_model, directory)
    audio_path, _ = choose_audio_model(audio_model, directory)
    for names in ((FACE_PROTOTXT,), FACE_CAFFEMODELS):  # the res10 files: checked as faces.py will read them
        installed_model_file(directory, names)
    missing = []
    if video_path is None or not video_path.is_file():
        missing.append(str(video_path) if video_choice == "path" else VIDEO_FILES[-1])
    if require_audio and (audio_path is None or not audio_path.is_file()):
        missing.append(str(audio_path) if audio_path is not None else AUDIO_FILES[-1])
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
    except (WeightsError, CheckpointError) as e:  # no built-in model, an unreadable file: the page says it too
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
