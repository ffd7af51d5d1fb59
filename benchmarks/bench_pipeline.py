#!/usr/bin/env python
"""Time the product's analysis, stage by stage, against a reference path that does what the original did.

    python benchmarks/bench_pipeline.py VIDEO... [--device auto|cpu|cuda] [--precision auto|fp32|bf16]
                                        [--repeat N] [--models-dir DIR] [--runtimes torch,openvino] [--json]
    python benchmarks/bench_pipeline.py --generate 60s            # + a generated 60 s 1080p clip
    python benchmarks/bench_pipeline.py --generate 10min --no-reference --repeat 1   # + peak RSS
    python benchmarks/bench_pipeline.py VIDEO --models original,builtin --runtimes torch,openvino \
                                        --face-reuse off,on --no-reference     # every combination side by side

For each video it runs `Detector.analyze` with the default settings (frame skip 5, at most 60 samples, both
models, adaptive fusion) `--repeat` times and prints the median of each stage, the sampled frames per second
and the realtime factor (seconds of video analysed / wall seconds). In the same run, on the same video and
the same weights, it times the reference path:

- decode every frame up to the last sampled one and convert each to a BGR image (as cv2.VideoCapture.read),
- detect faces on the full frame (res10 on a 300x300 resize, the Haar cascade on the full frame as fallback),
- one batch-1 fp32 pass of the video model per sampled face, and one batch-1 fp32 pass of the audio model per
  face (on the audio window that face is paired with), in the default memory format under torch.no_grad,

With `--runtimes torch,openvino` the product runs once per runtime, the runs interleaved (round 1: torch, then
openvino; round 2: ...), so a change in the machine's load hits both alike; it prints each one's median and the
ratio first / other, each runtime's model load and warm-up time (and, for OpenVINO, the first load that converts
the networks when no converted copy is cached), and the largest per-face difference between the runtimes.

With `--models original,builtin` each runtime runs both the original Xception pair (random weights, or
--models-dir) and the built-in video model (no original checkpoints: a folder holding only the res10 files, so
the built-in model judges the faces), and with `--face-reuse off,on` each of those runs with and without the
face-box reuse (settings.face_reuse). Every combination is one entry of "runtimes" ("original:torch:reuse-off",
...), the runs of all of them interleaved; "ratios" divides the first entry's median total (the original pair,
the first runtime, the first reuse setting: today's product) by each other's, and each entry has its realtime
factor (× real time).

It prints reference / product, plus the largest difference between the two paths' per-face probabilities
(video P(fake) and fused P(fake)): what the product's precision and batching cost in accuracy.

Without --models-dir, random-initialised checkpoints in the original layouts are written to a temporary folder
(speed does not depend on weight values) next to the res10 face-detector files from --face-models.
Generated clips are cached in --cache-dir (default: the system temp folder), never in the repository.
`peak_rss_mb` is this process's peak resident memory (models, the product runs and the reference runs).
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import os
import platform
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from deepfake_core.process import configure_process  # noqa: E402

configure_process()  # first: the OpenMP wait policy before torch loads (process.py)
from deepfake_core import AnalysisSettings, Detector  # noqa: E402

import av  # noqa: E402
import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from deepfake_core.media.audio import mel_windows, read_audio
from deepfake_core.analysis.context import STAGES, StageTimer
from deepfake_core.faces.detect import DnnFaceDetector, HaarFaceDetector, HybridFaceDetector, crop_face
from deepfake_core.analysis.fusion import fuse
from deepfake_core.models.networks import build_audio_model, build_video_model, face_tensor
from deepfake_core.analysis.timeline import match_windows
from deepfake_core.train.demo import encode_mono
from deepfake_core.media.video import apply_rotation, probe, sample_indices

ROOT = Path(__file__).resolve().parents[1]
FACE_FILES = ("deploy.prototxt", "res10_300x300_ssd_iter_140000_fp16.caffemodel")
GENERATED = {"60s": 60, "10min": 600}  # name -> seconds
SEGMENT_S = 12  # seconds encoded once, then repeated
FLAGS_OF_INTEREST = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile", "amx_int8")


# -- machine ------------------------------------------------------------------------------------------------
def machine_info(device: torch.device) -> dict:
    model, flags = platform.processor() or "unknown", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model in ("unknown", "x86_64", ""):
                model = line.split(":", 1)[1].strip()
            elif line.startswith(("flags", "Features")) and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    info = {
        "cpu": model, "cores": os.cpu_count(), "flags": [f for f in FLAGS_OF_INTEREST if f in flags],
        "torch": torch.__version__, "torch_threads": torch.get_num_threads(), "opencv": cv2.__version__,
        "opencv_threads": cv2.getNumThreads(), "python": platform.python_version(), "load_average": os.getloadavg(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def peak_rss_mb() -> float:
    # ru_maxrss is KiB on Linux, bytes on macOS
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(rss / (2**20 if sys.platform == "darwin" else 2**10), 1)


# -- inputs -------------------------------------------------------------------------------------------------
def write_random_models(directory: Path, face_models: Path, seed: int = 0) -> Path:
    """Random-initialised checkpoints saved as the original project saved them, plus the res10 files."""
    torch.manual_seed(seed)
    video, audio = build_video_model().eval(), build_audio_model().eval()
    for m in [*video.modules(), *audio.modules()]:  # BatchNorm statistics as after training, not 0 / 1
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    torch.save({"epoch": 7, "model_state_dict": video.state_dict()}, directory / "epoch_007.pt")
    torch.save({"epoch": 12, "model_state_dict": audio.state_dict(), "val_loss": 0.0, "val_acc": 0.0},
               directory / "best_audio_xception.pth")
    for name in FACE_FILES:
        src = face_models / name
        if not src.is_file():
            raise SystemExit(f"res10 face-detector file {src} not found (use --face-models DIR)")
        try:
            (directory / name).symlink_to(src.resolve())
        except OSError:
            shutil.copy(src, directory / name)
    return directory


def generate_clip(seconds: int, cache_dir: Path, size=(1080, 1920), fps: int = 30) -> Path:
    """A `seconds`-long 1080p H.264/AAC clip: a 12 s segment (a face moving across a textured background,
    a tone with noise; keyframes as x264 places them, every 250 frames) encoded once and repeated by stream
    copy. 12 s, so that the samples of a long clip do not all fall on a segment's first frame. Cached by name
    (delete the files in `cache_dir` after changing this function)."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / f"generated_{size[0]}p_{seconds}s.mp4"
    if path.is_file() and path.stat().st_size > 0:
        return path
    segment = cache_dir / f"generated_{size[0]}p_segment.mp4"
    if not (segment.is_file() and segment.stat().st_size > 0):
        _encode_segment(segment, SEGMENT_S, size, fps)
    tmp = path.with_suffix(".part.mp4")
    with av.open(str(segment)) as src, av.open(str(tmp), "w") as out:
        streams = {s.index: out.add_stream_from_template(s) for s in src.streams if s.type in ("video", "audio")}
        length = {i: None for i in streams}
        packets = {i: [] for i in streams}
        for packet in src.demux(*[src.streams[i] for i in streams]):
            if packet.dts is not None:
                packets[packet.stream.index].append(packet)
        for i, ps in packets.items():  # the segment's length in each stream's time base
            length[i] = max(p.pts + p.duration for p in ps) - min(p.pts for p in ps)
        repeats = int(np.ceil(seconds / SEGMENT_S))
        for r in range(repeats):
            for i, ps in packets.items():
                for p in ps:
                    p.stream = streams[i]
                    pts, dts = p.pts, p.dts
                    p.pts, p.dts = pts + length[i] * r, dts + length[i] * r
                    out.mux(p)
                    p.pts, p.dts = pts, dts
    tmp.rename(path)
    return path


