"""The FastAPI application: HTTP in front of AnalysisService (service.py).

Every error is JSON, {"error": {"code": ..., "message": ...}}, with the HTTP status naming its kind:
400 bad request or option, 401 no or wrong API key, 403 a path outside --allow-dir, 404 unknown analysis,
409 report not ready, 413 upload over the cap, 415 unsupported body, 422 a file the detector cannot read,
429 queue full (Retry-After), 503 not ready, 500 internal.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import json
import logging
import shutil
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import DeepfakeError, NoVideoStream, SettingsError
from ..settings import AnalysisSettings, value_type
from ..version import __version__
from .service import FAILED, FINISHED, AnalysisService, QueueFull, error_code
from .upload import UploadError, receive_multipart, safe_name

log = logging.getLogger("deepfake_core.api")

FORM_OVERHEAD = 256 * 1024  # bytes a multipart body may carry beyond the file (boundaries, headers, options)
MAX_JSON_BYTES = 64 * 1024
RETRY_AFTER_S = 5  # suggested to a client refused with 429

# AnalysisSettings fields a request may give (query string, form fields or JSON keys); their types come from
# the fields (settings.py).
SETTING_OPTIONS = ("fusion", "threshold", "audio_temperature", "video_temperature", "frame_skip", "max_samples",
                   "abstain_below", "face_margin", "face_reuse", "audio_only")
_TYPES = {f.name: value_type(f) for f in dataclasses.fields(AnalysisSettings) if f.name in SETTING_OPTIONS}
OTHER_OPTIONS = ("no_calibration", "explain", "wait", "path")


@dataclass(frozen=True)
class ApiConfig:
    workers: int = 1  # analyses run at once (threads sharing one Detector)
    queue_size: int = 8  # analyses that may wait for a worker; one more gets 429
    max_upload_bytes: int = 500 * 2**20  # an upload over this is refused (413) while it streams
    result_ttl_s: float = 3600.0  # finished analyses are forgotten this long after they end
    wait_timeout_s: float = 300.0  # ?wait=true returns 202 (still running) after this long
    allow_dir: Path | None = None  # JSON {"path": ...} requests may name files inside this folder only
    api_keys: frozenset[str] = field(default_factory=frozenset)  # empty: no key needed
    temp_parent: str | None = None  # where the private upload folder is made (default: $TMPDIR)


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


def error_response(status: int, code: str, message: str, headers: dict | None = None, **extra) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}, **extra}, status_code=status, headers=headers)


# -- options ---------------------------------------------------------------------------------------------------
def parse_bool(name: str, value) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ApiError(400, "bad_option", f"{name} must be true or false; got {value!r}")


def parse_explain(value) -> int:
    """explain=true -> the default number of faces, explain=N -> N, explain=false -> 0."""
    from ..explain import DEFAULT_TOP_K, MAX_TOP_K

    if isinstance(value, bool) or str(value).strip().lower() in ("true", "false", "yes", "no", "on", "off", ""):
        return DEFAULT_TOP_K if parse_bool("explain", value) else 0
    try:
        k = int(str(value))
    except ValueError:
        raise ApiError(400, "bad_option", f"explain must be true, false or a number of faces; got {value!r}")
    if not 0 <= k <= MAX_TOP_K:
        raise ApiError(400, "bad_option", f"explain must be between 0 and {MAX_TOP_K} faces; got {k}")
    return k


def parse_options(given: dict) -> dict:
    """Typed options from strings (or JSON values); unknown names and bad values raise ApiError(400)."""
    out = {}
    for name, value in given.items():
        if name in _TYPES:
            if value is None:
                continue
            kind = _TYPES[name]
            if kind is bool:
                out[name] = parse_bool(name, value)
                continue
            try:
                if isinstance(value, bool) or (kind is str and not isinstance(value, str)):
                    raise ValueError(value)
                out[name] = int(str(value)) if kind is int else kind(value)
            except (TypeError, ValueError):
                raise ApiError(400, "bad_option", f"{name} must be a {kind.__name__}; got {value!r}") from None
        elif name in ("no_calibration", "wait"):
            out[name] = parse_bool(name, value)
        elif name == "explain":
            out[name] = parse_explain(value)
        elif name == "path":
            out[name] = value
        else:
            raise ApiError(400, "bad_option", f"unknown option {name!r}; the options are "
                                              f"{', '.join(SETTING_OPTIONS + OTHER_OPTIONS)}")
    return out


def settings_for(options: dict, detector):
    """(AnalysisSettings, notes for the report) by the library's rule, as `deepfake-detect analyze` makes them
    (`Detector.resolve_settings`): the options given, the models folder's calibration (unless no_calibration)."""
    try:
        return detector.resolve_settings({k: options[k] for k in SETTING_OPTIONS if k in options},
                                         use_calibration=not options.get("no_calibration", False))
    except SettingsError as e:
        raise ApiError(400, "bad_settings", str(e)) from e


