# Type stubs for task.py.

from typing import Any, Callable

from ..client import ArduinoCloudClient

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
