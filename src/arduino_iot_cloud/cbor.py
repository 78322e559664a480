# A small CBOR codec (RFC 8949) for MicroPython and CPython.
#
# Theory of operation
# -------------------
# Encoding walks the object recursively and appends to one bytearray.  Every
# CBOR data item starts with a head: one initial byte holding the major type
# (top 3 bits) and the "additional information" (low 5 bits), followed by 0,
# 1, 2, 4 or 8 bytes of argument.  Integers, lengths and tag numbers always
# use the shortest head; floats are always written as doubles (as cbor2 does
# by default), except NaN and +-infinity, which are exact as halves and are
# written as F97E00 / F97C00 / F9FC00 (cbor2 does the same).
#
# Decoding reads a memoryview with an offset (no copying of the input, the only
# slices are of the memoryview).  Every read is bounds-checked first, so
# malformed input raises errors.DecodeError and never IndexError or
# struct.error:
#   - a declared length is checked against the bytes that remain before
#     anything is allocated (each array item needs at least one byte, each map
#     entry two), so a length field cannot make us allocate unbounded memory;
#   - arrays, maps and tags may nest at most MAX_DEPTH levels (recursion is
#     bounded long before Python's own limit, which MicroPython keeps small);
#   - reserved additional-info values (28-30), indefinite lengths on types that
#     cannot have them, a stray "break", two-byte simple values below 32, bad
#     UTF-8, chunks of the wrong type inside indefinite strings, unhashable
#     map keys and trailing bytes after the top-level item are all rejected.
#
# Decoded types: ints, floats (half, single and double are all accepted; half
# is decoded by hand because MicroPython's struct has no 'e'), str, bytes,
# list (definite or indefinite arrays), dict (duplicate keys: last one wins),
# Tag (every tag, no semantic interpretation: tag 1 stays Tag(1, ...)),
# True/False/None, the `undefined` singleton, and Simple(n) for the other
# simple values (0-19, 32-255).  Tag and Simple have the attribute names of
# cbor2's CBORTag (.tag, .value) and CBORSimpleValue (.value), so callers can
# duck-type across both codecs.
#
# Encoded types: None, bool, int (-2**64 .. 2**64-1; no bignums), float, str,
# bytes/bytearray/memoryview, list/tuple, dict, Tag (or anything with .tag and
# .value, such as cbor2.CBORTag), Simple and `undefined`.  Anything else raises
# errors.LocalError.  Map entries are written in dict iteration order, which
# is insertion order on CPython but not on MicroPython: callers that need a
# fixed order on the wire write the map head themselves (see senml.encode).

import struct

from .errors import DecodeError, LocalError

try:
    from micropython import const
except ImportError:

    def const(x):
        return x


MAX_DEPTH = const(16)  # nested arrays/maps/tags allowed in one item

_UINT64_LIMIT = 18446744073709551616  # 2**64
_INF = float("inf")
_TWO_M24 = 2.0 ** -24  # computed, not parsed: exact on every port


class Tag:
    """A tagged data item: tag number `.tag` wrapping `.value`."""

    def __init__(self, tag, value):
        self.tag = tag
        self.value = value

    def __eq__(self, other):
        return isinstance(other, Tag) and self.tag == other.tag and self.value == other.value

    def __ne__(self, other):
        return not self.__eq__(other)

    def __hash__(self):
        return hash((self.tag, self.value))

    def __repr__(self):
        return "Tag(%d, %r)" % (self.tag, self.value)


class Simple:
    """A CBOR simple value other than false/true/null/undefined (`.value`: 0-19 or 32-255)."""

    def __init__(self, value):
        self.value = value

    def __eq__(self, other):
        return isinstance(other, Simple) and self.value == other.value

    def __ne__(self, other):
        return not self.__eq__(other)

    def __hash__(self):
        return hash(self.value) ^ 0x5A5A

    def __repr__(self):
        return "Simple(%d)" % self.value


class _Undefined:
    def __repr__(self):
        return "undefined"

    def __bool__(self):
        return False


undefined = _Undefined()  # the one CBOR `undefined` (F7)


# --- encoder -----------------------------------------------------------------


def _head(buf, major, n):
    # Shortest head for major type `major` with argument n (0 <= n < 2**64).
    mt = major << 5
    if n < 24:
        buf.append(mt | n)
    elif n < 0x100:
        buf.append(mt | 24)
        buf.append(n)
    elif n < 0x10000:
        buf.append(mt | 25)
        buf.extend(struct.pack(">H", n))
    elif n < 0x100000000:
        buf.append(mt | 26)
        buf.extend(struct.pack(">I", n))
    else:
        buf.append(mt | 27)
        buf.extend(struct.pack(">Q", n))


