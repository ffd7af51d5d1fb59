"""The networks, built from a ModelSpec, and the input preprocessing each one expects."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import timm
import torch
from PIL import Image
from torch import nn

from ..errors import CheckpointError
from ..offline import hub_offline

# The architectures a model file may name (the "architecture" field of its metadata): timm builds each of
# them locally, from code, with pretrained=False. Nothing else is ever built: a hub name ("hf-hub:org/name",
# "timm/name") would make timm fetch a config from the network, and an unknown name runs unknown code paths.
# To ship a model on another timm architecture, add its name here (and to HEADS for a new head).
KNOWN_ARCHITECTURES = ("legacy_xception", "xception", "tf_efficientnet_lite0", "speech_cnn", "ge2e_lstm")
# "linear": timm's own classifier; "mlp-512-256": the original audio head; "pooled-(residual-)linear": the built-in
# video model (PooledFeatureClassifier)
HEADS = ("linear", "mlp-512-256", "pooled-linear", "pooled-residual-linear", "speech-cnn", "ge2e-stats-linear")

CLASS_NAMES = ("fake", "real")  # output index 0 = FAKE, 1 = REAL
FAKE, REAL = 0, 1


@dataclass(frozen=True)
class ModelSpec:
    architecture: str  # timm model name
    modality: str  # "video" or "audio"
    head: str  # "linear" (timm's own classifier) or "mlp-512-256" (the original audio head)
    input_size: int  # pixels, square
    mean: tuple[float, float, float]  # per-channel normalisation of [0, 1] RGB input (video)
    std: tuple[float, float, float]
    class_names: tuple[str, ...] = CLASS_NAMES

    def to_dict(self) -> dict:
        return asdict(self)


# The original project's layouts (Mbulss/Deepfake-Detecetor).
ORIGINAL_VIDEO = ModelSpec("legacy_xception", "video", "linear", 299, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
ORIGINAL_AUDIO = ModelSpec("legacy_xception", "audio", "mlp-512-256", 299, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))


class AudioXception(nn.Module):
    """legacy_xception features (2048) -> 512 -> 256 -> 2, the original audio model's layout:
    keys `backbone.*` and `classifier.{0,1,4,5,8}.*`."""

    def __init__(self, architecture: str = "legacy_xception", num_classes: int = 2):
        super().__init__()
        self.backbone = timm.create_model(architecture, pretrained=False, num_classes=0)
        self.classifier = nn.Sequential(
            nn.Linear(self.backbone.num_features, 512),
            nn.BatchNorm1d(512),
            nn.ReLU(),
            nn.Dropout(0.5),
            nn.Linear(512, 256),
            nn.BatchNorm1d(256),
            nn.ReLU(),
            nn.Dropout(0.3),
            nn.Linear(256, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.backbone(x))


class PooledFeatureClassifier(nn.Module):
    """The built-in video model's layout: a timm EfficientNet-style backbone whose block outputs (the last
    blocks and the head) are average-pooled and concatenated — optionally for the RGB input and for its
    high-frequency residual x - up(down(x)) (where generators leave up-sampling traces) — standardised with
    the training set's statistics and scored by one linear unit. Logits are (z, 0): P(fake) = sigmoid(z).

    Keys: `backbone.*` (timm's names), `feature_mean`, `feature_std`, `linear.{weight,bias}`."""

    POOLED_FROM = 3  # blocks[3:] and the head are pooled
    RESIDUAL_GAIN = 4.0  # the residual input is small: scaled into the range the backbone saw in training

    def __init__(self, architecture: str, residual: bool, num_classes: int = 2):
        super().__init__()
        if num_classes != 2:
            raise ValueError("PooledFeatureClassifier scores two classes (fake, real)")
        self.backbone = timm.create_model(architecture, pretrained=False, num_classes=0)
        self.residual = residual
        dims = [b[-1].conv_pwl.out_channels if hasattr(b[-1], "conv_pwl") else b[-1].conv_pw.out_channels
                for b in self.backbone.blocks[self.POOLED_FROM:]] + [self.backbone.num_features]
        self.num_pooled = sum(dims) * (2 if residual else 1)
        self.register_buffer("feature_mean", torch.zeros(self.num_pooled))
        self.register_buffer("feature_std", torch.ones(self.num_pooled))
        self.linear = nn.Linear(self.num_pooled, 1)

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, S, S) normalised input -> (N, D) pooled block and head features, before standardising."""
        b = self.backbone
        h = b.bn1(b.conv_stem(x))
        out = []
        for i, block in enumerate(b.blocks):
            h = block(h)
            if i >= self.POOLED_FROM:
                out.append(h.mean((2, 3)))
        out.append(b.bn2(b.conv_head(h)).mean((2, 3)))
        return torch.cat(out, 1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        f = self.pooled(x)
        if self.residual:
            f = torch.cat([f, self.pooled(high_pass(x) * self.RESIDUAL_GAIN)], 1)
        return f

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.linear((self.features(x) - self.feature_mean) / self.feature_std)
        return torch.cat([z, torch.zeros_like(z)], 1)


def high_pass(x: torch.Tensor) -> torch.Tensor:
    """x - up(down(x)): what a 2x average-pool and bilinear up-sampling lose (N, C, H, W, even H and W)."""
    low = nn.functional.interpolate(nn.functional.avg_pool2d(x, 2), scale_factor=2, mode="bilinear",
                                    align_corners=False)
    return x - low



def check_architecture(architecture, head="linear", source: str = "the model file") -> None:
    """Raise CheckpointError unless `architecture` is in KNOWN_ARCHITECTURES and `head` in HEADS."""
    if not isinstance(architecture, str) or architecture not in KNOWN_ARCHITECTURES:
        hub = isinstance(architecture, str) and (":" in architecture or "/" in architecture)
        raise CheckpointError(
            f"{source} names the architecture {architecture!r}, "
            + ("a model hub name: models are never fetched from a hub" if hub else "which this detector does not know")
            + f". Known architectures: {', '.join(KNOWN_ARCHITECTURES)} (models.KNOWN_ARCHITECTURES).")
    if head not in HEADS:
        raise CheckpointError(f"{source} names the head {head!r}; known heads: {', '.join(HEADS)}")

SPEECH_CNN = "speech_cnn"  # the built-in audio model's architecture (SpeechCNN), head "speech-cnn"


class SpeechCNN(nn.Module):
    """A small CNN over a log filterbank window (the built-in audio model, 47,570 parameters).

    Input (N, 1, bands, frames) float32 from `speech.features`; four conv-BN-ReLU blocks (16, 32, 48, 64
    channels; the first with stride 2, the first three followed by 2x2 max pooling), then the mean and the max
    over time of each channel and frequency row, dropout and a linear layer to 2 logits (index 0 = FAKE).
    Frequency position is kept (vocoder artefacts live in particular bands); time is pooled (any window length).
    """

    CHANNELS = (16, 32, 48, 64)

    def __init__(self, bands: int = 64, num_classes: int = 2, dropout: float = 0.3):
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 1
        for i, c_out in enumerate(self.CHANNELS):
            conv = nn.Conv2d(c_in, c_out, 3, stride=2 if i == 0 else 1, padding=1, bias=False)
            layers += [conv, nn.BatchNorm2d(c_out), nn.ReLU()]
            if i < len(self.CHANNELS) - 1:
                layers.append(nn.MaxPool2d(2))
            c_in = c_out
        self.features = nn.Sequential(*layers)
        rows = -(-bands // 2) // 2 ** (len(self.CHANNELS) - 1)  # after the stride-2 stem and the pools
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(2 * c_in * rows, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x)  # (N, C, rows, T')
        h = torch.cat([h.mean(dim=3), h.amax(dim=3)], dim=1).flatten(1)
        return self.head(self.dropout(h))


def speech_spec(bands: int = 64) -> ModelSpec:
    """The built-in audio model's spec: `input_size` is the number of filterbank bands."""
    return ModelSpec(SPEECH_CNN, "audio", "speech-cnn", bands, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))


