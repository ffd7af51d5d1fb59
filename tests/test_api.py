"""The HTTP API through httpx's ASGI transport: reports equal to `analyze --json`, every error path as JSON,
the bounded queue, cancellation, expiry, and no upload left behind after success, failure or shutdown.
(tests/test_api_server.py runs the same application under a real uvicorn.)"""

import asyncio
import contextlib
import csv
import io
import json
import threading
import time

import httpx
import pytest

from deepfake_core.api.app import ApiConfig, create_app
from deepfake_core.cli import main
from deepfake_core.errors import UnreadableMedia

FAST = {"max_samples": "3"}  # options that keep an analysis short


@contextlib.asynccontextmanager
async def serving(detector, **config):
    """(app, client) with the app's lifespan entered: workers running, private temp folder made."""
    app = create_app(detector, ApiConfig(**config))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test", timeout=300) as client:
            yield app, client


def upload(name="clip.mp4", data=b"", media_type="video/mp4"):
    return {"file": (name, data, media_type)}


async def poll(client, job_id, headers=None, timeout_s=300):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        r = await client.get(f"/v1/analyses/{job_id}", headers=headers)
        assert r.status_code == 200, r.text
        if r.json()["status"] in ("done", "failed", "cancelled"):
            return r.json()
        await asyncio.sleep(0.1)
    raise AssertionError(f"analysis {job_id} did not finish in {timeout_s} s")


def job_folders(app):
    return sorted(p.name for p in app.state.service.temp_root.iterdir())


def comparable(report: dict) -> dict:
    """A report without what differs between two runs on the same file: timings, the path it was read from, and
    how this process prepared its networks (an OpenVINO model is converted by the first load, read from the cache
    by the next)."""
    report = json.loads(json.dumps(report))
    report.pop("timings")
    report["media"].pop("path")
    report["models"].pop("optimizations")
    return report


