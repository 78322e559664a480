"""The device protocol end to end, on the local cloud (real mosquitto over TLS),
socket transport, for the two attach variants the cloud may speak ("event":
thing id on /a/d/<dev>/e/i and last values on shadow/i, as 1.4.1 expects;
"command": ThingBegin/ThingUpdate/LastValues*/Timezone* on c/up and c/dw).

Covered: every property type both ways (bool, int, float, str, Location, Color,
ColoredLight, DimmedLight, Television, Schedule), last values of every type on
start, a wrong-type write inside a message, a thing reassigned, a thing
detached, a device without a thing yet, and the timezone.

Devices run in-process (e2e_helpers.Driver); the time limit per test and the
``driven`` fixture are in conftest.py.  A client certificate not signed by the
broker's CA is covered by tests/tls/test_tls_refusals.py (not repeated here).
"""

import time

import pytest

from arduino_iot_cloud import Color, ColoredLight, DimmedLight, Location, Schedule, Television
from arduino_iot_cloud.localcloud import wire
from arduino_iot_cloud.localcloud.emulator import values_match
from e2e_helpers import MODES, WAIT, make_client

VARIANTS = ["event", "command"]
TRANSPORT = "socket"

# Schedule mask: unit day (3 << 30), fixed interval (1 << 26), every 1 unit.
# Above 2**31: an unsigned 32-bit value must survive both ways.
DAILY = (3 << 30) | (1 << 26) | 1
WEEKLY = (2 << 26) | 0b0111110  # unit s, weekly, a day-of-week mask

COMPOSITES = {
    "loc": Location, "col": Color, "clight": ColoredLight, "dimmer": DimmedLight, "tv": Television,
    "sched": Schedule,
}

# Values as the cloud holds them (dicts for composites), a first and a second set.
FIRST = {
    "sw": True, "count": 7, "temp": 21.5, "label": "kitchen",
    "loc": {"lat": 45.5, "lon": 9.25},
    "col": {"hue": 120.0, "sat": 50.0, "bri": 75.0},
    "clight": {"swi": True, "hue": 10.0, "sat": 20.0, "bri": 30.0},
    "dimmer": {"swi": False, "bri": 40.0},
    "tv": {"swi": True, "vol": 15, "mut": False, "pbc": Television.PLAYBACK_PLAY, "inp": 16, "cha": 5},
    "sched": {"frm": 1700000000, "to": 1800000000, "len": 3600, "msk": DAILY},
}
SECOND = {
    "sw": False, "count": 4294967295, "temp": -3.125, "label": "hall \u00e9 \u2603",
    "loc": {"lat": -33.875, "lon": 151.25},
    "col": {"hue": 240.0, "sat": 100.0, "bri": 12.5},
    "clight": {"swi": False, "hue": 300.0, "sat": 80.0, "bri": 5.0},
    "dimmer": {"swi": True, "bri": 99.5},
    "tv": {"swi": False, "vol": 70, "mut": True, "pbc": Television.PLAYBACK_PAUSE, "inp": 55, "cha": 101},
    "sched": {"frm": 1710000000, "to": 0, "len": 60, "msk": WEEKLY},
}
# The type each field must have on the device, whatever CBOR number type carried it.
FIELD_TYPES = {name: dict(cls.FIELDS) for name, cls in COMPOSITES.items()}
PLAIN_TYPES = {"sw": bool, "count": int, "temp": float, "label": str}


def register_all(client, values=None, on_write=None):
    """Register every type; ``values`` None: all unknown, taken from the cloud's last values."""
    for name in PLAIN_TYPES:
        client.register(name, value=None if values is None else values[name], on_write=on_write)
    for name, cls in COMPOSITES.items():
        fields = {} if values is None else values[name]
        client.register(cls(name, on_write=on_write, **fields))


def assert_typed(name, got, expected):
    """``got`` (a plain value or a composite object) equals ``expected`` with the right types."""
    if name in PLAIN_TYPES:
        assert type(got) is PLAIN_TYPES[name], "%s: %r is %s" % (name, got, type(got).__name__)
        assert values_match(got, expected), "%s: %r != %r" % (name, got, expected)
        return
    assert isinstance(got, COMPOSITES[name]), "%s: %r is not a %s" % (name, got, COMPOSITES[name].__name__)
    for field, value in expected.items():
        attr = getattr(got, field)
        assert type(attr) is FIELD_TYPES[name][field], "%s.%s: %r is %s" % (name, field, attr, type(attr).__name__)
        assert values_match(attr, value), "%s.%s: %r != %r" % (name, field, attr, value)


def reported(cloud, dev, name):
    """Every value the device reported for ``name`` (composites: one dict per message)."""
    return cloud.history(dev, name)


