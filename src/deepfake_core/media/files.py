"""The media files this package takes, by extension: one list for every front end (the commands' folder walk,
the page's upload box, the training data readers), and the folder check of what the commands write. Imports
only errors."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from ..errors import InputError

VIDEO_EXTENSIONS = frozenset({".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".flv",
                              ".3gp", ".ts"})
AUDIO_EXTENSIONS = frozenset({".wav", ".flac", ".mp3", ".m4a", ".aac", ".ogg", ".opus", ".oga", ".wma"})  # voice only
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})  # face crops, for training only
MEDIA_EXTENSIONS = VIDEO_EXTENSIONS | AUDIO_EXTENSIONS  # what an analysis takes


def is_audio_file(path: str | os.PathLike) -> bool:
    """True for a file judged by the voice alone (an audio extension)."""
    return Path(path).suffix.lower() in AUDIO_EXTENSIONS


def is_media_file(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in MEDIA_EXTENSIONS


def upload_types() -> list[str]:
    """The extensions an upload box accepts, without the dot, videos first (e.g. ["3gp", ..., "wav", ...])."""
    return sorted(e[1:] for e in VIDEO_EXTENSIONS) + sorted(e[1:] for e in AUDIO_EXTENSIONS)


def iter_media(paths: Iterable[str | os.PathLike]) -> Iterator[Path]:
    """Files given directly, and the video and audio files found by walking folders (sorted)."""
    for name in paths:
        p = Path(name)
        if p.is_dir():
            for root, dirs, files in os.walk(p):
                dirs.sort()
                for f in sorted(files):
                    if is_media_file(f):
                        yield Path(root) / f
        else:
            yield p


def check_inputs(names: Iterable[str]) -> None:
    """InputError naming the inputs that do not exist (a mistyped file or folder), before anything loads. A
    link that leads nowhere exists: its own analysis says what is wrong with it. URLs (s3://...) are not
    checked here."""
    missing = [str(name) for name in names if "://" not in str(name) and not os.path.lexists(name)]
    if missing:
        raise InputError(f"no such file or folder: {', '.join(missing)}")


def make_folder(folder: Path, option: str, choose: str) -> None:
    """Create `folder` (and its parents) for what `option` (e.g. "--out r/x.csv") writes; InputError naming
    `option` and what to `choose` instead when it cannot be: a file where a folder on its way should be, no
    permission, a name too long, a read-only filesystem."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):  # a file where a folder on its way should be
        raise InputError(f"{option} cannot be written (a file stands where its folder should be); choose "
                         f"{choose}") from None
    except OSError as e:
        raise InputError(f"{option} cannot be written ({e.strerror or e}); choose {choose}") from None