def _encode_segment(path: Path, seconds: int, size, fps: int) -> None:
    import skimage.data

    h, w = size
    # a face about 210 x 250 px at 1080p, as in a talking-head clip (res10 sees it about 35 px wide)
    side = int(h * 0.96)
    face = cv2.resize(cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR), (side, side))
    rng = np.random.default_rng(0)
    background = cv2.resize(rng.integers(40, 200, (h // 16, w // 16, 3), dtype=np.uint8), (w, h))
    n = seconds * fps
    rate = 16_000
    t = np.arange(seconds * rate) / rate
    audio = (0.3 * np.sin(2 * np.pi * 220 * t) + rng.normal(0, 0.02, t.shape)).astype(np.float32)
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=fps)
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        vs.options = {"preset": "veryfast", "crf": "23"}
        a_s = out.add_stream("aac", rate=rate)
        a_s.layout = "mono"
        fh, fw = face.shape[:2]
        for i in range(n):
            frame = background.copy()
            x = int((w - fw) * (0.5 + 0.5 * np.sin(2 * np.pi * i / n)))
            y = (h - fh) // 2 + int((h - fh) // 2 * np.sin(2 * np.pi * i / fps))
            frame[y:y + fh, x:x + fw] = face
            for packet in vs.encode(av.VideoFrame.from_ndarray(frame, format="bgr24")):
                out.mux(packet)
        for packet in vs.encode():
            out.mux(packet)
        encode_mono(out, a_s, audio, rate)


# -- the reference path ---------------------------------------------------------------------------------------
class Reference:
    """What the original did, on the detector's weights: fp32, batch 1, default memory format, full frames."""

    def __init__(self, detector: Detector):
        self.device = detector.device
        self.video = _plain_copy(detector.video.module, self.device)
        self.audio = _plain_copy(detector.audio.module, self.device) if detector.audio is not None else None
        self.spec = detector.video.spec
        dnn = DnnFaceDetector(*detector.face_files) if len(detector.face_files) == 2 else None  # prototxt, model
        self.faces = HybridFaceDetector(dnn, HaarFaceDetector(max_side=None))  # Haar on the full frame

    def analyze(self, path: Path, s: AnalysisSettings) -> tuple[dict, list[dict]]:
        timer, started = StageTimer(), time.perf_counter()
        with timer("probe_decode"):
            info = probe(path, s)
        images, spans = torch.zeros((0, 3, 299, 299)), []
        if self.audio is not None:
            with timer("audio_decode_mel"):
                samples = read_audio(path)
                if samples is not None:
                    images, spans = mel_windows(samples, window_s=s.audio_window_s, overlap=s.audio_overlap)
        indices = sample_indices(info.frame_count, s.frame_skip, s.max_samples)
        wanted, last = set(indices), max(indices)
        rows, v_logits, a_logits = [], [], []
        with av.open(str(path)) as container, torch.no_grad():
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            start = stream.start_time or 0
            frames = container.decode(stream)
            for position in range(last + 1):
                with timer("probe_decode"):
                    frame = next(frames, None)
                    if frame is None:
                        break
                    image = frame.to_ndarray(format="bgr24")  # every frame converted, as VideoCapture.read
                    image = apply_rotation(image, int(round(-float(frame.rotation or 0))) % 360)
                if position not in wanted:
                    continue
                t = max(0.0, float((frame.pts - start) * stream.time_base))
                with timer("face_detection"):
                    boxes = self.faces.detect(image)[: s.max_faces_per_frame]
                for box in boxes:
                    with timer("crop_preprocess"):
                        crop = crop_face(image, box, s.face_margin)
                        x = face_tensor(cv2.cvtColor(crop, cv2.COLOR_BGR2RGB), self.spec)[None].to(self.device)
                    with timer("video_model"):
                        v_logits.append(self.video(x).float().cpu().numpy()[0])
                    if spans:
                        j = int(match_windows([t], spans)[0])
                        with timer("audio_model"):
                            a_logits.append(self.audio(images[j:j + 1].to(self.device)).float().cpu().numpy()[0])
                    rows.append({"frame_index": position, "box": [box.x1, box.y1, box.x2, box.y2]})
        with timer("fusion_report"):
            if rows:
                fused = fuse(np.array(v_logits), np.array(a_logits) if a_logits else None, s.fusion,
                             s.audio_temperature, s.video_temperature, s.adaptive_tau, s.min_weight)
                for i, row in enumerate(rows):
                    row["video_p_fake"] = float(fused.video_probs[i, 0])
                    row["fused_p_fake"] = float(fused.probs[i, 0])
        timings = {stage: timer.seconds.get(stage, 0.0) for stage in STAGES}
        timings["total"] = time.perf_counter() - started
        return timings, rows


def _plain_copy(module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    return copy.deepcopy(module).float().to(device).to(memory_format=torch.contiguous_format).eval()


# -- measuring --------------------------------------------------------------------------------------------------
def median_timings(runs: list[dict]) -> dict:
    return {k: round(statistics.median(r[k] for r in runs), 4) for k in (*STAGES, "total")}


def prob_diff(product_rows, reference_rows) -> dict:
    """Largest |product - reference| per-face probability, faces matched by frame and box."""
    ref = {(r["frame_index"], tuple(r["box"])): r for r in reference_rows if "fused_p_fake" in r}
    video, fused, matched = [], [], 0
    for row in product_rows:
        r = ref.get((row.frame_index, tuple(row.box)))
        if r is None:
            continue
        matched += 1
        video.append(abs(row.video_p_fake - r["video_p_fake"]))
        fused.append(abs(row.fused_p_fake - r["fused_p_fake"]))
    return {
        "max_abs_prob_diff": round(max(video + fused), 6) if matched else None,
        "max_abs_video_prob_diff": round(max(video), 6) if matched else None,
        "max_abs_fused_prob_diff": round(max(fused), 6) if matched else None,
        "faces_matched": matched, "faces_product": len(product_rows), "faces_reference": len(reference_rows),
    }


def bench_video(path: Path, variants: dict[str, tuple[Detector, AnalysisSettings]], reference: Reference | None,
                repeat: int, reference_repeat: int) -> dict:
    """The first variant's numbers at the top level (as before); with several (runtimes, models, face reuse),
    each one's under "runtimes", their runs interleaved (so a change in the machine's load hits them alike), and
    "ratios": the first one's median total / each other's (> 1: the other is faster). "runtime_prob_diff":
    each variant's per-face P(fake) against the first variant with the same model."""
    runs: dict[str, list[dict]] = {name: [] for name in variants}
    reports: dict = {}
    for _ in range(repeat):
        for name, (detector, settings) in variants.items():
            reports[name] = detector.analyze(path, settings)
            runs[name].append(reports[name].timings)
    per_runtime = {name: _product_result(reports[name], runs[name]) for name in variants}
    first = next(iter(variants))
    settings = variants[first][1]
    result = {"video": str(path), **per_runtime[first], "repeat": repeat}
    if len(variants) > 1:
        result["runtimes"] = per_runtime
        result["ratios"] = {f"{first}/{name}": round(per_runtime[first]["total_s"] / r["total_s"], 3)
                            for name, r in per_runtime.items() if name != first}
        firsts: dict = {}  # model file -> the first variant that ran it
        for name, (detector, _) in variants.items():
            firsts.setdefault(detector.video.sha256, name)
        result["runtime_prob_diff"] = {
            name: {"against": firsts[d.video.sha256], **prob_diff(reports[name].timeline,
                                                                  _rows(reports[firsts[d.video.sha256]].timeline))}
            for name, (d, _) in variants.items() if name != firsts[d.video.sha256]}
    report = reports[first]
    if reference is not None:
        ref_runs, ref_rows = [], []
        for _ in range(reference_repeat):
            timings, ref_rows = reference.analyze(path, settings)
            ref_runs.append(timings)
        ref_stages = median_timings(ref_runs)
        result["reference"] = {"repeat": reference_repeat, "stages": ref_stages, "total_s": ref_stages["total"],
                               "total_s_runs": [round(r["total"], 4) for r in ref_runs]}
        result["speedup_vs_reference"] = round(ref_stages["total"] / result["total_s"], 2)
        result.update(prob_diff(report.timeline, ref_rows))
        for r in per_runtime.values():
            r["speedup_vs_reference"] = round(ref_stages["total"] / r["total_s"], 2)
    else:
        result["speedup_vs_reference"] = None
        result["max_abs_prob_diff"] = None
    result["peak_rss_mb"] = peak_rss_mb()
    return result


def _product_result(report, runs: list[dict]) -> dict:
    stages = median_timings(runs)
    duration = float(report.media.get("duration_s") or 0.0)
    sampled = int(report.counts.get("frames_sampled", 0))
    return {
        "duration_s": round(duration, 3),
        "resolution": f"{report.media.get('width')}x{report.media.get('height')}",
        "verdict": report.verdict, "frames_sampled": sampled, "frames_decoded": report.counts.get("frames_decoded"),
        "faces": report.counts.get("faces"), "audio_windows": report.counts.get("audio_windows"),
        "runtime": report.models.get("runtime"), "precision": report.models.get("precision"),
        "video_model": (report.models.get("video") or {}).get("name"),
        "face_reuse": report.settings.get("face_reuse"),
        "stages": stages, "total_s": stages["total"], "total_s_runs": [round(r["total"], 4) for r in runs],
        "sampled_fps": round(sampled / stages["total"], 2) if stages["total"] else None,
        "realtime_factor": round(duration / stages["total"], 3) if stages["total"] else None,
    }


def _rows(timeline) -> list[dict]:
    return [{"frame_index": r.frame_index, "box": r.box, "video_p_fake": r.video_p_fake,
             "fused_p_fake": r.fused_p_fake} for r in timeline]


def model_throughput(detector: Detector, batches: list[int], iterations: int = 10) -> dict:
    """Images per second through each network alone, as the detector runs it (its runner: runtime, precision,
    memory format), inputs already in host memory (on CUDA the copy to the GPU is timed too, as in an analysis):
    {modality: {batch: images/s}}, the median of `iterations` timed passes after 3 untimed ones."""
    out = {}
    for modality, runner in detector.runners.items():
        size = (detector.video if modality == "video" else detector.audio).spec.input_size
        out[modality] = {}
        for batch in batches:
            x = torch.randn(batch, 3, size, size)
            times = []
            for i in range(3 + iterations):
                if detector.device.type == "cuda":
                    torch.cuda.synchronize()
                started = time.perf_counter()
                runner(x, batch)
                if detector.device.type == "cuda":
                    torch.cuda.synchronize()
                if i >= 3:
                    times.append(time.perf_counter() - started)
            out[modality][batch] = round(batch / statistics.median(times), 1)
    return out


def load_detectors(models_dirs: dict[str, Path], runtimes: list[str], args) -> tuple[dict[str, Detector], dict]:
    """{name: Detector} for each models folder ({"original": ..., "builtin": ...}) and runtime (named by the
    runtime alone when there is one folder, else "original:torch", ...), and how long each took to load: `load_s`
    (checkpoints, res10, inference copies, OpenVINO compilation), `warmup_s` (one pass of every stage). An
    OpenVINO load that had to convert the networks first (no cached conversion) is timed too (`first_load_s`),
    then loaded again from the cache."""
    detectors, loads = {}, {}
    for (model, models_dir), runtime in itertools.product(models_dirs.items(), runtimes):
        kwargs = {"compile": True} if args.compile else {}
        if model == "builtin":
            kwargs["video_model"] = "builtin"
        name = f"{model}:{runtime}" if len(models_dirs) > 1 else runtime
        info: dict = {}
        for attempt in range(2):
            started = time.perf_counter()
            detector = Detector.load(models_dir, device=args.device, precision=args.precision, runtime=runtime,
                                     warmup=False, **kwargs)
            loaded = time.perf_counter()
            detector.warm_up()
            info.update(load_s=round(loaded - started, 3), warmup_s=round(time.perf_counter() - loaded, 3),
                        runtime=detector.runtime, optimizations=detector.optimizations)
            converted = any("openvino model: converted" in step for step in detector.optimizations.get("video", []))
            if not converted:
                break
            info["first_load_s"] = info["load_s"]  # with the conversion; loaded again from the cache
        info["video_model"] = detector.video.metadata.get("name", "original")
        detectors[name], loads[name] = detector, info
    return detectors, loads


def face_models_only(directory: Path, face_models: Path) -> Path:
    """`directory` holding only the res10 files: Detector.load picks the built-in video model there."""
    for name in FACE_FILES:
        try:
            (directory / name).symlink_to((face_models / name).resolve())
        except OSError:
            shutil.copy(face_models / name, directory / name)
    return directory


def print_human(result: dict) -> None:
    print(f"\n{result['video']}  ({result['resolution']}, {result['duration_s']:.1f} s, "
          f"{result['frames_sampled']} frames sampled, {result['faces']} faces, "
          f"{result['audio_windows']} audio windows)")
    ref = result.get("reference")
    print(f"  {'stage':18s} {'product':>9s}" + (f" {'reference':>10s}" if ref else ""))
    for stage in (*STAGES, "total"):
        line = f"  {stage:18s} {result['stages'][stage]:8.3f}s"
        if ref:
            line += f" {ref['stages'][stage]:9.3f}s"
        print(line)
    print(f"  sampled frames/s {result['sampled_fps']}, realtime factor {result['realtime_factor']} "
          f"(median of {result['repeat']})")
    if ref:
        print(f"  speedup vs reference {result['speedup_vs_reference']}x (reference median of {ref['repeat']}), "
              f"max |P(fake) product - reference| {result['max_abs_prob_diff']} over {result['faces_matched']} faces")
    for name, r in result.get("runtimes", {}).items():
        print(f"  {name:9s} ({r['video_model']}, {r['runtime']}, {r['precision']}, face reuse {r['face_reuse']}): "
              f"total {r['total_s']:.3f}s (face detection {r['stages']['face_detection']:.3f}s), realtime factor "
              f"{r['realtime_factor']}x, {r['faces']} faces, runs {r['total_s_runs']}")
    for pair, ratio in result.get("ratios", {}).items():
        print(f"  ratio {pair}: {ratio}x")
    for name, info in result["loads"].items():
        print(f"  {name} load {info['load_s']}s + warm-up {info['warmup_s']}s"
              + (f" (first load, converting: {info['first_load_s']}s)" if "first_load_s" in info else ""))
    print(f"  peak RSS so far {result['peak_rss_mb']} MB")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("videos", nargs="*", metavar="VIDEO")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    p.add_argument("--repeat", type=int, default=3, help="product runs per video; the median is reported")
    p.add_argument("--reference-repeat", type=int, default=None, help="reference runs per video (default: --repeat)")
    p.add_argument("--no-reference", action="store_true", help="time the product only")
    p.add_argument("--models-dir", type=Path, help="real model files (default: random-initialised, temporary)")
    p.add_argument("--face-models", type=Path, default=Path(os.environ.get("DEEPFAKE_TEST_FACE_MODELS",
                                                                          ROOT.parent / "shared" / "models")),
                   help="folder with the res10 files, used with random-initialised models")
    p.add_argument("--generate", action="append", choices=sorted(GENERATED), default=[],
                   help="also benchmark a generated 1080p clip of this length (cached in --cache-dir)")
    p.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "deepfake-bench")
    p.add_argument("--max-samples", type=int, default=None, help="override the default (smoke tests)")
    p.add_argument("--compile", action="store_true", help="Detector.load(compile=True) (torch.compile)")
    p.add_argument("--runtimes", default="auto", metavar="LIST",
                   help="runtimes to compare side by side, e.g. torch,openvino (default: auto); the first is the "
                        "baseline of the ratios")
    p.add_argument("--models", default="original", metavar="LIST",
                   help="video models to compare: original (the Xception pair: random weights, or --models-dir), "
                        "builtin (the package's built-in model, res10 files only), or original,builtin")
    p.add_argument("--face-reuse", default="on", metavar="LIST",
                   help="face-box reuse between sampled frames: on, off, or off,on (both, side by side)")
    p.add_argument("--throughput", metavar="BATCHES", help="also time each network alone at these batch sizes, "
                   "e.g. 1,16,64,256 (images/s; a JSON line {\"model_images_per_s\": ...} with --json)")
    p.add_argument("--json", action="store_true", help="one JSON object per video on stdout")
    args = p.parse_args(argv)
    try:
        batches = [int(b) for b in args.throughput.split(",")] if args.throughput else []
    except ValueError:
        p.error("--throughput takes batch sizes separated by commas, e.g. 1,16,64")
    if any(b < 1 for b in batches):
        p.error("--throughput batch sizes must be >= 1")
    if args.repeat < 1:
        p.error("--repeat must be >= 1")
    videos = [Path(v) for v in args.videos]
    for name in args.generate:
        print(f"generating the {name} 1080p clip in {args.cache_dir} ...", file=sys.stderr)
        videos.append(generate_clip(GENERATED[name], args.cache_dir))
    if not videos and not batches:
        p.error("give at least one VIDEO, --generate or --throughput")

    settings = AnalysisSettings(fusion="adaptive")
    if args.max_samples is not None:
        settings = settings.replace(max_samples=args.max_samples)
    runtimes = [r.strip() for r in args.runtimes.split(",") if r.strip()]
    if not runtimes or len(set(runtimes)) < len(runtimes):
        p.error("--runtimes takes distinct runtimes separated by commas, e.g. torch,openvino")
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    if not models or len(set(models)) < len(models) or not set(models) <= {"original", "builtin"}:
        p.error("--models takes original, builtin or original,builtin")
    reuse = [r.strip() for r in args.face_reuse.split(",") if r.strip()]
    if not reuse or len(set(reuse)) < len(reuse) or not set(reuse) <= {"on", "off"}:
        p.error("--face-reuse takes on, off, off,on or on,off")
    with tempfile.TemporaryDirectory(prefix="bench-models-") as tmp:
        dirs = {}
        for model in models:
            (Path(tmp) / model).mkdir()
            if model == "original":
                dirs[model] = args.models_dir or write_random_models(Path(tmp) / model, args.face_models)
            else:
                dirs[model] = face_models_only(Path(tmp) / model, args.face_models)
        detectors, loads = load_detectors(dirs, runtimes, args)
        first = next(iter(detectors.values()))
        variants = {(f"{name}:reuse-{r}" if len(reuse) > 1 else name): (d, settings.replace(face_reuse=r == "on"))
                    for name, d in detectors.items() for r in reuse}
        reference = None if args.no_reference else Reference(first)
        machine = machine_info(first.device)
        if batches:
            rates = {name: model_throughput(d, batches) for name, d in detectors.items()}
            line = {"model_images_per_s": next(iter(rates.values())), "device": str(first.device),
                    "precision": first.precision, "runtime": first.runtime, "machine": machine}
            if len(detectors) > 1:
                line["runtimes"] = rates
            if args.json:
                print(json.dumps(line), flush=True)
            else:
                for name, per_model in rates.items():
                    for modality, rate in per_model.items():
                        print(f"{modality} model alone ({name}, {detectors[name].precision}, {first.device}): "
                              + ", ".join(f"batch {b}: {r} images/s" for b, r in rate.items()))
        for video in videos:
            result = bench_video(video, variants, reference, args.repeat, args.reference_repeat or args.repeat)
            result.update(device=str(first.device), load_s=next(iter(loads.values()))["load_s"], loads=loads,
                          machine=machine, command=" ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])]))
            result["machine"]["load_average_end"] = os.getloadavg()
            if args.json:
                print(json.dumps(result), flush=True)
            else:
                print_human(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
