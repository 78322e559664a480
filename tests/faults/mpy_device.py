# A device under the MicroPython unix port, for tests/faults/test_faults_micropython.py:
#   micropython mpy_device.py DEVICE_ID SECRET PORT CAFILE STOPFILE
# Sync mode, keepalive 2 s.  Increments "counter" every 250 ms; prints
#   LINK up|down <attach count>   when the attached state changes
#   WRITE <value>                 from on_write of "msg"
#   FINAL <counter>               when STOPFILE appears (60 s at most); runs 3 s more
#   STOPPED                       at the end
import os
import sys
import time

from arduino_iot_cloud import ArduinoCloudClient

device_id, secret, port, cafile, stopfile = sys.argv[1:6]
c = ArduinoCloudClient(device_id, password=secret, server="127.0.0.1", port=int(port),
                       ssl_params={"cafile": cafile}, keepalive=2, sync_mode=True, reconnect_cap=4)
c.register("counter", value=0)


def on_write(client, value):
    print("WRITE", value)


c.register("msg", value="", on_write=on_write)


def stop_requested():
    try:
        os.stat(stopfile)
        return True
    except OSError:
        return False


t0 = time.time()
n = 0
next_inc = 0
was = None
while time.time() - t0 < 60:
    c.update()
    up = c.connected and c.engine.conn is not None
    if up != was:
        print("LINK", "up" if up else "down", c.session.attach_count)
        was = up
    now = time.ticks_ms()
    if time.ticks_diff(now, next_inc) >= 0:
        n += 1
        c["counter"] = n
        next_inc = time.ticks_add(now, 250)
    if stop_requested():
        break
    time.sleep_ms(10)
print("FINAL", n)
# Keep the link going a little, so the last value goes out, then leave.
t1 = time.time()
while time.time() - t1 < 3:
    c.update()
    time.sleep_ms(10)
c.stop()
print("STOPPED")
