# Device commands (docs/protocol.md, "Commands"): a CBOR tag number wrapping an array.
#
# Theory of operation
# -------------------
# Device-to-cloud commands (published on /a/d/<device>/c/up) are built by the
# small encoder functions below.  Cloud-to-device commands (arriving on
# .../c/dw) go through decode_down(), which is strict, like the C++ decoder:
# the payload must be exactly one tag whose number is a known cloud-to-device
# command, wrapping an array with exactly the fields of that command's schema
# (_DOWN), each of the right type.  Anything else (not CBOR, untagged, unknown
# tag, a device-to-cloud tag, missing/extra fields, wrong types, a thing id
# that is unsafe in an MQTT topic) raises errors.DecodeError and nothing is
# returned, so a caller never acts on half a command.  decode_down() is a pure
# function; acting on a command is the session's job.
#
# Tags are duck-typed (.tag and .value), so both cbor2.CBORTag and our
# cbor.Tag work, whichever compat picked.

import time

from . import compat
from .compat import const
from .errors import DecodeError, LocalError

OTA_BEGIN_UP = const(0x010000)
OTA_UPDATE_DOWN = const(0x010100)
OTA_PROGRESS_UP = const(0x010200)
THING_BEGIN = const(0x010300)
THING_UPDATE = const(0x010400)
LAST_VALUES_BEGIN = const(0x010500)
LAST_VALUES_UPDATE = const(0x010600)
DEVICE_BEGIN = const(0x010700)
TIMEZONE_UP = const(0x010800)
TIMEZONE_DOWN = const(0x010900)
THING_DETACH = const(0x011000)

NAMES = {
    OTA_BEGIN_UP: "OtaBeginUp",
    OTA_UPDATE_DOWN: "OtaUpdateCmdDown",
    OTA_PROGRESS_UP: "OtaProgressCmdUp",
    THING_BEGIN: "ThingBeginCmd",
    THING_UPDATE: "ThingUpdateCmd",
    LAST_VALUES_BEGIN: "LastValuesBeginCmd",
    LAST_VALUES_UPDATE: "LastValuesUpdateCmd",
    DEVICE_BEGIN: "DeviceBeginCmd",
    TIMEZONE_UP: "TimezoneCommandUp",
    TIMEZONE_DOWN: "TimezoneCommandDown",
    THING_DETACH: "ThingDetachCmd",
}

THING_ID_MAX = const(128)

# OtaProgressCmdUp states (sent as CBOR simple values, not integers).
OTA_RESUME = const(0)
OTA_BEGIN = const(1)
OTA_IDLE = const(2)
OTA_AVAILABLE = const(3)
OTA_START = const(4)
OTA_FETCH = const(5)
OTA_FLASH = const(6)
OTA_REBOOT = const(7)
OTA_FAIL = const(8)
OTA_UNAVAILABLE = const(9)
OTA_STATE_NAMES = ("Resume", "OtaBegin", "Idle", "OtaAvailable", "StartOTA", "Fetch", "FlashOTA", "Reboot",
                   "Fail", "OTAUnavailable")

# Field kinds of the cloud-to-device schemas.
_THING_ID = const(0)  # text, safe to put into a topic name (may be empty)
_TEXT = const(1)
_BYTES = const(2)  # any length
_BYTES16 = const(3)
_BYTES32 = const(4)
_INT32 = const(5)  # a signed 32-bit integer (not a bool)
_UINT32 = const(6)  # an unsigned 32-bit integer (not a bool)

_DOWN = {
    THING_UPDATE: (_THING_ID,),
    THING_DETACH: (_THING_ID,),
    LAST_VALUES_UPDATE: (_BYTES,),
    TIMEZONE_DOWN: (_INT32, _UINT32),  # offset s, dst_until unix s
    OTA_UPDATE_DOWN: (_BYTES16, _TEXT, _BYTES32, _BYTES32),  # id, url, initial sha256, final sha256
}


def _encode(tag, fields):
    return compat.cbor_dumps(compat.CBORTag(tag, fields))


def _text_arg(what, x):
    if not isinstance(x, str):
        raise LocalError("%s must be a str, not %s" % (what, type(x).__name__))
    return x


def device_begin(lib_version):
    """DeviceBeginCmd [lib_version]: the library version string."""
    return _encode(DEVICE_BEGIN, [_text_arg("lib_version", lib_version)])


def thing_begin(thing_id=""):
    """ThingBeginCmd [thing_id]: "" when the device knows no thing yet."""
    return _encode(THING_BEGIN, [_text_arg("thing_id", thing_id)])


def last_values_begin():
    """LastValuesBeginCmd []: ask for the last stored value of every property."""
    return _encode(LAST_VALUES_BEGIN, [])


def timezone_up():
    """TimezoneCommandUp []: ask for the timezone offset and its end."""
    return _encode(TIMEZONE_UP, [])


def _bytes_arg(what, x, size):
    if not isinstance(x, (bytes, bytearray)) or len(x) != size:
        raise LocalError("%s must be %d bytes" % (what, size))
    return bytes(x)


def ota_begin_up(sha256):
    """OtaBeginUp [sha256]: the running application's SHA-256 (32 zero bytes: none)."""
    return _encode(OTA_BEGIN_UP, [_bytes_arg("sha256", sha256, 32)])


