# A device under the MicroPython unix port, for the rogue-broker tests
# (tests/faults/test_rogue_broker.py):
#   micropython mpy_rogue_device.py DEVICE_ID PORT CAFILE STOPFILE SECONDS [WRITES]
# Sync mode, keepalive 2 s, reconnect_cap 0.3 s.  Sets "counter" at every
# step; counts on_write calls of "n".  Runs until STOPFILE appears, SECONDS
# pass or on_write of "n" has run WRITES times, then prints
#   MAXSTEP <most on_write calls in one update()>
#   MAXINFLIGHT <most QoS 1 publishes in flight>
#   WRITES <on_write calls>
#   LASTERROR <engine.last_error>
#   DONE
# An exception out of update() ends the script with a traceback (exit 1).
import os
import sys
import time

from arduino_iot_cloud import ArduinoCloudClient

device_id, port, cafile, stopfile, seconds = sys.argv[1:6]
until_writes = int(sys.argv[6]) if len(sys.argv) > 6 else 0
c = ArduinoCloudClient(device_id, password="rogue-test-secret-0123456789", server="127.0.0.1", port=int(port),
                       ssl_params={"cafile": cafile}, keepalive=2, sync_mode=True, reconnect_cap=0.3)
c.register("counter", value=0)
writes = [0]


def on_write(client, value):
    writes[0] += 1


c.register("n", value=0, on_write=on_write)


def stop_requested():
    try:
        os.stat(stopfile)
        return True
    except OSError:
        return False


t0 = time.time()
i = 0
max_step = 0
max_inflight = 0
while time.time() - t0 < int(seconds) and not stop_requested():
    if until_writes and writes[0] >= until_writes:
        break
    i += 1
    c["counter"] = i
    before = writes[0]
    c.update()
    max_step = max(max_step, writes[0] - before)
    max_inflight = max(max_inflight, c.engine.mqtt.inflight_count())
    time.sleep_ms(1)
print("MAXSTEP", max_step)
print("MAXINFLIGHT", max_inflight)
print("WRITES", writes[0])
print("LASTERROR", c.engine.last_error)
c.stop()
print("DONE")
