"""The OpenVINO runtime: the same outputs as PyTorch on the same crops, the converted-model cache, the choice."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

pytest.importorskip("openvino", reason="the openvino extra is not installed (pip install '.[openvino]')")

from conftest import FACE_FILES, SHARED_MODELS, astronaut_bgr, face_files_dir  # noqa: E402
from deepfake_core import AnalysisSettings, Detector, SettingsError  # noqa: E402
from deepfake_core.models import ov_runtime  # noqa: E402
from deepfake_core.models.checkpoints import LoadedModel  # noqa: E402
from deepfake_core.analysis.fusion import softmax  # noqa: E402
from deepfake_core.models.networks import ORIGINAL_VIDEO, ModelSpec, build_audio_model, build_model, build_video_model, \
    face_tensor  # noqa: E402
from deepfake_core.models.ov_runtime import OpenVinoRunner, converted_model  # noqa: E402
from deepfake_core.models.runtime import TorchRunner, cpu_has_bf16, pick_runtime  # noqa: E402
from deepfake_core.models.registry import sha256_file  # noqa: E402

CPU = torch.device("cpu")


def face_crops(n: int, seed: int) -> torch.Tensor:
    """(n, 3, 299, 299) video-model inputs: the astronaut's face cut at random places and scales, some
    mirrored, brightened or darkened, as face boxes from a detector would be."""
    rng = np.random.default_rng(seed)
    image = astronaut_bgr()[:, :, ::-1]  # RGB, 512 x 512
    crops = []
    for _ in range(n):
        side = int(rng.integers(90, 300))
        x, y = (int(v) for v in rng.integers(0, 512 - side + 1, size=2))
        crop = image[y:y + side, x:x + side]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        crop = np.clip(crop.astype(np.float32) * rng.uniform(0.6, 1.4), 0, 255).astype(np.uint8)
        crops.append(face_tensor(crop, ORIGINAL_VIDEO))
    return torch.stack(crops)


def calibrate_batchnorm(module: torch.nn.Module, inputs: torch.Tensor) -> torch.nn.Module:
    """Random weights, BatchNorm statistics measured on `inputs` (as training would leave them), so the
    network's outputs vary from crop to crop instead of saturating."""
    for m in module.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # a plain average over the batches
    module.train()
    for m in module.modules():
        if isinstance(m, torch.nn.Dropout):
            m.eval()
    with torch.no_grad():
        for i in range(0, len(inputs), 8):
            module(inputs[i:i + 8])
    return module.eval()


@pytest.fixture(scope="module")
def calibrated_models(tmp_path_factory):
    """A models folder: original-layout checkpoints with BatchNorm statistics from face crops, and res10."""
    face_files_dir()
    torch.manual_seed(3)
    crops = face_crops(16, seed=1)
    video = calibrate_batchnorm(build_video_model(), crops)
    audio = calibrate_batchnorm(build_audio_model(), crops.flip(-1))
    directory = tmp_path_factory.mktemp("calibrated-models")
    torch.save({"epoch": 7, "model_state_dict": video.state_dict()}, directory / "epoch_007.pt")
    torch.save({"epoch": 12, "model_state_dict": audio.state_dict()}, directory / "best_audio_xception.pth")
    for name in FACE_FILES:
        shutil.copy(SHARED_MODELS / name, directory / name)
    return directory


@pytest.mark.slow
def test_openvino_matches_pytorch_on_the_same_crops(calibrated_models):
    """fp32: the same network to 1e-3 of a logit. bf16: each runtime within 0.05 of fp32 PyTorch's P(fake),
    OpenVINO no further off than twice PyTorch's own bf16 error (+0.01)."""
    detector = Detector.load(calibrated_models, device="cpu", runtime="torch", precision="fp32", warmup=False)
    x = face_crops(12, seed=7)  # not the crops the statistics came from
    for loaded in (detector.video, detector.audio):
        model, _ = converted_model(loaded, "bf16")
        reference = TorchRunner(loaded.module, CPU, "fp32")(x)
        p_reference = softmax(reference)[:, 0]
        assert p_reference.std() > 0.02, "outputs must vary from crop to crop for the comparison to mean anything"
        ov32 = OpenVinoRunner(model, "fp32")(x)
        assert ov32.shape == (12, 2) and ov32.dtype == np.float32
        assert np.abs(ov32 - reference).max() < 1e-3
        if not cpu_has_bf16():
            continue
        torch16 = np.abs(softmax(TorchRunner(loaded.module, CPU, "bf16")(x))[:, 0] - p_reference).max()
        ov16 = np.abs(softmax(OpenVinoRunner(model, "bf16")(x))[:, 0] - p_reference).max()
        assert ov16 < 0.05 and ov16 <= 2 * torch16 + 0.01, (loaded.spec.modality, ov16, torch16)


