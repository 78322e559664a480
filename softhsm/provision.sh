#!/usr/bin/env bash
# The whole flow for the local cloud: a SoftHSM token, an EC key made inside
# it, a CSR signed by it, a device on the local cloud with the certificate
# its CA issued for that CSR, and the certificate stored in the token.
#
#   export SOFTHSM_PIN=... SOFTHSM_SO_PIN=...
#   softhsm/provision.sh TOKEN_DIR [LOCALCLOUD_WORKDIR]
#
# Prints the exports for examples/pkcs11_device.py.  The PINs are read from
# the environment and never printed.
set -euo pipefail
if [ $# -lt 1 ]; then
  echo "usage: $0 TOKEN_DIR [LOCALCLOUD_WORKDIR]" >&2
  exit 2
fi
: "${SOFTHSM_PIN:?set SOFTHSM_PIN}" "${SOFTHSM_SO_PIN:?set SOFTHSM_SO_PIN}"
dir=$1
workdir=${2:-.localcloud}
here=$(cd "$(dirname "$0")" && pwd)
py=${PYTHON:-python3}

"$py" "$here/provision.py" init --dir "$dir" >&2
"$py" "$here/provision.py" csr --dir "$dir" --out "$dir/device.csr" >&2
device=$("$py" -m arduino_iot_cloud.localcloud --workdir "$workdir" add-device --csr "$dir/device.csr" --json)
read -r device_id certfile < <(printf '%s' "$device" | "$py" -c \
  'import json, sys; d = json.load(sys.stdin); print(d["device_id"], d["certfile"])')
"$py" "$here/provision.py" import-cert --dir "$dir" --cert "$certfile" >&2
"$py" -m arduino_iot_cloud.localcloud --workdir "$workdir" env "$device_id"
echo "export SOFTHSM2_CONF=$("$py" -c 'import os, sys; print(os.path.abspath(sys.argv[1]))' "$dir")/softhsm2.conf"
echo "export DEVICE_ID=$device_id"