async def until_reported(d, cloud, dev, name, value, timeout=WAIT):
    """Drive the device until its latest report of ``name`` matches ``value`` (composites: whole);
    return that report.  (LocalCloud.wait_for would block the device's own loop.)"""
    def check():
        hist = cloud.history(dev, name)
        return bool(hist) and values_match(hist[-1], value)

    await d.until(check, "%s=%r in the cloud (reported: %r)" % (name, value, cloud.history(dev, name)[-3:]),
                  timeout)
    return cloud.history(dev, name)[-1]


async def until_event(d, cloud, dev, kind, detail=None, since=0, timeout=WAIT):
    """Drive the device until the cloud has seen event ``kind`` (with ``detail``) since mark ``since``."""
    def check():
        return [x for k, x in cloud.events(dev, since=since) if k == kind and (detail is None or x == detail)]

    await d.until(check, "event %s %r" % (kind, detail or ""), timeout)
    return check()[0]


async def settle(d, seconds):
    """Keep the device running for ``seconds`` (steps in sync mode, the loop in async mode)."""
    deadline = time.monotonic() + seconds
    await d.until(lambda: time.monotonic() > deadline, "%.2f s to pass" % seconds)


def unowned(cloud, thing_id):
    """Messages that reached the cloud on a thing no device owns any more."""
    return [d for _t, kind, d in cloud.broker_events() if kind == "unowned_thing" and d["thing_id"] == thing_id]


# --- every type, both ways ---------------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("variant", VARIANTS)
async def test_device_values_of_every_type_reach_the_cloud_whole(local_cloud, device_factory, driven,
                                                                 variant, mode):
    dev = device_factory(variant=variant)
    client = make_client(local_cloud, dev, TRANSPORT, mode)
    register_all(client, FIRST)
    d = await driven(client)
    await d.attached()
    for name, value in FIRST.items():
        await until_reported(d, local_cloud, dev, name, value)

    # Change every plain property, and one field of each composite at a time.
    for name in PLAIN_TYPES:
        client[name] = SECOND[name]
    for name in COMPOSITES:
        for field, value in SECOND[name].items():
            setattr(client[name], field, value)
            await settle(d, 0.02)  # a partial composite would go out now if it could
    for name, value in SECOND.items():
        got = await until_reported(d, local_cloud, dev, name, value)
        assert values_match(local_cloud.get(dev, name), value)
        if name in COMPOSITES:
            assert isinstance(got, dict)
    # Composites always arrive whole: every report holds every field.
    for name, cls in COMPOSITES.items():
        fields = set(dict(cls.FIELDS))
        reports = reported(local_cloud, dev, name)
        assert reports, name
        for r in reports:
            assert set(r) == fields, "%s reported without all fields: %r" % (name, r)
    # The cloud decoded the types the device meant.
    values = local_cloud.values(dev)
    assert values["sw"] is False and values["count"] == 4294967295 and type(values["count"]) is int
    assert values["label"] == SECOND["label"] and values["tv"]["mut"] is True
    assert values["sched"]["msk"] == WEEKLY and type(values["tv"]["vol"]) is int


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("variant", VARIANTS)
async def test_dashboard_writes_of_every_type_reach_on_write(local_cloud, device_factory, driven,
                                                             variant, mode):
    dev = device_factory(variant=variant, properties=FIRST)
    client = make_client(local_cloud, dev, TRANSPORT, mode)
    writes = []
    register_all(client, FIRST, on_write=lambda cl, value: writes.append(value))
    d = await driven(client)
    await d.attached()
    await until_reported(d, local_cloud, dev, "temp", FIRST["temp"])  # the device's first report
    del writes[:]
    for name, value in SECOND.items():
        local_cloud.set(dev, name, value)
    await d.until(lambda: len(writes) >= len(SECOND), "on_write for every property")
    assert len(writes) == len(SECOND), writes
    for name, value in SECOND.items():
        got = client[name]
        assert_typed(name, got, value)
    # Composites are passed as the registered object itself, fields as attributes.
    for name in COMPOSITES:
        assert any(w is client[name] for w in writes), "%s: on_write did not get the object" % name
    plain = [w for w in writes if not hasattr(w, "as_dict")]
    assert sorted(map(repr, plain)) == sorted(repr(SECOND[n]) for n in PLAIN_TYPES)

    # Numbers as the cloud may send them: an integer for a float, an integral float for an int.
    del writes[:]
    local_cloud.set(dev, "temp", 30)
    local_cloud.set(dev, "count", 12.0)
    local_cloud.set(dev, "loc", {"lat": 2, "lon": 3})
    await d.until(lambda: len(writes) >= 3, "three more on_write calls")
    assert_typed("temp", client["temp"], 30.0)
    assert_typed("count", client["count"], 12)
    assert_typed("loc", client["loc"], {"lat": 2.0, "lon": 3.0})
    # A write is not echoed back as a device report.
    assert local_cloud.history(dev, "temp") == [FIRST["temp"]]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("variant", VARIANTS)
