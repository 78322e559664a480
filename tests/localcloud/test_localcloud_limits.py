"""What one device can make the local cloud keep (issue 12, item 13): the emulator's
bounds per thing and per device, and the broker's size and queue limits."""

import logging
import socket
import ssl
import struct
import uuid

import cbor2
import pytest

from arduino_iot_cloud.localcloud import broker, emulator, wire
from arduino_iot_cloud.localcloud.emulator import BoundedLog, approx_size

pytestmark = pytest.mark.e2e


def senml(values):
    return wire.encode_senml(values)


def limit_warnings(caplog, dev):
    return [r for r in caplog.records if r.levelno == logging.WARNING and dev.device_id in r.getMessage()]


def test_properties_beyond_the_cap_are_dropped_counted_and_logged_once(local_cloud, device_factory, paho_device,
                                                                        caplog):
    caplog.set_level(logging.WARNING, logger="arduino_iot_cloud.localcloud")
    dev = device_factory(properties={"seed": 0})
    d = paho_device(dev)
    d.connect()
    cap = emulator.MAX_PROPERTIES
    for batch in range(3):  # 1,200 distinct new names, 400 per message
        d.publish("/a/t/%s/e/o" % dev.thing_id, senml({"p%d" % (batch * 400 + i): i for i in range(400)}))
    d.publish("/a/t/%s/e/o" % dev.thing_id, senml({"seed": 7, "p0": 1}))  # known names still update
    local_cloud.wait_for(dev, "seed", 7)
    values = local_cloud.values(dev)
    # "seed" and the first cap - 1 new names fit
    assert len(values) == cap and values["p0"] == 1 and "p%d" % (cap - 2) in values and "p%d" % (cap - 1) not in values
    assert local_cloud.dropped(dev) == {"properties": 1200 + 1 - cap}
    assert len(limit_warnings(caplog, dev)) == 1
    assert [x for k, x in local_cloud.events(dev) if k == "limit"] == ["properties"]
    # more of the same: counted, not logged again
    d.publish("/a/t/%s/e/o" % dev.thing_id, senml({"q%d" % i: i for i in range(50)}))
    d.publish("/a/t/%s/e/o" % dev.thing_id, senml({"seed": 8}))
    local_cloud.wait_for(dev, "seed", 8)
    assert local_cloud.dropped(dev) == {"properties": 1200 + 1 - cap + 50}
    assert len(limit_warnings(caplog, dev)) == 1