@pytest.mark.slow
def test_openvino_gives_the_same_report(calibrated_models, face_video):
    """Same faces, same windows; every face's P(fake) and the verdict as PyTorch's at the same precision."""
    s = AnalysisSettings(fusion="adaptive")
    reports = {rt: Detector.load(calibrated_models, device="cpu", runtime=rt).analyze(face_video, s)
               for rt in ("torch", "openvino")}
    a, b = reports["torch"], reports["openvino"]
    assert a.models["runtime"] == "torch" and b.models["runtime"] == "openvino"
    assert a.models["precision"] == b.models["precision"]
    assert len(a.timeline) == len(b.timeline) == 20
    assert [r.box for r in a.timeline] == [r.box for r in b.timeline]
    tolerance = 0.05 if a.models["precision"] == "bf16" else 1e-3
    # (one face moving across the clip scores alike in every frame; the crop test above has varied scores)
    for key in ("video_p_fake", "audio_p_fake", "fused_p_fake"):
        diff = np.abs(np.array([getattr(r, key) for r in a.timeline]) - np.array([getattr(r, key) for r in b.timeline]))
        assert diff.max() < tolerance, key
    assert abs(a.fused_real_prob - b.fused_real_prob) < tolerance
    if abs(a.fused_real_prob - 0.5) > tolerance:
        assert a.verdict == b.verdict


