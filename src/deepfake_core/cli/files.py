"""The media files the commands take, and the rows `scan` writes (local and --ray)."""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError
from ..media_files import AUDIO_EXTENSIONS, VIDEO_EXTENSIONS, is_audio_file, iter_media

__all__ = ["AUDIO_EXTENSIONS", "SCAN_FIELDS", "VIDEO_EXTENSIONS", "check_writable", "is_audio_file", "iter_videos",
           "scan_record", "scan_row"]

SCAN_FIELDS = ["file", "path", "verdict", "reason", "confidence", "fused_real_prob", "video_p_fake",
               "audio_p_fake", "faces", "tracks", "audio_windows", "duration_s", "seconds", "error"]

iter_videos = iter_media  # the name the scans use


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
