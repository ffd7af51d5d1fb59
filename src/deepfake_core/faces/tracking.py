"""Face-box reuse between sampled frames: res10 is skipped when the faces found at the last detection have
barely moved and nothing else in the frame has changed (settings.face_reuse).

The rule compares each sampled frame with the frame where the boxes were last *detected* (so slow motion
cannot accumulate past the thresholds) and detects again when any of these holds:
- the last detection found no face, or a Haar box (only res10 boxes are reused);
- REUSE_MAX sampled frames in a row have reused the boxes;
- the scene changed: the mean difference of the whole frame (grey, SCENE_SIDE px) exceeds SCENE_CUT;
- something changed outside the faces (a new face may have entered): a cell of the frame away from every box
  differs by more than OUTSIDE_CHANGE;
- a face moved, turned or changed size: its patch (box grown by PATCH_GROW, grey, PATCH_SIDE px) differs by
  more than FACE_CHANGE on average.
FACE_CHANGE, OUTSIDE_CHANGE and REUSE_MAX were chosen on the training clips (benchmarks/bench_faces.py --reuse
--grid): the fewest res10 runs with the same frames with a face, no more off-track boxes, faces counted differently
in <= 0.5 % of frames, and 99 % of reused boxes overlapping the box res10 finds in that frame by IoU >= 0.85
(benchmarks/RESULTS.md, "Face finding").
"""

from __future__ import annotations

import cv2
import numpy as np

from .detect import FaceBox

REUSE_MAX = 3  # sampled frames in a row that may reuse the boxes; res10 runs at least on every 4th
SCENE_SIDE = 96  # pixels: the longer side of the grey thumbnail of the whole frame
SCENE_CUT = 12.0  # grey levels: mean |difference| of the thumbnails that means another scene
CELL = 8  # thumbnail pixels: side of the cells checked outside the faces
OUTSIDE_CHANGE = 16.0  # grey levels: mean |difference| of one such cell that may be a new face
PATCH_SIDE = 32  # pixels: the side of each face's grey patch
PATCH_GROW = 0.25  # the patch is the box grown by this fraction of its size on every side
FACE_CHANGE = 10.0  # grey levels: mean |difference| of a face patch that means the face moved


def thumbnail(frame_bgr: np.ndarray) -> np.ndarray:
    """(h, w) float32 grey copy of the frame, SCENE_SIDE pixels on its longer side."""
    h, w = frame_bgr.shape[:2]
    scale = SCENE_SIDE / max(h, w)
    small = cv2.resize(frame_bgr, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(small, cv2.COLOR_BGR2GRAY).astype(np.float32)


def face_patch(frame_bgr: np.ndarray, box: FaceBox) -> np.ndarray:
    """(PATCH_SIDE, PATCH_SIDE) float32 grey patch of the box grown by PATCH_GROW (clipped to the frame)."""
    h, w = frame_bgr.shape[:2]
    dx, dy = box.width * PATCH_GROW, box.height * PATCH_GROW
    x1, y1 = max(0, int(box.x1 - dx)), max(0, int(box.y1 - dy))
    x2, y2 = min(w, int(box.x2 + dx)), min(h, int(box.y2 + dy))
    patch = cv2.resize(frame_bgr[y1:y2, x1:x2], (PATCH_SIDE, PATCH_SIDE), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(patch, cv2.COLOR_BGR2GRAY).astype(np.float32)


def outside_change(before: np.ndarray, after: np.ndarray, boxes: list[FaceBox], frame_shape) -> float:
    """The largest mean |difference| of a CELL x CELL cell of two thumbnails that no (grown) box touches."""
    diff = np.abs(after - before)
    h, w = frame_shape[:2]
    sy, sx = diff.shape[0] / h, diff.shape[1] / w
    mask = np.ones(diff.shape, bool)
    for b in boxes:
        dx, dy = b.width * PATCH_GROW, b.height * PATCH_GROW
        mask[max(0, int((b.y1 - dy) * sy)):int(np.ceil((b.y2 + dy) * sy)),
             max(0, int((b.x1 - dx) * sx)):int(np.ceil((b.x2 + dx) * sx))] = False
    worst = 0.0
    for y in range(0, diff.shape[0], CELL):
        for x in range(0, diff.shape[1], CELL):
            cell = mask[y:y + CELL, x:x + CELL]
            if cell.any():
                worst = max(worst, float(diff[y:y + CELL, x:x + CELL][cell].mean()))
    return worst


class FaceReuse:
    """The reuse rule's state for one video, frame by frame:

        reuse = FaceReuse()
        for frame in frames:
            boxes = reuse.boxes(frame)           # the last detection's boxes, or None: detect
            if boxes is None:
                boxes = detector.detect(frame)
                reuse.detected(frame, boxes)
    """

    def __init__(self, max_reuse: int = REUSE_MAX, face_change: float = FACE_CHANGE,
                 outside: float = OUTSIDE_CHANGE, scene_cut: float = SCENE_CUT):
        self.max_reuse, self.face_change, self.outside, self.scene_cut = max_reuse, face_change, outside, scene_cut
        self._boxes: list[FaceBox] = []
        self._scene: np.ndarray | None = None
        self._patches: list[np.ndarray] = []
        self._shape: tuple = ()
        self._reused = 0
        self.detections = 0  # frames res10 ran on
        self.reuses = 0  # frames that reused the boxes

    def detected(self, frame_bgr: np.ndarray, boxes: list[FaceBox]) -> None:
        """Remember a frame's detected boxes (and the frame's thumbnail and face patches)."""
        self.detections += 1
        self._reused = 0
        self._boxes = list(boxes)
        self._shape = frame_bgr.shape
        reusable = bool(boxes) and all(b.method == "dnn" for b in boxes)
        self._scene = thumbnail(frame_bgr) if reusable else None
        self._patches = [face_patch(frame_bgr, b) for b in boxes] if reusable else []

    def boxes(self, frame_bgr: np.ndarray) -> list[FaceBox] | None:
        """The last detection's boxes when the rule says they still stand in this frame, else None."""
        if self._scene is None or self._reused >= self.max_reuse or frame_bgr.shape != self._shape:
            return None
        scene = thumbnail(frame_bgr)
        if float(np.abs(scene - self._scene).mean()) > self.scene_cut:
            return None
        if outside_change(self._scene, scene, self._boxes, frame_bgr.shape) > self.outside:
            return None
        for box, patch in zip(self._boxes, self._patches):
            if float(np.abs(face_patch(frame_bgr, box) - patch).mean()) > self.face_change:
                return None
        self._reused += 1
        self.reuses += 1
        return list(self._boxes)
