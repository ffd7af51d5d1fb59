"""Face finding before and after the aspect-preserving res10 input and the Haar confirmation (hardening issue,
item 5): face-found and false-box rates on folders of videos.

    python benchmarks/bench_faces.py ../shared/media ../shared/dev-eval/videos ../shared/train-fake/videos \
        --models-dir ../shared/models [--frames 8] [--json]

Per folder (recursively): videos, sampled frames (evenly spread), frames with a face, and boxes that lie off the
clip's main face track (the longest track linking the frames' boxes, faces.assign_tracks). Every clip in these
sets shows one speaker (dev-eval's facerec__short_hamilton_clip is a stage with small faces), so an off-track box
is a false detection or a bystander. "before": res10 fed a 300x300 squash of the frame, and the Haar cascade
unconfirmed whenever res10 found nothing (the code until this change); "after": the current HybridFaceDetector.

With --reuse (issue 17, item 3) it compares, on the frames the product samples (every 5th, at most 60), face
detection on every sampled frame with the box-reuse rule (tracking.FaceReuse): frames res10 ran on, the time
spent detecting and checking, frames where the rule's faces differ in number from full detection's, the IoU of
each reused box with the box full detection finds in that frame, and the found / off-track rates of both.
--grid tries several thresholds (for choosing them on the training clips; never on dev-eval).

    python benchmarks/bench_faces.py ../shared/train-real/clips --models-dir ../shared/models --reuse --grid
    python benchmarks/bench_faces.py ../shared/media ../shared/dev-eval/videos --models-dir ../shared/models --reuse
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import av
import cv2
import numpy as np

import itertools
import time

from deepfake_core.faces.detect import (DNN_CONFIDENCE, DNN_MEAN, MIN_FACE, DnnFaceDetector, FaceBox, HaarFaceDetector,
                                 HybridFaceDetector, assign_tracks)

VIDEO_SUFFIXES = {".mp4", ".mpg", ".mov", ".avi", ".webm", ".mkv"}


class SquashedRes10:
    """The res10 detector as it was: the whole frame squashed to 300x300; Haar whenever it finds nothing."""

    def __init__(self, dnn: DnnFaceDetector, haar: HaarFaceDetector):
        self.net, self.haar = dnn.net, haar

    def detect(self, frame, previous=None):
        h, w = frame.shape[:2]
        self.net.setInput(cv2.dnn.blobFromImage(cv2.resize(frame, (300, 300)), 1.0, (300, 300), DNN_MEAN))
        faces = []
        for det in self.net.forward()[0, 0]:
            if det[2] > DNN_CONFIDENCE:
                x1, y1, x2, y2 = (det[3:7] * np.array([w, h, w, h])).astype(int)
                x1, y1, x2, y2 = max(0, x1), max(0, y1), min(w, x2), min(h, y2)
                if x2 - x1 >= MIN_FACE and y2 - y1 >= MIN_FACE:
                    faces.append(FaceBox(int(x1), int(y1), int(x2), int(y2), float(det[2]), "dnn"))
        return faces or self.haar.detect(frame)


def sampled_frames(path: Path, count: int) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        total = sum(1 for _ in container.demux(video=0))  # packets: one per frame
    wanted = set(np.unique(np.linspace(0, max(total - 2, 0), min(count, max(total - 1, 1))).astype(int)).tolist())
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="bgr24") for i, f in enumerate(container.decode(video=0)) if i in wanted]


def measure(detector, clips: list[list[np.ndarray]]) -> dict:
    stats = Counter()
    for frames in clips:
        boxes, previous = [], []
        for frame in frames:
            previous = detector.detect(frame, previous=previous)[:4]
            boxes.append(previous)
        ids = assign_tracks(boxes)
        sizes = Counter(t for frame_ids in ids for t in frame_ids)
        main = sizes.most_common(1)[0][0] if sizes else None
        stats["videos"] += 1
        stats["videos_with_face"] += any(boxes)
        stats["frames"] += len(frames)
        stats["frames_with_face"] += sum(bool(b) for b in boxes)
        stats["boxes"] += sum(len(b) for b in boxes)
        stats["haar_boxes"] += sum(f.method == "haar" for b in boxes for f in b)
        stats["off_track_boxes"] += sum(t != main for frame_ids in ids for t in frame_ids)
    out = dict(stats)
    out["face_found_rate"] = round(stats["frames_with_face"] / max(stats["frames"], 1), 4)
    out["false_box_rate"] = round(stats["off_track_boxes"] / max(stats["boxes"], 1), 4)
    return out


def product_frames(path: Path) -> list[np.ndarray]:
    """The frames the product samples with the default settings (every 5th, at most 60)."""
    from deepfake_core.settings import AnalysisSettings
    from deepfake_core.media.video import probe, read_frames, sample_indices

    s = AnalysisSettings()
    info = probe(path, s)
    return [f.image for f in read_frames(path, sample_indices(info.frame_count, s.frame_skip, s.max_samples))]


def _kept(found: list[FaceBox]) -> list[FaceBox]:
    """The pipeline's filter with the default settings."""
    return [b for b in found if (b.confidence is None or b.confidence > DNN_CONFIDENCE)
            and min(b.width, b.height) >= MIN_FACE][:4]


def _track_stats(boxes: list[list[FaceBox]]) -> tuple[int, int]:
    ids = assign_tracks(boxes)
    sizes = Counter(t for frame_ids in ids for t in frame_ids)
    main = sizes.most_common(1)[0][0] if sizes else None
    return sum(bool(b) for b in boxes), sum(t != main for frame_ids in ids for t in frame_ids)


