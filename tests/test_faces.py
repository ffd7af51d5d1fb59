import cv2
import numpy as np
import pytest

from conftest import astronaut_bgr, face_files_dir
from deepfake_core.errors import CheckpointError
from deepfake_core.faces.detect import (MIN_FACE, DnnFaceDetector, FaceBox, HaarFaceDetector, HybridFaceDetector,
                                 assign_tracks, crop_face, iou)

# The astronaut's face in skimage.data.astronaut() (x1, y1, x2, y2), checked by eye.
TRUE_FACE = FaceBox(175, 55, 275, 175, None, "truth")


def dnn():
    d = face_files_dir()
    return DnnFaceDetector(d / "deploy.prototxt", d / "res10_300x300_ssd_iter_140000_fp16.caffemodel")


def test_res10_finds_the_astronaut():
    faces = dnn().detect(astronaut_bgr())
    assert len(faces) == 1
    face = faces[0]
    assert face.method == "dnn" and face.confidence > 0.9
    assert iou(face, TRUE_FACE) > 0.6


def test_haar_finds_the_astronaut_without_the_dnn():
    hybrid = HybridFaceDetector(None, HaarFaceDetector())
    faces = hybrid.detect(astronaut_bgr())
    assert faces and all(f.method == "haar" for f in faces)
    assert max(iou(f, TRUE_FACE) for f in faces) > 0.6


def test_every_face_is_returned():
    img = astronaut_bgr()
    two = np.concatenate([img, img[:, ::-1]], axis=1)
    faces = dnn().detect(two)
    assert len(faces) == 2
    assert {f.x1 < 512 for f in faces} == {True, False}


def test_no_face_in_a_blank_frame():
    blank = np.full((480, 640, 3), 128, np.uint8)
    assert HybridFaceDetector(dnn(), HaarFaceDetector()).detect(blank) == []


def test_small_faces_are_ignored():
    small = astronaut_bgr()[::4, ::4]  # face about 25 px
    assert dnn().detect(np.ascontiguousarray(small)) == []


def test_crop_is_the_raw_box_and_margin_is_clipped():
    img = np.arange(100 * 100 * 3, dtype=np.uint8).reshape(100, 100, 3)
    box = FaceBox(10, 20, 50, 60, 0.9, "dnn")
    assert np.array_equal(crop_face(img, box), img[20:60, 10:50])
    grown = crop_face(img, box, margin=0.5)  # 20 px each side, clipped at the top-left edge
    assert grown.shape == (80, 70, 3)


def test_tracks_follow_overlapping_boxes():
    a = [FaceBox(0, 0, 100, 100, 1, "dnn"), FaceBox(300, 0, 400, 100, 1, "dnn")]
    b = [FaceBox(310, 5, 410, 105, 1, "dnn"), FaceBox(5, 5, 105, 105, 1, "dnn")]
    c = [FaceBox(600, 0, 700, 100, 1, "dnn")]
    assert assign_tracks([a, b, c]) == [[0, 1], [1, 0], [2]]


def test_haar_on_a_downscaled_copy_finds_the_same_face_in_full_frame_coordinates():
    """A 1080p frame: the cascade runs on a copy at most HAAR_MAX_SIDE wide; boxes come back in full-frame
    pixels, on the face, at least MIN_FACE on each side."""
    frame = np.full((1080, 1920, 3), 90, np.uint8)
    face = cv2.resize(astronaut_bgr(), (1024, 1024))  # the face becomes about 200 px
    frame[28:1052, 700:1724] = face
    truth = FaceBox(700 + 350, 28 + 110, 700 + 550, 28 + 350, None, "truth")
    full = HaarFaceDetector(max_side=None).detect(frame)
    small = HaarFaceDetector().detect(frame)
    assert max(iou(f, truth) for f in full) > 0.5
    assert max(iou(f, truth) for f in small) > 0.5
    best_full = max(full, key=lambda f: iou(f, truth))
    best_small = max(small, key=lambda f: iou(f, truth))
    assert iou(best_full, best_small) > 0.8
    assert all(f.width >= MIN_FACE and f.height >= MIN_FACE for f in small)
    assert all(0 <= f.x1 < f.x2 <= 1920 and 0 <= f.y1 < f.y2 <= 1080 for f in small)


