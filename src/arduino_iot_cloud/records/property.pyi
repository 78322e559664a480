# Type stubs for property.py.  The runtime module also runs on MicroPython,
# where annotations would cost memory on every board: the types live here.

from typing import Any, Callable, Iterable, Sequence

from ..client import ArduinoCloudClient

# What register(type=...) accepts.
_Kind = type[bool] | type[int] | type[float] | type[str] | type[bytes]
_Value = bool | int | float | str | bytes
# on_read(client) returns the new value (None: unchanged); on_write(client, value).
_OnRead = Callable[[ArduinoCloudClient], Any]
_OnWrite = Callable[[ArduinoCloudClient, Any], object]

RESERVED_NAMES: tuple[str, ...]

def coerce(kind: _Kind | None, value: Any) -> Any: ...
def kind_of(value: Any) -> _Kind: ...
def declared_kind(name: str, kind: _Kind | None, value: Any,
                  kinds: Sequence[_Kind] = ...) -> tuple[_Kind | None, Any]: ...
def day_and_month(t: int) -> tuple[int, int]: ...

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

class Location(Composite):
    lat: float | None
    lon: float | None

class Color(Composite):
    hue: float | None
    sat: float | None
    bri: float | None

class ColoredLight(Composite):
    swi: bool | None
    hue: float | None
    sat: float | None
    bri: float | None

class DimmedLight(Composite):
    swi: bool | None
    bri: float | None

class Television(Composite):
    swi: bool | None
    vol: int | None
    mut: bool | None
    pbc: int | None
    inp: int | None
    cha: int | None
    PLAYBACK_FASTFORWARD: int
    PLAYBACK_NEXT: int
    PLAYBACK_PAUSE: int
    PLAYBACK_PLAY: int
    PLAYBACK_PREVIOUS: int
    PLAYBACK_REWIND: int
    PLAYBACK_STARTOVER: int
    PLAYBACK_STOP: int
    PLAYBACK_NONE: int

class Schedule(Composite):
    """frm, to: unix seconds; len: seconds; msk: the repetition (see records.py)."""

    frm: int | None
    to: int | None
    len: int | None
    msk: int | None
    on_active: Callable[[ArduinoCloudClient, Schedule], object] | None
    active: bool
    clock: Callable[[], int] | None
    def __init__(self, name: str, on_active: Callable[[ArduinoCloudClient, Schedule], object] | None = None,
                 **kwargs: Any) -> None: ...
    def is_active(self, now: int) -> bool: ...

class Task:
    """User code run every `interval` seconds: on_run(client) or on_run(client, args)."""

    name: str
    on_run: Callable[..., object]
    args: Any
    interval_ms: int
    next_run: int
    dirty: bool
    def __init__(self, name: str, on_run: Callable[..., object] | None = None, interval: float = 1.0,
                 args: Any = None, **kwargs: Any) -> None: ...
    def run(self, client: ArduinoCloudClient) -> None: ...
    def records(self) -> tuple[()]: ...

class Registry:
    """Records by name (the client's; not needed by scripts)."""

    records: dict[str, Property | Task]
    def __init__(self) -> None: ...
    def add(self, record: Property | Task) -> None: ...
    def __contains__(self, name: str) -> bool: ...
    def get(self, name: str) -> Property | Task: ...
    def lookup(self, name: str, short_name: str | None = None) -> tuple[Property | None, str | None]: ...
    def apply(self, decoded: Iterable[tuple[str, str | None, Any, Any]], client: ArduinoCloudClient | None,
              last_values: bool = False) -> list[Property]: ...
    def queue(self, record: Property) -> None: ...
    def changes(self) -> Sequence[tuple[str, Any]]: ...
    def run_due(self, client: ArduinoCloudClient, now: int) -> int | None: ...
