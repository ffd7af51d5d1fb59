"""Model files never reach the network: hub and unknown architectures are refused, the hubs are offline."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from deepfake_core.models.checkpoints import load_model, spec_metadata
from deepfake_core.errors import CheckpointError
from deepfake_core.models.networks import KNOWN_ARCHITECTURES, ORIGINAL_VIDEO, build_model

ROOT = Path(__file__).resolve().parents[1]


class Listener:
    """A TCP listener on 127.0.0.1 that records every connection and answers HTTP 404."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.requests: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self):
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(2)
                try:
                    self.requests.append(conn.recv(4096))
                    conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                except OSError:
                    self.requests.append(b"")

    def close(self):
        self._stop.set()
        self._thread.join()
        self.sock.close()


@pytest.fixture
def listener():
    server = Listener()
    yield server
    server.close()


def hub_env(port: int) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_OFFLINE")}
    env.update(HF_ENDPOINT=f"http://127.0.0.1:{port}", PYTHONPATH=str(ROOT / "src"), NO_PROXY="*",
               HF_HUB_ETAG_TIMEOUT="3", HF_HUB_DOWNLOAD_TIMEOUT="3")
    env.pop("HTTP_PROXY", None), env.pop("HTTPS_PROXY", None)
    return env


def hub_named_file(path: Path, architecture: str) -> Path:
    meta = spec_metadata(ORIGINAL_VIDEO)
    meta["architecture"] = architecture
    save_file({"fc.weight": torch.zeros(2, 2048)}, str(path), metadata=meta)
    return path


def test_the_listener_sees_a_hub_request(listener, tmp_path):
    """The control: with the hub online and its endpoint pointed at the listener, a hub lookup reaches it."""
    code = ("import huggingface_hub\n"
            "try:\n    huggingface_hub.hf_hub_download('timm/legacy_xception.tf_in1k', 'config.json', "
            f"cache_dir={str(tmp_path)!r})\nexcept Exception as e:\n    print(type(e).__name__)\n")
    subprocess.run([sys.executable, "-c", code], env=hub_env(listener.port), timeout=120, capture_output=True)
    assert listener.requests, "the control request never reached the listener"


@pytest.mark.parametrize("architecture", ["hf-hub:timm/legacy_xception.tf_in1k", "timm/resnet18.a1_in1k",
                                          "resnet18"])
def test_a_hub_named_model_file_makes_no_request(listener, tmp_path, face_video, architecture):
    model = hub_named_file(tmp_path / "hub.safetensors", architecture)
    result = subprocess.run(
        [sys.executable, "-m", "deepfake_core", "analyze", str(face_video), "--video-model", str(model),
         "--models-dir", str(tmp_path), "--quiet"],
        env=hub_env(listener.port), timeout=300, capture_output=True, text=True)
    assert result.returncode == 3, result.stderr
    assert "Traceback" not in result.stderr
    assert f"names the architecture {architecture!r}" in result.stderr
    assert ("model hub name" in result.stderr) == (architecture != "resnet18")
    assert "legacy_xception" in result.stderr  # the known ones are listed
    assert listener.requests == []


def test_loading_refuses_before_building(tmp_path):
    with pytest.raises(CheckpointError, match="never fetched from a hub"):
        load_model(hub_named_file(tmp_path / "hub.safetensors", "hf_hub:org/model"), "video")


def test_every_known_architecture_builds_offline():
    import huggingface_hub.constants

    from deepfake_core.models.networks import GE2E_LSTM, SPEECH_CNN, blank_input, speech_spec, voice_encoder_spec

    speech = {SPEECH_CNN: speech_spec(), GE2E_LSTM: voice_encoder_spec()}
    for architecture in KNOWN_ARCHITECTURES:
        spec = speech.get(architecture) or ORIGINAL_VIDEO.__class__(architecture, "video", "linear", 64,
                                                                    (0.5,) * 3, (0.5,) * 3)
        net = build_model(spec).eval()
        # building a model switched the hubs offline (models.build_model), also without configure_process()
        assert os.environ["HF_HUB_OFFLINE"] == "1" and huggingface_hub.constants.HF_HUB_OFFLINE
        with torch.inference_mode():
            assert net(blank_input(spec)[None]).shape == (1, 2)


def test_malformed_metadata_is_a_checkpoint_error(tmp_path):
    meta = spec_metadata(ORIGINAL_VIDEO)
    meta["input_size"] = "100000"
    path = tmp_path / "big.safetensors"
    save_file({"x": torch.zeros(1)}, str(path), metadata=meta)
    with pytest.raises(CheckpointError, match="input_size 100000"):
        load_model(path, "video")
