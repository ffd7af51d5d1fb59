"""Training datasets: where samples come from (sources), how they become model inputs, and splits.

A *source* yields raw samples and their labels; `ModelInputDataset` augments them and applies the inference
preprocessing of the model's spec (`networks.face_tensor` for faces, `audio.mel_image` for mels). To train on
other data (e.g. self-blended pseudo-fakes made from real faces), write a source:

    class MySource:                       # the FaceSource protocol
        labels: list[str] | None          # "real"/"fake" per sample when known up front (class balance), else None
        groups: list[str]                 # the media file each sample comes from (item-level metrics)
        def __len__(self) -> int: ...
        def get(self, index: int, rng: np.random.Generator) -> tuple[np.ndarray, str]:
            ...                           # ((H, W, 3) uint8 RGB crop, "real" or "fake")

and wrap it: `face_dataset(MySource(...), spec, VideoAugment())`. `rng` is the only randomness a source
may use; validation datasets get one seeded by the sample index, so they are the same every epoch.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np
import torch
from torch.utils.data import Dataset

from ..media.audio import INPUT_SIZE, mel_image
from ..errors import SettingsError
from ..models.networks import ModelSpec, face_tensor
from .augment import SpecAugment, VideoAugment
from .cache import CachedItem



class SampleSource(Protocol):
    labels: list[str] | None
    groups: list[str]

    def __len__(self) -> int: ...

    def get(self, index: int, rng: np.random.Generator) -> tuple[np.ndarray, str]: ...


class CachedFaces:
    """Every face crop of the given cache items, labelled with the item's video label."""

    def __init__(self, items: Sequence[CachedItem]):
        self.index = [(item, k) for item in items if item.status == "ok" for k in range(item.faces)]
        self.labels = [item.video_label for item, _ in self.index]
        self.groups = [item.key for item, _ in self.index]

    def __len__(self) -> int:
        return len(self.index)

    def get(self, index: int, rng: np.random.Generator) -> tuple[np.ndarray, str]:
        item, k = self.index[index]
        return item.crop(k), item.video_label


class CachedMels:
    """Every audio window of the given cache items, labelled with the item's audio label.

    trim_silence drops the windows that start before the voice does (FakeAVCeleb's fakes open with a
    short silence, a shortcut a model learns instead of the voice)."""

    def __init__(self, items: Sequence[CachedItem], trim_silence: bool = False):
        self.index = []
        self.dropped = 0
        for item in items:
            if item.status != "ok" or not item.windows:
                continue
            keep = range(item.windows)
            if trim_silence and item.speech_onset_s:
                starts = item.mel_spans()[:, 0]
                keep = [n for n in keep if starts[n] >= item.speech_onset_s - 1e-6]
                self.dropped += item.windows - len(keep)
            self.index.extend((item, n) for n in keep)
        self.labels = [item.audio_label for item, _ in self.index]
        self.groups = [item.key for item, _ in self.index]

    def __len__(self) -> int:
        return len(self.index)

    def get(self, index: int, rng: np.random.Generator) -> tuple[np.ndarray, str]:
        item, n = self.index[index]
        return item.mel(n), item.audio_label


class ModelInputDataset(Dataset):
    """(input tensor, class index) pairs: source sample -> augment (training only) -> preprocess."""

    def __init__(self, source: SampleSource, preprocess: Callable[[np.ndarray], torch.Tensor],
                 class_names: Sequence[str], augment: Callable | None = None, deterministic: bool = False,
                 seed: int = 0):
        self.source = source
        self.preprocess = preprocess
        self.class_names = tuple(class_names)
        self.augment = augment
        self.deterministic = deterministic  # validation/test: the same sample every epoch
        self.seed = seed
        self._rng_key = None
        self._rng = None

    @property
    def labels(self) -> list[str] | None:
        return self.source.labels

    @property
    def groups(self) -> list[str]:
        return self.source.groups

    def __len__(self) -> int:
        return len(self.source)

    def rng(self, index: int) -> np.random.Generator:
        if self.deterministic:
            return np.random.default_rng([self.seed, index])
        key = (os.getpid(), torch.initial_seed())  # differs per DataLoader worker and epoch
        if key != self._rng_key:
            self._rng_key, self._rng = key, np.random.default_rng(key[1] % 2**63)
        return self._rng

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        rng = self.rng(index)
        sample, label = self.source.get(index, rng)
        if self.augment is not None:
            sample = self.augment(sample, rng)
        return self.preprocess(sample), self.class_names.index(label)


