"""The built-in video model's recipe (train/pooled.py) end to end on generated clips: prepare -> features ->
LOFO -> calibration -> an exported file that the detector loads and that scores as the head did."""
import csv
import json

import cv2
import numpy as np
import pytest

from conftest import astronaut_bgr, face_files_dir, moving_face_frames, write_video
from deepfake_core.train.lofo import real_fold


def _identity_in_fold(fold: int, taken: set) -> str:
    name = next(f"person{i}" for i in range(1000) if real_fold(f"person{i}") == fold and f"person{i}" not in taken)
    taken.add(name)
    return name


@pytest.fixture(scope="module")
def pooled_run(tmp_path_factory):
    from deepfake_core.train.cache import load_cache
    from deepfake_core.train.data import read_labels
    from deepfake_core.train.pooled import PooledRecipe, train_pooled
    from deepfake_core.train.prepare import PrepareOptions, prepare

    models = face_files_dir()
    root = tmp_path_factory.mktemp("pooled")
    face = astronaut_bgr()
    rows, taken = [], set()
    for i in range(6):  # reals of identities spread over the folds the families hold out
        path = write_video(root / f"real{i}.mp4", moving_face_frames(6, face=face))
        rows.append((path.name, "real", _identity_in_fold(i % 3, taken), ""))
    for fam, change in (("A", lambda f: cv2.GaussianBlur(f, (0, 0), 3)), ("B", lambda f: f[:, :, ::-1].copy())):
        for j in range(2):
            path = write_video(root / f"{fam}{j}.mp4", moving_face_frames(6, face=change(face)))
            rows.append((path.name, "fake", f"{fam}-src{j}", fam))
    with open(root / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "identity", "family"])
        w.writerows(rows)
    cache = root / "cache"
    prepare(read_labels(root / "labels.csv"), cache, PrepareOptions(frame_skip=2, frames_per_video=2,
                                                                      face_margin=0.5, audio=False),
            models_dir=models, progress=False)
    recipe = PooledRecipe(views=2, sbi=True, sbi_photos=0)
    summary = train_pooled(cache, root / "run", recipe, name="test-pooled", progress=False)
    return root, summary, load_cache(cache)


def test_lofo_table_and_calibration(pooled_run):
    root, summary, _ = pooled_run
    table = list(csv.DictReader(open(root / "run" / "lofo.csv")))
    assert {"mean_logit", "mean_prob", "trimmed_mean"} <= {r["aggregation"] for r in table}
    assert {"A", "B", "SBI"} <= set(table[0])
    assert summary["families"] == ["A", "B", "SBI"]
    cal = summary["calibration"]
    assert 0.05 <= cal["temperature"] <= 50 and 0 < cal["threshold"] < 1 and 0.5 <= cal["abstain_below"] <= 0.81
    by_rule = summary["lofo_mean_by_aggregation"]
    assert by_rule[cal["aggregation"]] == pytest.approx(max(by_rule.values()), abs=1e-4)  # the best LOFO mean


def test_exported_file_loads_and_scores_as_the_head(pooled_run):
    import torch

    from deepfake_core.models.checkpoints import load_model
    from deepfake_core.faces.detect import FaceBox, crop_face
    from deepfake_core.models.networks import face_tensor
    from deepfake_core.train.pooled import FeatureTable, fit_head, head_logits
    from deepfake_core.train.lofo import family_weights
    from deepfake_core.train.selfblend import box_in_crop

    root, summary, cache = pooled_run
    loaded = load_model(summary["path"], "video")
    meta = loaded.metadata
    assert meta["name"] == "test-pooled" and loaded.spec.head == "pooled-residual-linear"
    assert json.loads(meta["lofo"]).keys() == {"A", "B", "SBI"} and "non-commercial" in meta["terms"]
    # the file's P(fake) is the head's, with the temperature and the threshold folded in
    table = FeatureTable.load(root / "run" / "features")
    fam = np.array([r["family"] for r in table.rows])
    y = np.array([r["label"] == "fake" for r in table.rows])
    head = fit_head(table.x, y, family_weights(fam, np.ones(len(fam), bool)), 0.1)
    item = next(i for i in cache.usable() if i.video_label == "fake")
    with np.load(item.file) as z:
        crop, box = z["crop_0"], box_in_crop(z["crop_box"][0], 0.5)
    x = face_tensor(np.ascontiguousarray(crop_face(crop, FaceBox(*box, None, "t"), 0.0)), loaded.spec)
    row = next(k for k, r in enumerate(table.rows) if r["key"] == item.key and r["view"] == 0)
    t, thr = float(meta["temperature"]), float(meta["threshold"])
    expected = head_logits(table.x[row:row + 1], head)[0] / t - np.log(thr / (1 - thr))
    net = loaded.module
    with torch.no_grad():
        z = net(x[None].float())[0]
        feats = net.features(x[None].float())[0].numpy()
        from_table = net.linear((torch.from_numpy(table.x[row]).float() - net.feature_mean) / net.feature_std)
    assert z[1].item() == 0.0  # logits (z, 0): P(fake) = sigmoid(z)
    # the network computes the features the head was fitted on (bf16 there, fp32 here)...
    assert np.corrcoef(feats, table.x[row])[0, 1] > 0.99
    # ...and its linear unit is the head with the temperature and the threshold folded in (fp16 weights)
    assert from_table.item() == pytest.approx(expected, abs=0.02 + 0.01 * abs(expected))


def test_detector_uses_the_files_aggregation(pooled_run, face_video):
    from deepfake_core import Detector

    root, summary, _ = pooled_run
    detector = Detector.load(face_files_dir(), device="cpu", video_model=summary["path"])
    assert detector.video_aggregation == summary["calibration"]["aggregation"]
    assert detector.video_abstain_below == pytest.approx(summary["calibration"]["abstain_below"])
    report = detector.analyze(face_video)
    assert report.verdict in ("REAL", "FAKE", "UNCERTAIN") and report.models["video"]["name"] == "test-pooled"
