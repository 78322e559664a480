# MQTT codec and protocol tests: plain functions, run by pytest and by the
# MicroPython unix port (tests/mpy_run.py).  Broker packets are written out
# byte by byte here, never produced by the client's own encoder, so an
# encoder bug cannot hide itself.

from arduino_iot_cloud.errors import ConnectRefused, DecodeError, LocalError, TransportError
from arduino_iot_cloud.mqtt import packets as p
from arduino_iot_cloud.mqtt.protocol import (
    EV_CONNECTED, EV_MESSAGE, EV_PUBACK, EV_SUBACK, EV_UNSUBACK, MQTTProtocol,
)

CONNACK_OK = b"\x20\x02\x00\x00"


def _raises(exc, fn, *args):
    try:
        fn(*args)
    except exc as e:
        return e
    raise AssertionError("%s not raised" % exc.__name__)


def _connected(keepalive=10, now=0):
    m = MQTTProtocol("dev", "dev", "secret", keepalive)
    m.connect(now)
    m.data_to_send()
    events = m.receive_data(CONNACK_OK, now)
    assert events == [(EV_CONNECTED, False)]
    return m


def test_connect_packet_bytes():
    m = MQTTProtocol("ab", "u", "pw", keepalive=10)
    m.connect(0)
    expected = (b"\x10\x15" + b"\x00\x04MQTT\x04" + b"\xc2" + b"\x00\x0a"
                + b"\x00\x02ab" + b"\x00\x01u" + b"\x00\x02pw")
    assert bytes(m.data_to_send()) == expected


def test_connect_without_credentials():
    assert p.encode_connect("c", keepalive=30) == b"\x10\x0d\x00\x04MQTT\x04\x02\x00\x1e\x00\x01c"


def test_publish_subscribe_bytes():
    assert p.encode_publish("a/b", b"xy", 1, 7) == b"\x32\x09\x00\x03a/b\x00\x07xy"
    assert p.encode_publish("t", b"", 0) == b"\x30\x03\x00\x01t"
    assert p.encode_subscribe(1, "a/#", 1) == b"\x82\x08\x00\x01\x00\x03a/#\x01"
    assert p.encode_unsubscribe(2, "a") == b"\xa2\x05\x00\x02\x00\x01a"
    assert p.encode_puback(258) == b"\x40\x02\x01\x02"


def test_large_remaining_length_varint():
    packet = p.encode_publish("t", b"x" * 200, 0)
    assert packet[:3] == b"\x30\xcb\x01"  # 203 = 0x4b | 0x80, then 1
    r = p.PacketReader()
    r.feed(packet)
    first, body = r.next_packet()
    assert first == 0x30 and len(body) == 203


def test_reader_one_byte_at_a_time_and_trailing_bytes():
    stream = b"\x30\x05\x00\x01tab" + b"\xd0\x00" + b"\x40\x02\x00"  # last packet incomplete
    r = p.PacketReader()
    got = []
    for i in range(len(stream)):
        r.feed(stream[i:i + 1])
        while True:
            pk = r.next_packet()
            if pk is None:
                break
            got.append(pk)
    assert got == [(0x30, b"\x00\x01tab"), (0xD0, b"")]
    assert r.buffered() == 3
    r.feed(b"\x01")
    assert r.next_packet() == (0x40, b"\x00\x01")


def test_reader_refuses_oversized_and_overlong_length():
    r = p.PacketReader(max_size=100)
    r.feed(b"\x90\xff\x7f")  # only a PUBLISH may be skipped; a huge SUBACK is a broken broker
    _raises(DecodeError, r.next_packet)
    r = p.PacketReader()
    r.feed(b"\x30\xff\xff\xff\xff\x01")
    _raises(DecodeError, r.next_packet)


