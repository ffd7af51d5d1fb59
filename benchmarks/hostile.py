#!/usr/bin/env python
"""Hostile inputs (issue 26, item 7): the classes of input that broke the product before, provoked again against
the installed `deepfake-detect` (a child process per case, or a real `deepfake-detect api` on 127.0.0.1), each
judged clear or a hole.

    python benchmarks/hostile.py [--only CLASS ...] [--match TEXT] [--json FILE] [--keep]

A case is **clear** when the process ends within its bound with an expected exit code that docs/cli.md documents
(0 done, 2 bad input or usage, 3 model files; the API: a 4xx JSON error carrying a code, or 2xx for good input),
says what the problem is (an `error:` line naming it, no Python traceback on stderr or in a body, no warning
noise before it), leaves nothing in the TMPDIR it was given (nor a half-written entry in the OpenVINO cache) and
loses nothing (scan's results file still valid, every input in it once). Anything else is a **hole**: a
traceback, exit 1, a 500, a hang past the bound, a verdict on a cut-off file that does not say so, a leftover
file, a connect() off this machine.

Classes: `files` (analyze on bad files and options, signals), `models` (models folders and model files), `scan`
(results file, write failures, kill -9, Ray), `api` (the HTTP server), `network` (analyses under strace, one per
runtime). Everything is generated in a temporary folder, removed afterwards (--keep keeps it): small clips made
with PyAV, a models folder holding only the res10 files (the built-in video model judges). The ENOSPC case mounts
a 64 kB tmpfs (root only; unmounted afterwards), the network cases need strace. The res10 files and the 1080p clip
come from ../shared (models/, media/).

Prints a markdown table by class and every hole; writes every case's result to --json (default hostile.json).
Exit 0 when the battery ran, whatever it found.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import fcntl
import getpass
import http.client
import json
import os
import platform
import re
import resource
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

import av
import cv2
import numpy as np

from deepfake_core.train.demo import demo_frames, encode_mono, write_clip

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the hardening tests' media makers (no pytest, no torch)
from media_gen import damage_track, write_raw  # noqa: E402

SHARED = ROOT.parent / "shared"
FACE_FILES = ("deploy.prototxt", "res10_300x300_ssd_iter_140000_fp16.caffemodel")
CLI = (sys.executable, "-m", "deepfake_core")
BOUND_S = 120.0  # a CLI case (model loading included) still running after this is a hang
RAY_BOUND_S = 420.0  # a scan that starts and stops a local Ray
API_BOUND_S = 60.0  # an HTTP answer
FAST = ("--device", "cpu", "--runtime", "torch", "--max-samples", "3", "--quiet")
API_KEY = "hostile-key"
BOUNDARY = "hostile-boundary"
CLASSES = {"files": "CLI `analyze` on bad files, bad options, signals",
           "models": "models folders and model files",
           "scan": "`scan`: results file, write failures, kill -9, Ray",
           "api": "`deepfake-detect api` (uvicorn on 127.0.0.1)",
           "network": "connect() under strace, per runtime"}
NOISE = ("Traceback", "libprotobuf", "Warning:", "warnings.warn")
ERROR_LINE = re.compile(r"^(deepfake-detect( \w+)?: )?error: ")  # ours, or argparse's usage error


# -- cases and outcomes ------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Case:
    klass: str
    name: str
    provoke: str  # how, in words
    expected: str  # the clear outcomes, in words
    run: Callable[[Ctx], Verdict]
    serial: bool = False  # timing matters (signals, races, a server): run alone, not beside another case


@dataclasses.dataclass
class Verdict:
    got: str  # exit code or HTTP status(es), as seen
    holes: list[str]
    said: str = ""  # the first line the product said about it


@dataclasses.dataclass
class Outcome:
    klass: str
    name: str
    provoke: str
    expected: str
    got: str
    seconds: float
    holes: list[str]
    said: str

    @property
    def clear(self) -> bool:
        return not self.holes


@dataclasses.dataclass
class Proc:
    code: int | None  # None: still running at the bound (killed)
    out: str
    err: str
    seconds: float

    @property
    def said(self) -> str:
        lines = [line for line in self.err.splitlines() if ERROR_LINE.match(line) or line.startswith(("interrupted",
                                                                                                      "internal"))]
        return (lines or self.err.strip().splitlines()[-1:] or [""])[0][:300]

    def report(self) -> dict | None:
        with contextlib.suppress(ValueError):
            return json.loads(self.out)
        return None


@dataclasses.dataclass
class Ctx:
    """One case's surroundings: its own folder for the inputs it makes, the TMPDIR its process gets."""

    bench: Bench
    dir: Path
    tmp: Path
    last_name: str = ""  # the input's file name, which the product's message should name
    lock: IO | None = None  # a results file this battery holds locked while the case runs

    def file(self, name: str | bytes, data: bytes | str = b"") -> Path:
        path = Path(os.fsdecode(os.path.join(os.fsencode(self.dir), os.fsencode(name))))
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        return path

    def models(self, *names: str) -> Path:
        """A fresh models folder holding copies of the res10 files (those in `names` left out)."""
        folder = self.dir / "models"
        folder.mkdir(exist_ok=True)
        for name in FACE_FILES:
            if name not in names:
                shutil.copy(self.bench.models / name, folder / name)
        return folder

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("DEEPFAKE_MODELS_DIR", "DEEPFAKE_DEBUG")}
        env.update(TMPDIR=str(self.tmp), DEEPFAKE_OPENVINO_CACHE=str(self.bench.ov_cache), PYTHONUNBUFFERED="1")
        env.update(extra)
        return env


