# Over-the-air updates of the device's application (README, "Over-the-air updates").
#
#   from arduino_iot_cloud.ota import OTA, app_dir
#   client = ArduinoCloudClient(..., ota=OTA("/ota"))
#   path = app_dir("/ota")   # in a launcher: the application to run, or None
#
# updater.py: the OTA object (commands, states, reports); download.py: HTTPS
# in Range requests; otafile.py, lzss.py, tar.py: reading an OTA file;
# install.py, slots.py: the slots and the pointer file under root.

from .install import install_file  # noqa: F401
from .slots import app_dir  # noqa: F401
from .updater import OTA  # noqa: F401
