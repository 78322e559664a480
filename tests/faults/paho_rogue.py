"""A rogue MQTT broker for tests: a real TLS server on 127.0.0.1 with the local
cloud's server certificate (signed by the local CA, so the client's checks
pass), which answers each connection with a script of its own.

``RogueBroker(cloud, script)`` accepts connections in a thread; for each one it
finishes the TLS handshake, reads the client's CONNECT, and calls
``script(broker, conn, number)`` with the TLS socket (blocking) and the
connection's number (1, 2, ...).  The script writes raw MQTT bytes.  What
happened is kept for the test: ``accepted`` (monotonic time of each accepted
connection), ``sent`` (bytes each script wrote before it returned or the
client closed), and ``closed_by_client`` (connection numbers the client closed).  ``rcvbuf`` sets
a small receive buffer, so a broker that stops reading stalls the client's
writes soon; ``handshake_delay`` makes every TLS handshake that much slower.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from typing import Callable, Dict, List, Optional

from arduino_iot_cloud.mqtt import packets

CONNACK_OK = b"\x20\x02\x00\x00"


def publish(topic: str, payload: bytes, qos: int = 0, pid: int = 1) -> bytes:
    return bytes(packets.encode_publish(topic, payload, qos, pid))


def read_packet(conn: ssl.SSLSocket) -> Optional[bytes]:
    """One whole MQTT packet from the client (fixed header included), or None at EOF."""
    first = conn.recv(1)
    if not first:
        return None
    header = bytearray(first)
    length = shift = 0
    while True:
        b = conn.recv(1)
        if not b:
            return None
        header += b
        length |= (b[0] & 0x7F) << shift
        shift += 7
        if not b[0] & 0x80:
            break
    body = b""
    while len(body) < length:
        chunk = conn.recv(length - len(body))
        if not chunk:
            return None
        body += chunk
    return bytes(header) + body


class RogueBroker:
    def __init__(self, cloud, script: Callable[["RogueBroker", ssl.SSLSocket, int], None],
                 rcvbuf: Optional[int] = None, handshake_delay: float = 0.0) -> None:
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(str(cloud.pki.server_cert), str(cloud.pki.server_key))
        self.script = script
        self.handshake_delay = handshake_delay
        self.listener = socket.socket()
        if rcvbuf is not None:  # set before listen(): the window the client sees stays small
            self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.listener.settimeout(0.1)
        self.port = self.listener.getsockname()[1]
        self.accepted: List[float] = []
        self.sent: Dict[int, int] = {}
        self.closed_by_client: List[int] = []
        self.errors: List[str] = []
        self.stopping = threading.Event()
        self._threads: List[threading.Thread] = []
        self._conns: List[socket.socket] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept_loop, daemon=True, name="rogue-accept")
        self._thread.start()

    def _accept_loop(self) -> None:
        while not self.stopping.is_set():
            try:
                raw, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.accepted.append(time.monotonic())
            number = len(self.accepted)
            t = threading.Thread(target=self._serve, args=(raw, number), daemon=True, name="rogue-%d" % number)
            with self._lock:
                self._threads.append(t)
                self._conns.append(raw)
            t.start()

    def _serve(self, raw: socket.socket, number: int) -> None:
        raw.settimeout(10)
        self.sent[number] = 0
        time.sleep(self.handshake_delay)  # a slow link or a busy broker: the ClientHello waits
        try:
            conn = self.ctx.wrap_socket(raw, server_side=True)
        except (OSError, ssl.SSLError):
            raw.close()
            return
        try:
            connect = read_packet(conn)
            if connect is None or connect[0] != 0x10:
                self.errors.append("connection %d: no CONNECT" % number)
                return
            self.script(self, conn, number)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLEOFError, ssl.SSLZeroReturnError):
            self.closed_by_client.append(number)
        except (OSError, ssl.SSLError) as e:
            if not self.stopping.is_set():
                self.errors.append("connection %d: %r" % (number, e))
        finally:
            conn.close()

    def send(self, conn: ssl.SSLSocket, number: int, data: bytes) -> None:
        """sendall, counting the bytes; the client closing raises out of it."""
        view = memoryview(data)
        while view:
            n = conn.send(view[:65536])
            self.sent[number] += n
            view = view[n:]

    def wait_for_close(self, conn: ssl.SSLSocket, number: int, timeout: float = 10) -> bool:
        """Read (and drop) what the client sends until it closes; True if it did."""
        deadline = time.monotonic() + timeout
        conn.settimeout(0.1)
        while time.monotonic() < deadline and not self.stopping.is_set():
            try:
                if not conn.recv(65536):
                    self.closed_by_client.append(number)
                    return True
            except socket.timeout:
                continue
            except (OSError, ssl.SSLError):
                self.closed_by_client.append(number)
                return True
        return False

    def stop(self) -> None:
        self.stopping.set()
        self._thread.join(5)
        self.listener.close()
        with self._lock:
            conns, threads = list(self._conns), list(self._threads)
        for raw in conns:
            try:
                raw.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for t in threads:
            t.join(5)
