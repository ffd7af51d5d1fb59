"""SBI v1's recipe (research/sbi_v1/selfblend.py): a tiny CPU training run, end to end (real crops against
self-blended pseudo-fakes) on a tiny generated dataset, and its command."""

import shutil

from conftest import face_files_dir, moving_face_frames, write_video
from deepfake_core import AnalysisSettings, Detector
from deepfake_core.models.checkpoints import load_model
from deepfake_core.models.networks import ModelSpec
from research.sbi_v1.selfblend import main, train_selfblend

LITE0_SMALL = ModelSpec("tf_efficientnet_lite0", "video", "linear", 64, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


def test_tiny_selfblend_training_run_produces_a_loadable_checkpoint(tmp_path):
    from deepfake_core.train.data import read_labels
    from deepfake_core.train.loop import TrainConfig
    from deepfake_core.train.prepare import PrepareOptions, prepare

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


def test_the_command_refuses_a_missing_cache(tmp_path, capsys):
    assert main(["video", str(tmp_path / "nowhere"), "--out", str(tmp_path / "run")]) == 2
    assert "nowhere" in capsys.readouterr().err
