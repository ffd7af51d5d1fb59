"""Models folders fail loudly (model_files.py): a named folder that does not exist is exit 2; a model file that is
there but cannot be read is exit 3 naming it, its error the first thing printed; the built-in model judges only when
no original file is there at all, and the report and the summary say so first. Through the CLI, in-process."""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path

import pytest
import torch

from conftest import FACE_FILES, SHARED_MODELS, face_files_dir
from deepfake_core.cli import main
from test_ray_scan import local_ray  # noqa: F401 (a fixture: Ray on 127.0.0.1 only, started once for this module)

NOISE = ("libprotobuf", "Warning", "Traceback")  # nothing of the kind may come before (or instead of) our error


def analyze(capfd, *args) -> tuple[int, str, str]:
    code = main(["analyze", *map(str, args), "--quiet", "--device", "cpu"])
    out, err = capfd.readouterr()  # file-descriptor level: what native code prints too
    return code, out, err


def assert_error_first(err: str, *named: str) -> None:
    assert err.startswith("error: "), err
    assert not any(word in err for word in NOISE), err
    for text in named:
        assert text in err.splitlines()[0], err


# -- a named folder that does not exist ------------------------------------------------------------------------
def test_a_named_models_folder_that_does_not_exist_is_exit_2(tmp_path, face_video, capfd, monkeypatch):
    missing = tmp_path / "modles"  # a typo, not an empty folder
    code, out, err = analyze(capfd, face_video, "--models-dir", missing)
    assert code == 2 and out == ""
    assert_error_first(err, str(missing), "does not exist")
    monkeypatch.setenv("DEEPFAKE_MODELS_DIR", str(missing))
    code, out, err = analyze(capfd, face_video)
    assert code == 2 and out == ""
    assert_error_first(err, str(missing), "DEEPFAKE_MODELS_DIR")
    a_file = tmp_path / "models.txt"
    a_file.write_text("x")
    code, _, err = analyze(capfd, face_video, "--models-dir", a_file)
    assert code == 2 and "is not a folder" in err
    code = main(["scan", str(face_video), "--out", str(tmp_path / "r.csv"), "--models-dir", str(missing)])
    assert code == 2 and not (tmp_path / "r.csv").exists()


def test_a_models_folder_name_too_long_is_exit_2_naming_it(tmp_path, face_video, capfd, monkeypatch):
    """Before: `internal error: OSError: [Errno 36] File name too long` (exit 1) from its stat."""
    too_long = tmp_path.joinpath(*["m"] * 2100)  # over 4096 characters, missing
    code, out, err = analyze(capfd, face_video, "--models-dir", too_long)
    assert code == 2 and out == ""
    assert_error_first(err, str(too_long), "cannot be used (File name too long)")
    code = main(["scan", str(face_video), "--out", str(tmp_path / "r.csv"), "--models-dir", str(too_long)])
    assert code == 2 and not (tmp_path / "r.csv").exists()
    assert_error_first(capfd.readouterr()[1], str(too_long), "cannot be used")
    monkeypatch.setenv("DEEPFAKE_MODELS_DIR", str(too_long))
    code, out, err = analyze(capfd, face_video)
    assert code == 2 and out == ""
    assert_error_first(err, str(too_long), "DEEPFAKE_MODELS_DIR")


def test_a_models_folder_name_too_long_is_exit_2_before_ray_starts(tmp_path, face_video, capfd, monkeypatch):
    pytest.importorskip("ray", reason="the ray extra is not installed: pip install 'deepfake-detector[ray]'")

    def no_ray(*args, **kwargs):
        raise AssertionError("Ray started for a models folder no machine can use")

    monkeypatch.setattr("ray.init", no_ray)
    too_long = tmp_path.joinpath(*["m"] * 2100)
    code = main(["scan", str(face_video), "--out", str(tmp_path / "r.jsonl"), "--ray", "--models-dir", str(too_long)])
    assert code == 2
    assert_error_first(capfd.readouterr()[1], str(too_long), "cannot be used")


# -- a model file that cannot be one ----------------------------------------------------------------------------
def _folder(path):
    path.mkdir()


def _broken_link(path):
    path.symlink_to(path.parent / "gone.pt")


def _link_loop(path):  # a -> b -> a
    other = path.parent / "other.pt"
    other.symlink_to(path.name)
    path.symlink_to(other.name)


def _pipe(path):
    os.mkfifo(path)  # reading it would wait for ever


@pytest.mark.parametrize("name", ["epoch_007.pt", "best_audio_xception.pth", "deploy.prototxt",
                                  "res10_300x300_ssd_iter_140000_fp16.caffemodel"])
@pytest.mark.parametrize("make", [_folder, _broken_link, _link_loop, _pipe], ids=["folder", "broken-link", "link-loop",
                                                                                 "pipe"])
