"""`scan`'s results file is its checkpoint: checked before anything loads, one synced line per row, a cut-off
last line dropped, resumed after kill -9 (no row lost, none repeated), --restart, a write failure that says how
many rows are safe (never an internal error); inputs that do not exist; symbolic link loops named link by link."""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deepfake_core.cli import main
from deepfake_core.errors import InputError, UnreadableMedia
from deepfake_core.scan.results import SCAN_FIELDS, ResultsFile, complete_length, read_done

WAIT_S = 600  # for a condition on a loaded machine (model loading in a child process can take minutes)
CLIPS = 6


def _scan_cmd(folder: Path, out: Path, lite_models, *extra: str) -> list[str]:
    directory, video = lite_models
    return [sys.executable, "-m", "deepfake_core", "scan", str(folder), "--out", str(out), "--models-dir",
            str(directory), "--video-model", str(video), "--runtime", "torch", "--max-samples", "4", *extra]


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory, faceless_video) -> Path:
    folder = tmp_path_factory.mktemp("clips")
    for i in range(CLIPS):
        shutil.copy(faceless_video, folder / f"clip_{i}.mp4")
    return folder


def _jsonl_paths(out: Path) -> list[str]:
    return [json.loads(line)["path"] for line in out.read_text().splitlines()]


# -- the file ------------------------------------------------------------------------------------------------
def test_a_cut_off_last_line_is_dropped_and_a_quoted_newline_ends_no_row(tmp_path):
    row = json.dumps({"path": "/v/a.mp4", "verdict": "REAL"}) + "\n"
    assert complete_length((row + '{"path": "/v/b').encode(), csv_quoting=False) == len(row)
    header = ",".join(SCAN_FIELDS) + "\n"
    whole = 'a.mp4,/v/a.mp4,ERROR,,,,,,,,,,,"UnreadableMedia: line one\nline two"\n'
    cut = 'b.mp4,/v/b.mp4,ERROR,,,,,,,,,,,"UnreadableMedia: line one\n'  # stopped inside a quoted field
    assert complete_length((header + whole + cut).encode(), csv_quoting=True) == len(header + whole)
    assert complete_length((header + whole).encode(), csv_quoting=True) == len(header + whole)
    out = tmp_path / "r.csv"
    out.write_text(header + whole + cut)
    assert read_done(out) == {"/v/a.mp4"} and out.read_text() == header + whole
    with ResultsFile(out) as results:  # appended rows start on a line of their own
        results.write({"file": "c.mp4", "path": "/v/c.mp4", "verdict": "REAL"})
    assert read_done(out) == {"/v/a.mp4", "/v/c.mp4"}


def test_another_programs_file_is_refused_even_with_restart(tmp_path, faceless_video, capsys):
    other = tmp_path / "other.csv"
    other.write_text("name,score\nx,1\n")
    for extra in ([], ["--restart"]):
        assert main(["scan", str(faceless_video), "--out", str(other), *extra]) == 2
        assert "not a scan results file" in capsys.readouterr().err
    assert other.read_text() == "name,score\nx,1\n"


def test_a_results_file_in_use_by_another_scan_is_refused(tmp_path):
    out = tmp_path / "r.jsonl"
    with ResultsFile(out):
        with pytest.raises(InputError, match="another scan is writing"):
            ResultsFile(out)
    assert not out.exists()  # created, no row written: removed


# -- checked before anything loads -----------------------------------------------------------------------
@pytest.mark.parametrize("ray", [False, True])
def test_bad_out_and_missing_inputs_are_exit_2_before_the_models_load(tmp_path, faceless_video, capsys, monkeypatch,
                                                                      ray):
    def no_loading(*args, **kwargs):
        raise AssertionError("models loaded (or Ray started) before the inputs were checked")

    monkeypatch.setattr("deepfake_core.cli.scan.load_detector", no_loading)
    monkeypatch.setattr("deepfake_core.models.model_files.find_model_files", no_loading)
    if ray:
        pytest.importorskip("ray", reason="the ray extra is not installed: pip install 'deepfake-detector[ray]'")
        monkeypatch.setattr("ray.init", no_loading)
    extra = ["--ray"] if ray else []
    for out in ("/proc/x.jsonl", "/proc/self/x/r.csv"):
        assert main(["scan", str(faceless_video), "--out", out, *extra]) == 2
        err = capsys.readouterr().err
        assert f"--out {out} cannot be written" in err and "Traceback" not in err
    missing = tmp_path / "no_such_folder"
    assert main(["scan", str(faceless_video), str(missing), "--out", str(tmp_path / "r.csv"), *extra]) == 2
    assert f"no such file or folder: {missing}" in capsys.readouterr().err
    assert not (tmp_path / "r.csv").exists()


