"""The Docker image, built and run for real (marked `container`: deselected by default, run by `.ci/run`).

Needs a Docker engine at $DOCKER_HOST: `.ci/run` starts a private one (.ci/docker-engine.sh: Debian's
docker.io, no bridge, no iptables; every build and container here uses --network host and listens on
127.0.0.1 only). No image registry is needed: when the engine lacks the Dockerfile's base image, a stand-in is
made with debootstrap (.ci/stand-in-base.sh). The build gets this machine's package index (pip's
configuration and PIP_* variables): local folders are served to it over HTTP on 127.0.0.1. PyTorch comes from
the Dockerfile's CPU-only index when it answers, else from the machine's index (the CUDA build: a larger image).

The image is built with the classic builder (DOCKER_BUILDKIT=0); a container started as the image's
unprivileged user serves the page until its health check passes; `deepfake-detect analyze` runs inside on a
generated clip with random-initialised checkpoints in the original layout and the real res10 files mounted
as /models; the entrypoint refuses missing and corrupt model files.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from conftest import FACE_FILES, face_files_dir

pytestmark = pytest.mark.container

ROOT = Path(__file__).resolve().parents[1]
IMAGE = "deepfake-detector:container-test"
BASE = "python:3.11-slim"  # the Dockerfile's FROM (tests/test_docker.py pins it)
EX_CONFIG = 78
BUILD_TIMEOUT = 40 * 60  # seconds: a first build on 2 cores, dependencies included
INDEX_PORT = 38_517  # the local package index served to the build
CPU_INDEX = "https://download.pytorch.org/whl/cpu"  # the Dockerfile's TORCH_INDEX_URL


def docker(*args: str, timeout: float = 300, check: bool = True, **kw) -> subprocess.CompletedProcess:
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, **kw)
    if check:
        assert result.returncode == 0, f"docker {' '.join(args)}: {result.stdout}{result.stderr}"
    return result


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- this machine's package index, for the build -------------------------------------------------------------
def pip_settings() -> dict[str, list[str]]:
    """find-links, index-url, extra-index-url as pip here sees them (its configuration, then PIP_*)."""
    listed = subprocess.run(["python3", "-m", "pip", "config", "list"], capture_output=True, text=True).stdout
    settings: dict[str, list[str]] = {}
    for line in listed.splitlines():
        key, _, value = line.partition("=")
        name = key.split(".", 1)[-1]
        if name in ("find-links", "index-url", "extra-index-url"):
            settings[name] = value.strip().strip("'\"").split()
    for name in ("find-links", "index-url", "extra-index-url"):
        env = os.environ.get("PIP_" + name.upper().replace("-", "_"))
        if env:
            settings[name] = env.split()
    return settings


class LocalIndex:
    """Serves the local folders of pip's settings over HTTP on 127.0.0.1, for a build on --network host."""

    def __init__(self):
        self.root = Path(tempfile.mkdtemp(prefix="container-index-"))
        class Quiet(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *args):
                pass

        handler = functools.partial(Quiet, directory=str(self.root))
        # A fixed port when free: the URLs are build arguments, part of the build cache's key.
        try:
            self.server = http.server.ThreadingHTTPServer(("127.0.0.1", INDEX_PORT), handler)
        except OSError:
            self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def serve(self, location: str, index: bool) -> str:
        """The URL of a pip location: http(s) ones as they are, a local folder served here. An index
        (.../simple) is served with its parent, whose files its pages link to as ../../files/..."""
        if location.startswith(("http://", "https://")):
            return location
        path = Path(urllib.parse.urlparse(location).path if location.startswith("file:") else location)
        if not path.is_dir():
            return ""
        target = path.parent if index else path
        name = str(len(list(self.root.iterdir())))
        (self.root / name).symlink_to(target)
        return f"{self.url}/{name}/{path.name}/" if index else f"{self.url}/{name}/"

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        shutil.rmtree(self.root)


def reachable(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=10):
            return True
    except (OSError, ValueError):
        return False


