"""The rows `scan` writes (local and --ray) and the results file that holds them.

The results file is the scan's checkpoint. Each row is written as one whole line (a CSV row or a JSON record)
and synced to disk before the next file starts, so a scan stopped at any moment (kill -9, power loss, a full
disk) leaves every finished row in place and at most one cut-off last line, which the next run drops before it
appends. A re-run with the same --out skips the files already in it; `restart=True` empties it first.
"""

from __future__ import annotations

import csv
import errno
import fcntl
import io
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError, OutputError
from ..media.files import make_folder

SCAN_FIELDS = ["file", "path", "verdict", "reason", "confidence", "fused_real_prob", "video_p_fake",
               "audio_p_fake", "faces", "tracks", "audio_windows", "duration_s", "seconds", "error"]
SUFFIXES = (".csv", ".jsonl")


@dataclass(frozen=True)
class ScanSummary:
    out: Path  # the results file
    total: int  # input files found
    skipped: int  # already in the results file (resumed)
    analysed: int  # rows written by this run without an error
    errors: int  # rows written by this run with an error (broken files, workers that kept dying)
    retried: int = 0  # files analysed again after their worker died (--ray)
    retried_files: tuple[str, ...] = ()  # their paths, as the rows name them


# -- rows ------------------------------------------------------------------------------------------------
def scan_row(path: Path | str, report=None, error: Exception | None = None) -> dict:
    """The CSV row of one file: the report's headline numbers, or verdict ERROR and the error."""
    row: dict = {k: None for k in SCAN_FIELDS}
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


def scan_record(path: Path | str, report=None, error: Exception | None = None, jsonl: bool = False) -> dict:
    """One output line of `scan`: the CSV row, or for JSONL the whole report with its path and error (an
    ERROR record when the file could not be analysed)."""
    row = scan_row(path, report, error)
    if not jsonl:
        return row
    record = report.to_dict() if report is not None else {}
    record.update({"path": str(path), "error": row["error"]})
    if error is not None:
        record.update(verdict="ERROR", file=row["file"])
    return record


# -- the results file ------------------------------------------------------------------------------------
def complete_length(data: bytes, csv_quoting: bool) -> int:
    """The length of `data` up to the end of its last whole line: a record cut short by a stopped run is not
    part of it. In a CSV file a newline inside a quoted field (an odd number of quotes before it) ends no row."""
    end = data.rfind(b"\n") + 1
    if not csv_quoting:
        return end
    after = data.count(b'"', end)  # quotes in the cut-off tail
    odd = (data.count(b'"') - after) % 2
    while end and odd:  # step back over newlines that sit inside a quoted field
        previous = data.rfind(b"\n", 0, end - 1) + 1
        odd = (odd + data.count(b'"', previous, end)) % 2
        end = previous
    return end


def read_done(out: Path) -> set[str]:
    """The paths already in a results file (error rows included). A last line cut short by a stopped run is
    removed, so that the file takes appended rows. InputError when the file is not a scan's results file."""
    if not out.is_file() or out.stat().st_size == 0:
        return set()
    data = out.read_bytes()
    keep = complete_length(data, out.suffix == ".csv")
    if keep < len(data):
        with open(out, "r+b") as f:
            f.truncate(keep)
        data = data[:keep]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{out} is not a scan results file (not UTF-8 text); name another --out") from None
    if out.suffix == ".csv":
        rows = csv.DictReader(io.StringIO(text, newline=""))
        if text and rows.fieldnames != SCAN_FIELDS:
            raise InputError(f"{out} is not a scan results file (its columns are {rows.fieldnames}); "
                             f"name another --out")
        return {row["path"] for row in rows}
    done = set()
    for n, line in enumerate(text.splitlines(), 1):
        try:
            done.add(json.loads(line)["path"])
        except (ValueError, KeyError, TypeError):
            raise InputError(f"{out} line {n} is not a scan result; name another --out") from None
    return done


