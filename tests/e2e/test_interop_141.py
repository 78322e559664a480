"""The local cloud speaks what arduino-iot-cloud 1.4.1 (PyPI) expects, and a script
written for 1.4.1 runs unchanged on this project's package.

tests/e2e/device_141.py (1.4.1 API; broker, CA and credentials as arguments,
since 1.4.1 reads no environment variables) runs as a subprocess, once with the
1.4.1 package in .venv-141 (made by benchmarks/setup_141.sh) and once with ours,
async and sync, against a device whose cloud speaks only the "event" variant
(the only one 1.4.1 knows): it attaches, gets its last values, dashboard writes
reach its on_write, and its values reach the cloud.

Without the 1.4.1 venv (no network to PyPI) the 1.4.1 tests are skipped, except
when the environment variable CI is set: then they fail.
"""

import os
import subprocess
import sys

import pytest

from e2e_helpers import SRC, WAIT, script_env

ROOT = os.path.dirname(SRC)
SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "device_141.py")
SETUP = os.path.join(ROOT, "benchmarks", "setup_141.sh")
VENV = os.path.join(ROOT, ".venv-141")

LAST_VALUES = {"sw1": False, "led": False, "level": 7, "label": "kitchen", "loc": {"lat": 45.5, "lon": 9.25}}


@pytest.fixture(scope="session")
def python_141():
    """The interpreter of .venv-141, with arduino-iot-cloud 1.4.1 installed (setup_141.sh is idempotent)."""
    try:
        r = subprocess.run(["bash", SETUP], cwd=ROOT, capture_output=True, text=True, timeout=120,
                           env=dict(_env_without_src(), VENV_141=VENV))  # its check must see 1.4.1, not src/
        problem = None if r.returncode == 0 else "exit %d: %s" % (r.returncode, (r.stdout + r.stderr)[-1500:])
    except subprocess.TimeoutExpired:
        problem = "timed out after 120 s"
    if problem is not None:
        message = "cannot create the arduino-iot-cloud 1.4.1 venv with %s (%s)" % (SETUP, problem)
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    python = os.path.join(VENV, "bin", "python")
    # The venv must import 1.4.1, not this project's package.
    r = subprocess.run([python, "-c", "import arduino_iot_cloud._version as v; print(v.__version__)"],
                       capture_output=True, text=True, timeout=30, env=_env_without_src())
    assert r.stdout.strip() == "1.4.1", r.stdout + r.stderr
    return python


def _env_without_src():
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def start_script(scripts, cloud, dev, python, ours, mode):
    argv = [python, SCRIPT, "--device-id", dev.device_id, "--server", cloud.host, "--ca", cloud.ca_file]
    if dev.auth == "password":
        argv += ["--port", str(cloud.password_port)]
        extra = {"SECRET_KEY": dev.secret}
    else:
        argv += ["--port", str(cloud.cert_port), "--key", dev.keyfile, "--cert", dev.certfile]
        extra = {}
    if mode == "sync":
        argv.append("--sync")
    env = script_env(cloud, dev, python_path=SRC if ours else None, **extra)
    # Broker, port and CA come from the arguments only, for both packages.
    for name in ("ARDUINO_IOT_CLOUD_SERVER", "ARDUINO_IOT_CLOUD_PORT", "ARDUINO_IOT_CLOUD_CA"):
        env.pop(name)
    return scripts(argv, env)


def exchange(cloud, dev, proc, version, mode):
    """The core scenario: attach (event variant), last values, writes both ways."""
    begin = cloud.wait_event(dev, "device_begin", timeout=WAIT)
    assert begin == "%s-%s" % (version, mode), "%s ran, not %s" % (begin, version)
    assert cloud.wait_event(dev, "last_values", timeout=WAIT) == "shadow"
    # Last values of every kind, and on_write for those that have one.
    proc.wait_output("state sw1=False led=False level=7 label='kitchen' loc=45.5,9.25")
    proc.wait_output("on_write level 7 int")
    proc.wait_output("on_write loc 45.5 9.25")
    # The device's own values.
    cloud.wait_for(dev, "counter", lambda v: isinstance(v, int) and v >= 2, timeout=WAIT)
    # Dashboard writes.
    cloud.set(dev, "sw1", True)
    proc.wait_output("on_write sw1 True")
    cloud.wait_for(dev, "led", True, timeout=WAIT)
    cloud.set(dev, "level", 42)
    proc.wait_output("on_write level 42 int")
    cloud.set(dev, "loc", {"lat": -33.875, "lon": 151.25})
    proc.wait_output("on_write loc -33.875 151.25")
    proc.wait_output("state sw1=True led=True level=42 label='kitchen' loc=-33.875,151.25")
    out = proc.output()
    assert proc.alive(), out[-3000:]
    assert "Traceback" not in out, out[-3000:]
    if dev.secret:
        assert dev.secret not in out


@pytest.mark.parametrize("mode", ["async", "sync"])
def test_141_package_on_the_local_cloud(local_cloud, device_factory, scripts, python_141, mode):
    dev = device_factory(auth="password", variant="event", properties=LAST_VALUES)
    proc = start_script(scripts, local_cloud, dev, python_141, ours=False, mode=mode)
    exchange(local_cloud, dev, proc, "1.4.1", mode)


def test_141_package_with_a_client_certificate(local_cloud, device_factory, scripts, python_141):
    dev = device_factory(auth="cert", variant="event", properties=LAST_VALUES)
    proc = start_script(scripts, local_cloud, dev, python_141, ours=False, mode="sync")
    exchange(local_cloud, dev, proc, "1.4.1", "sync")


@pytest.mark.parametrize("mode", ["async", "sync"])
def test_141_script_unchanged_on_our_package(local_cloud, device_factory, scripts, mode):
    from arduino_iot_cloud.version import __version__

    dev = device_factory(auth="password", variant="event", properties=LAST_VALUES)
    proc = start_script(scripts, local_cloud, dev, sys.executable, ours=True, mode=mode)
    exchange(local_cloud, dev, proc, __version__, mode)
