"""Face finding before and after the aspect-preserving res10 input and the Haar confirmation (hardening issue,
item 5): face-found and false-box rates on folders of videos.

    python benchmarks/bench_faces.py ../shared/media ../shared/dev-eval/videos ../shared/train-fake/videos \
        --models-dir ../shared/models [--frames 8] [--json]

Per folder (recursively): videos, sampled frames (evenly spread), frames with a face, and boxes that lie off the
clip's main face track (the longest track linking the frames' boxes, faces.assign_tracks). Every clip in these
sets shows one speaker (dev-eval's facerec__short_hamilton_clip is a stage with small faces), so an off-track box
is a false detection or a bystander. "before": res10 fed a 300x300 squash of the frame, and the Haar cascade
unconfirmed whenever res10 found nothing (the code until this change); "after": the current HybridFaceDetector.
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

from deepfake_core.faces import (DNN_CONFIDENCE, DNN_MEAN, MIN_FACE, DnnFaceDetector, FaceBox, HaarFaceDetector,
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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folders", nargs="+")
    p.add_argument("--models-dir", required=True)
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    d = Path(args.models_dir)
    dnn = DnnFaceDetector(d / "deploy.prototxt", d / "res10_300x300_ssd_iter_140000_fp16.caffemodel")
    haar = HaarFaceDetector()
    detectors = {"before": SquashedRes10(dnn, haar), "after": HybridFaceDetector(dnn, haar)}
    results = {}
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
