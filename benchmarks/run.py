"""Side-by-side benchmarks: this project's client and arduino-iot-cloud 1.4.1.

    python benchmarks/run.py [--quick] [--no-141] [--only NAME,...] [--fleet N]

Both clients run as subprocesses (benchmarks/driver.py): ours with this
interpreter, 1.4.1 with .venv-141/bin/python (created by setup_141.sh when it
is missing).  They talk to the same LocalCloud (real mosquitto, TLS on
127.0.0.1) in the same run.  This process plays the cloud: it watches what
devices publish (paho, on the broker's admin listener) and sends dashboard
writes itself over a raw MQTT socket, so a write's timestamp is taken right
before its bytes leave.  Times are CLOCK_MONOTONIC, which all processes on the
machine share.

Prints a table (figures, targets, ratios ours / 1.4.1) and writes it as JSON to
benchmarks/results/latest.json.  Never fails on speed: a missed target is
reported, not raised.  Every load loop is bounded in count and in time.
"""

import argparse
import datetime
import json
import os
import platform
import queue
import random
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
# --ours-src DIR (before anything is imported): benchmark another tree of the library, e.g. a patched copy.
OURS_SRC = os.path.join(ROOT, "src")
if "--ours-src" in sys.argv[:-1]:
    OURS_SRC = os.path.abspath(sys.argv[sys.argv.index("--ours-src") + 1])
sys.path.insert(0, OURS_SRC)
PROFILE_DIR = None  # --profile DIR

RESULTS = os.path.join(HERE, "results")
DRIVER = os.path.join(HERE, "driver.py")
VENV_141 = os.environ.get("VENV_141", os.path.join(ROOT, ".venv-141"))
mono = time.monotonic

# --- sizes ---------------------------------------------------------------------------
FULL = {
    "attach_reps": 7, "attach_timeout": 15.0,
    "lat_n_ours": 300, "lat_gap_ours": 0.01, "lat_n_141": 10, "lat_gap_141": (1.0, 1.5),
    "idle_calls": 200000, "idle_seconds": 2.0, "idle_reps": 5,
    "in_n": 500, "in_reps": 5, "in_timeout": 5.0, "in_reps_141_async": 1,
    "out_n": 5000, "out_reps": 5, "out_seconds": 5.0, "out_reps_141": 3, "out_seconds_141": 2.0,
    "micro_seconds": 0.2, "micro_reps": 7, "dispatch_counts": [10, 1000],
    "fleet": 1000, "fleet_timeout": 120.0, "fleet_ramp": 500,
}
QUICK = {
    "attach_reps": 1, "attach_timeout": 10.0,
    "lat_n_ours": 5, "lat_gap_ours": 0.01, "lat_n_141": 1, "lat_gap_141": (1.0, 1.2),
    "idle_calls": 2000, "idle_seconds": 0.3, "idle_reps": 1,
    "in_n": 100, "in_reps": 1, "in_timeout": 1.5, "in_reps_141_async": 1,
    "out_n": 200, "out_reps": 1, "out_seconds": 1.0, "out_reps_141": 1, "out_seconds_141": 0.5,
    "micro_seconds": 0.02, "micro_reps": 1, "dispatch_counts": [10, 1000],
    "fleet": 10, "fleet_timeout": 30.0, "fleet_ramp": 0,
}


def log(msg):
    sys.stderr.write("[bench %s] %s\n" % (time.strftime("%H:%M:%S"), msg))
    sys.stderr.flush()


# --- the 1.4.1 virtualenv ------------------------------------------------------------------

def python_141(allow_setup, timeout):
    """(path to the 1.4.1 venv's python, None) or (None, reason)."""
    py = os.path.join(VENV_141, "bin", "python")
    check = [py, "-c", "from arduino_iot_cloud._version import __version__ as v; assert v == '1.4.1', v"]

    def ok():
        if not os.path.exists(py):
            return False
        # Without PYTHONPATH: a caller's PYTHONPATH=src would make our package answer for 1.4.1.
        env = dict(os.environ)
        env.pop("PYTHONPATH", None)
        return subprocess.run(check, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env).returncode == 0

    if ok():
        return py, None
    if not allow_setup:
        return None, "no venv at %s (run benchmarks/setup_141.sh)" % VENV_141
    log("creating %s with arduino-iot-cloud==1.4.1 from PyPI" % VENV_141)
    try:
        proc = subprocess.run(["bash", os.path.join(HERE, "setup_141.sh")], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, timeout=timeout,
                              env=dict(os.environ, PYTHON=sys.executable, VENV_141=VENV_141))
    except subprocess.TimeoutExpired:
        return None, "creating the venv took over %d s (no network?)" % timeout
    if proc.returncode != 0 or not ok():
        last = [ln for ln in proc.stdout.splitlines() if ln.strip()][-1:] or ["unknown error"]
        return None, "pip install arduino-iot-cloud==1.4.1 failed: %s" % last[0][:200]
    return py, None


# --- the cloud side --------------------------------------------------------------------------

