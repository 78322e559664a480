# A device with sealed properties: values the cloud relays but cannot read,
# change or replay.  Runs on CPython, on MicroPython boards and on the
# MicroPython unix port.
#
# Once, on the owner's computer:
#
#     python -m arduino_iot_cloud.sealing new --out keys     # keys/device.json, keys/owner.json (0600)
#
# Copy keys/device.json to the device as sealing.json (or point SEALING_CONTEXT
# at it).  The device's credentials come as in examples/micropython_device.py:
# device_config.py on a board, else the environment (DEVICE_ID, SECRET_KEY,
# SYNC_MODE=1, RUN_SECONDS, ARDUINO_IOT_CLOUD_SERVER/_PORT/_CA).
#
# Properties: "target" (sealed float: the owner sets it; on_write copies it to
# "state"), "state" (sealed float: what the device reports) and "uptime"
# (plain int, for comparison).  The owner talks to it with its own context:
#
#     TEXT=$(python -m arduino_iot_cloud.sealing seal --context keys/owner.json target 21.5)
#     python -m arduino_iot_cloud.localcloud set DEVICE_ID target "$TEXT"
#     python -m arduino_iot_cloud.sealing unseal --context keys/owner.json state \
#         "$(python -m arduino_iot_cloud.localcloud get DEVICE_ID state | tr -d '"')"
#
# or from a script: SealingContext.from_file("keys/owner.json").seal("target", 21.5).
# The device prints events, never the sealed values themselves.

import time

from arduino_iot_cloud import ArduinoCloudClient, SealingContext

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
    except ImportError:
        return default
    value = getenv(name)
    return default if value is None or value == "" else value


_started = time.time()


def on_target(client, value):
    print("on_write target")
    client["state"] = value  # sealed again with the device's own key


def main():
    device_id = setting("DEVICE_ID")
    sealing = SealingContext.from_file(setting("SEALING_CONTEXT", "sealing.json"))
    sync_mode = setting("SYNC_MODE", "") in (True, "1", "true")
    client = ArduinoCloudClient(device_id=device_id, username=device_id, password=setting("SECRET_KEY"),
                                sync_mode=sync_mode, sealing=sealing)
    client.register("target", value=None, on_write=on_target, sealed=True)
    client.register("state", value=0.0, sealed=True)
    client.register("uptime", value=0, on_read=lambda c: int(time.time() - _started), interval=1.0)
    run_seconds = float(setting("RUN_SECONDS", "1e9"))
    seen = [0]

    def report():
        if client.session.attach_count != seen[0]:
            seen[0] = client.session.attach_count
            print("attached", seen[0])

    print("starting", "sync" if sync_mode else "async")
    if sync_mode:
        client.start()
        while time.time() - _started < run_seconds:
            client.update()
            report()
            time.sleep(0.02)
        client.stop()
    else:
        import asyncio

        async def watch(client):
            while time.time() - _started < run_seconds:
                report()
                await asyncio.sleep(0.05)
            client.stop()

        client.create_task("watch", watch, client)
        client.start()
    print("stopped")


if __name__ == "__main__":
    main()
