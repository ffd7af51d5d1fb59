"""How the command stops: SIGTERM (`kill`, `docker stop`) ends it as Ctrl-C does, through its cleanups.

Python's default for SIGTERM is to die at once, so `finally` blocks and `with` exits never run and temporary
files stay (an OpenVINO cache entry half written, benchmarks/RESULTS.md "Hostile inputs"). While the command
runs, SIGTERM raises `Terminated` in the main thread instead; `main` turns it into exit 143 and "terminated".
Only the command's entry installs it (importing the package changes no signal handler). uvicorn (`api`),
Streamlit (`serve`) and Ray (`scan --ray`) put their own SIGTERM handlers in place while they run.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator

EXIT_INTERRUPTED = 130  # Ctrl-C (SIGINT): 128 + 2, as a shell reports it
EXIT_TERMINATED = 143  # SIGTERM: 128 + 15


class Terminated(BaseException):
    """SIGTERM arrived. A BaseException, as KeyboardInterrupt is, so `except Exception` does not swallow it."""


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """While inside, SIGTERM raises Terminated in the main thread; a second SIGTERM kills at once (the
    cleanups are under way). The previous handler is back afterwards. Off the main thread: nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pid = os.getpid()

    def handler(signum: int, frame) -> None:
        signal.signal(signum, signal.SIG_DFL)
        if os.getpid() != pid:  # a forked child inherited it: die of the signal, as without this handler
            os.kill(os.getpid(), signum)
            return
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
