"""The audio attempts (research/audio): seeded codec augmentation, the ship rule, tiny training runs of the
speech CNN and of the pretrained voice encoder's head, the weight conversion, and the fusion choice."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from conftest import speech_like
from deepfake_core.errors import InputError
from deepfake_core.media.speech import has_speech, speech_windows
from deepfake_core.models.checkpoints import load_model
from deepfake_core.models.networks import VoiceEncoderClassifier
from deepfake_core.train.demo import encode_s16
from research.audio.audio_augment import CODECS, codec_roundtrip, degrade
from research.audio.speech_train import ship_decision
from research.audio.voice_embed import load_encoder


def _write(path: Path, samples: np.ndarray, rate: int, codec: str, fmt: str | None = None) -> Path:
    """Mono float samples at `rate` written with PyAV's `codec` (pcm_s16le, flac, libmp3lame, aac)."""
    with av.open(str(path), mode="w", format=fmt) as out:
        stream = out.add_stream(codec, rate=rate, layout="mono")
        encode_s16(out, stream, samples, rate)
    return path


@pytest.mark.parametrize("codec", sorted(CODECS))
def test_codec_roundtrip_keeps_the_speech(codec):
    voice = speech_like(1.5, seed=5)
    out = codec_roundtrip(voice, codec, 48)
    assert out.dtype == np.float32 and abs(len(out) - len(voice)) < 2_500  # encoder delay at most
    assert has_speech(out)


def test_degrade_is_deterministic_with_a_seed():
    voice = speech_like(2.0, seed=6)
    runs = [degrade(voice, seed) for seed in (1, 1, 2, 3, 4)]
    assert np.array_equal(runs[0][0], runs[1][0]) and runs[0][1] == runs[1][1]
    assert any(not np.array_equal(runs[0][0], r[0]) or r[1] != runs[0][1] for r in runs[2:])
    assert all(np.max(np.abs(r[0])) < 1.0 for r in runs)


def test_ship_rule():
    assert ship_decision(0.85, 0.20)[0]
    assert ship_decision(0.80, 0.25)[0]
    ok, why = ship_decision(0.79, 0.10)
    assert not ok and "LOFO mean AUC 0.790 < 0.80" in why
    ok, why = ship_decision(0.95, 0.30)
    assert not ok and "EER 30.0% > 25%" in why
    assert not ship_decision(None, 0.1)[0] and not ship_decision(0.9, float("nan"))[0]


def _tiny_corpus(root: Path) -> Path:
    """A train-audio-shaped folder: 'real' speech-like clips and 'fake' ones (clipped, hissier) of two systems,
    each on its own page with that page's reals."""
    rows = []
    for i in range(4):
        for label, system in (("real", "bona-fide"), ("fake", "AutoVC" if i % 2 else "FreeVC")):
            voice = speech_like(2.5, seed=10 + i)
            if label == "fake":
                voice = np.clip(voice * 3, -0.3, 0.3) + np.random.default_rng(i).normal(0, 0.01, voice.shape)
            page = "pageA" if i % 2 else "pageB"
            rel = f"{label}/{page}/{page}_{label}{i}.wav"
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            _write(root / rel, voice.astype(np.float32), 16_000, "pcm_s16le")
            rows.append({"path": rel, "label": label, "system": system, "source_repo": page})
    with open(root / "labels.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["path", "label", "system", "source_repo"])
        writer.writeheader()
        writer.writerows(rows)
    return root


def test_tiny_training_run_writes_a_loadable_model(tmp_path):
    from research.audio.speech_train import main

    corpus = _tiny_corpus(tmp_path / "corpus")
    cache, run, out = tmp_path / "cache", tmp_path / "run", tmp_path / "model.safetensors"
    assert main(["cache", str(corpus), "--out", str(cache), "--views", "2"]) == 0
    common = ["--epochs", "1", "--per-epoch", "64"]
    assert main(["lofo", str(cache), "--out", str(run), "--family", "vits-lineage", "--family", "early-vc",
                 *common]) == 0
    lofo = json.loads((run / "lofo.json").read_text())
    assert set(lofo["families"]) == {"vits-lineage", "early-vc"} and lofo["best_epoch"] == 1
    assert main(["final", str(cache), "--lofo", str(run / "lofo.json"), "--out", str(out), *common]) == 0
    loaded = load_model(out, "audio")
    assert loaded.spec.head == "speech-cnn" and loaded.metadata["front_end"] == "logmel"
    assert float(loaded.metadata["temperature"]) > 0 and "non-commercial" in loaded.metadata["data_terms"]
    x, _, _ = speech_windows(speech_like(2.0))
    assert loaded.module(x).shape == (1, 2)
    assert main(["lofo", str(tmp_path / "nowhere"), "--out", str(run)]) == 2


def test_fusion_choice_prefers_either_fake_when_faces_are_fake_over_real_voices():
    from research.audio.fusion_choice import compare, fused_p_fake

    rng = np.random.default_rng(0)
    rows = []
    for i in range(40):  # generated faces over real voices, and real videos
        fake = i % 2 == 0
        p_video = float(np.clip(rng.normal(0.8 if fake else 0.3, 0.1), 0.01, 0.99))
        rows.append({"path": f"v{i}.mp4", "label": "fake" if fake else "real", "video_p_fake": p_video,
                     "audio_margin": float(rng.normal(-4.0, 0.5))})  # every voice confidently real
    result = compare(rows, audio_temperature=1.0)
    s = result["strategies"]
    assert s["equal"]["recall"] < s["max"]["recall"]  # averaging with a real voice hides the fake face
    assert result["choice"] in ("max", "video_only", "noisy_or") and result["choice"] != "equal"
    assert fused_p_fake("noisy_or", np.array([np.log(19)]), np.array([-np.log(19)]))[0] == pytest.approx(0.9525)


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


def test_tiny_voice_embed_run_writes_a_loadable_model(tmp_path):
    from research.audio.speech_train import main as speech_main
    from research.audio.voice_embed import main

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
