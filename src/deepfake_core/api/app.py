"""The FastAPI application: HTTP in front of AnalysisService (service.py), one router per resource (probes.py,
analyses.py), the request intake in intake.py.

Every error is JSON, {"error": {"code": ..., "message": ...}}, with the HTTP status naming its kind:
400 bad request or option (`incomplete_upload`, `truncated_media`), 401 no or wrong API key, 403 a path outside
--allow-dir, 404 unknown analysis, 408 a body sent too slowly (`upload_timeout`), 409 report not ready, 413 upload
over the cap, 415 unsupported body, 422 a file the detector cannot read, 429 queue full (Retry-After), 503 not
ready, 500 internal (with an id; the traceback is in the server's log).
"""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.concurrency import run_in_threadpool

from ..version import __version__
from . import analyses, probes
from .config import ApiConfig, load_api_keys
from .errors import ApiError, CatchAll, add_error_handlers, error_response
from .options import OTHER_OPTIONS, SETTING_OPTIONS, parse_options, validation_error
from .service import AnalysisService

__all__ = ["ApiConfig", "ApiError", "OTHER_OPTIONS", "SETTING_OPTIONS", "create_app", "error_response",
           "load_api_keys", "parse_options"]

DESCRIPTION = ("Upload a video, poll its analysis, read the same JSON report as `deepfake-detect analyze --json`. "
               "Send `Authorization: Bearer <key>` when the server has API keys.")


class Counting:
    """ASGI middleware: expires old results, and counts each answer by method, route and status (Prometheus)."""

    def __init__(self, app, service: AnalysisService):
        self.app, self.service = app, service

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        self.service.expire()
        status = []

        async def counting_send(message):
            if message["type"] == "http.response.start":
                status.append(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            self.service.metrics.requests.labels(method=scope["method"], route=route,
                                                 status=str(status[0] if status else 500)).inc()


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

    app = FastAPI(title="Deepfake Detector API", version=__version__, lifespan=lifespan, description=DESCRIPTION)
    app.state.service, app.state.config = service, config
    add_error_handlers(app)
    app.add_exception_handler(RequestValidationError, validation_error)  # type: ignore[arg-type]
    app.add_middleware(CatchAll)
    app.add_middleware(Counting, service=service)  # outermost: it sees the catch-all's 500s too
    app.include_router(probes.router)
    app.include_router(analyses.router)
    return app
