"""End-to-end scenarios on the local cloud (real mosquitto over TLS), run on both
transports: our socket client ("socket") and paho-mqtt 2.x ("paho").

Devices run in-process, in the test's own thread: sync mode is driven by
update() calls from the test, async mode by client.run() as a task of the
test's event loop (stopped with client.stop()).  Every wait has a deadline,
and each test has an overall time limit.
"""

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from arduino_iot_cloud import ArduinoCloudClient
from arduino_iot_cloud.errors import ConfigError, ConnectRefused, TransportError
from e2e_helpers import MODES, TRANSPORTS, WAIT, make_client

# _time_limit, _no_env (autouse) and driven are in conftest.py.


def paho_threads(client_id):
    """paho's network threads are named after the client id (loop_start)."""
    return [t.name for t in threading.enumerate() if client_id in t.name]


# --- attach ------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_attach_with_password(local_cloud, device_factory, driven, transport, mode):
    dev = device_factory(auth="password")
    client = make_client(local_cloud, dev, transport, mode)
    d = await driven(client)
    await d.attached()
    assert client.thing_id == dev.thing_id
    assert client.engine.last_error is None


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_attach_with_client_certificate(local_cloud, device_factory, driven, transport, mode):
    dev = device_factory(auth="cert")
    client = make_client(local_cloud, dev, transport, mode)
    d = await driven(client)
    await d.attached()
    assert client.thing_id == dev.thing_id


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_attach_with_der_key_and_certificate(local_cloud, device_factory, driven, transport):
    dev = device_factory(auth="cert")
    client = make_client(local_cloud, dev, transport, "sync", der=True)
    d = await driven(client)
    await d.attached()
    assert client.thing_id == dev.thing_id


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_server_hostname_names_the_certificate(local_cloud, device_factory, driven, transport):
    # The server certificate is for "localhost" and 127.0.0.1; connect by IP, check by name.
    dev = device_factory(auth="password")
    client = make_client(local_cloud, dev, transport, "sync", ssl_params={"server_hostname": "localhost"})
    d = await driven(client)
    await d.attached()


# --- TLS checks are on by default -----------------------------------------------------------

@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_wrong_hostname_is_refused(local_cloud, device_factory, driven, transport):
    dev = device_factory(auth="password")
    client = make_client(local_cloud, dev, transport, "sync",
                         ssl_params={"server_hostname": "not-the-broker.example"})
    d = await driven(client)
    await d.until(lambda: isinstance(client.engine.last_error, TransportError), "a TLS error")
    assert "certificate" in str(client.engine.last_error).lower()
    assert not client.connected


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_default_ca_does_not_trust_the_local_broker(local_cloud, device_factory, driven, transport):
    # Without a cafile the shipped cloud CA is used: the local CA is not in it.
    dev = device_factory(auth="password")
    client = ArduinoCloudClient(dev.device_id, password=dev.secret, server=local_cloud.host,
                                port=local_cloud.password_port, sync_mode=True, transport=transport)
    d = await driven(client)
    await d.until(lambda: isinstance(client.engine.last_error, TransportError), "a TLS error")
    assert "certificate verify failed" in str(client.engine.last_error)
    assert client.engine.conn is None


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_verification_turned_off_explicitly(local_cloud, device_factory, driven, caplog, transport):
    import ssl

    dev = device_factory(auth="password")
    client = ArduinoCloudClient(dev.device_id, password=dev.secret, server=local_cloud.host,
                                port=local_cloud.password_port, sync_mode=True, transport=transport,
                                ssl_params={"verify_mode": ssl.CERT_NONE})
    assert "verification is OFF" in caplog.text
    d = await driven(client)
    await d.attached()


