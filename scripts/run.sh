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
# PyTorch's CPU-only wheels on a Linux machine without an NVIDIA GPU (scripts/cpu-torch.sh says when and why).
scripts/cpu-torch.sh .venv/bin/python
.venv/bin/python -m pip install --quiet -e .
# Model files: download (and sha256-check) whatever is missing or corrupt; a failure is explained and
# the analysis goes on with what is there (it says what it could not judge, or exits 3 without a video model).
if ! .venv/bin/deepfake-detect weights verify >/dev/null 2>&1; then
  .venv/bin/deepfake-detect weights pull || echo "run.sh: some model files could not be fetched (see above)" >&2
fi
video="$1"; shift
case "$video" in /*) ;; *) video="$OLDPWD/$video" ;; esac
exec .venv/bin/deepfake-detect analyze "$video" "$@"