# Boards whose clock counts from 2000 (older MicroPython ports) report Unix time all the same.
_EPOCH_OFFSET = 946684800 if time.gmtime(0)[0] == 2000 else 0


def unix_time_us():
    """Now, in Unix microseconds (OtaProgressCmdUp's time)."""
    return int((time.time() + _EPOCH_OFFSET) * 1000000)


def ota_progress_up(ota_id, state, state_data, time_us):
    """OtaProgressCmdUp [id, simple(state), state_data, time]: time in Unix microseconds."""
    if not (isinstance(state, int) and 0 <= state < len(OTA_STATE_NAMES)):
        raise LocalError("unknown OTA state %r" % (state,))
    return _encode(OTA_PROGRESS_UP, [_bytes_arg("ota id", ota_id, 16), compat.CBORSimple(state),
                                     int(state_data), int(time_us)])


def thing_id_problem(thing_id):
    """Why thing_id cannot become part of an MQTT topic name, or None if it can.
    The one rule for thing ids, whichever variant brought them ("" is checked
    by the callers: it means "no thing")."""
    if not isinstance(thing_id, str):
        return "thing id must be a text string, not %s" % type(thing_id).__name__
    if len(thing_id) > THING_ID_MAX:
        return "thing id longer than %d characters" % THING_ID_MAX
    for c in "+#/\x00":
        if c in thing_id:
            return "thing id %r contains %r, which is not allowed in a topic" % (thing_id, c)
    return None


def check_thing_id(thing_id):
    """Raise DecodeError unless thing_id is a str that is safe inside an MQTT topic name."""
    problem = thing_id_problem(thing_id)
    if problem is not None:
        raise DecodeError(problem)
    return thing_id


def _int_fits(kind, x):
    if not isinstance(x, int) or isinstance(x, bool):
        return False
    if kind == _INT32:
        return -0x80000000 <= x <= 0x7FFFFFFF
    return 0 <= x <= 0xFFFFFFFF


# The C++ device library holds the timezone offset in 32 signed bits and the
# end of daylight saving time in 32 unsigned bits.  Larger values are refused
# wherever they arrive (TimezoneCommandDown, or tz_offset / tz_dst_until
# records on the device topic): they mean nothing as a time of day, and the
# schedules' calendar would be fed dates billions of years away.
_TIMEZONE_KINDS = {"tz_offset": _INT32, "tz_dst_until": _UINT32}


def timezone_ok(name, x):
    """Is x a value the device may take for tz_offset or tz_dst_until?"""
    return _int_fits(_TIMEZONE_KINDS[name], x)


def _field(name, i, kind, x):
    # Validate field i of command `name`; return its value or raise DecodeError.
    if kind == _THING_ID:
        return check_thing_id(x)
    if kind == _TEXT:
        if isinstance(x, str):
            return x
        want = "a text string"
    elif kind == _INT32 or kind == _UINT32:
        if _int_fits(kind, x):
            return x
        want = "a signed 32-bit integer" if kind == _INT32 else "an unsigned 32-bit integer"
        if isinstance(x, int) and not isinstance(x, bool):
            raise DecodeError("%s: field %d must be %s (got one out of range)" % (name, i, want))
    else:
        if isinstance(x, (bytes, bytearray)):
            size = 16 if kind == _BYTES16 else 32 if kind == _BYTES32 else None
            if size is None or len(x) == size:
                return bytes(x)
            want = "a byte string of %d bytes (got %d)" % (size, len(x))
        else:
            want = "a byte string"
    raise DecodeError("%s: field %d must be %s, not %s" % (name, i, want, type(x).__name__))


def decode_down(data):
    """Decode a cloud-to-device command; return (tag, fields) with fields a tuple.

    ThingUpdateCmd -> (thing_id,), ThingDetachCmd -> (thing_id,),
    LastValuesUpdateCmd -> (senml_cbor_bytes,), TimezoneCommandDown ->
    (offset, dst_until), OtaUpdateCmdDown -> (id, url, initial_sha, final_sha).
    Raises errors.DecodeError for anything else (see the module comment).
    """
    obj = compat.cbor_loads(data)
    if isinstance(obj, (list, dict)) or not (hasattr(obj, "tag") and hasattr(obj, "value")):
        raise DecodeError("command is not a CBOR tag (got %s)" % type(obj).__name__)
    tag = obj.tag
    schema = _DOWN.get(tag)
    if schema is None:
        if tag in NAMES:
            raise DecodeError("%s (tag 0x%06x) is a device-to-cloud command, not accepted from the cloud"
                              % (NAMES[tag], tag))
        raise DecodeError("unknown command tag 0x%x" % tag)
    name = NAMES[tag]
    args = obj.value
    if not isinstance(args, (list, tuple)):  # cbor2 6 decodes a tagged array as a tuple
        raise DecodeError("%s: tag must wrap an array, not %s" % (name, type(args).__name__))
    if len(args) != len(schema):
        raise DecodeError("%s: expected %d fields, got %d" % (name, len(schema), len(args)))
    return tag, tuple([_field(name, i, schema[i], args[i]) for i in range(len(schema))])
