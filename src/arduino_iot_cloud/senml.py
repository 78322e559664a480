# SenML (RFC 8428) in its CBOR representation (RFC 8428 section 6).
#
# Theory of operation
# -------------------
# A SenML pack is a CBOR array of records; a record is a map from labels to
# fields.  CBOR SenML uses small integer labels (LABELS below).
#
# encode() writes what Python client 1.4.1 writes: a definite-length array of
# two-entry maps {n: name, <value label>: value}, floats as doubles.  The array
# and map heads and the labels are written here (so `n` always comes first, on
# every runtime: MicroPython dicts do not keep insertion order), the names and
# values by compat.cbor_dumps.
#
# decode() resolves records the way RFC 8428 section 4.6 describes:
#   - base fields (bn, bt, bv) apply to their own record and to every later
#     record, until another record sets them again;
#   - name = bn + n.  short_name = n when a non-empty bn applied, else None:
#     the C++ device library ignores bn, so a cloud speaking to firmware may
#     send bn="some-base", n="temp" meaning the property "temp"; callers look
#     up `name` first and fall back to `short_name` (see docs/protocol.md,
#     "Values: SenML in CBOR");
#   - value = v (+ bv if a base value is in force), or vs, vb, vd as sent;
#     None when the record carries no value field (such a record is no write);
#   - time = bt + t, bt alone, t alone, or None.  Relative times (RFC 8428:
#     values below 2**28) are returned as they are; the codec reads no clock.
# Numbers may arrive as any CBOR int or float width.  Besides the integer
# labels, the text labels of the JSON representation ("n", "v", "bn", ...,
# same set) are accepted, because some clouds put JSON-labelled maps into
# CBOR.  Unknown labels (e.g. 123) and the ignored fields (bver, bu, bs, u, s,
# ut) are skipped.
#
# Errors: a top level that is not an array (of any length form), or bytes that
# are not CBOR, raise errors.DecodeError.  A single malformed record (not a
# map, a field of the wrong type, no name, more than one value field) is
# skipped instead, so one bad record cannot drop a whole message: decode()
# returns the good records, and when its `errors` argument is a list it
# appends (index, message) for every skipped record.  A skipped record does
# not change the base fields in force.

from . import compat
from .errors import DecodeError, LocalError

# RFC 8428 section 6, table 6: integer labels of CBOR SenML.
LABELS = {
    "bver": -1,
    "bn": -2,
    "bt": -3,
    "bu": -4,
    "bv": -5,
    "bs": -6,
    "n": 0,
    "u": 1,
    "v": 2,
    "vs": 3,
    "vb": 4,
    "s": 5,
    "t": 6,
    "ut": 7,
    "vd": 8,
}

_BN = -2
_BT = -3
_BV = -5
_N = 0
_V = 2
_VS = 3
_VB = 4
_T = 6
_VD = 8

# Fields decode() reads, with their required kind.
_NUMBER = 0
_TEXT = 1
_BOOL = 2
_BYTES = 3
_FIELD_KIND = {_BN: _TEXT, _BT: _NUMBER, _BV: _NUMBER, _N: _TEXT, _V: _NUMBER,
               _VS: _TEXT, _VB: _BOOL, _T: _NUMBER, _VD: _BYTES}
_KIND_NAME = ("a number", "a text string", "a bool", "a byte string")
_VALUE_FIELDS = (_V, _VS, _VB, _VD)


def _kind_ok(kind, x):
    if kind == _NUMBER:
        return isinstance(x, (int, float)) and not isinstance(x, bool)
    if kind == _TEXT:
        return isinstance(x, str)
    if kind == _BOOL:
        return isinstance(x, bool)
    return isinstance(x, (bytes, bytearray))


def _label_name(label):
    for k in LABELS:
        if LABELS[k] == label:
            return k
    return str(label)


def encode(records):
    """Encode an iterable of (name, value) pairs as a CBOR SenML pack (bytes).

    bool -> vb, int/float -> v, str -> vs, bytes/bytearray -> vd.  Raises
    errors.LocalError for a name that is not a str or a value of another type.
    """
    dumps = compat.cbor_dumps
    parts = []
    for name, value in records:
        if not isinstance(name, str):
            raise LocalError("SenML: record name must be str, not %s" % type(name).__name__)
        # bool before int: on CPython bool is an int.
        if isinstance(value, bool):
            label = b"\x04"
        elif isinstance(value, (int, float)):
            label = b"\x02"
        elif isinstance(value, str):
            label = b"\x03"
        elif isinstance(value, (bytes, bytearray)):
            label = b"\x08"
        else:
            raise LocalError("SenML: cannot encode %s value of %r" % (type(value).__name__, name))
        parts.append(b"\xa2\x00")  # map(2), label n
        parts.append(dumps(name))
        parts.append(label)
        parts.append(dumps(value))
    n = len(parts) // 4
    if n < 24:
        head = bytes((0x80 | n,))
    else:
        # An unsigned int's head with the major type changed from 0 to 4 (array).
        head = bytearray(dumps(n))
        head[0] |= 0x80
    return bytes(head) + b"".join(parts)


def decode(data, errors=None):
    """Decode a CBOR SenML pack into a list of (name, short_name, value, time).

    Raises errors.DecodeError when `data` is not CBOR or not an array.  Bad
    records are skipped; if `errors` is a list, (index, message) is appended
    to it for each one.  See the module comment for how fields are resolved.
    """
    pack = compat.cbor_loads(data)
    if not isinstance(pack, (list, tuple)):
        raise DecodeError("SenML: top level must be an array of records, not %s" % type(pack).__name__)
    out = []
    bn = ""
    bt = None
    bv = None
    for index, rec in enumerate(pack):
        if not isinstance(rec, dict):
            if errors is not None:
                errors.append((index, "record is %s, not a map" % type(rec).__name__))
            continue
        # Collect the fields this decoder knows, checking their types.
        fields = {}
        problem = None
        for label, x in rec.items():
            if isinstance(label, str):
                label = LABELS.get(label)
            elif type(label) is not int:  # bool keys must not pass as 0/1
                continue
            kind = _FIELD_KIND.get(label)
            if kind is None:
                continue
            if not _kind_ok(kind, x):
                problem = "field %s must be %s, not %s" % (_label_name(label), _KIND_NAME[kind], type(x).__name__)
                break
            if label in fields:  # both the text and the integer label
                problem = "field %s appears twice" % _label_name(label)
                break
            fields[label] = x
        if problem is None:
            found = [f for f in _VALUE_FIELDS if f in fields]
            if len(found) > 1:
                problem = "more than one value field"
        if problem is None:
            rbn = fields.get(_BN, bn)
            n = fields.get(_N, "")
            name = rbn + n
            if not name:
                problem = "record has no name"
        if problem is not None:
            if errors is not None:
                errors.append((index, problem))
            continue
        # Resolve with this record's base fields in force.
        rbt = fields.get(_BT, bt)
        rbv = fields.get(_BV, bv)
        value = None
        t = fields.get(_T)
        try:
            if found:
                f = found[0]
                value = fields[f]
                if f == _V and rbv is not None:
                    value = rbv + value
                elif f == _VD:
                    value = bytes(value)
            if t is None:
                time = rbt
            elif rbt is None:
                time = t
            else:
                time = rbt + t
        except OverflowError:  # a huge int (CBOR bignum) plus a float
            if errors is not None:
                errors.append((index, "base value or time out of range"))
            continue
        # The record is good: commit its base fields.
        bn, bt, bv = rbn, rbt, rbv
        short = n if (bn and n) else None
        out.append((name, short, value, time))
    return out
