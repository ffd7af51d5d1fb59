#!/usr/bin/env bash
# Lint and types (.ci/run runs it after the tests): ruff on src/ must be clean; mypy on src/ may report only the
# findings recorded in .ci/mypy-baseline.txt (compared without line numbers: scripts/mypy_baseline.py).
# Usage: scripts/lint.sh [--update-baseline]    VENV=DIR: the virtualenv with ruff and mypy (default: .venv,
# which scripts/test.sh makes with the `test` extra; pyproject.toml holds both tools' settings)
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${VENV:-.venv}/bin/python"
"$PY" -m ruff check src
echo "ruff: clean"
out="$(mktemp)"
trap 'rm -f "$out"' EXIT
status=0
"$PY" -m mypy > "$out" 2>&1 || status=$?
if [ "$status" -gt 1 ]; then  # 1: findings; 2: mypy itself failed (a crash, a bad configuration)
  cat "$out" >&2
  exit "$status"
fi
if [ "${1:-}" = "--update-baseline" ]; then
  "$PY" scripts/mypy_baseline.py update .ci/mypy-baseline.txt < "$out"
else
  "$PY" scripts/mypy_baseline.py check .ci/mypy-baseline.txt < "$out"
fi
