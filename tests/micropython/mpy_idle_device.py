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
engine = client.engine
# Settle: the attach's PUBACKs, retained messages and late answers all in, then
# 0.5 s with nothing received (any packet during the locked steps would allocate).
give_up = time.time() + 10
quiet_since, last_rx = now_ms(), engine.mqtt._last_rx
while time.time() < give_up:
    client.update()
    if engine.mqtt._last_rx != last_rx or engine.mqtt.inflight_count():
        quiet_since, last_rx = now_ms(), engine.mqtt._last_rx
    elif now_ms() - quiet_since >= 500:
        break
    time.sleep(0.01)
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
