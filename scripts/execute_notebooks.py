"""Run the walkthrough notebooks top to bottom and save them with their outputs, as they are committed.

    python scripts/execute_notebooks.py [NOTEBOOK...]      # default: notebooks/*.ipynb

Each runs in a fresh kernel from the notebooks/ folder (as Jupyter runs it). tests/test_train_notebooks.py checks
the committed outputs and re-executes them.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]


def main(paths: list[str]) -> int:
    notebooks = [Path(p) for p in paths] or sorted((ROOT / "notebooks").glob("*.ipynb"))
    for path in notebooks:
        nb = nbformat.read(path, as_version=4)
        started = time.perf_counter()
        NotebookClient(nb, timeout=1200, startup_timeout=600, kernel_name="python3", record_timing=False,
                       resources={"metadata": {"path": str(path.resolve().parent)}}).execute()
        nbformat.write(nb, path)
        print(f"{path}: {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
