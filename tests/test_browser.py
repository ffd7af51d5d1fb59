"""One real-browser run: `deepfake-detect serve` on a free port, judging with the built-in model (the
offline state: no original checkpoints), headless Chromium uploads a video, clicks Analyse and reads the verdict.

Chromium is Debian's package (scripts/test.sh installs it when /usr/bin/chromium is missing), driven by the
PyPI `playwright` package; nothing is downloaded. $DEEPFAKE_TEST_CHROMIUM points at another binary.

DEEPFAKE_WRITE_SCREENSHOT=docs/screenshot.png regenerates the README's picture: the page with its default
settings on the real DFDC clip of ../shared/media, captured whole once the verdict is shown.
"""

from __future__ import annotations

import os
import shutil
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
SCREENSHOT = os.environ.get("DEEPFAKE_WRITE_SCREENSHOT")  # a path (relative: to the repository) or unset
SCREENSHOT_VIDEO = "real_dfdc_1080p_10s.mp4"  # a real clip from the public DFDC sample set, in ../shared/media
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


def capture_whole_page(page, path: Path) -> None:
    """A screenshot of the whole result page: the window is made as tall as the page's content first (the
    page scrolls inside Streamlit's own container, which a full-page capture would cut at the window)."""
    height = page.evaluate("() => document.querySelector('[data-testid=stMainBlockContainer]').scrollHeight")
    page.set_viewport_size({"width": 1280, "height": int(height) + 80})
    page.locator("[data-testid=stVegaLiteChart] canvas, [data-testid=stVegaLiteChart] svg").first.wait_for()
    page.locator("[data-testid=stImage] img").first.wait_for()
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=True)


@pytest.mark.slow
def test_upload_analyse_and_read_the_verdict(face_video, tmp_path):
    from conftest import ROOT, SHARED_MODELS, face_files_dir

    models = tmp_path / "models"  # the res10 files only: the built-in model judges, as on an offline machine
    models.mkdir()
    for f in face_files_dir().iterdir():
        if f.name.startswith(("deploy.prototxt", "res10_")):
            shutil.copy(f, models / f.name)
    video = face_video
    if SCREENSHOT:
        video = SHARED_MODELS.parent / "media" / SCREENSHOT_VIDEO
        if not video.is_file():
            pytest.fail(f"DEEPFAKE_WRITE_SCREENSHOT needs {video}")
    if not CHROMIUM.is_file():
        pytest.fail(f"no Chromium at {CHROMIUM}: install Debian's chromium package (scripts/test.sh does, as root)")
    from playwright.sync_api import expect, sync_playwright

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    uploads = tmp_path / "server-tmp"
    uploads.mkdir()
    log = tmp_path / "serve.log"
    # relative to the server's working folder, tmp_path: the page names it as a user's ./models
    env = dict(os.environ, TMPDIR=str(uploads), DEEPFAKE_MODELS_DIR="models")
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
                if not SCREENSHOT:  # the screenshot shows the default settings
                    samples = page.get_by_label("Max frames to sample", exact=True)
                    samples.fill("4")
                    samples.press("Enter")
                page.locator("input[type=file]").set_input_files(str(video))
                analyse = page.get_by_role("button", name="Analyse")
                expect(analyse).to_be_enabled(timeout=60_000)
                analyse.click()
                verdict = page.locator(".st-key-verdict")
                verdict.wait_for(timeout=ANALYSIS_MS)
                headline = verdict.locator("h2").inner_text().split()
                assert headline[-1] in ("REAL", "FAKE", "UNCERTAIN"), headline  # after the icon
                assert "% confidence" in verdict.inner_text()
                assert "built-in" in verdict.inner_text()  # the card says which model judged
                if not SCREENSHOT:
                    expect(page.get_by_text("4 frames sampled")).to_be_visible()
                expect(page.get_by_role("button", name="Report (JSON)")).to_be_visible()
                assert not page.locator("[data-testid=stException]").count()
                if SCREENSHOT:
                    capture_whole_page(page, ROOT / SCREENSHOT)
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
