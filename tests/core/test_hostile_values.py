# Values from a hostile (but well-formed) cloud message that the device must
# refuse, and refuse the same way on CPython and MicroPython: timezone fields
# outside the 32 bits the C++ library holds them in, and numbers an int
# property could not send back.  Plain calls, no socket, no clock; the
# calendar is checked far beyond any real date, where a loop over the years
# from 1970 would never finish.

from arduino_iot_cloud import commands, senml
from arduino_iot_cloud.compat import CBORTag, cbor_dumps
from arduino_iot_cloud.errors import DecodeError
from arduino_iot_cloud.records import (
    Property, Registry, Schedule, Television, ValueTypeError, coerce, day_and_month,
)
from arduino_iot_cloud.session import READY, DeviceSession
from util import Link, raises

DEV = "d3f0b2c8-0000-4000-8000-0000000000h1"
THING = "7a1c2e44-0000-4000-8000-0000000000h1"
EVENTS = "/a/d/%s/e/i" % DEV
COMMANDS = "/a/d/%s/c/dw" % DEV
THING_IN = "/a/t/%s/e/i" % THING
THING_OUT = "/a/t/%s/e/o" % THING
SHADOW_IN = "/a/t/%s/shadow/i" % THING

DAY = 86400
CYCLE = 146097 * DAY  # the Gregorian calendar repeats every 400 years, to the day
INT64_MAX = 2 ** 63 - 1
INT64_MIN = -2 ** 63


def _ready_session(*records):
    reg = Registry()
    for r in records:
        reg.add(r)
    s = DeviceSession(DEV, reg, "client", "2.0.0-test")
    link = Link()
    s.on_connected(link, 0)
    s.on_message(EVENTS, senml.encode((("thing_id", THING),)), 1)
    s.on_message(SHADOW_IN, senml.encode(()), 2)
    assert s.state == READY
    return s, link


def _timezone_event(**fields):
    return senml.encode([(name, value) for name, value in fields.items()])


def _timezone_command(offset, until):
    return cbor_dumps(CBORTag(commands.TIMEZONE_DOWN, [offset, until]))


# --- item 2: the calendar in constant time ------------------------------------------

def test_calendar_repeats_every_400_years_however_far_out():
    dates = (0, 951782400, 1798183800, 1835416800, 4107542400, 1798761599)  # 1970-01-01 ... 2026-12-31
    for t in dates:
        here = day_and_month(t)
        for k in (1, 7, 10 ** 6, 2 ** 40):
            assert day_and_month(t + k * CYCLE) == here, (t, k)


