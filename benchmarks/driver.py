"""One benchmark on one device client, run as a subprocess by benchmarks/run.py.

The same script drives this project's client and arduino-iot-cloud 1.4.1 (run
with the Python of .venv-141, which has only 1.4.1 installed): it imports
whichever `arduino_iot_cloud` its interpreter finds.  Both are driven through
the public API they share (constructor, register, client[name], start,
update, create_task); the few spots that need more (is a value still waiting
to be published?) are in the IMPL helpers below and say so.

Usage: python driver.py '<json config>'.  Lines starting with "BENCH " on
stdout are JSON events for the runner: {"event": "t0"}, {"event": "result"},
{"event": "burst_done"}, ...  Commands from the runner, if any, arrive as
lines on stdin.  Every loop here is bounded in count and in time.
"""

import asyncio
import cProfile
import json
import os
import signal
import ssl
import statistics
import sys
import threading
import time

import arduino_iot_cloud as aiot

try:
    from arduino_iot_cloud import __version__ as _VERSION
except ImportError:  # 1.4.1 keeps it in _version
    from arduino_iot_cloud._version import __version__ as _VERSION

OURS = _VERSION != "1.4.1"
IMPL = "ours" if OURS else "1.4.1"
mono = time.monotonic  # CLOCK_MONOTONIC: comparable between processes on Linux
_out_lock = threading.Lock()
# run.py --profile: the whole run under cProfile, its stats written by finish()
PROFILE_PATH = os.environ.get("BENCH_PROFILE")
_profiler = cProfile.Profile() if PROFILE_PATH else None


def emit(event, **fields):
    fields["event"] = event
    with _out_lock:
        sys.stdout.write("BENCH " + json.dumps(fields) + "\n")
        sys.stdout.flush()


def finish(**fields):
    """Report the result and leave at once (1.4.1's start() never returns)."""
    emit("result", impl=IMPL, version=_VERSION, **fields)
    _dump_profile()
    os._exit(0)


def _dump_profile(*_signal):
    if _profiler is not None:
        _profiler.disable()
        _profiler.dump_stats(PROFILE_PATH)
    if _signal:  # the runner stops some benchmarks with SIGTERM
        os._exit(0)


def make_client(cfg, sync_mode, device=None):
    dev = device or cfg["device"]
    ssl_params = {"cafile": cfg["ca"], "verify_mode": ssl.CERT_REQUIRED, "server_hostname": "localhost"}
    return aiot.ArduinoCloudClient(dev["device_id"], username=dev["device_id"], password=dev["secret"],
                                   ssl_params=ssl_params, server=cfg["host"], port=cfg["port"],
                                   sync_mode=sync_mode)


def pending(client, name):
    """True while a value set with client[name] = v has not been taken for publishing."""
    if OURS:
        return client.registry.get(name).dirty
    return client.records[name].updated


def unacked(client):
    """QoS 1 publishes not yet acknowledged (1.4.1 waits for each PUBACK inside publish())."""
    if OURS:
        return client.engine.mqtt.inflight_count()
    return 0


def summary(xs):
    xs = sorted(xs)
    if not xs:
        return None
    n = len(xs)
    return {"n": n, "min": xs[0], "p50": statistics.median(xs), "max": xs[-1],
            "p99": xs[min(n - 1, int(round(0.99 * (n - 1))))], "mean": sum(xs) / n}


def watchdog(seconds, **fields):
    """Finish with whatever is there if the benchmark overruns its time bound."""
    def fire():
        finish(timeout=True, **fields)
    t = threading.Timer(seconds, fire)
    t.daemon = True
    t.start()
    return t


class StdinCommands:
    """Lines from the runner, read by a thread; the benchmark loop polls `get()`."""

    def __init__(self):
        self._lines = []
        self._lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in sys.stdin:
            with self._lock:
                self._lines.append(line.split())

    def get(self):
        with self._lock:
            if self._lines:
                return self._lines.pop(0)
        return None


def run_client(cfg, client, sync_step=None, sync_mode=False):
    """Run the client until the benchmark calls finish().

    Async mode: start() (an asyncio loop); the benchmark runs as a task added
    with create_task().  Sync mode: start(), then sync_step() after every
    update() until it returns True.
    """
    if not sync_mode:
        client.start()
        return
    client.start()
    while True:
        client.update()
        if sync_step is not None and sync_step():
            return


# --- benchmarks -------------------------------------------------------------------


# Log lines of our client that mark the attach phases (for a breakdown of the time).
PHASES = (("connected to ", "tls_connected"), ("logged in to the broker", "connack"),
          ("attached to thing ", "thing_id"), ("device ", "ready"))


