"""First-run setup: the scripts (shellcheck, the apt lock wait, run.sh's choice of PyTorch wheels) and a missing
model reported without importing torch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from test_docker import tool

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = [ROOT / "scripts" / "test.sh", ROOT / "scripts" / "run.sh", ROOT / "scripts" / "apt-install.sh",
           ROOT / "scripts" / "cpu-torch.sh", ROOT / "scripts" / "lint.sh",
           ROOT / ".ci" / "run", ROOT / ".ci" / "docker-engine.sh", ROOT / ".ci" / "stand-in-base.sh"]


def test_scripts_are_executable_and_pass_shellcheck():
    for script in SCRIPTS:
        assert os.access(script, os.X_OK), script
    result = subprocess.run([tool("shellcheck"), "--severity=style", *map(str, SCRIPTS)], capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def fake_bin(folder: Path, name: str, body: str) -> None:
    (folder / name).write_text("#!/bin/sh\n" + body)
    (folder / name).chmod(0o755)


def test_apt_install_waits_for_the_package_lock_and_says_what_and_why(tmp_path):
    """apt-get (a stand-in on PATH) reports the lock held once: the script waits and retries, then installs."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    fake_bin(bin_dir, "id", 'echo 0\n')
    fake_bin(bin_dir, "apt-get", f'''echo "$*" >> {calls}
if [ ! -e {tmp_path}/once ]; then
  touch {tmp_path}/once
  echo "E: Could not get lock /var/lib/apt/lists/lock. It is held by process 4242 (apt-get)" >&2
  exit 100
fi
''')
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run([str(ROOT / "scripts" / "apt-install.sh"), "a reason", "pkg-a", "pkg-b"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert lines[0] == "installing pkg-a pkg-b with apt: a reason"
    assert "waiting" in result.stderr and "held by process" not in result.stderr
    made = [line.split() for line in calls.read_text().splitlines()]
    assert [c[-1] for c in made[:2]] == ["update", "update"]  # retried after the lock
    assert made[2][-4:] == ["-y", "--no-install-recommends", "pkg-a", "pkg-b"]
    assert all("DPkg::Lock::Timeout=600" in " ".join(c) for c in made)


def test_apt_install_fails_with_apt_s_message_on_other_errors(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake_bin(bin_dir, "id", 'echo 0\n')
    fake_bin(bin_dir, "apt-get", 'echo "E: Unable to locate package nope" >&2; exit 100\n')
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run([str(ROOT / "scripts" / "apt-install.sh"), "why", "nope"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "Unable to locate package nope" in result.stderr


def test_missing_model_is_reported_without_importing_torch(tmp_path, face_video):
    """`deepfake-detect analyze` with no video model: exit 3 naming the file, torch never imported."""
    probe = ("import sys; from deepfake_core.cli import main; code = main(sys.argv[1:]); "
             "print('torch' in sys.modules, 'cv2' in sys.modules); sys.exit(code)")
    for extra in (["--video-model", "original"], ["--video-model", str(tmp_path / "nope.pt")]):
        result = subprocess.run([sys.executable, "-c", probe, "analyze", str(face_video), "--models-dir",
                                 str(tmp_path), *extra], capture_output=True, text=True, timeout=120)
        assert result.returncode == 3, result.stderr
        assert result.stdout.split() == ["False", "False"], result.stdout
        assert ("epoch_007.pt" if extra[1] == "original" else "nope.pt") in result.stderr
        assert "weights pull" in result.stderr


def test_the_readme_says_what_the_test_command_installs_and_how_long_it_takes():
    section = (ROOT / "docs" / "development.md").read_text()
    assert "chromium" in section.lower() and "apt" in section and "root" in section
    assert "minutes" in section and ".ci/run" in section and "container" in section


# -- scripts/cpu-torch.sh (run.sh's PyTorch choice) -----------------------------------------------------------
def run_cpu_torch(tmp_path: Path, index_url: str, has_torch: bool = False, pip_exit: int = 0,
                  nvidia: bool = False):
    """cpu-torch.sh with a Python whose `-m pip` and `import torch` are stand-ins; returns (result, pip calls)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    calls = tmp_path / "pip-calls"
    calls.unlink(missing_ok=True)
    fake_bin(bin_dir, "python", f'''if [ "$1" = -m ] && [ "$2" = pip ]; then echo "$*" >> {calls}; exit {pip_exit}; fi
if [ "$1" = -c ] && [ "$2" = "import torch" ]; then exit {0 if has_torch else 1}; fi
exec {sys.executable} "$@"
''')
    if nvidia:
        fake_bin(bin_dir, "nvidia-smi", "exit 0\n")
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "TORCH_CPU_INDEX_URL": index_url}
    result = subprocess.run([str(ROOT / "scripts" / "cpu-torch.sh"), str(bin_dir / "python")], env=env,
                            capture_output=True, text=True, timeout=60)
    return result, (calls.read_text().splitlines() if calls.exists() else [])


def test_cpu_torch_installs_the_cpu_wheels_without_an_nvidia_gpu(tmp_path):
    from test_docker import Mirror

    served = tmp_path / "index"
    (served / "torch").mkdir(parents=True)
    (served / "torch" / "index.html").write_text("<html></html>")
    with Mirror(served) as mirror:
        result, calls = run_cpu_torch(tmp_path, mirror.url)
        assert result.returncode == 0, result.stderr
        if Path("/proc/driver/nvidia/version").exists():  # an NVIDIA driver here: the CUDA build is wanted
            assert calls == [] and result.stderr == ""
            return
        assert "installing the CPU-only PyTorch wheels" in result.stderr
        # The requirements exactly as pyproject.toml states them.
        assert calls == [f"-m pip install --quiet --index-url {mirror.url} torch>=2.6,<2.15 torchvision>=0.21,<0.30"]

        result, calls = run_cpu_torch(tmp_path, mirror.url, pip_exit=1)  # falls back to the default index
        assert result.returncode == 0 and "failed to install" in result.stderr and len(calls) == 1

        for kwargs in ({"has_torch": True}, {"nvidia": True}):  # torch already there; an NVIDIA GPU
            result, calls = run_cpu_torch(tmp_path, mirror.url, **kwargs)
            assert result.returncode == 0 and calls == [] and result.stderr == "", (kwargs, result.stderr)


def test_cpu_torch_leaves_it_to_the_default_index_when_the_cpu_index_does_not_answer(tmp_path):
    from test_docker import free_port

    result, calls = run_cpu_torch(tmp_path, f"http://127.0.0.1:{free_port()}/whl/cpu")
    assert result.returncode == 0 and calls == []
    assert "does not answer" in result.stderr