def load_api_keys(env_value: str | None, path: str | None) -> frozenset[str]:
    """Keys from a comma- or space-separated environment value and a file (one per line, # comments)."""
    from ..errors import InputError

    keys = set((env_value or "").replace(",", " ").split())
    if path:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as e:
            raise InputError(f"cannot read the API keys file {path}: {e.strerror}") from e
        keys.update(line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#"))
    return frozenset(keys)


# -- the application -------------------------------------------------------------------------------------------
def create_app(detector, config: ApiConfig | None = None) -> FastAPI:
    """The API for a loaded `detector`. The workers start and stop with the app's lifespan (uvicorn runs it;
    in tests enter `app.router.lifespan_context(app)`)."""
    config = config or ApiConfig()
    service = AnalysisService(detector, config.workers, config.queue_size, config.result_ttl_s,
                              config.temp_parent)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        service.start()
        try:
            yield
        finally:
            await run_in_threadpool(service.shutdown)

    app = FastAPI(
        title="Deepfake Detector API", version=__version__, lifespan=lifespan,
        description="Upload a video, poll its analysis, read the same JSON report as `deepfake-detect analyze "
                    "--json`. Send `Authorization: Bearer <key>` when the server has API keys.",
    )
    app.state.service, app.state.config = service, config

    # -- errors as JSON ------------------------------------------------------------------------------------------
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, e: ApiError):
        return error_response(e.status, e.code, e.message, e.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, e: StarletteHTTPException):
        codes = {404: "not_found", 405: "method_not_allowed"}
        return error_response(e.status_code, codes.get(e.status_code, "http_error"), str(e.detail),
                              getattr(e, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, e: RequestValidationError):
        first = e.errors()[0] if e.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return error_response(400, "bad_request", f"{where}: {first.get('msg', 'invalid request')}")

    @app.exception_handler(Exception)
    async def _internal_error(request: Request, e: Exception):
        log.exception("internal error on %s %s", request.method, request.url.path)
        return error_response(500, "internal", f"internal error: {type(e).__name__}")

    @app.middleware("http")
    async def _count(request: Request, call_next):
        service.expire()
        response = await call_next(request)
        route = request.scope.get("route")
        service.metrics.requests.labels(method=request.method, route=getattr(route, "path", "unmatched"),
                                        status=str(response.status_code)).inc()
        return response

    def authorize(request: Request) -> None:
        if not config.api_keys:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise ApiError(401, "unauthorized", "this server needs an API key: send `Authorization: Bearer <key>`",
                           {"WWW-Authenticate": "Bearer"})
        if not any(hmac.compare_digest(token.encode(), key.encode()) for key in config.api_keys):
            raise ApiError(401, "unauthorized", "the API key is not valid",
                           {"WWW-Authenticate": 'Bearer error="invalid_token"'})

    def find(job_id: str):
        job = service.get(job_id)
        if job is None:
            raise ApiError(404, "not_found", f"no analysis {job_id!r} (never made, deleted or expired after "
                                             f"{config.result_ttl_s:g} s)")
        return job

    # -- probes, models, metrics ---------------------------------------------------------------------------------
    @app.get("/healthz", summary="The process is alive", tags=["service"])
    async def healthz():
        return {"status": "ok", "version": __version__}

    @app.get("/readyz", summary="Models loaded and workers running", tags=["service"])
    async def readyz():
        if not service.ready:
            return error_response(503, "not_ready", "the analysis workers are not running")
        return {"status": "ready", "workers": service.workers, "queue_size": service.queue_size,
                "queued": service.queued, "running": service.running}

    @app.get("/v1/models", summary="The model files in use, their sha256, device and precision", tags=["service"])
    async def models(request: Request):
        authorize(request)
        return detector.describe_models()

    @app.get("/metrics", summary="Prometheus metrics", tags=["service"], response_class=PlainTextResponse)
    async def metrics(request: Request):
        authorize(request)
        from prometheus_client import CONTENT_TYPE_LATEST

        return Response(service.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    # -- analyses ------------------------------------------------------------------------------------------------
    @app.post("/v1/analyses", status_code=202, tags=["analyses"], summary="Start an analysis",
              description="A multipart/form-data upload (the video in the `file` field), or, when the server was "
                          "started with --allow-dir, a JSON body `{\"path\": \"...\"}` naming a file inside that "
                          "folder. Options in the query string, form fields or JSON keys: "
                          + ", ".join(SETTING_OPTIONS) + " (as `deepfake-detect analyze`), no_calibration, "
                          "explain (true or a number of faces: Grad-CAM overlays of the most suspicious faces), "
                          "wait (true: answer when done, for short files). 202 with the analysis id; 200 with "
                          "the report when wait=true and it finished in time.",
              openapi_extra={"requestBody": {"content": {
                  "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {
                      "file": {"type": "string", "format": "binary"},
                      "explain": {"type": "string"}, "fusion": {"type": "string"}}}},
                  "application/json": {"schema": {"type": "object", "required": ["path"], "properties": {
                      "path": {"type": "string"}, "explain": {"type": "boolean"}}}},
              }}})
    async def create_analysis(request: Request):
        authorize(request)
        if not service.ready:
            raise ApiError(503, "not_ready", "the analysis workers are not running")
        query = dict(request.query_params)
        parse_options(query)  # checked before any upload is read
        content_type = request.headers.get("content-type", "")
        kind = content_type.split(";")[0].strip().lower()
        if kind == "multipart/form-data":
            job, wait = await _from_upload(request, content_type, query)
        elif kind == "application/json":
            job, wait = await _from_path(request, query)
        else:
            raise ApiError(415, "unsupported_media_type",
                           "send the video as multipart/form-data (field `file`)"
                           + (", or JSON {\"path\": ...}" if config.allow_dir else ""))
        headers = {"Location": f"/v1/analyses/{job.id}"}
        if wait:
            deadline = time.monotonic() + config.wait_timeout_s
            while not job.done.is_set() and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            if job.status == FAILED:
                return JSONResponse(job.to_dict(config.result_ttl_s), status_code=422, headers=headers)
            if job.status in FINISHED:
                return JSONResponse(job.to_dict(config.result_ttl_s), status_code=200, headers=headers)
        return JSONResponse(job.to_dict(config.result_ttl_s), status_code=202, headers=headers)

    async def _from_upload(request: Request, content_type: str, query: dict):
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > config.max_upload_bytes + FORM_OVERHEAD:
            raise ApiError(413, "too_large", f"the upload is over the server's limit of "
                                             f"{config.max_upload_bytes / 2**20:g} MB")
        reserve()
        folder = service.new_folder()
        try:
            try:
                upload = await receive_multipart(request.stream(), content_type, folder, config.max_upload_bytes)
            except UploadError as e:
                raise ApiError(e.status, e.code, e.message) from e
            if upload.path is None:
                raise ApiError(400, "no_file", "no video in the request: send it in the form field `file`")
            options = parse_options({**query, **upload.fields})
            if "path" in options:
                raise ApiError(400, "bad_option", "`path` is for JSON requests, not uploads")
            return await _submit(upload.path, upload.filename, options, folder)
        except BaseException:
            service.release()
            shutil.rmtree(folder, ignore_errors=True)
            raise

    async def _from_path(request: Request, query: dict):
        if config.allow_dir is None:
            raise ApiError(403, "path_not_allowed", "this server takes uploads only (start it with --allow-dir "
                                                    "to analyse files by path)")
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_JSON_BYTES:
                raise ApiError(413, "too_large", f"a JSON request is at most {MAX_JSON_BYTES} bytes")
        try:
            data = json.loads(body or b"null")
        except ValueError as e:
            raise ApiError(400, "bad_request", f"the body is not valid JSON ({e})") from e
        if not isinstance(data, dict) or not isinstance(data.get("path"), str) or not data["path"]:
            raise ApiError(400, "no_file", 'send {"path": "<file inside the allowed folder>"}')
        options = parse_options({**query, **data})
        root = config.allow_dir.resolve()
        path = (root / options["path"]).resolve()
        if not path.is_relative_to(root):
            raise ApiError(403, "path_not_allowed", f"{options['path']!r} is outside the allowed folder")
        if not path.is_file():
            raise ApiError(404, "no_such_file", f"no such file in the allowed folder: {options['path']}")
        reserve()
        try:
            return await _submit(path, path.name, options, None)
        except BaseException:
            service.release()
            raise

    def reserve() -> None:
        try:
            service.reserve()
        except QueueFull as e:
            raise ApiError(429, "queue_full", str(e), {"Retry-After": str(RETRY_AFTER_S)}) from e

    async def _submit(path: Path, name: str, options: dict, folder: Path | None):
        settings, notes = settings_for(options, detector)
        from ..video import probe

        try:  # what cannot be read at all is refused now, as analyze refuses it
            await run_in_threadpool(probe, path, settings)
        except NoVideoStream:
            pass  # analysed: a NOT_APPLICABLE report, as analyze gives
        except DeepfakeError as e:
            raise ApiError(422, error_code(e), str(e)) from e
        job = service.submit(path, safe_name(name), settings, options.get("explain", 0), folder, tuple(notes))
        return job, options.get("wait", False)

    @app.get("/v1/analyses/{job_id}", tags=["analyses"], summary="Status, progress and, when done, the report")
    async def get_analysis(job_id: str, request: Request):
        authorize(request)
        return find(job_id).to_dict(config.result_ttl_s)

    @app.get("/v1/analyses/{job_id}/timeline.csv", tags=["analyses"], response_class=PlainTextResponse,
             summary="The per-face timeline as CSV (as the web page's download)")
    async def get_timeline(job_id: str, request: Request):
        authorize(request)
        job = find(job_id)
        if job.timeline_csv is None:
            raise ApiError(409, "not_done", f"analysis {job_id} is {job.status}: no timeline"
                           + (" yet" if job.status not in FINISHED else ""))
        return Response(job.timeline_csv, media_type="text/csv",
                        headers={"Content-Disposition": f'attachment; filename="{Path(job.name).stem}_timeline.csv"'})

    @app.delete("/v1/analyses/{job_id}", status_code=204, tags=["analyses"],
                summary="Forget an analysis (a queued one never runs, a running one stops)")
    async def delete_analysis(job_id: str, request: Request):
        authorize(request)
        if service.delete(job_id) is None:
            find(job_id)  # raises 404
        return Response(status_code=204)

    return app
