"""The fleet runner: N simulated devices over P worker processes, against a cluster (CPython only).

Theory of operation
-------------------
The parent process holds the cluster (:class:`.cluster.ClusterCloud`: nodes,
HAProxy, the cloud emulator) and the dashboard side; each worker process runs
an asyncio loop with its share of the devices, each an
:class:`~arduino_iot_cloud.ArduinoCloudClient` of its own (own user, secret,
thing and TLS connection through HAProxy) driven by ``await client.run()``.

Phases: *ramp* (workers start their devices at ``ramp`` per second in all,
report each attach; the parent prints a progress bar), *steady* (``duration``
seconds: every device sets ``sent`` = milliseconds since the run's start, ``rate``
times a second, and the parent writes ``setpoint`` to each device every
``1/write_rate`` seconds, which the device answers by setting ``echo``), *settle*
(publishing stops; each worker waits until its devices are attached and have
nothing unsent, then reports the last ``sent`` of every device).

Figures: attach time (run() to attached), device-to-cloud latency (the
emulator's receive time minus ``sent``, both from the wall clock of this one
machine), dashboard-to-device latency (``on_write`` time minus the written
value), messages per second the cloud received, memory per device (worker RSS
growth, node RSS growth), and errors: devices that never attached, values
the cloud does not hold at the end (a lost latest value), echoes missing.

Node-loss rehearsal (``kill_node``): half-way through the steady phase one
node is killed (SIGKILL).  Its devices lose their connection, reconnect
through HAProxy with the client's own backoff, attach again and publish their
latest value; recovery time = the last of them attached again, counted from
the kill.
"""

from __future__ import annotations

import asyncio
import json
import logging
import multiprocessing
import os
import queue
import sys
import time
from typing import Any, Dict, List, Optional, Tuple

from .rabbit import cpu_s, rss_kb

log = logging.getLogger(__name__)

SETTLE_TIMEOUT = 30.0


