"""Training: dataset layouts, the prepared cache (made by the inference code), augmentations, splits,
initialisation, and a step or two of video and audio training whose checkpoint the normal loader reads."""

import csv
import json
import shutil

import numpy as np
import pytest
import torch

from conftest import face_files_dir
from deepfake_core.media.audio import mel_image, mel_windows, read_audio
from deepfake_core.models.checkpoints import load_model
from deepfake_core.cli import main
from deepfake_core.errors import CheckpointError, InputError, SettingsError
from deepfake_core.models.networks import ORIGINAL_VIDEO, build_model
from deepfake_core.settings import AnalysisSettings
from deepfake_core.train.augment import SpecAugment, VideoAugment, augment_face, spec_augment
from deepfake_core.train.cache import CachedItem, load_cache
from deepfake_core.train.data import read_labels
from deepfake_core.train.datasets import CachedMels, face_dataset, split_items, CachedFaces
from deepfake_core.train.demo import write_demo_dataset
from deepfake_core.train.loop import load_init_weights, training_spec
from deepfake_core.train.prepare import PrepareOptions, mel_segments, prepare


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The three layouts, two of each class (identity) apiece."""
    root = tmp_path_factory.mktemp("demo")
    return {layout: write_demo_dataset(root / layout, layout, per_class=2) for layout in
            ("folders", "fakeavceleb", "manifest")}


@pytest.fixture(scope="module")
def avceleb_cache(demo, tmp_path_factory):
    out = tmp_path_factory.mktemp("cache") / "avceleb"
    prepare(read_labels(demo["fakeavceleb"]), out, PrepareOptions(frames_per_video=3), face_files_dir(),
            progress=False)
    return out


# -- layouts ---------------------------------------------------------------------------------------------
def test_fakeavceleb_labels_follow_each_track(demo):
    items = {(m.extra["type"], m.identity): m for m in read_labels(demo["fakeavceleb"])}
    assert len(items) == 8
    for ident in ("id00001", "id00002"):
        assert (items["RealVideo-RealAudio", ident].video_label, items["RealVideo-RealAudio", ident].audio_label) == ("real", "real")
        assert (items["FakeVideo-RealAudio", ident].video_label, items["FakeVideo-RealAudio", ident].audio_label) == ("fake", "real")
        assert (items["RealVideo-FakeAudio", ident].video_label, items["RealVideo-FakeAudio", ident].audio_label) == ("real", "fake")
        assert (items["FakeVideo-FakeAudio", ident].video_label, items["FakeVideo-FakeAudio", ident].audio_label) == ("fake", "fake")
        assert items["RealVideo-FakeAudio", ident].label == "fake"
    assert all(m.path.is_file() for m in items.values())


def test_fakeavceleb_without_metadata_walks_the_folders(demo, tmp_path):
    root = tmp_path / "favc"
    shutil.copytree(demo["fakeavceleb"], root)
    (root / "meta_data.csv").unlink()
    with_meta = {(m.path.relative_to(demo["fakeavceleb"]), m.video_label, m.audio_label, m.identity)
                 for m in read_labels(demo["fakeavceleb"])}
    walked = {(m.path.relative_to(root), m.video_label, m.audio_label, m.identity) for m in read_labels(root)}
    assert walked == with_meta


def test_folders_and_manifest_layouts(demo, tmp_path):
    folders = read_labels(demo["folders"])
    assert sorted(m.label for m in folders) == ["fake", "fake", "real", "real"]
    assert all(m.video_label == m.audio_label == m.label for m in folders)
    manifest = read_labels(demo["manifest"])
    assert [(m.video_label, m.audio_label, m.identity) for m in manifest] == [
        ("real", "real", "person0"), ("fake", "fake", "person0"), ("real", "real", "person1"), ("fake", "real", "person1")]
    assert manifest[1].extra == {"generator": "tint-a"} and manifest[1].path.is_file()
    assert len(read_labels(demo["manifest"], only=[("generator", "tint-b")])) == 1
    bad = tmp_path / "bad.csv"
    bad.write_text("path,label\nx.mp4,deepfake\n")
    with pytest.raises(InputError, match="line 2: label must be 'real' or 'fake'"):
        read_labels(bad)
    (tmp_path / "nolabel.csv").write_text("path\nx.mp4\n")
    with pytest.raises(InputError, match="needs a 'label' column"):
        read_labels(tmp_path / "nolabel.csv")
    assert read_labels(tmp_path / "nolabel.csv", default_label="real")[0].label == "real"
    with pytest.raises(InputError, match="not a dataset layout"):
        read_labels(tmp_path)


# -- prepare ---------------------------------------------------------------------------------------------
def test_prepared_crops_and_mels_are_the_inference_ones(tmp_path, face_video, detector):
    """The cache holds what the pipeline sees: the same sampled frames and face boxes, the same pixels
    (crop_face), and mel windows that mel_image turns into exactly mel_windows' input tensors."""
    from deepfake_core.faces.detect import crop_face
    from deepfake_core.media.video import read_frames

    media = read_labels_for(tmp_path, face_video)
    prepare(media, tmp_path / "cache", PrepareOptions(frame_skip=5, frames_per_video=6, faces_per_frame=4),
            detector.models_dir, progress=False)
    item = load_cache(tmp_path / "cache").items[0]
    report = detector.analyze(face_video, AnalysisSettings(frame_skip=5, max_samples=6))
    assert len(report.timeline) >= 6
    with np.load(item.file) as z:
        assert z["crop_frame"].tolist() == [r.frame_index for r in report.timeline]
        assert z["crop_box"].tolist() == [r.box for r in report.timeline]
        frame = next(read_frames(face_video, [int(z["crop_frame"][3])]))
        x1, y1, x2, y2 = z["crop_box"][3]
    from deepfake_core.faces.detect import FaceBox

    expected = crop_face(frame.image, FaceBox(x1, y1, x2, y2, None, "dnn"))[:, :, ::-1]
    assert np.array_equal(item.crop(3), expected)
    images, spans = mel_windows(read_audio(face_video))
    assert item.windows == len(spans) == len(item.mel_spans()) >= 2
    for n in range(item.windows):
        assert torch.equal(mel_image(item.mel(n)), images[n])
    assert np.allclose(item.mel_spans(), spans)


