"""Helpers shared by the end-to-end tests (tests/e2e): a client for a local-cloud
device, and a Driver that runs a client in the test's own thread.

Sync mode is driven by update() calls from the test, async mode by client.run()
as a task of the test's event loop (stopped with client.stop()).  Every wait has
a deadline.
"""

import asyncio
import time

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