def test_an_installed_file_that_cannot_be_read_is_exit_3_naming_it(tmp_path, face_video, capfd, name, make):
    """Before: passed over, so the built-in model (or Haar, or no audio model) judged, and the exit code was 0."""
    models = tmp_path / "models"
    models.mkdir()
    make(models / name)
    code, out, err = analyze(capfd, face_video, "--models-dir", models)
    assert code == 3 and out == ""
    assert_error_first(err, str(models / name))


def _truncated(path):
    torch.save({"model_state_dict": {"w": torch.zeros(64, 64)}}, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _pickle_protocol_5(path):  # torch warns about the protocol before it fails
    path.write_bytes(b"\x80\x05" + b"not a checkpoint")


def _text(path):
    path.write_text("just some text\n")


@pytest.mark.parametrize("make", [_truncated, _pickle_protocol_5, _text, lambda p: p.write_bytes(b"")],
                         ids=["truncated", "pickle-5", "text", "empty"])
def test_a_damaged_checkpoint_is_exit_3_and_its_error_comes_first(tmp_path, face_video, capfd, make):
    models = tmp_path / "models"
    models.mkdir()
    make(models / "epoch_007.pt")
    with warnings.catch_warnings(record=True) as caught:  # pytest keeps warnings off stderr: record them here
        warnings.simplefilter("always")
        code, out, err = analyze(capfd, face_video, "--models-dir", models)
    assert code == 3 and out == ""
    assert_error_first(err, "epoch_007.pt")
    assert not [str(w.message) for w in caught if "pickle protocol" in str(w.message)]


@pytest.mark.parametrize("bad", ["deploy.prototxt", "res10_300x300_ssd_iter_140000_fp16.caffemodel"])
def test_a_damaged_res10_file_is_exit_3_and_its_error_comes_first(tmp_path, face_video, capfd, bad):
    """Before: OpenCV's bundled protobuf printed its parse error (a "[libprotobuf ERROR ...]" line) first."""
    face_files_dir()
    models = tmp_path / "models"
    models.mkdir()
    for name in FACE_FILES:
        shutil.copy(SHARED_MODELS / name, models / name)
    good = (models / bad).read_bytes()
    (models / bad).write_bytes(b"garbage {\n" if bad.endswith(".prototxt") else good[:1000])
    code, out, err = analyze(capfd, face_video, "--models-dir", models)
    assert code == 3 and out == ""
    assert_error_first(err, str(models / bad))


# -- the built-in model judges only when no original file is there, and says so first -------------------------
def test_an_empty_folder_leaves_the_built_in_model_to_judge_and_says_so_first(tmp_path, face_video, capfd):
    models = tmp_path / "models"
    models.mkdir()
    code, out, err = analyze(capfd, face_video, "--models-dir", models, "--max-samples", "3")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[1].startswith("  verdict:")
    assert lines[2].startswith("  note:        video judged by the built-in model") and str(models) in lines[2]
    code, out, _ = analyze(capfd, face_video, "--models-dir", models, "--max-samples", "3", "--json")
    report = json.loads(out)
    assert code == 0 and report["notes"][0].startswith("video judged by the built-in model")
    assert list(report)[:4] == ["verdict", "reason", "explanation", "notes"]  # the JSON's first lines
    code = main(["scan", str(face_video), "--out", str(tmp_path / "r.csv"), "--models-dir", str(models),
                 "--max-samples", "3", "--quiet", "--device", "cpu"])
    _, err = capfd.readouterr()
    assert code == 0 and err.startswith("note: video judged by the built-in model"), err


# -- the same rules for `scan --ray` (the workers load through the same function) -------------------------------
@pytest.mark.slow
@pytest.mark.usefixtures("local_ray")
def test_ray_scan_with_a_missing_or_empty_models_folder(tmp_path, face_video, capfd):
    missing = tmp_path / "modles"  # not seen here either: the workers find it missing
    code = main(["scan", str(face_video), "--out", str(tmp_path / "a.jsonl"), "--models-dir", str(missing), "--ray"])
    err = capfd.readouterr().err
    assert code == 2 and f"the models folder {missing} does not exist" in err, err
    empty = tmp_path / "models"
    empty.mkdir()
    out = tmp_path / "b.jsonl"
    code = main(["scan", str(face_video), "--out", str(out), "--models-dir", str(empty), "--max-samples", "3",
                 "--ray", "--quiet"])
    err = capfd.readouterr().err
    assert code == 0 and err.startswith("note: video judged by the built-in model"), err
    (record,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert record["error"] is None and record["notes"][0].startswith("video judged by the built-in model")


def test_the_page_says_a_named_models_folder_does_not_exist(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    missing = tmp_path / "modles"
    monkeypatch.setenv("DEEPFAKE_MODELS_DIR", str(missing))
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app" / "streamlit_app.py"), default_timeout=300)
    at.run()
    assert not at.exception, at.exception
    (error,) = at.error
    assert "The models folder does not exist" in error.value and str(missing) in error.value