class RawMQTT:
    """A minimal MQTT 3.1.1 publisher on the broker's plain admin listener.

    Dashboard writes go out through it, so a write's timestamp is taken just
    before its bytes are handed to the kernel.  Incoming bytes (PUBACKs) are
    read and dropped by a thread.
    """

    def __init__(self, host, port, user, password):
        self.sock = socket.create_connection((host, port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        cid = b"bench-writer-%d" % os.getpid()
        u, p = user.encode(), password.encode()
        body = (b"\x00\x04MQTT\x04\xc2\x00\x1e" + struct.pack("!H", len(cid)) + cid
                + struct.pack("!H", len(u)) + u + struct.pack("!H", len(p)) + p)
        self.sock.sendall(b"\x10" + self._length(len(body)) + body)
        ack = self._recv_exact(4)
        if ack[0] != 0x20 or ack[3] != 0:
            raise RuntimeError("admin login refused by the broker: %r" % ack)
        self.sock.settimeout(None)
        self.pid = 0
        self._lock = threading.Lock()
        threading.Thread(target=self._drain, daemon=True).start()

    def _recv_exact(self, n):
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise RuntimeError("broker closed the admin connection")
            data += chunk
        return data

    def _drain(self):
        try:
            while self.sock.recv(65536):
                pass
        except OSError:
            pass

    @staticmethod
    def _length(n):
        out = bytearray()
        while True:
            b = n & 0x7F
            n >>= 7
            out.append(b | 0x80 if n else b)
            if not n:
                return bytes(out)

    def packet(self, topic, payload, qos=1):
        t = topic.encode()
        if qos:
            self.pid = self.pid % 65535 + 1
            body = struct.pack("!H", len(t)) + t + struct.pack("!H", self.pid) + payload
        else:
            body = struct.pack("!H", len(t)) + t + payload
        return bytes((0x30 | (qos << 1),)) + self._length(len(body)) + body

    def send(self, data):
        with self._lock:
            self.sock.sendall(data)

    def close(self):
        try:
            self.sock.sendall(b"\xe0\x00")
            self.sock.close()
        except OSError:
            pass


class Observer:
    """Watches /a/t/+/e/o (paho, admin listener): when each thing first
    published, and how many messages / values it sent."""

    def __init__(self, host, port, user, password):
        import paho.mqtt.client as mqtt

        self.first = {}
        self.messages = {}
        self.cond = threading.Condition()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-observer-%d" % os.getpid(),
                        clean_session=True, protocol=mqtt.MQTTv311)
        c.username_pw_set(user, password)
        ready = threading.Event()
        c.on_connect = lambda cl, ud, fl, rc, pr=None: cl.subscribe("/a/t/+/e/o", qos=0)
        c.on_subscribe = lambda *a: ready.set()
        c.on_message = self._on_message
        c.connect(host, port, keepalive=30)
        c.loop_start()
        if not ready.wait(10):
            raise RuntimeError("observer could not subscribe")
        self.client = c

    def _on_message(self, client, userdata, msg):
        t = mono()
        thing = msg.topic.split("/")[3]
        with self.cond:
            self.first.setdefault(thing, t)
            self.messages[thing] = self.messages.get(thing, 0) + 1
            self.cond.notify_all()

    def wait_first(self, things, timeout):
        """Wait until every thing in `things` published; return how many did."""
        end = mono() + timeout
        with self.cond:
            while True:
                seen = sum(1 for t in things if t in self.first)
                left = end - mono()
                if seen == len(things) or left <= 0:
                    return seen
                self.cond.wait(min(left, 0.5))

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


def senml_one(name, value):
    """A SenML CBOR pack with one record (cloud side, via the local cloud's own codec)."""
    from arduino_iot_cloud.localcloud import wire

    return wire.encode_senml({name: value})


# --- driver subprocesses ----------------------------------------------------------------------

class Driver:
    def __init__(self, python, cfg, tag):
        os.makedirs(RESULTS, exist_ok=True)
        self.stderr_path = os.path.join(RESULTS, "driver-%s.log" % tag)
        self._err = open(self.stderr_path, "w")
        env = dict(os.environ)
        env.pop("PYTHONPATH", None)
        for k in ("ARDUINO_IOT_CLOUD_SERVER", "ARDUINO_IOT_CLOUD_PORT", "ARDUINO_IOT_CLOUD_CA"):
            env.pop(k, None)
        if python == sys.executable:  # ours: the source tree, even if not installed
            env["PYTHONPATH"] = OURS_SRC
        if PROFILE_DIR:
            env["BENCH_PROFILE"] = os.path.join(PROFILE_DIR, tag + ".prof")
        self.proc = subprocess.Popen([python, DRIVER, json.dumps(cfg)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self._err, text=True, bufsize=1,
                                     cwd=HERE, env=env)
        self.events = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            if line.startswith("BENCH "):
                try:
                    self.events.put(json.loads(line[6:]))
                except ValueError:
                    pass
        self.events.put({"event": "exit"})

    def wait(self, kind, timeout):
        end = mono() + timeout
        while True:
            left = end - mono()
            if left <= 0:
                return None
            try:
                ev = self.events.get(timeout=left)
            except queue.Empty:
                return None
            if ev["event"] == kind:
                return ev
            if ev["event"] == "exit":
                return None

    def send(self, line):
        try:
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()
        except (OSError, ValueError):
            pass

    def error_tail(self):
        self._err.flush()
        try:
            with open(self.stderr_path) as f:
                lines = [ln.strip() for ln in f if ln.strip()]
            return lines[-1][:200] if lines else "no output"
        except OSError:
            return "no output"

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._err.close()


# --- statistics ------------------------------------------------------------------------------

def stats(xs):
    xs = sorted(x for x in xs if x is not None)
    if not xs:
        return None
    return {"n": len(xs), "min": xs[0], "median": statistics.median(xs), "max": xs[-1]}


# --- the benchmarks --------------------------------------------------------------------------

class Bench:
    def __init__(self, lc, size, pythons):
        self.lc = lc
        self.size = size
        self.pythons = pythons  # impl -> python path
        self.connect()
        self.seq = 0
        self.pool = []

    def connect(self):
        """The cloud's side: the writer and the observer, on the admin listener."""
        user, password, port = admin_credentials(self.lc)
        self.writer = RawMQTT(self.lc.host, port, user, password)
        self.observer = Observer(self.lc.host, port, user, password)

    def close(self):
        self.writer.close()
        self.observer.close()

    def device(self):
        """A fresh device (each benchmark run starts from an empty thing)."""
        if not self.pool:
            self.pool = add_devices(self.lc, 32)
        return self.pool.pop()

    def cfg(self, bench, dev, **extra):
        cfg = {"bench": bench, "host": self.lc.host, "port": self.lc.password_port,
               "ca": str(self.lc.ca_file),
               "device": {"device_id": dev.device_id, "secret": dev.secret} if dev else None}
        cfg.update(extra)
        return cfg

    def driver(self, impl, cfg):
        self.seq += 1
        tag = "%02d-%s-%s-%s" % (self.seq, "ours" if impl == "ours" else "141", cfg["bench"],
                                  cfg.get("mode", ""))
        return Driver(self.pythons[impl], cfg, tag)

    # start() to the first value seen by the cloud
    def attach(self, impl, mode):
        s = self.size
        times = []
        errors = []
        phases = {}
        for _ in range(s["attach_reps"]):
            dev = self.device()
            d = self.driver(impl, self.cfg("attach", dev, mode=mode, timeout=s["attach_timeout"] + 5))
            try:
                t0 = d.wait("t0", 15)
                if t0 is None:
                    errors.append(d.error_tail())
                    continue
                if self.observer.wait_first([dev.thing_id], s["attach_timeout"]):
                    times.append((self.observer.first[dev.thing_id] - t0["t"]) * 1000)
                    prev = t0["t"]
                    while True:
                        ev = d.wait("phase", 0.05)
                        if ev is None:
                            break
                        phases.setdefault(ev["name"], []).append((ev["t"] - prev) * 1000)
                        prev = ev["t"]
                else:
                    errors.append("no value within %.0f s (%s)" % (s["attach_timeout"], d.error_tail()))
            finally:
                d.stop()
        return {"ms": stats(times), "samples": times, "errors": errors,
                "phases_ms": {k: stats(v) for k, v in phases.items()}}

    # dashboard write -> on_write
    def write_latency(self, impl, mode):
        s = self.size
        n = s["lat_n_ours"] if impl == "ours" else s["lat_n_141"]
        gap = s["lat_gap_ours"] if impl == "ours" else s["lat_gap_141"]
        rnd = random.Random(9)
        gaps = [gap if isinstance(gap, float) else rnd.uniform(*gap) for _ in range(n)]
        dev = self.device()
        timeout = sum(gaps) + s["attach_timeout"] + 5
        d = self.driver(impl, self.cfg("write_latency", dev, mode=mode, n=n, timeout=timeout))
        try:
            if not self.observer.wait_first([dev.thing_id], s["attach_timeout"]):
                return {"error": "not attached: " + d.error_tail()}
            time.sleep(0.3)
            topic = "/a/t/%s/e/i" % dev.thing_id
            for g in gaps:
                t = mono()
                self.writer.send(self.writer.packet(topic, senml_one("x", t)))
                time.sleep(g)
            res = d.wait("result", 10)
            if res is None:
                return {"error": "no result: " + d.error_tail()}
            lat = res.get("latency_ms")
            return {"latency_ms": lat, "received": res.get("received"), "sent": n}
        finally:
            d.stop()

    def idle_update(self, impl):
        s = self.size
        dev = self.device()
        reps = s["idle_reps"] if impl == "ours" else 1
        d = self.driver(impl, self.cfg("idle_update", dev, mode="sync", calls=s["idle_calls"],
                                       seconds=s["idle_seconds"], reps=reps))
        try:
            res = d.wait("result", s["attach_timeout"] + reps * (s["idle_seconds"] + 1) + 10)
            if res is None or not res.get("runs"):
                return {"error": "no result: " + d.error_tail()}
            runs = res["runs"]
            return {"cpu_us": stats([r["cpu_us"] for r in runs]), "wall_us": stats([r["wall_us"] for r in runs]),
                    "calls": sum(r["calls"] for r in runs), "runs": runs}
        finally:
            d.stop()

    def inbound(self, impl, mode):
        s = self.size
        n = s["in_n"]
        reps = s["in_reps"] if (impl == "ours" or mode == "sync") else s["in_reps_141_async"]
        dev = self.device()
        d = self.driver(impl, self.cfg("inbound", dev, mode=mode,
                                       timeout=s["attach_timeout"] + reps * (s["in_timeout"] + 3) + 5))
        topic = "/a/t/%s/e/i" % dev.thing_id
        rates, applied, errors = [], [], []
        try:
            if not self.observer.wait_first([dev.thing_id], s["attach_timeout"]):
                return {"error": "not attached: " + d.error_tail()}
            time.sleep(0.3)
            for r in range(reps):
                base = r * n
                burst = b"".join(self.writer.packet(topic, senml_one("x", base + i + 1)) for i in range(n))
                d.send("target %d %f" % (base + n, s["in_timeout"]))
                time.sleep(0.05)
                t0 = mono()
                self.writer.send(burst)
                ev = d.wait("burst_done", s["in_timeout"] + 3)
                if ev is None:
                    errors.append("no answer: " + d.error_tail())
                    break
                got = max(0, ev["value"] - base)
                applied.append(got)
                rates.append(got / max(ev["t"] - t0, 1e-9))
                if not ev["reached"]:
                    errors.append("%d of %d values applied within %.1f s" % (got, n, s["in_timeout"]))
                    break
                time.sleep(0.1)
            d.send("quit")
            return {"per_s": stats(rates), "applied": applied, "burst": n, "errors": errors}
        finally:
            d.stop()

    def outbound(self, impl, mode):
        s = self.size
        ours = impl == "ours"
        dev = self.device()
        reps = s["out_reps"] if ours else s["out_reps_141"]
        secs = s["out_seconds"] if ours else s["out_seconds_141"]
        d = self.driver(impl, self.cfg("outbound", dev, mode=mode, n=s["out_n"], reps=reps, seconds=secs,
                                       timeout=s["attach_timeout"] + reps * (secs + 6) + 5))
        try:
            res = d.wait("result", s["attach_timeout"] + reps * (secs + 6) + 10)
            if res is None:
                return {"error": "no result: " + d.error_tail()}
            runs = res.get("runs", [])
            time.sleep(0.2)
            sent = sum(r["values"] for r in runs)
            with self.observer.cond:
                seen = self.observer.messages.get(dev.thing_id, 0)
            return {"per_s": stats([r["per_s"] for r in runs]), "runs": runs,
                    "values_sent": sent, "messages_seen_by_cloud": seen}
        finally:
            d.stop()

    def fleet(self, devices, ramp=0):
        s = self.size
        n = len(devices)
        overflows0 = listen_overflows()
        drops0 = broker_drop_lines(self.lc)
        cpu_runner0 = time.process_time()
        cpu_broker0 = proc_cpu(self.lc)
        path = os.path.join(RESULTS, "fleet-devices.json")
        with open(path, "w") as f:
            json.dump([{"device_id": dv.device_id, "secret": dv.secret} for dv in devices], f)
        d = self.driver("ours", self.cfg("fleet", None, devices_file=path, timeout=s["fleet_timeout"],
                                         ramp_per_s=ramp))
        try:
            att = d.wait("attached", s["fleet_timeout"] + 15)
            if att is None:
                return {"error": "no answer: " + d.error_tail(), "devices": n}
            things = [dv.thing_id for dv in devices]
            seen = self.observer.wait_first(things, 30)
            for dv in devices:
                self.writer.send(self.writer.packet("/a/t/%s/e/i" % dv.thing_id, senml_one("w", 1)))
            d.send("go")
            res = d.wait("result", s["fleet_timeout"] + 15)
            if res is None:
                return {"error": "no result: " + d.error_tail(), "devices": n, "attached": att["attached"]}
            res["values_seen_by_cloud"] = seen
            res["cpu_s_cloud_emulator"] = time.process_time() - cpu_runner0
            b1 = proc_cpu(self.lc)
            res["cpu_s_mosquitto"] = None if b1 is None or cpu_broker0 is None else b1 - cpu_broker0
            d1 = broker_drop_lines(self.lc)
            res["broker_drop_warnings"] = None if d1 is None or drops0 is None else d1 - drops0
            o1 = listen_overflows()
            res["listen_overflows"] = None if o1 is None or overflows0 is None else o1 - overflows0
            os.unlink(path)
            return res
        finally:
            d.stop()


def proc_cpu(lc):
    """CPU seconds (user + system) used so far by the LocalCloud's mosquitto, or None."""
    try:
        pid = lc.broker.proc.pid
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (AttributeError, OSError, ValueError, IndexError):
        return None


def broker_drop_lines(lc):
    """How many "Outgoing messages are being dropped" lines mosquitto has logged (its queue
    for a slow client, max_queued_messages, was full), or None."""
    try:
        with open(str(lc.broker.log_file), "rb") as f:
            return f.read().count(b"Outgoing messages are being dropped")
    except (AttributeError, OSError):
        return None


def listen_overflows():
    """Linux: how many connections the kernel dropped because a listen queue was full."""
    try:
        with open("/proc/net/netstat") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for head, vals in zip(lines[::2], lines[1::2]):
        if head.startswith("TcpExt:"):
            row = dict(zip(head.split()[1:], vals.split()[1:]))
            if "ListenOverflows" in row:
                return int(row["ListenOverflows"])
    return None


def add_devices(lc, n):
    """n password devices (variant "both"), in one go when the LocalCloud can."""
    many = getattr(lc, "add_devices", None)
    if many is not None:
        return list(many(n, auth="password", variant="both"))
    return [lc.add_device(auth="password", variant="both") for _ in range(n)]


def admin_credentials(lc):
    """(user, password, port) of the broker's admin listener of a LocalCloud."""
    admin = lc.admin_credentials()
    return admin["user"], admin["password"], lc.admin_port


# --- table ---------------------------------------------------------------------------------

def fmt(x, unit="", digits=None):
    if x is None:
        return "-"
    if digits is None:
        ax = abs(x)
        digits = 0 if ax >= 100 else 1 if ax >= 10 else 2 if ax >= 1 else 3
    return ("%.*f" % (digits, x)) + unit


def spread(st, unit=""):
    """median [min-max] of a stats() dict."""
    if not st:
        return None
    if st["n"] == 1:
        return fmt(st["median"], unit)
    return "%s [%s-%s]" % (fmt(st["median"], unit), fmt(st["min"]), fmt(st["max"]))


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


class Table:
    def __init__(self):
        self.rows = []

    def add(self, key, figure, target, ours, other, r=None, met=None, ours_value=None, other_value=None):
        self.rows.append({"key": key, "figure": figure, "target": target, "ours": ours or "-",
                          "1.4.1": other or "-", "ratio": r, "target_met": met,
                          "ours_value": ours_value, "141_value": other_value})

    def text(self):
        head = ("Figure", "Target", "ours", "1.4.1", "ours/1.4.1", "met")
        lines = []
        for row in self.rows:
            r = row["ratio"]
            lines.append((row["figure"], row["target"], row["ours"], row["1.4.1"],
                          "-" if r is None else ("%.3g" % r), {True: "yes", False: "NO", None: ""}[row["target_met"]]))
        widths = [max(len(str(x[i])) for x in lines + [head]) for i in range(len(head))]
        out = ["| " + " | ".join(str(h).ljust(w) for h, w in zip(head, widths)) + " |",
               "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
        for ln in lines:
            out.append("| " + " | ".join(str(x).ljust(w) for x, w in zip(ln, widths)) + " |")
        return "\n".join(out)


def build_table(res, unavailable):
    t = Table()
    na = "n/a: 1.4.1 unavailable" if unavailable else None

    def other(key, get, unit=""):
        if na:
            return na, None
        r = res.get("141", {}).get(key)
        if r is None:
            return "not run", None
        if "error" in r:
            return "error: %s" % r["error"][:80], None
        return get(r)

    def ours(key, get):
        r = res.get("ours", {}).get(key)
        if r is None:
            return "not run", None
        if "error" in r:
            return "error: %s" % r["error"][:80], None
        return get(r)

    def ms_stats(r):
        st = r.get("ms")
        if not st:
            return "failed: %s" % "; ".join(r.get("errors", []))[:80], None
        return spread(st, " ms"), st["median"]

    for mode in ("async", "sync"):
        key = "attach_" + mode
        o, ov = ours(key, ms_stats)
        x, xv = other(key, ms_stats)
        t.add(key, "start() to attached (first value at the cloud), %s, median [min-max]" % mode,
              "< 50 ms", o, x, ratio(ov, xv), None if ov is None else ov < 50, ov, xv)

    for mode in ("async", "sync"):
        key = "attach_stock_" + mode
        o, ov = ours(key, ms_stats)
        x, xv = other(key, ms_stats)
        t.add(key, "the same, %s, against a stock mosquitto (set_tcp_nodelay false)" % mode,
              "< 50 ms", o, x, ratio(ov, xv), None if ov is None else ov < 50, ov, xv)

    for key, broker in (("attach_", ""), ("attach_stock_", ", stock mosquitto")):
        for mode in ("async", "sync"):
            r = res.get("ours", {}).get(key + mode) or {}
            ph = r.get("phases_ms") or {}
            if ph:
                names = (("tls_connected", "TCP+TLS"), ("connack", "CONNACK"), ("thing_id", "thing id"),
                         ("ready", "last values"))
                text = ", ".join("%s +%s" % (label, fmt(ph[k]["median"], " ms")) for k, label in names if ph.get(k))
                t.add(key.replace("attach_", "attach_phases_") + mode,
                      "  where the attach time goes (ours, %s%s, medians, step by step)" % (mode, broker),
                      "report", text, "-", None, None, None, None)

    def lat(q):
        def get(r):
            st = r.get("latency_ms")
            if not st:
                return "no samples (%s of %s)" % (r.get("received"), r.get("sent")), None
            v = st[q]
            return "%s (n=%d of %d, max %s)" % (fmt(v, " ms"), st["n"], r["sent"], fmt(st["max"])), v
        return get

    for mode, targets in (("async", (("p50", 2.0), ("p99", 10.0))), ("sync", (("p50", 2.0),))):
        for q, target in targets:
            key = "write_latency_" + mode
            o, ov = ours(key, lat(q))
            x, xv = other(key, lat(q))
            t.add(key + "_" + q, "dashboard write to on_write, %s mode, %s" % (mode, q),
                  "< %g ms" % target, o, x, ratio(ov, xv), None if ov is None else ov < target, ov, xv)

    def idle(r):
        return ("%s CPU (wall %s; %d calls)" % (spread(r["cpu_us"], " us"), fmt(r["wall_us"]["median"], " us"),
                                                 r["calls"]), r["cpu_us"]["median"])

    o, ov = ours("idle_update", idle)
    x, xv = other("idle_update", idle)
    t.add("idle_update", "one idle sync update() call, CPU time, median [min-max]", "< 50 us", o, x, ratio(ov, xv),
          None if ov is None else ov < 50, ov, xv)

    def rate(r):
        st = r.get("per_s")
        if not st:
            return "failed: %s" % "; ".join(r.get("errors", []))[:80], None
        note = ""
        if r.get("errors"):
            note = " (%s)" % r["errors"][0]
        return spread(st, "/s") + note, st["median"]

    for mode in ("async", "sync"):
        key = "inbound_" + mode
        o, ov = ours(key, rate)
        x, xv = other(key, rate)
        t.add(key, "inbound values applied per second, %s (bursts of writes), median [min-max]" % mode,
              "> 5000 /s", o, x, ratio(ov, xv), None if ov is None else ov > 5000, ov, xv)

    def orate(r):
        st = r.get("per_s")
        if not st:
            return "failed", None
        return "%s (cloud saw %d msgs)" % (spread(st, "/s"), r.get("messages_seen_by_cloud", 0)), st["median"]

    for mode in ("async", "sync"):
        key = "outbound_" + mode
        o, ov = ours(key, orate)
        x, xv = other(key, orate)
        t.add(key, "outbound QoS 1 values acknowledged per second, %s, median [min-max]" % mode,
              "> 5000 /s", o, x, ratio(ov, xv), None if ov is None else ov > 5000, ov, xv)

    def micro(field):
        def get(r):
            st = r.get(field)
            if not st:
                return "-", None
            return spread({"n": st["n"], "min": st["min"], "median": st["p50"], "max": st["max"]}, " us"), st["p50"]
        return get

    counts = None
    for impl in ("ours", "141"):
        m = res.get(impl, {}).get("micro")
        if m and "error" not in m:
            counts = sorted(int(k.split("_")[1]) for k in m if k.startswith("dispatch_") and k.endswith("_us"))
            break
    for c in counts or []:
        key = "dispatch_%d_us" % c
        o, ov = ours("micro", micro(key))
        x, xv = other("micro", micro(key))
        t.add(key, "decode + dispatch of one message, %d properties registered" % c, "report", o, x,
              ratio(ov, xv), None, ov, xv)
    if counts and len(counts) >= 2:
        lo, hi = "dispatch_%d_us" % counts[0], "dispatch_%d_us" % counts[-1]

        def dratio(r):
            if lo not in r or hi not in r:
                return "-", None
            # Best-of-N times: the least disturbed runs (other processes share the CPUs).
            v = r[hi]["min"] / r[lo]["min"]
            return "%.2f (best of %d each)" % (v, r[hi]["n"]), v

        o, ov = ours("micro", dratio)
        x, xv = other("micro", dratio)
        t.add("dispatch_ratio", "per-message dispatch cost, %d vs %d properties (ratio)" % (counts[-1], counts[0]),
              "< 1.3", o, x, ratio(ov, xv), None if ov is None else ov < 1.3, ov, xv)
    for field, name in (("encode_us", "encode one SenML record"), ("decode_us", "decode one SenML record")):
        o, ov = ours("micro", micro(field))
        x, xv = other("micro", micro(field))
        t.add(field, name + ", median [min-max]", "report", o, x, ratio(ov, xv), None, ov, xv)

    want = res.get("fleet_target")
    for key, label in (("fleet", "devices in one process (asyncio, own TLS each, client.run())"),
                       ("fleet_ramp", "  the same, connects started at %s/s instead of all at once"
                        % (res.get("fleet_ramp") or "?"))):
        f = res.get("ours", {}).get(key)
        if f is None:
            if key == "fleet_ramp":
                continue
            o, ov = "not run", None
        elif "error" in f:
            o, ov = "error: %s" % f["error"][:100], None
        else:
            ok = f["attached"] == f["devices"] and f["written"] == f["devices"]
            a = f.get("attach_s") or {}
            o = ("%d of %d attached in %.1f s (per device p50 %s, p99 %s), cloud got a value from %d, "
                 "%d writes applied in %.2f s; RSS %.0f kB/device, Python heap %s kB/device; "
                 "listen queue overflows %s; broker queue-full drops %s; "
                 "CPU s: devices %s, mosquitto %s, cloud emulator %s"
                 % (f["attached"], f["devices"], f["attach_seconds"], fmt(a.get("p50"), " s"),
                    fmt(a.get("p99"), " s"), f.get("values_seen_by_cloud", 0), f["written"], f["write_seconds"],
                    f["rss_kb_per_device"], fmt(f.get("tracemalloc_kb_per_device")), f.get("listen_overflows", "?"),
                    f.get("broker_drop_warnings", "?"), fmt(f.get("cpu_s")), fmt(f.get("cpu_s_mosquitto")), fmt(f.get("cpu_s_cloud_emulator"))))
            if f.get("client_warnings"):
                o += "; client warnings: " + ", ".join("%s x%d" % (k, v) for k, v in f["client_warnings"].items())
            ov = f["attached"] if ok else None
        other_cell = na or ("n/a: start() calls asyncio.run() per client and its sockets block; "
                            "no coroutine to share a loop")
        t.add(key, label, "%s" % want if key == "fleet" else "report", o, other_cell if key == "fleet" else "-",
              None, None if ov is None or key != "fleet" else ov >= (want or 0), ov, None)

    mp = res.get("mpy_memory")
    if mp is not None:
        t.add("mpy_memory", "MicroPython heap (benchmarks/mpy_memory.py)", "report", mpy_summary(mp),
              "n/a: not measured for 1.4.1", None, None, None, None)
    else:
        t.add("mpy_memory", "MicroPython heap (benchmarks/mpy_memory.py)", "report",
              "not present (benchmarks/results/mpy_memory.json)", "-", None, None, None, None)
    return t


def mpy_summary(mp):
    """One line from benchmarks/results/mpy_memory.json (written by benchmarks/mpy_memory.py)."""
    if not isinstance(mp, dict):
        return json.dumps(mp)[:160]

    def kb(x):
        return "%.0f kB" % (x / 1024.0) if isinstance(x, (int, float)) else "?"

    def get(*path):
        d = mp
        for k in path:
            if not isinstance(d, dict) or k not in d:
                return None
            d = d[k]
        return d

    parts = []
    if get("min_heap_mpy", "bytes") is not None or get("min_heap_py", "bytes") is not None:
        parts.append("smallest heap that attaches: %s (.mpy) / %s (.py)"
                     % (kb(get("min_heap_mpy", "bytes")), kb(get("min_heap_py", "bytes"))))
    for mode in ("sync", "async"):
        if get(mode, "steady_peak") is not None:
            parts.append("%s steady peak %s" % (mode, kb(get(mode, "steady_peak"))))
    if get("imports_mpy", "library_total") is not None:
        parts.append("library imports %s" % kb(get("imports_mpy", "library_total")))
    if get("micropython"):
        parts.append(str(get("micropython")).split(";")[-1].strip())
    if not parts:
        nums = ["%s=%s" % (k, v) for k, v in mp.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
        return ", ".join(nums[:6]) or json.dumps(mp)[:160]
    return "; ".join(parts)


NOTES_141 = """How 1.4.1 works, which explains its figures (read from its sources, measured as it is):
- async mode: its MQTT task runs once per second (poll_mqtt, interval 1.0) and reads at most one
  message per run; on_write is called from the property's own task, also once per interval (1 s).
- sync mode: update() waits up to 50 ms in select() when nothing arrived (umqtt check_msg), and
  calls on_write only when the property's interval (1 s) has passed since its last run.
- every QoS 1 publish blocks until its PUBACK (stop-and-wait); incoming messages are applied by a
  callback that walks every registered property (O(properties) per message)."""


# --- main ----------------------------------------------------------------------------------

# micro first: it needs no network, so the cloud has no backlog to disturb it.
ALL = ("micro", "attach", "attach_stock", "write_latency", "idle_update", "inbound", "outbound", "fleet")


def micro(impl, python, size):
    """Codec and dispatch micro-benchmarks (no network), run before the cloud starts so that
    nothing else is busy on the machine."""
    d = Driver(python, {"bench": "micro", "seconds": size["micro_seconds"], "reps": size["micro_reps"],
                        "dispatch_counts": size["dispatch_counts"]}, "00-%s-micro" % impl.replace(".", ""))
    try:
        res = d.wait("result", 120)
        if res is None:
            return {"error": "no result: " + d.error_tail()}
        return res
    finally:
        d.stop()


def broker_nodelay(lc, bench, on):
    """Restart the local cloud's mosquitto with set_tcp_nodelay true (the local
    cloud's tuning) or false (mosquitto's default, what most brokers run); the
    runner's writer and observer connect again."""
    tuned = lc.broker._config
    if not hasattr(tuned, "stock"):
        def config():
            text = tuned()
            return text if config.tuned else text.replace("set_tcp_nodelay true", "set_tcp_nodelay false")
        config.stock = True
        config.tuned = True
        lc.broker._config = config
    lc.broker._config.tuned = on
    bench.close()
    lc.broker.restart()
    time.sleep(1.0)  # the emulator reconnects to the admin listener
    bench.connect()


def run_all(args, size, pythons):
    from arduino_iot_cloud.localcloud import LocalCloud

    res = {"ours": {}, "141": {}, "fleet_target": size["fleet"] if args.fleet is None else args.fleet,
           "fleet_ramp": size["fleet_ramp"]}
    only = set(args.only.split(",")) if args.only else set(ALL)
    os.makedirs(RESULTS, exist_ok=True)
    for name in os.listdir(RESULTS):  # the drivers' stderr logs of the previous run
        if name.startswith("driver-") and name.endswith(".log"):
            os.unlink(os.path.join(RESULTS, name))
    impls = [i for i in ("ours", "141") if i in pythons]
    if "micro" in only:
        for impl in impls:
            t0 = mono()
            res[impl]["micro"] = micro(impl, pythons[impl], size)
            log("micro %s: %.1f s" % (impl, mono() - t0))
    workdir = tempfile.mkdtemp(prefix="bench-localcloud-")
    lc = LocalCloud(workdir)
    fleet_devices = fleet_devices_ramp = []
    if "fleet" in only:
        # Added before start(): no broker reload per device (8 ms each, not 110 ms).
        t = mono()
        fleet_devices = add_devices(lc, res["fleet_target"])
        fleet_devices_ramp = add_devices(lc, res["fleet_target"]) if size["fleet_ramp"] else []
        log("fleet: %d devices added in %.1f s" % (len(fleet_devices), mono() - t))
    lc.start()
    try:
        conf = open(str(lc.broker.conf)).read()
        mc = [ln.split()[1] for ln in conf.splitlines() if ln.startswith("max_connections")]
        res["mosquitto_max_connections"] = mc[0] if mc else "not set (unlimited)"
    except (AttributeError, OSError, IndexError):
        res["mosquitto_max_connections"] = "unknown"
    log("mosquitto max_connections: %s" % res["mosquitto_max_connections"])
    bench = None
    try:
        bench = Bench(lc, size, pythons)
        for name in ALL:
            if name not in only or name == "micro":
                continue
            for impl in impls:
                t0 = mono()
                if name == "fleet":
                    if impl == "ours":
                        res["ours"]["fleet"] = bench.fleet(fleet_devices)
                        if fleet_devices_ramp:
                            res["ours"]["fleet_ramp"] = bench.fleet(fleet_devices_ramp, size["fleet_ramp"])
                    continue
                if name == "attach_stock":  # both impls against one broker restart
                    if impl != impls[0]:
                        continue
                    broker_nodelay(lc, bench, False)
                    try:
                        for each in impls:
                            for mode in ("async", "sync"):
                                res[each]["attach_stock_" + mode] = bench.attach(each, mode)
                    finally:
                        broker_nodelay(lc, bench, True)
                elif name in ("attach", "write_latency", "inbound", "outbound"):
                    for mode in ("async", "sync"):
                        res[impl]["%s_%s" % (name, mode)] = getattr(bench, name)(impl, mode)
                else:
                    res[impl][name] = getattr(bench, name)(impl)
                log("%s %s: %.1f s" % (name, impl, mono() - t0))
    finally:
        if bench is not None:
            bench.close()
        lc.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    mp_path = os.path.join(RESULTS, "mpy_memory.json")
    if os.path.exists(mp_path):
        try:
            with open(mp_path) as f:
                res["mpy_memory"] = json.load(f)
        except ValueError:
            res["mpy_memory"] = {"error": "unreadable"}
    return res


def raise_fd_limit(want):
    """Raise the soft open-files limit (inherited by mosquitto and the drivers); return (soft, hard)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(hard, want)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            pass
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def versions(py141):
    out = {"python": platform.python_version(), "implementation": platform.python_implementation()}
    try:
        from arduino_iot_cloud import __version__ as v
        out["ours"] = v
    except ImportError:
        out["ours"] = "?"
    if py141:
        p = subprocess.run([py141, "-c", "import platform; print(platform.python_version())"],
                           stdout=subprocess.PIPE, text=True)
        out["python_141"] = p.stdout.strip()
    try:
        p = subprocess.run([shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-h"], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=5)
        out["mosquitto"] = p.stdout.splitlines()[0].strip()
    except (OSError, subprocess.TimeoutExpired, IndexError):
        out["mosquitto"] = "?"
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="every benchmark once, tiny sizes (< ~60 s)")
    ap.add_argument("--no-141", action="store_true", help="skip arduino-iot-cloud 1.4.1")
    ap.add_argument("--only", help="comma-separated subset of: " + ",".join(ALL))
    ap.add_argument("--fleet", type=int, help="devices in the fleet benchmark")
    ap.add_argument("--json", default=os.path.join(RESULTS, "latest.json"), help="where to write the JSON")
    ap.add_argument("--profile", metavar="DIR",
                    help="run each driver under cProfile; stats go to DIR/<run>.prof (figures get slower)")
    ap.add_argument("--ours-src", default=OURS_SRC,
                    help="source tree of our library (default: src/), e.g. a patched copy to compare")
    args = ap.parse_args(argv)
    global PROFILE_DIR
    if args.profile:
        PROFILE_DIR = os.path.abspath(args.profile)
        os.makedirs(PROFILE_DIR, exist_ok=True)
    size = dict(QUICK if args.quick else FULL)
    if args.fleet is not None:
        size["fleet"] = args.fleet
    started = mono()
    # A fleet of N needs N sockets in the driver and N in mosquitto (plus log and TLS files).
    fd_soft, fd_hard = raise_fd_limit(2 * size["fleet"] + 1024)

    py141, unavailable = (None, "skipped (--no-141)") if args.no_141 else \
        python_141(allow_setup=True, timeout=90 if args.quick else 600)
    pythons = {"ours": sys.executable}
    if py141:
        pythons["141"] = py141
    header = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "machine": platform.machine(), "cpus": os.cpu_count(), "kernel": platform.release(),
        "quick": args.quick, "versions": versions(py141), "open_files_limit": [fd_soft, fd_hard],
        "loadavg_start": os.getloadavg(),
    }
    print("Benchmarks %s (%s): %s, %d CPUs, Python %s (ours %s), 1.4.1 on Python %s, %s" % (
        header["date"], "quick" if args.quick else "full", header["machine"], header["cpus"],
        header["versions"]["python"], header["versions"]["ours"],
        header["versions"].get("python_141", "-"), header["versions"]["mosquitto"]))
    if OURS_SRC != os.path.join(ROOT, "src"):
        print("Our library (and the local cloud) from: %s" % OURS_SRC)
    print("Load average at start: %.2f %.2f %.2f (other work on the machine disturbs the figures)"
          % os.getloadavg())
    print("Open files limit (soft/hard): %s/%s (raised for the fleet; mosquitto and the drivers inherit it)"
          % (fd_soft, fd_hard))
    print("1.4.1: %s" % ("available (%s)" % py141 if py141 else "unavailable (%s)" % unavailable))
    sys.stdout.flush()
    res = run_all(args, size, pythons)
    table = build_table(res, unavailable)
    print()
    print(table.text())
    print()
    print("Ratios are ours / 1.4.1 (under 1 is better for times, over 1 for rates). "
          "Loopback, TLS on both sides; %.0f s in all; load average at the end %.2f."
          % (mono() - started, os.getloadavg()[0]))
    if py141:
        print(NOTES_141)
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump({"header": header, "table": table.rows, "raw": res, "sizes": size,
                   "141_unavailable": unavailable}, f, indent=1, default=str)
    print("JSON: %s" % os.path.relpath(args.json, ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
