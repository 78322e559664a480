# Run by tests/tls/test_tls_micropython.py under the MicroPython unix port:
#   micropython mpy_tls_client.py PORT CAFILE [KEYFILE CERTFILE] [server_hostname=NAME]
# One client in sync mode; prints "RESULT connected" or "RESULT <error class> <message>"
# once it logged in or its first attempt failed (5 s at most).
import sys
import time

from arduino_iot_cloud import ArduinoCloudClient

argv = sys.argv
port = int(argv[1])
params = {"cafile": argv[2]}
if argv[-1].startswith("server_hostname="):
    params["server_hostname"] = argv.pop().split("=", 1)[1]
kw = {"password": "mpy-Secret-77"}
if len(argv) > 4:
    params["keyfile"] = argv[3]
    params["certfile"] = argv[4]
    kw = {}
c = ArduinoCloudClient("0f6b8a2e-1c3d-4e5f-8a9b-tlsrefusal01", server="127.0.0.1", port=port,
                       ssl_params=params, keepalive=2, sync_mode=True, **kw)
t0 = time.time()
result = "RESULT timeout"
while time.time() - t0 < 5:
    c.update()
    if c.engine.mqtt.connected:
        result = "RESULT connected"
        break
    e = c.engine.last_error
    if e is not None:
        result = "RESULT %s %s" % (type(e).__name__, e)
        break
    time.sleep(0.01)
c.stop()
print(result)
