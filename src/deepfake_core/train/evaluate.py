"""`evaluate`: the product run on labelled media, with per-file scores, metrics, curves and a summary.

Every file of the list is accounted for: judged (REAL / FAKE / UNCERTAIN), NOT_APPLICABLE (with its reason)
or ERROR (with its error); none is dropped. Metrics are computed per modality (video: the mean face P(fake);
audio: the mean window P(fake), audio-only files included) and fused (the report's fused score and verdict
threshold), over the files where that score exists; the summary lists the files left out of each.
"""

from __future__ import annotations

import csv
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DeepfakeError
from ..analysis.report import NOT_APPLICABLE, Report, json_safe
from ..settings import AnalysisSettings
from .data import FAKE, LabelledMedia
from .metrics import binary_metrics

MODALITIES = ("fused", "video", "audio")
SCORE_FIELDS = ["path", "label", "video_label", "audio_label", "identity", "verdict", "reason", "confidence",
                "fused_p_fake", "fused_pred", "video_p_fake", "video_pred", "audio_p_fake", "audio_pred", "faces",
                "audio_windows", "seconds", "error"]


@dataclass
class EvalResult:
    out_dir: Path
    summary: dict
    rows: list[dict]


def run_detector(detector, media: list[LabelledMedia], settings: AnalysisSettings, progress: bool = True,
                 notes: Sequence[str] = ()) -> Iterator[tuple[LabelledMedia, Report | None, Exception | None]]:
    """Analyse each file (each report carrying `notes`); a file that cannot be read yields its error instead of
    stopping the run."""
    from tqdm import tqdm

    for item in tqdm(media, file=sys.stderr, disable=not progress, desc="analyse", unit="file"):
        try:
            yield item, detector.analyze(item.path, settings, notes=notes), None
        except DeepfakeError as e:
            yield item, None, e
        except Exception as e:  # recorded in the scores and the summary, never dropped
            yield item, None, e


def score_row(item: LabelledMedia, report: Report | None, error: Exception | None, threshold: float) -> dict:
    row = {k: None for k in SCORE_FIELDS}
    row.update(path=str(item.path), label=item.label, video_label=item.video_label, audio_label=item.audio_label,
               identity=item.identity, **item.extra)
    if error is not None:
        row.update(verdict="ERROR", error=f"{type(error).__name__}: {error}")
        return row
    row.update(verdict=report.verdict, reason=report.reason, confidence=report.confidence,
               faces=report.counts.get("faces"), audio_windows=report.counts.get("audio_windows"),
               seconds=report.timings.get("total"))
    if report.verdict != NOT_APPLICABLE and report.fused_real_prob is not None:
        row["fused_p_fake"] = 1.0 - report.fused_real_prob
        # the verdict's own rule: REAL when the fused real probability is above the threshold
        row["fused_pred"] = "real" if report.fused_real_prob > threshold else "fake"
    for name in ("video", "audio"):
        m = report.modalities.get(name)
        if m is not None and m.available and m.fake_prob is not None:
            row[f"{name}_p_fake"] = m.fake_prob
            row[f"{name}_pred"] = (m.prediction or "").lower() or None
    return row


def metrics_from_rows(rows: list[dict], modality: str, fake_threshold: float = 0.5) -> tuple[dict, list[str]]:
    """Metrics of one modality over the rows that have its score, and the paths of those that do not.
    Predictions are the rows' own (`<modality>_pred`); `fake_threshold` (the P(fake) at which they turn FAKE)
    is recorded with them."""
    label_key = {"fused": "label", "video": "video_label", "audio": "audio_label"}[modality]
    have = [r for r in rows if r.get(f"{modality}_p_fake") is not None]
    missing = [r["path"] for r in rows if r.get(f"{modality}_p_fake") is None]
    y = np.array([r[label_key] == FAKE for r in have], dtype=int)
    p = np.array([float(r[f"{modality}_p_fake"]) for r in have], dtype=np.float64)
    pred = np.array([r[f"{modality}_pred"] == FAKE for r in have], dtype=int)
    return binary_metrics(y, p, threshold=fake_threshold, y_pred=pred), missing


