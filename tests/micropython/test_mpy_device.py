"""End to end under the real MicroPython unix port: examples/micropython_device.py as a
``micropython`` subprocess against the local cloud (real mosquitto over TLS).

Each combination of authentication (password; DER key and certificate) and driver
(async; sync with update()) must: attach, publish values (uptime), receive a dashboard
write in on_write (sw1, copied to led and published back), and survive a broker restart
by reconnecting, attaching again and fetching the last values again, after which writes
still arrive.
"""

import os

import pytest

from mpy_helpers import EXAMPLE, EXAMPLES, SRC, mpy_env

WAIT = 20.0
HERE = os.path.dirname(os.path.abspath(__file__))


def device_env(cloud, dev, mode, **extra):
    env = dict(cloud.env(dev), DEVICE_ID=dev.device_id, RUN_SECONDS=80)
    if dev.auth == "password":
        env["SECRET_KEY"] = dev.secret
    else:
        # mbedTLS takes DER only: the DER key, certificate and CA, used as they are.
        env["DEVICE_KEY"] = dev.keyfile_der
        env["DEVICE_CERT"] = dev.certfile_der
        env["ARDUINO_IOT_CLOUD_CA"] = cloud.ca_der
    if mode == "sync":
        env["SYNC_MODE"] = "1"
    env.update(extra)
    return mpy_env(SRC, EXAMPLES, **env)


@pytest.mark.e2e
@pytest.mark.parametrize("mode", ["async", "sync"])
@pytest.mark.parametrize("auth", ["password", "cert"])
def test_example_device_on_micropython(mpy, mpy_procs, local_cloud, device_factory, auth, mode):
    cloud = local_cloud
    dev = device_factory(auth=auth, variant="both", properties={"sw1": False})
    proc = mpy_procs([EXAMPLE], device_env(cloud, dev, mode))

    # Attach: thing found, last values fetched, values published.
    proc.wait_line("attached 1 %s" % dev.thing_id, WAIT)
    cloud.wait_for(dev, "uptime", lambda v: isinstance(v, int) and v >= 1, timeout=WAIT)
    assert cloud.device(dev).library_version == "2.0.0-%s" % mode
    events = [kind for kind, _ in cloud.events(dev)]
    assert "last_values" in events

    # A dashboard write reaches on_write, which changes "led"; the device publishes it.
    at = len(proc.lines)
    cloud.set(dev, "sw1", True)
    proc.wait_line("on_write sw1 True", WAIT, start=at)
    cloud.wait_for(dev, "led", True, timeout=WAIT)

    # Broker restart: the link drops; the device reconnects, attaches again and asks
    # for the last values again.  The write made right after the restart usually lands
    # while the device is still away (the broker drops it: clean session), so it can
    # only arrive as a last value of the re-sync; either way it must arrive.
    mark = cloud.mark(dev)
    at = len(proc.lines)
    cloud.restart_broker()
    cloud.set(dev, "sw1", False)
    proc.wait_line("attached 2 %s" % dev.thing_id, WAIT, start=at)
    cloud.wait_event(dev, "connect", since=mark, timeout=WAIT)
    cloud.wait_event(dev, "last_values", since=mark, timeout=WAIT)
    proc.wait_line("on_write sw1 False", WAIT, start=at)
    cloud.wait_for(dev, "led", False, timeout=WAIT)
    # (No order between "connect" and "last_values": the first comes from the broker's
    # log, the second over MQTT.)

    # Steady state again: publishing goes on, and a new write arrives directly.
    seen = cloud.get(dev, "uptime")
    cloud.wait_for(dev, "uptime", lambda v: v > seen, timeout=WAIT)
    at = len(proc.lines)
    cloud.set(dev, "sw1", True)
    proc.wait_line("on_write sw1 True", WAIT, start=at)
    cloud.wait_for(dev, "led", True, timeout=WAIT)

    assert proc.proc.poll() is None, proc.output()
    out = proc.output()
    assert "Traceback" not in out, out
    if auth == "password":
        assert dev.secret not in out


@pytest.mark.e2e
def test_example_device_stops_by_itself(mpy, mpy_procs, local_cloud, device_factory):
    # RUN_SECONDS bounds the example: it stops the client and exits 0 (sync and async).
    # Attaching takes milliseconds; 5 s leaves room for a loaded CI machine.
    for mode in ("async", "sync"):
        dev = device_factory(auth="password")
        proc = mpy_procs([EXAMPLE], device_env(local_cloud, dev, mode, RUN_SECONDS=5))
        assert proc.wait(30) == 0, proc.output()
        out = proc.output()
        assert "attached 1" in out and out.rstrip().endswith("stopped"), out


