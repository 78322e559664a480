# The socket transport: one TLS connection, used without blocking.
#
# A Connector opens the connection in steps: the TCP connect and the TLS
# handshake advance as far as the socket allows, then step() returns, so
# neither driver waits inside the library.  (MicroPython's TLS socket has no
# handshake step of its own: there the handshake runs inside the first reads
# and writes of the Connection.)  open_connection() does the same work in one
# blocking call bounded by a time limit, for SE05x keys, which hand-shake at
# once.  Either way the result is a non-blocking Connection: recv() returns the
# bytes available now (None when there are none) and send() writes what the
# socket takes now.  EOF and socket errors become TransportError.  Both
# runtimes run this file; their different socket methods are bridged here, in
# the one place they meet.

import select
import socket

from .errors import CloudError, TLSError, TransportError

_RECV_SIZE = 4096
# MicroPython reads into one buffer kept per connection: its stream read(n)
# allocates n bytes before it knows whether anything is there, so read(4096)
# on every update() would ask a long-running board's (fragmented) heap for a
# fresh 4 KB block many times a second.  One mbedTLS read returns at most one
# record, so a smaller buffer only means more reads for large messages.
_STREAM_BUF = 1024

try:
    from ssl import SSLError as _SSLError
except ImportError:  # MicroPython: mbedTLS failures are OSErrors carrying MBEDTLS_ERR_* text
    _SSLError = None

_UNTRUSTED = ("the broker's certificate is not signed by a trusted CA "
              "(check ssl_params cafile/cadata, or ARDUINO_IOT_CLOUD_CA)")
_REFUSED = "the broker refused this device's client certificate"
# (text in the TLS library's error, lower case; the reason in words).  First match wins.
_TLS_REASONS = (
    ("certificate has expired", "the broker's certificate has expired (or the device's clock is wrong)"),
    ("not yet valid", "the broker's certificate is not valid yet (is the device's clock right?)"),
    ("mismatch", "the broker's certificate is not valid for the host name HOST"),
    ("self-signed certificate", _UNTRUSTED),
    ("self signed certificate", _UNTRUSTED),
    ("unable to get local issuer", _UNTRUSTED),
    ("unable to get issuer", _UNTRUSTED),
    ("alert unknown ca", _REFUSED + " (not signed by a CA it trusts)"),
    ("alert bad certificate", _REFUSED),
    ("alert certificate unknown", _REFUSED),
    ("certificate required", "the broker requires a client certificate"),
    ("handshake failure", "the broker refused the TLS handshake (no common cipher or certificate)"),
    # mbedTLS verify texts (MicroPython raises them as ValueError); some do
    # not say which check failed.
    ("not correctly signed by the trusted ca", _UNTRUSTED),
    ("validity has expired", "the broker's certificate has expired (or the device's clock is wrong)"),
    ("validity starts in the future", "the broker's certificate is not valid yet (is the device's clock right?)"),
    ("does not match with the expected cn", "the broker's certificate is not valid for the host name HOST"),
    ("x509_cert_verify_failed", "the broker's certificate was rejected (untrusted CA, wrong host name or expired)"),
    ("-9984", "the broker's certificate was rejected (untrusted CA, wrong host name or expired)"),
    ("fatal_alert", "the broker ended TLS with a fatal alert (did it refuse the client certificate?)"),
    ("-30592", "the broker ended TLS with a fatal alert (did it refuse the client certificate?)"),
)


def tls_error(e, host=None, port=None, handshake=True):
    """A TLSError with the reason in words if e is a TLS failure, else None.

    During the handshake every ssl error is a TLS failure; afterwards only the
    ones with a known reason are (an EOF mid-session is just a lost link).
    """
    text = " ".join(str(e).split())  # mbedTLS texts come wrapped in newlines
    low = text.lower()
    where = "TLS with %s:%d" % (host, port) if host is not None else "TLS session"
    for needle, reason in _TLS_REASONS:
        if needle in low:
            return TLSError("%s failed: %s [%s]" % (where, reason.replace("HOST", str(host)), text))
    if handshake and ((_SSLError is not None and isinstance(e, _SSLError)) or "mbedtls" in low):
        return TLSError("%s failed during the handshake [%s]" % (where, text))
    return None


try:
    from ssl import SSLWantReadError, SSLWantWriteError
except ImportError:  # MicroPython: non-blocking reads return None instead
    class SSLWantReadError(Exception):
        pass

    class SSLWantWriteError(Exception):
        pass

try:
    from errno import EAGAIN, EINPROGRESS
except ImportError:  # a MicroPython build without errno
    EAGAIN, EINPROGRESS = 11, 115
# The runtime's own numbers (lwIP boards differ from Linux) plus the usual ones.
_WOULD_BLOCK = (EAGAIN, EINPROGRESS, 11, 35, 115)


def _errno(e):
    return e.args[0] if e.args and isinstance(e.args[0], int) else None


