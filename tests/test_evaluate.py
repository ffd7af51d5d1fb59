"""Evaluation: metrics equal scikit-learn's on the same scores, EER on constructed cases, and `evaluate`
accounting for every file (judged, NOT_APPLICABLE with its reason, ERROR with its error)."""

import csv
import json

import numpy as np
import pytest
from sklearn.metrics import (accuracy_score, average_precision_score, balanced_accuracy_score, confusion_matrix,
                             f1_score, precision_score, recall_score, roc_auc_score)

from conftest import blank_frames, tone, write_audio_only, write_video
from deepfake_core.cli import main
from deepfake_core.train.demo import write_demo_dataset
from deepfake_core.train.metrics import binary_metrics, equal_error_rate


def test_eer_on_constructed_cases():
    # real scores 0.1 0.2 0.3 0.6, fake 0.4 0.7 0.8 0.9: at any threshold in (0.4, 0.6] one real of four is
    # called fake and one fake of four is missed -> EER 0.25
    y = [0, 0, 0, 0, 1, 1, 1, 1]
    p = [0.1, 0.2, 0.3, 0.6, 0.4, 0.7, 0.8, 0.9]
    rate, threshold = equal_error_rate(y, p)
    assert rate == pytest.approx(0.25) and 0.4 < threshold <= 0.6
    assert equal_error_rate([0, 1], [0.2, 0.8])[0] == 0.0  # separable
    assert equal_error_rate([0, 1], [0.8, 0.2])[0] == 1.0  # inverted
    # a crossing between ROC points: 2 reals (0.5, 0.7), 3 fakes (0.6, 0.8, 0.2); ROC (0,0) (0,1/3) (1/2,1/3)
    # (1/2,2/3) (1,2/3) (1,1): FPR = FNR on the segment from (1/2,1/3) to (1/2,2/3) at 1/2
    assert equal_error_rate([0, 0, 1, 1, 1], [0.5, 0.7, 0.6, 0.8, 0.2])[0] == pytest.approx(0.5)
    assert equal_error_rate([1, 1], [0.3, 0.4]) == (None, None)


def test_binary_metrics_equal_sklearn():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    p = np.clip(rng.normal(0.35 + 0.3 * y, 0.2), 0, 1)
    m = binary_metrics(y, p, threshold=0.45)
    pred = (p >= 0.45).astype(int)
    assert m["accuracy"] == pytest.approx(accuracy_score(y, pred))
    assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, pred))
    assert m["precision"] == pytest.approx(precision_score(y, pred))
    assert m["recall"] == pytest.approx(recall_score(y, pred))
    assert m["f1"] == pytest.approx(f1_score(y, pred))
    assert m["roc_auc"] == pytest.approx(roc_auc_score(y, p))
    assert m["average_precision"] == pytest.approx(average_precision_score(y, p))
    tn, fp, fn, tp = confusion_matrix(y, pred).ravel()
    assert m["confusion"] == {"tn": tn, "fp": fp, "fn": fn, "tp": tp}
    one_class = binary_metrics([1, 1, 1], [0.2, 0.6, 0.9])
    assert one_class["roc_auc"] is None and one_class["eer"] is None and one_class["accuracy"] == pytest.approx(2 / 3)


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    """Demo clips plus the hard cases: a faceless video, an audio-only file, a corrupt file."""
    root = tmp_path_factory.mktemp("labelled")
    write_demo_dataset(root / "demo", "folders", per_class=2)
    write_video(root / "faceless.mp4", blank_frames(30), audio=tone(2.5))
    write_audio_only(root / "voice.m4a", tone(2.5, freq=300))
    (root / "broken.mp4").write_text("not a video")
    rows = [(f"demo/{p.parent.name}/{p.name}", p.parent.name, "demo") for p in sorted((root / "demo").rglob("*.mp4"))]
    rows += [("faceless.mp4", "real", "hard"), ("voice.m4a", "fake", "hard"), ("broken.mp4", "real", "hard")]
    with open(root / "labels.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label", "generator"])
        writer.writerows(rows)
    return root / "labels.csv"


