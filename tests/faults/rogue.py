"""A scripted, misbehaving MQTT broker for tests, on 127.0.0.1, over real TLS.

It presents the local cloud's server certificate (signed by the local CA), so
the client connects to it exactly as to the local mosquitto.  Each accepted
connection runs ``script(conn)`` in a thread of its own; ``conn`` reads whole
MQTT packets and writes bytes.  Packets sent to the client are written out
here byte by byte, never made by the client's own encoder, so an encoder bug
cannot hide itself.

``conn.serve(...)`` plays a broker that answers what a well-behaved one
answers (CONNACK, SUBACK, PUBACK, PINGRESP), with hooks to misbehave: a test
script passes what it wants different.
"""

import socket
import ssl
import threading
import time

from arduino_iot_cloud import senml

CONNECT, PUBLISH, PUBACK, SUBSCRIBE, UNSUBSCRIBE, PINGREQ, DISCONNECT = 0x10, 0x30, 0x40, 0x80, 0xA0, 0xC0, 0xE0
CONNACK_OK = b"\x20\x02\x00\x00"
PINGRESP = b"\xd0\x00"


def _varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def publish(topic, payload, qos=0, pid=1):
    t = topic.encode()
    body = bytes((len(t) >> 8, len(t) & 0xFF)) + t + (bytes((pid >> 8, pid & 0xFF)) if qos else b"") + payload
    return bytes((0x30 | (qos << 1),)) + _varint(len(body)) + body


def suback(pid, *codes):
    return bytes((0x90, 2 + len(codes), pid >> 8, pid & 0xFF)) + bytes(codes)


def thing_event(device_id, thing_id):
    return publish("/a/d/%s/e/i" % device_id, senml.encode((("thing_id", thing_id),)))


def decode_publish(first, body):
    """(topic, payload, qos, pid, dup) of a PUBLISH the client sent."""
    n = (body[0] << 8) | body[1]
    topic = body[2:2 + n].decode()
    qos = (first >> 1) & 3
    at = 2 + n
    pid = 0
    if qos:
        pid = (body[at] << 8) | body[at + 1]
        at += 2
    return topic, body[at:], qos, pid, bool(first & 0x08)


class Conn:
    """One client connection, as the broker sees it."""

    def __init__(self, broker, sock, index):
        self.broker = broker
        self.sock = sock
        self.index = index  # 0 for the first connection
        self.closed = False
        self._buf = b""

    def send(self, data):
        with self.broker.lock:
            self.broker.sent_bytes += len(data)
        self.sock.sendall(data)

    def read_packet(self, timeout):
        """The next whole packet as (first byte, body), or None at the timeout."""
        until = time.monotonic() + timeout
        while True:
            packet = self._take()
            if packet is not None:
                return packet
            left = until - time.monotonic()
            if left <= 0 or self.broker.stopping.is_set():
                return None
            self.sock.settimeout(min(left, 0.1))
            try:
                data = self.sock.recv(65536)
            except (socket.timeout, ssl.SSLWantReadError):
                continue
            if not data:
                raise EOFError("client closed the connection")
            self._buf += data

    def _take(self):
        buf = self._buf
        if len(buf) < 2:
            return None
        length, shift, i = 0, 0, 1
        while True:
            if i >= len(buf):
                return None
            b = buf[i]
            i += 1
            length |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        if len(buf) < i + length:
            return None
        self._buf = buf[i + length:]
        return buf[0], buf[i:i + length]

    def serve(self, duration, connack=True, suback_code=lambda topic: 1, puback=True, on_packet=None,
              tick=None, tick_s=0.1):
        """Answer as a broker would, for `duration` seconds or until the client leaves.

        connack=False: never answer CONNECT.  suback_code(topic): the return
        code for a subscription.  puback=False: never acknowledge.
        on_packet(conn, first, body): called for every packet the client sends.
        tick(conn): called every tick_s seconds (floods, drips), from the
        CONNACK on (from the start with connack=False).
        """
        until = time.monotonic() + duration
        next_tick = None if connack or tick is None else time.monotonic()
        try:
            while time.monotonic() < until and not self.broker.stopping.is_set():
                if next_tick is not None and time.monotonic() >= next_tick:
                    tick(self)
                    next_tick += tick_s
                wait = max(0.0, min(until, next_tick or until) - time.monotonic())
                packet = self.read_packet(min(wait, 0.1))
                if packet is None:
                    continue
                first, body = packet
                self.broker.record(self, first, body)
                if on_packet is not None:
                    on_packet(self, first, body)
                kind = first & 0xF0
                if kind == CONNECT and connack:
                    self.send(CONNACK_OK)
                    if tick is not None:
                        next_tick = time.monotonic()
                elif kind == SUBSCRIBE:
                    n = (body[2] << 8) | body[3]
                    self.send(suback(((body[0] << 8) | body[1]), suback_code(body[4:4 + n].decode())))
                elif kind == UNSUBSCRIBE:
                    self.send(bytes((0xB0, 2, body[0], body[1])))
                elif kind == PUBLISH and (first >> 1) & 3 and puback:
                    pid = decode_publish(first, body)[3]
                    self.send(bytes((PUBACK, 2, pid >> 8, pid & 0xFF)))
                elif kind == PINGREQ:
                    self.send(PINGRESP)
                elif kind == DISCONNECT:
                    return
        except (EOFError, OSError):
            pass

    def close(self):
        if not self.closed:
            self.closed = True
            try:
                self.sock.close()
            except OSError:
                pass


class RogueBroker:
    """TLS listener on 127.0.0.1; script(conn) runs for every connection."""

    def __init__(self, cert_file, key_file, script):
        self.script = script
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert_file, key_file)
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.accepted = []   # monotonic time of each accepted connection
        self.packets = []    # (connection index, first byte, body) of everything the client sent
        self.sent_bytes = 0
        self.errors = []     # exceptions raised by the script (a test bug, reported by stop())
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self._listener.settimeout(0.05)
        self.port = self._listener.getsockname()[1]
        self._threads = []
        self._conns = []

    def start(self):
        t = threading.Thread(target=self._accept, name="rogue-accept", daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def record(self, conn, first, body):
        with self.lock:
            self.packets.append((conn.index, first, body))

    def publishes(self, index=None):
        """(connection index, topic, payload, qos, pid, dup) of every PUBLISH the client sent."""
        with self.lock:
            packets = list(self.packets)
        return [(i,) + decode_publish(f, b) for i, f, b in packets
                if f & 0xF0 == PUBLISH and (index is None or i == index)]

    def _accept(self):
        while not self.stopping.is_set():
            try:
                raw, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self.lock:
                index = len(self.accepted)
                self.accepted.append(time.monotonic())
            t = threading.Thread(target=self._run, args=(raw, index), name="rogue-conn", daemon=True)
            t.start()
            self._threads.append(t)

    def _run(self, raw, index):
        conn = None
        try:
            raw.settimeout(10)
            sock = self.ctx.wrap_socket(raw, server_side=True)
            conn = Conn(self, sock, index)
            self._conns.append(conn)
            self.script(conn)
        except (OSError, EOFError):
            pass  # the client went away, or TLS failed: the client side tells the test
        except Exception as e:  # noqa: BLE001 - a bug in the test's script
            self.errors.append(e)
        finally:
            if conn is not None:
                conn.close()
            else:
                raw.close()

    def stop(self):
        self.stopping.set()
        self._listener.close()
        for c in list(self._conns):
            c.close()
        for t in self._threads:
            t.join(5)
        assert not self.errors, "rogue broker script failed: %r" % self.errors
