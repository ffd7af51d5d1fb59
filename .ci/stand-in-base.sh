#!/usr/bin/env bash
# Build a stand-in for the Dockerfile's base image (python:3.11-slim) where no image registry is reachable:
# a minimal Debian bookworm (the release python:3.11-slim is built on) with Debian's Python 3.11, pip and venv,
# made by debootstrap from the Debian mirror and imported into the engine under the base image's name.
# The machine's CA bundle replaces the stand-in's, so that downloads through a TLS-intercepting proxy work.
# Usage: .ci/stand-in-base.sh [IMAGE]   (default python:3.11-slim; needs root, debootstrap and $DOCKER_HOST)
# Does nothing when the engine already has IMAGE. DEBIAN_MIRROR overrides the mirror.
set -euo pipefail
image="${1:-python:3.11-slim}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
if docker image inspect "$image" >/dev/null 2>&1; then
  exit 0
fi
command -v debootstrap >/dev/null || { echo "stand-in-base.sh: debootstrap is missing (apt-get install debootstrap)" >&2; exit 1; }
root="$(mktemp -d "${TMPDIR:-/tmp}/stand-in-base.XXXXXX")"
trap 'rm -rf "$root"' EXIT
echo "stand-in-base.sh: debootstrap bookworm + python3 into $root, imported as $image (about 2 minutes)" >&2
debootstrap --variant=minbase --include=python3,python3-pip,python3-venv,ca-certificates \
  bookworm "$root" "$mirror" >"$root.log" 2>&1 || { tail -20 "$root.log" >&2; rm -f "$root.log"; exit 1; }
rm -f "$root.log"
# Like the official image: `python` and `pip` on PATH, pip allowed to install into the system Python.
rm -f "$root"/usr/lib/python3*/EXTERNALLY-MANAGED
ln -sf python3 "$root/usr/bin/python"
ln -sf pip3 "$root/usr/bin/pip"
# This machine's trusted certificates (a proxy's CA included): pip in the build trusts what pip here trusts.
cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb
tar -C "$root" --numeric-owner -c . | docker import \
  -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' -c 'ENV LANG=C.UTF-8' \
  -c 'CMD ["python3"]' -m "stand-in for $image: debootstrap bookworm with python3" - "$image" >/dev/null
echo "stand-in-base.sh: $image imported" >&2
