"""The analysis jobs behind the HTTP API: a bounded queue, a pool of worker threads sharing one Detector,
private temporary folders for uploads, and results that expire.

Plain threads and no web framework: the FastAPI app (app.py) only translates HTTP to these calls.
"""

from __future__ import annotations

import logging
import queue
import shutil
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import (CheckpointError, DeepfakeError, InputError, MediaTooLarge, NoVideoStream, SettingsError,
                      TruncatedMedia, UnreadableMedia, WeightsError)

log = logging.getLogger("deepfake_core.api")

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
FINISHED = (DONE, FAILED, CANCELLED)
TEMP_PREFIX = "deepfake-api-"  # the private folder under $TMPDIR holding the uploads of one server


def error_code(e: BaseException) -> str:
    """A stable machine-readable code for an error the library raises."""
    for cls, code in ((TruncatedMedia, "truncated_media"), (UnreadableMedia, "unreadable_media"),
                      (NoVideoStream, "no_video_stream"), (MediaTooLarge, "media_too_large"),
                      (SettingsError, "bad_settings"), (InputError, "bad_input"), (CheckpointError, "model_error"),
                      (WeightsError, "model_error")):
        if isinstance(e, cls):
            return code
    return "internal"


class QueueFull(Exception):
    pass


class Cancelled(Exception):
    """Raised from the progress callback to stop an analysis whose job was deleted or the server stopping."""


@dataclass
class Job:
    id: str
    path: Path  # the video analysed
    name: str  # the file name the report shows
    settings: object  # AnalysisSettings
    explain: int  # faces to explain with Grad-CAM; 0 = none
    folder: Path | None  # the job's private temporary folder (uploads), removed when the job ends
    notes: tuple[str, ...] = ()  # lines the report carries after the detector's (the calibration's)
    created: float = field(default_factory=time.time)
    status: str = QUEUED
    progress: float = 0.0
    message: str = "waiting for a worker"
    started: float | None = None
    finished: float | None = None
    report: dict | None = None
    timeline_csv: str | None = None
    error: dict | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)

    def to_dict(self, ttl_s: float) -> dict:
        d = {
            "id": self.id, "status": self.status, "progress": round(self.progress, 4), "message": self.message,
            "file": self.name, "created": self.created, "started": self.started, "finished": self.finished,
            "expires": self.finished + ttl_s if self.finished is not None else None,
            "links": {"self": f"/v1/analyses/{self.id}", "timeline": f"/v1/analyses/{self.id}/timeline.csv"},
        }
        if self.error is not None:
            d["error"] = self.error
        if self.report is not None:
            d["report"] = self.report
        return d


