"""The cloud emulator against a plain paho "device": both attach variants, values, writes, events."""

import struct

import cbor2
import pytest

from arduino_iot_cloud.localcloud import wire

pytestmark = pytest.mark.e2e

GET_LAST_VALUES = cbor2.dumps([{0: "r:m", 3: "getLastValues"}])


def senml(payload):
    """Decode a SenML pack into {name: value} (names as sent)."""
    out = {}
    for rec in cbor2.loads(payload):
        for label in (2, 3, 4):
            if label in rec:
                out[rec[0]] = rec[label]
    return out


def _device_info(d, dev):
    return senml(d.expect("/a/d/%s/e/i" % dev.device_id))


def test_event_variant_attach(local_cloud, device_factory, paho_device):
    dev = device_factory(variant="event", properties={"temp": 21.5, "sw": True, "msg": "hi"},
                         tz_offset=3600, tz_dst_until=1700000000)
    d = paho_device(dev)
    d.connect()
    d.subscribe("/a/d/%s/e/i" % dev.device_id)
    assert _device_info(d, dev) == {"thing_id": dev.thing_id, "tz_offset": 3600, "tz_dst_until": 1700000000}
    d.subscribe("/a/t/%s/e/i" % dev.thing_id)
    d.subscribe("/a/t/%s/shadow/i" % dev.thing_id)
    d.publish("/a/t/%s/shadow/o" % dev.thing_id, GET_LAST_VALUES)
    assert senml(d.expect("/a/t/%s/shadow/i" % dev.thing_id)) == {"temp": 21.5, "sw": True, "msg": "hi"}
    d.command(wire.DEVICE_BEGIN, ["1.4.1-async"])
    # commands are not answered in this variant
    d.subscribe("/a/d/%s/c/dw" % dev.device_id)
    d.command(wire.THING_BEGIN, [""])
    d.roundtrip()
    local_cloud.emulator.barrier()
    assert d.taken("/a/d/%s/c/dw" % dev.device_id) == []
    kinds = [k for k, _ in local_cloud.events(dev)]
    assert kinds[0] == "connect"
    assert kinds.index("last_values") < kinds.index("device_begin") < kinds.index("thing_begin")
    assert ("subscribe", "/a/d/%s/e/i" % dev.device_id) in local_cloud.events(dev)
    assert ("last_values", "shadow") in local_cloud.events(dev)
    assert local_cloud.device(dev).library_version == "1.4.1-async"


def test_command_variant_attach(local_cloud, device_factory, paho_device):
    dev = device_factory(auth="cert", variant="command", properties={"loc": {"lat": 1.5, "lon": -2.25}, "n": 7},
                         tz_offset=-7200, tz_dst_until=4294967295)
    d = paho_device(dev)
    d.connect()
    d.subscribe("/a/d/%s/c/dw" % dev.device_id)
    d.subscribe("/a/d/%s/e/i" % dev.device_id)
    d.command(wire.DEVICE_BEGIN, ["2.0.0-async"])
    d.command(wire.THING_BEGIN, [""])
    assert d.expect_command() == (wire.THING_UPDATE, [dev.thing_id])
    d.command(wire.LAST_VALUES_BEGIN, [])
    tag, (blob,) = d.expect_command()
    assert tag == wire.LAST_VALUES_UPDATE and isinstance(blob, bytes)
    assert senml(blob) == {"loc:lat": 1.5, "loc:lon": -2.25, "n": 7}
    d.command(wire.TIMEZONE_UP, [])
    assert d.expect_command() == (wire.TIMEZONE_DOWN, [-7200, 4294967295])
    # no retained thing_id on e/i, and shadow requests go unanswered
    d.subscribe("/a/t/%s/shadow/i" % dev.thing_id)
    d.publish("/a/t/%s/shadow/o" % dev.thing_id, GET_LAST_VALUES)
    d.roundtrip()
    local_cloud.emulator.barrier()
    d.roundtrip()
    assert d.taken("/a/d/%s/e/i" % dev.device_id) == []
    assert d.taken("/a/t/%s/shadow/i" % dev.thing_id) == []
    assert [e for e in local_cloud.events(dev) if e[0] in ("device_begin", "thing_begin", "last_values",
                                                          "timezone_request")] == [
        ("device_begin", "2.0.0-async"), ("thing_begin", ""), ("last_values", "command"),
        ("timezone_request", None), ("last_values", "shadow")]


