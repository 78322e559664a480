"""What a flood of tiny messages costs the device (issue 12, item 9).

    python benchmarks/flood.py [--messages N] [--src DIR] [--transport socket|paho]

A scripted broker (tests/faults/rogue.py: real TLS on 127.0.0.1, a
certificate from a throw-away local CA) attaches the device, then sends N
tiny PUBLISHes in one go: half of them values of a property, half on a topic
the device never subscribed to, in turn.  Measured, with the socket transport
(or --transport paho):

  sync   the duration of every update() until all values are in (max, p99),
         and the most values one update() handled (as many foreign
         messages come with them);
  async  how late a user coroutine that sleeps 10 ms at a time wakes up
         while run() works through the flood (p50, p99, max);
  both   the time to get through the whole flood, and the log lines written.

--src DIR benchmarks another tree of the library (e.g. an older commit's src/).
Prints figures; never fails on speed.
"""

import argparse
import asyncio
import logging
import os
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SRC = os.path.join(ROOT, "src")
if "--src" in sys.argv[:-1]:
    SRC = os.path.abspath(sys.argv[sys.argv.index("--src") + 1])
sys.path.insert(0, SRC)
sys.path.insert(0, os.path.join(ROOT, "tests", "faults"))

import rogue  # noqa: E402  (tests/faults/rogue.py)
from arduino_iot_cloud import ArduinoCloudClient, senml  # noqa: E402
from arduino_iot_cloud.localcloud.pki import Pki  # noqa: E402

DEV = "d3f0b2c8-0000-4000-8000-0000000000f1"
THING = "thing-flood"


class LineCounter(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record):
        self.count += 1


def flood_script(n, flooded):
    # Value and foreign message in turn.
    junk = rogue.publish("/a/t/not-mine/e/i", b"\x80")
    flood = b"".join(rogue.publish("/a/t/%s/e/i" % THING, senml.encode((("n", i),))) + junk
                     for i in range(1, n // 2 + 1))

    def on_packet(conn, first, body):
        if first & 0xF0 == rogue.SUBSCRIBE and ("/a/d/%s/e/i" % DEV).encode() in body:
            conn.send(rogue.suback((body[0] << 8) | body[1], 1))
            conn.send(rogue.thing_event(DEV, THING))
        elif first & 0xF0 == rogue.PUBLISH and b"getLastValues" in body:
            conn.send(rogue.publish("/a/t/%s/shadow/i" % THING, b"\x80"))
        elif first & 0xF0 == rogue.PUBLISH and b"/e/o" in body and not flooded.is_set():
            flooded.set()
            conn.send(flood)

    def script(conn):
        conn.serve(120, on_packet=on_packet)
    return script


TRANSPORT = "socket"


def client(pki, port, sync):
    c = ArduinoCloudClient(DEV, password="flood-benchmark-secret", server="127.0.0.1", port=port,
                           ssl_params={"cafile": str(pki.ca_file)}, keepalive=10, sync_mode=sync,
                           transport=TRANSPORT)
    c.register("counter", value=1)
    seen = []
    c.register("n", value=0, on_write=lambda client, value: seen.append(value))
    return c, seen


def run_sync(pki, n):
    flooded = threading.Event()
    b = rogue.RogueBroker(str(pki.server_cert), str(pki.server_key), flood_script(n, flooded)).start()
    c, seen = client(pki, b.port, True)
    durations, per_step = [], []
    t_flood = None
    try:
        until = time.monotonic() + 120
        while time.monotonic() < until and len(seen) < n // 2:
            before = len(seen)
            t0 = time.perf_counter()
            c.update()
            dt = time.perf_counter() - t0
            if flooded.is_set():
                t_flood = t_flood or time.monotonic()
                durations.append(dt)
                per_step.append(len(seen) - before)
            time.sleep(0.001)
        total = time.monotonic() - t_flood if t_flood else None
    finally:
        c.stop()
        b.stop()
    durations.sort()
    return {"values": len(seen), "steps": len(durations), "total_s": total,
            "update_max_ms": durations[-1] * 1000 if durations else None,
            "update_p99_ms": durations[int(len(durations) * 0.99)] * 1000 if durations else None,
            "most_values_in_one_update": max(per_step) if per_step else None}


def run_async(pki, n):
    flooded = threading.Event()
    b = rogue.RogueBroker(str(pki.server_cert), str(pki.server_key), flood_script(n, flooded)).start()
    c, seen = client(pki, b.port, False)
    lateness = []
    result = {}

    async def ticker():
        while True:
            t0 = time.monotonic()
            await asyncio.sleep(0.01)
            if flooded.is_set() and len(seen) < n // 2:
                lateness.append(time.monotonic() - t0 - 0.01)

    async def watch():
        until = time.monotonic() + 120
        while not flooded.is_set() and time.monotonic() < until:
            await asyncio.sleep(0.005)
        t0 = time.monotonic()
        while len(seen) < n // 2 and time.monotonic() < until:
            await asyncio.sleep(0.005)
        result["total_s"] = time.monotonic() - t0
        c.stop()

    async def main():
        tasks = [asyncio.create_task(ticker()), asyncio.create_task(watch())]
        await c.run()
        for t in tasks:
            t.cancel()

    try:
        asyncio.run(main())
    finally:
        b.stop()
    lateness.sort()
    pick = (lambda q: lateness[min(len(lateness) - 1, int(len(lateness) * q))] * 1000) if lateness else (lambda q: None)
    result.update({"values": len(seen), "coroutine_late_p50_ms": pick(0.5), "coroutine_late_p99_ms": pick(0.99),
                   "coroutine_late_max_ms": lateness[-1] * 1000 if lateness else None,
                   "wakeups": len(lateness)})
    return result


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=100000)
    ap.add_argument("--src", default=None, help="benchmark the library in this src/ tree")
    ap.add_argument("--transport", choices=("socket", "paho"), default="socket")
    args = ap.parse_args()
    global TRANSPORT
    TRANSPORT = args.transport
    lines = LineCounter()
    logging.getLogger("arduino_iot_cloud").addHandler(lines)
    logging.getLogger("arduino_iot_cloud").propagate = False
    with tempfile.TemporaryDirectory() as tmp:
        pki = Pki(tmp)
        pki.ensure()
        print("flood of %d tiny messages (half values, half on a foreign topic); transport: %s; library: %s"
              % (args.messages, args.transport, SRC))
        print("load average: %.2f %.2f %.2f" % os.getloadavg())
        for name, fn in (("sync", run_sync), ("async", run_async)):
            before = lines.count
            r = fn(pki, args.messages)
            r["warning_lines"] = lines.count - before
            print("%-5s %s" % (name, "  ".join("%s=%s" % (k, ("%.1f" % v) if isinstance(v, float) else v)
                                               for k, v in r.items())))


if __name__ == "__main__":
    main()
