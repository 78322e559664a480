"""What the dashboard shows: JSON views of devices and properties (no I/O).

The cloud only sees values, not declared types, so the widget of a property is
chosen by the shape of its value: a bool is a switch, a number a slider and
number field, a string a text field, and a dict by its field names (a
Location's lat/lon, a Color's hue/sat/bri, ...).  A string that is a base64url
COSE message is a sealed value: shown locked, never written from the page.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from typing import Any, Dict, List, Optional, Tuple

from .. import writes
from ..writes import BadWrite, is_number  # noqa: F401 (the dashboard's server uses them from here)

_SAME = object()
CHART_POINTS = 120  # recent reports per numeric property sent with a snapshot

# Field sets of the composite types (arduino_iot_cloud.records), most specific first.
COMPOSITES: Tuple[Tuple[str, frozenset], ...] = (
    ("television", frozenset(("swi", "vol", "mut", "pbc", "inp", "cha"))),
    ("schedule", frozenset(("frm", "to", "len", "msk"))),
    ("colored_light", frozenset(("swi", "hue", "sat", "bri"))),
    ("color", frozenset(("hue", "sat", "bri"))),
    ("dimmed_light", frozenset(("swi", "bri"))),
    ("location", frozenset(("lat", "lon"))),
)

# Device events that mean the device itself was heard from (the rest come from the cloud).
DEVICE_KINDS = frozenset(("connect", "disconnect", "subscribe", "unsubscribe", "device_begin", "thing_begin",
                          "last_values", "timezone_request", "command", "values", "shadow", "bad_command",
                          "bad_values", "bad_shadow"))

_B64URL = re.compile(r"^[A-Za-z0-9_-]{16,}={0,2}$")
# How the tagged COSE structures (RFC 9052) begin: the tag (Encrypt0 16, Mac0 17, Sign1 18,
# Encrypt 96, MAC 97, Sign 98) and the array that follows it; the array's first item, the
# protected header, is a byte string.
_COSE_STARTS = (b"\xd0\x83", b"\xd1\x84", b"\xd2\x84", b"\xd8\x60\x84", b"\xd8\x61\x85", b"\xd8\x62\x84")


def is_sealed(value: Any) -> bool:
    """True for a string that decodes as base64url into a COSE message."""
    if not isinstance(value, str) or not _B64URL.match(value):
        return False
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        return False
    for start in _COSE_STARTS:
        if raw.startswith(start) and len(raw) > len(start) and 0x40 <= raw[len(start)] <= 0x5f:
            return True
    return False


def widget(value: Any) -> str:
    """The widget kind for a value: switch, number, text, sealed, a composite's name,
    fields (an unknown dict) or none (no value yet)."""
    if isinstance(value, bool):
        return "switch"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "sealed" if is_sealed(value) else "text"
    if isinstance(value, dict):
        keys = frozenset(value)
        for kind, fields in COMPOSITES:
            if fields <= keys:
                return kind
        return "fields"
    return "none"


def jsonable(value: Any) -> Any:
    """``value`` with what JSON cannot carry made printable: NaN and infinities as
    strings, bytes as hex, other objects by repr."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).hex()
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return repr(value)


def chart_points(history: List[Tuple[float, Any]]) -> List[List[float]]:
    """The last CHART_POINTS numeric reports as ``[time, value]`` pairs."""
    return [[t, v] for t, v in history if is_number(v)][-CHART_POINTS:]


def properties(values: Dict[str, Any]) -> List[Dict[str, Any]]:
    """Each property as ``{"name", "value", "widget"}``, sorted by name."""
    return [{"name": name, "value": jsonable(values[name]), "widget": widget(values[name])}
            for name in sorted(values)]


def device(state: Dict[str, Any], last_seen: Optional[float]) -> Dict[str, Any]:
    """A device row and its properties, from the emulator's ``state()`` snapshot.

    ``sha256``: the SHA-256 of the application the device last reported (OtaBeginUp; the
    emulator's ``ota_sha``), None until it reports one.
    """
    return {
        "device_id": state["device_id"], "auth": state["auth"], "variant": state["variant"],
        "thing_id": state["thing_id"], "connected": bool(state["connected"]),
        "library_version": jsonable(state.get("library_version")), "last_seen": last_seen,
        "sha256": jsonable(state.get("ota_sha")), "properties": properties(state.get("values") or {}),
    }


# -- checking writes --------------------------------------------------------------------------


def check_write(name: str, value: Any, current: Any, reported: Any = _SAME) -> Any:
    """The value to write to property ``name`` from the page, or BadWrite.

    ``current`` is the cloud's stored value, ``reported`` the device's last report (the
    type reference, see localcloud/writes.py; ``current`` when not given).  Sealed values
    are written only by whoever holds the key, never from the dashboard.
    """
    if widget(current) == "sealed" or (reported is not _SAME and widget(reported) == "sealed"):
        raise BadWrite("%s holds a sealed value: it cannot be written from the dashboard" % name)
    return writes.check_write(name, value, current if reported is _SAME else reported)
