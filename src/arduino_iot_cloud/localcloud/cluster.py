"""ClusterCloud: the local cloud on a RabbitMQ cluster behind HAProxy (CPython only).

Work directory layout (``<workdir>/cluster``)::

    pki/            local CA and server certificate (as for the mosquitto cloud)
    home/           the nodes' private HOME: .erlang.cookie (mode 0400)
    node<i>/        one node's rabbitmq.conf, mnesia/, log/, console.txt, rabbit.pid
    haproxy/        haproxy.cfg, haproxy.log, haproxy.pid, haproxy.sock (stats)
    admin.json      the emulator's RabbitMQ user and password (mode 0600)
    devices.json    devices and their things' last values (no secrets), see :mod:`.store`
    cluster.json    while running: ports of every node, epmd and HAProxy

Devices connect to HAProxy's one TLS port.  The emulator connects to node 1's
TLS listener directly: its subscriptions live on the node it is connected to,
and the fault rehearsal stops another node, as a real back end would keep its
consumers on nodes (or quorum queues) that survive.  Event-variant devices get
their retained ``e/i`` from every node (RabbitMQ keeps retained messages per
node), see :class:`RetainedOnEveryNode`.
"""

from __future__ import annotations

import json
import logging
import secrets
import shutil
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import paho.mqtt.client as mqtt

from .broker import HOST, _write_private
from .emulator import CloudEmulator
from .haproxy import HAProxy
from .pki import Pki
from .rabbit import RabbitCluster, RabbitError, rss_kb
from .store import Device, Store

log = logging.getLogger(__name__)

ADMIN_USER = "localcloud-admin"


class RetainedOnEveryNode:
    """Publishes retained messages through one connection to each node.

    RabbitMQ's MQTT plugin stores a retained message on the node that received
    it and hands it only to subscribers of that node (and only for an exact topic
    match, never through a wildcard subscription).  Devices subscribe to their own
    exact ``/a/d/<id>/e/i``, so storing it on every node is enough.
    """

    def __init__(self, endpoints: List[Tuple[str, int]], user: str, password: str, ca: str) -> None:
        self._clients: List[mqtt.Client] = []
        for i, (host, port) in enumerate(endpoints):
            c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="localcloud-retain-%d-%s"
                            % (i, secrets.token_hex(3)), clean_session=True, protocol=mqtt.MQTTv311)
            c.username_pw_set(user, password)
            c.tls_set(ca_certs=ca)
            c.reconnect_delay_set(min_delay=0.2, max_delay=2)  # type: ignore[arg-type]
            c.connect_async(host, port, keepalive=30)
            c.loop_start()
            self._clients.append(c)

    def __call__(self, topic: str, payload: bytes) -> None:
        for c in self._clients:
            c.publish(topic, payload, qos=1, retain=True)

    def stop(self) -> None:
        for c in self._clients:
            c.disconnect()
            c.loop_stop()


