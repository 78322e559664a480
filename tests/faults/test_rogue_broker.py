"""The socket transport against a hostile broker (tests/faults/rogue.py): real
TLS on 127.0.0.1 with a certificate from the local CA, the real client
driven by update() (sync) or run() (async).  Issue 12, items 1, 5, 9, 10, 11.

Whatever the broker does, nothing escapes update() or run(), and memory,
in-flight messages and the work of one step stay bounded.
"""

import logging
import os
import time

import pytest

import rogue
from devrunner import DeviceRunner, wait_until

DEV = "d3f0b2c8-0000-4000-8000-0000000000ee"
SECRET = "rogue-test-secret-0123456789"
KEEPALIVE = 2


def _client(pki, broker, sync=True, reconnect_cap=4.0, **props):
    from arduino_iot_cloud import ArduinoCloudClient

    c = ArduinoCloudClient(DEV, password=SECRET, server="127.0.0.1", port=broker.port,
                           ssl_params={"cafile": str(pki.ca_file)}, keepalive=KEEPALIVE,
                           sync_mode=sync, reconnect_cap=reconnect_cap)
    for name, value in props.items():
        c.register(name, value=value)
    return c


def _run_sync(client, seconds, each=None):
    """update() in a loop, as a sync user would; every exception is a failure."""
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        client.update()
        if each is not None and each():
            return
        time.sleep(0.002)


def _attach_script(thing="thing-1", **serve):
    """A broker that attaches the device to `thing` (event variant) and then
    serves as told: serve(...) arguments from the test."""
    extra = serve.pop("on_packet", None)
    duration = serve.pop("duration", 60)

    def on_packet(conn, first, body):
        if first & 0xF0 == rogue.SUBSCRIBE and ("/a/d/%s/e/i" % DEV).encode() in body:
            conn.send(rogue.suback((body[0] << 8) | body[1], 1))
            conn.send(rogue.thing_event(DEV, thing))
        elif first & 0xF0 == rogue.PUBLISH and b"getLastValues" in body:
            conn.send(rogue.publish("/a/t/%s/shadow/i" % thing, b"\x80"))  # no last values
        elif extra is not None:
            extra(conn, first, body)

    def script(conn):
        conn.serve(duration, on_packet=on_packet, **serve)
    return script


# --- item 1: a PUBLISH before the CONNACK ---------------------------------------------------

@pytest.mark.parametrize("mode", ("sync", "async"))
def test_publish_before_connack_is_a_protocol_error_and_reconnects(mode, pki, broker, clean_env):
    def script(conn):
        if conn.read_packet(5) is None:
            return
        conn.send(rogue.thing_event(DEV, "thing-early"))  # the thing id first...
        conn.send(rogue.CONNACK_OK)                      # ...then the CONNACK
        conn.serve(5)

    b = broker(script)
    c = _client(pki, b, sync=(mode == "sync"), reconnect_cap=0.5)
    runner = DeviceRunner(c).start()
    try:
        wait_until(lambda: len(b.accepted) >= 3, 15, what="three connections")
        assert runner.alive(), runner.error
        assert "PUBLISH before CONNACK" in str(c.engine.last_error)
        assert c.session.thing_id is None and not c.connected
    finally:
        runner.stop()
    assert runner.error is None, runner.error


# --- item 5: a broker that never acknowledges -------------------------------------------------

def never_ack_script(conn):
    # The broker CONNACKs and SUBACKs but never PUBACKs; it keeps sending new
    # thing ids (each with its last values, so the device gets READY and
    # publishes), and closes the link every 1.5 s.
    n = [0]

    def tick(conn):
        n[0] += 1
        thing = "thing-%d-%d" % (conn.index, n[0])
        conn.send(rogue.thing_event(DEV, thing))
        conn.send(rogue.publish("/a/t/%s/shadow/i" % thing, b"\x80"))
    conn.serve(1.5, puback=False, tick=tick, tick_s=0.01)


def check_resent(b):
    """Every reconnect resent at most the window, and only property values."""
    for index in range(1, len(b.accepted) - 1):
        dups = [pub for pub in b.publishes(index) if pub[5]]
        assert len(dups) <= 32, (index, len(dups))
        for pub in dups:  # requests are made afresh, not resent: only values come again
            assert pub[1].endswith("/e/o"), pub[1]
    assert any(pub[5] for pub in b.publishes()), "nothing was ever resent: the test did not test"