def build_args(index: LocalIndex) -> dict[str, str]:
    settings = pip_settings()
    args = {}
    links = [index.serve(x, index=False) for x in settings.get("find-links", [])]
    # The same indexes as pip's here, local ones first: where two hold the same file, the build downloads it
    # from 127.0.0.1.
    indexes = [index.serve(x, index=True) for x in settings.get("index-url", ["https://pypi.org/simple"])]
    indexes += [index.serve(x, index=True) for x in settings.get("extra-index-url", [])]
    indexes = sorted((x for x in indexes if x), key=lambda url: not url.startswith(index.url))
    if any(links):
        args["PIP_FIND_LINKS"] = " ".join(x for x in links if x)
    args["PIP_INDEX_URL"] = indexes[0]
    if indexes[1:]:
        args["PIP_EXTRA_INDEX_URL"] = " ".join(indexes[1:])
    # PyTorch: the Dockerfile's default (the CPU-only wheels from PyTorch's index) when that index answers;
    # else the first of the machine's indexes that lists torch, with the Dockerfile's pinned versions. (A
    # CPU-only torch from PyPI's or a local folder's wheels does not do: PyPI's torchvision is built against
    # the CUDA torch and fails to import beside a CPU one.)
    if not reachable(CPU_INDEX + "/torch/"):
        for url in indexes:
            if reachable(url.rstrip("/") + "/torch/"):
                args["TORCH_INDEX_URL"] = url
                break
    return args


# -- fixtures ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def engine():
    result = subprocess.run(["docker", "version", "--format", "{{.Server.Version}}"], capture_output=True,
                            text=True, timeout=60) if shutil.which("docker") else None
    if result is None or result.returncode != 0:
        pytest.fail("no Docker engine at $DOCKER_HOST: `.ci/run` starts one (.ci/docker-engine.sh start prints "
                    f"the DOCKER_HOST to export); {result.stderr.strip() if result else 'no docker command'}")
    return result.stdout.strip()


@pytest.fixture(scope="module")
def image(engine):
    if docker("image", "inspect", BASE, check=False).returncode != 0:
        subprocess.run([str(ROOT / ".ci" / "stand-in-base.sh"), BASE], check=True, timeout=30 * 60)
    index = LocalIndex()
    try:
        args = [a for k, v in build_args(index).items() for a in ("--build-arg", f"{k}={v}")]
        started = time.monotonic()
        result = subprocess.run(["docker", "build", "--network", "host", "-t", IMAGE, *args, "."], cwd=ROOT,
                                env={**os.environ, "DOCKER_BUILDKIT": "0"}, capture_output=True, text=True,
                                timeout=BUILD_TIMEOUT)
        seconds = time.monotonic() - started
    finally:
        index.close()
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    size = int(docker("image", "inspect", "--format", "{{.Size}}", IMAGE).stdout)
    print(f"\nimage {IMAGE}: {size / 1e6:.0f} MB, built in {seconds:.0f} s (engine {engine})")
    return IMAGE


