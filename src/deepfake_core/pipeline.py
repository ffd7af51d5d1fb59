"""Detector: loads the models once; analyze(path) turns a video into a Report."""

from __future__ import annotations

import contextlib
import itertools
import os
import queue
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from .audio import SAMPLE_RATE, WINDOW_S, AudioStats, audio_chunks, log_mel, mel_batches, read_audio
from .checkpoints import LoadedModel, load_model
from .errors import CheckpointError, MediaTooLarge, NoVideoStream, UnreadableMedia
from .faces import DNN_INPUT, FaceBox, HybridFaceDetector, assign_tracks, crop_face, load_face_detector
from .fusion import AGGREGATIONS, fuse, softmax, video_p_fake
from .limits import Deadline
from .model_files import choose_audio_model, choose_video_model, files_missing
from .models import blank_input, face_tensor, is_speech_model
from .registry import (AUDIO_FILES, AUDIO_MODEL_CARD, BUILTIN_AUDIO_FILE, BUILTIN_VIDEO_FILE, MODEL_CARD, VIDEO_FILES,
                       models_dir_candidates, resolve_models_dir)
from .report import (FAKE, NOT_APPLICABLE, REAL, UNCERTAIN, AudioWindow, ModalityResult, Report, Thumbnail,
                     TimelineRow, Track)
from .runtime import make_runner, pick_device, pick_precision, pick_runtime
from .settings import RUNTIMES, AnalysisSettings, check_choice
from .speech import has_speech, speech_windows
from .tracking import FaceReuse
from .version import __version__
from .video import DecodeStats, MediaInfo, probe, read_frames, sample_indices

Progress = Callable[[float, str], None]
THUMBNAIL_SIDE = 320  # pixels, longest side of a kept thumbnail
WARMUP_BATCH = 2  # inputs per network in the warm-up pass at load
GPU_MIN_BATCH = 64  # inputs per forward pass on CUDA, at least (settings.batch_size when larger)


class StageTimer:
    """Accumulates wall time per named stage."""

    def __init__(self):
        self.seconds: dict[str, float] = defaultdict(float)

    @contextlib.contextmanager
    def __call__(self, stage: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] += time.perf_counter() - start


STAGES = ("probe_decode", "face_detection", "crop_preprocess", "video_model", "audio_decode_mel",
          "audio_model", "fusion_report")


