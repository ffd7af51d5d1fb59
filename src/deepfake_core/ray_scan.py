"""`scan` on a Ray cluster: `deepfake-detect scan PATH... --out FILE --ray [auto|ADDRESS]` and `scan_ray()`.

Ray Data reads the list of files (one block per file) and an actor pool of analysers runs them: each actor loads
the models once, then analyses one file per call, exactly as the local scan does (`cli/files.scan_record` makes the
rows of both). The driver writes each row as it arrives and flushes it, so the output file is the checkpoint:
a re-run with the same --out skips the files already in it.

A worker that dies (killed, out of memory, a crashing decoder) is restarted by Ray and its file is retried; a
ledger actor counts the attempts per file, and a file whose worker died `max_attempts` times is recorded as
failed (WorkerDied) instead of being retried for ever.

Inputs are local or shared (NFS) paths, which every worker must see at the same path, or URLs of a filesystem
pyarrow knows (s3://, gs://, hdfs://, file://) or fsspec does (with its package installed): the worker copies a
URL's file into a temporary folder, analyses it and removes it.

Ray is the optional `ray` extra; nothing here imports it before a scan starts.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import json
import logging
import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .errors import DeepfakeError, InputError, ModelFilesMissing, SettingsError, WeightsError

RAY_HINT = "pip install 'deepfake-detector[ray]'"
MAX_ATTEMPTS = 3  # analyses of one file whose worker died before it is recorded as failed
LEDGER_PREFIX = "deepfake-scan-ledger-"  # name of the attempts ledger actor (one per scan)
COPY_CHUNK = 1 << 20  # bytes per read when a worker copies a URL's file


class WorkerDied(DeepfakeError):
    """The worker analysing a file died `max_attempts` times; the file is recorded as failed."""


@dataclass(frozen=True)
class ScanSummary:
    out: Path  # the results file
    total: int  # input files found
    skipped: int  # already in the results file (resumed)
    analysed: int  # rows written by this run without an error
    errors: int  # rows written by this run with an error (broken files, workers that kept dying)
    retried: int = 0  # files analysed again after their worker died


# -- options ---------------------------------------------------------------------------------------------
def add_ray_options(p: argparse.ArgumentParser) -> None:
    """The --ray options of `scan` (they import nothing)."""
    g = p.add_argument_group("Ray cluster (needs the ray extra: " + RAY_HINT + ")")
    g.add_argument("--ray", nargs="?", const="auto", default=None, metavar="auto|ADDRESS",
                   help="analyse on Ray: auto (the cluster this machine belongs to, else a local Ray started for "
                        "the scan) or a cluster address (HOST:6379, ray://HOST:10001); re-running with the same "
                        "--out skips the files already in it")
    g.add_argument("--ray-workers", type=int, default=1, metavar="N",
                   help="analysers in the pool, each loading the models once (default: 1)")
    g.add_argument("--ray-gpus-per-worker", type=float, default=0.0, metavar="X",
                   help="GPUs each analyser reserves; 0 runs on CPUs (default: 0)")
    g.add_argument("--ray-cpus-per-worker", type=float, default=1.0, metavar="X",
                   help="CPUs each analyser reserves, and the threads its networks use (default: 1)")
    g.add_argument("--ray-max-attempts", type=int, default=MAX_ATTEMPTS, metavar="N",
                   help=f"analyses of a file whose worker died before it is recorded as failed "
                        f"(default: {MAX_ATTEMPTS})")


def cmd_scan_ray(args: argparse.Namespace) -> int:
    from .cli.common import EXIT_OK, detector_options, settings_from_args
    from .cli.options import given_values
    from .settings import AnalysisSettings

    settings_from_args(args)  # a bad option is named before Ray starts
    options = detector_options(args)
    if args.models_dir is None or Path(args.models_dir).is_dir():
        # A models folder this machine sees too (a shared one): a missing file is reported here, at once, before
        # Ray starts. A folder only the workers have (baked into their image) is checked by them.
        from .model_files import find_model_files

        files = find_model_files(options.models_dir, options.video_model, options.audio_model)
        if files.video_choice == "builtin" and not options.video_model:
            print(f"note: video judged by the built-in model: no original checkpoint is installed in "
                  f"{files.directory} (deepfake-detect weights pull installs it)", file=sys.stderr)
    summary = _scan(args.paths, Path(args.out), given_values(args, AnalysisSettings), options,
                    use_calibration=not args.no_calibration, address=args.ray,
                    workers=args.ray_workers, gpus_per_worker=args.ray_gpus_per_worker,
                    cpus_per_worker=args.ray_cpus_per_worker, max_attempts=args.ray_max_attempts,
                    quiet=args.quiet)
    print(f"{summary.total} files, {summary.skipped} already done, {summary.analysed} analysed, "
          f"{summary.errors} errors, {summary.retried} retried after a worker died -> {summary.out}",
          file=sys.stderr)
    return EXIT_OK


def scan_ray(paths: Iterable[str | os.PathLike], out: str | os.PathLike, settings=None, *,
             address: str | None = "auto", workers: int = 1, gpus_per_worker: float = 0.0,
             cpus_per_worker: float = 1.0, max_attempts: int = MAX_ATTEMPTS, models_dir: str | None = None,
             device: str = "auto", precision: str = "auto", video_model: str | None = None, compile: bool = False,
             calibration: bool = False, on_row: Callable[[dict], None] | None = None) -> ScanSummary:
    """Analyse video files and folders (walked) on Ray into `out` (.csv or .jsonl), resuming a previous run.

    `address`: "auto" (the Ray this process is connected to, else the cluster this machine belongs to, else a
    local Ray started for the scan and shut down after it) or a cluster address. `calibration`: apply the
    models folder's calibration.json to the temperatures and threshold, as the CLI does (default: `settings`
    as given, like `Detector.analyze`). `on_row`: called with each row as it is written.
    Raises InputError (bad --out, no inputs), SettingsError (Ray missing, bad option) and the errors of
    `Detector.load` (model files missing on the workers).
    """
    from .load import DetectorOptions

    options = DetectorOptions(models_dir=models_dir, device=device, precision=precision, video_model=video_model,
                              compile=compile)
    # the settings' fields that differ from the defaults count as given (Detector.resolve_settings)
    return _scan([str(p) for p in paths], Path(out), settings, options, use_calibration=calibration, address=address,
                 workers=workers, gpus_per_worker=gpus_per_worker, cpus_per_worker=cpus_per_worker,
                 max_attempts=max_attempts, quiet=True, on_row=on_row)


def import_ray():
    """The ray module with Ray Data, or a SettingsError naming the extra to install."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as e:
        raise SettingsError(f"--ray needs Ray with Ray Data, which is not installed ({e}): {RAY_HINT}") from None
    return ray


