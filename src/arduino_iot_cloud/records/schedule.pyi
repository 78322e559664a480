# Type stubs for schedule.py.

from typing import Any, Callable

from ..client import ArduinoCloudClient
from .property import Composite

def day_and_month(t: int) -> tuple[int, int]: ...

class Schedule(Composite):
    """frm, to: unix seconds; len: seconds; msk: the repetition (see schedule.py)."""

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
