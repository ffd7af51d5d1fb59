#!/usr/bin/env bash
# Install Debian packages with apt, saying in one line what and why, and waiting (up to 10 minutes) for
# another apt or dpkg to release its lock instead of failing.   Usage: scripts/apt-install.sh WHY PACKAGE...
set -euo pipefail
why="$1"; shift
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "apt-install.sh: cannot install $* ($why): needs root and apt-get; install it yourself" >&2
  exit 1
fi
echo "installing $* with apt: $why" >&2
export DEBIAN_FRONTEND=noninteractive
deadline=$((SECONDS + 600))
apt_wait() {
  local out said=""
  while true; do
    # DPkg::Lock::Timeout covers the dpkg lock; `apt-get update` fails at once on the lists lock, hence the loop.
    if out=$(apt-get -q -o DPkg::Lock::Timeout=600 "$@" 2>&1); then return 0; fi
    if ! grep -qE "Could not get lock|Unable to lock|Unable to acquire" <<<"$out" || [ "$SECONDS" -ge "$deadline" ]; then
      printf '%s\n' "$out" | tail -20 >&2
      return 1
    fi
    [ -n "$said" ] || echo "apt-install.sh: another apt/dpkg holds the package lock; waiting for it" >&2
    said=1
    sleep 5
  done
}
apt_wait update
apt_wait install -y --no-install-recommends "$@"