class Metrics:
    """The Prometheus series of one service (its own registry: two apps in one process do not mix)."""

    def __init__(self, service: "AnalysisService"):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter("deepfake_api_requests", "HTTP requests answered", ["method", "route", "status"],
                                registry=self.registry)
        self.analyses = Counter("deepfake_api_analyses", "Analyses ended, by outcome", ["outcome"],
                                registry=self.registry)
        self.seconds = Histogram("deepfake_api_analysis_seconds", "Seconds per finished analysis",
                                 buckets=(0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800),
                                 registry=self.registry)
        Gauge("deepfake_api_queue_length", "Analyses waiting for a worker",
              registry=self.registry).set_function(lambda: service.queued)
        Gauge("deepfake_api_running", "Analyses running now", registry=self.registry).set_function(
            lambda: service.running)
        Gauge("deepfake_api_results_kept", "Jobs kept in memory (any status)",
              registry=self.registry).set_function(lambda: len(service.jobs))
        Gauge("deepfake_api_workers", "Worker threads", registry=self.registry).set_function(
            lambda: service.workers)

    def exposition(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


class AnalysisService:
    """Runs analyses on `workers` threads with one shared Detector; at most `queue_size` wait."""

    def __init__(self, detector, workers: int = 1, queue_size: int = 8, ttl_s: float = 3600.0,
                 temp_parent: str | None = None):
        if workers < 1 or queue_size < 1 or ttl_s <= 0:
            raise SettingsError("workers and queue size must be at least 1, the result lifetime above 0 s")
        self.detector = detector
        self.workers = workers
        self.queue_size = queue_size
        self.ttl_s = float(ttl_s)
        self.temp_parent = temp_parent
        self.jobs: dict[str, Job] = {}
        self.queued = 0  # jobs waiting, plus uploads holding a place in the queue (reserve)
        self.running = 0
        self.temp_root: Path | None = None
        self.metrics = Metrics(self)
        self._lock = threading.Lock()
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()

    # -- life ------------------------------------------------------------------------------------------------
    def start(self) -> None:
        self.temp_root = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX, dir=self.temp_parent))  # mode 0700
        self._stop.clear()
        self._threads = [threading.Thread(target=self._work, name=f"deepfake-api-worker-{n}", daemon=True)
                         for n in range(self.workers)]
        self._threads.append(threading.Thread(target=self._janitor, name="deepfake-api-janitor", daemon=True))
        for t in self._threads:
            t.start()

    def shutdown(self, timeout_s: float = 30.0) -> None:
        """Stop the workers (running analyses are cancelled at their next frame) and delete every upload."""
        self._stop.set()
        with self._lock:
            for job in self.jobs.values():
                job.cancel.set()
        for _ in range(self.workers):
            self._queue.put(None)
        deadline = time.monotonic() + timeout_s
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        while True:  # jobs nobody will run
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                self._finish(job, CANCELLED, "the server stopped")
        if self.temp_root is not None:
            shutil.rmtree(self.temp_root, ignore_errors=True)

    @property
    def ready(self) -> bool:
        return self.temp_root is not None and not self._stop.is_set() and all(t.is_alive() for t in self._threads)

    # -- submitting ------------------------------------------------------------------------------------------
    def reserve(self) -> None:
        """Hold a place in the queue for an upload in progress; QueueFull when none is left."""
        with self._lock:
            if self.queued >= self.queue_size:
                raise QueueFull(f"{self.queued} analyses are waiting (the limit is {self.queue_size}); "
                                f"try again later")
            self.queued += 1

    def release(self) -> None:
        """Give back a place held by reserve() (the upload failed)."""
        with self._lock:
            self.queued -= 1

    def new_folder(self) -> Path:
        """A private folder for one upload, inside the server's temporary folder."""
        assert self.temp_root is not None, "start() first"
        return Path(tempfile.mkdtemp(prefix="job-", dir=self.temp_root))

    def submit(self, path: Path, name: str, settings, explain: int = 0, folder: Path | None = None,
               notes: tuple[str, ...] = ()) -> Job:
        """Queue an analysis in the place reserve() held."""
        job = Job(uuid.uuid4().hex, Path(path), name, settings, explain, folder, notes)
        with self._lock:
            self.jobs[job.id] = job
        self._queue.put(job)
        return job

    # -- reading ---------------------------------------------------------------------------------------------
    def get(self, job_id: str) -> Job | None:
        self.expire()
        with self._lock:
            return self.jobs.get(job_id)

    def delete(self, job_id: str) -> Job | None:
        """Forget a job: a queued one is cancelled now (its place and upload freed), a running one stops at
        its next frame."""
        with self._lock:
            job = self.jobs.pop(job_id, None)
            if job is None:
                return None
            job.cancel.set()
            waiting = job.status == QUEUED
            if waiting:  # the worker that takes it from the queue skips it
                job.status = CANCELLED
                self.queued -= 1
        if waiting:
            self._finish(job, CANCELLED, "deleted before it started")
        return job

    def expire(self) -> int:
        """Forget finished jobs older than the result lifetime; how many."""
        now = time.time()
        with self._lock:
            old = [j for j in self.jobs.values() if j.finished is not None and now - j.finished > self.ttl_s]
            for job in old:
                del self.jobs[job.id]
        return len(old)

    # -- working ---------------------------------------------------------------------------------------------
    def _janitor(self) -> None:
        while not self._stop.wait(min(30.0, max(0.05, self.ttl_s / 4))):
            self.expire()

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            with self._lock:
                if job.status != QUEUED:  # deleted while it waited: already finished
                    continue
                self.queued -= 1
                if job.cancel.is_set():
                    cancelled = True
                else:
                    cancelled = False
                    job.status, job.started, job.message = RUNNING, time.time(), "starting"
                    self.running += 1
            if cancelled:
                self._finish(job, CANCELLED, "cancelled before it started")
                continue
            try:
                self._run(job)
            finally:
                with self._lock:
                    self.running -= 1

    def _run(self, job: Job) -> None:
        def progress(fraction: float, message: str) -> None:
            if job.cancel.is_set():
                raise Cancelled()
            job.progress, job.message = 0.95 * fraction if job.explain else fraction, message

        t0 = time.perf_counter()
        try:
            # an upload: the report names the file, not the server's temporary copy
            report = self.detector.analyze(job.path, job.settings, progress=progress, notes=job.notes,
                                           display_name=job.name if job.folder is not None else None)
            if job.explain and report.timeline:
                progress(0.95, "explaining the most suspicious faces")
                from ..analysis.explain import explain_report

                explain_report(self.detector, job.path, report, k=job.explain)
            job.report, job.timeline_csv = report.to_dict(), report.timeline_csv()
        except Cancelled:
            self._finish(job, CANCELLED, "cancelled")
            return
        except DeepfakeError as e:
            self._finish(job, FAILED, str(e), {"code": error_code(e), "message": str(e)})
            return
        except Exception as e:  # an unexpected failure ends this job, not the worker
            log.exception("analysis %s failed", job.id)
            self._finish(job, FAILED, "internal error",
                         {"code": "internal", "message": f"internal error: {type(e).__name__}: {e}"})
            return
        self.metrics.seconds.observe(time.perf_counter() - t0)
        job.progress = 1.0
        self._finish(job, DONE, "done")

    def _finish(self, job: Job, status: str, message: str, error: dict | None = None) -> None:
        if job.folder is not None:
            shutil.rmtree(job.folder, ignore_errors=True)
        job.status, job.message, job.error, job.finished = status, message, error, time.time()
        self.metrics.analyses.labels(outcome=status).inc()
        job.done.set()