def test_both_variant_answers_both_ways(device_factory, paho_device):
    dev = device_factory(properties={"x": 1})
    d = paho_device(dev)
    d.connect()
    d.subscribe("/a/d/%s/c/dw" % dev.device_id)
    d.subscribe("/a/d/%s/e/i" % dev.device_id)
    assert _device_info(d, dev)["thing_id"] == dev.thing_id
    d.command(wire.THING_BEGIN, [dev.thing_id])
    assert d.expect_command() == (wire.THING_UPDATE, [dev.thing_id])
    d.subscribe("/a/t/%s/shadow/i" % dev.thing_id)
    d.publish("/a/t/%s/shadow/o" % dev.thing_id, GET_LAST_VALUES)
    assert senml(d.expect("/a/t/%s/shadow/i" % dev.thing_id)) == {"x": 1}


def test_device_without_thing(device_factory, paho_device):
    dev = device_factory(thing_id="", variant="both")
    d = paho_device(dev)
    d.connect()
    d.subscribe("/a/d/%s/c/dw" % dev.device_id)
    d.subscribe("/a/d/%s/e/i" % dev.device_id)
    assert _device_info(d, dev)["thing_id"] == ""
    d.command(wire.THING_BEGIN, [""])
    assert d.expect_command() == (wire.THING_UPDATE, [""])


def test_reported_values_cpp_style(local_cloud, device_factory, paho_device):
    dev = device_factory(variant="command")
    d = paho_device(dev)
    d.connect()
    # indefinite array, single-precision floats, base name and base time, a composite
    first = (b"\xa4" + b"\x21\x60" + b"\x22\x19\x03\xe8" + b"\x00\x64temp"  # bn "", bt 1000, n "temp"
             + b"\x02\xfa" + struct.pack(">f", 0.1))  # v: single-precision 0.1
    pack = (b"\x9f" + first + cbor2.dumps({0: "sw", 4: True})
            + cbor2.dumps({0: "loc:lat", 2: 1.0}) + cbor2.dumps({0: "loc:lon", 2: 2.0}) + b"\xff")
    d.publish("/a/t/%s/e/o" % dev.thing_id, pack)
    assert local_cloud.wait_for(dev, "temp", 0.1) == pytest.approx(0.1, rel=1e-6)
    assert local_cloud.wait_for(dev, "loc", {"lat": 1.0, "lon": 2.0}) == {"lat": 1.0, "lon": 2.0}
    assert local_cloud.get(dev, "sw") is True
    assert local_cloud.values(dev) == {"temp": pytest.approx(0.1), "sw": True, "loc": {"lat": 1.0, "lon": 2.0}}
    d.publish("/a/t/%s/e/o" % dev.thing_id, cbor2.dumps([{0: "temp", 2: 22}]))
    local_cloud.wait_for(dev, "temp", lambda v: v > 20)
    assert local_cloud.history(dev, "temp") == [pytest.approx(0.1), 22]
    assert ("values", {"temp": 22}) in local_cloud.events(dev)


def test_wait_for_timeout_says_what_was_seen(local_cloud, device_factory, paho_device):
    dev = device_factory()
    d = paho_device(dev)
    d.connect()
    d.publish("/a/t/%s/e/o" % dev.thing_id, cbor2.dumps([{0: "count", 2: 3}]))
    local_cloud.wait_for(dev, "count", 3)
    with pytest.raises(TimeoutError) as info:
        local_cloud.wait_for(dev, "count", 4, timeout=0.2)
    assert "'count'" in str(info.value) and "[3]" in str(info.value)


def test_dashboard_writes_reach_the_device_and_become_last_values(local_cloud, device_factory, paho_device):
    dev = device_factory(variant="command", properties={"sw": False})
    d = paho_device(dev)
    d.connect()
    topic = "/a/t/%s/e/i" % dev.thing_id
    d.subscribe(topic)
    local_cloud.set(dev, "sw", True)
    assert cbor2.loads(d.expect(topic)) == [{0: "sw", 4: True}]
    local_cloud.set(dev, "temp", 21.5)
    assert d.expect(topic) == bytes.fromhex("81A2006474656D7002FB4035800000000000")
    local_cloud.set(dev, "label", "text")
    assert senml(d.expect(topic)) == {"label": "text"}
    local_cloud.set(dev, "loc", {"lat": 1, "lon": 2.5})
    assert cbor2.loads(d.expect(topic)) == [{0: "loc:lat", 2: 1}, {0: "loc:lon", 2: 2.5}]
    assert local_cloud.values(dev) == {"sw": True, "temp": 21.5, "label": "text", "loc": {"lat": 1, "lon": 2.5}}
    assert local_cloud.history(dev, "sw") == []  # writes are not device reports
    d.subscribe("/a/d/%s/c/dw" % dev.device_id)
    d.command(wire.LAST_VALUES_BEGIN, [])
    assert senml(d.expect_command()[1][0])["sw"] is True


