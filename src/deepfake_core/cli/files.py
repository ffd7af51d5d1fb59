"""The media files the commands take, and the rows `scan` writes (local and --ray)."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import InputError

VIDEO_EXTENSIONS = {".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp", ".ts"}
AUDIO_EXTENSIONS = {".wav", ".flac", ".mp3", ".m4a", ".aac", ".ogg", ".opus", ".oga", ".wma"}  # voice-only reports


def is_audio_file(path: Path) -> bool:
    return path.suffix.lower() in AUDIO_EXTENSIONS


SCAN_FIELDS = ["file", "path", "verdict", "reason", "confidence", "fused_real_prob", "video_p_fake",
               "audio_p_fake", "faces", "tracks", "audio_windows", "duration_s", "seconds", "error"]


def iter_videos(paths: list[str]):
    """Files given directly, and video and audio files found by walking folders (sorted)."""
    for name in paths:
        p = Path(name)
        if p.is_dir():
            for root, dirs, files in os.walk(p):
                dirs.sort()
                for f in sorted(files):
                    if Path(f).suffix.lower() in VIDEO_EXTENSIONS | AUDIO_EXTENSIONS:
                        yield Path(root) / f
        else:
            yield p


def scan_row(path: Path | str, report=None, error: Exception | None = None) -> dict:
    row = {k: None for k in SCAN_FIELDS}
    # a URL (s3://bucket/a.mp4, from `scan --ray`) stays a string: Path() would fold its "//"
    row.update(file=path.name if isinstance(path, Path) else path.rstrip("/").rsplit("/", 1)[-1], path=str(path))
    if error is not None:
        row.update(verdict="ERROR", error=f"{type(error).__name__}: {error}")
        return row
    m = report.modalities
    row.update(
        verdict=report.verdict, reason=report.reason, confidence=report.confidence,
        fused_real_prob=report.fused_real_prob, video_p_fake=m["video"].fake_prob, audio_p_fake=m["audio"].fake_prob,
        faces=report.counts["faces"], tracks=report.counts["tracks"], audio_windows=report.counts["audio_windows"],
        duration_s=report.media.get("duration_s"), seconds=report.timings["total"],
    )
    return row


def check_writable(out: Path) -> None:
    """InputError unless `out` can be written (its folder is created if missing): checked before models load,
    so a long scan never ends in an error at its first row."""
    if out.is_dir():
        raise InputError(f"--out {out} is a folder; give a file name ending in .csv or .jsonl")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        existed = out.exists()
        with open(out, "a", encoding="utf-8"):
            pass
        if not existed:
            out.unlink()
    except OSError as e:
        raise InputError(f"--out {out} cannot be written ({e.strerror or e}); choose another file") from e


def scan_record(path: Path | str, report=None, error: Exception | None = None, jsonl: bool = False) -> dict:
    """One output line of `scan` (local and --ray): the CSV row, or for JSONL the whole report with its path
    and error (an ERROR record when the file could not be analysed)."""
    row = scan_row(path, report, error)
    if not jsonl:
        return row
    record = report.to_dict() if report is not None else {}
    record.update({"path": str(path), "error": row["error"]})
    if error is not None:
        record.update(verdict="ERROR", file=row["file"])
    return record
