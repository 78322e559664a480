# Run by tests/tls/test_config_files.py under the MicroPython unix port:
#   micropython mpy_config_client.py CAFILE [KEYFILE CERTFILE]
# Builds a client (no connect); prints "RESULT ok" or "RESULT <error class> <message>".
import sys

from arduino_iot_cloud import ArduinoCloudClient

params = {"cafile": sys.argv[1]}
kw = {"password": "mpy-Secret-77"}
if len(sys.argv) > 3:
    params["keyfile"] = sys.argv[2]
    params["certfile"] = sys.argv[3]
    kw = {}
try:
    ArduinoCloudClient("0f6b8a2e-1c3d-4e5f-8a9b-configfile01", server="127.0.0.1", port=1,
                       ssl_params=params, sync_mode=True, **kw)
    print("RESULT ok")
except Exception as e:
    print("RESULT %s %s" % (type(e).__name__, e))
