"""The walkthrough notebooks run top to bottom (their code cells, in order, in a fresh interpreter)."""

import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT, face_files_dir

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_there_are_walkthroughs():
    assert {p.name for p in NOTEBOOKS} >= {"training_walkthrough.ipynb", "evaluation_walkthrough.ipynb"}


@pytest.mark.slow
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_top_to_bottom(notebook, tmp_path):
    cells = json.loads(notebook.read_text())["cells"]
    code = "\n\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    assert "%" not in "".join(line[:1] for line in code.splitlines())  # plain Python, no magics
    script = tmp_path / "notebook.py"
    script.write_text(code)
    env = {**os.environ, "DEEPFAKE_MODELS_DIR": str(face_files_dir()), "WALKTHROUGH_DIR": str(tmp_path / "work"),
           "MPLBACKEND": "Agg"}
    p = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=1200)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert "Traceback" not in p.stderr
