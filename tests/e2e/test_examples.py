"""The scripts in examples/ run unchanged against the local cloud, each as a
subprocess pointed at the local broker by ARDUINO_IOT_CLOUD_SERVER/_PORT/_CA
(cloud.env(dev)) and given its credentials the way the script reads them
(DEVICE_ID, SECRET_KEY or KEY_PATH + CERT_PATH).  Each one attaches, exchanges
values with the dashboard both ways, and is terminated (the ``scripts`` fixture
kills what is left in a finally).  Every wait is bounded.
"""

import os
import re
import sys
import time

import pytest

from e2e_helpers import WAIT, script_env

EXAMPLES = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "examples"))
TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TESTED_HERE = ["basic.py", "sync_loop.py", "all_types.py"]
# Examples run unchanged by the suites built for them: (test file, why there).
TESTED_ELSEWHERE = {
    "pkcs11_device.py": ("softhsm/test_pkcs11_device.py", "it needs a SoftHSM token, M2Crypto and the pkcs11 engine"),
    "micropython_device.py": ("micropython/test_mpy_device.py",
                              "it runs there on the MicroPython unix port and on CPython"),
    "sealed.py": ("sealing/test_sealing_e2e.py", "it runs there with an owner's context, on CPython and MicroPython"),
    "ota_device.py": ("ota/test_ota_e2e.py", "it launches examples/ota_app there, updated over the air"),
}


def start_example(scripts, cloud, dev, name, **extra):
    if dev.auth == "password":
        creds = {"DEVICE_ID": dev.device_id, "SECRET_KEY": dev.secret}
    else:
        creds = {"DEVICE_ID": dev.device_id, "KEY_PATH": dev.keyfile, "CERT_PATH": dev.certfile}
    creds.update(extra)
    return scripts([sys.executable, os.path.join(EXAMPLES, name)], script_env(cloud, dev, **creds))


def check_output(proc, dev):
    out = proc.output()
    assert proc.alive(), "the example exited (%s):\n%s" % (proc.proc.returncode, out[-3000:])
    assert "Traceback" not in out, out[-3000:]
    if dev.secret:
        assert dev.secret not in out, "the secret key is in the example's output"


def switch_drives_led(cloud, dev):
    """The examples' common dashboard round trip: sw1 -> on_write -> led, twice."""
    for value in (True, False):
        cloud.set(dev, "sw1", value)
        cloud.wait_for(dev, "led", value, timeout=WAIT)


def test_every_example_has_a_test():
    found = sorted(f for f in os.listdir(EXAMPLES) if f.endswith(".py"))
    assert found == sorted(TESTED_HERE + list(TESTED_ELSEWHERE)), "an example without a test: %s" % found


@pytest.mark.parametrize("name", sorted(TESTED_ELSEWHERE))
def test_example_tested_elsewhere(name):
    test_file, why = TESTED_ELSEWHERE[name]
    helpers = {"micropython_device.py": "micropython/mpy_helpers.py", "pkcs11_device.py": "softhsm/conftest.py",
               "sealed.py": "sealing/test_sealing_e2e.py",
               "ota_device.py": "ota/otatools.py"}
    with open(os.path.join(TESTS, helpers[name])) as f:
        assert name in f.read(), "%s no longer names %s" % (helpers[name], name)
    assert os.path.exists(os.path.join(TESTS, test_file))
    pytest.skip("%s is tested by tests/%s: %s" % (name, test_file, why))


def test_basic_example(local_cloud, device_factory, scripts):
    # The 1.4.1 minimal example: async mode; the cloud speaks only 1.4.1's variant.
    dev = device_factory(auth="password", variant="event", properties={"sw1": False, "led": False})
    mark = local_cloud.mark(dev)
    proc = start_example(scripts, local_cloud, dev, "basic.py")
    local_cloud.wait_event(dev, "last_values", since=mark, timeout=WAIT)
    local_cloud.wait_event(dev, "device_begin", lambda v: v.endswith("-async"), since=mark, timeout=WAIT)
    switch_drives_led(local_cloud, dev)
    check_output(proc, dev)


def test_sync_loop_example(local_cloud, device_factory, scripts):
    dev = device_factory(auth="password", variant="command", properties={"sw1": False, "led": False})
    mark = local_cloud.mark(dev)
    proc = start_example(scripts, local_cloud, dev, "sync_loop.py")
    local_cloud.wait_event(dev, "device_begin", lambda v: v.endswith("-sync"), since=mark, timeout=WAIT)
    local_cloud.wait_for(dev, "uptime", 0, timeout=WAIT)
    switch_drives_led(local_cloud, dev)
    local_cloud.wait_for(dev, "uptime", lambda v: isinstance(v, int) and v >= 1, timeout=WAIT)
    check_output(proc, dev)


@pytest.mark.parametrize("auth", ["password", "cert"])
def test_all_types_example(local_cloud, device_factory, scripts, auth):
    now = int(time.time())
    schedule = {"frm": now - 60, "to": 0, "len": 3600, "msk": 0}  # one-shot, on now
    dev = device_factory(auth=auth, properties={"sw1": False, "led": False, "schedule": schedule})
    proc = start_example(scripts, local_cloud, dev, "all_types.py")

    # Values the script publishes: plain ones, from on_read, and every composite whole.
    local_cloud.wait_for(dev, "clk", lambda v: isinstance(v, str) and re.fullmatch(r"\d\d:\d\d:\d\d", v),
                         timeout=WAIT)
    local_cloud.wait_for(dev, "counter", 0, timeout=WAIT)
    local_cloud.wait_for(dev, "temperature", lambda v: isinstance(v, float) and 20 <= v <= 25, timeout=WAIT)
    local_cloud.wait_for(dev, "dimmer", {"swi": False, "bri": 10.0}, timeout=WAIT)
    local_cloud.wait_for(dev, "treasureisland", {"lat": 31.264694, "lon": 29.979987}, timeout=WAIT)
    local_cloud.wait_for(dev, "tv", {"swi": False, "vol": 10, "mut": False, "pbc": 7, "inp": 16, "cha": 1},
                         timeout=WAIT)
    # The user task changes the light's hue and brightness every second; sent whole.
    local_cloud.wait_for(dev, "clight", lambda v: set(v) == {"swi", "hue", "sat", "bri"} and v["sat"] == 50
                         and (v["hue"], v["bri"]) != (0, 50), timeout=WAIT)
    # The schedule came from the last values, and it is on now.
    proc.wait_output("schedule active")

    # Dashboard writes.
    switch_drives_led(local_cloud, dev)
    local_cloud.set(dev, "counter", 5)
    proc.wait_output("counter set to 5")
    local_cloud.set(dev, "clight", {"swi": False, "hue": 1.5, "sat": 2.5, "bri": 3.5})
    proc.wait_output("ColoredLight changed: swi=False hue=1.5 sat=2.5 bri=3.5")
    check_output(proc, dev)
