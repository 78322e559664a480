# The minimal example of arduino-iot-cloud 1.4.1, unchanged apart from where
# the credentials come from: a switch on the dashboard drives an LED.
#
# Run it against the local cloud (see README.md) or the real one:
#   DEVICE_ID=... SECRET_KEY=... python examples/basic.py
import logging
import os

from arduino_iot_cloud import ArduinoCloudClient

DEVICE_ID = os.getenv("DEVICE_ID")
SECRET_KEY = os.getenv("SECRET_KEY")


def on_switch_changed(client, value):
    # The client passed in can read and change any registered property.
    client["led"] = value


if __name__ == "__main__":
    logging.basicConfig(format="%(asctime)s %(levelname)s %(message)s", level=logging.INFO)
    client = ArduinoCloudClient(device_id=DEVICE_ID, username=DEVICE_ID, password=SECRET_KEY)
    client.register("sw1", value=None, on_write=on_switch_changed)
    client.register("led", value=None)
    client.start()
