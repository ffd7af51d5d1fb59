"""Streaming a multipart/form-data upload to disk with a size cap checked as the bytes arrive.

The file part goes straight to the job's private folder; the other parts (analysis options) are kept as
short strings. Over the cap the partial file is deleted and UploadError(413) raised: nothing is kept. A body
that ends before its closing boundary is 400 `incomplete_upload`: the file in it may be cut off.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from python_multipart.multipart import MultipartParser, MultipartState, parse_options_header

from .errors import ApiError

FILE_FIELD = "file"  # the form field holding the video
MAX_FIELD_BYTES = 4096  # an option's value
MAX_FIELDS = 32
MAX_BOUNDARY = 200  # characters (RFC 2046 allows 70; clients use ~40)


class UploadError(ApiError):
    """A body that is not a well-formed upload (400), or too big (413)."""


@dataclass
class Upload:
    path: Path | None = None  # where the file part was written (None: the request had none)
    filename: str = ""  # its name, made safe for a file name
    size: int = 0  # bytes
    fields: dict[str, str] = field(default_factory=dict)


def safe_name(name: str, default: str = "upload") -> str:
    """A file name without folders or odd characters ("../x y.mp4" -> "x_y.mp4"), at most 120 characters."""
    base = re.split(r"[\\/]", name or "")[-1]
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", base).lstrip(".")[-120:]
    return base or default


async def receive_multipart(chunks: AsyncIterator[bytes], content_type: str, folder: Path,
                            max_bytes: int) -> Upload:
    """Parse a multipart body from `chunks`, writing the `file` part into `folder` (at most `max_bytes`).
    Raises UploadError (400 malformed or two files, 413 over the cap); the caller removes `folder`."""
    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        raise UploadError(400, "bad_request", "multipart/form-data without a boundary")
    if len(boundary) > MAX_BOUNDARY:
        raise UploadError(400, "bad_request", f"the multipart boundary is {len(boundary)} characters long; at most "
                                              f"{MAX_BOUNDARY} are accepted")
    upload = Upload()
    state: dict = {"headers": {}, "field": b"", "value": b"", "name": None, "file": None, "data": None}

    def on_header_field(data, start, end):
        state["field"] += data[start:end]

    def on_header_value(data, start, end):
        state["value"] += data[start:end]

    def on_header_end():
        state["headers"][state["field"].decode("latin-1").lower()] = state["value"]
        state["field"], state["value"] = b"", b""

    def on_headers_finished():
        _, disposition = parse_options_header(state["headers"].get("content-disposition", b""))
        name = disposition.get(b"name", b"").decode("utf-8", "replace")
        filename = disposition.get(b"filename")
        state["name"] = name
        if name == FILE_FIELD or filename is not None:
            if upload.path is not None:
                raise UploadError(400, "bad_request", "send one video per request (one `file` part)")
            upload.filename = safe_name(filename.decode("utf-8", "replace") if filename else "")
            upload.path = folder / upload.filename
            state["file"] = open(upload.path, "xb")
        else:
            if len(upload.fields) >= MAX_FIELDS:
                raise UploadError(400, "bad_request", f"more than {MAX_FIELDS} form fields")
            state["data"] = bytearray()

    def on_part_data(data, start, end):
        if state["file"] is not None:
            upload.size += end - start
            if upload.size > max_bytes:
                raise UploadError(413, "too_large", f"the upload is over the server's limit of "
                                                     f"{max_bytes / 2**20:g} MB")
            state["file"].write(data[start:end])
        elif state["data"] is not None:
            state["data"] += data[start:end]
            if len(state["data"]) > MAX_FIELD_BYTES:
                raise UploadError(400, "bad_request", f"form field {state['name']!r} is over {MAX_FIELD_BYTES} bytes")

    def on_part_end():
        if state["file"] is not None:
            state["file"].close()
            state["file"] = None
        elif state["data"] is not None:
            upload.fields[state["name"]] = bytes(state["data"]).decode("utf-8", "replace")
            state["data"] = None
        state["headers"] = {}

    received = 0
    try:
        parser = MultipartParser(boundary, {
            "on_header_field": on_header_field, "on_header_value": on_header_value, "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished, "on_part_data": on_part_data, "on_part_end": on_part_end,
        })
        async for chunk in chunks:
            received += len(chunk)
            parser.write(chunk)
        parser.finalize()
    except ApiError:  # ours, and the body clock's (408, a client gone)
        raise
    except Exception as e:  # python-multipart's parse errors
        raise UploadError(400, "bad_request", f"malformed multipart/form-data body ({e})") from e
    finally:
        if state["file"] is not None:
            state["file"].close()
    if received and parser.state != MultipartState.END:
        raise UploadError(400, "incomplete_upload", "the multipart body ended before its closing boundary: the "
                                                    "upload was cut off. Send the whole file again")
    return upload
