#!/usr/bin/env bash
# Set up a virtual environment (.venv) with the detector, fetch the model files if they are missing,
# then analyse a video.   Usage: scripts/run.sh VIDEO [deepfake-detect analyze options]
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 1 ]; then
  echo "usage: scripts/run.sh VIDEO [options]   (options: deepfake-detect analyze --help)" >&2
  exit 2
fi
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e .
video="$1"; shift
case "$video" in /*) ;; *) video="$OLDPWD/$video" ;; esac
exec .venv/bin/deepfake-detect analyze "$video" "$@"
