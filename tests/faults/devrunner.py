"""Run an ArduinoCloudClient in a background thread, in async or sync mode.

The test thread never touches the client's registry directly: ``do(fn)`` runs
``fn`` inside the client's thread (between two steps) and returns its result.
Reading plain attributes (``client.connected``, ``engine.last_error``) from the
test thread is fine.
"""

import asyncio
import concurrent.futures
import queue
import threading
import time

from arduino_iot_cloud.net.wait import wait_ready_sync


class DeviceRunner:
    def __init__(self, client):
        self.client = client
        self.mode = "async" if client.async_mode else "sync"
        self._thread = None
        self._loop = None
        self._calls = queue.Queue()
        self._stop = threading.Event()
        self._started = threading.Event()
        self.error = None
        self.leftover_tasks = None  # async: tasks still pending when run() returned

    def start(self):
        target = self._run_async if self.mode == "async" else self._run_sync
        self._thread = threading.Thread(target=target, name="device-%s" % self.mode, daemon=True)
        self._thread.start()
        if not self._started.wait(10):
            raise RuntimeError("device thread did not start")
        return self

    # --- the two drivers -----------------------------------------------------------------
    def _run_async(self):
        async def main():
            self._loop = asyncio.get_running_loop()
            self._started.set()
            await self.client.run()
            await asyncio.sleep(0)  # let cancelled tasks finish
            me = asyncio.current_task()
            self.leftover_tasks = [t for t in asyncio.all_tasks() if t is not me and not t.done()]

        try:
            asyncio.run(main())
        except BaseException as e:  # noqa: BLE001 - reported to the test
            self.error = e

    def _run_sync(self):
        self._started.set()
        client = self.client
        try:
            while not self._stop.is_set():
                self._drain()
                client.update()
                target = client.engine.wait_target()
                if target is None or client.engine.pending_output():
                    time.sleep(0.005)
                else:
                    # What a sync user loop would do: wait a little for data.
                    wait_ready_sync(target, 10)
            self._drain()
        except BaseException as e:  # noqa: BLE001 - reported to the test
            self.error = e
        finally:
            client.stop()

    def _drain(self):
        while True:
            try:
                fn, fut = self._calls.get_nowait()
            except queue.Empty:
                return
            try:
                fut.set_result(fn())
            except BaseException as e:  # noqa: BLE001
                fut.set_exception(e)

    # --- from the test thread ------------------------------------------------------------
    def do(self, fn, timeout=10):
        """Run fn() in the client's thread; return its result."""
        if self.error is not None:
            raise RuntimeError("device thread died: %r" % (self.error,))
        fut = concurrent.futures.Future()
        if self.mode == "async":
            def call():
                try:
                    fut.set_result(fn())
                except BaseException as e:  # noqa: BLE001
                    fut.set_exception(e)

            self._loop.call_soon_threadsafe(call)
        else:
            self._calls.put((fn, fut))
        return fut.result(timeout)

    def set(self, name, value):
        def assign():
            self.client[name] = value
        self.do(assign)

    def stop(self, timeout=10):
        if self._thread is None:
            return
        if self.mode == "async":
            if self._loop is not None and not self._loop.is_closed():
                try:
                    self._loop.call_soon_threadsafe(self.client.stop)
                except RuntimeError:
                    pass
        else:
            self._stop.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise RuntimeError("device thread did not stop within %d s" % timeout)
        self._thread = None

    def alive(self):
        return self._thread is not None and self._thread.is_alive() and self.error is None


def wait_until(pred, timeout, step=0.01, what="condition"):
    """Poll pred() until true; return the seconds it took; raise TimeoutError otherwise."""
    t0 = time.monotonic()
    while True:
        if pred():
            return time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            raise TimeoutError("%s not reached within %.1f s" % (what, timeout))
        time.sleep(step)
