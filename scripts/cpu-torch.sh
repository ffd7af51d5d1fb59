#!/usr/bin/env bash
# Install PyTorch's CPU-only wheels (~200 MB; the default CUDA build adds ~5 GB) into the environment of PYTHON
# when this is a Linux machine without an NVIDIA GPU, torch is not installed yet, and the CPU index answers.
# Otherwise, or when the install fails, do nothing: `pip install` of the project then takes torch from the
# default index.   Usage: scripts/cpu-torch.sh PYTHON   ($TORCH_CPU_INDEX_URL: another CPU-only index)
set -euo pipefail
cd "$(dirname "$0")/.."
py="$1"
index="${TORCH_CPU_INDEX_URL:-https://download.pytorch.org/whl/cpu}"
[ "$(uname -s)" = Linux ] || exit 0
if command -v nvidia-smi >/dev/null || [ -e /proc/driver/nvidia/version ]; then exit 0; fi
if "$py" -c "import torch" 2>/dev/null; then exit 0; fi
if ! "$py" -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=10)" "$index/torch/" 2>/dev/null; then
  echo "cpu-torch.sh: $index does not answer; PyTorch comes from the default index (the CUDA build)" >&2
  exit 0
fi
# The torch and torchvision requirements, exactly as pyproject.toml states them.
mapfile -t reqs < <("$py" - <<'PY'
import re
print("\n".join(re.findall(r'"(torch(?:vision)?[<>=!~][^"]*)"', open("pyproject.toml").read())))
PY
)
echo "cpu-torch.sh: no NVIDIA GPU: installing the CPU-only PyTorch wheels from $index" >&2
"$py" -m pip install --quiet --index-url "$index" "${reqs[@]}" ||
  echo "cpu-torch.sh: the CPU-only wheels failed to install; PyTorch comes from the default index" >&2
