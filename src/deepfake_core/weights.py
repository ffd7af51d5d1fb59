"""The model files this project knows, each pinned by sha256: the registry, the models directory,
verified downloads (`pull`), checks (`verify`) and conversion to safetensors (`convert`).

Nothing here downloads at import time; only `pull` (the `deepfake-detect weights pull` command, or the
app's button) ever touches the network.

Downloading: see `download.py` for what pooch does and what is added to it.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .download import DownloadOptions, Notes, ProgressCallback, ResumableDownload, megabytes
from .errors import ChecksumMismatch, CheckpointError, DownloadError, ModelFilesMissing, SettingsError, WeightsError

MODELS_DIR_ENV = "DEEPFAKE_MODELS_DIR"
MIRROR_ENV = "DEEPFAKE_WEIGHTS_MIRROR"
PULL_COMMAND = "deepfake-detect weights pull"
_CHUNK = 1 << 20  # bytes hashed per read


@dataclass(frozen=True)
class WeightsFile:
    name: str  # short name used on the command line
    filename: str  # file name inside the models directory
    urls: tuple[str, ...]  # origins, tried in order
    sha256: str
    size: int  # bytes
    description: str
    source: str  # where it comes from and under what terms


REGISTRY: tuple[WeightsFile, ...] = (
    WeightsFile(
        name="video",
        filename="epoch_007.pt",
        urls=("https://media.githubusercontent.com/media/Mbulss/Deepfake-Detecetor/main/epoch_007.pt",),
        sha256="ef01f8f6c5881a7b2b1383e91a8860b2cee89c2d49e4cb86fb31c26128f11897",
        size=206_612_875,
        description="video model: timm legacy_xception, 2 classes (FAKE, REAL), face crops 299x299",
        source="Mbulss/Deepfake-Detecetor (Git LFS object), trained on FakeAVCeleb; "
        "research use: FakeAVCeleb's terms apply",
    ),
    WeightsFile(
        name="audio",
        filename="best_audio_xception.pth",
        urls=("https://media.githubusercontent.com/media/Mbulss/Deepfake-Detecetor/main/best_audio_xception.pth",),
        sha256="e3629571f6795250f24e76f551bd73ee73272b542f3367733fc729e5097e5695",
        size=264_347_911,
        description="audio model: legacy_xception backbone + MLP head, mel windows 299x299",
        source="Mbulss/Deepfake-Detecetor (Git LFS object), trained on FakeAVCeleb; "
        "research use: FakeAVCeleb's terms apply",
    ),
    WeightsFile(
        name="face-net",
        filename="deploy.prototxt",
        urls=("https://raw.githubusercontent.com/opencv/opencv/master/samples/dnn/face_detector/deploy.prototxt",),
        sha256="dcd661dc48fc9de0a341db1f666a2164ea63a67265c7f779bc12d6b3f2fa67e9",
        size=28_104,
        description="res10 SSD face detector: network definition (Caffe prototxt)",
        source="OpenCV samples (Apache-2.0)",
    ),
    WeightsFile(
        name="face-weights",
        filename="res10_300x300_ssd_iter_140000_fp16.caffemodel",
        urls=(
            "https://raw.githubusercontent.com/opencv/opencv_3rdparty/"
            "dnn_samples_face_detector_20180205_fp16/res10_300x300_ssd_iter_140000_fp16.caffemodel",
        ),
        sha256="510ffd2471bd81e3fcc88a5beb4eae4fb445ccf8333ebc54e7302b83f4158a76",
        size=5_351_047,
        description="res10 SSD face detector: weights (fp16 Caffe model)",
        source="OpenCV opencv_3rdparty, branch dnn_samples_face_detector_20180205_fp16",
    ),
)

# File names the loader also accepts in place of a registry file.
VIDEO_FILES = ("epoch_007.safetensors", "epoch_007.pt")  # preference order
AUDIO_FILES = ("best_audio_xception.safetensors", "best_audio_xception.pth")
FACE_PROTOTXT = "deploy.prototxt"
FACE_CAFFEMODELS = ("res10_300x300_ssd_iter_140000_fp16.caffemodel", "res10_300x300_ssd_iter_140000.caffemodel")


def registry_entry(name: str) -> WeightsFile:
    for entry in REGISTRY:
        if entry.name == name:
            return entry
    raise KeyError(f"unknown model file {name!r}; known: {', '.join(e.name for e in REGISTRY)}")


def pinned_entry(sha256: str) -> WeightsFile | None:
    """The registry entry whose pinned hash is `sha256`, if any."""
    for entry in REGISTRY:
        if entry.sha256 == sha256:
            return entry
    return None


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def user_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "deepfake-detector" / "models"


def models_dir_candidates(explicit: str | os.PathLike | None = None) -> list[Path]:
    """Where model files are looked for, in order: the argument, $DEEPFAKE_MODELS_DIR, ./models,
    the per-user cache directory."""
    if explicit:
        return [Path(explicit).expanduser()]
    if os.environ.get(MODELS_DIR_ENV):
        return [Path(os.environ[MODELS_DIR_ENV]).expanduser()]
    return [Path("models"), user_cache_dir()]


def resolve_models_dir(explicit: str | os.PathLike | None = None) -> Path:
    """The models directory in use: the first candidate holding a known model file, else the first
    that exists, else the last (the per-user cache, to be created by `weights pull`)."""
    candidates = models_dir_candidates(explicit)
    known = {e.filename for e in REGISTRY} | set(VIDEO_FILES) | set(AUDIO_FILES) | set(FACE_CAFFEMODELS)
    for path in candidates:
        if path.is_dir() and any((path / name).is_file() for name in known):
            return path
    for path in candidates:
        if path.is_dir():
            return path
    return candidates[-1]


def first_existing(models_dir: Path, names: tuple[str, ...]) -> Path | None:
    for name in names:
        if (models_dir / name).is_file():
            return models_dir / name
    return None


# -- what is installed ------------------------------------------------------------------------------------
# Names the loader accepts in place of a registry file (a converted .safetensors, the fp32 caffemodel).
_ALTERNATIVES = {"epoch_007.pt": VIDEO_FILES, "best_audio_xception.pth": AUDIO_FILES,
                 FACE_CAFFEMODELS[0]: FACE_CAFFEMODELS}

OK, MISSING, CORRUPT = "ok", "missing", "corrupt"


def accepted_files(entry: WeightsFile) -> tuple[str, ...]:
    """The file names that stand for `entry` when the detector loads, in its order of preference."""
    return _ALTERNATIVES.get(entry.filename, (entry.filename,))


def installed_file(entry: WeightsFile, models_dir: str | os.PathLike) -> Path | None:
    """The file the detector would load for `entry`, if any (existence only, no hashing)."""
    return first_existing(Path(models_dir), accepted_files(entry))


def missing_files(models_dir: str | os.PathLike | None = None) -> list[WeightsFile]:
    """Registry entries for which the models directory holds no usable file (neither the pinned
    file nor a file the loader accepts instead, such as a converted `.safetensors`). Fast: nothing is
    hashed; `verify` checks the bytes."""
    directory = resolve_models_dir(models_dir)
    return [entry for entry in REGISTRY if installed_file(entry, directory) is None]


def select_entries(names: Iterable[str] | None = None) -> list[WeightsFile]:
    """Registry entries by short name or file name; None means all of them."""
    if names is None:
        return list(REGISTRY)
    names = list(names)
    if not names:
        return list(REGISTRY)
    chosen = []
    for name in names:
        match = [e for e in REGISTRY if name in (e.name, e.filename)]
        if not match:
            known = [e.name for e in REGISTRY]
            near = difflib.get_close_matches(name, known + [e.filename for e in REGISTRY], n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise SettingsError(f"unknown model file {name!r}{hint}; known: {', '.join(known)}")
        if match[0] not in chosen:
            chosen.append(match[0])
    return chosen


def file_status(entry: WeightsFile, models_dir: str | os.PathLike) -> str:
    """"ok", "missing" or "corrupt" for the pinned file of `entry` (re-hashed every time)."""
    path = Path(models_dir) / entry.filename
    if not path.is_file():
        return MISSING
    if path.stat().st_size != entry.size or sha256_file(path) != entry.sha256:
        return CORRUPT
    return OK


def verify(names: Iterable[str] | None = None, models_dir: str | os.PathLike | None = None) -> dict[str, str]:
    """Re-hash the installed registry files: {name: "ok" | "missing" | "corrupt"}.

    Only the pinned files count: a converted `.safetensors` is not a download and has no pinned hash.
    """
    directory = resolve_models_dir(models_dir)
    return {entry.name: file_status(entry, directory) for entry in select_entries(names)}


def install_hint(filenames: Iterable[str], models_dir: str | os.PathLike) -> str:
    """Lines naming each missing file (what it is, size, URL) and the one command that installs them."""
    by_file = {}
    for entry in REGISTRY:
        for name in accepted_files(entry):
            by_file.setdefault(name, entry)
    lines = []
    for name in filenames:
        entry = by_file.get(Path(name).name)
        if entry is None:
            lines.append(f"  {name}")
        else:
            lines.append(f"  {entry.filename}  {entry.description}, {megabytes(entry.size)}, from {entry.urls[0]}")
    lines.append(f"Install them with:  {PULL_COMMAND} --models-dir {models_dir}")
    lines.append(f"Offline: download them elsewhere and copy them into {models_dir}, "
                 f"then check them with: deepfake-detect weights verify --models-dir {models_dir}")
    return "\n".join(lines)


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
                say(f"{entry.filename}: already installed, sha256 ok")
                paths.append(directory / entry.filename)
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


def _install(entry: WeightsFile, directory: Path, urls: tuple[str, ...], options: DownloadOptions,
             progress: bool | ProgressCallback, say: Notes) -> Path:
    """Download `entry` from the first of `urls` that works, through pooch (hash check, atomic rename)."""
    import logging

    import pooch

    from . import __version__

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


# -- convert ----------------------------------------------------------------------------------------------
CONVERT_CHECK_BATCH = 2  # random inputs both networks score to show the conversion is faithful...
CONVERT_CHECK_SIZE = 128  # ...at this many pixels square: every weight takes part, at a fifth of the cost of 299
FP16_TOLERANCE = 1e-2  # largest allowed difference in probability for an fp16 conversion


def convert(source: str | os.PathLike, output: str | os.PathLike | None = None, modality: str | None = None,
            fp16: bool = False, models_dir: str | os.PathLike | None = None) -> Path:
    """Convert an original checkpoint (`.pt` / `.pth`) into a `.safetensors` file the loader prefers.

    `source` is a path, or "video" / "audio" for that file in the models directory. The output (default:
    the source with the suffix `.safetensors`, e.g. `epoch_007.safetensors`) holds the tensors in fp32
    (fp16 with `fp16=True`) and metadata: architecture, modality, head, class order, input size, mean/std,
    the source's file name and sha256, dtype. Before the file is moved into place it is loaded strictly
    through `checkpoints.load_model` and both networks score the same random inputs: fp32 must give
    identical probabilities, fp16 within 1e-2; otherwise nothing is written and CheckpointError is raised.
    """
    import torch

    from . import __version__
    from .checkpoints import load_model, save_safetensors

    src = _convert_source(source, models_dir)
    digest = sha256_file(src)
    if modality is None:
        modality = _guess_modality(src, digest)
    if modality not in ("video", "audio"):
        raise SettingsError(f"say which model {src.name} is: modality 'video' or 'audio'")
    out = Path(output) if output else src.with_suffix(".safetensors")
    if out.suffix != ".safetensors":
        raise SettingsError(f"the output must end in .safetensors; got {out.name}")
    if out.resolve() == src.resolve():
        raise SettingsError(f"the output {out} would overwrite its source; choose another with --out")
    original = load_model(src, modality, sha256=digest)
    dtype = torch.float16 if fp16 else torch.float32
    pinned = pinned_entry(digest)
    extra = {"source_file": src.name, "source_sha256": digest, "dtype": str(dtype).replace("torch.", ""),
             "converted_by": f"deepfake_core {__version__}"}
    if pinned is not None:
        extra["source_name"] = pinned.name
    tmp = out.with_name(out.stem + ".tmp.safetensors")
    try:
        save_safetensors(original.module, original.spec, tmp, extra=extra, dtype=dtype)
        converted = load_model(tmp, modality)
        diff = _probability_difference(original.module, converted.module)
        if (diff != 0.0) if not fp16 else (diff > FP16_TOLERANCE):
            raise CheckpointError(
                f"the conversion of {src.name} changed its probabilities by up to {diff:.3g} "
                f"(allowed: {0 if not fp16 else FP16_TOLERANCE}); nothing was written"
            )
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def _convert_source(source: str | os.PathLike, models_dir) -> Path:
    if str(source) in ("video", "audio"):
        directory = resolve_models_dir(models_dir)
        entry = registry_entry(str(source))
        path = directory / entry.filename
        if not path.is_file():
            raise ModelFilesMissing([entry.filename], str(directory))
        return path
    path = Path(source).expanduser()
    if not path.is_file():
        raise SettingsError(f"no such checkpoint: {path} (give a file, or 'video' / 'audio' for the models folder)")
    return path


def _guess_modality(path: Path, digest: str) -> str | None:
    if path.suffix == ".safetensors":  # ours name their model (e.g. an fp32 file converted again to fp16)
        from .checkpoints import read_safetensors_metadata

        return read_safetensors_metadata(path).get("modality")
    pinned = pinned_entry(digest)
    if pinned is not None and pinned.name in ("video", "audio"):
        return pinned.name
    if path.name in VIDEO_FILES:
        return "video"
    if path.name in AUDIO_FILES:
        return "audio"
    return None


def _probability_difference(a, b) -> float:
    """Largest absolute difference between the two networks' softmax outputs on fixed random inputs."""
    import torch

    g = torch.Generator().manual_seed(0)
    x = torch.randn((CONVERT_CHECK_BATCH, 3, CONVERT_CHECK_SIZE, CONVERT_CHECK_SIZE), generator=g)
    with torch.inference_mode():
        pa = torch.softmax(a.eval()(x).float(), dim=1)
        pb = torch.softmax(b.eval()(x).float(), dim=1)
    return float((pa - pb).abs().max())