# --- values both ways -------------------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_dashboard_write_reaches_on_write(local_cloud, device_factory, driven, transport, mode):
    dev = device_factory(auth="password")
    client = make_client(local_cloud, dev, transport, mode)
    writes = []

    def on_write(cl, value):
        writes.append((value, threading.current_thread()))

    client.register("level", value=0, on_write=on_write)
    d = await driven(client)
    await d.attached()
    local_cloud.set(dev, "level", 42)
    await d.until(lambda: any(v == 42 for v, _t in writes), "on_write(42)")
    assert client["level"] == 42
    # Callbacks ran in the test's thread: paho's network thread was never started.
    assert all(t is threading.current_thread() for _v, t in writes)
    assert paho_threads(dev.device_id) == []


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_published_value_reaches_the_cloud(local_cloud, device_factory, driven, transport, mode):
    dev = device_factory(auth="password")
    client = make_client(local_cloud, dev, transport, mode)
    client.register("temperature", value=20.5)
    d = await driven(client)
    await d.attached()
    await d.until(lambda: local_cloud.get(dev, "temperature") == 20.5, "the first value in the cloud")
    client["temperature"] = 23.25
    await d.until(lambda: local_cloud.get(dev, "temperature") == 23.25, "the new value in the cloud")


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_many_values_in_a_row_all_reach_the_cloud(local_cloud, device_factory, driven, transport):
    # More publishes than the in-flight limit (32): acknowledged ones must free their slot.
    dev = device_factory(auth="password")
    client = make_client(local_cloud, dev, transport, "sync")
    client.register("counter", value=0)
    d = await driven(client)
    await d.attached()
    for i in range(1, 81):
        client["counter"] = i
        await d.until(lambda: local_cloud.get(dev, "counter") == i, "counter=%d in the cloud" % i)
    assert local_cloud.history(dev, "counter")[-80:] == list(range(1, 81))


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_sync_start_returns_once_attached(local_cloud, device_factory, transport):
    # start() blocks (bounded here by the test's time limit) until attached and in sync.
    dev = device_factory(auth="cert", properties={"level": 3})
    client = make_client(local_cloud, dev, transport, "sync")
    client.register("level", value=None)
    try:
        client.start()
        assert client.connected and client["level"] == 3
        client["level"] = 4
        deadline = time.monotonic() + WAIT
        while local_cloud.get(dev, "level") != 4:
            assert time.monotonic() < deadline, "level=4 did not reach the cloud"
            client.update()
            time.sleep(0.005)
    finally:
        client.stop()
    assert client.engine.conn is None


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_last_values_restored_on_start(local_cloud, device_factory, driven, transport, mode):
    dev = device_factory(auth="password", properties={"level": 7, "label": "kitchen"})
    client = make_client(local_cloud, dev, transport, mode)
    client.register("level", value=None)
    client.register("label", value=None)
    d = await driven(client)
    await d.attached()
    assert client["level"] == 7
    assert client["label"] == "kitchen"


# --- broker restart -------------------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_broker_restart_reattaches_without_losing_a_value(local_cloud, device_factory, driven,
                                                                transport, mode):
    dev = device_factory(auth="password")
    client = make_client(local_cloud, dev, transport, mode)
    client.register("counter", value=1)
    d = await driven(client)
    await d.attached()
    await d.until(lambda: local_cloud.get(dev, "counter") == 1, "counter=1 in the cloud")
    attaches = client.session.attach_count
    failures = client.engine.backoff.failures

    # Restart mosquitto in a worker thread while the device keeps running here.
    restart = asyncio.ensure_future(asyncio.to_thread(local_cloud.restart_broker))
    # poll=0: look after every step of the device, to catch it while it is off-line.
    await d.until(lambda: client.engine.backoff.failures > failures, "the device to see the link drop",
                  poll=0)
    offline = not client.connected
    client["counter"] = 2
    if mode == "sync":
        assert offline, "sync mode: the value must be set between the drop and the re-attach"
    await d.until(restart.done, "the broker restart", timeout=20)
    restart.result()
    await d.until(lambda: client.session.attach_count > attaches and client.connected, "the re-attach",
                  timeout=20)
    await d.until(lambda: local_cloud.get(dev, "counter") == 2, "counter=2 in the cloud")
    assert local_cloud.history(dev, "counter")[-2:] == [1, 2]


# --- dead and silent links ------------------------------------------------------------------

