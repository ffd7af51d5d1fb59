"""Labelled media: finding the files of a dataset and their labels, in the layouts the commands accept.

- a CSV (or TSV) manifest: columns `path`, `label` (real/fake), optional `audio_label`, `video_label`,
  `identity`; paths relative to the manifest's folder; every other column is kept as `extra`;
- a folder with `real/` and `fake/` sub-folders (walked recursively);
- FakeAVCeleb v1.2: the folders RealVideo-RealAudio, FakeVideo-RealAudio, RealVideo-FakeAudio,
  FakeVideo-FakeAudio, with `meta_data.csv` when present (its `source` column is the identity). The video
  label is fake when the video track is fake, the audio label fake when the audio track is fake.
"""

from __future__ import annotations

import csv
import hashlib
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError
from ..media.files import AUDIO_EXTENSIONS, IMAGE_EXTENSIONS, VIDEO_EXTENSIONS

REAL, FAKE = "real", "fake"
LABELS = (REAL, FAKE)
MEDIA_EXTENSIONS = VIDEO_EXTENSIONS | AUDIO_EXTENSIONS | IMAGE_EXTENSIONS  # labelled media: face crops too
FAKEAVCELEB_TYPES = {  # folder -> (video label, audio label)
    "RealVideo-RealAudio": (REAL, REAL),
    "FakeVideo-RealAudio": (FAKE, REAL),
    "RealVideo-FakeAudio": (REAL, FAKE),
    "FakeVideo-FakeAudio": (FAKE, FAKE),
}
FAKEAVCELEB_META = "meta_data.csv"


@dataclass(frozen=True)
class LabelledMedia:
    path: Path
    video_label: str  # label of the face track: "real" or "fake"
    audio_label: str  # label of the voice track
    identity: str | None = None  # the person, when known (splits keep each person on one side)
    extra: dict = field(default_factory=dict, compare=False)  # other manifest columns (generator, method, ...)

    @property
    def label(self) -> str:
        """The file's label: fake when either track is fake."""
        return FAKE if FAKE in (self.video_label, self.audio_label) else REAL

    @property
    def key(self) -> str:
        """A stable, file-system-safe id: the file's stem and a hash of its full path."""
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", self.path.stem)[:40]
        return f"{stem}-{hashlib.sha1(str(self.path).encode()).hexdigest()[:10]}"


def parse_label(value: str, where: str) -> str:
    label = str(value).strip().lower()
    if label not in LABELS:
        raise InputError(f"{where}: label must be 'real' or 'fake'; got {value!r}")
    return label


def read_labels(source: str | os.PathLike, default_label: str | None = None,
                only: Iterable[tuple[str, str]] = ()) -> list[LabelledMedia]:
    """The labelled files of `source` (a manifest file or a folder in one of the layouts above), sorted by
    path. `default_label` labels manifest rows without a label column; `only` keeps the rows whose extra
    column equals the value (e.g. [("kind", "video")]). Raises InputError naming what is wrong."""
    source = Path(source)
    if source.is_file():
        items = read_manifest(source, default_label)
    elif source.is_dir():
        if is_fakeavceleb(source):
            items = read_fakeavceleb(source)
        elif (source / REAL).is_dir() or (source / FAKE).is_dir():
            items = read_folders(source)
        else:
            raise InputError(
                f"{source} is not a dataset layout this command reads: expected real/ and fake/ folders, the "
                f"FakeAVCeleb folders ({', '.join(FAKEAVCELEB_TYPES)}), or a CSV manifest (path,label)")
    else:
        raise InputError(f"no such file or folder: {source}")
    for column, value in only:
        items = [m for m in items if _column(m, column) == value]
    if not items:
        raise InputError(f"no labelled media found in {source}" + (f" matching {dict(only)}" if only else ""))
    return sorted(items, key=lambda m: str(m.path))


def _column(media: LabelledMedia, column: str) -> str | None:
    if column in ("label", "video_label", "audio_label", "identity"):
        return getattr(media, column)
    value = media.extra.get(column)
    return None if value is None else str(value)


