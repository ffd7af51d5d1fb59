"""The self-blended-image generator and the degradations applied to both classes."""

import numpy as np
import pytest

from deepfake_core.train import sbi


def synthetic_face(size=256):
    """A smooth, textured RGB image and dlib-68-shaped landmarks on an ellipse (a face-like layout)."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    base = np.stack([120 + 60 * np.sin(xx / 17), 100 + 50 * np.cos(yy / 13), 90 + 40 * np.sin((xx + yy) / 23)], -1)
    image = np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)
    c, r = size / 2, size * 0.28
    t = np.linspace(np.pi * 0.05, np.pi * 0.95, 17)
    jaw = np.stack([c - r * np.cos(t), c + r * 0.3 + r * np.sin(t) * 0.9], -1)
    brows = np.stack([np.linspace(c - r * 0.8, c + r * 0.8, 10), np.full(10, c - r * 0.45)], -1)
    nose = np.stack([np.full(9, c) + np.linspace(-8, 8, 9) * (np.arange(9) >= 4), np.linspace(c - r * 0.3, c + r * 0.2, 9)], -1)
    eyes = np.concatenate([np.stack([c + s * r * 0.4 + 10 * np.cos(a), c - r * 0.25 + 5 * np.sin(a)], -1)
                           for s in (-1, 1) for a in [np.linspace(0, 2 * np.pi, 6, endpoint=False)]])
    mouth = np.stack([c + r * 0.35 * np.cos(np.linspace(0, 2 * np.pi, 20, endpoint=False)),
                      c + r * 0.5 + r * 0.12 * np.sin(np.linspace(0, 2 * np.pi, 20, endpoint=False))], -1)
    landmarks = np.concatenate([jaw, brows, nose, eyes, mouth]).astype(np.float32)
    assert landmarks.shape == (68, 2)
    box = (int(c - r * 1.05), int(c - r * 0.8), int(c + r * 1.05), int(c + r * 1.25))
    return image, landmarks, box


@pytest.mark.parametrize("seed", range(12))
def test_mask_stays_inside_the_face_box_and_the_change_follows_it(seed):
    image, landmarks, box = synthetic_face()
    out = sbi.self_blend(image, landmarks, box, np.random.default_rng(seed))
    assert out.image.shape == image.shape and out.image.dtype == np.uint8
    assert out.mask.shape == image.shape[:2] and out.mask.dtype == np.float32
    outside = sbi.box_mask(image.shape[:2], box) == 0
    assert out.mask[outside].max() == 0.0
    if out.changed == "source":  # the pasted copy was altered: nothing outside the (grown) box changes
        assert np.array_equal(out.image[outside], image[outside])
    assert out.mask.max() > 0.2 * out.blend_ratio  # something was blended
    changed = np.abs(out.image.astype(int) - image.astype(int)).sum(-1) > 0
    assert changed[out.mask > 0.5 * out.blend_ratio].mean() > 0.5
    assert out.label == 0  # FAKE


@pytest.mark.parametrize("seed", range(12))
def test_blend_ratio_is_one_of_the_allowed_and_bounds_the_mask(seed):
    image, landmarks, box = synthetic_face()
    out = sbi.self_blend(image, landmarks, box, np.random.default_rng(seed))
    assert out.blend_ratio in sbi.BLEND_RATIOS
    assert out.hull in sbi.HULLS
    assert 0.0 <= out.mask.min() and out.mask.max() <= out.blend_ratio + 1e-6


def test_draws_cover_every_ratio_and_hull():
    image, landmarks, box = synthetic_face(160)
    draws = [sbi.self_blend(image, landmarks, box, np.random.default_rng(s)) for s in range(60)]
    assert {d.blend_ratio for d in draws} == set(sbi.BLEND_RATIOS)
    assert {d.hull for d in draws} == set(sbi.HULLS)


def test_same_seed_same_result_other_seed_other_result():
    image, landmarks, box = synthetic_face()
    a = sbi.self_blend(image, landmarks, box, np.random.default_rng(7))
    b = sbi.self_blend(image, landmarks, box, np.random.default_rng(7))
    c = sbi.self_blend(image, landmarks, box, np.random.default_rng(8))
    assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask)
    assert not np.array_equal(a.image, c.image)
    d1 = sbi.degrade(a.image, np.random.default_rng(3))
    d2 = sbi.degrade(a.image, np.random.default_rng(3))
    assert np.array_equal(d1, d2)


def test_lower_hull_mask_is_below_the_eyes():
    image, landmarks, box = synthetic_face()
    mask = sbi.landmark_mask(image.shape[:2], landmarks, "lower")
    rows = np.nonzero(mask.any(1))[0]
    eyes_y = landmarks[sbi.EYES, 1].mean()
    assert rows.min() > eyes_y
    full = sbi.landmark_mask(image.shape[:2], landmarks, "full")
    extended = sbi.landmark_mask(image.shape[:2], landmarks, "extended")
    assert extended.sum() > full.sum() > mask.sum() > 0


def test_fixed_ratio_and_hull_are_honoured():
    image, landmarks, box = synthetic_face()
    out = sbi.self_blend(image, landmarks, box, np.random.default_rng(1), hull="inner", blend_ratio=0.5)
    assert out.hull == "inner" and out.blend_ratio == 0.5
    assert out.mask.max() <= 0.5 + 1e-6
    with pytest.raises(ValueError, match="unknown hull"):
        sbi.self_blend(image, landmarks, box, np.random.default_rng(1), hull="nose")
    with pytest.raises(ValueError, match="68, 2"):
        sbi.self_blend(image, landmarks[:10], box, np.random.default_rng(1))


@pytest.mark.parametrize("seed", range(8))
def test_degrade_keeps_shape_and_type(seed):
    image, _, _ = synthetic_face(97)  # odd side: the H.264 path pads to even and crops back
    out = sbi.degrade(image, np.random.default_rng(seed))
    assert out.shape == image.shape and out.dtype == np.uint8


def test_h264_roundtrip_is_lossy_but_close():
    image, _, _ = synthetic_face(128)
    out = sbi.h264_roundtrip(image, 30)
    assert out.shape == image.shape
    diff = np.abs(out.astype(int) - image.astype(int)).mean()
    assert 0.5 < diff < 20
