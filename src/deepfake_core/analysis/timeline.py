"""Pure functions that turn scored faces and audio windows into the report's timeline parts: faces paired
with audio windows by time, track ids, stray detections, per-track and per-modality summaries."""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from ..faces.detect import FaceBox, assign_tracks
from .fusion import video_p_fake
from .report import FAKE, REAL, ModalityResult, TimelineRow, Track

FaceRow = tuple[int, float, FaceBox]  # (frame index, time in seconds, box) of one scored face


def match_windows(times: list[float], spans: list[tuple[float, float]]) -> np.ndarray:
    """For each time, the index of the audio window whose span contains it (the one centred nearest
    when overlapping windows do), else the nearest window. Pairs modalities by time, not by count."""
    starts = np.array([a for a, _ in spans])
    ends = np.array([b for _, b in spans])
    centres = (starts + ends) / 2
    out = np.empty(len(times), dtype=np.int64)
    for i, t in enumerate(times):
        inside = (starts <= t) & (t <= ends)
        distance = np.where(inside, np.abs(centres - t), np.inf)
        if not inside.any():
            distance = np.maximum(starts - t, t - ends)
        out[i] = int(np.argmin(distance))
    return out


def modality_result(p_fake: np.ndarray, weights: np.ndarray | None,
                    aggregation: str = "mean_prob") -> ModalityResult:
    """A judged modality: its items' P(fake) made one by `aggregation` (fusion.AGGREGATIONS; the video model
    declares its own, so that faces judged alone give the fused score itself), its prediction at 0.5 and its mean
    fusion weight."""
    fake = video_p_fake(p_fake, aggregation)
    return ModalityResult(
        available=True, fake_prob=fake, real_prob=1.0 - fake, prediction=REAL if 1.0 - fake > 0.5 else FAKE,
        weight=float(np.mean(weights)) if weights is not None and len(weights) else None, count=len(p_fake))


def track_ids(rows: list[FaceRow]) -> list[int]:
    """The track of each face, linking the boxes of consecutive sampled frames (faces/detect.assign_tracks)."""
    per_frame: dict[int, list[int]] = {}
    order = []
    for i, (index, _, _) in enumerate(rows):
        if index not in per_frame:
            per_frame[index] = []
            order.append(index)
        per_frame[index].append(i)
    ids = assign_tracks([[rows[i][2] for i in per_frame[index]] for index in order])
    out = [0] * len(rows)
    for index, frame_ids in zip(order, ids, strict=False):
        for i, tid in zip(per_frame[index], frame_ids, strict=False):
            out[i] = tid
    return out


def stray(ids: list[int]) -> np.ndarray:
    """True for the faces of tracks with a single face, when some other track has several (a lone box in one
    sampled frame is far more often a false detection than a person; with no longer track nothing is stray)."""
    sizes = np.bincount(np.asarray(ids, dtype=np.int64)) if ids else np.zeros(0, np.int64)
    if not len(sizes) or sizes.max() < 2:
        return np.zeros(len(ids), dtype=bool)
    return sizes[np.asarray(ids, dtype=np.int64)] == 1


def tracks(timeline: list[TimelineRow], threshold: float, aggregation: str = "mean_prob") -> list[Track]:
    """One summary per track: its span, face count, P(fake) (its faces' made one by `aggregation`, as the video's
    are) and verdict at `threshold`."""
    groups: dict[int, list[TimelineRow]] = defaultdict(list)
    for row in timeline:
        groups[row.track].append(row)
    out = []
    for tid, rows in sorted(groups.items()):
        fused = video_p_fake(np.array([r.fused_p_fake for r in rows]), aggregation)
        out.append(Track(tid, rows[0].time_s, rows[-1].time_s, len(rows),
                         video_p_fake(np.array([r.video_p_fake for r in rows]), aggregation), fused,
                         REAL if 1.0 - fused > threshold else FAKE, stray=rows[0].stray))
    return out
