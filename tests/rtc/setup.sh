#!/usr/bin/env bash
# Installs the Python WebRTC stack (aiortc, with aioice) that tests/it/webrtc_aiortc.rs drives
# through tests/rtc/aiortc_peer.py, into a virtual environment of its own, target/rtc-venv (the
# test runs that environment's python), so nothing is installed into the system's Python.
# Idempotent: does nothing when the environment already imports aiortc.
set -euo pipefail
cd "$(dirname "$0")/../.."

venv=target/rtc-venv
if "$venv/bin/python" -c 'import aiortc' >/dev/null 2>&1; then
  exit 0
fi

if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
  # Debian's python3 keeps venv and ensurepip in a package of their own.
  if [ "$(id -u)" != 0 ]; then
    echo "tests/rtc/setup.sh: python3 cannot make a virtual environment: please install python3-venv" >&2
    exit 1
  fi
  echo "tests/rtc/setup.sh: installing python3-venv" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
fi

echo "tests/rtc/setup.sh: installing aiortc with pip into $venv" >&2
rm -rf "$venv"
mkdir -p target
python3 -m venv "$venv"
PIP_DISABLE_PIP_VERSION_CHECK=1 "$venv/bin/python" -m pip install --quiet aiortc
"$venv/bin/python" -c 'import aiortc; print("tests/rtc/setup.sh: aiortc", aiortc.__version__)' >&2