def group_metrics(rows: list[dict], column: str, modality: str = "fused", fake_threshold: float = 0.5) -> dict:
    """Per value of `column` among the fake files: metrics of those fakes against all real files."""
    label_key = {"fused": "label", "video": "video_label", "audio": "audio_label"}[modality]
    reals = [r for r in rows if r[label_key] != FAKE]
    out = {}
    for value in sorted({str(r.get(column)) for r in rows if r[label_key] == FAKE}):
        fakes = [r for r in rows if r[label_key] == FAKE and str(r.get(column)) == value]
        out[value], _ = metrics_from_rows(reals + fakes, modality, fake_threshold)
        out[value]["files"] = len(fakes)
    return out


def evaluate(detector, media: list[LabelledMedia], out_dir: str | os.PathLike, settings: AnalysisSettings | None = None,
             group_by: list[str] | None = None, progress: bool = True, data_name: str = "",
             log: Callable[[str], None] | None = None, notes: Sequence[str] = ()) -> EvalResult:
    """Run `detector` on `media` and write scores.csv, summary.json and the plots into `out_dir`. `notes`:
    lines every report carries after the detector's (the calibration's, `cli.calibrated_settings`)."""
    log = log or (lambda message: print(message, file=sys.stderr))
    settings = settings or AnalysisSettings()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    extra_fields = sorted({k for m in media for k in m.extra if k not in SCORE_FIELDS})
    rows = []
    with open(out / "scores.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=SCORE_FIELDS + extra_fields, extrasaction="ignore")
        writer.writeheader()
        for item, report, error in run_detector(detector, media, settings, progress, notes):
            row = score_row(item, report, error, settings.threshold)
            rows.append(row)
            writer.writerow(row)
            f.flush()
    metrics, left_out = {}, {}
    thresholds = {"fused": 1.0 - settings.threshold, "video": 0.5, "audio": 0.5}
    for modality in MODALITIES:
        metrics[modality], left_out[modality] = metrics_from_rows(rows, modality, thresholds[modality])
    verdicts = Counter(r["verdict"] for r in rows)
    summary = {
        "data": data_name,
        "files": len(rows),
        "verdicts": dict(sorted(verdicts.items())),
        "not_applicable": [{"path": r["path"], "label": r["label"], "reason": r["reason"]}
                           for r in rows if r["verdict"] == NOT_APPLICABLE],
        "not_applicable_reasons": dict(Counter(r["reason"] for r in rows if r["verdict"] == NOT_APPLICABLE)),
        "errors": [{"path": r["path"], "label": r["label"], "error": r["error"]} for r in rows if r["verdict"] == "ERROR"],
        "metrics": metrics,
        "left_out": {k: {"count": len(v), "paths": v} for k, v in left_out.items()},
        "positive_class": "fake",
        "scores": "P(fake): fused = 1 - the report's fused_real_prob; video/audio = the modality's mean P(fake)",
        "predictions": f"fused: the verdict rule (FAKE unless fused P(real) > {settings.threshold}); video/audio: "
                       "the modality's own prediction (FAKE unless P(real) > 0.5)",
        "settings": settings.to_dict(),
        "models": detector.describe_models() if hasattr(detector, "describe_models") else {},
        "notes": [*getattr(detector, "load_notes", []), *notes],
        "seconds": round(time.perf_counter() - started, 2),
    }
    if group_by:
        summary["groups"] = {column: {m: group_metrics(rows, column, m, thresholds[m]) for m in MODALITIES}
                             for column in group_by}
    try:
        summary["plots"] = write_plots(rows, metrics, out)
    except ImportError:
        summary["plots"] = []
        summary["notes"].append("plots not written: matplotlib is not installed (pip install 'deepfake-detector[train]')")
        log(summary["notes"][-1])
    (out / "summary.json").write_text(json.dumps(json_safe(summary), indent=2))
    return EvalResult(out, summary, rows)


def summary_lines(summary: dict) -> list[str]:
    lines = [f"{summary['files']} files: " + ", ".join(f"{v} {k}" for k, v in summary["verdicts"].items())]
    for modality in MODALITIES:
        m = summary["metrics"][modality]
        left = summary["left_out"][modality]["count"]
        if not m["n"]:
            lines.append(f"  {modality:6} no scores ({left} files without one)")
            continue
        lines.append(f"  {modality:6} n={m['n']} ({m['n_fake']} fake, {m['n_real']} real; {left} without a score): "
                     + ", ".join(f"{k} {_fmt(m[k])}" for k in ("accuracy", "balanced_accuracy", "precision", "recall",
                                                                 "f1", "roc_auc", "eer", "average_precision")))
    return lines


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def write_plots(rows: list[dict], metrics: dict, out: Path) -> list[str]:
    """roc.png, pr.png (one curve per modality with both classes) and confusion.png (per modality)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import precision_recall_curve, roc_curve

    label_key = {"fused": "label", "video": "video_label", "audio": "audio_label"}
    curves = {}
    for modality in MODALITIES:
        have = [r for r in rows if r.get(f"{modality}_p_fake") is not None]
        y = np.array([r[label_key[modality]] == FAKE for r in have], dtype=int)
        if len(np.unique(y)) == 2:
            curves[modality] = (y, np.array([float(r[f"{modality}_p_fake"]) for r in have]))
    written = []
    fig, ax = plt.subplots(figsize=(5, 5))
    for modality, (y, p) in curves.items():
        fpr, tpr, _ = roc_curve(y, p)
        ax.plot(fpr, tpr, label=f"{modality} (AUC {metrics[modality]['roc_auc']:.3f}, n={len(y)})")
    ax.plot([0, 1], [0, 1], ":", color="grey")
    ax.set(xlabel="false positive rate (real called fake)", ylabel="true positive rate (fake caught)", title="ROC",
           xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="lower right", fontsize=8) if curves else ax.text(0.5, 0.5, "needs both classes", ha="center")
    fig.tight_layout()
    fig.savefig(out / "roc.png", dpi=120)
    plt.close(fig)
    written.append("roc.png")
    fig, ax = plt.subplots(figsize=(5, 5))
    for modality, (y, p) in curves.items():
        precision, recall, _ = precision_recall_curve(y, p)
        ax.plot(recall, precision, label=f"{modality} (AP {metrics[modality]['average_precision']:.3f})")
    ax.set(xlabel="recall (fake)", ylabel="precision (fake)", title="Precision-recall", xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="lower left", fontsize=8) if curves else ax.text(0.5, 0.5, "needs both classes", ha="center")
    fig.tight_layout()
    fig.savefig(out / "pr.png", dpi=120)
    plt.close(fig)
    written.append("pr.png")
    fig, axes = plt.subplots(1, len(MODALITIES), figsize=(4 * len(MODALITIES), 3.8))
    for ax, modality in zip(axes, MODALITIES):
        c = metrics[modality].get("confusion") or {"tn": 0, "fp": 0, "fn": 0, "tp": 0}
        grid = np.array([[c["tn"], c["fp"]], [c["fn"], c["tp"]]])
        ax.imshow(grid, cmap="Blues")
        for (i, j), v in np.ndenumerate(grid):
            ax.text(j, i, str(v), ha="center", va="center", fontsize=12,
                    color="white" if v > grid.max() / 2 else "black")
        ax.set(xticks=[0, 1], yticks=[0, 1], xticklabels=["real", "fake"], yticklabels=["real", "fake"],
               xlabel="predicted", ylabel="true", title=f"{modality} (n={metrics[modality]['n']})")
    fig.tight_layout()
    fig.savefig(out / "confusion.png", dpi=120)
    plt.close(fig)
    written.append("confusion.png")
    return written
