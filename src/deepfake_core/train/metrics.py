"""Binary detection metrics. The positive class is FAKE; scores are P(fake).

`binary_metrics` takes its values from scikit-learn (tests check they equal sklearn's on the same scores);
`equal_error_rate` is computed here from sklearn's ROC curve.
"""

from __future__ import annotations

import warnings

import numpy as np


def equal_error_rate(y_fake, p_fake) -> tuple[float | None, float | None]:
    """(EER, threshold): the rate where the false-positive rate (real called fake) equals the
    false-negative rate (fake called real), on the ROC curve interpolated linearly between its points;
    the threshold is the score at the nearest ROC point. (None, None) when only one class is present."""
    from sklearn.metrics import roc_curve

    y = np.asarray(y_fake).astype(int)
    if len(np.unique(y)) < 2:
        return None, None
    fpr, tpr, thresholds = roc_curve(y, np.asarray(p_fake, dtype=np.float64))
    g = fpr + tpr - 1.0  # < 0 while FPR < FNR; the EER is where it crosses 0
    i = int(np.argmax(g >= 0))  # g[-1] = 1 (fpr = tpr = 1), so a crossing exists
    if i == 0 or g[i] == 0:
        return float(fpr[i]), float(min(thresholds[i], 1.0))
    alpha = -g[i - 1] / (g[i] - g[i - 1])
    rate = fpr[i - 1] + alpha * (fpr[i] - fpr[i - 1])
    nearest = i if alpha >= 0.5 else i - 1
    return float(rate), float(min(thresholds[nearest], 1.0))


def binary_metrics(y_fake, p_fake, threshold: float = 0.5, y_pred=None) -> dict:
    """Accuracy, balanced accuracy, precision, recall, F1 (of FAKE), ROC-AUC, EER, average precision and
    the confusion counts. Predictions are `y_pred` (1 = fake) when given, else P(fake) >= threshold.
    Metrics that need both classes are None when one is missing."""
    from sklearn.metrics import (
        accuracy_score,
        average_precision_score,
        balanced_accuracy_score,
        confusion_matrix,
        f1_score,
        precision_score,
        recall_score,
        roc_auc_score,
    )

    y = np.asarray(y_fake).astype(int)
    p = np.asarray(p_fake, dtype=np.float64)
    pred = (p >= threshold).astype(int) if y_pred is None else np.asarray(y_pred).astype(int)
    out: dict = {"n": int(len(y)), "n_fake": int(y.sum()), "n_real": int(len(y) - y.sum()),
                 "threshold": float(threshold)}
    if not len(y):
        return out | {k: None for k in ("accuracy", "balanced_accuracy", "precision", "recall", "f1", "roc_auc",
                                          "eer", "eer_threshold", "average_precision", "confusion")}
    both = len(np.unique(y)) == 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn warns on a single class; we return None there instead
        tn, fp, fn, tp = confusion_matrix(y, pred, labels=[0, 1]).ravel()
        eer, eer_threshold = equal_error_rate(y, p)
        out.update(
            accuracy=float(accuracy_score(y, pred)),
            balanced_accuracy=float(balanced_accuracy_score(y, pred)) if both else None,
            precision=float(precision_score(y, pred, zero_division=0)),
            recall=float(recall_score(y, pred, zero_division=0)) if y.sum() else None,
            f1=float(f1_score(y, pred, zero_division=0)),
            roc_auc=float(roc_auc_score(y, p)) if both else None,
            eer=eer, eer_threshold=eer_threshold,
            average_precision=float(average_precision_score(y, p)) if y.sum() else None,
            confusion={"tn": int(tn), "fp": int(fp), "fn": int(fn), "tp": int(tp)},
        )
    return out


def group_mean(values, groups) -> tuple[np.ndarray, list]:
    """The mean of `values` per group (in order of first appearance) and the group names."""
    order: dict = {}
    for g in groups:
        order.setdefault(g, len(order))
    sums = np.zeros(len(order))
    counts = np.zeros(len(order))
    idx = np.array([order[g] for g in groups], dtype=int)
    np.add.at(sums, idx, np.asarray(values, dtype=np.float64))
    np.add.at(counts, idx, 1)
    return sums / np.maximum(counts, 1), list(order)
