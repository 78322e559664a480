# Run by tests/micropython/test_mpy_hostile_values.py, unchanged on the
# MicroPython unix port and on CPython: a sync-mode device with an int
# property "count" (raised by one every second) and a monthly schedule "sch"
# (evaluated every 0.1 s against the clock plus the cloud's timezone offset).
# Prints "tick <count> <tz_offset> <tz_dst_until>" every second, and
# "escaped <error>" if an exception ever comes out of update().
#
# Settings from the environment: DEVICE_ID, SECRET_KEY, RUN_SECONDS and the
# ARDUINO_IOT_CLOUD_* overrides that point it at the local cloud.
import time
from os import getenv

from arduino_iot_cloud import ArduinoCloudClient, Schedule

device_id = getenv("DEVICE_ID")
client = ArduinoCloudClient(device_id=device_id, username=device_id, password=getenv("SECRET_KEY"),
                            sync_mode=True)
client.register("count", value=0)
client.register(Schedule("sch", interval=0.1, frm=1, to=0, len=60, msk=(3 << 26) | 1))  # monthly, the 1st
client.start()
print("attached", client.thing_id)
started = time.time()
last = started
while time.time() - started < float(getenv("RUN_SECONDS")):
    try:
        client.update()
    except Exception as e:  # what the test looks for: nothing may come out of update()
        print("escaped", type(e).__name__, e)
        break
    if time.time() - last >= 1:
        last = time.time()
        client["count"] = client["count"] + 1
        print("tick", client["count"], client["tz_offset"], client["tz_dst_until"])
    time.sleep(0.02)
client.stop()
print("stopped")
