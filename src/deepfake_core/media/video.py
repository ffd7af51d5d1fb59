"""Probing media files and decoding the sampled video frames (PyAV, in-process FFmpeg)."""

from __future__ import annotations

import bisect
import errno
import itertools
import math
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import av
import numpy as np

from ..errors import MediaTooLarge, NoVideoStream, UnreadableMedia
from ..settings import AnalysisSettings

# Demuxers that hold a single picture rather than a video.
_IMAGE_FORMATS = {"image2", "image2pipe"}
# frames: when samples are further apart than this, read_frames seeks to the keyframe before a sample
# whenever that skips decoding at least this many frames (a seek restarts the decoder, which costs a few frames)
SEEK_MIN_SKIP = 48


@dataclass(frozen=True)
class MediaInfo:
    path: str
    container: str
    size_bytes: int
    duration_s: float
    fps: float
    frame_count: int  # from the stream header, else estimated as duration x fps
    width: int  # as displayed, i.e. after rotation
    height: int
    rotation: int  # degrees clockwise applied to decoded frames (0, 90, 180, 270)
    video_codec: str | None
    has_audio: bool
    audio_codec: str | None
    audio_sample_rate: int | None
    is_still_image: bool
    audio_duration_s: float | None = None  # the audio stream's declared duration (None: not declared)
    frames_counted: bool = False  # frame_count was counted from the packets (the header had none)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class SampledFrame:
    index: int  # frame number in presentation order, from 0
    time_s: float  # presentation time from the frame's pts, relative to the stream start
    image: np.ndarray  # (H, W, 3) uint8 BGR, rotation applied


@dataclass
class DecodeStats:
    frames_decoded: int = 0  # frames that came out of the decoder
    frames_converted: int = 0  # frames turned into image arrays (the sampled ones)
    error: str | None = None  # why decoding stopped early, if it did
    last_time_s: float = 0.0
    max_pixels: int | None = None  # every decoded frame is checked against it (MediaTooLarge)

    def decoded(self, frame: av.VideoFrame, path) -> None:
        """Count a frame out of the decoder, and check its size."""
        self.frames_decoded += 1
        if self.max_pixels is not None:
            check_pixels(frame.width, frame.height, self.max_pixels, Path(path).name, decoded=True)


def _open(path: str | os.PathLike) -> av.container.InputContainer:
    try:
        return av.open(str(path), mode="r", metadata_errors="ignore")
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as e:
        raise UnreadableMedia(f"cannot read {Path(path).name!r} as a video: {_ffmpeg_reason(e)}") from e


def _ffmpeg_reason(e: Exception) -> str:
    return getattr(e, "strerror", None) or str(e) or type(e).__name__


def check_file(path: str | os.PathLike, settings: AnalysisSettings) -> int:
    """Check that `path` is a non-empty regular file within the size limit; return its size in bytes."""
    p = Path(path)
    check_exists(p)
    if not p.is_file():
        raise UnreadableMedia(f"not a regular file: {p}")
    size = p.stat().st_size
    if size == 0:
        raise UnreadableMedia(f"{p.name!r} is empty (0 bytes)")
    limit = settings.max_file_mb * 1024 * 1024
    if size > limit:
        raise MediaTooLarge(
            f"{p.name!r} is {size / 2**20:.0f} MB, over the {settings.max_file_mb:.0f} MB limit "
            f"(raise max_file_mb to analyse it)"
        )
    return size


def check_exists(path: str | os.PathLike) -> None:
    """Raise UnreadableMedia unless `path` exists, naming a symlink loop or a dangling link as such."""
    p = Path(path)
    try:
        os.stat(p)
        return
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise UnreadableMedia(f"{p} is a symbolic link loop ({link_chain(p)}): link it to the real file") from e
        if os.path.islink(p):
            raise UnreadableMedia(f"{p} is a symbolic link to {os.readlink(p)}, which does not exist") from e
        if e.errno in (errno.ENOENT, errno.ENOTDIR):
            raise UnreadableMedia(f"no such file: {p}") from e
        raise UnreadableMedia(f"cannot read {p}: {e.strerror or e}") from e


