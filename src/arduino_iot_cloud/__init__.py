"""Arduino IoT Cloud client for CPython and MicroPython.

Compatible with the API of arduino-iot-cloud 1.4.1: ArduinoCloudClient,
Task, the composite types and CADATA.
"""

from .cadata import CADATA  # noqa: F401
from .client import ArduinoCloudClient  # noqa: F401
from .errors import (  # noqa: F401
    CloudError, ConfigError, ConnectRefused, DecodeError, LocalError, RemoteError, SubscribeRefused, TLSError,
    TransportError,
)
from .records import (  # noqa: F401
    Color, ColoredLight, DimmedLight, Location, Property, Schedule, Task, Television, ValueTypeError,
)
from .version import __version__  # noqa: F401

# 1.4.1 exported the property class under this name.
ArduinoCloudObject = Property
