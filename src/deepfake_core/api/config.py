"""The server's settings (`deepfake-detect api` options) and its API keys."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .body import BodyClock


@dataclass(frozen=True)
class ApiConfig:
    workers: int = 1  # analyses run at once (threads sharing one Detector)
    queue_size: int = 8  # analyses that may wait for a worker; one more gets 429
    max_upload_bytes: int = 500 * 2**20  # an upload over this is refused (413) while it streams
    result_ttl_s: float = 3600.0  # finished analyses are forgotten this long after they end
    wait_timeout_s: float = 300.0  # ?wait=true returns 202 (still running) after this long
    allow_dir: Path | None = None  # JSON {"path": ...} requests may name files inside this folder only
    api_keys: frozenset[str] = field(default_factory=frozenset)  # empty: no key needed
    temp_parent: str | None = None  # where the private upload folder is made (default: $TMPDIR)
    body_clock: BodyClock = field(default_factory=BodyClock)  # how slowly a request body may come (408 after)


def load_api_keys(env_value: str | None, path: str | None) -> frozenset[str]:
    """Keys from a comma- or space-separated environment value and a file (one per line, # comments)."""
    from ..errors import InputError

    keys = set((env_value or "").replace(",", " ").split())
    if path:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as e:
            raise InputError(f"cannot read the API keys file {path}: {e.strerror}") from e
        keys.update(line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#"))
    return frozenset(keys)
