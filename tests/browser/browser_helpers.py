"""Helpers of the browser tests: a headless Chromium driven by selenium, and a device
(this library's real client, sync mode) driven by update() in a thread of its own."""

import os
import queue
import shutil
import threading
import time

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def missing_parts():
    """Why the browser tests cannot run here ("" when they can)."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.path.exists(path):
            return "%s is missing (apt-get install chromium chromium-driver)" % path
    for module in ("selenium", "aiohttp"):
        try:
            __import__(module)
        except ImportError:
            return "python package %s is missing (pip install -e '.[test]')" % module
    if shutil.which("mosquitto") is None and not os.path.exists("/usr/sbin/mosquitto"):
        return "mosquitto is missing"
    return ""


def chromium(width=1280, height=900):
    """A headless Chromium (the system one, with its chromedriver: nothing is downloaded)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=%d,%d" % (width, height), "--no-first-run", "--disable-extensions",
                "--disable-background-networking", "--disable-component-update"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


class DeviceThread:
    """A real device of this library on the local cloud, in sync mode, its update() loop in a
    thread.  ``setup(client)`` registers its properties; ``do(fn)`` runs ``fn(client)`` in that
    thread (the client is not thread-safe); writes from the cloud are collected in ``writes``."""

    def __init__(self, cloud, dev, setup):
        from arduino_iot_cloud import ArduinoCloudClient

        if dev.auth == "cert":
            ssl = {"cafile": cloud.ca_file, "keyfile": dev.keyfile, "certfile": dev.certfile}
            self.client = ArduinoCloudClient(dev.device_id, server=cloud.host, port=cloud.cert_port,
                                             ssl_params=ssl, sync_mode=True, reconnect_cap=1.0)
        else:
            self.client = ArduinoCloudClient(dev.device_id, password=dev.secret, server=cloud.host,
                                             port=cloud.password_port, ssl_params={"cafile": cloud.ca_file},
                                             sync_mode=True, reconnect_cap=1.0)
        self.writes = queue.Queue()
        self._calls = queue.Queue()
        self._stop = threading.Event()
        self.error = None
        setup(self.client, self.writes)
        self._thread = threading.Thread(target=self._loop, name="device", daemon=True)
        self._thread.start()

    def _loop(self):
        try:
            while not self._stop.is_set():
                self.client.update()
                while not self._calls.empty():
                    fn, done = self._calls.get()
                    fn(self.client)
                    done.set()
                time.sleep(0.005)
        except BaseException as exc:  # shown by the test that waits on this device
            self.error = exc

    def do(self, fn, timeout=5.0):
        """Run ``fn(client)`` in the device's thread; return once it ran."""
        done = threading.Event()
        self._calls.put((fn, done))
        if not done.wait(timeout):
            raise AssertionError("the device thread did not run the call (error: %r)" % (self.error,))

    def set(self, name, value):
        """``client[name] = value`` in the device's thread (published at its next update)."""
        def assign(client):
            client[name] = value
        self.do(assign)

    def wait_attached(self, timeout=15.0):
        deadline = time.monotonic() + timeout
        while not self.client.connected:
            if self.error is not None or time.monotonic() > deadline:
                raise AssertionError("the device did not attach (error %r, last error %s)"
                                     % (self.error, self.client.engine.last_error))
            time.sleep(0.01)

    def stop(self):
        self._stop.set()
        self._thread.join(5)
        self.client.stop()
