"""Sealed properties end to end on the local cloud (real mosquitto over TLS).

In process (CPython, async and sync drivers): a device and an owner script
seal and unseal both ways; the cloud holds only opaque strings; every drop
case (not authentic, wrong kid, sealed for another property, plain values, a
replay) is logged at warning without on_write or a reconnect, and a good write
after it arrives; a restart with the same state file reuses no sequence number
and still refuses old messages; a device without its state file refuses to
seal unless volatile was asked for.

As a subprocess (examples/sealed.py, on CPython and on the MicroPython unix
port, async and sync): the same exchange, drops and restart, with the context
files made by `python -m arduino_iot_cloud.sealing new`.
"""

import binascii
import json
import logging
import os
import subprocess
import sys
import time

import pytest

from arduino_iot_cloud import SealingContext
from arduino_iot_cloud.errors import ConfigError, UnsealError
from arduino_iot_cloud.sealing import message
from e2e_helpers import WAIT, Driver, make_client, script_env, scripts  # noqa: F401  (scripts: a fixture)
from mpy_helpers import micropython_path

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SRC = os.path.join(ROOT, "src")
EXAMPLE = os.path.join(ROOT, "examples", "sealed.py")
SECRET = bytes(range(100, 132))
DROPPED = "dropping value for property"


@pytest.fixture
def time_limit():
    return 120


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    for name in ("ARDUINO_IOT_CLOUD_SERVER", "ARDUINO_IOT_CLOUD_PORT", "ARDUINO_IOT_CLOUD_CA"):
        monkeypatch.delenv(name, raising=False)


def seq_of(text):
    return message.decode(message.from_text(text))[3]


def peek(secret, salt, name, text, sender=b"owner", recipient=b"dev"):
    """The value of a device's sealed text, opened without touching the owner's replay state."""
    try:
        return SealingContext(secret, sender, recipient, master_salt=salt, volatile=True).unseal(name, text)
    except UnsealError:
        return None


def bad_writes(cloud, dev, owner, first_good, secret, salt):
    """(what, value written) for every drop case."""
    stranger = SealingContext(secret, b"other", b"dev", master_salt=salt, volatile=True)
    tampered = bytearray(message.from_text(owner.seal("target", 99.0)))
    tampered[-1] ^= 1
    return [
        ("not authentic", message.to_text(bytes(tampered))),
        ("wrong kid", stranger.seal("target", 99.0)),
        ("another property", owner.seal("state", 99.0)),
        ("plain number", 99.0),
        ("plain string", "99.0"),
        ("replay", first_good),
    ]


async def cloud_value(driver, cloud, dev, name, salt, value):
    """Drive the device until the cloud holds a sealed `name` that opens to value; its text."""
    await driver.until(lambda: peek(SECRET, salt, name, cloud.get(dev, name)) == value,
                       "the cloud to hold sealed %s" % name)
    return cloud.get(dev, name)


