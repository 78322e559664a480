# Type stubs for the package (the runtime __init__.py imports SealingContext on
# first use, which a type checker cannot see).

from .cadata import CADATA as CADATA
from .client import ArduinoCloudClient as ArduinoCloudClient
from .errors import (
    AttachTimeout as AttachTimeout,
    CloudError as CloudError,
    ConfigError as ConfigError,
    ConnectRefused as ConnectRefused,
    DecodeError as DecodeError,
    LocalError as LocalError,
    RemoteError as RemoteError,
    SubscribeRefused as SubscribeRefused,
    TLSError as TLSError,
    TransportError as TransportError,
    UnsealError as UnsealError,
    ValueTypeError as ValueTypeError,
)
from .records import (
    Color as Color,
    ColoredLight as ColoredLight,
    DimmedLight as DimmedLight,
    Location as Location,
    Property as Property,
    Schedule as Schedule,
    Task as Task,
    Television as Television,
)
from .sealing import SealingContext as SealingContext
from .version import __version__ as __version__

ArduinoCloudObject = Property
