"""A RabbitMQ cluster on 127.0.0.1 with the MQTT plugin, for fleets (CPython only).

Theory of operation
-------------------
Each node is a plain ``rabbitmq-server`` process of its own (never Debian's
service): its own node name (``lc<i>@localhost``), data, log and config
directories under ``<dir>/node<i>``, one MQTT-over-TLS listener on 127.0.0.1
(the local CA's server certificate) and an Erlang distribution port on
127.0.0.1.  All nodes share one private ``epmd`` port and one Erlang cookie in a
private ``HOME``; nothing listens on another address (epmd also binds ::1, the
IPv6 loopback, which it always does).  No AMQP listener is opened.

Nodes start together; nodes 2..n then ``join_cluster`` node 1 (classic
clustering: users and permissions live in the replicated Mnesia database, so
they are imported once, on any node).  ``stop`` stops every node with
``rabbitmqctl stop`` (which waits for the VM to exit), kills what is left of a
node's process group, and finally the private epmd.

Authorisation (RabbitMQ's MQTT plugin maps topic ``/a/d/x/c/up`` to routing key
``.a.d.x.c.up`` on ``amq.topic`` and checks AMQP-style topic permissions on it):
each device is a user whose topic permissions allow writing only its own
``c/up`` and its thing's ``e/o``/``shadow/o``, and reading only its own
``e/i``/``c/dw`` and its thing's ``e/i``/``shadow/i``; ``{username}`` is
expanded by RabbitMQ, the thing id is written in literally.  Its vhost
permissions cover only its own subscription queues.  The emulator's admin user
(RabbitMQ's default user, made at first boot) has no topic restriction.
Users are imported in one ``rabbitmqctl import_definitions`` per batch with
salted SHA-256 hashes, so no secret is ever on a command line or on disk.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import re
import secrets
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

from .broker import HOST, _write_private, free_port, pid_alive

log = logging.getLogger(__name__)

RABBIT_BIN = Path(os.environ.get("ARDUINO_LOCALCLOUD_RABBIT_BIN", "/usr/lib/rabbitmq/bin"))
START_TIMEOUT = 90.0
CTL_TIMEOUT = 60.0


# RabbitMQ 3.10's MQTT plugin keeps a device's QoS 1 subscriptions in a *durable* classic
# queue (even for a clean session) on the node the device is connected to.  When that node
# is lost, the queue's record stays and the device's next SUBSCRIBE on another node fails
# ("home node ... of durable queue ... is down"), so the device could never attach again.
# A mirror on a second node is promoted instead, and the device finds its queue alive.
MIRROR_POLICY = {"ha-mode": "exactly", "ha-params": 2, "ha-sync-mode": "automatic"}
# Devices' queues only: the emulator's own queue (client id "localcloud-...") takes every
# device message, and a mirror would copy each one to another node, synchronously.
MIRRORED_QUEUES = "^mqtt-subscription-(?!localcloud-)"


class RabbitError(RuntimeError):
    """A RabbitMQ node could not be started, joined or configured."""


def password_hash(password: str) -> str:
    """RabbitMQ's ``rabbit_password_hashing_sha256`` form: base64(salt + sha256(salt + password))."""
    salt = secrets.token_bytes(4)
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


def _routing(topic: str) -> str:
    """The regex for an MQTT topic as RabbitMQ's routing key ('/' becomes '.')."""
    return re.escape(topic.replace("/", "."))


def device_permissions(device_id: str, thing_id: str) -> Tuple[Dict[str, str], Dict[str, str]]:
    """(vhost permissions, topic permissions) that confine a device to its own topics."""
    queues = r"mqtt-subscription-%s(qos0|qos1)" % re.escape(device_id)
    vhost = {"configure": "^%s$" % queues, "write": r"^(amq\.topic|%s)$" % queues,
             "read": r"^(amq\.topic|%s)$" % queues}
    mine = _routing("/a/d/") + "{username}" + r"\."
    write = ["^%sc\\.up$" % mine]
    read = ["^%s(e\\.i|c\\.dw)$" % mine]
    if thing_id:
        thing = _routing("/a/t/%s/" % thing_id)
        write.append("^%s(e\\.o|shadow\\.o)$" % thing)
        read.append("^%s(e\\.i|shadow\\.i)$" % thing)
    return vhost, {"write": "|".join(write), "read": "|".join(read)}


