"""CLI commands for fleets and other brokers: ``cluster``, ``fleet`` and ``emulate``.

``cluster start|stop|status|add-device`` manage a RabbitMQ cluster behind
HAProxy in ``<workdir>/cluster`` (see :mod:`.cluster`); ``fleet`` runs the fleet
runner (:mod:`.fleet`) on the running cluster, or on one it starts and stops for
the run; ``emulate`` runs the cloud emulator against any MQTT 3.1.1 broker.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from .cluster import ClusterCloud
from .emulator import CloudEmulator
from .store import Device, Store

PASSWORD_ENV = "ARDUINO_LOCALCLOUD_BROKER_PASSWORD"


def _wait_for_interrupt() -> None:
    signal.signal(signal.SIGTERM, lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass


def cmd_cluster(args: argparse.Namespace) -> int:
    from .cli import CliError  # (cli imports this module)

    try:
        return _cluster(args)
    except RuntimeError as exc:  # RabbitError, HAProxyError, "no cluster runs in ...": said plainly
        raise CliError(str(exc)) from None


def _cluster(args: argparse.Namespace) -> int:
    cc = ClusterCloud(args.workdir, nodes=args.nodes)
    if args.action == "start":
        cc.start()
        print("cluster of %d RabbitMQ nodes up; devices connect to %s:%d (TLS, CA %s)"
              % (args.nodes, cc.host, cc.port, cc.ca_file))
        print("stop it with: python -m arduino_iot_cloud.localcloud --workdir %s cluster stop"
              % Path(args.workdir).resolve())
        return 0
    if args.action == "stop":
        had = cc.rabbit.state_file.exists()
        cc.stop()
        print("cluster stopped" if had else "no cluster was running; leftovers cleaned up")
        return 0
    cc.attach()
    if args.action == "status":
        status = cc.status()
        if args.json:
            print(json.dumps(status, indent=2))
        else:
            print("HAProxy %s: %s" % (status["haproxy"], ", ".join("%s %s" % kv for kv in
                                                                    sorted(status["backends"].items()))))
            for node in status["nodes"]:
                print("%-16s MQTT/TLS 127.0.0.1:%d  %s  RSS %s kB" % (
                    node["name"], node["mqtt_port"], "running" if node["name"] in status["running"] else "DOWN",
                    node["rss_kb"]))
        return 0
    if args.action == "add-device":
        devs = cc.add_devices(args.count)
        rows = [{"device_id": d.device_id, "secret": d.secret, "thing_id": d.thing_id} for d in devs]
        print(json.dumps(rows, indent=2) if args.json else "\n".join(
            "%s %s (thing %s)" % (r["device_id"], r["secret"], r["thing_id"]) for r in rows))
        print("the secrets are shown once; serve the devices with: cluster emulate", file=sys.stderr)
        return 0
    if args.action == "emulate":
        cc.start_emulator()
        print("cloud emulator serving %d devices on node 1; Ctrl-C stops it" % len(cc.store.load()["devices"]),
              flush=True)
        try:
            _wait_for_interrupt()
        finally:
            cc.stop_emulator()
        return 0
    raise ValueError(args.action)


def cmd_fleet(args: argparse.Namespace) -> int:
    from .fleet import Fleet, dumps, format_summary

    cc = ClusterCloud(args.workdir, nodes=args.nodes)
    started_here = not cc.rabbit.state_file.exists()
    if started_here:
        print("starting a %d-node cluster for this run (several seconds per node)..." % args.nodes, file=sys.stderr)
        cc.start()
    else:
        cc.attach()
    try:
        summary = Fleet(cc, args.devices, workers=args.workers, rate=args.rate, duration=args.duration,
                        write_rate=args.write_rate, ramp=args.ramp, kill_node=args.kill_node,
                        reconnect_cap=args.reconnect_cap).run()
    finally:
        cc.stop_emulator()
        if started_here:
            cc.stop()
    print(dumps(summary) if args.json else format_summary(summary))
    return 0 if not summary["errors"] and not summary["lost_latest_values"] else 2


def cmd_emulate(args: argparse.Namespace) -> int:
    from .cli import CliError  # (cli imports this module)

    host, _, port = args.broker.rpartition(":")
    if not host or not port.isdigit():
        raise CliError("--broker must be HOST:PORT, not %r" % args.broker)
    password = os.environ.get(PASSWORD_ENV)
    if password is None:
        raise CliError("put the broker password of %r in $%s (never on the command line)"
                       % (args.user, PASSWORD_ENV))
    store = Store(Path(args.workdir) / "devices.json")
    data = store.load()
    emulator = CloudEmulator(host, int(port), args.user, password, tls_ca=args.cafile, mqtt5=args.mqtt5)
    for raw in data["devices"].values():
        dev = Device.from_json(raw)
        emulator.add_device(dev, data["things"].get(dev.thing_id, {}).get("values", {}))
    emulator.start()
    print("cloud emulator on %s as %s, serving %d devices from %s; Ctrl-C stops it"
          % (args.broker, args.user, len(data["devices"]), store.path), flush=True)
    try:
        _wait_for_interrupt()
    finally:
        emulator.stop()
    return 0


def add_commands(sub: Any) -> None:
    """Add ``cluster``, ``fleet`` and ``emulate`` to the CLI's subparsers."""
    c = sub.add_parser("cluster", help="a RabbitMQ cluster behind HAProxy on 127.0.0.1 (for fleets)")
    c.add_argument("action", choices=("start", "stop", "status", "add-device", "emulate"))
    c.add_argument("--nodes", type=int, default=3, help="nodes to start (start; default 3)")
    c.add_argument("--count", type=int, default=1, help="devices to add (add-device)")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_cluster)

    f = sub.add_parser("fleet", help="N simulated devices over P processes against the cluster; prints a summary")
    f.add_argument("--devices", type=int, default=100)
    f.add_argument("--workers", type=int, default=2, help="worker processes")
    f.add_argument("--rate", type=float, default=1.0, help="values each device publishes per second")
    f.add_argument("--duration", type=float, default=10.0, help="seconds of steady load after the ramp")
    f.add_argument("--write-rate", type=float, default=0.2, help="dashboard writes per device per second")
    f.add_argument("--ramp", type=float, default=200.0, help="device starts per second, all workers together")
    f.add_argument("--nodes", type=int, default=3, help="nodes, when the run starts its own cluster")
    f.add_argument("--kill-node", type=int, metavar="I",
                   help="node-loss rehearsal: kill node I (2..n) half-way through the steady phase")
    f.add_argument("--reconnect-cap", type=float, default=4.0, help="the devices' backoff cap, seconds")
    f.add_argument("--json", action="store_true", help="print the summary as JSON")
    f.set_defaults(func=cmd_fleet)

    e = sub.add_parser("emulate", help="the cloud emulator against any MQTT 3.1.1 broker, for this work "
                                       "directory's devices (password in $%s)" % PASSWORD_ENV)
    e.add_argument("--broker", required=True, metavar="HOST:PORT")
    e.add_argument("--user", required=True, help="the emulator's broker user (may read and write all device topics)")
    e.add_argument("--cafile", help="connect with TLS, checking the broker against this CA (default: plain MQTT)")
    e.add_argument("--mqtt5", action="store_true",
                   help="speak MQTT 5 (lets the emulator see a device's retain flag; RabbitMQ 3.10 has 3.1.1 only)")
    e.set_defaults(func=cmd_emulate)