def _oversized_then_small(qos):
    # A 20,000-byte PUBLISH (the reader's limit is 100), then a small one.
    big = b"\x00\x05big/t" + (b"\x01\x02" if qos else b"") + b"x" * (20000 - 7 - (2 if qos else 0))
    head = bytes((0x30 | (qos << 1),)) + b"\xa0\x9c\x01"  # 20000 = 0x20 | 0x80, 0x1c | 0x80, 1
    return head + big, b"\x30\x06\x00\x01tab!"


def test_reader_skips_an_oversized_publish_in_bounded_memory():
    big, small = _oversized_then_small(1)
    for chunk in (1, 7, 1000, 4096, len(big) + len(small)):
        r = p.PacketReader(max_size=100)
        stream = big + small
        got = []
        for i in range(0, len(stream), chunk):
            r.feed(stream[i:i + chunk])
            assert r.buffered() <= 100 + chunk, (chunk, r.buffered())
            while True:
                pk = r.next_packet()
                if pk is None:
                    break
                got.append((pk, r.skipped))
        # The skipped one comes out as its head (topic and packet id, no
        # payload), with `skipped` telling its size.
        assert got == [((0x32, b"\x00\x05big/t\x01\x02"), 20000), ((0x30, b"\x00\x01tab!"), 0)], (chunk, got)


def test_oversized_publish_is_skipped_acked_and_the_next_one_arrives():
    from arduino_iot_cloud.mqtt.protocol import EV_SKIPPED

    for qos in (0, 1):
        m = MQTTProtocol("dev", keepalive=10, max_packet_size=100)
        m.connect(0)
        m.data_to_send()
        m.receive_data(CONNACK_OK, 0)
        big, small = _oversized_then_small(qos)
        events = []
        for i in range(0, len(big), 4096):
            events += m.receive_data(big[i:i + 4096], 5)
        events += m.receive_data(small, 6)
        assert events == [(EV_SKIPPED, "big/t", 20000), (EV_MESSAGE, "t", b"ab!", 0, False)], events
        assert m.connected
        # A QoS 1 one is acknowledged all the same: the broker must not keep it in flight.
        assert bytes(m.data_to_send()) == (b"\x40\x02\x01\x02" if qos else b"")


def test_oversized_publish_with_a_broken_head_is_refused():
    m = MQTTProtocol("dev", keepalive=10, max_packet_size=100)
    m.connect(0)
    m.data_to_send()
    m.receive_data(CONNACK_OK, 0)
    # The topic length says 60,000 bytes: more than the whole packet holds.
    _raises(DecodeError, m.receive_data, b"\x30\xa0\x9c\x01\xea\x60" + b"x" * 300, 1)


def test_connack_refusals_are_readable():
    for code, words in ((1, "protocol"), (2, "identifier"), (3, "unavailable"),
                        (4, "bad username or password"), (5, "not authorized")):
        m = MQTTProtocol("dev", "dev", "pw-Q7x9")
        m.connect(0)
        e = _raises(ConnectRefused, m.receive_data, b"\x20\x02\x00" + bytes((code,)), 0)
        assert e.code == code and words in str(e)
        assert "pw-Q7x9" not in str(e)
        assert not m.connected


def test_publish_qos1_inflight_and_puback():
    m = _connected()
    pid = m.publish("t", b"v", 1)
    assert bytes(m.data_to_send()) == b"\x32\x06\x00\x01t" + bytes((0, pid)) + b"v"
    assert m.inflight_count() == 1
    assert m.receive_data(b"\x40\x02\x00" + bytes((pid,)), 1) == [(EV_PUBACK, pid)]
    assert m.inflight_count() == 0
    # A duplicate PUBACK is ignored.
    assert m.receive_data(b"\x40\x02\x00" + bytes((pid,)), 1) == []


