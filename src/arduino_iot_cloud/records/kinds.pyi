# Type stubs for kinds.py.  The runtime module also runs on MicroPython,
# where annotations would cost memory on every board: the types live here.

from typing import Any, Sequence

# What register(type=...) accepts.
_Kind = type[bool] | type[int] | type[float] | type[str] | type[bytes]
_Value = bool | int | float | str | bytes

def coerce(kind: _Kind | None, value: Any) -> Any: ...
def kind_of(value: Any) -> _Kind: ...
def declared_kind(name: str, kind: _Kind | None, value: Any,
                  kinds: Sequence[_Kind] = ...) -> tuple[_Kind | None, Any]: ...
