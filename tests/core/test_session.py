# Device session and registry tests, by plain calls: no socket, no clock.
# The link records what the session asks MQTT to do.

from arduino_iot_cloud import commands, senml
from arduino_iot_cloud.compat import CBORTag, cbor_dumps
from arduino_iot_cloud.records import (
    ColoredLight, Location, Property, Registry, Schedule, Task, Television, ValueTypeError,
)
from arduino_iot_cloud.session import READY, SYNCING, WAIT_THING, DeviceSession

import util

DEV = "d3f0b2c8-0000-4000-8000-000000000001"
THING = "7a1c2e44-0000-4000-8000-0000000000aa"


class Link(util.Link):
    """The MQTT side of the session, recorded."""

    def published_on(self, topic):
        return [senml.decode(pl) for t, pl in self.pubs if t == topic]


def _session(*records):
    reg = Registry()
    for r in records:
        reg.add(r)
    s = DeviceSession(DEV, reg, "client", "2.0.0-sync")
    link = Link()
    s.on_connected(link, 0)
    return s, link, reg


def _thing_event(thing=THING, tz=3600):
    return senml.encode((("thing_id", thing), ("tz_offset", tz), ("tz_dst_until", 1700000000)))


def _values(*pairs):
    return senml.encode(pairs)


def test_connect_subscribes_and_announces():
    s, link, _ = _session()
    assert link.subs == ["/a/d/%s/e/i" % DEV, "/a/d/%s/c/dw" % DEV]
    up = [pl for t, pl in link.pubs if t == "/a/d/%s/c/up" % DEV]
    assert up[0] == commands.device_begin("2.0.0-sync")
    assert up[1] == commands.thing_begin("")
    assert s.state == WAIT_THING


def test_event_variant_attach_and_last_values():
    seen = []
    sw = Property("sw1", on_write=lambda c, v: seen.append((c, v)))
    led = Property("led", value=True)  # the device's own value wins over last values
    s, link, reg = _session(sw, led)
    s.on_message("/a/d/%s/e/i" % DEV, _thing_event(), 10)
    assert s.state == SYNCING and s.thing_id == THING and s.tz_offset == 3600
    assert "/a/t/%s/e/i" % THING in link.subs and "/a/t/%s/shadow/i" % THING in link.subs
    assert link.published_on("/a/t/%s/shadow/o" % THING) == [[("r:m", None, "getLastValues", None)]]
    s.on_message("/a/t/%s/shadow/i" % THING, _values(("sw1", True), ("led", False)), 20)
    assert s.state == READY
    assert sw.value is True and seen == [("client", True)]
    assert led.value is True
    s.poll(30)
    assert link.published_on("/a/t/%s/e/o" % THING) == [[("led", None, True, None)]]


def test_command_variant_attach_last_values_and_timezone():
    t = Property("temp", on_write=lambda c, v: None)
    s, link, reg = _session(t)
    s.on_message("/a/d/%s/c/dw" % DEV, cbor_dumps(CBORTag(commands.THING_UPDATE, [THING])), 5)
    assert s.state == SYNCING
    assert ("/a/d/%s/c/up" % DEV, commands.last_values_begin()) in link.pubs
    assert "/a/t/%s/shadow/i" % THING not in link.subs
    lv = cbor_dumps(CBORTag(commands.LAST_VALUES_UPDATE, [_values(("temp", 21.5))]))
    s.on_message("/a/d/%s/c/dw" % DEV, lv, 6)
    assert s.state == READY and t.value == 21.5
    assert ("/a/d/%s/c/up" % DEV, commands.timezone_up()) in link.pubs
    s.on_message("/a/d/%s/c/dw" % DEV, cbor_dumps(CBORTag(commands.TIMEZONE_DOWN, [7200, 1800000000])), 7)
    assert (s.tz_offset, s.tz_dst_until) == (7200, 1800000000)


