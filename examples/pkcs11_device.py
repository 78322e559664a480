# A device whose private key never leaves a PKCS#11 token (SoftHSM here; a
# smart card or HSM works the same way), in the style of arduino-iot-cloud
# 1.4.1: a switch on the dashboard drives an LED.  CPython only; needs
# M2Crypto and the OpenSSL pkcs11 engine (see README.md, "Keys in hardware").
#
#   export SOFTHSM2_CONF=/path/to/softhsm2.conf   # the token made by softhsm/provision.py
#   export DEVICE_ID=... PKCS11_PIN=...
#   python examples/pkcs11_device.py                                   # key and certificate in the token
#   python examples/pkcs11_device.py --cert device.pem --sync          # certificate from a file
#
# Defaults: key "pkcs11:token=device;object=device-key;type=private",
# certificate "pkcs11:token=device;object=device-key;type=cert".  The PIN is
# read from PKCS11_PIN (never from the command line, where `ps` shows it).
import argparse
import logging
import os
import time

from arduino_iot_cloud import ArduinoCloudClient

KEY_URI = "pkcs11:token=device;object=device-key;type=private"
CERT_URI = "pkcs11:token=device;object=device-key;type=cert"


def on_switch_changed(client, value):
    client["led"] = value


def main():
    ap = argparse.ArgumentParser(description="a device with its key in a PKCS#11 token")
    ap.add_argument("--device-id", default=os.getenv("DEVICE_ID"))
    ap.add_argument("--key", default=os.getenv("PKCS11_KEY_URI", KEY_URI), help="pkcs11: URI of the key")
    ap.add_argument("--cert", default=os.getenv("PKCS11_CERT", CERT_URI),
                    help="pkcs11: URI or PEM/DER file of the device certificate")
    ap.add_argument("--module", default=os.getenv("PKCS11_MODULE"), help="PKCS#11 module (.so)")
    ap.add_argument("--sync", action="store_true", help="sync mode: a main loop calling update()")
    ap.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    args = ap.parse_args()
    if args.verbose:
        logging.getLogger().setLevel(logging.DEBUG)
    if not args.device_id:
        ap.error("give --device-id or set DEVICE_ID")

    ssl_params = {"keyfile": args.key, "certfile": args.cert, "pin": os.getenv("PKCS11_PIN") or None,
                  "use_hsm": True}
    if args.module:
        ssl_params["module_path"] = args.module
    client = ArduinoCloudClient(device_id=args.device_id, ssl_params=ssl_params, sync_mode=args.sync)
    client.register("sw1", value=None, on_write=on_switch_changed)
    client.register("led", value=None)
    client.start()
    if args.sync:
        while True:
            client.update()
            time.sleep(0.05)


if __name__ == "__main__":
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    main()
