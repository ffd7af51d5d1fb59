"""Shared fixtures: generated media and random-initialised checkpoints in the original layouts.

Nothing here downloads anything. The res10 face-detector files come from ../shared/models (or
$DEEPFAKE_TEST_FACE_MODELS); a test needing them skips, naming the missing file, only when neither exists.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import torch

from deepfake_core.offline import no_telemetry
from deepfake_core.train.demo import encode_mono

no_telemetry()  # tests that import openvino themselves (importorskip) send no usage event either

ROOT = Path(__file__).resolve().parents[1]
SHARED_MODELS = Path(os.environ.get("DEEPFAKE_TEST_FACE_MODELS", ROOT.parent / "shared" / "models"))
FACE_FILES = ("deploy.prototxt", "res10_300x300_ssd_iter_140000_fp16.caffemodel")
FPS = 25
AUDIO_RATE = 16_000


def astronaut_bgr() -> np.ndarray:
    import skimage.data

    return cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)


def moving_face_frames(n: int, size=(640, 800), face=None):
    """`n` BGR frames (h, w) = size: the astronaut photo drifting right on a green background."""
    face = astronaut_bgr() if face is None else face
    h, w = size
    fh, fw = face.shape[:2]
    for i in range(n):
        frame = np.full((h, w, 3), (60, 120, 90), np.uint8)
        x = int((w - fw) * (i / max(1, n - 1)))
        y = (h - fh) // 2
        frame[y:y + fh, x:x + fw] = face
        yield frame


def blank_frames(n: int, size=(360, 480)):
    for i in range(n):
        frame = np.full((size[0], size[1], 3), 40 + (i % 50), np.uint8)
        cv2.circle(frame, (50 + 3 * i % size[1], size[0] // 2), 30, (200, 80, 80), -1)
        yield frame


def tone(seconds: float, rate: int = AUDIO_RATE, freq: float = 440.0, seed: int = 0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    noise = np.random.default_rng(seed).normal(0, 0.02, t.shape)
    return (0.3 * np.sin(2 * np.pi * freq * t) + noise).astype(np.float32)


def speech_like(seconds: float, rate: int = AUDIO_RATE, seed: int = 0) -> np.ndarray:
    """A voice-like signal: a harmonic series on a gliding 100-140 Hz pitch, switched on and off at a syllable
    rate (3.5 Hz) with quiet pauses, over faint noise. `speech.has_speech` takes it for speech; a tone it does not."""
    t = np.arange(int(seconds * rate)) / rate
    rng = np.random.default_rng(seed)
    f0 = 120 + 20 * np.sin(2 * np.pi * 0.5 * t + rng.uniform(0, np.pi))
    phase = 2 * np.pi * np.cumsum(f0) / rate
    voice = sum(np.sin(k * phase) / k for k in range(1, 30))
    envelope = np.clip(np.sin(2 * np.pi * 3.5 * t), 0, None) ** 2
    return (0.2 * envelope * voice + rng.normal(0, 0.002, t.shape)).astype(np.float32)


def write_video(path: Path, frames, fps: int = FPS, audio: np.ndarray | None = None,
                audio_rate: int = AUDIO_RATE, rotation: int | None = None,
                options: dict[str, str] | None = None) -> Path:
    """Encode BGR frames (and optional mono float audio) with PyAV: the library's own clip writer."""
    from deepfake_core.train.demo import write_clip

    return write_clip(path, list(frames), fps=fps, audio=audio, audio_rate=audio_rate, rotation=rotation,
                      options=options)


def write_audio_only(path: Path, samples: np.ndarray, rate: int = AUDIO_RATE) -> Path:
    with av.open(str(path), mode="w") as out:
        s = out.add_stream("aac", rate=rate)
        s.layout = "mono"
        encode_mono(out, s, samples, rate)
    return path


def face_files_dir() -> Path:
    for name in FACE_FILES:
        if not (SHARED_MODELS / name).is_file():
            pytest.skip(f"res10 face-detector file {name} not found in {SHARED_MODELS}")
    return SHARED_MODELS


