# The socket transport: one TLS connection, used without blocking.
#
# open_connection() does the TCP connect and the TLS handshake with a time
# limit (the only blocking step), then switches the socket to non-blocking.
# Afterwards recv() returns the bytes available now (None when there are
# none) and send() writes what the socket takes now; neither ever waits.
# EOF and socket errors become TransportError.  Both runtimes run this file;
# their different socket methods are bridged here, in the one place they meet.

import socket

from .errors import TransportError

_RECV_SIZE = 4096

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
        self.closed = False

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
            raise TransportError("connection lost: %s" % e)
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
            raise TransportError("connection lost: %s" % e)
        return n or 0

    def close(self):
        if self.closed:
            return
        self.closed = True
        for s in (self.sock, self.raw):
            try:
                s.close()
            except OSError:
                pass


def open_connection(host, port, tls, timeout=10.0):
    """Connect to host:port, do the TLS handshake, return a non-blocking Connection."""
    try:
        addr = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)[0]
    except OSError as e:
        raise TransportError("cannot resolve %s: %s" % (host, e))
    raw = socket.socket(addr[0], socket.SOCK_STREAM)
    try:
        if hasattr(raw, "settimeout"):
            raw.settimeout(timeout)
        raw.connect(addr[-1])
        sock = tls.wrap(raw, host)
        if hasattr(sock, "setblocking"):
            sock.setblocking(False)
        else:
            raw.setblocking(False)
    except OSError as e:
        raw.close()
        raise TransportError("cannot connect to %s:%d: %s" % (host, port, e))
    except Exception:
        raw.close()
        raise
    return Connection(sock, raw)


async def open_connection_async(host, port, tls, timeout=10.0):
    """Like open_connection, without blocking the event loop (CPython).

    The TCP connect and the TLS handshake wait on the loop, so one slow or
    unreachable broker does not stall the other tasks (or devices) of the
    process.  Keys in hardware (PKCS#11) and MicroPython use the blocking
    open_connection, bounded by the same timeout.
    """
    import asyncio

    if tls.hardware is not None or not hasattr(asyncio, "get_running_loop"):
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
        raise TransportError("cannot connect to %s:%d: %s" % (host, port, e))
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
