#!/usr/bin/env bash
# Installs the Python WebRTC stack (aiortc, with aioice) that tests/it/webrtc_aiortc.rs drives
# through tests/rtc/aiortc_peer.py. Idempotent: does nothing when aiortc is already importable.
set -euo pipefail
if python3 -c 'import aiortc' >/dev/null 2>&1; then
  exit 0
fi
echo "tests/rtc/setup.sh: installing aiortc with pip" >&2
PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1 python3 -m pip install --quiet aiortc
python3 -c 'import aiortc; print("tests/rtc/setup.sh: aiortc", aiortc.__version__)' >&2
