"""Issue 15 items 2, 3 and 6 on the MicroPython unix port, against the local cloud
(real mosquitto over TLS): a wrong password makes start() raise ConnectRefused at
once (sync and async), the connection events run (a failing one costs nothing),
and a wrong device id is named in a warning and in start()'s AttachTimeout."""

import os

import pytest

from mpy_helpers import SRC, mpy_env, run_mpy

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "mpy_first_attach.py")


def _run(cloud, dev, case, mode, timeout=60, **extra):
    env = mpy_env(SRC, HERE, **dict(cloud.env(dev), DEVICE_ID=dev.device_id, SECRET_KEY=dev.secret, CASE=case,
                                    SYNC="1" if mode == "sync" else "0", **extra))
    proc = run_mpy([SCRIPT], env, timeout=timeout)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "DONE" in proc.stdout, out[-3000:]
    assert dev.secret not in out
    return proc.stdout.splitlines(), out


@pytest.mark.e2e
@pytest.mark.parametrize("mode", ["async", "sync"])
def test_micropython_wrong_password_raises_at_start(mpy, local_cloud, device_factory, mode):
    dev = device_factory(auth="password")
    lines, out = _run(local_cloud, dev, "refused", mode)
    assert "RAISED ConnectRefused 5 True after 0 s" in lines, out[-3000:]
    assert not any(line.startswith("EVENT") for line in lines), out


@pytest.mark.e2e
@pytest.mark.parametrize("mode", ["async", "sync"])
def test_micropython_connection_events(mpy, local_cloud, device_factory, mode):
    dev = device_factory(auth="password")
    lines, out = _run(local_cloud, dev, "events", mode)
    events = [line for line in lines if line.startswith("EVENT")]
    assert events == ["EVENT connect False", "EVENT attach %s" % dev.thing_id, "EVENT disconnect NoneType"], out
    assert "on_connect raised ValueError: a failing callback costs nothing" in out, out[-3000:]


@pytest.mark.e2e
def test_micropython_wrong_device_id_warns_and_times_out(mpy, local_cloud, device_factory):
    dev = device_factory(auth="password")
    lines, out = _run(local_cloud, dev, "silent", "sync", TIMEOUT=11.5)
    assert "no thing id 10 s after logging in" in out and "device id may not match" in out, out[-3000:]
    raised = [line for line in lines if line.startswith("RAISED AttachTimeout")]
    assert raised and "not attached within 11.5 s" in raised[0] and "does the device id match" in raised[0], out