@pytest.mark.e2e
def test_idle_step_allocates_nothing_on_micropython(mpy, local_cloud, device_factory):
    # With the heap locked, recv() with nothing to read, the publish check and a whole
    # engine step must not allocate (a board polls update() many times a second: each
    # allocation there is garbage, and a 4 KB read buffer per call needs a free block of
    # that size in a heap that fragments over the days).
    from mpy_helpers import ROOT, run_mpy

    dev = device_factory(auth="password")
    env = mpy_env(SRC, **dict(local_cloud.env(dev), DEVICE_ID=dev.device_id, SECRET_KEY=dev.secret))
    r = run_mpy([ROOT + "/tests/micropython/mpy_idle_device.py"], env, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "IDLE_ALLOC_FAILURES 0" in r.stdout and "CONNECTED True" in r.stdout, r.stdout + r.stderr


@pytest.mark.e2e
def test_example_as_on_a_board(mpy, mpy_procs, local_cloud, device_factory, tmp_path):
    # The example's board path: settings from device_config.py (not the environment),
    # Wi-Fi joined through `network`, the LED driven through `machine.Pin`.  Both modules
    # are test doubles (tests/micropython/board_double); the broker and TLS are real.
    import os

    dev = device_factory(auth="password")
    (tmp_path / "device_config.py").write_text(
        "WIFI_SSID = 'lab-network'\nWIFI_PASS = 'wifi-pass'\nDEVICE_ID = %r\nSECRET_KEY = %r\n"
        "SYNC_MODE = True\nLED_PIN = 2\nRUN_SECONDS = 60\n" % (dev.device_id, dev.secret))
    board = os.path.join(os.path.dirname(os.path.abspath(__file__)), "board_double")
    env = mpy_env(SRC, EXAMPLES, board, str(tmp_path), **local_cloud.env(dev))  # endpoint and CA only
    proc = mpy_procs([EXAMPLE], env)
    proc.wait_line("wifi-double: connect lab-network", WAIT)
    proc.wait_line("starting sync", WAIT)
    proc.wait_line("attached 1 %s" % dev.thing_id, WAIT)
    at = len(proc.lines)
    local_cloud.set(dev, "sw1", True)
    proc.wait_line("pin-double: 2 = 1", WAIT, start=at)
    local_cloud.wait_for(dev, "led", True, timeout=WAIT)
    assert "wifi-pass" not in proc.output() and dev.secret not in proc.output()


@pytest.mark.e2e
@pytest.mark.parametrize("variant", ["event", "command"])
def test_example_device_with_each_attach_variant(mpy, mpy_procs, local_cloud, device_factory, variant):
    # A cloud speaking only one attach variant: the older one (thing_id on e/i, last values
    # on shadow/i) or the newer one (ThingUpdate and LastValuesUpdate on c/dw).
    dev = device_factory(auth="password", variant=variant, properties={"sw1": True})
    proc = mpy_procs([EXAMPLE], device_env(local_cloud, dev, "async"))
    proc.wait_line("attached 1 %s" % dev.thing_id, WAIT)
    # The last value of sw1 (True) came with the attach and went through on_write.
    proc.wait_line("on_write sw1 True", WAIT)
    local_cloud.wait_for(dev, "led", True, timeout=WAIT)
    expected = "shadow" if variant == "event" else "command"
    assert local_cloud.wait_event(dev, "last_values", timeout=WAIT) == expected
    at = len(proc.lines)
    local_cloud.set(dev, "sw1", False)
    proc.wait_line("on_write sw1 False", WAIT, start=at)
    local_cloud.wait_for(dev, "led", False, timeout=WAIT)


@pytest.mark.e2e
def test_example_runs_unchanged_on_cpython(local_cloud, device_factory):
    # The same file under CPython (sync and async), bounded by RUN_SECONDS.
    import os
    import subprocess
    import sys

    for mode in ("async", "sync"):
        dev = device_factory(auth="password")
        env = {k: v for k, v in os.environ.items() if not k.startswith("ARDUINO_IOT_CLOUD_")}
        env.update(local_cloud.env(dev), PYTHONPATH=SRC, DEVICE_ID=dev.device_id, SECRET_KEY=dev.secret,
                   RUN_SECONDS="5", SYNC_MODE="1" if mode == "sync" else "0")
        r = subprocess.run([sys.executable, EXAMPLE], env=env, capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "starting %s" % mode in r.stdout and "attached 1 %s" % dev.thing_id in r.stdout, r.stdout
        assert r.stdout.rstrip().endswith("stopped"), r.stdout


@pytest.mark.e2e
def test_sync_update_returns_while_a_silent_server_holds_the_handshake(mpy):
    # MicroPython's TLS socket hand-shakes inside its reads and writes: the
    # connect goes on across update() calls instead of waiting in one.
    import socket
    import time

    from mpy_helpers import run_mpy

    silent = socket.create_server(("127.0.0.1", 0))  # accepts TCP, never answers TLS
    try:
        t0 = time.monotonic()
        r = run_mpy([os.path.join(HERE, "mpy_silent_connect.py")],
                    mpy_env(SRC, SILENT_PORT=silent.getsockname()[1]), timeout=30)
        took = time.monotonic() - t0
    finally:
        silent.close()
    out = r.stdout
    assert r.returncode == 0, out + r.stderr
    assert "PENDING True False None" in out, out
    assert "ERROR TransportError no CONNACK from the broker within 1500 ms" in out, out
    assert "RETRY_SCHEDULED True" in out, out
    assert took < 25, "the connect attempt was not bounded (%.1f s)" % took