def assert_close(a, b, path="report"):
    """Equal structures; floats equal to 1e-6 (two processes' identical computations, printed and parsed)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), f"{path}: keys {sorted(a)} != {sorted(b)}"
        for k in a:
            assert_close(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), f"{path}: lengths differ"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_close(x, y, f"{path}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        assert a == pytest.approx(b, rel=1e-6, abs=1e-9), f"{path}: {a} != {b}"
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


class Gated:
    """A detector whose analyses wait until `release` is set (reporting progress, so a deleted job or a
    stopping server still cancels them), then run the real one, or raise `error` when set."""

    def __init__(self, detector):
        self._detector = detector
        self.started = threading.Event()
        self.release = threading.Event()
        self.error: Exception | None = None

    def analyze(self, path, settings=None, progress=None, **names_and_notes):
        self.started.set()
        while not self.release.wait(0.02):
            progress(0.0, "gated")
        if self.error is not None:
            raise self.error
        return self._detector.analyze(path, settings, progress, **names_and_notes)

    def __getattr__(self, name):
        return getattr(self._detector, name)


# -- the report ------------------------------------------------------------------------------------------------
def test_upload_poll_report_equals_analyze_json(detector, original_models, face_video, capsys):
    async def scenario():
        async with serving(detector, workers=1) as (app, client):
            r = await client.post("/v1/analyses", files=upload("face.mp4", face_video.read_bytes()))
            assert r.status_code == 202, r.text
            job = r.json()
            assert job["status"] in ("queued", "running") and r.headers["location"] == f"/v1/analyses/{job['id']}"
            done = await poll(client, job["id"])
            timeline = await client.get(f"/v1/analyses/{job['id']}/timeline.csv")
            assert job_folders(app) == []  # the upload was deleted when the job ended
            return done, timeline

    done, timeline = asyncio.run(scenario())
    assert done["status"] == "done" and done["progress"] == 1.0 and done["expires"] > done["finished"]
    api_report = done["report"]
    assert api_report["file"] == "face.mp4" and api_report["media"]["path"] == "face.mp4"  # no server path
    assert main(["analyze", str(face_video), "--json", "--quiet", "--models-dir", str(original_models),
                 "--device", "cpu"]) == 0
    cli_report = json.loads(capsys.readouterr().out)
    assert_close(comparable(api_report), comparable(cli_report))
    assert api_report["verdict"] in ("REAL", "FAKE", "UNCERTAIN") and api_report["counts"]["faces"] > 0
    assert timeline.status_code == 200 and timeline.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(timeline.text)))
    assert len(rows) == len(api_report["timeline"])


def test_wait_explain_and_the_service_endpoints(lite_detector, face_video):
    async def scenario():
        async with serving(lite_detector, workers=1) as (app, client):
            r = await client.post("/v1/analyses", params={**FAST, "wait": "true", "explain": "true"},
                                  files=upload("face.mp4", face_video.read_bytes()))
            assert r.status_code == 200, r.text
            report = r.json()["report"]
            explanations = report["explanations"]
            assert 1 <= len(explanations) <= 4 and explanations[0]["overlay"].startswith("data:image/png;base64,")
            assert explanations[0]["target_layer"] == "bn2"
            # options as form fields work as query parameters do
            r = await client.post("/v1/analyses", data={"wait": "true", "max_samples": "2", "fusion": "adaptive"},
                                  files=upload("face.mp4", face_video.read_bytes()))
            assert r.status_code == 200 and r.json()["report"]["settings"]["fusion"] == "adaptive"
            assert r.json()["report"]["counts"]["frames_sampled"] == 2
            assert "explanations" not in r.json()["report"]  # computed only when asked
            assert (await client.get("/healthz")).json()["status"] == "ok"
            ready = await client.get("/readyz")
            assert ready.status_code == 200 and ready.json()["workers"] == 1
            models = (await client.get("/v1/models")).json()
            assert models["video"]["sha256"] == lite_detector.video.sha256 and models["device"] == "cpu"
            assert "precision" in models and models["video"]["published"] is False
            metrics = (await client.get("/metrics")).text
            assert 'deepfake_api_analyses_total{outcome="done"} 2.0' in metrics
            assert "deepfake_api_queue_length 0.0" in metrics and "deepfake_api_analysis_seconds_count 2.0" in metrics
            assert 'route="/v1/analyses",status="200"' in metrics
            spec = (await client.get("/openapi.json")).json()
            assert {"/v1/analyses", "/v1/analyses/{job_id}", "/healthz", "/metrics"} <= set(spec["paths"])
            assert "multipart/form-data" in spec["paths"]["/v1/analyses"]["post"]["requestBody"]["content"]
            assert (await client.get("/docs")).status_code == 200
            assert job_folders(app) == []
            return app.state.service.temp_root

    root = asyncio.run(scenario())
    assert not root.exists()


# -- errors ----------------------------------------------------------------------------------------------------
def test_every_bad_request_is_a_json_error_and_leaves_nothing(lite_detector, face_video, tmp_path):
    text_file = b"this is a text file, not a video\n" * 20
    big = face_video.read_bytes()

    async def scenario():
        async with serving(lite_detector, max_upload_bytes=len(big) - 1) as (app, client):
            cases = [
                (await client.post("/v1/analyses", files={"fusion": (None, "equal")}), 400, "no_file"),
                (await client.post("/v1/analyses", files=upload("empty.mp4", b"")), 422, "unreadable_media"),
                (await client.post("/v1/analyses", files=upload("notes.mp4", text_file, "text/plain")),
                 422, "unreadable_media"),
                (await client.post("/v1/analyses", files=upload("face.mp4", big)), 413, "too_large"),
                (await client.post("/v1/analyses", params={"colour": "red"}, files=upload("a.mp4", b"x")),
                 400, "bad_option"),
                (await client.post("/v1/analyses", params={"threshold": "2"}, files=upload("a.mp4", b"x")),
                 400, "bad_settings"),
                (await client.post("/v1/analyses", params={"max_samples": "many"}, files=upload("a.mp4", b"x")),
                 400, "bad_option"),
                (await client.post("/v1/analyses", params={"explain": "99"}, files=upload("a.mp4", b"x")),
                 400, "bad_option"),
                (await client.post("/v1/analyses", content=b"raw", headers={"content-type": "video/mp4"}),
                 415, "unsupported_media_type"),
                (await client.post("/v1/analyses", json={"path": "/etc/passwd"}), 403, "path_not_allowed"),
                (await client.post("/v1/analyses", content=b"--x--",
                                   headers={"content-type": "multipart/form-data"}), 400, "bad_request"),
                (await client.get("/v1/analyses/0123456789abcdef"), 404, "not_found"),
                (await client.get("/v1/analyses/0123456789abcdef/timeline.csv"), 404, "not_found"),
                (await client.delete("/v1/analyses/0123456789abcdef"), 404, "not_found"),
                (await client.get("/no/such/route"), 404, "not_found"),
                (await client.put("/v1/analyses"), 405, "method_not_allowed"),
            ]
            for response, status, code in cases:
                assert response.status_code == status, (code, response.text)
                body = response.json()
                assert body["error"]["code"] == code and body["error"]["message"], body
                assert "Traceback" not in response.text
            assert "empty (0 bytes)" in cases[1][0].json()["error"]["message"]
            assert "notes.mp4" in cases[2][0].json()["error"]["message"]
            assert job_folders(app) == [] and app.state.service.queued == 0  # nothing kept, no place held
            metrics = (await client.get("/metrics")).text
            assert 'route="/v1/analyses",status="413"' in metrics

    asyncio.run(scenario())


def test_api_keys(lite_detector, face_video):
    async def scenario():
        async with serving(lite_detector, api_keys=frozenset({"k-one", "k-two"})) as (app, client):
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic k-one"}):
                for method, url in (("POST", "/v1/analyses"), ("GET", "/v1/analyses/x"), ("GET", "/v1/models"),
                                    ("GET", "/metrics"), ("DELETE", "/v1/analyses/x")):
                    r = await client.request(method, url, headers=headers)
                    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized", (method, url)
                    assert r.headers["www-authenticate"].startswith("Bearer")
            assert (await client.get("/healthz")).status_code == 200  # probes stay open
            assert (await client.get("/readyz")).status_code == 200
            good = {"Authorization": "Bearer k-two"}
            r = await client.post("/v1/analyses", headers=good, params={**FAST, "wait": "true"},
                                  files=upload("face.mp4", face_video.read_bytes()))
            assert r.status_code == 200 and r.json()["status"] == "done"
            assert (await client.get("/v1/models", headers={"Authorization": "Bearer k-one"})).status_code == 200

    asyncio.run(scenario())


def test_path_requests_only_inside_the_allowed_folder(lite_detector, face_video, tmp_path):
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    (allowed / "clip.mp4").write_bytes(face_video.read_bytes())
    (tmp_path / "secret.mp4").write_bytes(face_video.read_bytes())

    async def scenario():
        async with serving(lite_detector, allow_dir=allowed) as (app, client):
            r = await client.post("/v1/analyses", json={"path": "clip.mp4", "wait": True, **FAST})
            assert r.status_code == 200, r.text
            report = r.json()["report"]
            assert report["file"] == "clip.mp4" and report["media"]["path"] == str((allowed / "clip.mp4").resolve())
            for path, status, code in (("../secret.mp4", 403, "path_not_allowed"),
                                       (str(tmp_path / "secret.mp4"), 403, "path_not_allowed"),
                                       ("missing.mp4", 404, "no_such_file")):
                r = await client.post("/v1/analyses", json={"path": path})
                assert r.status_code == status and r.json()["error"]["code"] == code, path
            r = await client.post("/v1/analyses", content=b"{not json", headers={"content-type": "application/json"})
            assert r.status_code == 400 and r.json()["error"]["code"] == "bad_request"
            r = await client.post("/v1/analyses", json={"file": "clip.mp4"})
            assert r.status_code == 400 and r.json()["error"]["code"] == "no_file"
            assert (allowed / "clip.mp4").exists()  # a file named by path is the user's: never deleted

    asyncio.run(scenario())


# -- the queue, cancellation, failure, expiry, shutdown ---------------------------------------------------------
def test_queue_full_delete_and_shutdown_leave_no_files(lite_detector, face_video):
    gated = Gated(lite_detector)
    data = face_video.read_bytes()

    async def scenario():
        async with serving(gated, workers=1, queue_size=1) as (app, client):
            first = (await client.post("/v1/analyses", params=FAST, files=upload("a.mp4", data))).json()
            await asyncio.to_thread(gated.started.wait, 60)  # the worker holds the first
            second = await client.post("/v1/analyses", params=FAST, files=upload("b.mp4", data))
            assert second.status_code == 202 and second.json()["status"] == "queued"
            third = await client.post("/v1/analyses", params=FAST, files=upload("c.mp4", data))
            assert third.status_code == 429 and third.json()["error"]["code"] == "queue_full"
            assert int(third.headers["retry-after"]) > 0
            assert len(job_folders(app)) == 2  # the refused upload left nothing
            running = (await client.get(f"/v1/analyses/{first['id']}")).json()
            assert running["status"] == "running" and running["started"] is not None
            # a queued job deleted never runs: its place in the queue and its upload are freed at once
            assert (await client.delete(f"/v1/analyses/{second.json()['id']}")).status_code == 204
            assert (await client.get(f"/v1/analyses/{second.json()['id']}")).status_code == 404
            assert len(job_folders(app)) == 1
            # the place is free again: this one is queued behind the running one
            fourth = await client.post("/v1/analyses", params=FAST, files=upload("d.mp4", data))
            assert fourth.status_code == 202
            timeline = await client.get(f"/v1/analyses/{first['id']}/timeline.csv")
            assert timeline.status_code == 409 and timeline.json()["error"]["code"] == "not_done"
            root = app.state.service.temp_root
            assert len(job_folders(app)) == 2
            return app, root, fourth.json()["id"]  # leaving the block stops the server with two jobs unfinished

    app, root, fourth = asyncio.run(scenario())
    assert not root.exists()  # shutdown removed every upload
    service = app.state.service
    assert service.jobs[fourth].status == "cancelled" and service.running == 0
    assert all(not t.is_alive() for t in service._threads)


def test_failed_and_deleted_running_jobs_clean_up(lite_detector, face_video):
    gated = Gated(lite_detector)
    data = face_video.read_bytes()

    async def scenario():
        async with serving(gated, workers=1, queue_size=4, result_ttl_s=0.5) as (app, client):
            gated.error = UnreadableMedia("'a.mp4' is truncated: decoding stopped at frame 3")
            gated.release.set()
            r = await client.post("/v1/analyses", params={**FAST, "wait": "true"}, files=upload("a.mp4", data))
            assert r.status_code == 422, r.text
            failed = r.json()
            assert failed["status"] == "failed" and failed["error"]["code"] == "unreadable_media"
            assert "truncated" in failed["error"]["message"]
            assert job_folders(app) == []
            # a running job deleted stops at its next progress report, and its upload is removed
            gated.error = None
            gated.release.clear()
            gated.started.clear()
            job = (await client.post("/v1/analyses", params=FAST, files=upload("b.mp4", data))).json()
            await asyncio.to_thread(gated.started.wait, 60)
            assert (await client.delete(f"/v1/analyses/{job['id']}")).status_code == 204
            deadline = time.monotonic() + 30
            while job_folders(app) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert job_folders(app) == []
            # results expire: the failed job is forgotten after its lifetime
            await asyncio.sleep(0.8)
            assert (await client.get(f"/v1/analyses/{failed['id']}")).status_code == 404
            metrics = (await client.get("/metrics")).text
            assert 'deepfake_api_analyses_total{outcome="failed"} 1.0' in metrics
            assert 'deepfake_api_analyses_total{outcome="cancelled"} 1.0' in metrics

    asyncio.run(scenario())


def test_concurrent_clients_against_two_workers(lite_detector, face_video):
    """20 analyses from 4 clients at once against 2 workers and a queue of 3: every request is answered
    (202, or 429 and retried), every analysis finishes, none is lost or mixed up."""
    data = face_video.read_bytes()

    async def client_run(client, n):
        results, refused = [], 0
        for i in range(5):
            name = f"c{n}_{i}.mp4"
            while True:
                r = await client.post("/v1/analyses", params={"max_samples": "2"}, files=upload(name, data))
                if r.status_code != 429:
                    break
                refused += 1
                await asyncio.sleep(0.05)
            assert r.status_code == 202, r.text
            results.append((name, r.json()["id"]))
        done = [(name, await poll(client, job_id)) for name, job_id in results]
        return done, refused

    async def scenario():
        async with serving(lite_detector, workers=2, queue_size=3) as (app, client):
            runs = await asyncio.gather(*(client_run(client, n) for n in range(4)))
            metrics = (await client.get("/metrics")).text
            return app, runs, metrics

    app, runs, metrics = asyncio.run(scenario())
    finished = [item for done, _ in runs for item in done]
    assert len(finished) == 20 and len({job["id"] for _, job in finished}) == 20
    for name, job in finished:
        assert job["status"] == "done" and job["report"]["file"] == name and job["report"]["counts"]["faces"] > 0
    assert 'deepfake_api_analyses_total{outcome="done"} 20.0' in metrics
    assert sum(refused for _, refused in runs) > 0  # the queue bound was reached, and held


def test_boolean_settings_are_options_too():
    from deepfake_core.api.app import ApiError, parse_options

    assert parse_options({"face_reuse": "false", "audio_only": "true", "frame_skip": "3"}) == {
        "face_reuse": False, "audio_only": True, "frame_skip": 3}
    assert parse_options({"face_reuse": True}) == {"face_reuse": True}  # a JSON boolean
    with pytest.raises(ApiError, match="face_reuse must be true or false"):
        parse_options({"face_reuse": "sometimes"})