def test_opencv_5_gets_a_clear_message(monkeypatch):
    """OpenCV 5 has neither the Haar cascades nor the Caffe importer: the error names the package to install."""
    from deepfake_core.faces import detect as faces

    monkeypatch.delattr(faces.cv2, "CascadeClassifier")
    monkeypatch.delattr(faces.cv2.dnn, "readNetFromCaffe")
    monkeypatch.setattr(faces.cv2, "__version__", "5.0.0")
    with pytest.raises(CheckpointError, match=r"OpenCV 5\.0\.0 has no Haar cascades.*opencv-python-headless>=4\.8,<5"):
        HaarFaceDetector()
    with pytest.raises(CheckpointError, match="Caffe importer"):
        DnnFaceDetector("deploy.prototxt", "res10.caffemodel")


# -- aspect-preserving res10 input, Haar confirmation, stray tracks (hardening issue, item 5) ------------------
def _paste(canvas_hw, face_side, at=(0.5, 0.5)):
    """The astronaut scaled so its face is about `face_side` px wide, pasted with the face at `at` (fractions of
    the canvas) on a grey canvas; (image, the face's box)."""
    img = astronaut_bgr()
    s = face_side / TRUE_FACE.width
    small = cv2.resize(img, (round(512 * s), round(512 * s)), interpolation=cv2.INTER_AREA)
    h, w = canvas_hw
    canvas = np.full((h, w, 3), 100, np.uint8)
    cx, cy = (TRUE_FACE.x1 + TRUE_FACE.x2) / 2 * s, (TRUE_FACE.y1 + TRUE_FACE.y2) / 2 * s  # the face centred
    y0, x0 = int(at[1] * h - cy), int(at[0] * w - cx)
    ys, xs = max(0, y0), max(0, x0)
    part = small[ys - y0: ys - y0 + h - ys, xs - x0: xs - x0 + w - xs]
    canvas[ys:ys + part.shape[0], xs:xs + part.shape[1]] = part
    box = FaceBox(*(round(v) for v in (x0 + TRUE_FACE.x1 * s, y0 + TRUE_FACE.y1 * s,
                                       x0 + TRUE_FACE.x2 * s, y0 + TRUE_FACE.y2 * s)), None, "truth")
    return canvas, box


@pytest.mark.parametrize("canvas, face", [((1080, 1920), 100), ((1080, 1920), 400), ((720, 1280), 90),
                                          ((2160, 3840), 160), ((300, 533), 150)])
def test_res10_finds_faces_in_wide_frames(canvas, face):
    image, truth = _paste(canvas, face)
    faces = dnn().detect(image)
    assert faces and faces[0].confidence > 0.8
    assert iou(faces[0], truth) > 0.4


def test_res10_scales_keep_the_aspect_and_search_large_frames_finely():
    d = dnn()
    assert d.scales(300, 533) == [1.0]
    coarse, fine = d.scales(1080, 1920)
    assert coarse == pytest.approx(300 / 1080) and fine == pytest.approx(32 / MIN_FACE)
    assert max(d.scales(2160, 3840)) * 3840 <= 1280 + 1e-6


class _FixedHaar:
    """A stand-in cascade that always 'finds' one box (a sleeve, a rug...)."""
    method = "haar"

    def __init__(self, box):
        self.box = box

    def detect(self, frame_bgr):
        return [self.box]


def test_haar_box_without_res10_support_is_dropped():
    blank = np.full((480, 640, 3), 128, np.uint8)
    phantom = FaceBox(100, 100, 260, 260, None, "haar")
    hybrid = HybridFaceDetector(dnn(), _FixedHaar(phantom))
    assert hybrid.detect(blank) == []
    # the same box where the previous sampled frame had a face (a track) is kept
    assert hybrid.detect(blank, previous=[FaceBox(110, 105, 265, 270, 0.9, "dnn")]) == [phantom]
    # a box covering (nearly) the whole frame is never a face
    huge = FaceBox(0, 0, 620, 470, None, "haar")
    assert HybridFaceDetector(dnn(), _FixedHaar(huge)).detect(blank, previous=[huge]) == []
    # without res10 installed the cascade is all there is, unconfirmed
    assert HybridFaceDetector(None, _FixedHaar(phantom)).detect(blank) == [phantom]
