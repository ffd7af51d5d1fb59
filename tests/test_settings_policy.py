"""One settings rule for every front end (Detector.resolve_settings): one generated clip analysed through the CLI, the
page (AppTest), the API (ASGI) and the Ray scan's analyser, with default settings and a calibration.json present,
gets the same settings and the same verdict everywhere.

The models folder is built so that the old copies of the rule disagreed: its calibration was fitted for fusion
noisy_or (the CLI used to keep fusion equal and drop the threshold), and its audio model names a fusion of its
own (max) that the calibration's must win over."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import httpx
import pytest
import torch
from streamlit.testing.v1 import AppTest

from conftest import FACE_FILES, SHARED_MODELS, face_files_dir
from deepfake_core import AnalysisSettings
from deepfake_core.models.calibration import Calibration
from deepfake_core.models.checkpoints import save_safetensors
from deepfake_core.cli import main
from deepfake_core.analysis.load import DetectorOptions, load_detector
from deepfake_core.models.networks import ModelSpec, build_model, speech_spec
from deepfake_core.models.registry import sha256_file

APP = Path(__file__).resolve().parents[1] / "app" / "streamlit_app.py"
TIMEOUT = 600  # seconds for a page run or an API analysis (a loaded 2-vCPU machine)
CALIBRATED = dict(fusion="noisy_or", threshold=0.45, video_temperature=1.3)  # what the rule must give
LITE_VIDEO = ModelSpec("tf_efficientnet_lite0", "video", "linear", 64, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """The res10 files, small random video and audio models under the original models' names (so the page, which
    reads DEEPFAKE_MODELS_DIR, loads them), the audio model naming its own fusion and temperature, and a
    calibration.json fitted for these files."""
    face_files_dir()
    folder = tmp_path_factory.mktemp("policy_models")
    for name in FACE_FILES:
        shutil.copy(SHARED_MODELS / name, folder / name)
    torch.manual_seed(0)
    save_safetensors(build_model(LITE_VIDEO).eval(), LITE_VIDEO, folder / "epoch_007.safetensors", {"name": "t-video"})
    save_safetensors(build_model(speech_spec()).eval(), speech_spec(), folder / "best_audio_xception.safetensors",
                     {"name": "t-audio", "default_fusion": "max", "temperature": "1.7"})
    Calibration(video_sha256=sha256_file(folder / "epoch_007.safetensors"),
                audio_sha256=sha256_file(folder / "best_audio_xception.safetensors"),
                details={"data": "a test set"}, **CALIBRATED).save(folder / "calibration.json")
    return folder


def via_cli(models, clip, capsys) -> dict:
    capsys.readouterr()
    assert main(["analyze", str(clip), "--json", "--quiet", "--models-dir", str(models), "--device", "cpu"]) == 0
    return json.loads(capsys.readouterr().out)


def via_page(models, clip, monkeypatch) -> dict:
    monkeypatch.setenv("DEEPFAKE_MODELS_DIR", str(models))
    monkeypatch.setenv("DEEPFAKE_DEVICE", "cpu")
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.run()
    assert not at.exception and not at.error, (at.exception, at.error)
    at.file_uploader(key="upload").set_value((clip.name, clip.read_bytes(), "video/mp4"))
    at.run()
    at.button(key="analyse").click().run()
    assert not at.exception and not at.error, (at.exception, at.error)
    return at.session_state["result"]["report"].to_dict()


def via_api(models, clip) -> dict:
    from deepfake_core.api.app import ApiConfig, create_app

    detector = load_detector(DetectorOptions(models_dir=str(models), device="cpu"))

    async def scenario():
        app = create_app(detector, ApiConfig(wait_timeout_s=TIMEOUT))
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://api.test", timeout=TIMEOUT) as client:
                r = await client.post("/v1/analyses", params={"wait": "true"},
                                      files={"file": (clip.name, clip.read_bytes(), "video/mp4")})
                assert r.status_code == 200, r.text
                return r.json()["report"]

    return asyncio.run(scenario())


def via_ray_analyser(models, clip) -> dict:
    """The Ray scan's actor class, built as the scan builds it (no Ray needed to construct it)."""
    from deepfake_core.scan.ray_scan import Analyser

    analyser = Analyser(options=DetectorOptions(models_dir=str(models), device="cpu"), given={},
                        use_calibration=True, jsonl=True, ledger=None, max_attempts=1)
    return analyser.detector.analyze(clip, analyser.settings, notes=analyser.notes).to_dict()


def test_one_file_gets_the_same_settings_and_verdict_everywhere(models, face_video, capsys, monkeypatch):
    reports = {"cli": via_cli(models, face_video, capsys), "page": via_page(models, face_video, monkeypatch),
               "api": via_api(models, face_video), "ray": via_ray_analyser(models, face_video)}
    cli = reports["cli"]
    # the rule: no fusion given, so the calibration's fusion comes with its threshold (over the audio model's own
    # fusion); its temperatures; the audio model's own temperature is not mixed with a calibration fitted without it
    for name, value in CALIBRATED.items():
        assert cli["settings"][name] == value, name
    assert cli["settings"]["audio_temperature"] == AnalysisSettings().audio_temperature
    assert cli["settings"]["calibration"].endswith("calibration.json")
    assert any(note.startswith("calibrated by") and "fusion noisy_or" in note for note in cli["notes"])
    assert cli["verdict"] in ("REAL", "FAKE", "UNCERTAIN") and cli["counts"]["faces"] > 0
    for front_end, report in reports.items():
        settings = dict(report["settings"])
        settings.pop("max_file_mb")  # the page sets its upload cap as the file limit; a limit, not a judgement
        expected = {k: v for k, v in cli["settings"].items() if k != "max_file_mb"}
        assert settings == expected, front_end
        assert report["verdict"] == cli["verdict"], front_end
        assert report["fused_real_prob"] == pytest.approx(cli["fused_real_prob"], abs=1e-6), front_end
        assert report["notes"] == cli["notes"], front_end


def test_given_values_win_and_a_threshold_for_another_fusion_is_not_applied(models):
    detector = load_detector(DetectorOptions(models_dir=str(models), device="cpu"))
    settings, notes = detector.resolve_settings({"fusion": "adaptive"})
    assert settings.fusion == "adaptive" and settings.threshold == 0.5  # fitted for noisy_or: not applied
    assert settings.video_temperature == 1.3 and "fitted for fusion noisy_or, not adaptive" in notes[0]
    settings, _ = detector.resolve_settings({"threshold": 0.6})
    assert settings.threshold == 0.6 and settings.fusion == "max"  # the audio model's own fusion, not the calibration's
    settings, notes = detector.resolve_settings({}, use_calibration=False)
    assert (settings.fusion, settings.audio_temperature, settings.calibration, notes) == ("max", 1.7, None, [])
    # an AnalysisSettings counts the fields that differ from the defaults as given
    settings, _ = detector.resolve_settings(AnalysisSettings(max_samples=7))
    assert settings.max_samples == 7 and settings.fusion == "noisy_or" and settings.threshold == 0.45