# --- in process, CPython ------------------------------------------------------------------------
@pytest.mark.e2e
@pytest.mark.parametrize("mode", ["async", "sync"])
@pytest.mark.parametrize("transport", ["socket", "paho"])
async def test_sealed_values_both_ways_drops_and_restart(local_cloud, device_factory, tmp_path, transport, mode,
                                                         caplog):
    caplog.set_level(logging.DEBUG, logger="arduino_iot_cloud")
    cloud = local_cloud
    dev = device_factory(auth="password")
    dev_state, own_state = str(tmp_path / "device.json"), str(tmp_path / "owner.json")
    salt = b"salt"
    owner = SealingContext(SECRET, b"owner", b"dev", master_salt=salt, state_path=own_state, new_state=True)
    writes = []

    def start(ctx):
        client = make_client(cloud, dev, transport, mode, sealing=ctx)
        client.register("target", value=None, on_write=lambda c, v: writes.append(v), sealed=True)
        client.register("state", value=20.25, sealed=True)
        return client

    device = SealingContext(SECRET, b"dev", b"owner", master_salt=salt, state_path=dev_state, new_state=True)
    client = start(device)
    d = Driver(client)
    await d.start()
    try:
        await d.attached()
        # Device -> owner: the cloud holds an opaque string; the owner opens it.
        text = cloud.wait_for(dev, "state", lambda v: isinstance(v, str) and peek(SECRET, salt, "state", v) == 20.25,
                              timeout=WAIT)
        assert "20.25" not in text and owner.unseal("state", text) == 20.25
        device_seqs = [seq_of(text)]
        # Owner -> device.
        first = owner.seal("target", 1.5)
        cloud.set(dev, "target", first)
        await d.until(lambda: writes == [1.5], "the first sealed write")
        assert cloud.get(dev, "target") == first           # the cloud stores the opaque text
        attaches = client.session.attach_count
        # Every drop case, each followed by a good write that must arrive.
        for i, (what, bad) in enumerate(bad_writes(cloud, dev, owner, first, SECRET, salt)):
            caplog.clear()
            cloud.set(dev, "target", bad)
            good = 2.0 + i
            cloud.set(dev, "target", owner.seal("target", good))
            await d.until(lambda: writes[-1:] == [good], "the good write after %s" % what)
            assert 99.0 not in writes, what
            assert any(DROPPED in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records), what
        assert writes == [1.5] + [2.0 + i for i in range(6)]
        assert client.session.attach_count == attaches and client.connected   # connection kept
        # The device changes its sealed value; the owner reads it.
        client["state"] = 30.5
        text = await cloud_value(d, cloud, dev, "state", salt, 30.5)
        assert owner.unseal("state", text) == 30.5
        device_seqs.append(seq_of(text))
    finally:
        await d.stop()
    last_good = cloud.get(dev, "target")

    # Restart with the same state files: last values bring the latest target (not an
    # error), no sequence number is used again, old messages stay refused.
    owner = SealingContext(SECRET, b"owner", b"dev", master_salt=salt, state_path=own_state)
    writes.clear()
    client = start(SealingContext(SECRET, b"dev", b"owner", master_salt=salt, state_path=dev_state))
    d = Driver(client)
    await d.start()
    try:
        await d.attached()
        assert client["target"] == 7.0 and writes == [7.0]   # the last value, taken once
        assert cloud.get(dev, "target") == last_good
        client["state"] = 40.5
        text = await cloud_value(d, cloud, dev, "state", salt, 40.5)
        assert seq_of(text) > max(device_seqs)
        assert owner.unseal("state", text) == 40.5
        caplog.clear()
        cloud.set(dev, "target", first)                      # an old message: still a replay
        cloud.set(dev, "target", owner.seal("target", 8.0))
        await d.until(lambda: writes[-1:] == [8.0], "a good write after the restart")
        assert 1.5 not in writes
        assert any("replay" in r.getMessage() for r in caplog.records)
    finally:
        await d.stop()

    # Secrets and plaintexts stay out of the logs.
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert binascii.hexlify(SECRET).decode() not in logged and "40.5" not in logged


@pytest.mark.e2e
def test_a_device_without_its_state_file_refuses_to_seal(local_cloud, device_factory, tmp_path):
    dev = device_factory(auth="password")
    missing = str(tmp_path / "lost.json")
    with pytest.raises(ConfigError, match="missing"):
        SealingContext(SECRET, b"dev", b"owner", state_path=missing)
    with pytest.raises(ConfigError, match="state_path"):
        SealingContext(SECRET, b"dev", b"owner")
    client = make_client(local_cloud, dev, "socket", "sync")
    with pytest.raises(ConfigError, match="sealing="):
        client.register("x", value=1, sealed=True)
    # volatile=True, asked for explicitly, seals; its numbers restart at 0, so an owner
    # that kept its state refuses them as replays (what the state file prevents).
    owner = SealingContext(SECRET, b"owner", b"dev", state_path=str(tmp_path / "o.json"), new_state=True)
    first = SealingContext(SECRET, b"dev", b"owner", volatile=True).seal("x", 1)
    assert owner.unseal("x", first) == 1
    again = SealingContext(SECRET, b"dev", b"owner", volatile=True).seal("x", 2)
    with pytest.raises(UnsealError, match="replay"):
        owner.unseal("x", again)


@pytest.mark.e2e
def test_sealed_composites_are_refused(local_cloud, device_factory):
    from arduino_iot_cloud import Location

    dev = device_factory(auth="password")
    ctx = SealingContext(SECRET, b"dev", b"owner", volatile=True)
    client = make_client(local_cloud, dev, "socket", "sync", sealing=ctx)
    with pytest.raises(ConfigError, match="plain properties"):
        client.register(Location("loc"), sealed=True)


