# MQTT 3.1.1 packet codec: pure functions and an incremental reader.
#
# Theory of operation
# -------------------
# Encoders return complete packets as bytes.  PacketReader takes bytes as they
# arrive (any split: one byte at a time, several packets at once) and hands
# out whole packets as (first_byte, body) pairs; an incomplete tail stays
# buffered until more bytes come.  The reader never trusts a length field: a
# remaining length above max_size is never buffered, so a hostile or broken
# peer cannot make the client buffer without bound.  A PUBLISH that large (a
# 1 MB dashboard write) is skipped: only its head (topic and packet id) is
# kept, and the rest of its bytes are dropped as they arrive, so the link
# stays up and the next message is read at once.  Any other packet that large
# is refused.
# Nothing here knows about sockets or time.

from ..compat import const
from ..errors import DecodeError, LocalError

CONNECT = const(0x10)
CONNACK = const(0x20)
PUBLISH = const(0x30)
PUBACK = const(0x40)
SUBSCRIBE = const(0x82)  # SUBSCRIBE and UNSUBSCRIBE carry the mandatory flags 0b0010
SUBACK = const(0x90)
UNSUBSCRIBE = const(0xA2)
UNSUBACK = const(0xB0)
PINGRESP = const(0xD0)

PINGREQ = b"\xc0\x00"
DISCONNECT = b"\xe0\x00"

# The largest remaining length MQTT can express (four varint bytes).
_MAX_VARINT = const(268435455)


def _varint(n):
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return out


def _utf8(s):
    if isinstance(s, str):
        s = s.encode()
    return s


def _field(data):
    # A length-prefixed string or binary field.
    if len(data) > 0xFFFF:
        raise LocalError("MQTT field longer than 65535 bytes")
    return bytes((len(data) >> 8, len(data) & 0xFF)) + data


def _packet(first_byte, body):
    if len(body) > _MAX_VARINT:
        raise LocalError("MQTT packet too large to encode")
    return bytes((first_byte,)) + _varint(len(body)) + body


def encode_connect(client_id, username=None, password=None, keepalive=10, clean=True):
    flags = 0x02 if clean else 0
    payload = _field(_utf8(client_id))
    if username is not None:
        flags |= 0x80
        payload += _field(_utf8(username))
        if password is not None:
            flags |= 0x40
            payload += _field(_utf8(password))
    header = b"\x00\x04MQTT\x04" + bytes((flags, keepalive >> 8, keepalive & 0xFF))
    return _packet(CONNECT, header + payload)


def encode_publish(topic, payload, qos=0, pid=0, retain=False, dup=False):
    # The device's hot path: written into one buffer of the final size, not
    # concatenated piece by piece (on MicroPython that made ~10 temporary
    # objects per message: 896 bytes of garbage per publish, now 288).
    t = _utf8(topic)
    n = len(t)
    if n > 0xFFFF:
        raise LocalError("MQTT field longer than 65535 bytes")
    length = 2 + n + (2 if qos else 0) + len(payload)
    if length > _MAX_VARINT:
        raise LocalError("MQTT packet too large to encode")
    i = 2 if length < 0x80 else 3 if length < 0x4000 else 4 if length < 0x200000 else 5
    out = bytearray(i + length)
    out[0] = PUBLISH | (qos << 1) | (1 if retain else 0) | (0x08 if dup else 0)
    out[1:i] = _varint(length)
    out[i] = n >> 8
    out[i + 1] = n & 0xFF
    i += 2
    out[i:i + n] = t
    i += n
    if qos:
        out[i] = pid >> 8
        out[i + 1] = pid & 0xFF
        i += 2
    out[i:] = payload
    return bytes(out)


def set_dup(packet):
    """Return a PUBLISH packet with its DUP flag set, for retransmission."""
    return bytes((packet[0] | 0x08,)) + packet[1:]


def publish_topic(packet):
    """The topic of a PUBLISH packet this client encoded."""
    i = 1
    while packet[i] & 0x80:  # the remaining length's varint
        i += 1
    n = (packet[i + 1] << 8) | packet[i + 2]
    return str(packet[i + 3:i + 3 + n], "utf-8")


def encode_puback(pid):
    return bytes((PUBACK, 2, pid >> 8, pid & 0xFF))


