"""The training cache that `prepare` writes and the training datasets read.

    CACHE/cache.json        format, source, the options it was built with, the face detector used
    CACHE/items.csv         one row per media file: labels, identity, status, faces, windows
    CACHE/items/<key>.npz   one file per media file (written atomically; present = done):
        crop_<k>    (h, w, 3) uint8 RGB face crop exactly as inference crops it (crop_face, no resize)
        crop_frame  (K,) int64 frame number; crop_time (K,) float64 seconds; crop_box (K, 4) int64 x1 y1 x2 y2
        mel_<n>     (128, T) float32 normalised log-mel of audio window n (audio.log_mel); the model input
                    is audio.mel_image(mel_<n>), exactly as audio.mel_windows makes it
        mel_span    (N, 2) float64 window start/end, seconds
        info        JSON string: faces, windows, speech_onset_s, frames_sampled, notes
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError

CACHE_FORMAT = "deepfake_core/cache/1"
CACHE_JSON = "cache.json"
INDEX_CSV = "items.csv"
ITEMS_DIR = "items"
INDEX_FIELDS = ["key", "path", "label", "video_label", "audio_label", "identity", "status", "faces", "windows",
                "speech_onset_s", "error", "extra"]


@dataclass
class CachedItem:
    key: str
    path: str  # the media file it came from
    video_label: str
    audio_label: str
    identity: str | None
    status: str  # "ok" or "error"
    faces: int
    windows: int
    speech_onset_s: float | None  # where the voice starts (leading silence ends), None without audio
    error: str | None
    file: Path  # the item's .npz
    extra: dict = field(default_factory=dict)

    def crop(self, k: int) -> np.ndarray:
        """(h, w, 3) uint8 RGB face crop k."""
        with np.load(self.file, allow_pickle=False) as z:
            return z[f"crop_{k}"]

    def mel(self, n: int) -> np.ndarray:
        """(128, T) float32 normalised log-mel of audio window n."""
        with np.load(self.file, allow_pickle=False) as z:
            return z[f"mel_{n}"]

    def mel_spans(self) -> np.ndarray:
        """(N, 2) window start/end in seconds."""
        with np.load(self.file, allow_pickle=False) as z:
            return z["mel_span"]


@dataclass
class PreparedCache:
    root: Path
    meta: dict  # cache.json
    items: list[CachedItem]

    @property
    def options(self) -> dict:
        return self.meta.get("options", {})

    def usable(self) -> list[CachedItem]:
        return [item for item in self.items if item.status == "ok"]


def item_file(root: Path, key: str) -> Path:
    return root / ITEMS_DIR / f"{key}.npz"


def write_item(path: Path, arrays: dict[str, np.ndarray], info: dict) -> None:
    """Write an item's arrays atomically (a partial file never looks done)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + f".tmp{os.getpid()}.npz")
    try:
        np.savez_compressed(tmp, info=np.array(json.dumps(info)), **arrays)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def read_item_info(path: Path) -> dict:
    with np.load(path, allow_pickle=False) as z:
        return json.loads(str(z["info"]))


def write_index(root: Path, rows: list[dict]) -> Path:
    path = root / INDEX_CSV
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=INDEX_FIELDS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row.get(k) for k in INDEX_FIELDS})
    os.replace(tmp, path)
    return path


def load_cache(root: str | os.PathLike) -> PreparedCache:
    """Read a cache written by `prepare`. Raises InputError when `root` is not one."""
    root = Path(root)
    meta_path = root / CACHE_JSON
    if not meta_path.is_file() or not (root / INDEX_CSV).is_file():
        raise InputError(f"{root} is not a prepared cache (no {CACHE_JSON} / {INDEX_CSV}); build one with "
                         f"deepfake-detect prepare DATASET --out {root}")
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != CACHE_FORMAT:
        raise InputError(f"{root}: cache format {meta.get('format')!r}, expected {CACHE_FORMAT}; rebuild it")
    items = []
    with open(root / INDEX_CSV, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            items.append(CachedItem(
                key=row["key"], path=row["path"], video_label=row["video_label"], audio_label=row["audio_label"],
                identity=row["identity"] or None, status=row["status"], faces=int(row["faces"] or 0),
                windows=int(row["windows"] or 0),
                speech_onset_s=float(row["speech_onset_s"]) if row["speech_onset_s"] else None,
                error=row["error"] or None, file=item_file(root, row["key"]),
                extra=json.loads(row["extra"]) if row.get("extra") else {}))
    return PreparedCache(root, meta, items)