def link_chain(path: Path, limit: int = 40) -> str:
    """The links `path` passes through until one repeats: "a -> b -> a" (a link to itself: "a -> a")."""
    chain, seen, current = [str(path)], set(), path
    while len(chain) <= limit:
        try:
            target = os.readlink(current)
        except OSError:  # not a link: the loop is in a folder on its way
            return " -> ".join(chain) + " (a folder on its way loops)"
        current = current.parent / target
        key = os.path.normpath(os.path.abspath(current))
        chain.append(target)
        if key in seen or key == os.path.normpath(os.path.abspath(path)):
            return " -> ".join(chain)
        seen.add(key)
    return " -> ".join(chain[:3]) + f" -> ... (more than {limit} links)"


def check_pixels(width: int, height: int, settings_or_limit, name: str, decoded: bool = False) -> None:
    """MediaTooLarge when a frame of width x height is over the pixel limit."""
    limit = getattr(settings_or_limit, "max_frame_pixels", settings_or_limit)
    if limit is not None and width * height > limit:
        raise MediaTooLarge(
            f"{name!r} has {width}x{height} frames{' (decoded; its header says smaller)' if decoded else ''}, "
            f"over the limit of {limit:,} pixels per frame")


def probe(path: str | os.PathLike, settings: AnalysisSettings | None = None) -> MediaInfo:
    """Read a file's streams and check them against the limits in `settings`.

    Raises UnreadableMedia (not media, corrupt), NoVideoStream (audio only) or MediaTooLarge.
    """
    settings = settings or AnalysisSettings()
    size = check_file(path, settings)
    with _open(path) as container:
        audio = container.streams.audio[0] if container.streams.audio else None
        name = Path(path).name
        audio_duration = _duration_s(container, audio, container_fallback=False) if audio is not None else None
        if not container.streams.video:
            declared = _duration_s(container, audio) if audio is not None else 0.0
            if declared > settings.max_duration_s:
                raise MediaTooLarge(f"{name!r} declares {declared:.0f} s of audio, over the "
                                    f"{settings.max_duration_s:.0f} s limit (raise max_duration_s to analyse it)")
            raise NoVideoStream(
                f"{name!r} has no video stream"
                + (" (it is an audio-only file)" if audio is not None else "")
            )
        stream = container.streams.video[0]
        ctx = stream.codec_context
        width, height = int(ctx.width or 0), int(ctx.height or 0)
        if width <= 0 or height <= 0:
            raise UnreadableMedia(f"{name!r}: the video stream has no frame size")
        check_pixels(width, height, settings, name)
        fps = float(stream.average_rate or stream.guessed_rate or stream.base_rate or 0.0)
        duration = _duration_s(container, stream)
        if duration > settings.max_duration_s:
            raise MediaTooLarge(
                f"{name!r} lasts {duration:.0f} s, over the {settings.max_duration_s:.0f} s limit"
            )
        frames = int(stream.frames or 0)
        counted = False
        if frames <= 0 and duration > 0 and fps > 0:
            frames = max(1, int(round(duration * fps)))
        is_still = container.format.name in _IMAGE_FORMATS or container.format.name.endswith("_pipe")
        if frames <= 0 and not is_still:
            # a raw elementary stream (H.264, HEVC, ...) declares neither: count its packets (no decoding)
            frames, counted = _count_packets(path), True
            if fps > 0:
                duration = frames / fps
                if duration > settings.max_duration_s:
                    raise MediaTooLarge(f"{name!r} lasts {duration:.0f} s ({frames} frames at {fps:g} fps), "
                                        f"over the {settings.max_duration_s:.0f} s limit")
        rotation = _first_frame_rotation(container, stream, settings, name)
        if rotation in (90, 270):
            width, height = height, width
        return MediaInfo(
            path=str(path),
            container=container.format.name,
            size_bytes=size,
            duration_s=duration,
            fps=fps,
            frame_count=frames,
            width=width,
            height=height,
            rotation=rotation,
            video_codec=ctx.name,
            has_audio=audio is not None,
            audio_codec=audio.codec_context.name if audio is not None else None,
            audio_sample_rate=int(audio.codec_context.sample_rate or 0) if audio is not None else None,
            is_still_image=is_still or frames == 1,
            audio_duration_s=audio_duration,
            frames_counted=counted,
        )


