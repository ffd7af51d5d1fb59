import json

import pytest
import torch

import deepfake_core.models.runtime as runtime
from deepfake_core.errors import SettingsError
from deepfake_core.models.networks import build_audio_model, build_video_model
from deepfake_core.models.runtime import fold_batchnorm, pick_precision, prepare_for_inference

CPU = torch.device("cpu")


def test_auto_precision_follows_the_cpu(monkeypatch):
    monkeypatch.setattr(runtime, "cpu_has_bf16", lambda: True)
    assert pick_precision("auto", CPU) == "bf16"
    monkeypatch.setattr(runtime, "cpu_has_bf16", lambda: False)
    assert pick_precision("auto", CPU) == "fp32"
    assert pick_precision("bf16", CPU) == "bf16" and pick_precision("fp32", CPU) == "fp32"


def test_an_unknown_precision_is_refused_with_the_choices():
    with pytest.raises(SettingsError, match="auto, fp32, bf16.*Did you mean 'bf16'"):
        pick_precision("bf61", CPU)


@pytest.mark.parametrize("build", [build_video_model, build_audio_model])
def test_folding_batchnorm_keeps_the_function_and_the_original(build):
    torch.manual_seed(0)
    module = build().eval()
    for m in module.modules():  # non-trivial statistics, so a wrong fold shows
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    before = {k: v.clone() for k, v in module.state_dict().items()}
    folded, ok = fold_batchnorm(module)
    assert ok
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in folded.modules())
    x = torch.randn(2, 3, 299, 299)
    with torch.inference_mode():
        ref, got = module(x), folded(x)
    assert torch.allclose(ref, got, rtol=1e-3, atol=1e-3 * float(ref.abs().max()))
    assert all(torch.equal(before[k], v) for k, v in module.state_dict().items())  # left as loaded


def test_prepare_for_inference_on_the_cpu():
    module = build_video_model().eval()
    net, done = prepare_for_inference(module, CPU, "bf16")
    assert done == ["batchnorm folded", "channels_last", "bf16 autocast"]
    conv = next(m for m in net.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert not any(p.requires_grad for p in net.parameters())
    assert next(module.parameters()).is_contiguous()  # the original is untouched


def test_cli_precision_reaches_the_report(original_models, face_video, capsys):
    from conftest import face_files_dir
    from deepfake_core.cli import main

    face_files_dir()
    code = main(["analyze", str(face_video), "--models-dir", str(original_models), "--device", "cpu",
                 "--precision", "fp32", "--max-samples", "2", "--json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["models"]["precision"] == "fp32"
    assert "bf16 autocast" not in report["models"]["optimizations"]["video"]
