"""Honest numbers on a labelled evaluation set: calibrate on one half, report on the other.

The generators of the evaluation set are grouped into families, and the families (with the real sources)
are dealt into two halves, A and B. The decision threshold (best balanced accuracy) and a video-level
temperature (least log-loss on logit(P(fake))) are fitted on one half and applied to the other — both ways
(cross-fitting), so every video is reported with settings chosen without it, its generator or its family.
ROC-AUC is threshold-free: it is given per half, overall and per generator (each generator's fakes against
all the reals), together with the face-found rate and a histogram of the scores.

Input: the `scores.csv` that `deepfake-detect evaluate` writes (its rows carry the manifest's extra columns,
here `generator` and `source_repo`). Training never sees the evaluation set; nothing here feeds back into
training or checkpoint choice.

    python -m research.sbi_v1.halfsplit EVAL_DIR/scores.csv --out EVAL_DIR/halfsplit
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from deepfake_core.train.metrics import binary_metrics

SCORE = "video_p_fake"  # the video-level score: mean P(fake) over the video's faces
# ../shared/dev-eval: generator -> family, and family / real source -> half.
FAMILIES = {
    "EDTalk": "talking head (EDTalk)",
    "AniTalker": "talking head (AniTalker)",
    "MuseV": "image-to-video avatar",
    "Tongyi Wanxiang (Alibaba) image-to-video": "image-to-video avatar",
    "unknown AI video generator": "image-to-video avatar",
    "GHOST (face swap)": "face swap",
    "DINet": "lip-sync / mouth re-render",
    "DH_live": "lip-sync / mouth re-render",
}
HALVES = {
    "talking head (EDTalk)": "A", "face swap": "A", "lip-sync / mouth re-render": "A",
    "talking head (AniTalker)": "B", "image-to-video avatar": "B",
    # real sources: the GHOST input clip goes with the GHOST swaps made from it
    "rizkiarm/LipNet": "A", "ai-forever/ghost": "A",
    "AliaksandrSiarohin/first-order-model": "B", "OpenTalker/DPE": "B", "Weizhi-Zhong/IP_LAP": "B",
    "harlanhong/CVPR2022-DaGAN": "B", "yoyo-nb/Thin-Plate-Spline-Motion-Model": "B", "ageitgey/face_recognition": "B",
    "bytedance/LatentSync": "B",
}


def family(row: dict) -> str:
    if row["label"] == "real":
        return f"real: {row.get('source_repo') or 'unknown'}"
    generator = row.get("generator") or "unknown"
    return FAMILIES.get(generator, generator)


def half(row: dict) -> str:
    """"A" or "B": from HALVES, else a stable hash of the family (or real source) name."""
    key = (row.get("source_repo") or "unknown") if row["label"] == "real" else family(row)
    if key in HALVES:
        return HALVES[key]
    return "AB"[int(hashlib.sha1(key.encode()).hexdigest(), 16) % 2]


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def log_loss(p_fake: np.ndarray, y_fake: np.ndarray, temperature: float = 1.0) -> float:
    """Mean log-loss of sigmoid(logit(p) / temperature) against the labels (1 = fake)."""
    q = np.clip(1 / (1 + np.exp(-_logit(np.asarray(p_fake, np.float64)) / temperature)), 1e-9, 1 - 1e-9)
    y = np.asarray(y_fake, np.float64)
    return float(-np.mean(y * np.log(q) + (1 - y) * np.log(1 - q)))


def fit_temperature(p_fake: np.ndarray, y_fake: np.ndarray) -> float:
    """T minimising the log-loss of sigmoid(logit(p) / T) (grid over 0.05..20, log-spaced)."""
    best, best_t = math.inf, 1.0
    for t in np.exp(np.linspace(math.log(0.05), math.log(20.0), 400)):
        loss = log_loss(p_fake, y_fake, t)
        if loss < best:
            best, best_t = loss, float(t)
    return best_t


def fit_threshold(p_fake: np.ndarray, y_fake: np.ndarray) -> float:
    """The P(fake) threshold (FAKE when p >= t) with the best balanced accuracy; ties: the midpoint of the
    best run of candidate thresholds."""
    p = np.asarray(p_fake, np.float64)
    y = np.asarray(y_fake).astype(int)
    values = np.unique(p)
    candidates = np.concatenate([[0.0], (values[:-1] + values[1:]) / 2, [1.0 + 1e-9]]) if len(values) > 1 else values
    scores = []
    for t in candidates:
        pred = p >= t
        tpr = pred[y == 1].mean() if (y == 1).any() else 0.0
        tnr = (~pred[y == 0]).mean() if (y == 0).any() else 0.0
        scores.append((tpr + tnr) / 2)
    scores = np.array(scores)
    best = np.flatnonzero(scores >= scores.max() - 1e-12)
    return float(candidates[best[len(best) // 2]])


def _auc(y, p) -> float | None:
    return binary_metrics(np.asarray(y, int), np.asarray(p, np.float64)).get("roc_auc")


def half_split_report(rows: list[dict]) -> dict:
    """The protocol's numbers from evaluate's score rows (label real/fake, video_p_fake, generator,
    source_repo, faces, verdict, reason)."""
    for row in rows:
        row["family"], row["half"] = family(row), half(row)
    scored = [r for r in rows if r.get(SCORE) not in (None, "")]
    for r in scored:
        r[SCORE] = float(r[SCORE])
    out: dict = {"videos": len(rows), "scored": len(scored), "score": SCORE, "halves": {}, "generators": {},
                 "face_found": {}, "not_scored": [
                     {"path": r["path"], "label": r["label"], "verdict": r.get("verdict"), "reason": r.get("reason"),
                      "error": r.get("error")} for r in rows if r.get(SCORE) in (None, "")]}
    y_all = np.array([r["label"] == "fake" for r in scored], int)
    p_all = np.array([r[SCORE] for r in scored])
    out["overall_auc"] = _auc(y_all, p_all)
    reals = [r for r in scored if r["label"] == "real"]
    by_generator = defaultdict(list)
    for r in scored:
        if r["label"] == "fake":
            by_generator[r.get("generator") or "unknown"].append(r)
    for gen, fakes in sorted(by_generator.items()):
        y = [1] * len(fakes) + [0] * len(reals)
        p = [r[SCORE] for r in fakes] + [r[SCORE] for r in reals]
        out["generators"][gen] = {"family": FAMILIES.get(gen, gen), "half": half(fakes[0]), "fakes": len(fakes),
                                  "auc_vs_all_reals": _auc(y, p),
                                  "mean_p_fake": float(np.mean([r[SCORE] for r in fakes]))}
    groups = defaultdict(list)
    for r in rows:
        groups["real" if r["label"] == "real" else (r.get("generator") or "unknown")].append(r)
    for name, members in sorted(groups.items()):
        found = [r for r in members if r.get(SCORE) not in (None, "")]
        out["face_found"][name] = {"videos": len(members), "with_faces": len(found),
                                   "rate": len(found) / len(members)}
    out["face_found_rate"] = len(scored) / max(1, len(rows))
    out["real_mean_p_fake"] = float(np.mean([r[SCORE] for r in reals])) if reals else None
    for fit_on, report_on in (("A", "B"), ("B", "A")):
        fit = [r for r in scored if r["half"] == fit_on]
        rep = [r for r in scored if r["half"] == report_on]
        yf = np.array([r["label"] == "fake" for r in fit], int)
        pf = np.array([r[SCORE] for r in fit])
        yr = np.array([r["label"] == "fake" for r in rep], int)
        pr = np.array([r[SCORE] for r in rep])
        t = fit_threshold(pf, yf) if len(np.unique(yf)) == 2 else 0.5
        temp = fit_temperature(pf, yf) if len(yf) else 1.0
        m = binary_metrics(yr, pr, threshold=t) if len(yr) else {}
        out["halves"][report_on] = {
            "families": sorted({r["family"] for r in rep}),
            "videos": len(rep), "fakes": int(yr.sum()), "reals": int(len(yr) - yr.sum()),
            "auc": m.get("roc_auc"),
            "threshold_from_other_half": t, "temperature_from_other_half": temp,
            "balanced_accuracy": m.get("balanced_accuracy"), "accuracy": m.get("accuracy"),
            "recall_fake": m.get("recall"), "precision_fake": m.get("precision"), "eer": m.get("eer"),
            "log_loss_raw": log_loss(pr, yr, 1.0) if len(yr) else None,
            "log_loss_calibrated": log_loss(pr, yr, temp) if len(yr) else None,
            "balanced_accuracy_at_0.5": (binary_metrics(yr, pr, threshold=0.5).get("balanced_accuracy")
                                         if len(yr) else None),
        }
    return out


def write_histogram(rows: list[dict], path: Path) -> Path | None:
    """P(fake) histogram of the scored videos, reals against fakes (and the fakes' generators marked)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    scored = [r for r in rows if r.get(SCORE) not in (None, "")]
    bins = np.linspace(0, 1, 21)
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.hist([float(r[SCORE]) for r in scored if r["label"] == "real"], bins=bins, alpha=0.6, label="real")
    ax.hist([float(r[SCORE]) for r in scored if r["label"] == "fake"], bins=bins, alpha=0.6, label="fake")
    ax.set_xlabel("video-level P(fake) (mean over faces)")
    ax.set_ylabel("videos")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def summary_lines(report: dict) -> list[str]:
    f = lambda v: "n/a" if v is None else f"{v:.3f}"
    lines = [f"{report['scored']}/{report['videos']} videos scored (face found), overall video-level AUC "
             f"{f(report['overall_auc'])}"]
    for name in ("A", "B"):
        h = report["halves"][name]
        lines.append(f"half {name} ({', '.join(h['families'])}): {h['fakes']} fake / {h['reals']} real, "
                     f"AUC {f(h['auc'])}, balanced accuracy {f(h['balanced_accuracy'])} at the other half's threshold "
                     f"{f(h['threshold_from_other_half'])} (at 0.5: {f(h['balanced_accuracy_at_0.5'])})")
    for gen, g in report["generators"].items():
        lines.append(f"  {gen} [{g['half']}]: {g['fakes']} fakes, AUC vs all reals {f(g['auc_vs_all_reals'])}, "
                     f"mean P(fake) {f(g['mean_p_fake'])}")
    lines.append(f"  reals: mean P(fake) {f(report['real_mean_p_fake'])}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m research.sbi_v1.halfsplit",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("scores", help="scores.csv written by deepfake-detect evaluate")
    parser.add_argument("--out", required=True, help="folder for halfsplit.json and histogram.png")
    args = parser.parse_args(argv)
    with open(args.scores, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    report = half_split_report(rows)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "halfsplit.json").write_text(json.dumps(report, indent=2))
    write_histogram(rows, out / "histogram.png")
    print("\n".join(summary_lines(report)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