def test_reassign_detach_and_timezone(local_cloud, device_factory, paho_device):
    dev = device_factory(variant="both")
    old = dev.thing_id
    d = paho_device(dev)
    d.connect()
    d.subscribe("/a/d/%s/c/dw" % dev.device_id)
    d.subscribe("/a/d/%s/e/i" % dev.device_id)
    assert _device_info(d, dev)["thing_id"] == old
    new = local_cloud.reassign(dev, "thing-2")
    assert new == "thing-2" and local_cloud.device(dev).thing_id == "thing-2"
    assert d.expect_command() == (wire.THING_UPDATE, ["thing-2"])
    assert _device_info(d, dev)["thing_id"] == "thing-2"
    local_cloud.detach(dev)
    assert d.expect_command() == (wire.THING_DETACH, ["thing-2"])
    assert _device_info(d, dev)["thing_id"] == ""
    local_cloud.send_timezone(dev, 7200, 1800000000)
    assert d.expect_command() == (wire.TIMEZONE_DOWN, [7200, 1800000000])
    assert _device_info(d, dev) == {"thing_id": "", "tz_offset": 7200, "tz_dst_until": 1800000000}
    local_cloud.send_command(dev, wire.THING_DETACH, ["raw"])
    assert d.expect_command() == (wire.THING_DETACH, ["raw"])
    assert [k for k, _ in local_cloud.events(dev) if k in ("reassign", "detach", "timezone_sent")] == [
        "reassign", "detach", "timezone_sent"]


def test_events_show_a_refetch_after_reconnect(local_cloud, device_factory, paho_device):
    dev = device_factory(variant="command", properties={"x": 1})

    def attach(d):
        d.subscribe("/a/d/%s/c/dw" % dev.device_id)
        d.command(wire.DEVICE_BEGIN, ["test"])
        d.command(wire.THING_BEGIN, [""])
        d.expect_command()
        d.command(wire.LAST_VALUES_BEGIN, [])
        d.expect_command()

    d = paho_device(dev)
    d.connect()
    attach(d)
    mark = local_cloud.mark(dev)
    d.close()
    local_cloud.wait_event(dev, "disconnect", since=mark)
    d2 = paho_device(dev)
    d2.connect()
    attach(d2)
    kinds = [k for k, _ in local_cloud.events(dev, since=mark)]
    assert kinds[:2] == ["disconnect", "connect"], kinds
    assert kinds.index("connect") < kinds.index("device_begin") < kinds.index("last_values")
    stamps = [t for t, _, _ in local_cloud.events(dev, timestamps=True)]
    assert stamps == sorted(stamps)


def test_malformed_messages_are_recorded_not_fatal(local_cloud, device_factory, paho_device):
    dev = device_factory()
    d = paho_device(dev)
    d.connect()
    d.publish("/a/d/%s/c/up" % dev.device_id, b"\xff\x00")
    d.publish("/a/d/%s/c/up" % dev.device_id, cbor2.dumps(["untagged"]))
    d.publish("/a/t/%s/e/o" % dev.thing_id, b"not cbor at all")
    d.publish("/a/d/%s/c/up" % dev.device_id, cbor2.dumps(cbor2.CBORTag(0x019900, [b"\x00" * 16, 1, 0, 0])))
    local_cloud.wait_event(dev, "command")
    kinds = [k for k, _ in local_cloud.events(dev)]
    assert kinds.count("bad_command") == 2 and "bad_values" in kinds
    assert local_cloud.wait_event(dev, "command")["name"] == "0x019900"
    d.publish("/a/t/%s/e/o" % dev.thing_id, cbor2.dumps([{0: "ok", 4: True}]))
    assert local_cloud.wait_for(dev, "ok", True) is True
