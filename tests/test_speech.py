"""The built-in audio model's pieces: format normalisation, speech presence, seeded codec augmentation, the
either-modality fusion, the ship rule, a tiny training run, voice-only reports for audio files, and the pretrained
voice encoder candidate (mel front end, weight conversion, a tiny run writing a file the product loads)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import av
import librosa
import numpy as np
import pytest
import torch

from conftest import face_files_dir, moving_face_frames, speech_like, tone, write_audio_only, write_video
from deepfake_core.media.audio import read_audio
from deepfake_core.models.checkpoints import load_model, save_safetensors
from deepfake_core.errors import InputError
from deepfake_core.analysis.fusion import either_fake, fuse
from deepfake_core.models.networks import VoiceEncoderClassifier, build_model, speech_spec, voice_encoder_spec
from deepfake_core.media.speech import features, ge2e_mel, has_speech, speech_spans, speech_windows
from deepfake_core.train.audio_augment import CODECS, codec_roundtrip, degrade, encode_s16
from deepfake_core.train.speech_train import ship_decision
from deepfake_core.train.voice_embed import load_encoder


def _write(path: Path, samples: np.ndarray, rate: int, codec: str, fmt: str | None = None,
           sample_format: str = "s16") -> Path:
    """Mono float samples at `rate` written with PyAV's `codec` (pcm_s16le, flac, libmp3lame, aac)."""
    with av.open(str(path), mode="w", format=fmt) as out:
        stream = out.add_stream(codec, rate=rate, layout="mono")
        encode_s16(out, stream, samples, rate)
    return path


