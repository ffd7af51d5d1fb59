"""Hostile clients: slow or stalled bodies (a real uvicorn on 127.0.0.1, in this process), cut-off bodies and
files, malformed requests, and an unexpected error. Each is a clear 4xx (or one 500 with an id), never a held
queue place, a traceback to the client or a file left behind.

Timing: the body clock in these tests is short (a few seconds) and every wait on an answer is long (minutes),
so a loaded machine makes them slower, never wrong."""

import asyncio
import contextlib
import json
import logging
import socket
import threading
import time

import httpx
import pytest
import uvicorn

from deepfake_core.api.app import ApiConfig, create_app
from test_api import FAST, job_folders, poll, serving, upload
from conftest import moving_face_frames, speech_like, write_video

ANSWER_S = 120  # the longest any answer may take on a loaded machine
BOUNDARY = "hostile-boundary"


@contextlib.contextmanager
def live_server(detector, **config):
    """(app, port): the API under a real uvicorn on 127.0.0.1 in a thread of this process."""
    app = create_app(detector, ApiConfig(**config))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, lifespan="on"))
    thread = threading.Thread(target=server.run, name="test-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 300
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    try:
        yield app, server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(120)


def clock(grace_s: float, min_rate: float, deadline_s: float = 600.0):
    from deepfake_core.api.body import BodyClock

    return BodyClock(grace_s, min_rate, deadline_s)


def multipart(data: bytes, name: str = "clip.mp4", closed: bool = True) -> bytes:
    body = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
            f"Content-Type: video/mp4\r\n\r\n").encode() + data + b"\r\n"
    return body + (f"--{BOUNDARY}--\r\n".encode() if closed else b"")


def request_head(length: int, content_type: str = f"multipart/form-data; boundary={BOUNDARY}") -> bytes:
    return (f"POST /v1/analyses HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {length}\r\n\r\n").encode()


def answer(sock: socket.socket) -> tuple[int, dict]:
    """(status, JSON body) of the response on `sock`; socket.timeout if none comes within its timeout."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"the server closed the connection without an answer: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length"))
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "the server closed the connection mid-answer"
        body += chunk
    return int(head.split()[1]), json.loads(body)


def stalled(port: int, first_bytes: bytes) -> socket.socket:
    """A connection that has sent `first_bytes` and will send nothing more."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=ANSWER_S)
    sock.sendall(first_bytes)
    return sock


# -- slow clients ------------------------------------------------------------------------------------------------
def test_stalled_uploads_hold_no_queue_place_and_are_cut_off(lite_detector, face_video):
    """A queue of one, and more stalled uploads than places: a normal upload is still accepted, and each stalled
    one gets 408 upload_timeout once the grace has passed, its partial file removed."""
    data = face_video.read_bytes()
    body = multipart(data)
    with live_server(lite_detector, workers=1, queue_size=1, body_clock=clock(5.0, 5_000)) as (app, port):
        slow = [stalled(port, request_head(len(body)) + body[:1000]) for _ in range(2)]
        slow.append(stalled(port, request_head(len(body))))  # headers, then nothing
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=ANSWER_S) as client:
            r = client.post("/v1/analyses", params=FAST, files=upload("ok.mp4", data))
            assert r.status_code == 202, r.text
            for sock in slow:
                with sock:
                    status, error = answer(sock)
                assert status == 408 and error["error"]["code"] == "upload_timeout", error
                assert "kB/s" in error["error"]["message"]
            job = r.json()
            deadline = time.monotonic() + 300
            while client.get(f"/v1/analyses/{job['id']}").json()["status"] in ("queued", "running"):
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert job_folders(app) == [] and app.state.service.queued == 0


def test_a_trickling_body_is_cut_off(lite_detector, face_video):
    """100 bytes every 0.2 s (0.5 kB/s) against a minimum of 5 kB/s after 2 s: 408, the file removed."""
    body = multipart(face_video.read_bytes())
    with live_server(lite_detector, body_clock=clock(2.0, 5_000)) as (app, port):
        with socket.create_connection(("127.0.0.1", port), timeout=ANSWER_S) as sock:
            sock.sendall(request_head(len(body)))
            start = time.monotonic()
            with contextlib.suppress(OSError):  # the server stops reading once it has answered
                for i in range(0, len(body) - 100, 100):
                    sock.sendall(body[i:i + 100])
                    time.sleep(0.2)
                    assert time.monotonic() - start < ANSWER_S, "the trickle was never cut off"
                    if sock_readable(sock):
                        break
            status, error = answer(sock)
        assert status == 408 and error["error"]["code"] == "upload_timeout"
        assert job_folders(app) == [] and app.state.service.queued == 0


def sock_readable(sock: socket.socket) -> bool:
    import select

    return bool(select.select([sock], [], [], 0)[0])


def test_a_stalled_json_body_is_cut_off(lite_detector, tmp_path):
    with live_server(lite_detector, allow_dir=tmp_path, body_clock=clock(2.0, 5_000)) as (app, port):
        with stalled(port, request_head(40, "application/json") + b'{"path": "cl') as sock:
            status, error = answer(sock)
        assert status == 408 and error["error"]["code"] == "upload_timeout"


# -- cut-off bodies and files ------------------------------------------------------------------------------------
def test_a_multipart_body_without_its_closing_boundary_is_incomplete(lite_detector, face_video):
    async def scenario():
        async with serving(lite_detector) as (app, client):
            r = await client.post("/v1/analyses", params=FAST, content=multipart(face_video.read_bytes(), closed=False),
                                  headers={"content-type": f"multipart/form-data; boundary={BOUNDARY}"})
            assert r.status_code == 400 and r.json()["error"]["code"] == "incomplete_upload", r.text
            assert job_folders(app) == [] and app.state.service.queued == 0

    asyncio.run(scenario())


