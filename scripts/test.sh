#!/usr/bin/env bash
# Set up a virtual environment (.venv) with the project and its test tools, then run the test suite.
# Usage: scripts/test.sh [pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[app,test]"
# The res10 face-detector files for the tests: ../shared/models when present (CI has it).
if [ -z "${DEEPFAKE_TEST_FACE_MODELS:-}" ] && [ -d ../shared/models ]; then
  DEEPFAKE_TEST_FACE_MODELS="$(cd ../shared/models && pwd)"
  export DEEPFAKE_TEST_FACE_MODELS
fi
# Chromium for the real-browser test (tests/test_browser.py, Debian's package driven by Playwright): the one
# given in $DEEPFAKE_TEST_CHROMIUM, /usr/bin/chromium, or one on PATH; installed with apt (as root) only when
# none is there.
if [ -z "${DEEPFAKE_TEST_CHROMIUM:-}" ] && [ ! -x /usr/bin/chromium ]; then
  for name in chromium chromium-browser google-chrome; do
    if command -v "$name" >/dev/null; then
      DEEPFAKE_TEST_CHROMIUM="$(command -v "$name")"
      export DEEPFAKE_TEST_CHROMIUM
      break
    fi
  done
  if [ -z "${DEEPFAKE_TEST_CHROMIUM:-}" ]; then
    scripts/apt-install.sh "Chromium, for the real-browser test of the web page (tests/test_browser.py)" chromium ||
      echo "test.sh: no Chromium: tests/test_browser.py will fail (DEEPFAKE_TEST_CHROMIUM=PATH names one)" >&2
  fi
fi
exec .venv/bin/python -m pytest "$@"