def test_never_acknowledging_broker_keeps_the_window_and_resends_only_values(pki, broker, clean_env):
    b = broker(never_ack_script)
    c = _client(pki, b, reconnect_cap=0.3, counter=0)
    worst = [0]
    i = [0]

    def each():
        i[0] += 1
        c["counter"] = i[0]
        worst[0] = max(worst[0], c.engine.mqtt.inflight_count())
        return len(b.accepted) >= 5

    _run_sync(c, 40, each)
    c.stop()
    assert len(b.accepted) >= 5
    assert worst[0] <= 32, worst[0]
    check_resent(b)


# --- item 9: a flood of tiny messages ---------------------------------------------------------

def flood_script(flood_n):
    """Attach the device; once it is READY, send flood_n values of "n", then
    flood_n messages on a topic it never subscribed to, in one go."""
    def flood(conn, first, body):
        if first & 0xF0 == rogue.PUBLISH and b"/e/o" in body and not conn.flooded:
            conn.flooded = True
            values = b"".join(rogue.publish("/a/t/thing-1/e/i", _senml_n(i)) for i in range(1, flood_n + 1))
            junk = b"".join(rogue.publish("/a/t/not-mine/e/i", b"\x80") for _ in range(flood_n))
            conn.send(values + junk)

    serve = _attach_script(on_packet=flood)

    def script(conn):
        conn.flooded = False
        serve(conn)
    return script


