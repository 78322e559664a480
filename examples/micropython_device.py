# A board-style device for MicroPython (ESP32, RP2040 W, ...), that also runs
# unchanged on the MicroPython unix port and on CPython.
#
# On a board: install the library with mip (see README.md), copy this file as
# main.py and put a device_config.py next to it:
#
#     WIFI_SSID = "my-network"
#     WIFI_PASS = "..."
#     DEVICE_ID = "..."
#     SECRET_KEY = "..."            # password device; or, for a certificate device:
#     KEY_PATH = "key.der"          # DER (or PEM) key and certificate files on the board
#     CERT_PATH = "cert.der"
#     SYNC_MODE = False             # True: a polling main loop with update()
#     LED_PIN = 2                   # optional: the pin driven by the "led" property
#
# On the unix port (no Wi-Fi, no device_config.py) the same settings come from
# the environment: DEVICE_ID, SECRET_KEY or DEVICE_KEY + DEVICE_CERT, SYNC_MODE=1,
# RUN_SECONDS (stop after that many seconds), and ARDUINO_IOT_CLOUD_SERVER /
# _PORT / _CA to point it at a local broker:
#
#     MICROPYPATH=src:.frozen micropython examples/micropython_device.py
#
# Properties: "sw1" (a dashboard switch: on_write copies it to "led"), "led"
# (drives LED_PIN when there is one) and "uptime" (seconds, published every
# second).  The device prints one line per event, so a test can follow it.

import time

from arduino_iot_cloud import ArduinoCloudClient

try:
    import device_config as _config
except ImportError:
    _config = None


def setting(name, default=None):
    """A setting from device_config.py (boards) or the environment (unix port, CPython)."""
    if _config is not None and hasattr(_config, name):
        return getattr(_config, name)
    try:
        from os import getenv
    except ImportError:  # a board without device_config.py entries
        return default
    value = getenv(name)
    return default if value is None or value == "" else value


def connect_wifi(timeout_s=20):
    """Join the Wi-Fi network on a board; nothing to do where there is no `network`."""
    try:
        import network
    except ImportError:
        return
    ssid = setting("WIFI_SSID")
    if ssid is None:
        return
    wlan = network.WLAN(network.STA_IF)
    wlan.active(True)
    if not wlan.isconnected():
        wlan.connect(ssid, setting("WIFI_PASS", ""))
        start = time.time()
        while not wlan.isconnected():
            if time.time() - start > timeout_s:
                raise OSError("Wi-Fi: could not join %s" % ssid)
            time.sleep(0.2)
    print("wifi", wlan.ifconfig()[0])


def _led():
    pin = setting("LED_PIN")
    if pin is None:
        return None
    try:
        from machine import Pin
    except ImportError:
        return None
    return Pin(int(pin), Pin.OUT)


def _truthy(x):
    return x is True or (isinstance(x, str) and x.lower() in ("1", "true", "yes"))


def make_client(sync_mode=None):
    """The client, with a password or a key and certificate, by the settings."""
    device_id = setting("DEVICE_ID")
    if device_id is None:
        raise ValueError("DEVICE_ID is not set (device_config.py or the environment)")
    if sync_mode is None:
        sync_mode = _truthy(setting("SYNC_MODE", False))
    secret = setting("SECRET_KEY")
    if secret is not None:
        return ArduinoCloudClient(device_id=device_id, username=device_id, password=secret,
                                  sync_mode=sync_mode)
    key = setting("KEY_PATH") or setting("DEVICE_KEY")
    cert = setting("CERT_PATH") or setting("DEVICE_CERT")
    return ArduinoCloudClient(device_id=device_id, ssl_params={"keyfile": key, "certfile": cert},
                              sync_mode=sync_mode)


_started = time.time()


def _read_uptime(client):
    return int(time.time() - _started)


def setup(client):
    """Register the example's properties."""
    led = _led()

    def drive_led(value):
        print("led ->", value)
        if led is not None:
            led.value(1 if value else 0)

    def on_led(client, value):  # "led" written from the dashboard
        drive_led(value)

    def on_switch(client, value):  # the switch drives the LED and reports it
        print("on_write sw1", value)
        client["led"] = value
        drive_led(value)

    client.register("sw1", value=None, on_write=on_switch)
    client.register("led", value=False, on_write=on_led)
    client.register("uptime", value=0, on_read=_read_uptime, interval=1.0)


def _report_attach(client, state):
    # One line per (re-)attach, for whoever watches the output.
    count = client.session.attach_count
    if count != state[0]:
        state[0] = count
        print("attached", count, client.thing_id)


def run_sync(client, run_seconds):
    client.start()  # returns once attached and in sync
    state = [0]
    _report_attach(client, state)
    while run_seconds is None or time.time() - _started < run_seconds:
        client.update()
        _report_attach(client, state)
        time.sleep(0.02)
    client.stop()


def run_async(client, run_seconds):
    import asyncio

    async def watch(client):
        state = [0]
        while run_seconds is None or time.time() - _started < run_seconds:
            _report_attach(client, state)
            await asyncio.sleep(0.05)
        client.stop()

    client.create_task("watch", watch, client)
    client.start()  # runs until client.stop()


def main():
    connect_wifi()
    client = make_client()
    setup(client)
    run_seconds = setting("RUN_SECONDS")
    run_seconds = None if run_seconds is None else float(run_seconds)
    print("starting", "sync" if not client.async_mode else "async", client.server, client.port)
    if client.async_mode:
        run_async(client, run_seconds)
    else:
        run_sync(client, run_seconds)
    print("stopped")


if __name__ == "__main__":
    main()
