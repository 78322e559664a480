# Sync mode, for a microcontroller-style main loop: start() returns once the
# device is attached, then update() does one short non-blocking step.
import logging
import os
import time

from arduino_iot_cloud import ArduinoCloudClient

DEVICE_ID = os.getenv("DEVICE_ID")
SECRET_KEY = os.getenv("SECRET_KEY")


def on_switch_changed(client, value):
    client["led"] = value


if __name__ == "__main__":
    logging.basicConfig(format="%(asctime)s %(levelname)s %(message)s", level=logging.INFO)
    client = ArduinoCloudClient(device_id=DEVICE_ID, username=DEVICE_ID, password=SECRET_KEY,
                                sync_mode=True)
    client.register("sw1", value=None, on_write=on_switch_changed)
    client.register("led", value=None)
    client.register("uptime", value=0)
    client.start()
    started = time.monotonic()
    while True:
        client["uptime"] = int(time.monotonic() - started)
        client.update()
        time.sleep(0.1)
