"""The service's own endpoints: liveness, readiness, the models in use, Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from ..version import __version__
from .deps import Authorized, Service
from .errors import ErrorOut, error_response
from .schemas import HealthOut, ReadyOut

router = APIRouter(tags=["service"])


@router.get("/healthz", summary="The process is alive", response_model=HealthOut)
async def healthz():
    return {"status": "ok", "version": __version__}


@router.get("/readyz", summary="Models loaded and workers running", response_model=ReadyOut,
            responses={503: {"model": ErrorOut, "description": "the workers are not running"}})
async def readyz(service: Service):
    if not service.ready:
        return error_response(503, "not_ready", "the analysis workers are not running")
    return {"status": "ready", "workers": service.workers, "queue_size": service.queue_size,
            "queued": service.queued, "running": service.running}


@router.get("/v1/models", summary="The model files in use, their sha256, device and precision",
            dependencies=[Authorized], response_class=JSONResponse)
async def models(service: Service) -> dict:
    return service.detector.describe_models()


@router.get("/metrics", summary="Prometheus metrics", dependencies=[Authorized], response_class=PlainTextResponse)
async def metrics(service: Service):
    from prometheus_client import CONTENT_TYPE_LATEST

    return Response(service.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