class Detector:
    """Holds the loaded networks and face detector. Safe to share between threads."""

    def __init__(self, video: LoadedModel, audio: LoadedModel | None, faces: HybridFaceDetector,
                 device: torch.device, precision: str, models_dir: Path, notes: list[str] | None = None,
                 face_files: list[Path] | None = None, compile: bool = False, warmup: bool = True,
                 runtime: str = "auto"):
        self.video = video
        self.audio = audio
        self.faces = faces
        self.device = device
        self.precision = precision
        self.models_dir = models_dir
        self.load_notes = list(notes or [])
        self.face_files = list(face_files or [])
        self._face_lock = threading.Lock()  # cv2.dnn networks are not thread-safe
        # How the video model's file says its face scores become one video score, and the confidence under
        # which its verdicts are UNCERTAIN unless the settings say otherwise (measured by its training; the
        # original checkpoint names neither: the mean probability, no band).
        meta = video.metadata if video is not None else {}
        self.video_aggregation = str(meta.get("aggregation", "mean_prob"))
        if self.video_aggregation not in AGGREGATIONS:
            raise CheckpointError(f"{video.path.name} names an unknown face aggregation {self.video_aggregation!r} "
                                  f"(known: {', '.join(AGGREGATIONS)}); it was made by a newer version: upgrade")
        band = meta.get("abstain_below")
        self.video_abstain_below = float(band) if band not in (None, "") else None
        # Decode and find faces in a background thread while the networks run (see _Run.execute).
        self.overlap = True
        # A GPU runs big batches as fast as small ones: at least this many inputs per forward pass.
        self.min_batch = GPU_MIN_BATCH if device.type == "cuda" else 1
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # pick the fastest convolution for each batch shape
        # One runner per network (runtime.TorchRunner or ov_runtime.OpenVinoRunner): an inference copy
        # (BatchNorm folded, ...) that turns a batch into logits; `video.module` and `audio.module` stay as loaded.
        self.runtime = pick_runtime(runtime, device, compile)
        self._runners: dict = {}
        self.optimizations: dict[str, list[str]] = {}
        for loaded in (video, audio):
            if loaded is not None:
                runner = make_runner(self.runtime, loaded, device, precision, compile)
                self._runners[loaded.spec.modality], self.optimizations[loaded.spec.modality] = runner, runner.done
        if warmup:
            self.warm_up()

    def warm_up(self, batch_size: int | None = None) -> None:
        """Run each stage once on blank input, so that the first analysis does not pay for one-time setup:
        oneDNN / cuDNN kernels, the face detector's first forward pass (~0.5 s), librosa's lazily imported
        modules (~2 s on a 2-vCPU machine)."""
        batch_size = batch_size or (self.min_batch if self.device.type == "cuda" else WARMUP_BATCH)
        for loaded in (self.video, self.audio):
            if loaded is not None:
                self._forward(loaded, [blank_input(loaded.spec)] * batch_size)
        with self._face_lock:
            self.faces.detect(np.zeros((DNN_INPUT, DNN_INPUT, 3), np.uint8))
        if self.audio is not None:
            log_mel(np.zeros(int(WINDOW_S * SAMPLE_RATE), np.float32))

    @classmethod
    def load(cls, models_dir: str | os.PathLike | None = None, device: str = "auto", precision: str = "auto",
             video_model: str | os.PathLike | None = None, audio_model: str | os.PathLike | None = None,
             require_audio: bool = False, compile: bool = False, warmup: bool = True,
             runtime: str = "auto", video_optional: bool = False) -> "Detector":
        """Load the models from the models directory (see `registry.resolve_models_dir`).

        `video_model`: "original" (the original checkpoint in the models directory), "builtin" (the model
        shipped inside the package), a file path, or None: the original when it is installed, else the
        built-in one. `audio_model`: the same choices (and "none"), see `choose_audio_model`. The video model is
        required unless `video_optional` (a detector for audio files only); without the audio model the detector
        judges video only and its reports say so (unless `require_audio`). Without the res10 files faces are
        found by Haar alone.
        `precision`: auto (bf16 where the hardware runs it natively: a CUDA GPU with bf16, a CPU with
        AVX512-BF16 or AMX), fp32 or bf16. `compile`: torch.compile the networks (pays on CUDA; each new batch
        shape compiles first). `warmup`: run each network once now rather than in the first analysis.
        `runtime`: what runs the networks: auto (OpenVINO on a CPU when the `openvino` extra is installed, else
        PyTorch), torch or openvino (CPU only; converted once per model file, cached in ~/.cache).
        Raises ModelFilesMissing, CheckpointError or SettingsError.
        """
        check_choice("runtime", runtime, RUNTIMES)  # before the seconds of loading
        directory = resolve_models_dir(models_dir)
        searched = [str(p) for p in models_dir_candidates(models_dir)]
        notes = []
        video_path, video_choice = choose_video_model(video_model, directory)
        audio_path, audio_choice = choose_audio_model(audio_model, directory)
        missing = []
        no_video = video_path is None or not video_path.is_file()
        if no_video and not (video_optional and video_choice != "path"):
            missing.append(str(video_path) if video_choice == "path" else VIDEO_FILES[-1])
        if (require_audio or audio_choice == "path") and (audio_path is None or not audio_path.is_file()):
            missing.append(str(audio_path) if audio_choice == "path" else AUDIO_FILES[-1])
        if missing:
            raise files_missing(missing, directory, searched)
        video = None if no_video else load_model(video_path, "video")
        if video is None:
            notes.append(f"faces not judged: the video model ({VIDEO_FILES[-1]}) is not in {directory}")
        else:
            video.metadata.setdefault("choice", video_choice)
        if video_choice == "builtin" and video is not None:
            status = video.metadata.get("status", "")
            notes.append(f"video judged by the built-in model ({video.metadata.get('name', BUILTIN_VIDEO_FILE)})"
                         f"{', EXPERIMENTAL' if status == 'experimental' else ''}: "
                         f"{video.metadata.get('summary', 'trained by this project')}; what it catches and misses "
                         f"is measured in {MODEL_CARD}")
        audio = None
        if audio_path is not None:
            audio = load_model(audio_path, "audio")
            audio.metadata.setdefault("choice", audio_choice)
            if audio_choice == "builtin":
                notes.append(f"audio judged by the built-in model ({audio.metadata.get('name', BUILTIN_AUDIO_FILE)}): "
                             f"a small speech CNN trained by this project on demo-page speech; what it catches and "
                             f"misses is measured in {AUDIO_MODEL_CARD}")
        elif audio_choice != "none":
            notes.append(f"audio not judged: the audio model ({AUDIO_FILES[-1]}) is not in {directory}")
        if video is None and audio is None:  # nothing could be judged
            raise files_missing([VIDEO_FILES[-1]], directory, searched)
        faces, face_files = load_face_detector(directory, notes)
        dev = pick_device("cpu" if runtime == "openvino" and device == "auto" else device)
        return cls(video, audio, faces, dev, pick_precision(precision, dev), directory, notes, face_files,
                   compile=compile, warmup=warmup, runtime=runtime)

    def default_settings(self, explicit: set[str] | frozenset = frozenset(),
                         settings: AnalysisSettings | None = None) -> AnalysisSettings:
        """`settings` (default AnalysisSettings()) with the values the loaded built-in models carry, for the
        fields not in `explicit`: the audio temperature fitted for the built-in audio model, and the fusion
        chosen for the built-in models (their metadata: "temperature", "default_fusion")."""
        settings = settings or AnalysisSettings()
        changes = {}
        if self.audio is not None and is_speech_model(self.audio.spec):
            meta = self.audio.metadata
            if "audio_temperature" not in explicit and settings.calibration is None and "temperature" in meta:
                changes["audio_temperature"] = float(meta["temperature"])
            if "fusion" not in explicit and meta.get("default_fusion"):
                changes["fusion"] = meta["default_fusion"]
        return settings.replace(**changes) if changes else settings

    # ----------------------------------------------------------------------------------------------
    def describe_models(self) -> dict:
        return {
            "video": self.video.describe() if self.video is not None else None,
            "audio": self.audio.describe() if self.audio is not None else None,
            "face_detector": {
                "methods": self.faces.methods,
                "files": [{"file": p.name, "path": str(p)} for p in self.face_files],
            },
            "device": str(self.device),
            "precision": self.precision,
            "runtime": self.runtime,
            "optimizations": self.optimizations,
            "models_dir": str(self.models_dir),
            "version": __version__,
        }

    def _forward(self, loaded: LoadedModel, batch: list[torch.Tensor], pad_to: int = 0) -> np.ndarray:
        return self._runners[loaded.spec.modality](torch.stack(batch), max(pad_to, self.min_batch))

    def _score(self, loaded: LoadedModel, items: torch.Tensor | list[torch.Tensor], batch_size: int) -> np.ndarray:
        out = [self._forward(loaded, list(items[i:i + batch_size]), batch_size)
               for i in range(0, len(items), batch_size)]
        return np.concatenate(out) if out else np.zeros((0, 2), dtype=np.float32)

    # ----------------------------------------------------------------------------------------------
    def analyze(self, path: str | os.PathLike, settings: AnalysisSettings | None = None,
                progress: Progress | None = None) -> Report:
        """Analyse one video file. Raises InputError subclasses for files that cannot be read;
        returns a NOT_APPLICABLE report for readable files that cannot be judged."""
        settings = settings or self.default_settings()
        notify = progress or (lambda fraction, message: None)
        run = _Run(self, Path(path), settings, notify)
        return run.execute()


