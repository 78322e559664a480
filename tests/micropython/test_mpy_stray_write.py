"""Issue 15 item 5 on a board's runtime: examples/micropython_device.py, unchanged, on the
MicroPython unix port and on CPython, against the local cloud.  Its "sw1" is registered with
value=None; a stray "x" from the cloud reaches on_write, and the next `true` must reach it too
(records/property.py: no value fixes the type of an untyped property).  Before the fix the "x" fixed
sw1 as a str and every later true was refused ("expected str, got bool")."""

import sys

import pytest

from mpy_helpers import EXAMPLE, EXAMPLES, SRC, mpy_env

WAIT = 20.0


@pytest.mark.parametrize("runtime", ["micropython", "cpython"])
def test_a_stray_string_then_true_reaches_on_write(runtime, request, mpy_procs, local_cloud, device_factory):
    if runtime == "micropython":
        request.getfixturevalue("mpy")  # skips without the unix port
    dev = device_factory(auth="password")
    env = dict(local_cloud.env(dev), DEVICE_ID=dev.device_id, SECRET_KEY=dev.secret, RUN_SECONDS=40)
    if runtime == "cpython":
        proc = mpy_procs([EXAMPLE], dict(mpy_env(SRC, EXAMPLES, **env), PYTHONPATH=SRC), exe=sys.executable)
    else:
        proc = mpy_procs([EXAMPLE], mpy_env(SRC, EXAMPLES, **env))
    proc.wait_line("attached 1", WAIT)
    at = len(proc.lines)
    local_cloud.set(dev, "sw1", "x")  # the device never reported sw1: the cloud takes it
    at = proc.wait_line("on_write sw1 x", WAIT, start=at)
    local_cloud.set(dev, "sw1", True)
    proc.wait_line("on_write sw1 True", WAIT, start=at)
    local_cloud.wait_for(dev, "led", True, timeout=WAIT)  # the example copies sw1 to led (a bool)
    local_cloud.set(dev, "sw1", False)
    local_cloud.wait_for(dev, "led", False, timeout=WAIT)
    out = proc.output()
    assert "expected str" not in out, out[-3000:]
