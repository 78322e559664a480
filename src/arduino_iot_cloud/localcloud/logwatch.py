"""Follow mosquitto's log file and turn its lines into connection events.

MQTT gives a cloud no way to see another client connect or subscribe, but
mosquitto logs both (``connection_messages true``, ``log_type subscribe``), and it
flushes every line.  Lines we understand (mosquitto 2.0)::

    New connection from 127.0.0.1:40000 on port 8884.
    New client connected from 127.0.0.1:40000 as CLIENT (p2, c1, k10, u'USER').
    Client CLIENT disconnected.                       (DISCONNECT sent)
    Client CLIENT closed its connection.              (socket closed)
    Client CLIENT has exceeded timeout, disconnecting.
    Socket error on client CLIENT, disconnecting.
    Client <unknown> disconnected, not authorised.    (CONNACK 5)
    OpenSSL Error[0]: error:0A0000C7:SSL routines::peer did not return a certificate
    Client <unknown> disconnected: Protocol error.    (TLS refused after the connection was set up)
    Client connection from 127.0.0.1 failed: error:0A0000C7:SSL routines::peer did not return a certificate.
                                                      (TLS refused inside accept: no other line)
    Client CLIENT already connected, closing old connection.   (same client id again)
    CLIENT 1 /a/d/DEV/e/i                             (subscribe: client, QoS, filter)
    CLIENT /a/d/DEV/e/i                               (unsubscribe)
    Reloading config.
    mosquitto version 2.0.11 terminating              (every client is gone)

Ordering: the emulator calls :meth:`LogWatch.poll` before it handles each MQTT
message.  mosquitto writes a client's connect and subscribe lines before it
forwards that client's next publish, so a device's "connect" event is always
recorded before the commands it sends afterwards.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from pathlib import Path
from typing import BinaryIO, Callable, Dict, Optional

log = logging.getLogger(__name__)

_TS = r"^(?:\d+: )?"
_NEW_CONN = re.compile(_TS + r"New connection from (\S+) on port (\d+)\.$")
_CONNECTED = re.compile(_TS + r"New client connected from (\S+) as (\S+) \(p(\d+), c(\d+), k(\d+)(?:, u'(.*)')?\)\.$")
_GONE = re.compile(_TS + r"Client (\S+) (disconnected|closed its connection|has exceeded timeout"
                   r"|already connected)(.*)$")
_SOCKET_ERROR = re.compile(_TS + r"Socket error on client (\S+), disconnecting\.$")
_TLS_ERROR = re.compile(_TS + r"OpenSSL Error\[\d+\]: (.*)$")
_ACCEPT_FAILED = re.compile(_TS + r"Client connection from (\S+) failed: (.*?)\.?$")
_SUBSCRIBE = re.compile(_TS + r"(\S+) (\d) (\S+)$")
_UNSUBSCRIBE = re.compile(_TS + r"(\S+) (/\S*)$")
_RELOAD = re.compile(_TS + r"Reloading config\.$")
_TERMINATING = re.compile(_TS + r"mosquitto version \S+ terminating$")

# callback(kind, client_id or None, detail dict)
Callback = Callable[[str, Optional[str], Dict], None]


class LogWatch:
    """Tail ``path`` from its current end; feed parsed lines to ``callback``.

    A daemon thread polls every ``interval`` seconds; :meth:`poll` can be called
    from any thread to catch up immediately (calls are serialised).
    """

    def __init__(self, path: Path, callback: Callback, interval: float = 0.05) -> None:
        self.path = Path(path)
        self.callback = callback
        self.interval = interval
        self._lock = threading.Lock()
        self._offset = self.path.stat().st_size if self.path.exists() else 0
        self._partial = b""
        self._ports: Dict[str, int] = {}  # peer address -> listener port
        self._last_port: Optional[int] = None
        self._tls_error: Optional[str] = None  # the OpenSSL line before a refusal
        self._stop = threading.Event()
        self._file: Optional[BinaryIO] = None
        self._thread: Optional[threading.Thread] = None

    def start(self) -> None:
        """Start the polling thread."""
        self._thread = threading.Thread(target=self._run, name="localcloud-logwatch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the polling thread (after a last poll)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2)
            self._thread = None
        self.poll()
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.poll()
            except Exception:  # keep following the log whatever one line did
                log.exception("log watcher failed on a line")

    def poll(self) -> None:
        """Read and dispatch every complete line written since the last call."""
        with self._lock:
            data = self._read()
            if not data:
                return
            self._offset += len(data)
            data = self._partial + data
            lines = data.split(b"\n")
            self._partial = lines.pop()
            for raw in lines:
                self._line(raw.decode("utf-8", "replace").rstrip("\r"))

    def _read(self) -> bytes:
        """New bytes of the log; the file stays open between calls (this runs per message)."""
        if self._file is None:
            try:
                self._file = open(self.path, "rb")
            except FileNotFoundError:
                return b""
            self._file.seek(self._offset)
        data = self._file.read()
        if not data:
            try:
                truncated = os.stat(self.path).st_size < self._offset
            except FileNotFoundError:
                truncated = False
            if truncated:  # start over
                self._file.seek(0)
                self._offset, self._partial = 0, b""
                data = self._file.read()
        return data

    def _line(self, line: str) -> None:
        m = _NEW_CONN.match(line)
        if m:
            self._ports[m.group(1)] = self._last_port = int(m.group(2))
            self._tls_error = None  # an older error belongs to an older connection
            return
        m = _CONNECTED.match(line)
        if m:
            addr, client = m.group(1), m.group(2)
            self.callback("connect", client, {
                "client_id": client, "username": m.group(6), "keepalive": int(m.group(5)),
                "clean_session": m.group(4) == "1", "protocol": int(m.group(3)),
                "port": self._ports.pop(addr, None), "peer": addr,
            })
            return
        m = _GONE.match(line) or _SOCKET_ERROR.match(line)
        if m:
            client = m.group(1)
            how = m.group(2) if m.re is _GONE else "socket error"
            reason = (m.group(3) if m.re is _GONE else "").strip(" ,:.") or how
            if client == "<unknown>":
                detail = {"reason": reason, "port": self._last_port}
                if self._tls_error is not None:
                    detail["tls_error"] = self._tls_error
                self._tls_error = None
                self.callback("refused", None, detail)
            else:
                self.callback("disconnect", client, {"how": how, "reason": reason})
            return
        m = _TLS_ERROR.match(line)
        if m:
            self._tls_error = m.group(1)
            return
        m = _ACCEPT_FAILED.match(line)
        if m:  # the handshake failed before mosquitto logged the connection at all
            self.callback("refused", None, {"reason": "TLS handshake failed", "tls_error": m.group(2),
                                            "peer": m.group(1), "port": None})
            return
        if _RELOAD.match(line):
            self.callback("reload", None, {})
            return
        if _TERMINATING.match(line):  # clients are dropped without a line each
            self.callback("broker_stop", None, {})
            return
        m = _SUBSCRIBE.match(line)
        if m:
            self.callback("subscribe", m.group(1), {"topic": m.group(3), "qos": int(m.group(2))})
            return
        m = _UNSUBSCRIBE.match(line)
        if m:
            self.callback("unsubscribe", m.group(1), {"topic": m.group(2)})
