"""Is a media file cut off? MP4/MOV and Matroska/WebM files state their sizes: ISO BMFF top-level boxes carry
their length, a Matroska Segment its length (when the muxer knew it). A file shorter than what it declares lost
its end in transit; the decoder would read what is left (a faststart MP4 still plays) and report on part of the
video, so the API refuses it. Reads a few header bytes per box, never the media data.
"""

from __future__ import annotations

import struct
from pathlib import Path

from ..errors import TruncatedMedia

MP4_TOP_BOXES = {b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"uuid", b"moof", b"mfra", b"meta", b"pdin",
                 b"styp", b"sidx", b"prft", b"emsg", b"pnot", b"junk"}
EBML_MAGIC = b"\x1a\x45\xdf\xa3"
MATROSKA_SEGMENT = 0x18538067


def check_complete(path: str | Path) -> None:
    """Raise TruncatedMedia when `path` is an MP4/MOV or Matroska/WebM file missing bytes its structure declares;
    other files, and files whose structure does not say, pass."""
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(16)
        size = path.stat().st_size
        if head[:4] == EBML_MAGIC:
            missing = _matroska_missing(f, size)
        elif head[4:8] in MP4_TOP_BOXES:
            missing = _mp4_missing(f, size)
        else:
            return
    if missing:
        raise TruncatedMedia(f"{path.name!r} is cut off: {missing[1]:,} bytes of its {missing[0]} are missing (the "
                             f"file has {size:,} bytes); send the whole file")


def _mp4_missing(f, size: int) -> tuple[str, int] | None:
    """(box, bytes missing) for the first top-level box running past the end of the file."""
    offset = 0
    while offset + 8 <= size:
        f.seek(offset)
        length, kind = struct.unpack(">I4s", f.read(8))
        if length == 1:  # a 64-bit size follows the type
            extended = f.read(8)
            if len(extended) < 8:
                return f"'{kind.decode('latin-1')}' box", 8
            length = struct.unpack(">Q", extended)[0]
        elif length == 0:  # "to the end of the file"
            return None
        if length < 8:
            return None  # not a box structure we can follow: leave it to the decoder
        if offset + length > size:
            return f"'{kind.decode('latin-1')}' box", offset + length - size
        offset += length
    return None


def _vint(f) -> tuple[int, int, bool] | None:
    """An EBML variable-length integer: (value without its marker, width in bytes, all value bits set)."""
    first = f.read(1)
    if not first or first[0] == 0:
        return None
    width = 8 - first[0].bit_length() + 1
    rest = f.read(width - 1)
    if len(rest) < width - 1:
        return None
    value = first[0] & (0xFF >> width)
    for byte in rest:
        value = (value << 8) | byte
    return value, width, value == (1 << (7 * width)) - 1


def _matroska_missing(f, size: int) -> tuple[str, int] | None:
    """(element, bytes missing) when the Segment's declared size runs past the end of the file."""
    f.seek(4)
    header = _vint(f)
    if header is None:
        return "EBML header", 1
    f.seek(header[0], 1)
    element = f.read(4)
    if len(element) < 4:
        return "EBML header", 4 - len(element)
    if int.from_bytes(element, "big") != MATROSKA_SEGMENT:
        return None
    segment = _vint(f)
    if segment is None:
        return "Segment", 1
    length, _, unknown = segment
    if unknown:  # a live-streamed file: its length is not stated
        return None
    end = f.tell() + length
    return ("Segment", end - size) if end > size else None
