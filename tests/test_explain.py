"""Grad-CAM explanations: the heatmap's size and range, the layer chosen per architecture, the physical
property (the heat follows the discriminative region when it is occluded or moved), and the report/CLI plumbing."""

import base64
import json

import cv2
import numpy as np
import pytest
import timm
import torch
from torch import nn

from deepfake_core.cli import main
from deepfake_core.analysis.explain import (KNOWN_TARGET_LAYERS, explain_crops, explain_report, last_spatial_layer,
                                   target_layer)
from deepfake_core.analysis.fusion import softmax
from deepfake_core.models.networks import FAKE, ORIGINAL_VIDEO, ModelSpec, face_tensor

TINY = ModelSpec("tiny-red-detector", "video", "linear", 64, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))


class RedDetector(nn.Module):
    """A network whose evidence for FAKE is known: one conv channel responds to red (R - (G + B) / 2), its
    global mean is the FAKE logit. Red patches are the discriminative region; grey carries nothing."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 1, 3, padding=1, bias=False)
        self.act = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(1, 2)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[0, :, 1, 1] = torch.tensor([1.0, -0.5, -0.5])
            self.fc.weight.copy_(torch.tensor([[4.0], [-4.0]]))  # row FAKE up, row REAL down
            self.fc.bias.zero_()

    def forward(self, x):
        return self.fc(self.pool(self.act(self.conv(x))).flatten(1))


def grey_with_patches(patches, size=(96, 80)):
    """(h, w, 3) uint8 RGB grey image with coloured rectangles: [(x1, y1, x2, y2, (r, g, b)), ...]."""
    image = np.full((*size, 3), 128, np.uint8)
    for x1, y1, x2, y2, colour in patches:
        image[y1:y2, x1:x2] = colour
    return image


def region_mean(heat, box):
    x1, y1, x2, y2 = box
    return float(heat[y1:y2, x1:x2].mean())


def test_heatmap_follows_the_discriminative_region():
    model = RedDetector().eval()
    strong, weak = (8, 10, 32, 40), (52, 60, 72, 86)  # (x1, y1, x2, y2) in an 80 x 96 crop
    both = grey_with_patches([(*strong, (255, 0, 0)), (*weak, (190, 70, 70))])
    occluded = grey_with_patches([(*weak, (190, 70, 70))])  # the strongest evidence covered with grey
    layer, (heat_both, heat_occluded) = explain_crops(model, TINY, [both, occluded])
    assert layer == "act"  # the last layer with a spatial output, found by the generic rule
    for heat, crop in ((heat_both, both), (heat_occluded, occluded)):
        assert heat.shape == crop.shape[:2] and heat.dtype == np.float32
        assert np.isfinite(heat).all() and heat.min() >= 0.0 and heat.max() <= 1.0
    # Before: the heat is on the strong patch, far above the grey background.
    y, x = np.unravel_index(np.argmax(heat_both), heat_both.shape)
    assert strong[0] <= x < strong[2] and strong[1] <= y < strong[3]
    assert region_mean(heat_both, strong) > 0.8 > 0.1 > region_mean(heat_both, (40, 0, 80, 40))
    # Occluded: the strong patch's heat is gone and the peak has moved to the remaining evidence.
    assert region_mean(heat_occluded, strong) < 0.1
    y, x = np.unravel_index(np.argmax(heat_occluded), heat_occluded.shape)
    assert weak[0] <= x < weak[2] and weak[1] <= y < weak[3]
    # And it is the model that decides: the occluded crop is less FAKE.
    with torch.no_grad():
        logits = model(torch.stack([face_tensor(both, TINY), face_tensor(occluded, TINY)]))
    p_fake = torch.softmax(logits, 1)[:, FAKE]
    assert p_fake[0] > p_fake[1]


def test_target_layers_named_for_known_architectures_match_the_generic_rule():
    for architecture, size in (("legacy_xception", 96), ("tf_efficientnet_lite0", 64)):
        model = timm.create_model(architecture, pretrained=False, num_classes=2).eval()
        spec = ModelSpec(architecture, "video", "linear", size, (0.5,) * 3, (0.5,) * 3)
        name, module = target_layer(model, spec)
        assert name == KNOWN_TARGET_LAYERS[architecture] == last_spatial_layer(model, size)
        assert module is dict(model.named_modules())[name]
    resnet = timm.create_model("resnet18", pretrained=False, num_classes=2).eval()  # not in the mapping
    assert target_layer(resnet, ModelSpec("resnet18", "video", "linear", 64, (0.5,) * 3, (0.5,) * 3))[0] == "layer4"


def test_a_network_without_spatial_layers_is_refused_with_a_message():
    from deepfake_core.errors import SettingsError

    flat = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 2))
    with pytest.raises(SettingsError, match="no layer with a spatial output"):
        last_spatial_layer(flat, 8)


def test_explain_report_on_the_original_model(detector, face_video):
    report = detector.analyze(face_video)
    assert report.explanations == [] and "explanations" not in report.to_dict()  # nothing unless asked
    explanations = explain_report(detector, face_video, report, k=2)
    assert [e.rank for e in explanations] == [1, 2] and report.explanations == explanations
    scores = [r.video_p_fake for r in report.timeline]
    assert [e.video_p_fake for e in explanations] == sorted(scores, reverse=True)[:2]
    temperature = report.settings["video_temperature"]
    for e in explanations:
        assert e.target_layer == "act4"
        assert e.heatmap.shape == e.crop.shape[:2] and e.overlay.shape == e.crop.shape
        assert np.isfinite(e.heatmap).all() and 0.0 <= e.heatmap.min() <= e.heatmap.max() <= 1.0
        # the crop read again is the face the analysis scored (bf16 inference vs fp32 here)
        with torch.no_grad():
            logits = detector.video.module(face_tensor(e.crop, ORIGINAL_VIDEO)[None]).numpy()
        assert softmax(logits / temperature)[0, FAKE] == pytest.approx(e.video_p_fake, abs=0.03)
    d = report.to_dict()["explanations"][0]
    assert d["size"] == [explanations[0].crop.shape[1], explanations[0].crop.shape[0]]
    png = base64.b64decode(d["overlay"].split(",", 1)[1])
    image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == explanations[0].crop.shape
    assert report.timings["explain"] > 0
    json.dumps(report.to_dict())


def test_cli_explain_writes_overlay_files(lite_models, face_video, tmp_path, capsys):
    directory, video = lite_models
    out = tmp_path / "overlays"
    code = main(["analyze", str(face_video), "--json", "--quiet", "--models-dir", str(directory), "--device", "cpu",
                 "--video-model", str(video), "--max-samples", "4", "--explain-dir", str(out),
                 "--explain-faces", "3"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    files = [e["file"] for e in report["explanations"]]
    assert len(files) == 3 and all(e["overlay"] is None and e["target_layer"] == "bn2"
                                   for e in report["explanations"])
    assert sorted(p.name for p in out.iterdir()) == sorted(p.split("/")[-1] for p in files)
    for e in report["explanations"]:
        image = cv2.imread(e["file"])
        assert image is not None and [image.shape[1], image.shape[0]] == e["size"]


@pytest.mark.parametrize("where", ["under-a-file", "under-proc"])
def test_cli_refuses_an_explain_dir_it_cannot_write_before_the_models_load(face_video, tmp_path, capsys, monkeypatch,
                                                                           where):
    """Before: exit 1 (`internal error: NotADirectoryError`) after the whole analysis."""
    def no_loading(*args, **kwargs):
        raise AssertionError("models loaded before --explain-dir was checked")

    monkeypatch.setattr("deepfake_core.cli.analyze.load_detector", no_loading)
    a_file = tmp_path / "f.txt"
    a_file.write_text("x")
    target = a_file / "sub" if where == "under-a-file" else "/proc/sub"
    assert main(["analyze", str(face_video), "--explain-dir", str(target)]) == 2
    err = capsys.readouterr().err
    assert f"--explain-dir {target} cannot be written" in err and "Traceback" not in err
    if where == "under-a-file":
        assert "a file stands where its folder should be" in err and a_file.read_text() == "x"


def test_cli_refuses_a_bad_face_count(lite_models, face_video, capsys):
    directory, video = lite_models
    code = main(["analyze", str(face_video), "--models-dir", str(directory), "--video-model", str(video),
                 "--explain", "--explain-faces", "0"])
    assert code == 2 and "explain must be a whole number of faces" in capsys.readouterr().err


def test_page_toggle_shows_the_overlays_next_to_the_frames(original_models, face_video, monkeypatch, tmp_path):
    import tempfile

    from conftest import face_files_dir
    from streamlit.testing.v1 import AppTest
    from test_app import APP, TIMEOUT, upload

    face_files_dir()
    monkeypatch.setenv("DEEPFAKE_MODELS_DIR", str(original_models))
    monkeypatch.setenv("DEEPFAKE_DEVICE", "cpu")
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    page = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    page.run()
    page.number_input(key="max_samples").set_value(2).run()
    upload(page, face_video)
    assert page.toggle(key="explain").value is False
    page.toggle(key="explain").set_value(True)
    page.button(key="analyse").click().run()
    assert not page.exception and not page.error, page.exception or page.error
    report = page.session_state["result"]["report"]
    assert len(report.explanations) == min(4, len(report.timeline)) >= 1
    strip, overlays = page.get("image")[0].captions, page.get("image")[1].captions
    assert len(strip) == 2 and len(overlays) == len(report.explanations)
    assert overlays[0].startswith("#1 · ") and "face P(fake)" in overlays[0]
    assert "Why: where the face model saw FAKE" in "\n".join(s.value for s in page.subheader)
    assert list(folder.iterdir()) == []  # the upload's temporary copy is gone