@pytest.mark.parametrize("ray", [False, True])
def test_an_out_that_is_not_a_regular_file_is_exit_2_without_waiting(tmp_path, faceless_video, ray):
    """Before: a named pipe as --out blocked the scan for ever in ResultsFile's open(), waiting for a reader; a
    link to /dev/null took rows no re-run could resume after. In a child process, so a hang fails the test."""
    if ray:
        pytest.importorskip("ray", reason="the ray extra is not installed: pip install 'deepfake-detector[ray]'")
    pipe, device = tmp_path / "r.jsonl", tmp_path / "n.csv"
    os.mkfifo(pipe)
    device.symlink_to(os.devnull)
    for out, kind in ((pipe, "a named pipe"), (device, "a device")):
        run = subprocess.run([sys.executable, "-m", "deepfake_core", "scan", str(faceless_video), "--out", str(out),
                              *(["--ray"] if ray else [])], capture_output=True, text=True, timeout=120)
        assert run.returncode == 2, run.stderr
        assert f"--out {out} is not a regular file ({kind})" in run.stderr and "Traceback" not in run.stderr
    assert pipe.exists() and device.is_symlink()  # left as they were


def test_a_pipe_put_there_after_the_check_does_not_block_either(tmp_path, monkeypatch):
    """The open itself does not wait for a reader (O_NONBLOCK): a pipe made between check_out and the open is
    refused too. An alarm turns a hang into a failure."""
    pipe = tmp_path / "r.jsonl"
    os.mkfifo(pipe)
    monkeypatch.setattr("deepfake_core.scan.results.check_out", lambda out: None)

    def hung(*args):  # not an OSError, which ResultsFile would turn into its own "cannot be written"
        raise AssertionError("ResultsFile waited for a reader of the pipe")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(20)
    try:
        with pytest.raises(InputError, match=r"cannot be written \(No such device or address\)"):
            ResultsFile(pipe)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert pipe.exists()


# -- resume --------------------------------------------------------------------------------------------------
def test_kill_9_mid_scan_then_the_same_command_loses_and_repeats_no_row(clip_folder, lite_models, tmp_path):
    out = tmp_path / "r.jsonl"
    cmd = _scan_cmd(clip_folder, out, lite_models, "-q")
    child = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + WAIT_S
        while not (out.is_file() and b"\n" in out.read_bytes()):  # one whole row on disk
            assert child.poll() is None, child.stderr.read().decode()
            assert time.monotonic() < deadline, "no row was written"
            time.sleep(0.02)
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
    first = _jsonl_paths(out) if out.read_bytes().endswith(b"\n") else None  # a cut line is possible: no check
    again = subprocess.run(cmd[:-1], capture_output=True, text=True, timeout=WAIT_S)
    assert again.returncode == 0, again.stderr
    skipped = int(again.stderr.split(" already done")[0].rsplit(", ", 1)[-1])
    assert skipped >= 1 and f"{CLIPS} files, {skipped} already done, {CLIPS - skipped} analysed" in again.stderr
    paths = _jsonl_paths(out)
    assert sorted(paths) == sorted(str(p) for p in clip_folder.iterdir())  # each input once: none lost or repeated
    if first is not None:
        assert paths[:len(first)] == first  # the rows of the killed run are kept as they were


def test_restart_analyses_everything_again(clip_folder, lite_models, tmp_path, faceless_video, capsys):
    directory, video = lite_models
    out = tmp_path / "r.csv"
    common = ["--out", str(out), "--models-dir", str(directory), "--video-model", str(video), "-q"]
    assert main(["scan", str(clip_folder / "clip_0.mp4"), str(clip_folder / "clip_1.mp4"), *common]) == 0
    assert main(["scan", str(clip_folder / "clip_0.mp4"), str(clip_folder / "clip_1.mp4"), *common]) == 0
    assert "2 files, 2 already done, 0 analysed" in capsys.readouterr().err
    assert main(["scan", str(clip_folder / "clip_1.mp4"), *common, "--restart"]) == 0
    assert "1 files, 0 already done, 1 analysed" in capsys.readouterr().err
    assert read_done(out) == {str(clip_folder / "clip_1.mp4")} and len(out.read_text().splitlines()) == 2


# -- a write failure mid-scan ----------------------------------------------------------------------------
def _limit_file_size(limit: int):
    def limit_child():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return limit_child


def test_a_write_failure_mid_scan_is_exit_2_saying_how_many_rows_are_safe(clip_folder, lite_models, tmp_path):
    # the header and one row fit under the file-size limit, the second row does not (a disk that fills up)
    one = tmp_path / "one.csv"
    assert main(["scan", str(clip_folder / "clip_0.mp4"), "--out", str(one), "--models-dir", str(lite_models[0]),
                 "--video-model", str(lite_models[1]), "-q"]) == 0
    out = tmp_path / "r.csv"
    p = subprocess.run(_scan_cmd(clip_folder, out, lite_models, "-q"), capture_output=True, text=True,
                       timeout=WAIT_S, preexec_fn=_limit_file_size(one.stat().st_size + 40))
    assert p.returncode == 2, p.stderr
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: cannot write {out} (File too large): 1 rows are safely in it"), p.stderr
    assert "Traceback" not in p.stderr and "internal error" not in p.stderr
    assert out.read_text().endswith("\n") and read_done(out) == {str(clip_folder / "clip_0.mp4")}


# -- symbolic link loops -----------------------------------------------------------------------------------
def test_a_two_link_loop_is_named_link_by_link(tmp_path, detector):
    a, b = tmp_path / "a.mp4", tmp_path / "b.mp4"
    os.symlink(b, a)
    os.symlink(a, b)
    with pytest.raises(UnreadableMedia) as e:
        detector.analyze(a)
    assert f"symbolic link loop ({a} -> {b} -> {a})" in str(e.value)
    assert "points back to itself" not in str(e.value)