def percentiles(values: List[float], points: Tuple[int, ...] = (50, 90, 99)) -> Dict[str, Optional[float]]:
    """Nearest-rank percentiles of ``values`` (and max, count), rounded to 0.1."""
    if not values:
        return dict({"p%d" % p: None for p in points}, max=None, count=0)
    ordered = sorted(values)
    out: Dict[str, Optional[float]] = {}
    for p in points:
        rank = max(1, -(-p * len(ordered) // 100))
        out["p%d" % p] = round(ordered[rank - 1], 1)
    out["max"] = round(ordered[-1], 1)
    out["count"] = len(ordered)
    return out


# -- worker process ------------------------------------------------------------------------------

def _worker(config: Dict[str, Any], reports: "multiprocessing.Queue", go: Any, stop: Any) -> None:
    """Entry point of a worker process (spawned): run its devices, report on ``reports``."""
    logging.basicConfig(level=logging.ERROR)
    try:
        asyncio.run(_run_devices(config, reports, go, stop))
    except Exception as exc:  # reported to the parent, which prints it with the summary
        reports.put(("error", config["worker"], "%s: %s" % (type(exc).__name__, exc)))
    reports.put(("exit", config["worker"], None))


async def _run_devices(config: Dict[str, Any], reports: Any, go: Any, stop: Any) -> None:
    from .. import ArduinoCloudClient

    t0 = config["t0"]
    worker = config["worker"]
    rss_before = rss_kb(os.getpid())
    clients = []
    write_latencies: List[float] = []
    state: Dict[str, Dict[str, Any]] = {}

    def ms_now() -> int:
        return int((time.time() - t0) * 1000)

    def on_write(client: Any, value: Any) -> None:
        st = state[client.device_id]
        if value > st["setpoint"]:  # not the initial 0, nor the latest write again in last values
            write_latencies.append(ms_now() - value)
            st["setpoint"] = value
            client["echo"] = value  # the answer the dashboard sees

    tasks = []
    interval = 1.0 / config["ramp"] if config["ramp"] > 0 else 0.0
    for device_id, secret in config["devices"]:
        client = ArduinoCloudClient(device_id, password=secret, server=config["host"], port=config["port"],
                                    ssl_params={"cafile": config["ca"]}, keepalive=config["keepalive"],
                                    reconnect_cap=config["reconnect_cap"])
        client.register("sent", value=0)
        client.register("echo", value=0)
        client.register("setpoint", value=None, on_write=on_write)
        clients.append(client)
        state[device_id] = {"started": time.monotonic(), "attached": None, "up": False, "lost": [],
                            "back": [], "last_sent": 0, "setpoint": 0}
        tasks.append(asyncio.ensure_future(client.run()))
        if interval:
            await asyncio.sleep(interval)

    async def watch() -> None:
        """One scan of all devices every 50 ms: attach times, connection losses, re-attaches."""
        while True:
            now = time.time()
            for client in clients:
                st = state[client.device_id]
                up = client.connected
                if up and not st["up"]:
                    if st["attached"] is None:
                        st["attached"] = time.monotonic() - st["started"]
                        reports.put(("attached", worker, st["attached"]))
                    else:
                        st["back"].append(now)
                elif st["up"] and not up:
                    st["lost"].append(now)
                st["up"] = up
            await asyncio.sleep(0.05)

    watcher = asyncio.ensure_future(watch())
    rss_attached = None
    while not go.is_set() and not stop.is_set():
        await asyncio.sleep(0.05)
    rss_attached = rss_kb(os.getpid())
    cpu_go = cpu_s(os.getpid())

    async def publish(client: Any) -> None:
        period = 1.0 / config["rate"]
        st = state[client.device_id]
        await asyncio.sleep(period * (hash(client.device_id) % 1000) / 1000.0)  # spread the fleet
        while not stop.is_set():
            value = ms_now()
            if value > st["last_sent"]:
                client["sent"] = value
                st["last_sent"] = value
            await asyncio.sleep(period)

    publishers = [asyncio.ensure_future(publish(c)) for c in clients] if config["rate"] > 0 else []
    while not stop.is_set():
        await asyncio.sleep(0.05)
    for p in publishers:
        p.cancel()
    cpu_steady = cpu_s(os.getpid()) - cpu_go
    # Settle: every device attached again with nothing left unsent, or the timeout.
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while time.monotonic() < deadline:
        if all(c.connected and not c.engine.pending_output() for c in clients):
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(1.0)  # PUBACKs of the last values
    reports.put(("result", worker, {
        "devices": {c.device_id: {"attach_s": state[c.device_id]["attached"],
                                  "last_sent": state[c.device_id]["last_sent"],
                                  "lost": state[c.device_id]["lost"], "back": state[c.device_id]["back"],
                                  "connected": c.connected} for c in clients},
        "write_latency_ms": write_latencies,
        "rss_kb": {"before": rss_before, "attached": rss_attached},
        "cpu_steady_s": cpu_steady,
    }))
    watcher.cancel()
    for c in clients:
        c.stop()
    await asyncio.gather(*tasks, return_exceptions=True)


# -- parent ----------------------------------------------------------------------------------------

class Fleet:
    """Runs a fleet against a started :class:`.cluster.ClusterCloud` and returns its summary."""

    def __init__(self, cloud: Any, devices: int, workers: int = 1, rate: float = 1.0, duration: float = 10.0,
                 write_rate: float = 0.2, ramp: float = 200.0, kill_node: Optional[int] = None,
                 reconnect_cap: float = 4.0, keepalive: int = 10, progress: Any = sys.stderr) -> None:
        if devices < 1 or workers < 1:
            raise ValueError("need at least one device and one worker")
        if rate < 0 or duration <= 0 or write_rate < 0:
            raise ValueError("rate and write rate must be >= 0 and duration > 0")
        if kill_node is not None and not 1 < kill_node <= cloud.node_count:
            raise ValueError("kill_node must name a node from 2 to %d (node 1 holds the emulator)"
                             % cloud.node_count)
        self.cloud = cloud
        self.count, self.workers = devices, min(workers, devices)
        self.rate, self.duration, self.write_rate = rate, duration, write_rate
        self.ramp, self.kill_node = ramp, kill_node
        self.reconnect_cap, self.keepalive = reconnect_cap, keepalive
        self.progress = progress
        self._shown, self._shown_at = -1, 0.0  # the progress bar's last state

    def _say(self, text: str, end: str = "\n") -> None:
        if self.progress is not None:
            self.progress.write(text + end)
            self.progress.flush()

    def run(self) -> Dict[str, Any]:
        cloud = self.cloud
        node_rss0 = cloud.node_memory_kb()
        # The command variant: nothing retained, so nothing to store on every node for them.
        cloud.stop_emulator()  # (an earlier run's: it serves only its own devices)
        devs = cloud.add_devices(self.count, properties={"setpoint": 0}, variant="command")
        emulator = cloud.start_emulator(only=devs)
        ctx = multiprocessing.get_context("spawn")
        reports = ctx.Queue()
        go, stop = ctx.Event(), ctx.Event()
        t0 = time.time()
        shares = [devs[i::self.workers] for i in range(self.workers)]
        procs = []
        for i, share in enumerate(shares):
            config = {"worker": i, "t0": t0, "host": cloud.host, "port": cloud.port, "ca": cloud.ca_file,
                      "devices": [(d.device_id, d.secret) for d in share], "rate": self.rate,
                      "ramp": self.ramp / self.workers, "keepalive": self.keepalive,
                      "reconnect_cap": self.reconnect_cap}
            p = ctx.Process(target=_worker, args=(config, reports, go, stop), name="fleet-worker-%d" % i)
            p.start()
            procs.append(p)
        errors: List[str] = []
        results: Dict[int, Dict[str, Any]] = {}
        exited = set()

        def drain(block_s: float) -> None:
            try:
                item = reports.get(timeout=block_s)
            except queue.Empty:
                return
            kind, worker, detail = item
            if kind == "attached":
                attach_times.append(detail)
            elif kind == "result":
                results[worker] = detail
            elif kind == "error":
                errors.append("worker %d: %s" % (worker, detail))
            elif kind == "exit":
                exited.add(worker)

        try:
            # Ramp: a progress bar until every device attached (or stalled).
            attach_times: List[float] = []
            ramp_start = time.monotonic()
            ramp_limit = self.count / max(self.ramp, 1) + 30 + self.count * 0.02
            while len(attach_times) < self.count and time.monotonic() - ramp_start < ramp_limit:
                drain(0.2)
                if len(exited) == len(procs):
                    break
                self._bar(len(attach_times), time.monotonic() - ramp_start)
            ramp_s = time.monotonic() - ramp_start
            self._bar(len(attach_times), ramp_s)
            self._say("")
            node_rss1 = cloud.node_memory_kb()
            received0 = self._received(emulator, devs)
            cpu0 = (cpu_s(os.getpid()), cloud.rabbit.cpu_s())
            go.set()
            # Steady: dashboard writes, and the node loss half-way.
            steady_start = time.monotonic()
            kill_at = steady_start + self.duration / 2 if self.kill_node is not None else None
            killed_wall: Optional[float] = None
            writes_sent = 0
            next_write = steady_start
            order = 0
            write_period = 1.0 / (self.write_rate * self.count) if self.write_rate > 0 else None
            while time.monotonic() - steady_start < self.duration:
                now = time.monotonic()
                if kill_at is not None and self.kill_node is not None and now >= kill_at and killed_wall is None:
                    node = cloud.rabbit.nodes[self.kill_node - 1]
                    killed_wall = time.time()
                    cloud.rabbit.kill_node(node)
                    self._say("killed node %s at +%.1f s of the steady phase" % (node.name, now - steady_start))
                if write_period is not None:
                    while next_write <= now:
                        dev = devs[order % self.count]
                        order += 1
                        try:
                            emulator.set(dev, "setpoint", int((time.time() - t0) * 1000))
                            writes_sent += 1
                        except Exception as exc:  # counted, not fatal: the run goes on
                            errors.append("write to %s: %s" % (dev.device_id, exc))
                        next_write += write_period
                drain(0.02)
            received1 = self._received(emulator, devs)
            steady_s = time.monotonic() - steady_start
            nodes_cpu = cloud.rabbit.cpu_s()  # (a node killed meanwhile is left out)
            cpu = {"emulator_process": cpu_s(os.getpid()) - cpu0[0],
                   "nodes": sum(nodes_cpu[n] - cpu0[1][n] for n in nodes_cpu if n in cpu0[1])}
            stop.set()
            settle_limit = time.monotonic() + SETTLE_TIMEOUT + 20
            while len(results) + len([w for w in exited if w not in results]) < len(procs) \
                    and time.monotonic() < settle_limit:
                drain(0.2)
            summary = self._summary(devs, emulator, results, errors, t0, attach_times, ramp_s, steady_s,
                                    received1 - received0, writes_sent, node_rss0, node_rss1, killed_wall)
            cpu["workers"] = sum(r.get("cpu_steady_s", 0.0) for r in results.values())
            # Share of one core each side used during the steady phase: what limits the fleet.
            summary["cpu_cores_steady"] = {k: round(v / steady_s, 2) for k, v in cpu.items()}
        finally:
            stop.set()
            for p in procs:
                p.join(15)
                if p.is_alive():
                    p.kill()
                    p.join()
        return summary

    def _bar(self, done: int, elapsed: float) -> None:
        if done == self._shown and elapsed - self._shown_at < 1.0:
            return
        self._shown, self._shown_at = done, elapsed
        width = 30
        filled = int(width * done / self.count)
        self._say("\rattaching [%s%s] %d/%d devices, %d workers, %.1f s"
                  % ("#" * filled, "." * (width - filled), done, self.count, self.workers, elapsed), end="")

    @staticmethod
    def _received(emulator: Any, devs: List[Any]) -> int:
        """Values of ``sent`` the cloud has received so far, all devices together."""
        with emulator._cond:
            return sum(emulator.things[d.thing_id].reports.get("sent", 0) for d in devs
                       if d.thing_id in emulator.things)

    def _summary(self, devs: List[Any], emulator: Any, results: Dict[int, Dict[str, Any]], errors: List[str],
                 t0: float, attach_times: List[float], ramp_s: float, steady_s: float, received: int,
                 writes_sent: int, node_rss0: int, node_rss1: int, killed_wall: Optional[float]) -> Dict[str, Any]:
        per_device: Dict[str, Dict[str, Any]] = {}
        write_lat: List[float] = []
        worker_growth = 0
        for res in results.values():
            per_device.update(res["devices"])
            write_lat.extend(res["write_latency_ms"])
            if res["rss_kb"]["attached"] is not None:
                worker_growth += res["rss_kb"]["attached"] - res["rss_kb"]["before"]
        # Device-to-cloud latency, from the emulator's receive times (last HISTORY_MAX per device).
        uplink: List[float] = []
        lost_latest, missing_echo = [], 0
        deadline = time.monotonic() + 10
        for dev in devs:
            info = per_device.get(dev.device_id)
            if info is None:
                continue
            last = info["last_sent"]
            if last:
                try:  # the last value may still be on its way
                    emulator.wait_for(dev, "sent", lambda v, last=last: v == last,
                                      timeout=max(0.01, deadline - time.monotonic()))
                except TimeoutError:
                    lost_latest.append(dev.device_id)
            for when, value in emulator.history(dev, "sent", timestamps=True):
                if value > 0:  # 0 is the initial value each device reports when it attaches
                    uplink.append((when - t0) * 1000 - value)
            values = emulator.values(dev)
            if values.get("setpoint") and values.get("echo") != values.get("setpoint"):
                missing_echo += 1  # the device did not answer the latest write
        attached = [v for v in attach_times if v is not None]
        summary: Dict[str, Any] = {
            "devices": self.count, "workers": self.workers, "nodes": self.cloud.node_count,
            "rate_per_device": self.rate, "attached": len(attached), "ramp_s": round(ramp_s, 2),
            "attach_ms": percentiles([a * 1000 for a in attached]),
            "steady_s": round(steady_s, 2), "messages_received": received,
            "messages_per_s": round(received / steady_s, 1) if steady_s else None,
            "uplink_latency_ms": percentiles(uplink),
            "writes_sent": writes_sent, "write_latency_ms": percentiles(write_lat),
            "latest_write_unanswered": missing_echo,
            "lost_latest_values": len(lost_latest),
            "device_rss_kb_per_device": round(worker_growth / self.count, 1) if results else None,
            "broker_rss_kb_per_device": round((node_rss1 - node_rss0) / self.count, 1),
            "errors": errors + ["no result from %d devices" % (self.count - len(per_device))
                                if len(per_device) < self.count else ""],
        }
        summary["errors"] = [e for e in summary["errors"] if e]
        if killed_wall is not None:
            hit = [info for info in per_device.values() if any(t >= killed_wall for t in info["lost"])]
            back = [min(t for t in info["back"] if t >= killed_wall) for info in hit
                    if any(t >= killed_wall for t in info["back"])]
            summary["node_loss"] = {
                "node": "lc%s@localhost" % self.kill_node, "devices_cut": len(hit), "devices_back": len(back),
                "recovery_s": round(max(back) - killed_wall, 2) if back and len(back) == len(hit) else None,
                "median_back_s": round(sorted(back)[len(back) // 2] - killed_wall, 2) if back else None,
            }
        return summary


def format_summary(s: Dict[str, Any]) -> str:
    """The summary as a few readable lines."""
    def pct(d: Dict[str, Any]) -> str:
        if not d.get("count"):
            return "none"
        return "p50 %s / p90 %s / p99 %s / max %s ms (%d)" % (d["p50"], d["p90"], d["p99"], d["max"], d["count"])
    lines = [
        "fleet: %d devices over %d workers on %d node(s); %d attached in %.1f s"
        % (s["devices"], s["workers"], s["nodes"], s["attached"], s["ramp_s"]),
        "attach time:        %s" % pct(s["attach_ms"]),
        "device -> cloud:    %s; %s msg/s held for %.0f s (%s per device per s)"
        % (pct(s["uplink_latency_ms"]), s["messages_per_s"], s["steady_s"], s["rate_per_device"]),
        "dashboard -> device: %s; %d writes sent, %d devices did not echo their latest"
        % (pct(s["write_latency_ms"]), s["writes_sent"], s["latest_write_unanswered"]),
        "memory per device:  %s kB in the device processes, %s kB in RabbitMQ"
        % (s["device_rss_kb_per_device"], s["broker_rss_kb_per_device"]),
        "latest values lost: %d" % s["lost_latest_values"],
    ]
    if "cpu_cores_steady" in s:
        lines.append("cores busy (steady): %s" % ", ".join("%s %.2f" % kv for kv in sorted(s["cpu_cores_steady"].items())))
    if "node_loss" in s:
        nl = s["node_loss"]
        lines.append("node loss:          %s killed; %d devices cut, %d back; recovery %s s (median %s s)"
                     % (nl["node"], nl["devices_cut"], nl["devices_back"], nl["recovery_s"], nl["median_back_s"]))
    lines.append("errors:             %s" % ("none" if not s["errors"] else "; ".join(s["errors"][:10])))
    return "\n".join(lines)


def dumps(summary: Dict[str, Any]) -> str:
    return json.dumps(summary, indent=2, sort_keys=True)
