# Type stubs for sealing/__init__.py: the public SealingContext only.

from typing import Any

class SealingContext:
    sender_id: bytes
    recipient_id: bytes
    backend: Any
    state: Any
    def __init__(self, master_secret: bytes, sender_id: bytes, recipient_id: bytes, master_salt: bytes = b"",
                 state_path: str | None = None, volatile: bool = False, new_state: bool = False,
                 backend: Any = None) -> None: ...
    @classmethod
    def from_file(cls, path: str, backend: Any = None) -> SealingContext: ...
    def seal(self, name: str, value: bool | int | float | str) -> str: ...
    def open(self, name: str, text: str) -> tuple[bool | int | float | str, bool]: ...
    def unseal(self, name: str, text: str) -> bool | int | float | str: ...
