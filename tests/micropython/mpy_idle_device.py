# Run by test_mpy_device.py under micropython: attach (sync mode), settle, then
# run the idle parts of a step with the heap locked (micropython.heap_lock():
# any allocation raises MemoryError).  An idle step must allocate nothing: no
# read buffer per recv(), no empty lists per publish check.
import time

import micropython
from os import getenv

from arduino_iot_cloud import ArduinoCloudClient
from arduino_iot_cloud.compat import now_ms

client = ArduinoCloudClient(getenv("DEVICE_ID"), password=getenv("SECRET_KEY"), sync_mode=True)
client.register("sw1", value=False)
client.start()
settle = time.time() + 1
while time.time() < settle:  # PUBACKs of the attach, retained messages
    client.update()
    time.sleep(0.01)
engine = client.engine
failures = 0
for i in range(200):
    now = now_ms()
    data = None
    micropython.heap_lock()
    try:
        data = engine.conn.recv()
        client.registry.run_due(client, now)
        client.session.publish_changes()
        engine.step(now, None)
        engine.flush(now)
    except MemoryError:
        failures += 1
    finally:
        micropython.heap_unlock()
    if data is not None:
        print("unexpected data", data)
    time.sleep(0.002)
print("IDLE_ALLOC_FAILURES", failures)
print("CONNECTED", client.connected)
client.stop()
