"""Self-blended images (Shiohara & Yamasaki, CVPR 2022): pseudo-fakes made from real faces alone.

A face is blended with a transformed copy of itself (colour, sharpness, a small scale and shift) through a mask
shaped by its facial landmarks, deformed and blurred, at a varied blend ratio. The seams and mismatched
statistics this leaves are the traces that face swaps, re-rendered mouths and pasted generated heads share.
`degrade` adds what any video goes through (re-compression, resizing, blur, noise, colour shifts); training
applies it to both classes, so those alone never tell real from fake.

Every function is pure: images in, images out, all randomness drawn from the `numpy.random.Generator` passed
in, so a seed reproduces a sample exactly. Images are (H, W, 3) uint8 RGB; landmarks are (68, 2) float32
(x, y) pixel coordinates in dlib's 68-point order; a box is (x1, y1, x2, y2) in pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import cv2
import numpy as np

from .augment import jpeg

BLEND_RATIOS = (0.25, 0.5, 0.75, 1.0, 1.0, 1.0)  # as SBI: full-strength blends half of the time
HULLS = ("full", "extended", "lower", "inner")  # landmark regions a mask may take
SHIFT_MAX = 0.03  # fraction of the face size: largest shift of the source copy
SCALE_RANGE = (0.95, 1 / 0.95)  # scale of the source copy
MASK_WORK_SIDE = 96  # pixels: the face size at which masks are deformed and blurred
MASK_BOX_GROW = 0.1  # the mask stays inside the face box grown by this fraction of its size per side

# dlib 68-point indices
JAW = np.arange(0, 17)
BROWS = np.arange(17, 27)
NOSE = np.arange(27, 36)
EYES = np.arange(36, 48)
MOUTH = np.arange(48, 68)


@dataclass(frozen=True)
class SelfBlend:
    image: np.ndarray  # (H, W, 3) uint8 RGB: the blended face
    mask: np.ndarray  # (H, W) float32 in [0, 1]: the weight of the transformed copy at each pixel
    blend_ratio: float  # the mask's peak value before blurring (one of BLEND_RATIOS)
    hull: str  # which landmark region shaped the mask (one of HULLS)
    changed: str  # which image got the colour/sharpness change: "source" (the pasted copy) or "target"
    label: int = 0  # class index: 0 = FAKE (networks.CLASS_NAMES)


# -- masks -----------------------------------------------------------------------------------------------
def hull_points(landmarks: np.ndarray, kind: str) -> np.ndarray:
    """The landmark points whose convex hull shapes a mask of `kind` (one of HULLS)."""
    pts = np.asarray(landmarks, dtype=np.float32)
    if kind == "full":
        return pts
    if kind == "extended":  # the face with the forehead: eyebrows lifted by a third of the brow-chin height
        brows = pts[BROWS].copy()
        lift = 0.33 * (pts[8, 1] - brows[:, 1].mean())
        brows[:, 1] -= lift
        return np.concatenate([pts[JAW], brows])
    if kind == "lower":  # from the nose tip down: where lip-sync generators re-render
        return np.concatenate([pts[JAW[3:14]], pts[NOSE[3:]], pts[MOUTH]])
    if kind == "inner":  # eyes, nose and mouth
        return np.concatenate([pts[BROWS], pts[EYES], pts[NOSE], pts[MOUTH]])
    raise ValueError(f"unknown hull {kind!r}; choose from {HULLS}")


def landmark_mask(shape: tuple[int, int], landmarks: np.ndarray, kind: str = "full") -> np.ndarray:
    """(H, W) float32 {0, 1}: the filled convex hull of the `kind` landmark points."""
    mask = np.zeros(shape, dtype=np.float32)
    hull = cv2.convexHull(np.round(hull_points(landmarks, kind)).astype(np.int32))
    cv2.fillConvexPoly(mask, hull, 1.0)
    return mask


def box_mask(shape: tuple[int, int], box, grow: float = MASK_BOX_GROW) -> np.ndarray:
    """(H, W) float32 {0, 1}: 1 inside `box` grown by `grow` x its size per side."""
    h, w = shape
    x1, y1, x2, y2 = box
    dx, dy = (x2 - x1) * grow, (y2 - y1) * grow
    out = np.zeros(shape, dtype=np.float32)
    out[max(0, int(np.floor(y1 - dy))):min(h, int(np.ceil(y2 + dy))),
        max(0, int(np.floor(x1 - dx))):min(w, int(np.ceil(x2 + dx)))] = 1.0
    return out


def _odd(n: float) -> int:
    n = max(1, int(round(n)))
    return n if n % 2 else n + 1


def elastic_deform(mask: np.ndarray, rng: np.random.Generator, alpha: float, sigma: float) -> np.ndarray:
    """`mask` warped by a smooth random displacement field (alpha pixels, smoothed over sigma pixels)."""
    h, w = mask.shape
    k = _odd(sigma * 6)
    dx = cv2.GaussianBlur(rng.uniform(-1, 1, (h, w)).astype(np.float32), (k, k), sigma)
    dy = cv2.GaussianBlur(rng.uniform(-1, 1, (h, w)).astype(np.float32), (k, k), sigma)
    scale = alpha / max(1e-6, float(np.abs(np.concatenate([dx, dy])).max()))
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(mask, xs + dx * scale, ys + dy * scale, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)


def blend_mask(mask: np.ndarray, rng: np.random.Generator, face_size: float) -> np.ndarray:
    """SBI's soft mask: deformed, blurred, shrunk to where the blur is complete, blurred again.
    (H, W) float32 in [0, 1]. Worked out at a scale where the face is MASK_WORK_SIDE pixels (the mask is
    smooth, so nothing is lost), then resized back."""
    h, w = mask.shape
    f = min(1.0, MASK_WORK_SIDE / max(1.0, face_size))
    small = cv2.resize(mask, (max(8, round(w * f)), max(8, round(h * f))), interpolation=cv2.INTER_AREA)
    unit = MASK_WORK_SIDE / 256.0 if f < 1.0 else face_size / 256.0
    m = elastic_deform(small, rng, alpha=rng.uniform(2, 8) * unit, sigma=rng.uniform(8, 16) * unit)
    k1 = _odd(rng.uniform(5, 26) * unit)
    m = cv2.GaussianBlur(m, (k1, k1), 0)
    m = np.where(m >= 0.999, 1.0, 0.0).astype(np.float32)  # keep the interior: the blend edge moves inwards
    if not m.any():
        m = (small > 0.5).astype(np.float32)
    k2 = _odd(rng.uniform(5, 26) * unit)
    m = cv2.GaussianBlur(m, (k2, k2), 0)
    return np.clip(cv2.resize(m, (w, h), interpolation=cv2.INTER_LINEAR), 0.0, 1.0)


# -- the transformed copy --------------------------------------------------------------------------------
def color_transform(image: np.ndarray, rng: np.random.Generator, strength: float = 1.0) -> np.ndarray:
    """RGB shift (up to ±20 levels per channel), hue (±2 of 180), saturation (±15 %) and value (±10 %) shift,
    brightness and contrast (±10 %)."""
    x = image.astype(np.float32)
    x += rng.uniform(-20, 20, 3).astype(np.float32) * strength
    x = np.clip(x, 0, 255)
    hsv = cv2.cvtColor(x.astype(np.uint8), cv2.COLOR_RGB2HSV).astype(np.float32)
    hsv[..., 0] = (hsv[..., 0] + rng.uniform(-2, 2) * strength) % 180
    hsv[..., 1] *= 1 + rng.uniform(-0.15, 0.15) * strength
    hsv[..., 2] *= 1 + rng.uniform(-0.1, 0.1) * strength
    x = cv2.cvtColor(np.clip(hsv, 0, 255).astype(np.uint8), cv2.COLOR_HSV2RGB).astype(np.float32)
    contrast = 1 + rng.uniform(-0.1, 0.1) * strength
    brightness = rng.uniform(-0.1, 0.1) * 255 * strength
    x = (x - x.mean()) * contrast + x.mean() + brightness
    return np.clip(x, 0, 255).astype(np.uint8)


def sharpness_transform(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Softer (down- then up-scaled by 2-4x) or sharper (unsharp mask), one of the two."""
    h, w = image.shape[:2]
    if rng.random() < 0.5:
        f = rng.uniform(2, 4)
        small = cv2.resize(image, (max(1, int(w / f)), max(1, int(h / f))), interpolation=cv2.INTER_AREA)
        return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    amount = rng.uniform(0.2, 0.5)
    blurred = cv2.GaussianBlur(image, (0, 0), rng.uniform(1.0, 2.0))
    return cv2.addWeighted(image, 1 + amount, blurred, -amount, 0)