async def test_last_values_of_every_type_restored_on_start(local_cloud, device_factory, driven, variant, mode):
    dev = device_factory(variant=variant, properties=SECOND)
    client = make_client(local_cloud, dev, TRANSPORT, mode)
    writes = []
    register_all(client, None, on_write=lambda cl, value: writes.append(value))
    mark = local_cloud.mark(dev)
    d = await driven(client)
    await d.attached()
    assert await until_event(d, local_cloud, dev, "last_values", since=mark) == (
        "shadow" if variant == "event" else "command")
    for name, value in SECOND.items():
        assert_typed(name, client[name], value)
    # on_write ran once per property with the restored value.
    assert len(writes) == len(SECOND), writes
    # Nothing changed on the device: nothing is sent back.
    await settle(d, 0.2)
    assert [e for e in local_cloud.events(dev, since=mark) if e[0] == "values"] == []


@pytest.mark.parametrize("variant", VARIANTS)
async def test_wrong_type_write_is_logged_and_the_rest_of_the_message_applies(local_cloud, device_factory,
                                                                              driven, caplog, variant):
    dev = device_factory(variant=variant)
    client = make_client(local_cloud, dev, TRANSPORT, "sync")
    writes = []
    register_all(client, FIRST, on_write=lambda cl, value: writes.append(repr(value)))
    d = await driven(client)
    await d.attached()
    del writes[:]
    # One message: two wrong types (a str for an int, 3 for a bool field), three good records.
    payload = wire.encode_senml({"count": "twelve", "temp": 19.5, "label": "after",
                                 "dimmer": {"swi": 3, "bri": 55.0}})
    caplog.set_level("WARNING")
    local_cloud.publish_raw(dev, payload, "e/i")
    await d.until(lambda: client["label"] == "after", "the message to apply")
    assert client["count"] == FIRST["count"] and client["temp"] == 19.5 and client["label"] == "after"
    assert client["dimmer"].bri == 55.0 and client["dimmer"].swi is FIRST["dimmer"]["swi"]
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert any("count" in m for m in errors), errors
    assert any("dimmer:swi" in m for m in errors), errors
    assert client.connected
    assert sorted(writes) == sorted([repr(19.5), repr("after"), repr(client["dimmer"])])
    # The link still carries values both ways.
    client["count"] = 8
    await until_reported(d, local_cloud, dev, "count", 8)


# --- things: reassign, detach, none yet --------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("variant", VARIANTS)
async def test_thing_update_moves_the_device_to_the_new_thing(local_cloud, device_factory, driven, variant, mode):
    dev = device_factory(variant=variant, properties={"level": 1})
    old = dev.thing_id
    client = make_client(local_cloud, dev, TRANSPORT, mode)
    writes = []
    client.register("level", value=None, on_write=lambda cl, v: writes.append(v))
    client.register("out", value=10)
    d = await driven(client)
    await d.attached()
    await until_reported(d, local_cloud, dev, "out", 10)
    attaches = client.session.attach_count

    mark = local_cloud.mark(dev)
    new = local_cloud.reassign(dev)
    await d.until(lambda: client.thing_id == new and client.connected, "the attach to the new thing")
    assert client.session.attach_count == attaches + 1
    await until_event(d, local_cloud, dev, "unsubscribe", "/a/t/%s/e/i" % old, since=mark)
    await until_event(d, local_cloud, dev, "subscribe", "/a/t/%s/e/i" % new, since=mark)
    await until_event(d, local_cloud, dev, "last_values", since=mark)

    client["out"] = 11
    await until_reported(d, local_cloud, dev, "out", 11)  # dev's thing is now the new one
    local_cloud.set(dev, "level", 5)
    await d.until(lambda: 5 in writes, "on_write(5) from the new thing")
    assert client["level"] == 5
    assert unowned(local_cloud, old) == [], "the device still publishes on its old thing"


