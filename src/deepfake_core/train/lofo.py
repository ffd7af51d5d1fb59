"""Leave-one-family-out (LOFO) validation of a video model, and the pieces it chooses with. Pure functions.

Each generator family is held out in turn: the model trains on every other family and on the reals that are
not held out, and is scored on the held-out family's fakes against held-out reals. Reals are dealt into
`REAL_FOLDS` folds by identity (a person, or a source video: segments of one `blob` share it), so no person is
on both sides; a family's fold holds out the real fold `index % REAL_FOLDS`. Pseudo-fakes made from a real
face (self-blends) belong to that face's identity and fold.
"""

from __future__ import annotations

import zlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..analysis.fusion import AGGREGATIONS, aggregate  # noqa: F401 (re-exported for training code)

REAL_FOLDS = 5


def real_fold(identity: str, folds: int = REAL_FOLDS) -> int:
    """The fold of an identity: stable across runs and machines (crc32, not Python's salted hash)."""
    return zlib.crc32(identity.encode("utf-8")) % folds


@dataclass(frozen=True)
class Sample:
    family: str  # generator family of a fake; "real" for a real
    identity: str  # person or source video
    derived: bool = False  # a pseudo-fake made from a real face of `identity`
    video: bool = True  # part of a video (False: a still photo, used for training only)


def lofo_split(samples: Sequence[Sample], held_out: str, families: Sequence[str],
               folds: int = REAL_FOLDS) -> tuple[np.ndarray, np.ndarray]:
    """(train mask, test mask) for holding out family `held_out` (one of `families`).

    Test: the held-out family's samples (pseudo-fakes only those of held-out identities) and the real video
    samples of the held-out real fold. Train: every other family's fakes and every real (and pseudo-fake)
    whose identity is not in the held-out fold. Photos are never tested."""
    fold = list(families).index(held_out) % folds
    fam = np.array([s.family for s in samples])
    in_fold = np.array([real_fold(s.identity, folds) == fold for s in samples])
    derived = np.array([s.derived for s in samples])
    video = np.array([s.video for s in samples])
    real = fam == "real"
    test = (real & in_fold & video) | ((fam == held_out) & (~derived | (in_fold & video)))
    train = (fam != held_out) & ~((real | derived) & in_fold)
    return train, test


def family_weights(families: Sequence[str], mask: np.ndarray) -> np.ndarray:
    """Sample weights over `mask` that give every fake family the same total weight, and the reals as much as
    all fakes together; they sum to the number of samples in `mask` (others get 0)."""
    fam = np.asarray(families)
    w = np.zeros(len(fam))
    fakes = sorted(set(fam[mask]) - {"real"})
    for f in fakes:
        m = mask & (fam == f)
        w[m] = 0.5 / m.sum() / len(fakes)
    m = mask & (fam == "real")
    if m.any():
        w[m] = 0.5 / m.sum()
    return w / max(w.sum(), 1e-12) * mask.sum()


def balanced_indices(families: Sequence[str], labels: Sequence[str], count: int,
                     rng: np.random.Generator) -> np.ndarray:
    """`count` sample indices drawn with replacement so that half are real and the fakes are spread evenly
    over their families (a family-balanced sampler)."""
    fam = np.asarray(families)
    lab = np.asarray(labels)
    reals = np.flatnonzero(lab == "real")
    groups = [np.flatnonzero((lab == "fake") & (fam == f)) for f in sorted(set(fam[lab == "fake"]))]
    out = []
    for i in range(count):
        pool = reals if i % 2 == 0 or not groups else groups[int(rng.integers(len(groups)))]
        out.append(int(pool[int(rng.integers(len(pool)))]))
    return np.array(out, dtype=np.int64)


# -- from face scores to one score per video (the rules live with the product's fusion) -----------------------
def video_logits(groups: Sequence[str], face_logits: np.ndarray, how: str) -> tuple[list[str], np.ndarray]:
    """(video keys, one aggregated logit per video) from per-face logits and the video each face is from."""
    by: dict[str, list[float]] = defaultdict(list)
    for g, z in zip(groups, face_logits):
        by[g].append(float(z))
    keys = sorted(by)
    return keys, np.array([aggregate(by[k], how) for k in keys])


# -- calibration ---------------------------------------------------------------------------------------------
def fit_temperature(logits: np.ndarray, is_fake: np.ndarray, low: float = 0.05, high: float = 50.0) -> float:
    """The T minimising the log-loss of sigmoid(logits / T) (golden-section search on log T)."""
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(is_fake, dtype=np.float64)

    def loss(log_t: float) -> float:
        s = z / np.exp(log_t)
        return float(np.mean(np.logaddexp(0, s) - y * s))

    a, b = np.log(low), np.log(high)
    g = (np.sqrt(5) - 1) / 2
    c, d = b - g * (b - a), a + g * (b - a)
    for _ in range(80):
        if loss(c) < loss(d):
            b = d
        else:
            a = c
        c, d = b - g * (b - a), a + g * (b - a)
    return float(np.exp((a + b) / 2))


def balanced_threshold(p_fake: np.ndarray, is_fake: np.ndarray) -> float:
    """The P(fake) threshold (a video is FAKE above it) with the best balanced accuracy; ties: nearest 0.5."""
    p = np.asarray(p_fake, dtype=np.float64)
    y = np.asarray(is_fake, dtype=bool)
    cands = np.unique(np.concatenate([[0.5], (np.sort(p)[1:] + np.sort(p)[:-1]) / 2]))
    best = max(cands, key=lambda t: (balanced_accuracy(p > t, y), -abs(t - 0.5)))
    return float(best)


def balanced_accuracy(pred_fake: np.ndarray, is_fake: np.ndarray) -> float:
    pred, y = np.asarray(pred_fake, bool), np.asarray(is_fake, bool)
    tpr = (pred & y).sum() / max(y.sum(), 1)
    tnr = (~pred & ~y).sum() / max((~y).sum(), 1)
    return float((tpr + tnr) / 2)


# -- the ship rule (written before measuring; docs/MODEL_CARD.md) -------------------------------------------
@dataclass(frozen=True)
class ShipRule:
    min_lofo_auc: float = 0.75  # mean over the held-out generator families
    min_dev_auc: float = 0.72  # dev-eval, video level, overall
    experimental_below: float = 0.80  # shipped below this dev-eval AUC: labelled experimental


def ship_decision(lofo_auc: float, dev_auc: float, baseline_lofo: float, baseline_dev: float,
                  rule: ShipRule = ShipRule()) -> tuple[bool, bool, list[str]]:
    """(ship, experimental, reasons not to ship): ship when LOFO and dev-eval clear the rule's floors and the
    candidate beats the frozen baseline on both."""
    reasons = []
    if not lofo_auc >= rule.min_lofo_auc:
        reasons.append(f"LOFO mean AUC {lofo_auc:.3f} < {rule.min_lofo_auc}")
    if not dev_auc >= rule.min_dev_auc:
        reasons.append(f"dev-eval AUC {dev_auc:.3f} < {rule.min_dev_auc}")
    if not lofo_auc > baseline_lofo:
        reasons.append(f"LOFO mean AUC {lofo_auc:.3f} does not beat the baseline's {baseline_lofo:.3f}")
    if not dev_auc > baseline_dev:
        reasons.append(f"dev-eval AUC {dev_auc:.3f} does not beat the baseline's {baseline_dev:.3f}")
    ship = not reasons
    return ship, ship and dev_auc < rule.experimental_below, reasons