# -- the cache ---------------------------------------------------------------------------------------------------
SMALL = ModelSpec("tf_efficientnet_lite0", "video", "linear", 64, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


def small_model_file(path, seed: int) -> LoadedModel:
    torch.manual_seed(seed)
    module = build_model(SMALL).eval()
    torch.save(module.state_dict(), path)
    return LoadedModel(module, SMALL, path, sha256_file(path), {})


def entries(root):
    return sorted(p for p in root.iterdir())


def test_converted_models_are_cached_by_sha256(tmp_path):
    root, path = tmp_path / "cache", tmp_path / "model.pt"
    x = torch.randn(3, 3, 64, 64)
    first = small_model_file(path, seed=0)
    _, origin = converted_model(first, "fp32", root)
    assert origin == "converted" and len(entries(root)) == 1
    model, origin = converted_model(first, "fp32", root)
    assert origin == "cache"
    assert np.abs(OpenVinoRunner(model, "fp32")(x) - TorchRunner(first.module, CPU, "fp32")(x)).max() < 1e-4
    _, origin = converted_model(first, "bf16", root)  # another precision: another entry, the first kept
    assert origin == "converted" and len(entries(root)) == 2

    second = small_model_file(path, seed=1)  # the same file, new weights: a new sha256
    assert second.sha256 != first.sha256
    model, origin = converted_model(second, "fp32", root)
    assert origin == "converted"
    assert len(entries(root)) == 1 and second.sha256[:32] in entries(root)[0].name  # the old entries are gone
    new = OpenVinoRunner(model, "fp32")(x)
    assert np.abs(new - TorchRunner(second.module, CPU, "fp32")(x)).max() < 1e-4
    assert np.abs(new - TorchRunner(first.module, CPU, "fp32")(x)).max() > 1e-2  # not the old network


def test_a_damaged_cache_entry_is_converted_again(tmp_path):
    root = tmp_path / "cache"
    loaded = small_model_file(tmp_path / "model.pt", seed=0)
    converted_model(loaded, "fp32", root)
    weights = entries(root)[0] / "model.bin"
    weights.write_bytes(weights.read_bytes()[:1000])
    model, origin = converted_model(loaded, "fp32", root)
    assert origin == "converted"
    x = torch.randn(2, 3, 64, 64)
    assert np.abs(OpenVinoRunner(model, "fp32")(x) - TorchRunner(loaded.module, CPU, "fp32")(x)).max() < 1e-4
    assert converted_model(loaded, "fp32", root)[1] == "cache"
    assert [p.name for p in root.iterdir() if p.name.startswith(".")] == []  # no temporary folder left
    (entries(root)[0] / ov_runtime.SOURCE_FILE).unlink()  # an incomplete entry
    assert converted_model(loaded, "fp32", root)[1] == "converted"
    assert converted_model(loaded, "fp32", root)[1] == "cache"


def test_an_entry_left_half_written_by_a_killed_process_is_removed_by_the_next_store(tmp_path):
    root = tmp_path / "cache"
    loaded = small_model_file(tmp_path / "model.pt", seed=0)
    key = ov_runtime.cache_key(loaded, "fp32")
    old, young, other = root / f".{key}.k1ll3d_9", root / f".{key}.wr1t1ng0", root / ".keep-me"
    for folder in (old, young, other):
        folder.mkdir(parents=True)
        (folder / "model.xml").write_text("<net")  # cut off, as kill -9 leaves it
    stale = time.time() - ov_runtime.ABANDONED_S - 60
    for folder in (old, other):
        os.utime(folder, (stale, stale))
    assert converted_model(loaded, "fp32", root)[1] == "converted"
    assert not old.exists()  # left by a killed process: gone
    assert young.is_dir() and other.is_dir()  # maybe another process's, still writing; not ours
    assert converted_model(loaded, "fp32", root)[1] == "cache"


SIGTERM_SCRIPT = """
import sys, time
from pathlib import Path
from deepfake_core import cli
from deepfake_core.cli import analyze
from deepfake_core.models import ov_runtime

def slow_save(model, path, compress_to_fp16=True):  # the conversion's files, half written, then a long write
    Path(path).write_text("<net")
    time.sleep(120)

def conversion(args):  # `analyze` stands for any command storing a converted model
    ov_runtime.ov.save_model = slow_save
    source = {"model_path": "m.pt", "sha256": "0" * 64, "modality": "video"}
    ov_runtime.cached("video-x-0000-fp32-64px-ov1-0.1.0", source, lambda: None, Path(sys.argv[1]))
    return 0

analyze.cmd_analyze = conversion
sys.exit(cli.main(["analyze", "clip.mp4"]))
"""


def test_sigterm_while_the_cache_is_written_exits_143_and_leaves_nothing(tmp_path):
    root = tmp_path / "cache"
    proc = subprocess.Popen([sys.executable, "-c", SIGTERM_SCRIPT, str(root)], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not list(root.glob(".*/model.xml")):  # the temporary entry is being written
            assert proc.poll() is None and time.monotonic() < deadline, "the store never started"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 143 and err.strip().splitlines()[-1] == "terminated", err
    assert list(root.iterdir()) == []  # the `finally` ran: no half-written entry


def test_an_unwritable_cache_still_runs(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    loaded = small_model_file(tmp_path / "model.pt", seed=0)
    model, origin = converted_model(loaded, "fp32", blocker / "cache")
    assert origin == "converted"
    x = torch.randn(2, 3, 64, 64)
    assert np.abs(OpenVinoRunner(model, "fp32")(x) - TorchRunner(loaded.module, CPU, "fp32")(x)).max() < 1e-4


def test_cache_location_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(ov_runtime.CACHE_ENV, str(tmp_path / "ov"))
    assert ov_runtime.cache_root() == tmp_path / "ov"
    monkeypatch.delenv(ov_runtime.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert ov_runtime.cache_root() == tmp_path / "xdg" / "deepfake-detector" / "openvino"


def test_an_empty_batch_gives_no_rows(tmp_path):
    loaded = small_model_file(tmp_path / "model.pt", seed=0)
    runner = OpenVinoRunner(converted_model(loaded, "fp32", tmp_path / "cache")[0], "fp32")
    assert runner(torch.zeros(0, 3, 64, 64)).shape == (0, 2)


# -- which runtime -------------------------------------------------------------------------------------------------
def test_auto_picks_openvino_on_a_cpu_and_torch_elsewhere(monkeypatch):
    import deepfake_core.models.runtime as runtime

    assert pick_runtime("auto", CPU) == "openvino"
    assert pick_runtime("auto", torch.device("cuda")) == "torch"
    assert pick_runtime("auto", CPU, compile=True) == "torch"
    assert pick_runtime("torch", CPU) == "torch"
    monkeypatch.setattr(runtime, "openvino_installed", lambda: False)
    assert pick_runtime("auto", CPU) == "torch"
    with pytest.raises(SettingsError, match=r"deepfake-detector\[openvino\]"):
        pick_runtime("openvino", CPU)


def test_impossible_runtime_choices_are_clear_errors():
    with pytest.raises(SettingsError, match="--device cpu"):
        pick_runtime("openvino", torch.device("cuda"))
    with pytest.raises(SettingsError, match="compile"):
        pick_runtime("openvino", CPU, compile=True)
    with pytest.raises(SettingsError, match="auto, torch, openvino.*'openvino'"):
        pick_runtime("openvnio", CPU)


def test_cli_runtime_reaches_the_report(original_models, face_video, capsys):
    import json

    from deepfake_core.cli import main

    face_files_dir()
    for runtime in ("torch", "openvino"):
        code = main(["analyze", str(face_video), "--models-dir", str(original_models), "--runtime", runtime,
                     "--max-samples", "2", "--json"])
        assert code == 0
        models = json.loads(capsys.readouterr().out)["models"]
        assert models["runtime"] == runtime and models["device"] == "cpu"
    assert main(["analyze", str(face_video), "--models-dir", str(original_models), "--runtime", "openvino",
                 "--compile"]) == 2
    assert "compile" in capsys.readouterr().err