def trace_phases():
    """Ours only: report when each attach phase was logged, as "phase" events."""
    import logging

    class Handler(logging.Handler):
        def emit(self, record):
            msg = record.msg if isinstance(record.msg, str) else ""
            for prefix, name in PHASES:
                if msg.startswith(prefix) and (name != "ready" or " ready on thing " in msg):
                    emit("phase", name=name, t=mono())

    for name in ("arduino_iot_cloud.engine", "arduino_iot_cloud.session"):
        lg = logging.getLogger(name)
        lg.setLevel(logging.INFO)
        lg.addHandler(Handler())
        lg.propagate = False


def bench_attach(cfg):
    """start() until the cloud sees the first value; the runner times it and stops us."""
    sync = cfg["mode"] == "sync"
    if OURS:
        trace_phases()
    client = make_client(cfg, sync)
    client.register("attach_probe", value=1)
    watchdog(cfg.get("timeout", 15))
    emit("t0", t=mono())
    run_client(cfg, client, sync_mode=sync)


def bench_write_latency(cfg):
    """Dashboard writes (value = the runner's monotonic send time) to on_write."""
    sync = cfg["mode"] == "sync"
    n = cfg["n"]
    client = make_client(cfg, sync)
    lat = []

    def on_write(c, value):
        lat.append((mono() - value) * 1000.0)

    client.register("x", value=0.0, on_write=on_write)
    client.register("attach_probe", value=1)
    deadline = mono() + cfg["timeout"]

    def done():
        return len(lat) >= n or mono() > deadline

    def report():
        finish(latency_ms=summary(lat), received=len(lat), sent=n)

    if sync:
        run_client(cfg, client, sync_step=done, sync_mode=True)
        report()

    async def watcher():
        while not done():
            await asyncio.sleep(0.005)
        report()

    client.create_task("bench_watcher", watcher)
    run_client(cfg, client)


def bench_idle_update(cfg):
    """CPU (process_time) and wall time of update() calls with nothing to do."""
    client = make_client(cfg, True)
    client.register("attach_probe", value=1)
    client.start()
    settle_until = mono() + cfg.get("settle", 0.5)
    while mono() < settle_until:  # attach traffic, last values, first publish
        client.update()
    runs = []
    for _ in range(cfg.get("reps", 1)):
        calls = 0
        c0 = time.process_time()
        w0 = time.perf_counter()
        end = mono() + cfg["seconds"]
        while calls < cfg["calls"]:
            client.update()
            calls += 1
            if calls % 64 == 0 and mono() > end:
                break
        c1 = time.process_time()
        w1 = time.perf_counter()
        runs.append({"calls": calls, "cpu_us": (c1 - c0) / calls * 1e6, "wall_us": (w1 - w0) / calls * 1e6})
    finish(runs=runs)


def bench_inbound(cfg):
    """Values applied per second: the runner sends bursts of writes back to back.

    Per burst the runner sends "target <last value> <timeout s>"; we report
    when client["x"] reaches it (or what it reached at the timeout).
    """
    sync = cfg["mode"] == "sync"
    client = make_client(cfg, sync)
    state = {"target": None, "until": 0.0, "hit": None}

    def on_write(c, value):
        if state["target"] is not None and value >= state["target"] and state["hit"] is None:
            state["hit"] = mono()

    client.register("x", value=0, on_write=on_write)
    client.register("attach_probe", value=1)
    cmds = StdinCommands()
    watchdog(cfg["timeout"])

    def check():
        cmd = cmds.get()
        if cmd is not None:
            if cmd[0] == "quit":
                finish()
            state["target"] = int(cmd[1])
            state["until"] = mono() + float(cmd[2])
            state["hit"] = None
        target = state["target"]
        if target is None:
            return False
        value = client["x"]
        now = mono()
        if state["hit"] is None and value >= target:
            state["hit"] = now
        if state["hit"] is not None or now > state["until"]:
            emit("burst_done", t=state["hit"] or now, value=value, reached=state["hit"] is not None)
            state["target"] = None
        return False

    if sync:
        run_client(cfg, client, sync_step=check, sync_mode=True)

    async def watcher():
        while True:
            check()
            await asyncio.sleep(0.001)

    client.create_task("bench_watcher", watcher)
    run_client(cfg, client)


