"""What the route handlers get from FastAPI's `Depends`: the service, the configuration, and the API key check."""

from __future__ import annotations

import hmac
from typing import Annotated, Optional

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from .config import ApiConfig
from .errors import ApiError
from .service import AnalysisService

_bearer = HTTPBearer(auto_error=False, description="An API key, when the server has some (--api-keys-file or "
                                                   "DEEPFAKE_API_KEYS)")


def get_service(request: Request) -> AnalysisService:
    return request.app.state.service


def get_config(request: Request) -> ApiConfig:
    return request.app.state.config


Service = Annotated[AnalysisService, Depends(get_service)]
Config = Annotated[ApiConfig, Depends(get_config)]


def require_key(config: Config, credentials: Annotated[Optional[HTTPAuthorizationCredentials],
                                                         Depends(_bearer)]) -> None:
    """401 unless the server needs no key or `Authorization: Bearer <key>` names one of its keys."""
    keys = config.api_keys
    if not keys:
        return
    token = credentials.credentials.strip() if credentials is not None else ""
    if not token:
        raise ApiError(401, "unauthorized", "this server needs an API key: send `Authorization: Bearer <key>`",
                       {"WWW-Authenticate": "Bearer"})
    if not any(hmac.compare_digest(token.encode(), key.encode()) for key in keys):
        raise ApiError(401, "unauthorized", "the API key is not valid",
                       {"WWW-Authenticate": 'Bearer error="invalid_token"'})


Authorized = Depends(require_key)