def encode_subscribe(pid, topic, qos=1):
    body = bytes((pid >> 8, pid & 0xFF)) + _field(_utf8(topic)) + bytes((qos,))
    return _packet(SUBSCRIBE, body)


def encode_unsubscribe(pid, topic):
    return _packet(UNSUBSCRIBE, bytes((pid >> 8, pid & 0xFF)) + _field(_utf8(topic)))


class PacketReader:
    """Split a byte stream into MQTT packets.

    feed(data) appends bytes; next_packet() returns (first_byte, body) for the
    next complete packet, or None when more bytes are needed.  For a PUBLISH
    larger than max_size, body is only its head (topic and packet id) and
    `skipped` holds the packet's size until the next call (0 otherwise).
    """

    def __init__(self, max_size=131072):
        self.max_size = max_size
        self.skipped = 0
        self._buf = bytearray()
        self._pos = 0
        self._skip = 0      # bytes of an oversized PUBLISH still to drop
        self._held = None   # (first, head, size) of it, handed out once all is dropped

    def reset(self):
        self._buf = bytearray()
        self._pos = 0
        self._skip = 0
        self._held = None

    def buffered(self):
        return len(self._buf) - self._pos

    def feed(self, data):
        if self._skip:
            n = min(self._skip, len(data))
            self._skip -= n
            if n == len(data):
                return
            data = memoryview(data)[n:]
        if self._pos:
            # Drop what was consumed before growing the buffer again.
            self._buf = self._buf[self._pos:]
            self._pos = 0
        self._buf.extend(data)

    def next_packet(self):
        if self.skipped:
            self.skipped = 0
        if self._held is not None:
            if self._skip:
                return None
            first, head, self.skipped = self._held
            self._held = None
            return first, head
        buf = self._buf
        pos = self._pos
        end = len(buf)
        if end - pos < 2:
            return None
        length = 0
        shift = 0
        i = pos + 1
        while True:
            if i >= end:
                return None
            byte = buf[i]
            i += 1
            length |= (byte & 0x7F) << shift
            if not byte & 0x80:
                break
            shift += 7
            if shift > 21:
                raise DecodeError("MQTT remaining length uses more than 4 bytes")
        if length > self.max_size:
            return self._skip_oversized(buf[pos], i, length)
        if end - i < length:
            return None
        first = buf[pos]
        body = bytes(buf[i:i + length])
        self._pos = i + length
        if self._pos == end:
            self._buf = bytearray()
            self._pos = 0
        return first, body

    def _skip_oversized(self, first, i, length):
        # Keep the head, drop the rest of the packet, as far as it is here.
        # The head is at most 65,539 bytes, less than max_size.
        if first & 0xF0 != PUBLISH:
            raise DecodeError("MQTT packet of %d bytes exceeds the maximum of %d" % (length, self.max_size))
        buf = self._buf
        end = len(buf)
        if end - i < 2:
            return None
        head = 2 + ((buf[i] << 8) | buf[i + 1]) + (2 if first & 0x06 else 0)
        if head > length:
            raise DecodeError("PUBLISH topic longer than its packet")
        if end - i < head:
            return None
        held = (first, bytes(buf[i:i + head]), length)
        here = min(length, end - i)
        self._skip = length - here
        self._pos = i + here
        if self._pos == end:
            self._buf = bytearray()
            self._pos = 0
        if self._skip:
            self._held = held
            return None
        self.skipped = length
        return held[0], held[1]


def u16(body, at):
    if len(body) < at + 2:
        raise DecodeError("MQTT packet truncated")
    return (body[at] << 8) | body[at + 1]


def decode_publish(first, body):
    """Return (topic, payload, qos, pid, retain, dup) of a PUBLISH body."""
    qos = (first >> 1) & 0x03
    if qos == 3:
        raise DecodeError("PUBLISH with invalid QoS 3")
    n = u16(body, 0)
    if len(body) < 2 + n:
        raise DecodeError("PUBLISH topic truncated")
    try:
        topic = str(body[2:2 + n], "utf-8")
    except UnicodeError:
        raise DecodeError("PUBLISH topic is not valid UTF-8")
    at = 2 + n
    pid = 0
    if qos:
        pid = u16(body, at)
        if pid == 0:
            raise DecodeError("PUBLISH with packet id 0")
        at += 2
    return topic, body[at:], qos, pid, bool(first & 1), bool(first & 0x08)