def affine_transform(image: np.ndarray, rng: np.random.Generator, face_size: float) -> np.ndarray:
    """A small random scale (SCALE_RANGE) about the centre and shift (up to SHIFT_MAX x face_size)."""
    h, w = image.shape[:2]
    s = rng.uniform(*SCALE_RANGE)
    tx, ty = rng.uniform(-SHIFT_MAX, SHIFT_MAX, 2) * face_size
    matrix = np.array([[s, 0, (1 - s) * w / 2 + tx], [0, s, (1 - s) * h / 2 + ty]], dtype=np.float32)
    return cv2.warpAffine(image, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


# -- the blend -------------------------------------------------------------------------------------------
def self_blend(image: np.ndarray, landmarks: np.ndarray, box, rng: np.random.Generator,
               hull: str | None = None, blend_ratio: float | None = None) -> SelfBlend:
    """A pseudo-fake: `image` blended with a transformed copy of itself inside a landmark-shaped soft mask.

    image: (H, W, 3) uint8 RGB, a face with some context; landmarks: (68, 2) on it; box: the face box
    (the mask is kept inside it, grown by MASK_BOX_GROW). `hull` and `blend_ratio` are drawn when None.
    """
    image = np.ascontiguousarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 image, got {image.shape} {image.dtype}")
    landmarks = np.asarray(landmarks, dtype=np.float32)
    if landmarks.shape != (68, 2):
        raise ValueError(f"expected (68, 2) landmarks, got {landmarks.shape}")
    h, w = image.shape[:2]
    x1, y1, x2, y2 = box
    face_size = float(max(x2 - x1, y2 - y1))
    hull = hull if hull is not None else HULLS[int(rng.integers(len(HULLS)))]
    ratio = float(blend_ratio if blend_ratio is not None else BLEND_RATIOS[int(rng.integers(len(BLEND_RATIOS)))])

    source, target = image, image
    altered = sharpness_transform(color_transform(image, rng), rng)
    changed = "source" if rng.random() < 0.5 else "target"
    if changed == "source":  # as SBI: the statistics change on the pasted copy or on the face around it
        source = altered
    else:
        target = altered
    source = affine_transform(source, rng, face_size)

    mask = landmark_mask((h, w), landmarks, hull)
    mask = blend_mask(mask, rng, face_size) * box_mask((h, w), box)
    mask *= ratio
    blended = mask[..., None] * source.astype(np.float32) + (1 - mask[..., None]) * target.astype(np.float32)
    return SelfBlend(np.clip(np.round(blended), 0, 255).astype(np.uint8), mask.astype(np.float32), ratio, hull,
                     changed)


# -- what every video goes through (both classes) --------------------------------------------------------
def h264_roundtrip(image: np.ndarray, crf: int) -> np.ndarray:
    """The image encoded as one H.264 intra frame (libx264, yuv420p, constant rate factor `crf`) and decoded:
    the chroma subsampling and block artefacts of a re-compressed video."""
    import io

    import av

    h, w = image.shape[:2]
    eh, ew = h + h % 2, w + w % 2  # yuv420p needs even sides
    padded = cv2.copyMakeBorder(image, 0, eh - h, 0, ew - w, cv2.BORDER_REPLICATE)
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="h264") as out:
        stream = out.add_stream("libx264", rate=Fraction(25, 1))
        stream.width, stream.height, stream.pix_fmt = ew, eh, "yuv420p"
        stream.options = {"crf": str(int(crf)), "preset": "ultrafast", "tune": "zerolatency"}
        for packet in stream.encode(av.VideoFrame.from_ndarray(padded, format="rgb24")):
            out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    buf.seek(0)
    with av.open(buf, mode="r", format="h264") as inp:
        frame = next(inp.decode(video=0))
        return np.ascontiguousarray(frame.to_ndarray(format="rgb24")[:h, :w])


def degrade(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random degradations of a face crop (both classes): colour shift, down-and-up resize, blur, noise,
    then H.264 or JPEG re-compression. Each is applied with some probability; shape and dtype are kept."""
    h, w = image.shape[:2]
    x = image
    if rng.random() < 0.3:
        x = color_transform(x, rng, strength=0.5)
    if rng.random() < 0.3:
        f = rng.uniform(0.35, 0.9)
        small = cv2.resize(x, (max(8, int(w * f)), max(8, int(h * f))), interpolation=cv2.INTER_AREA)
        x = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    if rng.random() < 0.2:
        x = cv2.GaussianBlur(x, (0, 0), rng.uniform(0.3, 1.5))
    if rng.random() < 0.2:
        noise = rng.normal(0, rng.uniform(2, 8), x.shape).astype(np.float32)
        x = np.clip(x.astype(np.float32) + noise, 0, 255).astype(np.uint8)
    r = rng.random()
    if r < 0.35:
        x = h264_roundtrip(x, int(rng.integers(18, 36)))
    elif r < 0.7:
        x = jpeg(x, int(rng.integers(40, 96)))
    return np.ascontiguousarray(x)