def test_retransmit_with_dup_after_reconnect_in_order():
    m = _connected()
    a = m.publish("t", b"1", 1)
    b = m.publish("t", b"2", 1)
    m.data_to_send()
    m.receive_data(b"\x40\x02\x00" + bytes((a,)), 1)
    c = m.publish("t", b"3", 1)
    m.connection_lost()
    assert not m.connected
    _raises(LocalError, m.publish, "t", b"x", 1)
    m.connect(5)
    m.data_to_send()
    m.receive_data(CONNACK_OK, 6)
    out = bytes(m.data_to_send())
    assert out == (b"\x3a\x06\x00\x01t\x00" + bytes((b,)) + b"2"
                   + b"\x3a\x06\x00\x01t\x00" + bytes((c,)) + b"3")


def test_packet_ids_wrap_and_skip_ids_in_use():
    m = _connected()
    m._next_pid = 65533
    first = m.publish("t", b"", 1)
    assert first == 65534
    assert m.publish("t", b"", 1) == 65535
    assert m.publish("t", b"", 1) == 1
    m._next_pid = 65533
    assert m.publish("t", b"", 1) == 2  # 65534, 65535 and 1 are in flight


def test_subscribe_and_unsubscribe_acks():
    m = _connected()
    s = m.subscribe("a/b", 1)
    u = m.unsubscribe("a/b")
    events = m.receive_data(b"\x90\x03\x00" + bytes((s,)) + b"\x01" + b"\xb0\x02\x00" + bytes((u,)), 2)
    assert events == [(EV_SUBACK, s, [1]), (EV_UNSUBACK, u)]


def test_incoming_publish_qos1_is_acknowledged():
    m = _connected()
    events = m.receive_data(b"\x32\x09\x00\x03a/b\x12\x34hi", 3)
    assert events == [(EV_MESSAGE, "a/b", b"hi", 1, False)]
    assert bytes(m.data_to_send()) == b"\x40\x02\x12\x34"


def test_several_packets_in_one_read():
    m = _connected()
    events = m.receive_data(b"\x30\x04\x00\x01ax" + b"\xd0\x00" + b"\x31\x04\x00\x01by", 1)
    assert events == [(EV_MESSAGE, "a", b"x", 0, False), (EV_MESSAGE, "b", b"y", 0, True)]


def test_keepalive_ping_and_dead_link():
    m = _connected(keepalive=10, now=0)
    assert m.poll(5000) == 10000
    assert m.data_to_send() == b""
    m.poll(10000)
    assert bytes(m.data_to_send()) == p.PINGREQ
    m.receive_data(b"\xd0\x00", 11000)
    assert m.poll(12000) == 20000  # next PINGREQ 10 s after the last one; dead at 26000
    m.poll(20000)
    assert bytes(m.data_to_send()) == p.PINGREQ
    e = _raises(TransportError, m.poll, 26500)
    assert "presumed dead" in str(e)


def test_connack_timeout():
    m = MQTTProtocol("dev", keepalive=10)
    m.connect(0)
    assert m.poll(1000) == 15000
    _raises(TransportError, m.poll, 15000)


def test_malformed_packets_from_broker():
    bad = (
        b"\x40\x03\x00\x01\x00",        # PUBACK of 3 bytes
        b"\x41\x02\x00\x01",            # reserved flags set
        b"\x10\x00",                    # CONNECT from the broker
        b"\x36\x05\x00\x01t\x00\x01",   # QoS 3
        b"\x32\x05\x00\x01t\x00\x00",   # QoS 1 with packet id 0
        b"\x30\x04\x00\x05ab",          # topic longer than the packet
        b"\x30\x04\x00\x02\xff\xfe",    # topic not UTF-8
        b"\x20\x02\x00\x00",            # second CONNACK
        b"\xd0\x01\x00",                # PINGRESP with a body
        b"\x90\x02\x00\x01",            # SUBACK without return codes
    )
    for packet in bad:
        m = _connected()
        _raises(DecodeError, m.receive_data, packet, 1)


def test_publish_before_connack_is_an_error():
    m = MQTTProtocol("dev")
    m.connect(0)
    _raises(DecodeError, m.receive_data, b"\x30\x03\x00\x01t", 0)
