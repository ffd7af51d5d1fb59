import math

import numpy as np
import pytest

from deepfake_core.errors import SettingsError
from deepfake_core.analysis.fusion import fuse, fusion_weights, softmax


def sm(a, b):
    ea, eb = math.exp(a), math.exp(b)
    return ea / (ea + eb), eb / (ea + eb)


V = np.array([[2.0, 0.0], [0.1, 0.3], [0.0, 0.2]])  # confident fake, unsure real, unsure real
A = np.array([[0.0, 4.0], [3.0, 1.0], [1.0, 1.0]])


def test_equal_fusion_by_hand():
    f = fuse(V, A, "equal", audio_temperature=2.0)
    # row 0: Z = 0.5*[2,0] + 0.5*[0,2] = [1,1]
    assert f.probs[0] == pytest.approx([0.5, 0.5])
    # row 1: Z = 0.5*[0.1,0.3] + 0.5*[1.5,0.5] = [0.8, 0.4]
    assert f.probs[1] == pytest.approx(sm(0.8, 0.4))
    assert f.w_video == pytest.approx([0.5] * 3) and f.w_audio == pytest.approx([0.5] * 3)
    assert f.audio_probs[1] == pytest.approx(sm(1.5, 0.5))


def test_video_trust_rule_by_hand():
    f = fuse(V, A, "video_trust", audio_temperature=2.0)
    # row 0: video confidence sm(2,0)[0] = 0.881 > 0.6 -> 0.9/0.1
    # row 1: video says REAL with 0.55 -> 0.7/0.3 ; row 2 also REAL 0.55 -> 0.7/0.3
    assert f.w_video == pytest.approx([0.9, 0.7, 0.7])
    z0 = 0.9 * np.array([2.0, 0.0]) + 0.1 * np.array([0.0, 2.0])
    assert f.probs[0] == pytest.approx(sm(*z0))
    # unsure FAKE -> 0.85/0.15
    f2 = fuse(np.array([[0.3, 0.1]]), np.array([[0.0, 0.0]]), "video_trust")
    assert f2.w_video == pytest.approx([0.85])


def test_adaptive_weights_by_hand():
    f = fuse(V, A, "adaptive", audio_temperature=2.0, tau=0.5)
    rv = max(sm(2.0, 0.0))
    ra = max(sm(0.0, 2.0))
    av = math.exp(0.5 * rv) / (math.exp(0.5 * rv) + math.exp(0.5 * ra))
    assert f.w_video[0] == pytest.approx(av)
    assert f.w_video + f.w_audio == pytest.approx(np.ones(3))
    z = av * np.array([2.0, 0.0]) + (1 - av) * np.array([0.0, 2.0])
    assert f.probs[0] == pytest.approx(sm(*z))


def test_adaptive_floor_of_each_weight():
    # a large tau would give the confident audio almost all the weight; the floor keeps 0.2 for video
    w_v, w_a = fusion_weights("adaptive", softmax(np.array([[0.0, 0.0]])), softmax(np.array([[0.0, 50.0]])),
                              tau=100.0, min_weight=0.2)
    assert w_v == pytest.approx([0.2]) and w_a == pytest.approx([0.8])


def test_no_audio_video_stands_alone():
    f = fuse(V, None, "adaptive")
    assert f.audio_probs is None
    assert f.probs == pytest.approx(softmax(V))
    assert f.w_video == pytest.approx([1, 1, 1]) and f.w_audio == pytest.approx([0, 0, 0])


def test_unknown_strategy_names_the_choices():
    with pytest.raises(SettingsError, match="equal, video_trust, adaptive.*'adaptive'"):
        fuse(V, A, "adaptiv")
