"""No socket leaves the machine during an analysis or an import (libraries' telemetry included).

Each check runs in a child process whose sitecustomize.py (a temporary folder first on PYTHONPATH) installs an
audit hook: a name lookup or a connect() to anything but loopback is written to a log and refused before it
happens. Forked children keep the hook (same memory); spawned ones run sitecustomize again. The first test
proves the hook catches both, so an empty log means no attempt, not a blind hook."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SITECUSTOMIZE = textwrap.dedent('''
    import ipaddress
    import os
    import sys

    _LOG = os.environ["DEEPFAKE_TEST_NETWORK_LOG"]


    def _loopback(host):
        if host is None:
            return True
        host = host.decode() if isinstance(host, bytes) else str(host)
        if host in ("", "localhost"):
            return True
        try:
            return ipaddress.ip_address(host.split("%")[0]).is_loopback
        except ValueError:
            return False


    def _hook(event, args):
        if event in ("socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyname_ex"):
            host = args[0]
        elif event in ("socket.connect", "socket.sendto"):
            address = args[-1]
            if not isinstance(address, tuple):  # a Unix socket: a path on this machine
                return
            host = address[0]
        else:
            return
        if not _loopback(host):
            with open(_LOG, "a") as f:
                f.write(f"{os.getpid()} {event} {host!r}\\n")
            raise ConnectionRefusedError(f"no network in this test: {event} {host!r}")


    sys.addaudithook(_hook)
''')

PROBE = textwrap.dedent('''
    import multiprocessing
    import socket


    def lookup():
        try:
            socket.getaddrinfo("deepfake-test.invalid", 443)
        except OSError:
            pass


    if __name__ == "__main__":
        for method in ("fork", "spawn"):
            p = multiprocessing.get_context(method).Process(target=lookup)
            p.start()
            p.join(300)
''')


def run_guarded(tmp_path: Path, args: list[str], timeout_s: float = 600, **env_extra: str) -> list[str]:
    """Run `python args...` under the audit hook; the attempts it logged (pid, event, host)."""
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    log = tmp_path / "network.log"
    log.write_text("")
    src = Path(__file__).resolve().parents[1] / "src"
    path = os.pathsep.join(p for p in (str(site), str(src), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "PYTHONPATH": path, "DEEPFAKE_TEST_NETWORK_LOG": str(log), **env_extra}
    env.pop("CI", None)  # OpenVINO's telemetry skips CI machines: test what a user's machine does
    done = subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, timeout=timeout_s,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    return log.read_text().splitlines()


def test_the_hook_sees_forked_and_spawned_children(tmp_path):
    (tmp_path / "probe.py").write_text(PROBE)
    attempts = run_guarded(tmp_path, [str(tmp_path / "probe.py")], timeout_s=300)
    assert len(attempts) == 2 and all("deepfake-test.invalid" in line for line in attempts), attempts
    assert len({line.split()[0] for line in attempts}) == 2  # two processes, neither the parent


@pytest.mark.parametrize("module", ["deepfake_core.models.ov_runtime", "deepfake_core.faces.res10_ov"])
def test_importing_the_openvino_runtime_reaches_no_network(tmp_path, module):
    """A library user who never calls configure_process: importing OpenVINO starts its telemetry (a forked
    child looking up www.google-analytics.com) unless the package stops it first."""
    pytest.importorskip("openvino")
    assert run_guarded(tmp_path, ["-c", f"import {module}"]) == []


def test_an_analysis_reaches_no_network(tmp_path, lite_models, face_video):
    """`analyze` with the default runtime (OpenVINO on a CPU where installed), converting its networks afresh."""
    directory, video = lite_models
    args = ["-m", "deepfake_core", "analyze", str(face_video), "--models-dir", str(directory),
            "--video-model", str(video), "--device", "cpu", "--runtime", "auto", "--max-samples", "3",
            "--json", "--quiet"]
    assert run_guarded(tmp_path, args, DEEPFAKE_OPENVINO_CACHE=str(tmp_path / "ov-cache")) == []
