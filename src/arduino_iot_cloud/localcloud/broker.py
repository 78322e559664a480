"""A real mosquitto for the local cloud: config, password files, ACLs, process.

Three listeners, all bound to 127.0.0.1 (``per_listener_settings true``):

* **password** -- TLS with the local server certificate, username = device id,
  password = device secret (``passwd_devices``, hashed by ``mosquitto_passwd -U``);
* **cert** -- TLS requiring a client certificate signed by the local CA;
  ``use_identity_as_username true`` makes the certificate's CN (the device id) the username;
* **admin** -- plain MQTT for the cloud emulator and the CLI, one user with a random
  password (``passwd_admin``), allowed on every topic.

Isolation.  On both device listeners ``use_username_as_clientid`` replaces the
client id a device sends with its authenticated identity, so no device can take
over (and knock off) another one's session.  ``acl_devices`` gives each device
lines for its own topics only (:func:`device_acl`): it may read what the cloud
sends to it and write what a device sends, on its own device topics and on its
current thing's topics; nothing else reaches it, and nothing it writes lands
where another device reads.  The file is rewritten and the broker reloaded
whenever a device is added or moves to another thing.  ``localcloud/#`` (the
CLI's topics) is out of every device's reach.

Limits: ``message_size_limit`` drops PUBLISH payloads over ``MESSAGE_SIZE_LIMIT``
(a bit over the client's 128 KiB packet limit), ``max_packet_size`` closes a
connection that sends a larger packet still, and each client's queue of
undelivered QoS 1 messages is bounded in messages and bytes.

Mosquitto drops privileges before reading the password files and keys when
started as root, so the config says ``user root``.  Logging goes to a file
(``log_dest file``), because redirected stdout is block-buffered; the log is
also what :mod:`.logwatch` reads to see connects and subscriptions.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
START_TIMEOUT = 10.0

# Payload bytes the broker accepts in one PUBLISH: the client refuses packets over
# 128 KiB, so nothing larger could be of use to a device.  Packets larger than
# MAX_PACKET_SIZE close the sender's connection.
MESSAGE_SIZE_LIMIT = 132 * 1024
MAX_PACKET_SIZE = 136 * 1024
# Per client: QoS 1 messages (and their bytes) queued beyond those in flight.
MAX_QUEUED_MESSAGES = 1000
MAX_QUEUED_BYTES = 16 * 1024 * 1024

# What a device may do on its own topics.  "read" topics are written only by the
# cloud (admin listener), "write" topics are read only by the cloud: a device can
# never place a message, retained or not, where another device (or itself) reads.
DEVICE_READS = ("/a/d/%(d)s/e/i", "/a/d/%(d)s/c/dw")
DEVICE_WRITES = ("/a/d/%(d)s/c/up",)
THING_READS = ("/a/t/%(t)s/e/i", "/a/t/%(t)s/shadow/i")
THING_WRITES = ("/a/t/%(t)s/e/o", "/a/t/%(t)s/shadow/o")


class BrokerError(RuntimeError):
    """mosquitto could not be started, or a helper tool failed."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def pid_alive(pid: int) -> bool:
    """Is process ``pid`` running (a zombie is not)?"""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is not alive
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def port_is_free(port: int) -> bool:
    """True if nothing listens on 127.0.0.1:port (we can bind it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return False
        return True


def _guard() -> List[str]:
    """A command prefix that kills mosquitto when we die without cleaning up (SIGKILL).

    ``setpriv --pdeathsig`` ties the signal to the *thread* that started the
    process, so it is only used from the main thread (atexit covers the rest).
    """
    setpriv = shutil.which("setpriv")
    if setpriv and threading.current_thread() is threading.main_thread():
        return [setpriv, "--pdeathsig", "TERM", "--"]
    return []


def hash_passwords(entries: Iterable[Tuple[str, str]]) -> str:
    """Return password-file lines (``user:$7$...``) for ``(user, password)`` pairs.

    Uses ``mosquitto_passwd -U`` on a file in a private ``mkdtemp()`` directory
    (mode 0700), run with umask 077: the tool writes a cleartext backup
    (``<file>.tmp``, no O_EXCL, mode 0666 & umask) next to the file it rewrites, and
    that copy must be unreachable for other users.  No secret ever appears on a
    command line.
    """
    entries = list(entries)
    if not entries:
        return ""
    tool = shutil.which("mosquitto_passwd")
    if tool is None:
        raise BrokerError("mosquitto_passwd not found (apt install mosquitto)")
    for user, password in entries:
        if ":" in user or "\n" in user + password or "\r" in user + password:
            raise ValueError("user names may not hold ':', and neither holds a newline")
    private = tempfile.mkdtemp(prefix="lc-pw-")  # mode 0700, owned by us
    try:
        path = os.path.join(private, "passwd")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            for user, password in entries:
                f.write("%s:%s\n" % (user, password))
        proc = subprocess.run([tool, "-U", path], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              umask=0o077)
        if proc.returncode != 0:
            raise BrokerError("mosquitto_passwd -U failed: %s" % proc.stderr.strip())
        with open(path) as f:
            return f.read()
    finally:
        shutil.rmtree(private, ignore_errors=True)


def device_acl(devices: Iterable[Tuple[str, str]]) -> str:
    """The device ACL file for ``(device id, thing id)`` pairs ("" = no thing).

    Ids are checked by the callers (:func:`.pki.check_device_id`,
    :func:`.store.check_thing_id`): no spaces, newlines or MQTT wildcards.
    """
    lines = ["# generated by arduino_iot_cloud.localcloud: each device reaches its own topics only"]
    for device_id, thing_id in sorted(devices):
        lines.append("")
        lines.append("user %s" % device_id)
        names = {"d": device_id, "t": thing_id}
        rules = [("read", DEVICE_READS), ("write", DEVICE_WRITES)]
        if thing_id:
            rules += [("read", THING_READS), ("write", THING_WRITES)]
        for access, topics in rules:
            lines.extend("topic %s %s" % (access, t % names) for t in topics)
    return "\n".join(lines) + "\n"


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` with mode 0600 (atomically, via a rename)."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        os.unlink(tmp)  # a leftover (or planted) file would keep its own mode
    except FileNotFoundError:
        pass
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


class Broker:
    """One mosquitto process with the three local-cloud listeners.

    ``ports`` maps ``"password"``, ``"cert"`` and ``"admin"`` to port numbers;
    missing ones are picked free at :meth:`start`, and kept by :meth:`restart`.
    """

    def __init__(self, directory: Path, ca_file: Path, server_cert: Path, server_key: Path,
                 ports: Optional[Dict[str, int]] = None) -> None:
        self.dir = Path(directory)
        self.ca_file, self.server_cert, self.server_key = ca_file, server_cert, server_key
        self.ports: Dict[str, int] = dict(ports or {})
        self.conf = self.dir / "mosquitto.conf"
        self.log_file = self.dir / "mosquitto.log"
        self.pw_devices = self.dir / "passwd_devices"
        self.pw_admin = self.dir / "passwd_admin"
        self.acl_devices = self.dir / "acl_devices"
        self.acl_admin = self.dir / "acl_admin"
        self.proc: Optional[subprocess.Popen] = None
        self._reloads = 0

    # -- files -----------------------------------------------------------------------------

    def write_auth(self, admin_user: str, admin_hashed: str) -> None:
        """Write the admin password file (a hashed line) and the admin ACL file.

        The device password file is only created (empty) if missing: it is the one
        place device secrets live (hashed), appended to by :meth:`append_devices`.
        The device ACL starts empty (no device reaches anything) until
        :meth:`write_device_acl`.
        """
        self.dir.mkdir(parents=True, exist_ok=True)
        _write_private(self.pw_admin, admin_hashed)
        if not self.pw_devices.exists():
            _write_private(self.pw_devices, "")
        if not self.acl_devices.exists():
            self.write_device_acl([])
        _write_private(self.acl_admin, "user %s\ntopic readwrite #\n" % admin_user)

    def write_device_acl(self, devices: Iterable[Tuple[str, str]]) -> None:
        """Rewrite the device ACL for ``(device id, thing id)`` pairs (then :meth:`reload`)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        _write_private(self.acl_devices, device_acl(devices))

    def append_devices(self, hashed_lines: str) -> None:
        """Append hashed password lines for new devices (call :meth:`reload` afterwards)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.pw_devices, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "a") as f:
            f.write(hashed_lines)

    def _config(self) -> str:
        tls = "cafile %s\ncertfile %s\nkeyfile %s\n" % (self.ca_file, self.server_cert, self.server_key)
        return (
            "# generated by arduino_iot_cloud.localcloud -- rewritten at every start\n"
            "per_listener_settings true\n"
            "user root\n"
            "persistence false\n"
            # MQTT exchanges are small request/answer pairs: without this,
            # Nagle + delayed ACK add ~40 ms to each step of an attach.
            "set_tcp_nodelay true\n"
            "log_dest file %(log)s\n"
            "log_type error\nlog_type warning\nlog_type notice\nlog_type information\n"
            "log_type subscribe\nlog_type unsubscribe\n"
            "connection_messages true\n"
            "log_timestamp true\n"
            "message_size_limit %(msg_limit)d\nmax_packet_size %(packet_limit)d\n"
            "max_queued_messages %(queued)d\nmax_queued_bytes %(queued_bytes)d\n"
            "\n# (a) TLS, username = device id, password = secret\n"
            "listener %(pw)d %(host)s\n%(tls)s"
            "allow_anonymous false\npassword_file %(pwd)s\nacl_file %(acld)s\n"
            "use_username_as_clientid true\n"
            "\n# (b) TLS with client certificates, username = certificate CN = device id\n"
            "listener %(cert)d %(host)s\n%(tls)s"
            "require_certificate true\nuse_identity_as_username true\nuse_username_as_clientid true\n"
            "allow_anonymous false\nacl_file %(acld)s\n"
            "\n# (c) loopback, plain MQTT, for the cloud emulator and the CLI\n"
            "listener %(admin)d %(host)s\n"
            "allow_anonymous false\npassword_file %(pwa)s\nacl_file %(acla)s\n"
        ) % {
            "log": self.log_file, "host": HOST, "tls": tls, "pw": self.ports["password"],
            "cert": self.ports["cert"], "admin": self.ports["admin"], "pwd": self.pw_devices,
            "pwa": self.pw_admin, "acld": self.acl_devices, "acla": self.acl_admin,
            "msg_limit": MESSAGE_SIZE_LIMIT, "packet_limit": MAX_PACKET_SIZE,
            "queued": MAX_QUEUED_MESSAGES, "queued_bytes": MAX_QUEUED_BYTES,
        }

    # -- process -----------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """True while the mosquitto process is alive."""
        return self.proc is not None and self.proc.poll() is None

    def _log_size(self) -> int:
        try:
            return self.log_file.stat().st_size
        except FileNotFoundError:
            return 0

    def _log_since(self, offset: int) -> str:
        try:
            with open(self.log_file, "rb") as f:
                f.seek(offset)
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def start(self) -> None:
        """Start mosquitto and wait until all listeners are open.

        Ports not yet chosen are picked free; if one was taken in between (another
        process grabbed it), fresh ports are tried again, up to three times.  Ports
        already chosen (a restart) are kept: a port briefly held by someone else,
        such as the local end of an outgoing connection, is tried again for ~2 s.
        """
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not os.path.exists(exe):
            raise BrokerError("mosquitto not found (apt install mosquitto)")
        fixed = all(k in self.ports for k in ("password", "cert", "admin"))
        attempts = 10 if fixed else 3
        for attempt in range(attempts):
            for k in ("password", "cert", "admin"):
                if k not in self.ports:
                    self.ports[k] = free_port()
            if len(set(self.ports.values())) != 3:
                self.ports = {}
                continue
            self.conf.write_text(self._config())
            offset = self._log_size()
            self.proc = subprocess.Popen(_guard() + [exe, "-c", str(self.conf)], stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            error = self._wait_started(offset)
            if error is None:
                log.info("mosquitto pid %d listening on %s: password %d, cert %d, admin %d",
                         self.proc.pid, HOST, self.ports["password"], self.ports["cert"], self.ports["admin"])
                return
            if "in use" in error and attempt + 1 < attempts:
                if fixed:
                    log.warning("port taken, trying the same ports again: %s", error)
                    time.sleep(0.2)
                else:
                    log.warning("port taken, retrying with fresh ports: %s", error)
                    self.ports = {}
                continue
            raise BrokerError("mosquitto did not start: %s (config %s, log %s)" % (error, self.conf, self.log_file))
        raise BrokerError("no free ports for mosquitto")

    def _wait_started(self, offset: int) -> Optional[str]:
        """Wait for the 'running' log line; return None, or an error text (process stopped)."""
        assert self.proc is not None
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            text = self._log_since(offset)
            if " running" in text:
                return None
            if self.proc.poll() is not None:
                stderr = self.proc.stderr.read().decode("utf-8", "replace") if self.proc.stderr else ""
                lines = [ln for ln in (text + "\n" + stderr).splitlines() if "rror" in ln or "nable" in ln]
                return " / ".join(lines[-3:]) or "exit code %s" % self.proc.returncode
            time.sleep(0.01)
        self.stop()
        return "timed out after %.0f s" % START_TIMEOUT

    def reload(self, timeout: float = 5.0) -> None:
        """Make mosquitto re-read password and ACL files (SIGHUP) and wait until it did.

        mosquitto logs "Reloading config." when it starts a reload and clears its
        reload flag only when done, so a SIGHUP that arrives in between is lost: the
        caller must see the broker answer a request after one reload before asking for
        the next (LocalCloud does a round trip).  A signal lost anyway is sent again.
        """
        if not self.running:
            return
        assert self.proc is not None
        offset = self._log_size()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.proc.send_signal(signal.SIGHUP)
            resend = min(deadline, time.monotonic() + 0.5)
            while time.monotonic() < resend:
                if "Reloading config" in self._log_since(offset):
                    return
                time.sleep(0.005)
        raise BrokerError("mosquitto did not log a reload within %.0f s" % timeout)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop mosquitto (SIGTERM, then SIGKILL after ``timeout``); idempotent."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("mosquitto pid %d ignored SIGTERM, killing it", proc.pid)
                proc.kill()
                proc.wait(timeout)
        if proc.stderr:
            proc.stderr.close()
        log.info("mosquitto pid %d stopped", proc.pid)

    def restart(self) -> None:
        """Stop and start again on the same ports."""
        self.stop()
        self.start()
