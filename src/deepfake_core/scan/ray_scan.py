"""`scan` on a Ray cluster: `scan_ray()`, which `deepfake-detect scan PATH... --out FILE --ray` runs (cli/scan.py).

Ray Data reads the list of files (one block per file) and an actor pool of analysers runs them: each actor loads
the models once, then analyses one file per call, exactly as the local scan does (`scan.results.scan_record`
makes the rows of both). The driver writes each row as it arrives (`scan.results.ResultsFile`: one synced line
per row), so the output file is the checkpoint: a re-run with the same --out skips the files already in it.

A worker that dies (killed, out of memory, a crashing decoder, its node lost) is restarted by Ray, on another
node when its own is gone, and its file is retried; a ledger actor on the driver's node counts the attempts per
file (ScanSummary.retried_files), and a file whose worker died `max_attempts` times is recorded as failed
(WorkerDied) instead of being retried for ever.

Inputs are local or shared (NFS) paths, which every worker must see at the same path, or URLs of a filesystem
pyarrow knows (s3://, gs://, hdfs://, file://) or fsspec does (with its package installed): the worker copies a
URL's file into a temporary folder, analyses it and removes it.

Ray is the optional `ray` extra; nothing here imports it before a scan starts. A local Ray started for a scan is
shut down after it and its session folder removed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from ..errors import DeepfakeError, InputError, SettingsError, WeightsError
from ..media.files import MEDIA_EXTENSIONS, check_inputs, iter_media
from .results import ResultsFile, ScanSummary, scan_record

__all__ = ["MAX_ATTEMPTS", "RAY_HINT", "ScanSummary", "WorkerDied", "import_ray", "scan_ray"]

RAY_HINT = "pip install 'deepfake-detector[ray]'"
MAX_ATTEMPTS = 3  # analyses of one file whose worker died before it is recorded as failed
LEDGER_PREFIX = "deepfake-scan-ledger-"  # name of the attempts ledger actor (one per scan)
COPY_CHUNK = 1 << 20  # bytes per read when a worker copies a URL's file
HOLD_ENV = "DEEPFAKE_SCAN_TEST_HOLD"  # tests only (test_ray_cluster.py): a folder where first attempts wait
HOLD_LIMIT_S = 900  # the longest a held attempt waits for the folder's "release" file


class WorkerDied(DeepfakeError):
    """The worker analysing a file died `max_attempts` times; the file is recorded as failed."""


def scan_ray(paths: Iterable[str | os.PathLike], out: str | os.PathLike, settings=None, *,
             address: str | None = "auto", workers: int = 1, gpus_per_worker: float = 0.0,
             cpus_per_worker: float = 1.0, max_attempts: int = MAX_ATTEMPTS, models_dir: str | None = None,
             device: str = "auto", precision: str = "auto", video_model: str | None = None,
             audio_model: str | None = None, runtime: str = "auto", compile: bool = False,
             calibration: bool = False, restart: bool = False,
             on_row: Callable[[dict], None] | None = None) -> ScanSummary:
    """Analyse video files and folders (walked) on Ray into `out` (.csv or .jsonl), resuming a previous run.

    `address`: "auto" (the Ray this process is connected to, else the cluster this machine belongs to, else a
    local Ray started for the scan and shut down after it) or a cluster address. `calibration`: apply the
    models folder's calibration.json to the temperatures and threshold, as the CLI does (default: `settings`
    as given, like `Detector.analyze`). `restart`: empty `out` first instead of resuming. `on_row`: called with
    each row once it is on disk.
    Raises InputError (bad `out`, no inputs), OutputError (`out` failed during the scan), SettingsError (Ray
    missing, bad option) and the errors of `Detector.load` (model files missing on the workers).
    """
    from ..analysis.load import DetectorOptions

    options = DetectorOptions(models_dir=models_dir, device=device, precision=precision, video_model=video_model,
                              audio_model=audio_model, runtime=runtime, compile=compile)
    check_ray_options(workers, gpus_per_worker, cpus_per_worker, max_attempts)
    import_ray()
    inputs = list_inputs([str(p) for p in paths])
    with ResultsFile(Path(out), restart=restart) as results:  # checked before anything loads or starts
        check_models(options)
        # the settings' fields that differ from the defaults count as given (Detector.resolve_settings)
        return run_scan(inputs, results, settings, options, use_calibration=calibration, address=address,
                        workers=workers, gpus_per_worker=gpus_per_worker, cpus_per_worker=cpus_per_worker,
                        max_attempts=max_attempts, on_row=on_row)


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
    paths = list(paths)
    check_inputs(paths)
    found: dict[str, str] = {}
    for name in paths:
        if is_url(name):
            for url in _list_url(name, MEDIA_EXTENSIONS):
                found.setdefault(url, url)
        else:
            for p in iter_media([name]):
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


# -- workers ---------------------------------------------------------------------------------------------
class Ledger:
    """Attempts per file, and which worker process is on which file (a Ray actor, one per scan, on the driver's
    node so that losing a worker node loses no count)."""

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

    def load_failed(self, message: str, exit_code: int) -> None:
        """A worker could not load the models (a models folder or file missing on it): the first such error."""
        self.load_error = getattr(self, "load_error", None) or (message, exit_code)

    def load_failure(self) -> tuple[str, int] | None:
        return getattr(self, "load_error", None)


def hold_for_test(key: str, attempt: int) -> None:
    """Tests only, when $DEEPFAKE_SCAN_TEST_HOLD names a folder: say which file this worker started (a JSON file
    there: path, attempt, node id, pid), and keep a first attempt in flight until the folder holds "release",
    so that a test can lose the node under it for certain (tests/test_ray_cluster.py)."""
    folder = os.environ.get(HOLD_ENV)
    if not folder:
        return
    import ray

    info = {"path": key, "attempt": attempt, "node": ray.get_runtime_context().get_node_id(), "pid": os.getpid()}
    marker = Path(folder) / f"{uuid.uuid4().hex}.json"
    marker.with_suffix(".tmp").write_text(json.dumps(info))
    marker.with_suffix(".tmp").rename(marker)  # whole, or not there
    deadline = time.monotonic() + HOLD_LIMIT_S
    while attempt == 1 and not (Path(folder) / "release").exists() and time.monotonic() < deadline:
        time.sleep(0.05)


class Analyser:
    """One actor of the pool: loads the models once, then turns batches of files into rows (JSON strings)."""

    def __init__(self, options, given, use_calibration: bool, jsonl: bool, ledger, max_attempts: int):
        from ..analysis.load import load_detector
        from ..process import configure_process

        configure_process()  # a Ray worker is a process of its own: before its models load

        try:
            self.detector = load_detector(options)  # load.DetectorOptions
        except DeepfakeError as e:
            # Ray's error for a failed actor start keeps only the text: the driver reads this error, and its exit
            # code, from the ledger (a models folder or file missing on the workers)
            import ray

            with contextlib.suppress(ray.exceptions.RayError):
                ray.get(ledger.load_failed.remote(str(e), e.exit_code))
            raise
        # the settings by the library's rule, as the local scan makes them
        self.settings, self.notes = self.detector.resolve_settings(given, use_calibration)
        self.jsonl, self.ledger, self.max_attempts = jsonl, ledger, max_attempts

    def __call__(self, batch: dict) -> dict:
        import numpy as np

        pairs = zip(batch["path"], batch["source"], strict=True)
        records = [json.dumps(self.row(str(key), str(source))) for key, source in pairs]
        return {"path": np.asarray(batch["path"], dtype=object), "record": np.asarray(records, dtype=object)}

    def row(self, key: str, source: str) -> dict:
        import ray

        try:
            attempt = ray.get(self.ledger.start.remote(key, os.getpid()))
        except ray.exceptions.RayError:  # the ledger's node is gone: analyse, uncounted, rather than fail the scan
            attempt = 1
        hold_for_test(key, attempt)
        report = error = None
        if attempt > self.max_attempts:
            error = WorkerDied(f"the worker analysing it died {attempt - 1} times (a file that crashes the "
                               f"decoder, a worker out of memory, or its node lost); not retried")
        else:
            try:
                with local_copy(source) as path:
                    report = self.detector.analyze(path, self.settings, notes=self.notes)
            except Exception as e:  # one broken file must not stop a long scan; it is recorded
                error = e
        self.ledger.finish.remote(key)
        return scan_record(key, report, error, self.jsonl)


# -- the scan --------------------------------------------------------------------------------------------
def check_ray_options(workers: int, gpus: float, cpus: float, attempts: int) -> None:
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


def _load_failure(ray, ledger) -> DeepfakeError | None:
    """The error a worker met loading the models, as the ledger recorded it, with its exit code."""
    try:
        failure = ray.get(ledger.load_failure.remote(), timeout=60)
    except Exception:  # the ledger is gone too: the scan's own error stands
        return None
    if failure is None:
        return None
    message, exit_code = failure
    return (WeightsError if exit_code == WeightsError.exit_code else InputError)(message)


def check_models(options):
    """The model files (model_files.ModelFiles) when the models folder is one this machine sees too (a shared
    one): a missing file is reported here, at once, before Ray starts. A folder only the workers have (baked into
    their image) is checked by them: None."""
    try:
        here = options.models_dir is None or Path(options.models_dir).is_dir()
    except OSError:  # a name too long, a folder we may not enter: find_model_files names it (exit 2)
        here = True
    if here:
        from ..models.model_files import find_model_files

        return find_model_files(options.models_dir, options.video_model, options.audio_model)
    return None


def _start_ray(ray, address: str | None) -> str | None:
    """Connect to (or start) Ray; the session folder of a Ray this call started, to remove after it."""
    ray.init(address=None if address in (None, "auto") else address, logging_level=logging.WARNING)
    node = getattr(getattr(ray, "_private", None), "worker", None)
    node = getattr(node, "_global_node", None)
    with contextlib.suppress(Exception):
        if node is not None and node.head:
            return node.get_session_dir_path()
    return None


def ray_temp_root() -> Path:
    """Where a Ray started here keeps its session folders, by Ray's rule: $RAY_TMPDIR/ray, else $TMPDIR/ray on
    Linux, else /tmp/ray (the system's temporary folder on Windows)."""
    if os.environ.get("RAY_TMPDIR"):
        base = os.environ["RAY_TMPDIR"]
    elif sys.platform.startswith("linux") and os.environ.get("TMPDIR"):
        base = os.environ["TMPDIR"]
    else:
        base = "/tmp" if sys.platform.startswith(("linux", "darwin")) else tempfile.gettempdir()
    return Path(base) / "ray"


def remove_session(session: str | None, made_root: Path | None = None) -> None:
    """Remove a stopped Ray's session folder, and the session_latest link beside it when it points there.
    `made_root`: the `ray` folder this scan's Ray created (it was not there before), removed too when it is the
    session's parent and nothing else is left in it."""
    if not session:
        return
    folder = Path(session)
    latest = folder.parent / "session_latest"
    with contextlib.suppress(OSError):
        if latest.is_symlink() and Path(os.readlink(latest)).name == folder.name:
            latest.unlink()
    for _ in range(5):  # a process of the stopped Ray may still be closing its log files
        shutil.rmtree(folder, ignore_errors=True)
        if not folder.exists():
            break
        time.sleep(0.2)
    if made_root is not None and folder.parent.resolve() == made_root.resolve():
        with contextlib.suppress(OSError):  # not empty (another Ray's sessions, a file): kept
            made_root.rmdir()


def run_scan(inputs: list[tuple[str, str]], results: ResultsFile, given, options, *, use_calibration: bool,
             address: str | None, workers: int = 1, gpus_per_worker: float = 0.0, cpus_per_worker: float = 1.0,
             max_attempts: int = MAX_ATTEMPTS, on_row: Callable[[dict], None] | None = None) -> ScanSummary:
    """The scan of `inputs` (list_inputs) into the open `results`, skipping the files already in it: what
    `scan_ray` and the command run once the inputs, the results file and the options are checked. `given`:
    the analysis settings set by the user ({field: value} or an AnalysisSettings, Detector.resolve_settings);
    `options`: load.DetectorOptions."""
    todo = [(key, source) for key, source in inputs if key not in results.done]
    summary = ScanSummary(results.out, len(inputs), len(inputs) - len(todo), 0, 0)
    if not todo:
        return summary
    return _run(import_ray(), todo, results, given, options, use_calibration=use_calibration, address=address,
                workers=workers, gpus_per_worker=gpus_per_worker, cpus_per_worker=cpus_per_worker,
                max_attempts=max_attempts, summary=summary, on_row=on_row)


def _run(ray, todo: list[tuple[str, str]], results: ResultsFile, given, options, *, use_calibration, address,
         workers, gpus_per_worker, cpus_per_worker, max_attempts, summary: ScanSummary, on_row) -> ScanSummary:
    options = options.absolute()  # the same folder on every worker (a shared or baked-in path)
    if options.device == "auto" and not gpus_per_worker:
        options = dataclasses.replace(options, device="cpu")  # a worker uses the GPU it reserved, none otherwise
    started = not ray.is_initialized()
    made_root = None if ray_temp_root().exists() else ray_temp_root()  # a `ray` folder the scan's Ray may create
    session = _start_ray(ray, address) if started else None
    ledger = None
    written: set[str] = set()
    errors, retried = 0, ()
    try:
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        # On the driver's node, which the scan cannot lose, and restarted (empty) if its process is killed, e.g.
        # by Ray's memory monitor. A hard affinity: a soft one left it on a worker node in about half the runs on
        # a 3-node cluster, and losing that node reset every count (tests/test_ray_cluster.py).
        here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
        ledger = ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1)(Ledger).options(
            name=LEDGER_PREFIX + uuid.uuid4().hex, scheduling_strategy=here).remote()
        items = [{"path": key, "source": source} for key, source in todo]
        dataset = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
            Analyser, batch_size=1, batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=workers),
            num_cpus=cpus_per_worker,
            num_gpus=gpus_per_worker or None,
            fn_constructor_kwargs=dict(options=options, given=given, use_calibration=use_calibration,
                                       jsonl=results.jsonl,
                                       ledger=ledger, max_attempts=max_attempts))
        try:
            for item in dataset.iter_rows():
                if item["path"] in written:  # a retried task that had already returned
                    continue
                row = json.loads(item["record"])
                results.write(row)
                written.add(item["path"])
                errors += row.get("error") is not None
                if on_row is not None:
                    on_row(row)
        except Exception as e:
            cause = _deepfake_cause(e) or _load_failure(ray, ledger)
            if cause is not None:
                raise cause from None
            raise
        with contextlib.suppress(ray.exceptions.RayError):
            retried = tuple(sorted(key for key, n in ray.get(ledger.counts.remote()).items() if n > 1))
    finally:
        if ledger is not None:
            with contextlib.suppress(Exception):
                ray.kill(ledger)
        if started:
            ray.shutdown()
            remove_session(session, made_root)
    return ScanSummary(summary.out, summary.total, summary.skipped, len(written) - errors, errors, len(retried),
                       retried)