def test_both_variants_answering_is_one_attach():
    s, link, _ = _session(Property("x"))
    s.on_message("/a/d/%s/e/i" % DEV, _thing_event(), 1)
    s.on_message("/a/d/%s/c/dw" % DEV, cbor_dumps(CBORTag(commands.THING_UPDATE, [THING])), 2)
    assert link.subs.count("/a/t/%s/e/i" % THING) == 1


def test_no_thing_yet_retries_with_backoff():
    s, link, _ = _session()
    up = "/a/d/%s/c/up" % DEV
    s.on_message("/a/d/%s/c/dw" % DEV, cbor_dumps(CBORTag(commands.THING_UPDATE, [""])), 0)
    begins = lambda: [pl for t, pl in link.pubs if t == up and pl == commands.thing_begin("")]
    assert len(begins()) == 1
    assert s.poll(1999) == 2000
    s.poll(2000)
    assert len(begins()) == 2
    assert s.poll(2001) == 6000  # 2 s, then 4 s
    s.poll(6000)
    assert len(begins()) == 3


def test_thing_reassigned_and_detached():
    s, link, _ = _session()
    s.on_message("/a/d/%s/e/i" % DEV, _thing_event(), 1)
    other = "8b2d3f55-0000-4000-8000-0000000000bb"
    s.on_message("/a/d/%s/c/dw" % DEV, cbor_dumps(CBORTag(commands.THING_UPDATE, [other])), 2)
    assert "/a/t/%s/e/i" % THING in link.unsubs
    assert s.thing_id == other and "/a/t/%s/e/i" % other in link.subs
    s.on_message("/a/d/%s/c/dw" % DEV, cbor_dumps(CBORTag(commands.THING_DETACH, [other])), 3)
    assert s.thing_id is None and s.state == WAIT_THING
    assert "/a/t/%s/e/i" % other in link.unsubs


def test_thing_id_with_wildcards_is_refused():
    s, link, _ = _session()
    for bad in ("a/#", "+", "x/y"):
        s.on_message("/a/d/%s/e/i" % DEV, _thing_event(bad), 1)
        assert s.thing_id is None and s.state == WAIT_THING
    assert not [t for t in link.subs if t.startswith("/a/t/")]


def test_malformed_messages_do_not_break_the_session():
    t = Property("t", on_write=lambda c, v: None)
    s, link, _ = _session(t)
    s.on_message("/a/d/%s/e/i" % DEV, b"\xff\x00garbage", 1)
    s.on_message("/a/d/%s/c/dw" % DEV, cbor_dumps([1, 2]), 1)  # untagged
    assert s.state == WAIT_THING
    s.on_message("/a/d/%s/e/i" % DEV, _thing_event(), 2)
    s.on_message("/a/t/%s/shadow/i" % THING, _values(("t", 1.5)), 3)
    s.on_message("/a/t/%s/e/i" % THING, b"\x81\xa1", 4)  # truncated
    assert s.state == READY and t.value == 1.5


def test_no_publish_before_last_values_and_sync_timeout():
    p = Property("p", value=1)
    s, link, _ = _session(p)
    s.on_message("/a/d/%s/e/i" % DEV, _thing_event(), 0)
    s.poll(100)
    assert link.published_on("/a/t/%s/e/o" % THING) == []
    s.poll(10000)  # no last values within 10 s: go on without them
    assert s.state == READY
    assert link.published_on("/a/t/%s/e/o" % THING) == [[("p", None, 1, None)]]


def _ready(*records):
    s, link, reg = _session(*records)
    s.on_message("/a/d/%s/e/i" % DEV, _thing_event(), 0)
    s.on_message("/a/t/%s/shadow/i" % THING, _values(), 0)
    del link.pubs[:]
    return s, link, reg