def measure_reuse(detector: HybridFaceDetector, files: list[Path], configs: list[dict]) -> dict:
    """Per config: full detection on every sampled frame against the reuse rule (see the module docstring)."""
    from deepfake_core.faces.detect import iou
    from deepfake_core.faces.tracking import FaceReuse

    stats = {i: Counter(reused_frames=0, count_differs=0) for i in range(len(configs))}
    ious = {i: [] for i in range(len(configs))}
    for path in files:
        try:
            frames = product_frames(path)
        except Exception as e:  # noqa: BLE001 - an unreadable clip is reported and skipped
            print(f"  {path.name}: {e}", file=sys.stderr)
            continue
        full, previous, detect_s = [], [], 0.0
        for frame in frames:
            started = time.perf_counter()
            previous = _kept(detector.detect(frame, previous=previous))
            detect_s += time.perf_counter() - started
            full.append(previous)
        found_full, off_full = _track_stats(full)
        for i, config in enumerate(configs):
            rule, got, check_s = FaceReuse(**config), [], 0.0
            for frame, boxes in zip(frames, full):
                started = time.perf_counter()
                reused = rule.boxes(frame)
                if reused is None:
                    rule.detected(frame, boxes)  # what detection finds in this frame: the cached full result
                check_s += time.perf_counter() - started
                if reused is not None:
                    st = stats[i]
                    st["reused_frames"] += 1
                    st["count_differs"] += len(reused) != len(boxes)
                    for box in reused:
                        ious[i].append(max((iou(box, b) for b in boxes), default=0.0))
                got.append(boxes if reused is None else reused)
            found, off = _track_stats(got)
            st = stats[i]
            st["videos"] += 1
            st["frames"] += len(frames)
            st["detections"] += rule.detections
            st["frames_with_face_full"] += found_full
            st["frames_with_face_reuse"] += found
            st["off_track_full"] += off_full
            st["off_track_reuse"] += off
            st["boxes_full"] += sum(len(b) for b in full)
            st["boxes_reuse"] += sum(len(b) for b in got)
            st["detect_ms_full"] += detect_s * 1000
            st["detect_ms_reuse"] += detect_s * 1000 * rule.detections / max(len(frames), 1) + check_s * 1000
            st["check_ms"] += check_s * 1000
    out = {}
    for i, config in enumerate(configs):
        st, v = stats[i], np.array(ious[i] or [1.0])
        out[json.dumps(config)] = {
            **{k: (round(x, 1) if isinstance(x, float) else x) for k, x in st.items()},
            "detected_fraction": round(st["detections"] / max(st["frames"], 1), 4),
            "reused_box_iou_min": round(float(v.min()), 4), "reused_box_iou_p1": round(float(np.percentile(v, 1)), 4),
            "reused_box_iou_mean": round(float(v.mean()), 4), "reused_boxes_iou_below_0.7": int((v < 0.7).sum()),
        }
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folders", nargs="+")
    p.add_argument("--models-dir", required=True)
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--json", action="store_true")
    p.add_argument("--reuse", action="store_true", help="full detection vs the box-reuse rule (product sampling)")
    p.add_argument("--grid", action="store_true", help="with --reuse: several thresholds (training clips only)")
    p.add_argument("--backend", choices=("cv2.dnn", "openvino"), default="cv2.dnn", help="what runs res10")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32", help="with --backend openvino")
    args = p.parse_args(argv)
    d = Path(args.models_dir)
    dnn = DnnFaceDetector(d / "deploy.prototxt", d / "res10_300x300_ssd_iter_140000_fp16.caffemodel")
    if args.backend == "openvino":
        dnn.use_openvino(args.precision)
    haar = HaarFaceDetector()
    detectors = {"before": SquashedRes10(dnn, haar), "after": HybridFaceDetector(dnn, haar)}
    results = {}
    if args.reuse:
        configs = [{}]
        if args.grid:
            configs = [dict(face_change=f, outside=o, max_reuse=m)
                       for f, o, m in itertools.product((3.0, 4.5, 6.0, 8.0, 10.0), (8.0, 12.0, 16.0), (3, 5))]
        for folder in args.folders:
            files = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES)
            results[folder] = measure_reuse(detectors["after"], files, configs)
            for config, r in results[folder].items():
                print(f"{folder} {config}: res10 on {r['detected_fraction']:.3f} of {r['frames']} frames, "
                      f"detection {r['detect_ms_full'] / 1000:.1f} s -> {r['detect_ms_reuse'] / 1000:.1f} s; faces "
                      f"{r['boxes_full']} -> {r['boxes_reuse']}, frames with a face {r['frames_with_face_full']} -> "
                      f"{r['frames_with_face_reuse']}, off-track {r['off_track_full']} -> {r['off_track_reuse']}; "
                      f"reused boxes IoU min {r['reused_box_iou_min']} p1 {r['reused_box_iou_p1']} mean "
                      f"{r['reused_box_iou_mean']}, count differs in {r['count_differs']}", file=sys.stderr)
        if args.json:
            print(json.dumps(results, indent=2))
        return 0
    for folder in args.folders:
        files = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES)
        clips = [sampled_frames(f, args.frames) for f in files]
        results[folder] = {name: measure(det, clips) for name, det in detectors.items()}
        print(f"{folder}: " + "; ".join(
            f"{name} found {r['face_found_rate']:.3f} of {r['frames']} frames, false boxes {r['false_box_rate']:.3f} "
            f"({r['off_track_boxes']} of {r['boxes']}, Haar {r['haar_boxes']})" for name, r in results[folder].items()),
            file=sys.stderr)
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