# --- examples/sealed.py as a subprocess: CPython and the MicroPython unix port --------------------
def new_contexts(tmp_path):
    out = tmp_path / "keys"
    r = subprocess.run([sys.executable, "-m", "arduino_iot_cloud.sealing", "new", "--out", str(out)],
                       env=dict(os.environ, PYTHONPATH=SRC), capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    for name in ("device.json", "owner.json"):
        assert os.stat(out / name).st_mode & 0o777 == 0o600
    with open(out / "owner.json") as f:
        data = json.load(f)
    secret, salt = binascii.unhexlify(data["master_secret"]), binascii.unhexlify(data["master_salt"])
    return str(out / "device.json"), str(out / "owner.json"), secret, salt


def start_example(scripts, cloud, dev, runtime, mode, context):
    extra = {"DEVICE_ID": dev.device_id, "SECRET_KEY": dev.secret, "SEALING_CONTEXT": context,
             "RUN_SECONDS": "100"}
    if mode == "sync":
        extra["SYNC_MODE"] = "1"
    if runtime == "micropython":
        env = script_env(cloud, dev, python_path=None, **extra)
        env["MICROPYPATH"] = ":".join([SRC, os.path.dirname(EXAMPLE), ".frozen"])
        return scripts([micropython_path(), EXAMPLE], env)
    return scripts([sys.executable, EXAMPLE], script_env(cloud, dev, **extra))


def wait_count(proc, text, n, timeout=WAIT):
    deadline = time.monotonic() + timeout
    while proc.output().count(text) < n:
        assert proc.alive(), proc.output()[-3000:]
        assert time.monotonic() < deadline, "fewer than %d %r:\n%s" % (n, text, proc.output()[-3000:])
        time.sleep(0.02)


@pytest.mark.e2e
@pytest.mark.parametrize("mode", ["async", "sync"])
@pytest.mark.parametrize("runtime", ["cpython", "micropython"])
def test_example_device(local_cloud, device_factory, scripts, tmp_path, runtime, mode):
    if runtime == "micropython" and micropython_path() is None:
        pytest.skip("micropython is not installed")
    cloud = local_cloud
    dev = device_factory(auth="password")
    device_file, owner_file, secret, salt = new_contexts(tmp_path)
    owner = SealingContext.from_file(owner_file)
    proc = start_example(scripts, cloud, dev, runtime, mode, device_file)
    wait_count(proc, "attached 1", 1)
    text = cloud.wait_for(dev, "state", lambda v: peek(secret, salt, "state", v) == 0.0, timeout=WAIT)
    assert owner.unseal("state", text) == 0.0
    device_seqs = [seq_of(text)]

    first = owner.seal("target", 1.5)
    cloud.set(dev, "target", first)
    wait_count(proc, "on_write target", 1)
    text = cloud.wait_for(dev, "state", lambda v: peek(secret, salt, "state", v) == 1.5, timeout=WAIT)
    device_seqs.append(seq_of(text))
    for i, (what, bad) in enumerate(bad_writes(cloud, dev, owner, first, secret, salt)):
        cloud.set(dev, "target", bad)
        good = 2.0 + i
        cloud.set(dev, "target", owner.seal("target", good))
        text = cloud.wait_for(dev, "state", lambda v: peek(secret, salt, "state", v) == good, timeout=WAIT)
        device_seqs.append(seq_of(text))
        wait_count(proc, DROPPED, i + 1)
        assert proc.output().count("on_write target") == i + 2, what   # no on_write for the bad one
    out = proc.output()
    assert "attached 2" not in out and "Traceback" not in out and dev.secret not in out
    assert "99.0" not in out and "7.0" not in out                       # no plaintext in the output
    proc.stop()

    # Restart with the same context file.
    proc = start_example(scripts, cloud, dev, runtime, mode, device_file)
    wait_count(proc, "attached 1", 1)
    wait_count(proc, "on_write target", 1)                               # the last value, 7.0
    text = cloud.wait_for(dev, "state", lambda v: peek(secret, salt, "state", v) == 7.0
                          and seq_of(v) > max(device_seqs), timeout=WAIT)
    assert owner.unseal("state", text) == 7.0
    cloud.set(dev, "target", first)                                      # replay after the restart
    cloud.set(dev, "target", owner.seal("target", 8.5))
    cloud.wait_for(dev, "state", lambda v: peek(secret, salt, "state", v) == 8.5, timeout=WAIT)
    wait_count(proc, "(replay)", 1)
    assert proc.output().count("on_write target") == 2

    # Without its state file the device refuses to start sealing.
    proc.stop()
    proc = start_example(scripts, cloud, dev, runtime, mode, str(tmp_path / "lost.json"))
    deadline = time.monotonic() + WAIT
    while proc.alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not proc.alive() and "ConfigError" in proc.output() and "missing" in proc.output(), proc.output()
