"""scripts/mypy_baseline.py: mypy findings compared with the recorded baseline without line numbers; only a
finding not recorded (or one more copy of one) fails."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "mypy_baseline.py"
RECORDED = """\
src/deepfake_core/a.py:10: error: Incompatible types in assignment (expression has type "int")  [assignment]
src/deepfake_core/a.py:12: note: a note is not a finding
src/deepfake_core/b.py:3: error: Name "x" already defined on line 1  [no-redef]
Found 2 errors in 2 files (checked 2 source files)
"""


def run(command: str, baseline: Path, mypy_output: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), command, str(baseline)], input=mypy_output,
                          capture_output=True, text=True, timeout=120)


def test_shifted_lines_pass_and_a_new_finding_fails(tmp_path):
    baseline = tmp_path / "baseline.txt"
    assert run("update", baseline, RECORDED).returncode == 0
    assert baseline.read_text().count("error:") == 2 and ":10:" not in baseline.read_text()
    shifted = RECORDED.replace("a.py:10:", "a.py:40:").replace("b.py:3:", "b.py:9:").replace("line 1", "line 7")
    assert run("check", baseline, shifted).returncode == 0
    new = shifted + 'src/deepfake_core/c.py:5: error: Item "None" of "X | None" has no attribute "y"  [union-attr]\n'
    result = run("check", baseline, new)
    assert result.returncode == 1 and "c.py:5:" in result.stdout and "a.py" not in result.stdout
    again = shifted + shifted.splitlines()[0] + "\n"  # a second copy of a recorded finding is new
    assert run("check", baseline, again).returncode == 1
    fixed = run("check", baseline, RECORDED.splitlines()[0] + "\n")
    assert fixed.returncode == 0 and "1 fixed" in fixed.stdout