def bench_outbound(cfg):
    """QoS 1 values acknowledged per second: set the next value as soon as the
    previous one was taken for publishing (so no value is coalesced away)."""
    sync = cfg["mode"] == "sync"
    n = cfg["n"]
    reps = cfg["reps"]
    limit_s = cfg["seconds"]
    client = make_client(cfg, sync)
    client.register("y", value=0)
    client.register("attach_probe", value=1)
    runs = []
    watchdog(cfg["timeout"], runs=runs)
    counter = [0]

    if sync:
        client.start()
        settle_until = mono() + 0.3
        while mono() < settle_until:
            client.update()
        for _ in range(reps):
            t0 = mono()
            end = t0 + limit_s
            sent = 0
            while sent < n and mono() < end:
                counter[0] += 1
                client["y"] = counter[0]
                sent += 1
                while (pending(client, "y") or unacked(client) >= 32) and mono() < end:
                    client.update()
            while (pending(client, "y") or unacked(client)) and mono() < end + 5:
                client.update()
            t1 = mono()
            runs.append({"values": sent, "seconds": t1 - t0, "per_s": sent / (t1 - t0),
                         "complete": sent == n})
        finish(runs=runs)

    async def producer():
        t_settle = mono() + 0.3
        while not (OURS and client.connected) and mono() < t_settle + 10:
            if not OURS and client.thing_id is not None and mono() > t_settle:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.3)
        for _ in range(reps):
            t0 = mono()
            end = t0 + limit_s
            sent = 0
            while sent < n and mono() < end:
                counter[0] += 1
                client["y"] = counter[0]
                sent += 1
                while pending(client, "y") and mono() < end:
                    await asyncio.sleep(0)
            while (pending(client, "y") or unacked(client)) and mono() < end + 5:
                await asyncio.sleep(0)
            await asyncio.sleep(0)
            t1 = mono()
            runs.append({"values": sent, "seconds": t1 - t0, "per_s": sent / (t1 - t0),
                         "complete": sent == n})
        finish(runs=runs)

    client.create_task("bench_producer", producer)
    run_client(cfg, client)


# --- micro-benchmarks (no network) ----------------------------------------------------


def timeit(fn, seconds, reps):
    """Per-call seconds of fn(), `reps` runs of about `seconds` each."""
    n = 1
    t0 = time.perf_counter()
    fn()
    one = max(time.perf_counter() - t0, 1e-7)
    n = max(1, min(1000000, int(seconds / one)))
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        out.append((time.perf_counter() - t0) / n)
    return out


def us_summary(xs):
    s = summary([x * 1e6 for x in xs])
    s["unit"] = "us"
    return s


def dispatch_case(count):
    """(one message in, build the message only, was it applied?) with `count` properties."""
    client = aiot.ArduinoCloudClient("bench-micro", username="bench-micro", password="x",
                                     server="127.0.0.1", port=1, sync_mode=True)

    def noop(c, v):
        pass

    for i in range(count):
        client.register("p%d" % i, value=0, on_write=noop)
    target = "p%d" % (count - 1)
    values = [0]
    last_applied = [0]
    if OURS:
        from arduino_iot_cloud import senml

        def one():
            values[0] += 1
            client.registry.apply(senml.decode(senml.encode([(target, values[0])])), client)
            last_applied[0] = values[0]

        def enc_only():
            senml.encode([(target, values[0] + 1)])
    else:
        from senml import SenmlPack

        src = aiot.ArduinoCloudObject(target, value=0)
        spack = SenmlPack("", lambda r, **k: None)
        topic = b"/a/t/thing/e/i"

        def encode_one(v):
            src.value = v
            spack.clear()
            src.add_to_pack(spack, push=True)
            return spack.to_cbor()

        def one():
            values[0] += 1
            client.mqtt_callback(topic, encode_one(values[0]))
            last_applied[0] = values[0]

        def enc_only():
            encode_one(values[0] + 1)

    def check():
        return client[target] == last_applied[0]

    return one, enc_only, check


def bench_micro(cfg):
    secs, reps = cfg["seconds"], cfg["reps"]
    result = {}
    if OURS:
        from arduino_iot_cloud import senml

        payload = senml.encode([("temp", 21.5)])
        result["encode_us"] = us_summary(timeit(lambda: senml.encode([("temp", 21.5)]), secs, reps))
        result["decode_us"] = us_summary(timeit(lambda: senml.decode(payload), secs, reps))
    else:
        from senml import SenmlPack

        rec = aiot.ArduinoCloudObject("temp", value=21.5)
        pack = SenmlPack("", lambda r, **k: None)

        def enc():
            pack.clear()
            rec.add_to_pack(pack, push=True)
            return pack.to_cbor()

        payload = enc()
        result["encode_us"] = us_summary(timeit(enc, secs, reps))
        pack.clear()
        rec.add_to_pack(pack)

        def dec():
            pack.from_cbor(payload)

        result["decode_us"] = us_summary(timeit(dec, secs, reps))
        pack.clear()
    result["payload_hex"] = bytes(payload).hex()

    # Per-message dispatch: one incoming message writing one property, with
    # N properties registered.  Ours: senml.decode + Registry.apply (what the
    # session runs for a thing e/i message); 1.4.1: its MQTT callback.  The
    # sizes are timed in turn, rep by rep, so a disturbance hits all alike.
    cases = {count: dispatch_case(count) for count in cfg["dispatch_counts"]}
    times = {count: [] for count in cases}
    for _ in range(reps):
        for count, (one, enc_only, check) in cases.items():
            full = timeit(one, secs, 1)[0]
            enc = timeit(enc_only, secs, 1)[0]
            # Subtract the cost of building the message (the same for every size).
            times[count].append(max(full - enc, 1e-9))
    for count, (one, enc_only, check) in cases.items():
        result["dispatch_%d_us" % count] = us_summary(times[count])
        if not check():
            result["dispatch_%d_error" % count] = "value not applied"
    finish(**result)


