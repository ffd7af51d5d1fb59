"""Training augmentations. Pure functions of (input, numpy Generator): no global random state.

Video: on (H, W, 3) uint8 RGB face crops, before `networks.face_tensor` (so the model still sees exactly the
inference preprocessing): horizontal flip, JPEG re-compression, down-and-up scaling, Gaussian blur,
Gaussian noise, colour jitter (brightness, contrast, saturation).
Audio: SpecAugment on the (128, T) normalised log-mel before `audio.mel_image`, as the original project
trained its audio model (AUDIO_FINAL.ipynb: 2 frequency masks of up to 15 bands and 2 time masks of up to
20 frames, filled with the mel's mean).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class VideoAugment:
    flip: float = 0.5  # probability of a horizontal flip
    jpeg: float = 0.3  # probability of JPEG re-compression...
    jpeg_quality: tuple[int, int] = (40, 95)  # ...at a quality drawn from this range
    downscale: float = 0.2  # probability of shrinking and re-enlarging (lost detail)...
    downscale_range: tuple[float, float] = (0.4, 0.9)  # ...by a factor drawn from this range
    blur: float = 0.2  # probability of a Gaussian blur...
    blur_sigma: tuple[float, float] = (0.3, 1.5)  # ...with sigma (pixels) from this range
    noise: float = 0.2  # probability of Gaussian noise...
    noise_std: tuple[float, float] = (2.0, 10.0)  # ...with std (0-255 scale) from this range
    color: float = 0.5  # probability of colour jitter...
    brightness: float = 0.2  # ...scaling brightness, contrast, saturation by 1 +- these
    contrast: float = 0.2
    saturation: float = 0.2

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def __call__(self, rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return augment_face(rgb, rng, self)


def augment_face(rgb: np.ndarray, rng: np.random.Generator, cfg: VideoAugment = VideoAugment()) -> np.ndarray:
    """A randomly degraded copy of an (H, W, 3) uint8 RGB crop; same shape and dtype."""
    x = np.ascontiguousarray(rgb)
    if rng.random() < cfg.flip:
        x = np.ascontiguousarray(x[:, ::-1])
    if rng.random() < cfg.color:
        x = color_jitter(x, rng, cfg.brightness, cfg.contrast, cfg.saturation)
    if rng.random() < cfg.downscale:
        x = down_up(x, rng.uniform(*cfg.downscale_range))
    if rng.random() < cfg.blur:
        x = cv2.GaussianBlur(x, (0, 0), sigmaX=rng.uniform(*cfg.blur_sigma))
    if rng.random() < cfg.noise:
        x = add_noise(x, rng, rng.uniform(*cfg.noise_std))
    if rng.random() < cfg.jpeg:
        x = jpeg(x, int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1)))
    return x


def jpeg(rgb: np.ndarray, quality: int) -> np.ndarray:
    """Encode as JPEG at `quality` and decode again."""
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("OpenCV could not JPEG-encode a face crop")
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def down_up(rgb: np.ndarray, factor: float) -> np.ndarray:
    h, w = rgb.shape[:2]
    small = cv2.resize(rgb, (max(1, round(w * factor)), max(1, round(h * factor))), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def add_noise(rgb: np.ndarray, rng: np.random.Generator, std: float) -> np.ndarray:
    noisy = rgb.astype(np.float32) + rng.normal(0.0, std, rgb.shape).astype(np.float32)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def color_jitter(rgb: np.ndarray, rng: np.random.Generator, brightness: float, contrast: float,
                 saturation: float) -> np.ndarray:
    x = rgb.astype(np.float32)
    x *= rng.uniform(1 - brightness, 1 + brightness)
    mean = x.mean()
    x = (x - mean) * rng.uniform(1 - contrast, 1 + contrast) + mean
    grey = x @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    x = (x - grey[..., None]) * rng.uniform(1 - saturation, 1 + saturation) + grey[..., None]
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class SpecAugment:
    """Frequency and time masks on a (n_mels, T) mel, as the original audio training did."""

    freq_mask_param: int = 15  # a frequency mask covers 0..15 mel bands
    time_mask_param: int = 20  # a time mask covers 0..20 frames
    n_freq_masks: int = 2
    n_time_masks: int = 2

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def __call__(self, mel: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return spec_augment(mel, rng, self)


def spec_augment(mel: np.ndarray, rng: np.random.Generator, cfg: SpecAugment = SpecAugment()) -> np.ndarray:
    """A copy of `mel` (n_mels, T) with the masked bands and frames set to the mel's mean."""
    mel = np.array(mel, dtype=np.float32, copy=True)
    n_mels, n_steps = mel.shape
    mu = mel.mean()
    for _ in range(cfg.n_freq_masks):
        f = int(rng.integers(0, cfg.freq_mask_param + 1))
        if f:
            f0 = int(rng.integers(0, max(1, n_mels - f)))
            mel[f0:f0 + f, :] = mu
    for _ in range(cfg.n_time_masks):
        t = int(rng.integers(0, cfg.time_mask_param + 1))
        if t:
            t0 = int(rng.integers(0, max(1, n_steps - t)))
            mel[:, t0:t0 + t] = mu
    return mel
