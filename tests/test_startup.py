"""The light commands answer without importing PyTorch: help, `weights list`, and every missing-file error."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

# Runs `deepfake_core.cli.main(argv)` in a fresh interpreter and reports its exit code and whether torch
# (or OpenVINO) was imported.
PROBE = """
import json, sys
from deepfake_core.cli import main
try:
    code = main(json.loads(sys.argv[1]))
except SystemExit as e:
    code = e.code
print(json.dumps({"code": code, "torch": "torch" in sys.modules, "openvino": "openvino" in sys.modules}))
"""


def run_cli(args: list[str], cwd) -> dict:
    done = subprocess.run([sys.executable, "-c", PROBE, json.dumps(args)], capture_output=True, text=True,
                          cwd=cwd, timeout=900)  # a safeguard only: a loaded machine is slow
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["stderr"] = done.stderr
    return result


@pytest.fixture()
def folders(tmp_path, face_video):
    empty = tmp_path / "no-models"
    empty.mkdir()
    labels = tmp_path / "labels.csv"
    labels.write_text(f"path,label\n{face_video},real\n")
    return {"empty": str(empty), "video": str(face_video), "labels": str(labels), "tmp": tmp_path}


LIGHT = {
    "help": (["--help"], 0),
    "analyze help": (["analyze", "--help"], 0),
    "weights list": (["weights", "list", "--models-dir", "{empty}"], 0),
    "weights verify, files missing": (["weights", "verify", "--models-dir", "{empty}"], 3),
    "analyze, no such video": (["analyze", "{tmp}/nothing.mp4", "--models-dir", "{empty}"], 2),
    "analyze, model files missing": (["analyze", "{video}", "--models-dir", "{empty}", "--video-model", "original"], 3),
    "analyze, model path missing": (["analyze", "{video}", "--video-model", "{tmp}/nothing.pt"], 3),
    "scan, model files missing": (["scan", "{video}", "--out", "{tmp}/out.csv", "--models-dir", "{empty}",
                                   "--video-model", "original"], 3),
    "evaluate, no labels": (["evaluate", "{tmp}/nothing.csv", "--out", "{tmp}/eval"], 2),
    "evaluate, model files missing": (["evaluate", "{labels}", "--out", "{tmp}/eval", "--models-dir", "{empty}",
                                       "--video-model", "original"], 3),
    "calibrate, model files missing": (["calibrate", "{labels}", "--models-dir", "{empty}",
                                        "--video-model", "original"], 3),
    "prepare, no dataset": (["prepare", "{tmp}/nothing", "--out", "{tmp}/cache"], 2),
}


@pytest.mark.parametrize("name", sorted(LIGHT))
def test_light_commands_do_not_import_torch(name, folders):
    args, code = LIGHT[name]
    result = run_cli([a.format(**folders) for a in args], folders["tmp"])
    assert result["code"] == code, result["stderr"]
    assert not result["torch"] and not result["openvino"], f"{name} imported torch"
    if code:
        assert "error" in result["stderr"] and "Traceback" not in result["stderr"]


def test_the_probe_sees_torch_when_a_model_file_is_read(folders):
    """The check can fail: a model file that is there gets read, which imports torch (here a damaged one)."""
    models = folders["tmp"] / "damaged-models"
    models.mkdir()
    (models / "epoch_007.pt").write_bytes(b"not a checkpoint")
    result = run_cli(["analyze", folders["video"], "--models-dir", str(models), "--video-model", "original",
                      "--runtime", "torch"], folders["tmp"])
    assert result["code"] == 3 and result["torch"], result["stderr"]
