"""The analysis's face stage: decode the sampled frames, find their faces, make each face's video-model input
(`frame_faces`, the producer: it may run in a background thread), then score them in batches
(`score_faces`, the consumer)."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch

from .context import Context
from ..faces.detect import FaceBox, crop_face
from ..models.networks import face_tensor
from .prefetch import Background
from .report import Thumbnail
from .timeline import FaceRow
from ..faces.tracking import FaceReuse
from ..media.video import read_frames

THUMBNAIL_SIDE = 320  # pixels, longest side of a kept thumbnail


@dataclass
class FrameFaces:
    index: int  # frame number
    time_s: float
    boxes: list[FaceBox]
    inputs: list[torch.Tensor]  # one (3, S, S) video-model input per box
    thumbnail: Thumbnail | None


@dataclass
class FaceScores:
    rows: list[FaceRow] = field(default_factory=list)  # one per scored face, in frame order
    logits: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))  # (len(rows), 2) video-model output
    thumbnails: list[Thumbnail] = field(default_factory=list)


DECODE_AHEAD = 2  # decoded frames queued ahead of face finding when decoding has its own thread

def frame_faces(run: Context, indices: list[int], decode_thread: bool = False) -> Iterator[FrameFaces]:
    """Decode the sampled frames of `run`'s file, find their faces and make each face's model input, frame by
    frame (decoding counted in run.stats). `decode_thread`: decode in a thread of its own, DECODE_AHEAD frames
    ahead, so that decoding overlaps face finding (the "probe_decode" time is then the wait for a frame)."""
    d, s = run.detector, run.settings
    spec = d.video.spec
    keep = thumbnail_positions(len(indices), s.thumbnails)
    frames = read_frames(run.path, indices, run.stats, max_pixels=s.max_frame_pixels)
    if decode_thread:
        frames = Background(frames, depth=DECODE_AHEAD, name="deepfake-decode")
    boxes: list[FaceBox] = []
    reuse = FaceReuse() if s.face_reuse else None  # boxes kept between sampled frames while faces stay still
    with contextlib.closing(frames):
        for done in itertools.count():
            run.deadline.check("decoding frames")
            with run.timer("probe_decode"):
                frame = next(frames, None)
            if frame is None:
                return
            with run.timer("face_detection"):
                found = reuse.boxes(frame.image) if reuse else None  # None: res10 runs
                if found is None:
                    found = d.detect_faces(frame.image, previous=boxes)
                    if reuse:
                        reuse.detected(frame.image, found)
            boxes = [b for b in found if (b.confidence is None or b.confidence > s.face_confidence)
                     and min(b.width, b.height) >= s.min_face_size][: s.max_faces_per_frame]
            with run.timer("crop_preprocess"):
                inputs = [face_tensor(cv2.cvtColor(crop_face(frame.image, box, s.face_margin), cv2.COLOR_BGR2RGB),
                                      spec) for box in boxes]
                thumbnail = make_thumbnail(frame.image, frame.index, frame.time_s, boxes) if done in keep else None
            yield FrameFaces(frame.index, frame.time_s, boxes, inputs, thumbnail)


def score_faces(run: Context, faces: Iterator[FrameFaces], planned: int) -> FaceScores:
    """Score the faces `faces` yields with the video model, `run.batch` at a time, as they come."""
    d, out = run.detector, FaceScores()
    logits: list[np.ndarray] = []
    pending: list[torch.Tensor] = []
    for done, item in enumerate(faces, start=1):
        run.deadline.check("scoring the faces")
        pending.extend(item.inputs)
        out.rows.extend((item.index, item.time_s, box) for box in item.boxes)
        if item.thumbnail is not None:
            out.thumbnails.append(item.thumbnail)
        if len(pending) >= run.batch:
            with run.timer("video_model"):
                logits.append(d.score(d.video, pending, run.batch))
            pending = []
        run.notify(0.08 + 0.9 * done / planned, f"frame {done}/{planned}: {len(out.rows)} faces so far")
    if pending:
        with run.timer("video_model"):
            logits.append(d.score(d.video, pending, run.batch))
    if logits:
        out.logits = np.concatenate(logits)
    return out


def thumbnail_positions(n: int, count: int) -> set[int]:
    """Which of n sampled frames keep a thumbnail: `count` of them, evenly spread."""
    if count <= 0 or n <= 0:
        return set()
    return {int(round(x)) for x in np.linspace(0, n - 1, min(count, n))}


def make_thumbnail(image_bgr: np.ndarray, index: int, time_s: float, boxes: list[FaceBox]) -> Thumbnail:
    """A frame shrunk to THUMBNAIL_SIDE (RGB), with its face boxes scaled to it."""
    h, w = image_bgr.shape[:2]
    scale = min(1.0, THUMBNAIL_SIDE / max(h, w))
    small = cv2.resize(image_bgr, (max(1, int(w * scale)), max(1, int(h * scale))), interpolation=cv2.INTER_AREA)
    scaled = [[int(v * scale) for v in (b.x1, b.y1, b.x2, b.y2)] for b in boxes]
    return Thumbnail(index, time_s, cv2.cvtColor(small, cv2.COLOR_BGR2RGB), scaled, scale)