def test_writes_wrong_types_unknown_names_and_failing_callbacks():
    calls = []

    def boom(client, value):
        calls.append(value)
        raise RuntimeError("user bug")

    n = Property("n", value=1, on_write=boom)
    f = Property("f", value=1.0)
    b = Property("b", value=False)
    txt = Property("txt", value="a")
    s, link, reg = _ready(n, f, b, txt)
    reg.changes()
    msg = _values(("n", "wrong"), ("f", 3), ("b", 1), ("txt", "z"), ("nope", 1), ("n", 7.0))
    s.on_message("/a/t/%s/e/i" % THING, msg, 1)
    assert (n.value, f.value, b.value, txt.value) == (7, 3.0, True, "z")
    assert calls == [7]
    s.on_message("/a/t/%s/e/i" % THING, _values(("n", 8)), 2)
    assert calls == [7, 8] and "n" in reg  # the failing callback keeps its property


def test_local_change_during_incoming_message_is_kept():
    a = Property("a", value=1)
    b = Property("b", value=1, on_write=lambda c, v: None)
    s, link, reg = _ready(a, b)
    s.poll(1)
    del link.pubs[:]
    a.set(2)  # changed by the device, not yet published
    s.on_message("/a/t/%s/e/i" % THING, _values(("b", 5)), 2)
    s.poll(3)
    assert link.published_on("/a/t/%s/e/o" % THING) == [[("a", None, 2, None)]]


def test_only_changed_values_are_published_and_inflight_limit_holds_them():
    a = Property("a", value=1)
    s, link, reg = _ready(a)
    s.poll(1)
    a.set(1)
    s.poll(2)
    assert len(link.published_on("/a/t/%s/e/o" % THING)) == 1
    link.room = False
    a.set(5)
    a.set(6)
    s.poll(3)
    assert len(link.published_on("/a/t/%s/e/o" % THING)) == 1
    link.room = True
    s.poll(4)
    assert link.published_on("/a/t/%s/e/o" % THING)[-1] == [("a", None, 6, None)]


def test_reconnect_reattaches_and_refetches_last_values():
    p = Property("p", on_write=lambda c, v: None)
    s, link, reg = _ready(p)
    s.on_disconnected()
    link2 = Link()
    s.on_connected(link2, 100)
    assert s.state == WAIT_THING
    s.on_message("/a/d/%s/e/i" % DEV, _thing_event(), 101)
    assert link2.published_on("/a/t/%s/shadow/o" % THING)
    s.on_message("/a/t/%s/shadow/i" % THING, _values(("p", 4.5)), 102)
    assert p.value == 4.5 and s.attach_count == 2


def test_composites_sent_whole_and_written_by_field():
    seen = []
    cl = ColoredLight("cl", swi=True, hue=1, sat=2, bri=3, on_write=lambda c, v: seen.append(v.as_dict()))
    loc = Location("loc")
    s, link, reg = _ready(cl, loc)
    s.poll(1)
    out = link.published_on("/a/t/%s/e/o" % THING)[0]
    assert [(r[0], r[2]) for r in out] == [("cl:swi", True), ("cl:hue", 1.0), ("cl:sat", 2.0), ("cl:bri", 3.0)]
    cl.hue = 50
    s.poll(2)
    assert len(link.published_on("/a/t/%s/e/o" % THING)[1]) == 4
    s.on_message("/a/t/%s/e/i" % THING, _values(("loc:lat", 2), ("loc:lon", 3.5), ("cl:bri", 9)), 3)
    assert (loc.lat, loc.lon) == (2.0, 3.5)
    assert seen == [{"swi": True, "hue": 50.0, "sat": 2.0, "bri": 9.0}]


def test_base_name_resolution_prefers_full_name_then_short():
    t = Property("test", on_write=lambda c, v: None)
    s, link, reg = _ready(t)
    msg = cbor_dumps([{-2: "some-base", 0: "test", 2: 5}])
    s.on_message("/a/t/%s/e/i" % THING, msg, 1)
    assert t.value == 5


