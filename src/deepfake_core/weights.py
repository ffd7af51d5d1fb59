"""The registry of model files this project knows, each pinned by sha256, and the models directory."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

MODELS_DIR_ENV = "DEEPFAKE_MODELS_DIR"
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
