import pickle

import numpy as np
import pytest
import torch

from conftest import save_original_checkpoints
from deepfake_core.models import checkpoints, registry
from deepfake_core.models.checkpoints import load_model, save_safetensors
from deepfake_core.errors import CheckpointError
from deepfake_core.models.networks import ORIGINAL_AUDIO, ORIGINAL_VIDEO, build_video_model, face_tensor


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    d = tmp_path_factory.mktemp("ckpt")
    video, audio = save_original_checkpoints(d, seed=5)
    return d, video, audio


X = torch.randn(2, 3, 299, 299, generator=torch.Generator().manual_seed(0))


def logits(module):
    with torch.inference_mode():
        return module.eval()(X)


def test_both_original_layouts_load_strictly_and_reproduce_logits(sources):
    d, video, audio = sources
    v = load_model(d / "epoch_007.pt", "video")
    a = load_model(d / "best_audio_xception.pth", "audio")
    assert torch.allclose(logits(v.module), logits(video), atol=1e-5)
    assert torch.allclose(logits(a.module), logits(audio), atol=1e-5)
    assert v.spec == ORIGINAL_VIDEO and a.spec == ORIGINAL_AUDIO
    assert len(v.sha256) == 64


@pytest.mark.parametrize("form", ["bare", "model_prefix", "module_prefix", "state_dict_key"])
def test_video_key_variants(sources, tmp_path, form):
    _, video, _ = sources
    state = video.state_dict()
    if form == "bare":
        obj = state
    elif form == "model_prefix":
        obj = {"model_state_dict": {"model." + k: v for k, v in state.items()}}
    elif form == "module_prefix":
        obj = {"module.model." + k: v for k, v in state.items()}
    else:
        obj = {"state_dict": state, "epoch": 3}
    torch.save(obj, tmp_path / "v.pt")
    assert torch.allclose(logits(load_model(tmp_path / "v.pt", "video").module), logits(video), atol=1e-5)


def test_audio_base_prefix_variant(tmp_path):
    _, audio = save_original_checkpoints(tmp_path, seed=9, audio_prefix="base.")
    a = load_model(tmp_path / "best_audio_xception.pth", "audio")
    assert torch.allclose(logits(a.module), logits(audio), atol=1e-5)


def test_safetensors_round_trip_keeps_logits_and_metadata(sources, tmp_path):
    _, video, audio = sources
    for module, spec in ((video, ORIGINAL_VIDEO), (audio, ORIGINAL_AUDIO)):
        path = save_safetensors(module, spec, tmp_path / f"{spec.modality}.safetensors", {"source_sha256": "ab"})
        loaded = load_model(path)  # metadata names the model: no modality needed
        assert loaded.spec == spec
        assert loaded.metadata["source_sha256"] == "ab"
        assert torch.equal(logits(loaded.module), logits(module))


def test_missing_key_is_named(sources, tmp_path):
    _, video, _ = sources
    state = dict(video.state_dict())
    del state["fc.weight"]
    torch.save(state, tmp_path / "v.pt")
    with pytest.raises(CheckpointError, match=r"v\.pt.*video model.*legacy_xception.*missing.*fc\.weight"):
        load_model(tmp_path / "v.pt", "video")


def test_extra_key_is_named(sources, tmp_path):
    _, video, _ = sources
    state = dict(video.state_dict())
    state["head.extra"] = torch.zeros(3)
    torch.save(state, tmp_path / "v.pt")
    with pytest.raises(CheckpointError, match=r"unexpected.*head\.extra"):
        load_model(tmp_path / "v.pt", "video")


def test_audio_file_as_video_model_is_refused(sources):
    d, _, _ = sources
    with pytest.raises(CheckpointError, match="does not fit the video model"):
        load_model(d / "best_audio_xception.pth", "video")


class Payload:
    def __reduce__(self):
        return (print, ("code ran",))


def test_pickled_object_is_refused(tmp_path, capsys):
    model = build_video_model()
    torch.save({"model_state_dict": model.state_dict(), "config": Payload()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match=r"refused.*builtins\.print"):
        load_model(tmp_path / "evil.pt", "video")
    assert "code ran" not in capsys.readouterr().out


def test_pinned_file_with_numpy_scalars_loads_with_inert_globals(sources, tmp_path, monkeypatch):
    """A published checkpoint holding numpy scalars (as a training loop may save) is read only because
    its sha256 is pinned; the numpy globals are replaced by inert placeholders."""
    _, video, _ = sources
    path = tmp_path / "epoch_007.pt"
    torch.save({"model_state_dict": video.state_dict(), "val_acc": np.float64(0.97)}, path)
    with pytest.raises(CheckpointError, match="refused.*numpy"):
        load_model(path, "video")
    digest = registry.sha256_file(path)
    pinned = registry.WeightsFile("video", "epoch_007.pt", ("http://127.0.0.1/x",), digest, path.stat().st_size, "", "")
    monkeypatch.setattr(registry, "REGISTRY", (pinned,))
    loaded = load_model(path, "video")
    assert torch.allclose(logits(loaded.module), logits(video), atol=1e-5)


def test_not_a_checkpoint(tmp_path):
    (tmp_path / "x.pt").write_text("hello")
    with pytest.raises(CheckpointError, match="not a readable"):
        load_model(tmp_path / "x.pt", "video")
    (tmp_path / "x.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        load_model(tmp_path / "x.safetensors", "video")


def test_face_tensor_matches_torchvision_transform():
    from PIL import Image
    from torchvision import transforms

    crop = np.random.default_rng(0).integers(0, 255, (123, 97, 3), dtype=np.uint8)
    ref = transforms.Compose([transforms.Resize((299, 299)), transforms.ToTensor(),
                              transforms.Normalize([0.5] * 3, [0.5] * 3)])(Image.fromarray(crop))
    ours = face_tensor(crop)
    assert ours.shape == (3, 299, 299)
    assert torch.allclose(ours, ref, atol=1e-6)
