# A small device application updated over the air: pack this directory
# (python -m arduino_iot_cloud.ota pack examples/ota_app -o app.ota), install
# it once, run it with examples/ota_device.py, then send newer versions with
# the local cloud's `ota` command.  It reports its VERSION as a property.
# Settings come from the environment (on a board: edit the defaults).
import time

from arduino_iot_cloud import ArduinoCloudClient
from arduino_iot_cloud.ota import OTA

VERSION = 1

try:
    from os import getenv
except ImportError:
    def getenv(name, default=None):
        return default

try:
    import logging

    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s %(message)s", level=logging.INFO)
except ImportError:  # MicroPython without logging: warnings and errors are printed
    pass


def on_request(client, request):
    # Approve every update; a real device might wait until it is idle.
    print("OTA update offered; approving it")
    return True


def setting(name, default):
    value = getenv(name)
    return default if value is None else int(value)


ota = OTA(getenv("OTA_ROOT") or "/ota", on_request=on_request,
          trial_boots=setting("OTA_TRIAL_BOOTS", 3), trial_seconds=setting("OTA_TRIAL_SECONDS", 300),
          chunk_size=setting("OTA_CHUNK", 0) or None, retries=setting("OTA_RETRIES", 5),
          retry_ms=setting("OTA_RETRY_MS", 1000))
device_id = getenv("DEVICE_ID")
client = ArduinoCloudClient(device_id=device_id, username=device_id, password=getenv("SECRET_KEY"),
                            sync_mode=getenv("SYNC") == "1", ota=ota)
client.register("version", value=VERSION)
print("application version %d starting" % VERSION)
client.start()  # async mode: runs until the process ends
while True:     # sync mode: start() returned once attached
    client.update()
    time.sleep(0.005)