class _Run:
    """The state of one analysis."""

    def __init__(self, detector: Detector, path: Path, settings: AnalysisSettings, notify: Progress):
        self.d = detector
        self.path = path
        self.s = settings
        self.notify = notify
        self.timer = StageTimer()
        self.notes = list(detector.load_notes)
        self.started = time.perf_counter()
        self.info: MediaInfo | None = None
        self.windows: list[AudioWindow] = []
        self.audio_logits = np.zeros((0, 2))
        self.stats = DecodeStats()
        self.batch = max(settings.batch_size, detector.min_batch)  # inputs per forward pass
        self.deadline = Deadline(settings.max_analysis_s, path.name)

    def execute(self) -> Report:
        self.notify(0.0, "reading the file")
        try:
            with self.timer("probe_decode"):
                self.info = probe(self.path, self.s)
        except NoVideoStream:
            return self._voice_only("the file has no video track")
        if self.s.audio_only:
            return self._voice_only("--audio-only")
        if self.d.video is None:
            raise files_missing([VIDEO_FILES[-1]], self.d.models_dir, [str(self.d.models_dir)])
        if self.info.is_still_image:
            return self._not_applicable("still_image")
        indices = sample_indices(self.info.frame_count, self.s.frame_skip, self.s.max_samples)
        if not indices:
            self._score_audio()
            return self._not_applicable("too_short")
        # Frames are decoded, searched for faces and cropped in a background thread while this one runs
        # the networks (the audio first, then the faces as they come).
        faces = _frame_faces(self, indices)
        if self.d.overlap:
            faces = _Background(faces, depth=2 * self.batch)
        with contextlib.closing(faces):
            self._score_audio()
            try:
                rows, logits, thumbs = self._score_faces(faces, len(indices))
            except UnreadableMedia as e:  # not one frame decoded: judge the audio alone, if there is one
                if self.stats.frames_decoded or not self.windows:
                    raise
                self.notes.append(f"video not judged: {e}")
                return self._not_applicable("video_unreadable")
        self.thumbnails = thumbs
        if not rows:
            return self._not_applicable("no_face")
        with self.timer("fusion_report"):
            report = self._fused_report(rows, logits)
        self.notify(1.0, "done")
        return report

    # -- audio ---------------------------------------------------------------------------------------
    def _score_audio(self) -> None:
        if self.d.audio is None:
            return
        if is_speech_model(self.d.audio.spec):
            return self._score_speech()
        self.notify(0.02, "decoding audio")
        s = self.s
        # Decoded a chunk at a time (never whole), and never past the video's span or the duration limit.
        limit = s.max_duration_s
        if self.info is not None and self.info.duration_s > 0:
            limit = min(limit, self.info.duration_s + s.audio_window_s)
        stats = AudioStats()
        chunks = audio_chunks(self.path, SAMPLE_RATE, limit, stats)
        speech: dict = {}
        batches = mel_batches(chunks, self.batch, window_s=s.audio_window_s, overlap=s.audio_overlap,
                              keep=has_speech, counts=speech)
        logits, spans = [], []
        try:
            while True:
                self.deadline.check("scoring the audio")
                with self.timer("audio_decode_mel"):
                    batch = next(batches, None)
                if batch is None:
                    break
                with self.timer("audio_model"):
                    logits.append(self.d._score(self.d.audio, batch[0], self.batch))
                spans.extend(batch[1])
                self.notify(0.05, f"scored {len(spans)} audio windows")
        except UnreadableMedia as e:  # a damaged audio track: the video is judged alone
            self.notes.append(f"audio not judged: the audio track could not be decoded ({e})")
            return
        finally:
            batches.close()
        if not stats.has_track:
            self.notes.append("audio not judged: the file has no audio track")
            return
        if stats.stopped_at_limit:
            if self.info is None:  # an audio-only file longer than it declared
                raise MediaTooLarge(f"{self.path.name!r} holds more than {s.max_duration_s:.0f} s of audio, over "
                                    f"the limit (raise max_duration_s to analyse it)")
            self.notes.append(f"audio judged over the video's span only (its first {stats.seconds:.1f} s)")
        if stats.error:
            self.notes.append(stats.error)
        if not speech.get("looked"):
            self.notes.append(
                f"audio not judged: the track is {stats.seconds:.2f} s, shorter than one "
                f"{s.audio_window_s:.1f} s window (80 % needed)")
            return
        self._note_speech(speech["kept"], speech["looked"])  # windows without speech are not scored
        if not spans:
            return
        self.audio_logits = np.concatenate(logits)
        p_fake = softmax(self.audio_logits / s.audio_temperature)[:, 0]
        self.windows = [AudioWindow(i, a, b, float(p)) for i, ((a, b), p) in enumerate(zip(spans, p_fake))]

    def _note_speech(self, kept: int, looked: int) -> None:
        if looked and not kept:
            self.notes.append(f"audio not judged: no speech in the audio track ({looked} windows looked at)")
        elif kept < looked:
            self.notes.append(f"{looked - kept} of {looked} audio windows hold no speech and were not scored")

    def _score_speech(self) -> None:
        """The built-in audio model: only the windows that hold speech, each as a log filterbank."""
        self.notify(0.02, "decoding audio")
        with self.timer("audio_decode_mel"):
            samples = read_audio(self.path)
        if samples is None:
            self.notes.append("audio not judged: the file has no audio track")
            return
        with self.timer("audio_decode_mel"):
            x, spans, looked = speech_windows(samples, self.d.audio.metadata.get("front_end", "logmel"),
                                              self.s.audio_window_s, self.s.audio_overlap)
        if not looked:
            self.notes.append(f"audio not judged: the track is {len(samples) / SAMPLE_RATE:.2f} s, too short to "
                              "hold speech")
            return
        self._note_speech(len(spans), looked)
        if not spans:
            return
        self.notify(0.05, f"scoring {len(spans)} speech windows")
        with self.timer("audio_model"):
            self.audio_logits = self.d._score(self.d.audio, x, self.batch)
        p_fake = softmax(self.audio_logits / self.s.audio_temperature)[:, 0]
        self.windows = [AudioWindow(i, a, b, float(p)) for i, ((a, b), p) in enumerate(zip(spans, p_fake))]

    def _voice_only(self, why: str) -> Report:
        """A report judged by the voice alone (an audio file, or --audio-only): the mean P(fake) of the speech
        windows against the threshold; NOT_APPLICABLE when there is no audio model or no speech."""
        self.thumbnails = []
        self.notes.append(f"judged by the voice alone ({why})")
        if self.d.audio is None:
            return self._not_applicable("no_audio_model")
        if self.info is None:
            _check_audio_duration(self.path, self.s.max_duration_s)
        self._score_audio()
        if self.info is None:
            self.info_dict = {"path": str(self.path), "audio_only": True}
        if not self.windows:
            note = next((n for n in self.notes if n.startswith("audio not judged")), "")
            return self._not_applicable("no_audio_track" if "no audio track" in note else "no_speech")
        with self.timer("fusion_report"):
            p_fake = np.array([w.p_fake for w in self.windows])
            fused_real = float(1.0 - p_fake.mean())
            verdict = REAL if fused_real > self.s.threshold else FAKE
            confidence = fused_real if verdict == REAL else 1.0 - fused_real
            reason = None
            if self.s.abstain_below is not None and confidence < self.s.abstain_below:
                verdict, reason = UNCERTAIN, "abstained"
            modalities = {"video": ModalityResult(available=False, note="voice-only analysis"),
                          "audio": _modality(p_fake, np.ones(len(p_fake)))}
        self.notify(1.0, "done")
        return self._report(verdict, reason, confidence, fused_real, modalities, [], [])

    # -- video ---------------------------------------------------------------------------------------
    def _score_faces(self, faces: Iterator[_FrameFaces], planned: int):
        rows: list[tuple[int, float, FaceBox]] = []
        logits: list[np.ndarray] = []
        pending: list[torch.Tensor] = []
        thumbs: list[Thumbnail] = []
        for done, item in enumerate(faces, start=1):
            self.deadline.check("scoring the faces")
            pending.extend(item.inputs)
            rows.extend((item.index, item.time_s, box) for box in item.boxes)
            if item.thumbnail is not None:
                thumbs.append(item.thumbnail)
            if len(pending) >= self.batch:
                with self.timer("video_model"):
                    logits.append(self.d._score(self.d.video, pending, self.batch))
                pending = []
            self.notify(0.08 + 0.9 * done / planned, f"frame {done}/{planned}: {len(rows)} faces so far")
        if pending:
            with self.timer("video_model"):
                logits.append(self.d._score(self.d.video, pending, self.batch))
        if self.stats.error:
            self.notes.append(self.stats.error)
        sampled = self.stats.frames_converted
        if sampled < planned and not self.stats.error:
            self.notes.append(f"the video had fewer frames than its header says: {sampled} of "
                              f"{planned} planned samples were read")
        self.sampled = sampled
        return rows, (np.concatenate(logits) if logits else np.zeros((0, 2))), thumbs

    # -- report --------------------------------------------------------------------------------------
    def _fused_report(self, rows, video_logits: np.ndarray) -> Report:
        s = self.s
        times = [t for _, t, _ in rows]
        matched = match_windows(times, [(w.start_s, w.end_s) for w in self.windows]) if self.windows else None
        audio_rows = self.audio_logits[matched] if matched is not None else None
        fused = fuse(video_logits, audio_rows, s.fusion, s.audio_temperature, s.video_temperature,
                     s.adaptive_tau, s.min_weight)
        track_ids = _track_ids(rows)
        stray = _stray(track_ids)
        timeline = []
        for i, (index, t, box) in enumerate(rows):
            timeline.append(TimelineRow(
                time_s=round(t, 4), frame_index=index, box=[box.x1, box.y1, box.x2, box.y2], detector=box.method,
                face_confidence=box.confidence, track=track_ids[i], video_p_fake=float(fused.video_probs[i, 0]),
                audio_window=int(matched[i]) if matched is not None else None,
                audio_p_fake=float(fused.audio_probs[i, 0]) if fused.audio_probs is not None else None,
                fused_p_fake=float(fused.probs[i, 0]), weight_video=float(fused.w_video[i]),
                weight_audio=float(fused.w_audio[i]), stray=bool(stray[i])))
        # Faces of tracks seen in a single sampled frame (while another track spans several) are stray
        # detections: shown and counted, but they do not decide the verdict.
        counted = ~stray
        fused_real = 1.0 - video_p_fake(fused.probs[counted, 0], self.d.video_aggregation)
        verdict = REAL if fused_real > s.threshold else FAKE
        confidence = fused_real if verdict == REAL else 1.0 - fused_real
        reason = None
        abstain_below = s.abstain_below if s.abstain_below is not None else self.d.video_abstain_below
        if abstain_below is not None and confidence < abstain_below:
            verdict, reason = UNCERTAIN, "abstained"
        modalities = {
            "video": _modality(fused.video_probs[counted, 0], fused.w_video[counted]),
            "audio": self._audio_modality(fused.w_audio[counted] if matched is not None else None),
        }
        tracks = _tracks(timeline, s.threshold)
        return self._report(verdict, reason, confidence, fused_real, modalities, timeline, tracks)

    def _audio_modality(self, weights: np.ndarray | None) -> ModalityResult:
        if not self.windows:
            note = next((n.split(": ", 1)[1] for n in self.notes if n.startswith("audio not judged")), "no audio")
            return ModalityResult(available=False, note=note)
        return _modality(np.array([w.p_fake for w in self.windows]), weights)

    def _not_applicable(self, reason: str) -> Report:
        self.thumbnails = getattr(self, "thumbnails", [])
        modalities = {
            "video": ModalityResult(available=False, note=reason.replace("_", " ")),
            "audio": self._audio_modality(None),
        }
        self.notify(1.0, "done")
        return self._report(NOT_APPLICABLE, reason, None, None, modalities, [], [])

    def _report(self, verdict, reason, confidence, fused_real, modalities, timeline, tracks) -> Report:
        timings = {stage: round(self.timer.seconds.get(stage, 0.0), 4) for stage in STAGES}
        timings["total"] = round(time.perf_counter() - self.started, 4)
        faces = len(timeline)
        return Report(
            verdict=verdict, reason=reason, confidence=confidence, fused_real_prob=fused_real,
            threshold=self.s.threshold, modalities=modalities, timeline=timeline, tracks=tracks,
            media=self.info.to_dict() if self.info else getattr(self, "info_dict", {"path": str(self.path)}),
            counts={
                "frames_decoded": self.stats.frames_decoded,
                "frames_sampled": getattr(self, "sampled", 0),
                "frames_with_faces": len({r.frame_index for r in timeline}),
                "faces": faces,
                "tracks": len(tracks),
                "stray_detections": sum(r.stray for r in timeline),
                "audio_windows": len(self.windows),
            },
            timings=timings, settings=self.s.to_dict(), models=self.d.describe_models(),
            audio_windows=self.windows, notes=self.notes, file=self.path.name, thumbnails=self.thumbnails,
        )


