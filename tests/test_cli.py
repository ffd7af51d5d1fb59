import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

from deepfake_core.cli import main


def test_analyze_json_prints_the_report(capsys, original_models, face_video, detector):
    code = main(["analyze", str(face_video), "--json", "--models-dir", str(original_models), "--fusion", "adaptive",
                 "--device", "cpu"])
    out, err = capsys.readouterr()
    assert code == 0
    d = json.loads(out)
    expected = detector.analyze(face_video, __import__("deepfake_core").AnalysisSettings(fusion="adaptive"))
    assert d["verdict"] == expected.verdict
    assert d["fused_real_prob"] == expected.fused_real_prob
    assert [r["fused_p_fake"] for r in d["timeline"]] == [r.fused_p_fake for r in expected.timeline]
    assert d["settings"]["fusion"] == "adaptive"


def test_analyze_summary(capsys, original_models, face_video):
    code = main(["analyze", str(face_video), "--models-dir", str(original_models), "--threshold", "0.3",
                 "--frame-skip", "10"])
    out, _ = capsys.readouterr()
    assert code == 0
    assert "verdict:" in out and "threshold 0.30" in out and "10 frames sampled" in out


def test_missing_models_exit_3_with_the_remedy(capsys, tmp_path, face_video):
    # the original checkpoint asked for (without a choice, the built-in model shipped in the package judges)
    code = main(["analyze", str(face_video), "--models-dir", str(tmp_path), "--video-model", "original"])
    _, err = capsys.readouterr()
    assert code == 3
    assert "epoch_007.pt" in err and str(tmp_path) in err and "deepfake-detect weights pull" in err


def test_scan_continues_past_bad_files(tmp_path, original_models, face_video, faceless_video, capsys):
    folder = tmp_path / "videos"
    (folder / "sub").mkdir(parents=True)
    shutil.copy(face_video, folder / "a.mp4")
    shutil.copy(faceless_video, folder / "sub" / "b.mp4")
    (folder / "broken.mp4").write_text("garbage")
    (folder / "readme.txt").write_text("not scanned")
    out = tmp_path / "results.csv"
    code = main(["scan", str(folder), "--out", str(out), "--models-dir", str(original_models), "--max-samples", "5",
                 "--abstain-below", "0.5"])
    assert code == 0
    rows = list(csv.DictReader(out.open()))
    assert [r["file"] for r in rows] == ["a.mp4", "broken.mp4", "b.mp4"]
    by = {r["file"]: r for r in rows}
    assert by["a.mp4"]["verdict"] in ("REAL", "FAKE")
    assert by["broken.mp4"]["verdict"] == "ERROR" and "UnreadableMedia" in by["broken.mp4"]["error"]
    assert by["b.mp4"]["verdict"] == "NOT_APPLICABLE" and by["b.mp4"]["reason"] == "no_face"

    jl = tmp_path / "results.jsonl"
    assert main(["scan", str(folder / "a.mp4"), str(folder / "broken.mp4"), "--out", str(jl),
                 "--models-dir", str(original_models), "--max-samples", "5"]) == 0
    records = [json.loads(line) for line in jl.read_text().splitlines()]
    assert records[0]["timeline"] and records[1]["verdict"] == "ERROR"


def test_python_m_and_console_script(original_models, faceless_video):
    script = Path(sys.executable).parent / "deepfake-detect"  # the console script installed beside this Python
    for cmd in ([sys.executable, "-m", "deepfake_core"], [str(script)]):
        p = subprocess.run(cmd + ["analyze", str(faceless_video), "--models-dir", str(original_models), "--json"],
                           capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, p.stderr
        assert json.loads(p.stdout)["reason"] == "no_face"
    p = subprocess.run([sys.executable, "-m", "deepfake_core", "analyze"], capture_output=True, text=True)
    assert p.returncode == 2 and "usage" in p.stderr


def test_summary_says_whether_the_models_are_the_published_files(capsys, original_models, face_video, monkeypatch):
    from deepfake_core.models import registry

    assert main(["analyze", str(face_video), "--models-dir", str(original_models), "--max-samples", "2"]) == 0
    out, _ = capsys.readouterr()
    assert "video epoch_007.pt" in out and out.count("not the published file") == 2
    video_sha = registry.sha256_file(original_models / "epoch_007.pt")
    pinned = registry.WeightsFile("video", "epoch_007.pt", ("http://127.0.0.1/x",), video_sha, 1, "", "")
    monkeypatch.setattr(registry, "REGISTRY", (pinned,))
    assert main(["analyze", str(face_video), "--models-dir", str(original_models), "--max-samples", "2"]) == 0
    out, _ = capsys.readouterr()
    assert f"video epoch_007.pt ({video_sha[:8]}, published file)" in out


def test_the_servers_start_up_line_names_the_model_that_will_judge(tmp_path, monkeypatch):
    from deepfake_core.models import registry
    from deepfake_core.models.model_files import judging_line

    line = judging_line(tmp_path)  # an empty models folder: the built-in model judges
    assert line == (f"video judged by the built-in model, shipped with the package ({registry.BUILTIN_VIDEO_FILE}, "
                    f"sha256 {registry.BUILTIN_SHA256[:12]}); the original checkpoints (471.0 MB) are optional: "
                    f"deepfake-detect weights pull --models-dir {tmp_path}")
    (tmp_path / "epoch_007.pt").write_bytes(b"")
    assert judging_line(tmp_path).startswith(f"note: model file {tmp_path / 'epoch_007.pt'} is empty")
    (tmp_path / "epoch_007.pt").write_bytes(b"a checkpoint")
    assert judging_line(tmp_path) == f"video judged by the original model {tmp_path / 'epoch_007.pt'}"
    (tmp_path / "epoch_007.pt").unlink()
    monkeypatch.setattr(registry, "BUILTIN_DIR", tmp_path / "no-builtin")
    assert judging_line(tmp_path).startswith(f"note: no video model in {tmp_path}; the page says how to get it")


def test_main_puts_the_sigterm_handler_back(capsys):
    import signal

    before = signal.getsignal(signal.SIGTERM)
    assert main(["weights", "list"]) == 0  # while it ran, SIGTERM raised cli.stop.Terminated (exit 143)
    assert signal.getsignal(signal.SIGTERM) is before