# --- a fleet of devices in one process (ours only: needs client.run()) ------------------


def rss_kb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def count_warnings():
    """Ours: count the client's warnings (reconnects, missing last values) by kind."""
    import logging

    counts = {}

    class Handler(logging.Handler):
        def emit(self, record):
            msg = record.msg if isinstance(record.msg, str) else str(record.msg)
            key = msg.split(";")[0].split("%")[0].strip()[:50]
            counts[key] = counts.get(key, 0) + 1

    h = Handler(logging.WARNING)
    for name in ("arduino_iot_cloud.engine", "arduino_iot_cloud.session", "arduino_iot_cloud.client"):
        lg = logging.getLogger(name)
        lg.addHandler(h)
        lg.propagate = False
    return counts


def bench_fleet(cfg):
    if not OURS:
        finish(error="n/a: 1.4.1 has no coroutine to run a client inside an existing event loop "
                     "(start() calls asyncio.run) and uses blocking sockets")
    import tracemalloc

    with open(cfg["devices_file"]) as f:
        devices = json.load(f)
    n = len(devices)
    use_tm = cfg.get("tracemalloc", True)
    rss0 = rss_kb()
    if use_tm:
        tracemalloc.start()
    written = [0]

    def on_write(c, value):
        written[0] += 1

    warnings = count_warnings()
    clients = []
    for i, dev in enumerate(devices):
        c = make_client(cfg, False, device=dev)
        c.register("v", value=i + 1)
        c.register("w", value=0, on_write=on_write)
        clients.append(c)
    cmds = StdinCommands()

    async def main():
        cpu0 = time.process_time()
        t0 = mono()
        ramp = cfg.get("ramp_per_s") or 0
        tasks = []
        for i, c in enumerate(clients):
            if ramp and i and i % 10 == 0:  # start clients at about `ramp` per second
                await asyncio.sleep(max(0.0, t0 + i / ramp - mono()))
            tasks.append(asyncio.create_task(c.run()))
        end = t0 + cfg["timeout"]
        attached = 0
        when = [None] * n  # seconds from start to attached, per device (50 ms resolution)
        while mono() < end:
            now = mono()
            for i, c in enumerate(clients):
                if when[i] is None and c.connected:
                    when[i] = now - t0
            attached = sum(1 for w in when if w is not None)
            if attached == n:
                break
            await asyncio.sleep(0.05)
        t_att = mono()
        emit("attached", t=t_att, attached=attached, seconds=t_att - t0)
        # The runner writes w on every device once it has seen every v.
        go = None
        while go is None and mono() < end:
            go = cmds.get()
            await asyncio.sleep(0.02)
        while written[0] < n and mono() < end:
            await asyncio.sleep(0.02)
        t_w = mono()
        still = sum(1 for c in clients if c.connected)
        rss1 = rss_kb()
        tm = tracemalloc.get_traced_memory() if use_tm else (0, 0)
        for c in clients:
            c.stop()
        await asyncio.wait(tasks, timeout=10)
        finish(devices=n, attached=attached, still_connected=still, written=written[0],
               cpu_s=time.process_time() - cpu0, client_warnings=warnings,
               attach_s=summary([w for w in when if w is not None]),
               attach_seconds=t_att - t0, write_seconds=t_w - t_att,
               rss_kb_per_device=(rss1 - rss0) / n, rss_kb_total=rss1,
               tracemalloc_kb_per_device=tm[0] / 1024 / n if use_tm else None)

    asyncio.run(main())


BENCHES = {
    "attach": bench_attach,
    "write_latency": bench_write_latency,
    "idle_update": bench_idle_update,
    "inbound": bench_inbound,
    "outbound": bench_outbound,
    "micro": bench_micro,
    "fleet": bench_fleet,
}

if __name__ == "__main__":
    config = json.loads(sys.argv[1])
    if _profiler is not None:
        signal.signal(signal.SIGTERM, _dump_profile)
        _profiler.enable()
    BENCHES[config["bench"]](config)
