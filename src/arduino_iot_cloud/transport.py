# The socket transport: one TLS connection, used without blocking.
#
# open_connection() does the TCP connect and the TLS handshake with a time
# limit (the only blocking step), then switches the socket to non-blocking.
# Afterwards recv() returns the bytes available now (None when there are
# none) and send() writes what the socket takes now; neither ever waits.
# EOF and socket errors become TransportError.  Both runtimes run this file;
# their different socket methods are bridged here, in the one place they meet.

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

_WOULD_BLOCK = (11, 35, 115)  # EAGAIN (Linux), EAGAIN (BSD), EINPROGRESS


def _errno(e):
    return e.args[0] if e.args and isinstance(e.args[0], int) else None


class Connection:
    """A connected, non-blocking TLS socket."""

    def __init__(self, sock, raw):
        self.sock = sock
        self.raw = raw  # the TCP socket under the TLS layer, for poll/fileno
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
            raise tls_error(e, handshake=False) or TransportError("connection lost: %s" % e)
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
            raise tls_error(e, handshake=False) or self._alert() or TransportError("connection lost: %s" % e)
        return n or 0

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
    """Connect to host:port, do the TLS handshake, return a non-blocking Connection."""
    try:
        addr = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)[0]
    except OSError as e:
        raise TransportError("cannot resolve %s: %s" % (host, e))
    raw = socket.socket(addr[0], socket.SOCK_STREAM)
    _no_delay(raw)
    try:
        if hasattr(raw, "settimeout"):
            raw.settimeout(timeout)
        raw.connect(addr[-1])
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
    # The TCP connection is up: what fails now is TLS.  MicroPython reports a
    # failed certificate check as ValueError (mbedTLS's verify text), and a
    # broker that refuses our certificate in a TLS 1.2 handshake as EPIPE or
    # ECONNRESET; both would otherwise escape or say nothing useful.
    try:
        return tls.wrap(raw, host)
    except CloudError:
        raise
    except (OSError, ValueError) as e:
        err = tls_error(e, host, port)
        if err is not None:
            raise err
        text = " ".join(str(e).split())
        if isinstance(e, ValueError):
            raise TLSError("TLS with %s:%d failed: the broker's certificate was rejected [%s]" % (host, port, text))
        if tls.client_cert and _errno(e) in (32, 104):
            raise TLSError("TLS with %s:%d failed: the broker closed the connection during the handshake "
                           "(did it refuse this device's client certificate?) [%s]" % (host, port, text))
        raise


async def open_connection_async(host, port, tls, timeout=10.0):
    """Like open_connection, without blocking the event loop (CPython).

    The TCP connect and the TLS handshake wait on the loop, so one slow or
    unreachable broker does not stall the other tasks (or devices) of the
    process.  PKCS#11 keys are loaded (token login) synchronously, then
    hand-shake on the loop too.  SE05x keys and MicroPython use the blocking
    open_connection, bounded by the same timeout.
    """
    import asyncio

    if tls.hardware == "se05x" or not hasattr(asyncio, "get_running_loop"):
        return open_connection(host, port, tls, timeout)
    try:
        return await asyncio.wait_for(_connect_nonblocking(host, port, tls), timeout)
    except asyncio.TimeoutError:
        raise TransportError("cannot connect to %s:%d: timed out after %.0f s" % (host, port, timeout))


async def _connect_nonblocking(host, port, tls):
    import asyncio

    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as e:
        raise TransportError("cannot resolve %s: %s" % (host, e))
    family, _type, _proto, _name, addr = infos[0]
    raw = socket.socket(family, socket.SOCK_STREAM)
    _no_delay(raw)
    raw.setblocking(False)
    sock = None
    try:
        await loop.sock_connect(raw, addr)
        sock = tls.wrap(raw, host, handshake=False)
        while True:
            try:
                sock.do_handshake()
                break
            except SSLWantReadError:
                await _ready(loop, sock, loop.add_reader, loop.remove_reader)
            except SSLWantWriteError:
                await _ready(loop, sock, loop.add_writer, loop.remove_writer)
    except OSError as e:
        (sock or raw).close()
        raise tls_error(e, host, port) or TransportError("cannot connect to %s:%d: %s" % (host, port, e))
    except BaseException:
        (sock or raw).close()
        raise
    return Connection(sock, raw)


async def _ready(loop, sock, add, remove):
    fd = sock.fileno()
    done = loop.create_future()
    add(fd, lambda: done.done() or done.set_result(None))
    try:
        await done
    finally:
        remove(fd)
