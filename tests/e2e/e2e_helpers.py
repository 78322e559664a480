"""Helpers shared by the end-to-end tests (tests/e2e): a client for a local-cloud
device, and a Driver that runs a client in the test's own thread.

Sync mode is driven by update() calls from the test, async mode by client.run()
as a task of the test's event loop (stopped with client.stop()).  Every wait has
a deadline.  ScriptProcess runs a device script in a subprocess.
"""

import asyncio
import os
import subprocess
import time

import pytest

from arduino_iot_cloud import ArduinoCloudClient

TRANSPORTS = ["socket", "paho"]
MODES = ["async", "sync"]
TEST_TIME_LIMIT = 60  # seconds, for a whole test; single waits are shorter
WAIT = 10.0           # seconds, for one expected event


def make_client(cloud, dev, transport, mode, der=False, **kw):
    """A client for a local-cloud device, by its auth kind."""
    ssl_params = {"cafile": cloud.ca_file}
    ssl_params.update(kw.pop("ssl_params", {}))
    if dev.auth == "cert":
        ssl_params["keyfile"] = dev.keyfile_der if der else dev.keyfile
        ssl_params["certfile"] = dev.certfile_der if der else dev.certfile
        port = cloud.cert_port
    else:
        kw.setdefault("password", dev.secret)
        port = cloud.password_port
    return ArduinoCloudClient(dev.device_id, server=cloud.host, port=port, ssl_params=ssl_params,
                              sync_mode=(mode == "sync"), transport=transport, reconnect_cap=1.0, **kw)


class Driver:
    """Runs one client in the test's thread: update() loops (sync) or a run() task (async)."""

    def __init__(self, client):
        self.client = client
        self.task = None

    async def start(self):
        if self.client.async_mode:
            self.task = asyncio.create_task(self.client.run())

    async def until(self, predicate, what, timeout=WAIT, poll=0.005):
        deadline = time.monotonic() + timeout
        while True:
            if not self.client.async_mode:
                self.client.update()
            if predicate():
                return
            if self.task is not None and self.task.done():
                self.task.result()  # the driver died: show why
                raise AssertionError("the async driver returned while waiting for %s" % what)
            if time.monotonic() > deadline:
                raise AssertionError("timed out after %.0f s waiting for %s (last error: %s)"
                                     % (timeout, what, self.client.engine.last_error))
            await asyncio.sleep(poll)

    async def attached(self, timeout=WAIT):
        await self.until(lambda: self.client.connected, "the device to attach", timeout)

    async def stop(self):
        self.client.stop()
        if self.task is not None:
            await asyncio.wait_for(self.task, 5)
        assert self.client.engine.conn is None, "connection left open after stop()"


# --- scripts in subprocesses ----------------------------------------------------------------

SRC = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "src"))


def script_env(cloud, dev, python_path=SRC, **extra):
    """The caller's environment without ARDUINO_IOT_CLOUD_*, plus cloud.env(dev) and ``extra``.

    ``python_path``: put in front of PYTHONPATH (None: leave PYTHONPATH out, for
    another package's venv)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARDUINO_IOT_CLOUD_") and k != "PYTHONPATH"}
    if python_path is not None:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (python_path, os.environ.get("PYTHONPATH")) if p)
    env.update(cloud.env(dev))
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


class ScriptProcess:
    """A device script in a subprocess, stdout and stderr in one file; stop() it in a finally."""

    def __init__(self, argv, env, log_path):
        self.log_path = log_path
        self._out = open(log_path, "wb")
        self.proc = subprocess.Popen(argv, env=env, stdout=self._out, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)

    def output(self):
        self._out.flush()
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def alive(self):
        return self.proc.poll() is None

    def wait_output(self, text, timeout=WAIT):
        """Wait until ``text`` appears in the output; fail early if the process ends."""
        deadline = time.monotonic() + timeout
        while text not in self.output():
            if not self.alive():
                raise AssertionError("the script exited (%s) before printing %r:\n%s"
                                     % (self.proc.returncode, text, self.output()[-3000:]))
            if time.monotonic() > deadline:
                raise AssertionError("no %r within %.0f s:\n%s" % (text, timeout, self.output()[-3000:]))
            time.sleep(0.02)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._out.close()


@pytest.fixture
def scripts(tmp_path):
    """``start(argv, env)`` -> a ScriptProcess; every one is stopped (terminate, then kill) after the test."""
    started = []

    def start(argv, env):
        proc = ScriptProcess(argv, env, tmp_path / ("script-%d.log" % len(started)))
        started.append(proc)
        return proc

    try:
        yield start
    finally:
        for proc in started:
            proc.stop()