def _count_packets(path) -> int:
    """Video packets with data in the file (one per frame for the raw streams that need counting)."""
    try:
        with _open(path) as container:
            return sum(1 for p in container.demux(container.streams.video[0]) if p.size)
    except av.error.FFmpegError:
        return 0


def _duration_s(container, stream, container_fallback: bool = True) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if not container_fallback:
        return None
    if container.duration is not None:
        return container.duration / 1_000_000
    return 0.0


def _first_frame_rotation(container, stream, settings: AnalysisSettings, name: str) -> int:
    """Rotation (clockwise degrees to apply) from the first frame's display matrix; 0 if unreadable."""
    try:
        for frame in container.decode(stream):
            check_pixels(frame.width, frame.height, settings, name, decoded=True)
            return _clockwise(frame)
    except av.error.FFmpegError:
        return 0
    return 0


def _clockwise(frame: av.VideoFrame) -> int:
    # PyAV reports the display matrix angle counter-clockwise; FFmpeg's autorotate turns the
    # picture clockwise by the opposite angle.
    return int(round(-float(frame.rotation or 0))) % 360


def apply_rotation(image: np.ndarray, clockwise_degrees: int) -> np.ndarray:
    """Rotate an (H, W, C) image clockwise by a multiple of 90 degrees."""
    k = (clockwise_degrees // 90) % 4
    return np.ascontiguousarray(np.rot90(image, k=-k)) if k else image


def sample_indices(frame_count: int, frame_skip: int = 5, max_samples: int = 60) -> list[int]:
    """Frame numbers to analyse: every `frame_skip`-th frame, at most `max_samples` of them,
    spread over the whole video (a wider stride when there would be more)."""
    if frame_count <= 0:
        return []
    every = list(range(0, frame_count, frame_skip))
    if len(every) <= max_samples:
        return every
    stride = frame_count / max_samples
    return sorted({min(frame_count - 1, int(math.floor(i * stride))) for i in range(max_samples)})


def read_frames(
    path: str | os.PathLike,
    indices: list[int],
    stats: DecodeStats | None = None,
    seek: bool = True,
    max_pixels: int | None = None,
) -> Iterator[SampledFrame]:
    """Decode `path` and yield the frames whose numbers are in `indices` (BGR), in order.

    Frames not in `indices` are decoded only as far as the codec needs them and never converted to arrays.
    When the samples are far apart (a long video: see SEEK_MIN_SKIP) and `seek`, the packets are listed first
    (no decoding) to learn every frame's number and the keyframes, and decoding jumps to the keyframe before a
    sample instead of decoding everything in between; the frames yielded are the same.
    A decode error after the first frame ends the iteration and is recorded in `stats.error`;
    one before any frame raises UnreadableMedia. A decoded frame with more than `max_pixels` pixels (a stream
    whose frames outgrow its header) raises MediaTooLarge.
    """
    stats = stats if stats is not None else DecodeStats()
    stats.max_pixels = max_pixels
    wanted = sorted(set(indices))
    plan = None
    if seek and len(wanted) > 1 and max(b - a for a, b in zip(wanted, wanted[1:])) > SEEK_MIN_SKIP:
        plan = _frame_index(path)
    if plan is None:
        yield from _read_sequential(path, wanted, stats)
    else:
        yield from _read_seeking(path, wanted, plan, stats)
    if stats.frames_decoded == 0:
        raise UnreadableMedia(f"{Path(path).name!r} contains no decodable video frames")


def _read_sequential(path, wanted: list[int], stats: DecodeStats) -> Iterator[SampledFrame]:
    wanted_set = set(wanted)
    last = wanted[-1] if wanted else -1
    with _open(path) as container:
        stream = _video_stream(container, path)
        start, time_base = _time_origin(stream)
        position = 0
        try:
            for frame in container.decode(stream):
                stats.decoded(frame, path)
                t = (frame.pts - start) * time_base if frame.pts is not None and time_base else None
                if t is None:
                    t = position / float(stream.average_rate or 25)
                stats.last_time_s = max(stats.last_time_s, t)
                if position in wanted_set:
                    yield _sampled(frame, position, t, stats)
                position += 1
                if position > last:
                    break
        except av.error.FFmpegError as e:
            _decode_error(path, e, position, stats)


@dataclass(frozen=True)
class _FrameIndex:
    pts: list[int]  # every frame's pts in presentation order: frame n has pts[n]
    keyframes: list[int]  # frame numbers of the keyframes, ascending


def _frame_index(path) -> _FrameIndex | None:
    """Every frame's pts and the keyframes, from the packets alone (nothing decoded); None when a packet
    has no pts or the file cannot be read to the end (the caller then decodes front to back)."""
    try:
        with _open(path) as container:
            stream = _video_stream(container, path)
            packets = [(p.pts, p.is_keyframe) for p in container.demux(stream) if p.size]
    except (av.error.FFmpegError, UnreadableMedia, NoVideoStream):
        return None
    if not packets or any(pts is None for pts, _ in packets):
        return None
    pts = sorted(pts for pts, _ in packets)
    if len(set(pts)) != len(pts):
        return None
    rank = {p: n for n, p in enumerate(pts)}
    keyframes = sorted(rank[p] for p, key in packets if key)
    if not keyframes or keyframes[0] != 0:
        return None
    return _FrameIndex(pts, keyframes)


def _read_seeking(path, wanted: list[int], index: _FrameIndex, stats: DecodeStats) -> Iterator[SampledFrame]:
    with _open(path) as container:
        stream = _video_stream(container, path)
        start, time_base = _time_origin(stream)
        frames = None
        next_frame = 0  # the frame number the decoder will give next
        target = wanted[0]
        try:
            for target in (n for n in wanted if n < len(index.pts)):
                k = bisect.bisect_right(index.keyframes, target) - 1
                if frames is None or index.keyframes[k] - next_frame >= SEEK_MIN_SKIP:
                    frames = _decode_from(container, stream, index, k, target)
                want = index.pts[target]
                for frame in frames:
                    stats.decoded(frame, path)
                    if frame.pts is None:
                        continue
                    t = (frame.pts - start) * time_base
                    stats.last_time_s = max(stats.last_time_s, t)
                    if frame.pts >= want:
                        yield _sampled(frame, target, t, stats)
                        next_frame = target + 1
                        break
                else:
                    return
        except av.error.FFmpegError as e:
            _decode_error(path, e, target, stats)


def _decode_from(container, stream, index: _FrameIndex, k: int, target: int):
    """A decoding iterator that starts at keyframe number k (or earlier) and reaches frame `target`."""
    if index.keyframes[k] == 0:
        container.seek(index.pts[0], stream=stream, backward=True)
        return container.decode(stream)
    for kk in range(k, -1, -1):  # a demuxer that lands after the keyframe: try the one before
        container.seek(index.pts[index.keyframes[kk]], stream=stream, backward=True)
        frames = container.decode(stream)
        first = next(frames, None)
        if first is None:
            return iter(())
        if first.pts is not None and first.pts <= index.pts[target]:
            return itertools.chain([first], frames)
    container.seek(index.pts[0], stream=stream, backward=True)
    return container.decode(stream)


def _video_stream(container, path):
    if not container.streams.video:
        raise NoVideoStream(f"{Path(path).name!r} has no video stream")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    return stream


def _time_origin(stream) -> tuple[int, float]:
    start = stream.start_time if stream.start_time is not None else 0
    time_base = float(stream.time_base) if stream.time_base is not None else 0.0
    return start, time_base


def _sampled(frame: av.VideoFrame, number: int, t: float, stats: DecodeStats) -> SampledFrame:
    image = frame.to_ndarray(format="bgr24")
    stats.frames_converted += 1
    return SampledFrame(number, max(0.0, float(t)), apply_rotation(image, _clockwise(frame)))


def _decode_error(path, e: Exception, position: int, stats: DecodeStats) -> None:
    if stats.frames_decoded == 0:
        raise UnreadableMedia(f"cannot decode {Path(path).name!r}: {_ffmpeg_reason(e)}") from e
    stats.error = f"decoding stopped at frame {position}: {_ffmpeg_reason(e)} (file truncated or corrupt?)"