def _check_audio_duration(path: Path, limit_s: float) -> None:
    """Raise MediaTooLarge for an audio file whose header says it lasts longer than `limit_s` (before decoding
    it); a file without a usable header is left to the decoder."""
    import av

    try:
        with av.open(str(path), mode="r", metadata_errors="ignore") as container:
            duration = container.duration / av.time_base if container.duration else None
    except av.error.FFmpegError:
        return
    if duration is not None and duration > limit_s:
        raise MediaTooLarge(f"{path.name!r} lasts {duration:.0f} s, over the {limit_s:.0f} s limit "
                            f"(raise max_duration_s to analyse it)")


# -- frames to faces (the producer side) ---------------------------------------------------------------
@dataclass
class _FrameFaces:
    index: int  # frame number
    time_s: float
    boxes: list[FaceBox]
    inputs: list[torch.Tensor]  # one (3, S, S) video-model input per box
    thumbnail: Thumbnail | None


def _frame_faces(run: _Run, indices: list[int]) -> Iterator[_FrameFaces]:
    """Decode the sampled frames, find their faces and make each face's model input, frame by frame."""
    spec, s = run.d.video.spec, run.s
    keep = _thumbnail_positions(len(indices), s.thumbnails)
    frames = read_frames(run.path, indices, run.stats, max_pixels=s.max_frame_pixels)
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
                    with run.d._face_lock:
                        found = run.d.faces.detect(frame.image, previous=boxes)
                    if reuse:
                        reuse.detected(frame.image, found)
            boxes = [b for b in found if (b.confidence is None or b.confidence > s.face_confidence)
                     and min(b.width, b.height) >= s.min_face_size][: s.max_faces_per_frame]
            with run.timer("crop_preprocess"):
                inputs = [face_tensor(cv2.cvtColor(crop_face(frame.image, box, s.face_margin), cv2.COLOR_BGR2RGB),
                                      spec) for box in boxes]
                thumbnail = _thumbnail(frame.image, frame.index, frame.time_s, boxes) if done in keep else None
            yield _FrameFaces(frame.index, frame.time_s, boxes, inputs, thumbnail)


