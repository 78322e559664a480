# Opening the socket engine's connection: the TCP connect and the TLS
# handshake.  start_connection() is the one way in, for both drivers and the
# OTA download.
#
# A Connector takes them in steps: each step() goes as far as the socket
# allows and returns, so neither driver waits inside the library; the driver
# waits for pollable() (net/wait.py).  (MicroPython's TLS socket has no
# handshake step of its own: there the handshake runs inside the first reads
# and writes of the Connection.)  SE05x keys hand-shake at once, inside the
# secure element's wrap: for them open_connection() does the same work in one
# blocking call bounded by a time limit, and an Opened hands its result over.
# Either way the result is a non-blocking connection.Connection.

import select
import socket

from ..errors import CloudError, TransportError
from .connection import WOULD_BLOCK, Connection, SSLWantReadError, SSLWantWriteError, errno_of, handshake_error


def _no_delay(sock):
    # MQTT packets are small and answered: Nagle's algorithm meeting the
    # peer's delayed ACK costs ~40 ms per exchange (three of them in attach).
    nodelay = getattr(socket, "TCP_NODELAY", None)
    if nodelay is not None:
        try:
            sock.setsockopt(getattr(socket, "IPPROTO_TCP", 6), nodelay, 1)
        except OSError:
            pass


def open_connection(host, port, tls, timeout=10.0):
    """Connect to host:port, do the TLS handshake, return a non-blocking Connection.

    Blocks for at most `timeout` seconds per phase (MicroPython, SE05x keys).
    """
    family, addr = resolve(host, port)
    raw = socket.socket(family, socket.SOCK_STREAM)
    _no_delay(raw)
    try:
        if hasattr(raw, "settimeout"):
            raw.settimeout(timeout)
        raw.connect(addr)
        sock = _handshake(tls, raw, host, port)
        if hasattr(sock, "setblocking"):
            sock.setblocking(False)
        else:
            raw.setblocking(False)
    except CloudError:
        raw.close()
        raise
    except OSError as e:
        raw.close()
        raise TransportError("cannot connect to %s:%d: %s" % (host, port, e))
    except Exception:
        raw.close()
        raise
    return Connection(sock, raw)


def _handshake(tls, raw, host, port):
    try:
        return tls.wrap(raw, host)
    except CloudError:
        raise
    except (OSError, ValueError) as e:
        raise handshake_error(e, tls, host, port)


def resolve(host, port):
    """(family, address) of host:port; a name lookup may wait on DNS."""
    try:
        info = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)[0]
    except OSError as e:
        raise TransportError("cannot resolve %s: %s" % (host, e))
    return info[0], info[-1]


class Connector:
    """A TCP connect and TLS handshake taken in steps.

    step(now) does what the socket allows at once and returns the
    Connection when the handshake is done (MicroPython: when it can start),
    None while it is under way; a failed attempt, or one still unfinished at
    its deadline, raises TransportError (TLSError for TLS) with the socket
    closed.  Between steps the driver waits for pollable() to become
    writable (wants_write) or readable, or for the deadline (ms, the clock
    of now).
    """

    def __init__(self, address, host, port, tls, timeout_ms, now):
        self.host, self.port, self.tls = host, port, tls
        self.timeout_ms = timeout_ms
        self.deadline = now + timeout_ms
        self.wants_write = True  # the TCP connect is done when the socket is writable
        self._raw = socket.socket(address[0], socket.SOCK_STREAM)
        self._sock = None
        _no_delay(self._raw)
        self._raw.setblocking(False)
        try:
            self._raw.connect(address[1])
        except OSError as e:
            if errno_of(e) not in WOULD_BLOCK:
                self.close()
                raise TransportError("cannot connect to %s:%d: %s" % (host, port, e))

    def pollable(self):
        # ssl's wrap_socket detaches the TCP socket: the TLS socket holds the descriptor
        return self._sock if self._sock is not None else self._raw

    def step(self, now):
        try:
            conn = self._advance()
        except CloudError:
            self.close()
            raise
        except (OSError, ValueError) as e:
            tcp = self._sock is None
            self.close()
            if tcp:
                raise TransportError("cannot connect to %s:%d: %s" % (self.host, self.port, e))
            raise handshake_error(e, self.tls, self.host, self.port)
        except BaseException:
            self.close()
            raise
        if conn is None and now >= self.deadline:
            self.close()
            raise TransportError("cannot connect to %s:%d: timed out after %d ms (TCP %s)"
                                 % (self.host, self.port, self.timeout_ms,
                                    "connect" if self._sock is None else "connected, TLS handshake unfinished"))
        return conn

    def _advance(self):
        if self._sock is None:
            if not _tcp_done(self._raw):
                return None
            self._sock = self.tls.wrap(self._raw, self.host, handshake=False)
            if not hasattr(self._sock, "do_handshake"):
                # MicroPython: the handshake runs inside the Connection's first
                # reads and writes (the CONNECT), bounded by the CONNACK timeout.
                return Connection(self._sock, self._raw, (self.tls, self.host, self.port))
        try:
            self._sock.do_handshake()
        except SSLWantReadError:
            self.wants_write = False
            return None
        except SSLWantWriteError:
            self.wants_write = True
            return None
        return Connection(self._sock, self._raw)

    def close(self):
        for s in (self._sock, self._raw):
            if s is not None:
                try:
                    s.close()
                except OSError:
                    pass


def _tcp_done(sock):
    # True once a non-blocking connect has finished; raises its error if it failed.
    poller = select.poll()  # not select.select: a fleet's descriptors pass 1024
    poller.register(sock, select.POLLOUT)
    ready = poller.poll(0)
    if not ready:
        return False
    if ready[0][1] & (select.POLLERR | select.POLLHUP):
        sock.recv(1)  # raises the connect's error (ECONNREFUSED, ...), on both runtimes
        raise OSError("connection failed")
    return True


class Opened:
    """A connect that finished inside start_connection() (SE05x keys): the
    first step() hands its Connection over."""

    wants_write = False

    def __init__(self, conn, now):
        self.conn = conn
        self.deadline = now

    def pollable(self):
        return self.conn.pollable()

    def step(self, now):
        return self.conn

    def close(self):
        self.conn.close()


def start_connection(host, port, tls, timeout_ms, now, address=None):
    """An attempt to connect to host:port, bounded by timeout_ms.

    address: (family, address) when the name was looked up already (the
    asyncio driver does it on the loop); without it the lookup here may wait
    on DNS.
    """
    if tls.hardware == "se05x":
        return Opened(open_connection(host, port, tls, timeout_ms / 1000), now)
    return Connector(address or resolve(host, port), host, port, tls, timeout_ms, now)
