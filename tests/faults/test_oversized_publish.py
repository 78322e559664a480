"""A dashboard write larger than the client's maximum packet size (issue 16,
item 7): the client skips it as its bytes arrive, logs it, keeps the link,
and the write that follows reaches on_write at once, on the same connection;
on both transports (paho's socket drops the bytes before paho sees them) and
on MicroPython.

The local cloud's mosquitto refuses messages that large (message_size_limit),
so the broker here is tests/faults/rogue.py: real TLS on 127.0.0.1, with a
certificate from the local CA.
"""

import logging
import os
import shutil
import subprocess
import threading
import time

import pytest

import rogue
from devrunner import DeviceRunner, wait_until

DEV = "d3f0b2c8-0000-4000-8000-0000000000ef"
SECRET = "rogue-test-secret-0123456789"
THING = "thing-big"
BIG = 1024 * 1024  # a 1 MB write, eight times the client's 128 KiB limit


def _senml_n(value):
    from arduino_iot_cloud import senml

    return senml.encode((("n", value),))


def big_write_script(sent):
    """Attach the device to THING; once it publishes its values, send a 1 MB
    write of "n" (QoS 1), then a normal write n=7.  sent["small_at"]: when the
    normal write left (after the last byte of the big one was taken)."""
    topic = "/a/t/%s/e/i" % THING

    def on_packet(conn, first, body):
        if first & 0xF0 == rogue.SUBSCRIBE and ("/a/d/%s/e/i" % DEV).encode() in body:
            conn.send(rogue.suback((body[0] << 8) | body[1], 1))
            conn.send(rogue.thing_event(DEV, THING))
        elif first & 0xF0 == rogue.PUBLISH and b"getLastValues" in body:
            conn.send(rogue.publish("/a/t/%s/shadow/i" % THING, b"\x80"))  # no last values
        elif first & 0xF0 == rogue.PUBLISH and b"/e/o" in body and "small_at" not in sent:
            sent["small_at"] = 0
            conn.send(rogue.publish(topic, b"\x00" * BIG, qos=1, pid=4242))
            conn.send(rogue.publish(topic, _senml_n(7)))
            sent["small_at"] = time.monotonic()

    def script(conn):
        conn.serve(60, on_packet=on_packet)
    return script


def _pubacks(b):
    with b.lock:
        return [body for _i, first, body in b.packets if first & 0xF0 == rogue.PUBACK]


@pytest.mark.parametrize("transport", ("socket", "paho"))
@pytest.mark.parametrize("mode", ("sync", "async"))
def test_an_oversized_write_is_skipped_and_the_next_one_arrives_at_once(mode, transport, pki, broker, clean_env,
                                                                       caplog):
    from arduino_iot_cloud import ArduinoCloudClient

    if transport == "paho":
        pytest.importorskip("paho.mqtt.client")

    sent = {}
    b = broker(big_write_script(sent))
    got = []
    c = ArduinoCloudClient(DEV, password=SECRET, server="127.0.0.1", port=b.port,
                           ssl_params={"cafile": str(pki.ca_file)}, keepalive=10, sync_mode=(mode == "sync"),
                           transport=transport)
    c.register("n", value=0, on_write=lambda client, value: got.append((time.monotonic(), value)))
    caplog.set_level(logging.WARNING, logger="arduino_iot_cloud")
    runner = DeviceRunner(c).start()
    try:
        wait_until(lambda: got or runner.error is not None, 20, what="the write after the big one")
    finally:
        runner.stop()
    assert runner.error is None, runner.error
    assert [v for _t, v in got] == [7], got
    assert got[0][0] - sent["small_at"] < 1.0, got[0][0] - sent["small_at"]
    assert len(b.accepted) == 1, "the link was dropped: %d connections" % len(b.accepted)
    assert b"\x10\x92" in _pubacks(b), "the skipped QoS 1 write was not acknowledged"
    skipped = [r.getMessage() for r in caplog.records if "skipped a message" in r.getMessage()]
    assert len(skipped) == 1 and str(2 + len("/a/t/%s/e/i" % THING) + 2 + BIG) in skipped[0], skipped


def test_micropython_skips_an_oversized_write_and_keeps_the_link(pki, broker, clean_env, tmp_path):
    exe = shutil.which("micropython")
    if exe is None:
        pytest.skip("micropython (unix port) is not installed")
    sent = {}
    b = broker(big_write_script(sent))
    here = os.path.dirname(os.path.abspath(__file__))
    env = {"MICROPYPATH": "%s:.frozen" % os.path.normpath(os.path.join(here, "..", "..", "src")),
           "PATH": os.environ.get("PATH", "")}
    # Stops after its first on_write of "n" (WRITES = 1).
    out = subprocess.run([exe, os.path.join(here, "mpy_rogue_device.py"), DEV, str(b.port), str(pki.ca_file),
                          str(tmp_path / "stop"), "30", "1"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, timeout=60).stdout.decode()
    done = time.monotonic()
    assert "WRITES 1" in out and "LASTERROR None" in out and "DONE" in out, out[-3000:]
    assert "skipped a message" in out, out[-3000:]
    assert done - sent["small_at"] < 3.0, done - sent["small_at"]  # includes the device's exit
    assert len(b.accepted) == 1, "the link was dropped: %d connections" % len(b.accepted)
    assert b"\x10\x92" in _pubacks(b)
