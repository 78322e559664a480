"""Issue 15 item 5 end to end, on the local cloud: a stray write of the wrong type
must not lock a property (records/property.py), and register(type=...) refuses it on the
device; the local cloud's set refuses a value of another type than the device
reported (localcloud/writes.py), from Python and from the CLI."""

import os
import sys

import pytest

from arduino_iot_cloud.localcloud import cli
from arduino_iot_cloud.localcloud.writes import BadWrite
from e2e_helpers import MODES, WAIT, make_client, script_env

TRANSPORT = "socket"
BASIC = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                     "examples", "basic.py")


@pytest.mark.parametrize("mode", MODES)
async def test_a_stray_string_then_true_reaches_on_write(local_cloud, device_factory, driven, caplog, mode):
    # The scenario: sw1 registered with value=None, `set DEV sw1 '"x"'`, then true.
    dev = device_factory()
    client = make_client(local_cloud, dev, TRANSPORT, mode)
    seen = []
    client.register("sw1", value=None, on_write=lambda cl, v: seen.append(("sw1", v)))
    client.register("sw2", type=bool, on_write=lambda cl, v: seen.append(("sw2", v)))
    d = await driven(client)
    await d.attached()
    caplog.set_level("WARNING")
    local_cloud.set(dev, "sw1", "x")  # the device never reported sw1 or sw2: the cloud takes any value
    local_cloud.set(dev, "sw2", "x")
    await d.until(lambda: ("sw1", "x") in seen, "the stray value on sw1")
    local_cloud.set(dev, "sw1", True)
    local_cloud.set(dev, "sw2", True)
    await d.until(lambda: ("sw1", True) in seen and ("sw2", True) in seen, "true on sw1 and sw2 (seen: %r)" % seen)
    assert client["sw1"] is True and client["sw2"] is True
    assert ("sw2", "x") not in seen  # type=bool: refused, and said so
    assert any("sw2" in r.getMessage() and "expected bool" in r.getMessage() for r in caplog.records), \
        [r.getMessage() for r in caplog.records]
    assert any("sw1 changed type from str to bool" in r.getMessage() for r in caplog.records)


async def test_set_refuses_the_wrong_type_from_python_and_the_cli(local_cloud, device_factory, driven, capsys):
    dev = device_factory()
    client = make_client(local_cloud, dev, TRANSPORT, "async")
    seen = []
    client.register("sw1", value=False, on_write=lambda cl, v: seen.append(v))
    client.register("temp", value=21.5, on_write=lambda cl, v: seen.append(v))
    d = await driven(client)
    await d.attached()
    await d.until(lambda: local_cloud.history(dev, "sw1") and local_cloud.history(dev, "temp"),
                  "the device's first report")
    with pytest.raises(BadWrite, match="sw1 is a bool, not a string"):
        local_cloud.set(dev, "sw1", "x")
    with pytest.raises(BadWrite, match="temp is a number, not a bool"):
        local_cloud.set(dev, "temp", True)

    def run_cli(*argv):
        status = cli.main(["--workdir", str(local_cloud.workdir), *argv])
        out, err = capsys.readouterr()
        return status, out, err

    status, _, err = run_cli("set", dev.device_id, "sw1", '"x"')
    assert status != 0 and "sw1 is a bool, not a string (the device reported false)" in err, err
    assert local_cloud.get(dev, "sw1") is False  # nothing stored, nothing sent
    status, _, err = run_cli("set", dev.device_id, "sw1", "true")
    assert status == 0, err
    status, _, err = run_cli("set", dev.device_id, "temp", "22")  # a whole number is a fine float
    assert status == 0, err
    await d.until(lambda: seen == [True, 22.0], "the two good writes (seen: %r)" % seen)
    assert type(client["temp"]) is float


def test_the_basic_example_survives_a_stray_string(local_cloud, device_factory, scripts):
    # examples/basic.py (1.4.1's): sw1 and led both value=None, on_write copies sw1 to led.
    # The stray "x" reaches led through the user's callback: it must not lock led either.
    dev = device_factory(auth="password")
    proc = scripts([sys.executable, BASIC],
                   script_env(local_cloud, dev, DEVICE_ID=dev.device_id, SECRET_KEY=dev.secret))
    local_cloud.wait_event(dev, "last_values", timeout=WAIT)
    local_cloud.set(dev, "sw1", "x")
    local_cloud.wait_for(dev, "led", "x", timeout=WAIT)
    local_cloud.set(dev, "sw1", True)  # led's last report is "x": the cloud takes a bool for sw1 (never reported)
    local_cloud.wait_for(dev, "led", True, timeout=WAIT)
    local_cloud.set(dev, "sw1", False)
    local_cloud.wait_for(dev, "led", False, timeout=WAIT)
    out = proc.output()
    assert "changed type from str to bool" in out and "Traceback" not in out, out[-3000:]