def read_labels_for(tmp_path, video):
    manifest = tmp_path / "one.csv"
    manifest.write_text(f"path,label\n{video},real\n")
    return read_labels(manifest)


def test_mel_segments_equal_mel_windows():
    samples = np.random.default_rng(0).normal(0, 0.1, 16_000 * 3 + 12_800).astype(np.float32)
    mels, spans = mel_segments(samples)
    images, times = mel_windows(samples)
    assert spans == times and len(mels) == len(images) == 3
    assert all(torch.equal(mel_image(m), images[i]) for i, m in enumerate(mels))


def test_prepare_resumes_runs_in_parallel_and_records_errors(demo, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(demo["folders"], data)
    (data / "real" / "broken.mp4").write_text("not a video")
    out = tmp_path / "cache"
    options = PrepareOptions(frames_per_video=2)
    first = prepare(read_labels(data), out, options, face_files_dir(), workers=2, progress=False)
    assert (first.total, first.processed, first.skipped) == (5, 5, 0)
    assert len(first.errors) == 1 and "broken.mp4" in first.errors[0][0]
    rows = {r["path"].rsplit("/", 1)[-1]: r for r in csv.DictReader(open(out / "items.csv"))}
    assert rows["broken.mp4"]["status"] == "error" and "cannot read" in rows["broken.mp4"]["error"]
    assert all(r["status"] == "ok" and r["faces"] == "2" and r["windows"] == "2"
               for name, r in rows.items() if name != "broken.mp4")
    fake_onsets = [float(r["speech_onset_s"]) for name, r in rows.items() if name.startswith("fake")]
    assert all(0.4 < t < 0.6 for t in fake_onsets)  # the demo fakes open with 0.5 s of silence

    again = prepare(read_labels(data), out, options, face_files_dir(), progress=False)
    assert (again.processed, again.skipped) == (1, 4)  # only the failed file is retried
    next((out / "items").glob("real_00-*.npz")).unlink()
    third = prepare(read_labels(data), out, options, face_files_dir(), progress=False)
    assert third.processed == 2 and third.faces == first.faces
    with pytest.raises(InputError, match="other options"):
        prepare(read_labels(data), out, PrepareOptions(frames_per_video=3), face_files_dir(), progress=False)


def test_prepare_cli(demo, tmp_path, capsys):
    code = main(["prepare", str(demo["manifest"]), "--out", str(tmp_path / "c"), "--models-dir",
                 str(face_files_dir()), "--frames-per-video", "2", "--no-audio", "-q", "--only", "generator=none"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "2 files: 2 prepared" in out and "4 face crops, 0 audio windows" in out
    assert main(["prepare", str(tmp_path / "missing"), "--out", str(tmp_path / "c2")]) == 2


# -- augmentations and splits ----------------------------------------------------------------------------
def test_video_augment_is_seeded_and_keeps_shape():
    crop = np.random.default_rng(0).integers(0, 256, (90, 70, 3), dtype=np.uint8)
    a = augment_face(crop, np.random.default_rng(5))
    b = augment_face(crop, np.random.default_rng(5))
    assert a.shape == crop.shape and a.dtype == np.uint8 and np.array_equal(a, b)
    everything = VideoAugment(flip=1, jpeg=1, downscale=1, blur=1, noise=1, color=1)
    changed = augment_face(crop, np.random.default_rng(1), everything)
    assert changed.shape == crop.shape and not np.array_equal(changed, crop)
    only_flip = VideoAugment(flip=1, jpeg=0, downscale=0, blur=0, noise=0, color=0)
    assert np.array_equal(augment_face(crop, np.random.default_rng(1), only_flip), crop[:, ::-1])


def test_spec_augment_masks_as_the_original():
    mel = np.random.default_rng(0).normal(size=(128, 63)).astype(np.float32)
    cfg = SpecAugment()
    for seed in range(20):
        out = spec_augment(mel, np.random.default_rng(seed), cfg)
        masked = out == mel.mean()
        rows, cols = masked.all(axis=1), masked.all(axis=0)
        assert rows.sum() <= cfg.n_freq_masks * cfg.freq_mask_param
        assert cols.sum() <= cfg.n_time_masks * cfg.time_mask_param
        assert np.array_equal(out[~masked], mel[~masked])  # nothing else changes
    assert any((spec_augment(mel, np.random.default_rng(s)) == mel.mean()).any() for s in range(5))


def _item(key, label, identity=None):
    return CachedItem(key, key, label, label, identity, "ok", 1, 1, None, None, None)


def test_splits_keep_each_person_on_one_side():
    items = [_item(f"{p}-{i}", "fake" if i % 2 else "real", f"p{p}") for p in range(20) for i in range(4)]
    splits = split_items(items, 0.2, 0.2, seed=3)
    by_person = {}
    for item in items:
        by_person.setdefault(item.identity, set()).add(splits[item.key])
    assert all(len(s) == 1 for s in by_person.values())
    counts = {s: sum(v == s for v in splits.values()) for s in ("train", "val", "test")}
    assert counts["val"] >= 8 and counts["test"] >= 8 and counts["train"] >= 40
    files = [_item(f"f{i}", "fake" if i < 3 else "real") for i in range(6)]
    splits = split_items(files, 0.34, 0.0)
    assert {splits[f"f{i}"] for i in range(3)} >= {"train"} and {splits[f"f{i}"] for i in range(3, 6)} >= {"train"}
    assert sum(v == "val" for v in splits.values()) == 2  # one of each class
    with pytest.raises(SettingsError):
        split_items(files, 0.6, 0.5)


def test_trim_silence_drops_windows_in_the_leading_silence(avceleb_cache):
    items = [i for i in load_cache(avceleb_cache).usable() if i.windows]
    fakes = [i for i in items if i.audio_label == "fake"]
    assert fakes and all(0.4 < i.speech_onset_s < 0.6 for i in fakes)
    full, trimmed = CachedMels(items), CachedMels(items, trim_silence=True)
    assert trimmed.dropped == len(fakes)  # each fake loses its first window (starting at 0 s)
    assert len(trimmed) == len(full) - len(fakes)


def test_face_dataset_is_the_inference_preprocessing(avceleb_cache):
    from deepfake_core.models.networks import face_tensor

    items = load_cache(avceleb_cache).usable()
    source = CachedFaces(items)
    spec = training_spec("video", input_size=64)
    ds = face_dataset(source, spec, augment=None, deterministic=True)
    x, y = ds[0]
    item, k = source.index[0]
    assert torch.equal(x, face_tensor(item.crop(k), spec)) and x.shape == (3, 64, 64)
    assert y == spec.class_names.index(item.video_label)


# -- initialisation --------------------------------------------------------------------------------------
def test_init_weights_from_a_local_imagenet_file(tmp_path):
    import timm

    imagenet = timm.create_model("legacy_xception", num_classes=1000)
    torch.save(imagenet.state_dict(), tmp_path / "xception.pth")
    model = build_model(ORIGINAL_VIDEO)
    head_before = model.fc.weight.clone()
    load_init_weights(model, ORIGINAL_VIDEO, tmp_path / "xception.pth")
    assert torch.equal(model.conv1.weight, imagenet.conv1.weight)
    assert torch.equal(model.fc.weight, head_before) and model.fc.weight.shape == (2, 2048)
    audio_spec = training_spec("audio")
    audio = build_model(audio_spec)
    load_init_weights(audio, audio_spec, tmp_path / "xception.pth")
    assert torch.equal(audio.backbone.block1.skip.weight, imagenet.block1.skip.weight)
    state = imagenet.state_dict()
    state.pop("conv2.weight")
    torch.save(state, tmp_path / "partial.pth")
    with pytest.raises(CheckpointError, match="1 missing.*conv2.weight"):
        load_init_weights(build_model(ORIGINAL_VIDEO), ORIGINAL_VIDEO, tmp_path / "partial.pth")


# -- training end to end ---------------------------------------------------------------------------------
def test_train_video_then_evaluate_with_the_checkpoint(avceleb_cache, demo, tmp_path, capsys):
    run = tmp_path / "run"
    code = main(["train", "video", str(avceleb_cache), "--out", str(run), "--input-size", "64", "--epochs", "2",
                 "--batch-size", "2", "--max-steps-per-epoch", "2", "--workers", "1", "--device", "cpu",
                 "--val-fraction", "0.5", "--test-fraction", "0", "--patience", "1", "--name", "tiny-video"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "best epoch" in out and "epoch 1/2" in err
    loaded = load_model(run / "best.safetensors")  # the inference loader, metadata-driven
    assert loaded.spec.architecture == "legacy_xception" and loaded.spec.input_size == 64
    assert loaded.metadata["name"] == "tiny-video" and loaded.describe()["name"] == "tiny-video"
    config = json.loads((run / "config.json").read_text())
    assert config["spec"]["input_size"] == 64 and config["batch_size"] == 2 and config["precision"] == "fp32"
    log = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert 1 <= len(log) <= 2 and all(row["train_samples"] == 4 for row in log)
    assert all(row["val_auc"] is not None and np.isfinite(row["val_loss"]) for row in log)
    splits = list(csv.DictReader(open(run / "splits.csv")))
    sides = {}
    for row in splits:
        sides.setdefault(row["identity"], set()).add(row["split"])
    assert all(len(s) == 1 for s in sides.values()) and len(sides) == 2  # identity-disjoint

    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(run / "best.safetensors", models / "epoch_007.safetensors")
    for f in face_files_dir().iterdir():
        if f.suffix in (".prototxt", ".caffemodel"):
            (models / f.name).symlink_to(f)
    code = main(["evaluate", str(demo["folders"]), "--out", str(tmp_path / "eval"), "--models-dir", str(models),
                 "--max-samples", "2", "-q"])
    out, err = capsys.readouterr()
    assert code == 0, err
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert summary["metrics"]["video"]["n"] == 4 and summary["models"]["video"]["name"] == "tiny-video"
    assert summary["metrics"]["audio"]["n"] == 0  # no audio model in that folder, and the summary says so
    assert any("audio not judged" in note for note in summary["notes"])


def test_train_audio_with_trimmed_silence(avceleb_cache, tmp_path):
    from deepfake_core.train.loop import TrainConfig, train_from_cache

    config = TrainConfig("audio", epochs=1, batch_size=2, max_steps_per_epoch=1, max_eval_batches=2, workers=0,
                         device="cpu", val_fraction=0.5, test_fraction=0.0, trim_silence=True)
    result = train_from_cache(avceleb_cache, tmp_path / "run", config, log=lambda message: None)
    loaded = load_model(result.best_path, "audio")
    assert loaded.spec.head == "mlp-512-256" and loaded.spec.input_size == 299
    with torch.inference_mode():
        logits = loaded.module(torch.zeros(2, 3, 299, 299))
    assert logits.shape == (2, 2) and torch.isfinite(logits).all()
    assert json.loads((tmp_path / "run" / "config.json").read_text())["trim_silence"] is True


def test_training_refuses_a_bad_request(avceleb_cache, tmp_path, capsys):
    assert main(["train", "audio", str(avceleb_cache), "--out", str(tmp_path / "r"), "--input-size", "128"]) == 2
    assert "299" in capsys.readouterr().err
    assert main(["train", "video", str(tmp_path), "--out", str(tmp_path / "r")]) == 2
    assert "not a prepared cache" in capsys.readouterr().err
    with pytest.raises(SettingsError, match="did you mean"):
        training_spec("video", "efficientnet_bo")
