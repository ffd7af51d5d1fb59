"""Detector: loads the models once; analyze(path) turns a video into a Report (the steps: run.py)."""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from ..errors import CheckpointError
from ..faces.detect import DNN_INPUT, FaceBox, HybridFaceDetector, load_face_detector
from ..media.audio import SAMPLE_RATE, WINDOW_S, log_mel
from ..models.checkpoints import LoadedModel, load_model
from ..models.model_files import choose_audio_model, choose_video_model, files_missing, named_models_dir
from ..models.networks import blank_input, is_speech_model
from ..models.registry import (
    AUDIO_FILES,
    AUDIO_MODEL_CARD,
    BUILTIN_AUDIO_FILE,
    BUILTIN_SHA256,
    BUILTIN_VIDEO_FILE,
    BUILTIN_VIDEO_SUMMARY,
    MODEL_CARD,
    PULL_COMMAND,
    VIDEO_FILES,
    models_dir_candidates,
    resolve_models_dir,
)
from ..models.runtime import make_runner, pick_device, pick_precision, pick_runtime
from ..settings import RUNTIMES, AnalysisSettings, check_choice
from ..version import __version__
from .context import Progress
from .fusion import AGGREGATIONS
from .report import BUILTIN_VIDEO_NOTE, Report
from .run import Analysis

WARMUP_BATCH = 2  # inputs per network in the warm-up pass at load
GPU_MIN_BATCH = 64  # inputs per forward pass on CUDA, at least (settings.batch_size when larger)


