"""`prepare`: face crops and mel windows of a labelled dataset, made by the inference code itself.

Frames are sampled with `video.sample_indices` and decoded with `video.read_frames`, faces found by the same
hybrid detector the Detector loads (res10 SSD + Haar, from the models directory) and cut with
`faces.crop_face`; audio is decoded with `audio.read_audio` and windowed with `audio.stream_windows` +
`audio.log_mel` (the cache keeps the 128 x T mel; `audio.mel_image` turns it into the model input at training
time, after SpecAugment). Nothing here re-implements a preprocessing step.

Resumable: an item whose .npz exists is skipped. Parallel: `workers` processes, each with its own detector.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..media.audio import OVERLAP, SAMPLE_RATE, WINDOW_S, log_mel, read_audio, stream_windows, zero_pad
from ..errors import DeepfakeError, InputError, NoVideoStream
from ..faces.detect import HybridFaceDetector, crop_face
from ..media.files import IMAGE_EXTENSIONS
from ..settings import AnalysisSettings
from ..media.video import DecodeStats, probe, read_frames, sample_indices
from .cache import CACHE_FORMAT, CACHE_JSON, item_file, read_item_info, write_index, write_item
from .config import PrepareOptions
from .data import LabelledMedia

SILENCE_TOP_DB = 40.0  # dB below the track's peak that counts as silence (librosa.effects.trim)


@dataclass
class PrepareSummary:
    cache: Path
    total: int  # media files in the dataset
    skipped: int  # already in the cache
    processed: int  # done in this run
    errors: list[tuple[str, str]]  # (path, error) of the files that failed
    faces: int  # crops in the whole cache
    windows: int  # mel windows in the whole cache
    seconds: float

    def line(self) -> str:
        return (f"{self.total} files: {self.processed} prepared, {self.skipped} already cached, "
                f"{len(self.errors)} errors; {self.faces} face crops, {self.windows} audio windows "
                f"in {self.cache} ({self.seconds:.0f} s)")


# -- preprocessing pieces (all from the inference modules) -----------------------------------------------
def mel_segments(samples: np.ndarray, sample_rate: int = SAMPLE_RATE, window_s: float = WINDOW_S,
                 overlap: float = OVERLAP) -> tuple[list[np.ndarray], list[tuple[float, float]]]:
    """The per-window (128, T) float32 normalised log-mels of a mono track, and their (start, end) in
    seconds: what `audio.mel_windows` makes before `audio.mel_image` (so mel_image(mels[i]) equals
    mel_windows(samples)[0][i] exactly; a test checks it)."""
    win = int(window_s * sample_rate)
    mels, spans = [], []
    for start, end, segment in stream_windows([samples], sample_rate, window_s, overlap):
        mels.append(log_mel(zero_pad(segment, win), sample_rate))
        spans.append((start / sample_rate, end / sample_rate))
    return mels, spans


def speech_onset_s(samples: np.ndarray, sample_rate: int = SAMPLE_RATE, top_db: float = SILENCE_TOP_DB) -> float:
    """Seconds of leading silence: where the track first rises within `top_db` of its peak. FakeAVCeleb's
    fake clips start with a short silence that a model can learn instead of the voice; training can drop
    the windows that start inside it (`train audio --trim-silence`)."""
    import librosa

    samples = np.asarray(samples, dtype=np.float32).reshape(-1)
    if not len(samples) or not np.any(samples):
        return 0.0
    _, (start, _) = librosa.effects.trim(samples, top_db=top_db)
    return float(start) / sample_rate


def _shrink(crop: np.ndarray, max_side: int | None) -> np.ndarray:
    h, w = crop.shape[:2]
    if max_side is None or max(h, w) <= max_side:
        return crop
    scale = max_side / max(h, w)
    return cv2.resize(crop, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)


def _frames(path: Path, options: PrepareOptions, stats: DecodeStats):
    """(index, time_s, BGR image) of the sampled frames; a still image is one frame."""
    if path.suffix.lower() in IMAGE_EXTENSIONS:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise InputError(f"cannot read {path.name!r} as an image")
        stats.frames_decoded = stats.frames_converted = 1
        yield 0, 0.0, image
        return
    info = probe(path, AnalysisSettings())
    indices = sample_indices(info.frame_count, options.frame_skip, options.frames_per_video)
    with contextlib.closing(read_frames(path, indices, stats)) as frames:
        for frame in frames:
            yield frame.index, frame.time_s, frame.image


def prepare_item(media: LabelledMedia, options: PrepareOptions, faces: HybridFaceDetector) -> tuple[dict, dict]:
    """The cache arrays and info of one file. Raises InputError for an unreadable file."""
    arrays: dict[str, np.ndarray] = {}
    info: dict = {"faces": 0, "windows": 0, "speech_onset_s": None, "frames_sampled": 0, "notes": []}
    if not media.path.is_file():
        raise InputError(f"no such file: {media.path}")
    if options.video:
        stats = DecodeStats()
        frames, times, boxes = [], [], []
        found = []
        try:
            for index, time_s, image in _frames(media.path, options, stats):
                info["frames_sampled"] += 1
                found = faces.detect(image, previous=found)
                for box in found[: options.faces_per_frame]:
                    crop = cv2.cvtColor(crop_face(image, box, options.face_margin), cv2.COLOR_BGR2RGB)
                    arrays[f"crop_{len(frames)}"] = np.ascontiguousarray(_shrink(crop, options.max_crop_side))
                    frames.append(index)
                    times.append(time_s)
                    boxes.append((box.x1, box.y1, box.x2, box.y2))
        except NoVideoStream:
            info["notes"].append("no video stream")
        if stats.error:
            info["notes"].append(stats.error)
        arrays["crop_frame"] = np.asarray(frames, dtype=np.int64)
        arrays["crop_time"] = np.asarray(times, dtype=np.float64)
        arrays["crop_box"] = np.asarray(boxes, dtype=np.int64).reshape(-1, 4)
        info["faces"] = len(frames)
        if not frames:
            info["notes"].append("no face found")
    if options.audio and media.path.suffix.lower() not in IMAGE_EXTENSIONS:
        samples = read_audio(media.path)
        if samples is None:
            info["notes"].append("no audio track")
        else:
            mels, spans = mel_segments(samples, window_s=options.window_s, overlap=options.overlap)
            for n, mel in enumerate(mels):
                arrays[f"mel_{n}"] = mel
            arrays["mel_span"] = np.asarray(spans, dtype=np.float64).reshape(-1, 2)
            info["windows"] = len(mels)
            info["speech_onset_s"] = speech_onset_s(samples)
            if not mels:
                info["notes"].append("audio shorter than one window")
    return arrays, info


# -- the face detector, as the Detector loads it ---------------------------------------------------------
def load_face_detector(models_dir: str | os.PathLike | None) -> tuple[HybridFaceDetector, list[str]]:
    """The res10 + Haar hybrid from the models directory, exactly as `Detector.load` builds it; and notes
    (e.g. Haar only when the res10 files are missing)."""
    from ..faces.detect import load_face_detector as load_hybrid
    from ..models.registry import resolve_models_dir

    notes: list[str] = []
    detector, _ = load_hybrid(resolve_models_dir(models_dir), notes)
    return detector, notes


_WORKER: dict = {}


def _init_worker(models_dir, options: PrepareOptions) -> None:
    cv2.setNumThreads(1)
    _WORKER["faces"], _ = load_face_detector(models_dir)
    _WORKER["options"] = options


def _work(job: tuple[LabelledMedia, str]) -> tuple[str, dict | None, str | None]:
    media, out = job
    try:
        arrays, info = prepare_item(media, _WORKER["options"], _WORKER["faces"])
        write_item(Path(out), arrays, info)
        return media.key, info, None
    except DeepfakeError as e:
        return media.key, None, str(e)
    except Exception as e:  # one bad file must not stop a long run; it is recorded in items.csv
        return media.key, None, f"{type(e).__name__}: {e}"


# -- the command -----------------------------------------------------------------------------------------
def prepare(items: list[LabelledMedia], out: str | os.PathLike, options: PrepareOptions | None = None,
            models_dir: str | os.PathLike | None = None, workers: int = 0, source: str = "",
            progress: bool = True) -> PrepareSummary:
    """Build (or resume) the cache in `out` for `items`. workers=0 runs in this process."""
    options = options or PrepareOptions()
    started = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    keys = [m.key for m in items]
    if len(set(keys)) != len(keys):
        raise InputError("the dataset lists the same file twice")
    meta_path = out / CACHE_JSON
    faces, detector_notes = load_face_detector(models_dir)
    meta = {"format": CACHE_FORMAT, "source": source, "options": options.to_dict(),
            "face_detector": faces.methods, "notes": detector_notes}
    if meta_path.is_file():
        old = json.loads(meta_path.read_text())
        if old.get("options") != meta["options"] or old.get("face_detector") != meta["face_detector"]:
            raise InputError(
                f"{out} was prepared with other options or another face detector ({old.get('options')}, "
                f"{old.get('face_detector')}); resume with the same ones, or use a new --out folder")
    meta_path.write_text(json.dumps(meta, indent=2))
    todo = [m for m in items if not item_file(out, m.key).is_file()]
    results: dict[str, tuple[dict | None, str | None]] = {}
    jobs = [(m, str(item_file(out, m.key))) for m in todo]
    from tqdm import tqdm

    bar = tqdm(total=len(jobs), file=sys.stderr, disable=not progress, desc="prepare", unit="file")
    try:
        if workers and workers > 0 and len(jobs) > 1:
            ctx = multiprocessing.get_context("spawn")
            with ctx.Pool(workers, initializer=_init_worker, initargs=(models_dir, options)) as pool:
                for key, info, error in pool.imap_unordered(_work, jobs, chunksize=1):
                    results[key] = (info, error)
                    bar.update(1)
        else:
            _WORKER.update(faces=faces, options=options)
            for job in jobs:
                key, info, error = _work(job)
                results[key] = (info, error)
                bar.update(1)
    finally:
        bar.close()
    rows, errors, n_faces, n_windows = [], [], 0, 0
    for m in items:
        info, error = results.get(m.key, (None, None))
        if error is None and info is None:
            info = read_item_info(item_file(out, m.key))
        if error is not None:
            errors.append((str(m.path), error))
        else:
            n_faces += info["faces"]
            n_windows += info["windows"]
        rows.append({
            "key": m.key, "path": str(m.path), "label": m.label, "video_label": m.video_label,
            "audio_label": m.audio_label, "identity": m.identity or "", "status": "error" if error else "ok",
            "faces": info["faces"] if info else 0, "windows": info["windows"] if info else 0,
            "speech_onset_s": "" if not info or info["speech_onset_s"] is None else f"{info['speech_onset_s']:.4f}",
            "error": error or "", "extra": json.dumps(m.extra) if m.extra else "",
        })
    write_index(out, rows)
    return PrepareSummary(out, len(items), len(items) - len(todo), len(todo), errors, n_faces, n_windows,
                          time.perf_counter() - started)
