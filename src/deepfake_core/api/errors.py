"""The API's one error shape, {"error": {"code": ..., "message": ...}}, and the handlers that give it to every
failure: our own ApiError, Starlette's 404/405, and anything unexpected (500 with an id the log line carries; the
traceback goes to the log once, never to the client). FastAPI's validation errors: options.validation_error."""

from __future__ import annotations

import json
import logging
import uuid

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("deepfake_core.api")


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


class ErrorBody(BaseModel):
    code: str  # stable, machine-readable: bad_option, queue_full, upload_timeout, truncated_media, ...
    message: str  # what happened and what to do


class ErrorOut(BaseModel):
    error: ErrorBody


def error_response(status: int, code: str, message: str, headers: dict | None = None, **extra) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}, **extra}, status_code=status, headers=headers)


async def _api_error(request: Request, e: ApiError) -> JSONResponse:
    return error_response(e.status, e.code, e.message, e.headers)


async def _http_error(request: Request, e: StarletteHTTPException) -> JSONResponse:
    codes = {404: "not_found", 405: "method_not_allowed"}
    return error_response(e.status_code, codes.get(e.status_code, "http_error"), str(e.detail),
                          getattr(e, "headers", None))


def add_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]


class CatchAll:
    """ASGI middleware: an exception no handler took becomes a 500 JSON error with an id; the traceback is logged
    here, once, with that id (Starlette's own handler would log it and re-raise it to the server, which logs it
    again and shows nothing better to the client)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = False

        async def tracking_send(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            error_id = uuid.uuid4().hex[:12]
            log.exception("internal error %s on %s %s", error_id, scope.get("method"), scope.get("path"))
            if started:  # the answer is on its way: nothing better to send; the server closes the connection
                return
            body = json.dumps({"error": {"code": "internal", "message": f"internal error (id {error_id}); the "
                                         f"server's log has the details", "id": error_id}}).encode()
            await send({"type": "http.response.start", "status": 500,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
