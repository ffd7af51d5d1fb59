"""A bounded, seeded fuzz run (hypothesis): damaged media through probe / decode / demux, damaged checkpoint,
safetensors and calibration files through their readers. Every input ends in a result or a typed error
(DeepfakeError); anything else (a crash, a raw library exception) fails. Seconds, not minutes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file

from conftest import moving_face_frames, tone, write_video
from deepfake_core import AnalysisSettings
from deepfake_core.media.audio import audio_chunks
from deepfake_core.models.calibration import CALIBRATION_FORMAT, read_calibration
from deepfake_core.models.checkpoints import read_safetensors_metadata, read_state_dict, spec_from_metadata, spec_metadata
from deepfake_core.errors import CheckpointError, DeepfakeError, SettingsError
from deepfake_core.models.networks import ORIGINAL_VIDEO
from deepfake_core.media.video import probe, read_frames, sample_indices

FUZZ = settings(derandomize=True, database=None, deadline=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
LIMITS = AnalysisSettings(max_duration_s=60.0, max_frame_pixels=640 * 480)


@pytest.fixture(scope="module")
def seeds(tmp_path_factory):
    """Small valid files to damage: a clip (video + audio), a raw H.264 stream, a .pt and a .safetensors."""
    from cv2 import resize

    from media_gen import write_raw

    d = tmp_path_factory.mktemp("fuzz")
    frames = [resize(f, (96, 80)) for f in moving_face_frames(12)]
    clip = write_video(d / "clip.mp4", frames, audio=tone(0.5)).read_bytes()
    raw = write_raw(d / "clip.h264", frames).read_bytes()
    tensors = {"w": torch.arange(12, dtype=torch.float32).reshape(3, 4), "b": torch.zeros(3)}
    torch.save({"model_state_dict": tensors}, d / "model.pt")
    save_file(tensors, str(d / "model.safetensors"), metadata=spec_metadata(ORIGINAL_VIDEO))
    return {"dir": d, "clip": clip, "raw": raw, "pt": (d / "model.pt").read_bytes(),
            "safetensors": (d / "model.safetensors").read_bytes()}


def mutated(data: bytes, draw_edits, cut: int | None) -> bytes:
    buf = bytearray(data)
    for position, value in draw_edits:
        buf[position % len(buf)] = value
    return bytes(buf[:cut] if cut else buf)


EDITS = st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 255)), max_size=24)
CUTS = st.none() | st.integers(1, 1 << 16)


def analyse_media(path) -> None:
    """What an analysis does with a file before the networks: probe, decode the sampled frames, the audio."""
    try:
        info = probe(path, LIMITS)
        indices = sample_indices(info.frame_count, 2, 8)
        for frame in read_frames(path, indices, max_pixels=LIMITS.max_frame_pixels):
            assert frame.image.ndim == 3 and frame.image.dtype == np.uint8
    except DeepfakeError:
        pass
    try:
        for chunk in audio_chunks(path, max_seconds=LIMITS.max_duration_s):
            assert chunk.dtype == np.float32 and np.isfinite(chunk).all()
    except DeepfakeError:
        pass


@settings(FUZZ, max_examples=40)
@given(source=st.sampled_from(["clip", "raw"]), edits=EDITS, cut=CUTS)
def test_damaged_media(seeds, source, edits, cut):
    path = seeds["dir"] / f"fuzzed.{'mp4' if source == 'clip' else 'h264'}"
    path.write_bytes(mutated(seeds[source], edits, cut) or b"\0")
    analyse_media(path)


@settings(FUZZ, max_examples=30)
@given(data=st.binary(min_size=1, max_size=4096))
def test_arbitrary_bytes_as_media(seeds, data):
    path = seeds["dir"] / "bytes.mp4"
    path.write_bytes(data)
    analyse_media(path)


@settings(FUZZ, max_examples=60)
@given(kind=st.sampled_from(["pt", "safetensors"]), edits=EDITS, cut=CUTS)
def test_damaged_checkpoints(seeds, kind, edits, cut):
    path = seeds["dir"] / f"fuzzed.{kind}"
    path.write_bytes(mutated(seeds[kind], edits, cut) or b"\0")
    try:
        state = read_state_dict(path)
        assert all(isinstance(v, torch.Tensor) for v in state.values())
        if kind == "safetensors":
            spec_from_metadata(read_safetensors_metadata(path), path.name)
    except CheckpointError:
        pass


TEXT = st.text(max_size=40)
JSONISH = st.recursive(st.none() | st.booleans() | st.floats() | st.integers() | TEXT,
                       lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
                       max_leaves=12)


@settings(FUZZ, max_examples=150)
@given(meta=st.dictionaries(st.sampled_from(["architecture", "modality", "head", "input_size", "mean", "std",
                                              "class_names", "format"]) | TEXT,
                            st.sampled_from(list(spec_metadata(ORIGINAL_VIDEO).values()) + ["hf-hub:x/y", "NaN",
                                            "[NaN, 1, 1]", "[0, 0, 0]", "99999", "-3"]) | TEXT, max_size=9))
def test_model_metadata(meta):
    try:
        spec = spec_from_metadata(meta)
    except CheckpointError:
        return
    if spec is not None:
        assert 16 <= spec.input_size <= 1024 and all(np.isfinite(spec.mean + spec.std))


@settings(FUZZ, max_examples=150)
@given(fields=st.dictionaries(st.sampled_from(["video_sha256", "audio_sha256", "audio_temperature",
                                               "video_temperature", "threshold", "fusion", "created", "details"]),
                              JSONISH, max_size=8),
       base=st.booleans())
def test_calibration_files(seeds, fields, base):
    d = {"format": CALIBRATION_FORMAT, "video_sha256": "v" * 64, "audio_sha256": None} if base else {}
    d.update(fields)
    path = seeds["dir"] / "calibration.json"
    path.write_text(json.dumps(d))
    try:
        cal = read_calibration(path)
    except SettingsError as e:
        assert str(path) in str(e)
        return
    AnalysisSettings().replace(**cal.values())  # whatever it holds is a valid setting
