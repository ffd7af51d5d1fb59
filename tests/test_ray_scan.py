"""`scan --ray`: a local Ray on 127.0.0.1 over generated clips, compared with the local scan.

Ray is started once for the module, inside a network namespace of its own that has only the loopback
interface (Ray's servers bind every interface; there, that is 127.0.0.1 alone), and shut down after.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
from loopback import listening_addresses, loopback_only_network

from deepfake_core.cli import main
from deepfake_core.scan.results import SCAN_FIELDS

FLOAT_FIELDS = ("confidence", "fused_real_prob", "video_p_fake", "audio_p_fake", "duration_s")
BF16_TOLERANCE = 0.02  # bf16 keeps ~3 significant digits; thread counts change the summation order


# -- fast: no Ray needed ---------------------------------------------------------------------------------
def test_importing_and_the_local_scan_do_not_need_ray(tmp_path, original_models, faceless_video):
    code = ("import sys; sys.modules['ray'] = None\n"  # `import ray` now fails as if it were not installed
            "import deepfake_core, deepfake_core.scan.ray_scan\n"
            "from deepfake_core.cli import main\n"
            f"assert main(['scan', {str(faceless_video)!r}, '--out', {str(tmp_path / 'r.csv')!r}, "
            f"'--models-dir', {str(original_models)!r}, '-q']) == 0\n"
            f"sys.exit(main(['scan', {str(faceless_video)!r}, '--out', {str(tmp_path / 'r2.csv')!r}, '--ray']))\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert p.returncode == 2, p.stderr
    assert "pip install 'deepfake-detector[ray]'" in p.stderr and "Traceback" not in p.stderr
    assert (tmp_path / "r.csv").read_text().count("NOT_APPLICABLE") == 1
    assert not (tmp_path / "r2.csv").exists()


def test_remove_session_removes_the_ray_folder_only_when_the_scan_made_it_and_it_is_empty(tmp_path, monkeypatch):
    from deepfake_core.scan.ray_scan import ray_temp_root, remove_session

    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))
    root = ray_temp_root()
    assert root == tmp_path / "ray"

    def session(name):  # what a stopped Ray leaves: its session folder and the link to it
        (root / name / "logs").mkdir(parents=True)
        (root / "session_latest").unlink(missing_ok=True)
        (root / "session_latest").symlink_to(root / name)
        return str(root / name)

    remove_session(session("session_1"), made_root=root)  # the scan's Ray made `ray`: all gone
    assert not root.exists() and list(tmp_path.iterdir()) == []
    remove_session(session("session_2"), made_root=None)  # `ray` was there before: kept
    assert root.is_dir() and list(root.iterdir()) == []
    (root / "session_other").mkdir()  # another Ray's session: `ray` is kept even when the scan made it
    remove_session(session("session_3"), made_root=root)
    assert [p.name for p in root.iterdir()] == ["session_other"]


def test_read_done_drops_a_cut_last_line_and_refuses_other_files(tmp_path):
    from deepfake_core.errors import InputError
    from deepfake_core.scan.results import read_done

    jl = tmp_path / "r.jsonl"
    jl.write_text(json.dumps({"path": "/v/a.mp4", "verdict": "REAL"}) + "\n" + '{"path": "/v/b.m')
    assert read_done(jl) == {"/v/a.mp4"}
    assert jl.read_text().endswith("}\n")  # the cut line is gone, so appended rows start on a line
    rows = tmp_path / "r.csv"
    rows.write_text(",".join(SCAN_FIELDS) + "\n" + ",".join(["a.mp4", "/v/a.mp4"] + [""] * 12) + "\n")
    assert read_done(rows) == {"/v/a.mp4"}
    (tmp_path / "other.csv").write_text("name,score\nx,1\n")
    with pytest.raises(InputError, match="not a scan results file"):
        read_done(tmp_path / "other.csv")


def test_bad_ray_options_are_usage_errors(tmp_path, faceless_video, capsys):
    assert main(["scan", str(faceless_video), "--out", str(tmp_path / "r.csv"), "--ray", "--ray-workers", "0"]) == 2
    assert "--ray-workers must be at least 1" in capsys.readouterr().err
    assert main(["scan", str(faceless_video), "--out", str(tmp_path / "r.txt"), "--ray"]) == 2


# -- slow: a local Ray ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def local_ray(tmp_path_factory):
    ray = pytest.importorskip("ray", reason="the ray extra is not installed: pip install 'deepfake-detector[ray]'")
    restore = loopback_only_network()
    if restore is None:
        pytest.skip("cannot make a loopback-only network namespace for Ray (needs root or user namespaces)")
    try:
        ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1",
                 _temp_dir=str(tmp_path_factory.mktemp("ray")), logging_level="WARNING")
        loopback = {"127.0.0.1", "::1", "::ffff:127.0.0.1", "0.0.0.0", "::"}  # any-address: only lo exists here
        assert listening_addresses() <= loopback, listening_addresses()
        assert [name for _, name in socket.if_nameindex()] == ["lo"]
        yield ray
    finally:
        ray.shutdown()
        restore()


@pytest.fixture(scope="module")
def clips(tmp_path_factory, face_video, faceless_video) -> Path:
    folder = tmp_path_factory.mktemp("clips")
    (folder / "sub").mkdir()
    shutil.copy(face_video, folder / "a.mp4")
    shutil.copy(faceless_video, folder / "sub" / "b.mp4")
    (folder / "broken.mp4").write_text("garbage")
    return folder


def _rows(path: Path) -> dict[str, dict]:
    return {row["path"]: row for row in csv.DictReader(path.open())}


def _same_row(ray_row: dict, local_row: dict) -> None:
    for field in SCAN_FIELDS:
        if field == "seconds":
            continue
        if field in FLOAT_FIELDS and local_row[field]:
            assert float(ray_row[field]) == pytest.approx(float(local_row[field]), abs=BF16_TOLERANCE), field
        else:
            assert ray_row[field] == local_row[field], field


@pytest.mark.slow
def test_ray_scan_gives_the_local_rows(local_ray, clips, original_models, tmp_path, capsys):
    common = ["--models-dir", str(original_models), "--max-samples", "5"]
    assert main(["scan", str(clips), "--out", str(tmp_path / "local.csv"), *common]) == 0
    out = tmp_path / "ray.csv"
    assert main(["scan", str(clips), "--out", str(out), *common, "--ray", "--ray-workers", "2"]) == 0
    local, remote = _rows(tmp_path / "local.csv"), _rows(out)
    assert sorted(remote) == sorted(local) and len(local) == 3
    for path in local:
        _same_row(remote[path], local[path])
    broken = remote[str(clips / "broken.mp4")]
    assert broken["verdict"] == "ERROR" and "UnreadableMedia" in broken["error"]
    assert remote[str(clips / "sub" / "b.mp4")]["reason"] == "no_face"

    capsys.readouterr()  # a re-run finds everything done: nothing analysed, nothing written
    before = out.read_bytes()
    assert main(["scan", str(clips), "--out", str(out), *common, "--ray"]) == 0
    assert "3 files, 3 already done, 0 analysed" in capsys.readouterr().err
    assert out.read_bytes() == before


@pytest.mark.slow
def test_ray_scan_of_file_urls_resumes_a_stopped_jsonl(local_ray, clips, original_models, tmp_path):
    from deepfake_core import AnalysisSettings, scan_ray

    assert main(["scan", str(clips / "a.mp4"), "--out", str(tmp_path / "local.jsonl"),
                 "--models-dir", str(original_models), "--max-samples", "5"]) == 0
    local = json.loads((tmp_path / "local.jsonl").read_text())
    url = f"file://{clips}"
    out = tmp_path / "ray.jsonl"
    done = json.dumps({"path": f"{url}/sub/b.mp4", "verdict": "NOT_APPLICABLE", "error": None}) + "\n"
    out.write_text(done + '{"path": "' + url)  # a run stopped while writing its second row
    rows = []
    summary = scan_ray([url], out, AnalysisSettings(max_samples=5), models_dir=str(original_models),
                       on_row=rows.append)
    assert (summary.total, summary.skipped, summary.analysed, summary.errors) == (3, 1, 1, 1)
    assert sorted(r["path"] for r in rows) == [f"{url}/a.mp4", f"{url}/broken.mp4"]
    lines = out.read_text().splitlines(keepends=True)
    assert lines[0] == done and len(lines) == 3  # the done row kept, the cut one dropped, b.mp4 not redone
    records = {r["path"]: r for r in map(json.loads, lines)}
    a = records[f"{url}/a.mp4"]
    assert a["file"] == "a.mp4" and a["verdict"] == local["verdict"] and a["error"] is None
    assert a["fused_real_prob"] == pytest.approx(local["fused_real_prob"], abs=BF16_TOLERANCE)
    assert len(a["timeline"]) == len(local["timeline"])
    assert records[f"{url}/broken.mp4"]["verdict"] == "ERROR"
    assert not list(Path(tempfile.gettempdir()).glob("deepfake-scan-*"))  # the copies were removed


def _scan_killing_the_first_worker(ray, paths, out, max_attempts, models):
    """scan_ray in a thread; SIGKILL the worker process as soon as it starts a file. (summary, killed file)."""
    from deepfake_core import AnalysisSettings, scan_ray
    from deepfake_core.scan.ray_scan import LEDGER_PREFIX

    result = {}
    thread = threading.Thread(target=lambda: result.setdefault(
        "summary", scan_ray(paths, out, AnalysisSettings(max_samples=10), models_dir=str(models),
                            max_attempts=max_attempts)), daemon=True)
    thread.start()
    killed, deadline = None, time.monotonic() + 240
    while killed is None and thread.is_alive() and time.monotonic() < deadline:
        names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                 if a["name"].startswith(LEDGER_PREFIX)]
        if names:
            namespace = next(a["namespace"] for a in ray.util.list_named_actors(all_namespaces=True)
                             if a["name"] == names[0])
            running = ray.get(ray.get_actor(names[0], namespace=namespace).in_flight.remote())
            if running:
                killed, pid = next(iter(running.items()))
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)
    thread.join(timeout=900)  # a restarted worker loads the models again: minutes on a loaded 2-core machine
    assert killed is not None, "no file was seen in flight"
    assert "summary" in result, "the scan did not finish after its worker was killed"
    return result["summary"], killed


@pytest.mark.slow
def test_a_killed_workers_file_is_retried_then_recorded_as_failed(local_ray, clips, original_models, tmp_path):
    face = str(clips / "a.mp4")
    summary, killed = _scan_killing_the_first_worker(local_ray, [face], tmp_path / "r.csv", 3, original_models)
    assert killed == face
    row = _rows(tmp_path / "r.csv")[face]
    assert row["verdict"] in ("REAL", "FAKE", "UNCERTAIN") and not row["error"]  # random weights: near 0.5
    assert (summary.analysed, summary.errors, summary.retried) == (1, 0, 1)

    summary, killed = _scan_killing_the_first_worker(local_ray, [face], tmp_path / "f.csv", 1, original_models)
    row = _rows(tmp_path / "f.csv")[face]
    assert row["verdict"] == "ERROR" and row["error"].startswith("WorkerDied: the worker analysing it died 1 times")
    assert (summary.analysed, summary.errors) == (0, 1)


@pytest.mark.slow
def test_model_files_missing_on_the_workers_exit_3(local_ray, clips, tmp_path, capsys):
    # the original checkpoint asked for (without a choice, the built-in model shipped in the package judges)
    code = main(["scan", str(clips / "a.mp4"), "--out", str(tmp_path / "r.csv"), "--models-dir", str(tmp_path),
                 "--video-model", "original", "--ray"])
    assert code == 3
    assert "epoch_007.pt" in capsys.readouterr().err


@pytest.mark.slow
def test_a_models_folder_missing_on_the_workers_is_exit_2(local_ray, clips, tmp_path, capsys):
    missing = tmp_path / "no_models"  # the driver does not see it either: the workers check it, and say so
    code = main(["scan", str(clips / "a.mp4"), "--out", str(tmp_path / "r.csv"), "--models-dir", str(missing),
                 "--ray"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"the models folder {missing} does not exist" in err and "internal error" not in err


def test_deploy_files_agree_on_the_image_and_the_ray_version():
    yaml = pytest.importorskip("yaml", reason="PyYAML comes with the ray extra")
    import re

    import tomllib

    root = Path(__file__).resolve().parents[1]
    launcher = yaml.safe_load((root / "deploy/ray/cluster-aws.yaml").read_text())
    kuberay = yaml.safe_load((root / "deploy/ray/kuberay-cluster.yaml").read_text())
    dockerfile = (root / "deploy/ray/Dockerfile").read_text()
    base = re.search(r"^ARG RAY_IMAGE=rayproject/ray:(\d+\.\d+\.\d+)-py311-cpu$", dockerfile, re.M)
    assert base, "the Ray base image is pinned to a version"
    assert kuberay["kind"] == "RayCluster" and kuberay["spec"]["rayVersion"] == base.group(1)
    images = {c["image"] for group in [kuberay["spec"]["headGroupSpec"], *kuberay["spec"]["workerGroupSpecs"]]
              for c in group["template"]["spec"]["containers"]}
    assert images == {launcher["docker"]["image"]}
    assert launcher["head_node_type"] in launcher["available_node_types"]
    extra = tomllib.loads((root / "pyproject.toml").read_text())["project"]["optional-dependencies"]["ray"]
    low, high = re.search(r"ray\[data\]>=([\d.]+),<(\d+)", extra[0]).groups()
    version = tuple(map(int, base.group(1).split(".")))
    assert tuple(map(int, low.split("."))) <= version < (int(high),)
    assert "deepfake-detect weights pull" in dockerfile and "DEEPFAKE_MODELS_DIR" in dockerfile