# -- inputs ----------------------------------------------------------------------------------------------
def is_url(name: str) -> bool:
    return "://" in name


def filesystem_for(url: str):
    """(a pyarrow filesystem, the path inside it) for a URL: pyarrow's own (s3, gs, hdfs, file), else fsspec's."""
    import pyarrow.fs as pafs

    try:
        return pafs.FileSystem.from_uri(url)
    except Exception as arrow_error:  # pyarrow.lib.ArrowInvalid for a scheme it does not know
        try:
            import fsspec
        except ImportError:
            raise InputError(f"cannot open {url}: {arrow_error}") from None
        fs, path = fsspec.core.url_to_fs(url)
        return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), path


def list_inputs(paths: Iterable[str]) -> list[tuple[str, str]]:
    """(the path as rows show it, what a worker opens) for each input file, folders walked and sorted like the
    local scan; a local path is opened by its absolute path, a URL as it is. Duplicates are dropped."""
    from .cli.files import VIDEO_EXTENSIONS, iter_videos

    found: dict[str, str] = {}
    for name in paths:
        if is_url(name):
            for url in _list_url(name, VIDEO_EXTENSIONS):
                found.setdefault(url, url)
        else:
            for p in iter_videos([name]):
                found.setdefault(str(p), os.path.abspath(p))
    return list(found.items())


def _list_url(url: str, extensions: set[str]) -> Iterator[str]:
    import pyarrow.fs as pafs

    fs, root = filesystem_for(url)
    if fs.get_file_info(root).type != pafs.FileType.Directory:
        yield url  # a file, or missing: its row records the error
        return
    scheme = url.split("://", 1)[0]
    infos = fs.get_file_info(pafs.FileSelector(root, recursive=True))
    for info in sorted(infos, key=lambda i: i.path):
        if info.type == pafs.FileType.File and Path(info.base_name).suffix.lower() in extensions:
            yield f"{scheme}://{info.path}" if scheme != "file" else f"file://{info.path}"


