"""A resumable HTTP download of one file of known size, used as pooch's downloader by `weights.pull`.

pooch (`pooch.retrieve`) does the rest: it decides whether the file must be fetched, hands this
downloader a temporary file beside the target, checks the sha256 and renames the file into place.
What pooch lacks is here: the bytes go to `<file>.partial`, which survives an interruption and is
resumed with an HTTP Range request; retries with exponential backoff; connect and read timeouts (a
stalled server fails instead of hanging); an early size check; a progress bar on stderr. Requests takes
proxies from the environment (HTTPS_PROXY, HTTP_PROXY, NO_PROXY).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import ChecksumMismatch, DownloadError, SettingsError
from .registry import megabytes

# (file name, bytes done, bytes in all) -> None; called as a download progresses.
ProgressCallback = Callable[[str, int, int], None]
RETRY_STATUSES = {408, 425, 429, 500, 502, 503, 504}  # HTTP statuses worth another try


@dataclass(frozen=True)
class DownloadOptions:
    connect_timeout: float = 15.0  # seconds to open a connection
    read_timeout: float = 60.0  # seconds without a byte before the server counts as stalled
    retries: int = 4  # further tries after a failure, each resuming where the last one stopped
    backoff: float = 0.5  # seconds before the first retry, doubled for each next one...
    max_backoff: float = 8.0  # ...up to this many seconds
    chunk_size: int = 1 << 18  # bytes read and written at a time

    def __post_init__(self):
        if self.connect_timeout <= 0 or self.read_timeout <= 0:
            raise SettingsError("download timeouts must be positive seconds")
        if self.retries < 0:
            raise SettingsError(f"retries must be 0 or more; got {self.retries}")
        if self.chunk_size <= 0 or self.backoff < 0 or self.max_backoff < 0:
            raise SettingsError("chunk_size must be positive and backoff times 0 or more")


class Notes:
    """Lines on stderr for a person watching a download (nothing when disabled)."""

    def __init__(self, enabled: bool):
        self.enabled = enabled

    def __call__(self, message: str) -> None:
        if self.enabled:
            print(message, file=sys.stderr, flush=True)


class _Retryable(Exception):
    def __init__(self, reason: str, received: int = 0):
        super().__init__(reason)
        self.reason = reason
        self.received = received  # bytes written during the failed attempt


class ResumableDownload:
    """A pooch downloader: `downloader(url, output_file, pooch)` fills `output_file` with `size` bytes.

    The bytes go to `partial` first, so an interrupted download (a dropped connection, a killed process)
    is resumed by the next try, or the next run, with a Range request. The complete partial file is then
    moved onto pooch's temporary file, which pooch hashes and renames into place (or deletes on a
    mismatch). `remedy` ends every failure message (what to do instead: mirror, copy the file by hand).
    """

    def __init__(self, filename: str, size: int, partial: Path, options: DownloadOptions | None = None,
                 progress: bool | ProgressCallback = False, notes: Notes | None = None, remedy: str = "",
                 user_agent: str = "deepfake-detector"):
        self.filename = filename
        self.size = size
        self.partial = Path(partial)
        self.options = options or DownloadOptions()
        self.progress = progress
        self.say = notes or Notes(False)
        self.remedy = remedy
        self.user_agent = user_agent

    def __call__(self, url: str, output_file: str, pooch=None) -> None:
        self.fetch(url)
        os.replace(self.partial, output_file)

    def fetch(self, url: str) -> None:
        """Fill the partial file with all `size` bytes of `url`, resuming and retrying.
        Raises DownloadError (after the retries, or at once for an HTTP error that another try cannot
        fix) or ChecksumMismatch (the server offers a file of another size; the partial is deleted)."""
        import requests

        opts = self.options
        session = requests.Session()  # trust_env: proxies come from HTTPS_PROXY / HTTP_PROXY / NO_PROXY
        session.headers["User-Agent"] = self.user_agent
        bar = self._progress_bar()
        failures = 0
        try:
            while (have := self._partial_size()) < self.size:
                if have:
                    self.say(f"{self.filename}: resuming at {megabytes(have)}")
                bar(have)
                try:
                    self._attempt(session, url, have, bar)
                except _Retryable as e:
                    failures = 1 if e.received else failures + 1  # progress was made: count afresh
                    if failures > opts.retries:
                        raise DownloadError(self.failure_message(url, e.reason, failures)) from None
                    wait = min(opts.backoff * 2 ** (failures - 1), opts.max_backoff)
                    self.say(f"{self.filename}: {e.reason}; retrying in {wait:.1f} s "
                             f"(try {failures + 1} of {opts.retries + 1})")
                    time.sleep(wait)
        finally:
            bar(None)
            session.close()

    def _partial_size(self) -> int:
        try:
            have = self.partial.stat().st_size
        except FileNotFoundError:
            return 0
        if have > self.size:  # cannot be a prefix of the file
            self.partial.unlink()
            return 0
        return have

    def _attempt(self, session, url: str, have: int, bar) -> None:
        import requests

        opts = self.options
        headers = {"Accept-Encoding": "identity"}  # the file's own bytes, so byte ranges mean what they say
        if have:
            headers["Range"] = f"bytes={have}-"
        received = 0
        try:
            with session.get(url, headers=headers, stream=True, allow_redirects=True,
                             timeout=(opts.connect_timeout, opts.read_timeout)) as r:
                if r.status_code == 416 and have:  # the server cannot resume from here: start over
                    self.partial.unlink(missing_ok=True)
                    raise _Retryable("the server refused to resume (HTTP 416)")
                if r.status_code in RETRY_STATUSES:
                    raise _Retryable(f"HTTP {r.status_code} {r.reason}")
                if r.status_code >= 400:
                    raise DownloadError(self.failure_message(url, f"HTTP {r.status_code} {r.reason}"))
                start, total = self._content_span(r, have)
                if have and not start:
                    self.say(f"{self.filename}: the server does not resume downloads; starting over")
                    bar(0)
                if total is not None and total != self.size:
                    self.partial.unlink(missing_ok=True)
                    raise ChecksumMismatch(
                        f"{url} offers {total:,} bytes but {self.filename} is pinned at {self.size:,} bytes: "
                        f"it is not the pinned file (an error page, a Git LFS pointer or another version). "
                        f"Nothing was installed; check the URL or mirror."
                    )
                too_long = False
                with open(self.partial, "ab" if start else "wb") as f:
                    try:
                        for chunk in r.iter_content(opts.chunk_size):
                            if start + received + len(chunk) > self.size:
                                too_long = True
                                break
                            f.write(chunk)
                            received += len(chunk)
                            bar(start + received)
                    except requests.RequestException as e:
                        raise _Retryable(self._describe(e), received) from e
                if too_long:
                    self.partial.unlink(missing_ok=True)
                    raise ChecksumMismatch(
                        f"{url} sent more than the {self.size:,} bytes {self.filename} is pinned at: it is not "
                        f"the pinned file. The download was deleted; check the URL or mirror."
                    )
                if start + received < self.size:
                    raise _Retryable("the connection closed before the end of the file", received)
        except requests.RequestException as e:
            raise _Retryable(self._describe(e), received) from e

    def _content_span(self, r, have: int) -> tuple[int, int | None]:
        """(offset the body starts at, the file's size as the server states it, if it does)."""
        if r.status_code == 206:
            span = r.headers.get("Content-Range", "")
            try:  # "bytes START-END/TOTAL"
                unit, rest = span.split(" ", 1)
                first, total = rest.split("/", 1)
                start = int(first.split("-", 1)[0])
            except ValueError:
                unit, start, total = "", -1, "*"
            if unit != "bytes" or start != have:
                self.partial.unlink(missing_ok=True)
                raise _Retryable(f"the server resumed at the wrong place ({span!r}); starting over")
            return start, (int(total) if total.isdigit() else None)
        encoded = r.headers.get("Content-Encoding", "identity").lower() not in ("", "identity")
        length = r.headers.get("Content-Length", "")
        return 0, (int(length) if length.isdigit() and not encoded else None)

    def _describe(self, error: Exception) -> str:
        text = str(error)
        if "timed out" in text.lower() or "timeout" in type(error).__name__.lower():
            return f"the server stalled (no data for {self.options.read_timeout:g} s)"
        if "ProxyError" in type(error).__name__:
            return f"the proxy failed ({text[:200]})"
        if "NameResolution" in text or "getaddrinfo" in text or "Name or service not known" in text:
            return "the host name could not be resolved (offline?)"
        if "Connection refused" in text:
            return "the connection was refused"
        return f"the connection failed ({type(error).__name__}: {text[:200]})"

    def failure_message(self, url: str, reason: str, tries: int | None = None) -> str:
        parts = [f"could not download {self.filename} from {url}: {reason}"
                 + (f" (after {tries} tries)" if tries else "") + "."]
        kept = self._partial_size()
        if kept:
            parts.append(f"The {megabytes(kept)} received are kept in {self.partial}, and the next try "
                         f"resumes from there.")
        if self.remedy:
            parts.append(self.remedy)
        return " ".join(parts)

    def _progress_bar(self) -> Callable[[int | None], None]:
        """update(bytes done); update(None) closes it."""
        if callable(self.progress):
            callback = self.progress
            return lambda done: None if done is None else callback(self.filename, done, self.size)
        if not self.progress:
            return lambda done: None
        from tqdm import tqdm

        bar = tqdm(total=self.size, unit="B", unit_scale=True, unit_divisor=1024, file=sys.stderr,
                   desc=self.filename, mininterval=0.5, leave=False)

        def update(done: int | None) -> None:
            if done is None:
                bar.close()
            else:
                bar.update(done - bar.n)
        return update
