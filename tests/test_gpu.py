"""CUDA checks: not part of the default run (pytest.ini deselects the `gpu` marker; CI has no GPU).

    pytest -m gpu tests/test_gpu.py

On a machine with a CUDA GPU they check that the CUDA path gives what the CPU path gives, and that training
runs there with bf16 autocast and channels_last and writes a checkpoint the normal loader reads.
"""

import json

import numpy as np
import pytest
import torch

from conftest import face_files_dir
from deepfake_core import AnalysisSettings, Detector
from deepfake_core.models.checkpoints import load_model

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module", autouse=True)
def cuda():
    if not torch.cuda.is_available():
        pytest.fail("these tests need a CUDA GPU (run them with -m gpu only on such a machine)")


def test_cuda_analysis_matches_cpu(original_models, face_video):
    """Same weights and faces: CUDA (bf16, big batches) within 0.01 of the CPU's fp32, face by face."""
    cpu = Detector.load(original_models, device="cpu", precision="fp32")
    gpu = Detector.load(original_models, device="cuda")
    assert gpu.precision == "bf16" and gpu.device.type == "cuda"
    s = AnalysisSettings(fusion="adaptive")
    a, b = cpu.analyze(face_video, s), gpu.analyze(face_video, s)
    assert [r.box for r in a.timeline] == [r.box for r in b.timeline] and len(a.timeline) == 20
    for key in ("fused_p_fake", "video_p_fake", "audio_p_fake"):
        diff = np.abs(np.array([getattr(r, key) for r in a.timeline]) - np.array([getattr(r, key) for r in b.timeline]))
        assert diff.max() < 0.01, key
    assert b.models["device"].startswith("cuda") and b.models["precision"] == "bf16"


def test_cuda_fp32_matches_cpu_closely(original_models, face_video):
    cpu = Detector.load(original_models, device="cpu", precision="fp32")
    gpu = Detector.load(original_models, device="cuda", precision="fp32")
    s = AnalysisSettings(fusion="equal", max_samples=6)
    a, b = cpu.analyze(face_video, s), gpu.analyze(face_video, s)
    assert abs(a.fused_real_prob - b.fused_real_prob) < 1e-3


def test_cuda_training_uses_bf16_and_channels_last(tmp_path):
    from deepfake_core.train.data import read_labels
    from deepfake_core.train.demo import write_demo_dataset
    from deepfake_core.train.loop import TrainConfig, train_from_cache
    from deepfake_core.train.prepare import PrepareOptions, prepare

    demo = write_demo_dataset(tmp_path / "demo", "fakeavceleb", per_class=2)
    cache = tmp_path / "cache"
    prepare(read_labels(demo), cache, PrepareOptions(frames_per_video=3), face_files_dir(), progress=False)
    for modality in ("video", "audio"):
        config = TrainConfig(modality, epochs=2, batch_size=4, max_steps_per_epoch=2, workers=2, device="cuda",
                             val_fraction=0.5, test_fraction=0.0)
        result = train_from_cache(cache, tmp_path / modality, config, log=lambda message: None)
        resolved = json.loads((tmp_path / modality / "config.json").read_text())
        assert resolved["device"].startswith("cuda") and resolved["precision"] == "bf16"
        assert resolved["channels_last"] is True
        loaded = load_model(result.best_path, modality)
        with torch.inference_mode():
            logits = loaded.module(torch.zeros(2, 3, loaded.spec.input_size, loaded.spec.input_size))
        assert logits.shape == (2, 2) and torch.isfinite(logits).all()
