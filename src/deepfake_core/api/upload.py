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


def check_boundary(content_type: str) -> bytes:
    """The multipart boundary named in `content_type`; UploadError(400) when it is missing or too long."""
    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        raise UploadError(400, "bad_request", "multipart/form-data without a boundary")
    if len(boundary) > MAX_BOUNDARY:
        raise UploadError(400, "bad_request", f"the multipart boundary is {len(boundary)} characters long; at most "
                                              f"{MAX_BOUNDARY} are accepted")
    return boundary


class _Parts:
    """python-multipart's callbacks: the `file` part written into `folder`, the other parts kept as options."""

    def __init__(self, folder: Path, max_bytes: int):
        self.folder, self.max_bytes, self.upload = folder, max_bytes, Upload()
        self.headers: dict[str, bytes] = {}
        self.field, self.value, self.name = b"", b"", ""
        self.file = None  # the open file while the file part streams in
        self.data: bytearray | None = None  # an option's value while it comes in

    def callbacks(self) -> dict:
        return {"on_header_field": self.on_header_field, "on_header_value": self.on_header_value,
                "on_header_end": self.on_header_end, "on_headers_finished": self.on_headers_finished,
                "on_part_data": self.on_part_data, "on_part_end": self.on_part_end}

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self.field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self.value += data[start:end]

    def on_header_end(self) -> None:
        self.headers[self.field.decode("latin-1").lower()] = self.value
        self.field, self.value = b"", b""

    def on_headers_finished(self) -> None:
        _, disposition = parse_options_header(self.headers.get("content-disposition", b""))
        self.name = disposition.get(b"name", b"").decode("utf-8", "replace")
        filename = disposition.get(b"filename")
        if self.name == FILE_FIELD or filename is not None:
            if self.upload.path is not None:
                raise UploadError(400, "bad_request", "send one video per request (one `file` part)")
            self.upload.filename = safe_name(filename.decode("utf-8", "replace") if filename else "")
            self.upload.path = self.folder / self.upload.filename
            self.file = open(self.upload.path, "xb")
        else:
            if len(self.upload.fields) >= MAX_FIELDS:
                raise UploadError(400, "bad_request", f"more than {MAX_FIELDS} form fields")
            self.data = bytearray()

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self.file is not None:
            self.upload.size += end - start
            if self.upload.size > self.max_bytes:
                raise UploadError(413, "too_large", f"the upload is over the server's limit of "
                                                     f"{self.max_bytes / 2**20:g} MB")
            self.file.write(data[start:end])
        elif self.data is not None:
            self.data += data[start:end]
            if len(self.data) > MAX_FIELD_BYTES:
                raise UploadError(400, "bad_request", f"form field {self.name!r} is over {MAX_FIELD_BYTES} bytes")

    def on_part_end(self) -> None:
        self.close()
        if self.data is not None:
            self.upload.fields[self.name] = bytes(self.data).decode("utf-8", "replace")
            self.data = None
        self.headers = {}

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


async def receive_multipart(chunks: AsyncIterator[bytes], content_type: str, folder: Path,
                            max_bytes: int) -> Upload:
    """Parse a multipart body from `chunks`, writing the `file` part into `folder` (at most `max_bytes`).
    Raises UploadError (400 malformed, cut off or two files, 413 over the cap); the caller removes `folder`."""
    boundary = check_boundary(content_type)
    parts, received = _Parts(folder, max_bytes), 0
    try:
        parser = MultipartParser(boundary, parts.callbacks())
        async for chunk in chunks:
            received += len(chunk)
            parser.write(chunk)
        parser.finalize()
    except ApiError:  # ours, and the body clock's (408, a client gone)
        raise
    except Exception as e:  # python-multipart's parse errors
        raise UploadError(400, "bad_request", f"malformed multipart/form-data body ({e})") from e
    finally:
        parts.close()
    if received and parser.state != MultipartState.END:
        raise UploadError(400, "incomplete_upload", "the multipart body ended before its closing boundary: the "
                                                    "upload was cut off. Send the whole file again")
    return parts.upload
