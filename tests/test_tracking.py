"""The face-box reuse rule (tracking.FaceReuse): on generated video it finds the same faces and tracks as
detecting on every frame, and it detects again on a scene cut, a moving face or a new face."""

import numpy as np
import pytest

from conftest import astronaut_bgr, face_files_dir, write_video
from deepfake_core.errors import SettingsError
from deepfake_core.faces.detect import DnnFaceDetector, FaceBox, HaarFaceDetector, HybridFaceDetector, assign_tracks, iou
from deepfake_core.settings import AnalysisSettings
from deepfake_core.faces.tracking import FaceReuse

SIZE = (720, 1280)  # h, w


def hybrid() -> HybridFaceDetector:
    d = face_files_dir()
    return HybridFaceDetector(DnnFaceDetector(d / "deploy.prototxt", d / "res10_300x300_ssd_iter_140000_fp16.caffemodel"),
                              HaarFaceDetector())


def scene(x: int, y: int, background=(60, 120, 90), face=None, seed: int = 0) -> np.ndarray:
    """A frame with the astronaut photo at (x, y) and a little sensor noise (as decoded video has)."""
    face = astronaut_bgr() if face is None else face
    frame = np.full((*SIZE, 3), background, np.uint8)
    fh, fw = face.shape[:2]
    frame[y:y + fh, x:x + fw] = face
    noise = np.random.default_rng(seed).normal(0, 1.5, frame.shape)
    return np.clip(frame + noise, 0, 255).astype(np.uint8)


def clip() -> list[np.ndarray]:
    """Still (6 frames), moving right 40 px a frame (6), a scene cut to another place and background, still (6)."""
    frames = [scene(300, 20, seed=i) for i in range(6)]
    frames += [scene(300 + 40 * i, 20, seed=10 + i) for i in range(1, 7)]
    frames += [scene(40, 150, background=(150, 60, 40), seed=20 + i) for i in range(6)]
    return frames


def run_rule(frames, detector, rule):
    got, detected = [], []
    for frame in frames:
        boxes = rule.boxes(frame)
        detected.append(boxes is None)
        if boxes is None:
            boxes = detector.detect(frame)
            rule.detected(frame, boxes)
        got.append(boxes)
    return got, detected


def test_reuse_finds_the_same_faces_and_tracks_as_full_detection():
    detector, frames = hybrid(), clip()
    full = [detector.detect(f) for f in frames]
    assert all(len(b) == 1 for b in full)  # the generated clip shows one face in every frame
    got, detected = run_rule(frames, detector, FaceReuse())
    assert [len(b) for b in got] == [len(b) for b in full]
    assert all(iou(a, b) >= 0.9 for g, f in zip(got, full) for a, b in zip(g, f))
    assert assign_tracks(got) == assign_tracks(full)
    assert not all(detected)  # the still frames reused the boxes...
    assert all(detected[6:13])  # ...the moving face and the scene cut were detected again
    assert detected[0] and detected[12]


def test_a_scene_cut_forces_detection():
    rule = FaceReuse()
    box = FaceBox(475, 75, 575, 195, 0.99, "dnn")
    rule.detected(scene(300, 20), [box])
    assert rule.boxes(scene(300, 20, seed=1)) == [box]  # the same scene: reused
    assert rule.boxes(scene(300, 20, background=(200, 200, 200), seed=2)) is None


def test_a_new_face_away_from_the_boxes_forces_detection():
    rule = FaceReuse()
    box = FaceBox(475, 75, 575, 195, 0.99, "dnn")
    first = scene(300, 20)
    rule.detected(first, [box])
    second = first.copy()
    second[550:670, 1100:1200] = astronaut_bgr()[55:175, 175:275]  # another face enters at the right
    assert rule.boxes(second) is None


def test_detection_runs_at_least_every_few_frames_and_never_after_no_face_or_haar():
    frame = scene(300, 20)
    rule = FaceReuse(max_reuse=2)
    rule.detected(frame, [FaceBox(475, 75, 575, 195, 0.99, "dnn")])
    assert rule.boxes(frame) is not None and rule.boxes(frame) is not None
    assert rule.boxes(frame) is None  # 2 reuses in a row at most
    rule.detected(frame, [])
    assert rule.boxes(frame) is None  # no face: always detect (a face may appear)
    rule.detected(frame, [FaceBox(475, 75, 575, 195, None, "haar")])
    assert rule.boxes(frame) is None
    rule.detected(frame, [FaceBox(475, 75, 575, 195, 0.99, "dnn")])
    assert rule.boxes(frame[:500]) is None  # another frame size


def test_face_reuse_setting_is_validated():
    assert AnalysisSettings().face_reuse is True
    with pytest.raises(SettingsError, match="face_reuse"):
        AnalysisSettings(face_reuse="yes")


def test_analysis_with_and_without_reuse_finds_the_same_faces(lite_detector, tmp_path):
    frames = [scene(300, 20, seed=i) for i in range(40)] + [scene(40, 150, (150, 60, 40), seed=50 + i)
                                                               for i in range(20)]
    video = write_video(tmp_path / "still.mp4", frames)
    on = lite_detector.analyze(video, AnalysisSettings())
    off = lite_detector.analyze(video, AnalysisSettings(face_reuse=False))
    assert on.counts["faces"] == off.counts["faces"] == on.counts["frames_sampled"] == 12
    assert on.counts["tracks"] == off.counts["tracks"] == 2
    for a, b in zip(on.timeline, off.timeline):
        assert a.frame_index == b.frame_index
        assert iou(FaceBox(*a.box, None, ""), FaceBox(*b.box, None, "")) >= 0.9
        assert abs(a.video_p_fake - b.video_p_fake) < 0.05
