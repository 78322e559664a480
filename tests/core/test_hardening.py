# Issue 12 hardening of the MQTT protocol and the session, by plain calls:
# a hostile broker that never acknowledges, drips bytes, refuses
# subscriptions, floods, or talks before the CONNACK.  Run by pytest and by
# the MicroPython unix port (tests/mpy_run.py).  Broker packets are written
# out byte by byte, never made by the client's own encoder.

from arduino_iot_cloud import senml
from arduino_iot_cloud import session as session_module
from arduino_iot_cloud.errors import RemoteError, SubscribeRefused, TransportError
from arduino_iot_cloud.mqtt import packets as p
from arduino_iot_cloud.mqtt.protocol import EV_CONNECTED, EV_MESSAGE, EV_SUBACK, MQTTProtocol
from arduino_iot_cloud.records import Property, Registry
from arduino_iot_cloud.session import DETACHED, READY, DeviceSession

from util import raises

DEV = "d3f0b2c8-0000-4000-8000-000000000001"
CONNACK_OK = b"\x20\x02\x00\x00"


def _u16(n):
    return bytes((n >> 8, n & 0xFF))


def _publish(topic, payload, qos=0, pid=1):
    # A broker's PUBLISH, built here by hand.
    t = topic.encode()
    body = _u16(len(t)) + t + (_u16(pid) if qos else b"") + payload
    assert len(body) < 0x4000
    length = bytes((len(body),)) if len(body) < 0x80 else bytes(((len(body) & 0x7F) | 0x80, len(body) >> 7))
    return bytes((0x30 | (qos << 1),)) + length + body


def _thing_event(thing):
    return _publish("/a/d/%s/e/i" % DEV, senml.encode((("thing_id", thing),)))


class Device:
    """MQTTProtocol and DeviceSession wired as engine.Engine wires them, with
    a broker that is never heard except through feed()."""

    def __init__(self, *records):
        reg = Registry()
        for r in records:
            reg.add(r)
        self.m = MQTTProtocol(DEV, DEV, "secret", keepalive=10)
        self.s = DeviceSession(DEV, reg, "client", "2.0.0-sync")
        self.errors = []
        self.now = 0
        self.connect()

    def connect(self):
        self.m.connect(self.now)
        self.m.data_to_send()
        self.feed(CONNACK_OK)

    def feed(self, data):
        # Engine._read and Engine.drop in short.
        try:
            for ev in self.m.receive_data(data, self.now):
                if ev[0] == EV_MESSAGE:
                    self.s.on_message(ev[1], ev[2], self.now)
                elif ev[0] == EV_CONNECTED:
                    self.s.on_connected(self.m, self.now)
            self.s.poll(self.now)
        except RemoteError as e:
            self.lost(e)

    def lost(self, error=None):
        self.errors.append(str(error))
        self.m.connection_lost(self.s.resend_after_reconnect)
        self.s.on_disconnected()


def test_session_ignores_messages_while_detached():
    # Item 1: a broker sending the thing id before the CONNACK reached the session.
    s = DeviceSession(DEV, Registry(), "client", "2.0.0-sync")
    s.on_message("/a/d/%s/e/i" % DEV, senml.encode((("thing_id", "t1"),)), 0)
    s.on_message("/a/t/t1/e/i", senml.encode((("x", 1),)), 0)
    assert s.state == DETACHED and s.thing_id is None and s.link is None


def test_publish_before_connack_stays_a_protocol_error():
    m = MQTTProtocol(DEV)
    m.connect(0)
    raises(RemoteError, m.receive_data, _thing_event("t1"), 0)


