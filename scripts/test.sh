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
  export DEEPFAKE_TEST_FACE_MODELS="$(cd ../shared/models && pwd)"
fi
# Chromium for the real-browser test (tests/test_browser.py): Debian's package, driven by Playwright.
if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
exec .venv/bin/python -m pytest "$@"