@contextlib.contextmanager
def local_copy(source: str) -> Iterator[Path]:
    """The file to analyse: a local path as it is, a URL copied (in chunks) into a temporary folder, under its
    own name so the report names it, and removed afterwards."""
    if not is_url(source):
        yield Path(source)
        return
    fs, path = filesystem_for(source)
    with tempfile.TemporaryDirectory(prefix="deepfake-scan-") as folder:
        local = Path(folder) / (source.rstrip("/").rsplit("/", 1)[-1] or "video")
        try:
            with fs.open_input_stream(path) as src, open(local, "wb") as dst:
                shutil.copyfileobj(src, dst, COPY_CHUNK)
        except (OSError, ValueError) as e:  # pyarrow raises FileNotFoundError, OSError, ArrowInvalid
            raise InputError(f"cannot read {source}: {e}") from None
        yield local


# -- results file ----------------------------------------------------------------------------------------
def check_out(out: Path) -> None:
    if out.suffix not in (".csv", ".jsonl"):
        raise InputError(f"--out must end in .csv or .jsonl; got {out.name}")


def read_done(out: Path) -> set[str]:
    """The paths already in a results file (error rows included). A last line cut short by a stopped run is
    removed, so that the file takes appended rows."""
    from .cli.files import SCAN_FIELDS

    if not out.is_file() or out.stat().st_size == 0:
        return set()
    data = out.read_bytes()
    if not data.endswith(b"\n"):
        with open(out, "r+b") as f:
            f.truncate(data.rfind(b"\n") + 1)
        data = data[:data.rfind(b"\n") + 1]
    text = data.decode("utf-8")
    if out.suffix == ".csv":
        rows = csv.DictReader(text.splitlines())
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


