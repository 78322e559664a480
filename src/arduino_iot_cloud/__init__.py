"""Arduino IoT Cloud client for CPython and MicroPython.

Compatible with the API of arduino-iot-cloud 1.4.1: ArduinoCloudClient,
Task, the composite types and CADATA.
"""

from .cadata import CADATA  # noqa: F401
from .client import ArduinoCloudClient  # noqa: F401
from .errors import (  # noqa: F401
    AttachTimeout, CloudError, ConfigError, ConnectRefused, DecodeError, LocalError, RemoteError, SubscribeRefused,
    TLSError, TransportError, UnsealError, ValueTypeError,
)
from .records import Property, Task  # noqa: F401
from .version import __version__  # noqa: F401

# 1.4.1 exported the property class under this name.
ArduinoCloudObject = Property

# Imported on first use (records/__init__.py): a device that registers no
# composite does not load them.
_COMPOSITES = ("Color", "ColoredLight", "DimmedLight", "Location", "Schedule", "Television")

# What `from arduino_iot_cloud import *` gives, the composites included (CPython
# asks __getattr__ for them).
__all__ = ("CADATA", "ArduinoCloudClient", "ArduinoCloudObject", "Property", "Task", "__version__",
           "AttachTimeout", "CloudError", "ConfigError", "ConnectRefused", "DecodeError", "LocalError",
           "RemoteError", "SubscribeRefused", "TLSError", "TransportError", "UnsealError",
           "ValueTypeError") + _COMPOSITES


def __getattr__(name):
    # SealingContext is imported on first use, so a device without sealed
    # properties does not load it.  MicroPython asks here before it imports a
    # submodule (`from arduino_iot_cloud import se05x`): import it then.
    if name == "SealingContext":
        from .sealing import SealingContext

        return SealingContext
    if name in _COMPOSITES:
        from . import records

        return getattr(records, name)
    if not name.startswith("_"):
        try:
            __import__("arduino_iot_cloud." + name)
            return globals()[name]
        except ImportError as e:
            if "arduino_iot_cloud." + name not in str(e):
                raise  # the submodule exists but needs something missing: say what
    raise AttributeError("module 'arduino_iot_cloud' has no attribute '%s'" % name)