def face_dataset(source: SampleSource, spec: ModelSpec, augment: VideoAugment | None = None,
                 deterministic: bool = False, seed: int = 0) -> ModelInputDataset:
    """Face crops -> `networks.face_tensor(crop, spec)`: (3, S, S) float32, the spec's mean/std."""
    return ModelInputDataset(source, _Preprocess(face_tensor, spec), spec.class_names, augment, deterministic, seed)


def mel_dataset(source: SampleSource, spec: ModelSpec, augment: SpecAugment | None = None,
                deterministic: bool = False, seed: int = 0) -> ModelInputDataset:
    """(128, T) mels -> `audio.mel_image`: (3, 299, 299) float32, as audio.mel_windows makes them."""
    if spec.input_size != INPUT_SIZE:
        raise SettingsError(f"audio models take {INPUT_SIZE} px mel images (audio.mel_image); "
                            f"the spec asks for {spec.input_size}")
    return ModelInputDataset(source, mel_image, spec.class_names, augment, deterministic, seed)


class _Preprocess:
    """A picklable `fn(x, spec)` (DataLoader workers may be spawned processes)."""

    def __init__(self, fn, spec: ModelSpec):
        self.fn, self.spec = fn, spec

    def __call__(self, x):
        return self.fn(x, self.spec)


# -- splits ----------------------------------------------------------------------------------------------
def split_items(items: Sequence[CachedItem], val_fraction: float = 0.15, test_fraction: float = 0.15,
                seed: int = 0, label: Callable[[CachedItem], str] = lambda item: item.video_label) -> dict[str, str]:
    """item key -> "train" / "val" / "test".

    Items are grouped by identity when it is known (a person is never on two sides), else each media file
    is its own group (frames of one video never are). Groups are shuffled with `seed` and dealt out per
    majority label, so each split gets its share of real and fake; train always keeps at least one group
    of each label."""
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0 <= value < 1:
            raise SettingsError(f"{name} must be in [0, 1); got {value}")
    if val_fraction + test_fraction >= 1:
        raise SettingsError("val_fraction + test_fraction must be below 1")
    groups: dict[str, list[CachedItem]] = defaultdict(list)
    for item in items:
        groups[f"id:{item.identity}" if item.identity else f"file:{item.key}"].append(item)
    by_label: dict[str, list[str]] = defaultdict(list)
    for name in sorted(groups):
        labels = [label(item) for item in groups[name]]
        by_label[max(sorted(set(labels)), key=labels.count)].append(name)
    rng = np.random.default_rng(seed)
    out: dict[str, str] = {}
    for lab in sorted(by_label):
        names = list(by_label[lab])
        rng.shuffle(names)
        total = sum(len(groups[n]) for n in names)
        taken = {"val": 0, "test": 0}
        left = len(names)
        for n in names:
            split = "train"
            size = len(groups[n])
            for candidate, fraction in (("val", val_fraction), ("test", test_fraction)):
                # at least one group when the fraction is not 0; then while it brings the share closer
                wanted = fraction > 0 and (taken[candidate] == 0 or taken[candidate] + size / 2 <= fraction * total)
                if left > 1 and wanted:
                    split = candidate
                    break
            if split != "train":
                taken[split] += size
                left -= 1
            for item in groups[n]:
                out[item.key] = split
    return out