class _Background:
    """Iterates `items` in a daemon thread, up to `depth` items ahead of the consumer. An exception in the
    thread is raised in the consumer; close() stops the thread (and closes `items`) early."""

    _END = object()

    def __init__(self, items: Iterator, depth: int):
        self._items = items
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self._finished = False
        self._thread = threading.Thread(target=self._work, name="deepfake-frames", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        # Small torch ops here (input normalisation) must not start a second team of OpenMP threads
        # next to the one running the networks: this thread's torch ops run single-threaded.
        torch.set_num_threads(1)
        try:
            for item in self._items:
                if not self._put(item):
                    return
            self._put(self._END)
        except BaseException as e:  # handed to the consumer, which raises it
            self._put(_Failure(e))
        finally:
            close = getattr(self._items, "close", None)
            if close is not None:
                close()

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self):
        return self

    def __next__(self):
        if self._finished:
            raise StopIteration
        item = self._queue.get()
        if item is self._END:
            self._finished = True
            raise StopIteration
        if isinstance(item, _Failure):
            self._finished = True
            raise item.error
        return item

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


@dataclass
class _Failure:
    error: BaseException


# -- helpers ---------------------------------------------------------------------------------------------
def match_windows(times: list[float], spans: list[tuple[float, float]]) -> np.ndarray:
    """For each time, the index of the audio window whose span contains it (the one centred nearest
    when overlapping windows do), else the nearest window. Pairs modalities by time, not by count."""
    starts = np.array([a for a, _ in spans])
    ends = np.array([b for _, b in spans])
    centres = (starts + ends) / 2
    out = np.empty(len(times), dtype=np.int64)
    for i, t in enumerate(times):
        inside = (starts <= t) & (t <= ends)
        distance = np.where(inside, np.abs(centres - t), np.inf)
        if not inside.any():
            distance = np.maximum(starts - t, t - ends)
        out[i] = int(np.argmin(distance))
    return out


