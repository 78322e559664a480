"""The local cloud's device database: ``devices.json`` in the work directory.

It holds devices (id, auth kind, attach variant, thing, timezone) and each thing's
last values.  Secrets are *not* stored: mosquitto's password file keeps only
their hashes, and the secret is shown once when the device is made.  Several
processes may use one work directory (``run`` in one terminal, ``add-device`` in
another), so every change is a read-modify-write under an exclusive ``flock``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, Optional

VARIANTS = ("event", "command", "both")
AUTHS = ("password", "cert")

# A thing id becomes part of topic names and of the broker's ACL file: no MQTT
# wildcards, slashes, spaces or control characters.
_SAFE_THING_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")


def check_thing_id(thing_id: str) -> str:
    """Return ``thing_id`` ("" = no thing) if it is safe in a topic and an ACL line, else raise ValueError."""
    if thing_id and not _SAFE_THING_ID.match(thing_id):
        raise ValueError("unsafe thing id %r (letters, digits and . _ : - only)" % thing_id)
    return thing_id


class Device:
    """A device known to the local cloud.

    Attributes: ``device_id``, ``auth`` ("password" or "cert"), ``variant``
    ("event", "command" or "both"), ``thing_id`` ("" = no thing), ``secret``
    (password devices, only in the process that created the device), ``keyfile``,
    ``certfile``, ``keyfile_der``, ``certfile_der`` (cert devices, paths as str),
    ``tz_offset``, ``tz_dst_until``, ``library_version`` (from DeviceBegin),
    ``connected`` (as the broker log says).
    """

    _SAVED = ("device_id", "auth", "variant", "thing_id", "keyfile", "certfile", "keyfile_der",
              "certfile_der", "tz_offset", "tz_dst_until", "created")

    def __init__(self, device_id: str, auth: str = "password", variant: str = "both", thing_id: str = "",
                 secret: Optional[str] = None, keyfile: Optional[str] = None, certfile: Optional[str] = None,
                 keyfile_der: Optional[str] = None, certfile_der: Optional[str] = None, tz_offset: int = 0,
                 tz_dst_until: int = 0, created: Optional[float] = None) -> None:
        if auth not in AUTHS:
            raise ValueError("auth must be one of %s, not %r" % (AUTHS, auth))
        if variant not in VARIANTS:
            raise ValueError("variant must be one of %s, not %r" % (VARIANTS, variant))
        self.device_id = device_id
        self.auth = auth
        self.variant = variant
        self.thing_id = thing_id
        self.secret = secret
        self.keyfile, self.certfile = keyfile, certfile
        self.keyfile_der, self.certfile_der = keyfile_der, certfile_der
        self.tz_offset, self.tz_dst_until = int(tz_offset), int(tz_dst_until)
        self.created = time.time() if created is None else created
        self.library_version: Optional[str] = None
        self.connected = False

    def to_json(self) -> Dict[str, Any]:
        """The stored form (never the secret)."""
        return {k: getattr(self, k) for k in self._SAVED}

    @classmethod
    def from_json(cls, data: Dict[str, Any]) -> "Device":
        """Rebuild from :meth:`to_json` output (unknown keys ignored)."""
        return cls(**{k: data[k] for k in cls._SAVED if k in data})

    @property
    def answers_events(self) -> bool:
        """Speaks the older variant (retained thing_id on e/i, shadow last values)."""
        return self.variant in ("event", "both")

    @property
    def answers_commands(self) -> bool:
        """Speaks the newer variant (c/up commands answered on c/dw)."""
        return self.variant in ("command", "both")

    def __repr__(self) -> str:
        return "Device(%s, auth=%s, variant=%s, thing=%r)" % (self.device_id, self.auth, self.variant, self.thing_id)


class Store:
    """``devices.json``: ``{"devices": {id: {...}}, "things": {thing_id: {"values": {...}}}}``."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lockfile = self.path.with_name(self.path.name + ".lock")

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self._lockfile, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _read(self) -> Dict[str, Any]:
        try:
            with open(self.path) as f:
                data = json.load(f)
        except FileNotFoundError:
            data = {}
        data.setdefault("devices", {})
        data.setdefault("things", {})
        return data

    def load(self) -> Dict[str, Any]:
        """A snapshot of the whole database."""
        with self._locked():
            return self._read()

    def update(self, change: Callable[[Dict[str, Any]], Any]) -> Any:
        """Apply ``change(data)`` to the database under the lock and save it; return its result."""
        with self._locked():
            data = self._read()
            result = change(data)
            tmp = self.path.with_name(self.path.name + ".tmp")
            with open(tmp, "w") as f:
                json.dump(data, f, indent=1, sort_keys=True)
            os.replace(tmp, self.path)
            return result

    def devices(self) -> Dict[str, Device]:
        """All devices, by id."""
        return {k: Device.from_json(v) for k, v in self.load()["devices"].items()}

    def save_device(self, dev: Device) -> None:
        """Insert or replace one device."""
        def change(data: Dict[str, Any]) -> None:
            data["devices"][dev.device_id] = dev.to_json()
        self.update(change)

    def save_values(self, things: Dict[str, Dict[str, Any]]) -> None:
        """Replace the stored last values of the given things (``{thing_id: {name: value}}``)."""
        def change(data: Dict[str, Any]) -> None:
            for thing_id, values in things.items():
                data["things"][thing_id] = {"values": values}
        self.update(change)
