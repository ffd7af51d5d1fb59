#!/usr/bin/env bash
# A private Docker engine for the container test (tests/test_container.py): Debian's docker.io, on its own
# socket and data root, with no bridge network, no iptables rules and no addresses of its own (builds and
# containers use --network host and listen on 127.0.0.1).
#   .ci/docker-engine.sh start   install docker.io and debootstrap with apt if missing, start dockerd, print
#                                DOCKER_HOST=unix://...  (for `export`)
#   .ci/docker-engine.sh stop    remove untagged images, stop that dockerd (the data root, with the
#                                stand-in base image and the build cache, stays)
# DEEPFAKE_DOCKER_ROOT: the engine's folder (default ../docker-data beside the repository, outside git):
# data/ holds images and build cache between runs, run/ the socket, pid file and log.
set -euo pipefail
cd "$(dirname "$0")/.."
root="${DEEPFAKE_DOCKER_ROOT:-$(cd .. && pwd)/docker-data}"
sock="$root/run/docker.sock"
pidfile="$root/run/dockerd.pid"

running() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

case "${1:-}" in
start)
  if ! command -v dockerd >/dev/null || ! command -v debootstrap >/dev/null; then
    scripts/apt-install.sh "a private Docker engine and a stand-in base image for the container test" \
      docker.io debootstrap >/dev/null
  fi
  mkdir -p "$root/data" "$root/run"
  if ! running; then
    dockerd -H "unix://$sock" --data-root "$root/data" --exec-root "$root/run/exec" --pidfile "$pidfile" \
      --bridge=none --iptables=false --ip6tables=false --ip-masq=false >"$root/run/dockerd.log" 2>&1 &
    for _ in $(seq 120); do
      DOCKER_HOST="unix://$sock" docker version >/dev/null 2>&1 && break
      sleep 0.5
    done
    DOCKER_HOST="unix://$sock" docker version >/dev/null 2>&1 ||
      { echo "docker-engine.sh: dockerd did not start; its log:" >&2; tail -20 "$root/run/dockerd.log" >&2; exit 1; }
  fi
  echo "DOCKER_HOST=unix://$sock"
  ;;
stop)
  if running; then
    # Images left untagged by a rebuild go; the tagged image (the next build's cache) stays.
    DOCKER_HOST="unix://$sock" docker image prune -f >/dev/null || true
    pid="$(cat "$pidfile")"
    kill "$pid"
    for _ in $(seq 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  fi
  ;;
*)
  echo "usage: .ci/docker-engine.sh start|stop" >&2
  exit 2
  ;;
esac
