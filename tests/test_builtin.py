"""The built-in video model: choosing it, loading it from its metadata, shipping it, and training one
end to end (real crops against self-blended pseudo-fakes) on a tiny generated dataset."""

import json
import shutil

import numpy as np
import pytest
import torch

from conftest import face_files_dir, moving_face_frames, write_video
from deepfake_core import AnalysisSettings
from deepfake_core.models import registry
from deepfake_core.models.checkpoints import load_model, read_safetensors_metadata, save_safetensors
from deepfake_core.cli import main
from deepfake_core.models.networks import ModelSpec, build_model, build_video_model, face_tensor
from deepfake_core.analysis.pipeline import Detector, choose_video_model

LITE0_SMALL = ModelSpec("tf_efficientnet_lite0", "video", "linear", 64, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


def save_lite0(path, seed=0, name="test-builtin"):
    torch.manual_seed(seed)
    model = build_model(LITE0_SMALL).eval()
    save_safetensors(model, LITE0_SMALL, path, {"name": name}, dtype=torch.float16)
    return model


@pytest.fixture()
def fake_builtin(tmp_path, monkeypatch):
    """A builtin folder holding a random lite0 checkpoint, in place of the package's."""
    folder = tmp_path / "builtin"
    save_lite0(folder / registry.BUILTIN_VIDEO_FILE)
    monkeypatch.setattr(registry, "BUILTIN_DIR", folder)
    return folder / registry.BUILTIN_VIDEO_FILE


# -- choosing ------------------------------------------------------------------------------------------
def test_default_is_original_when_installed_else_builtin(tmp_path, original_models, fake_builtin):
    path, which = choose_video_model(None, original_models)
    assert which == "original" and path.name == "epoch_007.pt"
    path, which = choose_video_model(None, tmp_path)
    assert which == "builtin" and path == fake_builtin
    assert choose_video_model("builtin", original_models) == (fake_builtin, "builtin")
    assert choose_video_model("original", tmp_path) == (None, "original")
    assert choose_video_model(str(fake_builtin), tmp_path) == (fake_builtin, "path")


def test_builtin_missing_is_a_clear_error(tmp_path, monkeypatch, face_video, capsys):
    monkeypatch.setattr(registry, "BUILTIN_DIR", tmp_path / "nothing")
    code = main(["analyze", str(face_video), "--models-dir", str(tmp_path), "--video-model", "builtin"])
    _, err = capsys.readouterr()
    assert code == 3
    assert "built-in video model" in err and "MODEL_CARD" in err and "--video-model original" in err


def test_original_choice_without_the_file_names_it(tmp_path, fake_builtin, face_video, capsys):
    code = main(["analyze", str(face_video), "--models-dir", str(tmp_path), "--video-model", "original"])
    _, err = capsys.readouterr()
    assert code == 3 and "epoch_007.pt" in err


def test_analyze_without_models_dir_uses_builtin_and_says_so(tmp_path, fake_builtin, face_video, capsys,
                                                             monkeypatch):
    monkeypatch.chdir(tmp_path)  # no ./models here
    (tmp_path / "empty").mkdir()  # a named folder must exist (tests/test_models_dir.py)
    monkeypatch.setenv("DEEPFAKE_MODELS_DIR", str(tmp_path / "empty"))
    code = main(["analyze", str(face_video), "--json", "--frame-skip", "20", "--abstain-below", "0.5"])
    out, _ = capsys.readouterr()
    assert code == 0
    report = json.loads(out)
    assert report["models"]["video"]["name"] == "test-builtin"
    assert report["models"]["video"]["architecture"] == "tf_efficientnet_lite0"
    assert report["models"]["video"]["file"] == registry.BUILTIN_VIDEO_FILE
    assert report["notes"][0].startswith("video judged by the built-in model") and "no original" in report["notes"][0]
    assert report["verdict"] in ("REAL", "FAKE")


# -- the metadata-driven loader, both families -----------------------------------------------------------
def test_loader_builds_the_architecture_each_file_names(tmp_path):
    lite = save_lite0(tmp_path / "lite.safetensors", seed=3)
    xception = build_video_model().eval()
    from deepfake_core.models.networks import ORIGINAL_VIDEO

    save_safetensors(xception, ORIGINAL_VIDEO, tmp_path / "xception.safetensors")
    a = load_model(tmp_path / "lite.safetensors")
    b = load_model(tmp_path / "xception.safetensors")
    assert a.spec == LITE0_SMALL and b.spec == ORIGINAL_VIDEO
    assert type(a.module).__name__ == "EfficientNet" and type(b.module).__name__ == "Xception"
    crop = np.random.default_rng(0).integers(0, 255, (90, 80, 3), dtype=np.uint8)
    with torch.inference_mode():
        got = a.module(face_tensor(crop, a.spec)[None])
        want = lite.float()(face_tensor(crop, LITE0_SMALL)[None])
    assert torch.allclose(got, want, rtol=1e-2, atol=2e-2)  # the file holds fp16 weights
    assert a.module(face_tensor(crop, a.spec)[None]).shape == (1, 2)


# -- the shipped file ------------------------------------------------------------------------------------
def test_the_package_builtin_is_complete_or_absent_with_a_reason():
    path = registry.builtin_video_file()
    if path is None:  # not shipped: the message must say so and point at the card
        assert "not part of this installation" in registry.builtin_missing_message()
        return
    assert path.stat().st_size <= 12 * 1024 * 1024
    meta = read_safetensors_metadata(path)
    for key in ("architecture", "input_size", "mean", "std", "class_names", "name", "training_data", "terms",
                "dev_eval", "created"):
        assert meta.get(key), key
    assert "non-commercial" in meta["terms"]
    loaded = load_model(path, "video")
    assert loaded.spec.class_names == ("fake", "real")
    with torch.inference_mode():
        out = loaded.module(torch.zeros(1, 3, loaded.spec.input_size, loaded.spec.input_size))
    assert out.shape == (1, 2) and torch.isfinite(out).all()


# -- a tiny CPU training run, end to end -----------------------------------------------------------------
def test_tiny_selfblend_training_run_produces_a_loadable_checkpoint(tmp_path):
    from deepfake_core.train.data import read_labels
    from deepfake_core.train.loop import TrainConfig
    from deepfake_core.train.prepare import PrepareOptions, prepare
    from deepfake_core.train.selfblend import train_selfblend

    face_dir = face_files_dir()
    data = tmp_path / "data"
    data.mkdir()
    write_video(data / "a.mp4", moving_face_frames(30, size=(560, 640)))
    write_video(data / "b.mp4", (f[:, ::-1].copy() for f in moving_face_frames(30, size=(560, 640))))
    (data / "manifest.csv").write_text("path,identity\na.mp4,person_a\nb.mp4,person_b\n")
    models = tmp_path / "models"
    shutil.copytree(face_dir, models, dirs_exist_ok=True)
    items = read_labels(data / "manifest.csv", default_label="real")
    summary = prepare(items, tmp_path / "cache", PrepareOptions(frame_skip=10, frames_per_video=3, face_margin=0.5,
                                                                audio=False), models_dir=models, progress=False)
    assert summary.faces >= 4, summary.line()
    config = TrainConfig(modality="video", epochs=1, batch_size=4, workers=0, device="cpu",
                         max_steps_per_epoch=2, val_fraction=0.5, test_fraction=0.0)
    run = tmp_path / "run"
    result = train_selfblend(tmp_path / "cache", run, config, LITE0_SMALL)
    loaded = load_model(result.best_path, "video")
    assert loaded.spec == LITE0_SMALL
    meta = loaded.metadata
    assert "self-blended" in meta["pseudo_fakes"] and "efficientnet-lite0" in meta["init"]
    assert (run / "preview.png").is_file() and (run / "splits.csv").is_file()
    splits = (run / "splits.csv").read_text()
    assert splits.count(",train") == 1 and splits.count(",val") == 1  # one person on each side
    detector = Detector.load(models, device="cpu", video_model=result.best_path)
    report = detector.analyze(data / "a.mp4", AnalysisSettings(abstain_below=None))
    assert report.verdict in ("REAL", "FAKE")
    assert report.models["video"]["architecture"] == "tf_efficientnet_lite0"


def test_shipped_model_judges_offline_with_an_empty_models_folder(tmp_path, face_video, capsys, monkeypatch):
    """The package's own file, as installed: no models folder, no network; the report names it."""
    path = registry.builtin_video_file()
    assert path is not None, "the built-in video model ships with the package (docs/MODEL_CARD.md)"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("DEEPFAKE_MODELS_DIR", str(tmp_path / "empty"))
    code = main(["analyze", str(face_video), "--json", "--frame-skip", "10"])
    out, _ = capsys.readouterr()
    assert code == 0
    report = json.loads(out)
    video = report["models"]["video"]
    assert video["file"] == registry.BUILTIN_VIDEO_FILE and video["shipped"] and not video["published"]
    assert video["name"] == read_safetensors_metadata(path)["name"]
    assert report["verdict"] in ("REAL", "FAKE", "UNCERTAIN") and report["modalities"]["video"]["count"] > 0
