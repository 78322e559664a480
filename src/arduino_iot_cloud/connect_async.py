# Opening the socket transport's connection on an asyncio loop (CPython):
# a Connector stepped whenever its socket is ready.

import asyncio
import socket
from typing import Any

from .connect import Connector
from .errors import TransportError
from .transport import Connection


async def open_connection_async(host: str, port: int, tls: Any, timeout: float = 10.0) -> Connection:
    """Like connect.open_connection, without blocking the event loop.

    The name lookup, the TCP connect and the TLS handshake wait on the loop,
    so one slow or unreachable broker does not stall the other tasks (or
    devices) of the process.  PKCS#11 keys are loaded (token login)
    synchronously, then hand-shake on the loop too.
    """
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


async def _ready(loop: asyncio.AbstractEventLoop, connector: Connector, deadline: float) -> None:
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
