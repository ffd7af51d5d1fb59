"""The analysis options a request may give (query string, form fields or JSON keys), as Pydantic models made
from the AnalysisSettings fields: the OpenAPI document shows them, and one validator parses them wherever they
come from. Values arrive as strings (query, form) or JSON values; a bad one is 400 `bad_option`."""

from __future__ import annotations

import dataclasses
from functools import partial
from typing import Annotated, Any, Optional, Union

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BeforeValidator, ConfigDict, Field, ValidationError, create_model

from ..settings import AnalysisSettings, help_text, value_type
from .errors import ApiError, error_response

# AnalysisSettings fields a request may give; their types and help come from the fields (settings.py).
SETTING_OPTIONS = ("fusion", "threshold", "audio_temperature", "video_temperature", "frame_skip", "max_samples",
                   "abstain_below", "face_margin", "face_reuse", "audio_only")
OTHER_OPTIONS = ("no_calibration", "explain", "wait", "path")
TRUE, FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")


def parse_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in TRUE or text in FALSE:
        return text in TRUE
    raise ValueError(f"{name} must be true or false; got {value!r}")


def parse_explain(value: Any) -> int:
    """explain=true -> the default number of faces, explain=N -> N, explain=false -> 0."""
    from ..analysis.explain import DEFAULT_TOP_K, MAX_TOP_K

    if isinstance(value, bool) or str(value).strip().lower() in TRUE + FALSE:
        return DEFAULT_TOP_K if parse_bool("explain", value) else 0
    try:
        k = int(str(value))
    except ValueError:
        raise ValueError(f"explain must be true, false or a number of faces; got {value!r}") from None
    if not 0 <= k <= MAX_TOP_K:
        raise ValueError(f"explain must be between 0 and {MAX_TOP_K} faces; got {k}")
    return k


def parse_value(name: str, kind: type, value: Any) -> Any:
    """A setting's value from a string or a JSON value (a JSON true is not a number, 5 is not a name)."""
    if value is None:
        return None
    if kind is bool:
        return parse_bool(name, value)
    if isinstance(value, bool) or (kind is str and not isinstance(value, str)) or "\x00" in str(value):
        raise ValueError(f"{name} must be a {kind.__name__}; got {value!r}")
    try:
        return int(str(value)) if kind is int else kind(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a {kind.__name__}; got {value!r}") from None


def _setting(f: dataclasses.Field) -> tuple:
    kind = value_type(f)
    return (Annotated[Optional[kind], BeforeValidator(partial(parse_value, f.name, kind))],
            Field(None, description=help_text(f) if "option" in f.metadata else None))


_SETTINGS = {f.name: f for f in dataclasses.fields(AnalysisSettings)}
AnalysisOptions = create_model(
    "AnalysisOptions", __config__=ConfigDict(extra="forbid"),
    **{name: _setting(_SETTINGS[name]) for name in SETTING_OPTIONS},
    no_calibration=(Annotated[Optional[bool], BeforeValidator(partial(parse_bool, "no_calibration"))], Field(
        None, description="ignore the models folder's calibration.json (as `analyze --no-calibration`)")),
    explain=(Annotated[Optional[Union[bool, int]], BeforeValidator(parse_explain)], Field(
        None, description="true or a number of faces: Grad-CAM overlays of the most suspicious faces")),
    wait=(Annotated[Optional[bool], BeforeValidator(partial(parse_bool, "wait"))], Field(
        None, description="true: answer when the analysis is done (200 with the report; 202 after the server's "
                          "--wait-timeout), for short files")),
)
AnalysisOptions.__doc__ = "Analysis options, as `deepfake-detect analyze` takes them."


class UploadForm(AnalysisOptions):  # type: ignore[misc, valid-type]
    """A multipart/form-data upload: the video in `file`, options as further fields."""

    file: bytes = Field(json_schema_extra={"format": "binary"}, description="the video")


class PathRequest(AnalysisOptions):  # type: ignore[misc, valid-type]
    """A JSON request naming a file inside the server's --allow-dir folder."""

    path: str = Field(description="a file inside the folder the server was started with (--allow-dir)")


def parse_path(value: Any) -> str:
    if not isinstance(value, str) or not value or "\x00" in value:
        raise ValueError(f"path must be a file name inside the allowed folder; got {value!r}")
    return value


class _AnyOptions(AnalysisOptions):  # type: ignore[misc, valid-type]
    path: Annotated[Optional[str], BeforeValidator(parse_path)] = None  # the caller decides where it may appear


def parse_options(given: dict) -> dict:
    """The options given, typed; an unknown name or a bad value raises ApiError(400, bad_option)."""
    try:
        parsed = _AnyOptions.model_validate(given)
    except ValidationError as e:
        raise ApiError(400, "bad_option", option_message(e)) from None
    return {k: v for k, v in parsed.model_dump(exclude_unset=True).items() if v is not None}


def option_message(e: ValidationError | RequestValidationError) -> str:
    """The first error in words: our own converters' messages, or the unknown option's name."""
    first = e.errors()[0]
    if first["type"] == "extra_forbidden":
        return f"unknown option {first['loc'][-1]!r}; the options are {', '.join(SETTING_OPTIONS + OTHER_OPTIONS)}"
    error = (first.get("ctx") or {}).get("error")
    return str(error) if error is not None else f"{first['loc'][-1]}: {first.get('msg', 'invalid value')}"


async def validation_error(request: Request, e: RequestValidationError) -> JSONResponse:
    """FastAPI's checks: the query string's options (AnalysisOptions) are 400 bad_option, the rest bad_request."""
    first = e.errors()[0] if e.errors() else {}
    if first.get("loc", ("",))[0] == "query":
        return error_response(400, "bad_option", option_message(e))
    where = ".".join(str(p) for p in first.get("loc", ()))
    return error_response(400, "bad_request", f"{where}: {first.get('msg', 'invalid request')}")

