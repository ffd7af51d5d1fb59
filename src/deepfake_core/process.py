"""Process-wide settings the entry points apply before any model loads (the CLI's main, the web page, the
API server, Ray workers, the benchmarks). Importing the package changes nothing; a library user calls
`configure_process()` to get the same.

- OpenMP: PyTorch's threads spin while they wait for work. On a small or shared CPU that spinning takes the
  cores the decoder and the face detector need: on 2 vCPUs analyses took twice as long with it
  (benchmarks/RESULTS.md). It only takes effect when set before torch is first imported; a value you set wins.
- Model hubs off (offline.py): an analysis never reaches the network.
"""

from __future__ import annotations

import os

from .offline import hub_offline

OPENMP_ENV = {"OMP_WAIT_POLICY": "PASSIVE"}


def configure_process() -> None:
    """Apply the OpenMP wait policy (unless already set) and switch the model hubs offline."""
    for name, value in OPENMP_ENV.items():
        os.environ.setdefault(name, value)
    hub_offline()