class Node:
    """One RabbitMQ node of a local cluster."""

    def __init__(self, index: int, directory: Path, mqtt_port: int, dist_port: int, node_port: int) -> None:
        self.index = index
        self.node_port = node_port  # RabbitMQ's AMQP port: set, but its listener is turned off
        self.name = "lc%d@localhost" % index
        self.dir = directory
        self.mqtt_port = mqtt_port
        self.dist_port = dist_port
        self.proc: Optional[subprocess.Popen] = None

    @property
    def pid_file(self) -> Path:
        return self.dir / "rabbit.pid"

    def env(self, home: Path, epmd_port: int) -> Dict[str, str]:
        env = dict(os.environ)
        env.update({
            "HOME": str(home),
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_IP_ADDRESS": HOST,
            "RABBITMQ_NODE_PORT": str(self.node_port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.dir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.dir / "log"),
            "RABBITMQ_CONFIG_FILE": str(self.dir / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(self.dir / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.dir / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(self.pid_file),
            "ERL_EPMD_ADDRESS": HOST,
            "ERL_EPMD_PORT": str(epmd_port),
            # Several nodes share this machine's cores: schedulers that spin while idle (the
            # Erlang default) would take CPU from the other nodes and the devices.
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "+sbwt none +sbwtdcpu none +sbwtdio none",
            # rabbitmqctl is an Erlang node too: keep its distribution port on loopback.
            "RABBITMQ_CTL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        })
        return env

    def write_config(self, ca: Path, cert: Path, key: Path, admin: Dict[str, str]) -> None:
        """rabbitmq.conf (mode 0600: it holds the admin password), advanced.config, enabled_plugins."""
        (self.dir / "log").mkdir(parents=True, exist_ok=True)
        (self.dir / "mnesia").mkdir(parents=True, exist_ok=True)
        lines = [
            "listeners.tcp = none",
            "mqtt.listeners.tcp = none",
            "mqtt.listeners.ssl.default = %s:%d" % (HOST, self.mqtt_port),
            "mqtt.allow_anonymous = false",
            "mqtt.vhost = /",
            "mqtt.exchange = amq.topic",
            "ssl_options.cacertfile = %s" % ca,
            "ssl_options.certfile = %s" % cert,
            "ssl_options.keyfile = %s" % key,
            "ssl_options.verify = verify_peer",
            "ssl_options.fail_if_no_peer_cert = false",
            "distribution.listener.interface = %s" % HOST,
            "default_user = %s" % admin["user"],
            "default_pass = %s" % admin["password"],
            "default_user_tags.administrator = true",
            "log.console = false",
            "log.file.level = info",
        ]
        _write_private(self.dir / "rabbitmq.conf", "\n".join(lines) + "\n")
        (self.dir / "advanced.config").write_text("[].\n")
        (self.dir / "enabled_plugins").write_text("[rabbitmq_mqtt].\n")

    def log_tail(self, lines: int = 15) -> str:
        logs = sorted((self.dir / "log").glob("*.log"))
        out = []
        for path in logs[:1]:
            out = path.read_text(errors="replace").splitlines()[-lines:]
        console = self.dir / "console.txt"
        if console.exists():
            out += console.read_text(errors="replace").splitlines()[-lines:]
        return "\n".join(out)


class RabbitCluster:
    """``n`` RabbitMQ nodes on 127.0.0.1 clustered together, state in ``directory``.

    ``ca``, ``cert``, ``key``: the local CA and the server certificate (for
    localhost / 127.0.0.1) every node presents.  ``admin``: the emulator's user (RabbitMQ's
    default user, made at first boot; needed by :meth:`start`).
    """

    def __init__(self, directory: Path, ca: Path, cert: Path, key: Path,
                 admin: Optional[Dict[str, str]] = None) -> None:
        self.dir = Path(directory)
        self.ca, self.cert, self.key = ca, cert, key
        self.admin = admin
        self.home = self.dir / "home"
        self.epmd_port = 0
        self.nodes: List[Node] = []

    # -- state file: lets `cluster stop` in another process find everything -------------------

    @property
    def state_file(self) -> Path:
        return self.dir / "cluster.json"

    def save(self, extra: Optional[Dict] = None) -> None:
        data = {"epmd_port": self.epmd_port,
                "nodes": [{"index": n.index, "mqtt_port": n.mqtt_port, "dist_port": n.dist_port,
                           "node_port": n.node_port}
                          for n in self.nodes]}
        data.update(extra or {})
        _write_private(self.state_file, json.dumps(data))

    def load(self) -> Dict:
        data = json.loads(self.state_file.read_text())
        self.epmd_port = int(data["epmd_port"])
        self.nodes = [Node(n["index"], self.dir / ("node%d" % n["index"]), n["mqtt_port"], n["dist_port"],
                           n["node_port"])
                      for n in data["nodes"]]
        return data

    # -- commands ----------------------------------------------------------------------------

    def ctl(self, node: Node, *args: str, timeout: float = CTL_TIMEOUT, check: bool = True) -> str:
        """Run ``rabbitmqctl -n <node> args`` and return its output."""
        proc = subprocess.run([str(RABBIT_BIN / "rabbitmqctl"), "-q", "-n", node.name, *args],
                              env=node.env(self.home, self.epmd_port), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise RabbitError("rabbitmqctl %s on %s failed (%d): %s"
                              % (args[0], node.name, proc.returncode, proc.stdout.strip()[-800:]))
        return proc.stdout

    def start(self, count: int) -> None:
        """Start ``count`` fresh nodes and cluster them; return when MQTT is served on all."""
        if count < 1:
            raise ValueError("a cluster needs at least one node")
        if self.admin is None:
            raise ValueError("the admin user's credentials are needed to start a cluster")
        t0 = time.monotonic()
        self.home.mkdir(parents=True, exist_ok=True)
        cookie = self.home / ".erlang.cookie"
        if not cookie.exists():
            _write_private(cookie, secrets.token_hex(20))
            os.chmod(cookie, 0o400)
        self.epmd_port = free_port()
        self.nodes = [Node(i, self.dir / ("node%d" % i), free_port(), free_port(), free_port()) for i in range(1, count + 1)]
        self.save()
        try:
            for node in self.nodes:
                node.write_config(self.ca, self.cert, self.key, self.admin)
                self._spawn(node)
            errors: List[str] = []
            threads = [threading.Thread(target=self._await, args=(n, errors)) for n in self.nodes]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            if errors:
                raise RabbitError("; ".join(errors))
            for node in self.nodes[1:]:
                self.ctl(node, "stop_app")
                self.ctl(node, "join_cluster", self.nodes[0].name)
                self.ctl(node, "start_app")
            if count > 1:
                self.ctl(self.nodes[0], "set_policy", "--apply-to", "queues", "mqtt-subscriptions-mirrored",
                         MIRRORED_QUEUES, json.dumps(MIRROR_POLICY))
        except BaseException:
            self.stop()
            raise
        log.info("RabbitMQ cluster of %d up in %.1f s", count, time.monotonic() - t0)

    def _spawn(self, node: Node) -> None:
        console = open(node.dir / "console.txt", "w")
        node.proc = subprocess.Popen([str(RABBIT_BIN / "rabbitmq-server")], env=node.env(self.home, self.epmd_port),
                                     stdout=console, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True, cwd=str(node.dir))
        console.close()

    def _await(self, node: Node, errors: List[str]) -> None:
        try:
            self.ctl(node, "wait", "--timeout", str(int(START_TIMEOUT)), str(node.pid_file),
                     timeout=START_TIMEOUT + 10)
        except (RabbitError, subprocess.TimeoutExpired) as exc:
            errors.append("node %s did not start: %s\n%s" % (node.name, exc, node.log_tail()))

    def node_pid(self, node: Node) -> Optional[int]:
        try:
            return int(node.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def kill_node(self, node: Node) -> None:
        """Lose a node at once (SIGKILL to its VM and helpers), as a crashed host would."""
        pid = self.node_pid(node)
        if pid is not None:
            _kill_group(pid, signal.SIGKILL)

    def stop_node(self, node: Node, timeout: float = 30.0) -> None:
        """Stop one node: gracefully, then by force; never raises for a node already gone."""
        pid = self.node_pid(node)
        if pid is not None and pid_alive(pid):
            try:
                self.ctl(node, "stop", str(node.pid_file), timeout=timeout, check=False)
            except subprocess.TimeoutExpired:
                pass
            if pid_alive(pid):
                _kill_group(pid, signal.SIGKILL)
        if node.proc is not None:
            try:
                node.proc.wait(5)
            except subprocess.TimeoutExpired:
                node.proc.kill()
            node.proc = None
        node.pid_file.unlink(missing_ok=True)

    def stop(self) -> None:
        """Stop every node, then the private epmd.  Idempotent."""
        threads = [threading.Thread(target=self.stop_node, args=(n,)) for n in self.nodes]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if self.epmd_port:
            env = dict(os.environ, ERL_EPMD_PORT=str(self.epmd_port), ERL_EPMD_ADDRESS=HOST)
            epmd = _epmd_binary()
            if epmd is not None:
                subprocess.run([epmd, "-kill"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def running_nodes(self) -> List[str]:
        """Names of the cluster's running nodes, as the first live node reports them."""
        for node in self.nodes:
            pid = self.node_pid(node)
            if pid is None or not pid_alive(pid):
                continue
            out = self.ctl(node, "eval", "rabbit_nodes:all_running().", check=False)
            return re.findall(r"lc\d+@localhost", out)
        return []

    # -- devices -----------------------------------------------------------------------------

    def add_users(self, devices: Iterable[Tuple[str, str, str]]) -> int:
        """Create device users ``(device_id, secret, thing_id)`` with their permissions, in one import."""
        users, perms, topics = [], [], []
        for device_id, secret, thing_id in devices:
            vhost, topic = device_permissions(device_id, thing_id)
            users.append({"name": device_id, "password_hash": password_hash(secret),
                          "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": []})
            perms.append(dict(vhost, user=device_id, vhost="/"))
            topics.append(dict(topic, user=device_id, vhost="/", exchange="amq.topic"))
        if not users:
            return 0
        path = self.dir / "definitions.json"
        _write_private(path, json.dumps({"users": users, "permissions": perms, "topic_permissions": topics}))
        try:
            self.ctl(self._live_node(), "import_definitions", str(path))
        finally:
            path.unlink()
        return len(users)

    def live_nodes(self) -> List[Node]:
        """The nodes whose VM runs."""
        live = []
        for node in self.nodes:
            pid = self.node_pid(node)
            if pid is not None and pid_alive(pid):
                live.append(node)
        return live

    def _live_node(self) -> Node:
        live = self.live_nodes()
        if not live:
            raise RabbitError("no RabbitMQ node of %s is running" % self.dir)
        return live[0]

    def cpu_s(self) -> Dict[str, float]:
        """CPU seconds used so far by each running node."""
        out = {}
        for node in self.nodes:
            pid = self.node_pid(node)
            if pid is not None and pid_alive(pid):
                out[node.name] = cpu_s(pid)
        return out

    def memory_kb(self) -> Dict[str, int]:
        """Resident memory (kB) of each running node's process tree."""
        out = {}
        for node in self.nodes:
            pid = self.node_pid(node)
            if pid is not None and pid_alive(pid):
                out[node.name] = rss_kb(pid)
        return out


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) one process has used so far (0 if it is gone)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def rss_kb(pid: int) -> int:
    """VmRSS of one process, in kB (0 if it is gone)."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _kill_group(pid: int, sig: int) -> None:
    """Signal the process group ``pid`` belongs to (a node's VM and its helpers)."""
    try:
        os.killpg(os.getpgid(pid), sig)
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def _epmd_binary() -> Optional[str]:
    for path in sorted(Path("/usr/lib/erlang").glob("erts-*/bin/epmd")) + [Path("/usr/lib/erlang/bin/epmd")]:
        if path.exists():
            return str(path)
    return None