@pytest.fixture(scope="module")
def shared_dir():
    """A folder the image's user (uid 1000) can read: pytest's own temporary folders are private to root."""
    path = Path(tempfile.mkdtemp(prefix="container-test-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


@pytest.fixture(scope="module")
def models(shared_dir, original_models):
    """Random-initialised checkpoints in the original layout and the real res10 files, readable by all."""
    face_files_dir()
    folder = shared_dir / "models"
    folder.mkdir(mode=0o755)
    for name in ("epoch_007.pt", "best_audio_xception.pth", *FACE_FILES):
        shutil.copy(original_models / name, folder / name)
        (folder / name).chmod(0o644)
    return folder


@pytest.fixture(scope="module")
def media(shared_dir, face_video):
    folder = shared_dir / "media"
    folder.mkdir(mode=0o755)
    shutil.copy(face_video, folder / "clip.mp4")
    (folder / "clip.mp4").chmod(0o644)
    return folder


# The checkpoints here are random, so their sha256 are not the registry's: the entrypoint checks only the
# res10 files (the real ones), with downloading off.
CHECK_FACE_FILES = ["-e", "DEEPFAKE_REQUIRED_WEIGHTS=face-net face-weights", "-e", "DEEPFAKE_PULL_WEIGHTS=0"]
HARDENED = ["--network", "host", "--cap-drop", "ALL", "--security-opt", "no-new-privileges:true"]


# -- tests ---------------------------------------------------------------------------------------------------
def test_container_serves_the_page_as_the_unprivileged_user_and_becomes_healthy(image, models):
    port = free_port()
    check = json.loads(docker("image", "inspect", "--format", "{{json .Config.Healthcheck.Test}}", image).stdout)
    assert check[0] == "CMD" and ":8501/_stcore/health" in check[-1]
    # The image's own check, pointed at this container's port (host network: 8501 may be taken here).
    health = [a.replace(":8501/", f":{port}/") for a in check[1:]]
    name = f"deepfake-container-test-{port}"
    docker("run", "-d", "--name", name, *HARDENED, "-v", f"{models}:/models:ro", *CHECK_FACE_FILES,
           "--health-cmd", shlex.join(health), "--health-interval", "2s", "--health-retries", "3",
           image, "deepfake-detect", "serve", "--host", "127.0.0.1", "--port", str(port))
    try:
        started = time.monotonic()
        deadline = started + 300
        while True:
            state = json.loads(docker("inspect", "--format", "{{json .State}}", name).stdout)
            if state.get("Health", {}).get("Status") == "healthy":
                break
            assert state["Running"], docker("logs", name, check=False).stderr
            assert time.monotonic() < deadline, (state, docker("logs", name, check=False).stderr)
            time.sleep(2)
        print(f"\ncontainer healthy {time.monotonic() - started:.0f} s after its start")
        assert docker("exec", name, "id", "-u").stdout.strip() == "1000"
        top = docker("top", name, "-o", "pid,uid,args").stdout
        assert re.search(r"^\d+\s+1000\s+.*(streamlit|deepfake-detect serve)", top, re.M), top
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=10) as r:
            assert r.status == 200 and r.read().strip() == b"ok"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as r:
            assert r.status == 200 and b"<html" in r.read().lower()
    finally:
        docker("rm", "-f", "-v", name, check=False)


def test_analyze_inside_the_container_on_a_generated_clip(image, models, media):
    result = docker("run", "--rm", *HARDENED, "-v", f"{models}:/models:ro", "-v", f"{media}:/data:ro",
                    *CHECK_FACE_FILES, image, "deepfake-detect", "analyze", "/data/clip.mp4", "--json", "--quiet",
                    "--video-model", "original", check=False, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"^ok\s+face-net\s", result.stderr, re.M), result.stderr  # the entrypoint checked them
    # stdout is the report alone: the entrypoint's checks went to stderr
    report = json.loads(result.stdout)
    assert report["verdict"] in ("REAL", "FAKE", "UNCERTAIN"), report["verdict"]
    assert report["models"]["video"]["path"] == "/models/epoch_007.pt"
    assert report["models"]["audio"]["path"] == "/models/best_audio_xception.pth"
    assert report["models"]["video"]["published"] is False  # random weights, and the report knows it
    assert "dnn" in " ".join(report["models"]["face_detector"]["methods"]).lower()
    assert report["counts"]["faces"] > 0 and report["counts"]["audio_windows"] > 0
    assert report["modalities"]["video"]["available"] and report["modalities"]["audio"]["available"]
    assert report["models"]["device"] == "cpu"


def test_entrypoint_refuses_missing_files_with_downloading_off(image):
    # No models mounted: the image's empty /models volume.
    result = docker("run", "--rm", *HARDENED, "-e", "DEEPFAKE_PULL_WEIGHTS=0", image,
                    "deepfake-detect", "analyze", "/nothing.mp4", check=False)
    out = result.stdout + result.stderr
    assert result.returncode == EX_CONFIG, out
    for name in ("epoch_007.pt", "best_audio_xception.pth", *FACE_FILES):
        assert re.search(rf"^missing\s+\S+\s+/models/{re.escape(name)}$", out, re.M), out
    assert "Mount a folder that holds them at /models" in out
    assert "no such file" not in out  # the command never ran


def test_entrypoint_refuses_files_that_are_not_the_published_ones(image, models):
    # The random checkpoints are present but their sha256 are not the pinned ones.
    result = docker("run", "--rm", *HARDENED, "-v", f"{models}:/models:ro", "-e", "DEEPFAKE_PULL_WEIGHTS=0",
                    image, "true", check=False)
    out = result.stdout + result.stderr
    assert result.returncode == EX_CONFIG, out
    assert re.search(r"^corrupt\s+video\s", out, re.M) and re.search(r"^corrupt\s+audio\s", out, re.M), out
    assert re.search(r"^ok\s+face-net\s", out, re.M), out