def check_out(out: Path) -> None:
    """InputError unless `out` names a .csv or .jsonl file that can be written (its folder is created if
    missing). An existing --out must be a regular file: a named pipe would block the scan until a reader comes,
    and a device (a link to /dev/null) or socket cannot hold the rows a re-run resumes after."""
    if out.suffix not in SUFFIXES:
        raise InputError(f"--out must end in .csv or .jsonl; got {out.name}")
    try:
        mode = out.stat().st_mode
    except (FileNotFoundError, NotADirectoryError):
        mode = None  # not there yet (or a file on its way, which make_folder names)
    except OSError as e:  # a name too long, a link loop, a folder we may not enter
        raise InputError(f"--out {out} cannot be written ({e.strerror or e}); choose another file") from None
    if mode is not None:
        if stat.S_ISDIR(mode):
            raise InputError(f"--out {out} is a folder; give a file name ending in .csv or .jsonl")
        check_regular(out, mode)
    make_folder(out.parent, f"--out {out}", "another file")


def check_regular(out: Path, mode: int) -> None:
    """InputError unless `mode` (an st_mode) is a regular file's, naming what --out is instead."""
    if stat.S_ISREG(mode):
        return
    kind = ("a named pipe" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode)
            else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a file")
    raise InputError(f"--out {out} is not a regular file ({kind}): a scan's results file must be one it can "
                     f"append to and resume from; give a file name ending in .csv or .jsonl")


class ResultsFile:
    """The results file of one scan, open for appending from before the models load until the scan ends.

    Opening it checks --out (name, folder, write access, not another program's file, not in use by another
    scan: it is locked), drops a cut-off last line, and reads which files are done (`done`). `write(row)`
    appends one row as one line and syncs it; an OSError (a full disk, an I/O error) becomes an OutputError
    naming the file and how many rows are safely in it. A file this scan created and left without rows is
    removed by `close()`.
    """

    def __init__(self, out: Path, restart: bool = False):
        check_out(out)
        self.out, self.jsonl = out, out.suffix == ".jsonl"
        existed = out.exists()
        try:  # O_NONBLOCK: a named pipe put there since check_out fails (ENXIO) instead of waiting for a reader
            self.fd = os.open(out, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NONBLOCK, 0o644)
        except OSError as e:
            raise InputError(f"--out {out} cannot be written ({e.strerror or e}); choose another file") from None
        self.created, self.rows = not existed, 0
        try:
            check_regular(out, os.fstat(self.fd).st_mode)
            os.set_blocking(self.fd, True)
            self._lock()
            self.done = read_done(out)  # before --restart empties it: another program's file is never emptied
            if restart and self.done:
                os.ftruncate(self.fd, 0)
                self.done = set()
            self.safe = len(self.done)  # rows on disk
            if not self.jsonl and os.fstat(self.fd).st_size == 0:
                self._append(self._line({name: name for name in SCAN_FIELDS}))
        except BaseException:
            self.close()
            raise

    def _lock(self) -> None:
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise InputError(f"another scan is writing {self.out}; wait for it to end or name another "
                                 f"--out") from None
            # a filesystem without locks (some network mounts): go on unlocked

    def _line(self, row: dict) -> bytes:
        if self.jsonl:
            return (json.dumps(row) + "\n").encode("utf-8")
        buffer = io.StringIO()
        csv.DictWriter(buffer, fieldnames=SCAN_FIELDS, lineterminator="\n").writerow(row)
        return buffer.getvalue().encode("utf-8")

    def _append(self, line: bytes) -> None:
        size = os.fstat(self.fd).st_size
        try:
            view = memoryview(line)
            while view:
                view = view[os.write(self.fd, view):]
            os.fsync(self.fd)
        except OSError as e:
            try:  # take the cut-off line back out; the next run drops it otherwise
                os.ftruncate(self.fd, size)
            except OSError:
                pass
            raise OutputError(f"cannot write {self.out} ({e.strerror or e}): {self.safe} rows are safely in it. "
                              f"Free space or fix the disk, then run the same command again: it resumes after "
                              f"them") from None

    def write(self, row: dict) -> None:
        self._append(self._line(row))
        self.rows += 1
        self.safe += 1

    def close(self) -> None:
        if self.fd < 0:
            return
        os.close(self.fd)
        self.fd = -1
        if self.created and not self.rows:
            try:
                self.out.unlink()
            except OSError:
                pass

    def __enter__(self) -> ResultsFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
