# Run by test_mpy_device.py under micropython: a sync client against a server
# that accepts TCP and never answers TLS.  update() must keep returning while
# the handshake is pending; the attempt ends at the CONNACK timeout
# (1.5 x keepalive) with a clear error, and the client backs off.
import time
from os import getenv

from arduino_iot_cloud import ArduinoCloudClient

client = ArduinoCloudClient("silent-device", password="x", server="127.0.0.1",
                            port=int(getenv("SILENT_PORT")), keepalive=1, sync_mode=True)
client.engine.connect_timeout = 60  # a blocking connect would hold update() for a minute
engine = client.engine
for _ in range(20):
    client.update()
    time.sleep(0.005)
print("PENDING", engine.conn is not None or engine.connecting is not None,
      engine.mqtt.connected, engine.last_error)
give_up = time.time() + 10
while engine.last_error is None and time.time() < give_up:
    client.update()
    time.sleep(0.01)
print("ERROR", type(engine.last_error).__name__, engine.last_error)
print("RETRY_SCHEDULED", engine.conn is None and engine.connecting is None and engine.backoff.failures == 1)
client.stop()
