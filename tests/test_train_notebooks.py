"""The walkthrough notebooks are committed executed — their tables, figures and printed results visible on the
code host, with no path of the machine that ran them — and re-execute here with nbclient, as Jupyter runs them,
showing the same key results."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from conftest import ROOT, face_files_dir

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
# What each notebook must show in its outputs: the model that judged, the tables and summaries it prints.
KEY_OUTPUTS = {
    "evaluation_walkthrough": [
        "video model: builtin-lite0-pooled-v1", "shipped: True", "voice model: none", "verdict:", "6 files:",
        "fused  n=6 (3 fake, 3 real", "written: ['confusion.png', 'pr.png', 'roc.png', 'scores.csv', 'summary.json']",
        "tint-a", "video_temperature", "removed the working folder",
    ],
    "training_walkthrough": [
        "8 files: 8 prepared", "best epoch", "val_auc", "'architecture': 'legacy_xception'", "'modality': 'audio'",
        "['best.safetensors', 'config.json', 'metrics.jsonl', 'splits.csv', 'summary.json']",
        "removed the working folder",
    ],
}
# Figures: the evaluation's face timeline, ROC, PR and confusion matrices.
MIN_IMAGES = {"evaluation_walkthrough": 4, "training_walkthrough": 0}


def outputs_text(nb) -> str:
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            parts.append(out.get("text", ""))
            for kind in ("text/plain", "text/html"):
                parts.append(out.get("data", {}).get(kind, ""))
    return "\n".join(parts)


def count_images(nb) -> int:
    return sum("image/png" in out.get("data", {}) for cell in nb.cells for out in cell.get("outputs", []))


def error_outputs(nb) -> list[str]:
    return [f"{out.get('ename')}: {out.get('evalue')}" for cell in nb.cells for out in cell.get("outputs", [])
            if out.get("output_type") == "error"]


def test_there_are_walkthroughs():
    assert {p.name for p in NOTEBOOKS} >= {"training_walkthrough.ipynb", "evaluation_walkthrough.ipynb"}
    assert {p.stem for p in NOTEBOOKS} == set(KEY_OUTPUTS)


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_committed_notebook_is_executed_and_shows_its_results(notebook):
    nb = nbformat.read(notebook, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1)), "run it top to bottom, then commit"
    assert sum(bool(c.outputs) for c in code) >= len(code) - 1  # the first cell (imports) may print nothing
    assert not error_outputs(nb)
    text = outputs_text(nb)
    missing = [key for key in KEY_OUTPUTS[notebook.stem] if key not in text]
    assert not missing, missing
    assert count_images(nb) >= MIN_IMAGES[notebook.stem]
    # plain Python (no magics), and nothing in the outputs about the machine that ran it
    assert not any(line.startswith(("%", "!")) for c in code for line in c.source.splitlines())
    machine = {str(ROOT), str(Path.home()), tempfile.gettempdir() + "/", "/tmp/"}
    leaked = [m for m in machine if m in text]
    assert not leaked, leaked
    assert not re.search(r"deepfake-walkthrough-\w{8}", text)


@pytest.mark.slow
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_reexecutes_with_the_same_key_results(notebook, tmp_path, monkeypatch):
    committed = nbformat.read(notebook, as_version=4)
    nb = nbformat.read(notebook, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    # the kernel inherits this environment: the res10 files, and a temporary folder of the test's own (the
    # notebook makes its working folder there and removes it at the end)
    monkeypatch.setenv("DEEPFAKE_MODELS_DIR", str(face_files_dir()))
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.delenv("WALKTHROUGH_DIR", raising=False)
    monkeypatch.delenv("MPLBACKEND", raising=False)
    NotebookClient(nb, timeout=1200, startup_timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(notebook.parent)}}).execute()
    assert not error_outputs(nb)
    text = outputs_text(nb)
    missing = [key for key in KEY_OUTPUTS[notebook.stem] if key not in text]
    assert not missing, missing
    assert count_images(nb) == count_images(committed)
    assert not list(tmp_path.glob("deepfake-walkthrough-*")), "the working folder was left behind"
