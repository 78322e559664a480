"""Fleets on a clustered broker: what 1 and 3 RabbitMQ nodes behind HAProxy hold on this machine.

    python benchmarks/cluster.py              # both cluster sizes, device and rate ladders (~10 min)
    python benchmarks/cluster.py --nodes 3 --devices 250,500 --rates 5 --duration 10

For each cluster size it starts a fresh cluster (nodes, HAProxy, emulator, as
``python -m arduino_iot_cloud.localcloud fleet`` does), then runs the fleet
runner (src/arduino_iot_cloud/localcloud/fleet.py) on a ladder:

* devices: N devices over 2 worker processes, each publishing 1 value/s and
  answering a dashboard write every 5 s;
* rate: 100 devices publishing R values/s each.

A step is *held* when every device attached, no error was counted, the cloud
received at least 95 % of the values offered and the device-to-cloud p99 stayed
under 1 s.  With 3 nodes it ends with the node-loss rehearsal (node 3 killed
half-way through 20 s of 100 devices at 1 value/s) and reports the recovery time.
Memory per device: growth of the worker processes' RSS and of the nodes' RSS
while the devices attached, divided by the devices.

Prints one line per step and a summary table; JSON in benchmarks/results/cluster.json.
Nothing here fails on speed.
"""

import argparse
import json
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "src"))

from arduino_iot_cloud.localcloud.cluster import ClusterCloud  # noqa: E402
from arduino_iot_cloud.localcloud.fleet import Fleet  # noqa: E402

RESULTS = os.path.join(HERE, "results")


def held(s, offered_per_s):
    return (s["attached"] == s["devices"] and not s["errors"] and s["lost_latest_values"] == 0
            and s["messages_per_s"] is not None and s["messages_per_s"] >= 0.95 * offered_per_s
            and (s["uplink_latency_ms"]["p99"] or 0) < 1000)


def step_line(label, s, ok):
    u = s["uplink_latency_ms"]
    return ("%-26s %s  attached %d/%d in %5.1f s  %7.1f msg/s  uplink p50/p99 %s/%s ms  "
            "write p50/p99 %s/%s ms  %s kB/device (devices) %s kB/device (nodes)  cores busy %s%s" % (
                label, "held  " if ok else "FAILED", s["attached"], s["devices"], s["ramp_s"],
                s["messages_per_s"] or 0, u["p50"], u["p99"], s["write_latency_ms"]["p50"],
                s["write_latency_ms"]["p99"], s["device_rss_kb_per_device"], s["broker_rss_kb_per_device"],
                ", ".join("%s %.2f" % kv for kv in sorted(s.get("cpu_cores_steady", {}).items())),
                "" if not s["errors"] else "  errors: %s" % "; ".join(s["errors"][:3])))


def run_step(cloud, label, devices, **kw):
    """One fleet run; a run that breaks (the cluster overloaded) is reported, not fatal."""
    try:
        return Fleet(cloud, devices, progress=None, **kw).run()
    except Exception as exc:
        print("%-26s broke: %s: %s" % (label, type(exc).__name__, exc), flush=True)
        return None


def run_size(nodes, devices, rates, duration, workers):
    out = {"nodes": nodes, "devices": [], "rates": [], "rehearsal": None}
    with tempfile.TemporaryDirectory(prefix="lc-bench-cluster-") as tmp:
        cloud = ClusterCloud(tmp, nodes=nodes)
        t0 = time.monotonic()
        cloud.start()
        out["start_s"] = round(time.monotonic() - t0, 1)
        print("%d node(s): cluster up in %.1f s" % (nodes, out["start_s"]), flush=True)
        try:
            for n in devices:
                s = run_step(cloud, "%d devices x 1/s" % n, n, workers=workers, rate=1.0, duration=duration,
                             write_rate=0.2)
                if s is None:
                    continue
                ok = held(s, n * 1.0)
                out["devices"].append({"summary": s, "held": ok})
                print(step_line("%d devices x 1/s" % n, s, ok), flush=True)
            for r in rates:
                s = run_step(cloud, "100 devices x %g/s" % r, 100, workers=workers, rate=r, duration=duration,
                             write_rate=0.2)
                if s is None:
                    continue
                ok = held(s, 100 * r)
                out["rates"].append({"rate": r, "summary": s, "held": ok})
                print(step_line("100 devices x %g/s" % r, s, ok), flush=True)
            s = None
            if nodes >= 3:
                s = run_step(cloud, "node loss", 100, workers=workers, rate=1.0, duration=20.0, write_rate=0.2,
                             kill_node=nodes)
            if s is not None:
                out["rehearsal"] = s
                nl = s["node_loss"]
                print("node loss: %s killed, %d devices cut, %d back, recovery %s s (median %s s), "
                      "latest values lost %d" % (nl["node"], nl["devices_cut"], nl["devices_back"],
                                                 nl["recovery_s"], nl["median_back_s"], s["lost_latest_values"]),
                      flush=True)
        finally:
            cloud.stop()
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--nodes", default="1,3", help="cluster sizes, comma-separated")
    p.add_argument("--devices", default="250,500,1000", help="device ladder at 1 value/s")
    p.add_argument("--rates", default="5,10,20", help="values/s per device for 100 devices")
    p.add_argument("--duration", type=float, default=15.0, help="steady seconds per step")
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args()
    ints = lambda text: [int(x) for x in text.split(",") if x]  # noqa: E731
    results = {"machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
               "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "sizes": []}
    for nodes in ints(args.nodes):
        results["sizes"].append(run_size(nodes, ints(args.devices),
                                         [float(x) for x in args.rates.split(",") if x], args.duration,
                                         args.workers))
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "cluster.json"), "w") as f:
        json.dump(results, f, indent=2)
    print("\n| nodes | most devices held (1 value/s each) | most messages/s held | kB per device: devices / nodes |")
    print("|---|---|---|---|")
    for size in results["sizes"]:
        dev_ok = [d["summary"] for d in size["devices"] if d["held"]]
        all_steps = [d["summary"] for d in size["devices"]] + [r["summary"] for r in size["rates"]]
        msg_ok = [s for s in all_steps if held(s, s["devices"] * s["rate_per_device"])]
        best_dev = max(dev_ok, key=lambda s: s["devices"]) if dev_ok else None
        best_msg = max(msg_ok, key=lambda s: s["messages_per_s"]) if msg_ok else None
        mem = max(dev_ok or all_steps, key=lambda s: s["devices"]) if all_steps else None
        print("| %d | %s | %s | %s / %s |" % (
            size["nodes"], best_dev["devices"] if best_dev else "none",
            "%.0f" % best_msg["messages_per_s"] if best_msg else "none",
            mem["device_rss_kb_per_device"] if mem else "-", mem["broker_rss_kb_per_device"] if mem else "-"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