def save_original_checkpoints(directory: Path, seed: int = 0, video_prefix: str = "",
                              audio_prefix: str = "backbone.") -> tuple[torch.nn.Module, torch.nn.Module]:
    """Random-initialised models saved as the original project saved them:
    video `epoch_007.pt` as a dict with model_state_dict (+ optimiser-like plain data), audio
    `best_audio_xception.pth` as {epoch, model_state_dict, optimizer_state_dict, val_loss, val_acc}."""
    from deepfake_core.models.networks import build_audio_model, build_video_model

    torch.manual_seed(seed)
    video, audio = build_video_model().eval(), build_audio_model().eval()
    _randomise_bn(video, seed)
    _randomise_bn(audio, seed + 1)
    vstate = {video_prefix + k: v for k, v in video.state_dict().items()}
    torch.save({"epoch": 7, "model_state_dict": vstate}, directory / "epoch_007.pt")
    astate = {}
    for k, v in audio.state_dict().items():
        astate[(audio_prefix + k[len("backbone."):]) if k.startswith("backbone.") else k] = v
    torch.save({"epoch": 12, "model_state_dict": astate, "optimizer_state_dict": {"state": {}, "param_groups": []},
                "val_loss": 0.25, "val_acc": 0.91}, directory / "best_audio_xception.pth")
    return video, audio


def _randomise_bn(module: torch.nn.Module, seed: int) -> None:
    """Give BatchNorm layers non-trivial statistics so a wrong load changes the outputs."""
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)


@pytest.fixture(scope="session", autouse=True)
def openvino_cache(request, tmp_path_factory) -> Path:
    """Converted OpenVINO models go to pytest's cache folder (.pytest_cache), never the user's: kept between
    runs, so the seeded test checkpoints (same sha256 every run) are converted once."""
    cache = getattr(request.config, "cache", None)
    folder = cache.mkdir("openvino") if cache is not None else tmp_path_factory.mktemp("openvino")
    patch = pytest.MonkeyPatch()
    patch.setenv("DEEPFAKE_OPENVINO_CACHE", str(folder))
    yield Path(folder)
    patch.undo()


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="session")
def face_video(media_dir) -> Path:
    """4 s, 25 fps, 800x640, the astronaut moving across, a speech-like voice (windows without speech are not
    scored, so a tone would leave the audio unjudged)."""
    return write_video(media_dir / "face.mp4", moving_face_frames(100), audio=speech_like(4.0))


@pytest.fixture(scope="session")
def face_video_no_audio(media_dir) -> Path:
    return write_video(media_dir / "face_silent.mp4", moving_face_frames(50))


@pytest.fixture(scope="session")
def faceless_video(media_dir) -> Path:
    return write_video(media_dir / "faceless.mp4", blank_frames(50), audio=speech_like(2.0))


@pytest.fixture(scope="session")
def original_models(tmp_path_factory) -> Path:
    """A models directory holding random-initialised original-layout checkpoints and the res10 files."""
    directory = tmp_path_factory.mktemp("models")
    save_original_checkpoints(directory)
    for name in FACE_FILES:
        src = SHARED_MODELS / name
        if src.is_file():
            shutil.copy(src, directory / name)
    return directory


@pytest.fixture(scope="session")
def detector(original_models):
    from deepfake_core import Detector

    face_files_dir()
    return Detector.load(original_models, device="cpu")


LITE_SPEC_ARGS = ("tf_efficientnet_lite0", "video", "linear", 64, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


@pytest.fixture(scope="session")
def lite_models(tmp_path_factory) -> tuple[Path, Path]:
    """(models folder, video model file): the res10 files and a random tf_efficientnet_lite0 at 64 px, no
    audio model: a detector that analyses in a fraction of the original models' time (API and load tests)."""
    from deepfake_core.models.checkpoints import save_safetensors
    from deepfake_core.models.networks import ModelSpec, build_model

    face_files_dir()
    directory = tmp_path_factory.mktemp("lite_models")
    for name in FACE_FILES:
        shutil.copy(SHARED_MODELS / name, directory / name)
    spec = ModelSpec(*LITE_SPEC_ARGS)
    torch.manual_seed(0)
    model = build_model(spec).eval()
    _randomise_bn(model, 0)
    path = save_safetensors(model, spec, directory / "lite_video.safetensors", {"name": "test-lite"})
    return directory, path


@pytest.fixture(scope="session")
def lite_detector(lite_models):
    from deepfake_core import Detector

    directory, video = lite_models
    return Detector.load(directory, device="cpu", video_model=str(video))
