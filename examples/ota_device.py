# Launcher for an application that is updated over the air (README,
# "Over-the-air updates").  It runs the application installed under OTA_ROOT:
# app_dir() picks the active slot (and rolls back a new version that keeps
# failing to attach), then the application's main module is imported from it.
# Install the first version with
#   python -m arduino_iot_cloud.ota install OTA_ROOT app.ota
# Runs on CPython and on MicroPython (as main.py on a board, OTA_ROOT "/ota").
# On the MicroPython unix port an update ends the process with status 0: run it
# under a supervisor that starts it again (a shell loop, systemd Restart=).
import sys

from arduino_iot_cloud.ota import app_dir

try:
    from os import getenv
except ImportError:  # a board has no environment
    def getenv(name, default=None):
        return default

ROOT = getenv("OTA_ROOT") or "/ota"

path = app_dir(ROOT)
if path is None:
    print("no application under %s: python -m arduino_iot_cloud.ota install %s app.ota" % (ROOT, ROOT))
    sys.exit(1)
sys.path.insert(0, path)
import main  # noqa: E402,F401  (the application runs as it is imported)