@pytest.fixture
def fault_proxy(local_cloud):
    """The fault tests' TCP proxy (tests/faults/proxy.py) in front of the password listener."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "faults"))
    try:
        from proxy import FaultProxy
    finally:
        sys.path.pop(0)
    p = FaultProxy(local_cloud.host, local_cloud.password_port).start()
    try:
        yield p
    finally:
        p.stop()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_half_open_link_is_found_and_the_device_reattaches(local_cloud, device_factory, driven,
                                                                 fault_proxy, transport, mode):
    keepalive = 2
    dev = device_factory(auth="password")
    client = ArduinoCloudClient(dev.device_id, password=dev.secret, server=local_cloud.host,
                                port=fault_proxy.port, keepalive=keepalive, ssl_params={"cafile": local_cloud.ca_file},
                                sync_mode=(mode == "sync"), transport=transport, reconnect_cap=1.0)
    client.engine.connect_timeout = 2  # a black-holed handshake gives up soon
    client.register("counter", value=1)
    d = await driven(client)
    await d.attached()
    await d.until(lambda: local_cloud.get(dev, "counter") == 1, "counter=1 in the cloud")
    attaches = client.session.attach_count

    fault_proxy.blackhole()  # nothing passes, nothing is closed
    t0 = time.monotonic()
    await d.until(lambda: client.engine.conn is None, "the dead link to be found", timeout=3 * keepalive)
    found = time.monotonic() - t0
    # socket: 1.5 x keepalive of silence (~3.0 s); paho: 2 x keepalive after its last
    # byte, checked when the engine steps (3.7-3.9 s seen): more slack for it.
    limit = 2 * keepalive + (1.0 if transport == "paho" else 0.5)
    assert found <= limit, "half-open link found after %.1f s" % found
    client["counter"] = 2
    fault_proxy.heal()
    await d.until(lambda: client.session.attach_count > attaches and client.connected, "the re-attach",
                  timeout=15)
    await d.until(lambda: local_cloud.get(dev, "counter") == 2, "counter=2 in the cloud")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_connect_to_a_silent_server_is_bounded_by_the_timeout(driven, transport, mode, tmp_path):
    # A TCP listener that never answers: the TLS handshake cannot complete.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    try:
        client = ArduinoCloudClient("silent-device", password="x", server="127.0.0.1",
                                    port=silent.getsockname()[1], sync_mode=(mode == "sync"),
                                    transport=transport, reconnect_cap=1.0)
        client.engine.connect_timeout = 0.5
        t0 = time.monotonic()
        d = await driven(client)
        await d.until(lambda: isinstance(client.engine.last_error, TransportError), "a connect error",
                      timeout=5)
        assert time.monotonic() - t0 < 3
        assert "timed out" in str(client.engine.last_error)
        assert client.engine.conn is None
    finally:
        silent.close()


def _connect_threads():
    return [t for t in threading.enumerate() if t.name.startswith("paho-connect")]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_sync_update_does_not_wait_for_the_tls_handshake(transport):
    # A blocking connect would hold the first update() for the whole connect
    # timeout (60 s here, past the test's time limit).  The socket transport
    # connects in steps; paho's blocking connect runs in a thread of its own.
    # Either way each update() returns while the handshake is pending.
    silent = socket.create_server(("127.0.0.1", 0))  # accepts TCP, never answers TLS
    try:
        client = ArduinoCloudClient("silent-device", password="x", server="127.0.0.1",
                                    port=silent.getsockname()[1], sync_mode=True, transport=transport)
        client.engine.connect_timeout = 60
        for _ in range(20):
            client.update()
            time.sleep(0.005)
        attempt = client.engine.connecting
        assert attempt is not None and not client.engine.connected
        assert client.engine.last_error is None
        if transport == "socket":
            assert not attempt.wants_write  # TCP is up; waiting for the server's TLS answer
        else:
            assert len(_connect_threads()) == 1
        client.stop()
        assert client.engine.connecting is None
        if transport == "socket":
            assert attempt.pollable().fileno() == -1  # its socket was closed by stop()
        else:
            # The abandoned attempt ends when the server gives up, and no new one starts meanwhile.
            client.update()
            assert client.engine.connecting is None
            peer, _ = silent.accept()
            peer.close()
            deadline = time.monotonic() + 5
            while _connect_threads() and time.monotonic() < deadline:
                time.sleep(0.01)
            assert not _connect_threads()
    finally:
        silent.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_the_event_loop_runs_while_a_silent_server_holds_the_handshake(transport):
    silent = socket.create_server(("127.0.0.1", 0))
    try:
        client = ArduinoCloudClient("silent-device", password="x", server="127.0.0.1",
                                    port=silent.getsockname()[1], transport=transport)
        client.engine.connect_timeout = 3  # a blocking connect would stall the loop this long
        task = asyncio.create_task(client.run())
        ticks = [time.monotonic()]
        while ticks[-1] - ticks[0] < 1.0:
            await asyncio.sleep(0.01)
            ticks.append(time.monotonic())
        assert not client.engine.connected and client.engine.last_error is None  # still hand-shaking
        client.stop()
        await asyncio.wait_for(task, 5)
        longest = max(b - a for a, b in zip(ticks, ticks[1:]))
        assert longest < 0.5, "the loop stood still for %.2f s" % longest
    finally:
        silent.close()


@pytest.mark.parametrize("mode", MODES)
async def test_closed_port_is_reported_and_retried(driven, mode):
    closed = socket.create_server(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there now: the TCP connect is refused
    client = ArduinoCloudClient("no-broker-device", password="x", server="127.0.0.1", port=port,
                                sync_mode=(mode == "sync"), reconnect_cap=0.2)
    d = await driven(client)
    await d.until(lambda: client.engine.backoff.failures >= 2, "two refused attempts", timeout=5)
    error = str(client.engine.last_error)
    assert isinstance(client.engine.last_error, TransportError)
    assert "cannot connect to 127.0.0.1:%d" % port in error and "refused" in error.lower(), error
    assert not client.engine.connected and client.engine.connecting is None


# --- refused login ----------------------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_wrong_password_is_reported_as_connect_refused(local_cloud, device_factory, driven, caplog,
                                                             transport, mode):
    dev = device_factory(auth="password")
    wrong = "Wrong-" + dev.secret[::-1]
    client = make_client(local_cloud, dev, transport, mode, password=wrong)
    caplog.set_level("DEBUG")
    d = await driven(client)
    if mode == "async":
        # run() raises it: the first attach fails fast on what retrying cannot
        # fix (tests/e2e/test_first_attach.py).
        task, d.task = d.task, None
        with pytest.raises(ConnectRefused) as raised:
            await asyncio.wait_for(task, WAIT)
        error = raised.value
    else:
        # update() never raises: it tries again (backed off), and is refused again.
        await d.until(lambda: isinstance(client.engine.last_error, ConnectRefused), "CONNACK refusal")
        error = client.engine.last_error
        await d.until(lambda: client.engine.backoff.failures >= 2, "a second attempt")
        assert isinstance(client.engine.last_error, ConnectRefused)
    assert error.code == 5  # mosquitto: not authorized
    assert "refused" in str(error)
    # The README shows the user exactly this line.
    readme = open(os.path.join(os.path.dirname(__file__), "..", "..", "README.md")).read()
    assert "ConnectRefused: %s" % error in readme
    assert client.engine.conn is None and not client.connected
    # Backed off, not hammering the broker.
    assert client.engine.next_attempt > 0 and client.engine.backoff.failures >= 1
    for secret in (wrong, dev.secret):
        assert secret not in str(error) and secret not in repr(error)
        assert secret not in caplog.text


# --- paho specifics ---------------------------------------------------------------------------

def test_paho_missing_names_the_extra():
    # A real failed import: the child interpreter cannot import paho.
    code = ("import sys; sys.modules['paho'] = None\n"
            "from arduino_iot_cloud import ArduinoCloudClient\n"
            "from arduino_iot_cloud.errors import ConfigError\n"
            "try:\n"
            "    ArduinoCloudClient('dev', password='x', transport='paho')\n"
            "except ConfigError as e:\n"
            "    print('ConfigError:', e)\n")
    src = os.path.join(os.path.dirname(__file__), "..", "..", "src")
    env = dict(os.environ, PYTHONPATH=os.path.abspath(src))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30, env=env)
    assert out.returncode == 0, out.stderr
    assert "ConfigError:" in out.stdout
    assert "arduino-iot-cloud[paho]" in out.stdout


def test_paho_refuses_pkcs11_keys_with_the_reason(tmp_path):
    pytest.importorskip("paho.mqtt")
    cert = tmp_path / "device.pem"
    cert.write_text("not read: the transport is refused first\n")
    with pytest.raises(ConfigError) as info:
        ArduinoCloudClient("dev", ssl_params={"keyfile": "pkcs11:token=t;object=o", "certfile": str(cert),
                                              "pin": "1234"}, transport="paho")
    message = str(info.value)
    assert "PKCS#11" in message and "M2Crypto" in message and "transport='socket'" in message
    assert "1234" not in message


def test_unknown_transport_is_a_config_error():
    with pytest.raises(ConfigError):
        ArduinoCloudClient("dev", password="x", transport="carrier-pigeon")