class Detector:
    """Holds the loaded networks and face detector. Safe to share between threads."""

    def __init__(self, video: LoadedModel, audio: LoadedModel | None, faces: HybridFaceDetector,
                 device: torch.device, precision: str, models_dir: Path, notes: Sequence[str] | None = None,
                 face_files: list[Path] | None = None, compile: bool = False, warmup: bool = True,
                 runtime: str = "auto", audio_missing: str | None = None):
        self.video = video
        self.audio = audio
        self.faces = faces
        self.device = device
        self.precision = precision
        self.models_dir = models_dir
        self.load_notes = tuple(notes or ())  # what loading found; every report starts with these
        self.audio_missing = audio_missing  # why there is no audio model (None: none was asked for)
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
        # Decode and find faces in a background thread while the networks run (see Analysis.run).
        self.overlap = True
        # A GPU runs big batches as fast as small ones: at least this many inputs per forward pass.
        self.min_batch = GPU_MIN_BATCH if device.type == "cuda" else 1
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # pick the fastest convolution for each batch shape
        # One runner per network (runtime.TorchRunner or ov_runtime.OpenVinoRunner): an inference copy
        # (BatchNorm folded, ...) that turns a batch into logits; `video.module` and `audio.module` stay as loaded.
        self.runtime = pick_runtime(runtime, device, compile)
        self.runners: dict = {}
        self.optimizations: dict[str, list[str]] = {}
        for loaded in (video, audio):
            if loaded is not None:
                runner = make_runner(self.runtime, loaded, device, precision, compile)
                self.runners[loaded.spec.modality], self.optimizations[loaded.spec.modality] = runner, runner.done
        # res10 follows the networks' runtime: OpenVINO runs it ~2x as fast as cv2.dnn in fp32, with the same
        # boxes to the pixel (benchmarks/RESULTS.md); the torch runtime keeps cv2.dnn. Always fp32: bf16 (~3x)
        # finds the same faces but moves box edges by a pixel, so the crops, and the scores, change.
        dnn = getattr(faces, "dnn", None)
        if dnn is not None:
            if self.runtime == "openvino" and dnn.backend != "openvino":
                try:
                    dnn.use_openvino("fp32")
                except (RuntimeError, ValueError, OSError) as e:  # a res10 variant the rebuild does not cover
                    self.load_notes += (f"faces found by cv2.dnn: OpenVINO could not run the res10 detector ({e})",)
            self.optimizations["faces"] = list(dnn.done)
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
        self.detect_faces(np.zeros((DNN_INPUT, DNN_INPUT, 3), np.uint8))
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
        Raises ModelsDirMissing (a named models folder that does not exist), ModelFilesMissing, CheckpointError
        (an installed file that cannot be read, model_files.py) or SettingsError.
        """
        check_choice("runtime", runtime, RUNTIMES)  # before the seconds of loading
        named = named_models_dir(models_dir)  # a named folder that does not exist: ModelsDirMissing
        directory = resolve_models_dir(named)
        searched = [str(p) for p in models_dir_candidates(named)]
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
        if video_choice == "builtin" and video is not None:  # the first line of every report (report.FIRST_NOTES)
            if video.metadata.get("summary") and video.sha256 == BUILTIN_SHA256:
                video.metadata["summary"] = BUILTIN_VIDEO_SUMMARY  # the shipped file's text, corrected
            status = video.metadata.get("status", "")
            why = ("as asked (--video-model builtin)" if video_model else
                   f"no original checkpoint ({VIDEO_FILES[-1]}) is installed in {directory}; {PULL_COMMAND} "
                   f"installs it")
            notes.insert(0, f"{BUILTIN_VIDEO_NOTE} ({video.metadata.get('name', BUILTIN_VIDEO_FILE)})"
                         f"{', EXPERIMENTAL' if status == 'experimental' else ''}, {why} "
                         f"({video.metadata.get('summary', 'trained by this project')}; what it catches and misses "
                         f"is measured in {MODEL_CARD})")
        audio = audio_missing = None
        if audio_path is not None:
            audio = load_model(audio_path, "audio")
            audio.metadata.setdefault("choice", audio_choice)
            if audio_choice == "builtin":
                notes.append(f"audio judged by the built-in model ({audio.metadata.get('name', BUILTIN_AUDIO_FILE)}): "
                             f"a small speech CNN trained by this project on demo-page speech; what it catches and "
                             f"misses is measured in {AUDIO_MODEL_CARD}")
        elif audio_choice != "none":
            audio_missing = f"the audio model ({AUDIO_FILES[-1]}) is not in {directory}"
            notes.append(f"audio not judged: {audio_missing}")
        if video is None and audio is None:  # nothing could be judged
            raise files_missing([VIDEO_FILES[-1]], directory, searched)
        faces, face_files = load_face_detector(directory, notes)
        dev = pick_device("cpu" if runtime == "openvino" and device == "auto" else device)
        return cls(video, audio, faces, dev, pick_precision(precision, dev), directory, notes, face_files,
                   compile=compile, warmup=warmup, runtime=runtime, audio_missing=audio_missing)

    def model_defaults(self) -> dict:
        """The setting values the loaded model files carry: the audio temperature fitted for the built-in audio
        model and the fusion chosen for it (its metadata: "temperature", "default_fusion")."""
        out: dict = {}
        if self.audio is not None and is_speech_model(self.audio.spec):
            meta = self.audio.metadata
            if "temperature" in meta:
                out["audio_temperature"] = float(meta["temperature"])
            if meta.get("default_fusion"):
                out["fusion"] = meta["default_fusion"]
        return out

    def default_settings(self, explicit: set[str] | frozenset = frozenset(),
                         settings: AnalysisSettings | None = None) -> AnalysisSettings:
        """`settings` (default AnalysisSettings()) with the model files' own values (`model_defaults`) for the
        fields not in `explicit` (the audio temperature only when no calibration was applied)."""
        settings = settings or AnalysisSettings()
        changes = {k: v for k, v in self.model_defaults().items() if k not in explicit
                   and not (k == "audio_temperature" and settings.calibration is not None)}
        return settings.replace(**changes) if changes else settings

    def resolve_settings(self, given: Mapping[str, object] | AnalysisSettings | None = None,
                         use_calibration: bool = True) -> tuple[AnalysisSettings, list[str]]:
        """(the settings an analysis runs with, the notes its report carries after the load notes): the one rule
        every front end follows (the commands, the page, the API, the Ray scan), so that one file gets the same
        verdict everywhere.

        `given`: the values the user set ({field: value}; an AnalysisSettings counts the fields that differ from
        the defaults as set). Each field not given takes, in order:
        1. the models folder's calibration.json, when it was fitted for these model files (unless
           `use_calibration` is False): the temperatures and the threshold. With neither the fusion nor the
           threshold given, the calibration's fusion comes with its threshold (which was fitted for it); a
           threshold fitted for another fusion than the one in use is not applied (the note says so);
        2. the model files' own values (`model_defaults`: the built-in audio model's fusion and temperature);
        3. AnalysisSettings' default.
        Raises SettingsError for an invalid given value."""
        if isinstance(given, AnalysisSettings):
            default = AnalysisSettings().to_dict()
            given = {k: v for k, v in given.to_dict().items() if v != default[k]}
        given = dict(given or {})
        settings = self.default_settings(set(given), AnalysisSettings(**given))
        notes: list[str] = []
        if use_calibration and self.video is not None:
            from ..models.calibration import apply_calibration, find_calibration

            calibration, path, note = find_calibration(self.models_dir, self.video.sha256,
                                                       self.audio.sha256 if self.audio is not None else None)
            if calibration is not None:
                settings, note = apply_calibration(settings, calibration, set(given), str(path), take_fusion=True)
                if (settings.calibration is not None and calibration.audio_temperature is None
                        and "audio_temperature" not in given):  # it was fitted with the default temperature
                    settings = settings.replace(audio_temperature=AnalysisSettings().audio_temperature)
            if note:
                notes.append(note)
        return settings, notes

    # ----------------------------------------------------------------------------------------------
    def describe_models(self) -> dict:
        return {
            # the video dict says how its face scores become one video score (fusion.AGGREGATIONS)
            "video": (dict(self.video.describe(), aggregation=self.video_aggregation)
                      if self.video is not None else None),
            "audio": self.audio.describe() if self.audio is not None else None,
            "face_detector": {
                "methods": self.faces.methods,
                "backend": getattr(getattr(self.faces, "dnn", None), "backend", None),
                "source": getattr(self.faces, "source", None),  # where res10's files came from; None: Haar only
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
        return self.runners[loaded.spec.modality](torch.stack(batch), max(pad_to, self.min_batch))

    def score(self, loaded: LoadedModel, items: torch.Tensor | list[torch.Tensor], batch_size: int) -> np.ndarray:
        """(N, 2) float32 logits (FAKE, REAL) of `loaded` (self.video or self.audio) for N model inputs
        (a (N, ...) tensor or a list of input tensors), `batch_size` per forward pass."""
        out = [self._forward(loaded, list(items[i:i + batch_size]), batch_size)
               for i in range(0, len(items), batch_size)]
        return np.concatenate(out) if out else np.zeros((0, 2), dtype=np.float32)

    def detect_faces(self, image_bgr: np.ndarray, previous: Sequence[FaceBox] = ()) -> list[FaceBox]:
        """The faces the face detector finds in one (H, W, 3) uint8 BGR frame (`previous`: the last sampled
        frame's faces); serialised between threads, as cv2.dnn networks are not thread-safe."""
        with self._face_lock:
            return self.faces.detect(image_bgr, previous=list(previous))

    # ----------------------------------------------------------------------------------------------
    def analyze(self, path: str | os.PathLike, settings: AnalysisSettings | None = None,
                progress: Progress | None = None, *, display_name: str | None = None,
                notes: Sequence[str] = ()) -> Report:
        """Analyse one video (or audio) file. Raises InputError subclasses for files that cannot be read;
        returns a NOT_APPLICABLE report for readable files that cannot be judged.

        `display_name`: the name the report gives the file (`file` and `media["path"]`), e.g. an upload's own
        name rather than its temporary copy's path. `notes`: lines the report carries after the load notes
        (e.g. the one `calibration.apply_calibration` returns)."""
        settings = settings or self.default_settings()
        notify = progress or (lambda fraction, message: None)
        return Analysis(self, Path(path), settings, notify, display_name, notes).run()
