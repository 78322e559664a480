# Type stubs for client.py.  The runtime module also runs on MicroPython,
# where annotations would cost memory on every board: the types live here.

from typing import Any, Awaitable, Callable, Coroutine, TypeVar, overload

from .records.kinds import _Kind, _Value
from .records.property import Property, _OnRead, _OnWrite
from .records.task import Task
from .ota.updater import OTA
from .sealing import SealingContext

DEFAULT_SERVER: str
PORT_PASSWORD: int
PORT_CERTIFICATE: int

_Record = TypeVar("_Record", bound=Property | Task)
# ssl_params: keyfile, certfile, cafile, cadata, module_path, pin, use_hsm, ... (README)
_SSLParams = dict[str, Any]
_Coro = Coroutine[Any, Any, Any] | Callable[..., Awaitable[Any]]

class ArduinoCloudClient:
    """A device connected to the Arduino IoT Cloud."""

    device_id: str
    async_mode: bool
    ntp_server: str
    ntp_timeout: float
    server: str
    port: int
    sealing: SealingContext | None
    ota: OTA | None
    # Connection events (set as attributes, as in paho-mqtt); None: not used.
    on_connect: Callable[[ArduinoCloudClient], Any] | None
    on_disconnect: Callable[[ArduinoCloudClient, BaseException | None], Any] | None
    on_attach: Callable[[ArduinoCloudClient], Any] | None
    def __init__(self, device_id: str | bytes, username: str | bytes | None = None,
                 password: str | bytes | None = None, ssl_params: _SSLParams | None = None,
                 server: str | None = None, port: int | None = None, keepalive: int = 10,
                 ntp_server: str = "pool.ntp.org", ntp_timeout: float = 3, sync_mode: bool = False,
                 transport: str = "socket", reconnect_cap: float = 64.0,
                 sealing: SealingContext | None = None, ota: OTA | None = None) -> None: ...
    # register("name", ...) makes a Property; a ready-made Property, composite
    # or Task is registered as it is and returned.
    @overload
    def register(self, aiotobj: str, coro: _Coro | None = None, *, value: _Value | None = None,
                 type: _Kind | None = None, on_read: _OnRead | None = None, on_write: _OnWrite | None = None,
                 interval: float | None = None, sealed: bool = False) -> Property: ...
    @overload
    def register(self, aiotobj: _Record, coro: _Coro | None = None) -> _Record: ...
    def __getitem__(self, name: str) -> Any: ...
    def __setitem__(self, name: str, value: Any) -> None: ...
    def __contains__(self, name: str) -> bool: ...
    def get(self, name: str, default: Any = None) -> Any: ...
    @property
    def connected(self) -> bool: ...
    @property
    def thing_id(self) -> str | None: ...
    def update_systime(self, server: str | None = None, timeout: float | None = None) -> bool: ...
    def update(self) -> None: ...
    def start(self, interval: float | None = None, backoff: float | None = None, *, timeout: float | None = None) -> None: ...
    def stop(self) -> None: ...
    def create_task(self, name: str, coro: _Coro, *args: Any) -> None: ...
    async def run(self, timeout: float | None = None) -> None: ...