def _modality(p_fake: np.ndarray, weights: np.ndarray | None) -> ModalityResult:
    fake = float(np.mean(p_fake))
    return ModalityResult(
        available=True, fake_prob=fake, real_prob=1.0 - fake, prediction=REAL if 1.0 - fake > 0.5 else FAKE,
        weight=float(np.mean(weights)) if weights is not None and len(weights) else None, count=len(p_fake))


def _track_ids(rows) -> list[int]:
    per_frame: dict[int, list[int]] = {}
    order = []
    for i, (index, _, _) in enumerate(rows):
        if index not in per_frame:
            per_frame[index] = []
            order.append(index)
        per_frame[index].append(i)
    ids = assign_tracks([[rows[i][2] for i in per_frame[index]] for index in order])
    out = [0] * len(rows)
    for index, frame_ids in zip(order, ids):
        for i, tid in zip(per_frame[index], frame_ids):
            out[i] = tid
    return out


def _stray(track_ids: list[int]) -> np.ndarray:
    """True for the faces of tracks with a single face, when some other track has several (a lone box in one
    sampled frame is far more often a false detection than a person; with no longer track nothing is stray)."""
    sizes = np.bincount(np.asarray(track_ids, dtype=np.int64)) if track_ids else np.zeros(0, np.int64)
    if not len(sizes) or sizes.max() < 2:
        return np.zeros(len(track_ids), dtype=bool)
    return sizes[np.asarray(track_ids, dtype=np.int64)] == 1


