#!/usr/bin/env bash
# Creates .venv-141 with the arduino-iot-cloud 1.4.1 package from PyPI (and
# the cbor2 / micropython-senml it needs), for the side-by-side benchmarks.
# Safe to run again: it does nothing when the venv already imports 1.4.1.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${VENV_141:-.venv-141}
# PYTHONPATH is dropped so a caller's PYTHONPATH=src cannot make our package answer for 1.4.1.
if [ -x "$VENV/bin/python" ] && env -u PYTHONPATH "$VENV/bin/python" -c "import sys; from arduino_iot_cloud._version import __version__ as v; sys.exit(v != '1.4.1')" 2>/dev/null; then
  exit 0
fi
echo "setup: a virtualenv $VENV with arduino-iot-cloud 1.4.1 from PyPI (side-by-side benchmarks, interop tests)"
$PY -m venv "$VENV"
"$VENV/bin/pip" install -q --disable-pip-version-check --retries 1 --timeout 15 "arduino-iot-cloud==1.4.1"
env -u PYTHONPATH "$VENV/bin/python" -c "from arduino_iot_cloud._version import __version__ as v; assert v == '1.4.1', v"
