"""HAProxy in front of the RabbitMQ nodes: one TLS port on 127.0.0.1 (CPython only).

TCP mode, TLS passed through to the nodes (not terminated here): the nodes
already hold the local CA's server certificate, a device's client certificate
(if it uses one) must reach the node that checks it, and HAProxy stays a cheap
byte pump that sees no secret.  ``leastconn`` spreads long-lived MQTT
connections evenly; a node is checked every 500 ms and taken out after one
failed check, its sessions are cut (``on-marked-down shutdown-sessions``) and a
connect that fails is retried on another node (``option redispatch``), so a
device that lost its node comes back through the same port on a live one.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import List, Optional, Tuple

from .broker import HOST, _write_private, free_port

HAPROXY = os.environ.get("ARDUINO_LOCALCLOUD_HAPROXY", "haproxy")
# Longer than any device keepalive (the client allows up to 300 s), so HAProxy never cuts an idle link first.
IDLE_TIMEOUT = "330s"


class HAProxyError(RuntimeError):
    """HAProxy could not be started."""


class HAProxy:
    """One haproxy process: ``port`` on 127.0.0.1 spread over ``backends`` (host, port) pairs."""

    def __init__(self, directory: Path, backends: List[Tuple[str, int]], port: int = 0) -> None:
        self.dir = Path(directory)
        self.backends = backends
        self.port = port or free_port()
        self.proc: Optional[subprocess.Popen] = None

    @property
    def config_file(self) -> Path:
        return self.dir / "haproxy.cfg"

    @property
    def pid_file(self) -> Path:
        return self.dir / "haproxy.pid"

    def config(self) -> str:
        servers = "\n".join("    server node%d %s:%d check inter 500ms fall 1 rise 2 on-marked-down shutdown-sessions"
                            % (i, host, port) for i, (host, port) in enumerate(self.backends, 1))
        return """global
    maxconn 8000
    stats socket %(sock)s mode 600 level admin

defaults
    mode tcp
    timeout connect 2s
    timeout client %(idle)s
    timeout server %(idle)s
    retries 2
    option redispatch

frontend mqtts
    bind %(host)s:%(port)d
    default_backend rabbit

backend rabbit
    balance leastconn
%(servers)s
""" % {"sock": self.dir / "haproxy.sock", "idle": IDLE_TIMEOUT, "host": HOST, "port": self.port,
       "servers": servers}

    def start(self, timeout: float = 10.0) -> None:
        """Write the config, start haproxy in the foreground (our child), wait for its port."""
        self.dir.mkdir(parents=True, exist_ok=True)
        _write_private(self.config_file, self.config())
        check = subprocess.run([HAPROXY, "-c", "-q", "-f", str(self.config_file)], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
        if check.returncode != 0:
            raise HAProxyError("haproxy refused its config: %s" % check.stdout.strip())
        log = open(self.dir / "haproxy.log", "w")
        self.proc = subprocess.Popen([HAPROXY, "-db", "-f", str(self.config_file)], stdout=log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        _write_private(self.pid_file, str(self.proc.pid))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise HAProxyError("haproxy exited (%d): %s" % (self.proc.returncode,
                                                                 (self.dir / "haproxy.log").read_text()[-800:]))
            try:
                socket.create_connection((HOST, self.port), 0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise HAProxyError("haproxy did not listen on %s:%d within %.0f s" % (HOST, self.port, timeout))

    def stop(self, timeout: float = 5.0) -> None:
        """Stop haproxy (ours, or the one named in the pid file); idempotent."""
        pid = self.proc.pid if self.proc is not None else _read_pid(self.pid_file)
        if pid is not None:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pid = None
        if self.proc is not None:
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None
        elif pid is not None:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and _exists(pid):
                time.sleep(0.05)
            if _exists(pid):
                os.kill(pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)

    def server_states(self) -> dict:
        """``{"node1": "UP"|"DOWN"|..., ...}`` from HAProxy's stats socket."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(2)
            s.connect(str(self.dir / "haproxy.sock"))
            s.sendall(b"show stat\n")
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        states = {}
        for line in data.decode().splitlines():
            fields = line.split(",")
            if len(fields) > 17 and fields[0] == "rabbit" and fields[1].startswith("node"):
                states[fields[1]] = fields[17]
        return states


def _read_pid(path: Path) -> Optional[int]:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