# the pretrained voice encoder's architecture (VoiceEncoderClassifier), head "ge2e-stats-linear"
GE2E_LSTM = "ge2e_lstm"


class VoiceEncoderClassifier(nn.Module):
    """A GE2E speaker encoder (Resemblyzer's: 3-layer LSTM, 40 mel bands at 16 kHz, 256-d embedding; weights
    pretrained by its authors on speaker verification and kept frozen) with a linear unit on its statistics.

    Input (N, 1, 40, frames) float32 mel power from `speech.features(..., "ge2e")`. Features: the mean and the
    standard deviation over time of each LSTM layer's outputs, and the L2-normalised embedding (1,792 values),
    standardised with the training set's statistics; logits (z, 0), so P(fake) = sigmoid(z).
    Keys: `lstm.{0,1,2}.*` (one single-layer LSTM per layer), `linear.*` (the embedding), `feature_mean`,
    `feature_std`, `head.*`."""

    MELS, HIDDEN, LAYERS = 40, 256, 3
    NUM_FEATURES = 2 * HIDDEN * LAYERS + HIDDEN

    def __init__(self, num_classes: int = 2):
        super().__init__()
        if num_classes != 2:
            raise ValueError("VoiceEncoderClassifier scores two classes (fake, real)")
        self.lstm = nn.ModuleList(nn.LSTM(self.MELS if i == 0 else self.HIDDEN, self.HIDDEN, batch_first=True)
                                  for i in range(self.LAYERS))
        self.linear = nn.Linear(self.HIDDEN, self.HIDDEN)
        self.register_buffer("feature_mean", torch.zeros(self.NUM_FEATURES))
        self.register_buffer("feature_std", torch.ones(self.NUM_FEATURES))
        self.head = nn.Linear(self.NUM_FEATURES, 1)

    def statistics(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1, 40, T) mel power -> (N, 1792) encoder statistics, before standardising."""
        h = x[:, 0].transpose(1, 2)
        out = []
        for lstm in self.lstm:
            h, (last, _) = lstm(h)
            out += [h.mean(1), h.std(1)]
        embedding = torch.relu(self.linear(last[-1]))
        out.append(embedding / embedding.norm(dim=1, keepdim=True).clamp_min(1e-8))
        return torch.cat(out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.head((self.statistics(x) - self.feature_mean) / self.feature_std)
        return torch.cat([z, torch.zeros_like(z)], 1)


def voice_encoder_spec() -> ModelSpec:
    """The pretrained voice encoder model's spec: `input_size` is the number of mel bands."""
    return ModelSpec(GE2E_LSTM, "audio", "ge2e-stats-linear", VoiceEncoderClassifier.MELS, (0.0, 0.0, 0.0),
                     (1.0, 1.0, 1.0))


