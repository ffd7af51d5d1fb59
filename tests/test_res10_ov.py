"""res10 rebuilt in PyTorch (res10_net) with its prior boxes and detection output in numpy (res10_post), and run
by OpenVINO (res10_ov): the same numbers as cv2.dnn's Caffe importer."""

import cv2
import numpy as np
import pytest

from conftest import astronaut_bgr, face_files_dir
from deepfake_core.faces.detect import DNN_MEAN, DnnFaceDetector
from deepfake_core.faces.res10_post import detection_output, parse_prototxt, prior_boxes, read_layers
from test_faces import _paste

FILES = ("deploy.prototxt", "res10_300x300_ssd_iter_140000_fp16.caffemodel")


def files():
    d = face_files_dir()
    return d / FILES[0], d / FILES[1]


def blob(image, size):
    return cv2.dnn.blobFromImage(cv2.resize(image, size, interpolation=cv2.INTER_AREA), 1.0, size, DNN_MEAN)


def cv2_outputs(b, names):
    net = cv2.dnn.readNetFromCaffe(*map(str, files()))
    net.setInput(b)
    return net.forward(names)


def test_prototxt_reader_keeps_repeated_fields_nesting_and_types():
    got = parse_prototxt('name: "x"  # a comment\nlayer {\n  type: "Conv"\n  p { v: 0.1 v: 2\n flag: true }\n}\n'
                         'layer { type: "ReLU" }')
    assert got["name"] == ["x"]
    assert [layer["type"] for layer in got["layer"]] == [["Conv"], ["ReLU"]]
    assert got["layer"][0]["p"] == [{"v": [0.1, 2], "flag": [True]}]
    with pytest.raises(ValueError, match="cannot read the prototxt"):
        parse_prototxt("layer { type: }")


@pytest.mark.parametrize("width, height", [(533, 300), (300, 300), (401, 301), (300, 533)])
def test_prior_boxes_match_cv2_dnn_for_any_input_size(width, height):
    (ref,) = cv2_outputs(blob(astronaut_bgr(), (width, height)), ["mbox_priorbox"])
    priors, variances = prior_boxes(read_layers(files()[0]), height, width)
    assert ref.shape == (1, 2, priors.size)
    np.testing.assert_allclose(priors.ravel(), ref[0, 0], atol=1e-6)
    np.testing.assert_array_equal(variances.ravel(), ref[0, 1])


@pytest.mark.parametrize("canvas, face", [((300, 533), 150), ((300, 300), 60), ((301, 401), 90)])
def test_rebuilt_network_and_head_match_cv2_dnn(canvas, face):
    import torch

    from deepfake_core.faces.res10_net import build

    image, _ = _paste(canvas, face)
    b = blob(image, (canvas[1], canvas[0]))
    loc, conf, ref = cv2_outputs(b, ["mbox_loc", "mbox_conf_flatten", "detection_out"])
    net, layers = build(*files())
    with torch.no_grad():
        got_loc, got_conf = (t.numpy() for t in net(torch.from_numpy(b)))
    np.testing.assert_allclose(got_loc, loc, atol=1e-3)
    np.testing.assert_allclose(got_conf, conf, atol=1e-4)
    head = next(layer for layer in layers if layer["type"][0] == "DetectionOutput")
    got = detection_output(head, got_loc[0], got_conf[0], *prior_boxes(layers, *canvas))[0, 0]
    ref = ref[0, 0][ref[0, 0, :, 2] > 0]  # cv2.dnn pads to keep_top_k with zero rows
    assert len(got) == len(ref) and ref[0, 2] > 0.8  # the face is found
    np.testing.assert_allclose(got[:, 2], ref[:, 2], atol=1e-3)
    np.testing.assert_allclose(got[:, 3:], ref[:, 3:], atol=1e-4)


@pytest.fixture(scope="module")
def openvino_detector(tmp_path_factory):
    pytest.importorskip("openvino")
    mp = pytest.MonkeyPatch()
    mp.setenv("DEEPFAKE_OPENVINO_CACHE", str(tmp_path_factory.mktemp("ov")))
    detector = DnnFaceDetector(*files())
    detector.use_openvino("fp32")
    yield detector
    mp.undo()


@pytest.mark.parametrize("canvas, face", [((1080, 1920), 100), ((1080, 1920), 400), ((720, 1280), 90),
                                          ((300, 533), 150), ((600, 600), 200)])
def test_openvino_finds_the_same_faces_as_cv2_dnn(openvino_detector, canvas, face):
    image, _ = _paste(canvas, face)
    ref_faces, ref_weak = DnnFaceDetector(*files()).propose(image)
    faces, weak = openvino_detector.propose(image)
    assert ref_faces and openvino_detector.backend == "openvino"
    for got, ref in ((faces, ref_faces), (weak, ref_weak)):
        assert [(f.x1, f.y1, f.x2, f.y2) for f in got] == [(f.x1, f.y1, f.x2, f.y2) for f in ref]
        np.testing.assert_allclose([f.confidence for f in got], [f.confidence for f in ref], atol=1e-3)


def test_openvino_model_is_converted_once_then_read_from_the_cache(openvino_detector, tmp_path, monkeypatch):
    from deepfake_core.faces.res10_ov import OpenVinoRes10

    monkeypatch.setenv("DEEPFAKE_OPENVINO_CACHE", str(tmp_path))
    first, second = OpenVinoRes10(*files()), OpenVinoRes10(*files())
    assert (first.origin, second.origin) == ("converted", "cache")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp folder left
    assert any(step.startswith("openvino ") and "fp32" in step for step in second.done)
    b = blob(astronaut_bgr(), (300, 300))
    np.testing.assert_allclose(first(b), second(b), atol=1e-6)


def test_detection_output_matches_cv2_dnn_when_top_k_and_keep_top_k_cut():
    b = np.random.default_rng(0).normal(0, 60, (1, 3, 300, 533)).astype(np.float32)  # noise: many weak boxes
    loc, conf, ref = cv2_outputs(b, ["mbox_loc", "mbox_conf_flatten", "detection_out"])
    layers = read_layers(files()[0])
    head = next(layer for layer in layers if layer["type"][0] == "DetectionOutput")
    assert (conf[0, 1::2] > 0.01).sum() > 400  # more candidates than NMS's top_k
    got = detection_output(head, loc[0], conf[0], *prior_boxes(layers, 300, 533))[0, 0]
    ref = ref[0, 0][ref[0, 0, :, 2] > 0]
    assert len(got) == len(ref)
    np.testing.assert_allclose(got[:, 2:], ref[:, 2:], atol=1e-5)
