"""Late fusion of per-face video logits with the audio logits of the same moment. Pure functions.

Class order everywhere: index 0 = FAKE, 1 = REAL.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..settings import FUSION_STRATEGIES, check_choice


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def reliability(probs: np.ndarray) -> np.ndarray:
    """r = max class probability, per row."""
    return np.asarray(probs).max(axis=-1)


def fusion_weights(
    strategy: str, video_probs: np.ndarray, audio_probs: np.ndarray, tau: float = 0.5, min_weight: float = 0.2
) -> tuple[np.ndarray, np.ndarray]:
    """(video weight, audio weight) per row; the two sum to 1.

    equal:       0.5 / 0.5.
    video_trust: the original rule: 0.9/0.1 when the video's confidence > 0.6, else 0.85/0.15 when the
                 video says FAKE, else 0.7/0.3.
    adaptive:    alpha = softmax(tau * [r_video, r_audio]), each weight at least `min_weight`.
    noisy_or / max: see `either_fake`; here each modality's share of the fake evidence.
    """
    check_choice("fusion", strategy, FUSION_STRATEGIES)
    n = len(video_probs)
    if strategy == "equal":
        w_v = np.full(n, 0.5)
    elif strategy == "video_trust":
        confident = reliability(video_probs) > 0.6
        says_fake = video_probs[:, 0] > video_probs[:, 1]
        w_v = np.where(confident, 0.9, np.where(says_fake, 0.85, 0.7))
    elif strategy in EITHER_STRATEGIES:
        # share of the evidence for FAKE: -log P(real) of each modality (max: all to the larger P(fake))
        if strategy == "max":
            w_v = (video_probs[:, 0] >= audio_probs[:, 0]).astype(np.float64)
        else:
            e_v, e_a = -np.log(np.clip(video_probs[:, 1], 1e-12, 1)), -np.log(np.clip(audio_probs[:, 1], 1e-12, 1))
            w_v = np.where(e_v + e_a > 0, e_v / np.maximum(e_v + e_a, 1e-12), 0.5)
    else:
        r = np.stack([reliability(video_probs), reliability(audio_probs)], axis=-1)
        w_v = softmax(tau * r)[:, 0]
        w_v = np.clip(w_v, min_weight, 1.0 - min_weight)
    return w_v, 1.0 - w_v


EITHER_STRATEGIES = ("noisy_or", "max")  # fuse probabilities: either modality confidently fake flags the row


def either_fake(strategy: str, p_fake_video: np.ndarray, p_fake_audio: np.ndarray) -> np.ndarray:
    """Fused P(fake) when either modality may reveal the fake (a generated face over a real voice, or a cloned
    voice over a real face): noisy_or 1 - (1 - p_v)(1 - p_a), max max(p_v, p_a). Inputs are each modality's
    calibrated P(fake); a 0.95 fake face with a 0.05 fake voice gives 0.9525 (noisy_or) or 0.95 (max)."""
    p_v = np.asarray(p_fake_video, dtype=np.float64)
    p_a = np.asarray(p_fake_audio, dtype=np.float64)
    if strategy == "noisy_or":
        return 1.0 - (1.0 - p_v) * (1.0 - p_a)
    if strategy == "max":
        return np.maximum(p_v, p_a)
    raise ValueError(f"not an either-modality strategy: {strategy!r} (choose from {EITHER_STRATEGIES})")


@dataclass
class Fusion:
    video_probs: np.ndarray  # (N, 2) softmax(video logits / video temperature)
    audio_probs: np.ndarray | None  # (N, 2) softmax(audio logits / audio temperature), None without audio
    probs: np.ndarray  # (N, 2) softmax of the fused logits
    w_video: np.ndarray  # (N,)
    w_audio: np.ndarray  # (N,)

    @property
    def p_fake(self) -> np.ndarray:
        return self.probs[:, 0]


def fuse(
    video_logits: np.ndarray,
    audio_logits: np.ndarray | None,
    strategy: str = "equal",
    audio_temperature: float = 2.0,
    video_temperature: float = 1.0,
    tau: float = 0.5,
    min_weight: float = 0.2,
) -> Fusion:
    """Fused logits Z = w_v * Z_v + w_a * Z_a, row by row; probabilities softmax(Z). For noisy_or and max
    the fused P(fake) is `either_fake` of the two tempered probabilities instead.

    `audio_logits[i]` must be the audio window that belongs with face `i` (matched by time). Without
    audio (None) the video probabilities stand alone with weights 1 / 0.
    """
    z_v = np.asarray(video_logits, dtype=np.float64).reshape(-1, 2) / video_temperature
    p_v = softmax(z_v)
    if audio_logits is None:
        n = len(z_v)
        return Fusion(p_v, None, p_v.copy(), np.ones(n), np.zeros(n))
    z_a = np.asarray(audio_logits, dtype=np.float64).reshape(-1, 2) / audio_temperature
    if z_a.shape != z_v.shape:
        raise ValueError(f"video and audio logits differ in shape: {z_v.shape} vs {z_a.shape}")
    p_a = softmax(z_a)
    w_v, w_a = fusion_weights(strategy, p_v, p_a, tau, min_weight)
    if strategy in EITHER_STRATEGIES:
        p_fake = either_fake(strategy, p_v[:, 0], p_a[:, 0])
        return Fusion(p_v, p_a, np.stack([p_fake, 1.0 - p_fake], axis=-1), w_v, w_a)
    z = w_v[:, None] * z_v + w_a[:, None] * z_a
    return Fusion(p_v, p_a, softmax(z), w_v, w_a)


# -- many faces, one video score ----------------------------------------------------------------------------
def _trimmed(z: np.ndarray, share: float = 0.2) -> float:
    z = np.sort(z)
    cut = int(share * len(z))
    return float(np.mean(z[cut: len(z) - cut])) if len(z) > 2 * cut else float(np.mean(z))


def _top(z: np.ndarray, k: int = 3) -> float:
    return float(np.mean(np.sort(z)[-k:]))


def _mean_prob_logit(z: np.ndarray) -> float:
    p = min(max(float(np.mean(1.0 / (1.0 + np.exp(-z)))), 1e-7), 1 - 1e-7)
    return float(np.log(p / (1 - p)))


# name -> f(faces' logits of P(fake), 1-D) -> one video logit. A model file names its rule in its metadata
# ("aggregation"); the original models use mean_prob, the mean probability, as the original app did.
AGGREGATIONS: dict[str, Callable[[np.ndarray], float]] = {
    "mean_prob": _mean_prob_logit,
    "mean_logit": lambda z: float(np.mean(z)),
    "median": lambda z: float(np.median(z)),
    "top3_mean": _top,
    "trimmed_mean": _trimmed,  # 20 % cut from each end
}


def aggregate(face_logits, how: str) -> float:
    """One video logit from its faces' logits (P(fake) = sigmoid), by an AGGREGATIONS rule."""
    check_choice("aggregation", how, tuple(AGGREGATIONS))
    z = np.asarray(face_logits, dtype=np.float64).reshape(-1)
    if not len(z):
        raise ValueError("no face scores to aggregate")
    return AGGREGATIONS[how](z)


def video_p_fake(p_fake: np.ndarray, how: str = "mean_prob") -> float:
    """The video's P(fake) from its faces' P(fake) by an AGGREGATIONS rule (mean_prob: the plain mean)."""
    p = np.asarray(p_fake, dtype=np.float64).reshape(-1)
    if how == "mean_prob":
        return float(np.mean(p))
    p = np.clip(p, 1e-12, 1 - 1e-12)
    return float(1.0 / (1.0 + np.exp(-aggregate(np.log(p / (1 - p)), how))))