@pytest.fixture(scope="module")
def whole_clips(tmp_path_factory, face_video):
    """{name: bytes}: the same clip as a faststart MP4 (moov first), a moov-at-end MP4 and a Matroska file."""
    folder = tmp_path_factory.mktemp("containers")
    frames, voice = list(moving_face_frames(100)), speech_like(4.0)
    faststart = write_video(folder / "faststart.mp4", frames, audio=voice, options={"movflags": "faststart"})
    mkv = write_video(folder / "clip.mkv", frames, audio=voice)
    return {"faststart.mp4": faststart.read_bytes(), "moov_at_end.mp4": face_video.read_bytes(),
            "clip.mkv": mkv.read_bytes()}


def test_cut_off_media_uploads_are_refused(lite_detector, whole_clips):
    """Each file missing its last 40 kB (and one missing a single byte) is 400 truncated_media, before any
    analysis; the whole files are accepted."""

    async def scenario():
        async with serving(lite_detector, queue_size=8) as (app, client):
            for name, data in whole_clips.items():
                assert data[4:8] == b"ftyp" or data[:4] == b"\x1a\x45\xdf\xa3"
                for cut in (data[:-40_000], data[:-1]):
                    r = await client.post("/v1/analyses", params=FAST, files=upload(name, cut))
                    assert r.status_code == 400 and r.json()["error"]["code"] == "truncated_media", (name, r.text)
                    assert "cut off" in r.json()["error"]["message"]
                r = await client.post("/v1/analyses", params=FAST, files=upload(name, data))
                assert r.status_code == 202, (name, r.text)
                assert (await poll(client, r.json()["id"]))["status"] == "done"
            assert job_folders(app) == []

    asyncio.run(scenario())
    from deepfake_core.errors import TruncatedMedia
    from deepfake_core.media.truncation import check_complete

    with pytest.raises(TruncatedMedia):  # the library's check, as the API uses it
        check_complete_bytes(check_complete, whole_clips["faststart.mp4"][:-40_000])


def check_complete_bytes(check, data: bytes):
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "cut.mp4"
        path.write_bytes(data)
        check(path)


# -- malformed requests ------------------------------------------------------------------------------------------
def test_a_boundary_over_256_characters_is_a_bad_request(lite_detector, face_video):
    long = "b" * 300
    body = multipart(face_video.read_bytes()).replace(BOUNDARY.encode(), long.encode())

    async def scenario():
        async with serving(lite_detector) as (app, client):
            r = await client.post("/v1/analyses", content=body,
                                  headers={"content-type": f"multipart/form-data; boundary={long}"})
            assert r.status_code == 400 and r.json()["error"]["code"] == "bad_request", r.text
            assert "boundary" in r.json()["error"]["message"] and job_folders(app) == []

    asyncio.run(scenario())


def test_a_nul_byte_in_a_path_is_a_bad_option(lite_detector, tmp_path):
    async def scenario():
        async with serving(lite_detector, allow_dir=tmp_path) as (app, client):
            r = await client.post("/v1/analyses", json={"path": "clip\x00.mp4"})
            assert r.status_code == 400 and r.json()["error"]["code"] == "bad_option", r.text

    asyncio.run(scenario())


def test_deeply_nested_json_under_the_cap_is_a_bad_request(lite_detector, tmp_path):
    async def scenario():
        async with serving(lite_detector, allow_dir=tmp_path) as (app, client):
            for body in (b"[" * 20_000 + b"]" * 20_000, b'{"a":' * 10_000 + b"1" + b"}" * 10_000):
                assert len(body) < 64 * 1024
                r = await client.post("/v1/analyses", content=body, headers={"content-type": "application/json"})
                assert r.status_code == 400 and r.json()["error"]["code"] == "bad_request", r.text
                assert "nested" in r.json()["error"]["message"]

    asyncio.run(scenario())


# -- the unexpected --------------------------------------------------------------------------------------------
class Broken:
    """A detector whose model description fails as no code expects."""

    def describe_models(self):
        raise RuntimeError("secret detail /srv/models")


def test_an_unexpected_error_is_a_500_with_an_id_and_one_logged_traceback(caplog):
    caplog.set_level(logging.INFO)
    with live_server(Broken()) as (app, port):
        r = httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=ANSWER_S)
    assert r.status_code == 500, r.text
    error = r.json()["error"]
    assert error["code"] == "internal" and error["id"] in error["message"]
    assert "secret" not in r.text and "Traceback" not in r.text and "RuntimeError" not in r.text
    logged = [rec for rec in caplog.records if rec.exc_info is not None]
    assert len(logged) == 1 and error["id"] in logged[0].getMessage()
    assert 'status="500"' in app.state.service.metrics.exposition().decode()


def test_the_body_clock_options(tmp_path, capsys):
    from deepfake_core.cli import build_parser, main
    from deepfake_core.cli.api import config_from_args

    args = build_parser().parse_args(["api", "--body-grace", "5", "--body-min-rate", "20", "--body-deadline", "60"])
    assert config_from_args(args).body_clock == clock(5.0, 20_000, 60.0)
    defaults = config_from_args(build_parser().parse_args(["api"])).body_clock
    assert (defaults.grace_s, defaults.min_rate, defaults.deadline_s) == (30.0, 50_000.0, 900.0)
    assert main(["api", "--body-min-rate", "0", "--models-dir", str(tmp_path)]) == 2
    assert "--body-min-rate must be above 0" in capsys.readouterr().err
