"""From a POST /v1/analyses request to a queued job: the body read on the clock (body.py), the options parsed
(options.py), the file checked (cut off? readable?), and only then a place taken in the queue, so a slow or
broken request never holds one.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from pathlib import Path

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from ..errors import DeepfakeError, NoVideoStream, SettingsError, TruncatedMedia
from ..settings import AnalysisSettings
from .body import CLOSE, body_chunks, read_body
from .config import ApiConfig
from .errors import ApiError
from .options import SETTING_OPTIONS, parse_options
from .service import FAILED, FINISHED, AnalysisService, Job, QueueFull, error_code
from .upload import receive_multipart, safe_name

FORM_OVERHEAD = 256 * 1024  # bytes a multipart body may carry beyond the file (boundaries, headers, options)
MAX_JSON_BYTES = 64 * 1024
RETRY_AFTER_S = 5  # suggested to a client refused with 429
WAIT_POLL_S = 0.05


def settings_for(options: dict, detector):
    """(AnalysisSettings, notes for the report) by the library's rule, as `deepfake-detect analyze` makes them
    (`Detector.resolve_settings`): the options given, the models folder's calibration (unless no_calibration)."""
    try:
        return detector.resolve_settings({k: options[k] for k in SETTING_OPTIONS if k in options},
                                         use_calibration=not options.get("no_calibration", False))
    except SettingsError as e:
        raise ApiError(400, "bad_settings", str(e)) from e


async def from_upload(request: Request, service: AnalysisService, config: ApiConfig, query: dict) -> tuple[Job, bool]:
    """(job, wait): a multipart upload streamed into a private folder, checked, then queued; nothing kept on any
    error."""
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > config.max_upload_bytes + FORM_OVERHEAD:
        raise ApiError(413, "too_large", f"the upload is over the server's limit of "
                                         f"{config.max_upload_bytes / 2**20:g} MB", CLOSE)
    folder = service.new_folder()
    try:
        upload = await receive_multipart(body_chunks(request, config.body_clock),
                                         request.headers.get("content-type", ""), folder, config.max_upload_bytes)
        if upload.path is None:
            raise ApiError(400, "no_file", "no video in the request: send it in the form field `file`")
        options = parse_options({**query, **upload.fields})
        if "path" in options:
            raise ApiError(400, "bad_option", "`path` is for JSON requests, not uploads")
        settings, notes = settings_for(options, service.detector)
        await _check(upload.path, settings, complete=True)
        job = submit(service, upload.path, upload.filename, settings, notes, options, folder)
        return job, options.get("wait", False)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


async def from_path(request: Request, service: AnalysisService, config: ApiConfig, query: dict) -> tuple[Job, bool]:
    """(job, wait) for a JSON request naming a file inside --allow-dir (the user's file: never deleted)."""
    if config.allow_dir is None:
        raise ApiError(403, "path_not_allowed", "this server takes uploads only (start it with --allow-dir to "
                                                "analyse files by path)")
    data = _json(await read_body(request, config.body_clock, MAX_JSON_BYTES))
    if not isinstance(data, dict) or not isinstance(data.get("path"), str) or not data["path"]:
        raise ApiError(400, "no_file", 'send {"path": "<file inside the allowed folder>"}')
    options = parse_options({**query, **data})
    path = _inside(config.allow_dir, options["path"])
    settings, notes = settings_for(options, service.detector)
    await _check(path, settings, complete=False)
    return submit(service, path, path.name, settings, notes, options, None), options.get("wait", False)


def _json(body: bytes):
    try:
        return json.loads(body or b"null")
    except RecursionError:
        raise ApiError(400, "bad_request", "the JSON body is nested too deeply") from None
    except ValueError as e:  # also bytes that are not UTF-8
        raise ApiError(400, "bad_request", f"the body is not valid JSON ({e})") from None


def _inside(root: Path, name: str) -> Path:
    """`name` resolved inside `root` (403 outside it, 404 when no such file)."""
    root = root.resolve()
    try:
        path = (root / name).resolve()
        inside, found = path.is_relative_to(root), path.is_file()
    except (OSError, RuntimeError):  # a name too long, a link loop
        inside, found = True, False
    if not inside:
        raise ApiError(403, "path_not_allowed", f"{name!r} is outside the allowed folder")
    if not found:
        raise ApiError(404, "no_such_file", f"no such file in the allowed folder: {name}")
    return path


async def _check(path: Path, settings: AnalysisSettings, complete: bool) -> None:
    """What cannot be analysed is refused now, as analyze refuses it; an upload must also be whole."""
    from ..media.truncation import check_complete
    from ..media.video import probe

    try:
        if complete:
            await run_in_threadpool(check_complete, path)
        await run_in_threadpool(probe, path, settings)
    except NoVideoStream:
        pass  # analysed: a NOT_APPLICABLE report, as analyze gives
    except TruncatedMedia as e:
        raise ApiError(400, "truncated_media", str(e)) from e
    except DeepfakeError as e:
        raise ApiError(422, error_code(e), str(e)) from e


def submit(service: AnalysisService, path: Path, name: str, settings: AnalysisSettings, notes: list[str],
           options: dict, folder: Path | None) -> Job:
    """A place taken in the queue (429 when none is left), and the job queued in it."""
    try:
        service.reserve()
    except QueueFull as e:
        raise ApiError(429, "queue_full", str(e), {"Retry-After": str(RETRY_AFTER_S)}) from e
    try:
        return service.submit(path, safe_name(name), settings, options.get("explain", 0), folder, tuple(notes))
    except BaseException:
        service.release()
        raise


async def wait_status(job: Job, timeout_s: float) -> int:
    """Wait up to `timeout_s` for the job: 200 done (or cancelled), 422 failed, 202 still going."""
    deadline = time.monotonic() + timeout_s
    while not job.done.is_set() and time.monotonic() < deadline:
        await asyncio.sleep(WAIT_POLL_S)
    return 422 if job.status == FAILED else 200 if job.status in FINISHED else 202
