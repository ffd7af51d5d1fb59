"""The pretrained voice encoder candidate (Resemblyzer's GE2E LSTM re-implemented in plain torch): its mel front
end, the weight conversion, and a tiny run of train/voice_embed.py producing a file the product loads."""

from __future__ import annotations

import json
from pathlib import Path

import librosa
import numpy as np
import pytest
import torch

from conftest import speech_like
from deepfake_core.checkpoints import load_model
from deepfake_core.errors import InputError
from deepfake_core.models import VoiceEncoderClassifier, build_model, voice_encoder_spec
from deepfake_core.speech import ge2e_mel, speech_windows
from deepfake_core.train.voice_embed import load_encoder
from test_speech import _tiny_corpus, _write


def test_ge2e_mel_is_librosas_mel_at_minus_30_dbfs_whatever_the_gain():
    x = speech_like(2.0, seed=3).astype(np.float32)
    y = x * (10 ** (-30 / 20) / np.sqrt(np.mean(x ** 2)))
    ref = librosa.feature.melspectrogram(y=y, sr=16000, n_fft=400, hop_length=160, n_mels=40)
    for gain in (0.05, 1.0, 3.0):
        mel = ge2e_mel(x * gain).numpy()
        assert mel.shape == ref.shape == (40, 201)
        assert np.abs(mel - ref).max() <= 1e-4 * ref.max()


def _resemblyzer_checkpoint(path: Path) -> tuple[torch.nn.LSTM, torch.nn.Linear]:
    """A file in pretrained.pt's layout (random weights): {"step", "model_state": lstm.*_lK, linear.*, ...}."""
    torch.manual_seed(1)
    lstm, linear = torch.nn.LSTM(40, 256, 3, batch_first=True), torch.nn.Linear(256, 256)
    state = {f"lstm.{k}": v for k, v in lstm.state_dict().items()}
    state.update({f"linear.{k}": v for k, v in linear.state_dict().items()})
    state.update({"similarity_weight": torch.ones(1), "similarity_bias": torch.zeros(1)})
    torch.save({"step": 1, "model_state": state, "optimizer_state": {}}, path)
    return lstm, linear


def test_converted_encoder_computes_resemblyzers_embedding(tmp_path):
    lstm, linear = _resemblyzer_checkpoint(tmp_path / "pretrained.pt")
    model = load_encoder(tmp_path / "pretrained.pt")
    x = torch.rand(3, 1, 40, 160)
    with torch.no_grad():
        _, (hidden, _) = lstm(x[:, 0].transpose(1, 2))
        ref = torch.relu(linear(hidden[-1]))
        ref = ref / ref.norm(dim=1, keepdim=True)
        stats = model.statistics(x)
    assert stats.shape == (3, VoiceEncoderClassifier.NUM_FEATURES)
    assert torch.allclose(stats[:, -256:], ref, atol=1e-5)
    torch.save({"model_state": {"conv.weight": torch.zeros(1)}}, tmp_path / "other.pt")
    with pytest.raises(InputError, match="pretrained.pt"):
        load_encoder(tmp_path / "other.pt")


def test_voice_encoder_spec_builds_and_scores_windows():
    model = build_model(voice_encoder_spec()).eval()
    x, _, _ = speech_windows(speech_like(3.0), "ge2e")
    assert x.shape[1:] == (1, 40, 201)
    with torch.no_grad():
        assert model(x).shape == (len(x), 2)


def test_tiny_voice_embed_run_writes_a_loadable_model(tmp_path):
    from deepfake_core.train.speech_train import main as speech_main
    from deepfake_core.train.voice_embed import main

    _resemblyzer_checkpoint(tmp_path / "pretrained.pt")
    corpus = _tiny_corpus(tmp_path / "corpus")
    cache, feats, run = tmp_path / "cache", tmp_path / "feats.npz", tmp_path / "run"
    out = tmp_path / "voice.safetensors"
    enc = ["--encoder", str(tmp_path / "pretrained.pt")]
    assert speech_main(["cache", str(corpus), "--out", str(cache), "--views", "2"]) == 0
    assert main(["features", str(cache), *enc, "--out", str(feats)]) == 0
    assert main(["lofo", str(feats), str(cache), "--out", str(run), "--c", "0.01", "--c", "1"]) == 0
    lofo = json.loads((run / "lofo.json").read_text())
    assert lofo["best_c"] in (0.01, 1.0) and "vits-lineage" in lofo["families"]
    assert main(["final", str(feats), str(cache), *enc, "--lofo", str(run / "lofo.json"), "--out", str(out)]) == 0
    loaded = load_model(out, "audio")  # strict load, architecture from the metadata
    assert loaded.spec.head == "ge2e-stats-linear" and loaded.metadata["front_end"] == "ge2e"
    assert "Resemblyzer" in loaded.metadata["encoder"] and loaded.metadata["encoder_license"] == "Apache-2.0"
    x, _, _ = speech_windows(speech_like(2.0), "ge2e")
    with torch.no_grad():
        assert loaded.module.float()(x).shape == (1, 2)
    assert main(["features", str(cache), "--encoder", str(tmp_path / "missing.pt"), "--out", str(feats)]) == 2


def test_analyze_uses_a_voice_encoder_file_on_a_wav(tmp_path):
    from deepfake_core import Detector
    from deepfake_core.checkpoints import save_safetensors

    path = save_safetensors(build_model(voice_encoder_spec()).eval(), voice_encoder_spec(),
                            tmp_path / "voice.safetensors",
                            {"name": "test voice encoder", "front_end": "ge2e", "temperature": "2.0"},
                            dtype=torch.float16)
    (tmp_path / "no_models").mkdir()
    det = Detector.load(tmp_path / "no_models", device="cpu", audio_model=path, video_model="original",
                        video_optional=True)
    wav = _write(tmp_path / "voice.wav", speech_like(5.0, seed=7), 16_000, "pcm_s16le")
    report = det.analyze(wav, det.default_settings())
    assert report.verdict in ("REAL", "FAKE", "UNCERTAIN") and report.reason in (None, "abstained")
    assert report.modalities["audio"].available and len(report.audio_windows) >= 3
    assert report.settings["audio_temperature"] == 2.0
    assert report.to_dict()["models"]["audio"]["name"] == "test voice encoder"