def test_values_over_the_size_caps_are_dropped(local_cloud, device_factory, paho_device):
    dev = device_factory()
    d = paho_device(dev)
    d.connect()
    big = "x" * (emulator.MAX_VALUE_BYTES - 8)  # approx_size counts 8 bytes more than the text
    d.publish("/a/t/%s/e/o" % dev.thing_id, senml({"over": big + "y", "fits": big, "n": 1}))
    local_cloud.wait_for(dev, "n", 1)
    assert sorted(local_cloud.values(dev)) == ["fits", "n"]
    assert local_cloud.dropped(dev) == {"value_size": 1}
    # the thing's values together stay under MAX_THING_BYTES
    for i in range(2 * emulator.MAX_THING_BYTES // emulator.MAX_VALUE_BYTES):
        d.publish("/a/t/%s/e/o" % dev.thing_id, senml({"big%d" % i: big}))
    d.publish("/a/t/%s/e/o" % dev.thing_id, senml({"n": 2}))
    local_cloud.wait_for(dev, "n", 2)
    values = local_cloud.values(dev)
    assert sum(approx_size(k) + approx_size(v) for k, v in values.items()) <= emulator.MAX_THING_BYTES
    assert local_cloud.dropped(dev)["thing_size"] >= emulator.MAX_THING_BYTES // emulator.MAX_VALUE_BYTES - 1
    # a composite value counts all its fields
    d.publish("/a/t/%s/e/o" % dev.thing_id, senml({"loc": {"a": big, "b": big}}))
    d.publish("/a/t/%s/e/o" % dev.thing_id, senml({"n": 3}))
    local_cloud.wait_for(dev, "n", 3)
    assert "loc" not in local_cloud.values(dev)
    # ... also when they come one by one: a composite cannot grow without end
    other = device_factory()
    d2 = paho_device(other)
    d2.connect()
    for i in range(4):
        d2.publish("/a/t/%s/e/o" % other.thing_id, senml({"loc": {"f%d" % i: "y" * 30000}}))
    d2.publish("/a/t/%s/e/o" % other.thing_id, senml({"n": 1}))
    local_cloud.wait_for(other, "n", 1)
    assert sorted(local_cloud.values(other)["loc"]) == ["f0", "f1"]
    assert local_cloud.dropped(other) == {"value_size": 2}
    # names count too: 100 KB names fill a thing as fast as 100 KB values
    for i in range(2 * emulator.MAX_THING_BYTES // 100000):
        d2.publish("/a/t/%s/e/o" % other.thing_id, senml({"%03d" % i + "n" * 100000: i}))
    d2.publish("/a/t/%s/e/o" % other.thing_id, senml({"n": 2}))
    local_cloud.wait_for(other, "n", 2)
    assert sum(len(k) for k in local_cloud.values(other)) <= emulator.MAX_THING_BYTES
    assert local_cloud.dropped(other)["thing_size"] >= emulator.MAX_THING_BYTES // 100000


def test_history_and_events_are_bounded_in_bytes(local_cloud, device_factory, paho_device):
    dev = device_factory()
    d = paho_device(dev)
    d.connect()
    chunk = 60 * 1024
    n = 2 * emulator.HISTORY_BYTES // chunk
    for i in range(n):
        d.publish("/a/t/%s/e/o" % dev.thing_id, senml({"s": "%06d" % i + "z" * chunk}))
    local_cloud.wait_for(dev, "s", lambda v: v.startswith("%06d" % (n - 1)))
    hist = local_cloud.history(dev, "s")
    assert 0 < len(hist) < n and sum(approx_size(v) for v in hist) <= emulator.HISTORY_BYTES
    assert hist[-1].startswith("%06d" % (n - 1))
    # malformed payloads: the event keeps their size and a bounded head
    junk = b"\xff" * (100 * 1024)
    for _ in range(3):
        d.publish("/a/t/%s/e/o" % dev.thing_id, junk)
    bad = local_cloud.wait_event(dev, "bad_values")
    assert bad["size"] == len(junk) and len(bad["payload"]) == 2 * emulator.PAYLOAD_KEPT
    assert len(bad["error"]) <= emulator.TEXT_KEPT
    kept = local_cloud.emulator._events[dev.device_id]
    assert kept.bytes <= emulator.EVENTS_BYTES


def test_bounded_log_drops_oldest_first_and_keeps_the_newest():
    log = BoundedLog(max_items=3, max_bytes=100)
    assert log.append("a", 10) == [] and log.append("b", 10) == []
    assert log.append("c", 10) == [] and log.append("d", 10) == ["a"]
    assert log.append("e", 85) == ["b", "c"] and list(log) == ["d", "e"] and log.bytes == 95
    assert log.append("huge", 1000) == ["d", "e"] and list(log) == ["huge"]


def test_broker_drops_publishes_over_its_limit_and_closes_on_larger_packets(local_cloud, device_factory,
                                                                            paho_device):
    dev = device_factory()
    d = paho_device(dev)
    d.connect()
    mark = local_cloud.mark(dev)
    d.publish("/a/t/%s/e/o" % dev.thing_id, b"\xff" * (broker.MESSAGE_SIZE_LIMIT + 1))  # acknowledged, dropped
    d.publish("/a/t/%s/e/o" % dev.thing_id, senml({"after": 1}))
    local_cloud.wait_for(dev, "after", 1)
    assert [k for k, _ in local_cloud.events(dev, since=mark) if k.startswith("bad_")] == []
    # a packet over max_packet_size: the broker closes the connection
    d.client.publish("/a/t/%s/e/o" % dev.thing_id, b"\xff" * broker.MAX_PACKET_SIZE, qos=1)
    with d.cond:
        assert d.cond.wait_for(lambda: d.disconnected is not None, 5)


def test_the_cloud_never_sends_what_the_broker_would_drop(local_cloud, device_factory):
    dev = device_factory(properties={"s": "small"})
    with pytest.raises(ValueError, match="over the broker's limit"):
        local_cloud.set(dev, "s", "x" * broker.MESSAGE_SIZE_LIMIT)
    with pytest.raises(ValueError, match="over the broker's limit"):
        local_cloud.publish_raw(dev, b"\x00" * (broker.MESSAGE_SIZE_LIMIT + 1), "c/dw")
    assert local_cloud.values(dev) == {"s": "small"}


# -- the broker's queue for a device that does not read ---------------------------------------

def _mqtt_string(data):
    return struct.pack("!H", len(data)) + data


def _packet(kind, body):
    out, n = bytearray([kind]), len(body)
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out) + body


def _read_packet(sock):
    """(first byte, body) of the next MQTT packet, or None at EOF or timeout."""
    def exactly(n):
        buf = b""
        while len(buf) < n:
            chunk = sock.recv(n - len(buf))
            if not chunk:
                raise EOFError
            buf += chunk
        return buf
    try:
        first = exactly(1)[0]
        length, shift = 0, 0
        while True:
            byte = exactly(1)[0]
            length |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        return first, exactly(length)
    except (EOFError, socket.timeout):
        return None


def test_the_broker_bounds_the_bytes_queued_for_a_device_that_does_not_read(local_cloud, device_factory):
    dev = device_factory()
    ctx = ssl.create_default_context(cafile=local_cloud.ca_file)
    raw = socket.create_connection((local_cloud.host, local_cloud.password_port), timeout=10)
    s = ctx.wrap_socket(raw, server_hostname="localhost")
    try:
        connect = (b"\x00\x04MQTT\x04\xc2\x00\x3c" + _mqtt_string(dev.device_id.encode())
                   + _mqtt_string(dev.device_id.encode()) + _mqtt_string(dev.secret.encode()))
        s.sendall(_packet(0x10, connect))
        assert _read_packet(s) == (0x20, b"\x00\x00")
        topic = "/a/t/%s/e/i" % dev.thing_id
        s.sendall(_packet(0x82, b"\x00\x01" + _mqtt_string(topic.encode()) + b"\x01"))
        assert _read_packet(s) == (0x90, b"\x00\x01\x01")
        # The cloud sends 100 KB writes that the device never acknowledges: beyond the
        # in-flight window the broker queues them, up to max_queued_bytes.
        size, sent = 100 * 1000, 0
        total = broker.MAX_QUEUED_BYTES * 3 // 2
        while sent < total:
            local_cloud.publish_raw(dev, senml({"w": "%06d" % sent + "x" * size}), "e/i")
            sent += size
        local_cloud.emulator.barrier()
        received = 0
        s.settimeout(2)
        while True:
            pkt = _read_packet(s)
            if pkt is None:
                break
            first, body = pkt
            if first >> 4 == 3:
                received += 1
                tlen = struct.unpack("!H", body[:2])[0]
                pid = body[2 + tlen:4 + tlen]
                s.sendall(_packet(0x40, pid))
        queued_max = broker.MAX_QUEUED_BYTES // size + 1
        assert 0 < received <= queued_max + 20, (received, sent // size)  # 20 = mosquitto's in-flight window
        assert received < sent // size
    finally:
        s.close()


def test_junk_on_a_thing_nobody_owns_is_not_kept(local_cloud, device_factory, paho_device):
    dev = device_factory()
    d = paho_device(dev)
    d.connect()
    nobodys = "/a/t/%s/e/o" % uuid.uuid4()
    mark = local_cloud.broker_mark()
    for _ in range(3):  # the ACL stops a device's junk at the broker
        d.publish(nobodys, b"\xff" * (100 * 1000))
    d.roundtrip()
    local_cloud.emulator.barrier()
    assert [e for e in local_cloud.broker_events(since=mark) if e[1] == "unowned_thing"] == []
    # what still reaches the cloud there (from the admin side) is recorded by size and head only
    local_cloud.emulator._client.publish(nobodys, b"\xff" * (100 * 1000), qos=1)
    junk = local_cloud.wait_broker_event("unowned_thing", since=mark)
    assert junk["size"] == 100 * 1000 and len(junk["payload"]) == 2 * emulator.PAYLOAD_KEPT
