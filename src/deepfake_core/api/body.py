"""A request body read against a clock: a client that sends too slowly is cut off with 408 `upload_timeout`, so
a connection that sends headers and then nothing (or a trickle) cannot hold the server's resources.

After `grace_s` the body must have arrived at `min_rate` bytes/s on average since the request came, and all of it
within `deadline_s`. The wait for each next chunk is bounded by the moment the bytes so far stop meeting that,
so a stalled client is cut off at once at that moment, with no polling.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from starlette.requests import Request

from .errors import ApiError

CLOSE = {"Connection": "close"}  # a body not read to its end: the connection cannot carry another request


@dataclass(frozen=True)
class BodyClock:
    grace_s: float = 30.0  # seconds before the rate is checked (a slow start, a proxy buffering)
    min_rate: float = 50_000.0  # bytes/s, averaged since the request came, checked after the grace
    deadline_s: float = 900.0  # the whole body within this long, however fast it comes

    def time_left(self, elapsed_s: float, received: int) -> float:
        """Seconds the next chunk may take: until `received` bytes fall below the rate, or the deadline."""
        return min(self.deadline_s, max(self.grace_s, received / self.min_rate)) - elapsed_s

    def timeout_error(self, received: int, elapsed_s: float) -> ApiError:
        if elapsed_s >= self.deadline_s:
            why = f"the body took over {self.deadline_s:g} s"
        else:
            why = (f"{received:,} bytes came in {elapsed_s:.0f} s; the server needs at least "
                   f"{self.min_rate / 1000:g} kB/s after the first {self.grace_s:g} s")
        return ApiError(408, "upload_timeout", f"the request body came too slowly: {why}. Send it again on a "
                                               f"faster connection", CLOSE)


async def body_chunks(request: Request, clock: BodyClock) -> AsyncIterator[bytes]:
    """The body's chunks as they arrive; ApiError 408 when the client is too slow, 400 `incomplete_upload` when
    it goes away before the end."""
    start, received = time.monotonic(), 0
    while True:
        left = clock.time_left(time.monotonic() - start, received)
        try:
            message = await asyncio.wait_for(request.receive(), timeout=max(left, 0.0))
        except asyncio.TimeoutError:
            raise clock.timeout_error(received, time.monotonic() - start) from None
        if message["type"] == "http.disconnect":
            raise ApiError(400, "incomplete_upload", "the client closed the connection before the body ended",
                           CLOSE)
        chunk = message.get("body", b"")
        received += len(chunk)
        if chunk:
            yield chunk
        if not message.get("more_body", False):
            return


async def read_body(request: Request, clock: BodyClock, max_bytes: int) -> bytes:
    """A small body in memory (at most `max_bytes`, else 413), on the clock."""
    body = bytearray()
    async for chunk in body_chunks(request, clock):
        body += chunk
        if len(body) > max_bytes:
            raise ApiError(413, "too_large", f"a JSON request is at most {max_bytes} bytes", CLOSE)
    return bytes(body)