def _tracks(timeline: list[TimelineRow], threshold: float) -> list[Track]:
    groups: dict[int, list[TimelineRow]] = defaultdict(list)
    for row in timeline:
        groups[row.track].append(row)
    tracks = []
    for tid, rows in sorted(groups.items()):
        fused = float(np.mean([r.fused_p_fake for r in rows]))
        tracks.append(Track(tid, rows[0].time_s, rows[-1].time_s, len(rows),
                            float(np.mean([r.video_p_fake for r in rows])), fused,
                            REAL if 1.0 - fused > threshold else FAKE, stray=rows[0].stray))
    return tracks


def _thumbnail_positions(n: int, count: int) -> set[int]:
    if count <= 0 or n <= 0:
        return set()
    return {int(round(x)) for x in np.linspace(0, n - 1, min(count, n))}


def _thumbnail(image_bgr: np.ndarray, index: int, time_s: float, boxes: list[FaceBox]) -> Thumbnail:
    h, w = image_bgr.shape[:2]
    scale = min(1.0, THUMBNAIL_SIDE / max(h, w))
    small = cv2.resize(image_bgr, (max(1, int(w * scale)), max(1, int(h * scale))), interpolation=cv2.INTER_AREA)
    scaled = [[int(v * scale) for v in (b.x1, b.y1, b.x2, b.y2)] for b in boxes]
    return Thumbnail(index, time_s, cv2.cvtColor(small, cv2.COLOR_BGR2RGB), scaled, scale)