def test_a_broker_that_never_acknowledges_cannot_grow_the_inflight_table():
    # Item 5: the broker CONNACKs, never PUBACKs nor SUBACKs, and keeps sending
    # new thing ids; the device also has values to send.  Nothing may grow
    # past the window, nothing may raise, and a reconnect must not resend the
    # stale requests.
    counter = Property("counter", value=0)
    d = Device(counter)
    worst = 0
    for i in range(3000):
        d.now += 10
        if d.s.state == READY:
            counter.set(i)
        d.feed(_thing_event("thing-%d" % i))
        if i % 7 == 3:  # the last values of the thing just attached: the device gets READY
            d.feed(_publish("/a/t/thing-%d/shadow/i" % i, senml.encode((("counter", 0),))))
        if i % 500 == 499:
            d.lost()
        if d.m.state == 0:  # lost (the broker owes too many SUBACKs): reconnect
            d.connect()
        worst = max(worst, d.m.inflight_count(), len(d.m._pending) // 2, len(getattr(d.s, "_outbox", ())) * 4)
    assert worst <= 32, worst
    assert "unanswered" in d.errors[0], d.errors[:3]
    # Reconnect: only property values (e/o) are sent again.
    d.lost()
    d.m.connect(d.now)
    d.m.data_to_send()
    d.m.receive_data(CONNACK_OK, d.now)
    resent = bytes(d.m.data_to_send())
    r = p.PacketReader()
    r.feed(resent)
    topics = []
    while True:
        packet = r.next_packet()
        if packet is None:
            break
        topics.append(p.decode_publish(packet[0], packet[1])[0])
    assert topics and len(topics) <= 32
    for t in topics:
        assert t.startswith("/a/t/") and t.endswith("/e/o"), t


def test_requests_wait_for_room_in_the_window():
    d = Device(Property("v", value=1))
    d.feed(_thing_event("t1"))
    d.feed(_publish("/a/t/t1/shadow/i", senml.encode((("v", 1),))))
    assert d.s.state == READY
    # Fill the window with values the broker never acknowledges.
    v = d.s.registry.get("v")
    for i in range(40):
        v.set(i + 2)
        d.s.poll(d.now)
    assert d.m.inflight_count() == 32
    d.m.data_to_send()
    d.feed(_thing_event("t2"))  # a new thing: getLastValues must wait for room
    assert d.m.inflight_count() == 32 and d.s._outbox
    assert b"getLastValues" not in bytes(d.m.data_to_send())
    # A PUBACK frees a slot: the request goes out before any value.
    first = d.m._inflight_order[0]
    d.feed(b"\x40\x02" + _u16(first))
    out = bytes(d.m.data_to_send())
    assert b"getLastValues" in out and b"/a/t/t2/shadow/o" in out
    assert not d.s._outbox and not d.errors


def test_subscriptions_left_unanswered_give_up_the_link():
    m = MQTTProtocol(DEV)
    m.connect(0)
    m.receive_data(CONNACK_OK, 0)
    for i in range(64):
        m.subscribe("t/%d" % i)
    raises(TransportError, m.subscribe, "one/more")
    m.connection_lost()
    m.connect(1)
    m.receive_data(CONNACK_OK, 1)
    m.subscribe("fresh")  # a new connection owes nothing


def test_a_refused_subscription_is_an_error_of_the_link():
    # Item 11: SUBACK 0x80.
    m = MQTTProtocol(DEV)
    m.connect(0)
    m.receive_data(CONNACK_OK, 0)
    ok = m.subscribe("/a/d/x/e/i")
    assert m.receive_data(b"\x90\x03" + _u16(ok) + b"\x01", 1) == [(EV_SUBACK, ok, [1])]
    bad = m.subscribe("/a/d/x/c/dw")
    e = raises(SubscribeRefused, m.receive_data, b"\x90\x03" + _u16(bad) + b"\x80", 2)
    assert "/a/d/x/c/dw" in str(e) and "0x80" in str(e) and e.topic == "/a/d/x/c/dw"
    assert isinstance(e, RemoteError)


def test_bytes_of_a_packet_that_never_ends_are_not_proof_of_life():
    # Item 10: one byte a second of a PUBLISH that claims 100 bytes.
    m = MQTTProtocol(DEV, keepalive=2)
    m.connect(0)
    m.receive_data(CONNACK_OK, 0)
    drip = b"\x30\x64" + b"x" * 98
    dead = None
    for i in range(len(drip)):
        now = 500 * (i + 1)
        m.receive_data(drip[i:i + 1], now)
        try:
            m.poll(now)
        except TransportError:
            dead = now
            break
    assert dead is not None and dead <= 3000, dead


def test_a_pingresp_is_proof_of_life():
    m = MQTTProtocol(DEV, keepalive=2)
    m.connect(0)
    m.receive_data(CONNACK_OK, 0)
    m.poll(2000)  # PINGREQ
    m.receive_data(b"\xd0", 2100)
    m.receive_data(b"\x00", 2200)  # PINGRESP complete at 2200
    m.poll(5000)  # 2.8 s after it: alive
    raises(TransportError, m.poll, 5200)


def test_connack_timeout_runs_from_connect_whatever_arrives():
    m = MQTTProtocol(DEV, keepalive=2)
    m.connect(0)
    assert m.poll(0) == 3000
    m.receive_data(b"\x20", 1000)  # a CONNACK's first byte, and no more
    m.receive_data(b"\x02", 2900)
    raises(TransportError, m.poll, 3000)


def test_receive_data_handles_at_most_max_packets():
    # Item 9: the work per call is bounded in packets; the rest stays buffered.
    m = MQTTProtocol(DEV)
    m.connect(0)
    m.receive_data(CONNACK_OK, 0)
    flood = b"".join(_publish("t", bytes((i,))) for i in range(10))
    events = m.receive_data(flood, 1, 4)
    assert [e[2] for e in events] == [b"\x00", b"\x01", b"\x02", b"\x03"] and m.backlog
    events = m.receive_data(b"", 2, 4)
    assert [e[2] for e in events] == [b"\x04", b"\x05", b"\x06", b"\x07"] and m.backlog
    events = m.receive_data(b"", 3, 4)
    assert [e[2] for e in events] == [b"\x08", b"\x09"] and not m.backlog
    assert m.packets_in == 11  # CONNACK and ten PUBLISH


class _Lines:
    """Stands for the session module's logger: records what would be logged."""

    def __init__(self):
        self.lines = []

    def _add(self, msg, *args):
        self.lines.append(msg % args if args else msg)

    warning = error = info = debug = _add


def test_repeated_warnings_are_rate_limited():
    # Item 9: 2,000 messages on topics nobody subscribed to, over 25 s: one
    # line, then one line with a count per 10 s, not 2,000 lines.
    saved = session_module.log
    session_module.log = lines = _Lines()
    try:
        d = Device()
        for i in range(2000):
            d.now = i * 12 + 1
            d.feed(_publish("/a/t/someone-else/e/i", b"\xa0"))
        for i in range(10):
            d.feed(_publish("/a/d/%s/e/i" % DEV, b"\xff"))  # malformed
    finally:
        session_module.log = saved
    unexpected = [ln for ln in lines.lines if "unexpected topic" in ln]
    malformed = [ln for ln in lines.lines if "malformed" in ln]
    assert len(unexpected) == 3, unexpected
    assert "more like it" not in unexpected[0] and "more like it" in unexpected[1]
    assert len(malformed) == 1, malformed
