# Every property type, on_read with an interval, and a user Task, written the
# way 1.4.1's examples/example.py writes them.  Client certificate or
# password, from the environment:
#   DEVICE_ID=... SECRET_KEY=...              (password, port 8884)
#   DEVICE_ID=... KEY_PATH=... CERT_PATH=...  (client certificate, port 8885)
import logging
import os
import time
from random import uniform

from arduino_iot_cloud import (
    ArduinoCloudClient, ColoredLight, DimmedLight, Location, Schedule, Task, Television,
)

DEVICE_ID = os.getenv("DEVICE_ID")
SECRET_KEY = os.getenv("SECRET_KEY")
KEY_PATH = os.getenv("KEY_PATH")
CERT_PATH = os.getenv("CERT_PATH")


def on_switch_changed(client, value):
    client["led"] = value


def on_clight_changed(client, clight):
    logging.info("ColoredLight changed: swi=%s hue=%s sat=%s bri=%s", clight.swi, clight.hue, clight.sat, clight.bri)


def user_task(client, args):
    # Must not block: it runs inside the client's loop.
    client["clight"].hue = round(uniform(0, 100), 1)
    client["clight"].bri = round(uniform(0, 100), 1)


if __name__ == "__main__":
    logging.basicConfig(format="%(asctime)s %(levelname)s %(message)s", level=logging.INFO)
    if KEY_PATH:
        client = ArduinoCloudClient(device_id=DEVICE_ID, ssl_params={"keyfile": KEY_PATH, "certfile": CERT_PATH})
    else:
        client = ArduinoCloudClient(device_id=DEVICE_ID, username=DEVICE_ID, password=SECRET_KEY)
    client.register("sw1", value=None, on_write=on_switch_changed, interval=0.250)
    client.register("led", value=None)
    client.register("clk", value=None, on_read=lambda c: time.strftime("%H:%M:%S"), interval=1.0)
    client.register("temperature", value=21.5, on_read=lambda c: round(uniform(20, 25), 2), interval=2.0)
    client.register("counter", value=0, on_write=lambda c, v: logging.info("counter set to %d", v))
    client.register(ColoredLight("clight", swi=True, hue=0, sat=50, bri=50, on_write=on_clight_changed))
    client.register(DimmedLight("dimmer", swi=False, bri=10))
    client.register(Location("treasureisland", lat=31.264694, lon=29.979987))
    client.register(Television("tv", swi=False, vol=10, mut=False, pbc=Television.PLAYBACK_STOP, inp=16, cha=1))
    client.register(Schedule("schedule", on_active=lambda c, v: logging.info("schedule active: %s", v)))
    client.register(Task("user_task", on_run=user_task, interval=1.0))
    client.start()