# -- the built-in video model (shipped inside the package) ------------------------------------------------
BUILTIN_DIR = Path(__file__).resolve().parent / "builtin"
BUILTIN_VIDEO_FILE = "video_lite0_pooled.safetensors"
# The sha256 of the shipped built-in model: set it with the file. Only a file with this hash counts as the
# shipped model in reports (None: none shipped yet, so any file in its place is reported as unofficial).
BUILTIN_SHA256: str | None = "b0d7bbee8b039505854dcd809aff510f44f5b5b5c0a177fd9e4f98d97dcbd6e7"
VIDEO_MODEL_CHOICES = ("original", "builtin")  # --video-model also takes a path
MODEL_CARD = "docs/MODEL_CARD.md"


def builtin_video_file() -> Path | None:
    """The built-in video model inside the installed package, or None when this build has none."""
    path = BUILTIN_DIR / BUILTIN_VIDEO_FILE
    return path if path.is_file() else None


def is_shipped_builtin(path: str | os.PathLike, sha256: str) -> bool:
    """True when `path` is the package's built-in model file and holds the shipped bytes (BUILTIN_SHA256)."""
    try:
        same_place = Path(path).resolve() == (BUILTIN_DIR / BUILTIN_VIDEO_FILE).resolve()
    except OSError:
        return False
    return same_place and BUILTIN_SHA256 is not None and sha256 == BUILTIN_SHA256


def builtin_missing_message() -> str:
    return (f"the built-in video model ({BUILTIN_VIDEO_FILE}) is not part of this installation: no model "
            f"trained by the project has been shipped yet ({MODEL_CARD} says why and how to train one). "
            "Use --video-model original with the original checkpoint (deepfake-detect weights pull), "
            "or --video-model PATH.")


# -- the built-in audio model (shipped inside the package when it passed its rule) -------------------------
BUILTIN_AUDIO_FILE = "audio_speechcnn.safetensors"
AUDIO_MODEL_CHOICES = ("original", "builtin", "none")  # --audio-model also takes a path
AUDIO_MODEL_CARD = "docs/MODEL_CARD_AUDIO.md"


def builtin_audio_file() -> Path | None:
    """The built-in audio model inside the installed package, or None when this build has none."""
    path = BUILTIN_DIR / BUILTIN_AUDIO_FILE
    return path if path.is_file() else None


def builtin_audio_missing_message() -> str:
    return (f"the built-in audio model ({BUILTIN_AUDIO_FILE}) is not part of this installation "
            f"({AUDIO_MODEL_CARD} says why and how to train one). Use --audio-model original with the original "
            "checkpoint (deepfake-detect weights pull), or --audio-model PATH.")
