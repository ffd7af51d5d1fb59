"""The training configuration: one frozen dataclass whose fields also declare the `deepfake-detect train`
options (settings.setting / Option; cli/train.py makes them). Imports no torch, so `--help` stays fast."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..errors import SettingsError
from ..settings import DEVICES, PRECISIONS, Option, check_choice, setting

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
