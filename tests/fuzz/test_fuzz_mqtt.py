# MQTT codec and protocol under random and mutated byte streams, split at
# random points: only DecodeError / ConnectRefused escape, buffering never
# exceeds the maximum packet size, and the protocol recovers on a new
# connection after any error.  Packets are built here by hand (not with the
# library's encoder), so an encoder bug cannot hide a decoder bug.

from hypothesis import given
from hypothesis import strategies as st

import fuzzlib
from arduino_iot_cloud.errors import ConnectRefused, DecodeError, TransportError
from arduino_iot_cloud.mqtt import packets as p
from arduino_iot_cloud.mqtt.protocol import (
    CONNECTED, DISCONNECTED, EV_CONNECTED, EV_MESSAGE, EV_PUBACK, EV_SUBACK, EV_UNSUBACK, MQTTProtocol,
)
from fuzzlib import FUZZ, bounded_call, quick_mutant

MAX = 512  # small, so random length fields often cross it


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | 0x80 if n else b)
        if not n:
            return bytes(out)


def packet(first, body):
    return bytes((first,)) + varint(len(body)) + body


def u16(n):
    return bytes((n >> 8, n & 0xFF))


def mqtt_str(s):
    return u16(len(s)) + s


topics = st.one_of(st.binary(max_size=40), st.text(max_size=30).map(lambda t: t.encode()),
                   st.sampled_from((b"/a/d/dev/e/i", b"/a/d/dev/c/dw", b"/a/t/thing/e/i", b"\xff\xfe")))


@st.composite
def publishes(draw):
    qos = draw(st.integers(0, 3))
    flags = (qos << 1) | draw(st.sampled_from((0, 1, 8, 9)))
    body = mqtt_str(draw(topics))
    if qos:
        body += u16(draw(st.integers(0, 65535)))
    body += draw(st.binary(max_size=60))
    return packet(0x30 | flags, body)


well_formed = st.one_of(
    publishes(),
    st.builds(lambda pid: packet(0x40, u16(pid)), st.integers(0, 65535)),
    st.builds(lambda pid, codes: packet(0x90, u16(pid) + codes), st.integers(0, 65535), st.binary(max_size=4)),
    st.builds(lambda pid: packet(0xB0, u16(pid)), st.integers(0, 65535)),
    st.just(packet(0xD0, b"")),
    st.builds(lambda sp, rc: packet(0x20, bytes((sp, rc))), st.integers(0, 1), st.integers(0, 255)),
)

arbitrary_packet = st.builds(packet, st.integers(0, 255), st.binary(max_size=80))

# Remaining-length fields at and beyond the limits: the reader must refuse
# them from the header alone.
oversized = st.builds(lambda first, n, tail: bytes((first,)) + varint(n) + tail,
                      st.integers(0, 255), st.integers(MAX + 1, 268435455), st.binary(max_size=20))
five_byte_length = st.builds(lambda first, tail: bytes((first, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F)) + tail,
                             st.integers(0, 255), st.binary(max_size=5))

stream_parts = st.lists(st.one_of(well_formed, well_formed, arbitrary_packet, oversized, five_byte_length,
                                  st.binary(max_size=30)), max_size=8)


def chunks(rng, data):
    out = []
    i = 0
    while i < len(data):
        n = rng.choice((1, 1, 2, 3, 7, 64, 4096))
        out.append(data[i:i + n])
        i += n
    return out


def _feed_reader(data, rng):
    reader = p.PacketReader(MAX)
    got = []
    for chunk in chunks(rng, data):
        reader.feed(chunk)
        while True:
            pkt, err = bounded_call(reader.next_packet, DecodeError)
            if err is not None:
                return got, err
            if pkt is None:
                break
            first, body = pkt
            assert 0 <= first <= 255 and isinstance(body, bytes) and len(body) <= MAX
            got.append(pkt)
        # Bounded memory: what stays buffered is less than one maximal packet.
        assert reader.buffered() <= MAX + 5, reader.buffered()
    return got, None


@FUZZ
@given(stream_parts, st.randoms(use_true_random=False))
def test_packet_reader(parts, rng):
    data = b"".join(parts)
    for case in fuzzlib.cases(data, rng):
        _feed_reader(case, rng)


@fuzzlib.fewer(20)
@given(st.lists(well_formed, max_size=10), st.randoms(use_true_random=False))
def test_reader_split_invariance(parts, rng):
    # Valid packets come out the same whatever the split.
    data = b"".join(parts)
    whole, err = _feed_reader(data, _Fixed(len(data) or 1))
    assert err is None
    assert [packet(f, b) for f, b in whole] == parts
    one, err = _feed_reader(data, _Fixed(1))
    assert err is None and one == whole
    rand, err = _feed_reader(data, rng)
    assert err is None and rand == whole