def read_manifest(path: Path, default_label: str | None = None) -> list[LabelledMedia]:
    delimiter = "\t" if path.suffix.lower() in (".tsv", ".tab") else ","
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.DictReader(f, delimiter=delimiter))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise InputError(f"cannot read the manifest {path}: {e}") from e
    if not rows:
        raise InputError(f"the manifest {path} has no rows")
    columns = set(rows[0])
    if "path" not in columns:
        raise InputError(f"the manifest {path} needs a 'path' column; it has {sorted(columns)}")
    if "label" not in columns and "video_label" not in columns and default_label is None:
        raise InputError(f"the manifest {path} needs a 'label' column (real or fake), or pass a default label")
    base = path.parent
    known = {"path", "label", "video_label", "audio_label", "identity"}
    items = []
    for n, row in enumerate(rows, start=2):
        where = f"{path.name} line {n}"
        if not row.get("path"):
            raise InputError(f"{where}: empty path")
        label = row.get("label") or default_label
        video = parse_label(row.get("video_label") or label, where)
        audio = parse_label(row.get("audio_label") or label or video, where)
        file = Path(row["path"])
        items.append(LabelledMedia(
            path=file if file.is_absolute() else base / file, video_label=video, audio_label=audio,
            identity=(row.get("identity") or None),
            extra={k: v for k, v in row.items() if k not in known and k is not None}))
    return items


def read_folders(root: Path) -> list[LabelledMedia]:
    items = []
    for label in LABELS:
        for file in _walk_media(root / label):
            items.append(LabelledMedia(file, label, label))
    return items


def is_fakeavceleb(root: Path) -> bool:
    return (root / FAKEAVCELEB_META).is_file() or any((root / name).is_dir() for name in FAKEAVCELEB_TYPES)


def read_fakeavceleb(root: Path) -> list[LabelledMedia]:
    """FakeAVCeleb v1.2. meta_data.csv rows are `source,target1,target2,method,category,type,race,gender,
    <file name>,<folder>` (the header names the file-name column `path` and leaves the folder column
    unnamed); without meta_data.csv the folders are walked and the identity is the `idNNNNN` folder."""
    meta = root / FAKEAVCELEB_META
    if not meta.is_file():
        items = []
        for kind, (video, audio) in FAKEAVCELEB_TYPES.items():
            for file in _walk_media(root / kind):
                ident = next((p for p in reversed(file.relative_to(root).parts[:-1]) if re.fullmatch(r"id\d+", p)),
                             None)
                items.append(LabelledMedia(file, video, audio, ident, {"type": kind}))
        return items
    items = []
    with open(meta, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = [h.strip() for h in next(reader, [])]
        for n, row in enumerate(reader, start=2):
            if not row or not any(cell.strip() for cell in row):
                continue
            if len(row) < 9:
                raise InputError(f"{meta.name} line {n}: expected at least 9 columns, got {len(row)}")
            kind = row[5].strip()
            if kind not in FAKEAVCELEB_TYPES:
                raise InputError(f"{meta.name} line {n}: unknown type {kind!r} (expected one of "
                                 f"{', '.join(FAKEAVCELEB_TYPES)})")
            file = _fakeavceleb_path(root, row, kind)
            video, audio = FAKEAVCELEB_TYPES[kind]
            extra = {name: row[i].strip() for i, name in enumerate(header[:8]) if name and i < len(row)}
            items.append(LabelledMedia(file, video, audio, row[0].strip() or None, extra))
    return items


def _fakeavceleb_path(root: Path, row: list[str], kind: str) -> Path:
    name = row[8].strip()
    folder = row[9].strip() if len(row) > 9 else ""
    if folder:
        parts = Path(folder.replace("\\", "/")).parts
        if kind in parts:  # "FakeAVCeleb/<type>/<race>/<gender>/<id>": keep from the type folder on
            return root.joinpath(*parts[parts.index(kind):], name)
        return root / folder / name
    race, gender, source = row[6].strip(), row[7].strip(), row[0].strip()
    return root / kind / race / gender / source / name


def _walk_media(folder: Path):
    if not folder.is_dir():
        return
    for base, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            if Path(name).suffix.lower() in MEDIA_EXTENSIONS:
                yield Path(base) / name
