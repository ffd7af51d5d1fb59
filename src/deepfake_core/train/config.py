"""The training configuration: one frozen dataclass whose fields also declare the `deepfake-detect train`
options (settings.setting / Option; cli/train.py makes them). Imports no torch, so `--help` stays fast."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..errors import SettingsError
from ..settings import DEVICES, PRECISIONS, AnalysisSettings, Option, check_choice, setting, validate

SCHEDULES = ("cosine", "plateau")
MONITORS = ("val_auc", "val_item_auc")
MODALITIES = ("video", "audio")


@dataclass(frozen=True)
class TrainConfig:
    modality: str = setting(dataclasses.MISSING, choices=MODALITIES, option=Option("modality", "video or audio"))
    epochs: int = setting(10, option=Option("--epochs", "training epochs, at most (default: {default})"))
    batch_size: int = setting(32, option=Option("--batch-size", "examples per step (default: {default})"))
    # AdamW learning rate (the original audio run used 1e-3 from ImageNet weights)
    lr: float = setting(1e-4, option=Option("--lr", "AdamW learning rate (default: {default:g})"))
    weight_decay: float = setting(1e-4, option=Option("--weight-decay", "AdamW weight decay (default: {default:g})"))
    # cosine: per step down to lr/100; plateau: halve when the monitor stalls
    schedule: str = setting("cosine", choices=SCHEDULES,
                            option=Option("--schedule", "learning-rate schedule (default: {default})"))
    patience: int = setting(3, option=Option("--patience", "early stop after N epochs without a better monitor "
                                             "(default: {default})", metavar="N"))
    min_delta: float = 1e-4  # smallest improvement that counts
    # val_auc (per face or window) or val_item_auc (mean score per media file)
    monitor: str = setting("val_auc", choices=MONITORS,
                           option=Option("--monitor", "val_auc: per face/window; val_item_auc: mean score per file "
                                         "(default: {default})"))
    # weight the loss by inverse class frequency (FakeAVCeleb is 97 % fake)
    balance: bool = setting(True, option=Option("--no-balance", "no class weighting of the loss"))
    label_smoothing: float = 0.0
    grad_clip: float | None = 5.0  # max gradient norm; None = no clipping
    workers: int = setting(2, option=Option("--workers", "DataLoader workers (default: {default})"))
    device: str = setting("auto", choices=DEVICES,
                          option=Option("--device", "auto: CUDA, MPS, then CPU (default: {default})"))
    precision: str = setting("auto", choices=PRECISIONS,
                             option=Option("--precision", "auto: bf16 autocast on a CUDA GPU that supports it, "
                                           "else fp32 (default: {default})"))
    channels_last: bool | None = None  # None: on a GPU
    seed: int = setting(0, option=Option("--seed", "random seed (default: {default})"))
    max_steps_per_epoch: int | None = setting(
        None, option=Option("--max-steps-per-epoch", "cut epochs short", metavar="N"))  # quick runs, tests
    max_eval_batches: int | None = None  # cut validation short (quick runs, tests)
    augment: bool = setting(True, option=Option("--no-augment", "no training augmentation"))
    # data (recorded here so config.json says everything about the run)
    val_fraction: float = setting(0.15, option=Option("--val-fraction", "share of the files held out for "
                                                      "validation (default: {default})"))
    test_fraction: float = setting(0.15, option=Option("--test-fraction", "share of the files held out for "
                                                       "the test split (default: {default})"))
    trim_silence: bool = setting(False, option=Option("--trim-silence", "audio: drop windows that start in the "
                                                      "leading silence (the FakeAVCeleb shortcut)"))
    # local ImageNet weights file the backbone started from (no download, ever)
    init: str | None = setting(None, option=Option("--init", "ImageNet weights for the backbone, a local file "
                                                   "(never downloaded)", metavar="FILE"))
    name: str | None = setting(None, option=Option("--name", "model name written into the checkpoint (default: "
                                                   "the run folder's name)"))

    def __post_init__(self):
        check_choice("modality", self.modality, MODALITIES)
        check_choice("schedule", self.schedule, SCHEDULES)
        check_choice("monitor", self.monitor, MONITORS)
        check_choice("precision", self.precision, PRECISIONS)
        for name in ("epochs", "batch_size", "patience"):
            if int(getattr(self, name)) < 1:
                raise SettingsError(f"{name} must be >= 1; got {getattr(self, name)!r}")
        if self.workers < 0:
            raise SettingsError(f"workers must be >= 0; got {self.workers}")
        if not self.lr > 0:
            raise SettingsError(f"lr must be > 0; got {self.lr}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _analysis_default(name: str):
    """The default of an AnalysisSettings field: `prepare` cuts its data the way `analyze` looks at a video."""
    return next(f.default for f in dataclasses.fields(AnalysisSettings) if f.name == name)


@dataclass(frozen=True)
class PrepareOptions:
    """How `deepfake-detect prepare` cuts a dataset into a training cache; its fields declare the options."""

    # Sample every n-th frame of a video...
    frame_skip: int = setting(
        _analysis_default("frame_skip"), minimum=1,
        option=Option("--frame-skip", "sample every N-th frame (default: {default})", metavar="N"))
    # ...at most this many frames per video, spread over all of it (video.sample_indices).
    frames_per_video: int = setting(
        16, minimum=1, option=Option("--frames-per-video", "at most N sampled frames per video, spread over it "
                                     "(default: {default})", metavar="N"))
    # Faces kept per sampled frame, best first (1: the main face; a fake video's bystanders stay out).
    faces_per_frame: int = setting(
        1, minimum=1, option=Option("--faces-per-frame", "faces kept per frame (default: {default})", metavar="N"))
    # Context around the face box (0 = the raw box, as inference and the original models use).
    face_margin: float = setting(
        _analysis_default("face_margin"), range=(0.0, 2.0),
        option=Option("--face-margin", "context around each face box (default: {default:g}, as inference)",
                      metavar="M"))
    # Crops larger than this (longest side, pixels) are shrunk before storing; None keeps them as cut.
    max_crop_side: int | None = setting(
        None, minimum=16, optional=True,
        option=Option("--max-crop-side", "shrink larger crops to this side before storing (default: keep as cut)",
                      metavar="PX"))
    # What to extract.
    video: bool = setting(True, option=Option("--no-video", "no face crops"))
    audio: bool = setting(True, option=Option("--no-audio", "no mel windows"))
    # Audio windows (the original recipe: 2.0 s, 50 % overlap), as analyze cuts them.
    window_s: float = setting(_analysis_default("audio_window_s"), range=(0.5, 30.0))
    overlap: float = setting(_analysis_default("audio_overlap"), range=(0.0, 0.95))

    def __post_init__(self):
        validate(self)
        if not (self.video or self.audio):
            raise SettingsError("nothing to prepare: both video and audio are off")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