class _Fixed:
    def __init__(self, n):
        self.n = n

    def choice(self, _options):
        return self.n


def _events_ok(events):
    for ev in events:
        kind = ev[0]
        if kind == EV_MESSAGE:
            _, topic, payload, qos, retain = ev
            assert isinstance(topic, str) and isinstance(payload, bytes)
            assert qos in (0, 1) and retain in (True, False)
        elif kind == EV_CONNECTED:
            assert ev[1] in (True, False)
        elif kind in (EV_PUBACK, EV_UNSUBACK):
            assert 1 <= ev[1] <= 65535
        elif kind == EV_SUBACK:
            assert isinstance(ev[2], list)
        else:
            raise AssertionError("unknown event %r" % (ev,))


def _only_acks_and_pings(out):
    # Incoming data makes the client send PUBACKs, and its timer PINGREQs; nothing else.
    i = 0
    while i < len(out):
        if out[i:i + 2] == b"\x40\x02":
            i += 4
        elif out[i:i + 2] == b"\xc0\x00":
            i += 2
        else:
            raise AssertionError("unexpected output %r" % out[i:i + 8])


def _run_protocol(data, rng, connack_first):
    proto = MQTTProtocol("dev", "dev", "pw", keepalive=10, max_packet_size=MAX)
    proto.connect(0)
    proto.data_to_send()
    now = 0
    if connack_first:
        events = proto.receive_data(b"\x20\x02\x00\x00", now)
        assert events == [(EV_CONNECTED, False)]
        proto.subscribe("/a/d/dev/e/i")
        proto.publish("/a/t/x/e/o", b"\x80", 1)
        proto.data_to_send()
    err = None
    for chunk in chunks(rng, data):
        now += rng.choice((0, 1, 500, 9000))
        events, err = bounded_call(proto.receive_data, (DecodeError, ConnectRefused), chunk, now)
        if err is not None:
            break
        _events_ok(events)
        assert proto._reader.buffered() <= MAX + 5
        _only_acks_and_pings(bytes(proto.data_to_send()))
        _, perr = bounded_call(proto.poll, TransportError, now)
        if perr is not None:
            err = perr
            break
    # Whatever happened, a new connection works from a clean state.
    proto.connection_lost()
    assert proto.state == DISCONNECTED
    proto.connect(now + 1)
    events = proto.receive_data(b"\x20\x02\x00\x00", now + 1)
    assert events == [(EV_CONNECTED, False)] and proto.state == CONNECTED
    return err


@FUZZ
@given(stream_parts, st.booleans(), st.randoms(use_true_random=False))
def test_protocol_receive_data(parts, connack_first, rng):
    data = b"".join(parts)
    for case in fuzzlib.cases(data, rng):
        _run_protocol(case, rng, connack_first)


def test_oversized_packet_refused_or_skipped_before_buffering():
    # A header claiming 256 MB, then a flood.  Anything but a PUBLISH: the
    # first feed already fails.
    proto = MQTTProtocol("dev", keepalive=10, max_packet_size=MAX)
    proto.connect(0)
    proto.receive_data(b"\x20\x02\x00\x00", 0)
    _, err = bounded_call(proto.receive_data, DecodeError, b"\x90\xff\xff\xff\x7f" + b"x" * 100, 1)
    assert err is not None and "exceeds" in str(err)
    # A PUBLISH: its bytes are dropped as they come, nothing piles up.
    proto.connection_lost()
    proto.connect(2)
    proto.receive_data(b"\x20\x02\x00\x00", 2)
    assert proto.receive_data(b"\x30\xff\xff\xff\x7f\x00\x01t", 3) == []
    for _ in range(256):
        assert proto.receive_data(b"x" * 4096, 3) == []
        assert proto._reader.buffered() == 0
    assert proto.connected


def test_mutants_of_a_real_session_stream():
    # A recorded broker->client stream (CONNACK, SUBACKs, PUBLISHes, PUBACK,
    # PINGRESP), mutated many times with a fixed seed.
    import random

    stream = (packet(0x20, b"\x00\x00") + packet(0x90, u16(1) + b"\x01") + packet(0x90, u16(2) + b"\x01")
              + packet(0x32, mqtt_str(b"/a/d/dev/e/i") + u16(7) + bytes.fromhex("81a200687468696e675f6964036174"))
              + packet(0x40, u16(3)) + packet(0xD0, b"")
              + packet(0x30, mqtt_str(b"/a/t/t/e/i") + bytes.fromhex("81a20061780201")))
    rng = random.Random(8)
    ok = 0
    for _ in range(max(200, fuzzlib.EXAMPLES // 10)):
        if _run_protocol(quick_mutant(rng, stream), rng, False) is None:
            ok += 1
    assert ok  # some mutants still parse: the test exercises the happy path too