def _encode(buf, obj, depth):
    # bool first: on CPython bool is an int subclass.
    if obj is None:
        buf.append(0xF6)
    elif obj is True:
        buf.append(0xF5)
    elif obj is False:
        buf.append(0xF4)
    elif isinstance(obj, int):
        if obj >= 0:
            if obj >= _UINT64_LIMIT:
                raise LocalError("CBOR: integer %d does not fit in 64 bits" % obj)
            _head(buf, 0, obj)
        else:
            n = -1 - obj
            if n >= _UINT64_LIMIT:
                raise LocalError("CBOR: integer %d does not fit in 64 bits" % obj)
            _head(buf, 1, n)
    elif isinstance(obj, float):
        if obj != obj:
            buf.extend(b"\xf9\x7e\x00")
        elif obj == _INF:
            buf.extend(b"\xf9\x7c\x00")
        elif obj == -_INF:
            buf.extend(b"\xf9\xfc\x00")
        else:
            buf.append(0xFB)
            buf.extend(struct.pack(">d", obj))
    elif isinstance(obj, str):
        b = obj.encode("utf-8")
        _head(buf, 3, len(b))
        buf.extend(b)
    elif isinstance(obj, (bytes, bytearray, memoryview)):
        _head(buf, 2, len(obj))
        buf.extend(obj)
    elif isinstance(obj, Simple):
        n = obj.value
        if not (isinstance(n, int) and (0 <= n < 20 or 32 <= n < 256)):
            raise LocalError("CBOR: %r is not an encodable simple value" % (n,))
        _head(buf, 7, n)
    elif obj is undefined:
        buf.append(0xF7)
    else:
        if depth >= MAX_DEPTH:
            raise LocalError("CBOR: nesting deeper than %d levels" % MAX_DEPTH)
        depth += 1
        if isinstance(obj, (list, tuple)):
            _head(buf, 4, len(obj))
            for item in obj:
                _encode(buf, item, depth)
        elif isinstance(obj, dict):
            _head(buf, 5, len(obj))
            for k, v in obj.items():
                _encode(buf, k, depth)
                _encode(buf, v, depth)
        elif hasattr(obj, "tag") and hasattr(obj, "value"):  # Tag or cbor2.CBORTag
            t = obj.tag
            if not isinstance(t, int) or isinstance(t, bool) or not 0 <= t < _UINT64_LIMIT:
                raise LocalError("CBOR: bad tag number %r" % (t,))
            _head(buf, 6, t)
            _encode(buf, obj.value, depth)
        else:
            raise LocalError("CBOR: cannot encode %s" % type(obj).__name__)


def dumps(obj):
    """Encode `obj` as CBOR and return bytes.  Raises errors.LocalError for unsupported values."""
    buf = bytearray()
    _encode(buf, obj, 0)
    return bytes(buf)


# --- decoder -----------------------------------------------------------------

_BREAK = object()  # returned by _item() for the FF that ends an indefinite item


def _half(h):
    # IEEE 754 binary16 -> float, by hand.
    exp = (h >> 10) & 0x1F
    mant = h & 0x3FF
    if exp == 0:
        val = mant * _TWO_M24  # subnormal
    elif exp != 31:
        val = (mant + 1024) * 2.0 ** (exp - 25)
    elif mant == 0:
        val = _INF
    else:
        return float("nan")
    return -val if h & 0x8000 else val


def _utf8_ok(mv, p, end):
    # Is mv[p:end] well-formed UTF-8 (RFC 3629)?  Only run on non-ASCII text.
    while p < end:
        b = mv[p]
        if b < 0x80:
            p += 1
            continue
        lo = 0x80
        hi = 0xBF
        if 0xC2 <= b <= 0xDF:
            k = 1
        elif 0xE0 <= b <= 0xEF:
            k = 2
            if b == 0xE0:
                lo = 0xA0  # no overlong 3-byte forms
            elif b == 0xED:
                hi = 0x9F  # no surrogates
        elif 0xF0 <= b <= 0xF4:
            k = 3
            if b == 0xF0:
                lo = 0x90  # no overlong 4-byte forms
            elif b == 0xF4:
                hi = 0x8F  # nothing above U+10FFFF
        else:
            return False  # continuation byte, C0, C1 or F5-FF as a lead byte
        if end - p <= k or not lo <= mv[p + 1] <= hi:
            return False
        for i in range(p + 2, p + k + 1):
            if not 0x80 <= mv[i] <= 0xBF:
                return False
        p += k + 1
    return True