def test_property_type_rules():
    p = Property("p", value=1.5)
    p.set(2)
    assert p.value == 2.0 and type(p.value) is float
    try:
        p.set("x")
    except ValueTypeError as e:
        assert "p" in str(e)
    else:
        raise AssertionError("no ValueTypeError")
    tv = Television("tv")
    try:
        tv.vol = "loud"
    except ValueTypeError:
        pass
    else:
        raise AssertionError("no ValueTypeError")


def test_tasks_and_on_read_run_on_their_interval():
    runs = []
    reg = Registry()
    reg.add(Task("t1", on_run=lambda client, args: runs.append(("t1", args)), interval=1.0, args=7))
    reg.add(Task("t2", on_run=lambda client: runs.append(("t2", None)), interval=0.5))
    r = Property("r", on_read=lambda client: 42, interval=2.0)
    reg.add(r)
    assert reg.run_due("c", 0) == 500
    assert runs == [("t1", 7), ("t2", None)] and r.value == 42
    reg.run_due("c", 500)
    assert runs[-1] == ("t2", None) and len(runs) == 3


class _Counter:
    """A callable object: no __code__ to read its arguments from, on either runtime."""

    def __init__(self):
        self.calls = []

    def __call__(self, client):
        self.calls.append(client)


class _CounterWithArgs(_Counter):
    def __call__(self, client, args):
        self.calls.append((client, args))


def test_task_learns_from_its_first_run_whether_on_run_takes_args():
    # MicroPython functions (and callable objects anywhere) do not say how many
    # arguments they take: the first run tries on_run(client, args), as 1.4.1
    # did, then on_run(client), and keeps to what worked.
    reg = Registry()
    one, two = _Counter(), _CounterWithArgs()
    reg.add(Task("one", on_run=one, interval=1.0))
    reg.add(Task("two", on_run=two, interval=1.0))
    for now in (0, 1000, 2000):
        reg.run_due("c", now)
    assert one.calls == ["c", "c", "c"]
    assert two.calls == [("c", None)] * 3


def test_a_type_error_inside_on_run_is_not_taken_for_the_wrong_argument_count():
    calls = []

    def broken(client, args):
        calls.append(client)
        return len(5)  # a TypeError, but not about on_run's arguments

    task = Task("broken", on_run=broken, interval=1.0)
    task._pass_args = None  # as on MicroPython, where it cannot be read
    for _ in range(2):
        try:
            task.run("c")
        except TypeError as e:
            assert "len" in str(e), str(e)  # the user's error, not a retry's
        else:
            raise AssertionError("no TypeError")
    assert calls == ["c", "c"]  # called once a run, never retried with fewer arguments


def test_failing_on_read_is_isolated():
    reg = Registry()

    def bad(client):
        raise ValueError("sensor unplugged")

    reg.add(Property("r", on_read=bad))
    reg.add(Property("ok", on_read=lambda c: 1))
    reg.run_due("c", 0)
    reg.run_due("c", 1000)
    assert reg.get("ok").value == 1 and "r" in reg


def test_schedule_one_shot_and_fixed_interval():
    sch = Schedule("s", frm=1000, to=0, len=10, msk=0)
    assert not sch.is_active(999) and sch.is_active(1000) and not sch.is_active(1010)
    every_minute = (0 << 30) | (1 << 26) | 60  # unit seconds, fixed interval, every 60 s
    sch = Schedule("s2", frm=1000, to=2000, len=5, msk=every_minute)
    assert sch.is_active(1062) and not sch.is_active(1066) and not sch.is_active(2001)


MON_0800 = 1793606400  # 2026-11-02 08:00, a Monday (local time: the offset is already added)
DAY = 86400