class ResultsWriter:
    """Appends rows to the results file, flushing each one (the CSV header once, for a new file)."""

    def __init__(self, out: Path):
        from .cli.files import SCAN_FIELDS

        out.parent.mkdir(parents=True, exist_ok=True)
        new = not out.is_file() or out.stat().st_size == 0
        self.file = open(out, "a", newline="", encoding="utf-8")
        self.csv = csv.DictWriter(self.file, fieldnames=SCAN_FIELDS) if out.suffix == ".csv" else None
        if self.csv and new:
            self.csv.writeheader()

    def write(self, row: dict) -> None:
        if self.csv:
            self.csv.writerow(row)
        else:
            self.file.write(json.dumps(row) + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()


# -- workers ---------------------------------------------------------------------------------------------
class Ledger:
    """Attempts per file, and which worker process is on which file (a Ray actor, one per scan)."""

    def __init__(self):
        self.attempts: dict[str, int] = {}
        self.running: dict[str, int] = {}

    def start(self, key: str, pid: int) -> int:
        self.attempts[key] = self.attempts.get(key, 0) + 1
        self.running[key] = pid
        return self.attempts[key]

    def finish(self, key: str) -> None:
        self.running.pop(key, None)

    def in_flight(self) -> dict[str, int]:
        return dict(self.running)

    def counts(self) -> dict[str, int]:
        return dict(self.attempts)


class Analyser:
    """One actor of the pool: loads the models once, then turns batches of files into rows (JSON strings)."""

    def __init__(self, options, given, use_calibration: bool, jsonl: bool, ledger, max_attempts: int):
        from .load import load_detector
        from .process import configure_process

        configure_process()  # a Ray worker is a process of its own: before its models load

        try:
            self.detector = load_detector(options)  # load.DetectorOptions
        except ModelFilesMissing as e:  # its arguments are not its message, so Ray cannot rebuild it: same text
            raise WeightsError(str(e)) from None
        # the settings by the library's rule, as the local scan makes them
        self.settings, self.notes = self.detector.resolve_settings(given, use_calibration)
        self.jsonl, self.ledger, self.max_attempts = jsonl, ledger, max_attempts

    def __call__(self, batch: dict) -> dict:
        import numpy as np

        records = [json.dumps(self.row(str(key), str(source))) for key, source in zip(batch["path"], batch["source"])]
        return {"path": np.asarray(batch["path"], dtype=object), "record": np.asarray(records, dtype=object)}

    def row(self, key: str, source: str) -> dict:
        import ray

        from .cli.files import scan_record

        try:
            attempt = ray.get(self.ledger.start.remote(key, os.getpid()))
        except ray.exceptions.RayError:  # the ledger's node is gone: analyse, uncounted, rather than fail the scan
            attempt = 1
        report = error = None
        if attempt > self.max_attempts:
            error = WorkerDied(f"the worker analysing it died {attempt - 1} times (a file that crashes the "
                               f"decoder, or a worker out of memory); not retried")
        else:
            try:
                with local_copy(source) as path:
                    report = self.detector.analyze(path, self.settings, notes=self.notes)
            except Exception as e:  # one broken file must not stop a long scan; it is recorded
                error = e
        self.ledger.finish.remote(key)
        return scan_record(key, report, error, self.jsonl)


# -- the scan --------------------------------------------------------------------------------------------
def _check_options(workers: int, gpus: float, cpus: float, attempts: int) -> None:
    if workers < 1:
        raise SettingsError(f"--ray-workers must be at least 1; got {workers}")
    if gpus < 0 or cpus <= 0:
        raise SettingsError(f"--ray-gpus-per-worker must be >= 0 and --ray-cpus-per-worker > 0; got {gpus}, {cpus}")
    if attempts < 1:
        raise SettingsError(f"--ray-max-attempts must be at least 1; got {attempts}")


def _deepfake_cause(error: BaseException) -> DeepfakeError | None:
    """The DeepfakeError a worker raised (a model file missing on it), from Ray's wrapping of it."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, DeepfakeError):
            return error
        error = getattr(error, "cause", None) or error.__cause__ or error.__context__
    return None


def _scan(paths: list[str], out: Path, given, options, *, use_calibration: bool, address: str | None, workers: int,
          gpus_per_worker: float, cpus_per_worker: float, max_attempts: int, quiet: bool,
          on_row: Callable[[dict], None] | None = None) -> ScanSummary:
    check_out(out)
    _check_options(workers, gpus_per_worker, cpus_per_worker, max_attempts)
    ray = import_ray()
    inputs = list_inputs(paths)
    if not inputs:
        raise InputError(f"no video files found in {', '.join(paths)}")
    done = read_done(out)
    todo = [(key, source) for key, source in inputs if key not in done]
    if not todo:
        return ScanSummary(out, len(inputs), len(inputs), 0, 0)
    options = options.absolute()  # the same folder on every worker (a shared or baked-in path)
    if options.device == "auto" and not gpus_per_worker:
        options = dataclasses.replace(options, device="cpu")  # a worker uses the GPU it reserved, none otherwise
    started = not ray.is_initialized()
    if started:
        ray.init(address=None if address in (None, "auto") else address, logging_level=logging.WARNING)
    ledger = None
    writer = ResultsWriter(out)
    written, errors, retried = set(), 0, 0
    try:
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        # restarted (empty) if its process is killed, e.g. by Ray's memory monitor
        ledger = ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1)(Ledger).options(
            name=LEDGER_PREFIX + uuid.uuid4().hex).remote()
        items = [{"path": key, "source": source} for key, source in todo]
        dataset = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
            Analyser, batch_size=1, batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=workers),
            num_cpus=cpus_per_worker,
            num_gpus=gpus_per_worker or None,
            fn_constructor_kwargs=dict(options=options, given=given, use_calibration=use_calibration,
                                       jsonl=out.suffix == ".jsonl",
                                       ledger=ledger, max_attempts=max_attempts))
        try:
            for item in dataset.iter_rows():
                if item["path"] in written:  # a retried task that had already returned
                    continue
                row = json.loads(item["record"])
                writer.write(row)
                written.add(item["path"])
                errors += row.get("error") is not None
                if on_row is not None:
                    on_row(row)
                if not quiet:
                    print(f"[{len(done) + len(written)}/{len(inputs)}] {row['path']}: {row['verdict']}"
                          + (f" ({row['error']})" if row.get("error") else ""), file=sys.stderr)
        except Exception as e:
            cause = _deepfake_cause(e)
            if cause is not None:
                raise cause from None
            raise
        with contextlib.suppress(ray.exceptions.RayError):
            retried = sum(n > 1 for n in ray.get(ledger.counts.remote()).values())
    finally:
        writer.close()
        if ledger is not None:
            with contextlib.suppress(Exception):
                ray.kill(ledger)
        if started:
            ray.shutdown()
    return ScanSummary(out, len(inputs), len(done), len(written) - errors, errors, retried)
