"""Background: an iterator run ahead in a daemon thread (the analysis decodes frames and finds faces there
while the networks run in the caller's thread)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import torch


class Background:
    """Iterates `items` in a daemon thread, up to `depth` items ahead of the consumer. An exception in the
    thread is raised in the consumer; close() stops the thread (and closes `items`) early."""

    _END = object()

    def __init__(self, items: Iterator, depth: int, name: str = "deepfake-frames"):
        self._items = items
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self._finished = False
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    def _work(self) -> None:
        # Small torch ops here (input normalisation) must not start a second team of OpenMP threads
        # next to the one running the networks: this thread's torch ops run single-threaded.
        torch.set_num_threads(1)
        try:
            for item in self._items:
                if not self._put(item):
                    return
            self._put(self._END)
        except BaseException as e:  # handed to the consumer, which raises it
            self._put(_Failure(e))
        finally:
            close = getattr(self._items, "close", None)
            if close is not None:
                close()

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self):
        return self

    def __next__(self):
        if self._finished:
            raise StopIteration
        item = self._queue.get()
        if item is self._END:
            self._finished = True
            raise StopIteration
        if isinstance(item, _Failure):
            self._finished = True
            raise item.error
        return item

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


@dataclass
class _Failure:
    error: BaseException