@pytest.mark.parametrize("variant,mode", [("event", "sync"), ("command", "async")])
async def test_thing_detach_stops_the_device(local_cloud, device_factory, driven, variant, mode):
    dev = device_factory(variant=variant)
    old = dev.thing_id
    client = make_client(local_cloud, dev, TRANSPORT, mode)
    client.register("out", value=1)
    d = await driven(client)
    await d.attached()
    await until_reported(d, local_cloud, dev, "out", 1)

    mark = local_cloud.mark(dev)
    local_cloud.detach(dev)
    await d.until(lambda: not client.connected and client.thing_id is None, "the detach")
    await until_event(d, local_cloud, dev, "unsubscribe", "/a/t/%s/e/i" % old, since=mark)
    client["out"] = 2  # kept, not sent: there is no thing
    await settle(d, 0.5)
    assert [e for e in local_cloud.events(dev, since=mark) if e[0] == "values"] == []
    assert unowned(local_cloud, old) == []
    assert client.engine.conn is not None, "the detach must not close the connection"

    # Assigned again: it attaches and the change made meanwhile is not lost.
    new = local_cloud.reassign(dev)
    await d.until(lambda: client.thing_id == new and client.connected, "the attach to the new thing")
    await until_reported(d, local_cloud, dev, "out", 2)


@pytest.mark.parametrize("variant,mode", [("event", "async"), ("command", "sync")])
async def test_device_without_a_thing_keeps_asking_then_attaches(local_cloud, device_factory, driven,
                                                                  variant, mode):
    dev = device_factory(variant=variant, thing_id="")
    client = make_client(local_cloud, dev, TRANSPORT, mode)
    client.register("out", value=3)
    d = await driven(client)

    def begins():
        return [t for t, kind, _ in local_cloud.events(dev, timestamps=True) if kind == "thing_begin"]

    await d.until(lambda: len(begins()) >= 2, "a second ThingBegin", timeout=10)
    assert not client.connected and client.thing_id is None
    gap = begins()[1] - begins()[0]  # stamped by the emulator on arrival: allow for scheduling
    assert 1.0 <= gap <= 5.0, "ThingBegin retried after %.2f s (expected ~2 s)" % gap

    new = local_cloud.reassign(dev)
    await d.until(lambda: client.thing_id == new and client.connected, "the attach once a thing is assigned")
    await until_reported(d, local_cloud, dev, "out", 3)


# --- schedules ----------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
async def test_weekly_schedule_follows_the_devices_local_day(local_cloud, device_factory, driven, mode):
    # The timezone puts the device on another day than UTC (local 23:00 yesterday or
    # 01:00 tomorrow, an hour from midnight either way): a schedule for the local
    # weekday must turn on, and one for the UTC weekday must not.
    day = 86400
    now = int(time.time())
    time_of_day = now % day
    offset = -(time_of_day + 3600) if time_of_day < 12 * 3600 else day - time_of_day + 3600
    dev = device_factory(tz_offset=offset, tz_dst_until=now + 30 * day)
    client = make_client(local_cloud, dev, TRANSPORT, mode)
    activations = []
    client.register(Schedule("alarm", interval=0.1,
                             on_active=lambda c, sched: activations.append((sched.frm, sched.msk))))
    d = await driven(client)
    await d.attached()
    await d.until(lambda: client["tz_offset"] == offset, "the timezone")
    local = int(time.time()) + offset
    local_weekday, utc_weekday = (local // day + 4) % 7, (int(time.time()) // day + 4) % 7
    assert local_weekday != utc_weekday
    on = {"frm": local - 60, "to": 0, "len": 600, "msk": (2 << 26) | (1 << local_weekday)}
    local_cloud.set(dev, "alarm", on)
    await d.until(lambda: activations, "on_active")
    assert client["alarm"].active and activations == [(on["frm"], on["msk"])]
    local_cloud.set(dev, "alarm", dict(on, msk=(2 << 26) | (1 << utc_weekday)))
    await d.until(lambda: not client["alarm"].active, "the schedule to turn off on another day")
    assert len(activations) == 1


# --- timezone -----------------------------------------------------------------------------------

@pytest.mark.parametrize("variant,mode", [("event", "sync"), ("command", "async")])
async def test_timezone_follows_the_cloud(local_cloud, device_factory, driven, variant, mode):
    until = int(time.time()) + 30 * 86400
    dev = device_factory(variant=variant, tz_offset=3600, tz_dst_until=until)
    client = make_client(local_cloud, dev, TRANSPORT, mode)
    client.register("out", value=1)
    mark = local_cloud.mark(dev)
    d = await driven(client)
    await d.attached()
    await d.until(lambda: client["tz_offset"] == 3600 and client["tz_dst_until"] == until,
                  "the first timezone")
    if variant == "command":
        await until_event(d, local_cloud, dev, "timezone_request", since=mark)

    later = until + 180 * 86400
    local_cloud.send_timezone(dev, -18000, later)
    await d.until(lambda: client["tz_offset"] == -18000 and client["tz_dst_until"] == later,
                  "the new timezone")
    assert client.connected and client.thing_id == dev.thing_id  # a timezone change is no re-attach
    assert client.session.attach_count == 1
