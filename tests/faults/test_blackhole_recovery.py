"""Recovery after a long black hole (issue 12, item 14), on CPython, both transports.

The link is black-holed for several seconds: the device finds it dead, then
every new attempt is black-holed too (the TCP connect succeeds at the proxy,
the TLS handshake never answers).  The link heals while such an attempt is
under way.  That attempt must be given up within the CONNACK wait (1.5 x
keepalive), as on MicroPython, not after the 10 s connect timeout, so the
device is back within 1.5 x keepalive + reconnect_cap + the attach.  (paho:
its connect thread's TCP and TLS timeout, which client.py sets the same.)
"""

import time

import pytest

from devrunner import DeviceRunner, wait_until
from test_faults import report

pytestmark = pytest.mark.e2e

KEEPALIVE = 2
RECONNECT_CAP = 1.0


@pytest.mark.parametrize("transport", ("socket", "paho"))
@pytest.mark.parametrize("mode", ("sync", "async"))
def test_recovers_soon_after_a_long_blackhole_heals(mode, transport, local_cloud, fault_proxy, clean_env):
    if transport == "paho":
        pytest.importorskip("paho.mqtt")
    from arduino_iot_cloud import ArduinoCloudClient

    cloud, proxy = local_cloud, fault_proxy
    dev = cloud.add_device(auth="password", variant="both")
    c = ArduinoCloudClient(dev.device_id, password=dev.secret, server="127.0.0.1", port=proxy.port,
                           keepalive=KEEPALIVE, sync_mode=(mode == "sync"), reconnect_cap=RECONNECT_CAP,
                           transport=transport, ssl_params={"cafile": cloud.ca_file})
    c.register("counter", value=0)
    runner = DeviceRunner(c).start()
    try:
        wait_until(lambda: c.connected, 15, what="first attach")
        attaches = c.session.attach_count
        t0 = time.monotonic()
        proxy.blackhole()
        wait_until(lambda: c.engine.conn is None, 5 * KEEPALIVE, what="dead link detected")
        detect = time.monotonic() - t0
        # Several attempts into the black hole, then heal just after one has started.
        time.sleep(2 * KEEPALIVE)
        accepted = proxy.accepted
        wait_until(lambda: proxy.accepted > accepted, 10 * KEEPALIVE, what="an attempt under way")
        time.sleep(0.2)  # its TCP connect done, its handshake black-holed
        healed = time.monotonic()
        proxy.heal()
        runner.set("counter", 5)
        wait_until(lambda: c.session.attach_count > attaches and c.connected, 30, what="re-attach")
        back = time.monotonic() - healed
        cloud.wait_for(dev, "counter", 5, timeout=10)
        report(fault="long-blackhole", mode=mode, transport=transport, keepalive_s=KEEPALIVE,
               reconnect_cap_s=RECONNECT_CAP, detect_s=round(detect, 3), blackhole_s=round(healed - t0, 3),
               reattach_after_heal_s=round(back, 3))
        # 3 s for the stuck handshake, < 1 s backoff, the attach; 1 s margin for a loaded machine.
        assert back <= 1.5 * KEEPALIVE + RECONNECT_CAP + 1.0, back
    finally:
        runner.stop()
    assert runner.error is None, runner.error
