"""The media files the product takes, by extension (one list for the CLI, scan --ray, the page and training
manifests), and the walk that finds them in folders."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from .errors import InputError

VIDEO_EXTENSIONS = {".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp", ".ts"}
AUDIO_EXTENSIONS = {".wav", ".flac", ".mp3", ".m4a", ".aac", ".ogg", ".opus", ".oga", ".wma"}  # voice-only reports
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}  # training manifests only (face crops)
MEDIA_EXTENSIONS = VIDEO_EXTENSIONS | AUDIO_EXTENSIONS  # what scan and analyze take


def is_audio_file(path: Path) -> bool:
    return path.suffix.lower() in AUDIO_EXTENSIONS


def walk_media(folder: Path, extensions: set[str] = MEDIA_EXTENSIONS) -> Iterator[Path]:
    """The files under `folder` with one of `extensions`, sorted, subfolders after their parent's files."""
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            if Path(name).suffix.lower() in extensions:
                yield Path(root) / name


def iter_videos(paths: Iterable[str]) -> Iterator[Path]:
    """Files given directly, and video and audio files found by walking folders (sorted)."""
    for name in paths:
        p = Path(name)
        if p.is_dir():
            yield from walk_media(p)
        else:
            yield p


def check_inputs(names: Iterable[str]) -> None:
    """InputError naming the inputs that do not exist (a mistyped file or folder), before anything loads. A
    link that leads nowhere exists: its own analysis says what is wrong with it. URLs (s3://...) are not
    checked here."""
    missing = [name for name in names if "://" not in name and not os.path.lexists(name)]
    if missing:
        raise InputError(f"no such file or folder: {', '.join(missing)}")