class Connection:
    """A connected, non-blocking TLS socket.

    handshake=(tls, host, port) while the TLS handshake may still be under
    way (MicroPython): until the first bytes go out, errors are reported as
    handshake failures.
    """

    def __init__(self, sock, raw, handshake=None):
        self.sock = sock
        self.raw = raw  # the TCP socket under the TLS layer, for poll/fileno
        self._handshake = handshake
        self._read = getattr(sock, "recv", None) if hasattr(sock, "fileno") else sock.read
        self._write = getattr(sock, "send", None) if hasattr(sock, "fileno") else sock.write
        if not hasattr(sock, "fileno") and hasattr(sock, "readinto"):
            self._buf = bytearray(_STREAM_BUF)
            self._view = memoryview(self._buf)
            self._read = self._read_into
        self.closed = False

    def _read_into(self, _size):
        # Like read(): None when nothing is there, b"" at EOF, else the bytes read.
        n = self.sock.readinto(self._buf)
        if n is None:
            return None
        return bytes(self._view[:n])

    def pollable(self):
        """The object to give select.poll / the event loop."""
        return self.sock if not hasattr(self.sock, "fileno") else self.sock.fileno()

    def recv(self):
        try:
            data = self._read(_RECV_SIZE)
        except (SSLWantReadError, SSLWantWriteError):
            return None
        except OSError as e:
            if _errno(e) in _WOULD_BLOCK:
                return None
            raise self._lost(e)
        except ValueError as e:  # MicroPython: mbedTLS's certificate check, in the handshake
            if self._handshake is None:
                raise
            raise self._lost(e)
        if data is None:
            return None
        if not data:
            raise TransportError("connection closed by the broker")
        return data

    def send(self, data):
        try:
            n = self._write(data)
        except (SSLWantReadError, SSLWantWriteError):
            return 0
        except OSError as e:
            if _errno(e) in _WOULD_BLOCK:
                return 0
            raise self._lost(e, after_write=True)
        except ValueError as e:  # MicroPython: mbedTLS's certificate check, in the handshake
            if self._handshake is None:
                raise
            raise self._lost(e)
        if n:
            self._handshake = None  # TLS sends application data only after the handshake
        return n or 0

    def _lost(self, e, after_write=False):
        if self._handshake is not None:
            return _handshake_error(e, *self._handshake)
        return (tls_error(e, handshake=False) or (after_write and self._alert())
                or TransportError("connection lost: %s" % e))

    def _alert(self):
        # A write failed: the peer may have sent a TLS alert before closing (a
        # broker refusing our certificate after a TLS 1.3 handshake).  Read it.
        try:
            self._read(_RECV_SIZE)
        except OSError as e:
            return tls_error(e, handshake=False)
        except Exception:  # noqa: BLE001 - best effort only, the write error stands
            return None
        return None

    def close(self):
        if self.closed:
            return
        self.closed = True
        for s in (self.sock, self.raw):
            try:
                s.close()
            except OSError:
                pass


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
        raise _handshake_error(e, tls, host, port)


def _handshake_error(e, tls, host, port):
    # The TCP connection is up: what fails now is TLS.  MicroPython reports a
    # failed certificate check as ValueError (mbedTLS's verify text), and a
    # broker that refuses our certificate in a TLS 1.2 handshake as EPIPE or
    # ECONNRESET; both would otherwise escape or say nothing useful.
    err = tls_error(e, host, port)
    if err is not None:
        return err
    text = " ".join(str(e).split())
    if isinstance(e, ValueError):
        return TLSError("TLS with %s:%d failed: the broker's certificate was rejected [%s]" % (host, port, text))
    if tls.client_cert and _errno(e) in (32, 104):
        return TLSError("TLS with %s:%d failed: the broker closed the connection during the handshake "
                        "(did it refuse this device's client certificate?) [%s]" % (host, port, text))
    return TransportError("TLS with %s:%d failed: %s" % (host, port, text))


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
            if _errno(e) not in _WOULD_BLOCK:
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
            raise _handshake_error(e, self.tls, self.host, self.port)
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


def start_connection(host, port, tls, timeout_ms, now):
    """A Connector to host:port (the name lookup may wait on DNS)."""
    return Connector(resolve(host, port), host, port, tls, timeout_ms, now)


async def open_connection_async(host, port, tls, timeout=10.0):
    """Like open_connection, without blocking the event loop (CPython).

    The name lookup, the TCP connect and the TLS handshake wait on the loop,
    so one slow or unreachable broker does not stall the other tasks (or
    devices) of the process.  PKCS#11 keys are loaded (token login)
    synchronously, then hand-shake on the loop too.
    """
    import asyncio

    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as e:
        raise TransportError("cannot resolve %s: %s" % (host, e))
    family, _type, _proto, _name, addr = infos[0]
    now = loop.time() * 1000
    connector = Connector((family, addr), host, port, tls, timeout * 1000, now)
    try:
        while True:
            conn = connector.step(loop.time() * 1000)
            if conn is not None:
                return conn
            await _ready(loop, connector, connector.deadline / 1000)
    except BaseException:  # cancelled: the socket must not leak
        connector.close()
        raise


async def _ready(loop, connector, deadline):
    """Wait until the connector's socket is ready for its next step, or the deadline."""
    fd = connector.pollable()
    add, remove = (loop.add_writer, loop.remove_writer) if connector.wants_write else \
        (loop.add_reader, loop.remove_reader)
    done = loop.create_future()
    add(fd, lambda: done.done() or done.set_result(None))
    timer = loop.call_at(deadline, lambda: done.done() or done.set_result(None))
    try:
        await done
    finally:
        timer.cancel()
        remove(fd)