class ClusterCloud:
    """``nodes`` RabbitMQ nodes + HAProxy + the cloud emulator, state in ``workdir/cluster``.

    ``start()`` / ``stop()`` (or ``with``) run the broker side; ``attach()``
    re-opens a cluster that ``cluster start`` left running;
    :meth:`add_devices` makes devices (users, permissions, things);
    :meth:`start_emulator` serves them.
    """

    def __init__(self, workdir: Union[str, Path] = ".localcloud", nodes: int = 3) -> None:
        self.dir = Path(workdir).resolve() / "cluster"
        self.node_count = nodes
        self.pki = Pki(self.dir / "pki")
        self.store = Store(self.dir / "devices.json")
        self.rabbit = RabbitCluster(self.dir, self.pki.ca_file, self.pki.server_cert, self.pki.server_key)
        self.haproxy: Optional[HAProxy] = None
        self.emulator: Optional[CloudEmulator] = None
        self._retained: Optional[RetainedOnEveryNode] = None
        self._lock = threading.Lock()

    # -- credentials and addresses -----------------------------------------------------------

    def admin_credentials(self) -> Dict[str, str]:
        path = self.dir / "admin.json"
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            self.dir.mkdir(parents=True, exist_ok=True)
            data = {"user": ADMIN_USER, "password": secrets.token_urlsafe(24)}
            _write_private(path, json.dumps(data))
            return data

    @property
    def host(self) -> str:
        return HOST

    @property
    def port(self) -> int:
        """HAProxy's TLS port: the one address devices use."""
        if self.haproxy is None:
            raise RuntimeError("the cluster is not running")
        return self.haproxy.port

    @property
    def ca_file(self) -> str:
        return str(self.pki.ca_file)

    def env(self) -> Dict[str, str]:
        """The variables that point a device script at the cluster (through HAProxy)."""
        return {"ARDUINO_IOT_CLOUD_SERVER": HOST, "ARDUINO_IOT_CLOUD_PORT": str(self.port),
                "ARDUINO_IOT_CLOUD_CA": self.ca_file}

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> "ClusterCloud":
        """Start the nodes, cluster them, start HAProxy; record the ports in cluster.json."""
        if self.rabbit.state_file.exists():
            self.rabbit.load()
            if self.rabbit.live_nodes():
                raise RuntimeError("a cluster already runs in %s (stop it first: cluster stop)" % self.dir)
            self.stop()  # what a crashed run left: HAProxy, epmd, the state file
        t0 = time.monotonic()
        self.dir.mkdir(parents=True, exist_ok=True)
        self.pki.ensure()
        self.rabbit.admin = self.admin_credentials()
        # Every start is a fresh cluster: device users live only in its Mnesia, and secrets are
        # never stored, so devices of an earlier run could not log in anyway.
        for old in self.dir.glob("node*"):
            shutil.rmtree(old)
        self.store.path.unlink(missing_ok=True)
        try:
            self.rabbit.start(self.node_count)
            self.haproxy = HAProxy(self.dir / "haproxy", [(HOST, n.mqtt_port) for n in self.rabbit.nodes])
            self.haproxy.start()
            self.rabbit.save({"haproxy_port": self.haproxy.port})
        except BaseException:
            self.stop()
            raise
        log.info("cluster of %d nodes behind HAProxy %s:%d up in %.1f s", self.node_count, HOST,
                 self.haproxy.port, time.monotonic() - t0)
        return self

    def attach(self) -> "ClusterCloud":
        """Use the cluster that ``cluster start`` left running in this work directory."""
        try:
            data = self.rabbit.load()
        except FileNotFoundError:
            raise RuntimeError("no cluster runs in %s (start one: cluster start)" % self.dir) from None
        self.node_count = len(self.rabbit.nodes)
        self.haproxy = HAProxy(self.dir / "haproxy", [(HOST, n.mqtt_port) for n in self.rabbit.nodes],
                               port=int(data["haproxy_port"]))
        return self

    def stop(self) -> None:
        """Stop the emulator, HAProxy, every node and epmd; idempotent, never leaves a process."""
        self.stop_emulator()
        if self.haproxy is None and (self.dir / "haproxy" / "haproxy.pid").exists():
            self.haproxy = HAProxy(self.dir / "haproxy", [])
        if self.haproxy is not None:
            self.haproxy.stop()
        if not self.rabbit.nodes and self.rabbit.state_file.exists():
            self.rabbit.load()
        self.rabbit.stop()
        self.rabbit.state_file.unlink(missing_ok=True)

    def __enter__(self) -> "ClusterCloud":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def status(self) -> Dict[str, Any]:
        """Nodes (running or not, MQTT port, memory), the cluster's view, HAProxy's view."""
        if not self.rabbit.nodes:
            self.attach()
        memory = self.rabbit.memory_kb()
        try:
            backends = self.haproxy.server_states() if self.haproxy else {}
        except OSError:
            backends = {}
        return {"haproxy": "%s:%d" % (HOST, self.port), "backends": backends,
                "running": self.rabbit.running_nodes(),
                "nodes": [{"name": n.name, "mqtt_port": n.mqtt_port, "rss_kb": memory.get(n.name)}
                          for n in self.rabbit.nodes]}

    # -- devices and the emulator --------------------------------------------------------------

    def add_devices(self, count: int, properties: Optional[Dict[str, Any]] = None,
                    variant: str = "both") -> List[Device]:
        """Make ``count`` password devices, each with its own thing, secret and RabbitMQ user
        confined to its own topics.  The secrets are only in the returned Devices."""
        devs = []
        for _ in range(count):
            dev = Device(str(uuid.uuid4()), auth="password", variant=variant, thing_id=str(uuid.uuid4()),
                         tz_dst_until=int(time.time()) + 365 * 86400)
            dev.secret = secrets.token_urlsafe(18)
            devs.append(dev)
        self.rabbit.add_users((d.device_id, d.secret or "", d.thing_id) for d in devs)
        values = dict(properties or {})

        def change(data: Dict[str, Any]) -> None:
            for dev in devs:
                data["devices"][dev.device_id] = dev.to_json()
                if values:
                    data["things"].setdefault(dev.thing_id, {"values": {}})["values"].update(values)
        self.store.update(change)
        if self.emulator is not None:
            for dev in devs:
                self.emulator.add_device(dev, values)
            self.emulator.barrier()
        return devs

    def start_emulator(self, node: int = 1, only: Optional[List[Device]] = None) -> CloudEmulator:
        """Serve the stored devices (or ``only`` these), connected (TLS) to node ``node`` as the admin user."""
        with self._lock:
            if self.emulator is not None:
                return self.emulator
            admin = self.admin_credentials()
            target = self.rabbit.nodes[node - 1]
            emulator = CloudEmulator(HOST, target.mqtt_port, admin["user"], admin["password"], tls_ca=self.ca_file,
                                     mqtt5=False)  # RabbitMQ 3.10 speaks MQTT 3.1.1 only
            self._retained = RetainedOnEveryNode([(HOST, n.mqtt_port) for n in self.rabbit.nodes if n is not target],
                                                 admin["user"], admin["password"], self.ca_file)
            emulator.retain_publisher = self._retained
            data = self.store.load()
            wanted = None if only is None else {d.device_id for d in only}
            for device_id, raw in data["devices"].items():
                if wanted is None or device_id in wanted:
                    dev = Device.from_json(raw)
                    emulator.add_device(dev, data["things"].get(dev.thing_id, {}).get("values", {}))
            emulator.start()
            self.emulator = emulator
            return emulator

    def stop_emulator(self) -> None:
        with self._lock:
            emulator, self.emulator = self.emulator, None
            retained, self._retained = self._retained, None
        if emulator is not None:
            try:
                self.store.save_values(emulator.last_values())
            except Exception:
                log.exception("could not save last values")
            emulator.stop()
        if retained is not None:
            retained.stop()

    def node_memory_kb(self) -> int:
        """Resident memory of all running nodes together (kB)."""
        return sum(self.rabbit.memory_kb().values())

    def haproxy_memory_kb(self) -> int:
        pid = self.haproxy.proc.pid if self.haproxy and self.haproxy.proc else None
        return rss_kb(pid) if pid else 0


__all__ = ["ClusterCloud", "RabbitError", "RetainedOnEveryNode"]