def test_calendar_at_the_largest_int64_times():
    for t in (2 ** 62, INT64_MAX, 2 ** 62 + 2 ** 31):
        day, month = day_and_month(t)
        assert 1 <= day <= 31 and 0 <= month <= 11
        assert day_and_month(t - (t // CYCLE) * CYCLE) == (day, month)


def test_calendar_before_1970():
    assert day_and_month(-1) == (31, 11)  # 1969-12-31 23:59:59
    assert day_and_month(-DAY * 365) == (1, 0)  # 1969-01-01
    assert day_and_month(-CYCLE + 59 * DAY) == (1, 2)  # 1570-03-01


def test_monthly_and_yearly_schedules_answer_at_a_huge_local_time():
    now = 2 ** 62
    day, month = day_and_month(now)
    monthly = Schedule("m", frm=0, to=0, len=DAY, msk=(3 << 26) | day)
    yearly = Schedule("y", frm=0, to=0, len=DAY, msk=(4 << 26) | (month << 8) | day)
    other = Schedule("o", frm=0, to=0, len=DAY, msk=(4 << 26) | (((month + 1) % 12) << 8) | day)
    assert monthly.is_active(now) and yearly.is_active(now) and not other.is_active(now)


# --- item 2: timezone values out of range are ignored -------------------------------

def test_tz_offset_on_device_events_must_fit_32_signed_bits():
    s, _ = _ready_session()
    s.on_message(EVENTS, _timezone_event(tz_offset=3600, tz_dst_until=1700000000), 3)
    assert (s.tz_offset, s.tz_dst_until) == (3600, 1700000000)
    for bad in (2 ** 62, 2 ** 31, -2 ** 31 - 1, INT64_MIN, True, 3.5):
        s.on_message(EVENTS, _timezone_event(tz_offset=bad), 4)
        assert s.tz_offset == 3600, bad
    for good in (-2 ** 31, 2 ** 31 - 1, -18000):
        s.on_message(EVENTS, _timezone_event(tz_offset=good), 5)
        assert s.tz_offset == good
    assert type(s.tz_offset) is int


def test_tz_dst_until_on_device_events_must_fit_32_unsigned_bits():
    s, _ = _ready_session()
    s.on_message(EVENTS, _timezone_event(tz_dst_until=1700000000), 3)
    for bad in (2 ** 32, -1, 2 ** 62, False, 1.5):
        s.on_message(EVENTS, _timezone_event(tz_dst_until=bad), 4)
        assert s.tz_dst_until == 1700000000, bad
    s.on_message(EVENTS, _timezone_event(tz_dst_until=2 ** 32 - 1), 5)
    assert s.tz_dst_until == 2 ** 32 - 1


def test_a_bad_tz_field_does_not_cost_the_rest_of_the_event():
    s, _ = _ready_session()
    s.on_message(EVENTS, _timezone_event(tz_offset=2 ** 62, tz_dst_until=1700000000), 3)
    assert (s.tz_offset, s.tz_dst_until) == (0, 1700000000)


def test_timezone_command_out_of_range_is_refused_whole():
    for offset, until in ((2 ** 62, 0), (0, 2 ** 62), (2 ** 31, 0), (0, -1), (0, 2 ** 32), (-2 ** 31 - 1, 0)):
        raises(DecodeError, commands.decode_down, _timezone_command(offset, until))
    assert commands.decode_down(_timezone_command(-2 ** 31, 2 ** 32 - 1)) == \
        (commands.TIMEZONE_DOWN, (-2 ** 31, 2 ** 32 - 1))
    s, _ = _ready_session()
    s.on_message(COMMANDS, _timezone_command(7200, 1800000000), 3)
    assert (s.tz_offset, s.tz_dst_until) == (7200, 1800000000)
    s.on_message(COMMANDS, _timezone_command(2 ** 62, 1900000000), 4)
    assert (s.tz_offset, s.tz_dst_until) == (7200, 1800000000)


# --- item 6: ints that could not be sent back ---------------------------------------------

def test_coerce_keeps_ints_within_int64():
    assert coerce(int, INT64_MAX) == INT64_MAX and coerce(int, INT64_MIN) == INT64_MIN
    assert coerce(int, -2.0 ** 63) == INT64_MIN  # exactly -2**63: it fits
    for bad in (INT64_MAX + 1, INT64_MIN - 1, 2 ** 65, 1e300, -1e300, 2.0 ** 63):
        raises(ValueTypeError, coerce, int, bad)
    for bad in (INT64_MAX + 1, INT64_MIN - 1, 2 ** 65):  # a property whose type is not known yet
        raises(ValueTypeError, coerce, None, bad)


def test_coerce_refuses_a_float_without_an_int_value():
    for bad in (0.5, float("inf"), float("-inf"), float("nan")):
        raises(ValueTypeError, coerce, int, bad)


def test_float_property_refuses_an_int_beyond_the_float_range():
    # CPython's float() raises OverflowError here, MicroPython's returns inf:
    # both refuse it.
    raises(ValueTypeError, coerce, float, 10 ** 400)
    assert coerce(float, 2 ** 65) == float(2 ** 65)


def test_device_side_int_out_of_int64_is_refused_at_once():
    raises(ValueTypeError, Property, "big", value=2 ** 64)
    p = Property("count", value=1)
    raises(ValueTypeError, p.set, 2 ** 63)
    raises(ValueTypeError, p.set, 1e300)
    assert p.value == 1
    tv = Television("tv")
    raises(ValueTypeError, setattr, tv, "vol", 2 ** 70)


def test_cloud_int_out_of_int64_is_ignored_and_the_next_publish_works():
    count = Property("count", value=1)
    unset = Property("unset")
    s, link = _ready_session(count, unset)
    s.poll(3)
    link.pubs.clear()
    s.on_message(THING_IN, senml.encode((("count", 1e300),)), 4)
    # bv + v: two valid CBOR uint64 adding up beyond int64
    s.on_message(THING_IN, cbor_dumps([{-5: 2 ** 63, 0: "count", 2: 2 ** 63}]), 5)
    s.on_message(THING_IN, cbor_dumps([{-5: 2 ** 64 - 1, 0: "unset", 2: 2 ** 64 - 1}]), 6)
    s.on_message(THING_IN, senml.encode((("unset", INT64_MIN - 1),)), 7)
    assert count.value == 1 and unset.value is None
    count.set(2)
    s.poll(8)
    sent = [senml.decode(pl) for t, pl in link.pubs if t == THING_OUT]
    assert sent == [[("count", None, 2, None)]]


def test_cloud_int_at_the_int64_limits_is_taken_and_sent_back():
    count = Property("count", value=1)
    s, link = _ready_session(count)
    s.poll(3)
    s.on_message(THING_IN, cbor_dumps([{-5: 2 ** 62, 0: "count", 2: 2 ** 62 - 1}]), 4)
    assert count.value == INT64_MAX
    count.set(INT64_MIN)
    s.poll(5)
    assert senml.decode([pl for t, pl in link.pubs if t == THING_OUT][-1]) == [("count", None, INT64_MIN, None)]


def test_cloud_schedule_field_out_of_int64_is_ignored():
    sch = Schedule("sch", frm=1, to=0, len=10, msk=0)
    s, _ = _ready_session(sch)
    s.on_message(THING_IN, senml.encode((("sch:frm", 2 ** 64 - 1),)), 3)
    assert sch.frm == 1
