"""scripts/run.sh offline: no install when the environment is up to date, the face detector's files from the
package, one short try per missing file per day against a mirror on 127.0.0.1 that counts requests (and fails
them), one line per missing file with its fix, --pull to try now, sub-commands passed through.

The environment is a stand-in (DEEPFAKE_VENV): its python runs this interpreter but only logs `-m pip`, so no
real virtual environment is made."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "scripts" / "run.sh"
ORIGINALS = ("epoch_007.pt", "best_audio_xception.pth")
TIMEOUT = 600  # seconds per run.sh call: generous under load


@pytest.fixture
def mirror():
    """(base URL, Counter of requests per file name): every request is answered 503, a status worth a retry."""
    counts: Counter = Counter()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            counts[self.path.rsplit("/", 1)[-1]] += 1
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/models", counts
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def stand_in_venv(folder: Path) -> Path:
    """A virtual environment's stand-in: bin/python runs this interpreter (`-m pip` only logged to pip.log),
    bin/deepfake-detect runs the package's CLI; marked as installed from the current pyproject.toml."""
    bin_dir = folder / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "python").write_text(f'#!/bin/sh\nif [ "$1" = -m ] && [ "$2" = pip ]; then\n'
                                    f'  echo "$*" >> {folder}/pip.log; exit 0\nfi\nexec {sys.executable} "$@"\n')
    (bin_dir / "deepfake-detect").write_text(f'#!/bin/sh\nexec {sys.executable} -m deepfake_core "$@"\n')
    for name in ("python", "deepfake-detect"):
        (bin_dir / name).chmod(0o755)
    sha = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    (folder / ".deepfake-installed").write_text(sha + "\n")
    return folder


def run_sh(args: list[str], venv: Path, models: Path, mirror_url: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
    env.update(DEEPFAKE_VENV=str(venv), DEEPFAKE_MODELS_DIR=str(models), DEEPFAKE_WEIGHTS_MIRROR=mirror_url,
               NO_PROXY="127.0.0.1", PYTHONPATH=str(ROOT / "src"))
    return subprocess.run([str(RUN), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT)


def test_one_try_per_missing_file_per_day_with_one_line_each(tmp_path, mirror):
    url, counts = mirror
    venv, models = stand_in_venv(tmp_path / "venv"), tmp_path / "models"
    models.mkdir()

    first = run_sh(["analyze", "--help"], venv, models, url, tmp_path)
    assert first.returncode == 0, first.stderr
    assert "usage: deepfake-detect analyze" in first.stdout  # the command passed through
    assert counts == Counter({name: 1 for name in ORIGINALS})  # one try each; the face files need none
    assert sorted(p.name for p in models.iterdir()) == ["deploy.prototxt", "res10_300x300_ssd_iter_140000.caffemodel"]
    missing = [line for line in first.stderr.splitlines() if line.startswith("missing ")]
    assert [line.split()[1] for line in missing] == list(ORIGINALS)
    assert all("[--mirror URL], or copy the file into" in line for line in missing)
    assert "could not be downloaded" in first.stderr and "scripts/run.sh --pull" in first.stderr
    assert f"source {venv}/bin/activate" in first.stderr
    assert (venv / ".deepfake-pull-failed").exists() and not (venv / "pip.log").exists()  # nothing installed

    again = run_sh([str(tmp_path / "nope.mp4")], venv, models, url, tmp_path)  # a bare path: analyze
    assert again.returncode == 2 and "nope.mp4" in again.stderr
    assert counts == Counter({name: 1 for name in ORIGINALS})  # not tried again the same day
    assert "failed less than a day ago" in again.stderr
    assert sum(line.startswith("missing ") for line in again.stderr.splitlines()) == 2

    forced = run_sh(["--pull", "analyze", "--help"], venv, models, url, tmp_path)
    assert forced.returncode == 0 and counts == Counter({name: 2 for name in ORIGINALS})

    day_old = time.time() - 25 * 3600
    os.utime(venv / ".deepfake-pull-failed", (day_old, day_old))
    later = run_sh(["analyze", "--help"], venv, models, url, tmp_path)
    assert later.returncode == 0 and counts == Counter({name: 3 for name in ORIGINALS})

    path = run_sh(["weights", "path"], venv, models, url, tmp_path)  # weights: passed through, no download step
    assert path.returncode == 0 and path.stdout.strip() == str(models)
    assert counts == Counter({name: 3 for name in ORIGINALS}) and not (venv / "pip.log").exists()


def test_it_installs_again_only_when_pyproject_changed(tmp_path, mirror):
    url, counts = mirror
    venv = stand_in_venv(tmp_path / "venv")
    (venv / ".deepfake-installed").write_text("an older pyproject.toml\n")
    result = run_sh(["weights", "path"], venv, tmp_path / "models", url, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "pyproject.toml changed" in result.stderr
    assert f"-m pip install --quiet -e {ROOT}" in (venv / "pip.log").read_text()
    assert (venv / ".deepfake-installed").read_text().strip() == hashlib.sha256(
        (ROOT / "pyproject.toml").read_bytes()).hexdigest()
    assert not counts  # `weights` downloads nothing by itself
