"""One real-browser run: `deepfake-detect serve` on a free port, headless Chromium uploads a video,
clicks Analyse and reads the verdict.

Chromium is Debian's package (scripts/test.sh installs it when /usr/bin/chromium is missing), driven by the
PyPI `playwright` package; nothing is downloaded. $DEEPFAKE_TEST_CHROMIUM points at another binary.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = Path(os.environ.get("DEEPFAKE_TEST_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update"]
STARTUP_S = 120  # seconds the server may take to answer
ANALYSIS_MS = 300_000  # milliseconds the page may take to show a verdict on a slow shared CPU


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_up(process: subprocess.Popen, url: str, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"deepfake-detect serve exited with {process.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"deepfake-detect serve did not answer within {STARTUP_S} s:\n{log.read_text()}")


@pytest.mark.slow
def test_upload_analyse_and_read_the_verdict(original_models, face_video, tmp_path):
    from conftest import face_files_dir

    face_files_dir()
    if not CHROMIUM.is_file():
        pytest.fail(f"no Chromium at {CHROMIUM}: install Debian's chromium package (scripts/test.sh does, as root)")
    from playwright.sync_api import expect, sync_playwright

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    uploads = tmp_path / "server-tmp"
    uploads.mkdir()
    log = tmp_path / "serve.log"
    env = dict(os.environ, TMPDIR=str(uploads), DEEPFAKE_MODELS_DIR=str(original_models))
    with open(log, "w") as log_file:
        server = subprocess.Popen(
            [sys.executable, "-m", "deepfake_core", "serve", "--port", str(port), "--host", "127.0.0.1",
             "--device", "cpu"], env=env, stdout=log_file, stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        wait_until_up(server, url, log)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 1600})
                page.goto(url)
                samples = page.get_by_label("Max frames to sample", exact=True)
                samples.fill("4")
                samples.press("Enter")
                page.locator("input[type=file]").set_input_files(str(face_video))
                analyse = page.get_by_role("button", name="Analyse")
                expect(analyse).to_be_enabled(timeout=60_000)
                analyse.click()
                verdict = page.locator(".st-key-verdict")
                verdict.wait_for(timeout=ANALYSIS_MS)
                headline = verdict.locator("h2").inner_text().split()
                # after the icon; random test weights are rarely confident enough to pass the default band
                assert headline[-1] in ("REAL", "FAKE", "UNCERTAIN"), headline
                assert "% confidence" in verdict.inner_text()
                expect(page.get_by_text("4 frames sampled")).to_be_visible()
                expect(page.get_by_role("button", name="Report (JSON)")).to_be_visible()
                assert not page.locator("[data-testid=stException]").count()
            finally:
                browser.close()
        assert [p.name for p in uploads.glob("deepfake-upload-*")] == []  # the upload's temporary copy is gone
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
