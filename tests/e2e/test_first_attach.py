"""Issue 15 items 2, 3 and 6 against the local cloud (real mosquitto over TLS), on
both transports: the first attach after start() fails fast on a refusal that
retrying cannot fix, start(timeout=) gives up with the last error, a device that
attached once rides out a credential rotation, a login that brings no thing id
is named in a warning, and the connection events.
"""

import asyncio
import socket
import threading
import time

import pytest

from arduino_iot_cloud.errors import AttachTimeout, ConnectRefused, LocalError, TransportError
from arduino_iot_cloud.localcloud.broker import hash_passwords
from arduino_iot_cloud.session import SILENCE_WARN_MS
from e2e_helpers import MODES, TRANSPORTS, WAIT, make_client

# A device id the local cloud does not know (the username stays right).
UNKNOWN_DEVICE = "00000000-0000-4000-8000-0000000000f1"


def wrong_password(dev):
    return "Wrong-" + dev.secret[::-1]


# --- item 2: the first attach fails fast ---------------------------------------------------

@pytest.mark.parametrize("transport", TRANSPORTS)
def test_sync_start_raises_connect_refused_for_a_wrong_password(local_cloud, device_factory, caplog,
                                                               transport):
    dev = device_factory(auth="password")
    client = make_client(local_cloud, dev, transport, "sync", password=wrong_password(dev))
    t0 = time.monotonic()
    with pytest.raises(ConnectRefused) as raised:
        client.start()  # before: never returned (the test's time limit ended it)
    assert time.monotonic() - t0 < 5
    assert raised.value.code == 5 and raised.value.permanent  # mosquitto: not authorized
    assert client.engine.backoff.failures == 1, "one attempt, no retry loop"
    assert client.engine.conn is None and client.engine.connecting is None
    assert wrong_password(dev) not in str(raised.value) and wrong_password(dev) not in caplog.text


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_async_start_raises_connect_refused_for_a_wrong_password(local_cloud, device_factory, transport):
    dev = device_factory(auth="password")
    client = make_client(local_cloud, dev, transport, "async", password=wrong_password(dev))
    with pytest.raises(ConnectRefused):
        client.start()  # asyncio.run(client.run()): before, it ran for ever
    assert client.engine.conn is None


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_run_raises_connect_refused_for_a_wrong_password(local_cloud, device_factory, transport):
    dev = device_factory(auth="password")
    client = make_client(local_cloud, dev, transport, "async", password=wrong_password(dev))
    ticks = []

    async def beside():
        while True:
            ticks.append(time.monotonic())
            await asyncio.sleep(0.01)

    other = asyncio.create_task(beside())
    try:
        with pytest.raises(ConnectRefused):
            await asyncio.wait_for(client.run(), WAIT)
    finally:
        other.cancel()
    assert client.engine.conn is None


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_start_timeout_names_the_last_connection_error(transport, mode):
    closed = socket.create_server(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there: every TCP connect is refused, which retrying may fix
    from arduino_iot_cloud import ArduinoCloudClient

    client = ArduinoCloudClient("no-broker-device", password="x", server="127.0.0.1", port=port,
                                sync_mode=(mode == "sync"), transport=transport, reconnect_cap=0.2)
    t0 = time.monotonic()
    with pytest.raises(AttachTimeout) as raised:
        client.start(timeout=1.5)
    took = time.monotonic() - t0
    assert 1.49 <= took < 4, took  # (the library counts whole milliseconds)
    message = str(raised.value)
    assert "not attached within 1.5 s" in message and "cannot connect to 127.0.0.1:%d" % port in message, message
    assert isinstance(raised.value.last_error, TransportError)
    assert client.engine.backoff.failures >= 2, "it kept retrying until the timeout"
    assert isinstance(raised.value, TimeoutError)  # CPython: generic handlers catch it


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_start_keeps_the_141_positional_arguments_and_checks_timeout(local_cloud, device_factory, transport):
    dev = device_factory(auth="password")
    client = make_client(local_cloud, dev, transport, "sync")
    with pytest.raises(LocalError):
        client.start(timeout=-1)
    try:
        client.start(1.0, 1.2)  # 1.4.1: start(interval, backoff)
        assert client.connected
    finally:
        client.stop()
    client = make_client(local_cloud, dev, transport, "sync")
    try:
        client.start(timeout=WAIT)
        assert client.connected
    finally:
        client.stop()


def _set_broker_password(cloud, dev, secret):
    """Replace the device's line in mosquitto's password file (read at the next start or reload)."""
    path = cloud.broker.pw_devices
    lines = [ln for ln in path.read_text().splitlines(True) if not ln.startswith(dev.device_id + ":")]
    path.write_text("".join(lines) + hash_passwords([(dev.device_id, secret)]))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_an_attached_device_rides_out_a_credential_rotation(local_cloud, device_factory, driven,
                                                                  transport, mode):
    # A field device must survive a credential rotation on the server: once
    # attached, a refused login is retried with backoff, and nothing is raised.
    dev = device_factory(auth="password")
    client = make_client(local_cloud, dev, transport, mode)
    events = []
    client.on_disconnect = lambda c, error: events.append(("disconnect", type(error).__name__))
    client.on_attach = lambda c: events.append(("attach",))
    d = await driven(client)
    await d.attached()
    _set_broker_password(local_cloud, dev, wrong_password(dev))
    try:
        await asyncio.to_thread(local_cloud.restart_broker)  # drops the link; the new password applies
        await d.until(lambda: isinstance(client.engine.last_error, ConnectRefused), "a refused login", timeout=20)
        failures = client.engine.backoff.failures
        await d.until(lambda: client.engine.backoff.failures >= failures + 2, "two more refused attempts")
        assert isinstance(client.engine.last_error, ConnectRefused) and not client.connected
    finally:
        _set_broker_password(local_cloud, dev, dev.secret)
        await asyncio.to_thread(local_cloud.broker.reload)
    await d.until(lambda: client.session.attach_count == 2 and client.connected, "the re-attach", timeout=20)
    assert events == [("attach",), ("disconnect", "TransportError"), ("attach",)], events


# --- item 3: right username, wrong device id ---------------------------------------------------

@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_wrong_device_id_is_named_in_a_warning_and_in_the_timeout(local_cloud, device_factory, caplog,
                                                                    transport):
    dev = device_factory(auth="password")
    from arduino_iot_cloud import ArduinoCloudClient

    client = ArduinoCloudClient(UNKNOWN_DEVICE, username=dev.device_id, password=dev.secret,
                                server=local_cloud.host, port=local_cloud.password_port,
                                ssl_params={"cafile": local_cloud.ca_file}, sync_mode=True, transport=transport)
    caplog.set_level("WARNING")
    bound = SILENCE_WARN_MS / 1000
    t0 = time.time()  # (log records carry the wall clock)
    with pytest.raises(AttachTimeout) as raised:
        client.start(timeout=bound + 1.5)
    warnings = [r for r in caplog.records if "no thing id" in r.getMessage()]
    assert len(warnings) == 1, caplog.text
    assert warnings[0].levelname == "WARNING"
    text = warnings[0].getMessage()
    assert UNKNOWN_DEVICE in text and "device id may not match" in text and "no thing in the cloud" in text, text
    # The warning came on time (the login takes a few ms), and the attach kept waiting after it.
    assert bound <= warnings[0].created - t0 < bound + 1.0, warnings[0].created - t0
    assert "does the device id match the credentials" in str(raised.value)
    assert dev.secret not in caplog.text


# --- item 6: connection events ---------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_connection_events_in_order_in_the_callers_thread(local_cloud, device_factory, driven, caplog,
                                                                transport, mode):
    dev = device_factory(auth="password", properties={"level": 5})
    client = make_client(local_cloud, dev, transport, mode)
    client.register("level", value=None)
    events = []
    me = threading.current_thread()

    def on_connect(c):
        events.append(("connect", threading.current_thread() is me, c.connected))
        raise RuntimeError("a failing on_connect costs nothing")

    def on_attach(c):
        events.append(("attach", threading.current_thread() is me, c["level"]))

    def on_disconnect(c, error):
        events.append(("disconnect", threading.current_thread() is me, type(error).__name__))

    client.on_connect = on_connect
    client.on_attach = on_attach
    client.on_disconnect = on_disconnect
    d = await driven(client)
    await d.attached()
    # on_attach ran after the last values were applied; on_connect before the attach.
    assert events == [("connect", True, False), ("attach", True, 5)], events
    assert "on_connect raised RuntimeError: a failing on_connect costs nothing" in caplog.text
    del events[:]
    await asyncio.to_thread(local_cloud.restart_broker)
    await d.until(lambda: client.session.attach_count == 2 and client.connected, "the re-attach", timeout=20)
    assert events[0] == ("disconnect", True, "TransportError"), events
    assert events[-2:] == [("connect", True, False), ("attach", True, 5)], events
    del events[:]
    client.stop()
    if d.task is not None:
        await asyncio.wait_for(d.task, 5)
    assert events == [("disconnect", True, "NoneType")], events  # stop(): error is None