def test_schedule_weekly_opens_at_the_start_time_on_the_listed_days():
    mon_wed = (2 << 26) | (1 << 1) | (1 << 3)  # weekly, bit 0 = Sunday
    sch = Schedule("w", frm=MON_0800, to=0, len=3600, msk=mon_wed)
    assert not sch.is_active(MON_0800 - 1)
    assert sch.is_active(MON_0800) and sch.is_active(MON_0800 + 1800)
    assert not sch.is_active(MON_0800 + 3600)  # the window is [08:00, 09:00)
    assert not sch.is_active(MON_0800 + DAY + 1800)  # Tuesday
    assert sch.is_active(MON_0800 + 2 * DAY + 1800)  # Wednesday
    assert not sch.is_active(MON_0800 + 2 * DAY - 60)  # Wednesday 07:59
    assert sch.is_active(MON_0800 + 7 * DAY)  # next Monday
    sch.to = MON_0800 + 7 * DAY
    assert not sch.is_active(MON_0800 + 7 * DAY)  # the schedule has ended


def test_schedule_monthly_and_yearly_match_the_day_and_month():
    xmas = 1798183800  # 2026-12-25 07:30
    monthly = Schedule("m", frm=xmas, to=0, len=60, msk=(3 << 26) | 25)
    assert monthly.is_active(xmas + 10)
    assert monthly.is_active(xmas + 31 * DAY + 30)  # 2027-01-25 07:30:30
    assert not monthly.is_active(xmas + 32 * DAY + 30)  # the 26th
    assert not monthly.is_active(xmas + 31 * DAY + 60)  # the window is over
    yearly = Schedule("y", frm=xmas, to=0, len=60, msk=(4 << 26) | (11 << 8) | 25)  # December (11), 25
    assert yearly.is_active(xmas + 365 * DAY + 10)  # 2027-12-25
    assert not yearly.is_active(xmas + 31 * DAY + 10)  # 2027-01-25: the day, not the month


def test_schedule_of_an_unknown_type_or_without_a_clock_is_never_active():
    assert not Schedule("u", frm=0, to=0, len=10 ** 9, msk=7 << 26).is_active(MON_0800)
    assert not Schedule("c", frm=0, to=0, len=10 ** 9, msk=0).is_active(0)  # clock not set


def test_day_and_month_agree_with_the_runtime_calendar():
    import time

    from arduino_iot_cloud.records import day_and_month

    assert day_and_month(1835416800) == (29, 1)  # 2028-02-29 06:00
    assert day_and_month(951782400) == (29, 1)  # 2000-02-29: a leap year (divisible by 400)
    assert day_and_month(4107542400) == (1, 2)  # 2100-03-01: 2100 is not a leap year
    assert day_and_month(1798761599) == (31, 11)  # 2026-12-31 23:59:59
    if time.gmtime(0)[0] != 1970:  # a board whose epoch is 2000: the fixed cases above stand
        return
    t = 0
    while t < 4102444800:  # to 2100: every month end and leap day is met over the years
        tm = time.gmtime(t)
        assert day_and_month(t) == (tm[2], tm[1] - 1), t
        t += 11 * DAY + 3607


def test_partial_composite_waits_until_every_field_is_known():
    loc = Location("loc")
    s, link, reg = _ready(loc)
    loc.lat = 1.5
    s.poll(1)
    assert link.published_on("/a/t/%s/e/o" % THING) == []
    loc.lon = 2.5
    s.poll(2)
    assert link.published_on("/a/t/%s/e/o" % THING) == [[("loc:lat", None, 1.5, None), ("loc:lon", None, 2.5, None)]]
    s.poll(3)
    assert len(link.published_on("/a/t/%s/e/o" % THING)) == 1


def test_empty_thing_id_detaches_an_attached_device():
    # The older variant detaches with thing_id "" on /a/d/<dev>/e/i; the
    # device must leave its thing and ask again, as on ThingDetach.
    p = Property("p", value=1)
    s, link, reg = _ready(p)
    s.on_message("/a/d/%s/e/i" % DEV, _thing_event(""), 5)
    assert s.thing_id is None and s.state == WAIT_THING
    assert "/a/t/%s/e/i" % THING in link.unsubs
    p.set(2)
    s.poll(6)
    assert link.published_on("/a/t/%s/e/o" % THING) == []
