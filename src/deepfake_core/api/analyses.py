"""/v1/analyses: start an analysis (an upload, or a path inside --allow-dir), read it, its timeline, delete it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from .deps import Authorized, Config, Service
from .errors import ApiError, ErrorOut
from .intake import from_path, from_upload, wait_status
from .options import AnalysisOptions, PathRequest, UploadForm
from .schemas import JobOut
from .service import FINISHED, Job

router = APIRouter(prefix="/v1/analyses", tags=["analyses"], dependencies=[Authorized])

ERRORS = {status: {"model": ErrorOut, "description": what} for status, what in (
    (400, "a bad option or request; `incomplete_upload` (no closing boundary), `truncated_media` (a cut-off file)"),
    (401, "no or wrong API key"), (403, "a path outside --allow-dir"), (404, "no such analysis or file"),
    (408, "`upload_timeout`: the body came too slowly (--body-grace, --body-min-rate, --body-deadline)"),
    (413, "over the upload cap"), (415, "neither multipart/form-data nor JSON"),
    (422, "a file the detector cannot read (or, with wait=true, an analysis that failed)"),
    (429, "queue full (Retry-After)"), (500, "an internal error, with an id the server's log names"),
    (503, "the workers are not running"))}
START = {
    "summary": "Start an analysis",
    "description": "A multipart/form-data upload (the video in the `file` field), or, when the server was started "
                   "with --allow-dir, a JSON body naming a file inside that folder. Options go in the query string, "
                   "form fields or JSON keys. 202 with the analysis; with wait=true, 200 with the report when it "
                   "finished in time (422 when it failed). A place in the queue is taken only once the whole body "
                   "has arrived and the file has been checked.",
    "status_code": 202,
    "responses": {200: {"model": JobOut, "description": "wait=true: done"},
                  202: {"model": JobOut, "description": "queued or running (see Location)"}, **ERRORS},
    "openapi_extra": {"requestBody": {"required": True, "content": {
        "multipart/form-data": {"schema": UploadForm.model_json_schema()},
        "application/json": {"schema": PathRequest.model_json_schema()}}}},
}


def find(service: Service, config: Config, job_id: str) -> Job:
    job = service.get(job_id)
    if job is None:
        raise ApiError(404, "not_found", f"no analysis {job_id!r} (never made, deleted or expired after "
                                         f"{config.result_ttl_s:g} s)")
    return job


@router.post("", **START)
async def create_analysis(request: Request, service: Service, config: Config,
                          options: Annotated[AnalysisOptions, Query()]):  # type: ignore[valid-type]
    if not service.ready:
        raise ApiError(503, "not_ready", "the analysis workers are not running")
    query = options.model_dump(exclude_unset=True)  # checked before any of the body is read
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "multipart/form-data":
        job, wait = await from_upload(request, service, config, query)
    elif kind == "application/json":
        job, wait = await from_path(request, service, config, query)
    else:
        raise ApiError(415, "unsupported_media_type", "send the video as multipart/form-data (field `file`)"
                       + (", or JSON {\"path\": ...}" if config.allow_dir else ""))
    status = await wait_status(job, config.wait_timeout_s) if wait else 202
    return JSONResponse(job.to_dict(config.result_ttl_s), status_code=status,
                        headers={"Location": f"/v1/analyses/{job.id}"})


@router.get("/{job_id}", summary="Status, progress and, when done, the report", response_model=JobOut,
            response_model_exclude_unset=True, responses=ERRORS)
async def get_analysis(job_id: str, service: Service, config: Config):
    return find(service, config, job_id).to_dict(config.result_ttl_s)


@router.get("/{job_id}/timeline.csv", summary="The per-face timeline as CSV (as the web page's download)",
            response_class=PlainTextResponse, responses={200: {"content": {"text/csv": {}}}, **ERRORS})
async def get_timeline(job_id: str, service: Service, config: Config):
    job = find(service, config, job_id)
    if job.timeline_csv is None:
        raise ApiError(409, "not_done", f"analysis {job_id} is {job.status}: no timeline"
                       + (" yet" if job.status not in FINISHED else ""))
    return Response(job.timeline_csv, media_type="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{Path(job.name).stem}_timeline.csv"'})


@router.delete("/{job_id}", status_code=204, responses=ERRORS,
               summary="Forget an analysis (a queued one never runs, a running one stops)")
async def delete_analysis(job_id: str, service: Service, config: Config):
    if service.delete(job_id) is None:
        find(service, config, job_id)  # raises 404
    return Response(status_code=204)
