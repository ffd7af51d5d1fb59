"""The audio model's training data: train-audio's clips grouped into system families, real speech from the
video corpora, and a cache of degraded 2 s crops (written once, read by every training run)."""

from __future__ import annotations

import csv
import json
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..media.audio import SAMPLE_RATE, read_audio
from ..errors import InputError
from ..media.speech import SPEECH_WINDOW_S, fit_length, has_speech, trim_silence
from .audio_augment import degrade

# Leave-one-family-out groups: systems that share authors, architecture or lineage are one family, so a
# held-out family is really unseen (train-audio README, "Doubtful points").
FAMILIES = {
    "vits-lineage": ("FreeVC", "YourTTS-VC", "YourTTS"),
    "hierspeech": ("HierSpeech", "HierSpeech++", "Diff-HierVC", "DDDM-VC", "VoiceMixer"),
    "megatts-mobilespeech": ("MegaTTS(MobileSpeech-page)", "MobileSpeech", "MobileSpeech-GTCodec"),
    "styletts": ("StyleTTS", "StyleTTS2"),
    "early-vc": ("AutoVC", "Chou-et-al-VC", "StarGAN-VC"),
    "codec-lm (VALL-E)": ("VALL-E", "VALL-E-X"),
    "naturalspeech": ("NaturalSpeech", "NaturalSpeech2"),
    "ppg-vq-vc": ("BNE-PPG-VC", "VQMIVC"),
    "diffvc": ("DiffVC",),
    "xtts": ("XTTS-v1",),
    "jets": ("JETS",),
    "wavernn": ("SC-WaveRNN",),
    "diffwave": ("DiffWave",),
    "snac-codec": ("SNAC-24kHz",),
}
SYSTEM_FAMILY = {system: family for family, systems in FAMILIES.items() for system in systems}
REAL = "real"
WINDOW = int(SPEECH_WINDOW_S * SAMPLE_RATE)  # samples per crop


@dataclass
class Clip:
    path: str  # absolute
    label: str  # "real" or "fake"
    system: str  # generator, or the real source
    family: str  # FAMILIES key for fakes; "real"
    group: str  # the source page / repository (reals are held out by it)
    corpus: str  # "train-audio" or "video"


def train_audio_clips(root: str | Path) -> list[Clip]:
    """train-audio's labelled clips (labels.csv), each fake with its family."""
    root = Path(root)
    labels = root / "labels.csv"
    if not labels.is_file():
        raise InputError(f"{labels} not found: pass the train-audio folder (with labels.csv)")
    clips = []
    with open(labels, newline="") as f:
        for row in csv.DictReader(f):
            fake = row["label"] == "fake"
            if fake and row["system"] not in SYSTEM_FAMILY:
                raise InputError(f"system {row['system']!r} has no family in speech_data.FAMILIES: add it")
            clips.append(Clip(str(root / row["path"]), row["label"], row["system"],
                              SYSTEM_FAMILY[row["system"]] if fake else REAL, row["source_repo"], "train-audio"))
    return clips


def video_speech_clips(folders: list[str | Path]) -> list[Clip]:
    """Real speech from video corpora: every video under `folders` with an audio track, real or generated
    video alike (talking-head generators are driven by real speech). Grouped by their folder."""
    clips = []
    for folder in folders:
        for path in sorted(Path(folder).rglob("*")):
            if path.suffix.lower() in (".mp4", ".mov", ".mkv", ".webm", ".avi"):
                clips.append(Clip(str(path), REAL, "video speech", REAL, path.parent.name, "video"))
    return clips


def _seed(text: str, view: int) -> int:
    return zlib.crc32(f"{text}#{view}".encode()) & 0x7FFFFFFF


def _crop(samples: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if len(samples) <= WINDOW:
        return fit_length(samples, WINDOW)
    start = int(rng.integers(0, len(samples) - WINDOW + 1))
    return samples[start:start + WINDOW]


def build_cache(clips: list[Clip], out: str | Path, views: int = 8, video_views: int = 3,
                progress: bool = True) -> dict:
    """Decode every clip to 16 kHz mono (the product's own decoder), trim leading and trailing silence,
    and write `views` 2 s crops per clip (`video_views` for video speech): view 0 clean, the others through
    `audio_augment.degrade` with a seed derived from the path. Crops without speech are dropped.

    Writes crops.npy ((N, 32000) int16), crops.json (clip index and view per crop), clips.json, and
    clean.npy + clean.json (the whole trimmed clean train-audio clips, for validation scoring)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    crops, crop_rows, kept_clips, clean, offsets = [], [], [], [], [0]
    skipped = []
    for i, clip in enumerate(clips):
        samples = read_audio(clip.path)
        if samples is None or len(samples) < SAMPLE_RATE // 2:
            skipped.append(clip.path)
            continue
        samples = trim_silence(samples)
        index = len(kept_clips)
        n_views = views if clip.corpus == "train-audio" else video_views
        added = 0
        for view in range(n_views):
            rng = np.random.default_rng(_seed(clip.path, view))
            crop = _crop(samples, rng)
            if view:
                crop, _ = degrade(crop, _seed(clip.path, 1000 + view))
                crop = fit_length(crop, WINDOW)
            if not has_speech(crop):
                continue
            crops.append((np.clip(crop, -1, 32767 / 32768) * 32768).astype(np.int16))
            crop_rows.append({"clip": index, "view": view})
            added += 1
        if not added:
            skipped.append(clip.path)
            continue
        kept_clips.append(asdict(clip))
        if clip.corpus == "train-audio":
            clean.append((samples * 32768).astype(np.int16))
            offsets.append(offsets[-1] + len(samples))
            kept_clips[-1]["clean"] = len(clean) - 1
        if progress and (i + 1) % 25 == 0:
            print(f"  {i + 1}/{len(clips)} clips, {len(crops)} crops", flush=True)
    np.save(out / "crops.npy", np.stack(crops))
    np.save(out / "clean.npy", np.concatenate(clean) if clean else np.zeros(0, np.int16))
    (out / "crops.json").write_text(json.dumps(crop_rows))
    (out / "clips.json").write_text(json.dumps(kept_clips, indent=1))
    (out / "clean.json").write_text(json.dumps(offsets))
    summary = {"clips": len(kept_clips), "crops": len(crops), "skipped": skipped}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


@dataclass
class Cache:
    crops: np.ndarray  # (N, 32000) int16
    crop_clip: np.ndarray  # (N,) clip index of each crop
    crop_view: np.ndarray  # (N,) 0 = clean
    clips: list[dict]
    clean: np.ndarray  # concatenated int16
    offsets: list[int]

    def clean_samples(self, clip_index: int) -> np.ndarray:
        k = self.clips[clip_index]["clean"]
        return self.clean[self.offsets[k]:self.offsets[k + 1]].astype(np.float32) / 32768.0


def load_cache(folder: str | Path) -> Cache:
    folder = Path(folder)
    if not (folder / "crops.npy").is_file():
        raise InputError(f"{folder} holds no audio training cache: build it first (speech_train cache ...)")
    rows = json.loads((folder / "crops.json").read_text())
    return Cache(np.load(folder / "crops.npy"), np.array([r["clip"] for r in rows]),
                 np.array([r["view"] for r in rows]), json.loads((folder / "clips.json").read_text()),
                 np.load(folder / "clean.npy"), json.loads((folder / "clean.json").read_text()))
