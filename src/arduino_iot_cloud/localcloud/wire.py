"""The cloud side of the wire format: SenML CBOR and device commands, on cbor2.

Deliberately independent of the device library's own codec (``arduino_iot_cloud.senml``,
``.commands``, ``.cbor``), so that a bug there cannot hide itself in tests that use
the local cloud to check the device.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import cbor2

# SenML labels (RFC 8428 section 6)
BVER, BN, BT, BU, BV, BS = -1, -2, -3, -4, -5, -6
N, U, V, VS, VB, S, T, UT, VD = 0, 1, 2, 3, 4, 5, 6, 7, 8

# Command tags (docs/protocol.md, "Commands")
OTA_BEGIN_UP = 0x010000
OTA_UPDATE_DOWN = 0x010100
OTA_PROGRESS_UP = 0x010200
THING_BEGIN = 0x010300
THING_UPDATE = 0x010400
LAST_VALUES_BEGIN = 0x010500
LAST_VALUES_UPDATE = 0x010600
DEVICE_BEGIN = 0x010700
TIMEZONE_UP = 0x010800
TIMEZONE_DOWN = 0x010900
THING_DETACH = 0x011000

COMMAND_NAMES = {
    OTA_BEGIN_UP: "ota_begin", OTA_UPDATE_DOWN: "ota_update", OTA_PROGRESS_UP: "ota_progress",
    THING_BEGIN: "thing_begin", THING_UPDATE: "thing_update", LAST_VALUES_BEGIN: "last_values_begin",
    LAST_VALUES_UPDATE: "last_values_update", DEVICE_BEGIN: "device_begin", TIMEZONE_UP: "timezone_up",
    TIMEZONE_DOWN: "timezone_down", THING_DETACH: "thing_detach",
}


class WireError(ValueError):
    """A payload that is not valid SenML CBOR or not a command."""


# -- SenML ------------------------------------------------------------------------------------

def _value_record(name: str, value: Any) -> Dict[int, Any]:
    if isinstance(value, bool):
        return {N: name, VB: value}
    if isinstance(value, (int, float)):
        return {N: name, V: value}
    if isinstance(value, str):
        return {N: name, VS: value}
    raise TypeError("cannot send %r (%s) as a SenML value" % (value, type(value).__name__))


def records_for(values: Dict[str, Any]) -> List[Dict[int, Any]]:
    """SenML records for ``{name: value}``; a dict value becomes ``name:field`` records."""
    out: List[Dict[int, Any]] = []
    for name, value in values.items():
        if isinstance(value, dict):
            out.extend(_value_record("%s:%s" % (name, field), v) for field, v in value.items())
        else:
            out.append(_value_record(name, value))
    return out


def encode_senml(values: Dict[str, Any]) -> bytes:
    """Encode ``{name: value}`` as a definite SenML CBOR array (floats as doubles)."""
    return cbor2.dumps(records_for(values))


def decode_senml(payload: bytes) -> List[Tuple[str, Any, Optional[float]]]:
    """Decode a SenML CBOR pack into ``(name, value, time)`` with base fields resolved.

    Records without a value are skipped.  ``time`` is ``bt + t`` or None.
    Raises WireError for anything that is not an array of maps.
    """
    try:
        pack = cbor2.loads(payload)
    except Exception as exc:  # cbor2 raises several types; all mean "not CBOR"
        raise WireError("not CBOR: %s" % exc) from exc
    if not isinstance(pack, list):
        raise WireError("SenML pack is not an array: %r" % (pack,))
    out = []
    bn, bt, bv = "", None, None
    for rec in pack:
        if not isinstance(rec, dict):
            raise WireError("SenML record is not a map: %r" % (rec,))
        if BN in rec:
            bn = rec[BN]
        if BT in rec:
            bt = rec[BT]
        if BV in rec:
            bv = rec[BV]
        name = bn + rec.get(N, "")
        t = rec.get(T)
        when = (bt or 0) + (t or 0) if (bt is not None or t is not None) else None
        if V in rec:
            value: Any = rec[V] + bv if bv is not None else rec[V]
        elif VS in rec:
            value = rec[VS]
        elif VB in rec:
            value = rec[VB]
        elif VD in rec:
            value = rec[VD]
        elif bv is not None and N in rec:
            value = bv
        else:
            continue
        out.append((name, value, when))
    return out


def group_values(records: List[Tuple[str, Any, Optional[float]]]) -> Dict[str, Any]:
    """Fold decoded records into ``{name: value}``; ``name:field`` records into dicts."""
    values: Dict[str, Any] = {}
    for name, value, _ in records:
        if ":" in name and name != "r:m":
            prop, field = name.split(":", 1)
            if not isinstance(values.get(prop), dict):
                values[prop] = {}
            values[prop][field] = value
        else:
            values[name] = value
    return values


# -- commands ---------------------------------------------------------------------------------

def encode_command(tag: int, fields: List[Any]) -> bytes:
    """A command: CBOR tag ``tag`` wrapping the array ``fields``."""
    return cbor2.dumps(cbor2.CBORTag(tag, list(fields)))


def decode_command(payload: bytes) -> Tuple[int, List[Any]]:
    """Decode a command into ``(tag, fields)``; raise WireError if it is not a tagged array."""
    try:
        obj = cbor2.loads(payload)
    except Exception as exc:
        raise WireError("not CBOR: %s" % exc) from exc
    # cbor2 may hand the array inside a tag back as a tuple
    if not isinstance(obj, cbor2.CBORTag) or not isinstance(obj.value, (list, tuple)):
        raise WireError("command is not a tagged array: %r" % (obj,))
    return obj.tag, list(obj.value)


def thing_update(thing_id: str) -> bytes:
    """ThingUpdateCmd: the device's (new) thing; "" = no thing."""
    return encode_command(THING_UPDATE, [thing_id])


def thing_detach(thing_id: str) -> bytes:
    """ThingDetachCmd for ``thing_id``."""
    return encode_command(THING_DETACH, [thing_id])


def last_values_update(values: Dict[str, Any]) -> bytes:
    """LastValuesUpdateCmd: a byte string holding the SenML CBOR of ``values``."""
    return encode_command(LAST_VALUES_UPDATE, [encode_senml(values)])


def timezone_down(offset: int, until: int) -> bytes:
    """TimezoneCommandDown: UTC offset in seconds, and until when it holds (unix seconds)."""
    return encode_command(TIMEZONE_DOWN, [int(offset), int(until)])


def device_info(thing_id: str, tz_offset: int, tz_dst_until: int) -> bytes:
    """The pack the older variant sends on ``/a/d/<dev>/e/i``."""
    return cbor2.dumps([{N: "thing_id", VS: thing_id}, {N: "tz_offset", V: int(tz_offset)},
                        {N: "tz_dst_until", V: int(tz_dst_until)}])


def is_get_last_values(records: List[Tuple[str, Any, Optional[float]]]) -> bool:
    """True for ``[{"n": "r:m", "vs": "getLastValues"}]``."""
    return any(name == "r:m" and value == "getLastValues" for name, value, _ in records)
