# Type stubs for property.py.  The runtime module also runs on MicroPython,
# where annotations would cost memory on every board: the types live here.

from typing import Any, Callable

from ..client import ArduinoCloudClient
from .kinds import _Kind, _Value
from .registry import Registry

# on_read(client) returns the new value (None: unchanged); on_write(client, value).
_OnRead = Callable[[ArduinoCloudClient], Any]
_OnWrite = Callable[[ArduinoCloudClient, Any], object]

RESERVED_NAMES: tuple[str, ...]

class Property:
    """A plain property: bool, int, float, str or bytes."""

    name: str
    kind: type | None
    value: Any
    dirty: bool
    registry: Registry | None
    on_read: _OnRead | None
    on_write: _OnWrite | None
    interval_ms: int
    next_run: int
    def __init__(self, name: str, value: _Value | None = None, on_read: _OnRead | None = None,
                 on_write: _OnWrite | None = None, interval: float | None = None,
                 type: _Kind | None = None) -> None: ...
    @property
    def initialized(self) -> bool: ...
    def set(self, value: Any) -> None: ...
    def apply_remote(self, field: str | None, value: Any, last_values: bool) -> bool | None: ...
    def records(self) -> tuple[tuple[str, Any], ...]: ...
    def run(self, client: ArduinoCloudClient) -> None: ...
    def written(self, client: ArduinoCloudClient) -> None: ...

class Composite(Property):
    """A property made of named fields (None until the cloud or the device sets them)."""

    FIELDS: tuple[tuple[str, type], ...]
    def __init__(self, name: str, on_read: _OnRead | None = None, on_write: _OnWrite | None = None,
                 interval: float | None = None, value: dict[str, Any] | None = None, **fields: Any) -> None: ...
    def __contains__(self, field: str) -> bool: ...
    def as_dict(self) -> dict[str, Any]: ...
