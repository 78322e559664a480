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


def is_number(value: Any) -> bool:
    """A finite int or float, not a bool: what a chart can draw."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


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

class BadWrite(ValueError):
    """A write the dashboard refuses; the message says why."""


def check_write(name: str, value: Any, current: Any) -> Any:
    """The value to write to property ``name`` now holding ``current``, or BadWrite.

    A value must keep the property's kind (a switch takes true/false, a number a
    number, ...); a composite takes some of its own fields; sealed values are
    written only by whoever holds the key, never from the dashboard.
    """
    if not isinstance(name, str) or not name or len(name) > 256:
        raise BadWrite("a property name is a non-empty string")
    kind = widget(current)
    if kind == "sealed":
        raise BadWrite("%s holds a sealed value: it cannot be written from the dashboard" % name)
    if isinstance(value, dict):
        if current is not None and not isinstance(current, dict):
            raise BadWrite("%s is a %s, not a composite" % (name, kind))
        if not value:
            raise BadWrite("write at least one field of %s" % name)
        for field, v in value.items():
            if isinstance(current, dict) and field not in current:
                raise BadWrite("%s has no field %r (fields: %s)" % (name, field, ", ".join(sorted(current))))
            if not _scalar(v):
                raise BadWrite("field %s:%s takes a bool, a number or a string" % (name, field))
            if isinstance(current, dict) and current[field] is not None and _kind(v) != _kind(current[field]):
                raise BadWrite("field %s:%s is a %s, not a %s" % (name, field, _kind(current[field]), _kind(v)))
        return {field: _same_number_type(v, current.get(field) if isinstance(current, dict) else None)
                for field, v in value.items()}
    if not _scalar(value):
        raise BadWrite("%s takes a bool, a number, a string or a dict of fields" % name)
    if isinstance(current, dict):
        raise BadWrite("%s is a composite: write a dict of its fields" % name)
    if current is not None and _kind(value) != _kind(current):
        raise BadWrite("%s is a %s, not a %s" % (name, _kind(current), _kind(value)))
    return _same_number_type(value, current)


def _same_number_type(value: Any, current: Any) -> Any:
    """A number of the current value's type: JSON from a page cannot tell 22 from 22.0, so a
    whole number sent for a float becomes a float, and a whole float sent for an int an int;
    a fraction for an int is refused."""
    if isinstance(value, bool) or isinstance(current, bool):
        return value
    if isinstance(current, float) and isinstance(value, int):
        return float(value)
    if isinstance(current, int) and isinstance(value, float):
        if not value.is_integer():
            raise BadWrite("%r is not a whole number, and the property holds one (%d)" % (value, current))
        return int(value)
    return value


def _scalar(v: Any) -> bool:
    return isinstance(v, (bool, str)) or is_number(v)


def _kind(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    return type(v).__name__