def build_model(spec: ModelSpec) -> nn.Module:
    """A randomly initialised network in `spec`'s layout (weights come from a checkpoint). Only the
    architectures in KNOWN_ARCHITECTURES are built (CheckpointError otherwise): nothing reaches the network."""
    check_architecture(spec.architecture, spec.head, "the model spec")
    hub_offline()  # the second wall, for a library user who did not call process.configure_process()
    num_classes = len(spec.class_names)
    if spec.head == "speech-cnn":
        if spec.architecture != SPEECH_CNN:
            raise ValueError(f"head speech-cnn needs architecture {SPEECH_CNN!r}; got {spec.architecture!r}")
        return SpeechCNN(spec.input_size, num_classes)
    if spec.head == "ge2e-stats-linear":
        if spec.architecture != GE2E_LSTM or spec.input_size != VoiceEncoderClassifier.MELS:
            raise ValueError(f"head ge2e-stats-linear needs architecture {GE2E_LSTM!r} on "
                             f"{VoiceEncoderClassifier.MELS} bands; got {spec.architecture!r}, {spec.input_size}")
        return VoiceEncoderClassifier(num_classes)
    if spec.head == "mlp-512-256":
        return AudioXception(spec.architecture, num_classes)
    if spec.head in ("pooled-linear", "pooled-residual-linear"):
        return PooledFeatureClassifier(spec.architecture, spec.head == "pooled-residual-linear", num_classes)
    if spec.head == "linear":
        return timm.create_model(spec.architecture, pretrained=False, num_classes=num_classes)
    raise ValueError(f"unknown model head {spec.head!r}")


def blank_input(spec: ModelSpec, window_s: float = 2.0) -> torch.Tensor:
    """One all-zero model input for `spec` (warm-up): (3, S, S) images, or (1, bands, frames) for SpeechCNN."""
    if spec.head in SPEECH_HEADS:
        return torch.zeros(1, spec.input_size, int(window_s * 100) + 1)  # 10 ms frames, centred
    return torch.zeros(3, spec.input_size, spec.input_size)


SPEECH_HEADS = ("speech-cnn", "ge2e-stats-linear")  # built-in audio heads: input from `speech.features`


def is_speech_model(spec: ModelSpec) -> bool:
    """True for the built-in audio architecture, which reads `speech.features`, not the original mel images."""
    return spec.head in SPEECH_HEADS


def build_video_model() -> nn.Module:
    """The original video model: timm legacy_xception with a 2-class linear head."""
    return build_model(ORIGINAL_VIDEO)


def build_audio_model() -> nn.Module:
    """The original audio model: legacy_xception backbone with the 512-256-2 MLP head."""
    return build_model(ORIGINAL_AUDIO)


def face_tensor(crop_rgb: np.ndarray, spec: ModelSpec = ORIGINAL_VIDEO) -> torch.Tensor:
    """(3, S, S) float32 model input from an (H, W, 3) uint8 RGB face crop.

    As the original: PIL bilinear resize to S x S (torchvision Resize on a PIL image), scale to [0, 1],
    normalise with the spec's mean and std.
    """
    image = Image.fromarray(np.ascontiguousarray(crop_rgb)).resize(
        (spec.input_size, spec.input_size), Image.BILINEAR
    )
    x = torch.from_numpy(np.asarray(image, dtype=np.float32)).permute(2, 0, 1).div_(255.0)
    mean = torch.tensor(spec.mean, dtype=torch.float32)[:, None, None]
    std = torch.tensor(spec.std, dtype=torch.float32)[:, None, None]
    return (x - mean) / std