# -- running a command ----------------------------------------------------------------------------------------------
def run(ctx: Ctx, args, env: dict | None = None, bound: float = BOUND_S, stop: tuple | None = None,
        prefix: tuple = (), preexec=None) -> Proc:
    """`deepfake-detect args` in a child process (a session of its own); `stop` = (signal, ready(pid) -> bool,
    delay_s): send the signal `delay_s` after `ready` first holds."""
    start = time.monotonic()
    child = subprocess.Popen([*prefix, *CLI, *map(os.fsdecode, args)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env or ctx.env(), cwd=ctx.dir,
                             preexec_fn=preexec, start_new_session=True)
    sent, code = stop is None, None
    while True:
        try:
            out, err = child.communicate(timeout=0.02)
            code = child.returncode
            break
        except subprocess.TimeoutExpired:
            if time.monotonic() - start > bound:
                with contextlib.suppress(OSError):
                    os.killpg(child.pid, signal.SIGKILL)
                out, err = child.communicate()
                break
            if not sent and stop[1](child.pid):
                time.sleep(stop[2])
                child.send_signal(stop[0])
                sent = True
    return Proc(code, out.decode(errors="replace"), err.decode(errors="replace"), time.monotonic() - start)


def holds_open(path: Path) -> Callable[[int], bool]:
    """ready(pid): the process has `path` open (it is decoding it: the models are loaded)."""
    target = os.path.realpath(path)

    def ready(pid: int) -> bool:
        with contextlib.suppress(OSError):
            return any(os.readlink(f"/proc/{pid}/fd/{fd}") == target for fd in os.listdir(f"/proc/{pid}/fd"))
        return False

    return ready


def after(seconds: float) -> Callable[[int], bool]:
    start = time.monotonic()
    return lambda pid: time.monotonic() - start >= seconds


def documented_exit_codes() -> set[int]:
    """The exit codes docs/cli.md lists (its "Exit codes:" paragraph)."""
    text = (ROOT / "docs" / "cli.md").read_text()
    paragraph = text[text.index("Exit codes:"):].split("\n\n")[0]
    return {int(c) for c in re.findall(r"`(\d+)`", paragraph)}


def judge(proc: Proc, expect: tuple[int, ...], says: str | None, bound: float) -> list[str]:
    """The holes in a finished command: its exit code, its message, a traceback."""
    holes = []
    if proc.code is None:
        return [f"still running after {bound:.0f} s (killed)"]
    status = 128 - proc.code if proc.code < 0 else proc.code  # as a shell reports a death by signal
    name = f"killed by {signal.Signals(-proc.code).name} (status {status})" if proc.code < 0 else f"exit {status}"
    if proc.code not in expect:
        holes.append(f"{name}, expected {'/'.join(map(str, expect))}: {proc.said!r}")
    elif status not in documented_exit_codes():
        holes.append(f"{name}: not among the exit codes docs/cli.md documents ({proc.said!r})")
    if "Traceback" in proc.err or "Traceback" in proc.out:
        holes.append("a Python traceback on stderr")
    if proc.code in (2, 3):
        lines = proc.err.splitlines()
        first = next((i for i, line in enumerate(lines) if ERROR_LINE.match(line)), None)
        if first is None:
            holes.append(f"no 'error:' line on stderr: {proc.err.strip()[-200:]!r}")
        elif any(word in line for line in lines[:first] for word in NOISE):
            holes.append(f"noise before the error: {lines[0][:120]!r}")
        elif says is not None and says.lower() not in "\n".join(lines[first:]).lower():
            holes.append(f"the message does not name {says!r}: {proc.said!r}")
    return holes


TORCH_CACHE = f"torchinductor_{getpass.getuser()}"


def leftovers(ctx: Ctx, known: bool = True) -> list[str]:
    """Holes for what a case left behind: files in its TMPDIR, half-written OpenVINO cache entries. The empty
    folder `import torch._dynamo` makes in every TMPDIR (torchinductor_USER) is one case of its own ("TMPDIR after
    a plain analysis"); elsewhere `known` passes over it."""
    holes = []
    quirk = ctx.tmp / TORCH_CACHE
    if known and quirk.is_dir() and not any(quirk.iterdir()):
        quirk.rmdir()
    left = sorted(str(p.relative_to(ctx.tmp)) + (" (an empty folder)" if p.is_dir() and not any(p.iterdir()) else "")
                  for p in ctx.tmp.rglob("*"))
    if left:
        holes.append(f"left in TMPDIR: {', '.join(left[:5])}{' ...' if len(left) > 5 else ''}")
    cache = ctx.bench.ov_cache
    partial = sorted(p.name for p in cache.iterdir() if p.name.startswith(".")) if cache.is_dir() else []
    if partial:
        holes.append(f"left in the OpenVINO cache: {', '.join(partial)}")
        for name in partial:
            shutil.rmtree(cache / name, ignore_errors=True)
    return holes


# -- the CLI cases, declared --------------------------------------------------------------------------------------
def cli(klass: str, name: str, provoke: str, argv: Callable[[Ctx], list], expect: tuple[int, ...] = (2,),
        says: str | Callable[[Ctx], str] | None = None, env: Callable[[Ctx], dict] | None = None,
        check: Callable[[Ctx, Proc], list[str]] | None = None, bound: float = BOUND_S,
        stop: Callable[[Ctx], tuple] | None = None, expected: str = "", serial: bool = False) -> Case:
    """A command run once: `argv(ctx)` after `deepfake-detect`, judged by `judge`, then by `check`."""

    def go(ctx: Ctx) -> Verdict:
        args = argv(ctx)
        proc = run(ctx, args, env=env(ctx) if env else None, bound=bound, stop=stop(ctx) if stop else None)
        named = says(ctx) if callable(says) else says
        holes = judge(proc, expect, named, bound)
        if check is not None and proc.code is not None:
            holes += check(ctx, proc)
        return Verdict(str(proc.code), holes, proc.said)

    return Case(klass, name, provoke, expected or f"exit {'/'.join(map(str, expect))}", go, serial or stop is not None)


def analyze(make: Callable[[Ctx], Path | str], *extra: str, models: bool = True) -> Callable[[Ctx], list]:
    """argv for `analyze INPUT --json` with the fast settings and the battery's models folder."""

    def argv(ctx: Ctx) -> list:
        folder = ["--models-dir", ctx.bench.models] if models else []
        return ["analyze", *FAST, "--json", *folder, *extra, "--", make(ctx)]

    return argv


def not_applicable(ctx: Ctx, proc: Proc) -> list[str]:
    """Exit 0 on input that is not a face video is fine only as NOT_APPLICABLE."""
    report = proc.report()
    if proc.code == 0 and (report is None or report.get("verdict") != "NOT_APPLICABLE"):
        return [f"exit 0 with verdict {report and report.get('verdict')!r} on input without a judgeable face"]
    return []


CUT_WORDS = ("truncat", "cut off", "decoding stopped", "stopped at", "fewer frames than its header says")


def says_cut(ctx: Ctx, proc: Proc) -> list[str]:
    """A cut-off clip: refused (exit 2), or a report that says decoding stopped short."""
    report = proc.report()
    if proc.code == 0 and report is not None:
        text = json.dumps(report).lower()
        if not any(word in text for word in CUT_WORDS):
            return [f"verdict {report.get('verdict')} on a cut-off file, and the report does not say it is cut off"]
    return []


def verdict_is(*verdicts: str) -> Callable[[Ctx, Proc], list[str]]:
    def check(ctx: Ctx, proc: Proc) -> list[str]:
        report = proc.report()
        got = report.get("verdict") if report else None
        return [] if proc.code != 0 or got in verdicts else [f"verdict {got!r}, expected {'/'.join(verdicts)}"]

    return check


def note_says(*words: str) -> Callable[[Ctx, Proc], list[str]]:
    def check(ctx: Ctx, proc: Proc) -> list[str]:
        text = (proc.out + proc.err).lower()
        return [] if proc.code != 0 or all(w.lower() in text for w in words) else [f"no note saying {words}"]

    return check


# -- generated media -----------------------------------------------------------------------------------------------
SAMPLE_RATE = 16_000


def speech_like(seconds: float, seed: int = 0) -> np.ndarray:
    """A voice-like signal (harmonics on a gliding pitch, syllable-rate on/off): speech.has_speech takes it."""
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    rng = np.random.default_rng(seed)
    phase = 2 * np.pi * np.cumsum(120 + 20 * np.sin(2 * np.pi * 0.5 * t)) / SAMPLE_RATE
    voice = sum(np.sin(k * phase) / k for k in range(1, 30))
    envelope = np.clip(np.sin(2 * np.pi * 3.5 * t), 0, None) ** 2
    return (0.2 * envelope * voice + rng.normal(0, 0.002, t.shape)).astype(np.float32)


def write_audio(path: Path, samples: np.ndarray, codec: str, fmt: str | None = None) -> Path:
    with av.open(str(path), "w", format=fmt) as out:
        stream = out.add_stream(codec, rate=SAMPLE_RATE if codec != "libopus" else 48_000)
        stream.layout = "mono"
        if codec == "libopus":
            samples = np.repeat(samples, 3)
        encode_mono(out, stream, samples, stream.rate)
    return path


def make_media(folder: Path) -> dict[str, Path]:
    """The clips the cases start from (a few seconds to make)."""
    folder.mkdir(parents=True)
    faces, voice = demo_frames(75), speech_like(3.0)
    blank = [np.full((240, 320, 3), 40 + i, np.uint8) for i in range(50)]
    for i, frame in enumerate(blank):
        cv2.circle(frame, (40 + 4 * i, 120), 25, (200, 80, 80), -1)
    media = {
        "face": write_clip(folder / "face.mp4", faces, fps=25, audio=voice),  # moov at the end (PyAV's default)
        "faststart": write_clip(folder / "faststart.mp4", faces, fps=25, audio=voice,
                                options={"movflags": "faststart"}),
        "mkv": write_clip(folder / "face.mkv", faces, fps=25, audio=voice),
        "faceless": write_clip(folder / "faceless.mp4", blank, fps=25, audio=speech_like(2.0)),
        "tiny": write_clip(folder / "tiny.mp4", [np.full((16, 16, 3), 9 * i, np.uint8) for i in range(25)], fps=25),
        "one_frame": write_clip(folder / "one_frame.mp4", faces[:1], fps=25),
        "huge": write_clip(folder / "huge.mp4", [np.zeros((4400, 7700, 3), np.uint8)], fps=25),
        "m4a": write_audio(folder / "voice.m4a", speech_like(4.0), "aac"),
        "wav": write_audio(folder / "voice.wav", speech_like(4.0), "pcm_s16le"),
        "flac": write_audio(folder / "voice.flac", speech_like(4.0), "flac"),
        "ogg": write_audio(folder / "voice.ogg", speech_like(4.0), "libopus", "ogg"),
        "tone": write_audio(folder / "tone.wav", (0.3 * np.sin(np.arange(64_000) / 16_000 * 2 * np.pi * 440))
                            .astype(np.float32), "pcm_s16le"),
        "raw": write_raw(folder / "face.h264", faces[:25]),
        "long": SHARED / "media" / "real_dfdc_1080p_10s.mp4",
        "photo": folder / "face.jpg",
    }
    cv2.imwrite(str(media["photo"]), faces[0])
    media["bad_audio"] = damage_track(media["face"], folder / "bad_audio.mkv", "audio")
    media["bad_video"] = damage_track(media["face"], folder / "bad_video.mkv", "video")
    return media


def cut(data: bytes, how: str) -> bytes:
    """`data` cut off: "10%", "50%", "90%" of it kept, or "-40k" / "-1" bytes from its end."""
    if how.endswith("%"):
        return data[:len(data) * int(how[:-1]) // 100]
    return data[:-{"-40k": 40_000, "-1": 1}[how]]


def random_bytes(n: int, seed: int = 1) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


# -- class 1: files -------------------------------------------------------------------------------------------------
def file_cases() -> list[Case]:
    k = "files"
    cases = []

    def bad(name: str, provoke: str, make: Callable[[Ctx], Path | str], expect=(2,), check=None, says=True,
            extra: tuple = ()):
        def argv(ctx: Ctx) -> list:
            target = make(ctx)
            ctx.last_name = Path(os.fsdecode(target)).name
            return analyze(lambda c: target, *extra)(ctx)

        named = (lambda ctx: ctx.last_name) if says else None  # set by argv
        cases.append(cli(k, name, provoke, argv, expect, says=named, check=check))

    def media(key: str) -> Callable[[Ctx], Path]:
        return lambda ctx: ctx.bench.media[key]

    def data(fname: str, payload: bytes | str) -> Callable[[Ctx], Path]:
        return lambda ctx: ctx.file(fname, payload)

    def plain(ctx: Ctx) -> Verdict:
        proc = run(ctx, analyze(lambda c: c.bench.media["face"])(ctx))
        return Verdict(str(proc.code), judge(proc, (0,), None, BOUND_S) + leftovers(ctx, known=False), proc.said)

    cases.append(Case(k, "TMPDIR after a plain analysis", "analyze the good face clip, then look in its TMPDIR",
                      "exit 0; TMPDIR empty", plain))
    bad("missing path", "a path that does not exist", lambda ctx: ctx.dir / "gone.mp4")
    bad("a directory", "a folder named clip.mp4", lambda ctx: (ctx.dir / "clip.mp4").mkdir() or ctx.dir / "clip.mp4")
    for ext in ("mp4", "wav", "jpg"):
        bad(f"empty .{ext}", f"a 0-byte file named empty.{ext}", data(f"empty.{ext}", b""))
    for ext in ("mp4", "wav", "jpg", "mkv", "mov", "webm", "avi", "mp3", "flac", "m4a"):
        bad(f"random bytes .{ext}", f"200 kB of random bytes named noise.{ext}", data(f"noise.{ext}",
                                                                                   random_bytes(200_000)),
            expect=(0, 2), check=not_applicable)
    bad("text renamed .mp4", "a text file renamed notes.mp4", data("notes.mp4", "meeting notes\n" * 500))
    bad("text renamed .wav", "a text file renamed notes.wav", data("notes.wav", "meeting notes\n" * 500))
    bad("HTML named .webm", "an HTML page saved as page.webm", data("page.webm", "<!doctype html><p>404</p>\n"))
    bad("header-only MP4", "an MP4 holding only its 'ftyp' box", lambda ctx: ctx.file(
        "ftyp.mp4", ctx.bench.media["face"].read_bytes()[:32]))
    bad("MP4 box of 4 GB", "an 'ftyp' box then a box declaring 4 GB", lambda ctx: ctx.file(
        "bigbox.mp4", ctx.bench.media["face"].read_bytes()[:32] + b"\xff\xff\xff\xf0mdat" + b"\0" * 1000))
    for src, label in (("faststart", "faststart"), ("face", "moov-at-end"), ("mkv", "Matroska")):
        for how in (("10%", "50%", "90%", "-40k") if src != "mkv" else ("50%", "-40k")):
            ext = ".mkv" if src == "mkv" else ".mp4"
            bad(f"{label} cut {how}", f"the {label} clip ({'keep ' + how if '%' in how else 'minus 40 kB'})",
                lambda ctx, src=src, how=how, ext=ext: ctx.file(f"cut{ext}", cut(ctx.bench.media[src].read_bytes(),
                                                                                 how)),
                expect=(0, 2), check=says_cut, extra=("--max-samples", "20"))

    def link_loop(ctx: Ctx) -> Path:
        os.symlink("b.mp4", ctx.dir / "a.mp4")
        os.symlink("a.mp4", ctx.dir / "b.mp4")
        return ctx.dir / "a.mp4"

    bad("symlink loop a->b->a", "a.mp4 -> b.mp4 -> a.mp4", link_loop)
    bad("symlink self-loop", "self.mp4 -> self.mp4", lambda ctx: os.symlink("self.mp4", ctx.dir / "self.mp4")
        or ctx.dir / "self.mp4")
    bad("dangling symlink", "link.mp4 -> gone.mp4", lambda ctx: os.symlink("gone.mp4", ctx.dir / "link.mp4")
        or ctx.dir / "link.mp4")
    bad("symlink to a folder", "link.mp4 -> a folder", lambda ctx: os.symlink(ctx.dir, ctx.dir / "dir.mp4")
        or ctx.dir / "dir.mp4")
    bad("FIFO", "a named pipe pipe.mp4 nobody writes to", lambda ctx: os.mkfifo(ctx.dir / "pipe.mp4")
        or ctx.dir / "pipe.mp4")
    bad("FIFO .wav", "a named pipe pipe.wav nobody writes to", lambda ctx: os.mkfifo(ctx.dir / "pipe.wav")
        or ctx.dir / "pipe.wav")
    bad("/dev/null", "/dev/null as the input", lambda ctx: "/dev/null")
    bad("/dev/zero", "/dev/zero (endless zeros) as the input", lambda ctx: "/dev/zero")
    bad("/dev/urandom", "/dev/urandom (endless noise) as the input", lambda ctx: "/dev/urandom")
    bad("/proc file", "/proc/self/status (size 0, has content)", lambda ctx: "/proc/self/status")
    bad("non-UTF-8 name, good clip", "the face clip copied to b'\\xff\\xfeclip.mp4'", lambda ctx: shutil.copy(
        ctx.bench.media["face"], os.path.join(os.fsencode(ctx.dir), b"\xff\xfeclip.mp4")), expect=(0,), says=False)
    bad("non-UTF-8 name, noise", "random bytes named b'\\xe9t\\xe9.mp4' (Latin-1)", data(b"\xe9t\xe9.mp4",
                                                                                      random_bytes(5000)),
        says=False)
    bad("path of 4200 chars", "a missing path 4200 characters long", lambda ctx: str(ctx.dir) + "/d" * 2100 + ".mp4",
        says=False)
    bad("name of 300 chars", "a 300-character file name (ENAMETOOLONG)", lambda ctx: ctx.dir / ("x" * 300 + ".mp4"),
        says=False)
    bad("unsupported extension, noise", "random bytes named noise.xyz", data("noise.xyz", random_bytes(5000)))
    bad("unsupported extension, clip", "the face clip named clip.txt", lambda ctx: shutil.copy(
        ctx.bench.media["face"], ctx.dir / "clip.txt"), expect=(0, 2))
    bad("a PDF", "a PDF-like file named doc.pdf", data("doc.pdf", b"%PDF-1.4\n" + random_bytes(3000)))
    bad("tiny 16x16 video", "a 1 s, 16x16 H.264 clip", media("tiny"), expect=(0, 2), check=not_applicable)
    bad("video without faces", "2 s of a moving disc, no face, with a voice", media("faceless"), expect=(0,),
        check=verdict_is("NOT_APPLICABLE"))
    bad("one-frame video", "a clip of a single face frame", media("one_frame"), expect=(0, 2))
    bad("over the pixel limit", "one 7700x4400 frame (limit 7680x4320)", media("huge"))
    bad("face photo .jpg", "a JPEG photo of a face", media("photo"), expect=(0, 2))
    bad("raw H.264 stream", "an elementary .h264 stream (no container)", media("raw"), expect=(0,))
    bad("damaged audio track", "face clip whose audio packets are noise", media("bad_audio"), expect=(0,),
        check=note_says("audio"))
    bad("damaged video track", "face clip whose video packets are noise (no audio model installed: neither track "
        "can be judged)", media("bad_video"), expect=(0, 2), check=verdict_is("NOT_APPLICABLE"))
    for key in ("m4a", "wav", "flac", "ogg"):
        bad(f"audio-only .{key}", f"4 s of a voice-like signal, {key}", media(key), expect=(0, 3))
    bad("no speech .wav", "4 s of a 440 Hz tone", media("tone"), expect=(0, 3), check=not_applicable)
    bad("name starting with -", "the face clip named -clip.mp4, after --", lambda ctx: shutil.copy(
        ctx.bench.media["face"], ctx.dir / "-clip.mp4"), expect=(0,))

    def option(name: str, *opts: str, expect=(2,), says: str | None = None):
        cases.append(cli(k, f"option {name}", " ".join(opts),
                         lambda ctx: ["analyze", *FAST, "--models-dir", ctx.bench.models, *opts,
                                      ctx.bench.media["face"]], expect, says=says))

    option("--max-samples 0", "--max-samples", "0", says="max")
    option("--frame-skip -3", "--frame-skip", "-3", says="frame")
    option("--threshold 1.5", "--threshold", "1.5", says="threshold")
    option("--threshold nan", "--threshold", "nan", says="threshold")
    option("--audio-temperature inf", "--audio-temperature", "inf", says="temperature")
    option("--abstain-below 2", "--abstain-below", "2", says="abstain")
    option("--face-margin -1", "--face-margin", "-1", says="margin")
    option("--fusion bogus", "--fusion", "bogus", says="fusion")
    option("--device tpu", "--device", "tpu", says="device")
    option("--precision fp8", "--precision", "fp8", says="precision")
    option("--time-budget -1", "--time-budget", "-1", says="budget")
    option("--explain-faces 0", "--explain", "--explain-faces", "0", says="explain")
    option("--bogus", "--bogus", says="bogus")
    option("--time-budget 0.01", "--time-budget", "0.01", expect=(2,), says="budget")
    cases.append(cli(k, "past --time-budget", "--time-budget 1 on the 1080p clip, 40 samples every 2nd frame",
                     lambda ctx: ["analyze", *FAST, "--models-dir", ctx.bench.models, "--time-budget", "1",
                                  "--max-samples", "40", "--frame-skip", "2", ctx.bench.media["long"]], (2,),
                     says="budget"))
    cases.append(cli(k, "--explain-dir under a file", "--explain-dir FILE/sub",
                     lambda ctx: ["analyze", *FAST, "--models-dir", ctx.bench.models, "--explain-dir",
                                  ctx.file("f.txt", "x") / "sub", ctx.bench.media["face"]], (2,), says="f.txt"))
    cases.append(cli(k, "no arguments", "`deepfake-detect analyze` alone", lambda ctx: ["analyze"], (2,)))

    def mid(sig: signal.Signals, runtime: str, when: str) -> Case:
        def argv(ctx: Ctx) -> list:
            return ["analyze", "--device", "cpu", "--runtime", runtime, "--max-samples", "40", "--frame-skip", "2",
                    "--quiet", "--models-dir", ctx.bench.models, ctx.bench.media["long"]]

        def stop(ctx: Ctx) -> tuple:
            if when == "load":
                return sig, after(1.5), 0.0
            if when == "conversion":  # the moment the converted networks start being written to the cache
                return sig, lambda pid: (ctx.dir / "ov-cache").exists(), 0.0
            return sig, holds_open(ctx.bench.media["long"]), 1.0

        def env(ctx: Ctx) -> dict:  # OpenVINO: a cache of its own, so the conversion is under way
            return ctx.env(DEEPFAKE_OPENVINO_CACHE=str(ctx.bench.ov_cache)) if runtime == "torch" else ctx.env(
                DEEPFAKE_OPENVINO_CACHE=str(ctx.dir / "ov-cache"))

        def check(ctx: Ctx, proc: Proc) -> list[str]:
            partial = [p.name for p in (ctx.dir / "ov-cache").glob(".*")]
            return [f"half-written OpenVINO cache entries left: {partial}"] if partial else []

        expect = (130,) if sig == signal.SIGINT else (130, 143, -signal.SIGTERM)
        moment = {"load": "1.5 s after start", "analysis": "1 s into decoding",
                  "conversion": "as the OpenVINO cache is written"}[when]
        return cli(k, f"{sig.name} during {when} ({runtime})", f"{sig.name} {moment}, 1080p clip",
                   argv, expect, env=env, check=check, stop=stop,
                   expected=f"exit {'/'.join(map(str, expect))}, documented; nothing left")

    cases += [mid(signal.SIGINT, "torch", "analysis"), mid(signal.SIGTERM, "torch", "analysis"),
              mid(signal.SIGINT, "torch", "load"), mid(signal.SIGINT, "openvino", "conversion"),
              mid(signal.SIGTERM, "openvino", "conversion"), mid(signal.SIGINT, "openvino", "analysis")]
    return cases


# -- class 2: models folders -----------------------------------------------------------------------------------------
class Pickled:
    """Unpickling it runs a shell command (it touches the marker file): a checkpoint must be refused."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def model_cases() -> list[Case]:
    import torch  # for the checkpoints the cases write

    k = "models"
    cases = []

    def folder(name: str, provoke: str, make: Callable[[Ctx], Path], expect=(3,), says: Callable | str | None = None,
               check=None, env=None, extra: tuple = ()):
        def argv(ctx: Ctx) -> list:
            where = make(ctx)
            return ["analyze", *FAST, *([] if where is None else ["--models-dir", where]), *extra,
                    ctx.bench.media["face"]]

        cases.append(cli(k, name, provoke, argv, expect, says=says, check=check, env=env))

    def dir_name(ctx: Ctx) -> str:
        return str(ctx.dir / "models")

    folder("--models-dir /nonexistent", "--models-dir /nonexistent/models", lambda ctx: Path("/nonexistent/models"),
           (2,), says="/nonexistent/models")
    folder("--models-dir a file", "--models-dir models.txt (a file)", lambda ctx: ctx.file("models.txt", "x"), (2,),
           says="models.txt")
    folder("--models-dir a link loop", "--models-dir m1 -> m2 -> m1", lambda ctx: os.symlink("m2", ctx.dir / "m1")
           or os.symlink("m1", ctx.dir / "m2") or ctx.dir / "m1", (2,), says="m1")
    folder("--models-dir a FIFO", "--models-dir a named pipe", lambda ctx: os.mkfifo(ctx.dir / "mp") or ctx.dir / "mp",
           (2,), says="mp")
    folder("--models-dir 4200 chars", "--models-dir a missing 4200-character path",
           lambda ctx: Path(str(ctx.dir) + "/m" * 2100), (2,))
    folder("empty models folder", "--models-dir an empty folder (the built-in model and Haar judge)",
           lambda ctx: (ctx.dir / "empty").mkdir() or ctx.dir / "empty", (0,), check=note_says("built-in model"))
    folder("DEEPFAKE_MODELS_DIR nowhere", "DEEPFAKE_MODELS_DIR=/nonexistent/models, no --models-dir",
           lambda ctx: None, (2,), says="DEEPFAKE_MODELS_DIR",
           env=lambda ctx: ctx.env(DEEPFAKE_MODELS_DIR="/nonexistent/models"))
    folder("DEEPFAKE_MODELS_DIR a file", "DEEPFAKE_MODELS_DIR=a file", lambda ctx: None, (2,),
           says="DEEPFAKE_MODELS_DIR", env=lambda ctx: ctx.env(DEEPFAKE_MODELS_DIR=str(ctx.file("m.txt", "x"))))

    def unreadable(kind: str, name: str) -> Callable[[Ctx], Path]:
        def make(ctx: Ctx) -> Path:
            models = ctx.models(name)
            path = models / name
            if kind == "a folder":
                path.mkdir()
            elif kind == "a dangling link":
                path.symlink_to(models / "gone.bin")
            elif kind == "a link loop":
                (models / "other.bin").symlink_to(name)
                path.symlink_to("other.bin")
            else:
                os.mkfifo(path)
            return models

        return make

    names = ("epoch_007.pt", "best_audio_xception.pth", *FACE_FILES)
    for kind in ("a folder", "a dangling link", "a link loop", "a FIFO"):
        for name in names:
            folder(f"{name} is {kind}", f"{name} in the models folder is {kind}", unreadable(kind, name), (3,),
                   says=name)

    def checkpoint(name: str, write: Callable[[Path, Ctx], None]) -> Callable[[Ctx], Path]:
        def make(ctx: Ctx) -> Path:
            models = ctx.models()
            write(models / name, ctx)
            return models

        return make

    def torch_save(obj_fn):
        def write(path: Path, ctx: Ctx) -> None:
            torch.save(obj_fn(ctx), path)

        return write

    def truncated(path: Path, ctx: Ctx) -> None:
        torch_save(lambda c: {"model_state_dict": {"w": torch.zeros(256, 256)}})(path, ctx)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])

    def pickle_with_code(path: Path, ctx: Ctx) -> None:
        import pickle

        path.write_bytes(pickle.dumps({"model_state_dict": Pickled(ctx.dir / "PWNED")}, protocol=2))

    def marker_absent(ctx: Ctx, proc: Proc) -> list[str]:
        return ["the pickled command ran (the marker file exists)"] if (ctx.dir / "PWNED").exists() else []

    damaged = {
        "truncated": truncated,
        "random bytes": lambda p, c: p.write_bytes(random_bytes(100_000)),
        "text": lambda p, c: p.write_text("just some text\n"),
        "empty": lambda p, c: p.write_bytes(b""),
        "pickle-5 junk": lambda p, c: p.write_bytes(b"\x80\x05not a checkpoint"),
        "pickle with code": pickle_with_code,
        "torch zip with code": torch_save(lambda c: {"model_state_dict": Pickled(c.dir / "PWNED")}),
        "wrong keys": torch_save(lambda c: {"model_state_dict": {"fc.weight": torch.zeros(2, 8)}}),
        "a list, not a dict": torch_save(lambda c: [1, 2, 3]),
    }
    for label, write in damaged.items():
        folder(f"epoch_007.pt: {label}", f"epoch_007.pt in the models folder: {label}",
               checkpoint("epoch_007.pt", write), (3,), says="epoch_007.pt", check=marker_absent)
    for label in ("truncated", "random bytes", "pickle with code"):
        folder(f"best_audio_xception.pth: {label}", f"best_audio_xception.pth: {label}",
               checkpoint("best_audio_xception.pth", damaged[label]), (3,), says="best_audio_xception.pth",
               check=marker_absent)
    res10 = {
        "deploy.prototxt garbage": ("deploy.prototxt", lambda p, c: p.write_text("garbage {\n")),
        "deploy.prototxt empty": ("deploy.prototxt", lambda p, c: p.write_bytes(b"")),
        "caffemodel cut to 1000 bytes": (FACE_FILES[1], lambda p, c: p.write_bytes(p.read_bytes()[:1000])),
        "caffemodel random bytes": (FACE_FILES[1], lambda p, c: p.write_bytes(random_bytes(500_000))),
        "caffemodel one byte flipped": (FACE_FILES[1], lambda p, c: p.write_bytes(flip(p.read_bytes()))),
    }
    for label, (name, write) in res10.items():
        if label == "caffemodel one byte flipped":  # still loads: used with the warning, as other unpinned files
            folder(label, f"tampered res10 file: {label}", checkpoint(name, write), (0, 3), says=name,
                   check=note_says("not the published ones", name))
        else:
            folder(label, f"tampered res10 file: {label}", checkpoint(name, write), (3,), says=name)

    def model_arg(name: str, provoke: str, value: Callable[[Ctx], Path | str], expect=(2, 3), says=None,
                  flag="--video-model"):
        cases.append(cli(k, name, provoke, lambda ctx: ["analyze", *FAST, "--models-dir", ctx.models(), flag,
                                                        value(ctx), ctx.bench.media["face"]], expect, says=says,
                         check=marker_absent))

    model_arg("--video-model missing file", "--video-model gone.safetensors", lambda ctx: ctx.dir / "gone.safetensors",
              says="gone.safetensors")
    model_arg("--video-model a folder", "--video-model a folder", lambda ctx: ctx.dir)
    model_arg("--video-model random .safetensors", "--video-model noise.safetensors (random bytes)",
              lambda ctx: ctx.file("noise.safetensors", random_bytes(50_000)), (3,), says="noise.safetensors")
    model_arg("--video-model pickle with code", "--video-model evil.pt (a pickle that runs a command)",
              lambda ctx: pickle_with_code(ctx.dir / "evil.pt", ctx) or ctx.dir / "evil.pt", (3,), says="evil.pt")
    model_arg("--video-model unknown name", "--video-model resnet50", lambda ctx: "resnet50", says="resnet50")
    model_arg("--audio-model random bytes", "--audio-model noise.pth (random bytes)",
              lambda ctx: ctx.file("noise.pth", random_bytes(50_000)), (3,), says="noise.pth", flag="--audio-model")

    def calibration(label: str, write: Callable[[Path], None], expect=(0,), check=None):
        def make(ctx: Ctx) -> Path:
            models = ctx.models()
            write(models / "calibration.json")
            return models

        folder(f"calibration.json {label}", f"calibration.json in the models folder: {label}", make, expect,
               check=check, says="calibration.json")

    calibration("garbage", lambda p: p.write_text("{not json"), check=note_says("calibration"))
    calibration("out of range", lambda p: p.write_text(json.dumps({"threshold": 7, "video_temperature": -1})),
                check=note_says("calibration"))
    calibration("a folder", lambda p: p.mkdir(), expect=(0, 3))
    calibration("a FIFO", lambda p: os.mkfifo(p), expect=(0, 3))
    flipped = checkpoint(FACE_FILES[1], lambda p, c: p.write_bytes(flip(p.read_bytes())))
    cases.append(cli(k, "weights verify, tampered res10", "weights verify on a folder with a flipped caffemodel byte",
                     lambda ctx: ["weights", "verify", "face-weights", "--models-dir", flipped(ctx)], (3,),
                     check=lambda ctx, proc: [] if "corrupt" in proc.out
                     else [f"verify does not say corrupt: {proc.out[-200:]!r}"]))
    return cases


def flip(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1:]


# -- class 3: scan -----------------------------------------------------------------------------------------------
SCAN_CLIPS = 6


def clip_folder(ctx: Ctx, count: int = SCAN_CLIPS) -> Path:
    folder = ctx.dir / "clips"
    folder.mkdir(exist_ok=True)
    for i in range(count):
        shutil.copy(ctx.bench.media["faceless"], folder / f"clip_{i}.mp4")
    return folder


def scan_argv(ctx: Ctx, inputs, out, *extra) -> list:
    inputs = inputs if isinstance(inputs, list) else [inputs]
    return ["scan", *inputs, "--out", out, "--models-dir", ctx.bench.models, *FAST, *extra]


def rows_problems(out: Path, inputs: list[Path], before: list[str] | None = None) -> list[str]:
    """Holes in a results file: a line that is not a whole row, an input missing or repeated, rows of an earlier
    run changed."""
    if not out.is_file():
        return [f"{out.name} is missing"]
    text = out.read_text()
    if text and not text.endswith("\n"):
        return [f"{out.name} ends in a cut-off line"]
    if out.suffix == ".jsonl":
        try:
            paths = [json.loads(line)["path"] for line in text.splitlines()]
        except (ValueError, KeyError) as e:
            return [f"{out.name} has a line that is not a row: {e}"]
    else:
        import csv

        paths = [row["path"] for row in csv.DictReader(text.splitlines())]
    holes = []
    if sorted(paths) != sorted(map(str, inputs)):
        holes.append(f"{out.name} holds {len(paths)} rows for {len(set(paths))} of {len(inputs)} inputs")
    if before is not None and paths[:len(before)] != before:
        holes.append(f"the rows written before were changed ({before} -> {paths[:len(before)]})")
    return holes


def jsonl_paths(out: Path) -> list[str] | None:
    if not out.is_file() or not out.read_bytes().endswith(b"\n"):
        return None
    return [json.loads(line)["path"] for line in out.read_text().splitlines()]


def scan_cases(ray: bool) -> list[Case]:
    k = "scan"
    cases = []

    def out_case(name: str, provoke: str, out: Callable[[Ctx], Path | str], expect=(2,), says=None, extra=(),
                 check=None, bound=BOUND_S):
        cases.append(cli(k, name, provoke, lambda ctx: scan_argv(ctx, ctx.bench.media["faceless"], out(ctx), *extra),
                         expect, says=says, check=check, bound=bound))

    def unchanged(text: str, name: str) -> Callable[[Ctx, Proc], list[str]]:
        return lambda ctx, proc: [] if (ctx.dir / name).read_text() == text else [f"{name} was changed"]

    out_case("--out /proc/x.jsonl", "--out /proc/x.jsonl", lambda ctx: "/proc/x.jsonl", says="/proc/x.jsonl")
    out_case("--out /proc/self/x/r.csv", "--out /proc/self/x/r.csv", lambda ctx: "/proc/self/x/r.csv",
             says="/proc/self/x/r.csv")
    out_case("--out in a missing folder", "--out no/such/folder/r.csv", lambda ctx: ctx.dir / "no/such/folder/r.csv",
             (0, 2), says="r.csv")
    out_case("--out a folder", "--out an existing folder", lambda ctx: (ctx.dir / "r.csv").mkdir() or ctx.dir / "r.csv",
             says="r.csv")
    out_case("--out under a file", "--out FILE/r.csv", lambda ctx: ctx.file("f", "x") / "r.csv", says="r.csv")
    out_case("--out .txt", "--out r.txt (neither CSV nor JSONL)", lambda ctx: ctx.dir / "r.txt", says="r.txt")
    out_case("--out a link to /dev/full", "--out full.jsonl -> /dev/full (every write: ENOSPC)",
             lambda ctx: os.symlink("/dev/full", ctx.dir / "full.jsonl") or ctx.dir / "full.jsonl", (2,),
             says="full.jsonl")
    out_case("--out a FIFO", "--out a named pipe r.jsonl", lambda ctx: os.mkfifo(ctx.dir / "r.jsonl")
             or ctx.dir / "r.jsonl", says="r.jsonl")
    out_case("--out a link loop", "--out r.csv -> s.csv -> r.csv", lambda ctx: os.symlink("s.csv", ctx.dir / "r.csv")
             or os.symlink("r.csv", ctx.dir / "s.csv") or ctx.dir / "r.csv", says="r.csv")
    out_case("--out another program's CSV", "--out a CSV with other columns",
             lambda ctx: ctx.file("other.csv", "name,score\nx,1\n"), says="other.csv",
             check=unchanged("name,score\nx,1\n", "other.csv"))
    out_case("--restart on another program's JSONL", "--out a JSONL of something else --restart",
             lambda ctx: ctx.file("other.jsonl", '{"a": 1}\n'), says="other.jsonl", extra=("--restart",),
             check=unchanged('{"a": 1}\n', "other.jsonl"))

    def locked(ctx: Ctx) -> Path:
        out = ctx.dir / "r.jsonl"
        out.write_text("")
        ctx.lock = open(out, "a")  # held by this process until the case ends
        fcntl.flock(ctx.lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return out

    out_case("--out locked by another scan", "--out a file another process holds flock() on", locked,
             says="another scan")
    cases.append(cli(k, "missing input", "scan a path that does not exist",
                     lambda ctx: scan_argv(ctx, ctx.dir / "nothing", ctx.dir / "r.csv"), (2,), says="nothing"))
    cases.append(cli(k, "empty folder", "scan an empty folder",
                     lambda ctx: scan_argv(ctx, (ctx.dir / "e").mkdir() or ctx.dir / "e", ctx.dir / "r.csv"), (0, 2)))

    def junk_folder(ctx: Ctx) -> Path:
        folder = ctx.dir / "junk"
        folder.mkdir()
        (folder / "empty.mp4").write_bytes(b"")
        (folder / "noise.mp4").write_bytes(random_bytes(5000))
        (folder / "text.wav").write_text("hello\n")
        os.symlink("gone.mp4", folder / "dangling.mp4")
        os.symlink("loop.mp4", folder / "loop.mp4")
        os.mkfifo(folder / "pipe.mkv")
        shutil.copy(ctx.bench.media["faceless"], folder / "good.mp4")
        return folder

    def junk_rows(ctx: Ctx, proc: Proc) -> list[str]:
        folder = ctx.dir / "junk"
        return rows_problems(ctx.dir / "r.jsonl", sorted(folder.iterdir()))

    cases.append(cli(k, "folder of broken files", "scan a folder: empty, noise, text, dangling link, link loop, "
                     "FIFO and one good clip", lambda ctx: scan_argv(ctx, junk_folder(ctx), ctx.dir / "r.jsonl"),
                     (0,), check=junk_rows, expected="exit 0, one row each (errors recorded)"))
    cases += [kill_and_resume(signal.SIGKILL), kill_and_resume(signal.SIGINT), kill_and_resume(signal.SIGTERM),
              Case(k, "ENOSPC mid-scan, then resume", "results on a 64 kB tmpfs filled to its last page; then space "
                   "freed and the same command again", "exit 2 saying how many rows are safe; then 0, each input once",
                   enospc),
              Case(k, "EFBIG mid-scan (RLIMIT_FSIZE)", "file-size limit of the header and one row",
                   "exit 2 saying how many rows are safe", efbig),
              Case(k, "two scans, one results file", "the same scan started twice at once",
                   "one runs (0), the other exit 2 (locked); each input once", two_scans, serial=True)]
    if ray:
        cases.append(cli(k, "--ray --out /proc/x.jsonl", "scan --ray --out /proc/x.jsonl",
                         lambda ctx: scan_argv(ctx, ctx.bench.media["faceless"], "/proc/x.jsonl", "--ray"), (2,),
                         says="/proc/x.jsonl"))
        cases.append(cli(k, "--ray, missing models folder", "scan --ray --models-dir /nonexistent/models",
                         lambda ctx: ["scan", ctx.bench.media["faceless"], "--out", ctx.dir / "r.jsonl", "--ray",
                                      "--models-dir", "/nonexistent/models", "--quiet"], (2,),
                         says="/nonexistent/models"))
        cases.append(cli(k, "--ray, epoch_007.pt a folder", "scan --ray, epoch_007.pt is a folder",
                         lambda ctx: ["scan", ctx.bench.media["faceless"], "--out", ctx.dir / "r.jsonl", "--ray",
                                      "--models-dir", unreadable_ckpt(ctx), "--quiet"], (3,), says="epoch_007.pt"))
        cases.append(cli(k, "--ray, empty models folder", "scan --ray over 2 clips, an empty models folder (a local "
                         "Ray started and stopped)",
                         lambda ctx: ["scan", clip_folder(ctx, 2), "--out", ctx.dir / "r.jsonl", "--ray",
                                      "--models-dir", (ctx.dir / "empty").mkdir() or ctx.dir / "empty",
                                      "--max-samples", "3", "--quiet"], (0,), bound=RAY_BOUND_S,
                         check=lambda ctx, proc: rows_problems(ctx.dir / "r.jsonl",
                                                               sorted((ctx.dir / "clips").iterdir()))
                         + note_says("built-in model")(ctx, proc) + ray_processes_left(ctx),
                         expected="exit 0 with the built-in-model note, each clip once, no Ray process left",
                         serial=True))
    return cases


def unreadable_ckpt(ctx: Ctx) -> Path:
    models = ctx.models()
    (models / "epoch_007.pt").mkdir()
    return models


def ray_processes_left(ctx: Ctx) -> list[str]:
    """Ray processes (raylet, gcs_server) of the Ray this case's scan started (its session lives under the case's
    TMPDIR) still running after the scan; they are stopped. Another Ray on this machine is never touched."""
    left = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if ("raylet" in cmd or "gcs_server" in cmd) and str(ctx.tmp) in cmd:
                left.append(f"{pid}: {cmd[:60]}")
                os.kill(int(pid), signal.SIGKILL)
    return [f"Ray processes still running: {left}"] if left else []


def kill_and_resume(sig: signal.Signals) -> Case:
    def go(ctx: Ctx) -> Verdict:
        folder, out = clip_folder(ctx), ctx.dir / "r.jsonl"
        argv = scan_argv(ctx, folder, out)
        first = run(ctx, argv, stop=(sig, lambda pid: out.is_file() and b"\n" in out.read_bytes(), 0.0))
        before = jsonl_paths(out)
        again = run(ctx, argv)
        holes = [] if first.code is not None else ["the stopped scan did not end"]
        if sig != signal.SIGKILL:
            holes += judge(first, (130,) if sig == signal.SIGINT else (130, 143, -signal.SIGTERM), None, BOUND_S)
        holes += judge(again, (0,), None, BOUND_S)
        holes += rows_problems(out, sorted(folder.iterdir()), before)
        if "already done" not in again.err:
            holes.append(f"the second run does not say what was already done: {again.err.strip()[-200:]!r}")
        return Verdict(f"{first.code} then {again.code}", holes, first.said or again.said)

    return Case("scan", f"{sig.name} mid-scan, then again", f"{sig.name} once the first row is on disk, then the "
                "same command", f"{'' if sig == signal.SIGKILL else 'a documented exit, '}then 0; no row lost or "
                "repeated", go, serial=True)


def enospc(ctx: Ctx) -> Verdict:
    if os.geteuid() != 0:
        return Verdict("skipped", ["not run: mounting a tmpfs needs root"])
    folder, disk = clip_folder(ctx), ctx.dir / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)], capture_output=True,
                             text=True)
    if mounted.returncode != 0:
        return Verdict("skipped", [f"not run: mount failed ({mounted.stderr.strip()})"])
    try:
        filler, out = disk / "filler", disk / "r.jsonl"
        with contextlib.suppress(OSError), open(filler, "wb") as f:
            while True:
                f.write(b"\0" * 4096)
                f.flush()
        filler.write_bytes(b"\0" * (filler.stat().st_size - 4096))  # one page left: the first row or two fit
        argv = scan_argv(ctx, folder, out)
        full = run(ctx, argv)
        holes = judge(full, (2,), "no space left", BOUND_S)
        safe = jsonl_paths(out) or []
        if f"{len(safe)} rows are safely in it" not in full.err:
            holes.append(f"the message does not say {len(safe)} rows are safe: {full.said!r}")
        filler.unlink()
        again = run(ctx, argv)
        holes += judge(again, (0,), None, BOUND_S) + rows_problems(out, sorted(folder.iterdir()), safe)
        return Verdict(f"{full.code} then {again.code}", holes, full.said)
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def efbig(ctx: Ctx) -> Verdict:
    folder, one, out = clip_folder(ctx), ctx.dir / "one.csv", ctx.dir / "r.csv"
    first = run(ctx, scan_argv(ctx, folder / "clip_0.mp4", one))
    limit = one.stat().st_size + 40 if one.is_file() else 4096

    def limited():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    proc = run(ctx, scan_argv(ctx, folder, out), preexec=limited)
    holes = judge(first, (0,), None, BOUND_S) + judge(proc, (2,), "file too large", BOUND_S)
    if "1 rows are safely in it" not in proc.err:
        holes.append(f"the message does not say 1 row is safe: {proc.said!r}")
    if not out.read_text().endswith("\n") or len(out.read_text().splitlines()) != 2:
        holes.append("the results file does not hold its header and one whole row")
    return Verdict(str(proc.code), holes, proc.said)


def two_scans(ctx: Ctx) -> Verdict:
    folder, out = clip_folder(ctx), ctx.dir / "r.jsonl"
    argv = [*CLI, *map(str, scan_argv(ctx, folder, out))]
    with tempfile.TemporaryFile() as e1, tempfile.TemporaryFile() as e2:
        a = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=e1, env=ctx.env(), cwd=ctx.dir)
        time.sleep(0.3)
        b = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=e2, env=ctx.env(), cwd=ctx.dir)
        codes = []
        for child in (a, b):
            try:
                codes.append(child.wait(BOUND_S))
            except subprocess.TimeoutExpired:
                child.kill()
                codes.append(child.wait())
        e1.seek(0), e2.seek(0)
        errs = [e1.read().decode(errors="replace"), e2.read().decode(errors="replace")]
    holes = [] if sorted(codes) == [0, 2] else [f"exit codes {codes}, expected 0 and 2"]
    holes += [f"a traceback: {err[-200:]!r}" for err in errs if "Traceback" in err]
    if not any("another scan" in err for err in errs):
        holes.append("neither says another scan is writing the file")
    holes += rows_problems(out, sorted(folder.iterdir()))
    return Verdict(f"{codes[0]} and {codes[1]}", holes, next((e for e in errs if "error:" in e), "").strip()[:200])


# -- class 4: the HTTP API -------------------------------------------------------------------------------------------
class Server:
    """`deepfake-detect api` in a child process on 127.0.0.1, with its own TMPDIR."""

    def __init__(self, ctx: Ctx, *args: str, keys: str = API_KEY, prefix: tuple = ()):
        self.ctx, self.port = ctx, free_port()
        self.log = open(ctx.dir / f"server-{self.port}.log", "w+b")
        env = ctx.env(DEEPFAKE_API_KEYS=keys)
        self.child = subprocess.Popen([*prefix, *CLI, "api", "--port", str(self.port), "--models-dir",
                                       str(ctx.bench.models), "--device", "cpu", "--runtime", "torch", *args],
                                      stdout=self.log, stderr=subprocess.STDOUT, env=env, cwd=ctx.dir,
                                      start_new_session=True)
        deadline = time.monotonic() + BOUND_S
        while True:
            with contextlib.suppress(OSError):
                if request(self.port, "GET", "/readyz", timeout=5)[0] == 200:
                    break
            if self.child.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the API server did not start: {self.text()[-2000:]}")
            time.sleep(0.2)

    def text(self) -> str:
        """What the server printed (its log)."""
        if self.log.closed:
            return self.logged
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def jobs(self) -> list[Path]:
        return sorted(self.ctx.tmp.glob("deepfake-api-*/job-*"))

    def settle(self, bound: float = API_BOUND_S) -> list[str]:
        """Holes after a request: job folders that outlive their job, a server that died."""
        deadline = time.monotonic() + bound
        while self.jobs() and time.monotonic() < deadline:
            time.sleep(0.1)
        holes = [f"job folders left: {[p.name for p in self.jobs()]}"] if self.jobs() else []
        try:
            alive = request(self.port, "GET", "/healthz", timeout=10)[0] == 200
        except OSError:
            alive = False
        return holes + ([] if alive else ["the server stopped answering /healthz"])

    def stop(self) -> int | None:
        """Ctrl-C, as at a terminal: SIGINT to the server's process group (strace included, when it runs under it)."""
        os.killpg(self.child.pid, signal.SIGINT)
        try:
            return self.child.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self.child.pid, signal.SIGKILL)
            self.child.wait()
            return None
        finally:
            self.logged = self.text()
            self.log.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(port: int, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
            timeout: float = API_BOUND_S) -> tuple[int, dict, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def multipart(data: bytes, name: str = "clip.mp4", boundary: str = BOUNDARY, closed: bool = True,
              fields: dict | None = None, field: str = "file") -> bytes:
    parts = b"".join(f"--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n".encode()
                     for k, v in (fields or {}).items())
    body = parts + (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{name}\"\r\n"
                    f"Content-Type: video/mp4\r\n\r\n").encode() + data + b"\r\n"
    return body + (f"--{boundary}--\r\n".encode() if closed else b"")


def auth(key: str | None = API_KEY, **more: str) -> dict:
    return ({"Authorization": f"Bearer {key}"} if key is not None else {}) | more


def form(boundary: str = BOUNDARY) -> dict:
    return auth(**{"Content-Type": f"multipart/form-data; boundary={boundary}"})


def raw_answer(sock: socket.socket) -> tuple[int, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed without an answer: {data[:200]!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length")), 0)
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(head.split()[1]), body


def head_bytes(length: int, content_type: str = f"multipart/form-data; boundary={BOUNDARY}",
               path: str = "/v1/analyses?max_samples=2") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {API_KEY}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {length}\r\n\r\n").encode()


def json_error(status: int, body: bytes, expect: tuple[int, ...], code: str | tuple[str, ...] | None) -> list[str]:
    """Holes in one answer: an unexpected status, a traceback, a 4xx/5xx that is not a JSON error with a code."""
    holes = []
    text = body.decode(errors="replace")
    if status not in expect:
        holes.append(f"HTTP {status}, expected {'/'.join(map(str, expect))}: {text[:200]!r}")
    if "Traceback" in text:
        holes.append("a traceback in the body")
    if status >= 400:
        try:
            error = json.loads(body)["error"]
            got = error["code"]
            assert isinstance(error["message"], str) and error["message"]
        except (ValueError, KeyError, TypeError, AssertionError):
            holes.append(f"not a JSON error with a code: {text[:200]!r}")
        else:
            if code is not None and got not in ((code,) if isinstance(code, str) else code) and status in expect:
                holes.append(f"code {got!r}, expected {code!r}")
    return holes


def said(body: bytes) -> str:
    with contextlib.suppress(ValueError, KeyError, TypeError):
        error = json.loads(body)["error"]
        return f"{error['code']}: {error['message']}"[:300]
    with contextlib.suppress(ValueError, KeyError, TypeError):
        return f"status {json.loads(body)['status']}"
    return body[:200].decode(errors="replace")


class ApiCases:
    """The API cases run against one server each battery (started by the first, stopped by the last)."""

    QUEUE = 2

    def __init__(self):
        self.server: Server | None = None
        self.ctx: Ctx | None = None

    def start(self, ctx: Ctx) -> Verdict:
        self.ctx = ctx
        (ctx.dir / "allow").mkdir()
        self.allow = ctx.dir / "allow"
        self.server = Server(ctx, "--workers", "1", "--queue-size", str(self.QUEUE), "--body-grace", "2",
                             "--body-min-rate", "20", "--body-deadline", "20", "--max-upload-mb", "4",
                             "--wait-timeout", "60", "--allow-dir", str(self.allow))
        status, _, body = request(self.server.port, "GET", "/v1/models", headers=auth())
        return Verdict(str(status), json_error(status, body, (200,), None), "")

    def finish(self, ctx: Ctx) -> Verdict:
        """Stop the server with a job running: it ends, and its TMPDIR is empty."""
        server = self.server
        assert server is not None and self.ctx is not None
        request(server.port, "POST", "/v1/analyses?max_samples=40&frame_skip=1", json.dumps(
            {"path": self.long_clip()}).encode(), auth(**{"Content-Type": "application/json"}))
        time.sleep(1.0)
        code = server.stop()
        holes = [] if code == 0 else [f"the server's exit code after SIGINT: {code}"]
        holes += [f"server: {hole}" for hole in leftovers(self.ctx)]
        holes += ["a traceback in the server log"] if "Traceback" in server.text() else []
        return Verdict(str(code), holes, "")

    def long_clip(self) -> str:
        target = self.allow / "long.mp4"
        if not target.exists():
            shutil.copy(self.ctx.bench.media["long"], target)
        return target.name

    def case(self, name: str, provoke: str, send: Callable[[ApiCases, Ctx], tuple[int, bytes]],
             expect: tuple[int, ...], code: str | tuple[str, ...] | None = None, expected: str = "") -> Case:
        def go(ctx: Ctx) -> Verdict:
            status, body = send(self, ctx)
            holes = json_error(status, body, expect, code) + self.server.settle()
            return Verdict(str(status), holes, said(body))

        codes = (code,) if isinstance(code, str) else code or ()
        return Case("api", name, provoke, expected or f"HTTP {'/'.join(map(str, expect))} {'/'.join(codes)}".strip(),
                    go)


def api_cases() -> list[Case]:
    api = ApiCases()
    cases = [Case("api", "server starts", "deepfake-detect api, small clocks, keys, --allow-dir",
                  "ready; GET /v1/models 200", api.start)]
    add = cases.append

    def post(query: str = "max_samples=2", body: bytes = b"", headers: dict | None = None, method: str = "POST",
             path: str = "/v1/analyses"):
        def send(a: ApiCases, ctx: Ctx) -> tuple[int, bytes]:
            status, _, data = request(a.server.port, method, f"{path}?{query}" if query else path, body,
                                      form() if headers is None else headers)
            return status, data

        return send

    def upload(data: Callable[[Ctx], bytes], name: str = "clip.mp4", query: str = "max_samples=2", **kw):
        def send(a: ApiCases, ctx: Ctx) -> tuple[int, bytes]:
            return post(query, multipart(data(ctx), name, **kw))(a, ctx)

        return send

    def clip(key: str, how: str | None = None) -> Callable[[Ctx], bytes]:
        return lambda ctx: (ctx.bench.media[key].read_bytes() if how is None
                            else cut(ctx.bench.media[key].read_bytes(), how))

    def json_post(payload: bytes | dict, query: str = "max_samples=2", key: str | None = API_KEY):
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        return post(query, body, auth(key, **{"Content-Type": "application/json"}))

    def done(send):  # a good request: 202, then the job ends done
        def go(a: ApiCases, ctx: Ctx) -> tuple[int, bytes]:
            status, body = send(a, ctx)
            if status == 202:
                job = json.loads(body)
                deadline = time.monotonic() + API_BOUND_S
                while job["status"] in ("queued", "running") and time.monotonic() < deadline:
                    time.sleep(0.2)
                    job = json.loads(request(a.server.port, "GET", f"/v1/analyses/{job['id']}", headers=auth())[2])
                if job["status"] != "done":
                    return 599, json.dumps({"error": {"code": "test", "message": f"job ended {job['status']}: "
                                                                                 f"{job.get('error')}"}}).encode()
            return status, body

        return go

    add(api.case("good upload", "the face clip, multipart", done(upload(clip("face")), ), (202,)))
    add(api.case("good upload, wait=true", "the face clip with wait=true", upload(clip("face"),
                                                                                  query="max_samples=2&wait=true"),
                 (200,)))
    def by_path(a: ApiCases, ctx: Ctx) -> tuple[int, bytes]:
        shutil.copy(ctx.bench.media["face"], a.allow / "face.mp4")
        return json_post({"path": "face.mp4"})(a, ctx)

    add(api.case("good path request", "JSON {path} of a clip in --allow-dir", done(by_path), (202,)))
    add(api.case("faceless upload", "a clip without a face", done(upload(clip("faceless"))), (202,)))
    add(api.case("audio-only upload", "a voice-like .m4a", done(upload(clip("m4a"), "voice.m4a")), (202, 422)))
    cases += [Case("api", f"{label}", provoke, expected, partial_fn(api, fn))
              for label, provoke, expected, fn in SLOW_CLIENTS]
    add(api.case("boundary of 300 chars", "multipart boundary of 300 characters",
                 lambda a, c: post(body=multipart(b"x" * 1000, boundary="b" * 300), headers=form("b" * 300))(a, c),
                 (400,), "bad_request"))
    add(api.case("boundary of 5000 chars", "multipart boundary of 5000 characters",
                 lambda a, c: post(body=multipart(b"x" * 1000, boundary="b" * 5000), headers=form("b" * 5000))(a, c),
                 (400, 431), None))
    add(api.case("NUL in JSON path", '{"path": "clip\\u0000.mp4"}', json_post({"path": "clip\x00.mp4"}), (400,),
                 "bad_option"))
    add(api.case("deep JSON arrays", "[[[... 20000 deep (under the 64 kB cap)",
                 json_post(b"[" * 20_000 + b"]" * 20_000), (400,), "bad_request"))
    add(api.case("deep JSON objects", '{"a":{"a":... 10000 deep', json_post(b'{"a":' * 10_000 + b"1" + b"}" * 10_000),
                 (400,), "bad_request"))
    add(api.case("JSON over 64 kB", "a 100 kB JSON body", json_post({"path": "x" * 100_000}), (400, 413), None))
    add(api.case("invalid JSON", "{path:", json_post(b"{path:"), (400,), "bad_request"))
    add(api.case("JSON not UTF-8", "a Latin-1 JSON body", json_post('{"path": "\u00e9t\u00e9.mp4"}'.encode("latin-1")),
                 (400,), "bad_request"))
    add(api.case("JSON path a number", '{"path": 5}', json_post({"path": 5}), (400,), None))
    add(api.case("no closing boundary", "multipart body ending without its closing boundary",
                 upload(clip("face"), closed=False), (400,), "incomplete_upload"))
    add(api.case("body ends in part headers", "multipart body cut inside the part's headers",
                 post(body=multipart(b"x")[:60]), (400,), None))
    for key, label in (("faststart", "faststart"), ("face", "moov-at-end"), ("mkv", "Matroska")):
        for how in ("-40k", "-1", "50%") if key != "mkv" else ("-40k", "50%"):
            ext = ".mkv" if key == "mkv" else ".mp4"
            add(api.case(f"{label} upload cut {how}", f"the {label} clip cut ({how})",
                         upload(clip(key, how), f"cut{ext}"), (400,), "truncated_media"))
    add(api.case("content type text/plain", "POST a clip as text/plain",
                 lambda a, c: post(body=c.bench.media["face"].read_bytes(),
                                   headers=auth(**{"Content-Type": "text/plain"}))(a, c), (415,),
                 "unsupported_media_type"))
    add(api.case("content type application/xml", "POST <a/> as XML",
                 post(body=b"<a/>", headers=auth(**{"Content-Type": "application/xml"})), (415,), None))
    add(api.case("no content type", "POST bytes without Content-Type", post(body=b"hello", headers=auth()),
                 (400, 415), None))
    add(api.case("empty multipart body", "multipart content type, 0 bytes", post(body=b""), (400,), None))
    add(api.case("empty JSON body", "JSON content type, 0 bytes", json_post(b""), (400,), None))
    add(api.case("no file field", "multipart with only an option field",
                 post(body=f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"fusion\"\r\n\r\nmax\r\n"
                           f"--{BOUNDARY}--\r\n".encode()), (400,), "no_file"))
    add(api.case("file in the wrong field", "the clip in the form field `video`",
                 upload(clip("face"), field="video"), (202, 400), None))
    add(api.case("declared oversize", "Content-Length 50 MB (limit 4 MB), no body sent",
                 lambda a, c: raw_post(a, head_bytes(50 * 2**20)), (413,), "too_large"))
    add(api.case("streamed oversize", "6 MB multipart body, chunked (limit 4 MB)",
                 lambda a, c: chunked_post(a, multipart(random_bytes(6 * 2**20))), (413,), "too_large"))
    for option in ("threshold=2", "threshold=nan", "frame_skip=-1", "max_samples=0", "fusion=bogus", "wait=maybe",
                   "explain=-1", "face_reuse=perhaps", "audio_temperature=1e999", "foo=1", "path=x.mp4"):
        add(api.case(f"option {option}", f"upload with ?{option}", upload(clip("face"), query=option), (400,),
                     ("bad_option", "bad_settings")))
    add(api.case("bad option as a form field", "form field threshold=abc",
                 upload(clip("face"), fields={"threshold": "abc"}), (400,), "bad_option"))
    add(api.case("no API key", "POST without Authorization", post(body=multipart(b"x"), headers={
        "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}), (401,), "unauthorized"))
    add(api.case("wrong API key", "Bearer wrong", post(body=multipart(b"x"), headers=form() | auth("wrong")),
                 (401,), "unauthorized"))
    add(api.case("Basic auth", "Authorization: Basic ...", post(body=multipart(b"x"), headers=form() | {
        "Authorization": "Basic aG9zdGlsZTprZXk="}), (401,), "unauthorized"))
    add(api.case("/metrics without key", "GET /metrics, no key", post(method="GET", path="/metrics", query="",
                                                                      headers={}), (401,), "unauthorized"))
    add(api.case("/healthz without key", "GET /healthz, no key", post(method="GET", path="/healthz", query="",
                                                                      headers={}), (200,)))
    for method, suffix in (("GET", ""), ("DELETE", ""), ("GET", "/timeline.csv")):
        add(api.case(f"{method} unknown job{suffix}", f"{method} /v1/analyses/nope{suffix}",
                     post(method=method, path=f"/v1/analyses/nope{suffix}", query="", headers=auth()), (404,),
                     "not_found"))
    add(api.case("job id of 6000 chars", "GET /v1/analyses/<6000 x>",
                 post(method="GET", path="/v1/analyses/" + "x" * 6000, query="", headers=auth()), (404, 414), None))
    add(api.case("PUT /v1/analyses", "an unsupported method", post(method="PUT", headers=auth()), (405,),
                 "method_not_allowed"))
    add(api.case("unknown route", "GET /v1/nope", post(method="GET", path="/v1/nope", query="", headers=auth()),
                 (404,), "not_found"))
    for label, payload, name in (("text", b"just text\n" * 100, "notes.mp4"), ("random bytes", None, "noise.mp4"),
                                 ("empty file", b"", "empty.mp4"), ("HTML", b"<!doctype html>", "page.webm"),
                                 ("JPEG photo", "photo", "face.jpg")):
        def data(ctx: Ctx, payload=payload) -> bytes:
            if payload == "photo":
                return ctx.bench.media["photo"].read_bytes()
            return random_bytes(100_000) if payload is None else payload

        add(api.case(f"non-media upload: {label}", f"upload {name}: {label}", upload(data, name), (422, 202), None))
    for label, name, expect, code in (("../ traversal", "../../etc/passwd", (403,), "path_not_allowed"),
                                      ("absolute path", "/etc/passwd", (403,), "path_not_allowed"),
                                      ("missing file", "gone.mp4", (404,), "no_such_file"),
                                      ("a folder", "sub", (404,), "no_such_file"),
                                      ("a FIFO", "pipe.mp4", (404, 422), None),
                                      ("a link loop", "loop.mp4", (404,), "no_such_file"),
                                      ("a link out of the folder", "out.mp4", (403,), "path_not_allowed"),
                                      ("a text file", "notes.mp4", (422,), "unreadable_media"),
                                      ("a name of 5000 chars", "n" * 5000, (404,), "no_such_file")):
        def send(a: ApiCases, ctx: Ctx, name=name) -> tuple[int, bytes]:
            allow_fixtures(a.allow)
            return json_post({"path": name})(a, ctx)

        add(api.case(f"path: {label}", f'JSON {{"path": "{name[:40]}"}}', send, expect, code))
    add(api.case("filename ../../evil.mp4", "upload named ../../evil.mp4", done(upload(clip("face"),
                                                                                      "../../evil.mp4")), (202,)))
    add(api.case("filename of 1000 chars", "upload named 1000 characters", done(upload(clip("face"), "n" * 996
                                                                                      + ".mp4")), (202, 400)))
    add(api.case("queue full", f"{ApiCases.QUEUE + 2} path requests of the 1080p clip at once (1 worker, queue "
                 f"{ApiCases.QUEUE})", queue_full, (429,), "queue_full", "HTTP 429 queue_full with Retry-After"))
    add(api.case("DELETE a running job", "DELETE an upload while it runs", delete_running, (204,), None))
    add(api.case("client gone mid-upload", "half the body, then the connection closed", gone_mid_upload, (0,),
                 None, "no answer possible; nothing kept, server fine"))
    cases.append(Case("api", "server stops with a job running", "SIGINT to the server while it analyses",
                      "exit 0 within 60 s; its TMPDIR empty", api.finish))
    return cases


def partial_fn(api: ApiCases, fn):
    return lambda ctx: fn(api, ctx)


def allow_fixtures(allow: Path) -> None:
    if (allow / "sub").exists():
        return
    (allow / "sub").mkdir()
    os.mkfifo(allow / "pipe.mp4")
    os.symlink("loop.mp4", allow / "loop.mp4")
    os.symlink("/etc/hostname", allow / "out.mp4")
    (allow / "notes.mp4").write_text("just text\n")


def raw_post(a: ApiCases, first: bytes, then: bytes = b"") -> tuple[int, bytes]:
    with socket.create_connection(("127.0.0.1", a.server.port), timeout=API_BOUND_S) as sock:
        sock.sendall(first)
        with contextlib.suppress(OSError):
            sock.sendall(then)
        return raw_answer(sock)


def chunked_post(a: ApiCases, body: bytes) -> tuple[int, bytes]:
    head = (f"POST /v1/analyses?max_samples=2 HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {API_KEY}\r\n"
            f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\nTransfer-Encoding: chunked\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", a.server.port), timeout=API_BOUND_S) as sock:
        sock.sendall(head)
        with contextlib.suppress(OSError):
            for i in range(0, len(body), 65536):
                piece = body[i:i + 65536]
                sock.sendall(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                if select.select([sock], [], [], 0)[0]:
                    break
            sock.sendall(b"0\r\n\r\n")
        return raw_answer(sock)


def stalled_and_one_through(a: ApiCases, ctx: Ctx) -> Verdict:
    """queue_size connections that send their headers only, one that stops after 1000 bytes of body; a normal
    upload meanwhile is accepted, and every stalled one gets 408."""
    body = multipart(ctx.bench.media["face"].read_bytes())
    socks = [socket.create_connection(("127.0.0.1", a.server.port), timeout=API_BOUND_S)
             for _ in range(ApiCases.QUEUE + 1)]
    for i, sock in enumerate(socks):
        sock.sendall(head_bytes(len(body)) + (body[:1000] if i == 0 else b""))
    status, _, data = request(a.server.port, "POST", "/v1/analyses?max_samples=2", body, form())
    holes = json_error(status, data, (202,), None)
    statuses = []
    for sock in socks:
        with sock:
            try:
                got, answer = raw_answer(sock)
            except OSError as e:
                got, answer = 0, str(e).encode()
        statuses.append(got)
        holes += json_error(got, answer, (408,), "upload_timeout")
    holes += a.server.settle()
    return Verdict(f"{status}; stalled: {statuses}", holes, said(data))


def trickle(a: ApiCases, ctx: Ctx) -> Verdict:
    """100 bytes every 0.2 s (0.5 kB/s, the minimum is 20 kB/s after 2 s): 408."""
    body = multipart(ctx.bench.media["face"].read_bytes())
    with socket.create_connection(("127.0.0.1", a.server.port), timeout=API_BOUND_S) as sock:
        sock.sendall(head_bytes(len(body)))
        start = time.monotonic()
        with contextlib.suppress(OSError):
            for i in range(0, len(body), 100):
                sock.sendall(body[i:i + 100])
                time.sleep(0.2)
                if select.select([sock], [], [], 0)[0] or time.monotonic() - start > API_BOUND_S:
                    break
        try:
            status, answer = raw_answer(sock)
        except OSError as e:
            status, answer = 0, str(e).encode()
    holes = json_error(status, answer, (408,), "upload_timeout") + a.server.settle()
    return Verdict(str(status), holes, said(answer))


def stalled_json(a: ApiCases, ctx: Ctx) -> Verdict:
    status, answer = raw_post(a, head_bytes(40, "application/json") + b'{"path": "cl')
    return Verdict(str(status), json_error(status, answer, (408,), "upload_timeout") + a.server.settle(),
                   said(answer))


SLOW_CLIENTS = [
    ("stalled uploads hold no queue place", f"{ApiCases.QUEUE + 1} connections stall (headers only, or 1000 bytes "
     "of body) while a normal upload is sent", "202 for the normal one, 408 upload_timeout for each stalled one",
     stalled_and_one_through),
    ("trickling body", "100 bytes every 0.2 s", "HTTP 408 upload_timeout", trickle),
    ("stalled JSON body", "JSON body stops after 12 of 40 bytes", "HTTP 408 upload_timeout", stalled_json),
]


def queue_full(a: ApiCases, ctx: Ctx) -> tuple[int, bytes]:
    name = a.long_clip()
    answers = [request(a.server.port, "POST", "/v1/analyses?max_samples=20&frame_skip=1",
                       json.dumps({"path": name}).encode(), auth(**{"Content-Type": "application/json"}))
               for _ in range(ApiCases.QUEUE + 2)]
    refused = [(status, body) for status, headers, body in answers if status == 429 and "retry-after" in
               {k.lower() for k in headers}]
    for status, _, body in answers:
        if status == 202:
            request(a.server.port, "DELETE", f"/v1/analyses/{json.loads(body)['id']}", headers=auth())
    return refused[0] if refused else (answers[-1][0], answers[-1][2])


def delete_running(a: ApiCases, ctx: Ctx) -> tuple[int, bytes]:
    status, _, body = request(a.server.port, "POST", "/v1/analyses?max_samples=40&frame_skip=1",
                              multipart(ctx.bench.media["face"].read_bytes()), form())
    if status != 202:
        return status, body
    job = json.loads(body)["id"]
    deadline = time.monotonic() + API_BOUND_S
    while json.loads(request(a.server.port, "GET", f"/v1/analyses/{job}", headers=auth())[2])["status"] == "queued":
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    status, _, body = request(a.server.port, "DELETE", f"/v1/analyses/{job}", headers=auth())
    return status, body


def gone_mid_upload(a: ApiCases, ctx: Ctx) -> tuple[int, bytes]:
    body = multipart(ctx.bench.media["face"].read_bytes())
    with socket.create_connection(("127.0.0.1", a.server.port), timeout=API_BOUND_S) as sock:
        sock.sendall(head_bytes(len(body)) + body[: len(body) // 2])
        time.sleep(0.5)
    time.sleep(1.0)
    return 0, b""


# -- class 5: network -----------------------------------------------------------------------------------------------
LOOPBACK = re.compile(r'inet_addr\("(127\.[\d.]+|0\.0\.0\.0)"\)|inet_pton\(AF_INET6, "(::1|::|::ffff:127\.[\d.]+)"')


def connects(log: Path) -> tuple[int, list[str]]:
    """(connect() calls, the ones to somewhere other than loopback/AF_UNIX/netlink, or to a DNS port)."""
    calls = [line for line in log.read_text().splitlines() if "connect(" in line]
    off = [line.strip()[:160] for line in calls
           if ("AF_INET" in line and not LOOPBACK.search(line)) or "htons(53)" in line]
    return len(calls), off


def strace_prefix(log: Path) -> tuple:
    return ("strace", "-f", "-qq", "-e", "trace=connect", "-o", str(log))


def network_cases() -> list[Case]:
    cases = []

    def traced(name: str, provoke: str, argv: Callable[[Ctx], list], fresh_cache: bool = False) -> Case:
        def go(ctx: Ctx) -> Verdict:
            if shutil.which("strace") is None:
                return Verdict("skipped", ["not run: strace is not installed"])
            log = ctx.dir / "strace.log"
            env = ctx.env(**({"DEEPFAKE_OPENVINO_CACHE": str(ctx.dir / "ov")} if fresh_cache else {}))
            env.pop("CI", None)  # OpenVINO's telemetry skips CI machines: test what a user's machine does
            proc = run(ctx, argv(ctx), env=env, prefix=strace_prefix(log), bound=BOUND_S * 2)
            holes = judge(proc, (0,), None, BOUND_S * 2)
            count, off = connects(log) if log.is_file() else (0, ["no strace log"])
            holes += [f"connect() off this machine: {line}" for line in off]
            return Verdict(f"{proc.code}; {count} connect()", holes, proc.said)

        return Case("network", name, provoke, "exit 0; no connect() but loopback or AF_UNIX", go)

    def run_analyze(runtime: str, key: str = "face") -> Callable[[Ctx], list]:
        return lambda ctx: ["analyze", "--device", "cpu", "--runtime", runtime, "--max-samples", "3", "--quiet",
                            "--models-dir", ctx.bench.models, ctx.bench.media[key]]

    cases.append(traced("analyze --runtime torch", "strace -f -e connect analyze", run_analyze("torch")))
    cases.append(traced("analyze --runtime openvino, fresh cache", "... converting the networks afresh",
                        run_analyze("openvino"), fresh_cache=True))
    cases.append(traced("analyze --runtime openvino, cached", "... from the OpenVINO cache", run_analyze("openvino")))
    cases.append(traced("analyze --runtime auto", "strace -f -e connect analyze --runtime auto", run_analyze("auto"),
                        fresh_cache=True))
    cases.append(traced("analyze an audio file (auto)", "strace analyze voice.m4a", run_analyze("auto", "m4a")))
    cases.append(traced("scan (auto)", "strace scan over 2 clips",
                        lambda ctx: ["scan", clip_folder(ctx, 2), "--out", ctx.dir / "r.csv", "--models-dir",
                                     ctx.bench.models, "--device", "cpu", "--max-samples", "3", "--quiet"]))
    cases.append(Case("network", "api server, one upload", "strace -f the api server through one upload",
                      "no connect() but loopback or AF_UNIX", traced_api))
    return cases


def traced_api(ctx: Ctx) -> Verdict:
    if shutil.which("strace") is None:
        return Verdict("skipped", ["not run: strace is not installed"])
    log = ctx.dir / "strace.log"
    server = Server(ctx, prefix=strace_prefix(log))
    try:
        status, _, body = request(server.port, "POST", "/v1/analyses?max_samples=2&wait=true",
                                  multipart(ctx.bench.media["face"].read_bytes()), form())
        holes = json_error(status, body, (200,), None)
    finally:
        code = server.stop()
    count, off = connects(log)
    holes += [f"connect() off this machine: {line}" for line in off]
    holes += [] if code == 0 else [f"server exit code {code} after SIGINT"]
    return Verdict(f"{status}; {count} connect()", holes, "")


# -- the battery -----------------------------------------------------------------------------------------------------
class Bench:
    def __init__(self, root: Path):
        self.root = root
        self.media = make_media(root / "media")
        self.models = root / "models"
        self.models.mkdir()
        for name in FACE_FILES:
            shutil.copy(SHARED / "models" / name, self.models / name)
        self.ov_cache = root / "ov-cache"

    def run(self, number: int, case: Case) -> Outcome:
        ctx = Ctx(self, self.root / f"c{number:03d}" / "in", self.root / f"c{number:03d}" / "t")
        ctx.dir.mkdir(parents=True)
        ctx.tmp.mkdir()
        start = time.monotonic()
        try:
            verdict = case.run(ctx)
        except Exception as e:  # the battery's own failure on this case: reported, never hidden
            verdict = Verdict("battery error", [f"the battery failed on this case: {type(e).__name__}: {e}"])
        finally:
            if ctx.lock is not None:
                ctx.lock.close()
        holes = verdict.holes + (leftovers(ctx) if case.name != "server starts" else [])
        outcome = Outcome(case.klass, case.name, case.provoke, case.expected, verdict.got,
                          round(time.monotonic() - start, 2), holes, verdict.said)
        print(f"{'ok  ' if outcome.clear else 'HOLE'} {outcome.seconds:6.1f}s {case.klass:8s} {case.name}: "
              f"{outcome.got}" + ("" if outcome.clear else f" -- {'; '.join(holes)}"), file=sys.stderr, flush=True)
        return outcome

    def run_all(self, cases: list[Case], jobs: int) -> list[Outcome]:
        """The cases, `jobs` at a time where nothing depends on timing; the rest alone, in order."""
        from concurrent.futures import ThreadPoolExecutor

        together = [i for i, c in enumerate(cases) if not c.serial and c.klass in ("files", "models", "scan")]
        with ThreadPoolExecutor(jobs) as pool:
            done = dict(zip(together, pool.map(lambda i: self.run(i, cases[i]), together), strict=True))
        for i, case in enumerate(cases):
            if i not in done:
                done[i] = self.run(i, case)
        return [done[i] for i in range(len(cases))]


def choose(cases: list[Case], only: list[str] | None, match: str | None) -> list[Case]:
    chosen = [c for c in cases if (not only or c.klass in only) and (not match or match.lower() in c.name.lower())]
    api = [c for c in cases if c.klass == "api"]
    if api and any(c.klass == "api" for c in chosen):  # the API cases need their server: started first, stopped last
        middle = [c for c in chosen if c.klass == "api" and c not in (api[0], api[-1])]
        chosen = [c for c in chosen if c.klass != "api"] + [api[0], *middle, api[-1]]
    return chosen


def all_cases(ray: bool) -> list[Case]:
    return file_cases() + model_cases() + scan_cases(ray) + api_cases() + network_cases()


def table(outcomes: list[Outcome]) -> str:
    lines = ["| class | what | cases | clear outcomes | holes |", "| --- | --- | --- | --- | --- |"]
    for klass, what in CLASSES.items():
        mine = [o for o in outcomes if o.klass == klass]
        if mine:
            clear = sum(o.clear for o in mine)
            lines.append(f"| {klass} | {what} | {len(mine)} | {clear} | {len(mine) - clear} |")
    clear = sum(o.clear for o in outcomes)
    lines.append(f"| **all** | | **{len(outcomes)}** | **{clear}** | **{len(outcomes) - clear}** |")
    holes = [o for o in outcomes if not o.clear]
    if holes:
        lines += ["", "Holes:", ""]
        lines += [f"- **{o.klass} / {o.name}** ({o.provoke}; expected {o.expected}; got {o.got}): "
                  f"{'; '.join(o.holes)}" for o in holes]
    return "\n".join(lines)


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return f"{cpu}, {os.cpu_count()} CPUs, Python {platform.python_version()}, {platform.platform()}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", nargs="+", choices=list(CLASSES), help="run these classes only")
    p.add_argument("--match", help="run only the cases whose name contains this text")
    p.add_argument("--no-ray", action="store_true", help="leave out the cases that start a local Ray")
    p.add_argument("--json", default="hostile.json", help="per-case results (default: hostile.json)")
    p.add_argument("--keep", action="store_true", help="keep the generated folder (its path is printed)")
    p.add_argument("--jobs", type=int, default=2, help="cases run at once where timing does not matter (default: 2)")
    args = p.parse_args(argv)
    # A background job of a non-interactive shell starts with SIGINT ignored, and the cases' children would
    # inherit that (Ctrl-C cases then run to the end): a handler of our own is reset to the default on exec.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    root = Path(tempfile.mkdtemp(prefix="hostile-"))
    started = datetime.datetime.now(datetime.timezone.utc)
    try:
        outcomes = Bench(root).run_all(choose(all_cases(not args.no_ray), args.only, args.match), args.jobs)
    finally:
        if args.keep:
            print(f"kept {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)
    ended = datetime.datetime.now(datetime.timezone.utc)
    print(f"{started:%Y-%m-%d %H:%M}-{ended:%H:%M} UTC, {(ended - started).total_seconds() / 60:.1f} min; "
          f"{machine()}\n")
    print(table(outcomes))
    Path(args.json).write_text(json.dumps({"started": started.isoformat(), "ended": ended.isoformat(),
                                           "machine": machine(), "cases": [dataclasses.asdict(o) | {"clear": o.clear}
                                                                           for o in outcomes]}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
