# A device script written against the arduino-iot-cloud 1.4.1 API, the way
# 1.4.1's own examples are written.  tests/e2e/test_interop_141.py runs it with
# the 1.4.1 package from PyPI (.venv-141) and, unchanged, with this project's
# package.  1.4.1 reads no environment variables, so the broker, its CA and the
# credentials come as arguments (no secret on the command line: SECRET_KEY is
# read from the environment).
#
# Properties: sw1 (dashboard switch; on_write copies it to led), led, level
# (int, from last values, on_write), label (str, from last values), loc
# (Location, from last values, on_write), counter (incremented by a Task).
# It prints one line per on_write, and a "state" line whenever the state changes.
import argparse
import logging
import os
import ssl
import time

from arduino_iot_cloud import ArduinoCloudClient, Location, Task

_last_state = [None]


def on_switch(client, value):
    print("on_write sw1 %r" % (value,))
    client["led"] = value


def on_level(client, value):
    print("on_write level %r %s" % (value, type(value).__name__))


def on_location(client, loc):
    print("on_write loc %r %r" % (loc.lat, loc.lon))


def tick(client, args):
    # Runs every 0.5 s: count, and report the state when it changed.
    if client["counter"] < 1000:
        client["counter"] = client["counter"] + 1
    loc = client["loc"]
    state = "state sw1=%r led=%r level=%r label=%r loc=%r,%r" % (
        client["sw1"], client["led"], client["level"], client["label"], loc.lat, loc.lon)
    if state != _last_state[0]:
        _last_state[0] = state
        print(state)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device-id", required=True)
    ap.add_argument("--server", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--ca", required=True)
    ap.add_argument("--key")
    ap.add_argument("--cert")
    ap.add_argument("--sync", action="store_true")
    args = ap.parse_args()

    ssl_params = {"cafile": args.ca, "verify_mode": ssl.CERT_REQUIRED, "server_hostname": args.server}
    if args.key:
        ssl_params.update(keyfile=args.key, certfile=args.cert)
        client = ArduinoCloudClient(device_id=args.device_id, ssl_params=ssl_params, server=args.server,
                                    port=args.port, sync_mode=args.sync)
    else:
        secret = os.environ["SECRET_KEY"]
        client = ArduinoCloudClient(device_id=args.device_id, username=args.device_id, password=secret,
                                    ssl_params=ssl_params, server=args.server, port=args.port,
                                    sync_mode=args.sync)
    client.register("sw1", value=None, on_write=on_switch)
    client.register("led", value=None)
    client.register("level", value=None, on_write=on_level)
    client.register("label", value=None)
    client.register(Location("loc", on_write=on_location))
    client.register("counter", value=0)
    client.register(Task("tick", on_run=tick, interval=0.5))
    print("starting", "sync" if args.sync else "async")
    client.start()
    if args.sync:
        while True:
            client.update()
            time.sleep(0.02)


if __name__ == "__main__":
    logging.basicConfig(format="%(asctime)s %(levelname)s %(message)s", level=logging.INFO)
    main()
