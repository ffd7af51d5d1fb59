"""The web page, driven by Streamlit's AppTest (no browser): loading, settings, an analysis, errors;
and the `serve` command that starts it."""

from __future__ import annotations

import ast
import shutil
import socket
import tempfile
import tomllib
from pathlib import Path

import pytest
from streamlit import config as st_config
from streamlit.testing.v1 import AppTest

from deepfake_core.cli import build_parser, main
from deepfake_core.webapp.server import DEFAULT_MAX_UPLOAD_MB, SERVER_OPTIONS, streamlit_flags
from deepfake_core.webapp import PAGE

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "app" / "streamlit_app.py"
TIMEOUT = 300  # seconds an AppTest run may take (loading models and analysing on a slow CPU)


@pytest.fixture
def upload_tmp(tmp_path, monkeypatch):
    """Temporary files (the page's copy of each upload) go to a folder of their own, checked empty after."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    yield folder
    assert list(folder.iterdir()) == []


@pytest.fixture
def page(original_models, monkeypatch):
    from conftest import face_files_dir

    face_files_dir()
    monkeypatch.setenv("DEEPFAKE_MODELS_DIR", str(original_models))
    monkeypatch.setenv("DEEPFAKE_DEVICE", "cpu")
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.run()
    assert not at.exception, at.exception
    return at


def texts(elements) -> str:
    return "\n".join(str(e.value) for e in elements)


def upload(at: AppTest, path_or_bytes, name: str = "clip.mp4") -> AppTest:
    data = Path(path_or_bytes).read_bytes() if not isinstance(path_or_bytes, bytes) else path_or_bytes
    at.file_uploader(key="upload").set_value((name, data, "video/mp4"))
    at.run()
    assert not at.exception, at.exception
    return at


def test_page_loads_with_settings_and_model_status(page):
    assert page.title[0].value == "Deepfake Detector"
    assert page.selectbox(key="fusion").value == "equal"
    assert page.slider(key="audio_temperature").value == 2.0
    assert page.slider(key="threshold").value == 0.5
    assert page.slider(key="frame_skip").value == 5
    assert page.number_input(key="max_samples").value == 60
    assert page.selectbox(key="truth").value == "not given"
    assert {".mp4", ".avi", ".mov", ".mkv", ".webm"} <= set(page.file_uploader(key="upload").allowed_type)
    assert not page.error
    status = page.sidebar.expander[0]
    assert status.label == "Model status"
    lines = texts(status.markdown)
    assert "**video model**: `epoch_007.pt`" in lines and "**audio model**: `best_audio_xception.pth`" in lines
    assert lines.count(":orange[not the published file]") == 2  # random test weights, not the published files
    assert "**face detector**: res10 SSD + Haar cascade" in lines and "**device** cpu" in lines
    assert not page.button  # no Analyse button before a video is uploaded


def test_settings_change(page):
    assert page.checkbox(key="abstain").value  # UNCERTAIN on by default...
    assert page.slider(key="abstain_below").value == 0.55 and not page.slider(key="abstain_below").disabled
    page.checkbox(key="abstain").uncheck().run()  # ...and can be turned off
    assert page.slider(key="abstain_below").disabled
    page.selectbox(key="fusion").select("adaptive").run()
    page.slider(key="threshold").set_value(0.62).run()
    assert page.selectbox(key="fusion").value == "adaptive"
    assert page.slider(key="threshold").value == 0.62
    assert not page.exception and not page.error


def test_analysis_shows_a_verdict_and_its_evidence(page, face_video, upload_tmp):
    page.selectbox(key="fusion").select("adaptive")
    page.slider(key="threshold").set_value(0.45)
    page.number_input(key="max_samples").set_value(4)
    page.checkbox(key="abstain").uncheck()  # random test weights are never confident
    page.run()
    upload(page, face_video)
    assert page.button(key="analyse").disabled is False
    page.button(key="analyse").click().run()
    assert not page.exception, page.exception
    assert not page.error, texts(page.error)

    report = page.session_state["result"]["report"]
    assert report.verdict in ("REAL", "FAKE")
    assert report.settings["fusion"] == "adaptive" and report.settings["threshold"] == 0.45
    assert report.counts["frames_sampled"] == 4 and report.file == "clip.mp4"
    assert report.media["path"] == "clip.mp4"  # the temporary file's path is not in the report
    markdown = texts(page.markdown)
    headline = [m.value for m in page.markdown if m.value.startswith("## ")]
    assert len(headline) == 1 and headline[0].endswith(f" {report.verdict}]")
    assert f"{100 * report.confidence:.0f} %" in texts(page.metric)
    assert "Face (video model)" in markdown and "Voice (audio model)" in markdown
    assert len(page.get("vega_lite_chart")) == 1  # the timeline
    strip = page.get("image")[0].captions  # the frame strip: one captioned frame per kept thumbnail
    assert len(strip) == 4 and all(" s · 1 face" in c for c in strip)
    downloads = page.get("download_button")
    assert len(downloads) == 2

    # the ground truth says correct / incorrect without analysing again
    other = "FAKE" if report.verdict == "REAL" else "REAL"
    page.selectbox(key="truth").select(report.verdict).run()
    assert "Correct: you said this video is" in texts(page.success)
    page.selectbox(key="truth").select(other).run()
    assert "Incorrect: you said this video is" in texts(page.warning)
    assert page.session_state["result"]["report"] is report

    # changed settings are flagged, the old result stays until Analyse is pressed again
    page.slider(key="frame_skip").set_value(3).run()
    assert "settings changed" in texts(page.info)


def test_unreadable_upload_shows_an_error_not_an_exception(page, upload_tmp):
    upload(page, b"this is not a video at all", name="broken.mp4")
    page.button(key="analyse").click().run()
    assert not page.exception
    message = texts(page.error)
    assert "cannot be read as a video" in message and "re-export it as MP4" in message
    assert "broken.mp4" in message and "deepfake-upload-" not in message  # the user's name, not the temp file
    assert "result" not in page.session_state


def test_video_without_faces_explains_not_applicable(page, faceless_video, upload_tmp):
    upload(page, faceless_video, name="landscape.mp4")
    page.button(key="analyse").click().run()
    assert not page.exception and not page.error
    markdown = texts(page.markdown)
    assert "NOT APPLICABLE" in markdown
    assert "No face was found in any sampled frame" in markdown
    assert "smaller frame skip" in texts(page.caption)
    assert not page.get("vega_lite_chart")  # nothing to plot
    assert all(c.endswith("no face") for c in page.get("image")[0].captions)  # but the frames looked at are shown


def test_upload_over_the_cap_is_refused(page, upload_tmp):
    previous = st_config.get_option("server.maxUploadSize")
    st_config.set_option("server.maxUploadSize", 1)
    try:
        page.run()
        upload(page, b"\0" * (1024 * 1024 + 1), name="big.mp4")
        page.button(key="analyse").click().run()
    finally:
        st_config.set_option("server.maxUploadSize", previous)
    assert not page.exception
    assert "over the 1 MB upload limit" in texts(page.error)


def test_missing_models_show_the_pull_command(tmp_path, monkeypatch, face_video):
    from deepfake_core.models import registry

    monkeypatch.setattr(registry, "BUILTIN_DIR", tmp_path / "no-builtin")  # an installation without a built-in model
    monkeypatch.setenv("DEEPFAKE_MODELS_DIR", str(tmp_path))
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.run()
    assert not at.exception
    assert "Model files missing" in texts(at.error)
    assert f"deepfake-detect weights pull --models-dir {tmp_path}" in texts(at.code)
    assert "epoch_007.pt" in texts(at.markdown)
    upload(at, face_video)
    assert at.button(key="analyse").disabled


def test_pull_button_downloads_the_missing_files_and_loads_them(tmp_path, monkeypatch, original_models):
    """The button runs the library's pull for the missing files into the page's models folder (here the
    download is replaced by copying test checkpoints: the real files are hundreds of MB), then loads them."""
    from deepfake_core.models import registry, weights

    monkeypatch.setattr(registry, "BUILTIN_DIR", tmp_path / "no-builtin")  # an installation without a built-in model
    models = tmp_path / "models"
    models.mkdir()
    calls = []

    def pull(names=None, models_dir=None, mirror=None, progress=True):
        calls.append((list(names), str(models_dir)))
        for name in names:
            entry = registry.registry_entry(name)
            shutil.copy(original_models / entry.filename, Path(models_dir) / entry.filename)
            progress(entry.filename, entry.size, entry.size)
        return [Path(models_dir) / registry.registry_entry(n).filename for n in names]

    monkeypatch.setattr(weights, "pull", pull)
    monkeypatch.setenv("DEEPFAKE_MODELS_DIR", str(models))
    monkeypatch.setenv("DEEPFAKE_DEVICE", "cpu")
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.run()
    button = at.button(key="pull")
    assert button.label.startswith("Download 4 missing files (")
    button.click().run()
    assert not at.exception, at.exception
    assert calls == [(["video", "audio", "face-net", "face-weights"], str(models.resolve()))]
    assert not at.error, texts(at.error)
    assert at.sidebar.expander[0].label == "Model status"  # loaded now
    assert not [b for b in at.button if b.key == "pull_optional"]  # nothing left to download


# -- serve ---------------------------------------------------------------------------------------------
def test_serve_is_a_subcommand_and_finds_the_packaged_page():
    args = build_parser().parse_args(["serve", "--port", "9123", "--host", "0.0.0.0"])
    assert args.func.__module__ == "deepfake_core.cli.serve"
    flags = streamlit_flags(args)
    assert "--server.port=9123" in flags and "--server.address=0.0.0.0" in flags
    assert f"--server.maxUploadSize={DEFAULT_MAX_UPLOAD_MB}" in flags and "--server.headless=true" in flags
    assert PAGE.is_file() and PAGE.parent.name == "webapp"  # inside the package, so `pip install .` ships it


def test_serve_options_agree_with_the_config_for_streamlit_run():
    config = tomllib.loads((ROOT / "app" / ".streamlit" / "config.toml").read_text())
    flat = {f"{section}.{key}": value for section, values in config.items() for key, value in values.items()}
    assert flat == SERVER_OPTIONS


def test_serve_refuses_a_busy_port(capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        code = main(["serve", "--port", str(port)])
    err = capsys.readouterr().err
    assert code == 2 and f"cannot listen on 127.0.0.1:{port}" in err and "--port" in err


def test_the_page_only_calls_the_library():
    """STYLE 9: no torch, cv2 or timm in the page or its helpers."""
    for path in [APP, PAGE, PAGE.with_name("present.py")]:
        tree = ast.parse(path.read_text())
        imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                    for alias in node.names}
        imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                     if isinstance(node, ast.ImportFrom) and node.module}
        assert not imported & {"torch", "cv2", "timm", "torchvision"}, path


def test_calibration_sets_the_defaults_as_analyze_does(tmp_path, monkeypatch, original_models, face_video,
                                                       upload_tmp):
    """A calibration.json fitted for these model files sets the starting values, names itself in the
    sidebar, and reaches the report; one fitted for other files is ignored."""
    from conftest import face_files_dir
    from deepfake_core.models.calibration import Calibration
    from deepfake_core.models.registry import sha256_file

    face_files_dir()
    models = tmp_path / "models"
    models.mkdir()
    for f in original_models.iterdir():
        (models / f.name).symlink_to(f)
    Calibration(video_sha256=sha256_file(models / "epoch_007.pt"),
                audio_sha256=sha256_file(models / "best_audio_xception.pth"), audio_temperature=3.5,
                video_temperature=1.7, threshold=0.42, fusion="adaptive",
                details={"data": "a test set"}).save(models / "calibration.json")
    monkeypatch.setenv("DEEPFAKE_MODELS_DIR", str(models))
    monkeypatch.setenv("DEEPFAKE_DEVICE", "cpu")
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.run()
    assert not at.exception, at.exception
    assert at.slider(key="audio_temperature").value == 3.5
    assert at.slider(key="threshold").value == 0.42
    assert at.selectbox(key="fusion").value == "adaptive"  # the threshold was fitted for adaptive fusion
    assert "calibration.json" in texts(at.sidebar.caption)
    at.number_input(key="max_samples").set_value(3).run()
    upload(at, face_video)
    at.button(key="analyse").click().run()
    report = at.session_state["result"]["report"]
    assert report.settings["video_temperature"] == 1.7 and report.settings["calibration"].endswith("calibration.json")

    Calibration(video_sha256="0" * 64, audio_sha256=None, audio_temperature=9.0).save(models / "calibration.json")
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.run()
    assert at.slider(key="audio_temperature").value == 2.0


def test_video_model_picker_offers_what_is_installed(original_models, monkeypatch):
    from deepfake_core.models import registry
    from deepfake_core.webapp import streamlit_app

    choices = streamlit_app.video_model_choices(str(original_models))
    assert choices[:2] == ["automatic", "original"]
    assert ("builtin" in choices) == (registry.builtin_video_file() is not None)
    monkeypatch.setattr(registry, "builtin_video_file", lambda: None)
    assert streamlit_app.video_model_choices(str(original_models)) == ["automatic", "original"]


def test_audio_upload_gets_a_voice_verdict_and_timeline(page, tmp_path, upload_tmp):
    from conftest import speech_like, write_audio_only

    path = write_audio_only(tmp_path / "note.m4a", speech_like(4.0))
    page.file_uploader(key="upload").set_value(("voice-note.m4a", path.read_bytes(), "audio/mp4"))
    page.run()
    assert not page.exception, page.exception
    page.button(key="analyse").click().run()
    assert not page.exception and not page.error, texts(page.error)
    report = page.session_state["result"]["report"]
    assert report.verdict in ("REAL", "FAKE", "UNCERTAIN") and report.counts["audio_windows"] == 3
    assert "the voice alone" in texts(page.markdown)
    assert len(page.get("vega_lite_chart")) == 1  # the voice timeline
