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
# PyTorch: a Linux machine without an NVIDIA GPU gets the CPU-only wheels (~200 MB; the default CUDA build
# adds ~5 GB to .venv) from PyTorch's index when it answers; otherwise, or when that fails, the default index.
torch_cpu_index="${TORCH_CPU_INDEX_URL:-https://download.pytorch.org/whl/cpu}"
if [ "$(uname -s)" = Linux ] && ! command -v nvidia-smi >/dev/null && [ ! -e /proc/driver/nvidia/version ] &&
   ! .venv/bin/python -c "import torch" 2>/dev/null &&
   .venv/bin/python -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=10)" \
     "$torch_cpu_index/torch/" 2>/dev/null; then
  # The torch and torchvision requirements, exactly as pyproject.toml states them.
  mapfile -t torch_reqs < <(.venv/bin/python - <<'PY'
import re
print("\n".join(re.findall(r'"(torch(?:vision)?[<>=!~][^"]*)"', open("pyproject.toml").read())))
PY
)
  echo "run.sh: no NVIDIA GPU: installing the CPU-only PyTorch wheels from $torch_cpu_index" >&2
  .venv/bin/python -m pip install --quiet --index-url "$torch_cpu_index" "${torch_reqs[@]}" ||
    echo "run.sh: the CPU-only wheels failed to install; using the default index" >&2
fi
.venv/bin/python -m pip install --quiet -e .
# Model files: download (and sha256-check) whatever is missing or corrupt; a failure is explained and
# the analysis goes on with what is there (it says what it could not judge, or exits 3 without a video model).
if ! .venv/bin/deepfake-detect weights verify >/dev/null 2>&1; then
  .venv/bin/deepfake-detect weights pull || echo "run.sh: some model files could not be fetched (see above)" >&2
fi
video="$1"; shift
case "$video" in /*) ;; *) video="$OLDPWD/$video" ;; esac
exec .venv/bin/deepfake-detect analyze "$video" "$@"