class _Reader:
    def __init__(self, data):
        self.mv = memoryview(data)
        self.pos = 0
        self.end = len(self.mv)

    def need(self, n):
        # Check that n more bytes exist; return the current offset.
        pos = self.pos
        if n > self.end - pos:
            raise DecodeError("CBOR: truncated input (need %d bytes at offset %d, have %d)" % (n, pos, self.end - pos))
        self.pos = pos + n
        return pos

    def arg(self, ai):
        # The argument that follows an initial byte with additional info `ai`
        # (0-27); None for 31 (indefinite).  28-30 are reserved.
        if ai < 24:
            return ai
        if ai == 24:
            return self.mv[self.need(1)]
        if ai == 25:
            p = self.need(2)
            return (self.mv[p] << 8) | self.mv[p + 1]
        if ai == 26:
            return struct.unpack_from(">I", self.mv, self.need(4))[0]
        if ai == 27:
            return struct.unpack_from(">Q", self.mv, self.need(8))[0]
        if ai == 31:
            return None
        raise DecodeError("CBOR: reserved additional information %d at offset %d" % (ai, self.pos - 1))

    def string(self, major, n):
        # A definite string of n bytes as bytes (major 2) or str (major 3).
        p = self.need(n)
        view = self.mv[p:p + n]
        if major == 2:
            return bytes(view)
        try:
            s = str(view, "utf-8")
        except UnicodeError:
            s = None
        # Non-ASCII text is checked by hand too: MicroPython's decoder accepts
        # overlong forms, surrogates and code points above U+10FFFF.
        if s is None or (len(s) != n and not _utf8_ok(self.mv, p, p + n)):
            raise DecodeError("CBOR: invalid UTF-8 in text string at offset %d" % p)
        return s

    def item(self, depth):
        ib = self.mv[self.need(1)]
        major = ib >> 5
        ai = ib & 0x1F
        if major == 7:
            return self.simple(ai)
        n = self.arg(ai)
        if major == 0:
            if n is None:
                raise DecodeError("CBOR: indefinite length on an integer")
            return n
        if major == 1:
            if n is None:
                raise DecodeError("CBOR: indefinite length on an integer")
            return -1 - n
        if major <= 3:
            if n is not None:
                return self.string(major, n)
            # Indefinite string: definite chunks of the same major type, then FF.
            chunks = []
            while True:
                cb = self.mv[self.need(1)]
                if cb == 0xFF:
                    break
                if cb >> 5 != major or cb & 0x1F == 31:
                    raise DecodeError("CBOR: bad chunk in indefinite-length string at offset %d" % (self.pos - 1))
                chunks.append(self.string(major, self.arg(cb & 0x1F)))
            return (b"" if major == 2 else "").join(chunks)
        # Containers and tags.
        if depth >= MAX_DEPTH:
            raise DecodeError("CBOR: nesting deeper than %d levels" % MAX_DEPTH)
        depth += 1
        if major == 4:
            out = []
            if n is None:
                while True:
                    v = self.item(depth)
                    if v is _BREAK:
                        return out
                    out.append(v)
            if n > self.end - self.pos:
                raise DecodeError("CBOR: array of %d items exceeds the %d remaining bytes" % (n, self.end - self.pos))
            for _ in range(n):
                out.append(self.value(depth))
            return out
        if major == 5:
            out = {}
            if n is None:
                while True:
                    k = self.item(depth)
                    if k is _BREAK:
                        return out
                    self.put(out, k, self.value(depth))
            if n > (self.end - self.pos) // 2:
                raise DecodeError("CBOR: map of %d entries exceeds the %d remaining bytes" % (n, self.end - self.pos))
            for _ in range(n):
                k = self.value(depth)
                self.put(out, k, self.value(depth))
            return out
        # major 6: tag
        if n is None:
            raise DecodeError("CBOR: indefinite length on a tag")
        return Tag(n, self.value(depth))

    def value(self, depth):
        # An item where a "break" is not allowed.
        v = self.item(depth)
        if v is _BREAK:
            raise DecodeError("CBOR: unexpected break at offset %d" % (self.pos - 1))
        return v

    def put(self, d, k, v):
        try:
            d[k] = v
        except TypeError:
            raise DecodeError("CBOR: unhashable map key of type %s" % type(k).__name__)

    def simple(self, ai):
        # Major type 7: simple values, floats and break.
        if ai < 20:
            return Simple(ai)
        if ai == 20:
            return False
        if ai == 21:
            return True
        if ai == 22:
            return None
        if ai == 23:
            return undefined
        if ai == 24:
            n = self.mv[self.need(1)]
            if n < 32:
                raise DecodeError("CBOR: simple value %d in two-byte form" % n)
            return Simple(n)
        if ai == 25:
            p = self.need(2)
            return _half((self.mv[p] << 8) | self.mv[p + 1])
        if ai == 26:
            return struct.unpack_from(">f", self.mv, self.need(4))[0]
        if ai == 27:
            return struct.unpack_from(">d", self.mv, self.need(8))[0]
        if ai == 31:
            return _BREAK
        raise DecodeError("CBOR: reserved additional information %d at offset %d" % (ai, self.pos - 1))


def loads(data):
    """Decode one CBOR data item from bytes-like `data`, which it must fill exactly.

    Raises errors.DecodeError on malformed, truncated or over-deep input and on trailing bytes.
    """
    r = _Reader(data)
    v = r.value(0)
    if r.pos != r.end:
        raise DecodeError("CBOR: %d trailing bytes after the data item" % (r.end - r.pos))
    return v