def _resample(samples: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    import librosa

    return librosa.resample(samples, orig_sr=rate_in, target_sr=rate_out).astype(np.float32)


# -- format normalisation --------------------------------------------------------------------------------
def test_48k_flac_and_16k_wav_of_one_signal_give_the_same_features(tmp_path):
    voice48 = speech_like(2.0, rate=48_000, seed=1)
    flac = _write(tmp_path / "v.flac", voice48, 48_000, "flac")
    wav = _write(tmp_path / "v.wav", _resample(voice48, 48_000, 16_000), 16_000, "pcm_s16le")
    a, b = read_audio(flac), read_audio(wav)
    assert abs(len(a) - len(b)) <= 16
    n = min(len(a), len(b))
    fa, fb = features(a[:n]), features(b[:n])
    assert fa.shape == fb.shape == (1, 64, n // 160 + 1)
    # the same speech whatever the container, rate and codec: features agree to a small fraction of their spread
    assert float((fa - fb).abs().mean()) < 0.05
    other = features(read_audio(_write(tmp_path / "o.wav", speech_like(2.0, seed=9) * 0.5, 16_000, "pcm_s16le"))[:n])
    assert float((fa - other).abs().mean()) > 5 * float((fa - fb).abs().mean())


def test_features_ignore_gain():
    voice = speech_like(2.0, seed=2)
    assert torch.allclose(features(voice), features(voice * 0.1), atol=1e-3)


# -- speech presence --------------------------------------------------------------------------------------
def test_vad_on_generated_signals():
    rng = np.random.default_rng(0)
    assert not has_speech(np.zeros(32_000, np.float32))
    assert not has_speech(tone(2.0))  # a steady tone
    assert not has_speech((0.1 * rng.standard_normal(32_000)).astype(np.float32))  # steady white noise
    assert has_speech(speech_like(2.0))
    noisy = speech_like(2.0, seed=3) + (0.003 * rng.standard_normal(32_000)).astype(np.float32)
    assert has_speech(noisy)
    assert not has_speech(speech_like(2.0) * 1e-4)  # far below the -50 dBFS floor


def test_speech_windows_skip_silence_and_pad_short_tracks():
    track = np.concatenate([speech_like(2.0), np.zeros(32_000, np.float32), speech_like(2.0, seed=4)])
    x, times, looked = speech_windows(track)
    assert looked == 5 and times == [(0.0, 2.0), (1.0, 3.0), (3.0, 5.0), (4.0, 6.0)]  # 2-4 s is silent
    assert x.shape == (4, 1, 64, 201)
    x, times, looked = speech_windows(speech_like(1.3))  # shorter than one window: one wrap-padded window
    assert looked == 1 and times == [(0.0, 1.3)] and x.shape == (1, 1, 64, 201)
    assert len(speech_spans(int(6.9 * 16_000))) == 6  # the original windows: the last 1.9 s one is 95 % full
    assert speech_spans(int(0.8 * 16_000)) == []  # under a second: nothing to judge


# -- augmentation -----------------------------------------------------------------------------------------
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


# -- fusion -----------------------------------------------------------------------------------------------
def _logits(p_fake: float) -> np.ndarray:
    return np.array([[np.log(p_fake), np.log(1 - p_fake)]])


def test_either_fusion_flags_a_fake_face_over_a_real_voice():
    face, voice = _logits(0.95), _logits(0.05)
    for strategy, expected in (("noisy_or", 1 - 0.05 * 0.95), ("max", 0.95)):
        fused = fuse(face, voice, strategy, audio_temperature=1.0)
        assert fused.p_fake[0] == pytest.approx(expected)
        assert fused.p_fake[0] > 0.5  # FAKE
    equal = fuse(face, voice, "equal", audio_temperature=1.0)
    assert equal.p_fake[0] == pytest.approx(0.5)  # the old average cannot decide
    assert either_fake("noisy_or", [0.2], [0.2])[0] == pytest.approx(0.36)
    assert either_fake("max", [0.2, 0.7], [0.4, 0.1]).tolist() == pytest.approx([0.4, 0.7])
    # without audio the face stands alone
    assert fuse(face, None, "noisy_or").p_fake[0] == pytest.approx(0.95)


# -- the ship rule ----------------------------------------------------------------------------------------
def test_ship_rule():
    assert ship_decision(0.85, 0.20)[0]
    assert ship_decision(0.80, 0.25)[0]
    ok, why = ship_decision(0.79, 0.10)
    assert not ok and "LOFO mean AUC 0.790 < 0.80" in why
    ok, why = ship_decision(0.95, 0.30)
    assert not ok and "EER 30.0% > 25%" in why
    assert not ship_decision(None, 0.1)[0] and not ship_decision(0.9, float("nan"))[0]


# -- a tiny training run ----------------------------------------------------------------------------------
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
    from deepfake_core.train.speech_train import main

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


# -- voice-only reports -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def speech_model(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("speech") / "speech.safetensors"
    return save_safetensors(build_model(speech_spec()).eval(), speech_spec(), path,
                            {"name": "test speech cnn", "front_end": "logmel", "temperature": "1.5"},
                            dtype=torch.float16)


@pytest.fixture(scope="module")
def voice_detector(speech_model, tmp_path_factory):
    from deepfake_core import Detector

    empty = tmp_path_factory.mktemp("no_models")
    # no face model: the original is not in the folder (the built-in one is not asked for)
    return Detector.load(empty, device="cpu", audio_model=speech_model, video_model="original", video_optional=True)


@pytest.mark.parametrize("suffix,codec,fmt", [(".wav", "pcm_s16le", None), (".mp3", "libmp3lame", None),
                                              (".m4a", "aac", "ipod")])
def test_analyze_audio_file_gives_a_voice_report(voice_detector, tmp_path, suffix, codec, fmt):
    path = _write(tmp_path / f"voice{suffix}", speech_like(5.0, seed=7), 16_000, codec, fmt)
    report = voice_detector.analyze(path, voice_detector.default_settings())
    # judged (random test weights sit near 0.5, inside the default uncertain band: UNCERTAIN counts as judged)
    assert report.verdict in ("REAL", "FAKE", "UNCERTAIN") and report.reason in (None, "abstained")
    assert report.settings["audio_temperature"] == 1.5  # the file's fitted temperature
    audio = report.modalities["audio"]
    assert audio.available and audio.count == len(report.audio_windows) >= 3
    assert not report.modalities["video"].available and report.timeline == []
    assert report.fused_real_prob == pytest.approx(1 - np.mean([w.p_fake for w in report.audio_windows]))
    assert any("voice alone" in n for n in report.notes)
    assert report.to_dict()["models"]["audio"]["name"] == "test speech cnn"


def test_analyze_silence_is_not_applicable_with_the_reason(voice_detector, tmp_path):
    path = write_audio_only(tmp_path / "silence.m4a", np.zeros(48_000, np.float32))
    report = voice_detector.analyze(path)
    assert report.verdict == "NOT_APPLICABLE" and report.reason == "no_speech"
    assert "no speech" in report.modalities["audio"].note and "no speech" in report.explanation.lower()


def test_video_needs_the_video_model(voice_detector, face_video):
    from deepfake_core.errors import ModelFilesMissing

    with pytest.raises(ModelFilesMissing):
        voice_detector.analyze(face_video)
    report = voice_detector.analyze(face_video, voice_detector.default_settings().replace(audio_only=True))
    assert report.verdict in ("REAL", "FAKE", "UNCERTAIN") and report.modalities["audio"].count == 3  # 0-2, 1-3, 2-4 s


def test_original_audio_checkpoint_judges_audio_files_too(original_models, tmp_path):
    from deepfake_core import Detector

    face_files_dir()
    detector = Detector.load(original_models, device="cpu")
    assert detector.audio.spec.head == "mlp-512-256"  # the original wins when installed
    path = write_audio_only(tmp_path / "voice.m4a", speech_like(3.0))
    report = detector.analyze(path)
    assert report.verdict in ("REAL", "FAKE", "UNCERTAIN") and report.modalities["audio"].count == 2


def test_video_without_speech_is_judged_by_the_face_alone(detector, tmp_path):
    path = write_video(tmp_path / "tone.mp4", moving_face_frames(50), audio=tone(2.0))
    report = detector.analyze(path)
    assert report.verdict in ("REAL", "FAKE", "UNCERTAIN")
    assert not report.modalities["audio"].available and "no speech" in report.modalities["audio"].note
    assert all(r.weight_video == 1.0 and r.audio_p_fake is None for r in report.timeline)


def test_cli_analyze_audio_file(speech_model, tmp_path, capsys):
    from deepfake_core.cli import main

    path = _write(tmp_path / "voice.wav", speech_like(3.0), 16_000, "pcm_s16le")
    code = main(["analyze", str(path), "--models-dir", str(tmp_path), "--audio-model", str(speech_model),
                 "--json", "-q"])
    assert code == 0
    d = json.loads(capsys.readouterr().out)
    assert d["verdict"] in ("REAL", "FAKE", "UNCERTAIN") and d["counts"]["audio_windows"] == 2
    silent = _write(tmp_path / "quiet.flac", np.zeros(32_000, np.float32), 16_000, "flac")
    assert main(["analyze", str(silent), "--models-dir", str(tmp_path), "--audio-model", str(speech_model),
                 "-q"]) == 0
    assert "NOT_APPLICABLE" in capsys.readouterr().out


def test_fusion_choice_prefers_either_fake_when_faces_are_fake_over_real_voices():
    from deepfake_core.train.fusion_choice import compare, fused_p_fake

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


def test_long_audio_file_is_refused_before_decoding(voice_detector, tmp_path):
    from deepfake_core.errors import MediaTooLarge

    path = _write(tmp_path / "long.wav", speech_like(3.0), 16_000, "pcm_s16le")
    with pytest.raises(MediaTooLarge, match="over the 2 s limit"):
        voice_detector.analyze(path, voice_detector.default_settings().replace(max_duration_s=2.0))


def test_scan_includes_audio_files(speech_model, tmp_path):
    from deepfake_core.cli import main

    folder = tmp_path / "calls"
    folder.mkdir()
    _write(folder / "a.wav", speech_like(3.0), 16_000, "pcm_s16le")
    _write(folder / "b.mp3", speech_like(3.0, seed=2), 16_000, "libmp3lame")
    (folder / "notes.txt").write_text("not scanned")
    out = tmp_path / "scan.csv"
    assert main(["scan", str(folder), "--out", str(out), "--models-dir", str(tmp_path), "--audio-model",
                 str(speech_model), "-q"]) == 0
    rows = list(csv.DictReader(out.open()))
    assert [r["file"] for r in rows] == ["a.wav", "b.mp3"]
    assert all(r["verdict"] in ("REAL", "FAKE", "UNCERTAIN") and r["audio_windows"] == "2" for r in rows)


# -- the pretrained voice encoder candidate (Resemblyzer's GE2E LSTM in plain torch) ----------------------
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