def test_a_flood_is_handled_in_bounded_steps_and_logged_once(pki, broker, clean_env, caplog):
    flood_n = 20000
    b = broker(flood_script(flood_n))
    c = _client(pki, b, counter=1)
    seen = []
    c.register("n", value=0, on_write=lambda client, value: seen.append(value))
    per_step = []
    caplog.set_level(logging.WARNING, logger="arduino_iot_cloud")
    until = time.monotonic() + 60
    while time.monotonic() < until and (len(seen) < flood_n or getattr(c.engine.mqtt, "backlog", False)):
        before = len(seen)
        c.update()
        per_step.append(len(seen) - before)
        time.sleep(0.001)
    # A few more steps for the junk behind the values.
    for _ in range(2 * flood_n // 64):
        c.update()
    c.stop()
    assert seen == list(range(1, flood_n + 1)), "lost or reordered: %d of %d" % (len(seen), flood_n)
    assert max(per_step) <= 64, max(per_step)
    unexpected = [r for r in caplog.records if "unexpected topic" in r.getMessage()]
    assert 1 <= len(unexpected) <= 3, len(unexpected)


def _senml_n(i):
    from arduino_iot_cloud import senml

    return senml.encode((("n", i),))


# --- item 10: only complete packets are proof of life -------------------------------------------

def drip_script(gone):
    """After 1 s of normal service the broker answers no PINGREQ and sends one
    byte every 0.5 s of a PUBLISH that never ends; gone["after_s"]: how long
    the client took to close the link, from the first byte dripped."""
    def script(conn):
        if conn.index:
            conn.serve(5)
            return
        conn.serve(1.0)  # CONNACK, SUBACKs, PUBACKs
        drip = iter(b"\x30\xff\x7f" + b"x" * 1000)
        start = time.monotonic()
        try:
            while time.monotonic() - start < 20:
                conn.send(bytes((next(drip),)))
                try:
                    conn.read_packet(0.5)  # PINGREQs: never answered
                except EOFError:
                    break
        except OSError:
            pass
        gone["after_s"] = time.monotonic() - start
    return script


def test_bytes_dripped_after_connack_do_not_keep_the_link(pki, broker, clean_env):
    gone = {}
    b = broker(drip_script(gone))
    c = _client(pki, b)
    _run_sync(c, 25, lambda: "after_s" in gone)
    c.stop()
    # Dead 1.5 x keepalive after the last complete packet (at most 1 s before the drip).
    assert "after_s" in gone and gone["after_s"] <= 1.5 * KEEPALIVE + 0.5, gone
    assert "link presumed dead" in str(c.engine.last_error)


def test_bytes_dripped_instead_of_a_connack_do_not_keep_the_connect(pki, broker, clean_env):
    gone = {}

    def script(conn):
        if conn.index:
            conn.serve(5)
            return
        conn.read_packet(5)  # CONNECT
        start = time.monotonic()
        try:
            for byte in b"\x20\x7f" + b"\x00" * 100:
                conn.send(bytes((byte,)))
                try:
                    conn.read_packet(0.5)
                except EOFError:
                    break
        except OSError:
            pass
        gone["after_s"] = time.monotonic() - start

    b = broker(script)
    c = _client(pki, b)
    _run_sync(c, 25, lambda: "after_s" in gone)
    c.stop()
    assert "after_s" in gone and gone["after_s"] <= 1.5 * KEEPALIVE + 0.5, gone
    assert "no CONNACK" in str(c.engine.last_error)


# --- item 11: SUBACK 0x80 ---------------------------------------------------------------------

def refusing_script(conn):
    conn.serve(10, suback_code=lambda topic: 0x80 if topic.endswith("/c/dw") else 1)


def test_a_refused_subscription_is_logged_and_retried_with_backoff(pki, broker, clean_env, caplog):
    b = broker(refusing_script)
    c = _client(pki, b, reconnect_cap=4.0)
    c.engine.backoff.rand = lambda: 0.999  # the longest wait each time: 1 s, 2 s, 4 s
    caplog.set_level(logging.WARNING, logger="arduino_iot_cloud")
    _run_sync(c, 12, lambda: len(b.accepted) >= 3)
    error = c.engine.last_error
    c.stop()
    from arduino_iot_cloud.errors import SubscribeRefused

    assert isinstance(error, SubscribeRefused) and error.topic == "/a/d/%s/c/dw" % DEV, error
    assert len(b.accepted) >= 3
    gaps = [b.accepted[i + 1] - b.accepted[i] for i in range(len(b.accepted) - 1)]
    assert gaps[0] >= 0.9 and gaps[1] >= 1.9, gaps  # backoff, not a tight loop
    assert any("refused the subscription" in r.getMessage() for r in caplog.records)
    assert not any(SECRET in r.getMessage() for r in caplog.records)


# --- item 1 + 5 under the asyncio driver --------------------------------------------------------

def test_async_driver_survives_the_never_acknowledging_broker(pki, broker, clean_env):
    def script(conn):
        n = [0]

        def tick(conn):
            n[0] += 1
            conn.send(rogue.thing_event(DEV, "t-%d-%d" % (conn.index, n[0])))
        conn.serve(1.0, puback=False, tick=tick, tick_s=0.005)

    b = broker(script)
    c = _client(pki, b, sync=False, reconnect_cap=0.3)
    runner = DeviceRunner(c).start()
    try:
        wait_until(lambda: len(b.accepted) >= 4 or not runner.alive(), 30, what="four connections")
        assert runner.alive(), runner.error
        assert c.engine.mqtt.inflight_count() <= 32
    finally:
        runner.stop()
    assert runner.error is None, runner.error


# --- the same under the MicroPython unix port --------------------------------------------------

def _mpy_device(pki, b, tmp_path, seconds, until_writes=0):
    import shutil
    import subprocess

    exe = shutil.which("micropython")
    if exe is None:
        pytest.skip("micropython (unix port) is not installed")
    here = os.path.dirname(os.path.abspath(__file__))
    env = {"MICROPYPATH": "%s:.frozen" % os.path.normpath(os.path.join(here, "..", "..", "src")),
           "PATH": os.environ.get("PATH", "")}
    stopfile = str(tmp_path / "stop")
    # Output to a file, not a pipe: a device logging without bound must not block on a full pipe.
    with open(str(tmp_path / "out.txt"), "w") as out:
        proc = subprocess.Popen([exe, os.path.join(here, "mpy_rogue_device.py"), DEV, str(b.port),
                                 str(pki.ca_file), stopfile, str(seconds), str(until_writes)],
                                stdout=out, stderr=subprocess.STDOUT, env=env)
    return proc, stopfile


def _finish(proc, stopfile, timeout=30):
    with open(stopfile, "w"):
        pass
    try:
        proc.wait(timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    with open(os.path.join(os.path.dirname(stopfile), "out.txt")) as f:
        out = f.read()
    print("\n".join(line for line in out.splitlines() if line.split(" ")[0] in ("MAXSTEP", "MAXINFLIGHT", "WRITES")))
    assert proc.returncode == 0 and "DONE" in out, out[-3000:]
    return dict(line.split(" ", 1) for line in out.splitlines() if line.split(" ")[0].isupper() and " " in line)


@pytest.mark.parametrize("scenario", ("never-ack", "flood", "drip", "suback-refused"))
def test_micropython_device_against_a_rogue_broker(scenario, pki, broker, clean_env, tmp_path):
    gone = {}
    flood_n = 3000
    script = {"never-ack": never_ack_script, "flood": flood_script(flood_n), "drip": drip_script(gone),
              "suback-refused": refusing_script}[scenario]
    b = broker(script)
    proc, stopfile = _mpy_device(pki, b, tmp_path, 60, flood_n if scenario == "flood" else 0)
    try:
        if scenario == "never-ack":
            wait_until(lambda: len(b.accepted) >= 5 or proc.poll() is not None, 40, what="five connections")
        elif scenario == "flood":
            wait_until(lambda: proc.poll() is not None, 50, what="the flood handled")
        elif scenario == "drip":
            wait_until(lambda: "after_s" in gone or proc.poll() is not None, 25, what="the drip given up")
        else:
            wait_until(lambda: len(b.accepted) >= 2 or proc.poll() is not None, 20, what="a reconnect")
        result = _finish(proc, stopfile)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    assert int(result["MAXINFLIGHT"]) <= 32, result
    if scenario == "never-ack":
        check_resent(b)
    elif scenario == "flood":
        assert int(result["WRITES"]) == flood_n, result
        assert int(result["MAXSTEP"]) <= 64, result
    elif scenario == "drip":
        assert gone["after_s"] <= 1.5 * KEEPALIVE + 0.5, gone
    else:
        assert "refused the subscription" in result["LASTERROR"], result


# --- the session's bound on the paho transport -------------------------------------------------

def test_paho_transport_keeps_the_window_against_the_never_acknowledging_broker(pki, broker, clean_env):
    # The window and the outbox are the session's: on transport="paho" too,
    # at most 32 QoS 1 messages await PUBACK, whatever the broker sends.
    pytest.importorskip("paho.mqtt")
    from arduino_iot_cloud import ArduinoCloudClient

    b = broker(never_ack_script)
    c = ArduinoCloudClient(DEV, password=SECRET, server="127.0.0.1", port=b.port,
                           ssl_params={"cafile": str(pki.ca_file)}, keepalive=KEEPALIVE, sync_mode=True,
                           reconnect_cap=0.3, transport="paho")
    c.register("counter", value=0)
    worst = [0]
    i = [0]

    def each():
        i[0] += 1
        c["counter"] = i[0]
        worst[0] = max(worst[0], len(c.engine.unacked))
        return len(b.accepted) >= 4

    _run_sync(c, 40, each)
    c.stop()
    assert len(b.accepted) >= 4
    assert worst[0] <= 32, worst[0]
    for index in range(len(b.accepted)):
        first_sends = [pub for pub in b.publishes(index) if pub[3] and not pub[5]]
        assert len(first_sends) <= 32 + 8, (index, len(first_sends))


def test_user_coroutines_run_while_the_async_driver_works_through_a_flood(pki, broker, clean_env):
    # Item 9, asyncio driver: the flood is taken in bounded steps with the
    # event loop in between, so a user coroutine keeps running meanwhile.
    import asyncio

    flood_n = 20000
    b = broker(flood_script(flood_n))
    c = _client(pki, b, sync=False, counter=1)
    seen = []
    c.register("n", value=0, on_write=lambda client, value: seen.append(value))
    ticks = []

    async def ticker():
        while True:
            await asyncio.sleep(0.005)
            if 0 < len(seen) < flood_n:
                ticks.append(len(seen))

    async def watch():
        until = time.monotonic() + 60
        while len(seen) < flood_n and time.monotonic() < until:
            await asyncio.sleep(0.01)
        c.stop()

    async def main():
        tasks = [asyncio.create_task(ticker()), asyncio.create_task(watch())]
        await c.run()
        for t in tasks:
            t.cancel()

    asyncio.run(main())
    assert seen == list(range(1, flood_n + 1)), "lost or reordered: %d of %d" % (len(seen), flood_n)
    # Woken at many points of the flood, not only before and after it.
    assert len(set(ticks)) >= 10, sorted(set(ticks))[:20]
