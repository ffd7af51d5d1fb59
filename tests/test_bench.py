"""The benchmark script runs end to end on a short generated clip (its JSON fields, never its times)."""

import json
import os
import subprocess
import sys

from conftest import ROOT, face_files_dir, moving_face_frames, speech_like, write_video

BENCH = ROOT / "benchmarks" / "bench_pipeline.py"


def test_benchmark_smoke(tmp_path, original_models):
    face_files_dir()
    clip = write_video(tmp_path / "short.mp4", moving_face_frames(50, size=(540, 640)), audio=speech_like(2.0))
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    out = subprocess.run(
        [sys.executable, str(BENCH), str(clip), "--repeat", "1", "--models-dir", str(original_models),
         "--device", "cpu", "--throughput", "1,2", "--runtimes", "torch,openvino", "--json"],
        capture_output=True, text=True, timeout=1800, env=env, cwd=tmp_path,  # a safeguard; two runtimes now
    )
    assert out.returncode == 0, out.stderr[-3000:]
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 2
    rates = json.loads(lines[0])["model_images_per_s"]  # each network alone, per batch size
    assert set(rates) == {"video", "audio"} and all(set(r) == {"1", "2"} for r in rates.values())
    assert all(v > 0 for r in rates.values() for v in r.values())
    result = json.loads(lines[1])
    assert result["video"] == str(clip)
    assert set(result["stages"]) == {"probe_decode", "face_detection", "crop_preprocess", "video_model",
                                      "audio_decode_mel", "audio_model", "fusion_report", "total"}
    assert all(v >= 0 for v in result["stages"].values()) and result["stages"]["total"] > 0
    assert result["realtime_factor"] > 0 and result["sampled_fps"] > 0
    assert result["frames_sampled"] == 10 and result["faces"] >= 10 and result["audio_windows"] == 1
    assert result["speedup_vs_reference"] > 0
    assert result["reference"]["total_s"] > 0 and set(result["reference"]["stages"]) == set(result["stages"])
    # the same faces on both paths, and the product's precision costs little
    assert result["faces_matched"] == result["faces_product"] == result["faces_reference"]
    assert 0 <= result["max_abs_prob_diff"] < 0.01
    assert result["peak_rss_mb"] > 0
    assert result["machine"]["cores"] >= 1 and result["device"] == "cpu"
    # the runtimes side by side: interleaved runs, ratios, load times, the same faces
    assert json.loads(lines[0])["runtimes"]["openvino"]["video"]["2"] > 0
    assert set(result["runtimes"]) == {"torch", "openvino"} and result["runtime"] == "torch"
    assert result["runtimes"]["openvino"]["runtime"] == "openvino" and result["ratios"]["torch/openvino"] > 0
    assert len(result["runtimes"]["openvino"]["total_s_runs"]) == 1
    assert all(result["loads"][r]["load_s"] > 0 and result["loads"][r]["warmup_s"] > 0 for r in ("torch", "openvino"))
    diff = result["runtime_prob_diff"]["openvino"]
    assert diff["faces_matched"] == result["faces"] and 0 <= diff["max_abs_prob_diff"] < 0.05


def test_benchmark_compares_models_and_face_reuse(tmp_path):
    """--models builtin and --face-reuse off,on: every combination side by side, with ratios and × real time."""
    face_files_dir()
    frames = list(moving_face_frames(10, size=(540, 640)))
    clip = write_video(tmp_path / "still.mp4", [frames[3]] * 40)  # a still face: boxes reused
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    out = subprocess.run(
        [sys.executable, str(BENCH), str(clip), "--repeat", "1", "--models", "builtin", "--runtimes", "torch",
         "--face-reuse", "off,on", "--no-reference", "--device", "cpu", "--json"],
        capture_output=True, text=True, timeout=1800, env=env, cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads([line for line in out.stdout.splitlines() if line.startswith("{")][-1])
    runs = result["runtimes"]
    assert set(runs) == {"torch:reuse-off", "torch:reuse-on"}
    assert [runs[n]["face_reuse"] for n in ("torch:reuse-off", "torch:reuse-on")] == [False, True]
    assert all(r["video_model"] == "builtin-lite0-pooled-v1" and r["realtime_factor"] > 0 for r in runs.values())
    assert runs["torch:reuse-on"]["faces"] == runs["torch:reuse-off"]["faces"] == 8
    assert result["ratios"]["torch:reuse-off/torch:reuse-on"] > 0
    diff = result["runtime_prob_diff"]["torch:reuse-on"]
    assert diff["against"] == "torch:reuse-off" and diff["faces_product"] == 8
