"""How much one hostile device can make the local cloud keep (issue 12, item 13).

Starts a local cloud in a temporary directory, lets one device (a plain paho client
with valid credentials) run each attack, and prints, per attack, the growth of
this process's RSS (the emulator runs in it), of mosquitto's RSS, and what the
emulator kept and dropped for the device.

    python benchmarks/localcloud_hostile.py            # the issue's sizes
    python benchmarks/localcloud_hostile.py --quick    # a twentieth of them (a smoke run)
"""

import argparse
import os
import platform
import shutil
import ssl
import sys
import tempfile
import threading
import time
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))

import paho.mqtt.client as mqtt  # noqa: E402

from arduino_iot_cloud.localcloud import LocalCloud, wire  # noqa: E402
from arduino_iot_cloud.localcloud.emulator import approx_size  # noqa: E402


def rss_kb(pid="self"):
    with open("/proc/%s/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Attacker:
    """A device's own credentials in a paho client that publishes as fast as the broker acks."""

    def __init__(self, cloud, dev):
        self.closed = threading.Event()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=dev.device_id, protocol=mqtt.MQTTv311)
        c.tls_set(ca_certs=cloud.ca_file, cert_reqs=ssl.CERT_REQUIRED)
        c.username_pw_set(dev.device_id, dev.secret)
        c.on_disconnect = lambda *a: self.closed.set()
        c.connect(cloud.host, cloud.password_port, keepalive=30)
        c.loop_start()
        self.client = c

    def send(self, topic, payloads, retain=False):
        """Publish each payload (QoS 1); return how many the broker acknowledged before any close."""
        acked = 0
        for payload in payloads:
            if self.closed.is_set():
                break
            info = self.client.publish(topic, payload, qos=1, retain=retain)
            deadline = time.monotonic() + 10
            while not (info.is_published() or self.closed.is_set()) and time.monotonic() < deadline:
                time.sleep(0.002)
            acked += info.is_published()
        return acked

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


def kept(cloud, dev):
    """Approximate bytes the emulator keeps for the device: values, history, events."""
    em = cloud.emulator
    with em._cond:
        thing = em.things.get(dev.thing_id)
        values = sum(approx_size(k) + approx_size(v) for k, v in thing.values.items()) if thing else 0
        history = thing._order.bytes if thing else 0
        events = em._events[dev.device_id].bytes
    return values, history, events


def run(scale):
    work = tempfile.mkdtemp(prefix="lc-hostile-")
    try:
        return _attacks(work, scale)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _attacks(work, scale):
    rows = []
    with LocalCloud(work) as cloud:
        mosq = cloud.broker.proc.pid

        def attack(name, fn):
            dev = cloud.add_device()
            a = Attacker(cloud, dev)
            before, mosq_before = rss_kb(), rss_kb(mosq)
            t0 = time.monotonic()
            sent = fn(a, dev)
            cloud.emulator.barrier(30)
            seconds = time.monotonic() - t0
            values, history, events = kept(cloud, dev)
            rows.append((name, sent, seconds, rss_kb() - before, rss_kb(mosq) - mosq_before, values, history,
                         events, cloud.dropped(dev)))
            a.close()

        names = 200000 // scale

        def long_names(a, dev):
            n = 1000 // scale
            packs = (wire.encode_senml({"%06d" % i + "n" * 100000: i}) for i in range(n))
            return "%d x 100 KB names" % n, a.send("/a/t/%s/e/o" % dev.thing_id, packs)

        def many_names(a, dev):
            per = 2000
            packs = (wire.encode_senml({"n%d" % (i + j): j for j in range(per)}) for i in range(0, names, per))
            return "%d names" % names, a.send("/a/t/%s/e/o" % dev.thing_id, packs)

        def junk_unowned(a, dev):
            n = 100 // scale
            topic = "/a/t/%s/e/o" % uuid.uuid4()
            return "%d x 100 KB + %d x 1 MB" % (n, n), (
                a.send(topic, (os.urandom(100 * 1000) for _ in range(n)))
                + a.send(topic, (os.urandom(1000 * 1000) for _ in range(n))))

        def big_values(a, dev):
            n = 1000 // scale
            packs = (wire.encode_senml({"v%d" % (i % 50): "%07d" % i + "x" * 60000}) for i in range(n))
            return "%d x 60 KB" % n, a.send("/a/t/%s/e/o" % dev.thing_id, packs)

        def junk_own(a, dev):
            n = 1000 // scale
            return "%d x 120 KB" % n, a.send("/a/t/%s/e/o" % dev.thing_id, (b"\xff" * 120000 for _ in range(n)))

        def retained(a, dev):
            n = 100 // scale
            return "%d retained" % n, a.send("/a/t/%s/e/o" % dev.thing_id,
                                               (wire.encode_senml({"r%d" % i: i}) for i in range(n)), retain=True)

        attack("distinct property names", many_names)
        attack("long property names", long_names)
        attack("junk on a thing it does not own", junk_unowned)
        attack("large values on its own thing", big_values)
        attack("malformed payloads on its own thing", junk_own)
        attack("retained values on its own thing", retained)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a twentieth of the sizes")
    args = parser.parse_args()
    rows = run(20 if args.quick else 1)
    print("local cloud under one hostile device: %s, Python %s, %d CPUs, %s" % (
        platform.machine(), platform.python_version(), os.cpu_count() or 0, time.strftime("%Y-%m-%d %H:%M UTC",
                                                                                          time.gmtime())))
    print("| attack | sent | acked by the broker | s | emulator process RSS +KB | mosquitto RSS +KB "
          "| kept: values / history / events KB | dropped |")
    print("|---|---|---|---|---|---|---|---|")
    for name, (what, acked), seconds, rss, mosq, values, history, events, dropped in rows:
        print("| %s | %s | %d | %.1f | %d | %d | %d / %d / %d | %s |" % (
            name, what, acked, seconds, rss, mosq, values // 1024, history // 1024, events // 1024,
            ", ".join("%s %d" % kv for kv in sorted(dropped.items())) or "-"))


if __name__ == "__main__":
    main()