def test_evaluate_accounts_for_every_file_and_matches_sklearn(labelled, original_models, detector, tmp_path, capsys):
    out = tmp_path / "eval"
    code = main(["evaluate", str(labelled), "--out", str(out), "--models-dir", str(original_models),
                 "--max-samples", "2", "--group-by", "generator", "-q", "--threshold", "0.45",
                 "--abstain-below", "0.5"])
    stdout, err = capsys.readouterr()
    assert code == 0, err
    rows = list(csv.DictReader(open(out / "scores.csv")))
    assert len(rows) == 7 and {r["generator"] for r in rows} == {"demo", "hard"}
    by = {r["path"].rsplit("/", 1)[-1]: r for r in rows}
    assert by["faceless.mp4"]["verdict"] == "NOT_APPLICABLE" and by["faceless.mp4"]["reason"] == "no_face"
    assert by["voice.m4a"]["verdict"] == "NOT_APPLICABLE" and by["voice.m4a"]["reason"] == "no_speech"  # a tone
    assert by["broken.mp4"]["verdict"] == "ERROR" and "UnreadableMedia" in by["broken.mp4"]["error"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["files"] == 7 and summary["verdicts"]["NOT_APPLICABLE"] == 2 and summary["verdicts"]["ERROR"] == 1
    assert sorted(x["reason"] for x in summary["not_applicable"]) == ["no_face", "no_speech"]
    assert [x["path"].rsplit("/", 1)[-1] for x in summary["errors"]] == ["broken.mp4"]
    # audio left out: broken.mp4, and the tones of faceless.mp4 and voice.m4a (not speech, so not scored)
    assert summary["left_out"]["fused"]["count"] == 3 and summary["left_out"]["audio"]["count"] == 3
    assert summary["settings"]["threshold"] == 0.45
    assert "not applicable: 2" in stdout and "errors: 1" in stdout

    for modality, label_key in (("fused", "label"), ("video", "video_label"), ("audio", "audio_label")):
        scored = [r for r in rows if r[f"{modality}_p_fake"]]
        y = np.array([r[label_key] == "fake" for r in scored], dtype=int)
        p = np.array([float(r[f"{modality}_p_fake"]) for r in scored])
        pred = np.array([r[f"{modality}_pred"] == "fake" for r in scored], dtype=int)
        m = summary["metrics"][modality]
        assert m["n"] == len(scored) == {"fused": 4, "video": 4, "audio": 4}[modality]
        assert m["accuracy"] == pytest.approx(accuracy_score(y, pred))
        assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, pred))
        assert m["precision"] == pytest.approx(precision_score(y, pred, zero_division=0))
        assert m["recall"] == pytest.approx(recall_score(y, pred, zero_division=0))
        assert m["f1"] == pytest.approx(f1_score(y, pred, zero_division=0))
        assert m["roc_auc"] == pytest.approx(roc_auc_score(y, p))
        assert m["average_precision"] == pytest.approx(average_precision_score(y, p))
        assert m["eer"] == pytest.approx(equal_error_rate(y, p)[0])
    fused = [r for r in rows if r["fused_p_fake"]]
    assert all((r["fused_pred"] == "fake") == (r["verdict"] == "FAKE") for r in fused)  # the verdict's own rule
    assert summary["groups"]["generator"]["fused"]["demo"]["files"] == 2
    for name in ("roc.png", "pr.png", "confusion.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_evaluate_refuses_bad_labels(tmp_path, capsys):
    (tmp_path / "labels.csv").write_text("path,label\na.mp4,maybe\n")
    assert main(["evaluate", str(tmp_path / "labels.csv"), "--out", str(tmp_path / "e")]) == 2
    assert "label must be 'real' or 'fake'" in capsys.readouterr().err
