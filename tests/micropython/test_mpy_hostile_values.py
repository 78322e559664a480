"""Hostile but well-formed cloud messages against a running device, on the MicroPython unix
port and on CPython, through the local cloud (real mosquitto over TLS): a timezone offset
of 2**62 (on the device topic and in TimezoneCommandDown) with a monthly schedule
registered, and numbers an int property could not send back (1e300; a base value plus a
value adding up to 2**64).  The device must ignore them all, keep its timezone and its
count, keep stepping (a calendar that walks the years from 1970 would hang update() for
hours), and keep publishing: nothing may come out of update().
"""

import sys

import pytest

from arduino_iot_cloud import commands, senml
from arduino_iot_cloud.compat import cbor_dumps
from mpy_helpers import SRC, mpy_env

HERE = __file__.rsplit("/", 1)[0]
DEVICE = HERE + "/hostile_values_device.py"
WAIT = 20.0
TZ = (3600, 1800000000)


def _ticks(proc, start):
    """(count, tz_offset, tz_dst_until) of every "tick" line from index start."""
    out = []
    for line in proc.lines[start:]:
        if line.startswith("tick "):
            out.append(tuple(int(x) for x in line.split()[1:4]))
    return out


def _device(runtime, request, mpy_procs, cloud, device_factory):
    """The device script running on `runtime`, attached, with the timezone TZ."""
    if runtime == "micropython":
        request.getfixturevalue("mpy")  # skips without the unix port
    dev = device_factory(auth="password", variant="both")
    env = dict(cloud.env(dev), DEVICE_ID=dev.device_id, SECRET_KEY=dev.secret, RUN_SECONDS=40)
    if runtime == "cpython":
        proc = mpy_procs([DEVICE], dict(mpy_env(SRC, **env), PYTHONPATH=SRC), exe=sys.executable)
    else:
        proc = mpy_procs([DEVICE], mpy_env(SRC, **env))
    proc.wait_line("attached %s" % dev.thing_id, WAIT)
    cloud.send_timezone(dev, *TZ)
    proc.wait_line("tick", WAIT, start=proc.wait_line(lambda line: line.endswith(" %d %d" % TZ), WAIT))
    return dev, proc


def _three_more_ticks(proc, at):
    # Three more seconds of steps: update() returned every time, and nothing escaped it.
    i = at
    for _ in range(3):
        i = proc.wait_line("tick", WAIT, start=i) + 1
    assert not [line for line in proc.lines if line.startswith("escaped")], proc.output()
    return _ticks(proc, at)


@pytest.mark.e2e
@pytest.mark.parametrize("runtime", ["micropython", "cpython"])
def test_timezone_beyond_32_bits_is_ignored_and_update_keeps_stepping(runtime, request, mpy_procs, local_cloud,
                                                                      device_factory):
    dev, proc = _device(runtime, request, mpy_procs, local_cloud, device_factory)
    at = len(proc.lines)
    local_cloud.publish_raw(dev, senml.encode((("tz_offset", 2 ** 62), ("tz_dst_until", 2 ** 40))), "d/e/i")
    local_cloud.send_command(dev, commands.TIMEZONE_DOWN, [2 ** 62, 0])
    ticks = _three_more_ticks(proc, at)
    assert all(t[1:] == TZ for t in ticks), ticks  # the timezone stayed as it was


@pytest.mark.e2e
@pytest.mark.parametrize("runtime", ["micropython", "cpython"])
def test_numbers_an_int_property_cannot_send_back_are_ignored(runtime, request, mpy_procs, local_cloud,
                                                               device_factory):
    dev, proc = _device(runtime, request, mpy_procs, local_cloud, device_factory)
    at = len(proc.lines)
    local_cloud.publish_raw(dev, senml.encode((("count", 1e300),)), "e/i")
    local_cloud.publish_raw(dev, cbor_dumps([{-5: 2 ** 63, 0: "count", 2: 2 ** 63}]), "e/i")
    ticks = _three_more_ticks(proc, at)
    counts = [t[0] for t in ticks]
    assert counts == sorted(counts) and counts[-1] < 1000, counts  # nothing taken from the cloud's numbers
    # ... and the device's own values still reach the cloud.
    local_cloud.wait_for(dev, "count", lambda v: isinstance(v, int) and counts[-1] <= v < 1000, timeout=WAIT)
